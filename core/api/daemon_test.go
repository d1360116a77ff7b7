package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/diskcast/diskcast/core/api"
	"github.com/diskcast/diskcast/core/internal/testenv"
	"github.com/diskcast/diskcast/core/orchestrator"
)

// The daemon tests run the real diskcast binary. TestMain starts building
// it while the in-process tests run; fuzzing never needs it.
var (
	diskcastBin string
	buildErr    error
	buildOnce   sync.Once
)

func build() {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "diskcast-api-test-")
		if err != nil {
			buildErr = err
			return
		}
		diskcastBin = filepath.Join(dir, "diskcast")
		out, err := exec.Command("go", "build", "-o", diskcastBin, "github.com/diskcast/diskcast/core/cmd/diskcast").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build core/cmd/diskcast: %v\n%s", err, out)
		}
	})
}

func TestMain(m *testing.M) {
	flag.Parse()
	building := make(chan struct{})
	if f := flag.Lookup("test.fuzz"); f == nil || f.Value.String() == "" {
		go func() { build(); close(building) }()
	} else {
		close(building)
	}
	code := m.Run()
	<-building
	if diskcastBin != "" {
		os.RemoveAll(filepath.Dir(diskcastBin))
	}
	os.Exit(code)
}

func needBinary(t *testing.T) {
	t.Helper()
	build()
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// syncBuffer is a bytes.Buffer safe for a process writing while the test
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type daemon struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	exited         chan struct{}
	err            error
}

// startDaemon runs `diskcast serve -config dir` and waits until /healthz
// answers on url.
func startDaemon(t *testing.T, dir, url string) *daemon {
	t.Helper()
	needBinary(t)
	d := &daemon{cmd: exec.Command(diskcastBin, "serve", "-config", dir), stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan struct{})}
	d.cmd.Stdout, d.cmd.Stderr = d.stdout, d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() { d.kill() })
	c := &api.Client{BaseURL: url}
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.Health(ctx)
		cancel()
		if err == nil {
			return d
		}
		select {
		case <-d.exited:
			t.Fatalf("daemon exited: %v\nstdout:\n%s\nstderr:\n%s", d.err, d.stdout, d.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon did not answer /healthz: %v\nstderr:\n%s", err, d.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends SIGKILL and waits for the process.
func (d *daemon) kill() {
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.exited
}

// jsonLogs parses the daemon's JSON log lines.
func jsonLogs(t *testing.T, stderr string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(stderr))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("log line is not JSON: %q", line)
			continue
		}
		out = append(out, m)
	}
	return out
}

