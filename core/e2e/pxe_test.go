//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diskcast/diskcast/core/internal/netlab"
	"github.com/diskcast/diskcast/core/internal/qemu"
	"github.com/diskcast/diskcast/core/internal/testenv"
)

var diskcastBin string

func TestMain(m *testing.M) { os.Exit(testenv.RunWithDiskcast(m, &diskcastBin)) }

// bench is what every scenario shares: the imaging environment, a
// bootable test disk and its image.
type bench struct {
	bootDir string // vmlinuz, initrd.img
	marker  string // what the test disk prints when it boots
	dci     string
	src     string
}

func setup(t *testing.T) *bench {
	t.Helper()
	qemu.Require(t)
	testenv.RequireCommands(t, "ip")
	for _, f := range []string{"/usr/lib/ipxe/qemu/pxe-virtio.rom", "/usr/lib/ipxe/undionly.kpxe"} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("skipping: %s missing (Debian packages ipxe-qemu and ipxe; run 'make deps' as root)", f)
		}
	}
	b := &bench{bootDir: t.TempDir()}
	env := qemu.Bootenv(t)
	for name, from := range map[string]string{"vmlinuz": env.Kernel, "initrd.img": env.Initrd} {
		if err := os.Symlink(from, filepath.Join(b.bootDir, name)); err != nil {
			t.Fatal(err)
		}
	}
	id := fmt.Sprintf("e2e-%d", time.Now().UnixNano()%1e6)
	b.marker = "DISKCAST-TESTDISK-BOOTED " + id
	dir := t.TempDir()
	b.src = filepath.Join(dir, "testdisk.img")
	qemu.MakeTestDisk(t, b.src, 64, id)
	b.dci = filepath.Join(dir, "testdisk.dci")
	if out, err := exec.Command(diskcastBin, "capture", b.src, b.dci).CombinedOutput(); err != nil {
		t.Fatalf("capture: %v\n%s", err, out)
	}
	return b
}

// vmNode is a virtual machine the session images.
type vmNode struct {
	name, mac, disk string
}

