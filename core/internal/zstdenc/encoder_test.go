package zstdenc

import (
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/diskcast/diskcast/core/internal/testenv"
	"github.com/klauspost/compress/zstd"
)

var decoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<30))

// roundTrip encodes src, checks that the frame decodes to src, and returns
// the frame.
func roundTrip(t testing.TB, e *Encoder, src []byte) []byte {
	t.Helper()
	frame := e.EncodeAll(src, nil)
	got, err := decoder.DecodeAll(frame, nil)
	if err != nil {
		t.Fatalf("%d bytes: decode: %v", len(src), err)
	}
	if !bytes.Equal(got, src) {
		t.Fatalf("%d bytes: decoded data differs", len(src))
	}
	return frame
}

// mixed returns n bytes that compress like a filesystem does: text, runs,
// random stretches and copies of earlier data from near and far.
func mixed(r *rand.Rand, n int) []byte {
	b := make([]byte, 0, n+70000)
	for len(b) < n {
		switch k := r.IntN(10); {
		case k < 3: // text
			for range r.IntN(2000) {
				b = append(b, "etaoin shrdlu\n{}();"[r.IntN(19)])
			}
		case k < 5: // random
			for range r.IntN(3000) {
				b = append(b, byte(r.Uint32()))
			}
		case k < 6: // a run
			c := byte(r.Uint32())
			for range r.IntN(500) {
				b = append(b, c)
			}
		default: // a copy, often of the same few offsets
			if len(b) < 16 {
				continue
			}
			back := 1 + r.IntN(min(len(b), []int{8, 64, 4096, len(b)}[r.IntN(4)]))
			from := len(b) - back
			for i := range 4 + r.IntN(300) {
				b = append(b, b[from+i])
			}
		}
	}
	return b[:n]
}

func TestRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	e := New()
	for _, n := range []int{0, 1, 5, 16, 17, 100, 255, 256, 300, 1023, 1024, 4096, 65791, 65792, maxBlock - 1, maxBlock, maxBlock + 1, 400000, 3 << 20} {
		text := make([]byte, n)
		for i := range text {
			text[i] = "abcdefgh ijk\n"[r.IntN(13)]
		}
		roundTrip(t, e, text)
		random := testenv.Random(n, uint64(n))
		if f := roundTrip(t, e, random); len(f) > n+n/1000+16 {
			t.Errorf("%d random bytes took %d: raw blocks should cost 3 bytes per 128 KiB", n, len(f))
		}
		roundTrip(t, e, bytes.Repeat([]byte{0xAB}, n))
		roundTrip(t, e, mixed(r, n))
	}
}

// TestBeyondMaxSize: inputs too large for the hash slots' positions are
// stored, still as one valid frame.
func TestBeyondMaxSize(t *testing.T) {
	src := bytes.Repeat([]byte("too big "), (MaxSize+8)/8)
	if f := roundTrip(t, New(), src); len(f) < len(src) {
		t.Errorf("%d bytes beyond MaxSize compressed to %d: want them stored", len(src), len(f))
	}
}

// TestLongSequences codes the longest literal lengths, match lengths and
// offsets a chunk can hold, whose extra bits fill the bit buffer.
func TestLongSequences(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	far := testenv.Random(3<<20, 3) // 24 whole blocks
	src := append([]byte(nil), far...)
	// 70000 literals, then a 100000-byte match 3 MiB back.
	src = append(src, testenv.Random(70000, 4)...)
	src = append(src, far[10:100010]...)
	src = append(src, mixed(r, 1<<20)...)
	src = append(src, far[5000:200000]...)
	frame := roundTrip(t, New(), src)
	if len(frame) > len(src)-250000 {
		t.Errorf("%d bytes with 295000 bytes of long matches took %d", len(src), len(frame))
	}
}

// TestSmallerThanKlauspost holds the reason this package exists: on data
// like a filesystem's it must beat the klauspost level-3 encoder.
func TestSmallerThanKlauspost(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	src := mixed(r, 4<<20)
	own := len(roundTrip(t, New(), src))
	kp, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false))
	if err != nil {
		t.Fatal(err)
	}
	theirs := len(kp.EncodeAll(src, nil))
	t.Logf("%d bytes: zstdenc %d, klauspost level 3 %d (%.4f)", len(src), own, theirs, float64(own)/float64(theirs))
	if own >= theirs {
		t.Errorf("zstdenc %d bytes, klauspost level 3 %d: not smaller", own, theirs)
	}
}

// TestReferenceDecoder has the zstd command line tool, an independent
// decoder, read frames of every kind this encoder writes.
func TestReferenceDecoder(t *testing.T) {
	testenv.RequireCommands(t, "zstd")
	r := rand.New(rand.NewPCG(7, 8))
	dir := t.TempDir()
	e := New()
	for i, n := range []int{0, 20, 5000, maxBlock + 7, 2 << 20, 5 << 20} {
		src := mixed(r, n)
		path := filepath.Join(dir, "f.zst")
		if err := os.WriteFile(path, e.EncodeAll(src, nil), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("zstd", "-d", "-c", "-q", path).Output()
		if err != nil {
			t.Fatalf("case %d (%d bytes): zstd -d: %v", i, n, err)
		}
		if !bytes.Equal(out, src) {
			t.Fatalf("case %d (%d bytes): zstd -d gave different data", i, n)
		}
	}
}

func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte("hello hello hello world"), uint64(1))
	f.Add(bytes.Repeat([]byte{0}, 300), uint64(2))
	e := New()
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		roundTrip(t, e, data)
		// The same bytes again among generated data, so matches reach them.
		r := rand.New(rand.NewPCG(seed, 0))
		roundTrip(t, e, append(append(mixed(r, int(seed%200000)), data...), data...))
	})
}
