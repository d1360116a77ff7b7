package fat

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// fatCase is one filesystem made by mkfs.vfat, filled with mtools.
type fatCase struct {
	name      string
	sizeMiB   int64
	mkfs      []string // mkfs.vfat options besides the image
	bits      int      // FAT type the options must produce
	badBlocks []int64  // 1 KiB block numbers for mkfs.vfat -l
	dataKiB   int64    // file data to write
	garbage   bool     // restore onto random bytes instead of zeros
	// empty leaves the filesystem as mkfs made it: mtools, following the
	// cluster-count rule, reads a FAT32 layout below 65525 clusters as a
	// FAT16 without root directory and cannot write to it.
	empty bool
}

var fatCases = []fatCase{
	{name: "fat12-4M", sizeMiB: 4, mkfs: []string{"-F", "12", "-n", "SMALL12"}, bits: 12, dataKiB: 1500, garbage: true},
	{name: "fat12-16M-4Ksector", sizeMiB: 16, mkfs: []string{"-F", "12", "-S", "4096"}, bits: 12, dataKiB: 4000},
	{name: "fat16-64M-badclusters", sizeMiB: 64, mkfs: []string{"-F", "16", "-n", "BAD16"}, bits: 16, badBlocks: []int64{9000, 9001, 20000, 40001, 60000}, dataKiB: 6000},
	{name: "fat16-24M-s1-onefat", sizeMiB: 24, mkfs: []string{"-F", "16", "-s", "1", "-f", "1", "-r", "112", "-n", "ONEFAT"}, bits: 16, dataKiB: 5000, garbage: true},
	{name: "fat32-300M", sizeMiB: 300, mkfs: []string{"-F", "32", "-n", "BIG32"}, bits: 32, dataKiB: 12000},
	{name: "fat32-40M-s1", sizeMiB: 40, mkfs: []string{"-F", "32", "-s", "1", "-n", "TINYCLUS"}, bits: 32, dataKiB: 6000, garbage: true},
	{name: "fat32-20M-below-spec-minimum", sizeMiB: 20, mkfs: []string{"-F", "32", "-n", "FEW32"}, bits: 32, empty: true},
	{name: "fat32-300M-4Ksector", sizeMiB: 300, mkfs: []string{"-F", "32", "-S", "4096", "-s", "1", "-n", "SECT4K"}, bits: 32, dataKiB: 8000},
}

// writeTree writes the first part of the test tree under src: files of
// awkward sizes, a directory spanning several clusters, deep directories,
// and 20 "hole" files of which the even ones are meant to be deleted. It
// returns the hole size.
func writeTree(t *testing.T, src string, clusterSize, dataKiB int64, rng *rand.Rand) int {
	t.Helper()
	budget := dataKiB << 10
	writeRandom(t, filepath.Join(src, "README.TXT"), 300, rng)
	writeRandom(t, filepath.Join(src, "A rather long file name, with spaces.data"), 3000, rng)
	writeRandom(t, filepath.Join(src, "empty.bin"), 0, rng)
	writeRandom(t, filepath.Join(src, "one-cluster.bin"), int(clusterSize), rng)
	writeRandom(t, filepath.Join(src, "one-cluster-plus-one.bin"), int(clusterSize)+1, rng)
	writeRandom(t, filepath.Join(src, "docs/sub/deeper/note.txt"), 1234, rng)
	writeRandom(t, filepath.Join(src, "docs/sub/Mixed Case Name.Txt"), 77777, rng)
	for i := range 120 {
		writeRandom(t, filepath.Join(src, fmt.Sprintf("many/file number %03d.txt", i)), 100+rng.IntN(2000), rng)
	}
	holeSize := int(budget / 60)
	for i := range 20 {
		writeRandom(t, filepath.Join(src, holeName(i)), holeSize, rng)
	}
	writeRandom(t, filepath.Join(src, "big.bin"), int(budget/4), rng)
	return holeSize
}

func holeName(i int) string { return fmt.Sprintf("holes/h%02d.bin", i) }

// fragName is the file written after the holes are punched, three holes
// long, so that a first-fit allocator has to scatter it.
const fragName = "frag/fragmented.bin"

