//go:build linux

package netlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// rootSnapshot is what the root namespace's network looks like.
type rootSnapshot struct {
	links, routes, netns, sysctls string
}

func snapshot(t *testing.T) rootSnapshot {
	t.Helper()
	run := func(args ...string) string {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	var sysctls []string
	for _, f := range ipv6Sysctls {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sysctls = append(sysctls, f+"="+strings.TrimSpace(string(b)))
	}
	return rootSnapshot{
		links:   run("-o", "link", "show"),
		routes:  run("route", "show", "table", "all"),
		netns:   run("netns", "list"),
		sysctls: strings.Join(sysctls, "\n"),
	}
}

// ipv6Sysctls are the settings New changes inside the lab's namespaces
// (and must not change outside).
var ipv6Sysctls = []string{"/proc/sys/net/ipv6/conf/all/disable_ipv6", "/proc/sys/net/ipv6/conf/default/disable_ipv6"}

// missingFrom returns the lines of s that are not in other.
func missingFrom(s, other string) []string {
	have := map[string]bool{}
	for _, l := range strings.Split(other, "\n") {
		have[l] = true
	}
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" && !have[l] {
			out = append(out, l)
		}
	}
	return out
}

// ping sends one ICMP echo from h to dst and waits for the reply.
func ping(h *Host, dst net.IP, seq int) error {
	var c *icmp.PacketConn
	if err := h.Do(func() error {
		var err error
		c, err = icmp.ListenPacket("ip4:icmp", h.IP().String())
		return err
	}); err != nil {
		return err
	}
	defer c.Close()
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: 0x4443, Seq: seq, Data: []byte("netlab ping")}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(b, &net.IPAddr{IP: dst}); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("no echo reply from %s: %w", dst, err)
		}
		m, err := icmp.ParseMessage(1, buf[:n])
		if err != nil {
			continue
		}
		if e, ok := m.Body.(*icmp.Echo); ok && m.Type == ipv4.ICMPTypeEchoReply && e.Seq == seq && from.String() == dst.String() {
			return nil
		}
	}
}

