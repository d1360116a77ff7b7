//go:build linux

package transfer_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/diskcast/diskcast/core/image"
	"github.com/diskcast/diskcast/core/internal/netlab"
	"github.com/diskcast/diskcast/core/internal/testenv"
	"github.com/diskcast/diskcast/core/restore"
)

// These tests run diskcast send and receive, the built binary with its
// plugin processes, in network namespaces joined by an isolated bridge
// (core/internal/netlab): host 0 sends, the others receive.

var diskcastBin string

func TestMain(m *testing.M) {
	code := testenv.RunWithDiskcast(m, &diskcastBin)
	if imageDir != "" {
		os.RemoveAll(imageDir)
	}
	os.Exit(code)
}

const key = "5ca1ab1e0ddba11c0ffee00000000000d15c0ca5700000000000000000000001"

// testImage is an ext4 filesystem of 128 MiB holding about 70 MB of files,
// a third of them incompressible, and its diskcast image.
type testImage struct{ src, dci string }

var (
	imageOnce sync.Once
	imageDir  string
	shared    testImage
)

func makeImage(t *testing.T) testImage {
	t.Helper()
	testenv.RequireCommands(t, "mkfs.ext4")
	imageOnce.Do(func() {
		var err error
		if imageDir, err = os.MkdirTemp("", "diskcast-transfer-image-"); err != nil {
			t.Fatal(err)
		}
		files := filepath.Join(imageDir, "files")
		testenv.FillTree(t, files, 200, 7)
		if err := os.WriteFile(filepath.Join(files, "random.bin"), testenv.Garbage(32<<20, 3), 0o644); err != nil {
			t.Fatal(err)
		}
		// Machine code, so that receivers also decode zstd+x86 chunks.
		exe, err := os.ReadFile(diskcastBin)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(files, "diskcast"), exe, 0o755); err != nil {
			t.Fatal(err)
		}
		shared.src = filepath.Join(imageDir, "src.img")
		testenv.MkfsExt4(t, shared.src, 128<<20, files)
		os.RemoveAll(files)
		shared.dci = filepath.Join(imageDir, "src.dci")
		if out, err := exec.Command(diskcastBin, "capture", shared.src, shared.dci).CombinedOutput(); err != nil {
			t.Fatalf("capture: %v\n%s", err, out)
		}
		f, err := image.Open(shared.dci)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if !slices.ContainsFunc(f.Index.Chunks, func(c image.Chunk) bool { return c.Codec == image.CodecZstdX86 }) {
			t.Fatal("the test image has no zstd+x86 chunks")
		}
	})
	if shared.dci == "" {
		t.Fatal("the test image could not be made (see the first test's failure)")
	}
	return shared
}

// proc is a diskcast process in a lab host.
type proc struct {
	cmd  *exec.Cmd
	out  testenv.Buffer // stdout and stderr
	json testenv.Buffer // stdout
	done chan error
}

func start(t *testing.T, h *netlab.Host, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: h.Command(context.Background(), diskcastBin, args...), done: make(chan error, 1)}
	p.cmd.Stdout, p.cmd.Stderr = io.MultiWriter(&p.out, &p.json), &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait waits for the process; it fails the test on a timeout.
func (p *proc) wait(t *testing.T, limit time.Duration) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(limit):
		p.cmd.Process.Kill()
		t.Fatalf("%s still running after %v:\n%s", strings.Join(p.cmd.Args, " "), limit, p.out.String())
		return nil
	}
}

func (p *proc) mustSucceed(t *testing.T, limit time.Duration) {
	t.Helper()
	if err := p.wait(t, limit); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(p.cmd.Args, " "), err, p.out.String())
	}
}

// summary returns the JSON summary line (event sent or received).
func (p *proc) summary(t *testing.T) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(p.json.String()))
	for {
		var m map[string]any
		if dec.Decode(&m) != nil {
			break
		}
		if m["event"] == "sent" || m["event"] == "received" {
			return m
		}
	}
	t.Fatalf("no summary in the output:\n%s", p.out.String())
	return nil
}

func counter(m map[string]any, name string) int64 {
	c, _ := m["counters"].(map[string]any)
	f, _ := c[name].(float64)
	return int64(f)
}

func sendArgs(h *netlab.Host, img testImage, group string, extra ...string) []string {
	return append([]string{"send", "--json", "--interface", h.Iface(), "--group", group, "--session-key", key}, append(extra, img.dci)...)
}

func receiveArgs(h *netlab.Host, target, group string, extra ...string) []string {
	return append([]string{"receive", "--json", "--interface", h.Iface(), "--group", group, "--session-key", key, "--target", target}, extra...)
}

