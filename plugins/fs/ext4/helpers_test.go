package ext4

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Fixed inputs so that images are reproducible.
const (
	testUUID     = "5b0e8f1c-2d3a-4b5c-8d6e-7f8091a2b3c4"
	testHashSeed = "0a1b2c3d-4e5f-4061-8273-94a5b6c7d8e9"
	testFakeTime = "1700000000"
)

// requireTools skips the test when a command it runs is not installed.
func requireTools(tb testing.TB, names ...string) {
	tb.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			tb.Skipf("%s not found in PATH (install e2fsprogs): %v", n, err)
		}
	}
}

func run(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "E2FSPROGS_FAKE_TIME="+testFakeTime)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// mkfs makes a sparse image of sizeMiB with the given mkfs program and
// arguments, populated from dir when dir is not empty.
func mkfs(tb testing.TB, img, prog string, sizeMiB int64, dir string, args ...string) {
	tb.Helper()
	f, err := os.Create(img)
	if err != nil {
		tb.Fatal(err)
	}
	if err := f.Truncate(sizeMiB << 20); err != nil {
		tb.Fatal(err)
	}
	f.Close()
	mkfsOn(tb, img, prog, dir, args...)
}

// mkfsOn runs mkfs on an existing file, with the fixed UUID and hash seed
// (merged into any -E options, since mke2fs keeps only the last -E).
func mkfsOn(tb testing.TB, img, prog, dir string, args ...string) {
	tb.Helper()
	ext := "hash_seed=" + testHashSeed
	var rest []string
	for i := 0; i < len(args); i++ {
		if args[i] == "-E" && i+1 < len(args) {
			ext += "," + args[i+1]
			i++
			continue
		}
		rest = append(rest, args[i])
	}
	all := []string{"-F", "-q", "-U", testUUID, "-E", ext}
	if dir != "" {
		all = append(all, "-d", dir)
	}
	all = append(all, rest...)
	run(tb, prog, append(all, img)...)
}

// fillGarbage writes size pseudo-random bytes to path, like a disk that
// held other data before.
func fillGarbage(tb testing.TB, path string, size int64, seed uint64) {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	rng := rand.New(rand.NewPCG(seed, seed+1))
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		for i := 0; i < len(buf); i += 8 {
			v := rng.Uint64()
			for j := range 8 {
				buf[i+j] = byte(v >> (8 * j))
			}
		}
		if _, err := f.WriteAt(buf[:min(int64(len(buf)), size-off)], off); err != nil {
			tb.Fatal(err)
		}
	}
}

