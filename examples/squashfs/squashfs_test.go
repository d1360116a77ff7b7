package squashfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/diskcast/diskcast/sdk/base"
	"github.com/diskcast/diskcast/sdk/sdktest"
)

// files are put into every test image: name -> content.
func files(t testing.TB) (string, map[string][]byte) {
	dir := t.TempDir()
	want := map[string][]byte{
		"hello.txt":      []byte("hello, squashfs\n"),
		"sub/zeros":      make([]byte, 200_000),
		"sub/deeper/bin": bytes.Repeat([]byte("0123456789abcdef"), 40_000),
	}
	for name, data := range want {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, want
}

// mksquashfs makes an image of dir and returns it with its bytes_used as
// unsquashfs reports it.
func mksquashfs(t testing.TB, dir string, args ...string) (string, int64) {
	sdktest.NeedCommand(t, "mksquashfs", "squashfs-tools")
	img := filepath.Join(t.TempDir(), "image.sqfs")
	out, err := exec.Command("mksquashfs", append([]string{dir, img, "-quiet", "-noappend", "-no-progress"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	out, err = exec.Command("unsquashfs", "-s", img).CombinedOutput()
	if err != nil {
		t.Fatalf("unsquashfs -s: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Filesystem size (\d+) bytes`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("unsquashfs -s does not say the size:\n%s", out)
	}
	used, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return img, used
}

// verify extracts a used-extents-only copy with unsquashfs and compares
// every file.
func verify(want map[string][]byte) func(t testing.TB, p string) {
	return func(t testing.TB, p string) {
		dst := filepath.Join(t.TempDir(), "x")
		if out, err := exec.Command("unsquashfs", "-no-progress", "-d", dst, p).CombinedOutput(); err != nil {
			t.Fatalf("unsquashfs of the used extents: %v\n%s", err, out)
		}
		for name, data := range want {
			got, err := os.ReadFile(filepath.Join(dst, name))
			if err != nil || sha256.Sum256(got) != sha256.Sum256(data) {
				t.Errorf("%s: restored content differs (%v)", name, err)
			}
		}
	}
}

func TestConformance(t *testing.T) {
	dir, want := files(t)
	gz, gzUsed := mksquashfs(t, dir)
	st, _ := os.Stat(gz)
	small, smallUsed := mksquashfs(t, dir, "-b", "4096", "-noI")

	// A squashfs inside a bigger file, like a partition on a disk, with
	// stale bytes after it.
	disk := filepath.Join(t.TempDir(), "disk.img")
	data, _ := os.ReadFile(small)
	buf := bytes.Repeat([]byte{0xEE}, 1<<20+len(data)+64<<10)
	copy(buf[1<<20:], data)
	os.WriteFile(disk, buf, 0o644)

	// Other filesystems are foreign to this plugin.
	var foreign []sdktest.Sample
	if _, err := exec.LookPath("mkfs.ext4"); err == nil {
		foreign = append(foreign, sdktest.Sample{Name: "ext4", Path: sdktest.MakeImage(t, 8<<20, "e2fsprogs", "mkfs.ext4", "-q", "-F")})
	}

	sdktest.RunFilesystem(t, sdktest.FilesystemSuite{
		Name: "squashfs",
		Impl: New(),
		Samples: []sdktest.Sample{
			{Name: "gzip-128k", Path: gz, WantFSType: "squashfs", WantUsedBytes: st.Size(), Verify: verify(want)},
			{Name: "without-padding", Path: gz, WantFSType: "squashfs", WantUsedBytes: gzUsed,
				Config: base.Config{"keep_padding": false}, Verify: verify(want)},
			{Name: "4k-at-offset", Path: disk, Offset: 1 << 20, Size: int64(len(data)) + 64<<10, WantFSType: "squashfs",
				WantUsedBytes: (smallUsed + 4095) / 4096 * 4096, Verify: verify(want)},
		},
		Foreign: foreign,
	})
}

func TestBadSuperblocks(t *testing.T) {
	dir, _ := files(t)
	img, _ := mksquashfs(t, dir)
	good, _ := os.ReadFile(img)
	tests := []struct {
		name  string
		off   int
		value uint64
		size  int // bytes written
		msg   string
	}{
		{"version", 28, 3, 2, "version 3.0, want 4.0"},
		{"block size", 12, 5000, 4, "block_size 5000 is not a power of two"},
		{"block log", 22, 12, 2, "block_log 12 does not match"},
		{"bytes used", 40, 1 << 40, 8, "past the end of the"},
		{"table", 64, 1 << 30, 8, "inode table at 1073741824 is past bytes_used"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(good)
			switch tc.size {
			case 2:
				binary.LittleEndian.PutUint16(b[tc.off:], uint16(tc.value))
			case 4:
				binary.LittleEndian.PutUint32(b[tc.off:], uint32(tc.value))
			case 8:
				binary.LittleEndian.PutUint64(b[tc.off:], tc.value)
			}
			_, err := New().Probe(context.Background(), bytes.NewReader(b), int64(len(b)))
			if err == nil || !regexp.MustCompile(regexp.QuoteMeta(tc.msg)).MatchString(err.Error()) {
				t.Errorf("probe: %v, want %q", err, tc.msg)
			}
		})
	}
}

// FuzzProbe feeds arbitrary superblocks: no panic, and any extent stays
// inside the volume.
func FuzzProbe(f *testing.F) {
	sb := make([]byte, superSize)
	copy(sb, "hsqs")
	binary.LittleEndian.PutUint32(sb[12:], 131072)
	binary.LittleEndian.PutUint16(sb[22:], 17)
	binary.LittleEndian.PutUint16(sb[28:], 4)
	binary.LittleEndian.PutUint64(sb[40:], 200)
	for i := 48; i < 96; i += 8 {
		binary.LittleEndian.PutUint64(sb[i:], 100)
	}
	f.Add(append(sb, make([]byte, 200)...))
	f.Add([]byte("hsqs"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := New()
		size := int64(len(data))
		r := bytes.NewReader(data)
		res, err := p.Probe(context.Background(), r, size)
		if err != nil || res.Confidence == 0 {
			return
		}
		err = p.UsedExtents(context.Background(), r, size, func(off, length int64) error {
			if off != 0 || length <= 0 || length > size {
				t.Fatalf("extent %d+%d outside the %d-byte volume", off, length, size)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// TestBinaryDescribe builds the plugin binary and checks what it tells
// diskcast.
func TestBinaryDescribe(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "diskcast-plugin-squashfs")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/diskcast-plugin-squashfs").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "describe").Output()
	if err != nil {
		t.Fatal(err)
	}
	var d base.Description
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatal(err)
	}
	if d.APIVersion != base.APIVersion || d.Version != "1.0.0" || len(d.Plugins) != 1 || d.Plugins[0] != (base.Component{Kind: base.KindFilesystem, Name: "squashfs"}) {
		t.Errorf("describe: %+v", d)
	}
	if err := exec.Command(bin).Run(); err == nil {
		t.Error("running the plugin by hand succeeded, want a usage error")
	}
}
