package filesystem

import (
	"context"
	"io"
	"os"
	"testing"
)

// BenchmarkUsedExtentsStream streams a million extents from a plugin, in
// process and over go-plugin's gRPC connection (a real Unix socket): the
// worst case of a very fragmented filesystem. ns/op divided by 1e6 is the
// cost of one extent.
func BenchmarkUsedExtentsStream(b *testing.B) {
	const n = 1_000_000
	m := &Mock{ExtentsFunc: func(ctx context.Context, _ io.ReaderAt, _ int64, emit func(off, length int64) error) error {
		for i := range int64(n) {
			if err := emit(i*8192, 4096); err != nil {
				return err
			}
		}
		return nil
	}}
	p := b.TempDir() + "/vol"
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	f.Truncate(n * 8192)
	f.Close()
	v := Volume{Path: p, Size: n * 8192}
	for name, c := range clients(b, m, 0) {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				got := 0
				if err := c.UsedExtents(context.Background(), v, func(off, length int64) error { got++; return nil }); err != nil || got != n {
					b.Fatalf("%d extents, %v", got, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/extent")
		})
	}
}
