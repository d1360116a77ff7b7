package ext4

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixSuperCsum recomputes the superblock checksum after an edit, so a test
// reaches the checks behind it.
func fixSuperCsum(img []byte) {
	if len(img) < bootAreaEnd {
		return
	}
	sb := img[superblockOffset:bootAreaEnd]
	if binary.LittleEndian.Uint32(sb[0x64:])&roCompatMetadataCsum != 0 {
		binary.LittleEndian.PutUint32(sb[0x3FC:], crc32c(^uint32(0), sb[:0x3FC]))
	}
}

// descOffset is the byte offset of group g's primary descriptor.
func descOffset(tb testing.TB, img []byte, g uint64) (int64, *super) {
	tb.Helper()
	s, err := parseSuper(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		tb.Fatal(err)
	}
	return int64(s.descBlockNr(g/s.descsPerBlock()))<<s.blockLog + int64(g%s.descsPerBlock())*int64(s.descSize), s
}

// fixDescCsum recomputes group g's descriptor checksum after an edit.
func fixDescCsum(tb testing.TB, img []byte, g uint64) {
	tb.Helper()
	off, s := descOffset(tb, img, g)
	raw := img[off : off+int64(s.descSize)]
	var le32 [4]byte
	binary.LittleEndian.PutUint32(le32[:], uint32(g))
	switch {
	case s.metadataCsum():
		c := crc32c(s.csumSeed, le32[:])
		c = crc32c(c, raw[:0x1E])
		c = crc32c(c, []byte{0, 0})
		c = crc32c(c, raw[0x20:])
		binary.LittleEndian.PutUint16(raw[0x1E:], uint16(c))
	case s.roCompat&roCompatGdtCsum != 0:
		c := crc16(0xFFFF, s.uuid[:])
		c = crc16(c, le32[:])
		c = crc16(c, raw[:0x1E])
		c = crc16(c, raw[0x20:])
		binary.LittleEndian.PutUint16(raw[0x1E:], c)
	}
}

