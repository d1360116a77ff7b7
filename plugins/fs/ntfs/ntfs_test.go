package ntfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func standardFiles(seed uint64) []testFile {
	rng := rand.New(rand.NewPCG(seed, 3))
	files := []testFile{
		{"/small.txt", []byte("hello from diskcast\n")},
		{"/big.bin", randomBytes(rng, 3_000_000)},
		{"/mid.bin", randomBytes(rng, 700_000)},
	}
	if ok, _ := canMount(); ok {
		files = append(files,
			testFile{"/dir/sub/deep.bin", randomBytes(rng, 1_500_000)},
			testFile{"/dir/other.bin", randomBytes(rng, 200_000)},
		)
	}
	return files
}

// TestUsedExtentsMatchesNTFSTools checks, for several mkntfs layouts, that
// the used bytes equal what ntfsinfo counts plus the tail that holds the
// backup boot sector, and that copying only those bytes reproduces the
// volume: ntfsfix -n passes, every file reads back identical, and the
// backup boot sector is there.
func TestUsedExtentsMatchesNTFSTools(t *testing.T) {
	needTools(t, "mkntfs", "ntfsinfo", "ntfsfix", "ntfscat")
	if ok, why := canMount(); !ok {
		t.Logf("no ntfs-3g mount (%s): populating with ntfscp, root files only", why)
	}
	cases := []struct {
		name    string
		size    int64
		mkfs    []string
		garbage bool
	}{
		{name: "4k clusters", size: 96 << 20},
		{name: "512-byte clusters", size: 64 << 20, mkfs: []string{"-c", "512"}},
		{name: "64k clusters garbage target", size: 128 << 20, mkfs: []string{"-c", "65536"}, garbage: true},
		{name: "4k sectors", size: 96 << 20, mkfs: []string{"-s", "4096"}},
		// Not a multiple of the cluster size: three sectors past the last
		// whole cluster, the last of them the backup boot sector.
		{name: "partial last cluster", size: 80<<20 + 3*512},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			img := makeNTFS(t, dir, tc.size, tc.mkfs...)
			files := standardFiles(uint64(i))
			populate(t, img, files, uint64(i))

			exts, size := collect(t, img, Options{})
			cs, clusters, free := ntfsinfoCounts(t, img)
			want := (clusters-free)*cs + (size - clusters*cs)
			if got := total(exts); got != want {
				t.Errorf("used bytes = %d, want (clusters %d - free %d) * %d + tail %d = %d",
					got, clusters, free, cs, size-clusters*cs, want)
			}
			t.Logf("%d extents, %d bytes = (%d clusters - %d free) * %d + tail %d", len(exts), total(exts), clusters, free, cs, size-clusters*cs)
			info := probeFile(t, img)
			if info.BlockSize != cs || int64(info.Blocks) != clusters || int64(info.UsedBlocks) != clusters-free {
				t.Errorf("Probe = cluster %d, %d clusters, %d used; ntfsinfo says %d, %d, %d used",
					info.BlockSize, info.Blocks, info.UsedBlocks, cs, clusters, clusters-free)
			}
			if info.Label != "dcvol" {
				t.Errorf("Probe label = %q, want dcvol", info.Label)
			}

			dst := restore(t, img, exts, size, tc.garbage)
			sameRanges(t, img, dst, exts)
			if out, err := exec.Command("ntfsfix", "-n", dst).CombinedOutput(); err != nil {
				t.Fatalf("ntfsfix -n on the restored image: %v\n%s", err, out)
			}
			for _, f := range files {
				got := ntfscat(t, dst, f.path)
				if sha(got) != sha(f.data) {
					t.Errorf("%s: restored SHA-256 %s, written %s", f.path, sha(got), sha(f.data))
				}
				if src := ntfscat(t, img, f.path); sha(src) != sha(got) {
					t.Errorf("%s: SHA-256 differs between source and restored image", f.path)
				}
			}
			// The backup boot sector is the last sector (4096 bytes on
			// 4K-sector volumes).
			bps := int64(binary.LittleEndian.Uint16(readHead(t, img, 512)[0x0B:]))
			srcTail, dstTail := readTail(t, img, bps), readTail(t, dst, bps)
			if !bytes.Equal(srcTail, dstTail) || string(dstTail[3:11]) != "NTFS    " {
				t.Errorf("last %d bytes (backup boot sector) not reproduced: source %x..., restored %x...", bps, srcTail[:16], dstTail[:16])
			}
		})
	}
}

