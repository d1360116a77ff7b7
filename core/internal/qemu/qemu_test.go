package qemu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diskcast/diskcast/core/internal/netlab"
	"github.com/diskcast/diskcast/core/internal/testenv"
)

// bootTimeout bounds one VM boot under TCG. A boot takes 7-25 s on an idle
// 2-core machine, and 2-3 times that when the machine is loaded and VMs
// boot in parallel.
const bootTimeout = 150 * time.Second

func TestArgs(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		want    []string // each must appear, in this order
		wantErr string
	}{
		{
			name: "disk first, no network",
			opts: Options{Disk: "d.img", BootOrder: "c"},
			want: []string{"-nic none", "-no-reboot", "file=d.img,format=raw,if=none,id=disk0", "virtio-blk-pci,drive=disk0,bootindex=0"},
		},
		{
			name: "pxe then disk on a tap",
			opts: Options{Disk: "d.img", DiskInterface: "ide", BootOrder: "nc", Reboot: true, NICs: []NIC{{Tap: "tap0", MAC: "52:54:00:00:00:01"}}},
			want: []string{"-nic none", "ide-hd", "tap,id=net0,ifname=tap0,script=no,downscript=no", "virtio-net-pci,netdev=net0,mac=52:54:00:00:00:01,bootindex=0"},
		},
		{
			name: "kernel",
			opts: Options{Kernel: "k", Initrd: "i", Append: "console=ttyS0", Memory: 256},
			want: []string{"-m 256", "-kernel k", "-initrd i", "-append console=ttyS0"},
		},
		{name: "bad boot device", opts: Options{Disk: "d", BootOrder: "d"}, wantErr: "unknown device 'd'"},
		{name: "network boot without a NIC", opts: Options{BootOrder: "n"}, wantErr: "'n' without a NIC"},
		{name: "append without kernel", opts: Options{Append: "x"}, wantErr: "without Kernel"},
		{name: "bad interface", opts: Options{Disk: "d", DiskInterface: "floppy"}, wantErr: "disk interface \"floppy\""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args, err := Args(tc.opts, "vars.fd")
			if tc.wantErr != "" {
				if err == nil || !errors.Is(err, ErrOptions) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Args: err %v, want ErrOptions containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			line := strings.Join(args, " ")
			rest := line
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("%q missing (or out of order) in %q", w, line)
				}
				rest = rest[i+len(w):]
			}
			if tc.opts.Reboot == strings.Contains(line, "-no-reboot") {
				t.Errorf("Reboot=%v but command line %q", tc.opts.Reboot, line)
			}
		})
	}
}

// testDiskID is the marker id of the test disk the tests share.
const testDiskID = "qemu-test-42"

var testDisk struct {
	once sync.Once
	dir  string
	path string
	err  string
}

// sharedTestDisk builds the test disk once for all tests of the package
// (TestMain removes it).
func sharedTestDisk(t *testing.T) string {
	t.Helper()
	testDisk.once.Do(func() {
		dir, err := os.MkdirTemp("", "diskcast-qemu-test-")
		if err != nil {
			testDisk.err = err.Error()
			return
		}
		testDisk.dir = dir
		path := filepath.Join(dir, "test.img")
		start := time.Now()
		MakeTestDisk(t, path, 64, testDiskID)
		testDisk.path = path
		t.Logf("test disk built in %s", time.Since(start).Round(time.Millisecond))
	})
	if testDisk.path == "" {
		t.Fatalf("test disk: not built (%s)", testDisk.err)
	}
	return testDisk.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if testDisk.dir != "" {
		os.RemoveAll(testDisk.dir)
	}
	os.Exit(code)
}

// TestTestDisk boots the disk mktestdisk.sh makes, with SeaBIOS and with
// OVMF, and no network.
func TestTestDisk(t *testing.T) {
	Require(t)
	disk := sharedTestDisk(t)
	for _, uefi := range []bool{false, true} {
		name := "bios"
		if uefi {
			name = "uefi"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			vm := Start(t, Options{Name: name, Disk: disk, Snapshot: true, BootOrder: "c", UEFI: uefi, Memory: 256})
			ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
			defer cancel()
			line, err := vm.WaitFor(ctx, "DISKCAST-TESTDISK-BOOTED ")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(line, "DISKCAST-TESTDISK-BOOTED "+testDiskID+" ") {
				t.Fatalf("marker with the wrong id: %q", line)
			}
			if err := vm.Wait(ctx); err != nil {
				t.Fatalf("guest powered off but QEMU: %v", err)
			}
			// After the exit WaitFor fails at once instead of at its deadline.
			if _, err := vm.WaitFor(ctx, "a line that never comes"); !errors.Is(err, ErrExited) {
				t.Fatalf("WaitFor after power-off: %v, want ErrExited", err)
			}
			t.Logf("%s: test disk booted and powered off in %s", name, vm.Uptime().Round(time.Millisecond))
		})
	}
}