func readImage(tb testing.TB, prog string, sizeMiB int64, args ...string) []byte {
	tb.Helper()
	img := filepath.Join(tb.TempDir(), "c.img")
	tree := tb.TempDir()
	makeTree(tb, tree, 2, 256)
	mkfs(tb, img, prog, sizeMiB, tree, args...)
	data, err := os.ReadFile(img)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// TestBadInput feeds damaged and foreign images: each must give the right
// sentinel and a message naming the broken structure, never a panic.
func TestBadInput(t *testing.T) {
	requireTools(t, "mkfs.ext4", "mkfs.ext2", "debugfs")
	ext2 := readImage(t, "mkfs.ext2", 16, "-b", "1024")
	ext4 := readImage(t, "mkfs.ext4", 16, "-b", "4096", "-g", "1024")
	uninit := readImage(t, "mkfs.ext4", 16, "-b", "4096", "-g", "1024", "-O", "^metadata_csum,uninit_bg")

	debugfsEdit := func(src []byte, req string) func(tb testing.TB) []byte {
		return func(tb testing.TB) []byte {
			p := filepath.Join(tb.TempDir(), "e.img")
			if err := os.WriteFile(p, src, 0o644); err != nil {
				tb.Fatal(err)
			}
			run(tb, "debugfs", "-w", "-R", req, p)
			data, err := os.ReadFile(p)
			if err != nil {
				tb.Fatal(err)
			}
			return data
		}
	}
	edit := func(src []byte, fn func(tb testing.TB, img []byte)) func(tb testing.TB) []byte {
		return func(tb testing.TB) []byte {
			img := bytes.Clone(src)
			fn(tb, img)
			return img
		}
	}

	tests := []struct {
		name      string
		image     func(tb testing.TB) []byte
		size      int64 // device size if not len(image)
		probeErr  error // nil: Probe must succeed
		usedErr   error
		msg       string // in the error (UsedExtents', or Probe's if it fails)
		probeNote string // in Probe's notes when Probe succeeds
	}{
		{
			name:     "zeros",
			image:    func(testing.TB) []byte { return make([]byte, 1<<20) },
			probeErr: ErrNotFound, usedErr: ErrNotFound, msg: "magic 0x0000",
		},
		{
			name:     "too small",
			image:    func(testing.TB) []byte { return make([]byte, 100) },
			probeErr: ErrNotFound, usedErr: ErrNotFound, msg: "too small",
		},
		{
			name:     "flipped magic",
			image:    edit(ext4, func(_ testing.TB, img []byte) { img[superblockOffset+0x38] ^= 0xFF }),
			probeErr: ErrNotFound, usedErr: ErrNotFound, msg: "magic 0xefac",
		},
		{
			name:     "truncated image",
			image:    func(testing.TB) []byte { return bytes.Clone(ext4[:8<<20]) },
			probeErr: ErrTruncated, usedErr: ErrTruncated, msg: "filesystem is 16777216 bytes",
		},
		{
			name:     "device smaller than filesystem",
			image:    func(testing.TB) []byte { return ext2 },
			size:     15 << 20,
			probeErr: ErrTruncated, usedErr: ErrTruncated, msg: "device holds 15728640",
		},
		{
			name:      "device larger than filesystem",
			image:     func(testing.TB) []byte { return append(bytes.Clone(ext2), make([]byte, 4096)...) },
			probeNote: "filesystem ends 4096 bytes before the end of the device",
		},
		{
			name:     "superblock checksum",
			image:    edit(ext4, func(_ testing.TB, img []byte) { img[superblockOffset+0x78] = 'X' }),
			probeErr: ErrCorrupt, usedErr: ErrCorrupt, msg: "superblock checksum",
		},
		{
			name: "block bitmap past end",
			image: edit(ext2, func(tb testing.TB, img []byte) {
				off, _ := descOffset(tb, img, 1)
				binary.LittleEndian.PutUint32(img[off:], 0xFFFFFF)
			}),
			probeErr: ErrCorrupt, usedErr: ErrCorrupt,
			msg: "group 1 descriptor: block bitmap 0xffffff beyond end of filesystem (16384 blocks)",
		},
		{
			name: "inode table past end, checksum fixed",
			image: edit(ext4, func(tb testing.TB, img []byte) {
				off, _ := descOffset(tb, img, 2)
				binary.LittleEndian.PutUint32(img[off+0x28:], 1) // bg_inode_table_hi
				fixDescCsum(tb, img, 2)
			}),
			probeErr: ErrCorrupt, usedErr: ErrCorrupt,
			msg: "group 2 descriptor: inode table 0x1",
		},
		{
			name: "free count too large",
			image: edit(ext2, func(tb testing.TB, img []byte) {
				off, _ := descOffset(tb, img, 0)
				binary.LittleEndian.PutUint16(img[off+0x0C:], 60000)
			}),
			probeErr: ErrCorrupt, usedErr: ErrCorrupt,
			msg: "group 0 descriptor: 60000 free blocks in a group of 8192",
		},
		{
			name: "descriptor checksum (metadata_csum)",
			image: edit(ext4, func(tb testing.TB, img []byte) {
				off, _ := descOffset(tb, img, 3)
				img[off+0x0E]++ // free inodes count
			}),
			probeErr: ErrCorrupt, usedErr: ErrCorrupt, msg: "group 3 descriptor: checksum",
		},
		{
			name: "descriptor checksum (uninit_bg)",
			image: edit(uninit, func(tb testing.TB, img []byte) {
				off, _ := descOffset(tb, img, 1)
				img[off+0x12] ^= bgBlockUninit
			}),
			probeErr: ErrCorrupt, usedErr: ErrCorrupt, msg: "group 1 descriptor: checksum",
		},
		{
			name: "block bitmap checksum",
			image: edit(ext4, func(tb testing.TB, img []byte) {
				off, s := descOffset(tb, img, 0)
				d := s.decodeDesc(img[off : off+int64(s.descSize)])
				img[int64(d.blockBitmap)<<s.blockLog+100] ^= 0x10
			}),
			usedErr: ErrCorrupt, msg: "group 0 block bitmap at block",
		},
		{
			name:    "needs recovery",
			image:   debugfsEdit(ext4, "feature needs_recovery"),
			usedErr: ErrUnsupported, msg: "journal needs recovery", probeNote: "capture raw: journal needs recovery",
		},
		{
			name:    "errors recorded",
			image:   debugfsEdit(ext2, "ssv state 3"),
			usedErr: ErrUnsupported, msg: "errors recorded", probeNote: "capture raw: errors recorded",
		},
		{
			name:    "not cleanly unmounted",
			image:   debugfsEdit(ext2, "ssv state 0"),
			usedErr: ErrUnsupported, msg: "not cleanly unmounted", probeNote: "capture raw: not cleanly unmounted",
		},
		{
			name: "unknown incompat feature",
			image: edit(ext4, func(_ testing.TB, img []byte) {
				img[superblockOffset+0x63] |= 0x80 // incompat bit 31
				fixSuperCsum(img)
			}),
			usedErr: ErrUnsupported, msg: "unknown features incompat 0x80000000", probeNote: "unknown features",
		},
		{
			name: "external journal device",
			image: func(tb testing.TB) []byte {
				p := filepath.Join(tb.TempDir(), "j.img")
				mkfs(tb, p, "mkfs.ext4", 8, "", "-O", "journal_dev", "-b", "4096")
				data, err := os.ReadFile(p)
				if err != nil {
					tb.Fatal(err)
				}
				return data
			},
			usedErr: ErrUnsupported, msg: "external journal device", probeNote: "journal_dev",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img := tc.image(t)
			size := tc.size
			if size == 0 {
				size = int64(len(img))
			}
			r := bytes.NewReader(img)
			info, err := Probe(r, size)
			switch {
			case tc.probeErr != nil && !errors.Is(err, tc.probeErr):
				t.Fatalf("Probe: got %v, want %v", err, tc.probeErr)
			case tc.probeErr != nil && !strings.Contains(err.Error(), tc.msg):
				t.Fatalf("Probe: %q does not say %q", err, tc.msg)
			case tc.probeErr == nil && err != nil:
				t.Fatalf("Probe: %v", err)
			case tc.probeErr == nil && !strings.Contains(strings.Join(info.Notes, "; "), tc.probeNote):
				t.Fatalf("Probe notes %q do not say %q", info.Notes, tc.probeNote)
			}
			var n int
			err = UsedExtents(context.Background(), r, size, func(int64, int64) error { n++; return nil })
			if tc.usedErr == nil {
				if err != nil || n == 0 {
					t.Fatalf("UsedExtents: %v after %d extents", err, n)
				}
				return
			}
			if !errors.Is(err, tc.usedErr) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("UsedExtents: got %v, want %v saying %q", err, tc.usedErr, tc.msg)
			}
			t.Logf("%v", err)
		})
	}
}

