package fat

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/bits"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// makeImage runs mkfs (with mkfs-specific arguments) on a fresh sparse
// file of sizeKiB and returns its bytes.
func makeImage(t *testing.T, sizeKiB int64, mkfs string, args ...string) []byte {
	t.Helper()
	img := filepath.Join(t.TempDir(), "base.img")
	sparseFile(t, img, sizeKiB<<10)
	run(t, mkfs, append(args, img)...)
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func put16(b []byte, off int, v uint16) { binary.LittleEndian.PutUint16(b[off:], v) }
func put32(b []byte, off int, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }

// bpbOf reads the few BPB fields the mutations need.
type bpbOf struct {
	bps, rsvd, fatSecs, clusters int
}

func readBPB(b []byte) bpbOf {
	bps := int(le16(b[11:]))
	spc := int(b[13])
	rsvd := int(le16(b[14:]))
	fatSecs := int(le16(b[22:]))
	if fatSecs == 0 {
		fatSecs = int(le32(b[36:]))
	}
	tot := int(le16(b[19:]))
	if tot == 0 {
		tot = int(le32(b[32:]))
	}
	root := (int(le16(b[17:]))*32 + bps - 1) / bps
	first := rsvd + int(b[16])*fatSecs + root
	return bpbOf{bps: bps, rsvd: rsvd, fatSecs: fatSecs, clusters: (tot - first) / spc}
}

// setFAT16 and setFAT32 write entry c of the first FAT.
func setFAT16(b []byte, c int, v uint16) {
	p := readBPB(b)
	put16(b, p.rsvd*p.bps+2*c, v)
}

func setFAT32(b []byte, c int, v uint32) {
	p := readBPB(b)
	put32(b, p.rsvd*p.bps+4*c, v)
}

func setFAT12(b []byte, c int, v uint16) {
	p := readBPB(b)
	off := p.rsvd*p.bps + c + c/2
	pair := le16(b[off:])
	if c&1 == 0 {
		pair = pair&0xF000 | v&0xFFF
	} else {
		pair = pair&0x000F | v<<4
	}
	put16(b, off, pair)
}

// exfatGeometry reads what exFAT mutations need from a boot sector.
type exfatGeometry struct {
	bps, cs, fatOff, heapOff, clusters, root int
}

func readExfat(b []byte) exfatGeometry {
	bps := 1 << b[108]
	return exfatGeometry{
		bps:      bps,
		cs:       bps << b[109],
		fatOff:   int(le32(b[80:])) * bps,
		heapOff:  int(le32(b[88:])) * bps,
		clusters: int(le32(b[92:])),
		root:     int(le32(b[96:])),
	}
}

func (g exfatGeometry) cluster(c int) int { return g.heapOff + (c-2)*g.cs }

// fixExfatChecksum rewrites the main boot region checksum after a change,
// so a mutation reaches the check it is aimed at.
func fixExfatChecksum(b []byte) {
	bps := 1 << b[108]
	var sum uint32
	for i, c := range b[:11*bps] {
		if i == 106 || i == 107 || i == 112 {
			continue
		}
		sum = bits.RotateLeft32(sum, -1) + uint32(c)
	}
	for i := 11 * bps; i < 12*bps; i += 4 {
		put32(b, i, sum)
	}
}

// rootEntry returns the offset of the first root directory entry of type
// typ.
func rootEntry(t *testing.T, b []byte, typ byte) int {
	g := readExfat(b)
	off := g.cluster(g.root)
	for i := off; i < off+g.cs; i += 32 {
		if b[i] == typ {
			return i
		}
	}
	t.Fatalf("no root directory entry of type 0x%02X", typ)
	return 0
}

func TestCorruptInputs(t *testing.T) {
	needTools(t, "mkfs.vfat", "mkfs.exfat")
	fat12 := makeImage(t, 4096, "mkfs.vfat", "-F", "12")
	fat16 := makeImage(t, 16384, "mkfs.vfat", "-F", "16", "-s", "4")
	fat32 := makeImage(t, 40960, "mkfs.vfat", "-F", "32", "-s", "1")
	exfat := makeImage(t, 1024, "mkfs.exfat", "-b", "4096", "-c", "4096")

	cases := []struct {
		name   string
		base   []byte
		mutate func(t *testing.T, b []byte) []byte
		want   error
		msg    string // substring of the error message
	}{
		{"bytes-per-sector", fat16, func(t *testing.T, b []byte) []byte { put16(b, 11, 3000); return b },
			ErrCorrupt, "fat: bpb: bytes per sector 3000 is not a power of two between 512 and 4096"},
		{"sectors-per-cluster", fat16, func(t *testing.T, b []byte) []byte { b[13] = 3; return b },
			ErrCorrupt, "sectors per cluster 3 is not a power of two"},
		{"no-reserved-sectors", fat32, func(t *testing.T, b []byte) []byte { put16(b, 14, 0); return b },
			ErrCorrupt, "reserved sector count is 0"},
		{"no-fats", fat16, func(t *testing.T, b []byte) []byte { b[16] = 0; return b },
			ErrCorrupt, "number of FATs is 0"},
		{"media", fat12, func(t *testing.T, b []byte) []byte { b[21] = 0x12; return b },
			ErrCorrupt, "media descriptor 0x12"},
		{"no-total-sectors", fat16, func(t *testing.T, b []byte) []byte { put16(b, 19, 0); put32(b, 32, 0); return b },
			ErrCorrupt, "total sector count is 0"},
		{"fat16-no-root-entries", fat16, func(t *testing.T, b []byte) []byte { put16(b, 17, 0); return b },
			ErrCorrupt, "root entry count is 0"},
		{"fat32-root-entries", fat32, func(t *testing.T, b []byte) []byte { put16(b, 17, 512); return b },
			ErrCorrupt, "root entry count 512 must be 0"},
		{"fat32-root-cluster-past-end", fat32, func(t *testing.T, b []byte) []byte { put32(b, 44, 0x00FFFFFF); return b },
			ErrCorrupt, "root directory cluster 16777215 is outside clusters 2.."},
		{"fat32-active-fat-missing", fat32, func(t *testing.T, b []byte) []byte { put16(b, 40, 0x85); return b },
			ErrCorrupt, "makes FAT 5 active, but there are only 2 FATs"},
		{"fat-too-small-for-cluster-count", fat16, func(t *testing.T, b []byte) []byte { put16(b, 22, 2); return b },
			ErrCorrupt, "FAT of 2 sectors holds 512 entries, fewer than the"},
		{"fat16-layout-with-fat32-cluster-count", fat16, func(t *testing.T, b []byte) []byte {
			put16(b, 19, 0)
			put32(b, 32, 70000*4+200)
			return b
		}, ErrCorrupt, "clusters need FAT32, but the FAT size is in BPB_FATSz16"},
		{"data-region-past-end", fat12, func(t *testing.T, b []byte) []byte { put16(b, 22, 0x4000); return b },
			ErrCorrupt, "data region would start at sector"},
		{"total-sectors-past-device", fat16, func(t *testing.T, b []byte) []byte { put16(b, 19, 0); put32(b, 32, 32768+40); return b },
			ErrTruncated, "filesystem is 16797696 bytes (32808 sectors of 512) but the device has only 16777216 bytes"},
		{"truncated-image", fat32, func(t *testing.T, b []byte) []byte { return b[:len(b)/2] },
			ErrTruncated, "but the device has only 20971520 bytes"},
		{"truncated-inside-fat", fat32, func(t *testing.T, b []byte) []byte {
			p := readBPB(b)
			return b[:(p.rsvd+p.fatSecs/2)*p.bps] // cut in the first FAT; lie about the size below
		}, ErrTruncated, "device ends after"},
		{"fat12-chain-past-end", fat12, func(t *testing.T, b []byte) []byte { setFAT12(b, 7, 0xFF0); return b },
			ErrCorrupt, "FAT 0 entry of cluster 7 is 0xFF0"},
		{"fat16-chain-past-end", fat16, func(t *testing.T, b []byte) []byte {
			setFAT16(b, 100, uint16(readBPB(b).clusters+2))
			return b
		}, ErrCorrupt, "entry of cluster 100 is 0x"},
		{"fat16-entry-one", fat16, func(t *testing.T, b []byte) []byte { setFAT16(b, 5, 1); return b },
			ErrCorrupt, "entry of cluster 5 is 0x1,"},
		{"fat32-chain-past-end", fat32, func(t *testing.T, b []byte) []byte {
			setFAT32(b, readBPB(b).clusters+1, 0x0FFFFFF0)
			return b
		}, ErrCorrupt, "is 0xFFFFFF0, which is not free, bad, end of chain"},
		{"not-fat-zeros", make([]byte, 1<<20), nil, ErrNotFound, "no boot signature"},
		{"not-fat-tiny", make([]byte, 100), nil, ErrNotFound, "smaller than a boot sector"},
		{"not-fat-mbr", nil, func(t *testing.T, _ []byte) []byte {
			b := make([]byte, 1<<20)
			b[0], b[1], b[2] = 0xEB, 0x63, 0x90 // GRUB's boot.img jump
			b[510], b[511] = 0x55, 0xAA
			return b
		}, ErrNotFound, "bytes per sector 0"},
		{"exfat-must-be-zero", exfat, func(t *testing.T, b []byte) []byte { b[20] = 1; return b },
			ErrCorrupt, "byte 20 of the MustBeZero field"},
		{"exfat-sector-shift", exfat, func(t *testing.T, b []byte) []byte { b[108] = 13; return b },
			ErrCorrupt, "bytes per sector shift 13 is outside 9..12"},
		{"exfat-cluster-shift", exfat, func(t *testing.T, b []byte) []byte { b[109] = 17; return b },
			ErrCorrupt, "sectors per cluster shift 17"},
		{"exfat-three-fats", exfat, func(t *testing.T, b []byte) []byte { b[110] = 3; return b },
			ErrCorrupt, "number of FATs 3"},
		{"exfat-checksum", exfat, func(t *testing.T, b []byte) []byte { b[300] ^= 0xFF; return b },
			ErrCorrupt, "boot region: checksum"},
		{"exfat-cluster-count-past-volume", exfat, func(t *testing.T, b []byte) []byte {
			put32(b, 92, le32(b[92:])+100)
			fixExfatChecksum(b)
			return b
		}, ErrCorrupt, "past the volume length"},
		{"exfat-fat-too-small", exfat, func(t *testing.T, b []byte) []byte {
			put32(b, 84, 1)
			fixExfatChecksum(b)
			return b
		}, ErrCorrupt, "FAT of 1 sectors is smaller than"},
		{"exfat-volume-past-device", exfat, func(t *testing.T, b []byte) []byte {
			binary.LittleEndian.PutUint64(b[72:], 4096)
			fixExfatChecksum(b)
			return b
		}, ErrTruncated, "volume is 2097152 bytes"},
		{"exfat-second-fat-missing", exfat, func(t *testing.T, b []byte) []byte {
			put16(b, 106, 1) // VolumeFlags are outside the checksum
			return b
		}, ErrCorrupt, "selects the second FAT, but there is only one"},
		{"exfat-root-cluster", exfat, func(t *testing.T, b []byte) []byte {
			put32(b, 96, 1)
			fixExfatChecksum(b)
			return b
		}, ErrCorrupt, "root directory cluster 1 is outside"},
		{"exfat-root-chain-loop", exfat, func(t *testing.T, b []byte) []byte {
			g := readExfat(b)
			put32(b, g.fatOff+4*g.root, uint32(g.root))
			return b
		}, ErrCorrupt, "longer than"},
		{"exfat-root-chain-past-end", exfat, func(t *testing.T, b []byte) []byte {
			g := readExfat(b)
			put32(b, g.fatOff+4*g.root, uint32(g.clusters+2))
			return b
		}, ErrCorrupt, "not end of chain or a cluster number"},
		{"exfat-no-bitmap", exfat, func(t *testing.T, b []byte) []byte {
			b[rootEntry(t, b, 0x81)] = 0x01 // now a deleted entry
			return b
		}, ErrCorrupt, "no allocation bitmap entry"},
		{"exfat-bitmap-too-short", exfat, func(t *testing.T, b []byte) []byte {
			binary.LittleEndian.PutUint64(b[rootEntry(t, b, 0x81)+24:], 3)
			return b
		}, ErrCorrupt, "3 bytes cannot hold"},
		{"exfat-bitmap-outside-heap", exfat, func(t *testing.T, b []byte) []byte {
			e := rootEntry(t, b, 0x81)
			put32(b, e+20, uint32(readExfat(b).clusters+1))
			binary.LittleEndian.PutUint64(b[e+24:], 8192)
			return b
		}, ErrCorrupt, "allocation bitmap 0: 8192 bytes from cluster"},
		{"exfat-bitmap-length-near-2^64", exfat, func(t *testing.T, b []byte) []byte {
			binary.LittleEndian.PutUint64(b[rootEntry(t, b, 0x81)+24:], ^uint64(0))
			return b
		}, ErrCorrupt, "18446744073709551615 bytes from cluster 2 do not fit"},
		{"exfat-upcase-outside-heap", exfat, func(t *testing.T, b []byte) []byte {
			put32(b, rootEntry(t, b, 0x82)+20, 0xFFFFFF00)
			return b
		}, ErrCorrupt, "up-case table"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(tc.base)
			if tc.mutate != nil {
				b = tc.mutate(t, b)
			}
			size := int64(len(b))
			if tc.name == "truncated-inside-fat" {
				// The caller claims the full size but reads stop early,
				// as with a short image behind a size taken elsewhere.
				size = int64(len(tc.base))
			}
			rd := bytes.NewReader(b)
			_, perr := Probe(rd, size)
			uerr := UsedExtents(context.Background(), rd, size, func(off, length int64) error { return nil })
			for _, err := range []error{perr, uerr} {
				if !errors.Is(err, tc.want) {
					t.Fatalf("error %v, want one matching %v", err, tc.want)
				}
				if !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("error %q does not contain %q", err, tc.msg)
				}
				if !strings.HasPrefix(err.Error(), "fat: ") {
					t.Fatalf("error %q lacks the package prefix", err)
				}
			}
			t.Logf("%v", perr)
		})
	}
}

