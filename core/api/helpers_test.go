package api_test

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/diskcast/diskcast/core/api"
	"github.com/diskcast/diskcast/core/capture"
	"github.com/diskcast/diskcast/core/config"
	"github.com/diskcast/diskcast/core/image"
	"github.com/diskcast/diskcast/core/internal/testenv"
	"github.com/diskcast/diskcast/core/orchestrator"
	"github.com/diskcast/diskcast/core/restore"
)

const adminToken = "admin-token-for-tests-0123456789"

// fixture is a source filesystem made by mkfs.ext4, its image, and the
// result of restoring that image locally (what every node must end with).
type fixture struct {
	src, img, want string
}

func makeFixture(t testing.TB, seed uint64) fixture {
	t.Helper()
	dir := t.TempDir()
	testenv.FillTree(t, filepath.Join(dir, "tree"), 12, seed)
	f := fixture{src: filepath.Join(dir, "fs.img"), img: filepath.Join(dir, "img.dci"), want: filepath.Join(dir, "want.img")}
	testenv.MkfsExt4(t, f.src, 8<<20, filepath.Join(dir, "tree"))
	if _, err := capture.Run(context.Background(), capture.Request{Source: f.src, Output: f.img,
		Options: capture.Options{Codec: image.CodecZstd, ChunkSize: 64 << 10}}); err != nil {
		t.Fatalf("capture: %v", err)
	}
	img, err := image.Open(f.img)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if _, err := restore.Run(context.Background(), img.Reader, f.want, restore.Options{}); err != nil {
		t.Fatalf("local restore: %v", err)
	}
	return f
}

// harness is an orchestrator and its API on a loopback test server.
type harness struct {
	o     *orchestrator.Orchestrator
	url   string
	admin *api.Client
	anon  *api.Client
	fx    fixture
	fx2   fixture // a second, different image ("silver"), when asked for
}

// writeConfig writes main.hcl with the given server block lines and
// the rest of the file into a new directory.
func writeConfig(t testing.TB, server, rest string) string {
	t.Helper()
	dir := t.TempDir()
	text := fmt.Sprintf("server {\n%s\n}\n%s", server, rest)
	if err := os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func newHarness(t testing.TB, two bool, rest string) *harness {
	t.Helper()
	h := &harness{fx: makeFixture(t, 1)}
	images := fmt.Sprintf("image \"golden\" { path = %q }\n", h.fx.img)
	if two {
		h.fx2 = makeFixture(t, 2)
		images += fmt.Sprintf("image \"silver\" { path = %q }\n", h.fx2.img)
	}
	dir := writeConfig(t, fmt.Sprintf("  state_dir = %q\n  auth { token = %q }", filepath.Join(t.TempDir(), "state"), adminToken), images+rest)
	cfg, diags := config.LoadDir(dir)
	if diags.HasErrors() {
		t.Fatalf("config: %v", diags)
	}
	o, err := orchestrator.New(cfg, orchestrator.Options{Tick: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	token, _, _, err := api.LoadToken(cfg.Server)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.NewServer(o, token, nil))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		o.Close()
	})
	h.o, h.url = o, srv.URL
	h.admin = &api.Client{BaseURL: srv.URL, Token: adminToken}
	h.anon = &api.Client{BaseURL: srv.URL}
	return h
}

const fourNodes = `
node "pc001" { mac = "52:54:00:00:00:01" }
node "pc002" { mac = "52:54:00:00:00:02" }
node "pc003" { mac = "52:54:00:00:00:03" }
node "pc004" { mac = "52:54:00:00:00:04" }
`

func mac(i int) string { return fmt.Sprintf("52:54:00:00:00:%02x", i) }

// agent plays a node's agent over the API with the http transport: it
// asks for its assignment, fetches the metadata, restores every chunk it
// does not have yet (per its journal) onto target, reports progress and
// the result. stopAfter > 0 stops after that many chunks, checkpointing
// the journal, as a node that lost power would.
type agent struct {
	c       *api.Client
	mac     string
	target  string
	journal string
	// after run: chunks the journal said were written, chunks fetched
	resumed, fetched int
}

func (a *agent) run(ctx context.Context, stopAfter int) (*orchestrator.Assignment, error) {
	a.resumed, a.fetched = 0, 0
	as, err := a.c.Assignment(ctx, a.mac)
	if err != nil {
		return nil, fmt.Errorf("assignment: %w", err)
	}
	ac := a.c.WithToken(as.Token)
	meta, err := ac.ImageMeta(ctx, as.Image.Name)
	if err != nil {
		return as, fmt.Errorf("meta: %w", err)
	}
	if meta.Header.ID.String() != as.Image.ID {
		return as, fmt.Errorf("meta is of image %s, assignment says %s", meta.Header.ID, as.Image.ID)
	}
	tgt, err := restore.OpenTarget(a.target, meta)
	if err != nil {
		return as, err
	}
	defer tgt.Close()
	if a.journal != "" {
		if a.resumed, err = tgt.UseJournal(a.journal); err != nil {
			return as, err
		}
	}
	total := tgt.Total()
	report := func(state string) error {
		_, err := ac.Progress(ctx, &orchestrator.Progress{State: state, Bytes: tgt.Stats.DataBytes.Load() + tgt.Stats.ZeroBytes.Load(),
			Total: total, Chunks: tgt.Stats.Chunks.Load(), ChunksTotal: int64(len(meta.Index.Chunks))})
		return err
	}
	if err := report("receiving"); err != nil {
		return as, fmt.Errorf("progress: %w", err)
	}
	if err := tgt.ZeroExtents(ctx); err != nil {
		return as, err
	}
	dec := image.NewDecoder()
	var buf []byte
	for n, i := range tgt.Missing() {
		if stopAfter > 0 && n == stopAfter {
			return as, tgt.Checkpoint()
		}
		p, err := ac.ImageChunk(ctx, as.Image.Name, i)
		if err != nil {
			return as, fmt.Errorf("chunk %d: %w", i, err)
		}
		if buf, err = tgt.WriteChunk(dec, buf, i, p); err != nil {
			return as, err
		}
		a.fetched++
		if n%4 == 0 {
			if err := report("receiving"); err != nil {
				return as, fmt.Errorf("progress: %w", err)
			}
		}
	}
	if err := tgt.Dev.Sync(); err != nil {
		return as, err
	}
	if err := report("verifying"); err != nil {
		return as, fmt.Errorf("progress: %w", err)
	}
	if len(tgt.Missing()) != 0 {
		return as, fmt.Errorf("%d chunks missing", len(tgt.Missing()))
	}
	_, err = ac.Result(ctx, &orchestrator.Result{OK: true, Bytes: total, Timings: map[string]float64{"receive": 0.1}})
	return as, err
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