// populate writes the test tree with mtools, deletes the even hole files,
// then writes fragName, which must come out fragmented. It returns the
// directory holding what the image should now contain. The filesystem
// starts at byte partOff of the file img.
func populate(t *testing.T, file string, partOff, clusterSize, dataKiB int64, seed uint64) string {
	t.Helper()
	img := mtoolsImage(file, partOff)
	rng := rand.New(rand.NewPCG(seed, 7))
	src := filepath.Join(t.TempDir(), "src")
	holeSize := writeTree(t, src, clusterSize, dataKiB, rng)
	tops, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-s", "-i", img}
	for _, e := range tops {
		args = append(args, filepath.Join(src, e.Name()))
	}
	run(t, "mcopy", append(args, "::/")...)

	for i := 0; i < 20; i += 2 {
		run(t, "mdel", "-i", img, "::/"+holeName(i))
		if err := os.Remove(filepath.Join(src, holeName(i))); err != nil {
			t.Fatal(err)
		}
	}
	forgetNextFree(t, file, partOff)
	frag := filepath.Join(src, fragName)
	writeRandom(t, frag, 3*holeSize, rng)
	run(t, "mcopy", "-s", "-i", img, filepath.Dir(frag), "::/")
	chains := run(t, "mshowfat", "-i", img, "::/"+fragName)
	if n := strings.Count(chains, "<"); n < 2 {
		t.Fatalf("%s was meant to fill holes but has %d cluster run(s): %s", fragName, n, chains)
	}
	return src
}

// forgetNextFree clears the FAT32 FSInfo next-free hint (as drivers that do
// not keep it leave it), so mtools allocates from the start of the volume
// into the holes instead of after the last allocation.
func forgetNextFree(t testing.TB, file string, partOff int64) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 512)
	if _, err := f.ReadAt(b, partOff); err != nil {
		t.Fatal(err)
	}
	if binary.LittleEndian.Uint16(b[22:]) != 0 { // not FAT32: no FSInfo
		return
	}
	bps := int64(binary.LittleEndian.Uint16(b[11:]))
	fsinfo := int64(binary.LittleEndian.Uint16(b[48:]))
	if _, err := f.WriteAt([]byte{0xFF, 0xFF, 0xFF, 0xFF}, partOff+fsinfo*bps+492); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// mtoolsImage names a filesystem at byte partOff of file for mtools -i.
func mtoolsImage(file string, partOff int64) string {
	if partOff == 0 {
		return file
	}
	return fmt.Sprintf("%s@@%d", file, partOff)
}

// extractTree copies everything out of a FAT image with mtools.
func extractTree(t *testing.T, img string) map[string]string {
	t.Helper()
	out := t.TempDir()
	run(t, "mcopy", "-s", "-n", "-i", img, "::/*", out)
	return treeHashes(t, out)
}

// fsckFacts is what fsck.fat -n -v says about a FAT image.
type fsckFacts struct {
	bits, clusterSize, dataStart, used, total int64
}

func fsckFAT(t *testing.T, img string) fsckFacts {
	t.Helper()
	out := run(t, "fsck.fat", "-n", "-v", img)
	m := regexp.MustCompile(`: \d+ files, (\d+)/(\d+) clusters`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no cluster summary in fsck.fat output:\n%s", out)
	}
	used, _ := strconv.ParseInt(m[1], 10, 64)
	total, _ := strconv.ParseInt(m[2], 10, 64)
	return fsckFacts{
		bits:        intField(t, out, `(\d+) bit entries`),
		clusterSize: intField(t, out, `(\d+) bytes per cluster`),
		dataStart:   intField(t, out, `Data area starts at byte (\d+)`),
		used:        used,
		total:       total,
	}
}