// TestNotOtherFilesystems checks that real filesystems of other kinds are
// reported as not found, not as corrupt FAT.
func TestNotOtherFilesystems(t *testing.T) {
	cases := []struct {
		name string
		tool string
		args []string
	}{
		{"ext4", "mkfs.ext4", []string{"-q", "-F"}},
		{"ntfs", "mkntfs", []string{"-q", "-F", "-f"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			needTools(t, tc.tool)
			b := makeImage(t, 16384, tc.tool, tc.args...)
			_, err := Probe(bytes.NewReader(b), int64(len(b)))
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("Probe: %v, want ErrNotFound", err)
			}
			t.Logf("%v", err)
		})
	}
}

// failingReader fails every read that reaches past failAt.
type failingReader struct {
	data   []byte
	failAt int64
}

var errDevice = errors.New("input/output error")

func (f *failingReader) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.failAt {
		return 0, errDevice
	}
	return bytes.NewReader(f.data).ReadAt(p, off)
}

func TestReadErrorsAndCancel(t *testing.T) {
	needTools(t, "mkfs.vfat")
	b := makeImage(t, 40960, "mkfs.vfat", "-F", "32", "-s", "1")
	p := readBPB(b)
	size := int64(len(b))

	t.Run("device-error-in-fat", func(t *testing.T) {
		r := &failingReader{data: b, failAt: int64(p.rsvd*p.bps + 100)}
		err := UsedExtents(context.Background(), r, size, func(off, length int64) error { return nil })
		if !errors.Is(err, errDevice) || !strings.Contains(err.Error(), "fat: read FAT 0 at offset") {
			t.Fatalf("error %v, want a wrapped device error naming the FAT", err)
		}
		if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNotFound) {
			t.Fatalf("a device error %v must not look like corruption", err)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := UsedExtents(ctx, bytes.NewReader(b), size, func(off, length int64) error { return nil })
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v, want context.Canceled", err)
		}
	})
	t.Run("emit-error-stops", func(t *testing.T) {
		errStop := errors.New("stop")
		calls := 0
		err := UsedExtents(context.Background(), bytes.NewReader(b), size, func(off, length int64) error {
			calls++
			return errStop
		})
		if !errors.Is(err, errStop) || calls != 1 {
			t.Fatalf("error %v after %d calls, want errStop after 1", err, calls)
		}
	})
}

