package fat

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// toolPackage names the Debian package of each external tool, for skip
// messages.
var toolPackage = map[string]string{
	"mkfs.vfat":        "dosfstools",
	"fsck.fat":         "dosfstools",
	"mcopy":            "mtools",
	"mdel":             "mtools",
	"mmd":              "mtools",
	"mshowfat":         "mtools",
	"mkfs.exfat":       "exfatprogs",
	"fsck.exfat":       "exfatprogs",
	"dump.exfat":       "exfatprogs",
	"mount.exfat-fuse": "exfat-fuse",
	"losetup":          "mount",
	"umount":           "mount",
	"blkid":            "blkid",
	"mkfs.ext4":        "e2fsprogs",
	"mkntfs":           "ntfs-3g",
	"sfdisk":           "fdisk",
	"iconv":            "libc-bin",
	"cp":               "coreutils",
}

// needTools skips the test unless every tool is in PATH.
func needTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (Debian package %s), not found in PATH", tool, toolPackage[tool])
		}
	}
}

// needRoot skips the test unless it runs as root with what a loop-mounted
// FUSE filesystem needs.
func needRootFUSE(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to attach loop devices and mount FUSE filesystems")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("needs /dev/fuse to mount exFAT with exfat-fuse")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("needs /dev/loop-control to attach loop devices")
	}
}

// mtoolsEnv makes mtools accept images whose size is not a multiple of the
// BPB geometry.
var mtoolsEnv = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")

// run runs a command and fails the test with its output if it fails.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, rc, err := runRC(name, args...)
	if err != nil || rc != 0 {
		t.Fatalf("%s %s: rc %d, %v\n%s", name, strings.Join(args, " "), rc, err, out)
	}
	return out
}

// runRC runs a command and returns its combined output and exit code; err
// is set only when it could not run.
func runRC(name string, args ...string) (string, int, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = mtoolsEnv
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode(), nil
	}
	if err != nil {
		return string(out), -1, err
	}
	return string(out), 0, nil
}

// sparseFile creates a sparse file of size bytes.
func sparseFile(t testing.TB, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// garbageFile creates a file of size bytes of pseudo-random data.
func garbageFile(t testing.TB, path string, size int64, seed uint64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 0xFA})
	if _, err := io.CopyN(f, rng, size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// writeRandom writes a file of n pseudo-random bytes.
func writeRandom(t testing.TB, path string, n int, rng *rand.Rand) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// treeHashes maps every regular file under dir (slash paths relative to
// dir) to its SHA-256, and every directory to "dir".
func treeHashes(t testing.TB, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			m[rel] = "dir"
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		m[rel] = hex.EncodeToString(sum[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// diffTrees describes how two tree hash maps differ, or returns "".
func diffTrees(want, got map[string]string) string {
	var d []string
	for p, h := range want {
		if g, ok := got[p]; !ok {
			d = append(d, "missing "+p)
		} else if g != h {
			d = append(d, "content differs "+p)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			d = append(d, "unexpected "+p)
		}
	}
	sort.Strings(d)
	if len(d) > 10 {
		d = append(d[:10], fmt.Sprintf("... %d more", len(d)-10))
	}
	return strings.Join(d, "\n")
}

// collectExtents runs UsedExtents on an image file and checks the contract:
// increasing, non-overlapping, not adjacent, within [0, size).
func collectExtents(t testing.TB, img string) []extent {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	var ext []extent
	err = UsedExtents(context.Background(), f, st.Size(), func(off, length int64) error {
		ext = append(ext, extent{off, length})
		return nil
	})
	if err != nil {
		t.Fatalf("UsedExtents(%s): %v", img, err)
	}
	if err := checkExtents(ext, st.Size()); err != nil {
		t.Fatal(err)
	}
	return ext
}

func checkExtents(ext []extent, size int64) error {
	var prevEnd int64 = -1
	for i, e := range ext {
		if e.length <= 0 {
			return fmt.Errorf("extent %d at %d has length %d", i, e.off, e.length)
		}
		if e.off < 0 || e.off+e.length > size {
			return fmt.Errorf("extent %d [%d, %d) outside [0, %d)", i, e.off, e.off+e.length, size)
		}
		if e.off <= prevEnd {
			return fmt.Errorf("extent %d at %d does not start after the previous end %d (overlapping, adjacent or unsorted)", i, e.off, prevEnd)
		}
		prevEnd = e.off + e.length
	}
	return nil
}

func extentBytes(ext []extent) int64 {
	var n int64
	for _, e := range ext {
		n += e.length
	}
	return n
}

// copyExtents copies the extents from src to dst, both image files of the
// same size, the way a restore would.
func copyExtents(t testing.TB, src, dst string, ext []extent) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	for _, e := range ext {
		if _, err := io.Copy(io.NewOffsetWriter(out, e.off), io.NewSectionReader(in, e.off, e.length)); err != nil {
			t.Fatal(err)
		}
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// blkidInfo returns blkid's low-level probe of an image as a map.
func blkidInfo(t testing.TB, img string) map[string]string {
	t.Helper()
	out := run(t, "blkid", "-p", "-o", "export", img)
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			// export format escapes shell specials with a backslash
			var sb strings.Builder
			for i := 0; i < len(v); i++ {
				if v[i] == '\\' && i+1 < len(v) {
					i++
				}
				sb.WriteByte(v[i])
			}
			m[k] = sb.String()
		}
	}
	return m
}

// intField extracts the first integer submatch of re from out.
func intField(t testing.TB, out string, re string) int64 {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %q in tool output:\n%s", re, out)
	}
	n, err := strconv.ParseInt(m[1], 0, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// overlaps reports whether [off, off+n) meets any extent.
func overlaps(ext []extent, off, n int64) bool {
	for _, e := range ext {
		if e.off < off+n && off < e.off+e.length {
			return true
		}
	}
	return false
}

// zeroExtReader reads data and then zeros up to size: a small prefix stands
// for a large, mostly empty image.
type zeroExtReader struct {
	data []byte
	size int64
}

func (z *zeroExtReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= z.size {
		return 0, io.EOF
	}
	n := len(p)
	if rest := z.size - off; int64(n) > rest {
		n = int(rest)
	}
	copied := 0
	if off < int64(len(z.data)) {
		copied = copy(p[:n], z.data[off:])
	}
	clear(p[copied:n])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
