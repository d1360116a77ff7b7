package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/diskcast/diskcast/core/agent"
	"github.com/diskcast/diskcast/core/internal/testenv"
)

var diskcastBin string

func TestMain(m *testing.M) { os.Exit(testenv.RunWithDiskcast(m, &diskcastBin)) }

func TestParseCmdline(t *testing.T) {
	cfg, found, err := agent.ParseCmdline("BOOT_IMAGE=/vmlinuz console=ttyS0 diskcast.server=http://198.18.0.1:7400 diskcast.mac=52:54:00:00:00:01 diskcast.interface=eth0 diskcast.t.dhcp=1.5 diskcast.t.kernel=3")
	if err != nil || !found {
		t.Fatal(found, err)
	}
	want := agent.Config{Server: "http://198.18.0.1:7400", MAC: "52:54:00:00:00:01", Interface: "eth0", BootTimings: map[string]float64{"dhcp": 1.5, "kernel": 3}}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got %+v", cfg)
	}
	if _, found, _ := agent.ParseCmdline("quiet splash root=/dev/sda1"); found {
		t.Error("a command line without diskcast parameters counts as the imaging environment")
	}
	if _, _, err := agent.ParseCmdline("diskcast.t.dhcp=soon"); err == nil {
		t.Error("a bad timing was accepted")
	}
}

