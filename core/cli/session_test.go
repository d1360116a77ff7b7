package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diskcast/diskcast/core/api"
	"github.com/diskcast/diskcast/core/config"
	"github.com/diskcast/diskcast/core/orchestrator"
)

const testToken = "cli-test-token-0123456789abcdef"

// daemonFor runs an orchestrator and its API in process for the client
// commands, with one http session over two nodes.
func daemonFor(t *testing.T, img string) (*orchestrator.Orchestrator, string) {
	t.Helper()
	dir := t.TempDir()
	text := fmt.Sprintf(`server {
  state_dir = %q
  auth { token = %q }
}
image "golden" { path = %q }
node "pc001" { mac = "52:54:00:00:00:01" }
node "pc002" { mac = "52:54:00:00:00:02" }
session "lab" {
  image = "golden"
  nodes = ["pc001", "pc002"]
  transport "http" {}
}
`, filepath.Join(dir, "state"), testToken, img)
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, diags := config.LoadDir(dir)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	o, err := orchestrator.New(cfg, orchestrator.Options{Tick: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.NewServer(o, testToken, nil))
	t.Cleanup(func() { srv.Close(); o.Close() })
	return o, srv.URL
}

func TestSessionCommands(t *testing.T) {
	_, _, img := fixture(t)
	o, url := daemonFor(t, img)
	t.Setenv("DISKCAST_SERVER", url)
	t.Setenv("DISKCAST_TOKEN", testToken)
	ctx := context.Background()

	out := mustRun(t, "session", "list")
	if !strings.Contains(out, "lab") || !strings.Contains(out, "idle") {
		t.Errorf("list: %s", out)
	}
	if code, _, errs := run(t, "session", "watch", "lab"); code != 1 || !strings.Contains(errs, "has never been started") {
		t.Errorf("watch of an idle session: %d %s", code, errs)
	}
	if code, _, errs := run(t, "session", "start"); code != 2 || !strings.Contains(errs, "start needs a session NAME") {
		t.Errorf("start without a name: %d %s", code, errs)
	}
	if code, _, errs := run(t, "session", "frobnicate", "lab"); code != 2 || !strings.Contains(errs, `unknown action "frobnicate"`) {
		t.Errorf("unknown action: %d %s", code, errs)
	}
	out = mustRun(t, "session", "start", "lab")
	if !strings.Contains(out, "session lab: run 1 started") {
		t.Errorf("start: %s", out)
	}
	a, err := o.Assign(ctx, "52:54:00:00:00:01", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.ReportProgress(ctx, a.Token, &orchestrator.Progress{State: "receiving", Bytes: 250e6, Total: 1e9}); err != nil {
		t.Fatal(err)
	}
	out = mustRun(t, "session", "status", "lab")
	for _, want := range []string{"session lab: running, run 1", "pc001  receiving  250.0 MB / 1.00 GB  25%", "pc002  pending", "2 nodes: 1 receiving, 1 pending"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	out = mustRun(t, "nodes")
	if !strings.Contains(out, "pc001  52:54:00:00:00:01  config  lab#1    receiving") {
		t.Errorf("nodes:\n%s", out)
	}
	var imgs []orchestrator.ImageInfo
	if err := json.Unmarshal([]byte(mustRun(t, "images", "--json")), &imgs); err != nil || len(imgs) != 1 || imgs[0].Chunks < 2 {
		t.Errorf("images --json: %+v %v", imgs, err)
	}

	// watch --json prints one status per refresh until the run ends.
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(300 * time.Millisecond)
		o.ReportResult(ctx, a.Token, &orchestrator.Result{OK: true})
		b, _ := o.Assign(ctx, "52:54:00:00:00:02", "")
		o.ReportResult(ctx, b.Token, &orchestrator.Result{OK: true})
	}()
	code, out, errs := run(t, "session", "watch", "lab", "--json", "--interval", "50ms")
	<-done
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var first, last orchestrator.SessionStatus
	if code != 0 || len(lines) < 2 || json.Unmarshal([]byte(lines[0]), &first) != nil || json.Unmarshal([]byte(lines[len(lines)-1]), &last) != nil {
		t.Fatalf("watch --json: exit %d, %d lines\n%s%s", code, len(lines), out, errs)
	}
	if first.State != "running" || last.State != "done" || last.Counts["done"] != 2 {
		t.Errorf("watch --json: first %s, last %s %v", first.State, last.State, last.Counts)
	}

	wrong := filepath.Join(t.TempDir(), "token")
	os.WriteFile(wrong, []byte("not-the-right-token-000000\n"), 0o600)
	t.Setenv("DISKCAST_TOKEN", "")
	t.Setenv("DISKCAST_TOKEN_FILE", wrong)
	if code, _, errs := run(t, "session", "start", "lab"); code != 1 || !strings.Contains(errs, "the API token is wrong (HTTP 401)") {
		t.Errorf("start with a wrong token: %d %s", code, errs)
	}
}

func TestServeRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.hcl"), []byte("server {\n  ports = \"9-1\"\n}\n"), 0o644)
	code, _, errs := run(t, "serve", "-config", dir)
	if code != 1 || !strings.Contains(errs, "a.hcl line 2") || !strings.Contains(errs, "Invalid port range") || !strings.Contains(errs, "nothing was started") {
		t.Errorf("serve with a bad config: %d\n%s", code, errs)
	}
	if code, _, errs := run(t, "serve"); code != 2 || !strings.Contains(errs, "-config DIR is required") {
		t.Errorf("serve without -config: %d %s", code, errs)
	}
}