// TestPXEROMThenDisk boots with the network first: the NIC's iPXE ROM
// (from ipxe-qemu) runs, finds nothing (the NIC is connected to nothing),
// and the firmware falls through to the disk.
func TestPXEROMThenDisk(t *testing.T) {
	Require(t)
	disk := sharedTestDisk(t)
	vm := Start(t, Options{Name: "pxe", Disk: disk, Snapshot: true, BootOrder: "nc", Memory: 256,
		NICs: []NIC{{MAC: "52:54:00:dc:00:01"}}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*bootTimeout)
	defer cancel()
	if _, err := vm.WaitFor(ctx, "iPXE"); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.WaitFor(ctx, "52:54:00:dc:00:01"); err != nil {
		t.Fatalf("iPXE did not report the NIC's MAC: %v", err)
	}
	if _, err := vm.WaitFor(ctx, "DISKCAST-TESTDISK-BOOTED "+testDiskID); err != nil {
		t.Fatal(err)
	}
	t.Logf("iPXE ran, gave up, and the disk booted in %s", vm.Uptime().Round(time.Millisecond))
}

var readyRE = regexp.MustCompile(`DISKCAST-BOOTENV-READY diskcast=(\S+) net=(\S+) modules=(\d+)`)

// TestBootenv boots the imaging environment's kernel and initramfs in test
// mode: /init mounts, loads drivers, finds no NIC, runs the diskcast
// binary and reports.
func TestBootenv(t *testing.T) {
	Require(t)
	boot := Bootenv(t)
	disk := filepath.Join(t.TempDir(), "blank.img")
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		opts    Options
		modules []string // drivers the disk's modaliases must load
	}{
		{"bios-virtio-nonet", Options{Disk: disk, DiskInterface: "virtio"}, []string{"virtio_blk"}},
		{"uefi-ahci-nonet", Options{Disk: disk, DiskInterface: "ahci", UEFI: true}, []string{"ahci", "sd_mod"}},
		{"bios-nvme-nonet", Options{Disk: disk, DiskInterface: "nvme"}, []string{"nvme"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := tc.opts
			opts.Name = tc.name
			opts.Snapshot = true
			opts.Kernel, opts.Initrd = boot.Kernel, boot.Initrd
			opts.Append = "console=ttyS0 diskcast.init=test"
			vm := Start(t, opts)
			ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
			defer cancel()
			m, err := vm.WaitForRegexp(ctx, readyRE)
			if err != nil {
				t.Fatal(err)
			}
			if m[1] != "ok" {
				t.Errorf("diskcast binary in the initramfs: %s (want ok): %q", m[1], m[0])
			}
			if m[2] != "none" {
				t.Errorf("network: %s, want none (the VM has no NIC)", m[2])
			}
			if err := vm.Wait(ctx); err != nil {
				t.Fatalf("init powered off but QEMU: %v", err)
			}
			// The disk's driver must have been loaded from its modalias.
			var loaded string
			for _, l := range vm.Lines() {
				if strings.Contains(l, "modules: loaded") {
					loaded = l
				}
			}
			for _, mod := range tc.modules {
				if !strings.Contains(loaded+" ", " "+mod+" ") {
					t.Errorf("driver %s not loaded for the %s disk: %q", mod, opts.DiskInterface, loaded)
				}
			}
			t.Logf("%s: bootenv ready and powered off in %s", tc.name, vm.Uptime().Round(time.Millisecond))
		})
	}
}

