package plugin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskcast/diskcast/sdk/base"
)

// diskcast runs the built binary and returns stdout and stderr.
func diskcast(t *testing.T, wantOK bool, args ...string) (string, string) {
	t.Helper()
	cmd := exec.Command(diskcastBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if wantOK && err != nil {
		t.Fatalf("diskcast %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	if !wantOK && err == nil {
		t.Fatalf("diskcast %s succeeded, want a failure\n%s", strings.Join(args, " "), out.String())
	}
	return out.String(), errb.String()
}

func handlerOf(t *testing.T, dci string) (fsType, handler string) {
	out, _ := diskcast(t, true, "info", "--json", dci)
	var info struct {
		Partitions []struct {
			FSType  string `json:"fs_type"`
			Handler string `json:"handler"`
		} `json:"partitions"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil || len(info.Partitions) != 1 {
		t.Fatalf("info --json: %v\n%s", err, out)
	}
	return info.Partitions[0].FSType, info.Partitions[0].Handler
}

// TestCaptureRestoreExt4 captures an ext4 image with the CLI, which runs
// the built-in ext4 plugin out of process, restores it onto a new file
// and checks it with e2fsck and every file's content with debugfs.
func TestCaptureRestoreExt4(t *testing.T) {
	need(t, "e2fsck", "e2fsprogs")
	need(t, "debugfs", "e2fsprogs")
	img, files := mkext4(t, "48M")
	dir := t.TempDir()
	dci := filepath.Join(dir, "ext4.dci")
	diskcast(t, true, "capture", "--plugin-dir", t.TempDir(), img, dci)
	if fsType, handler := handlerOf(t, dci); fsType != "ext4" || handler != "ext4" {
		t.Fatalf("partition captured as %s by %s, want ext4 by the ext4 plugin", fsType, handler)
	}
	target := filepath.Join(dir, "restored.img")
	diskcast(t, true, "restore", dci, target)
	run(t, "e2fsck", "-fn", target)
	n := 0
	err := filepath.WalkDir(files, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(files, p)
		want, _ := os.ReadFile(p)
		got := filepath.Join(dir, "dump")
		run(t, "debugfs", "-R", "dump /"+rel+" "+got, target)
		data, err := os.ReadFile(got)
		if err != nil {
			return err
		}
		if sha256.Sum256(data) != sha256.Sum256(want) {
			t.Errorf("%s: restored content differs (%d bytes, want %d)", rel, len(data), len(want))
		}
		n++
		return nil
	})
	if err != nil || n != 6 {
		t.Fatalf("compared %d files: %v", n, err)
	}

	// --raw captures without plugins; --fs with another plugin leaves the
	// partition raw with a warning; an unknown --fs is an error.
	raw := filepath.Join(dir, "raw.dci")
	diskcast(t, true, "capture", "--raw", img, raw)
	if _, handler := handlerOf(t, raw); handler != "raw" {
		t.Errorf("--raw: handler %s", handler)
	}
	_, stderr := diskcast(t, true, "capture", "--fs", "fat", img, filepath.Join(dir, "fat.dci"))
	if !strings.Contains(stderr, "warning: source: no filesystem recognised") {
		t.Errorf("--fs fat on ext4: stderr %q", stderr)
	}
	_, stderr = diskcast(t, false, "capture", "--fs", "zfs", img, filepath.Join(dir, "zfs.dci"))
	if !strings.Contains(stderr, `filesystem plugin "zfs" (installed: ext4, fat, ntfs`) {
		t.Errorf("--fs zfs: stderr %q", stderr)
	}
	_, stderr = diskcast(t, false, "capture", "--raw", "--skip-pagefile", img, filepath.Join(dir, "x.dci"))
	if !strings.Contains(stderr, "--raw uses no filesystem plugin") {
		t.Errorf("--raw --skip-pagefile: stderr %q", stderr)
	}
}

func TestPluginsCommand(t *testing.T) {
	dir := t.TempDir()
	p := install(t, dir, "test", testPluginBin)
	bad := install(t, dir, "tampered", testPluginBin)
	os.WriteFile(bad+SumSuffix, []byte(strings.Repeat("0", 64)+"\n"), 0o644)
	out, _ := diskcast(t, true, "plugins", "--plugin-dir", dir)
	rows := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 5 && f[4] == "built-in" {
			f[2] = "VERSION" // the binary's own version, whatever it is
		}
		rows[strings.Join(f, " ")] = true
	}
	for _, want := range []string{
		"KIND NAME VERSION API ORIGIN",
		"filesystem ext4 VERSION 1 built-in",
		"filesystem swap VERSION 1 built-in",
		"filesystem good 0.0.1 1 " + p,
		"filesystem crash 0.0.1 1 " + p,
		"- tampered - - " + bad,
		"not usable:",
	} {
		if !rows[want] {
			t.Errorf("diskcast plugins output lacks the row %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "tampered ("+bad+"): plugin: checksum mismatch") {
		t.Errorf("diskcast plugins does not say why tampered is not usable:\n%s", out)
	}
}

// TestAnalyzer drives the capture Analyzer with a third-party plugin and
// the real built-ins side by side.
func TestAnalyzer(t *testing.T) {
	dir := t.TempDir()
	install(t, dir, "test", testPluginBin)
	m := &Manager{Builtins: builtins(t), Executable: diskcastBin, Dirs: []string{dir}}
	defer m.Close()
	ctx := context.Background()
	v := testVolume(t, 20)
	var warnings []string
	a, err := m.Analyzer(ctx, v.Path, AnalyzeOptions{Only: "good", Warn: func(s string) { warnings = append(warnings, s) }})
	if err != nil {
		t.Fatal(err)
	}
	res, err := a(ctx, nil, 0, v.Size)
	if err != nil || res == nil || res.Handler != "good" || res.FSType != "testfs" {
		t.Fatalf("analysis %+v, %v", res, err)
	}
	n := 0
	if err := res.Extents(ctx, func(off, length int64) error { n++; return nil }); err != nil || n != 21 {
		t.Errorf("%d extents, %v", n, err)
	}
	// At an offset past the magic nothing is recognised.
	if res, err := a(ctx, nil, 4096, v.Size-4096); res != nil || err != nil {
		t.Errorf("analysis past the magic: %+v, %v", res, err)
	}

	tests := []struct {
		name string
		opts AnalyzeOptions
		want error
		msg  string
	}{
		{"unknown plugin", AnalyzeOptions{Only: "zfs"}, ErrNotFound, `"zfs"`},
		{"settings for an unused plugin", AnalyzeOptions{Only: "good", Config: map[string]base.Config{"ntfs": {"skip_pagefile": true}}}, ErrNotFound, "not in use"},
		{"bad setting", AnalyzeOptions{Config: map[string]base.Config{"ntfs": {"skip_pagefiles": true}}}, base.ErrInvalidConfig, "valid: new_serial, skip_hiberfil, skip_pagefile"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.Analyzer(ctx, v.Path, tc.opts)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("got %v, want %v with %q", err, tc.want, tc.msg)
			}
		})
	}
}
