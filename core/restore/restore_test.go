package restore_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/diskcast/diskcast/core/capture"
	"github.com/diskcast/diskcast/core/image"
	"github.com/diskcast/diskcast/core/internal/testenv"
	"github.com/diskcast/diskcast/core/restore"
)

func captureFile(t *testing.T, src string, req capture.Request) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "img.dci")
	req.Source, req.Output = src, out
	if req.Options.ChunkSize == 0 {
		req.Options.ChunkSize = 128 << 10 // many chunks even for small fixtures
	}
	if _, err := capture.Run(context.Background(), req); err != nil {
		t.Fatalf("capture: %v", err)
	}
	return out
}

func restoreFile(t *testing.T, imgPath, target string, opts restore.Options) (*restore.Result, error) {
	t.Helper()
	img, err := image.Open(imgPath)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	return restore.Run(context.Background(), img.Reader, target, opts)
}

// ext4Fixture makes a populated ext4 filesystem image.
func ext4Fixture(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	testenv.FillTree(t, filepath.Join(dir, "tree"), 60, 1)
	img := filepath.Join(dir, "fs.img")
	testenv.MkfsExt4(t, img, size, filepath.Join(dir, "tree"))
	return img
}

// gptFixture makes a GPT disk with two ext4 partitions, boot-loader bytes in
// the gap after the GPT entries, and junk between the partitions.
func gptFixture(t *testing.T) string {
	t.Helper()
	testenv.RequireCommands(t, "sfdisk", "mkfs.ext4")
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.img")
	f, _ := os.Create(disk)
	f.Truncate(96 << 20)
	f.Close()
	testenv.Run(t, "label: gpt\nstart=2048, size=65536, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"one\"\nstart=77824, size=86016, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"two\"\n", "sfdisk", "-q", disk)
	for i, p := range []struct{ start, size int64 }{{2048 * 512, 65536 * 512}, {77824 * 512, 86016 * 512}} {
		fs := filepath.Join(dir, "p.img")
		tree := filepath.Join(dir, "tree", string(rune('a'+i)))
		testenv.FillTree(t, tree, 30, uint64(10+i))
		testenv.MkfsExt4(t, fs, p.size, tree)
		data, err := os.ReadFile(fs)
		if err != nil {
			t.Fatal(err)
		}
		testenv.WriteAt(t, disk, p.start, data)
	}
	testenv.WriteAt(t, disk, 40*512, testenv.Garbage(8192, 7))                // "boot loader" in the post-GPT gap
	testenv.WriteAt(t, disk, (2048+65536)*512+4096, testenv.Garbage(4096, 8)) // junk between partitions
	return disk
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		fixture func(t *testing.T) string
		opts    capture.Options
		kind    image.SourceKind
	}{
		{"ext4 partition zstd", func(t *testing.T) string { return ext4Fixture(t, 48<<20) }, capture.Options{}, image.SourcePartition},
		{"ext4 partition gzip", func(t *testing.T) string { return ext4Fixture(t, 32<<20) }, capture.Options{Codec: image.CodecGzip}, image.SourcePartition},
		{"ext4 partition stored", func(t *testing.T) string { return ext4Fixture(t, 32<<20) }, capture.Options{Codec: image.CodecNone, Workers: 1}, image.SourcePartition},
		{"gpt disk", gptFixture, capture.Options{}, image.SourceDisk},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := tc.fixture(t)
			if tc.opts.Codec == 0 && !strings.Contains(tc.name, "stored") {
				tc.opts.Codec = image.CodecZstd
			}
			imgPath := captureFile(t, src, capture.Request{Options: tc.opts})
			img, err := image.Open(imgPath)
			if err != nil {
				t.Fatal(err)
			}
			if img.Header.Source.Kind != tc.kind {
				t.Errorf("source kind %v, want %v", img.Header.Source.Kind, tc.kind)
			}
			if len(img.Index.Chunks) < 2 {
				t.Errorf("only %d chunks", len(img.Index.Chunks))
			}
			img.Close()

			// Onto a fresh file, and onto a file full of garbage: both must
			// come out identical to the source.
			fresh := filepath.Join(t.TempDir(), "fresh.img")
			if _, err := restoreFile(t, imgPath, fresh, restore.Options{}); err != nil {
				t.Fatal(err)
			}
			if d := testenv.FilesEqual(t, src, fresh); d >= 0 {
				t.Fatalf("fresh target differs from source at byte %d", d)
			}
			st, _ := os.Stat(src)
			dirty := filepath.Join(t.TempDir(), "dirty.img")
			os.WriteFile(dirty, testenv.Garbage(int(st.Size()), 3), 0o644)
			if _, err := restoreFile(t, imgPath, dirty, restore.Options{Workers: 3}); err != nil {
				t.Fatal(err)
			}
			if d := testenv.FilesEqual(t, src, dirty); d >= 0 {
				t.Fatalf("dirty target differs from source at byte %d", d)
			}
		})
	}
}

