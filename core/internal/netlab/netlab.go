//go:build linux

// Package netlab builds small isolated networks for tests: N hosts, each a
// Linux network namespace with one veth into a bridge that lives in a
// namespace of its own. Nothing is created in the root namespace, nothing
// is connected to a host interface, and the hosts have no route out of
// 198.18.0.0/24, so test traffic cannot leave the lab. Multicast (groups in
// 239.0.0.0/8) is flooded to every host: the bridge does no IGMP snooping.
//
// Packet loss is injected per host with nftables (tc netem is not available
// on every kernel): SetLoss drops a random share of the UDP datagrams a
// host receives.
//
// Everything a Lab creates (namespaces, bridge, veths, nftables rules, the
// processes started in it) is removed by t.Cleanup, also when the test
// fails or panics. A lab left behind by a test binary that was killed is
// removed by the next New once its owner process is gone.
//
// Tests using a Lab need root and iproute2; New skips the test, saying
// which is missing, otherwise.
package netlab

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/diskcast/diskcast/core/internal/testenv"
)

// The lab's addressing. Host i has address 198.18.0.(i+1); host 0 is
// conventionally the sender.
const (
	// Subnet is the lab's only subnet.
	Subnet = "198.18.0.0/24"
	// MulticastRoute is routed to each host's veth, so multicast senders
	// need no default route.
	MulticastRoute = "239.0.0.0/8"
	// MaxHosts bounds the hosts of one lab (one /24).
	MaxHosts = 250

	netnsDir = "/run/netns"
	// stateDir records each live lab and its owner process, so a lab left
	// behind by a killed test binary can be found and removed.
	stateDir = "/run/diskcast-netlab"
	// prefix starts every name a lab creates; the rest is random.
	prefix = "dc"
)

// Errors of Host.Do.
var (
	// ErrSetns means a thread could not enter or leave a namespace.
	ErrSetns = errors.New("netlab: setns")
)

// Lab is a set of hosts joined by one isolated bridge.
type Lab struct {
	id    string
	ip    string // path of the ip command
	tb    testing.TB
	swNS  string // namespace holding the bridge
	hosts []*Host

	mu    sync.Mutex
	cmds  []*exec.Cmd
	nsIno map[uint64]bool // inode numbers of the lab's namespaces
}

// Host is one namespace of a Lab.
type Host struct {
	lab   *Lab
	index int
	ns    string
	iface string
	ip    net.IP
}

// New creates a lab of hosts namespaces and removes it when the test ends.
// It skips the test unless it runs as root with iproute2 installed.
func New(t testing.TB, hosts int) *Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: netlab needs root (network namespaces, veth pairs and a bridge); run the tests as root (CI does)")
	}
	ipPath, err := testenv.LookPath("ip")
	if err != nil {
		t.Skip("skipping: netlab needs the ip command (Debian package iproute2; run 'make deps' as root)")
	}
	if hosts < 1 || hosts > MaxHosts {
		t.Fatalf("netlab: %d hosts: want 1 to %d", hosts, MaxHosts)
	}
	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	l := &Lab{
		id:    prefix + hex.EncodeToString(rnd[:]),
		ip:    ipPath,
		tb:    t,
		nsIno: map[uint64]bool{},
	}
	l.swNS = l.id + "-sw"
	for i := range hosts {
		l.hosts = append(l.hosts, &Host{
			lab:   l,
			index: i,
			ns:    fmt.Sprintf("%s-h%d", l.id, i),
			iface: fmt.Sprintf("%sh%d", l.id, i),
			ip:    net.IPv4(198, 18, 0, byte(i+1)).To4(),
		})
	}
	reapStale(t, ipPath)
	// Registered before anything exists, so a half-built lab is removed too.
	t.Cleanup(l.destroy)
	if err := l.writeState(); err != nil {
		t.Fatalf("netlab: %v", err)
	}

	// The first namespace tells whether namespaces work at all here.
	if out, err := l.ipCmd("", "netns", "add", l.swNS); err != nil {
		t.Skipf("skipping: netlab cannot create a network namespace (ip netns add: %v: %s); it needs root with CAP_SYS_ADMIN outside a restricted container", err, out)
	}
	l.notice(l.swNS)
	for _, h := range l.hosts {
		l.must("", "netns", "add", h.ns)
		l.notice(h.ns)
	}
	// No IPv6 anywhere: it would only add router solicitations and MLD
	// reports to the lab's traffic.
	for _, ns := range l.namespaces() {
		if err := l.nsDo(ns, disableIPv6); err != nil {
			t.Fatalf("netlab: namespace %s: %v", ns, err)
		}
	}

	br := l.id + "br"
	var sw strings.Builder
	fmt.Fprintf(&sw, "link set lo up\n")
	// mcast_snooping 0: flood multicast to every port, like a switch without
	// IGMP snooping; the lab has no querier that snooping would need.
	fmt.Fprintf(&sw, "link add %s type bridge stp_state 0 mcast_snooping 0\n", br)
	fmt.Fprintf(&sw, "link set %s up\n", br)
	for _, h := range l.hosts {
		port := fmt.Sprintf("%sp%d", l.id, h.index)
		// Both ends are created inside lab namespaces, never in the root one.
		fmt.Fprintf(&sw, "link add %s type veth peer name %s netns %s\n", port, h.iface, h.ns)
		fmt.Fprintf(&sw, "link set %s master %s\n", port, br)
		fmt.Fprintf(&sw, "link set %s up\n", port)
	}
	l.batch(l.swNS, sw.String())
	for _, h := range l.hosts {
		l.batch(h.ns, fmt.Sprintf(`link set lo up
addr add %s/24 dev %s
link set %s up
route add %s dev %s
`, h.ip, h.iface, h.iface, MulticastRoute, h.iface))
	}
	return l
}

