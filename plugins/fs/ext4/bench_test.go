package ext4

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkUsedExtents scans a 1 GiB ext4 image (4 KiB blocks, the mkfs
// defaults) holding 24000 one-block files of which every other one was
// deleted with debugfs, so the bitmaps alternate used and free blocks.
// It reports extents/s, filesystem GiB scanned per second (from the page
// cache: bitmaps are 1/32768 of a 4 KiB-block filesystem) and allocations,
// which must not grow with the number of extents.
func BenchmarkUsedExtents(b *testing.B) {
	requireTools(b, "mkfs.ext4", "debugfs")
	dir := b.TempDir()
	tree := filepath.Join(dir, "tree")
	const files, perDir = 24000, 400
	data := make([]byte, 3000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	var rm strings.Builder
	for i := range files {
		sub := fmt.Sprintf("d%02d", i/perDir)
		if i%perDir == 0 {
			if err := os.MkdirAll(filepath.Join(tree, sub), 0o755); err != nil {
				b.Fatal(err)
			}
		}
		data[0] = byte(i)
		name := fmt.Sprintf("f%05d", i)
		if err := os.WriteFile(filepath.Join(tree, sub, name), data, 0o644); err != nil {
			b.Fatal(err)
		}
		if i%2 == 0 {
			fmt.Fprintf(&rm, "rm /%s/%s\n", sub, name)
		}
	}
	img := filepath.Join(dir, "bench.img")
	const size = 1 << 30
	start := time.Now()
	mkfs(b, img, "mkfs.ext4", size>>20, tree, "-b", "4096")
	script := filepath.Join(dir, "rm.cmds")
	if err := os.WriteFile(script, []byte(rm.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	run(b, "debugfs", "-w", "-f", script, img)
	if err := os.RemoveAll(tree); err != nil {
		b.Fatal(err)
	}
	b.Logf("image built in %v", time.Since(start).Round(time.Millisecond))

	f, err := os.Open(img)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	ctx := context.Background()
	var n int
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		n = 0
		err := UsedExtents(ctx, f, size, func(off, length int64) error {
			n++
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "extents/s")
	b.ReportMetric(float64(n), "extents/op")
	b.ReportMetric(float64(size>>30)*float64(b.N)/b.Elapsed().Seconds(), "fs-GiB/s")
}
