package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskcast/diskcast/core/partclone/partclonetest"
)

// TestPartcloneImages makes ext4, FAT and NTFS filesystems, clones each
// with partclone without and with checksums, stores the images plain,
// gzip'd and zstd'd, and restores every one twice, directly and through
// import: both results must equal partclone's own restore byte for byte
// and pass the filesystem checker.
func TestPartcloneImages(t *testing.T) {
	partclonetest.RequireRoot(t)
	partclonetest.Require(t, "partclone.ext4", "partclone.vfat", "partclone.ntfs", "gzip", "zstd")
	dir := t.TempDir()
	sizes := map[string]int64{"ext4": 24 << 20, "vfat": 33 << 20, "ntfs": 24 << 20}
	kinds := []string{"ext4", "vfat", "ntfs"}
	for i, k := range kinds {
		partclonetest.MakeFS(t, k, filepath.Join(dir, k+".fs"), sizes[k], uint64(i+10))
	}
	type tc struct{ kind, sum, comp, img string }
	var cases []tc
	var scripts []string
	for _, k := range kinds {
		for _, sum := range []string{"-a0", "-a1"} {
			base := filepath.Join(dir, k+sum+".pcl")
			script := partclonetest.CloneCmd(k, filepath.Join(dir, k+".fs"), base, sum)
			for _, comp := range []string{"none", "gzip", "zstd"} {
				c, name := partclonetest.CompressCmd(base, comp)
				script += " && " + c + " && " + partclonetest.RestoreCmd(k, name, name+".want", sizes[k])
				cases = append(cases, tc{k, sum, comp, name})
			}
			scripts = append(scripts, script)
		}
	}
	partclonetest.ShellAll(t, scripts)
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s%s-%s", c.kind, c.sum, c.comp), func(t *testing.T) {
			t.Parallel()
			want := c.img + ".want"
			direct := c.img + ".direct"
			mustRun(t, "restore", c.img, direct)
			partclonetest.SameFile(t, want, direct)
			if c.comp == "none" {
				// The gzip'd and zstd'd copies hold the same image, so their
				// restores are these bytes again (each is compared with
				// partclone's restore above).
				partclonetest.Fsck(t, c.kind, direct)
			}

			dci := c.img + ".dci"
			mustRun(t, "import", "--chunk-size", "256K", c.img, dci)
			var info map[string]any
			if err := json.Unmarshal([]byte(mustRun(t, "info", "--json", dci)), &info); err != nil {
				t.Fatal(err)
			}
			parts := info["partitions"].([]any)
			p := parts[0].(map[string]any)
			if info["source"].(map[string]any)["kind"] != "partition" || p["handler"] != "partclone" || p["fs_type"] != c.kind {
				t.Errorf("info: %v", info)
			}
			viaImport := c.img + ".imported"
			mustRun(t, "restore", dci, viaImport)
			partclonetest.SameFile(t, want, viaImport)
			for _, f := range []string{direct, viaImport, dci} {
				os.Remove(f)
			}
		})
	}
}

// TestXXHashImage restores the XXH64 and XXH128 images that upstream
// partclone wrote (the installed one cannot write them), directly and
// through import.
func TestXXHashImage(t *testing.T) {
	dir := t.TempDir()
	want, err := os.ReadFile("../partclone/testdata/ext4-xxh.restored.sha256")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ext4-xxh64-k5.pcl.zst", "ext4-xxh128-k5.pcl.zst"} {
		t.Run(name, func(t *testing.T) {
			src := filepath.Join("../partclone/testdata", name)
			direct := filepath.Join(dir, name+".direct")
			mustRun(t, "restore", src, direct)
			dci := filepath.Join(dir, name+".dci")
			mustRun(t, "import", src, dci)
			viaImport := filepath.Join(dir, name+".imported")
			mustRun(t, "restore", dci, viaImport)
			for _, f := range []string{direct, viaImport} {
				if got := partclonetest.SHA256(t, f); got != strings.TrimSpace(string(want)) {
					t.Errorf("%s: SHA-256 %s, partclone's restore gives %s", f, got, want)
				}
			}
		})
	}
}

// TestCorruptPartclone damages one byte of a checksummed image: restore and
// import must fail naming the block, and import must leave no output.
func TestCorruptPartclone(t *testing.T) {
	partclonetest.RequireRoot(t)
	dir := t.TempDir()
	fs := filepath.Join(dir, "fs")
	partclonetest.MakeFS(t, "ext4", fs, 16<<20, 30)
	img := filepath.Join(dir, "img.pcl")
	partclonetest.Clone(t, "ext4", fs, img, "-a1")
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-10000] ^= 0x01
	if err := os.WriteFile(img, b, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs := run(t, "restore", img, filepath.Join(dir, "out"))
	if code != 1 || !strings.Contains(errs, "checksum mismatch") || !strings.Contains(errs, "crc32 checksum of blocks") {
		t.Errorf("restore: exit %d: %s", code, errs)
	}
	out := filepath.Join(dir, "out.dci")
	code, _, errs = run(t, "import", img, out)
	if code != 1 || !strings.Contains(errs, "checksum mismatch") {
		t.Errorf("import: exit %d: %s", code, errs)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("a failed import left %s", out)
	}
	if _, err := os.Stat(out + ".partial"); err == nil {
		t.Errorf("a failed import left %s.partial", out)
	}
}