// ID is the random name shared by everything the lab creates (namespaces
// are ID-sw and ID-hN, interfaces start with ID).
func (l *Lab) ID() string { return l.id }

// Host returns host i (0-based).
func (l *Lab) Host(i int) *Host {
	if i < 0 || i >= len(l.hosts) {
		l.tb.Fatalf("netlab: host %d: the lab has hosts 0 to %d", i, len(l.hosts)-1)
	}
	return l.hosts[i]
}

// Hosts returns every host, in index order.
func (l *Lab) Hosts() []*Host { return append([]*Host(nil), l.hosts...) }

// Name is the host's namespace name (for `ip netns exec NAME`).
func (h *Host) Name() string { return h.ns }

// Index is the host's position in the lab.
func (h *Host) Index() int { return h.index }

// NetnsPath is the namespace's file (for nsenter --net=PATH or setns).
func (h *Host) NetnsPath() string { return filepath.Join(netnsDir, h.ns) }

// IP is the host's address on the lab subnet.
func (h *Host) IP() net.IP { return append(net.IP(nil), h.ip...) }

// Iface is the name of the host's veth, its only interface besides lo.
func (h *Host) Iface() string { return h.iface }

// Command returns a command that runs name inside the host's namespace.
// The process (and whatever it starts in the lab) is killed when the lab is
// removed, if it still runs.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, h.lab.ip, append([]string{"netns", "exec", h.ns, name}, args...)...)
	h.lab.mu.Lock()
	h.lab.cmds = append(h.lab.cmds, cmd)
	h.lab.mu.Unlock()
	return cmd
}

// Run runs name inside the host's namespace and returns its combined
// output; it fails the test if the command fails.
func (h *Host) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := h.Command(context.Background(), name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("netlab: host %d: %s %s: %v\n%s", h.index, name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Do runs fn on an OS thread that has entered the host's namespace, and
// moves the thread back afterwards. Sockets fn opens stay in the host's
// namespace and can be used from any goroutine after Do returns. Goroutines
// fn starts run outside the namespace. A panic in fn is passed on to the
// caller.
func (h *Host) Do(fn func() error) error { return h.lab.nsDo(h.ns, fn) }

func (l *Lab) nsDo(ns string, fn func() error) error {
	type result struct {
		err   error
		panic any
	}
	done := make(chan result, 1)
	go func() {
		// The thread stays locked if it cannot go back to its namespace:
		// the runtime then ends it with this goroutine instead of reusing it.
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("%w: %v", ErrSetns, err)}
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join(netnsDir, ns))
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("%w: namespace %s: %v", ErrSetns, ns, err)}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("%w: enter %s: %v", ErrSetns, ns, err)}
			return
		}
		var r result
		func() {
			defer func() { r.panic = recover() }()
			r.err = fn()
		}()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			r.err = errors.Join(r.err, fmt.Errorf("%w: leave %s: %v", ErrSetns, ns, err))
			done <- r
			return
		}
		runtime.UnlockOSThread()
		done <- r
	}()
	r := <-done
	if r.panic != nil {
		panic(r.panic)
	}
	return r.err
}