func TestFATImages(t *testing.T) {
	needTools(t, "mkfs.vfat", "fsck.fat", "mcopy", "mdel", "mshowfat", "blkid")
	for i, tc := range fatCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			img := filepath.Join(dir, "src.img")
			sparseFile(t, img, tc.sizeMiB<<20)
			args := append([]string{}, tc.mkfs...)
			if tc.badBlocks != nil {
				list := filepath.Join(dir, "bad.txt")
				var sb strings.Builder
				for _, b := range tc.badBlocks {
					fmt.Fprintln(&sb, b)
				}
				if err := os.WriteFile(list, []byte(sb.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				args = append(args, "-l", list)
			}
			run(t, "mkfs.vfat", append(args, img)...)
			before := fsckFAT(t, img)
			var want map[string]string
			if !tc.empty {
				want = treeHashes(t, populate(t, img, 0, before.clusterSize, tc.dataKiB, uint64(i)))
			}
			facts := fsckFAT(t, img)
			if int(facts.bits) != tc.bits {
				t.Fatalf("fsck.fat reports %d-bit entries, the case expects FAT%d", facts.bits, tc.bits)
			}

			f, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			info, err := Probe(f, tc.sizeMiB<<20)
			if err != nil {
				t.Fatalf("Probe: %v", err)
			}
			t.Logf("info: %+v", *info)

			// Bad clusters, from the block list and the layout fsck.fat printed.
			badClusters := map[int64]bool{}
			for _, b := range tc.badBlocks {
				badClusters[(b*1024-facts.dataStart)/facts.clusterSize] = true
			}
			nbad := int64(len(badClusters))

			t.Run("info", func(t *testing.T) {
				if want := fmt.Sprintf("fat%d", facts.bits); info.FSType != want {
					t.Errorf("FSType %q, fsck.fat says %q", info.FSType, want)
				}
				if info.BlockSize != facts.clusterSize {
					t.Errorf("BlockSize %d, fsck.fat says %d", info.BlockSize, facts.clusterSize)
				}
				if int64(info.Blocks) != facts.total {
					t.Errorf("Blocks %d, fsck.fat says %d", info.Blocks, facts.total)
				}
				// fsck.fat counts bad clusters as used; Probe leaves them out.
				if int64(info.UsedBlocks) != facts.used-nbad {
					t.Errorf("UsedBlocks %d, fsck.fat says %d used of which %d bad", info.UsedBlocks, facts.used, nbad)
				}
				bl := blkidInfo(t, img)
				if info.UUID != bl["UUID"] {
					t.Errorf("UUID %q, blkid says %q", info.UUID, bl["UUID"])
				}
				if info.Label != bl["LABEL"] {
					t.Errorf("Label %q, blkid says %q", info.Label, bl["LABEL"])
				}
				if strings.ToLower(bl["VERSION"]) != info.FSType {
					t.Errorf("FSType %q, blkid says VERSION=%q", info.FSType, bl["VERSION"])
				}
				if nbad > 0 && !strings.Contains(strings.Join(info.Notes, "\n"), fmt.Sprintf("%d clusters marked bad", nbad)) {
					t.Errorf("notes %q do not report %d bad clusters", info.Notes, nbad)
				}
			})

			ext := collectExtents(t, img)
			t.Logf("%d extents, %d bytes", len(ext), extentBytes(ext))

			t.Run("used-bytes-match-fsck", func(t *testing.T) {
				// Everything before the first data cluster (reserved
				// sectors, all FATs, the FAT12/16 root directory) is one
				// region of dataStart bytes; after it come the used
				// clusters. fsck.fat's "used" counts clusters owned by
				// files and directories plus bad ones, so:
				//   bytes = dataStart + clusterSize * (used - bad)
				wantBytes := facts.dataStart + facts.clusterSize*(facts.used-nbad)
				if got := extentBytes(ext); got != wantBytes {
					t.Errorf("extents cover %d bytes, want %d = data start %d + cluster size %d * (%d used - %d bad)",
						got, wantBytes, facts.dataStart, facts.clusterSize, facts.used, nbad)
				}
				if ext[0].off != 0 || ext[0].length < facts.dataStart {
					t.Errorf("first extent [%d, +%d) does not cover the %d bytes before the data area", ext[0].off, ext[0].length, facts.dataStart)
				}
				for c := range badClusters {
					if off := facts.dataStart + c*facts.clusterSize; overlaps(ext, off, facts.clusterSize) {
						t.Errorf("bad cluster %d at byte %d is in the used extents", c+2, off)
					}
				}
			})

			t.Run("restore-used-extents", func(t *testing.T) {
				dst := filepath.Join(t.TempDir(), "dst.img")
				if tc.garbage {
					garbageFile(t, dst, tc.sizeMiB<<20, uint64(i))
				} else {
					sparseFile(t, dst, tc.sizeMiB<<20)
				}
				copyExtents(t, img, dst, ext)
				if out, rc, err := runRC("fsck.fat", "-n", dst); err != nil || rc != 0 {
					t.Fatalf("fsck.fat -n on the restored image: rc %d, %v\n%s", rc, err, out)
				}
				if tc.empty {
					if after := fsckFAT(t, dst); after != facts {
						t.Fatalf("fsck.fat -v facts after restore %+v, before %+v", after, facts)
					}
					return
				}
				gotSrc := extractTree(t, img)
				if d := diffTrees(want, gotSrc); d != "" {
					t.Fatalf("source image differs from the tree written to it:\n%s", d)
				}
				got := extractTree(t, dst)
				if d := diffTrees(want, got); d != "" {
					t.Fatalf("restored image differs from the source:\n%s", d)
				}
				t.Logf("%d paths identical after restore", len(got))
			})
		})
	}
}