func checkTarget(t *testing.T, img testImage, target string) {
	t.Helper()
	if off := testenv.FilesEqual(t, img.src, target); off >= 0 {
		t.Errorf("%s differs from the source at byte %d", target, off)
	}
}

// TestSendReceive runs one sender and three receivers with the losses,
// joins and failures an operator meets.
func TestSendReceive(t *testing.T) {
	img := makeImage(t)
	lab := netlab.New(t, 4)
	sender, receivers := lab.Host(0), lab.Hosts()[1:]
	const group = "239.192.80.1:42000"

	run := func(t *testing.T, senderExtra []string, before func(targets []string)) []*proc {
		dir := t.TempDir()
		targets := make([]string, len(receivers))
		for i := range targets {
			targets[i] = filepath.Join(dir, fmt.Sprintf("target%d.img", i+1))
		}
		if before != nil {
			before(targets)
		}
		s := start(t, sender, sendArgs(sender, img, group, append([]string{"--min-receivers", "3", "--max-wait", "20s"}, senderExtra...)...)...)
		var rs []*proc
		for i, h := range receivers {
			rs = append(rs, start(t, h, receiveArgs(h, targets[i], group)...))
		}
		for _, r := range rs {
			r.mustSucceed(t, 90*time.Second)
		}
		s.mustSucceed(t, 30*time.Second)
		for _, target := range targets {
			checkTarget(t, img, target)
		}
		sum := s.summary(t)
		t.Logf("sender: %v receivers, %v complete, %.2f s, %v bytes, %v resent", sum["receivers"], sum["completed"], sum["seconds"], sum["bytes"], sum["retransmitted_bytes"])
		if sum["completed"] != float64(len(receivers)) {
			t.Errorf("sender reports %v of %d receivers complete", sum["completed"], len(receivers))
		}
		return rs
	}

	t.Run("three receivers", func(t *testing.T) {
		rs := run(t, nil, nil)
		for _, r := range rs {
			s := r.summary(t)
			if s["chunks"].(float64) == 0 {
				t.Errorf("receiver wrote no chunks: %v", s)
			}
			// The transport plugin, a child of diskcast, hands every
			// chunk over in shared memory, none in gRPC messages.
			c, _ := s["counters"].(map[string]any)
			shared, _ := c["chunks_shared_memory"].(float64)
			if shared < s["chunks"].(float64) || c["chunks_inline"] != 0.0 {
				t.Errorf("chunks in shared memory / inline: %v / %v, want %v / 0", c["chunks_shared_memory"], c["chunks_inline"], s["chunks"])
			}
		}
	})
	for _, loss := range []int{1, 5} {
		t.Run(fmt.Sprintf("%d%% loss on one receiver", loss), func(t *testing.T) {
			receivers[0].SetLoss(t, loss)
			defer receivers[0].SetLoss(t, 0)
			rs := run(t, nil, nil)
			if receivers[0].Dropped(t) == 0 {
				t.Error("the loss rule dropped nothing")
			}
			lossy, clean := rs[0].summary(t), rs[1].summary(t)
			t.Logf("lossy receiver: %.2f s, %v packets lost; clean receiver: %.2f s", lossy["seconds"], lossy["lost_packets"], clean["seconds"])
		})
	}
	t.Run("straggler repaired over HTTP", func(t *testing.T) {
		// Receiver 1 loses 30% of its packets: the sender cuts it off
		// and it fetches what it misses from the sender's HTTP server,
		// while the others go on at their pace.
		receivers[0].SetLoss(t, 30)
		defer receivers[0].SetLoss(t, 0)
		dir := t.TempDir()
		addr := net.JoinHostPort(sender.IP().String(), "18081")
		s := start(t, sender, sendArgs(sender, img, group, "--min-receivers", "3", "--rate", "160M", "--straggler-budget", "0.02", "--http", addr)...)
		var rs []*proc
		for i, h := range receivers {
			rs = append(rs, start(t, h, receiveArgs(h, filepath.Join(dir, fmt.Sprint(i)), group, "--repair-from", "http://"+addr)...))
		}
		for _, r := range rs {
			r.mustSucceed(t, 90*time.Second)
		}
		s.mustSucceed(t, 30*time.Second)
		for i := range rs {
			checkTarget(t, img, filepath.Join(dir, fmt.Sprint(i)))
		}
		slow, fast := rs[0].summary(t), rs[1].summary(t)
		t.Logf("straggler: %.2f s, %v chunks repaired; others: %.2f s", slow["seconds"], slow["repaired_chunks"], fast["seconds"])
		if slow["repaired_chunks"].(float64) == 0 || counter(slow, "cut_off") != 1 {
			t.Errorf("the straggler was not cut off and repaired: %v", slow)
		}
		if sum := s.summary(t); counter(sum, "cut_off") != 1 {
			t.Errorf("sender: %v", sum)
		}
	})
	t.Run("late joiner", func(t *testing.T) {
		dir := t.TempDir()
		s := start(t, sender, sendArgs(sender, img, group, "--min-receivers", "2", "--rate", "96M")...)
		var rs []*proc
		for i, h := range receivers[:2] {
			rs = append(rs, start(t, h, receiveArgs(h, filepath.Join(dir, fmt.Sprint(i)), group)...))
		}
		time.Sleep(2 * time.Second)
		late := start(t, receivers[2], receiveArgs(receivers[2], filepath.Join(dir, "late"), group)...)
		for _, r := range append(rs, late) {
			r.mustSucceed(t, 90*time.Second)
		}
		s.mustSucceed(t, 30*time.Second)
		for _, name := range []string{"0", "1", "late"} {
			checkTarget(t, img, filepath.Join(dir, name))
		}
	})
	t.Run("receiver killed and restarted", func(t *testing.T) {
		dir := t.TempDir()
		target := filepath.Join(dir, "target.img")
		s := start(t, sender, sendArgs(sender, img, group, "--min-receivers", "1", "--rate", "40M")...)
		other := start(t, receivers[1], receiveArgs(receivers[1], filepath.Join(dir, "other.img"), group)...)
		victim := start(t, receivers[0], receiveArgs(receivers[0], target, group)...)
		// The journal appears at the first checkpoint.
		waitFor(t, 30*time.Second, func() bool { _, err := os.Stat(restore.DefaultJournal(target)); return err == nil })
		victim.cmd.Process.Signal(syscall.SIGKILL)
		victim.wait(t, 10*time.Second)
		again := start(t, receivers[0], receiveArgs(receivers[0], target, group)...)
		again.mustSucceed(t, 90*time.Second)
		other.mustSucceed(t, 90*time.Second)
		s.mustSucceed(t, 30*time.Second)
		checkTarget(t, img, target)
		checkTarget(t, img, filepath.Join(dir, "other.img"))
		if sum := again.summary(t); sum["resumed_chunks"].(float64) == 0 {
			t.Errorf("the restarted receiver resumed nothing: %v\n%s", sum, again.out.String())
		}
	})
	t.Run("sender killed and restarted", func(t *testing.T) {
		dir := t.TempDir()
		args := sendArgs(sender, img, group, "--min-receivers", "2", "--rate", "48M")
		s := start(t, sender, args...)
		var rs []*proc
		for i, h := range receivers[:2] {
			rs = append(rs, start(t, h, receiveArgs(h, filepath.Join(dir, fmt.Sprint(i)), group)...))
		}
		time.Sleep(3 * time.Second)
		s.cmd.Process.Signal(syscall.SIGKILL)
		s.wait(t, 10*time.Second)
		time.Sleep(time.Second)
		s2 := start(t, sender, args...)
		for _, r := range rs {
			r.mustSucceed(t, 90*time.Second)
		}
		s2.mustSucceed(t, 30*time.Second)
		for i, r := range rs {
			checkTarget(t, img, filepath.Join(dir, fmt.Sprint(i)))
			if n := counter(r.summary(t), "sender_restarts"); n == 0 {
				t.Errorf("receiver %d saw no sender restart", i)
			}
		}
	})
}