// TestBootenvAgentFails boots the imaging environment with no diskcast
// server: the agent fails, and init must keep the node up (no kernel
// panic), retry the agent, and give a shell when Enter is pressed.
func TestBootenvAgentFails(t *testing.T) {
	Require(t)
	boot := Bootenv(t)
	vm := Start(t, Options{Name: "agent-fails", Kernel: boot.Kernel, Initrd: boot.Initrd,
		Append: "console=ttyS0 diskcast.retry=4"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*bootTimeout)
	defer cancel()
	for i := range 2 {
		if _, err := vm.WaitFor(ctx, "agent: diskcast agent failed"); err != nil {
			t.Fatalf("agent failure %d: %v", i+1, err)
		}
	}
	if err := vm.Send("\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.WaitFor(ctx, "shell: exit it to continue"); err != nil {
		t.Fatal(err)
	}
	if err := vm.Send("echo shell-$((6*7)) pid1=$(cat /proc/1/comm)\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.WaitFor(ctx, "shell-42 pid1="); err != nil {
		t.Fatal(err)
	}
	if err := vm.Send("exit\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.WaitFor(ctx, "agent: starting diskcast agent"); err != nil {
		t.Fatalf("no agent retry after the shell exited: %v", err)
	}
	for _, l := range vm.Lines() {
		if strings.Contains(l, "Kernel panic") {
			t.Fatalf("kernel panicked: %q", l)
		}
	}
	t.Logf("agent failed, retried, shell worked; %s", vm.Uptime().Round(time.Millisecond))
}

// TestBootenvDHCP boots the imaging environment with a NIC on a tap in a
// test namespace where busybox udhcpd serves addresses: init must pick the
// NIC, get a lease and configure it.
func TestBootenvDHCP(t *testing.T) {
	Require(t)
	testenv.RequireCommands(t, "busybox")
	boot := Bootenv(t)
	lab := netlab.New(t, 1)
	h := lab.Host(0)
	tap := lab.ID() + "tap"
	h.Run(t, "ip", "tuntap", "add", "dev", tap, "mode", "tap")
	h.Run(t, "ip", "addr", "add", "198.18.1.1/24", "dev", tap)
	h.Run(t, "ip", "link", "set", tap, "up")
	dir := t.TempDir()
	conf := filepath.Join(dir, "udhcpd.conf")
	if err := os.WriteFile(conf, []byte(`start 198.18.1.100
end 198.18.1.110
interface `+tap+`
lease_file `+dir+`/leases
pidfile `+dir+`/udhcpd.pid
siaddr 198.18.1.1
boot_file diskcast.ipxe
option subnet 255.255.255.0
option router 198.18.1.1
option lease 600
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "leases"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	udhcpd := h.Command(context.Background(), "busybox", "udhcpd", "-f", conf)
	var out strings.Builder
	udhcpd.Stdout, udhcpd.Stderr = &out, &out
	if err := udhcpd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		udhcpd.Process.Kill()
		udhcpd.Wait()
		if t.Failed() {
			t.Logf("udhcpd output:\n%s", out.String())
		}
	})

	const mac = "52:54:00:dc:01:02"
	vm := Start(t, Options{Name: "dhcp", Kernel: boot.Kernel, Initrd: boot.Initrd, Netns: h.Name(),
		// A second, unconnected NIC first: init must prefer diskcast.mac.
		NICs:   []NIC{{MAC: "52:54:00:dc:01:01"}, {Tap: tap, MAC: mac}},
		Append: "console=ttyS0 diskcast.init=test diskcast.mac=" + mac})
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	up, err := vm.WaitForRegexp(ctx, regexp.MustCompile(`network: (\S+) up: (198\.18\.1\.1(0\d|10)/24)`))
	if err != nil {
		t.Fatal(err)
	}
	m, err := vm.WaitForRegexp(ctx, readyRE)
	if err != nil {
		t.Fatal(err)
	}
	if m[2] != up[1] {
		t.Errorf("ready line names %s, network came up on %s", m[2], up[1])
	}
	if err := vm.Wait(ctx); err != nil {
		t.Fatalf("init powered off but QEMU: %v", err)
	}
	var route bool
	for _, l := range vm.Lines() {
		if strings.Contains(l, "router 198.18.1.1 server 198.18.1.1") {
			route = true
		}
	}
	if !route {
		t.Error("the udhcpc script did not report the lease's router and server")
	}
	t.Logf("lease %s on %s; ready and powered off in %s", up[2], up[1], vm.Uptime().Round(time.Millisecond))
}
