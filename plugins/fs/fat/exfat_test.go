package fat

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type exfatCase struct {
	name    string
	sizeMiB int64
	mkfs    []string // mkfs.exfat options besides the image
	dataKiB int64
	garbage bool
}

var exfatCases = []exfatCase{
	{name: "exfat-64M", sizeMiB: 64, mkfs: []string{"-L", "EXDATA"}, dataKiB: 6000},
	{name: "exfat-40M-512B-clusters", sizeMiB: 40, mkfs: []string{"-c", "512", "-L", "Tiny"}, dataKiB: 4000, garbage: true},
	{name: "exfat-300M-32K-clusters", sizeMiB: 300, mkfs: []string{"-c", "32K", "-L", "Large Clus"}, dataKiB: 8000},
	{name: "exfat-8M-unaligned", sizeMiB: 8, mkfs: []string{"-b", "4096", "-c", "4096"}, dataKiB: 2000, garbage: true},
}

// mountExfat attaches img to a loop device and mounts it with exfat-fuse;
// the returned function unmounts and detaches.
func mountExfat(t *testing.T, img string, readOnly bool) (string, func()) {
	t.Helper()
	dir := t.TempDir()
	losetup := []string{"-f", "--show"}
	if readOnly {
		losetup = append(losetup, "-r")
	}
	loop := strings.TrimSpace(run(t, "losetup", append(losetup, img)...))
	args := []string{loop, dir}
	if readOnly {
		args = []string{"-o", "ro", loop, dir}
	}
	if out, rc, err := runRC("mount.exfat-fuse", args...); err != nil || rc != 0 {
		runRC("losetup", "-d", loop)
		t.Fatalf("mount.exfat-fuse %s: rc %d, %v\n%s", strings.Join(args, " "), rc, err, out)
	}
	done := false
	return dir, func() {
		if done {
			return
		}
		done = true
		if out, rc, err := runRC("umount", dir); err != nil || rc != 0 {
			t.Errorf("umount %s: rc %d, %v\n%s", dir, rc, err, out)
		}
		if out, rc, err := runRC("losetup", "-d", loop); err != nil || rc != 0 {
			t.Errorf("losetup -d %s: rc %d, %v\n%s", loop, rc, err, out)
		}
	}
}

// exfatFacts is what dump.exfat says about an image.
type exfatFacts struct {
	sectorBits, fatOffset, fatLength, clusterSize, total, free int64
}

func dumpExfat(t *testing.T, img string) exfatFacts {
	t.Helper()
	out := run(t, "dump.exfat", img)
	return exfatFacts{
		sectorBits:  intField(t, out, `Sector Size Bits:\s+(\d+)`),
		fatOffset:   intField(t, out, `FAT Offset\(sector offset\):\s+(\d+)`),
		fatLength:   intField(t, out, `FAT Length\(sectors\):\s+(\d+)`),
		clusterSize: intField(t, out, `Cluster size:\s+(\d+)`),
		total:       intField(t, out, `Total Clusters:\s+(\d+)`),
		free:        intField(t, out, `Free Clusters:\s+(\d+)`),
	}
}