// TestCancelAndEmitError checks that UsedExtents stops on a cancelled
// context and passes emit's error through.
func TestCancelAndEmitError(t *testing.T) {
	requireTools(t, "mkfs.ext4")
	img := readImage(t, "mkfs.ext4", 32, "-b", "1024")
	r := bytes.NewReader(img)

	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	err := UsedExtents(ctx, r, int64(len(img)), func(int64, int64) error {
		calls++
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: got %v after %d calls, want context.Canceled", err, calls)
	}

	stop := errors.New("disk full")
	err = UsedExtents(context.Background(), r, int64(len(img)), func(int64, int64) error { return stop })
	if !errors.Is(err, stop) {
		t.Errorf("emit error: got %v, want %v", err, stop)
	}
}

// TestUninitHostGroup covers a BLOCK_UNINIT group that holds other groups'
// bitmaps and inode tables (flex_bg). mke2fs never leaves such a group
// uninitialised and e2fsck calls it an error (the kernel would only mark
// the group's own metadata), so the flag is set by hand on a group that
// holds nothing else: the computed bitmap must still mark exactly what the
// real one did, so nothing is lost even on such a filesystem.
func TestUninitHostGroup(t *testing.T) {
	requireTools(t, "mkfs.ext4")
	img := filepath.Join(t.TempDir(), "h.img")
	// 32 groups of 4 MiB, flex_bg of 16: group 16 hosts the metadata of
	// groups 16-31 and, with no backup superblock, nothing else.
	mkfs(t, img, "mkfs.ext4", 128, "", "-b", "4096", "-g", "1024")
	before := collect(t, img)

	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	off, s := descOffset(t, data, 16)
	d := s.decodeDesc(data[off : off+int64(s.descSize)])
	if d.blockUninit(s) || d.blockBitmap < s.groupFirstBlock(16) || d.blockBitmap >= s.groupFirstBlock(17) {
		t.Fatalf("group 16 is not a flex_bg host as expected: %+v", d)
	}
	data[off+0x12] |= bgBlockUninit
	fixDescCsum(t, data, 16)
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	after := collect(t, img)
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatalf("uninitialised host group: extents changed\nbefore %v\nafter  %v", abbreviate(before), abbreviate(after))
	}
}
