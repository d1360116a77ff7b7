package clonezilla

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskcast/diskcast/core/capture"
	"github.com/diskcast/diskcast/core/image"
	"github.com/diskcast/diskcast/core/partclone/partclonetest"
	"github.com/diskcast/diskcast/core/restore"
)

// loop attaches bytes [off, off+size) of path as a loop device (size 0:
// to the end) and returns its name; it is detached when the test ends.
// Partitions get a loop device each: partition scanning of loop devices
// is not available everywhere.
func loop(t *testing.T, path string, off, size int64) string {
	t.Helper()
	args := []string{"--show", "-f", "-o", fmt.Sprint(off)}
	if size > 0 {
		args = append(args, "--sizelimit", fmt.Sprint(size))
	}
	out, err := exec.Command("losetup", append(args, path)...).CombinedOutput()
	if err != nil {
		t.Skipf("needs loop devices (losetup -f): %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev
}

// partLoops attaches the three test partitions of a disk image.
func partLoops(t *testing.T, disk string) [3]string {
	var d [3]string
	for i := range d {
		d[i] = loop(t, disk, testStarts[i], testSizes[i])
	}
	return d
}

var (
	testStarts = []int64{2048 * 512, 67584 * 512, 133120 * 512}
	testSizes  = []int64{65536 * 512, 65536 * 512, 57344 * 512}
)

// sourceDisk builds a GPT disk image: an EFI system partition (FAT), an
// ext4 partition and an NTFS partition, each filled with files.
func sourceDisk(t *testing.T, dir string) (disk string, size int64) {
	size = 100 << 20
	disk = filepath.Join(dir, "source.disk")
	partclonetest.NewFile(t, disk, size)
	partclonetest.Shell(t, fmt.Sprintf(`sfdisk -q %q <<'EOF'
label: gpt
label-id: 9E0E4D52-3A0B-4C55-9D1F-6C5E2A7B8C91
first-lba: 2048
start=2048, size=65536, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=0B8B1C3E-1111-4A22-9333-000000000001, name="EFI system"
start=67584, size=65536, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=0B8B1C3E-1111-4A22-9333-000000000002, name="root"
start=133120, size=57344, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, uuid=0B8B1C3E-1111-4A22-9333-000000000003, name="data"
EOF`, disk))
	starts, sizes := testStarts, testSizes
	for i, kind := range []string{"vfat", "ext4", "ntfs"} {
		fs := filepath.Join(dir, kind+".fs")
		partclonetest.MakeFS(t, kind, fs, sizes[i], uint64(40+i))
		partclonetest.Shell(t, fmt.Sprintf("dd if=%q of=%q bs=1M seek=%d oflag=seek_bytes conv=notrunc,sparse status=none", fs, disk, starts[i]))
	}
	// Boot code, which only the raw copy of the first sectors carries.
	partclonetest.Shell(t, fmt.Sprintf("printf 'BOOTCODE' | dd of=%q conv=notrunc status=none", disk))
	return disk, size
}

// saveDisk writes a Clonezilla image directory of the disk attached at dev
// the way ocs-sr savedisk names and makes its files, as disk name (sda,
// nvme0n1).
func saveDisk(t *testing.T, disk, dir, name string, sectors int64) {
	dev := loop(t, disk, 0, 0)
	parts := partLoops(t, disk)
	p := func(n int) string {
		if strings.HasPrefix(name, "nvme") || strings.HasPrefix(name, "mmcblk") {
			return fmt.Sprintf("%sp%d", name, n)
		}
		return fmt.Sprintf("%s%d", name, n)
	}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(dir, 0o755))
	must(os.WriteFile(filepath.Join(dir, "disk"), []byte(name+"\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "parts"), []byte(p(1)+" "+p(2)+" "+p(3)+"\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "dev-fs.list"), []byte(fmt.Sprintf(
		"# <Device name>   <File system>   <Size>\n/dev/%s vfat 32M\n/dev/%s ext4 32M\n/dev/%s ntfs 28M\n", p(1), p(2), p(3))), 0o644))
	must(os.WriteFile(filepath.Join(dir, "clonezilla-img"), []byte("This image was saved by Clonezilla at 2026-11-26\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "Info-dmi.txt"), []byte("# dmidecode\n"), 0o644))
	rename := fmt.Sprintf("sed -e 's|%sp|/dev/%s|g' -e 's|%s|/dev/%s|g'", dev, strings.TrimSuffix(p(1), "1"), dev, name)
	partclonetest.Shell(t, fmt.Sprintf(`cd %q
lsblk -o KNAME,NAME,SIZE,TYPE,FSTYPE,MOUNTPOINT,MODEL %s | %s > blkdev.list
sfdisk -d %s | %s > %s-pt.sf
dd if=%s of=%s-mbr bs=512 count=1 status=none
dd if=%s of=%s-gpt-1st bs=512 count=34 status=none
dd if=%s of=%s-gpt-2nd skip=%d bs=512 count=33 status=none
sgdisk -b %s-gpt.gdisk %s >/dev/null
partclone.vfat -c -q -L /dev/null -s %s -o - | gzip -c -1 | split -a 2 -b 1000000 - %s.vfat-ptcl-img.gz.
partclone.ext4 -c -q -a0 -L /dev/null -s %s -o - | zstd -q -c | split -a 2 -b 1000000 - %s.ext4-ptcl-img.zst.
ntfsclone -q --save-image -o - %s | gzip -c -1 | split -a 2 -b 1000000 - %s.ntfs-img.gz.
`, dir, dev, rename, dev, rename, name, dev, name, dev, name, dev, name, sectors-33+1, name, dev,
		parts[0], p(1), parts[1], p(2), parts[2], p(3)))
}

// expectedDisk restores the directory the way ocs-sr does onto a fresh
// disk file: the raw GPT copies (its dd path), then partclone -r and
// ntfsclone --restore-image onto the partitions.
func expectedDisk(t *testing.T, dir, name, path string, size int64, sectors int64) {
	partclonetest.NewFile(t, path, size)
	partclonetest.Shell(t, fmt.Sprintf(`dd if=%q/%s-gpt-1st of=%q conv=notrunc status=none &&
dd if=%q/%s-gpt-2nd of=%q seek=%d bs=512 count=33 conv=notrunc status=none`, dir, name, path, dir, name, path, sectors-33+1))
	dev := partLoops(t, path)
	p := func(n int) string { return fmt.Sprintf("%s/%sp%d", dir, name, n) }
	partclonetest.Shell(t, fmt.Sprintf(`cat %s.vfat-ptcl-img.gz.* | gzip -dc | partclone.vfat -r -q -L /dev/null -s - -o %s
cat %s.ext4-ptcl-img.zst.* | zstd -q -dc | partclone.ext4 -r -q -L /dev/null -s - -o %s
cat %s.ntfs-img.gz.* | gzip -dc | ntfsclone -q --restore-image --overwrite %s -
sync`, p(1), dev[0], p(2), dev[1], p(3), dev[2]))
	for _, d := range dev {
		exec.Command("losetup", "-d", d).Run()
	}
}

// TestDirectory assembles a Clonezilla directory from partclone, ntfsclone
// and sfdisk output for a GPT disk named nvme0n1 and restores it onto a
// target file of another name, directly and through a diskcast image: both
// must equal Clonezilla's own restore byte for byte, and every filesystem
// must check clean.
func TestDirectory(t *testing.T) {
	partclonetest.RequireRoot(t)
	partclonetest.Require(t, "sfdisk", "sgdisk", "losetup", "partclone.ext4", "partclone.vfat", "ntfsclone", "gzip", "zstd", "lsblk")
	tmp := t.TempDir()
	src, size := sourceDisk(t, tmp)
	dir := filepath.Join(tmp, "2026-11-26-img")
	saveDisk(t, src, dir, "nvme0n1", size/512)
	want := filepath.Join(tmp, "want.disk")
	expectedDisk(t, dir, "nvme0n1", want, size, size/512)

	ctx := context.Background()
	plan, err := OpenDir(ctx, dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if plan.Size != size || plan.Table.Scheme != "gpt" || len(plan.Parts) != 3 || plan.Table.DiskGUID != "9E0E4D52-3A0B-4C55-9D1F-6C5E2A7B8C91" {
		t.Fatalf("plan: size %d scheme %s guid %s parts %d", plan.Size, plan.Table.Scheme, plan.Table.DiskGUID, len(plan.Parts))
	}
	for i, w := range []struct{ name, format, fs, label string }{
		{"nvme0n1p1", "partclone", "vfat", "EFI system"}, {"nvme0n1p2", "partclone", "ext4", "root"}, {"nvme0n1p3", "ntfsclone", "ntfs", "data"},
	} {
		p := plan.Parts[i]
		if p.Name != w.name || p.Format != w.format || p.FS != w.fs || p.Label != w.label || len(p.Files) < 1 {
			t.Errorf("part %d: %+v, want %+v", i, p, w)
		}
	}

	// Direct restore onto a target of another name.
	direct := filepath.Join(tmp, "sdb.disk")
	if _, err := Restore(ctx, plan, direct, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	partclonetest.SameFile(t, want, direct)

	// Import, then restore the diskcast image.
	dci := filepath.Join(tmp, "disk.dci")
	res, err := Import(ctx, plan, dci, ImportOptions{Capture: capture.Options{Codec: image.CodecZstd, ChunkSize: 256 << 10}, Creator: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Header.Source.Kind != image.SourceDisk || len(res.Header.Source.Partitions) != 3 || len(res.Header.Source.Table.Areas) < 4 {
		t.Errorf("imported header: %+v", res.Header.Source)
	}
	img, err := image.Open(dci)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	viaImport := filepath.Join(tmp, "vdb.disk")
	if _, err := restore.Run(ctx, img.Reader, viaImport, restore.Options{}); err != nil {
		t.Fatal(err)
	}
	partclonetest.SameFile(t, want, viaImport)

	// Each filesystem checks clean on the restored disk.
	for _, p := range plan.Parts {
		part := filepath.Join(tmp, p.Name+".fs")
		partclonetest.Shell(t, fmt.Sprintf("dd if=%q of=%q bs=512 skip=%d count=%d status=none", viaImport, part, p.Start/512, p.Size/512))
		partclonetest.Fsck(t, p.FS, part)
	}
	// The boot code came along with the raw copy of the first sectors.
	b, _ := os.ReadFile(viaImport)
	if string(b[:8]) != "BOOTCODE" {
		t.Errorf("boot code missing")
	}

	// A target disk that is too small is refused before anything is written.
	small := filepath.Join(tmp, "small.disk")
	partclonetest.NewFile(t, small, size/2)
	sdev := loop(t, small, 0, 0)
	if _, err := Restore(ctx, plan, sdev, RestoreOptions{}); !errors.Is(err, ErrTooSmall) {
		t.Errorf("restore onto a half-size disk: err = %v", err)
	}
}

// TestMBRDirectory restores an MBR disk with a logical partition, data
// hidden between MBR and first partition, a partclone image and a raw
// (dd-img) image, against ocs-sr's way: sfdisk < sda-pt.sf, the MBR's boot
// code, the hidden data, then the partition images.
func TestMBRDirectory(t *testing.T) {
	partclonetest.RequireRoot(t)
	partclonetest.Require(t, "sfdisk", "losetup", "partclone.ext4", "gzip")
	tmp := t.TempDir()
	size := int64(64 << 20)
	src := filepath.Join(tmp, "source.disk")
	partclonetest.NewFile(t, src, size)
	partclonetest.Shell(t, fmt.Sprintf(`sfdisk -q %q <<'EOF'
label: dos
label-id: 0x5eed1234
start=2048, size=40960, type=83, bootable
start=43008, size=81920, type=5
start=45056, size=32768, type=c
EOF`, src))
	ext := filepath.Join(tmp, "ext4.fs")
	partclonetest.MakeFS(t, "ext4", ext, 40960*512, 50)
	fat := filepath.Join(tmp, "fat.fs")
	partclonetest.MakeFS(t, "vfat", fat, 32768*512, 51)
	partclonetest.Shell(t, fmt.Sprintf(`dd if=%[2]q of=%[1]q bs=512 seek=2048 conv=notrunc status=none
dd if=%[3]q of=%[1]q bs=512 seek=45056 conv=notrunc status=none
printf 'GRUBCODE' | dd of=%[1]q conv=notrunc status=none
printf 'HIDDEN' | dd of=%[1]q bs=512 seek=5 conv=notrunc status=none`, src, ext, fat))
	dir := filepath.Join(tmp, "img")
	os.MkdirAll(dir, 0o755)
	dev := loop(t, src, 0, 0)
	p1 := loop(t, src, 2048*512, 40960*512)
	p5 := loop(t, src, 45056*512, 32768*512)
	rename := fmt.Sprintf("sed -e 's|%s|/dev/sda|g'", dev)
	partclonetest.Shell(t, fmt.Sprintf(`cd %q
echo sda > disk; echo "sda1 sda5" > parts
echo "Disk /dev/sda: %ds" > sda-pt.parted
sfdisk -d %s | sed -e 's|%sp|/dev/sda|g' | %s > sda-pt.sf
dd if=%s of=sda-mbr bs=512 count=1 status=none
dd if=%s of=sda-hidden-data-after-mbr skip=1 bs=512 count=2047 status=none
partclone.ext4 -c -q -a1 -L /dev/null -s %s -o - | gzip -c -1 | split -a 2 -b 2000000 - sda1.ext4-ptcl-img.gz.
gzip -c -1 < %s | split -a 2 -b 2000000 - sda5.dd-img.`, dir, size/512, dev, dev, rename, dev, dev, p1, p5))

	want := filepath.Join(tmp, "want.disk")
	partclonetest.NewFile(t, want, size)
	partclonetest.Shell(t, fmt.Sprintf(`sfdisk -q %[1]q < %[2]q/sda-pt.sf
dd if=%[2]q/sda-mbr of=%[1]q bs=446 count=1 conv=notrunc status=none
dd if=%[2]q/sda-hidden-data-after-mbr of=%[1]q bs=512 seek=1 conv=notrunc status=none`, want, dir))
	w1 := loop(t, want, 2048*512, 40960*512)
	w5 := loop(t, want, 45056*512, 32768*512)
	partclonetest.Shell(t, fmt.Sprintf(`cat %[1]q/sda1.ext4-ptcl-img.gz.* | gzip -dc | partclone.ext4 -r -q -L /dev/null -s - -o %[2]s
cat %[1]q/sda5.dd-img.* | gzip -dc | dd of=%[3]s bs=1M status=none; sync`, dir, w1, w5))

	ctx := context.Background()
	plan, err := OpenDir(ctx, dir, "sda")
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Parts) != 2 || plan.Parts[1].Format != "dd" || plan.Parts[1].Number != 5 || plan.Table.Scheme != "mbr" || plan.Size != size {
		t.Fatalf("plan: %+v", plan)
	}
	got := filepath.Join(tmp, "got.disk")
	if _, err := Restore(ctx, plan, got, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	partclonetest.SameFile(t, want, got)
	dci := filepath.Join(tmp, "mbr.dci")
	if _, err := Import(ctx, plan, dci, ImportOptions{Capture: capture.Options{Codec: image.CodecZstd}}); err != nil {
		t.Fatal(err)
	}
	img, err := image.Open(dci)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	got2 := filepath.Join(tmp, "got2.disk")
	if _, err := restore.Run(ctx, img.Reader, got2, restore.Options{}); err != nil {
		t.Fatal(err)
	}
	partclonetest.SameFile(t, want, got2)
	b, _ := os.ReadFile(got2)
	if string(b[:8]) != "GRUBCODE" || string(b[5*512:5*512+6]) != "HIDDEN" {
		t.Errorf("boot code or hidden data missing")
	}
}

func TestOpenDirErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := OpenDir(ctx, dir, ""); !errors.Is(err, ErrNotClonezilla) {
		t.Errorf("empty dir: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "disk"), []byte("sda sdb\n"), 0o644)
	if _, err := OpenDir(ctx, dir, ""); !errors.Is(err, ErrAmbiguous) || !strings.Contains(err.Error(), "sda, sdb") {
		t.Errorf("two disks: %v", err)
	}
	if _, err := OpenDir(ctx, dir, "sda"); !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "sda-pt.sf") {
		t.Errorf("no pt.sf: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "sda-pt.sf"), []byte("label: dos\nunit: sectors\n\n/dev/sda1 : start=2048, size=4096, type=83\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "parts"), []byte("sda1\n"), 0o644)
	if _, err := OpenDir(ctx, dir, "sda"); !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "sda1 is listed in parts but has no image") {
		t.Errorf("no image: %v", err)
	}
}

func TestParseSfdisk(t *testing.T) {
	tests := []struct {
		name, in string
		check    func(t *testing.T, tb *Table)
		err      bool
	}{
		{"gpt", `label: gpt
label-id: 9E0E4D52-3A0B-4C55-9D1F-6C5E2A7B8C91
device: /dev/nvme0n1
unit: sectors
first-lba: 2048
last-lba: 204766
sector-size: 512

/dev/nvme0n1p1 : start=        2048, size=       65536, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=0B8B1C3E-1111-4A22-9333-000000000001, name="EFI, system", attrs="LegacyBIOSBootable"
`, func(t *testing.T, tb *Table) {
			p := tb.Parts[0]
			if tb.Label != "gpt" || tb.LastLBA != 204766 || p.Number != 1 || p.Start != 2048 || p.Size != 65536 || p.Name != "EFI, system" || p.Attrs != "LegacyBIOSBootable" {
				t.Errorf("%+v %+v", tb, p)
			}
		}, false},
		{"dos", "label: dos\nlabel-id: 0x1234abcd\nunit: sectors\n\n/dev/sda1 : start=63, size=1000, type=7, bootable\n/dev/sda5 : start=2048, size=10, type=83\n",
			func(t *testing.T, tb *Table) {
				if tb.ID != "0x1234abcd" || !tb.Parts[0].Boot || tb.Parts[0].Type != "7" || tb.Parts[1].Number != 5 {
					t.Errorf("%+v", tb)
				}
			}, false},
		{"bad label", "label: sun\n", nil, true},
		{"bad start", "label: dos\n/dev/sda1 : start=x, size=1\n", nil, true},
		{"bad sector size", "label: gpt\nsector-size: 513\n", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb, err := ParseSfdisk(strings.NewReader(tc.in))
			if tc.err {
				if !errors.Is(err, ErrTable) {
					t.Fatalf("err = %v, want ErrTable", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, tb)
		})
	}
}
