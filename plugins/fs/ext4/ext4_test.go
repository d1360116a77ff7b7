package ext4

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// fragment churns the filesystem through debugfs (no mount): it writes
// many small files, deletes every other one, writes larger files that have
// to fill the holes (so they fragment), then deletes every other remaining
// small file, so the block bitmaps end up fragmented too.
func fragment(tb testing.TB, img string, seed uint64) {
	tb.Helper()
	host := tb.TempDir()
	rng := rand.New(rand.NewPCG(seed, 99))
	var cmds strings.Builder
	cmds.WriteString("mkdir churn\ncd churn\n")
	write := func(name string, size int) {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		p := filepath.Join(host, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			tb.Fatal(err)
		}
		fmt.Fprintf(&cmds, "write %s %s\n", p, name)
	}
	const small = 600
	for i := range small {
		write(fmt.Sprintf("a%04d", i), 1+rng.IntN(12<<10))
	}
	for i := 0; i < small; i += 2 {
		fmt.Fprintf(&cmds, "rm a%04d\n", i)
	}
	for i := range 60 {
		write(fmt.Sprintf("b%04d", i), 20<<10+rng.IntN(60<<10))
	}
	for i := 1; i < small; i += 4 {
		fmt.Fprintf(&cmds, "rm a%04d\n", i)
	}
	script := filepath.Join(host, "cmds")
	if err := os.WriteFile(script, []byte(cmds.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
	run(tb, "debugfs", "-w", "-f", script, img)
}

type fsCase struct {
	name    string
	prog    string
	sizeMiB int64
	args    []string
	fsType  string
	frag    bool // churn with debugfs after mkfs
	garbage bool // restore onto garbage instead of zeros
	// dirty makes the source on a garbage-filled file instead of a sparse
	// one, so that whatever mkfs does not write keeps stale bytes.
	dirty bool
	// lazyItable expects groups whose inode table mkfs left unzeroed.
	lazyItable bool
}

var fsCases = []fsCase{
	{name: "ext2-1k", prog: "mkfs.ext2", sizeMiB: 64, args: []string{"-b", "1024"}, fsType: "ext2"},
	{name: "ext2-2k-nosparse", prog: "mkfs.ext2", sizeMiB: 48, args: []string{"-b", "2048", "-g", "2048", "-O", "^sparse_super,^resize_inode"}, fsType: "ext2"},
	{name: "ext3-4k", prog: "mkfs.ext3", sizeMiB: 64, args: []string{"-b", "4096", "-g", "4096"}, fsType: "ext3"},
	{name: "ext3-1k-frag", prog: "mkfs.ext3", sizeMiB: 48, args: []string{"-b", "1024"}, fsType: "ext3", frag: true},
	{name: "ext4-default", prog: "mkfs.ext4", sizeMiB: 128, fsType: "ext4", garbage: true},
	{name: "ext4-1k", prog: "mkfs.ext4", sizeMiB: 64, args: []string{"-b", "1024"}, fsType: "ext4"},
	{name: "ext4-2k", prog: "mkfs.ext4", sizeMiB: 64, args: []string{"-b", "2048", "-g", "2048"}, fsType: "ext4"},
	{name: "ext4-4k-32groups", prog: "mkfs.ext4", sizeMiB: 128, args: []string{"-b", "4096", "-g", "1024"}, fsType: "ext4"},
	{name: "ext4-no-flex_bg", prog: "mkfs.ext4", sizeMiB: 64, args: []string{"-b", "4096", "-g", "2048", "-O", "^flex_bg"}, fsType: "ext4", garbage: true},
	{name: "ext4-meta_bg", prog: "mkfs.ext4", sizeMiB: 128, args: []string{"-b", "1024", "-g", "1024", "-O", "meta_bg,^resize_inode"}, fsType: "ext4"},
	{name: "ext4-meta_bg-32bit", prog: "mkfs.ext4", sizeMiB: 128, args: []string{"-b", "1024", "-g", "1024", "-O", "meta_bg,^resize_inode,^64bit"}, fsType: "ext4"},
	{name: "ext4-64bit", prog: "mkfs.ext4", sizeMiB: 64, args: []string{"-b", "4096", "-g", "4096", "-O", "64bit"}, fsType: "ext4"},
	{name: "ext4-32bit", prog: "mkfs.ext4", sizeMiB: 64, args: []string{"-b", "4096", "-g", "4096", "-O", "^64bit"}, fsType: "ext4"},
	{name: "ext4-uninit_bg", prog: "mkfs.ext4", sizeMiB: 64, args: []string{"-b", "4096", "-g", "2048", "-O", "^metadata_csum,uninit_bg"}, fsType: "ext4", garbage: true},
	{name: "ext4-uninit_bg-no-flex_bg", prog: "mkfs.ext4", sizeMiB: 64, args: []string{"-b", "1024", "-O", "^metadata_csum,uninit_bg,^flex_bg"}, fsType: "ext4"},
	{name: "ext4-sparse_super2", prog: "mkfs.ext4", sizeMiB: 64, args: []string{"-b", "4096", "-g", "1024", "-O", "sparse_super2"}, fsType: "ext4"},
	{name: "ext4-bigalloc", prog: "mkfs.ext4", sizeMiB: 128, args: []string{"-b", "4096", "-C", "16384", "-g", "2048", "-O", "bigalloc"}, fsType: "ext4"},
	{name: "ext4-64k", prog: "mkfs.ext4", sizeMiB: 128, args: []string{"-b", "65536"}, fsType: "ext4"},
	{name: "ext4-lazy-itable-dirty", prog: "mkfs.ext4", sizeMiB: 64, args: []string{"-b", "4096", "-g", "2048", "-E", "lazy_itable_init=1,nodiscard"}, fsType: "ext4", garbage: true, dirty: true, lazyItable: true},
	{name: "ext2-1k-dirty", prog: "mkfs.ext2", sizeMiB: 32, args: []string{"-b", "1024", "-E", "nodiscard"}, fsType: "ext2", garbage: true, dirty: true},
	{name: "ext4-frag-4k", prog: "mkfs.ext4", sizeMiB: 64, args: []string{"-b", "4096", "-g", "2048"}, fsType: "ext4", frag: true, garbage: true},
	{name: "ext4-frag-1k", prog: "mkfs.ext4", sizeMiB: 64, args: []string{"-b", "1024"}, fsType: "ext4", frag: true},
}

// TestImages checks the properties of verifyImage on filesystems made by
// the real mkfs in many feature combinations, populated with mkfs -d and
// some churned with debugfs so that their bitmaps are fragmented.
func TestImages(t *testing.T) {
	requireTools(t, "mkfs.ext4", "mkfs.ext3", "mkfs.ext2", "dumpe2fs", "debugfs", "e2fsck")
	tree := t.TempDir()
	makeTree(t, tree, 1, 3<<10)
	wantTree := treeDigest(t, tree)
	wantTree["lost+found"] = "dir"
	work := t.TempDir()

	for _, tc := range fsCases {
		t.Run(tc.name, func(t *testing.T) {
			img := filepath.Join(work, tc.name+".img")
			defer os.Remove(img)
			label := tc.name[:min(len(tc.name), 16)]
			args := append([]string{"-L", label}, tc.args...)
			if tc.dirty {
				fillGarbage(t, img, tc.sizeMiB<<20, uint64(len(tc.name)))
				mkfsOn(t, img, tc.prog, tree, args...)
			} else {
				mkfs(t, img, tc.prog, tc.sizeMiB, tree, args...)
			}
			if tc.lazyItable {
				if out := run(t, "dumpe2fs", img); !regexp.MustCompile(`(?m)^Group \d+: .*csum 0x[0-9a-f]+( \[INODE_UNINIT, BLOCK_UNINIT\])?$`).MatchString(out) {
					t.Fatalf("mkfs zeroed every inode table; the case needs lazy ones:\n%s", out)
				}
			}
			if tc.frag {
				fragment(t, img, uint64(len(tc.name)))
			}

			info := verifyImage(t, img, tc.garbage, func(src map[string]string) {
				if !tc.frag {
					if d := diffTrees(wantTree, src); d != "" {
						t.Fatalf("source image does not hold the input tree:\n%s", d)
					}
				}
			})
			if info.FSType != tc.fsType || info.UUID != testUUID || info.Label != label {
				t.Errorf("Probe = %+v; want type %s, uuid %s, label %q", info, tc.fsType, testUUID, label)
			}
		})
	}
}

func abbreviate(ext []extent) string {
	if len(ext) <= 12 {
		return fmt.Sprint(ext)
	}
	return fmt.Sprint(ext[:6], " ... ", ext[len(ext)-6:])
}

// verifyImage checks the properties every image must have and returns what
// Probe said. checkSrc, if not nil, sees the source's file tree digest.
//
// Property 1: the extents are exactly the blocks dumpe2fs does not list as
// free, plus the 2048-byte boot area; their byte total is (Block count -
// Free blocks) * Block size, and Probe's UsedBlocks * BlockSize.
//
// Property 2: a copy of only those extents onto an all-zero (or garbage)
// target passes e2fsck -fn and holds the same files, byte for byte.
func verifyImage(t *testing.T, img string, garbage bool, checkSrc func(map[string]string)) *Info {
	t.Helper()
	fsckClean(t, img) // the fixture itself must be sound
	srcTree := dumpTree(t, img)
	if checkSrc != nil {
		checkSrc(srcTree)
	}

	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	info, err := Probe(f, st.Size())
	if err != nil {
		t.Fatalf("Probe: %v", err)
	}
	t.Logf("notes: %q", info.Notes)
	d := runDumpe2fs(t, img)
	if info.BlockSize != d.blockSize || info.Blocks != d.blockCount {
		t.Errorf("Probe: block size %d, %d blocks; dumpe2fs: %d, %d", info.BlockSize, info.Blocks, d.blockSize, d.blockCount)
	}

	ext := collect(t, img)
	used := totalBytes(ext)
	// Memory must not grow with the number of extents: a fixed handful of
	// buffers, whatever the fragmentation.
	allocs := testing.AllocsPerRun(1, func() {
		if err := UsedExtents(context.Background(), f, st.Size(), func(int64, int64) error { return nil }); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 20 {
		t.Errorf("UsedExtents made %.0f allocations for %d extents", allocs, len(ext))
	}
	t.Logf("dumpe2fs: (Block count %d - Free blocks %d) * Block size %d = %d; extents sum to %d",
		d.blockCount, d.freeBlocks, d.blockSize, int64(d.blockCount-d.freeBlocks)*d.blockSize, used)
	if want := int64(d.blockCount-d.freeBlocks) * d.blockSize; used != want {
		t.Errorf("used bytes %d, dumpe2fs (Block count %d - Free blocks %d) * %d = %d",
			used, d.blockCount, d.freeBlocks, d.blockSize, want)
	}
	if got := int64(info.UsedBlocks) * info.BlockSize; got != used {
		t.Errorf("Probe UsedBlocks*BlockSize = %d, extents sum to %d", got, used)
	}
	if want := d.expectedUsed(); fmt.Sprint(want) != fmt.Sprint(ext) {
		t.Errorf("extents differ from dumpe2fs's bitmaps:\n got %d extents %v\nwant %d extents %v",
			len(ext), abbreviate(ext), len(want), abbreviate(want))
	}
	if strings.Contains(info.Notes[0], "has_journal") {
		jb := journalBlocks(t, img)
		if len(jb) == 0 {
			t.Fatal("debugfs lists no journal blocks")
		}
		for _, b := range jb {
			if !covered(ext, b*d.blockSize, d.blockSize) {
				t.Fatalf("journal block %d not in the used extents", b)
			}
		}
	}
	t.Logf("%d extents, %d bytes used of %d", len(ext), used, st.Size())

	dst := img + ".copy"
	defer os.Remove(dst)
	copyExtents(t, img, dst, ext, garbage)
	fsckClean(t, dst)
	if diff := diffTrees(srcTree, dumpTree(t, dst)); diff != "" {
		t.Fatalf("restored copy differs from source:\n%s", diff)
	}
	return info
}
