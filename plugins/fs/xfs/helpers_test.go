package xfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func needTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found in PATH (install the xfsprogs package)", tool)
		}
	}
}

// canMount says whether loop mounts work (root).
func canMount() (bool, string) {
	if os.Geteuid() != 0 {
		return false, "not root: loop mounts need root"
	}
	return true, ""
}

func runCmd(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// mount mounts img on mnt with options. Right after an unmount, the loop
// device it used may still be detaching; mount can then pick it up again
// and fail with "already mounted or mount point busy", so that failure is
// retried for up to 5 s. Every mount in these tests goes through here.
func mount(options, img, mnt string) ([]byte, error) {
	for try := 0; ; try++ {
		out, err := exec.Command("mount", "-o", options, img, mnt).CombinedOutput()
		if err == nil || try == 50 || !bytes.Contains(out, []byte("already mounted or mount point busy")) {
			return out, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mountLoop is mount that fails the test.
func mountLoop(t testing.TB, options, img, mnt string) {
	t.Helper()
	if out, err := mount(options, img, mnt); err != nil {
		t.Fatalf("mount -o %s %s %s: %v\n%s", options, img, mnt, err, out)
	}
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func createSparse(t testing.TB, path string, size int64) {
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

// makeXFS creates an image of size bytes and runs mkfs.xfs on it. With
// protofile content, mkfs fills the filesystem itself (no mount needed).
func makeXFS(t testing.TB, dir string, size int64, proto string, args ...string) string {
	t.Helper()
	img := filepath.Join(dir, "xfs.img")
	createSparse(t, img, size)
	full := append([]string{"-f", "-q", "-L", "dcvol"}, args...)
	if proto != "" {
		p := filepath.Join(dir, "proto")
		if err := os.WriteFile(p, []byte(proto), 0o644); err != nil {
			t.Fatal(err)
		}
		full = append(full, "-p", p)
	}
	runCmd(t, "mkfs.xfs", append(full, img)...)
	return img
}

// protoFile is a file a protofile puts into the filesystem.
type protoFile struct {
	path string // inside the filesystem
	data []byte
}

// protoFiles writes n random files into dir and returns a protofile that
// puts them into the root and a subdirectory, and the files.
func protoFiles(t testing.TB, dir string, n int, seed uint64) (string, []protoFile) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 9))
	var root, sub strings.Builder
	var files []protoFile
	for i := 0; i < n; i++ {
		p := filepath.Join(dir, fmt.Sprintf("src%03d", i))
		data := randomBytes(rng, 1000+rng.IntN(400_000))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		line := fmt.Sprintf("f%03d ---644 0 0 %s\n", i, p)
		if i%3 == 0 {
			sub.WriteString(line)
			files = append(files, protoFile{fmt.Sprintf("/sub/f%03d", i), data})
		} else {
			root.WriteString(line)
			files = append(files, protoFile{fmt.Sprintf("/f%03d", i), data})
		}
	}
	return "dummy\n0 0\nd--755 0 0\n" + root.String() + "sub d--755 0 0\n" + sub.String() + "$\n$\n", files
}

var reBmap = regexp.MustCompile(`data offset (\d+) startblock \d+ \((\d+)/(\d+)\) count (\d+) flag (\d+)`)

// checkFilesViaDB reads each file from img through the block map xfs_db
// reports for it and compares it with what was written. It needs no
// mount, so it also covers v4 filesystems that the kernel may refuse.
func checkFilesViaDB(t testing.TB, img string, files []protoFile) {
	t.Helper()
	sb := xfsDB(t, img, "sb 0", "p blocksize", "p agblocks")
	bs, agblocks := sb[0], sb[1]
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, pf := range files {
		out := runCmd(t, "xfs_db", "-r", "-c", "path "+pf.path, "-c", "bmap", img)
		got := make([]byte, len(pf.data))
		for _, m := range reBmap.FindAllStringSubmatch(out, -1) {
			n := func(i int) int64 { v, _ := strconv.ParseInt(m[i], 10, 64); return v }
			fileOff, ag, agbno, count, flag := n(1)*bs, n(2), n(3), n(4)*bs, n(5)
			if flag != 0 || fileOff >= int64(len(got)) {
				continue // unwritten extents read as zeros
			}
			l := min(count, int64(len(got))-fileOff)
			if _, err := f.ReadAt(got[fileOff:fileOff+l], (ag*agblocks+agbno)*bs); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(got, pf.data) {
			t.Errorf("%s: content read through xfs_db's block map differs from what was written\n%s", pf.path, out)
		}
	}
}

// churn loop-mounts img, writes files, deletes every other one and writes
// larger ones into the holes, so the free-space btrees get many records.
func churn(t testing.TB, img string, seed uint64) {
	t.Helper()
	mnt := t.TempDir()
	mountLoop(t, "loop", img, mnt)
	mounted := true
	defer func() {
		if mounted {
			exec.Command("umount", mnt).Run()
		}
	}()
	rng := rand.New(rand.NewPCG(seed, 4))
	if err := os.MkdirAll(filepath.Join(mnt, "churn/a/b"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Enough small files that freeing every other one leaves far more free
	// extents than one 1 KiB b-tree leaf holds (about 120), whatever the
	// allocator does with neighbours: the deep-tree tests rely on it.
	const files = 1200
	for i := 0; i < files; i++ {
		p := filepath.Join(mnt, "churn", fmt.Sprintf("c%04d", i))
		if err := os.WriteFile(p, randomBytes(rng, 4096+rng.IntN(12_000)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	runCmd(t, "sync")
	for i := 0; i < files; i += 2 {
		if err := os.Remove(filepath.Join(mnt, "churn", fmt.Sprintf("c%04d", i))); err != nil {
			t.Fatal(err)
		}
	}
	runCmd(t, "sync")
	for i := 0; i < 20; i++ {
		p := filepath.Join(mnt, "churn/a/b", fmt.Sprintf("big%02d", i))
		if err := os.WriteFile(p, randomBytes(rng, 200_000+rng.IntN(800_000)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	runCmd(t, "umount", mnt)
	mounted = false
}

// treeHashes mounts img read-only without log recovery and returns the
// SHA-256 of every regular file and the list of all paths.
func treeHashes(t testing.TB, img string) map[string]string {
	t.Helper()
	mnt := t.TempDir()
	mountLoop(t, "loop,ro,norecovery", img, mnt)
	defer runCmd(t, "umount", mnt)
	out := map[string]string{}
	err := filepath.WalkDir(mnt, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(mnt, p)
		if !d.Type().IsRegular() {
			out[rel] = d.Type().String()
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		s := sha256.Sum256(b)
		out[rel] = hex.EncodeToString(s[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type extent struct{ off, length int64 }

func collect(t testing.TB, img string) (exts []extent, size int64) {
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
	size = st.Size()
	err = UsedExtents(context.Background(), f, size, func(off, length int64) error {
		exts = append(exts, extent{off, length})
		return nil
	})
	if err != nil {
		t.Fatalf("UsedExtents(%s): %v", img, err)
	}
	checkExtents(t, exts, size)
	return exts, size
}

// checkExtents verifies the UsedExtents contract: increasing,
// non-overlapping, not adjacent, non-empty, inside [0,size).
func checkExtents(t testing.TB, exts []extent, size int64) {
	t.Helper()
	var prevEnd int64 = -1
	for i, e := range exts {
		if e.length <= 0 || e.off < 0 || e.off+e.length > size {
			t.Fatalf("extent %d (%d,+%d) is empty or outside [0,%d)", i, e.off, e.length, size)
		}
		if e.off <= prevEnd {
			t.Fatalf("extent %d at %d does not start after the previous end %d", i, e.off, prevEnd)
		}
		prevEnd = e.off + e.length
	}
}

func total(exts []extent) int64 {
	var n int64
	for _, e := range exts {
		n += e.length
	}
	return n
}

// restore copies only exts of src into a new file of the same size that
// starts as a sparse zero file or full of random garbage.
func restore(t testing.TB, src string, exts []extent, size int64, garbage bool) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "restored.img")
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if garbage {
		rng := rand.New(rand.NewPCG(99, 1))
		buf := make([]byte, 1<<20)
		for off := int64(0); off < size; off += int64(len(buf)) {
			for i := 0; i < len(buf); i += 8 {
				v := rng.Uint64()
				for j := 0; j < 8; j++ {
					buf[i+j] = byte(v >> (8 * j))
				}
			}
			if _, err := out.WriteAt(buf[:min(int64(len(buf)), size-off)], off); err != nil {
				t.Fatal(err)
			}
		}
	} else if err := out.Truncate(size); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	for _, e := range exts {
		if _, err := io.Copy(io.NewOffsetWriter(out, e.off), io.NewSectionReader(in, e.off, e.length)); err != nil {
			t.Fatal(err)
		}
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// sameRanges fails unless a and b hold the same bytes in every extent.
func sameRanges(t testing.TB, a, b string, exts []extent) {
	t.Helper()
	fa, err := os.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for _, e := range exts {
		for off := e.off; off < e.off+e.length; {
			n := min(int64(len(ba)), e.off+e.length-off)
			if _, err := fa.ReadAt(ba[:n], off); err != nil {
				t.Fatal(err)
			}
			if _, err := fb.ReadAt(bb[:n], off); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ba[:n], bb[:n]) {
				t.Fatalf("bytes differ in used range at %d..%d", off, off+n)
			}
			off += n
		}
	}
}

var reNum = regexp.MustCompile(`(?m)^(\w+) = (\d+)$`)

// xfsDB runs xfs_db -r with the given commands and returns "name = value"
// numbers it printed, in order.
func xfsDB(t testing.TB, img string, cmds ...string) []int64 {
	t.Helper()
	args := []string{"-r"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out := runCmd(t, "xfs_db", append(args, img)...)
	var vals []int64
	for _, m := range reNum.FindAllStringSubmatch(out, -1) {
		v, err := strconv.ParseInt(m[2], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		vals = append(vals, v)
	}
	return vals
}

var reFreeTotal = regexp.MustCompile(`total free blocks (\d+)`)

// xfsDBAccounting returns what xfs_db says about free space: dblocks,
// block size, sb_fdblocks, freesp's total, and Σ agf_flcount and
// Σ agf_btreeblks.
func xfsDBAccounting(t testing.TB, img string) (dblocks, bs, fdblocks, freesp, flcount, btreeblks int64) {
	t.Helper()
	sb := xfsDB(t, img, "sb 0", "p dblocks", "p blocksize", "p fdblocks", "p agcount")
	if len(sb) != 4 {
		t.Fatalf("xfs_db sb printed %v", sb)
	}
	dblocks, bs, fdblocks = sb[0], sb[1], sb[2]
	for ag := int64(0); ag < sb[3]; ag++ {
		v := xfsDB(t, img, fmt.Sprintf("agf %d", ag), "p flcount", "p btreeblks")
		if len(v) != 2 {
			t.Fatalf("xfs_db agf %d printed %v", ag, v)
		}
		flcount += v[0]
		btreeblks += v[1]
	}
	out := runCmd(t, "xfs_db", "-r", "-c", "freesp -s", img)
	m := reFreeTotal.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("xfs_db freesp -s printed no total:\n%s", out)
	}
	freesp, _ = strconv.ParseInt(m[1], 10, 64)
	return
}
