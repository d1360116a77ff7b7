package fat

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkUsedExtents scans FAT32 images made by mkfs.vfat and filled by
// mtools with a thousand files, a third of them then deleted. "warm" reads
// the FAT from the page cache; "cold" first drops the image's cached pages
// (posix_fadvise DONTNEED on this file only), so the FAT comes from disk.
func BenchmarkUsedExtents(b *testing.B) {
	needTools(b, "mkfs.vfat", "mcopy", "mdel")
	cases := []struct {
		name    string
		sizeMiB int64
		mkfs    []string
	}{
		{"fat32-1536M-4K-clusters", 1536, []string{"-F", "32", "-s", "8"}},
		{"fat32-1536M-512B-clusters", 1536, []string{"-F", "32", "-s", "1"}},
		{"fat32-4G-default-clusters", 4096, []string{"-F", "32"}},
		{"fat32-4G-512B-clusters", 4096, []string{"-F", "32", "-s", "1"}},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			img := filepath.Join(b.TempDir(), "bench.img")
			size := bc.sizeMiB << 20
			sparseFile(b, img, size)
			run(b, "mkfs.vfat", append(append([]string{}, bc.mkfs...), img)...)
			fillForBench(b, img)
			f, err := os.Open(img)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			info, err := Probe(f, size)
			if err != nil {
				b.Fatal(err)
			}
			fatBytes := int64(info.Blocks+2) * 4
			for _, cold := range []bool{false, true} {
				name := "warm"
				if cold {
					name = "cold"
				}
				b.Run(name, func(b *testing.B) {
					var extents int
					b.SetBytes(fatBytes)
					// The machine is shared: CPU time per scan says more
					// than wall time.
					cpu0 := cpuTime(b)
					for b.Loop() {
						if cold {
							b.StopTimer()
							if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
								b.Fatal(err)
							}
							b.StartTimer()
						}
						extents = 0
						err := UsedExtents(context.Background(), f, size, func(off, length int64) error {
							extents++
							return nil
						})
						if err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
					b.ReportMetric(float64(extents), "extents")
					b.ReportMetric(float64(fatBytes)/(1<<20), "FAT-MiB")
				})
			}
		})
	}
}

// cpuTime is the user+system CPU time of this process so far, in ns.
func cpuTime(b *testing.B) int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// fillForBench copies 1000 files of 1-64 KiB and deletes every third, so
// the FAT has hundreds of runs.
func fillForBench(b *testing.B, img string) {
	src := filepath.Join(b.TempDir(), "src")
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 1000 {
		writeRandom(b, filepath.Join(src, fmt.Sprintf("d%02d/f%04d.bin", i/50, i)), 1024+rng.IntN(63<<10), rng)
	}
	tops, err := os.ReadDir(src)
	if err != nil {
		b.Fatal(err)
	}
	args := []string{"-s", "-i", img}
	for _, e := range tops {
		args = append(args, filepath.Join(src, e.Name()))
	}
	run(b, "mcopy", append(args, "::/")...)
	var del []string
	for i := 0; i < 1000; i += 3 {
		del = append(del, fmt.Sprintf("::/d%02d/f%04d.bin", i/50, i))
	}
	run(b, "mdel", append([]string{"-i", img}, del...)...)
}
