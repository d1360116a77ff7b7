package zstdenc

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// benchChunks returns the inputs to compress: the files matching
// $DISKCAST_BENCH_CHUNKS (a glob, e.g. chunks saved from an image), or
// 16 MiB of generated filesystem-like data in 2 MiB pieces.
func benchChunks(b *testing.B) [][]byte {
	var chunks [][]byte
	if glob := os.Getenv("DISKCAST_BENCH_CHUNKS"); glob != "" {
		files, err := filepath.Glob(glob)
		if err != nil || len(files) == 0 {
			b.Fatalf("DISKCAST_BENCH_CHUNKS=%s: no files (%v)", glob, err)
		}
		for _, f := range files {
			c, err := os.ReadFile(f)
			if err != nil {
				b.Fatal(err)
			}
			chunks = append(chunks, c)
		}
		return chunks
	}
	r := rand.New(rand.NewPCG(9, 10))
	for range 8 {
		chunks = append(chunks, mixed(r, 2<<20))
	}
	return chunks
}

// BenchmarkEncode compares this encoder with klauspost's level 3 on the same
// chunks; "ratio" is compressed/raw.
func BenchmarkEncode(b *testing.B) {
	chunks := benchChunks(b)
	var raw int64
	for _, c := range chunks {
		raw += int64(len(c))
	}
	kp, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false))
	if err != nil {
		b.Fatal(err)
	}
	for _, enc := range []struct {
		name string
		fn   func(src, dst []byte) []byte
	}{{"zstdenc", New().EncodeAll}, {"klauspost", kp.EncodeAll}} {
		b.Run(enc.name, func(b *testing.B) {
			b.SetBytes(raw)
			var out int64
			buf := make([]byte, 0, 4<<20)
			for b.Loop() {
				out = 0
				for _, c := range chunks {
					buf = enc.fn(c, buf[:0])
					out += int64(len(buf))
				}
			}
			b.ReportMetric(float64(out)/float64(raw), "ratio")
		})
	}
}
