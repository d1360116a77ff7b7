package fat

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// seed is a fuzz seed from testdata (see testdata/gen.sh): a prefix of an
// image of the given size.
type seed struct {
	name string
	data []byte
	size int64
}

func loadSeeds(t testing.TB) []seed {
	t.Helper()
	paths, err := filepath.Glob("testdata/*.bin")
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no seeds in testdata; run testdata/gen.sh")
	}
	var seeds []seed
	for _, p := range paths {
		base := strings.TrimSuffix(filepath.Base(p), ".bin")
		name, sizeStr, ok := strings.Cut(base, "-")
		size, err := strconv.ParseInt(sizeStr, 10, 64)
		if !ok || err != nil {
			t.Fatalf("seed %s is not named NAME-SIZE.bin", p)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, seed{name, data, size})
	}
	return seeds
}

// maxFuzzSize keeps one fuzz input from reading gigabytes of zeros.
const maxFuzzSize = 64 << 20

func clampSize(size int64) int64 {
	if size < 0 {
		size = -(size + 1)
	}
	return size % (maxFuzzSize + 1)
}

// Fuzz inputs are sparse images: records of offset (uint32 LE), length
// (uint16 LE) and that many bytes, over zeros. Seeds shrink from tens of KiB
// to about one, so the engine spends its time mutating structure rather
// than minimizing runs of zeros.
const minZeroRun = 32

func encodeSparse(img []byte) []byte {
	var out []byte
	for i := 0; i < len(img); {
		if img[i] == 0 {
			i++
			continue
		}
		j, zeros := i, 0
		for j < len(img) && j-i < 0xFFFF && zeros < minZeroRun {
			if img[j] == 0 {
				zeros++
			} else {
				zeros = 0
			}
			j++
		}
		j -= zeros
		out = binary.LittleEndian.AppendUint32(out, uint32(i))
		out = binary.LittleEndian.AppendUint16(out, uint16(j-i))
		out = append(out, img[i:j]...)
		i = j
	}
	return out
}

// decodeSparse turns records into an image prefix; a truncated last record
// keeps what it has, and records beyond maxSparse are dropped.
func decodeSparse(in []byte) []byte {
	const maxSparse = 4 << 20
	var img []byte
	for len(in) >= 6 {
		off := int(binary.LittleEndian.Uint32(in))
		n := min(int(binary.LittleEndian.Uint16(in[4:])), len(in)-6)
		rec := in[6 : 6+n]
		in = in[6+n:]
		if off+n > maxSparse {
			continue
		}
		if off+n > len(img) {
			img = append(img, make([]byte, off+n-len(img))...)
		}
		copy(img[off:], rec)
	}
	return img
}

// fuzzImage builds the reader for one fuzz input. With fixChecksum, an
// exFAT boot region gets a correct checksum, so mutations of its fields
// get past the checksum test to the checks behind it.
func fuzzImage(in []byte, size int64, fixChecksum bool) (*zeroExtReader, int64) {
	img := decodeSparse(in)
	size = clampSize(size)
	if fixChecksum && len(img) >= 512 && string(img[3:11]) == "EXFAT   " && img[108] >= 9 && img[108] <= 12 {
		if need := 12 << img[108]; len(img) < need {
			img = append(img, make([]byte, need-len(img))...)
		}
		fixExfatChecksum(img)
	}
	return &zeroExtReader{data: img, size: size}, size
}

func addSeeds(f *testing.F) {
	for _, s := range loadSeeds(f) {
		in := encodeSparse(s.data)
		f.Add(in, s.size, true)
		// The device ends inside the filesystem.
		f.Add(in, s.size/2, true)
	}
	f.Add([]byte{}, int64(0), false)
	f.Add(encodeSparse(make([]byte, 512)), int64(512), false)
}

// classified fails unless err is one of the package's sentinels: with a
// reader that never fails, every error must say what kind of problem it is.
func classified(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTruncated) {
		t.Fatalf("unclassified error: %v", err)
	}
	if !strings.HasPrefix(err.Error(), "fat: ") {
		t.Fatalf("error %q lacks the package prefix", err)
	}
}

