package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskcast/diskcast/core/image"
	"github.com/diskcast/diskcast/core/plugin"
	"github.com/diskcast/diskcast/core/restore"
	"github.com/diskcast/diskcast/sdk/base"
	"github.com/diskcast/diskcast/sdk/filesystem"
	sdkplugin "github.com/diskcast/diskcast/sdk/plugin"
)

// TestFixUpper drives restore's fix-up callback through a plugin Manager
// with in-process built-ins: each partition's handler gets its fix-up on
// its own offset and size of the target file, --new-serial configures the
// plugins that have the setting and warns about the others, and a handler
// that is not installed gives a warning, not an error.
func TestFixUpper(t *testing.T) {
	// serialfs writes "SERIAL" when configured with new_serial, "SAME" otherwise;
	// plainfs has no settings and writes "PLAIN".
	serialfs := &filesystem.Mock{
		Caps:   filesystem.Capabilities{FixUp: true},
		Schema: &base.Schema{Attributes: []base.Attribute{{Name: "new_serial", Type: "bool"}}},
	}
	serialfs.FixUpFunc = func(ctx context.Context, rw filesystem.ReadWriterAt, size int64) error {
		mark := "SAME"
		if v, _ := serialfs.Configured()["new_serial"].(bool); v {
			mark = "SERIAL"
		}
		_, err := rw.WriteAt([]byte(mark), 0)
		return err
	}
	plainfs := &filesystem.Mock{Caps: filesystem.Capabilities{FixUp: true}}
	plainfs.FixUpFunc = func(ctx context.Context, rw filesystem.ReadWriterAt, size int64) error {
		_, err := rw.WriteAt([]byte("PLAIN"), size-5)
		return err
	}
	set := sdkplugin.NewSet()
	set.RegisterFilesystem("serialfs", serialfs)
	set.RegisterFilesystem("plainfs", plainfs)

	for _, newSerial := range []bool{false, true} {
		t.Run(map[bool]string{false: "default", true: "new-serial"}[newSerial], func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "disk.img")
			if err := os.WriteFile(target, make([]byte, 16<<10), 0o644); err != nil {
				t.Fatal(err)
			}
			m := &plugin.Manager{Builtins: set, InProcess: true, Dirs: []string{t.TempDir()}}
			defer m.Close()
			var warnings []string
			f := &fixUpper{m: m, newSerial: newSerial, warn: func(s string) { warnings = append(warnings, s) }}
			ctx := context.Background()
			for _, c := range []struct {
				p image.Partition
				v restore.Volume
			}{
				{image.Partition{Number: 1, Handler: "serialfs"}, restore.Volume{Path: target, Offset: 4096, Size: 4096}},
				{image.Partition{Number: 2, Handler: "plainfs"}, restore.Volume{Path: target, Offset: 8192, Size: 4096}},
				{image.Partition{Number: 3, Handler: "gonefs"}, restore.Volume{Path: target, Offset: 12288, Size: 4096}},
			} {
				if err := f.run(ctx, c.p, c.v); err != nil {
					t.Fatalf("partition %d: %v", c.p.Number, err)
				}
			}
			got, _ := os.ReadFile(target)
			want := "SAME"
			if newSerial {
				want = "SERIAL"
			}
			if s := string(got[4096 : 4096+len(want)]); s != want {
				t.Errorf("serialfs wrote %q at its volume's start (byte 4096), want %q", s, want)
			}
			if s := string(got[12288-5 : 12288]); s != "PLAIN" {
				t.Errorf("plainfs wrote %q at its volume's end (byte 12283), want PLAIN", s)
			}
			all := strings.Join(warnings, "\n")
			if !strings.Contains(all, "partition 3") || !strings.Contains(all, "gonefs") {
				t.Errorf("no warning about the missing plugin: %q", all)
			}
			if hasWarn := strings.Contains(all, "plainfs has no new_serial setting"); hasWarn != newSerial {
				t.Errorf("warnings %q: want one about plainfs's missing new_serial setting only with --new-serial", all)
			}
		})
	}
}

func TestRestoreFlagConflict(t *testing.T) {
	code, _, errs := run(t, "restore", "--new-serial", "--no-fixup", "a.dci", filepath.Join(t.TempDir(), "t"))
	if code == 0 || !strings.Contains(errs, "--new-serial") {
		t.Errorf("restore --new-serial --no-fixup: exit %d, %q; want a usage error", code, errs)
	}
}
