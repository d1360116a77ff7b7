package xfs

import (
	"context"
	"os"
	"testing"
)

// BenchmarkUsedExtents runs on 1 GiB filesystems made by mkfs.xfs: fresh,
// and (as root) with 1 KiB blocks after churn, whose bno btrees have node
// blocks and hundreds of records.
func BenchmarkUsedExtents(b *testing.B) {
	needTools(b, "mkfs.xfs")
	cases := []struct {
		name  string
		mkfs  []string
		churn bool
	}{
		{"fresh default", nil, false},
		{"1k blocks churned", []string{"-b", "size=1024"}, true},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			if ok, why := canMount(); tc.churn && !ok {
				b.Skip(why)
			}
			const size = 1 << 30
			img := makeXFS(b, b.TempDir(), size, "", tc.mkfs...)
			if tc.churn {
				churn(b, img, 1)
			}
			f, err := os.Open(img)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			var n int
			b.SetBytes(size)
			for b.Loop() {
				n = 0
				err := UsedExtents(context.Background(), f, size, func(off, length int64) error {
					n++
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n), "extents")
		})
	}
}
