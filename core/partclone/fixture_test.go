package partclone

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TestXXHashFixtures reads the XXH64 and XXH128 images made by upstream
// partclone (see testdata/README.md) and compares the result with what that
// partclone's restore wrote; a damaged block must be named.
func TestXXHashFixtures(t *testing.T) {
	want, err := os.ReadFile("testdata/ext4-xxh.restored.sha256")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file string
		mode Checksum
		size int
	}{
		{"testdata/ext4-xxh64-k5.pcl.zst", ChecksumXXH64, 8},
		{"testdata/ext4-xxh128-k5.pcl.zst", ChecksumXXH128, 16},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			img := decompressFixture(t, tc.file)
			out, h, err := readAll(img, 4<<20)
			if err != nil {
				t.Fatal(err)
			}
			if h.Checksum != tc.mode || h.ChecksumSize != tc.size || h.BlocksPerChecksum != 5 || h.Tool != "0.3.47" {
				t.Fatalf("header %+v", h)
			}
			sum := sha256.Sum256(out)
			if got := hex.EncodeToString(sum[:]); got != strings.TrimSpace(string(want)) {
				t.Fatalf("restored SHA-256 %s, partclone's restore gives %s", got, want)
			}
			// Damage the last byte of the 11th stored block (group 2).
			dataStart := descSize + int((h.TotalBlocks+7)/8) + 4
			group := 5*h.BlockSize + tc.size
			bad := bytes.Clone(img)
			bad[dataStart+2*group+h.BlockSize-1] ^= 0x80
			_, _, err = readAll(bad, 4<<20)
			if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), "stored blocks 10-14") {
				t.Fatalf("damaged block: err = %v", err)
			}
		})
	}
}

func decompressFixture(t testing.TB, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := zstd.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	b, err := io.ReadAll(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzReader feeds arbitrary bytes to the header, bitmap and data parser
// of format 0002 images: it must return an error or data in order, never
// panic or allocate without bound.
func FuzzReader(f *testing.F) {
	used := []bool{true, false, true, true, false, true}
	for _, s := range []synth{
		{version: 2, mode: ChecksumNone, blockSize: 512, used: used},
		{version: 2, mode: ChecksumCRC32, bpc: 3, reseed: true, blockSize: 512, used: used},
		{version: 2, mode: ChecksumXXH64, bpc: 4, blockSize: 512, used: used},
		{version: 2, mode: ChecksumXXH128, bpc: 2, reseed: true, blockSize: 512, used: used},
	} {
		img, _ := s.build()
		f.Add(img)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzRead(t, b)
	})
}

// FuzzReaderV1 fuzzes format 0001 images: their 4160-byte header is mostly
// padding, so the fuzzer varies the header's numbers and the bytes after
// it (bitmap, end mark, blocks and CRCs) rather than the padding.
func FuzzReaderV1(f *testing.F) {
	for _, s := range []synth{
		{version: 1, blockSize: 512, used: []bool{true, false, true, true}},
		{version: 1, blockSize: 512, used: []bool{true, true, false, true}, bug64: true},
	} {
		img, _ := s.build()
		f.Add(uint32(512), uint64(len(s.used)), uint64(3), img[descSizeV1:])
	}
	f.Fuzz(func(t *testing.T, bs uint32, total, used uint64, rest []byte) {
		s := synth{version: 1, blockSize: 512, used: []bool{true}}
		img, _ := s.build()
		h := img[:descSizeV1]
		binary.LittleEndian.PutUint32(h[36:], bs)
		binary.LittleEndian.PutUint64(h[40:], uint64(bs)*total+uint64(bs))
		binary.LittleEndian.PutUint64(h[48:], total)
		binary.LittleEndian.PutUint64(h[56:], used)
		fuzzRead(t, append(h, rest...))
	})
}

func fuzzRead(t *testing.T, b []byte) {
	r, err := NewReader(bytes.NewReader(b))
	if err != nil {
		return
	}
	if r.Header.BlockSize > 1<<20 || r.Header.UsedBlocks > 1<<16 {
		// Data buffers blocks as partclone does (up to 64 MiB each);
		// the parser is what is fuzzed, not the allocator.
		return
	}
	var last int64 = -1
	r.Data(context.Background(), func(off int64, p []byte) error {
		if off <= last || off+int64(len(p)) > r.Header.TotalBlocks*int64(r.Header.BlockSize) {
			t.Fatalf("run %d+%d after %d, outside %d blocks", off, len(p), last, r.Header.TotalBlocks)
		}
		last = off + int64(len(p)) - 1
		return nil
	})
}
