# A 80-node teaching lab: one image server, two node groups, a session
# that images the first group with the golden image and reboots it.

variable "site" {
  default     = "lab"
  description = "Site name, used in image paths; override with DISKCAST_VAR_site."
}

locals {
  image_dir = "/srv/diskcast/${var.site}"
}

server {
  listen         = "127.0.0.1:7400"
  interface      = "eth1"
  state_dir      = "/var/lib/diskcast"
  image_dir      = local.image_dir
  plugin_dirs    = ["/usr/lib/diskcast/plugins"]
  multicast_pool = "239.192.10.0/24"
  ports          = "40000-40999"
  log_format     = "json"

  auth {
    token_file = "/etc/diskcast/api-token"
  }
}

plugin "filesystem" "ntfs" {
  skip_pagefile = true
  skip_hiberfil = true
}

image "golden" {
  path        = "${local.image_dir}/golden-2026-11.dci"
  description = "Debian 12 with the course tools"
}

node "pc001" { mac = "52:54:00:10:00:01" }
node "pc002" { mac = "52:54:00:10:00:02" }
node "pc003" { mac = "52:54:00:10:00:03" }
node "pc004" {
  mac  = "52:54:00:10:00:04"
  disk = "/dev/nvme0n1"
  labels = {
    room = "b12"
  }
}

node_group "row-a" {
  nodes = ["pc[001-004]"]
}

session "deploy-row-a" {
  image  = "golden"
  groups = ["row-a"]
  target = "/dev/sda"
  after  = "reboot"

  transport "multicast" {
    rate          = "600M"
    min_receivers = 4
    min_wait      = "10s"
    max_wait      = "2m"
  }

  timeouts {
    boot    = "10m"
    receive = "1h"
    verify  = "15m"
  }
}