// config writes the daemon's configuration: the image server is lab host
// 0; bootPlugin is the plugin block.
func (b *bench) config(t *testing.T, lab *netlab.Lab, nodes []vmNode, bootPlugin string) string {
	t.Helper()
	dir := t.TempDir()
	h := lab.Host(0)
	var sb strings.Builder
	fmt.Fprintf(&sb, `server {
  listen         = "%[1]s:7400"
  url            = "http://%[1]s:7400"
  interface      = "%[2]s"
  state_dir      = "%[3]s/state"
  multicast_pool = "239.192.60.0/28"
  ports          = "42000-42099"
  boot_dir       = "%[4]s"
  boot_cmdline   = "console=ttyS0,115200"
}
%[5]s
image "testdisk" { path = "%[6]s" }
`, h.IP(), h.Iface(), dir, b.bootDir, bootPlugin, b.dci)
	var names []string
	for _, n := range nodes {
		fmt.Fprintf(&sb, "node %q {\n  mac  = %q\n  disk = \"/dev/vda\"\n}\n", n.name, n.mac)
		names = append(names, fmt.Sprintf("%q", n.name))
	}
	fmt.Fprintf(&sb, `session "fleet" {
  image     = "testdisk"
  nodes     = [%s]
  after     = "reboot"
  autostart = true
  transport "multicast" {
    min_receivers = %d
    max_wait      = "90s"
  }
}
`, strings.Join(names, ", "), len(nodes))
	path := filepath.Join(dir, "e2e.hcl")
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// run starts the daemon, boots the VMs from the network and waits until
// each has imaged its disk, rebooted, booted that disk and printed the
// marker. It returns the session's status.
func (b *bench) run(t *testing.T, lab *netlab.Lab, conf string, nodes []vmNode, uefi bool, budget time.Duration) {
	// BIOS VMs try the network first: after imaging, the boot service's
	// local script (iPXE exit) hands them to their disk. OVMF has no boot
	// entry for a disk that was empty when it started and returns to its
	// setup menu instead, so UEFI VMs try their disk first, as UEFI
	// fleets are usually set up: empty, it falls through to the network.
	order := "nc"
	if uefi {
		order = "cn"
	}
	t.Helper()
	var log testenv.Buffer
	serve := lab.Host(0).Command(context.Background(), diskcastBin, "serve", "-config", conf)
	serve.Stdout, serve.Stderr = &log, &log
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		serve.Process.Kill()
		serve.Wait()
		if t.Failed() {
			t.Logf("daemon log:\n%s", log.String())
		}
	}()
	start := time.Now()
	var vms []*qemu.VM
	for i, n := range nodes {
		tap := lab.AddTap(t, i)
		vms = append(vms, qemu.Start(t, qemu.Options{
			Name: n.name, Disk: n.disk, NICs: []qemu.NIC{{Tap: tap, MAC: n.mac}},
			BootOrder: order, Reboot: true, UEFI: uefi, Netns: lab.ID() + "-sw", Memory: 512,
		}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	var wg sync.WaitGroup
	for i, vm := range vms {
		wg.Go(func() {
			// The imaging environment starts, the agent writes the disk,
			// the VM reboots and boots it.
			for _, want := range []string{"diskcast-init:", "agent: starting diskcast agent", b.marker} {
				if _, err := vm.WaitFor(ctx, want); err != nil {
					t.Errorf("%s: no %q after %v: %v (console log %s)", nodes[i].name, want, time.Since(start).Round(time.Second), err, vm.Log())
					return
				}
				t.Logf("%s: %q after %v", nodes[i].name, want, time.Since(start).Round(100*time.Millisecond))
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d VM(s) imaged and booted from their own disks in %v", len(vms), time.Since(start).Round(100*time.Millisecond))
	out, err := lab.Host(0).Command(context.Background(), diskcastBin, "session", "status", "fleet", "--json", "-config", conf).Output()
	if err != nil {
		t.Fatalf("session status: %v", err)
	}
	var st struct {
		State string `json:"state"`
		Nodes []struct {
			Name    string             `json:"name"`
			State   string             `json:"state"`
			Timings map[string]float64 `json:"timings"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("session status: %v\n%s", err, out)
	}
	if st.State != "done" {
		t.Errorf("session state %s:\n%s", st.State, out)
	}
	for _, n := range st.Nodes {
		var phases []string
		for _, p := range []string{"dhcp", "ipxe", "kernel", "linux", "modules", "network", "assignment", "receive", "verify"} {
			if v, ok := n.Timings[p]; ok {
				phases = append(phases, fmt.Sprintf("%s %.1fs", p, v))
			}
		}
		t.Logf("%s: %s; %s", n.Name, n.State, strings.Join(phases, ", "))
		if n.State != "done" || n.Timings["receive"] == 0 {
			t.Errorf("node %s: %s, timings %v", n.Name, n.State, n.Timings)
		}
	}
	for _, n := range nodes {
		// The VM's disk holds the image exactly (the test disk's own
		// boot writes nothing to it).
		if off := testenv.FilesEqual(t, b.src, n.disk); off >= 0 {
			t.Errorf("%s: disk differs from the source at byte %d", n.name, off)
		}
	}
}

func (b *bench) nodes(t *testing.T, n int, macBase byte) []vmNode {
	var out []vmNode
	dir := t.TempDir()
	for i := range n {
		disk := filepath.Join(dir, fmt.Sprintf("vm%d.img", i+1))
		if err := os.WriteFile(disk, nil, 0o644); err != nil || os.Truncate(disk, 64<<20) != nil {
			t.Fatal("make an empty disk")
		}
		out = append(out, vmNode{name: fmt.Sprintf("vm%d", i+1), mac: fmt.Sprintf("52:54:00:e2:%02x:%02x", macBase, i+1), disk: disk})
	}
	return out
}

// TestPXE: three BIOS VMs with empty disks, diskcast's DHCP in full
// mode.
func TestPXE(t *testing.T) {
	b := setup(t)
	lab := netlab.New(t, 1)
	nodes := b.nodes(t, 3, 1)
	conf := b.config(t, lab, nodes, fmt.Sprintf(`plugin "boot" "pxe" {
  mode        = "dhcp"
  interface   = "%s"
  server_ip   = "%s"
  pool_start  = "198.18.0.100"
  pool_end    = "198.18.0.150"
  subnet_mask = "255.255.255.0"
  http_listen = "%s:8067"
  lease_file  = "%s"
}`, lab.Host(0).Iface(), lab.Host(0).IP(), lab.Host(0).IP(), filepath.Join(t.TempDir(), "leases")))
	b.run(t, lab, conf, nodes, false, 3*time.Minute)
}

// TestPXEProxyDHCP: one VM; the site's DHCP server (dnsmasq, on another
// host of the lab) hands out the addresses and diskcast answers as a
// proxyDHCP server.
func TestPXEProxyDHCP(t *testing.T) {
	b := setup(t)
	testenv.RequireCommands(t, "dnsmasq")
	lab := netlab.New(t, 2)
	site := lab.Host(1)
	leases := filepath.Join(t.TempDir(), "dnsmasq.leases")
	dnsmasq := site.Command(context.Background(), "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
		"--interface="+site.Iface(), "--bind-interfaces", "--dhcp-range=198.18.0.50,198.18.0.60,255.255.255.0,1h",
		"--dhcp-leasefile="+leases, "--pid-file=", "--user=root", "--log-dhcp", "--log-facility=-")
	var dlog testenv.Buffer
	dnsmasq.Stdout, dnsmasq.Stderr = &dlog, &dlog
	if err := dnsmasq.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		dnsmasq.Process.Kill()
		dnsmasq.Wait()
		if t.Failed() {
			t.Logf("dnsmasq:\n%s", dlog.String())
		}
	}()
	nodes := b.nodes(t, 1, 2)
	conf := b.config(t, lab, nodes, fmt.Sprintf(`plugin "boot" "pxe" {
  mode        = "proxy"
  interface   = "%s"
  server_ip   = "%s"
  http_listen = "%s:8067"
}`, lab.Host(0).Iface(), lab.Host(0).IP(), lab.Host(0).IP()))
	b.run(t, lab, conf, nodes, false, 3*time.Minute)
	if !strings.Contains(dlog.String(), "DHCPACK") {
		t.Errorf("dnsmasq gave no lease:\n%s", dlog.String())
	}
}

// TestPXEUEFI: one VM with OVMF firmware, diskcast's DHCP in full mode.
func TestPXEUEFI(t *testing.T) {
	b := setup(t)
	if code, _ := qemu.OVMF(); code == "" {
		t.Skip("skipping the UEFI run: no OVMF firmware (Debian package ovmf)")
	}
	lab := netlab.New(t, 1)
	nodes := b.nodes(t, 1, 3)
	conf := b.config(t, lab, nodes, fmt.Sprintf(`plugin "boot" "pxe" {
  mode        = "dhcp"
  interface   = "%s"
  server_ip   = "%s"
  pool_start  = "198.18.0.100"
  pool_end    = "198.18.0.150"
  subnet_mask = "255.255.255.0"
  http_listen = "%s:8067"
}`, lab.Host(0).Iface(), lab.Host(0).IP(), lab.Host(0).IP()))
	b.run(t, lab, conf, nodes, true, 4*time.Minute)
}
