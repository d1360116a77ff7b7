package fat

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestScanMatchesNaive fills the FAT of mkfs-made volumes with random runs
// of free, allocated, end-of-chain and bad entries, and compares the
// extents with a plain entry-by-entry reading. The FAT32 case spans more
// than one read block, so runs cross block boundaries.
func TestScanMatchesNaive(t *testing.T) {
	needTools(t, "mkfs.vfat")
	cases := []struct {
		name    string
		sizeKiB int64
		args    []string
		bits    int
	}{
		{"fat12", 4096, []string{"-F", "12"}, 12},
		{"fat16", 32768, []string{"-F", "16", "-s", "1"}, 16},
		{"fat32-two-blocks", 600 << 10, []string{"-F", "32", "-s", "1"}, 32},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Work on the metadata prefix in memory; the sparse rest of
			// the image stays on disk.
			path := filepath.Join(t.TempDir(), "scan.img")
			size := tc.sizeKiB << 10
			sparseFile(t, path, size)
			run(t, "mkfs.vfat", append(append([]string{}, tc.args...), path)...)
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			boot := make([]byte, 512)
			if _, err := f.ReadAt(boot, 0); err != nil {
				t.Fatal(err)
			}
			v, err := openFAT(f, size, boot)
			if err != nil {
				t.Fatal(err)
			}
			img := make([]byte, v.dataStart)
			if _, err := f.ReadAt(img, 0); err != nil {
				t.Fatal(err)
			}
			if v.bits != tc.bits {
				t.Fatalf("mkfs made FAT%d", v.bits)
			}
			if tc.bits == 32 && int64(v.clusters+2)*4 <= readBlock {
				t.Fatalf("FAT of %d entries fits one read block; the case needs more", v.clusters+2)
			}
			bad := map[int]uint32{12: 0xFF7, 16: 0xFFF7, 32: 0x0FFFFFF7}[tc.bits]
			eoc := map[int]uint32{12: 0xFFF, 16: 0xFFFF, 32: 0x0FFFFFFF}[tc.bits]
			rng := rand.New(rand.NewPCG(uint64(tc.bits), 3))
			vals := make([]uint32, v.clusters+2)
			for c := 2; c < len(vals); {
				n := 1 + rng.IntN(40)
				if rng.IntN(50) == 0 {
					n = 1 + rng.IntN(5000) // long runs exercise the skips
				}
				kind := rng.IntN(10)
				for ; n > 0 && c < len(vals); n, c = n-1, c+1 {
					switch {
					case kind < 4:
						vals[c] = 0
					case kind < 8:
						vals[c] = 2 + uint32(rng.IntN(int(v.clusters)))
					case kind < 9:
						vals[c] = eoc - uint32(rng.IntN(8)) // 0x...8 to 0x...F
					default:
						vals[c] = bad
					}
				}
			}
			fat := v.fatOffset(0)
			for c := 2; c < len(vals); c++ {
				switch tc.bits {
				case 12:
					setFAT12(img, c, uint16(vals[c]))
				case 16:
					setFAT16(img, c, uint16(vals[c]))
				case 32:
					// Reserved top bits set on some entries must be ignored.
					put32(img, int(fat)+4*c, vals[c]|uint32(rng.IntN(16))<<28)
				}
			}

			var want []extent
			var used uint64
			add := func(off, n int64) {
				if k := len(want) - 1; k >= 0 && want[k].off+want[k].length == off {
					want[k].length += n
					return
				}
				want = append(want, extent{off, n})
			}
			add(0, v.dataStart)
			for c := 2; c < len(vals); c++ {
				if vals[c] != 0 && vals[c] != bad {
					add(v.clusterOffset(uint32(c)), v.clusterSize)
					used++
				}
			}

			if _, err := f.WriteAt(img, 0); err != nil {
				t.Fatal(err)
			}
			var got []extent
			err = UsedExtents(context.Background(), f, size, func(off, n int64) error {
				got = append(got, extent{off, n})
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("%d extents, want %d; first difference at %d", len(got), len(want), firstDiff(got, want))
			}
			info, err := Probe(f, size)
			if err != nil {
				t.Fatal(err)
			}
			if info.UsedBlocks != used {
				t.Fatalf("UsedBlocks %d, want %d", info.UsedBlocks, used)
			}
			t.Logf("%d clusters, %d used, %d extents", v.clusters, used, len(got))
		})
	}
}

func firstDiff(a, b []extent) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