// TestRestoreCheckHasTeeth shows the restore comparison catches a missing
// extent: leaving out the clusters of one file must change what comes out.
func TestRestoreCheckHasTeeth(t *testing.T) {
	needTools(t, "mkfs.vfat", "fsck.fat", "mcopy", "mdel", "mshowfat")
	dir := t.TempDir()
	img := filepath.Join(dir, "src.img")
	sparseFile(t, img, 16<<20)
	run(t, "mkfs.vfat", "-F", "16", "-s", "4", img)
	src := populate(t, img, 0, 2048, 800, 99)
	want := treeHashes(t, src)
	ext := collectExtents(t, img)
	// Drop the extent holding the last data (the fragmented file's tail).
	dst := filepath.Join(dir, "dst.img")
	sparseFile(t, dst, 16<<20)
	copyExtents(t, img, dst, ext[:len(ext)-1])
	if d := diffTrees(want, extractTree(t, dst)); d == "" {
		t.Fatal("restoring without the last extent gave an identical tree; the comparison cannot see missing data")
	} else {
		t.Logf("missing extent detected:\n%s", d)
	}
}

// TestPartitionInDiskImage runs on a FAT32 partition inside an MBR disk
// image: the whole disk is not FAT, the partition is, and a restore of the
// partition's extents at the same offset gives back the files.
func TestPartitionInDiskImage(t *testing.T) {
	needTools(t, "sfdisk", "mkfs.vfat", "fsck.fat", "mcopy", "mdel", "mshowfat")
	const (
		diskSize = 48 << 20
		partOff  = 1 << 20
		partSize = diskSize - partOff
	)
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.img")
	sparseFile(t, disk, diskSize)
	cmd := exec.Command("sfdisk", "-q", disk)
	cmd.Stdin = strings.NewReader(fmt.Sprintf("label: dos\nstart=%d, size=%d, type=c\n", partOff/512, partSize/512))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	run(t, "mkfs.vfat", "--offset", strconv.Itoa(partOff/512), "-F", "32", "-n", "PARTITION", disk, strconv.Itoa(partSize/1024))
	want := treeHashes(t, populate(t, disk, partOff, 512, 2000, 42))

	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := Probe(f, diskSize); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Probe on the whole disk: %v, want ErrNotFound", err)
	}
	part := io.NewSectionReader(f, partOff, partSize)
	info, err := Probe(part, partSize)
	if err != nil {
		t.Fatalf("Probe on the partition: %v", err)
	}
	if info.FSType != "fat32" || info.Label != "PARTITION" {
		t.Fatalf("info %+v, want fat32 labelled PARTITION", *info)
	}
	var ext []extent
	err = UsedExtents(context.Background(), part, partSize, func(off, length int64) error {
		ext = append(ext, extent{off, length})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := checkExtents(ext, partSize); err != nil {
		t.Fatal(err)
	}

	// Restore: the partition table (copied raw by the core), then the
	// partition's extents at the partition offset.
	dst := filepath.Join(dir, "dst.img")
	garbageFile(t, dst, diskSize, 5)
	shifted := []extent{{0, 512}}
	for _, e := range ext {
		shifted = append(shifted, extent{e.off + partOff, e.length})
	}
	copyExtents(t, disk, dst, shifted)
	got := extractTree(t, mtoolsImage(dst, partOff))
	if d := diffTrees(want, got); d != "" {
		t.Fatalf("restored partition differs from the source:\n%s", d)
	}
	// fsck.fat takes no offset: check a copy of the partition alone.
	alone := filepath.Join(dir, "part.img")
	sparseFile(t, alone, partSize)
	out, err := os.OpenFile(alone, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if _, err := io.Copy(out, io.NewSectionReader(in, partOff, partSize)); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if o, rc, err := runRC("fsck.fat", "-n", alone); err != nil || rc != 0 {
		t.Fatalf("fsck.fat -n on the restored partition: rc %d, %v\n%s", rc, err, o)
	}
}
