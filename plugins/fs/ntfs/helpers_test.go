package ntfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// needTools skips the test when a command-line tool is missing.
func needTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found in PATH (install the ntfs-3g package)", tool)
		}
	}
}

// canMount says whether ntfs-3g loop mounts work here (root and FUSE).
func canMount() (bool, string) {
	if os.Geteuid() != 0 {
		return false, "not root"
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return false, "/dev/fuse missing"
	}
	if _, err := exec.LookPath("ntfs-3g"); err != nil {
		return false, "ntfs-3g not installed"
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

// makeNTFS creates an image of size bytes and runs mkntfs on it.
func makeNTFS(t testing.TB, dir string, size int64, args ...string) string {
	t.Helper()
	img := filepath.Join(dir, "ntfs.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	full := append([]string{"-F", "-f", "-Q", "-L", "dcvol"}, args...)
	full = append(full, img)
	runCmd(t, "mkntfs", full...)
	return img
}

// testFile is a file put into a test volume.
type testFile struct {
	path string // inside the volume, with a leading slash
	data []byte
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// populate writes files into the volume. With a loop mount it first
// writes filler files and deletes every other one so that later files
// land in fragmented free space; without one it uses ntfscp, which
// works on an unmounted image (files only, in the root).
func populate(t testing.TB, img string, files []testFile, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	if ok, _ := canMount(); ok {
		mnt := t.TempDir()
		runCmd(t, "mount", "-t", "ntfs-3g", "-o", "loop", img, mnt)
		mounted := true
		defer func() {
			if mounted {
				exec.Command("umount", mnt).Run()
			}
		}()
		for i := 0; i < 60; i++ {
			name := filepath.Join(mnt, fmt.Sprintf("filler%02d", i))
			if err := os.WriteFile(name, randomBytes(rng, 20_000+rng.IntN(100_000)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		exec.Command("sync").Run()
		for i := 0; i < 60; i += 2 {
			if err := os.Remove(filepath.Join(mnt, fmt.Sprintf("filler%02d", i))); err != nil {
				t.Fatal(err)
			}
		}
		for _, f := range files {
			p := filepath.Join(mnt, f.path)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, f.data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		unmountNTFS(t, mnt)
		mounted = false
		return
	}
	needTools(t, "ntfscp")
	src := t.TempDir()
	for i, f := range files {
		if filepath.Dir(f.path) != "/" {
			t.Fatalf("without a mount only root files can be written, not %s", f.path)
		}
		p := filepath.Join(src, strconv.Itoa(i))
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			t.Fatal(err)
		}
		runCmd(t, "ntfscp", "-f", img, p, f.path)
	}
}

// extent is one emitted range.
type extent struct{ off, length int64 }

func collect(t testing.TB, img string, opts Options) (exts []extent, size int64) {
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
	err = UsedExtentsWithOptions(context.Background(), f, size, opts, func(off, length int64) error {
		exts = append(exts, extent{off, length})
		return nil
	})
	if err != nil {
		t.Fatalf("UsedExtentsWithOptions(%s, %+v): %v", img, opts, err)
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
			t.Fatalf("extent %d at %d does not start after the previous end %d (overlap or unmerged neighbour)", i, e.off, prevEnd)
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

// restore copies only exts of src into a new file of the same size,
// which starts as a sparse zero file or full of random garbage.
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
			copy(buf, randomBytes(rng, len(buf)))
			n := min(int64(len(buf)), size-off)
			if _, err := out.WriteAt(buf[:n], off); err != nil {
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

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// ntfscat extracts a file with ntfscat.
func ntfscat(t testing.TB, img, path string) []byte {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("ntfscat", img, path)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ntfscat %s %s: %v\n%s", img, path, err, stderr.String())
	}
	return stdout.Bytes()
}

var (
	reClusters = regexp.MustCompile(`Volume Size in Clusters: (\d+)`)
	reFree     = regexp.MustCompile(`Free Clusters: (\d+)`)
	reCluster  = regexp.MustCompile(`Cluster Size: (\d+)`)
)

// ntfsinfoCounts returns cluster size, clusters and free clusters as
// ntfsinfo -m prints them.
func ntfsinfoCounts(t testing.TB, img string) (cs, clusters, free int64) {
	t.Helper()
	out := runCmd(t, "ntfsinfo", "-m", img)
	get := func(re *regexp.Regexp) int64 {
		m := re.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("ntfsinfo -m output lacks %s:\n%s", re, out)
		}
		n, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	return get(reCluster), get(reClusters), get(reFree)
}

var (
	reRun     = regexp.MustCompile(`^\s+(\d+)\s+(\d+)\s+(\d+)\s*$`)
	reSection = regexp.MustCompile(`^\s+(0x[0-9a-f]+) - `)
)

// ntfsclusterRuns returns the $DATA runs (LCN, length) of a file as
// ntfscluster -F prints them.
func ntfsclusterRuns(t testing.TB, img, path string) [][2]int64 {
	t.Helper()
	out := runCmd(t, "ntfscluster", "-F", path, img)
	// Only the $DATA (0x80) sections, one per attribute segment: other
	// non-resident attributes (an $ATTRIBUTE_LIST) are listed too.
	var runs [][2]int64
	inData := false
	for _, line := range strings.Split(out, "\n") {
		if m := reSection.FindStringSubmatch(line); m != nil {
			inData = m[1] == "0x80"
			continue
		}
		if m := reRun.FindStringSubmatch(line); m != nil && inData {
			lcn, _ := strconv.ParseInt(m[2], 10, 64)
			n, _ := strconv.ParseInt(m[3], 10, 64)
			runs = append(runs, [2]int64{lcn, n})
		}
	}
	if len(runs) == 0 {
		t.Fatalf("ntfscluster -F %s printed no runs:\n%s", path, out)
	}
	return runs
}

func timeIt(f func()) time.Duration {
	t0 := time.Now()
	f()
	return time.Since(t0)
}

// unmountNTFS unmounts an ntfs-3g mount and waits for its FUSE process to
// exit: umount returns before ntfs-3g has written everything back, and a
// tool reading the image before then sees a half-written volume.
func unmountNTFS(t testing.TB, mnt string) {
	t.Helper()
	runCmd(t, "umount", mnt)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if !fuseDaemonFor(mnt) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("ntfs-3g for %s still running 60 s after umount", mnt)
}

// fuseDaemonFor reports whether an ntfs-3g process serves mount point mnt.
func fuseDaemonFor(mnt string) bool {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 0 && strings.Contains(filepath.Base(args[0]), "ntfs-3g") && slices.Contains(args, mnt) {
			return true
		}
	}
	return false
}