func disableIPv6() error {
	for _, f := range []string{"/proc/sys/net/ipv6/conf/all/disable_ipv6", "/proc/sys/net/ipv6/conf/default/disable_ipv6"} {
		if err := os.WriteFile(f, []byte("1\n"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// namespaces lists the lab's namespace names, hosts first.
func (l *Lab) namespaces() []string {
	var out []string
	for _, h := range l.hosts {
		out = append(out, h.ns)
	}
	return append(out, l.swNS)
}

// notice records the inode of a namespace just created, by which cleanup
// recognises the processes inside it.
func (l *Lab) notice(ns string) {
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(netnsDir, ns), &st); err != nil {
		l.tb.Fatalf("netlab: namespace %s: %v", ns, err)
	}
	l.mu.Lock()
	l.nsIno[st.Ino] = true
	l.mu.Unlock()
}

// ipCmd runs ip, inside namespace ns unless it is empty.
func (l *Lab) ipCmd(ns string, args ...string) ([]byte, error) {
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	return exec.Command(l.ip, args...).CombinedOutput()
}

func (l *Lab) must(ns string, args ...string) {
	l.tb.Helper()
	if out, err := l.ipCmd(ns, args...); err != nil {
		l.tb.Fatalf("netlab: ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// batch runs ip commands, one a line, inside namespace ns.
func (l *Lab) batch(ns, script string) {
	l.tb.Helper()
	cmd := exec.Command(l.ip, "-n", ns, "-batch", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		l.tb.Fatalf("netlab: namespace %s: ip -batch: %v\n%s\nscript:\n%s", ns, err, out, script)
	}
}

// destroy kills what runs in the lab, then deletes its namespaces (which
// takes the veths and the bridge with them).
func (l *Lab) destroy() {
	l.mu.Lock()
	cmds := l.cmds
	l.mu.Unlock()
	for _, c := range cmds {
		// os.Process signals through a pidfd: a process already reaped is
		// never confused with a new one that got its PID.
		if c.Process != nil {
			_ = c.Process.Kill()
		}
	}
	l.killInside()
	for _, ns := range l.namespaces() {
		if _, err := os.Stat(filepath.Join(netnsDir, ns)); err != nil {
			continue
		}
		if out, err := l.ipCmd("", "netns", "del", ns); err != nil {
			l.tb.Errorf("netlab: cleanup: ip netns del %s: %v: %s", ns, err, out)
		}
	}
	if err := os.Remove(filepath.Join(stateDir, l.id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		l.tb.Errorf("netlab: cleanup: %v", err)
	}
}

// killInside kills, by PID, every process whose network namespace is one
// of the lab's (children of the commands included), and waits until they
// are gone. The test process itself is left alone.
func (l *Lab) killInside() {
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := processesIn(l.inodes())
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			l.tb.Errorf("netlab: cleanup: processes %v still run inside the lab after SIGKILL", pids)
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (l *Lab) inodes() map[uint64]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := make(map[uint64]bool, len(l.nsIno))
	for k := range l.nsIno {
		m[k] = true
	}
	return m
}

// processesIn lists the processes (other than this one) whose network
// namespace has one of the given inode numbers. Zombies have left their
// namespaces and are not listed.
func processesIn(inodes map[uint64]bool) []int {
	if len(inodes) == 0 {
		return nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil {
			continue
		}
		// The link reads "net:[INODE]".
		s := strings.TrimSuffix(strings.TrimPrefix(link, "net:["), "]")
		ino, err := strconv.ParseUint(s, 10, 64)
		if err == nil && inodes[ino] {
			pids = append(pids, pid)
		}
	}
	return pids
}

// writeState records the lab and its owner process under stateDir.
func (l *Lab) writeState() error {
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return err
	}
	start, err := startTime(os.Getpid())
	if err != nil {
		return err
	}
	content := fmt.Sprintf("owner %d %d\nnetns %s\n", os.Getpid(), start, strings.Join(l.namespaces(), " "))
	return os.WriteFile(filepath.Join(stateDir, l.id), []byte(content), 0o644)
}

// reapStale deletes the namespaces of labs whose owner process is gone (a
// test binary killed before its cleanup ran). Processes left inside them
// are not touched; the namespaces disappear when those exit.
func reapStale(t testing.TB, ipPath string) {
	ents, err := os.ReadDir(stateDir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		path := filepath.Join(stateDir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var pid int
		var start uint64
		var names []string
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 3 && f[0] == "owner":
				pid, _ = strconv.Atoi(f[1])
				start, _ = strconv.ParseUint(f[2], 10, 64)
			case len(f) > 1 && f[0] == "netns":
				names = f[1:]
			}
		}
		if pid <= 0 {
			continue
		}
		if st, err := startTime(pid); err == nil && st == start {
			continue // owner alive: a lab of a running test
		}
		for _, ns := range names {
			if !strings.HasPrefix(ns, e.Name()+"-") {
				continue // only names this lab made
			}
			if _, err := os.Stat(filepath.Join(netnsDir, ns)); err == nil {
				_ = exec.Command(ipPath, "netns", "del", ns).Run()
			}
		}
		_ = os.Remove(path)
		t.Logf("netlab: removed lab %s left behind by process %d, which is gone", e.Name(), pid)
	}
}

// startTime reads a process's start time (clock ticks since boot), which
// tells a live owner from a later process that reuses its PID.
func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces; the start time is field 22 overall, 20 after it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("netlab: /proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, fmt.Errorf("netlab: /proc/%d/stat: %d fields", pid, len(f))
	}
	return strconv.ParseUint(f[19], 10, 64)
}
