package orchestrator_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diskcast/diskcast/core/capture"
	"github.com/diskcast/diskcast/core/config"
	"github.com/diskcast/diskcast/core/image"
	"github.com/diskcast/diskcast/core/internal/testenv"
	"github.com/diskcast/diskcast/core/orchestrator"
)

// makeImage captures a small ext4 filesystem made by mkfs.ext4.
func makeImage(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	testenv.FillTree(t, filepath.Join(dir, "tree"), 12, 3)
	src := filepath.Join(dir, "fs.img")
	testenv.MkfsExt4(t, src, 8<<20, filepath.Join(dir, "tree"))
	out := filepath.Join(dir, "golden.dci")
	if _, err := capture.Run(context.Background(), capture.Request{Source: src, Output: out,
		Options: capture.Options{Codec: image.CodecZstd, ChunkSize: 64 << 10}}); err != nil {
		t.Fatalf("capture: %v", err)
	}
	return out
}

// env is a configuration directory with an image and a state dir.
type env struct {
	dir, img, state string
}

func newEnv(t *testing.T) *env {
	return &env{dir: t.TempDir(), img: makeImage(t), state: filepath.Join(t.TempDir(), "state")}
}

// load writes the configuration (server block with the state dir added)
// and loads it.
func (e *env) load(t *testing.T, server, rest string) *config.Config {
	t.Helper()
	text := fmt.Sprintf("server {\n  state_dir = %q\n%s\n}\nimage \"golden\" { path = %q }\n%s", e.state, server, e.img, rest)
	if err := os.WriteFile(filepath.Join(e.dir, "main.hcl"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, diags := config.LoadDir(e.dir)
	if diags.HasErrors() {
		t.Fatalf("config: %v", diags)
	}
	return cfg
}

func start(t *testing.T, cfg *config.Config, opts orchestrator.Options) *orchestrator.Orchestrator {
	t.Helper()
	if opts.Tick == 0 {
		opts.Tick = 20 * time.Millisecond
	}
	o, err := orchestrator.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

const threeNodes = `
node "pc001" { mac = "52:54:00:00:00:01" }
node "pc002" { mac = "52:54:00:00:00:02" }
node "pc003" { mac = "52:54:00:00:00:03" }
`

func mac(i int) string { return fmt.Sprintf("52:54:00:00:00:%02x", i) }

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func nodeState(t *testing.T, o *orchestrator.Orchestrator, session, node string) orchestrator.NodeRunStatus {
	t.Helper()
	st, err := o.Session(session)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range st.Nodes {
		if n.Name == node {
			return n
		}
	}
	t.Fatalf("session %s has no node %s", session, node)
	return orchestrator.NodeRunStatus{}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLifecycle(t *testing.T) {
	e := newEnv(t)
	cfg := e.load(t, `multicast_pool = "239.192.5.0/24"
  ports = "42000-42099"`, threeNodes+`
session "lab" {
  image = "golden"
  nodes = ["pc[001-002]"]
  target = "/dev/vda"
  transport "http" {}
}`)
	o := start(t, cfg, orchestrator.Options{})
	events, stop := o.Subscribe("lab")
	defer stop()
	ctx := context.Background()

	st := must[*orchestrator.SessionStatus](t)(o.StartSession(ctx, "lab"))
	if st.State != orchestrator.SessionRunning || st.Run != 1 || st.Counts[orchestrator.StatePending] != 2 {
		t.Fatalf("after start: %+v", st)
	}
	group := netip.MustParseAddrPort(st.Transport.Group)
	if !netip.MustParsePrefix("239.192.5.0/24").Contains(group.Addr()) || group.Port() < 42000 || group.Port() > 42098 {
		t.Errorf("group %s outside the pool", group)
	}

	a := must[*orchestrator.Assignment](t)(o.Assign(ctx, "52-54-00-00-00-01", "198.18.0.11"))
	if a.Node != "pc001" || a.State != orchestrator.StateBooting || a.Target != "/dev/vda" || a.Session != "lab" || a.Run != 1 {
		t.Errorf("assignment: %+v", a)
	}
	if len(a.Token) != 64 || len(a.Transport.Key) != 64 || a.Transport.SessionID == 0 || a.Transport.Group != group.Addr().String() || a.Transport.Port != int(group.Port()) {
		t.Errorf("assignment secrets and group: %+v", a.Transport)
	}
	if a.Image.MetaURL != "/api/v1/images/golden/meta" || a.Image.Chunks < 2 || len(a.Image.ID) != 32 {
		t.Errorf("assignment image: %+v", a.Image)
	}
	// Asking again (an agent restarted) gives the same token and state.
	if again := must[*orchestrator.Assignment](t)(o.Assign(ctx, mac(1), "198.18.0.11")); again.Token != a.Token || again.State != orchestrator.StateBooting {
		t.Errorf("second assignment: %+v", again)
	}

	for _, p := range []orchestrator.Progress{
		{State: "receiving", Bytes: 0, Total: 1000},
		{State: "receiving", Bytes: 500, Total: 1000, Chunks: 5, ChunksTotal: 10},
		{State: "verifying", Bytes: 100, Total: 1000},
	} {
		ack := must[*orchestrator.Ack](t)(o.ReportProgress(ctx, a.Token, &p))
		if ack.State != p.State || ack.Node != "pc001" {
			t.Errorf("ack: %+v", ack)
		}
	}
	if n := nodeState(t, o, "lab", "pc001"); n.State != "verifying" || n.Bytes != 100 || n.Total != 1000 {
		t.Errorf("pc001 after progress: %+v", n)
	}
	must[*orchestrator.Ack](t)(o.ReportResult(ctx, a.Token, &orchestrator.Result{OK: true, Timings: map[string]float64{"receive": 1.5}}))
	// The same result again (an agent that lost the answer) is fine.
	must[*orchestrator.Ack](t)(o.ReportResult(ctx, a.Token, &orchestrator.Result{OK: true}))

	b := must[*orchestrator.Assignment](t)(o.Assign(ctx, mac(2), "198.18.0.12"))
	if b.Token == a.Token {
		t.Error("two nodes got the same token")
	}
	must[*orchestrator.Ack](t)(o.ReportResult(ctx, b.Token, &orchestrator.Result{OK: false, Error: "disk /dev/vda too small"}))

	st = must[*orchestrator.SessionStatus](t)(o.Session("lab"))
	if st.State != orchestrator.SessionFailed || !strings.Contains(st.Reason, "1 of 2 nodes failed") || !strings.Contains(st.Reason, "pc002: agent: disk /dev/vda too small") {
		t.Errorf("session after results: %s: %s", st.State, st.Reason)
	}
	if st.Transport.Group != "" {
		t.Errorf("ended session still holds group %s", st.Transport.Group)
	}
	if _, err := o.ReportProgress(ctx, b.Token, &orchestrator.Progress{State: "receiving"}); !errors.Is(err, orchestrator.ErrConflict) {
		t.Errorf("progress after the end: %v, want ErrConflict", err)
	}

	d := must[*orchestrator.NodeDetail](t)(o.Node("pc001", 0))
	var states []string
	for _, h := range d.History {
		states = append(states, h.State)
	}
	if want := []string{"pending", "booting", "receiving", "verifying", "done"}; !slices.Equal(states, want) {
		t.Errorf("pc001 history %v, want %v", states, want)
	}
	if last := d.History[len(d.History)-1]; last.Timings["receive"] != 1.5 || last.Session != "lab" || last.Run != 1 {
		t.Errorf("pc001 final history entry: %+v", last)
	}
	if d.LastAddr != "198.18.0.11" || d.State != "done" || d.Session != "lab" {
		t.Errorf("pc001 node: %+v", d.NodeStatus)
	}

	// Events: pc001's transitions in order, then the session's end.
	var got []string
	timeout := time.After(2 * time.Second)
	for !slices.Contains(got, "session:failed") {
		select {
		case ev := <-events:
			if ev.Type == orchestrator.EventNode && ev.Node == "pc001" || ev.Type == orchestrator.EventSession {
				got = append(got, ev.Type+":"+ev.Node+ev.State)
			}
		case <-timeout:
			t.Fatalf("events so far: %v", got)
		}
	}
	want := []string{"session:running", "node:pc001pending", "node:pc001booting", "node:pc001receiving", "node:pc001verifying", "node:pc001done", "session:failed"}
	if !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
}

func TestTimeouts(t *testing.T) {
	e := newEnv(t)
	cfg := e.load(t, "", threeNodes+`
session "lab" {
  image = "golden"
  nodes = ["pc001", "pc002", "pc003"]
  transport "http" {}
  timeouts {
    boot    = "2s"
    receive = "500ms"
    verify  = "500ms"
  }
}`)
	o := start(t, cfg, orchestrator.Options{})
	ctx := context.Background()
	must[*orchestrator.SessionStatus](t)(o.StartSession(ctx, "lab"))
	a2 := must[*orchestrator.Assignment](t)(o.Assign(ctx, mac(2), ""))
	must[*orchestrator.Ack](t)(o.ReportProgress(ctx, a2.Token, &orchestrator.Progress{State: "receiving", Bytes: 7, Total: 100}))
	a3 := must[*orchestrator.Assignment](t)(o.Assign(ctx, mac(3), ""))
	must[*orchestrator.Ack](t)(o.ReportProgress(ctx, a3.Token, &orchestrator.Progress{State: "verifying"}))
	waitFor(t, "the session to fail", func() bool {
		st, _ := o.Session("lab")
		return st.State == orchestrator.SessionFailed
	})
	for node, want := range map[string]string{
		"pc001": "boot timeout: no progress from the agent within 2s",
		"pc002": "receive timeout: not received within 500ms (7 of 100 bytes)",
		"pc003": "verify timeout: not verified within 500ms",
	} {
		if n := nodeState(t, o, "lab", node); n.State != "failed" || !strings.HasPrefix(n.Reason, want) {
			t.Errorf("%s: %s %q, want failed %q", node, n.State, n.Reason, want)
		}
	}
}

func TestRetryAfterFailure(t *testing.T) {
	e := newEnv(t)
	cfg := e.load(t, "", threeNodes+`
session "lab" {
  image = "golden"
  nodes = ["pc001", "pc002"]
  transport "http" {}
}`)
	o := start(t, cfg, orchestrator.Options{})
	ctx := context.Background()
	must[*orchestrator.SessionStatus](t)(o.StartSession(ctx, "lab"))
	a := must[*orchestrator.Assignment](t)(o.Assign(ctx, mac(1), ""))
	must[*orchestrator.Ack](t)(o.ReportResult(ctx, a.Token, &orchestrator.Result{Error: "checksum mismatch in chunk 3"}))
	if _, err := o.ReportProgress(ctx, a.Token, &orchestrator.Progress{State: "receiving"}); !errors.Is(err, orchestrator.ErrConflict) {
		t.Errorf("progress from a failed node: %v, want ErrConflict", err)
	}
	// pc002 still works, so the session runs and pc001 may retry.
	a = must[*orchestrator.Assignment](t)(o.Assign(ctx, mac(1), ""))
	if n := nodeState(t, o, "lab", "pc001"); n.State != "booting" || n.Reason != "retry after: agent: checksum mismatch in chunk 3" {
		t.Errorf("after retry: %+v", n)
	}
	must[*orchestrator.Ack](t)(o.ReportResult(ctx, a.Token, &orchestrator.Result{OK: true}))
	b := must[*orchestrator.Assignment](t)(o.Assign(ctx, mac(2), ""))
	must[*orchestrator.Ack](t)(o.ReportResult(ctx, b.Token, &orchestrator.Result{OK: true}))
	if st := must[*orchestrator.SessionStatus](t)(o.Session("lab")); st.State != orchestrator.SessionDone || st.Reason != "" {
		t.Errorf("session: %s %q", st.State, st.Reason)
	}
	if _, err := o.Assign(ctx, mac(1), ""); !errors.Is(err, orchestrator.ErrNotFound) {
		t.Errorf("assignment after the end: %v, want ErrNotFound", err)
	}
}

func TestCancelAndRestart(t *testing.T) {
	e := newEnv(t)
	cfg := e.load(t, "", threeNodes+`
session "lab" {
  image = "golden"
  nodes = ["pc001", "pc002"]
  transport "http" {}
}`)
	o := start(t, cfg, orchestrator.Options{})
	ctx := context.Background()
	must[*orchestrator.SessionStatus](t)(o.StartSession(ctx, "lab"))
	if _, err := o.StartSession(ctx, "lab"); !errors.Is(err, orchestrator.ErrConflict) {
		t.Errorf("second start: %v, want ErrConflict", err)
	}
	a := must[*orchestrator.Assignment](t)(o.Assign(ctx, mac(1), ""))
	must[*orchestrator.Ack](t)(o.ReportProgress(ctx, a.Token, &orchestrator.Progress{State: "receiving", Bytes: 1, Total: 2}))
	st := must[*orchestrator.SessionStatus](t)(o.CancelSession(ctx, "lab", "wrong image"))
	if st.State != orchestrator.SessionCancelled || st.Counts["failed"] != 2 || st.Nodes[0].Reason != "cancelled: wrong image" {
		t.Errorf("after cancel: %+v", st)
	}
	if _, err := o.CancelSession(ctx, "lab", ""); !errors.Is(err, orchestrator.ErrConflict) {
		t.Errorf("second cancel: %v, want ErrConflict", err)
	}
	if _, err := o.ReportProgress(ctx, a.Token, &orchestrator.Progress{State: "receiving", Bytes: 2, Total: 2}); !errors.Is(err, orchestrator.ErrConflict) || !strings.Contains(err.Error(), "cancelled") {
		t.Errorf("progress after cancel: %v", err)
	}
	st = must[*orchestrator.SessionStatus](t)(o.StartSession(ctx, "lab"))
	if st.Run != 2 || st.Counts["pending"] != 2 {
		t.Errorf("restart: %+v", st)
	}
	if _, err := o.ReportProgress(ctx, a.Token, &orchestrator.Progress{State: "receiving"}); !errors.Is(err, orchestrator.ErrUnauthorized) {
		t.Errorf("token of run 1 in run 2: %v, want ErrUnauthorized", err)
	}
	if b := must[*orchestrator.Assignment](t)(o.Assign(ctx, mac(1), "")); b.Token == a.Token || b.Run != 2 {
		t.Errorf("run 2 assignment: run %d, token reused %v", b.Run, b.Token == a.Token)
	}
}

func TestConflictsAndPool(t *testing.T) {
	e := newEnv(t)
	var nodes, sessions strings.Builder
	for i := 1; i <= 4; i++ {
		fmt.Fprintf(&nodes, "node \"n%d\" { mac = %q }\n", i, mac(i))
		fmt.Fprintf(&sessions, "session \"s%d\" {\n image = \"golden\"\n nodes = [\"n%d\"]\n transport \"http\" {}\n}\n", i, i)
	}
	sessions.WriteString("session \"overlap\" {\n image = \"golden\"\n nodes = [\"n1\", \"n4\"]\n transport \"http\" {}\n}\n")
	sessions.WriteString("session \"mc\" {\n image = \"golden\"\n nodes = [\"n4\"]\n}\n")
	// Two groups and three port pairs: the third session finds no group.
	cfg := e.load(t, `multicast_pool = "239.192.9.0/31"
  ports = "41000-41005"`, nodes.String()+sessions.String())
	o := start(t, cfg, orchestrator.Options{})
	ctx := context.Background()
	s1 := must[*orchestrator.SessionStatus](t)(o.StartSession(ctx, "s1"))
	s2 := must[*orchestrator.SessionStatus](t)(o.StartSession(ctx, "s2"))
	g1, g2 := netip.MustParseAddrPort(s1.Transport.Group), netip.MustParseAddrPort(s2.Transport.Group)
	if g1.Addr() == g2.Addr() || g1.Port() == g2.Port() || g1.Port()+1 == g2.Port() {
		t.Errorf("sessions share a group or port: %s and %s", g1, g2)
	}
	tests := []struct {
		session string
		want    error
		msg     string
	}{
		{"overlap", orchestrator.ErrConflict, `node "n1" is in running session "s1"`},
		{"s3", orchestrator.ErrPool, "pool 239.192.9.0/31"},
		{"mc", orchestrator.ErrTransport, `transport "multicast", which this daemon does not provide`},
		{"nope", orchestrator.ErrNotFound, `no session "nope"`},
	}
	for _, tc := range tests {
		t.Run(tc.session, func(t *testing.T) {
			_, err := o.StartSession(ctx, tc.session)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("start: %v, want %v with %q", err, tc.want, tc.msg)
			}
		})
	}
	// Ending s1 frees its group for s3.
	must[*orchestrator.SessionStatus](t)(o.CancelSession(ctx, "s1", ""))
	s3 := must[*orchestrator.SessionStatus](t)(o.StartSession(ctx, "s3"))
	if s3.Transport.Group != s1.Transport.Group {
		t.Errorf("s3 got %s, want the freed %s", s3.Transport.Group, s1.Transport.Group)
	}
}

// recordingDeployer is a Deployer that sends nothing and records what it
// was asked, to check what a transport receives from the orchestrator.
type recordingDeployer struct {
	mu    sync.Mutex
	specs []*orchestrator.SessionSpec
	runs  []*recordingRun
}

type recordingRun struct {
	once sync.Once
	done chan struct{}
	err  error
}

func (d *recordingDeployer) Start(_ context.Context, s *orchestrator.SessionSpec) (orchestrator.Running, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := &recordingRun{done: make(chan struct{})}
	d.specs = append(d.specs, s)
	d.runs = append(d.runs, r)
	return r, nil
}

func (r *recordingRun) Stats() orchestrator.DeployStats {
	return orchestrator.DeployStats{BytesSent: 1000, BytesRetransmitted: 10, Receivers: 1}
}
func (r *recordingRun) Params() map[string]string { return map[string]string{"interface": "eth9"} }
func (r *recordingRun) Stop()                     { r.once.Do(func() { close(r.done) }) }
func (r *recordingRun) Done() <-chan struct{}     { return r.done }
func (r *recordingRun) Err() error                { return r.err }
func (r *recordingRun) fail(err error)            { r.once.Do(func() { r.err = err; close(r.done) }) }

func TestDeployerContract(t *testing.T) {
	e := newEnv(t)
	cfg := e.load(t, `interface = "eth9"`, threeNodes+`
session "mc" {
  image = "golden"
  nodes = ["pc001", "pc002"]
  transport "multicast" {
    rate          = "800M"
    min_receivers = 2
    min_wait      = "5s"
    max_wait      = "1m"
  }
}`)
	dep := &recordingDeployer{}
	o := start(t, cfg, orchestrator.Options{Deployers: map[string]orchestrator.Deployer{"multicast": dep}})
	ctx := context.Background()
	st := must[*orchestrator.SessionStatus](t)(o.StartSession(ctx, "mc"))
	spec := dep.specs[0]
	img, err := image.Open(e.img)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	h, ix, tr := img.Meta()
	if spec.Session != "mc" || spec.Run != 1 || spec.ImagePath != e.img || spec.ImageID != img.Header.ID.String() ||
		spec.Chunks != len(img.Index.Chunks) || string(spec.Meta) != string(h)+string(ix)+string(tr) {
		t.Errorf("spec image: %+v", spec)
	}
	if spec.Group.String() != st.Transport.Group || len(spec.Key) != 32 || spec.SessionID == 0 || spec.RateBytes != 100e6 ||
		spec.MinReceivers != 2 || spec.MinWait != 5*time.Second || spec.MaxWait != time.Minute || spec.Interface != "eth9" ||
		!slices.Equal(spec.Nodes, []string{"pc001", "pc002"}) {
		t.Errorf("spec transport: %+v", spec)
	}
	a := must[*orchestrator.Assignment](t)(o.Assign(ctx, mac(1), ""))
	if a.Transport.Kind != "multicast" || a.Transport.Key != hex.EncodeToString(spec.Key) || a.Transport.SessionID != spec.SessionID ||
		a.Transport.Params["interface"] != "eth9" || a.Transport.RateBytes != 100e6 {
		t.Errorf("assignment transport: %+v", a.Transport)
	}
	if st := must[*orchestrator.SessionStatus](t)(o.Session("mc")); st.Deploy == nil || st.Deploy.BytesSent != 1000 {
		t.Errorf("deploy stats: %+v", st.Deploy)
	}
	// The transport dies: the unfinished nodes fail with its error.
	dep.runs[0].fail(errors.New("sendmmsg: network is unreachable"))
	waitFor(t, "the session to fail", func() bool {
		st, _ := o.Session("mc")
		return st.State == orchestrator.SessionFailed
	})
	if n := nodeState(t, o, "mc", "pc002"); n.Reason != "transport failed: sendmmsg: network is unreachable" {
		t.Errorf("pc002: %+v", n)
	}
}

func TestRecoverAfterRestart(t *testing.T) {
	e := newEnv(t)
	cfg := e.load(t, "", threeNodes+`
session "mc" {
  image = "golden"
  nodes = ["pc001", "pc002"]
}`)
	dep := &recordingDeployer{}
	opts := orchestrator.Options{Deployers: map[string]orchestrator.Deployer{"multicast": dep}, Tick: 20 * time.Millisecond}
	o, err := orchestrator.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	before := must[*orchestrator.SessionStatus](t)(o.StartSession(ctx, "mc"))
	a := must[*orchestrator.Assignment](t)(o.Assign(ctx, mac(1), ""))
	must[*orchestrator.Ack](t)(o.ReportProgress(ctx, a.Token, &orchestrator.Progress{State: "receiving", Bytes: 40, Total: 100}))
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-dep.runs[0].done:
	default:
		t.Error("Close did not stop the transport")
	}

	o = start(t, e.load(t, "", threeNodes+`
session "mc" {
  image = "golden"
  nodes = ["pc001", "pc002"]
}`), opts)
	after := must[*orchestrator.SessionStatus](t)(o.Session("mc"))
	if after.State != orchestrator.SessionRunning || after.Run != before.Run || after.Transport.Group != before.Transport.Group {
		t.Fatalf("after restart: %s run %d group %s; before: run %d group %s", after.State, after.Run, after.Transport.Group, before.Run, before.Transport.Group)
	}
	if len(dep.specs) != 2 || string(dep.specs[1].Key) != string(dep.specs[0].Key) || dep.specs[1].SessionID != dep.specs[0].SessionID {
		t.Errorf("the transport was not restarted with the same key and session ID")
	}
	if n := nodeState(t, o, "mc", "pc001"); n.State != "receiving" || n.Bytes != 40 {
		t.Errorf("pc001 after restart: %+v", n)
	}
	// The old token still works and the node carries on.
	must[*orchestrator.Ack](t)(o.ReportProgress(ctx, a.Token, &orchestrator.Progress{State: "receiving", Bytes: 100, Total: 100}))
	must[*orchestrator.Ack](t)(o.ReportResult(ctx, a.Token, &orchestrator.Result{OK: true}))
	if n := nodeState(t, o, "mc", "pc001"); n.State != "done" {
		t.Errorf("pc001: %+v", n)
	}
}

func TestDiscoveryEnrollAndConfigMerge(t *testing.T) {
	e := newEnv(t)
	cfg := e.load(t, "", `node "pc001" { mac = "52:54:00:00:00:01" }`)
	o, err := orchestrator.New(cfg, orchestrator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err = o.Assign(ctx, "52:54:00:AA:00:07", "198.18.0.50")
	if !errors.Is(err, orchestrator.ErrNotFound) || !strings.Contains(err.Error(), `discovered node "discovered-525400aa0007"`) {
		t.Fatalf("unknown MAC: %v", err)
	}
	var found bool
	for _, n := range o.Nodes() {
		if n.Name == "discovered-525400aa0007" && n.Origin == "discovered" && n.LastAddr == "198.18.0.50" {
			found = true
		}
	}
	if !found {
		t.Fatalf("discovered node not listed: %+v", o.Nodes())
	}
	if _, err := o.CreateNode(&orchestrator.NodeRequest{Name: "pc001", MAC: mac(9)}); !errors.Is(err, orchestrator.ErrConflict) {
		t.Errorf("duplicate name: %v", err)
	}
	if _, err := o.CreateNode(&orchestrator.NodeRequest{Name: "pc009", MAC: mac(1)}); !errors.Is(err, orchestrator.ErrConflict) {
		t.Errorf("MAC of a configured node: %v", err)
	}
	n := must[*orchestrator.NodeStatus](t)(o.CreateNode(&orchestrator.NodeRequest{Name: "pc050", MAC: "52:54:00:aa:00:07", Disk: "/dev/nvme0n1"}))
	if n.Origin != "api" || n.LastAddr != "198.18.0.50" {
		t.Errorf("enrolled: %+v", n)
	}
	if _, err := o.Node("discovered-525400aa0007", 0); !errors.Is(err, orchestrator.ErrNotFound) {
		t.Errorf("discovered record kept after enrolment: %v", err)
	}
	if err := o.DeleteNode("pc001"); !errors.Is(err, orchestrator.ErrConflict) {
		t.Errorf("delete configured node: %v", err)
	}
	o.Close()

	// The configuration now defines the node: it becomes a configured node.
	cfg = e.load(t, "", `node "pc001" { mac = "52:54:00:00:00:01" }
node "lab50" { mac = "52:54:00:aa:00:07" }`)
	o = start(t, cfg, orchestrator.Options{})
	var names []string
	for _, n := range o.Nodes() {
		names = append(names, n.Name+"/"+n.Origin)
	}
	if want := []string{"lab50/config", "pc001/config"}; !slices.Equal(names, want) {
		t.Errorf("nodes %v, want %v", names, want)
	}
}

func TestCreateSessionValidation(t *testing.T) {
	e := newEnv(t)
	o := start(t, e.load(t, "", threeNodes+`node_group "row" { nodes = ["pc001"] }`), orchestrator.Options{})
	type tr = struct {
		Kind         string `json:"kind"`
		Rate         string `json:"rate"`
		MinReceivers int    `json:"min_receivers"`
		MinWait      string `json:"min_wait"`
		MaxWait      string `json:"max_wait"`
	}
	tests := []struct {
		name string
		req  orchestrator.SessionRequest
		msg  string
	}{
		{"bad name", orchestrator.SessionRequest{Name: "a b", Image: "golden", Nodes: []string{"pc001"}}, `name "a b"`},
		{"no image", orchestrator.SessionRequest{Name: "x", Nodes: []string{"pc001"}}, "image is required (configured images: golden)"},
		{"unknown image", orchestrator.SessionRequest{Name: "x", Image: "silver", Nodes: []string{"pc001"}}, `image "silver" is not configured`},
		{"no nodes", orchestrator.SessionRequest{Name: "x", Image: "golden"}, "a session needs nodes"},
		{"bad range", orchestrator.SessionRequest{Name: "x", Image: "golden", Nodes: []string{"pc[9-1]"}}, "nodes:"},
		{"unknown group", orchestrator.SessionRequest{Name: "x", Image: "golden", Groups: []string{"row-z"}}, `no node_group "row-z"`},
		{"relative target", orchestrator.SessionRequest{Name: "x", Image: "golden", Nodes: []string{"pc001"}, Target: "sda"}, `target "sda"`},
		{"bad after", orchestrator.SessionRequest{Name: "x", Image: "golden", Nodes: []string{"pc001"}, After: "explode"}, `after "explode"`},
		{"bad kind", orchestrator.SessionRequest{Name: "x", Image: "golden", Nodes: []string{"pc001"}, Transport: &tr{Kind: "carrier-pigeon"}}, `transport.kind "carrier-pigeon"`},
		{"bad rate", orchestrator.SessionRequest{Name: "x", Image: "golden", Nodes: []string{"pc001"}, Transport: &tr{Rate: "fast"}}, `transport.rate "fast"`},
		{"bad wait", orchestrator.SessionRequest{Name: "x", Image: "golden", Nodes: []string{"pc001"}, Transport: &tr{MinWait: "2m", MaxWait: "1m"}}, "min_wait 2m0s is longer than max_wait 1m0s"},
		{"negative receivers", orchestrator.SessionRequest{Name: "x", Image: "golden", Nodes: []string{"pc001"}, Transport: &tr{MinReceivers: -1}}, "min_receivers -1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := o.CreateSession(&tc.req)
			if !errors.Is(err, orchestrator.ErrInvalid) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("got %v, want ErrInvalid with %q", err, tc.msg)
			}
		})
	}
	st := must[*orchestrator.SessionStatus](t)(o.CreateSession(&orchestrator.SessionRequest{Name: "adhoc", Image: "golden", Nodes: []string{"pc[002-003]"}, Groups: []string{"row"},
		Transport: &tr{Kind: "http"}}))
	if !slices.Equal(st.Members, []string{"pc002", "pc003", "pc001"}) || st.Origin != "api" || st.State != "idle" || st.Target != "/dev/sda" {
		t.Errorf("created: %+v", st)
	}
	if _, err := o.CreateSession(&orchestrator.SessionRequest{Name: "adhoc", Image: "golden", Nodes: []string{"pc001"}}); !errors.Is(err, orchestrator.ErrConflict) {
		t.Errorf("duplicate: %v", err)
	}
	if err := o.DeleteSession("adhoc"); err != nil {
		t.Errorf("delete: %v", err)
	}
}

func TestAutostartOnlyOnce(t *testing.T) {
	e := newEnv(t)
	text := threeNodes + `
session "boot" {
  image     = "golden"
  nodes     = ["pc001"]
  autostart = true
  transport "http" {}
}`
	o, err := orchestrator.New(e.load(t, "", text), orchestrator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if st := must[*orchestrator.SessionStatus](t)(o.Session("boot")); st.State != orchestrator.SessionRunning || st.Run != 1 {
		t.Fatalf("autostart: %s run %d", st.State, st.Run)
	}
	must[*orchestrator.SessionStatus](t)(o.CancelSession(context.Background(), "boot", ""))
	o.Close()
	o = start(t, e.load(t, "", text), orchestrator.Options{})
	if st := must[*orchestrator.SessionStatus](t)(o.Session("boot")); st.State != orchestrator.SessionCancelled || st.Run != 1 {
		t.Errorf("after restart: %s run %d; a session that ran must not start again by itself", st.State, st.Run)
	}
}

func TestImageProblems(t *testing.T) {
	e := newEnv(t)
	cfg := e.load(t, "", threeNodes+`
image "gone" { path = "/nonexistent/x.dci" }
session "lab" {
  image = "gone"
  nodes = ["pc001"]
  transport "http" {}
}`)
	o := start(t, cfg, orchestrator.Options{})
	infos := o.Images()
	if len(infos) != 2 || infos[0].Name != "golden" || infos[0].Error != "" || infos[0].Chunks < 2 || !strings.Contains(infos[1].Error, "no such file") {
		t.Errorf("images: %+v", infos)
	}
	if _, err := o.StartSession(context.Background(), "lab"); !errors.Is(err, orchestrator.ErrImage) || !strings.Contains(err.Error(), "/nonexistent/x.dci") {
		t.Errorf("start with a missing image: %v", err)
	}
}
