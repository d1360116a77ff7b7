package device

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskcast/diskcast/core/internal/testenv"
)

func TestInUse(t *testing.T) {
	testenv.RequireCommands(t, "mkfs.ext4", "mount", "umount")
	dir := t.TempDir()
	img := filepath.Join(dir, "fs.img")
	testenv.MkfsExt4(t, img, 8<<20, "")
	if use, err := InUse(img); err != nil || use != (Use{}) {
		t.Fatalf("a plain file: %+v, %v", use, err)
	}
	dev := testenv.LoopDevice(t, img)
	if use, err := InUse(dev); err != nil || use != (Use{}) {
		t.Fatalf("an unmounted loop device: %+v, %v", use, err)
	}
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	if out, err := exec.Command("mount", "-o", "ro", dev, mnt).CombinedOutput(); err != nil {
		t.Skipf("skipping: cannot mount a loop device here: %v %s", err, out)
	}
	defer exec.Command("umount", mnt).Run()
	use, err := InUse(dev)
	if err != nil || !use.ReadOnly || !strings.Contains(use.What, "mounted read-only at "+mnt) {
		t.Fatalf("a mounted loop device: %+v, %v", use, err)
	}
}