func hasLog(logs []map[string]any, msg string, kv ...string) bool {
	for _, l := range logs {
		if l["@message"] != msg {
			continue
		}
		ok := true
		for i := 0; i+1 < len(kv); i += 2 {
			if fmt.Sprint(l[kv[i]]) != kv[i+1] {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// TestDaemonCrashRecovery kills the daemon with SIGKILL in the middle of
// a session and checks that a new daemon on the same state dir carries
// on: sessions, nodes and history are back, the agents' tokens still
// work, and the interrupted agents finish (one resuming from its restore
// journal) with disks identical to a local restore.
func TestDaemonCrashRecovery(t *testing.T) {
	needBinary(t)
	fx := makeFixture(t, 1)
	port := freePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	state := filepath.Join(t.TempDir(), "state")
	dir := writeConfig(t, fmt.Sprintf(`  listen     = "127.0.0.1:%d"
  state_dir  = %q
  log_format = "json"
  multicast_pool = "239.192.44.0/28"
  auth { token = %q }`, port, state, adminToken), fmt.Sprintf("image \"golden\" { path = %q }\n", fx.img)+fourNodes+`
session "lab" {
  image = "golden"
  nodes = ["pc[001-003]"]
  transport "http" {}
}
session "auto" {
  image     = "golden"
  nodes     = ["pc004"]
  autostart = true
  transport "http" {}
}`)
	d := startDaemon(t, dir, url)
	ctx := context.Background()
	admin := &api.Client{BaseURL: url, Token: adminToken}
	anon := &api.Client{BaseURL: url}

	// Configuration wiring: nodes, images, sessions; autostart ran.
	nodes, err := anon.Nodes(ctx)
	if err != nil || len(nodes) != 4 || nodes[3].Name != "pc004" || nodes[3].MAC != mac(4) || nodes[3].Origin != "config" {
		t.Fatalf("nodes: %+v %v", nodes, err)
	}
	imgs, err := anon.Images(ctx)
	if err != nil || len(imgs) != 1 || imgs[0].Path != fx.img || imgs[0].Error != "" {
		t.Fatalf("images: %+v %v", imgs, err)
	}
	auto, err := anon.Session(ctx, "auto")
	if err != nil || auto.State != "running" || auto.Run != 1 {
		t.Fatalf("autostart session: %+v %v", auto, err)
	}
	before, err := admin.StartSession(ctx, "lab")
	if err != nil {
		t.Fatal(err)
	}

	disks := t.TempDir()
	agents := make([]*agent, 4)
	for i := range agents {
		target := filepath.Join(disks, fmt.Sprintf("pc%03d.img", i+1))
		agents[i] = &agent{c: anon, mac: mac(i + 1), target: target, journal: target + ".journal"}
	}
	if _, err := agents[0].run(ctx, 0); err != nil {
		t.Fatalf("pc001: %v", err)
	}
	half := imgs[0].Chunks / 2
	a2, err := agents[1].run(ctx, half)
	if err != nil {
		t.Fatalf("pc002: %v", err)
	}
	a3, err := anon.Assignment(ctx, mac(3))
	if err != nil {
		t.Fatal(err)
	}
	// Let the once-a-tick progress write happen, as it would in a real
	// session, so pc002's byte count is in the store too.
	time.Sleep(2500 * time.Millisecond)

	d.kill()
	if ws, ok := d.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("daemon did not die by SIGKILL: %v", d.cmd.ProcessState)
	}
	if _, err := anon.Health(ctx); err == nil {
		t.Fatal("daemon still answers after SIGKILL")
	}

	d = startDaemon(t, dir, url)
	after, err := anon.Session(ctx, "lab")
	if err != nil {
		t.Fatal(err)
	}
	if after.State != "running" || after.Run != before.Run || after.Transport.Group != before.Transport.Group || after.ImageID != before.ImageID {
		t.Fatalf("lab after restart: %s run %d group %s; before: run %d group %s", after.State, after.Run, after.Transport.Group, before.Run, before.Transport.Group)
	}
	states := map[string]string{}
	for _, n := range after.Nodes {
		states[n.Name] = n.State
		if n.Name == "pc002" && n.Bytes == 0 {
			t.Errorf("pc002's progress was lost: %+v", n)
		}
	}
	if states["pc001"] != "done" || states["pc002"] != "receiving" || states["pc003"] != "booting" {
		t.Errorf("node states after restart: %v", states)
	}
	if auto, err := anon.Session(ctx, "auto"); err != nil || auto.State != "running" || auto.Run != 1 {
		t.Errorf("autostart session after restart: %s run %d (must be recovered, not started again) %v", auto.State, auto.Run, err)
	}
	hist, err := anon.Node(ctx, "pc001", 0)
	if err != nil {
		t.Fatal(err)
	}
	var hs []string
	for _, h := range hist.History {
		hs = append(hs, h.State)
	}
	if strings.Join(hs, " ") != "pending booting receiving verifying done" {
		t.Errorf("pc001 history after restart: %v", hs)
	}
	logs := jsonLogs(t, d.stderr.String())
	if !hasLog(logs, "session recovered", "session", "lab", "run", "1") {
		t.Errorf("no JSON log of the recovery in:\n%s", d.stderr)
	}

	// The agents carry on with the tokens they had.
	if _, err := anon.WithToken(a3.Token).Progress(ctx, &orchestrator.Progress{State: "booting"}); err != nil {
		t.Errorf("pc003's token after restart: %v", err)
	}
	if _, err := agents[1].run(ctx, 0); err != nil {
		t.Fatalf("pc002 after restart: %v", err)
	}
	if agents[1].resumed != half || agents[1].fetched != a2.Image.Chunks-half {
		t.Errorf("pc002 resumed %d chunks and fetched %d; want %d and %d", agents[1].resumed, agents[1].fetched, half, a2.Image.Chunks-half)
	}
	if _, err := agents[2].run(ctx, 0); err != nil {
		t.Fatalf("pc003 after restart: %v", err)
	}
	st, err := anon.Session(ctx, "lab")
	if err != nil || st.State != "done" {
		t.Fatalf("lab: %+v %v", st, err)
	}
	for i := range 3 {
		if off := testenv.FilesEqual(t, fx.want, agents[i].target); off >= 0 {
			t.Errorf("pc%03d differs from the local restore at byte %d", i+1, off)
		}
	}

	// A clean stop (SIGTERM) exits 0.
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		if d.err != nil {
			t.Errorf("daemon exit after SIGTERM: %v\n%s", d.err, d.stderr)
		}
	case <-time.After(10 * time.Second):
		t.Error("daemon did not stop on SIGTERM")
	}
}

func TestServeBadConfig(t *testing.T) {
	needBinary(t)
	dir := writeConfig(t, `  listen = "localhost"
  log_format = "xml"`, `session "s" {
  image = "nope"
  nodes = ["pc001"]
}`)
	cmd := exec.Command(diskcastBin, "serve", "-config", dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v, want 1\n%s", err, stderr.String())
	}
	for _, want := range []string{"main.hcl line 2", "Invalid listen address", "main.hcl line 3", "Invalid log format", "main.hcl line 6", "Unknown image", "3 error(s) in the configuration"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
}

// TestCLIAgainstDaemon drives the daemon with the diskcast CLI: the
// daemon generates its token, the CLI finds it through -config, and
// `session watch` follows a session to its end.
func TestCLIAgainstDaemon(t *testing.T) {
	needBinary(t)
	fx := makeFixture(t, 1)
	port := freePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	state := filepath.Join(t.TempDir(), "state")
	dir := writeConfig(t, fmt.Sprintf("  listen = \"127.0.0.1:%d\"\n  state_dir = %q", port, state),
		fmt.Sprintf("image \"golden\" { path = %q }\n", fx.img)+fourNodes+`
session "lab" {
  image = "golden"
  nodes = ["pc001", "pc002"]
  transport "http" {}
}`)
	d := startDaemon(t, dir, url)
	if !strings.Contains(d.stderr.String(), "generated an API token") {
		t.Errorf("daemon did not say it generated a token:\n%s", d.stderr)
	}
	if st, err := os.Stat(filepath.Join(state, api.TokenFileName)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", st, err)
	}
	cli := func(args ...string) (int, string, string) {
		cmd := exec.Command(diskcastBin, args...)
		cmd.Env = append(os.Environ(), "DISKCAST_SERVER=", "DISKCAST_TOKEN=", "DISKCAST_TOKEN_FILE=")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, out.String(), errb.String()
	}
	if code, out, errs := cli("images", "-config", dir); code != 0 || !strings.Contains(out, "golden") || !strings.Contains(out, "partition") {
		t.Errorf("images: %d\n%s%s", code, out, errs)
	}
	if code, out, errs := cli("session", "start", "lab", "-server", url); code != 1 || !strings.Contains(errs, "needs the API token") {
		t.Errorf("start without a token: %d\n%s%s", code, out, errs)
	}
	if code, out, errs := cli("session", "start", "lab", "-config", dir); code != 0 || !strings.Contains(out, "session lab: run 1 started") {
		t.Fatalf("start: %d\n%s%s", code, out, errs)
	}

	// Watch in the background while two agents restore.
	watch := exec.Command(diskcastBin, "session", "watch", "lab", "-config", dir, "-interval", "100ms")
	var wout, werr syncBuffer
	watch.Stdout, watch.Stderr = &wout, &werr
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	anon := &api.Client{BaseURL: url}
	// pc001 starts receiving; the watch shows it before the node goes on.
	a1, err := anon.Assignment(ctx, mac(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := anon.WithToken(a1.Token).Progress(ctx, &orchestrator.Progress{State: "receiving", Bytes: 1, Total: 100}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(wout.String(), "pc001: receiving"); {
		if time.Now().After(deadline) {
			t.Fatalf("watch does not show pc001 receiving:\n%s%s", wout.String(), werr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := (&agent{c: anon, mac: mac(1), target: filepath.Join(t.TempDir(), "d1")}).run(ctx, 0); err != nil {
		t.Fatal(err)
	}
	as, err := anon.Assignment(ctx, mac(2))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := anon.WithToken(as.Token).Result(ctx, &orchestrator.Result{Error: "no disk at /dev/sda"}); err != nil {
		t.Fatal(err)
	}
	werrc := make(chan error, 1)
	go func() { werrc <- watch.Wait() }()
	select {
	case err := <-werrc:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("watch of a failed session: %v, want exit 1", err)
		}
	case <-time.After(15 * time.Second):
		watch.Process.Kill()
		t.Fatalf("watch did not end:\n%s", wout.String())
	}
	out := wout.String()
	for _, want := range []string{"pc001: receiving", "pc001: done", "pc002: failed: agent: no disk at /dev/sda",
		"NODE", "1 done, 1 failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("watch output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("watch drew terminal escapes into a pipe:\n%q", out)
	}
	if !strings.Contains(werr.String(), "session lab failed (1 of 2 nodes failed)") {
		t.Errorf("watch error: %s", werr.String())
	}

	code, out, errs := cli("session", "status", "lab", "--json", "-config", dir)
	var st struct {
		State  string         `json:"state"`
		Counts map[string]int `json:"counts"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.State != "failed" || st.Counts["done"] != 1 {
		t.Errorf("status --json: %d %s %s", code, out, errs)
	}
	if code, out, errs := cli("nodes", "pc002", "-config", dir); code != 0 || !strings.Contains(out, "failed") || !strings.Contains(out, "agent: no disk at /dev/sda") {
		t.Errorf("nodes pc002: %d\n%s%s", code, out, errs)
	}
	if code, _, errs := cli("session", "cancel", "lab", "-config", dir); code != 1 || !strings.Contains(errs, `session "lab" is not running (it is failed)`) {
		t.Errorf("cancel a finished session: %d %s", code, errs)
	}
}
