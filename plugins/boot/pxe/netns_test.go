package pxe

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/diskcast/diskcast/sdk/boot"
	"github.com/hashicorp/go-hclog"
)

// The helper process: a Server in a network namespace, configured from
// the environment, until SIGTERM; then its stats as JSON on stdout. Its
// backend answers the n-th lookup with the n-th assignment of
// PXE_NETNS_HELPER_SEQ (the last one after that) and prints every lookup
// and event on stdout.
func TestNetnsHelper(t *testing.T) {
	raw := os.Getenv("PXE_NETNS_HELPER_CONFIG")
	if raw == "" {
		t.Skip("helper process of the network namespace tests")
	}
	var c Config
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		t.Fatal(err)
	}
	b := &seqBackend{}
	if err := json.Unmarshal([]byte(os.Getenv("PXE_NETNS_HELPER_SEQ")), &b.seq); err != nil || len(b.seq) == 0 {
		t.Fatalf("PXE_NETNS_HELPER_SEQ: %v", err)
	}
	s := newServer(t, c)
	s.Logger = hclog.New(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Debug})
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	fmt.Println("ready")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := s.Serve(ctx, b); err != nil {
		t.Fatal(err)
	}
	json.NewEncoder(os.Stdout).Encode(s.Stats())
}

type seqBackend struct {
	mu  sync.Mutex
	seq []boot.Assignment
	n   int
}

func (b *seqBackend) Lookup(_ context.Context, n boot.Node) (*boot.Assignment, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a := b.seq[min(b.n, len(b.seq)-1)]
	b.n++
	fmt.Printf("lookup %s %s %q\n", n.MAC, n.IP, n.Arch)
	return &a, nil
}

func (b *seqBackend) Report(_ context.Context, e boot.Event) error {
	fmt.Printf("event %s %s %q\n", e.MAC, e.What, e.Detail)
	return nil
}

// helperProc is a running helper: its output lines arrive on lines.
type helperProc struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr *bytes.Buffer
	mu     sync.Mutex
	all    []string // every line, for failure messages
}

func (h *helperProc) output() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(h.all, "\n")
}

// helper starts the helper process in namespace ns.
func helper(t *testing.T, ns string, c Config, seq []boot.Assignment) *helperProc {
	t.Helper()
	cj, _ := json.Marshal(c)
	sj, _ := json.Marshal(seq)
	h := &helperProc{cmd: exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestNetnsHelper$", "-test.v"),
		lines: make(chan string, 1000), stderr: &bytes.Buffer{}}
	h.cmd.Env = append(os.Environ(), "PXE_NETNS_HELPER_CONFIG="+string(cj), "PXE_NETNS_HELPER_SEQ="+string(sj))
	stdout, err := h.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	h.cmd.Stderr = h.stderr
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.cmd.Process.Kill(); h.cmd.Wait() })
	go func() {
		defer close(h.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			h.mu.Lock()
			h.all = append(h.all, sc.Text())
			h.mu.Unlock()
			h.lines <- sc.Text()
		}
	}()
	if _, ok := h.waitLine(t, 10*time.Second, func(l string) bool { return l == "ready" }); !ok {
		t.Fatalf("helper did not start: %s", h.stderr.String())
	}
	return h
}

// waitLine waits for a line that ok accepts, returning it.
func (h *helperProc) waitLine(t *testing.T, d time.Duration, ok func(string) bool) (string, bool) {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case l, open := <-h.lines:
			if !open {
				return "", false
			}
			if ok(l) {
				return l, true
			}
		case <-timeout:
			return "", false
		}
	}
}

// stop ends the helper and returns its server's stats.
func (h *helperProc) stop(t *testing.T) Stats {
	t.Helper()
	h.cmd.Process.Signal(syscall.SIGTERM)
	var st Stats
	h.waitLine(t, 10*time.Second, func(l string) bool { return json.Unmarshal([]byte(l), &st) == nil })
	if err := h.cmd.Wait(); err != nil {
		t.Fatalf("helper: %v\n%s", err, h.stderr.String())
	}
	return st
}

func needNetns(t *testing.T, cmds ...string) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces (ip netns add)")
	}
	for _, cmd := range append([]string{"ip"}, cmds...) {
		if _, err := exec.LookPath(cmd); err != nil {
			t.Skipf("%s not installed (scripts/install-deps.sh installs it)", cmd)
		}
	}
}

