package partclone

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/diskcast/diskcast/core/partclone/partclonetest"
)

// restoreTo writes the image at path onto a fresh file of the device size,
// the way a partclone restore onto a zero-filled device leaves it.
func restoreTo(t *testing.T, path, dst string) (*Header, error) {
	t.Helper()
	r, _, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	f, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(r.Header.DeviceSize); err != nil {
		t.Fatal(err)
	}
	last := int64(-1)
	err = r.Data(context.Background(), func(off int64, p []byte) error {
		if off <= last {
			t.Fatalf("data at %d after data ending at %d", off, last)
		}
		last = off + int64(len(p)) - 1
		_, err := f.WriteAt(p, off)
		return err
	})
	h := r.Header
	return &h, err
}

// TestRealImages clones real filesystems with partclone in every checksum
// layout it offers, and checks that reading the image gives exactly what
// partclone's own restore writes.
func TestRealImages(t *testing.T) {
	partclonetest.RequireRoot(t)
	dir := t.TempDir()
	fsImg := filepath.Join(dir, "fs.img")
	partclonetest.MakeFS(t, "ext4", fsImg, 24<<20, 1)
	tests := []struct {
		name  string
		args  []string
		comp  string
		check func(t *testing.T, h *Header)
	}{
		{"a0-gzip", []string{"-a0"}, "gzip", func(t *testing.T, h *Header) {
			if h.Checksum != ChecksumNone || h.BlocksPerChecksum != 0 || h.ChecksumSize != 0 {
				t.Errorf("header %+v, want no checksum", h)
			}
		}},
		{"a1", []string{"-a1"}, "none", func(t *testing.T, h *Header) {
			if h.Checksum != ChecksumCRC32 || h.ChecksumSize != 4 || h.BlocksPerChecksum != 256 || !h.Reseed {
				t.Errorf("header %+v, want CRC32 every 256 blocks, reseeded", h)
			}
		}},
		{"a1-k7-partial-groups", []string{"-a1", "-k", "7"}, "none", func(t *testing.T, h *Header) {
			if h.BlocksPerChecksum != 7 {
				t.Errorf("blocks per checksum %d, want 7", h.BlocksPerChecksum)
			}
		}},
		{"a1-k1", []string{"-a1", "-k", "1"}, "zstd", nil},
		{"a1-no-reseed", []string{"-a1", "-k", "5", "-K"}, "none", func(t *testing.T, h *Header) {
			if h.Reseed {
				t.Errorf("reseed set with -K")
			}
		}},
		{"a1-xz", []string{"-a1"}, "xz", nil},
		{"a1-lz4", []string{"-a1"}, "lz4", nil},
	}
	st, err := os.Stat(fsImg)
	if err != nil {
		t.Fatal(err)
	}
	partclonetest.Require(t, "partclone.ext4", "gzip", "zstd", "xz", "lz4")
	// partclone sleeps most of each run: clone, compress and restore every
	// case at once.
	var scripts []string
	imgs := map[string]string{}
	for _, tc := range tests {
		img := filepath.Join(dir, tc.name+".pcl")
		comp, name := partclonetest.CompressCmd(img, tc.comp)
		imgs[tc.name] = name
		scripts = append(scripts, partclonetest.CloneCmd("ext4", fsImg, img, tc.args...)+" && "+comp+" && "+
			partclonetest.RestoreCmd("ext4", name, filepath.Join(dir, tc.name+".want"), st.Size()))
	}
	partclonetest.ShellAll(t, scripts)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img := imgs[tc.name]
			want := filepath.Join(dir, tc.name+".want")
			got := filepath.Join(dir, tc.name+".got")
			h, err := restoreTo(t, img, got)
			if err != nil {
				t.Fatal(err)
			}
			if h.FS != "EXTFS" || h.Version != 2 || h.BlockSize != 4096 || h.DeviceSize != st.Size() {
				t.Errorf("header %+v", h)
			}
			if h.UsedBlocks != h.SuperUsedBlocks {
				t.Errorf("bitmap has %d used blocks, the filesystem said %d", h.UsedBlocks, h.SuperUsedBlocks)
			}
			if tc.check != nil {
				tc.check(t, h)
			}
			partclonetest.SameFile(t, want, got)
			partclonetest.Fsck(t, "ext4", got)
		})
	}
}