// TestTwoSessionsAndForgery runs two sessions at once, the second on the
// same group and port as the first but with its own key, while a host
// sends forged packets to the group: every receiver gets its own image,
// and counts the other session's packets as strays and the forged ones.
func TestTwoSessionsAndForgery(t *testing.T) {
	img := makeImage(t)
	other := testImage{src: filepath.Join(t.TempDir(), "other.img")}
	testenv.MkfsExt4(t, other.src, 48<<20, "")
	other.dci = other.src + ".dci"
	if out, err := exec.Command(diskcastBin, "capture", other.src, other.dci).CombinedOutput(); err != nil {
		t.Fatalf("capture: %v\n%s", err, out)
	}
	lab := netlab.New(t, 5)
	const group = "239.192.80.2:42100"
	const otherKey = "0ddba11000000000000000000000000000000000000000000000000000000002"
	dir := t.TempDir()

	// Session 1 has a known ID, so the forger can pick its packets.
	const id1 = 4242
	s1 := start(t, lab.Host(0), sendArgs(lab.Host(0), img, group, "--min-receivers", "2", "--rate", "160M", "--session-id", fmt.Sprint(id1))...)
	s2 := start(t, lab.Host(1), "send", "--json", "--interface", lab.Host(1).Iface(), "--group", group, "--session-key", otherKey, "--min-receivers", "1", "--rate", "160M", other.dci)
	r1 := start(t, lab.Host(2), receiveArgs(lab.Host(2), filepath.Join(dir, "a1"), group, "--session-id", fmt.Sprint(id1))...)
	r2 := start(t, lab.Host(3), receiveArgs(lab.Host(3), filepath.Join(dir, "a2"), group, "--session-id", fmt.Sprint(id1))...)
	r3 := start(t, lab.Host(4), "receive", "--json", "--interface", lab.Host(4).Iface(), "--group", group, "--session-key", otherKey, "--target", filepath.Join(dir, "b1"))

	// Host 1 forges packets: copies of a real packet of the first session
	// with a byte changed (their tag no longer matches), and garbage
	// after the protocol's magic.
	stop := make(chan struct{})
	var forger sync.WaitGroup
	forger.Go(func() {
		dst, _ := net.ResolveUDPAddr("udp4", group)
		var listen, conn *net.UDPConn
		err := lab.Host(1).Do(func() error {
			ifi, err := net.InterfaceByName(lab.Host(1).Iface())
			if err != nil {
				return err
			}
			if listen, err = net.ListenMulticastUDP("udp4", ifi, dst); err != nil {
				return err
			}
			conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: lab.Host(1).IP()})
			return err
		})
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		// A packet of session 1 (its ID is at bytes 8-15, docs/PROTOCOL.md).
		buf := make([]byte, 9000)
		listen.SetReadDeadline(time.Now().Add(30 * time.Second))
		var real []byte
		for real == nil {
			n, _, err := listen.ReadFromUDP(buf)
			if err != nil {
				listen.Close()
				t.Errorf("forger: no packet of session 1 to copy: %v", err)
				return
			}
			if n > 16 && binary.LittleEndian.Uint64(buf[8:16]) == id1 {
				real = buf[:n]
			}
		}
		listen.Close()
		garbage := append([]byte("DCMC"), testenv.Garbage(1200, 9)...)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			real[len(real)-1-i%16] ^= 0x5a
			conn.WriteToUDP(real, dst)
			garbage[5] = byte(i)
			conn.WriteToUDP(garbage, dst)
		}
	})
	for _, r := range []*proc{r1, r2, r3} {
		r.mustSucceed(t, 120*time.Second)
	}
	close(stop)
	forger.Wait()
	s1.mustSucceed(t, 30*time.Second)
	s2.mustSucceed(t, 30*time.Second)
	checkTarget(t, img, filepath.Join(dir, "a1"))
	checkTarget(t, img, filepath.Join(dir, "a2"))
	checkTarget(t, other, filepath.Join(dir, "b1"))
	for i, r := range []*proc{r1, r2} {
		sum := r.summary(t)
		t.Logf("receiver %d: strays %d, forged %d, malformed %d", i, counter(sum, "strays"), counter(sum, "forged"), counter(sum, "malformed"))
		if counter(sum, "strays") == 0 {
			t.Errorf("receiver %d counted no packet of the other session as a stray", i)
		}
		if counter(sum, "forged") == 0 || counter(sum, "malformed") == 0 {
			t.Errorf("receiver %d did not count the forged packets and the garbage", i)
		}
	}
}