func FuzzProbe(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, in []byte, size int64, fixChecksum bool) {
		r, size := fuzzImage(in, size, fixChecksum)
		info, err := Probe(r, size)
		if err != nil {
			classified(t, err)
			return
		}
		if info.BlockSize <= 0 || info.BlockSize&(info.BlockSize-1) != 0 {
			t.Fatalf("cluster size %d is not a power of two", info.BlockSize)
		}
		if info.UsedBlocks > info.Blocks || info.Blocks == 0 {
			t.Fatalf("%d used of %d clusters", info.UsedBlocks, info.Blocks)
		}
		if uint64(info.BlockSize)*info.Blocks > uint64(size) {
			t.Fatalf("%d clusters of %d bytes do not fit in %d bytes", info.Blocks, info.BlockSize, size)
		}
	})
}

func FuzzUsedExtents(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, in []byte, size int64, fixChecksum bool) {
		r, size := fuzzImage(in, size, fixChecksum)
		info, perr := Probe(r, size)
		var ext []extent
		uerr := UsedExtents(context.Background(), r, size, func(off, length int64) error {
			ext = append(ext, extent{off, length})
			return nil
		})
		if (perr == nil) != (uerr == nil) {
			t.Fatalf("Probe error %v but UsedExtents error %v", perr, uerr)
		}
		if uerr != nil {
			classified(t, uerr)
			return
		}
		if err := checkExtents(ext, size); err != nil {
			t.Fatal(err)
		}
		total := extentBytes(ext)
		v, err := open(context.Background(), r, size)
		if err != nil {
			t.Fatal(err)
		}
		switch v := v.(type) {
		case *fatVolume:
			// The metadata region, then exactly the used clusters.
			if want := v.dataStart + int64(info.UsedBlocks)*info.BlockSize; total != want {
				t.Fatalf("extents cover %d bytes, want data start %d + %d used clusters of %d", total, v.dataStart, info.UsedBlocks, info.BlockSize)
			}
		case *exfatVolume:
			if used := int64(info.UsedBlocks) * info.BlockSize; total < used {
				t.Fatalf("extents cover %d bytes, less than the %d used clusters", total, info.UsedBlocks)
			}
		}
	})
}

// TestSparseRoundTrip checks the fuzz input encoding on the seeds.
func TestSparseRoundTrip(t *testing.T) {
	for _, s := range loadSeeds(t) {
		in := encodeSparse(s.data)
		got := decodeSparse(in)
		if want := bytes.TrimRight(s.data, "\x00"); !bytes.Equal(got, want) {
			t.Fatalf("%s: sparse round trip changed the image (%d bytes back, want %d)", s.name, len(got), len(want))
		}
		t.Logf("%s: %d bytes as %d sparse", s.name, len(s.data), len(in))
	}
}

// TestSeeds checks that the fuzz seeds are valid filesystems, so fuzzing
// starts from inputs that reach deep into the parsers.
func TestSeeds(t *testing.T) {
	for _, s := range loadSeeds(t) {
		t.Run(s.name, func(t *testing.T) {
			r := &zeroExtReader{data: s.data, size: s.size}
			// The fuzz encoding must keep the seed a valid filesystem.
			if _, err := Probe(fuzzImage(encodeSparse(s.data), s.size, false)); err != nil {
				t.Fatalf("sparse-encoded seed: %v", err)
			}
			info, err := Probe(r, s.size)
			if err != nil {
				t.Fatal(err)
			}
			if info.FSType != s.name || !strings.HasPrefix(info.Label, "SEED") || info.UsedBlocks == 0 {
				t.Fatalf("info %+v, want type %s, label SEED*, some used clusters", *info, s.name)
			}
			n := 0
			if err := UsedExtents(context.Background(), r, s.size, func(off, length int64) error { n++; return nil }); err != nil {
				t.Fatal(err)
			}
			t.Logf("%+v, %d extents", *info, n)
		})
	}
}