// TestVolumeSmallerThanDevice: mkntfs with an explicit sector count leaves
// the rest of the file unused; the backup boot sector then sits right after
// the volume, not at the end of the device, and both must be kept.
func TestVolumeSmallerThanDevice(t *testing.T) {
	needTools(t, "mkntfs", "ntfsinfo", "ntfsfix")
	dir := t.TempDir()
	img := dir + "/ntfs.img"
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 96<<20); err != nil {
		t.Fatal(err)
	}
	const sectors = 150000 // 73.2 MiB volume (plus backup) in a 96 MiB file
	runCmd(t, "mkntfs", "-F", "-f", "-Q", img, "150000")
	exts, size := collect(t, img, Options{})
	cs, clusters, free := ntfsinfoCounts(t, img)
	backup := int64(sectors-1) * 512
	want := (clusters-free)*cs + (backup + 512 - clusters*cs) + 512
	if got := total(exts); got != want {
		t.Errorf("used bytes = %d, want %d (used clusters, tail to the backup boot sector at %d, last device sector)", got, want, backup)
	}
	last := exts[len(exts)-1]
	if last.off != size-512 || last.length != 512 {
		t.Errorf("last extent = %+v, want the device's last sector at %d", last, size-512)
	}
	dst := restore(t, img, exts, size, true)
	// ntfsfix looks for the backup at the device's last sector, where
	// mkntfs did not put it, so it fails on the source too: the restored
	// image must get the same verdict.
	srcOut, srcErr := exec.Command("ntfsfix", "-n", img).CombinedOutput()
	dstOut, dstErr := exec.Command("ntfsfix", "-n", dst).CombinedOutput()
	if (srcErr == nil) != (dstErr == nil) || !bytes.Equal(srcOut, dstOut) {
		t.Errorf("ntfsfix -n differs: source %v\n%s\nrestored %v\n%s", srcErr, srcOut, dstErr, dstOut)
	}
	b := make([]byte, 512)
	f, err := os.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(b, backup); err != nil {
		t.Fatal(err)
	}
	if string(b[3:11]) != "NTFS    " {
		t.Errorf("no backup boot sector at %d in the restored image", backup)
	}
	info := probeFile(t, img)
	if !containsNote(info.Notes, "bytes after the backup boot sector") {
		t.Errorf("Probe notes %q do not mention the space after the volume", info.Notes)
	}
}

// TestSkipPagefileHiberfil checks which clusters the options leave out,
// against ntfscluster's view of the two files, and that a restore without
// them still yields a consistent volume whose hiberfil.sys header is the
// source's.
func TestSkipPagefileHiberfil(t *testing.T) {
	needTools(t, "mkntfs", "ntfsinfo", "ntfsfix", "ntfscat", "ntfscluster")
	rng := rand.New(rand.NewPCG(5, 5))
	hiberBody := randomBytes(rng, 2_000_000)
	// A cleanly shut down Windows leaves a zeroed header page.
	clear(hiberBody[:hiberHeaderSize])
	keep := testFile{"/keep.bin", randomBytes(rng, 1_000_000)}
	files := []testFile{
		keep,
		{"/pagefile.sys", randomBytes(rng, 3_000_000)},
		{"/hiberfil.sys", hiberBody},
	}
	dir := t.TempDir()
	img := makeNTFS(t, dir, 96<<20)
	populate(t, img, files, 11)

	cs, _, _ := ntfsinfoCounts(t, img)
	clustersOf := func(path string, fromVCN int64) int64 {
		var n, vcn int64
		for _, r := range ntfsclusterRuns(t, img, path) {
			if vcn+r[1] > fromVCN {
				n += r[1] - max(0, fromVCN-vcn)
			}
			vcn += r[1]
		}
		return n
	}
	pageClusters := clustersOf("/pagefile.sys", 0)
	hiberSkippable := clustersOf("/hiberfil.sys", (hiberHeaderSize+cs-1)/cs)

	full, size := collect(t, img, Options{})
	cases := []struct {
		name string
		opts Options
		want int64
	}{
		{"pagefile", Options{SkipPagefile: true}, total(full) - pageClusters*cs},
		{"hiberfil", Options{SkipHiberfil: true}, total(full) - hiberSkippable*cs},
		{"both", Options{SkipPagefile: true, SkipHiberfil: true}, total(full) - (pageClusters+hiberSkippable)*cs},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			exts, _ := collect(t, img, tc.opts)
			if got := total(exts); got != tc.want {
				t.Fatalf("used bytes = %d, want %d", got, tc.want)
			}
			dst := restore(t, img, exts, size, true)
			if out, err := exec.Command("ntfsfix", "-n", dst).CombinedOutput(); err != nil {
				t.Fatalf("ntfsfix -n on the restored image: %v\n%s", err, out)
			}
			if got := ntfscat(t, dst, keep.path); sha(got) != sha(keep.data) {
				t.Errorf("%s differs after restore", keep.path)
			}
			hib := ntfscat(t, dst, "/hiberfil.sys")
			if !bytes.Equal(hib[:hiberHeaderSize], hiberBody[:hiberHeaderSize]) {
				t.Errorf("hiberfil.sys header page not copied from the source")
			}
			if tc.opts.SkipHiberfil == bytes.Equal(hib, hiberBody) {
				t.Errorf("hiberfil.sys body copied = %v, want %v", bytes.Equal(hib, hiberBody), !tc.opts.SkipHiberfil)
			}
			page := ntfscat(t, dst, "/pagefile.sys")
			if copied := bytes.Equal(page, files[1].data); copied == tc.opts.SkipPagefile {
				t.Errorf("pagefile.sys copied = %v, want %v", copied, !tc.opts.SkipPagefile)
			}
		})
	}

	t.Run("hibernated source keeps both", func(t *testing.T) {
		img := makeNTFS(t, t.TempDir(), 64<<20)
		hib := append([]byte("HIBR"), randomBytes(rng, 1_000_000)...)
		populate(t, img, []testFile{{"/PAGEFILE.SYS", randomBytes(rng, 500_000)}, {"/hiberfil.sys", hib}}, 12)
		full, _ := collect(t, img, Options{})
		skipped, _ := collect(t, img, Options{SkipPagefile: true, SkipHiberfil: true})
		if total(skipped) != total(full) {
			t.Errorf("with a pending resume the options dropped %d bytes; nothing may be skipped", total(full)-total(skipped))
		}
	})
}

