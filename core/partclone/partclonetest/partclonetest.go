// Package partclonetest makes real filesystems and real partclone images
// for tests: mkfs.ext4 -d, mkfs.vfat + mcopy, mkntfs + ntfscp, then
// partclone.<fs> -c, gzip/zstd, and partclone's own restore to compare
// against. Helpers skip the test, saying what is missing, when a tool is
// not installed or (for partclone, which refuses otherwise) when the test
// does not run as root.
package partclonetest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Require skips t unless every named tool is on PATH (or in /sbin,
// /usr/sbin, which a non-root PATH may lack).
func Require(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := Look(tool); err != nil {
			t.Skipf("needs %s, which is not installed (Debian: apt-get install partclone e2fsprogs dosfstools mtools ntfs-3g zstd fdisk gdisk)", tool)
		}
	}
}

// Look finds a tool on PATH or in the sbin directories.
func Look(tool string) (string, error) {
	if p, err := exec.LookPath(tool); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(d, tool)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", tool)
}

// RequireRoot skips t unless it runs as root; partclone refuses to run
// otherwise.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: partclone refuses to clone or restore as another user")
	}
}

// Run runs a command and fails t with its output when it fails.
func Run(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	out, err := RunErr(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// RunErr runs a command and returns its combined output.
func RunErr(name string, args ...string) ([]byte, error) {
	p, err := Look(name)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(p, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	return cmd.CombinedOutput()
}

// Shell runs a bash pipeline and fails t when it fails.
func Shell(t testing.TB, script string) []byte {
	t.Helper()
	cmd := exec.Command("bash", "-o", "pipefail", "-c", script)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "PATH="+os.Getenv("PATH")+":/usr/sbin:/sbin")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return out
}

// ShellAll runs bash scripts concurrently (partclone spends most of its
// two seconds a run asleep, so running them together saves most of the
// wall time) and fails t naming every script that failed.
func ShellAll(t testing.TB, scripts []string) {
	t.Helper()
	type result struct {
		script string
		out    []byte
		err    error
	}
	results := make([]result, len(scripts))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 12)
	for i, sc := range scripts {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			cmd := exec.Command("bash", "-o", "pipefail", "-c", sc)
			cmd.Env = append(os.Environ(), "LC_ALL=C", "PATH="+os.Getenv("PATH")+":/usr/sbin:/sbin")
			out, err := cmd.CombinedOutput()
			results[i] = result{sc, out, err}
		})
	}
	wg.Wait()
	for _, r := range results {
		if r.err != nil {
			t.Errorf("%s: %v\n%s", r.script, r.err, r.out)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// CloneCmd is the shell command of Clone.
func CloneCmd(kind, src, dst string, args ...string) string {
	return fmt.Sprintf("%s -c -q -L /dev/null -s %q -O %q %s", Tool(kind), src, dst, strings.Join(args, " "))
}

// CompressCmd returns the shell command that compresses path with comp
// and the name of the file it writes.
func CompressCmd(path, comp string) (string, string) {
	switch comp {
	case "gzip":
		return fmt.Sprintf("gzip -c -1 %q > %q.gz", path, path), path + ".gz"
	case "zstd":
		return fmt.Sprintf("zstd -q -c -3 %q > %q.zst", path, path), path + ".zst"
	case "xz":
		return fmt.Sprintf("xz -c -0 %q > %q.xz", path, path), path + ".xz"
	case "lz4":
		return fmt.Sprintf("lz4 -q -c %q > %q.lz4", path, path), path + ".lz4"
	}
	return "true", path
}

// RestoreCmd is the shell command of PartcloneRestore: partclone's own
// restore of image into dst, a file of size bytes.
func RestoreCmd(kind, image, dst string, size int64) string {
	return fmt.Sprintf("%s | %s -r -q -W -C -L /dev/null -s - -O %q && truncate -s %d %q",
		Decompressor(image), Tool(kind), dst, size, dst)
}

// Files writes a deterministic mix of file contents into dir: random
// (incompressible) data, text, a file of zeros (used blocks that read as
// zero) and small files, about total bytes in all.
func Files(t testing.TB, dir string, total int, seed uint64) []string {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	var names []string
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	random := make([]byte, total/2)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	write("random.bin", random)
	var text bytes.Buffer
	for text.Len() < total/4 {
		fmt.Fprintf(&text, "line %d of a text file that compresses well, value %d\n", text.Len(), rng.IntN(1000))
	}
	write("text.txt", text.Bytes())
	write("zeros.bin", make([]byte, total/8))
	for i := range 20 {
		small := make([]byte, 100+rng.IntN(5000))
		for j := range small {
			small[j] = byte('a' + rng.IntN(26))
		}
		write(fmt.Sprintf("small%02d.txt", i), small)
	}
	return names
}

// FS kinds MakeFS knows, with partclone's tool suffix and fsck.
var fsKinds = map[string]struct{ tools []string }{
	"ext4": {[]string{"mkfs.ext4", "e2fsck"}},
	"vfat": {[]string{"mkfs.vfat", "mcopy", "fsck.vfat"}},
	"ntfs": {[]string{"mkntfs", "ntfscp", "ntfsfix"}},
}

// MakeFS creates a filesystem image of kind (ext4, vfat, ntfs) and size
// bytes at path, filled with Files. It needs no root: ext4 is filled by
// mkfs.ext4 -d, vfat by mcopy, NTFS by ntfscp.
func MakeFS(t testing.TB, kind, path string, size int64, seed uint64) {
	t.Helper()
	k, ok := fsKinds[kind]
	if !ok {
		t.Fatalf("MakeFS: unknown kind %q", kind)
	}
	Require(t, k.tools...)
	src := t.TempDir()
	names := Files(t, src, int(size/4), seed)
	if err := os.Truncate(path, 0); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	switch kind {
	case "ext4":
		Run(t, "mkfs.ext4", "-q", "-F", "-b", "4096", "-E", "root_owner=0:0", "-U", "1b3c5a2e-1111-4222-8333-444455556666", "-d", src, path)
	case "vfat":
		Run(t, "mkfs.vfat", "-i", "1234ABCD", path)
		for _, n := range names {
			Run(t, "mcopy", "-i", path, filepath.Join(src, n), "::/"+n)
		}
	case "ntfs":
		Run(t, "mkntfs", "-q", "-F", "-f", "-s", "512", "-c", "4096", "-L", "test", path)
		for _, n := range names {
			Run(t, "ntfscp", "-q", "-f", path, filepath.Join(src, n), "/"+n)
		}
	}
}

// Tool returns partclone's program for a filesystem kind.
func Tool(kind string) string {
	switch kind {
	case "ext4", "ext3", "ext2":
		return "partclone.ext4"
	case "vfat", "fat":
		return "partclone.vfat"
	case "ntfs":
		return "partclone.ntfs"
	}
	return "partclone." + kind
}

// Clone runs partclone.<kind> -c on src into the image dst with extra
// arguments (such as -a0, -a1, -k 7).
func Clone(t testing.TB, kind, src, dst string, args ...string) {
	t.Helper()
	RequireRoot(t)
	Require(t, Tool(kind))
	a := append([]string{"-c", "-q", "-L", "/dev/null", "-s", src, "-O", dst}, args...)
	Run(t, Tool(kind), a...)
}

// Compress writes path compressed with comp (none, gzip, zstd) and
// returns the new file's name; none returns path.
func Compress(t testing.TB, path, comp string) string {
	t.Helper()
	switch comp {
	case "none":
		return path
	case "gzip":
		Require(t, "gzip")
		Shell(t, fmt.Sprintf("gzip -c -1 %q > %q.gz", path, path))
		return path + ".gz"
	case "zstd":
		Require(t, "zstd")
		Shell(t, fmt.Sprintf("zstd -q -c -3 %q > %q.zst", path, path))
		return path + ".zst"
	case "xz":
		Require(t, "xz")
		Shell(t, fmt.Sprintf("xz -c -0 %q > %q.xz", path, path))
		return path + ".xz"
	case "lz4":
		Require(t, "lz4")
		Shell(t, fmt.Sprintf("lz4 -q -c %q > %q.lz4", path, path))
		return path + ".lz4"
	}
	t.Fatalf("Compress: unknown %q", comp)
	return ""
}

// Decompressor returns the shell command that writes the decompressed
// image file to stdout.
func Decompressor(path string) string {
	switch filepath.Ext(path) {
	case ".gz":
		return fmt.Sprintf("gzip -dc %q", path)
	case ".zst":
		return fmt.Sprintf("zstd -q -dc %q", path)
	case ".xz":
		return fmt.Sprintf("xz -dc %q", path)
	case ".lz4":
		return fmt.Sprintf("lz4 -q -dc %q", path)
	}
	return fmt.Sprintf("cat %q", path)
}

// PartcloneRestore restores image (compressed or not) with partclone's own
// restore into the file dst, which ends up size bytes long: what partclone
// writes onto a fresh zero-filled file of that size.
func PartcloneRestore(t testing.TB, kind, image, dst string, size int64) {
	t.Helper()
	RequireRoot(t)
	Require(t, Tool(kind))
	// -W makes the file the device size; -C skips the device size check
	// that a plain file cannot pass; -O replaces what is there.
	Shell(t, fmt.Sprintf("%s | %s -r -q -W -C -L /dev/null -s - -O %q", Decompressor(image), Tool(kind), dst))
	st, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > size {
		t.Fatalf("partclone restored %d bytes into %s, more than the %d-byte device", st.Size(), dst, size)
	}
	if err := os.Truncate(dst, size); err != nil {
		t.Fatal(err)
	}
}

// PartcloneRestoreDevice restores image with partclone's own restore onto
// a block device (a loop device partition), as Clonezilla does.
func PartcloneRestoreDevice(t testing.TB, kind, image, dev string) {
	t.Helper()
	RequireRoot(t)
	Require(t, Tool(kind))
	Shell(t, fmt.Sprintf("%s | %s -r -q -L /dev/null -s - -o %q", Decompressor(image), Tool(kind), dev))
}

// Fsck runs the filesystem checker of kind read-only on the image at path
// (at byte offset off) and fails t when it reports a problem.
func Fsck(t testing.TB, kind, path string) {
	t.Helper()
	switch kind {
	case "ext4":
		Run(t, "e2fsck", "-f", "-n", path)
	case "vfat":
		Run(t, "fsck.vfat", "-n", path)
	case "ntfs":
		out, err := RunErr("ntfsfix", "-n", path)
		if err == nil {
			return
		}
		// partclone.ntfs does not store the backup boot sector (the
		// volume's last sector, past its last cluster), so its own restore
		// fails this one check; everything else must pass, and the
		// sector must be one the restore never wrote.
		ok := bytes.Contains(out, []byte("Mounting volume... OK")) &&
			bytes.Contains(out, []byte("$MFTMirr completed successfully")) &&
			bytes.Contains(out, []byte("Checking the alternate boot sector... BAD")) &&
			bytes.Count(out, []byte("BAD")) == 1
		if ok {
			f, ferr := os.Open(path)
			if ferr != nil {
				t.Fatal(ferr)
			}
			defer f.Close()
			st, _ := f.Stat()
			last := make([]byte, 512)
			f.ReadAt(last, st.Size()-512)
			ok = bytes.Equal(last, make([]byte, 512))
		}
		if !ok {
			t.Fatalf("ntfsfix -n %s: %v\n%s", path, err, out)
		}
		if _, err := RunErr("ntfsls", "-f", path); err != nil {
			t.Fatalf("ntfsls %s: %v", path, err)
		}
	default:
		t.Fatalf("Fsck: unknown kind %q", kind)
	}
}

// SHA256 returns the hex SHA-256 of a file.
func SHA256(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// SameFile fails t unless the files a and b hold the same bytes, naming
// the first difference.
func SameFile(t testing.TB, a, b string) {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(x) != len(y) {
		t.Fatalf("%s has %d bytes, %s has %d", a, len(x), b, len(y))
	}
	for i := range x {
		if x[i] != y[i] {
			t.Fatalf("%s and %s differ first at byte %d (0x%x): %02x vs %02x", a, b, i, i, x[i], y[i])
		}
	}
}

// NewFile creates a zero-filled (sparse) file of size bytes.
func NewFile(t testing.TB, path string, size int64) {
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