// TestSplitPieces reads an image split the way Clonezilla splits them.
func TestSplitPieces(t *testing.T) {
	partclonetest.RequireRoot(t)
	dir := t.TempDir()
	fsImg := filepath.Join(dir, "fs.img")
	partclonetest.MakeFS(t, "ext4", fsImg, 16<<20, 2)
	img := filepath.Join(dir, "sda1.ext4-ptcl-img")
	partclonetest.Clone(t, "ext4", fsImg, img, "-a1")
	gz := partclonetest.Compress(t, img, "gzip")
	partclonetest.Shell(t, fmt.Sprintf("split -a 2 -b 1000000 %q %q", gz, gz+"."))
	os.Remove(gz)
	want := filepath.Join(dir, "want")
	partclonetest.PartcloneRestore(t, "ext4", img, want, 16<<20)
	for _, name := range []string{gz, gz + ".aa"} {
		pieces, err := Pieces(name)
		if err != nil {
			t.Fatal(err)
		}
		if len(pieces) < 3 || filepath.Base(pieces[1]) != "sda1.ext4-ptcl-img.gz.ab" {
			t.Fatalf("Pieces(%s) = %v", name, pieces)
		}
		got := filepath.Join(dir, "got")
		if _, err := restoreTo(t, name, got); err != nil {
			t.Fatal(err)
		}
		partclonetest.SameFile(t, want, got)
	}
	// A missing middle piece is named.
	os.Remove(gz + ".ab")
	if _, err := Pieces(gz); err == nil || !bytes.Contains([]byte(err.Error()), []byte(".ab is missing")) {
		t.Fatalf("missing piece: err = %v", err)
	}
}

// TestCorruption flips bytes in real images and expects errors that say
// where.
func TestCorruption(t *testing.T) {
	partclonetest.RequireRoot(t)
	dir := t.TempDir()
	fsImg := filepath.Join(dir, "fs.img")
	partclonetest.MakeFS(t, "ext4", fsImg, 16<<20, 3)
	img := filepath.Join(dir, "a1.pcl")
	partclonetest.Clone(t, "ext4", fsImg, img, "-a1", "-k", "16")
	clean, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(bytes.NewReader(clean))
	if err != nil {
		t.Fatal(err)
	}
	h := r.Header
	dataStart := int64(descSize) + (h.TotalBlocks+7)/8 + 4
	group := int64(h.BlocksPerChecksum)*int64(h.BlockSize) + 4
	// The 40th stored block: in group 2 (blocks 32-47 of the stored ones).
	stored := int64(40)
	off := dataStart + (stored/16)*group + (stored%16)*int64(h.BlockSize) + 100
	wantBlock := nthUsed(r.Bitmap, stored)
	tests := []struct {
		name   string
		offset int64
		want   error
		match  string
	}{
		{"header", 40, ErrChecksum, `header CRC32`},
		{"bitmap", descSize + 3, ErrChecksum, `bitmap CRC32`},
		{"data block", off, ErrChecksum, fmt.Sprintf(`blocks (\d+)-(\d+) \(stored blocks 32-47`)},
		{"stored checksum", dataStart + group - 2, ErrChecksum, `blocks \d+-\d+ \(stored blocks 0-15`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(clean)
			b[tc.offset] ^= 0x40
			path := filepath.Join(dir, "bad.pcl")
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := restoreTo(t, path, filepath.Join(dir, "out"))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			m := regexp.MustCompile(tc.match).FindStringSubmatch(err.Error())
			if m == nil {
				t.Fatalf("error %q does not match %q", err, tc.match)
			}
			if tc.name == "data block" {
				lo, _ := strconv.ParseInt(m[1], 10, 64)
				hi, _ := strconv.ParseInt(m[2], 10, 64)
				if wantBlock < lo || wantBlock > hi {
					t.Fatalf("error names blocks %d-%d, the damaged block is %d", lo, hi, wantBlock)
				}
			}
		})
	}
	t.Run("truncated", func(t *testing.T) {
		path := filepath.Join(dir, "short.pcl")
		if err := os.WriteFile(path, clean[:len(clean)-5000], 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := restoreTo(t, path, filepath.Join(dir, "out")); !errors.Is(err, ErrTruncated) {
			t.Fatalf("err = %v, want ErrTruncated", err)
		}
	})
}