// netns creates a network namespace for the test.
func netns(t *testing.T, name string) {
	t.Helper()
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// The broadcast path with real peers, in network namespaces joined by
// veth pairs (no host interface involved, addresses from 198.18.0.0/15):
// busybox udhcpc as a UEFI PXE client and as iPXE on the served link,
// busybox tftp and wget for the files, and a client on a second link of
// the server's namespace that must get no answer (SO_BINDTODEVICE).
func TestNetnsBroadcast(t *testing.T) {
	needNetns(t, "busybox")
	id := os.Getpid() % 100000
	srv, cli, other := fmt.Sprintf("pxes%d", id), fmt.Sprintf("pxec%d", id), fmt.Sprintf("pxex%d", id)
	for _, ns := range []string{srv, cli, other} {
		netns(t, ns)
	}
	run(t, "ip", "-n", srv, "link", "add", "pxs0", "type", "veth", "peer", "name", "pxc0", "netns", cli)
	run(t, "ip", "-n", srv, "link", "add", "pxs1", "type", "veth", "peer", "name", "pxx0", "netns", other)
	run(t, "ip", "-n", cli, "link", "set", "pxc0", "address", "52:54:00:77:00:01")
	run(t, "ip", "-n", srv, "addr", "add", "198.18.77.1/24", "dev", "pxs0")
	run(t, "ip", "-n", srv, "addr", "add", "198.18.78.1/24", "dev", "pxs1")
	for _, l := range [][2]string{{srv, "pxs0"}, {srv, "pxs1"}, {cli, "pxc0"}, {other, "pxx0"}} {
		run(t, "ip", "-n", l[0], "link", "set", l[1], "up")
	}

	root := tftpRoot(t)
	c := DefaultConfig()
	c.Mode, c.Interface, c.ServerIP = ModeDHCP, "pxs0", "198.18.77.1"
	c.PoolStart, c.PoolEnd, c.SubnetMask, c.DNS = "198.18.77.100", "198.18.77.110", "255.255.255.0", []string{"198.18.77.1"}
	c.TFTPRoot, c.HTTPListen, c.LeaseFile = root, "198.18.77.1:8067", filepath.Join(t.TempDir(), "leases.json")
	h := helper(t, srv, c, []boot.Assignment{
		{Known: true, KernelURL: "http://198.18.77.1:8067/files/vmlinuz", Cmdline: "diskcast.session=netns"},
	})

	// udhcpc runs this script with the lease in its environment.
	script := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] && env | sort > \"$0.$interface\"\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	udhcpc := func(ns, ifc string, extra ...string) (map[string]string, error) {
		os.Remove(script + "." + ifc)
		args := append([]string{"netns", "exec", ns, "busybox", "udhcpc", "-i", ifc, "-f", "-q", "-n", "-t", "3", "-T", "1", "-s", script}, extra...)
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("udhcpc on %s: %v: %s", ifc, err, out)
		}
		b, err := os.ReadFile(script + "." + ifc)
		env := map[string]string{}
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, "="); ok {
				env[k] = v
			}
		}
		return env, err
	}
	uefi, err := udhcpc(cli, "pxc0", "-V", "PXEClient:Arch:00007:UNDI:003016", "-x", "0x5d:0007")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(uefi["ip"], "198.18.77.1") || uefi["boot_file"] != "snponly.efi" || uefi["siaddr"] != "198.18.77.1" ||
		uefi["serverid"] != "198.18.77.1" || uefi["subnet"] != "255.255.255.0" || uefi["dns"] != "198.18.77.1" {
		t.Errorf("UEFI PXE lease: %v", uefi)
	}
	ipxe, err := udhcpc(cli, "pxc0", "-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000", "-x", "0x4d:69505845")
	if err != nil {
		t.Fatal(err)
	}
	wantURL := "http://198.18.77.1:8067/boot.ipxe?mac=52:54:00:77:00:01"
	if ipxe["ip"] != uefi["ip"] || ipxe["boot_file"] != wantURL {
		t.Errorf("iPXE lease %v: want the same address and %s", ipxe, wantURL)
	}
	run(t, "ip", "-n", cli, "addr", "add", ipxe["ip"]+"/24", "dev", "pxc0")
	got := run(t, "ip", "netns", "exec", cli, "busybox", "wget", "-q", "-O", "-", wantURL)
	if !strings.Contains(got, "kernel http://198.18.77.1:8067/files/vmlinuz diskcast.session=netns\n") {
		t.Errorf("script:\n%s", got)
	}
	local := filepath.Join(t.TempDir(), "undionly.kpxe")
	run(t, "ip", "netns", "exec", cli, "busybox", "tftp", "-g", "-r", "undionly.kpxe", "-l", local, "198.18.77.1")
	if b, err := os.ReadFile(local); err != nil || string(b) != tftpFiles["undionly.kpxe"] {
		t.Errorf("tftp: %d bytes, %v", len(b), err)
	}

	// The server's other link is not served.
	if env, err := udhcpc(other, "pxx0", "-V", "PXEClient:Arch:00007:UNDI:003016", "-t", "2"); err == nil {
		t.Errorf("a client on an unserved link got a lease: %v", env)
	}

	st := h.stop(t)
	// Two exchanges of two replies each; nothing from the other link.
	if st.DHCPReplies != 4 || st.DHCPMalformed != 0 || st.TFTPTransfers != 1 || st.HTTPScripts != 1 {
		t.Errorf("server stats %+v", st)
	}
}

