# The embedded demo (make demo): one image server and three nodes on this
# host. scripts/demo.sh builds the image, sets the variables through
# DISKCAST_VAR_*, starts `diskcast serve -config configs/demo.hcl` and
# runs three agents: in network namespaces on an isolated bridge when run
# as root, otherwise on loopback.

variable "demo_dir" {
  default     = "/tmp/diskcast-demo"
  description = "Where the demo keeps its image, the nodes' disks and the state."
}

variable "listen" {
  default     = "127.0.0.1:7480"
  description = "The API address the agents reach."
}

variable "interface" {
  default     = "lo"
  description = "The multicast interface of the server (lo: packets never leave this host)."
}

server {
  listen         = var.listen
  interface      = var.interface
  state_dir      = "${var.demo_dir}/state"
  multicast_pool = "239.192.99.0/28"
  ports          = "41000-41099"
}

image "demo" {
  path        = "${var.demo_dir}/demo.dci"
  description = "GPT disk: EFI system partition (FAT32) and ext4 root"
}

node "node1" {
  mac  = "52:54:00:d0:00:01"
  disk = "${var.demo_dir}/node1.img"
}

node "node2" {
  mac  = "52:54:00:d0:00:02"
  disk = "${var.demo_dir}/node2.img"
}

node "node3" {
  mac  = "52:54:00:d0:00:03"
  disk = "${var.demo_dir}/node3.img"
}

session "demo" {
  image     = "demo"
  nodes     = ["node[1-3]"]
  after     = "stay"
  autostart = true

  transport "multicast" {
    rate          = "adaptive"
    min_receivers = 3
    max_wait      = "60s"
  }

  timeouts {
    boot    = "2m"
    receive = "10m"
    verify  = "5m"
  }
}
