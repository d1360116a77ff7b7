package ext4

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// seedImages returns the committed seed images (testdata/gen.sh made them).
func seedImages(tb testing.TB) map[string][]byte {
	tb.Helper()
	paths, err := filepath.Glob("testdata/*.img.zst")
	if err != nil || len(paths) == 0 {
		tb.Fatalf("no seed images in testdata: %v", err)
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer dec.Close()
	out := map[string][]byte{}
	for _, p := range paths {
		z, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		img, err := dec.DecodeAll(z, nil)
		if err != nil {
			tb.Fatalf("%s: %v", p, err)
		}
		out[filepath.Base(p)] = img
	}
	return out
}

// fixChecksums recomputes the superblock and descriptor checksums of a
// mutated image, so the fuzzer gets past them to the layout checks.
func fixChecksums(img []byte) {
	fixSuperCsum(img)
	s, err := parseSuper(bytes.NewReader(img), int64(len(img)))
	if err != nil || s.layoutUnknown || !s.groupCsum() {
		return
	}
	var le32 [4]byte
	for g := range min(s.groups, 1024) {
		off := int64(s.descBlockNr(g/s.descsPerBlock()))<<s.blockLog + int64(g%s.descsPerBlock())*int64(s.descSize)
		if off < 0 || off+int64(s.descSize) > int64(len(img)) {
			return
		}
		raw := img[off : off+int64(s.descSize)]
		binary.LittleEndian.PutUint32(le32[:], uint32(g))
		if s.metadataCsum() {
			c := crc32c(s.csumSeed, le32[:])
			c = crc32c(c, raw[:0x1E])
			c = crc32c(c, []byte{0, 0})
			c = crc32c(c, raw[0x20:])
			binary.LittleEndian.PutUint16(raw[0x1E:], uint16(c))
		} else {
			c := crc16(crc16(crc16(0xFFFF, s.uuid[:]), le32[:]), raw[:0x1E])
			binary.LittleEndian.PutUint16(raw[0x1E:], crc16(c, raw[0x20:]))
		}
	}
}

// knownError reports whether err is one the API documents; anything else
// (such as the merger's internal ordering error) is a bug.
func knownError(err error) bool {
	for _, e := range []error{ErrNotFound, ErrCorrupt, ErrTruncated, ErrUnsupported} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// zeroTail is a device made of head followed by tail zero bytes, so fuzz
// inputs stay small (the fuzzer is slow on megabyte inputs) while the
// filesystem they describe can be larger.
type zeroTail struct {
	head []byte
	tail int64
}

func (z zeroTail) size() int64 { return int64(len(z.head)) + z.tail }

func (z zeroTail) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= z.size() {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), z.size()-off))
	copied := 0
	if off < int64(len(z.head)) {
		copied = copy(p[:n], z.head[off:])
	}
	clear(p[copied:n])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// fuzzHead is how much of each seed image the fuzzer mutates: it holds the
// superblock, descriptors and (with flex_bg) every bitmap of the seeds.
// Small inputs matter: the fuzzer minimises each new input, which takes
// most of a short run on large ones.
const fuzzHead = 16 << 10

func addSeeds(f *testing.F) {
	for _, img := range seedImages(f) {
		head := img[:min(len(img), fuzzHead)]
		tail := uint16((len(img) - len(head)) >> 10)
		f.Add(head, tail, false)
		f.Add(head, tail, true)
	}
}

func FuzzProbe(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, head []byte, tailKiB uint16, fix bool) {
		if fix {
			head = bytes.Clone(head) // the fuzzer's input must not change
			fixChecksums(head)
		}
		dev := zeroTail{head, int64(tailKiB) << 10}
		info, err := Probe(dev, dev.size())
		if err != nil {
			if !knownError(err) {
				t.Fatalf("undocumented error: %v", err)
			}
			return
		}
		if info.BlockSize < 1024 || info.BlockSize > 65536 || info.BlockSize&(info.BlockSize-1) != 0 {
			t.Fatalf("block size %d", info.BlockSize)
		}
		if int64(info.Blocks)*info.BlockSize > dev.size() || info.UsedBlocks > info.Blocks {
			t.Fatalf("%d used of %d blocks of %d in %d bytes", info.UsedBlocks, info.Blocks, info.BlockSize, dev.size())
		}
	})
}

func FuzzUsedExtents(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, head []byte, tailKiB uint16, fix bool) {
		if fix {
			head = bytes.Clone(head) // the fuzzer's input must not change
			fixChecksums(head)
		}
		dev := zeroTail{head, int64(tailKiB) << 10}
		var ext []extent
		err := UsedExtents(context.Background(), dev, dev.size(), func(off, length int64) error {
			ext = append(ext, extent{off, length})
			return nil
		})
		if err != nil {
			if !knownError(err) {
				t.Fatalf("undocumented error: %v", err)
			}
			return
		}
		if err := checkExtents(ext, dev.size()); err != nil {
			t.Fatal(err)
		}
		if len(ext) == 0 || ext[0].off != 0 || ext[0].len < bootAreaEnd {
			t.Fatalf("boot area not reported: %v", abbreviate(ext))
		}
	})
}

// TestSeedImages runs the seed images through the same checks as the
// bigger tests, so the fuzz seeds are known to be valid filesystems whose
// extents match their descriptors.
func TestSeedImages(t *testing.T) {
	for name, img := range seedImages(t) {
		t.Run(name, func(t *testing.T) {
			r := bytes.NewReader(img)
			info, err := Probe(r, int64(len(img)))
			if err != nil {
				t.Fatal(err)
			}
			var used int64
			err = UsedExtents(context.Background(), r, int64(len(img)), func(off, length int64) error {
				used += length
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if want := int64(info.UsedBlocks) * info.BlockSize; used != want || used == 0 {
				t.Fatalf("extents sum to %d bytes, Probe says %d blocks of %d", used, info.UsedBlocks, info.BlockSize)
			}
		})
	}
}