// Real iPXE: QEMU's virtio NIC ROM boots against the server in a network
// namespace (its tap device is the served interface). The node is
// unknown first and held; then assigned, so it fetches kernel and initrd
// and boots the kernel: a Linux-format iPXE (ipxe.lkrn) whose command
// line makes it ask again; then known and idle, so it exits to the
// firmware and asks no more. Every script runs in real iPXE.
func TestQEMUiPXE(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM (about a minute under TCG)")
	}
	needNetns(t, "qemu-system-x86_64")
	const rom, lkrn = "/usr/lib/ipxe/qemu/efi-virtio.rom", "/boot/ipxe.lkrn" // QEMU's default virtio ROM
	for f, pkg := range map[string]string{rom: "ipxe-qemu", lkrn: "ipxe"} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("%s missing (Debian package %s)", f, pkg)
		}
	}
	ns := fmt.Sprintf("pxeq%d", os.Getpid()%100000)
	netns(t, ns)
	run(t, "ip", "-n", ns, "tuntap", "add", "dev", "pxt0", "mode", "tap")
	run(t, "ip", "-n", ns, "addr", "add", "198.18.79.1/24", "dev", "pxt0")
	run(t, "ip", "-n", ns, "link", "set", "pxt0", "up")
	files := t.TempDir()
	k, err := os.ReadFile(lkrn)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(files, "vmlinuz"), k, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(files, "initrd.img"), []byte(randomText(4096)), 0o644); err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig()
	c.Mode, c.Interface, c.ServerIP = ModeDHCP, "pxt0", "198.18.79.1"
	c.PoolStart, c.PoolEnd, c.SubnetMask = "198.18.79.100", "198.18.79.110", "255.255.255.0"
	c.HTTPListen, c.FilesDir, c.Unknown, c.HoldRetry = "198.18.79.1:8067", files, UnknownHold, 1
	c.LeaseFile = filepath.Join(t.TempDir(), "leases.json")
	h := helper(t, ns, c, []boot.Assignment{
		{},
		// ipxe.lkrn runs its command line as a script: autoboot asks
		// for the node's script again.
		{Known: true, KernelURL: "http://198.18.79.1:8067/files/vmlinuz", InitrdURL: "http://198.18.79.1:8067/files/initrd.img", Cmdline: "autoboot"},
		{Known: true},
	})
	qemu := startVM(t, ns, "pxt0", "52:54:00:79:00:01")
	start := time.Now()
	for _, kind := range []string{"hold", "session", "local"} {
		want := fmt.Sprintf("event 52:54:00:79:00:01 script %q", kind)
		if _, ok := h.waitLine(t, 120*time.Second, func(l string) bool { return l == want }); !ok {
			t.Fatalf("no %q script after %v; qemu: %s\nserver: %s\n%s", kind, time.Since(start), qemu.out.String(), h.output(), h.stderr.String())
		}
		t.Logf("%s script served at %v", kind, time.Since(start).Round(100*time.Millisecond))
	}
	// iPXE exited: the firmware has nothing else to boot and no script
	// is asked for again.
	if l, ok := h.waitLine(t, 3*time.Second, func(l string) bool { return strings.Contains(l, " script ") }); ok {
		t.Errorf("after the local script: %s", l)
	}
	qemu.cmd.Process.Kill()
	st := h.stop(t)
	if st.HTTPFiles != 2 || st.HTTPScripts != 3 || st.DHCPMalformed != 0 {
		t.Errorf("server stats %+v: want kernel and initrd fetched, three scripts", st)
	}
}

type vm struct {
	cmd *exec.Cmd
	out *bytes.Buffer
}

