package restore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskcast/diskcast/core/capture"
	"github.com/diskcast/diskcast/core/image"
	"github.com/diskcast/diskcast/core/internal/testenv"
	"github.com/diskcast/diskcast/core/restore"
)

// firstPartitionAnalyzer claims the first partition (at byte 2048*512 of
// gptFixture's disk, or the whole of a partition source) for a handler
// named "testfs" and leaves the rest raw.
func firstPartitionAnalyzer(ctx context.Context, r io.ReaderAt, off, size int64) (*capture.Analysis, error) {
	if off != 0 && off != 2048*512 {
		return nil, nil
	}
	return &capture.Analysis{FSType: "ext4", Handler: "testfs", Extents: func(ctx context.Context, emit func(off, length int64) error) error {
		return emit(0, size)
	}}, nil
}

type fixUpCall struct {
	number   int
	handler  string
	vol      restore.Volume
	volBytes []byte // the volume as the fix-up found it
}

// markerFixUp records each call, reads the volume through its offset and
// size (as a plugin does, without a loop device) and writes a marker at
// the volume's byte 512.
func markerFixUp(calls *[]fixUpCall) restore.FixUpFunc {
	return func(ctx context.Context, p image.Partition, v restore.Volume) error {
		f, err := os.OpenFile(v.Path, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		b := make([]byte, v.Size)
		if _, err := f.ReadAt(b, v.Offset); err != nil {
			return err
		}
		*calls = append(*calls, fixUpCall{p.Number, p.Handler, v, b})
		_, err = f.WriteAt([]byte("fixed-up"), v.Offset+512)
		return err
	}
}

func TestFixUps(t *testing.T) {
	disk := gptFixture(t)
	part := ext4Fixture(t, 16<<20)
	tests := []struct {
		name     string
		src      string
		wantVol  restore.Volume // Path filled in below
		wantPart int
	}{
		{name: "whole disk, partition 1 of 2", src: disk, wantVol: restore.Volume{Offset: 2048 * 512, Size: 65536 * 512}, wantPart: 1},
		{name: "partition source", src: part, wantVol: restore.Volume{Offset: 0, Size: 16 << 20}, wantPart: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			imgPath := captureFile(t, tc.src, capture.Request{Analyze: firstPartitionAnalyzer})
			src, err := os.ReadFile(tc.src)
			if err != nil {
				t.Fatal(err)
			}

			// Without a FixUp the restore is byte-exact.
			exact := filepath.Join(t.TempDir(), "exact.img")
			if _, err := restoreFile(t, imgPath, exact, restore.Options{}); err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(exact); !bytes.Equal(got, src) {
				t.Fatal("restore without fix-ups differs from the source")
			}

			var calls []fixUpCall
			target := filepath.Join(t.TempDir(), "t.img")
			if _, err := restoreFile(t, imgPath, target, restore.Options{FixUp: markerFixUp(&calls)}); err != nil {
				t.Fatal(err)
			}
			want := tc.wantVol
			want.Path = target
			if len(calls) != 1 || calls[0].number != tc.wantPart || calls[0].handler != "testfs" || calls[0].vol != want {
				for _, c := range calls {
					t.Errorf("fix-up call: partition %d (%s) at %+v", c.number, c.handler, c.vol)
				}
				t.Fatalf("%d fix-up calls, want one for partition %d (testfs) at %+v", len(calls), tc.wantPart, want)
			}
			// The fix-up ran on the complete, exact volume.
			if !bytes.Equal(calls[0].volBytes, src[want.Offset:want.Offset+want.Size]) {
				t.Error("the fix-up found a volume that differs from the source: it ran before the restore was complete")
			}
			got, _ := os.ReadFile(target)
			at := want.Offset + 512
			if string(got[at:at+8]) != "fixed-up" {
				t.Errorf("marker not on the target at byte %d", at)
			}
			copy(got[at:], src[at:at+8])
			if !bytes.Equal(got, src) {
				t.Error("the target differs from the source other than by the fix-up's marker")
			}
			// The raw partition of the disk image is untouched and sound.
			if tc.src == disk {
				p2 := filepath.Join(t.TempDir(), "p2.img")
				os.WriteFile(p2, got[77824*512:(77824+86016)*512], 0o644)
				testenv.Run(t, "", "e2fsck", "-fn", p2)
			}
		})
	}
}

func TestFixUpError(t *testing.T) {
	imgPath := captureFile(t, gptFixture(t), capture.Request{Analyze: firstPartitionAnalyzer})
	boom := errors.New("plugin said no")
	target := filepath.Join(t.TempDir(), "t.img")
	_, err := restoreFile(t, imgPath, target, restore.Options{
		FixUp: func(ctx context.Context, p image.Partition, v restore.Volume) error { return boom },
	})
	if !errors.Is(err, restore.ErrFixUp) || !errors.Is(err, boom) {
		t.Fatalf("error %v: want ErrFixUp wrapping the fix-up's error", err)
	}
	for _, want := range []string{"partition 1", "testfs", fmt.Sprint(2048 * 512)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// The journal is gone: running the restore again starts from scratch.
	if _, err := os.Stat(restore.DefaultJournal(target)); err == nil {
		t.Error("a resume journal is left after a restore whose fix-up failed")
	}
}

// TestNoFixUpForRaw: an image captured without plugins calls no fix-up.
func TestNoFixUpForRaw(t *testing.T) {
	imgPath := captureFile(t, gptFixture(t), capture.Request{})
	called := false
	_, err := restoreFile(t, imgPath, filepath.Join(t.TempDir(), "t.img"), restore.Options{
		FixUp: func(context.Context, image.Partition, restore.Volume) error { called = true; return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	if called {
		t.Error("fix-up called for raw partitions")
	}
}