func nthUsed(m *Bitmap, n int64) int64 {
	for i := int64(0); i < m.n; i++ {
		if m.Used(i) {
			if n == 0 {
				return i
			}
			n--
		}
	}
	return -1
}

// synth describes a synthetic image for the format tests: the test writes
// it byte by byte as partclone lays it out.
type synth struct {
	version   int
	mode      Checksum
	bpc       int
	reseed    bool
	blockSize int
	used      []bool
	bug64     bool // format 0001 with 8-byte CRCs
	seed      uint64
}

// build returns the image and the device it describes.
func (s synth) build() (img, dev []byte) {
	rng := rand.New(rand.NewPCG(s.seed, 7))
	bs := s.blockSize
	total := len(s.used)
	dev = make([]byte, total*bs+bs/2) // a device a little larger than the filesystem
	var used int
	for i, u := range s.used {
		if u {
			used++
			for j := range bs {
				dev[i*bs+j] = byte(rng.Uint32())
			}
			if i%3 == 0 {
				// blocks whose first byte repeats show the 0001 CRC quirk
				dev[i*bs] = 0
			}
		}
	}
	var b bytes.Buffer
	le := binary.LittleEndian
	if s.version == 1 {
		h := make([]byte, descSizeV1)
		copy(h, magic)
		copy(h[15:], "EXTFS")
		copy(h[30:], "0001")
		le.PutUint32(h[36:], uint32(bs))
		le.PutUint64(h[40:], uint64(len(dev)))
		le.PutUint64(h[48:], uint64(total))
		le.PutUint64(h[56:], uint64(used))
		b.Write(h)
		for i, u := range s.used {
			switch {
			case u:
				b.WriteByte(1)
			case i%5 == 0:
				b.WriteByte(7) // stray values old images hold: not stored
			default:
				b.WriteByte(0)
			}
		}
		b.WriteString(bitMagic)
		reg := crcSeed
		for i, u := range s.used {
			if !u {
				continue
			}
			blk := dev[i*bs : (i+1)*bs]
			b.Write(blk)
			reg = crcV1(reg, blk)
			var c [8]byte
			le.PutUint32(c[:], reg)
			if s.bug64 {
				b.Write(c[:8])
			} else {
				b.Write(c[:4])
			}
		}
		return b.Bytes(), dev
	}
	h := make([]byte, descSize)
	copy(h, magic)
	copy(h[16:], "0.3.99")
	copy(h[30:], "0002")
	le.PutUint16(h[34:], endianLE)
	copy(h[36:], "EXTFS")
	le.PutUint64(h[52:], uint64(len(dev)))
	le.PutUint64(h[60:], uint64(total))
	le.PutUint64(h[68:], uint64(used))
	le.PutUint64(h[76:], uint64(used))
	le.PutUint32(h[84:], uint32(bs))
	le.PutUint32(h[88:], 18)
	le.PutUint16(h[92:], 2)
	le.PutUint16(h[94:], 64)
	le.PutUint16(h[96:], uint16(s.mode))
	le.PutUint16(h[98:], uint16(max(s.mode.size(), 0)))
	le.PutUint32(h[100:], uint32(s.bpc))
	if s.reseed {
		h[104] = 1
	}
	h[105] = bitmapBit
	le.PutUint32(h[106:], crcRaw(crcSeed, h[:106]))
	b.Write(h)
	bm := make([]byte, (total+7)/8)
	for i, u := range s.used {
		if u {
			bm[i/8] |= 1 << (i % 8)
		}
	}
	b.Write(bm)
	binary.Write(&b, le, crcRaw(crcSeed, bm))
	sum := newSummer(s.mode)
	n := 0
	for i, u := range s.used {
		if !u {
			continue
		}
		blk := dev[i*bs : (i+1)*bs]
		b.Write(blk)
		if s.mode == ChecksumNone {
			continue
		}
		sum.add(blk)
		n++
		if n%s.bpc == 0 {
			b.Write(sum.sum())
			if s.reseed {
				sum.reset()
			}
		}
	}
	if s.mode != ChecksumNone && n%s.bpc != 0 {
		b.Write(sum.sum())
	}
	return b.Bytes(), dev
}

