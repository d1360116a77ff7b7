package fat

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskcast/diskcast/sdk/base"
	"github.com/diskcast/diskcast/sdk/filesystem"
)

// TestFixUp runs the plugin's fix-up through the contract's client on
// volumes made by mkfs.vfat and mkfs.exfat that sit at an offset inside a
// larger file (as in a restored disk image, no loop device), and checks
// what changed: nothing with the default settings; with new_serial only
// the serial (and, on exFAT, the boot checksum and backup region), with
// the filesystem's checker still content and blkid seeing a new UUID.
func TestFixUp(t *testing.T) {
	const at = 1 << 20
	tests := []struct {
		name     string
		mkfs     []string
		fsck     string
		size     int64
		serialAt []int // volume offsets of serial fields
		exfat    bool
	}{
		{name: "fat12", mkfs: []string{"mkfs.vfat", "-F", "12"}, fsck: "fsck.vfat", size: 8 << 20, serialAt: []int{fat16SerialOffset}},
		{name: "fat16", mkfs: []string{"mkfs.vfat", "-F", "16"}, fsck: "fsck.vfat", size: 16 << 20, serialAt: []int{fat16SerialOffset}},
		{name: "fat32", mkfs: []string{"mkfs.vfat", "-F", "32", "-s", "1"}, fsck: "fsck.vfat", size: 40 << 20, serialAt: []int{fat32SerialOffset, 6*512 + fat32SerialOffset}},
		{name: "exfat", mkfs: []string{"mkfs.exfat"}, fsck: "fsck.exfat", size: 16 << 20, exfat: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			needTools(t, tc.mkfs[0], tc.fsck, "blkid")
			dir := t.TempDir()
			src := filepath.Join(dir, "vol.img")
			sparseFile(t, src, tc.size)
			run(t, tc.mkfs[0], append(tc.mkfs[1:], src)...)
			oldID := blkidInfo(t, src)["UUID"]
			vol, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			for _, newSerial := range []bool{false, true} {
				// The disk: 0xA5 bytes around the volume, so a write outside it shows.
				disk := bytes.Repeat([]byte{0xA5}, at+int(tc.size)+at)
				copy(disk[at:], vol)
				path := filepath.Join(dir, "disk.img")
				if err := os.WriteFile(path, disk, 0o644); err != nil {
					t.Fatal(err)
				}
				c := filesystem.InProcess(NewPlugin(), base.Info{Name: "fat"})
				ctx := context.Background()
				if caps, err := c.Capabilities(ctx); err != nil || !caps.FixUp {
					t.Fatalf("Capabilities: %+v, %v; want FixUp", caps, err)
				}
				if err := c.Configure(ctx, base.Config{"new_serial": newSerial}); err != nil {
					t.Fatal(err)
				}
				if err := c.FixUp(ctx, filesystem.Volume{Path: path, Offset: at, Size: tc.size}); err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got[:at], disk[:at]) || !bytes.Equal(got[at+int(tc.size):], disk[at+int(tc.size):]) {
					t.Fatal("fix-up wrote outside the volume")
				}
				restored := got[at : at+int(tc.size)]
				var changed []int
				for i := range restored {
					if restored[i] != vol[i] {
						changed = append(changed, i)
					}
				}
				if !newSerial {
					if len(changed) > 0 {
						t.Fatalf("fix-up with default settings changed %d bytes (first at volume byte %d)", len(changed), changed[0])
					}
					continue
				}
				if len(changed) == 0 {
					t.Fatal("new_serial: nothing changed")
				}
				for _, off := range changed {
					ok := false
					for _, s := range tc.serialAt {
						ok = ok || (off >= s && off < s+4)
					}
					// exFAT: serial and checksum in both boot regions (24 sectors of 512).
					ok = ok || (tc.exfat && off < 24*512 && (off%(12*512) >= exfatSerialOffset && off%(12*512) < exfatSerialOffset+4 || off%(12*512) >= 11*512))
					if !ok {
						t.Fatalf("fix-up changed volume byte %d, outside the serial fields", off)
					}
				}
				// The backups follow: FAT32's boot sector copy at sector 6,
				// exFAT's backup boot region (sectors 12..23).
				if tc.name == "fat32" && !bytes.Equal(restored[:512], restored[6*512:7*512]) {
					t.Error("fat32: backup boot sector differs from the boot sector after the fix-up")
				}
				if tc.exfat && !bytes.Equal(restored[:12*512], restored[12*512:24*512]) {
					t.Error("exfat: backup boot region differs from the main one after the fix-up")
				}
				out := filepath.Join(dir, "restored.img")
				if err := os.WriteFile(out, restored, 0o644); err != nil {
					t.Fatal(err)
				}
				if msg, rc, err := runRC(tc.fsck, "-n", out); err != nil || rc != 0 {
					t.Fatalf("%s -n after the fix-up: rc %d, %v\n%s", tc.fsck, rc, err, msg)
				}
				newID := blkidInfo(t, out)["UUID"]
				if newID == "" || strings.EqualFold(newID, oldID) {
					t.Errorf("blkid UUID %q after the fix-up, %q before: want a new one", newID, oldID)
				}
			}
		})
	}
}

func TestSetSerialNotFAT(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "zeros.img")
	sparseFile(t, path, 1<<20)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := SetSerial(context.Background(), f, 1<<20, 1); err == nil {
		t.Error("SetSerial on zeros: no error")
	}
}
