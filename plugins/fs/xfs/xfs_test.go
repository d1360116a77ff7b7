package xfs

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// crcZeroSupported says whether this mkfs.xfs still makes v4 filesystems.
func crcZeroSupported(t *testing.T) bool {
	dir := t.TempDir()
	img := dir + "/probe.img"
	createSparse(t, img, 300<<20)
	return exec.Command("mkfs.xfs", "-f", "-q", "-m", "crc=0", img).Run() == nil
}

// TestUsedExtentsMatchesXFSTools checks several mkfs.xfs layouts: the used
// bytes equal xfs_db's accounting, and copying only them into a zero or
// garbage-filled file gives a filesystem that xfs_repair -n accepts and
// whose files all read back identical.
func TestUsedExtentsMatchesXFSTools(t *testing.T) {
	needTools(t, "mkfs.xfs", "xfs_db", "xfs_repair")
	mountOK, why := canMount()
	if !mountOK {
		t.Logf("no loop mount (%s): populating with a protofile only; files are checked through xfs_db, not through a mount", why)
	}
	cases := []struct {
		name    string
		size    int64
		mkfs    []string
		garbage bool
		v4      bool
		// deep asks for at least one bno btree with node blocks (level
		// >= 2) after churning, so the node walk meets a real tree.
		deep bool
	}{
		{name: "v5 default", size: 320 << 20},
		{name: "v4 crc=0", size: 320 << 20, mkfs: []string{"-m", "crc=0"}, v4: true},
		{name: "1k blocks", size: 320 << 20, mkfs: []string{"-b", "size=1024"}, deep: true},
		{name: "v5 garbage target", size: 300 << 20, garbage: true},
		// 8 AGs need room for the 64 MiB minimum log inside one AG.
		{name: "8 AGs", size: 640 << 20, mkfs: []string{"-d", "agcount=8"}},
		{name: "4k sectors short last AG", size: 333<<20 + 12345, mkfs: []string{"-s", "size=4096"}},
		// The device is larger than the filesystem; the rest is unused.
		{name: "fs smaller than device", size: 400 << 20, mkfs: []string{"-d", "size=310m"}},
	}
	haveV4 := crcZeroSupported(t)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.v4 && !haveV4 {
				t.Skip("this mkfs.xfs no longer makes v4 (crc=0) filesystems")
			}
			dir := t.TempDir()
			proto, files := protoFiles(t, t.TempDir(), 12, uint64(i))
			img := makeXFS(t, dir, tc.size, proto, tc.mkfs...)
			// The kernel may not mount v4 at all (CONFIG_XFS_SUPPORT_V4).
			mountOK := mountOK && !(tc.v4 && !kernelMountsV4(t))
			if mountOK {
				churn(t, img, uint64(i))
			}

			if tc.deep && mountOK {
				levels := int64(0)
				for ag := int64(0); ag < xfsDB(t, img, "sb 0", "p agcount")[0]; ag++ {
					levels = max(levels, xfsDB(t, img, fmt.Sprintf("agf %d", ag), "p bnolevel")[0])
				}
				if levels < 2 {
					t.Fatalf("churn left every bno btree at %d level; the test needs a deeper one", levels)
				}
			}
			exts, size := collect(t, img)
			dblocks, bs, fdblocks, freesp, flcount, btreeblks := xfsDBAccounting(t, img)
			want := (dblocks - (freesp - flcount)) * bs
			if got := total(exts); got != want {
				t.Errorf("used bytes = %d, want (dblocks %d - (freesp total %d - Σflcount %d)) * %d = %d",
					got, dblocks, freesp, flcount, bs, want)
			}
			if got, want := total(exts)/bs, dblocks-(fdblocks-flcount-btreeblks); got != want {
				t.Errorf("used blocks = %d, want dblocks - (fdblocks %d - Σflcount %d - Σbtreeblks %d) = %d",
					got, fdblocks, flcount, btreeblks, want)
			}
			info := probeFile(t, img)
			if info.BlockSize != bs || int64(info.Blocks) != dblocks || int64(info.UsedBlocks)*bs != total(exts) || info.Label != "dcvol" {
				t.Errorf("Probe = %+v; xfs_db: block %d, dblocks %d; used by extents %d blocks", info, bs, dblocks, total(exts)/bs)
			}
			if last := exts[len(exts)-1]; last.off+last.length > dblocks*bs {
				t.Errorf("extent %+v reaches past the filesystem end %d", last, dblocks*bs)
			}
			t.Logf("%d extents, %d of %d bytes used; %v", len(exts), total(exts), size, info.Notes)

			dst := restore(t, img, exts, size, tc.garbage)
			sameRanges(t, img, dst, exts)
			if out, err := exec.Command("xfs_repair", "-n", "-f", dst).CombinedOutput(); err != nil {
				// Under heavy load the churn mount occasionally leaves a log
				// that xfs_repair -n flags as unreplayed; then the source
				// fails the same way and the restore can only match it.
				srcOut, srcErr := exec.Command("xfs_repair", "-n", "-f", img).CombinedOutput()
				if srcErr == nil || !bytes.Contains(srcOut, []byte("valuable metadata changes in a log")) {
					t.Fatalf("xfs_repair -n on the restored image: %v\n%s\n(source: %v)", err, out, srcErr)
				}
				t.Logf("source and restore both have an unreplayed log; xfs_repair -n fails on both")
			}
			checkFilesViaDB(t, dst, files)
			if mountOK {
				src, got := treeHashes(t, img), treeHashes(t, dst)
				if len(src) < 12 || !maps.Equal(src, got) {
					t.Errorf("file trees differ after restore: source %d entries, restored %d", len(src), len(got))
					for k, v := range src {
						if got[k] != v {
							t.Errorf("  %s: %s vs %s", k, v, got[k])
						}
					}
				}
			}
		})
	}
}

// kernelMountsV4 tries to mount a fresh v4 filesystem.
func kernelMountsV4(t *testing.T) bool {
	dir := t.TempDir()
	img := dir + "/v4.img"
	createSparse(t, img, 300<<20)
	runCmd(t, "mkfs.xfs", "-f", "-q", "-m", "crc=0", img)
	mnt := t.TempDir()
	if out, err := mount("loop,ro", img, mnt); err != nil {
		t.Logf("the kernel does not mount v4 XFS (%v: %s); checking files through xfs_db only", err, strings.TrimSpace(string(out)))
		return false
	}
	runCmd(t, "umount", mnt)
	return true
}

func probeFile(t testing.TB, img string) *Info {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	info, err := Probe(f, st.Size())
	if err != nil {
		t.Fatalf("Probe(%s): %v", img, err)
	}
	if info.FSType != "xfs" {
		t.Errorf("FSType = %q", info.FSType)
	}
	uuid := strings.TrimSpace(runCmd(t, "xfs_db", "-r", "-c", "uuid", img))
	if !strings.HasSuffix(uuid, info.UUID) {
		t.Errorf("UUID = %s, xfs_db says %q", info.UUID, uuid)
	}
	return info
}

func TestProbeNotXFS(t *testing.T) {
	cases := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"zeros", make([]byte, 8192)},
		{"ext4-like", append(make([]byte, 1080), 0x53, 0xEF)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Probe(bytes.NewReader(tc.data), int64(len(tc.data)))
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("Probe = %v, want ErrNotFound", err)
			}
		})
	}
}