func TestPing(t *testing.T) {
	l := New(t, 4)
	for _, src := range l.Hosts() {
		for _, dst := range l.Hosts() {
			if src == dst {
				continue
			}
			t.Run(fmt.Sprintf("%d-to-%d", src.Index(), dst.Index()), func(t *testing.T) {
				if err := ping(src, dst.IP(), src.Index()*10+dst.Index()); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
	// No route leaves the lab: a lookup for an outside address fails (a
	// lookup sends nothing).
	for _, dst := range []string{"192.0.2.1", "198.19.0.1", "8.8.8.8"} {
		t.Run("no-route-to-"+dst, func(t *testing.T) {
			out, err := l.Host(1).Command(context.Background(), "ip", "route", "get", dst).CombinedOutput()
			if err == nil {
				t.Fatalf("host 1 has a route to %s: %s", dst, out)
			}
			if !strings.Contains(string(out), "unreachable") {
				t.Fatalf("ip route get %s: %v: %s", dst, err, out)
			}
		})
	}
}

// listenGroup opens a socket in h that has joined group on h's veth.
func listenGroup(t *testing.T, h *Host, group net.IP, port int) *ipv4.PacketConn {
	t.Helper()
	var p *ipv4.PacketConn
	err := h.Do(func() error {
		c, err := net.ListenPacket("udp4", fmt.Sprintf("0.0.0.0:%d", port))
		if err != nil {
			return err
		}
		p = ipv4.NewPacketConn(c)
		ifi, err := net.InterfaceByName(h.Iface())
		if err != nil {
			return err
		}
		return p.JoinGroup(ifi, &net.UDPAddr{IP: group})
	})
	if err != nil {
		t.Fatalf("host %d: join %s: %v", h.Index(), group, err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// sendGroup sends payload from h to group:port with TTL 1 on h's veth.
func sendGroup(t *testing.T, h *Host, group net.IP, port int, payload []byte, times int) {
	t.Helper()
	err := h.Do(func() error {
		c, err := net.ListenPacket("udp4", h.IP().String()+":0")
		if err != nil {
			return err
		}
		defer c.Close()
		p := ipv4.NewPacketConn(c)
		ifi, err := net.InterfaceByName(h.Iface())
		if err != nil {
			return err
		}
		if err := p.SetMulticastInterface(ifi); err != nil {
			return err
		}
		if err := p.SetMulticastTTL(1); err != nil {
			return err
		}
		for range times {
			if _, err := p.WriteTo(payload, nil, &net.UDPAddr{IP: group, Port: port}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("host %d: send to %s: %v", h.Index(), group, err)
	}
}

// receiveToken waits until p receives payload, or fails after wait.
func receiveToken(p *ipv4.PacketConn, payload []byte, wait time.Duration) error {
	p.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 2048)
	for {
		n, _, _, err := p.ReadFrom(buf)
		if err != nil {
			return err
		}
		if bytes.Equal(buf[:n], payload) {
			return nil
		}
	}
}

func TestMulticastTTL1(t *testing.T) {
	l := New(t, 4)
	group := net.IPv4(239, 255, 42, 17)
	const port = 47017
	var conns []*ipv4.PacketConn
	for _, h := range l.Hosts()[1:] {
		conns = append(conns, listenGroup(t, h, group, port))
	}
	token := []byte("netlab multicast " + l.ID())
	// Three copies: the test is about reaching every host, not about loss.
	sendGroup(t, l.Host(0), group, port, token, 3)
	for i, p := range conns {
		if err := receiveToken(p, token, 3*time.Second); err != nil {
			t.Errorf("host %d did not receive the datagram sent to %s: %v", i+1, group, err)
		}
	}
}

// TestLabsIsolated runs two labs with the same addresses at once: traffic
// of one never reaches the other.
func TestLabsIsolated(t *testing.T) {
	a, b := New(t, 2), New(t, 2)
	if a.ID() == b.ID() {
		t.Fatalf("two labs share the ID %s", a.ID())
	}
	group := net.IPv4(239, 255, 42, 18)
	const port = 47018
	inA := listenGroup(t, a.Host(1), group, port)
	inB := listenGroup(t, b.Host(1), group, port)
	token := []byte("lab " + a.ID())
	sendGroup(t, a.Host(0), group, port, token, 3)
	if err := receiveToken(inA, token, 3*time.Second); err != nil {
		t.Fatalf("lab A host 1: %v", err)
	}
	if err := receiveToken(inB, token, 300*time.Millisecond); err == nil {
		t.Fatal("lab B received a datagram sent in lab A")
	}
}

func TestDo(t *testing.T) {
	l := New(t, 2)
	rootNS, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(l.Host(1).NetnsPath(), &st); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("net:[%d]", st.Ino)
	for i := range 20 { // many times, so that several threads are used
		var inside string
		if err := l.Host(1).Do(func() error {
			var err error
			inside, err = os.Readlink("/proc/thread-self/ns/net")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if inside != want {
			t.Fatalf("round %d: Do ran in %s, want the host's namespace %s", i, inside, want)
		}
	}
	t.Run("error", func(t *testing.T) {
		sentinel := errors.New("fn failed")
		if err := l.Host(0).Do(func() error { return sentinel }); !errors.Is(err, sentinel) {
			t.Fatalf("Do returned %v, want fn's error", err)
		}
	})
	t.Run("panic", func(t *testing.T) {
		defer func() {
			if r := recover(); r != "boom" {
				t.Fatalf("recovered %v, want the panic of fn", r)
			}
		}()
		l.Host(0).Do(func() error { panic("boom") })
	})
	// Threads that ran Do went back: none of this process's threads is
	// left in a lab namespace.
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		ns, err := os.Readlink("/proc/self/task/" + task.Name() + "/ns/net")
		if err == nil && ns != rootNS {
			t.Errorf("thread %s is still in %s after Do returned", task.Name(), ns)
		}
	}
}

// TestLoss sends 10000 datagrams to a host with SetLoss(p) and checks the
// share dropped against the binomial distribution, and that nothing else
// is lost.
func TestLoss(t *testing.T) {
	l := New(t, 2)
	tx, rx := l.Host(0), l.Host(1)
	var conn *net.UDPConn
	if err := rx.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: rx.IP(), Port: 47019})
		if err != nil {
			return err
		}
		// Room for every datagram, so that only the rule drops any.
		raw, err := conn.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		raw.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20)
		})
		return serr
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var out *net.UDPConn
	if err := tx.Do(func() error {
		var err error
		out, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: rx.IP(), Port: 47019})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer out.Close()

	// send sends n datagrams and returns how many arrived. It stops
	// waiting once every datagram has either arrived or been counted by the
	// loss rule, or after five seconds.
	send := func(t *testing.T, n int) int {
		t.Helper()
		var got atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			buf := make([]byte, 256)
			for {
				select {
				case <-stop:
					return
				default:
				}
				conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
				if _, _, err := conn.ReadFromUDP(buf); err == nil {
					got.Add(1)
				}
			}
		})
		payload := make([]byte, 64)
		for i := range n {
			if _, err := out.Write(payload); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
			if i%200 == 199 {
				time.Sleep(time.Millisecond) // let the receiver keep up
			}
		}
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if got.Load()+int64(rx.Dropped(t)) >= int64(n) {
				break
			}
		}
		close(stop)
		wg.Wait()
		return int(got.Load())
	}

	for _, percent := range []int{1, 10, 50, 100} {
		t.Run(fmt.Sprintf("%d%%", percent), func(t *testing.T) {
			const n = 10000
			rx.SetLoss(t, percent)
			got := send(t, n)
			dropped := rx.Dropped(t)
			if got+int(dropped) != n {
				t.Fatalf("received %d + dropped by the rule %d = %d, sent %d: packets lost elsewhere", got, dropped, got+int(dropped), n)
			}
			p := float64(percent) / 100
			mean, sd := n*p, math.Sqrt(n*p*(1-p))
			if percent == 100 && dropped != n {
				t.Fatalf("dropped %d of %d at 100%%", dropped, n)
			}
			// Five standard deviations: a false failure once in ~3.5 million runs.
			if d := math.Abs(float64(dropped) - mean); d > 5*sd {
				t.Fatalf("dropped %d of %d at %d%%: expected %.0f ± %.0f (5 sd)", dropped, n, percent, mean, 5*sd)
			}
			t.Logf("%d%%: dropped %d of %d (expected %.0f ± %.0f)", percent, dropped, n, mean, sd)
		})
	}
	t.Run("off", func(t *testing.T) {
		rx.SetLoss(t, 0)
		if got := send(t, 2000); got != 2000 {
			t.Fatalf("with SetLoss(0) received %d of 2000", got)
		}
		if out := rx.Run(t, "nft", "list", "tables"); strings.Contains(out, lossTable) {
			t.Fatalf("SetLoss(0) left the table behind:\n%s", out)
		}
	})
}

// TestCleanup checks that a lab leaves nothing behind: namespaces, links,
// processes started in it (and their children), and that the root
// namespace's links and routes are exactly as before.
func TestCleanup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: netlab needs root; run the tests as root (CI does)")
	}
	before := snapshot(t)
	var id string
	var sleeper *exec.Cmd
	var childPID int
	var inodes map[uint64]bool
	t.Run("lab", func(t *testing.T) {
		l := New(t, 3)
		id = l.ID()
		inodes = l.inodes()
		if len(inodes) != 4 {
			t.Fatalf("lab recorded %d namespaces, want 4", len(inodes))
		}
		during := snapshot(t)
		for _, line := range strings.Split(during.links+during.routes, "\n") {
			if strings.Contains(line, id) || strings.Contains(line, "198.18.") {
				t.Errorf("the root namespace shows lab state: %s", line)
			}
		}
		if n := strings.Count(during.netns, id); n != 4 {
			t.Errorf("ip netns list shows %d namespaces of the lab, want 4:\n%s", n, during.netns)
		}
		for _, f := range ipv6Sysctls {
			if v := strings.TrimSpace(l.Host(0).Run(t, "cat", f)); v != "1" {
				t.Errorf("inside host 0, %s = %s, want 1", f, v)
			}
		}
		sleeper = l.Host(1).Command(context.Background(), "sleep", "300")
		if err := sleeper.Start(); err != nil {
			t.Fatal(err)
		}
		// A grandchild: a shell that starts sleep in the background and
		// prints its PID.
		out := l.Host(2).Command(context.Background(), "sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!")
		b, err := out.Output()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fmt.Sscan(string(b), &childPID); err != nil {
			t.Fatalf("child PID %q: %v", b, err)
		}
		if got := processesIn(inodes); len(got) != 2 {
			t.Fatalf("processes in the lab: %v, want the two sleeps", got)
		}
	})
	if id == "" {
		t.Fatal("the lab was not created")
	}
	// The started command was killed; its exit is ours to collect.
	done := make(chan error, 1)
	go func() { done <- sleeper.Wait() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "killed") {
			t.Errorf("sleep in the lab ended with %v, want killed", err)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("sleep %d started in the lab still runs after cleanup", sleeper.Process.Pid)
		sleeper.Process.Kill()
	}
	if pids := processesIn(inodes); len(pids) != 0 {
		t.Errorf("processes %v still in the lab's namespaces after cleanup", pids)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d/ns/net", childPID)); err == nil {
		t.Errorf("grandchild %d still exists after cleanup", childPID)
	}

	after := snapshot(t)
	if strings.Contains(after.netns, id) {
		t.Errorf("namespaces of lab %s left behind:\n%s", id, after.netns)
	}
	if ents, _ := os.ReadDir(netnsDir); len(ents) > 0 {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), id) {
				t.Errorf("%s/%s left behind", netnsDir, e.Name())
			}
		}
	}
	if _, err := os.Stat(stateDir + "/" + id); err == nil {
		t.Errorf("state file of lab %s left behind", id)
	}
	if strings.Contains(after.links, id) {
		t.Errorf("links of lab %s left in the root namespace:\n%s", id, after.links)
	}
	if before.sysctls != after.sysctls {
		t.Errorf("root namespace settings changed:\nbefore:\n%s\nafter:\n%s", before.sysctls, after.sysctls)
	}
	if before.routes != after.routes {
		t.Errorf("root routes changed:\nbefore:\n%s\nafter:\n%s", before.routes, after.routes)
	}
	// Links: every line of the lab's making carries its ID (checked above).
	// Links that other tests on this machine add or remove meanwhile are
	// whole lines present on one side only; a link present on both sides
	// must be unchanged.
	changed := func(a, b string) {
		names := func(s string) map[string]string {
			m := map[string]string{}
			for _, l := range strings.Split(s, "\n") {
				if f := strings.Fields(l); len(f) > 1 {
					m[strings.TrimSuffix(f[1], ":")] = l
				}
			}
			return m
		}
		ma, mb := names(a), names(b)
		for n, la := range ma {
			if lb, ok := mb[n]; ok && la != lb {
				t.Errorf("root link %s changed:\nbefore: %s\nafter:  %s", n, la, lb)
			}
		}
		for _, l := range missingFrom(b, a) {
			if _, ok := ma[strings.TrimSuffix(strings.Fields(l)[1], ":")]; !ok {
				t.Logf("a link appeared meanwhile (not the lab's): %s", l)
			}
		}
	}
	changed(before.links, after.links)
}