// startVM boots a BIOS VM from the network on tap in namespace ns, with
// QEMU's own iPXE ROM for its virtio NIC, until the test ends.
func startVM(t *testing.T, ns, tap, mac string) *vm {
	t.Helper()
	v := &vm{out: &bytes.Buffer{}}
	v.cmd = exec.Command("ip", "netns", "exec", ns, "qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-display", "none",
		"-no-user-config", "-nodefaults", "-boot", "n",
		"-netdev", "tap,id=n0,ifname="+tap+",script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=n0,mac="+mac)
	v.cmd.Stdout, v.cmd.Stderr = v.out, v.out
	if err := v.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.cmd.Process.Kill(); v.cmd.Wait() })
	return v
}

// proxyDHCP with real iPXE beside a real site DHCP server: dnsmasq in
// its own namespace hands out the address, the plugin in proxy mode the
// boot information, all on one bridge with the VM's tap.
func TestQEMUProxyDHCP(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM (about half a minute under TCG)")
	}
	needNetns(t, "qemu-system-x86_64", "dnsmasq")
	if _, err := os.Stat("/usr/lib/ipxe/qemu/efi-virtio.rom"); err != nil {
		t.Skip("QEMU's iPXE ROMs missing (Debian package ipxe-qemu)")
	}
	id := os.Getpid() % 100000
	ns, site := fmt.Sprintf("pxep%d", id), fmt.Sprintf("pxed%d", id)
	netns(t, ns)
	netns(t, site)
	run(t, "ip", "-n", ns, "link", "add", "br0", "type", "bridge")
	run(t, "ip", "-n", ns, "tuntap", "add", "dev", "pxt0", "mode", "tap")
	run(t, "ip", "-n", ns, "link", "add", "vsite", "type", "veth", "peer", "name", "vsite0", "netns", site)
	run(t, "ip", "-n", ns, "link", "set", "pxt0", "master", "br0")
	run(t, "ip", "-n", ns, "link", "set", "vsite", "master", "br0")
	run(t, "ip", "-n", ns, "addr", "add", "198.18.80.1/24", "dev", "br0")
	run(t, "ip", "-n", site, "addr", "add", "198.18.80.2/24", "dev", "vsite0")
	for _, l := range [][2]string{{ns, "br0"}, {ns, "pxt0"}, {ns, "vsite"}, {site, "vsite0"}} {
		run(t, "ip", "-n", l[0], "link", "set", l[1], "up")
	}
	dir := t.TempDir()
	dnsmasq := exec.Command("ip", "netns", "exec", site, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
		"--interface=vsite0", "--bind-interfaces", "--dhcp-range=198.18.80.50,198.18.80.60,255.255.255.0,1h",
		"--dhcp-leasefile="+filepath.Join(dir, "leases"), "--pid-file="+filepath.Join(dir, "pid"), "--user=root", "--log-dhcp", "--log-facility=-")
	var dlog bytes.Buffer
	dnsmasq.Stdout, dnsmasq.Stderr = &dlog, &dlog
	if err := dnsmasq.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { dnsmasq.Process.Kill(); dnsmasq.Wait() }()

	c := DefaultConfig() // proxy mode
	c.Interface, c.ServerIP, c.HTTPListen = "br0", "198.18.80.1", "198.18.80.1:8067"
	h := helper(t, ns, c, []boot.Assignment{{Known: true}})
	qemu := startVM(t, ns, "pxt0", "52:54:00:80:00:01")
	start := time.Now()
	for _, want := range []string{
		`event 52:54:00:80:00:01 proxy-offer "http://198.18.80.1:8067/boot.ipxe?mac=52:54:00:80:00:01"`,
		// QEMU's iPXE takes the boot file from the proxy offer and asks
		// nothing on port 4011 (PXE ROMs do; the loopback tests cover it).
		`event 52:54:00:80:00:01 script "local"`,
	} {
		if _, ok := h.waitLine(t, 120*time.Second, func(l string) bool { return l == want }); !ok {
			t.Fatalf("no %s after %v; qemu: %s\nserver: %s\n%s\ndnsmasq: %s", want, time.Since(start), qemu.out.String(), h.output(), h.stderr.String(), dlog.String())
		}
		t.Logf("%s at %v", want, time.Since(start).Round(100*time.Millisecond))
	}
	qemu.cmd.Process.Kill()
	st := h.stop(t)
	// The lookup saw the address dnsmasq gave.
	if !strings.Contains(h.output(), "lookup 52:54:00:80:00:01 198.18.80.5") {
		t.Errorf("lookup without dnsmasq's address:\n%s", h.output())
	}
	// The client's REQUEST to dnsmasq was seen and left alone.
	if st.DHCPMalformed != 0 || st.HTTPScripts != 1 || st.DHCPIgnored == 0 {
		t.Errorf("server stats %+v", st)
	}
}