func TestGPTLayoutRecorded(t *testing.T) {
	src := gptFixture(t)
	img, err := image.Open(captureFile(t, src, capture.Request{}))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	h := img.Header
	if h.Source.Table.Scheme != "gpt" || len(h.Source.Partitions) != 2 {
		t.Fatalf("table %q with %d partitions, want gpt with 2", h.Source.Table.Scheme, len(h.Source.Partitions))
	}
	p := h.Source.Partitions[1]
	if p.Name != "two" || p.Start != 77824*512 || p.Size != 86016*512 || p.Handler != "raw" || p.UsedBytes == 0 {
		t.Errorf("partition 2 = %+v", p)
	}
	if len(h.Source.Table.Areas) == 0 {
		t.Error("no raw partition-table bytes recorded")
	}
}

// TestCorruptChunkNotWritten flips a byte in one chunk: the restore must
// fail naming that chunk, and none of that chunk's bytes may reach the
// target.
func TestCorruptChunkNotWritten(t *testing.T) {
	src := ext4Fixture(t, 32<<20)
	imgPath := captureFile(t, src, capture.Request{})
	img, err := image.Open(imgPath)
	if err != nil {
		t.Fatal(err)
	}
	victim := len(img.Index.Chunks) / 2
	c := img.Index.Chunks[victim]
	img.Close()
	b, _ := os.ReadFile(imgPath)
	b[c.FileOffset+int64(c.StoredSize)/2] ^= 0x10
	os.WriteFile(imgPath, b, 0o644)

	target := filepath.Join(t.TempDir(), "t.img")
	_, err = restoreFile(t, imgPath, target, restore.Options{Workers: 1})
	if !errors.Is(err, image.ErrChecksum) || !errors.Is(err, restore.ErrIncomplete) {
		t.Fatalf("restore error = %v, want checksum mismatch and incomplete target", err)
	}
	if want := "chunk " + strconv.Itoa(victim); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name %q", err, want)
	}
	got, _ := os.ReadFile(target)
	for _, r := range c.Runs {
		if r.End() <= int64(len(got)) && !bytes.Equal(got[r.Offset:r.End()], make([]byte, r.Length)) {
			t.Fatalf("bytes of the corrupt chunk were written at %d", r.Offset)
		}
	}
}

// halfAnalyzer reports only the first half of every partition as used, so
// that the image has free space.
func halfAnalyzer(ctx context.Context, r io.ReaderAt, off, size int64) (*capture.Analysis, error) {
	return &capture.Analysis{FSType: "test", Handler: "half", Extents: func(ctx context.Context, emit func(off, length int64) error) error {
		return emit(0, size/2)
	}}, nil
}

func TestFreeModes(t *testing.T) {
	src := ext4Fixture(t, 16<<20)
	imgPath := captureFile(t, src, capture.Request{Analyze: halfAnalyzer})
	st, _ := os.Stat(src)
	size := st.Size()
	garbage := testenv.Garbage(int(size), 5)
	for _, tc := range []struct {
		mode      restore.FreeMode
		wantFree  func([]byte) bool
		modeLabel string
	}{
		{restore.FreeKeep, func(b []byte) bool { return bytes.Equal(b, garbage[size/2:]) }, "keep"},
		{restore.FreeZero, func(b []byte) bool { return bytes.Equal(b, make([]byte, len(b))) }, "zero"},
		{restore.FreeDiscard, func(b []byte) bool { return bytes.Equal(b, make([]byte, len(b))) }, "discard"},
	} {
		t.Run(tc.modeLabel, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "t.img")
			os.WriteFile(target, garbage, 0o644)
			if _, err := restoreFile(t, imgPath, target, restore.Options{Free: tc.mode}); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(target)
			want, _ := os.ReadFile(src)
			if !bytes.Equal(got[:size/2], want[:size/2]) {
				t.Fatal("used half differs from the source")
			}
			if !tc.wantFree(got[size/2:]) {
				t.Fatalf("free half not as --free %s says", tc.modeLabel)
			}
		})
	}
}

