package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskcast/diskcast/core/image"
	"github.com/diskcast/diskcast/core/internal/testenv"
)

// run runs the command line and returns exit code, stdout and stderr.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdout: &out, stderr: &errb, stderrFile: os.Stdin}
	code := e.main(context.Background(), args)
	return code, out.String(), errb.String()
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errs := run(t, args...)
	if code != 0 {
		t.Fatalf("diskcast %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func fixture(t *testing.T) (dir, src, img string) {
	t.Helper()
	dir = t.TempDir()
	testenv.FillTree(t, filepath.Join(dir, "tree"), 20, 2)
	src = filepath.Join(dir, "fs.img")
	testenv.MkfsExt4(t, src, 16<<20, filepath.Join(dir, "tree"))
	img = filepath.Join(dir, "fs.dci")
	mustRun(t, "capture", "--chunk-size", "64K", src, img)
	return dir, src, img
}

func TestCaptureInfoVerifyRestore(t *testing.T) {
	dir, src, img := fixture(t)
	var info map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, "info", "--json", img)), &info); err != nil {
		t.Fatal(err)
	}
	if info["chunks"].(float64) < 2 || info["source"].(map[string]any)["kind"] != "partition" {
		t.Errorf("info: %v", info)
	}
	if out := mustRun(t, "verify", img); !strings.Contains(out, "OK") {
		t.Errorf("verify: %s", out)
	}
	target := filepath.Join(dir, "out.img")
	out := mustRun(t, "restore", "--json", img, target)
	if !strings.Contains(out, `"event": "restored"`) {
		t.Errorf("restore --json: %s", out)
	}
	if testenv.FileSHA256(t, src) != testenv.FileSHA256(t, target) {
		t.Fatal("restored file differs from the source")
	}
	code, _, errs := run(t, "capture", src, img)
	if code == 0 || !strings.Contains(errs, "--force") {
		t.Errorf("capture over an existing image: exit %d, %q", code, errs)
	}
}

func TestSigning(t *testing.T) {
	dir := t.TempDir()
	testenv.FillTree(t, filepath.Join(dir, "tree"), 5, 3)
	src := filepath.Join(dir, "fs.img")
	testenv.MkfsExt4(t, src, 8<<20, filepath.Join(dir, "tree"))
	key, other := filepath.Join(dir, "site.key"), filepath.Join(dir, "other.key")
	mustRun(t, "keygen", key)
	mustRun(t, "keygen", other)
	img := filepath.Join(dir, "signed.dci")
	mustRun(t, "capture", "--sign", key, src, img)
	if out := mustRun(t, "verify", "--pubkey", key+".pub", img); !strings.Contains(out, "signature valid") {
		t.Errorf("verify: %s", out)
	}
	code, _, errs := run(t, "verify", "--pubkey", other+".pub", img)
	if code != 1 || !strings.Contains(errs, "signature invalid") {
		t.Errorf("verify with another key: exit %d, %q", code, errs)
	}
	code, _, errs = run(t, "restore", "--pubkey", other+".pub", img, filepath.Join(dir, "t.img"))
	if code != 1 || !strings.Contains(errs, "signature invalid") {
		t.Errorf("restore with another key: exit %d, %q", code, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "t.img")); err == nil {
		t.Error("restore with a bad signature created the target")
	}
}

// TestBadImages damages an image in each part; every command must fail
// with an error that names the part.
func TestBadImages(t *testing.T) {
	dir, _, img := fixture(t)
	good, _ := os.ReadFile(img)
	r, err := image.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	c2 := r.Index.Chunks[1]
	tr := *r.Trailer
	r.Close()
	tests := []struct {
		name string
		mut  func([]byte) []byte
		want string
	}{
		{"truncated", func(b []byte) []byte { return b[:len(b)-300] }, "truncated"},
		{"wrong magic", func(b []byte) []byte { copy(b, "GARBAGE!"); return b }, "not a diskcast image"},
		{"header byte", func(b []byte) []byte { b[20] ^= 1; return b }, "header"},
		{"index byte", func(b []byte) []byte { b[tr.IndexOffset+9] ^= 1; return b }, "index"},
		{"chunk byte", func(b []byte) []byte { b[c2.FileOffset+5] ^= 1; return b }, "chunk 1 "},
		{"not an image", func(b []byte) []byte { return []byte("hello") }, "truncated"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bad := filepath.Join(dir, "bad.dci")
			os.WriteFile(bad, tc.mut(bytes.Clone(good)), 0o644)
			for _, args := range [][]string{{"verify", bad}, {"restore", bad, filepath.Join(dir, "t-"+strings.ReplaceAll(tc.name, " ", "-"))}} {
				code, _, errs := run(t, args...)
				if code != 1 || !strings.Contains(errs, tc.want) {
					t.Errorf("diskcast %s: exit %d, stderr %q; want exit 1 naming %q", args[0], code, errs, tc.want)
				}
			}
			if tc.name != "chunk byte" {
				code, _, errs := run(t, "info", bad)
				if code != 1 || !strings.Contains(errs, tc.want) {
					t.Errorf("diskcast info: exit %d, stderr %q", code, errs)
				}
			}
		})
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"nonsense"}, {"capture", "onlyone"}, {"restore", "--free", "maybe", "a", "b"}, {"capture", "--codec", "lzma", "a", "b"}} {
		if code, _, _ := run(t, args...); code != 2 {
			t.Errorf("diskcast %v: exit %d, want 2", args, code)
		}
	}
	if code, out, _ := run(t, "version"); code != 0 || !strings.Contains(out, "image format 1.1") {
		t.Errorf("version: %d %q", code, out)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1048576": 1 << 20, "512K": 512 << 10, "1M": 1 << 20, "1MiB": 1 << 20, "2g": 2 << 30} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := parseSize("lots"); err == nil {
		t.Error("parseSize accepted nonsense")
	}
}
