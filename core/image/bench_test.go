package image

import (
	"crypto/sha256"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// benchData returns about 4 MiB of real files (the Go toolchain's sources
// and binaries), the kind of data a system disk holds.
func benchData(b *testing.B) []byte {
	b.Helper()
	const want = 4 << 20
	out := make([]byte, 0, want)
	filepath.WalkDir(runtime.GOROOT(), func(path string, d fs.DirEntry, err error) error {
		if err != nil || len(out) >= want {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() {
			if data, err := os.ReadFile(path); err == nil {
				out = append(out, data[:min(len(data), want-len(out))]...)
			}
		}
		return nil
	})
	if len(out) < want {
		b.Skipf("only %d bytes of sample data under GOROOT", len(out))
	}
	return out[:1<<20]
}

func BenchmarkEncode(b *testing.B) {
	data := benchData(b)
	for _, codec := range []Codec{CodecZstd, CodecGzip} {
		b.Run(codec.String(), func(b *testing.B) {
			e, err := NewEncoder(codec, DefaultLevel)
			if err != nil {
				b.Fatal(err)
			}
			var out []byte
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				out, _ = e.Encode(out, data)
			}
			b.ReportMetric(float64(len(out))/float64(len(data)), "ratio")
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	data := benchData(b)
	for _, codec := range []Codec{CodecZstd, CodecGzip} {
		b.Run(codec.String(), func(b *testing.B) {
			e, _ := NewEncoder(codec, DefaultLevel)
			payload, used := e.Encode(nil, data)
			d := NewDecoder()
			out := make([]byte, 0, len(data))
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				var err error
				if out, err = d.Decode(out, used, payload, len(data)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkHash(b *testing.B) {
	data := benchData(b)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		sha256.Sum256(data)
	}
}

// BenchmarkX86 measures the x86 filter's pass over a chunk of machine code
// (the benchmark binary's own) and over files.
func BenchmarkX86(b *testing.B) {
	for _, c := range []struct {
		name string
		data []byte
	}{{"code", ownCode(b)}, {"files", benchData(b)}} {
		buf := append([]byte(nil), c.data...)
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				x86Scan(buf, x86Encode)
			}
		})
	}
}
