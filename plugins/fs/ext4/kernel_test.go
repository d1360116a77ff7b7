package ext4

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// requireLoopMount skips unless the test can loop-mount images.
func requireLoopMount(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to loop-mount an image (mount -o loop); run as root")
	}
	requireTools(t, "mount", "umount")
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skipf("no loop device support: %v", err)
	}
}

// TestKernelWritten checks a filesystem whose blocks were allocated by the
// kernel's ext4 driver: files written, every other one deleted, larger ones
// written into the holes. While it is mounted the on-disk bitmaps are not
// trustworthy and UsedExtents must refuse; after umount every property of
// verifyImage must hold.
func TestKernelWritten(t *testing.T) {
	requireTools(t, "mkfs.ext4", "dumpe2fs", "debugfs", "e2fsck")
	requireLoopMount(t)

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"4k-flex_bg", []string{"-b", "4096", "-g", "2048"}},
		{"1k-no-flex_bg", []string{"-b", "1024", "-O", "^flex_bg"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			img := filepath.Join(dir, "k.img")
			mnt := filepath.Join(dir, "mnt")
			if err := os.Mkdir(mnt, 0o755); err != nil {
				t.Fatal(err)
			}
			mkfs(t, img, "mkfs.ext4", 64, "", tc.args...)
			if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
				t.Skipf("mount -o loop failed (no usable loop device or ext4 driver?): %v: %s", err, out)
			}
			mounted := true
			unmount := func() {
				if mounted {
					if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
						t.Fatalf("umount: %v: %s", err, out)
					}
					mounted = false
				}
			}
			defer unmount()

			churnMounted(t, mnt)
			if err := exec.Command("sync").Run(); err != nil {
				t.Fatal(err)
			}

			f, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			err = UsedExtents(context.Background(), f, 64<<20, func(int64, int64) error { return nil })
			f.Close()
			if !errors.Is(err, ErrUnsupported) {
				t.Fatalf("UsedExtents on a mounted filesystem: got %v, want ErrUnsupported", err)
			}
			t.Logf("while mounted: %v", err)

			unmount()
			verifyImage(t, img, true, nil)
		})
	}
}

// churnMounted writes, deletes and rewrites files through the kernel.
func churnMounted(t *testing.T, mnt string) {
	t.Helper()
	rng := rand.New(rand.NewPCG(3, 5))
	write := func(p string, size int) {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for d := range 4 {
		sub := filepath.Join(mnt, fmt.Sprintf("dir%d", d))
		if err := os.Mkdir(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range 150 {
			write(filepath.Join(sub, fmt.Sprintf("a%03d", i)), 1+rng.IntN(24<<10))
		}
	}
	if err := exec.Command("sync").Run(); err != nil {
		t.Fatal(err)
	}
	for d := range 4 {
		for i := 0; i < 150; i += 2 {
			if err := os.Remove(filepath.Join(mnt, fmt.Sprintf("dir%d", d), fmt.Sprintf("a%03d", i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range 40 {
		write(filepath.Join(mnt, fmt.Sprintf("big%02d", i)), 50<<10+rng.IntN(200<<10))
	}
	if err := os.Symlink("dir0/a001", filepath.Join(mnt, "link")); err != nil {
		t.Fatal(err)
	}
}

// TestBlockDevice reads a filesystem through a read-only loop device, as a
// capture reads a real partition: same extents as from the image file.
func TestBlockDevice(t *testing.T) {
	requireTools(t, "mkfs.ext4", "losetup")
	requireLoopMount(t)
	tree := t.TempDir()
	makeTree(t, tree, 4, 512)
	img := filepath.Join(t.TempDir(), "b.img")
	mkfs(t, img, "mkfs.ext4", 32, tree, "-b", "1024")
	want := collect(t, img)

	out, err := exec.Command("losetup", "--find", "--show", "--read-only", img).Output()
	if err != nil {
		t.Skipf("losetup failed (no free loop device?): %v", err)
	}
	dev := strings.TrimSpace(string(out))
	defer func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", dev, err, out)
		}
	}()
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		t.Fatal(err)
	}
	if size != 32<<20 {
		t.Fatalf("%s is %d bytes, want %d", dev, size, 32<<20)
	}
	var got []extent
	err = UsedExtents(context.Background(), f, size, func(off, length int64) error {
		got = append(got, extent{off, length})
		return nil
	})
	if err != nil {
		t.Fatalf("UsedExtents(%s): %v", dev, err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: extents %v, image file gave %v", dev, abbreviate(got), abbreviate(want))
	}
}