// TestCP850 compares the label code page table with iconv.
func TestCP850(t *testing.T) {
	needTools(t, "iconv")
	in := make([]byte, 128)
	for i := range in {
		in[i] = byte(0x80 + i)
	}
	f := filepath.Join(t.TempDir(), "cp850")
	if err := os.WriteFile(f, in, 0o644); err != nil {
		t.Fatal(err)
	}
	out := run(t, "iconv", "-f", "CP850", "-t", "UTF-8", f)
	if got := decodeLabel(in); got != strings.TrimRight(out, " ") {
		for i, r := range []rune(out) {
			if i < len(cp850Runes) && cp850Runes[i] != r {
				t.Errorf("byte 0x%02X: table has %q, iconv says %q", 0x80+i, cp850Runes[i], r)
			}
		}
		t.Fatalf("decodeLabel differs from iconv")
	}
}

// TestNotesAndActiveFAT checks the notes Probe gives for suspicious but
// usable volumes, and that FAT32 with mirroring disabled is read from the
// FAT that BPB_ExtFlags names.
func TestNotesAndActiveFAT(t *testing.T) {
	needTools(t, "mkfs.vfat")
	fat16 := makeImage(t, 16384, "mkfs.vfat", "-F", "16", "-s", "4")
	fat32 := makeImage(t, 40960, "mkfs.vfat", "-F", "32", "-s", "1")
	cases := []struct {
		name     string
		base     []byte
		mutate   func(b []byte)
		note     string
		usedDiff int64 // UsedBlocks change against the unmutated image
	}{
		{"fat16-dirty-byte", fat16, func(b []byte) { b[37] |= 1 }, "dirty flag set", 0},
		{"fat16-unclean-shutdown-bit", fat16, func(b []byte) { setFAT16(b, 1, 0x7FFF) }, "clean-shutdown bit is clear", 0},
		{"fat32-media-mismatch", fat32, func(b []byte) { b[21] = 0xF0 }, "differs from the BPB media descriptor 0xF0", 0},
		{"fat32-fsinfo-free-count", fat32, func(b []byte) {
			p := readBPB(b)
			put32(b, int(le16(b[48:]))*p.bps+488, 12345)
		}, "FSInfo free cluster count 12345 differs from the FAT's", 0},
		{"fat32-second-fat-active", fat32, func(b []byte) {
			p := readBPB(b)
			put16(b, 40, 0x81) // mirroring off, FAT 1 active
			// Cluster 100 is free in FAT 0 but allocated in FAT 1.
			put32(b, (p.rsvd+p.fatSecs)*p.bps+4*100, 0x0FFFFFFF)
		}, "FAT mirroring disabled; FAT 1 is active", 1},
		{"fat32-first-fat-active-ignores-second", fat32, func(b []byte) {
			p := readBPB(b)
			put32(b, (p.rsvd+p.fatSecs)*p.bps+4*100, 0x0FFFFFFF)
		}, "", 0},
		{"fat16-bad-cluster", fat16, func(b []byte) { setFAT16(b, 50, 0xFFF7) }, "1 clusters marked bad", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(tc.base)
			base, err := Probe(bytes.NewReader(b), int64(len(b)))
			if err != nil {
				t.Fatal(err)
			}
			tc.mutate(b)
			info, err := Probe(bytes.NewReader(b), int64(len(b)))
			if err != nil {
				t.Fatal(err)
			}
			notes := strings.Join(info.Notes, "\n")
			if tc.note != "" && !strings.Contains(notes, tc.note) {
				t.Fatalf("notes %q lack %q", info.Notes, tc.note)
			}
			if tc.note == "" && notes != "" {
				t.Fatalf("unexpected notes %q", info.Notes)
			}
			if got := int64(info.UsedBlocks) - int64(base.UsedBlocks); got != tc.usedDiff {
				t.Fatalf("used clusters changed by %d, want %d", got, tc.usedDiff)
			}
			var ext []extent
			if err := UsedExtents(context.Background(), bytes.NewReader(b), int64(len(b)), func(off, length int64) error {
				ext = append(ext, extent{off, length})
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if err := checkExtents(ext, int64(len(b))); err != nil {
				t.Fatal(err)
			}
			t.Logf("notes: %q", info.Notes)
		})
	}
}