// TestReapStale checks that New removes the namespaces of a lab whose
// owner process is gone, and leaves those of a live owner alone.
func TestReapStale(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: netlab needs root; run the tests as root (CI does)")
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := startTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	mk := func(id string, pid int, start uint64) string {
		ns := id + "-h0"
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v: %s", ns, err, out)
		}
		t.Cleanup(func() {
			if _, err := os.Stat(netnsDir + "/" + ns); err == nil {
				exec.Command("ip", "netns", "del", ns).Run()
			}
			os.Remove(stateDir + "/" + id)
		})
		content := fmt.Sprintf("owner %d %d\nnetns %s\n", pid, start, ns)
		if err := os.WriteFile(stateDir+"/"+id, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return ns
	}
	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	suffix := hex.EncodeToString(rnd[:])
	staleNS := mk(prefix+"s"+suffix[1:], dead.Process.Pid, 1)
	liveNS := mk(prefix+"l"+suffix[1:], os.Getpid(), self)

	New(t, 1)
	if _, err := os.Stat(netnsDir + "/" + staleNS); err == nil {
		t.Errorf("namespace %s of a lab whose owner is gone was not removed", staleNS)
	}
	if _, err := os.Stat(netnsDir + "/" + liveNS); err != nil {
		t.Errorf("namespace %s of a lab whose owner lives was removed: %v", liveNS, err)
	}
}