func TestExFATImages(t *testing.T) {
	needTools(t, "mkfs.exfat", "fsck.exfat", "dump.exfat", "mount.exfat-fuse", "losetup", "umount", "cp", "blkid")
	needRootFUSE(t)
	for i, tc := range exfatCases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			img := filepath.Join(dir, "src.img")
			size := tc.sizeMiB << 20
			sparseFile(t, img, size)
			run(t, "mkfs.exfat", append(append([]string{}, tc.mkfs...), img)...)
			cs := dumpExfat(t, img).clusterSize

			// Fill through the kernel-independent FUSE driver: write the
			// tree, punch holes, write a file into them.
			rng := rand.New(rand.NewPCG(uint64(i), 11))
			src := filepath.Join(t.TempDir(), "src")
			holeSize := writeTree(t, src, cs, tc.dataKiB, rng)
			mnt, umount := mountExfat(t, img, false)
			run(t, "cp", "-r", src+"/.", mnt)
			for h := 0; h < 20; h += 2 {
				for _, root := range []string{src, mnt} {
					if err := os.Remove(filepath.Join(root, holeName(h))); err != nil {
						t.Fatal(err)
					}
				}
			}
			// exfat-fuse starts a new file at the first free cluster
			// (libexfat allocate_cluster with hint 0), so this one fills
			// the first three holes and is fragmented.
			writeRandom(t, filepath.Join(src, fragName), 3*holeSize, rng)
			run(t, "cp", "-r", filepath.Join(src, "frag"), mnt)
			umount()
			want := treeHashes(t, src)
			if out, rc, err := runRC("fsck.exfat", "-n", img); err != nil || rc != 0 {
				t.Fatalf("fsck.exfat -n on the source: rc %d, %v\n%s", rc, err, out)
			}
			facts := dumpExfat(t, img)

			f, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			info, err := Probe(f, size)
			if err != nil {
				t.Fatalf("Probe: %v", err)
			}
			t.Logf("info: %+v", *info)
			t.Run("info", func(t *testing.T) {
				if info.FSType != "exfat" || info.BlockSize != facts.clusterSize || int64(info.Blocks) != facts.total ||
					int64(info.UsedBlocks) != facts.total-facts.free {
					t.Errorf("info %+v, dump.exfat says cluster size %d, %d clusters, %d free", *info, facts.clusterSize, facts.total, facts.free)
				}
				bl := blkidInfo(t, img)
				if bl["TYPE"] != "exfat" || info.UUID != bl["UUID"] || info.Label != bl["LABEL"] {
					t.Errorf("label %q uuid %q, blkid says TYPE=%q LABEL=%q UUID=%q", info.Label, info.UUID, bl["TYPE"], bl["LABEL"], bl["UUID"])
				}
			})

			ext := collectExtents(t, img)
			t.Logf("%d extents, %d bytes", len(ext), extentBytes(ext))
			t.Run("used-bytes-match-dump", func(t *testing.T) {
				// Both boot regions (24 sectors), every FAT, and the
				// clusters set in the allocation bitmap, which include the
				// bitmap itself, the up-case table and the root directory:
				//   bytes = 24*sector + FATs*FatLength*sector + clusterSize*(total - free)
				hdr := make([]byte, 512)
				if _, err := f.ReadAt(hdr, 0); err != nil {
					t.Fatal(err)
				}
				sector := int64(1) << facts.sectorBits
				fats := int64(hdr[110])
				wantBytes := 24*sector + fats*facts.fatLength*sector + facts.clusterSize*(facts.total-facts.free)
				if got := extentBytes(ext); got != wantBytes {
					t.Errorf("extents cover %d bytes, want %d = 24*%d + %d*%d*%d + %d*(%d-%d)",
						got, wantBytes, sector, fats, facts.fatLength, sector, facts.clusterSize, facts.total, facts.free)
				}
				if !overlaps(ext, facts.fatOffset*sector, 1) {
					t.Errorf("the FAT at sector %d is not in the extents", facts.fatOffset)
				}
			})

			t.Run("restore-used-extents", func(t *testing.T) {
				dst := filepath.Join(t.TempDir(), "dst.img")
				if tc.garbage {
					garbageFile(t, dst, size, uint64(i)+100)
				} else {
					sparseFile(t, dst, size)
				}
				copyExtents(t, img, dst, ext)
				if out, rc, err := runRC("fsck.exfat", "-n", dst); err != nil || rc != 0 {
					t.Fatalf("fsck.exfat -n on the restored image: rc %d, %v\n%s", rc, err, out)
				}
				if after := dumpExfat(t, dst); after != facts {
					t.Errorf("dump.exfat after restore %+v, before %+v", after, facts)
				}
				mnt, umount := mountExfat(t, dst, true)
				defer umount()
				got := treeHashes(t, mnt)
				if d := diffTrees(want, got); d != "" {
					t.Fatalf("restored image differs from the source:\n%s", d)
				}
				t.Logf("%d paths identical after restore", len(got))
			})
		})
	}
}
