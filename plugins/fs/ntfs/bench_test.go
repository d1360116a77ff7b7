package ntfs

import (
	"context"
	"os"
	"testing"
)

// BenchmarkUsedExtents runs on 1 GiB volumes made by mkntfs: a fresh one
// with 4 KiB clusters, and one with 512-byte clusters whose free space
// is overwritten in $Bitmap with a 0101... pattern, the worst case for the
// scan: about a million one-cluster extents.
func BenchmarkUsedExtents(b *testing.B) {
	needTools(b, "mkntfs")
	cases := []struct {
		name     string
		mkfs     []string
		fragment bool
	}{
		{"fresh 4k clusters", nil, false},
		{"512-byte clusters every other used", []string{"-c", "512"}, true},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			img := makeNTFS(b, b.TempDir(), 1<<30, tc.mkfs...)
			f, err := os.OpenFile(img, os.O_RDWR, 0)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			size := int64(1 << 30)
			if tc.fragment {
				fragmentBitmap(b, f, size)
			}
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

// fragmentBitmap marks every other cluster of the volume's second half
// as used in $Bitmap (mkntfs leaves that half free).
func fragmentBitmap(b *testing.B, f *os.File, size int64) {
	ctx := context.Background()
	v, err := open(ctx, f, size)
	if err != nil {
		b.Fatal(err)
	}
	bm, err := v.bitmap(ctx)
	if err != nil {
		b.Fatal(err)
	}
	need := (v.bs.clusters + 7) / 8
	buf := make([]byte, need)
	if err := v.readStream(ctx, bm.s.runs, 0, buf, "bitmap"); err != nil {
		b.Fatal(err)
	}
	for i := need / 2; i < need-1; i++ {
		buf[i] = 0x55
	}
	var off int64
	for _, r := range bm.s.runs {
		n := min(r.length*v.bs.clusterSize, need-off)
		if n <= 0 {
			break
		}
		if _, err := f.WriteAt(buf[off:off+n], r.lcn*v.bs.clusterSize); err != nil {
			b.Fatal(err)
		}
		off += n
	}
}
