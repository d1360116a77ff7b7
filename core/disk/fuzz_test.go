package disk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// fuzzSeeds returns small whole-disk images for FuzzRead: tables made by
// sfdisk on 64 KiB images (and a 256 KiB one with 4096-byte sectors when
// root can attach a loop device), bare filesystem heads, and a few
// hand-made sectors. Tools that are missing only cost their seeds.
func fuzzSeeds(f *testing.F) [][]byte {
	seeds := [][]byte{
		nil,
		make([]byte, 512),
		append(make([]byte, 510), 0x55, 0xAA),
	}
	have := func(tool string) bool { _, err := exec.LookPath(tool); return err == nil }
	dir := f.TempDir()
	if have("sfdisk") {
		for _, tc := range []struct {
			size   int64
			script string
		}{
			{8 << 10, "label: gpt\ntable-length: 4\nfirst-lba: 3\n{img}2 : start=3,size=4,type=L,name=\"a\"\n{img}1 : start=8,size=2,type=U\n{img}4 : start=10,type=S,name=\"swap\"\n"},
			{16 << 10, "label: dos\nstart=1,size=4,type=83,bootable\nstart=6,type=5\nstart=8,size=4,type=83\nstart=14,size=2,type=82\nstart=18,type=7\n"},
			{16 << 10, "label: dos\nstart=2,size=20,type=f\nstart=24,type=ee\n{img}5 : start=4,size=10,type=83\n"},
		} {
			b := mustRead(f, sfdiskImage(f, f.TempDir(), tc.size, tc.script))
			seeds = append(seeds, b)
			if bytes.Equal(b[512:520], []byte(gptSignature)) {
				damaged := bytes.Clone(b)
				damaged[512+24] ^= 1 // primary my-LBA: read from the backup
				seeds = append(seeds, damaged)
			}
		}
		if os.Geteuid() == 0 && have("losetup") {
			path := sparseFile(f, dir, "4k.img", 64<<10)
			if out, err := exec.Command("losetup", "--find", "--show", "--sector-size", "4096", path).Output(); err == nil {
				dev := strings.TrimSpace(string(out))
				sfdisk(f, dev, "label: gpt\ntable-length: 4\nfirst-lba: 3\nstart=3,size=4,type=L\nstart=8,type=U\n")
				_ = exec.Command("losetup", "--detach", dev).Run()
				seeds = append(seeds, mustRead(f, path))
			}
		}
	}
	for _, fs := range []struct {
		tool string
		args []string
		size int64
	}{
		{"mkfs.vfat", []string{"-F", "12"}, 1 << 20},
		{"mkntfs", []string{"-F", "-f", "-Q"}, 2 << 20},
		{"mkfs.exfat", nil, 2 << 20},
	} {
		if !have(fs.tool) {
			continue
		}
		path := sparseFile(f, dir, "fs.img", fs.size)
		if err := exec.Command(fs.tool, append(fs.args, path)...).Run(); err == nil {
			seeds = append(seeds, mustRead(f, path)[:4096])
		}
	}
	return seeds
}

// FuzzRead feeds arbitrary bytes as a whole disk. Read must not panic or
// allocate without bound; every error must be a table error (the reader
// never fails), and every layout must keep the invariants checkLayout
// tests. With fixCRC set, the GPT CRC32s at the usual places are
// recomputed first, so that mutations get past the checksums into the
// header and entry checks.
func FuzzRead(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, data []byte, fixCRC bool) {
		if fixCRC {
			for _, ss := range []int{512, 4096} {
				fixGPTCRCs(data, ss)
			}
		}
		r := bytes.NewReader(data)
		size := int64(len(data))
		check := func(how string, l *Layout, err error) {
			if err != nil {
				if !errors.Is(err, ErrCorrupt) || !strings.HasPrefix(err.Error(), "disk: ") {
					t.Fatalf("%s: error not a table error: %v", how, err)
				}
				return
			}
			if err := checkLayout(l); err != nil {
				t.Fatalf("%s: %v\nlayout %+v", how, err, l)
			}
		}
		l, err := ReadAuto(r, size)
		check("ReadAuto", l, err)
		for _, ss := range []int{512, 4096} {
			l, err := Read(r, size, ss)
			check("Read", l, err)
		}
	})
}

// fixGPTCRCs recomputes the entry-array and header CRC32s of GPT headers
// at LBA 1 and in the last sector, where the fields allow it.
func fixGPTCRCs(b []byte, ss int) {
	for _, off := range []int{ss, len(b)/ss*ss - ss} {
		if off < ss || off+ss > len(b) || string(b[off:off+8]) != gptSignature {
			continue
		}
		h := b[off : off+ss]
		arr := le64(h[72:])
		n := uint64(le32(h[80:])) * uint64(le32(h[84:]))
		if arr < uint64(len(b)/ss) && n <= uint64(len(b))-arr*uint64(ss) {
			a := arr * uint64(ss)
			binary.LittleEndian.PutUint32(h[88:], crc32.ChecksumIEEE(b[a:a+n]))
		}
		if hs := int(le32(h[12:])); hs >= gptMinHeaderSize && hs <= ss {
			clear(h[16:20])
			binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:hs]))
		}
	}
}
