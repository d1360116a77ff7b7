package ntfs

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/diskcast/diskcast/sdk/base"
	"github.com/diskcast/diskcast/sdk/filesystem"
)

// TestFixUp runs the plugin's fix-up through the contract's client on a
// volume made by mkntfs that sits at an offset inside a larger file (as
// in a restored disk image, no loop device), and checks what it changed.
func TestFixUp(t *testing.T) {
	needTools(t, "mkntfs", "ntfsfix", "blkid")
	const at, size = 1 << 20, 16 << 20
	dir := t.TempDir()
	vol, err := os.ReadFile(makeNTFS(t, dir, size))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		cfg       base.Config
		noBackup  bool // the backup boot sector was left out (as partclone 0.3.23 does)
		newSerial bool
	}{
		{name: "default settings write nothing", cfg: nil},
		{name: "new serial", cfg: base.Config{"new_serial": true}, newSerial: true},
		{name: "new serial without a backup boot sector", cfg: base.Config{"new_serial": true}, noBackup: true, newSerial: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The disk: 0xA5 bytes around the volume, so a write outside it shows.
			disk := bytes.Repeat([]byte{0xA5}, at+size+at)
			copy(disk[at:], vol)
			if tc.noBackup {
				clear(disk[at+size-512 : at+size])
			}
			path := filepath.Join(t.TempDir(), "disk.img")
			if err := os.WriteFile(path, disk, 0o644); err != nil {
				t.Fatal(err)
			}
			c := filesystem.InProcess(NewPlugin(), base.Info{Name: "ntfs"})
			ctx := context.Background()
			caps, err := c.Capabilities(ctx)
			if err != nil || !caps.FixUp {
				t.Fatalf("Capabilities: %+v, %v; want FixUp", caps, err)
			}
			if err := c.Configure(ctx, tc.cfg); err != nil {
				t.Fatal(err)
			}
			if err := c.FixUp(ctx, filesystem.Volume{Path: path, Offset: at, Size: size}); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var changed []int
			for i := range got {
				if got[i] != disk[i] {
					changed = append(changed, i-at)
				}
			}
			if !tc.newSerial {
				if len(changed) > 0 {
					t.Fatalf("fix-up with default settings changed %d bytes (first at volume byte %d)", len(changed), changed[0])
				}
				return
			}
			// Only the serial fields may change: 8 bytes at 0x48 of both
			// boot sectors (the backup only when it is there).
			allowed := func(off int) bool {
				return (off >= serialOffset && off < serialOffset+8) ||
					(!tc.noBackup && off >= size-512+serialOffset && off < size-512+serialOffset+8)
			}
			for _, off := range changed {
				if !allowed(off) {
					t.Fatalf("fix-up changed byte %d of the volume (relative), outside the serial fields", off)
				}
			}
			if len(changed) == 0 {
				t.Fatal("new_serial: nothing changed")
			}
			restored := got[at : at+size]
			if !tc.noBackup && !bytes.Equal(restored[:512], restored[size-512:]) {
				t.Error("boot sector and backup boot sector differ after the fix-up")
			}
			out := filepath.Join(t.TempDir(), "vol.img")
			if err := os.WriteFile(out, restored, 0o644); err != nil {
				t.Fatal(err)
			}
			before := filepath.Join(t.TempDir(), "before.img")
			if err := os.WriteFile(before, vol, 0o644); err != nil {
				t.Fatal(err)
			}
			if tc.noBackup {
				return // ntfsfix -n insists on a backup boot sector
			}
			runCmd(t, "ntfsfix", "-n", out)
			oldID := blkidUUID(t, before)
			newID := blkidUUID(t, out)
			if newID == "" || newID == oldID {
				t.Errorf("blkid UUID (the serial) %q after the fix-up, %q before: want a new one", newID, oldID)
			}
		})
	}
}

func blkidUUID(t *testing.T, img string) string {
	t.Helper()
	return string(bytes.TrimSpace([]byte(runCmd(t, "blkid", "-p", "-s", "UUID", "-o", "value", img))))
}

func TestSetSerialErrors(t *testing.T) {
	rw := &memRW{b: make([]byte, 1<<20)}
	if _, err := SetSerial(rw, int64(len(rw.b)), 1); err == nil {
		t.Error("SetSerial on zeros: no error")
	}
	if _, err := SetSerial(rw, 100, 1); err == nil {
		t.Error("SetSerial on a 100-byte device: no error")
	}
}

type memRW struct{ b []byte }

func (m *memRW) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	return copy(p, m.b[off:]), nil
}

func (m *memRW) WriteAt(p []byte, off int64) (int, error) { return copy(m.b[off:], p), nil }