func randomUsed(n int, seed uint64) []bool {
	rng := rand.New(rand.NewPCG(seed, 3))
	u := make([]bool, n)
	for i := range u {
		u[i] = rng.IntN(3) != 0
	}
	u[0] = true
	return u
}

// readAll reads a synthetic image and returns what a restore onto a zero
// device of the same size holds.
func readAll(img []byte, size int) ([]byte, *Header, error) {
	r, err := NewReader(bytes.NewReader(img))
	if err != nil {
		return nil, nil, err
	}
	out := make([]byte, size)
	err = r.Data(context.Background(), func(off int64, p []byte) error {
		copy(out[off:], p)
		return nil
	})
	h := r.Header
	return out, &h, err
}

// masked is dev with the blocks not stored zeroed: what a restore onto a
// zero device gives.
func masked(dev []byte, used []bool, bs int) []byte {
	out := make([]byte, len(dev))
	for i, u := range used {
		if u {
			copy(out[i*bs:(i+1)*bs], dev[i*bs:])
		}
	}
	return out
}

// TestFormats reads images of both formats and every checksum mode and
// layout, including the 8-byte CRC of old 64-bit builds.
func TestFormats(t *testing.T) {
	used := randomUsed(700, 1)
	tests := []struct {
		name string
		s    synth
	}{
		{"v1", synth{version: 1, blockSize: 512, used: used}},
		{"v1-64bit-crc", synth{version: 1, blockSize: 512, used: used, bug64: true}},
		{"v2-none", synth{version: 2, mode: ChecksumNone, blockSize: 1024, used: used}},
		{"v2-crc32", synth{version: 2, mode: ChecksumCRC32, bpc: 64, reseed: true, blockSize: 1024, used: used}},
		{"v2-crc32-partial", synth{version: 2, mode: ChecksumCRC32, bpc: 13, reseed: true, blockSize: 512, used: used}},
		{"v2-crc32-no-reseed", synth{version: 2, mode: ChecksumCRC32, bpc: 9, blockSize: 512, used: used}},
		{"v2-xxh64", synth{version: 2, mode: ChecksumXXH64, bpc: 32, reseed: true, blockSize: 4096, used: used}},
		{"v2-xxh128", synth{version: 2, mode: ChecksumXXH128, bpc: 7, reseed: true, blockSize: 4096, used: used}},
		{"v2-xxh128-no-reseed", synth{version: 2, mode: ChecksumXXH128, bpc: 3, blockSize: 512, used: used}},
		{"v2-one-block", synth{version: 2, mode: ChecksumCRC32, bpc: 4, reseed: true, blockSize: 512, used: []bool{false, true, false}}},
		{"v1-one-block", synth{version: 1, blockSize: 512, used: []bool{true, false}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img, dev := tc.s.build()
			got, h, err := readAll(img, len(dev))
			if err != nil {
				t.Fatal(err)
			}
			if want := masked(dev, tc.s.used, tc.s.blockSize); !bytes.Equal(got, want) {
				t.Fatalf("restored data differs from the device")
			}
			if tc.s.bug64 && h.ChecksumSize != 8 {
				t.Errorf("checksum size %d, want 8 for a 64-bit format 0001 image", h.ChecksumSize)
			}
			// Every damaged data byte is caught (except without checksum).
			if tc.s.mode == ChecksumNone && tc.s.version == 2 {
				return
			}
			// The first byte of the first stored block: format 0001's CRC
			// sees nothing but the first byte of each block.
			dataStart := descSize + (len(tc.s.used)+7)/8 + 4
			if tc.s.version == 1 {
				dataStart = descSizeV1 + len(tc.s.used) + len(bitMagic)
			}
			bad := bytes.Clone(img)
			bad[dataStart] ^= 1
			if _, _, err := readAll(bad, len(dev)); !errors.Is(err, ErrChecksum) {
				t.Fatalf("damaged data: err = %v, want ErrChecksum", err)
			}
		})
	}
}