// makeTree writes a deterministic mix of files under dir: random and text
// data of awkward sizes, a sparse file, nested directories, symlinks (fast
// and slow) and a hard link. About totalKiB of data.
func makeTree(tb testing.TB, dir string, seed uint64, totalKiB int) {
	tb.Helper()
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	must := func(err error) {
		if err != nil {
			tb.Helper()
			tb.Fatal(err)
		}
	}
	sizes := []int{0, 1, 59, 60, 61, 1023, 1024, 1025, 4095, 4096, 4097, 65536, 200_000}
	words := strings.Fields("block group descriptor bitmap inode table journal extent superblock cluster flex meta sparse")
	written := 0
	for i := 0; written < totalKiB<<10; i++ {
		sub := filepath.Join(dir, fmt.Sprintf("d%d", i%5), fmt.Sprintf("s%d", i%3))
		must(os.MkdirAll(sub, 0o755))
		size := sizes[i%len(sizes)]
		if i%len(sizes) == 0 && i > 0 {
			size = 300_000 + rng.IntN(1_200_000)
		}
		var data []byte
		if i%2 == 0 {
			data = make([]byte, size)
			for j := range data {
				data[j] = byte(rng.Uint32())
			}
		} else {
			var b strings.Builder
			for b.Len() < size {
				b.WriteString(words[rng.IntN(len(words))])
				b.WriteByte(" \n"[rng.IntN(2)])
			}
			data = []byte(b.String()[:size])
		}
		must(os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%03d.%s", i, map[bool]string{true: "bin", false: "txt"}[i%2 == 0])), data, 0o644))
		written += size
	}
	// A sparse file: data, a hole, data.
	f, err := os.Create(filepath.Join(dir, "sparse.bin"))
	must(err)
	_, err = f.WriteAt(bytes.Repeat([]byte("head"), 1000), 0)
	must(err)
	_, err = f.WriteAt(bytes.Repeat([]byte("tail"), 1000), 3<<20)
	must(err)
	must(f.Close())
	must(os.Symlink("d0/s0/f000.bin", filepath.Join(dir, "fastlink")))
	must(os.Symlink(strings.Repeat("long/", 30)+"target", filepath.Join(dir, "slowlink")))
	must(os.Link(filepath.Join(dir, "d1", "s1", "f001.txt"), filepath.Join(dir, "hardlink.txt")))
}

// treeDigest maps every path under root to its type and content digest (or
// symlink target), so two trees compare with one map comparison.
func treeDigest(tb testing.TB, root string) map[string]string {
	tb.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "link " + t
		case d.IsDir():
			out[rel] = "dir"
		case d.Type().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			out[rel] = fmt.Sprintf("file %d %s", len(data), hex.EncodeToString(sum[:]))
		default:
			out[rel] = "other " + d.Type().String()
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// dumpTree extracts the whole filesystem in img with debugfs rdump (no
// mount needed) and returns its digest.
func dumpTree(tb testing.TB, img string) map[string]string {
	tb.Helper()
	out := tb.TempDir()
	run(tb, "debugfs", "-R", "rdump / "+out, img)
	return treeDigest(tb, out)
}

func diffTrees(want, got map[string]string) string {
	var b strings.Builder
	for k, v := range want {
		if got[k] != v {
			fmt.Fprintf(&b, "%s: want %q, got %q\n", k, v, got[k])
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			fmt.Fprintf(&b, "%s: unexpected %q\n", k, v)
		}
	}
	return b.String()
}

type extent struct{ off, len int64 }

// collect runs UsedExtents on img and checks the emit contract: increasing,
// non-overlapping, non-adjacent, inside the device.
func collect(tb testing.TB, img string) []extent {
	tb.Helper()
	f, err := os.Open(img)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		tb.Fatal(err)
	}
	var ext []extent
	err = UsedExtents(context.Background(), f, st.Size(), func(off, length int64) error {
		ext = append(ext, extent{off, length})
		return nil
	})
	if err != nil {
		tb.Fatalf("UsedExtents(%s): %v", img, err)
	}
	if err := checkExtents(ext, st.Size()); err != nil {
		tb.Fatal(err)
	}
	return ext
}

func checkExtents(ext []extent, size int64) error {
	end := int64(-1)
	for i, e := range ext {
		switch {
		case e.len <= 0:
			return fmt.Errorf("extent %d (%d+%d): empty", i, e.off, e.len)
		case e.off <= end:
			return fmt.Errorf("extent %d (%d+%d): not after previous end %d (overlapping or adjacent)", i, e.off, e.len, end)
		case e.off < 0 || e.off+e.len > size:
			return fmt.Errorf("extent %d (%d+%d): outside device of %d bytes", i, e.off, e.len, size)
		}
		end = e.off + e.len
	}
	return nil
}

func totalBytes(ext []extent) int64 {
	var n int64
	for _, e := range ext {
		n += e.len
	}
	return n
}

// dumpe2fs is what dumpe2fs says about the block allocation.
type dumpe2fs struct {
	blockCount, freeBlocks, firstBlock uint64
	blockSize, clusterSize             int64
	free                               []extent // free ranges, in blocks
}

var (
	reHeader = regexp.MustCompile(`^(Block count|Free blocks|First block|Block size|Cluster size):\s+(\d+)$`)
	reFree   = regexp.MustCompile(`^\s+Free blocks: (.*)$`)
)

func runDumpe2fs(tb testing.TB, img string) dumpe2fs {
	tb.Helper()
	var d dumpe2fs
	sc := bufio.NewScanner(strings.NewReader(run(tb, "dumpe2fs", img)))
	for sc.Scan() {
		line := sc.Text()
		if m := reHeader.FindStringSubmatch(line); m != nil {
			v, _ := strconv.ParseUint(m[2], 10, 64)
			switch m[1] {
			case "Block count":
				d.blockCount = v
			case "Free blocks":
				d.freeBlocks = v
			case "First block":
				d.firstBlock = v
			case "Block size":
				d.blockSize = int64(v)
			case "Cluster size":
				d.clusterSize = int64(v)
			}
			continue
		}
		m := reFree.FindStringSubmatch(line)
		if m == nil || strings.TrimSpace(m[1]) == "" {
			continue
		}
		for _, r := range strings.Split(m[1], ", ") {
			a, b, ok := strings.Cut(r, "-")
			if !ok {
				b = a
			}
			lo, err1 := strconv.ParseInt(a, 10, 64)
			hi, err2 := strconv.ParseInt(b, 10, 64)
			if err1 != nil || err2 != nil {
				tb.Fatalf("dumpe2fs: cannot parse free range %q", r)
			}
			d.free = append(d.free, extent{lo, hi - lo + 1})
		}
	}
	if d.blockCount == 0 || d.blockSize == 0 {
		tb.Fatal("dumpe2fs: no block count or block size in output")
	}
	if d.clusterSize == 0 {
		d.clusterSize = d.blockSize
	}
	return d
}

// expectedUsed derives the used byte ranges from dumpe2fs alone: the boot
// area plus every block of the block groups that dumpe2fs does not list as
// free. With bigalloc dumpe2fs prints the first block of each cluster, so
// a range's last cluster extends to the cluster end.
func (d dumpe2fs) expectedUsed() []extent {
	ratio := d.clusterSize / d.blockSize
	var out []extent
	add := func(off, end int64) {
		if n := len(out); n > 0 && off <= out[n-1].off+out[n-1].len {
			out[n-1].len = max(out[n-1].off+out[n-1].len, end) - out[n-1].off
			return
		}
		out = append(out, extent{off, end - off})
	}
	add(0, bootAreaEnd)
	next := int64(d.firstBlock)
	for _, f := range d.free {
		freeEnd := min(f.off+f.len-1+ratio, int64(d.blockCount))
		if f.off > next {
			add(next*d.blockSize, f.off*d.blockSize)
		}
		next = max(next, freeEnd)
	}
	if next < int64(d.blockCount) {
		add(next*d.blockSize, int64(d.blockCount)*d.blockSize)
	}
	return out
}

// copyExtents builds a restore target: a file of the source's size whose
// content is zero (sparse) or garbage, with only ext copied from src.
func copyExtents(tb testing.TB, src, dst string, ext []extent, garbage bool) {
	tb.Helper()
	in, err := os.Open(src)
	if err != nil {
		tb.Fatal(err)
	}
	defer in.Close()
	st, _ := in.Stat()
	out, err := os.Create(dst)
	if err != nil {
		tb.Fatal(err)
	}
	defer out.Close()
	if garbage {
		fillGarbage(tb, dst, st.Size(), 7)
	} else if err := out.Truncate(st.Size()); err != nil {
		tb.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for _, e := range ext {
		for done := int64(0); done < e.len; {
			n := min(int64(len(buf)), e.len-done)
			if _, err := in.ReadAt(buf[:n], e.off+done); err != nil {
				tb.Fatal(err)
			}
			if _, err := out.WriteAt(buf[:n], e.off+done); err != nil {
				tb.Fatal(err)
			}
			done += n
		}
	}
}

// fsckClean runs e2fsck -fn and fails the test unless it exits 0.
func fsckClean(tb testing.TB, img string) {
	tb.Helper()
	cmd := exec.Command("e2fsck", "-fn", img)
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("e2fsck -fn %s: %v\n%s", img, err, out)
	}
}

// journalBlocks lists the blocks of the journal inode (8) per debugfs.
func journalBlocks(tb testing.TB, img string) []int64 {
	tb.Helper()
	var out []int64
	for _, f := range strings.Fields(run(tb, "debugfs", "-R", "blocks <8>", img)) {
		b, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			tb.Fatalf("debugfs blocks <8>: unexpected %q", f)
		}
		out = append(out, b)
	}
	return out
}

func covered(ext []extent, off, length int64) bool {
	for _, e := range ext {
		if off >= e.off && off+length <= e.off+e.len {
			return true
		}
	}
	return false
}