func readHead(t testing.TB, path string, n int64) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

func readTail(t testing.TB, path string, n int64) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, n)
	if _, err := f.ReadAt(b, st.Size()-n); err != nil {
		t.Fatal(err)
	}
	return b
}

func probeFile(t testing.TB, img string) *Info {
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
	info, err := Probe(f, st.Size())
	if err != nil {
		t.Fatalf("Probe(%s): %v", img, err)
	}
	if info.FSType != "ntfs" {
		t.Errorf("FSType = %q", info.FSType)
	}
	return info
}

func containsNote(notes []string, sub string) bool {
	for _, n := range notes {
		if bytes.Contains([]byte(n), []byte(sub)) {
			return true
		}
	}
	return false
}

func TestProbeNotNTFS(t *testing.T) {
	cases := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"zeros", make([]byte, 4096)},
		{"fat boot sector", append(append([]byte{0xEB, 0x3C, 0x90}, []byte("MSDOS5.0")...), make([]byte, 4085)...)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Probe(bytes.NewReader(tc.data), int64(len(tc.data)))
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("Probe = %v, want ErrNotFound", err)
			}
		})
	}
}

// TestFragmentedPagefile makes a page file so fragmented that its runlist
// spills into extension records through an $ATTRIBUTE_LIST (and its
// $FILE_NAME into another record), then checks that SkipPagefile drops
// exactly the clusters ntfscluster lists for it.
func TestFragmentedPagefile(t *testing.T) {
	needTools(t, "mkntfs", "ntfsinfo", "ntfscluster", "ntfscat", "ntfsfix")
	if ok, why := canMount(); !ok {
		t.Skipf("needs an ntfs-3g loop mount to fragment free space: %s", why)
	}
	dir := t.TempDir()
	img := makeNTFS(t, dir, 16<<20, "-c", "512")
	mnt := t.TempDir()
	runCmd(t, "mount", "-t", "ntfs-3g", "-o", "loop", img, mnt)
	mounted := true
	defer func() {
		if mounted {
			exec.Command("umount", mnt).Run()
		}
	}()
	// Fill the volume with small files (growing $MFT in pieces), then free
	// every other one: the page file then lands in thousands of holes.
	small := bytes.Repeat([]byte("x"), 700)
	n := 0
	for ; n < 20000; n++ {
		if err := os.WriteFile(fmt.Sprintf("%s/f%05d", mnt, n), small, 0o644); err != nil {
			break
		}
	}
	for i := 0; i < n; i += 2 {
		if err := os.Remove(fmt.Sprintf("%s/f%05d", mnt, i)); err != nil {
			t.Fatal(err)
		}
	}
	page := randomBytes(rand.New(rand.NewPCG(1, 2)), 1_500_000)
	if err := os.WriteFile(mnt+"/pagefile.sys", page, 0o644); err != nil {
		t.Fatal(err)
	}
	unmountNTFS(t, mnt)
	mounted = false

	if out := runCmd(t, "ntfsinfo", "-F", "/pagefile.sys", img); !strings.Contains(out, "$ATTRIBUTE_LIST") {
		t.Fatalf("pagefile.sys got no $ATTRIBUTE_LIST; the test needs a more fragmented volume:\n%s", out)
	}
	runs := ntfsclusterRuns(t, img, "/pagefile.sys")
	var pageClusters int64
	for _, r := range runs {
		pageClusters += r[1]
	}
	full, size := collect(t, img, Options{})
	skipped, _ := collect(t, img, Options{SkipPagefile: true})
	if got, want := total(full)-total(skipped), pageClusters*512; got != want {
		t.Errorf("SkipPagefile dropped %d bytes, pagefile.sys has %d clusters in %d runs = %d bytes", got, pageClusters, len(runs), want)
	}
	cs, clusters, free := ntfsinfoCounts(t, img)
	if want := (clusters-free)*cs + size - clusters*cs; total(full) != want {
		t.Errorf("used bytes = %d, ntfsinfo says %d", total(full), want)
	}
	t.Logf("%d extents; pagefile.sys in %d runs", len(full), len(runs))
	dst := restore(t, img, full, size, true)
	if out, err := exec.Command("ntfsfix", "-n", dst).CombinedOutput(); err != nil {
		t.Fatalf("ntfsfix -n on the restored image: %v\n%s", err, out)
	}
	if got := ntfscat(t, dst, "/pagefile.sys"); sha(got) != sha(page) {
		t.Errorf("pagefile.sys differs after a full restore")
	}
}