// TestFormatV1WithPartclone checks the format 0001 reading against
// partclone's own restore of the same synthetic image.
func TestFormatV1WithPartclone(t *testing.T) {
	partclonetest.RequireRoot(t)
	partclonetest.Require(t, "partclone.ext4")
	dir := t.TempDir()
	s := synth{version: 1, blockSize: 1024, used: randomUsed(3000, 9), seed: 4}
	img, dev := s.build()
	path := filepath.Join(dir, "v1.pcl")
	if err := os.WriteFile(path, img, 0o644); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(dir, "want")
	partclonetest.PartcloneRestore(t, "ext4", path, want, int64(len(dev)))
	got := filepath.Join(dir, "got")
	if _, err := restoreTo(t, path, got); err != nil {
		t.Fatal(err)
	}
	partclonetest.SameFile(t, want, got)
}

func TestHeaderErrors(t *testing.T) {
	img, _ := synth{version: 2, mode: ChecksumCRC32, bpc: 4, reseed: true, blockSize: 512, used: randomUsed(50, 2)}.build()
	fix := func(b []byte) { binary.LittleEndian.PutUint32(b[106:], crcRaw(crcSeed, b[:106])) }
	tests := []struct {
		name string
		edit func(b []byte)
		want error
	}{
		{"magic", func(b []byte) { b[0] = 'x' }, ErrNotPartclone},
		{"version", func(b []byte) { copy(b[30:], "0003") }, ErrVersion},
		{"big endian", func(b []byte) { binary.LittleEndian.PutUint16(b[34:], 0xDEC0); fix(b) }, ErrVersion},
		{"block size", func(b []byte) { binary.LittleEndian.PutUint32(b[84:], 0); fix(b) }, ErrCorrupt},
		{"too many blocks", func(b []byte) { binary.LittleEndian.PutUint64(b[60:], 1<<40); fix(b) }, ErrCorrupt},
		{"checksum mode", func(b []byte) { binary.LittleEndian.PutUint16(b[96:], 2); fix(b) }, ErrCorrupt},
		{"checksum size", func(b []byte) { binary.LittleEndian.PutUint16(b[98:], 8); fix(b) }, ErrCorrupt},
		{"zero per checksum", func(b []byte) { binary.LittleEndian.PutUint32(b[100:], 0); fix(b) }, ErrCorrupt},
		{"short", func(b []byte) {}, ErrTruncated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(img)
			tc.edit(b)
			if tc.name == "short" {
				b = b[:60]
			}
			_, err := NewReader(bytes.NewReader(b))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestCompressionMagic checks that unsupported compressions are refused by
// name.
func TestCompressionMagic(t *testing.T) {
	dir := t.TempDir()
	for name, head := range map[string][]byte{"lzop": magicLzop, "lzip": magicLzip} {
		p := filepath.Join(dir, "img."+name)
		os.WriteFile(p, append(bytes.Clone(head), make([]byte, 64)...), 0o644)
		_, _, err := Open(p)
		if !errors.Is(err, ErrCompression) || !bytes.Contains([]byte(err.Error()), []byte(name)) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}