// TestAgents runs the daemon and two agents on loopback: one node images
// its disk by multicast, the other cannot open its target and reports
// that, which fails it with the reason.
func TestAgents(t *testing.T) {
	testenv.RequireCommands(t, "mkfs.ext4")
	dir := t.TempDir()
	files := filepath.Join(dir, "files")
	testenv.FillTree(t, files, 40, 5)
	src := filepath.Join(dir, "src.img")
	testenv.MkfsExt4(t, src, 32<<20, files)
	if out, err := exec.Command(diskcastBin, "capture", src, filepath.Join(dir, "img.dci")).CombinedOutput(); err != nil {
		t.Fatalf("capture: %v\n%s", err, out)
	}
	conf := filepath.Join(dir, "test.hcl")
	os.WriteFile(conf, []byte(fmt.Sprintf(`
server {
  listen         = "127.0.0.1:7489"
  interface      = "lo"
  state_dir      = "%[1]s/state"
  multicast_pool = "239.192.98.0/28"
  ports          = "41200-41299"
}
image "img" { path = "%[1]s/img.dci" }
node "good" {
  mac  = "52:54:00:aa:00:01"
  disk = "%[1]s/good.img"
}
node "bad" {
  mac  = "52:54:00:aa:00:02"
  disk = "%[1]s/no/such/dir/bad.img"
}
session "s" {
  image     = "img"
  nodes     = ["good", "bad"]
  after     = "reboot"
  autostart = true
  transport "multicast" {
    min_receivers = 1
  }
}
`, dir)), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	serve := exec.CommandContext(ctx, diskcastBin, "serve", "-config", conf)
	var serveLog bytes.Buffer
	serve.Stdout, serve.Stderr = &serveLog, &serveLog
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		serve.Wait()
		if t.Failed() {
			t.Logf("daemon log:\n%s", serveLog.String())
		}
	}()
	run := func(mac string) (string, error) {
		cmd := exec.Command(diskcastBin, "agent", "--server", "http://127.0.0.1:7489", "--mac", mac, "--interface", "lo", "--once")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	var out string
	var err error
	for range 50 { // until the daemon listens
		if out, err = run("52:54:00:aa:00:01"); err == nil || !strings.Contains(out, "connection refused") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("good agent: %v\n%s", err, out)
	}
	if !strings.Contains(out, "would now reboot") || !strings.Contains(out, "by multicast") {
		t.Errorf("good agent output:\n%s", out)
	}
	if off := testenv.FilesEqual(t, src, filepath.Join(dir, "good.img")); off >= 0 {
		t.Errorf("good.img differs from the source at byte %d", off)
	}
	out, err = run("52:54:00:aa:00:02")
	if err == nil || !strings.Contains(out, "no such file or directory") {
		t.Errorf("bad agent: %v\n%s", err, out)
	}
	status, err := exec.Command(diskcastBin, "session", "status", "s", "-config", conf).CombinedOutput()
	if err != nil {
		t.Fatalf("session status: %v\n%s", err, status)
	}
	for _, want := range []string{"good", "done", "bad", "failed", "agent: ", "no such file or directory"} {
		if !strings.Contains(string(status), want) {
			t.Errorf("session status lacks %q:\n%s", want, status)
		}
	}
	// A node without work is told so.
	if out, err := run("52:54:00:aa:00:09"); err == nil || !strings.Contains(out, "no assignment") {
		t.Errorf("unknown node: %v\n%s", err, out)
	}
}

// TestTwoSessionsDaemonKilled runs two multicast sessions at once through
// the daemon, kills the daemon with SIGKILL in the middle and starts it
// again: it recovers both sessions, restarts their senders, and the
// agents' receivers carry on to identical disks.
func TestTwoSessionsDaemonKilled(t *testing.T) {
	testenv.RequireCommands(t, "mkfs.ext4")
	dir := t.TempDir()
	files := filepath.Join(dir, "files")
	testenv.FillTree(t, files, 120, 6)
	src := filepath.Join(dir, "src.img")
	testenv.MkfsExt4(t, src, 64<<20, files)
	if out, err := exec.Command(diskcastBin, "capture", src, filepath.Join(dir, "img.dci")).CombinedOutput(); err != nil {
		t.Fatalf("capture: %v\n%s", err, out)
	}
	conf := filepath.Join(dir, "test.hcl")
	body := fmt.Sprintf(`
server {
  listen         = "127.0.0.1:7488"
  interface      = "lo"
  state_dir      = "%[1]s/state"
  multicast_pool = "239.192.97.0/28"
  ports          = "41300-41399"
}
image "img" { path = "%[1]s/img.dci" }
`, dir)
	nodes := map[string]string{"a1": "52:54:00:bb:00:01", "a2": "52:54:00:bb:00:02", "b1": "52:54:00:bb:00:03"}
	for name, mac := range nodes {
		body += fmt.Sprintf("node %q {\n  mac = %q\n  disk = \"%s/%s.img\"\n}\n", name, mac, dir, name)
	}
	for _, sess := range []struct{ name, nodes string }{{"sa", `["a1", "a2"]`}, {"sb", `["b1"]`}} {
		body += fmt.Sprintf(`session %q {
  image     = "img"
  nodes     = %s
  after     = "stay"
  autostart = true
  transport "multicast" {
    rate          = "40M"
    min_receivers = 1
  }
}
`, sess.name, sess.nodes)
	}
	os.WriteFile(conf, []byte(body), 0o644)

	var serveLog testenv.Buffer
	daemon := func() *exec.Cmd {
		cmd := exec.Command(diskcastBin, "serve", "-config", conf)
		cmd.Stdout, cmd.Stderr = &serveLog, &serveLog
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	d := daemon()
	defer func() {
		d.Process.Kill()
		d.Wait()
		if t.Failed() {
			t.Logf("daemon log:\n%s", serveLog.String())
		}
	}()
	type result struct {
		name string
		out  []byte
		err  error
	}
	results := make(chan result, len(nodes))
	for name, mac := range nodes {
		go func() {
			cmd := exec.Command(diskcastBin, "agent", "--server", "http://127.0.0.1:7488", "--mac", mac, "--interface", "lo", "--retry", "500ms")
			out, err := cmd.CombinedOutput()
			results <- result{name, out, err}
		}()
	}
	// Kill the daemon once every node is receiving.
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, _ := exec.Command(diskcastBin, "nodes", "-config", conf).CombinedOutput()
		if strings.Count(string(out), "receiving") == len(nodes) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes never all receiving:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.Process.Signal(syscall.SIGKILL)
	d.Wait()
	time.Sleep(500 * time.Millisecond)
	d = daemon()
	for range nodes {
		select {
		case r := <-results:
			if r.err != nil {
				t.Errorf("agent %s: %v\n%s", r.name, r.err, r.out)
			}
		case <-time.After(120 * time.Second):
			t.Fatal("agents still running after 120 s")
		}
	}
	for name := range nodes {
		if off := testenv.FilesEqual(t, src, filepath.Join(dir, name+".img")); off >= 0 {
			t.Errorf("%s.img differs from the source at byte %d", name, off)
		}
	}
	if n := strings.Count(serveLog.String(), "session recovered"); n != 2 {
		t.Errorf("the restarted daemon recovered %d sessions, want 2", n)
	}
	for _, sess := range []string{"sa", "sb"} {
		out, err := exec.Command(diskcastBin, "session", "status", sess, "-config", conf).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "done") {
			t.Errorf("session %s: %v\n%s", sess, err, out)
		}
	}
}

// TestDemo runs the README's first command's script (make demo) with a
// smaller source tree: capture, a daemon, three agents, identical disks.
func TestDemo(t *testing.T) {
	testenv.RequireCommands(t, "mkfs.ext4", "mkfs.vfat", "mcopy", "sfdisk")
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Skip("go env GOROOT:", err)
	}
	cmd := exec.Command("bash", "../../scripts/demo.sh")
	cmd.Env = append(os.Environ(), "DISKCAST="+diskcastBin, "DEMO_SOURCE="+filepath.Join(strings.TrimSpace(string(goroot)), "src", "net"), "TMPDIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("each disk identical to the source")) {
		t.Fatalf("demo: %v\n%s", err, out)
	}
}