// TestExport round-trips an imported image through raw and raw.gz.
func TestExport(t *testing.T) {
	dir := t.TempDir()
	src := "../partclone/testdata/ext4-xxh64-k5.pcl.zst"
	dci := filepath.Join(dir, "x.dci")
	mustRun(t, "import", src, dci)
	raw := filepath.Join(dir, "x.raw")
	mustRun(t, "export", "--format", "raw", dci, raw)
	want, _ := os.ReadFile("../partclone/testdata/ext4-xxh.restored.sha256")
	if got := partclonetest.SHA256(t, raw); got != strings.TrimSpace(string(want)) {
		t.Fatalf("raw export SHA-256 %s, want %s", got, want)
	}
	gz := filepath.Join(dir, "x.raw.gz")
	mustRun(t, "export", "--format", "raw.gz", dci, gz)
	out := partclonetest.Shell(t, fmt.Sprintf("gzip -dc %q | sha256sum", gz))
	if !strings.HasPrefix(string(out), strings.TrimSpace(string(want))) {
		t.Fatalf("zcat of the raw.gz export: %s, want %s", out, want)
	}
	// A gzip'd dd image imports as a disk or partition image too.
	dci2 := filepath.Join(dir, "y.dci")
	mustRun(t, "import", gz, dci2)
	raw2 := filepath.Join(dir, "y.raw")
	mustRun(t, "restore", dci2, raw2)
	partclonetest.SameFile(t, raw, raw2)
	// ... and restores directly like zcat | dd.
	raw3 := filepath.Join(dir, "z.raw")
	mustRun(t, "restore", gz, raw3)
	partclonetest.SameFile(t, raw, raw3)
	if code, _, errs := run(t, "export", dci, raw); code != 1 || !strings.Contains(errs, "exists") {
		t.Errorf("export over an existing file: exit %d %s", code, errs)
	}
	if code, _, _ := run(t, "export", "--format", "qcow2", dci, filepath.Join(dir, "q")); code != 2 {
		t.Errorf("export --format qcow2: exit %d, want 2", code)
	}
}

// TestPartsDirectory restores a Clonezilla saveparts directory (a parts
// file, no disk) by name and alone, and refuses to guess between two.
func TestPartsDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "parts-img")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	fixture, err := os.ReadFile("../partclone/testdata/ext4-xxh128-k5.pcl.zst")
	if err != nil {
		t.Fatal(err)
	}
	// Split the way ocs-sr does, into .aa, .ab, ...
	for i, piece := range [][]byte{fixture[:10000], fixture[10000:20000], fixture[20000:]} {
		name := fmt.Sprintf("nvme0n1p2.ext4-ptcl-img.zst.a%c", 'a'+i)
		if err := os.WriteFile(filepath.Join(dir, name), piece, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "parts"), []byte("nvme0n1p2\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "dev-fs.list"), []byte("# <Device name>   <File system>   <Size>\n/dev/nvme0n1p2 ext4 4M\n"), 0o644)
	want, _ := os.ReadFile("../partclone/testdata/ext4-xxh.restored.sha256")
	for _, src := range []string{dir, dir + ":nvme0n1p2"} {
		out := filepath.Join(t.TempDir(), "target")
		mustRun(t, "restore", src, out)
		if got := partclonetest.SHA256(t, out); got != strings.TrimSpace(string(want)) {
			t.Errorf("restore %s: SHA-256 %s, want %s", src, got, want)
		}
	}
	dci := filepath.Join(t.TempDir(), "p.dci")
	mustRun(t, "import", "--select", "nvme0n1p2", dir, dci)
	var info map[string]any
	json.Unmarshal([]byte(mustRun(t, "info", "--json", dci)), &info)
	if p := info["partitions"].([]any)[0].(map[string]any); p["fs_type"] != "ext4" || p["handler"] != "partclone" {
		t.Errorf("info: %v", info)
	}
	// Two partitions: the operator must say which.
	os.WriteFile(filepath.Join(dir, "parts"), []byte("nvme0n1p2 nvme0n1p3\n"), 0o644)
	code, _, errs := run(t, "restore", dir, filepath.Join(t.TempDir(), "x"))
	if code != 1 || !strings.Contains(errs, "nvme0n1p2, nvme0n1p3") || !strings.Contains(errs, ":nvme0n1p2") {
		t.Errorf("ambiguous: exit %d %s", code, errs)
	}
	// A missing piece is named.
	bad := filepath.Join(dir, "nvme0n1p2.ext4-ptcl-img.zst.ab")
	os.Remove(bad)
	code, _, errs = run(t, "restore", dir+":nvme0n1p2", filepath.Join(t.TempDir(), "y"))
	if code != 1 || !strings.Contains(errs, "nvme0n1p2.ext4-ptcl-img.zst.ab is missing") {
		t.Errorf("missing piece: exit %d %s", code, errs)
	}
}