// TestReceiveFromHTTP fetches the image from the sender's HTTP server
// alone, and checks that a receiver refuses a target that is too small
// before it writes anything.
func TestReceiveFromHTTP(t *testing.T) {
	img := makeImage(t)
	lab := netlab.New(t, 2)
	const group = "239.192.80.3:42200"
	addr := net.JoinHostPort(lab.Host(0).IP().String(), "18080")
	s := start(t, lab.Host(0), sendArgs(lab.Host(0), img, group, "--http", addr, "--idle-timeout", "10s")...)
	time.Sleep(500 * time.Millisecond)
	dir := t.TempDir()
	target := filepath.Join(dir, "target.img")
	r := start(t, lab.Host(1), "receive", "--json", "--from", "http://"+addr, "--target", target)
	r.mustSucceed(t, 60*time.Second)
	checkTarget(t, img, target)

	small := filepath.Join(dir, "small")
	if err := os.WriteFile(small, nil, 0o644); err != nil || os.Truncate(small, 16<<20) != nil {
		t.Fatal("make the small target file")
	}
	loop := testenv.LoopDevice(t, small)
	tooSmall := start(t, lab.Host(1), "receive", "--from", "http://"+addr, "--target", loop)
	if err := tooSmall.wait(t, 30*time.Second); err == nil || !strings.Contains(tooSmall.out.String(), "too small") {
		t.Errorf("a 16 MiB target for a 128 MiB image: %v\n%s", err, tooSmall.out.String())
	}
	s.cmd.Process.Signal(syscall.SIGINT)
	s.wait(t, 20*time.Second)
}

func waitFor(t *testing.T, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