// TestTooSmallDevice needs a block device: a loop device smaller than the
// image must be refused before anything is written.
func TestTooSmallDevice(t *testing.T) {
	src := ext4Fixture(t, 16<<20)
	imgPath := captureFile(t, src, capture.Request{})
	small := filepath.Join(t.TempDir(), "small.img")
	os.WriteFile(small, testenv.Garbage(8<<20, 9), 0o644)
	before := testenv.FileSHA256(t, small)
	dev := testenv.LoopDevice(t, small)
	_, err := restoreFile(t, imgPath, dev, restore.Options{})
	if !errors.Is(err, restore.ErrTooSmall) {
		t.Fatalf("restore onto an 8 MiB device: %v, want ErrTooSmall", err)
	}
	if after := testenv.FileSHA256(t, small); after != before {
		t.Fatal("the refused target was modified")
	}
}

// TestBlockDevice restores onto a loop device holding garbage.
func TestBlockDevice(t *testing.T) {
	src := ext4Fixture(t, 16<<20)
	imgPath := captureFile(t, src, capture.Request{})
	backing := filepath.Join(t.TempDir(), "dev.img")
	os.WriteFile(backing, testenv.Garbage(16<<20, 11), 0o644)
	dev := testenv.LoopDevice(t, backing)
	if _, err := restoreFile(t, imgPath, dev, restore.Options{}); err != nil {
		t.Fatal(err)
	}
	if d := testenv.FilesEqual(t, src, backing); d >= 0 {
		t.Fatalf("device differs from source at byte %d", d)
	}
	testenv.Run(t, "", "e2fsck", "-fn", dev)
}

// TestMountedDevices: capture refuses a source mounted read-write, and
// restore refuses any mounted target, before reading or writing.
func TestMountedDevices(t *testing.T) {
	testenv.RequireCommands(t, "mount", "umount")
	src := ext4Fixture(t, 16<<20)
	imgPath := captureFile(t, src, capture.Request{})
	dev := testenv.LoopDevice(t, src)
	mnt := t.TempDir()
	if out, err := exec.Command("mount", dev, mnt).CombinedOutput(); err != nil {
		t.Skipf("skipping: cannot mount a loop device here: %v %s", err, out)
	}
	defer exec.Command("umount", mnt).Run()
	out := filepath.Join(t.TempDir(), "o.dci")
	if _, err := capture.Run(context.Background(), capture.Request{Source: dev, Output: out}); !errors.Is(err, capture.ErrInUse) {
		t.Errorf("capture of a read-write mounted device: %v, want ErrInUse", err)
	}
	// Mounting read-write changes the superblock; remount read-only
	// without journal replay so the device content is stable.
	exec.Command("umount", mnt).Run()
	if out, err := exec.Command("mount", "-o", "ro,noload", dev, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount read-only: %v %s", err, out)
	}
	before := testenv.FileSHA256(t, src)
	if _, err := restoreFile(t, imgPath, dev, restore.Options{}); !errors.Is(err, restore.ErrInUse) {
		t.Errorf("restore onto a mounted device: %v, want ErrInUse", err)
	}
	exec.Command("umount", mnt).Run()
	if after := testenv.FileSHA256(t, src); after != before {
		t.Error("the mounted target was modified")
	}
}

// TestResume interrupts a restore (a corrupt chunk near the end), repairs
// the image and restores again: the second run resumes from the journal
// and the result is identical to the source.
func TestResume(t *testing.T) {
	src := ext4Fixture(t, 32<<20)
	imgPath := captureFile(t, src, capture.Request{})
	good, _ := os.ReadFile(imgPath)
	img, err := image.Open(imgPath)
	if err != nil {
		t.Fatal(err)
	}
	n := len(img.Index.Chunks)
	last := img.Index.Chunks[n-1]
	img.Close()
	bad := bytes.Clone(good)
	bad[last.FileOffset] ^= 1
	os.WriteFile(imgPath, bad, 0o644)

	target := filepath.Join(t.TempDir(), "t.img")
	journal := restore.JournalPath(target, false)
	if _, err := restoreFile(t, imgPath, target, restore.Options{Workers: 1, Journal: journal}); !errors.Is(err, restore.ErrIncomplete) {
		t.Fatalf("first run: %v, want an incomplete restore", err)
	}
	if _, err := os.Stat(journal); err != nil {
		t.Fatalf("no journal after an interrupted restore: %v", err)
	}
	os.WriteFile(imgPath, good, 0o644)
	res, err := restoreFile(t, imgPath, target, restore.Options{Workers: 2, Journal: journal})
	if err != nil {
		t.Fatal(err)
	}
	if res.Resumed != n-1 || res.Chunks != 1 {
		t.Errorf("resumed %d chunks and wrote %d, want %d and 1", res.Resumed, res.Chunks, n-1)
	}
	if d := testenv.FilesEqual(t, src, target); d >= 0 {
		t.Fatalf("resumed target differs from source at byte %d", d)
	}
	if _, err := os.Stat(journal); err == nil {
		t.Error("journal left behind after a complete restore")
	}
}
