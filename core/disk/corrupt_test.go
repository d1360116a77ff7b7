package disk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"testing"
)

// These tests damage images made by sfdisk in the ways real disks and
// hostile inputs are damaged, and check that Read either recovers (with a
// warning) or fails with an error that names the place.

const gptScript = `label: gpt
{img}1 : start=2048,size=2048,type=U,name="esp"
{img}2 : start=4096,size=2048,type=L,name="root"
{img}3 : start=6144,type=S,name="swap"
`

const mbrScript = `label: dos
start=2048,size=1024,type=83,bootable
start=3072,type=5
start=4096,size=512,type=83
start=5120,size=512,type=82
start=6144,type=7
`

// gptHeaderOffsets returns the byte offsets of the primary and backup
// headers of a 512-byte-sector GPT image.
func gptHeaderOffsets(b []byte) []int { return []int{512, len(b) - 512} }

// refreshGPT recomputes the entry-array and header CRC32s of the header
// at off, as a tool that writes a (possibly nonsensical) table would.
func refreshGPT(b []byte, off int) {
	h := b[off:]
	arr := int(binary.LittleEndian.Uint64(h[72:])) * 512
	n := int(binary.LittleEndian.Uint32(h[80:]) * binary.LittleEndian.Uint32(h[84:]))
	if arr+n <= len(b) {
		binary.LittleEndian.PutUint32(h[88:], crc32.ChecksumIEEE(b[arr:arr+n]))
	}
	hs := binary.LittleEndian.Uint32(h[12:])
	clear(h[16:20])
	binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:hs]))
}

// patchGPTEntry edits entry i (0-based) in both copies and fixes CRCs.
func patchGPTEntry(b []byte, i int, edit func(e []byte)) {
	for _, off := range gptHeaderOffsets(b) {
		arr := int(binary.LittleEndian.Uint64(b[off+72:])) * 512
		edit(b[arr+128*i : arr+128*(i+1)])
		refreshGPT(b, off)
	}
}

// patchGPTHeader edits both headers and fixes CRCs.
func patchGPTHeader(b []byte, edit func(h []byte)) {
	for _, off := range gptHeaderOffsets(b) {
		edit(b[off : off+512])
		refreshGPT(b, off)
	}
}

func put64(b []byte, v uint64) { binary.LittleEndian.PutUint64(b, v) }

func TestGPTBackupRecovery(t *testing.T) {
	needTools(t, "sfdisk")
	path := sfdiskImage(t, t.TempDir(), 4<<20, gptScript)
	pristine := mustRead(t, path)
	want := readFile(t, path)
	last := len(pristine)/512 - 1

	tests := []struct {
		name     string
		damage   func(b []byte)
		useBack  bool   // read must come from the backup
		warnings string // substring of the one warning
	}{
		{"primary header byte flipped", func(b []byte) { b[512+40] ^= 0x01 }, true, "primary gpt header at LBA 1: header crc32"},
		{"primary signature wiped", func(b []byte) { clear(b[512:520]) }, true, `signature is "\x00\x00`},
		{"primary entry array byte flipped", func(b []byte) { b[1024+128+60] ^= 0x80 }, true, "primary gpt entry array at LBA 2: crc32"},
		{"primary header valid but points past the disk", func(b []byte) {
			put64(b[512+32:], 1<<40)
			refreshGPT(b, 512)
		}, true, "alternate header LBA 1099511627776 is past the end"},
		{"backup header byte flipped", func(b []byte) { b[len(b)-512+50] ^= 0x01 }, false,
			fmt.Sprintf("backup GPT is unusable (backup gpt header at LBA %d: header crc32", last)},
		{"backup entry array zeroed", func(b []byte) { clear(b[len(b)-512-16384 : len(b)-512]) }, false, "backup gpt entry array at LBA"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(pristine)
			tc.damage(b)
			l, err := Read(bytes.NewReader(b), int64(len(b)), 512)
			if err != nil {
				t.Fatal(err)
			}
			if err := checkLayout(l); err != nil {
				t.Fatal(err)
			}
			if !equalPartitions(l.Partitions, want.Partitions) || l.DiskGUID != want.DiskGUID {
				t.Errorf("partitions %+v, want %+v", l.Partitions, want.Partitions)
			}
			if len(l.Warnings) != 1 || !strings.Contains(l.Warnings[0], tc.warnings) {
				t.Errorf("warnings %q, want one containing %q", l.Warnings, tc.warnings)
			}
			if got := strings.Contains(l.Warnings[0], "read the partition table from the backup GPT"); got != tc.useBack {
				t.Errorf("used backup=%v, want %v", got, tc.useBack)
			}
			// The damaged copy's sectors are still areas (copied raw).
			if len(l.Areas) != 5 {
				t.Errorf("areas %+v", l.Areas)
			}
		})
	}
}

func TestCorruptTables(t *testing.T) {
	needTools(t, "sfdisk")
	dir := t.TempDir()
	gptImg := mustRead(t, sfdiskImage(t, dir, 4<<20, gptScript))
	mbrImg := mustRead(t, sfdiskImage(t, t.TempDir(), 4<<20, mbrScript))
	size := int64(len(gptImg))
	ebr := func(b []byte, lba int) []byte { return b[lba*512 : lba*512+512] }
	// EBRs sfdisk wrote for mbrScript: at the start of the extended
	// partition (3072) and before logicals 6 and 7.
	ebrLBAs := []int{3072, 5119, 6143}
	for _, lba := range ebrLBAs {
		if e := ebr(mbrImg, lba); e[510] != 0x55 || e[511] != 0xAA {
			t.Fatalf("no EBR at LBA %d in the sfdisk image; sfdisk changed its layout", lba)
		}
	}

	tests := []struct {
		name  string
		img   []byte
		trunc int64 // if >0, the disk size (image cut short)
		edit  func(b []byte)
		kind  error
		msg   string // exact message, or substring if it starts with "~"
	}{
		{"gpt truncated", gptImg, 3 << 20, nil, ErrOutside,
			"~disk: no valid gpt: primary gpt header at LBA 1: alternate header LBA 8191 is past the end of the disk (6144 sectors of 512 bytes); is the image truncated?; backup gpt header at LBA 6143: signature"},
		{"gpt both headers corrupt", gptImg, 0, func(b []byte) { b[512+40] ^= 1; b[len(b)-512+40] ^= 1 }, ErrCorrupt,
			"~primary gpt header at LBA 1: header crc32"},
		{"gpt entry past the end", gptImg, 0, func(b []byte) {
			patchGPTEntry(b, 2, func(e []byte) { put64(e[40:], 9000) })
			patchGPTHeader(b, func(h []byte) { put64(h[48:], 9000) })
		}, ErrOutside, "~primary gpt header at LBA 1: last usable LBA 9000 is past the end of the disk"},
		{"gpt entry past the end, header consistent", gptImg, 0, func(b []byte) {
			patchGPTEntry(b, 2, func(e []byte) { put64(e[40:], 8200) })
		}, ErrOutside, fmt.Sprintf("disk: gpt entry 3: ends at byte %d, past the end of the disk (%d bytes)", 8201*512, size)},
		{"gpt entry absurd end", gptImg, 0, func(b []byte) {
			patchGPTEntry(b, 0, func(e []byte) { put64(e[40:], 1<<63) })
		}, ErrOutside, fmt.Sprintf("disk: gpt entry 1: ends at byte %d*512, past the end of the disk (%d bytes)", uint64(1<<63)+1, size)},
		{"gpt entry outside usable range", gptImg, 0, func(b []byte) {
			patchGPTEntry(b, 0, func(e []byte) { put64(e[32:], 20) })
		}, ErrCorrupt, "disk: gpt entry 1: LBA 20-4095 is outside the usable range 34-8158 of the gpt header"},
		{"gpt entry first after last", gptImg, 0, func(b []byte) {
			patchGPTEntry(b, 1, func(e []byte) { put64(e[32:], 7000) })
		}, ErrCorrupt, "disk: gpt entry 2: first LBA 7000 is after last LBA 6143"},
		{"gpt entries overlap", gptImg, 0, func(b []byte) {
			patchGPTEntry(b, 1, func(e []byte) { put64(e[32:], 4000) })
		}, ErrOverlap, fmt.Sprintf("disk: gpt entry 1 and gpt entry 2 overlap: gpt entry 1 ends at byte %d, gpt entry 2 starts at byte %d", 4096*512, 4000*512)},
		{"gpt huge entry count", gptImg, 0, func(b []byte) {
			patchGPTHeader(b, func(h []byte) { binary.LittleEndian.PutUint32(h[80:], 0xFFFFFFFF) })
		}, ErrCorrupt, "~4294967295 entries of 128 bytes make an entry array over the 8388608-byte limit"},
		{"gpt entry size not a power of two", gptImg, 0, func(b []byte) {
			patchGPTHeader(b, func(h []byte) { binary.LittleEndian.PutUint32(h[84:], 200) })
		}, ErrCorrupt, "~partition entry size 200, want 128 times a power of two"},
		{"gpt entry arrays over the usable range", gptImg, 0, func(b []byte) {
			put64(b[512+40:], 20) // primary: first usable LBA inside its array
			refreshGPT(b, 512)
			put64(b[len(b)-512+48:], 8170) // backup: last usable LBA inside its array
			refreshGPT(b, len(b)-512)
		}, ErrOverlap, "~entry array LBA 2-33 overlaps the usable range 20-8158; backup gpt header at LBA 8191: entry array LBA 8159-8190 overlaps the usable range 34-8170"},

		{"mbr truncated", mbrImg, 3 << 20, nil, ErrOutside,
			fmt.Sprintf("disk: mbr partition 2: ends at byte %d, past the end of the disk (%d bytes)", 8192*512, 3<<20)},
		{"mbr primaries overlap", mbrImg, 0, func(b []byte) {
			binary.LittleEndian.PutUint32(b[446+16+8:], 3000) // extended starts inside partition 1
		}, ErrOverlap, fmt.Sprintf("disk: mbr partition 1 and mbr partition 2 overlap: mbr partition 1 ends at byte %d, mbr partition 2 starts at byte %d", 3072*512, 3000*512)},
		{"mbr partition on sector 0", mbrImg, 0, func(b []byte) {
			binary.LittleEndian.PutUint32(b[446+8:], 0)
		}, ErrOverlap, "disk: mbr partition 1: starts at LBA 0, on the MBR itself"},
		{"ebr loop", mbrImg, 0, func(b []byte) {
			// The last EBR links back to the second one.
			e := ebr(b, ebrLBAs[2])
			copy(e[446+16:446+32], ebr(b, ebrLBAs[0])[446+16:446+32])
		}, ErrEBRChain, "disk: extended partition 2: ebr at LBA 5119: the chain comes back to this ebr (a loop)"},
		{"ebr link outside the extended partition", mbrImg, 0, func(b []byte) {
			binary.LittleEndian.PutUint32(ebr(b, ebrLBAs[0])[446+16+8:], 6000)
		}, ErrEBRChain, "disk: extended partition 2: ebr at LBA 3072: slot 2: next ebr at LBA 9072 is outside extended partition 2 (LBA 3072-8191)"},
		{"ebr signature missing", mbrImg, 0, func(b []byte) { ebr(b, ebrLBAs[1])[511] = 0 }, ErrEBRChain,
			"disk: extended partition 2: ebr at LBA 5119: no 0x55AA signature at byte 510"},
		{"logical outside its extended partition", mbrImg, 0, func(b []byte) {
			binary.LittleEndian.PutUint32(b[446+16+12:], 4000) // extended now ends at LBA 7072
		}, ErrCorrupt, fmt.Sprintf("disk: mbr partition 7 (logical, extended partition 2: ebr at LBA 6143: slot 1): bytes %d-%d are outside extended partition 2 (bytes %d-%d)",
			6144*512, 8192*512, 3072*512, 7072*512)},
		{"logicals overlap", mbrImg, 0, func(b []byte) {
			binary.LittleEndian.PutUint32(ebr(b, ebrLBAs[0])[446+12:], 1500) // logical 5 grows into 6
		}, ErrOverlap, fmt.Sprintf("~mbr partition 5 ends at byte %d, mbr partition 6 starts at byte %d", 5596*512, 5120*512)},
		{"ebr inside a logical", mbrImg, 0, func(b []byte) {
			binary.LittleEndian.PutUint32(ebr(b, ebrLBAs[0])[446+12:], 1024) // logical 5 covers the next EBR only
		}, ErrOverlap, fmt.Sprintf("disk: EBR at LBA 5119 (extended partition 2) at byte %d lies inside mbr partition 5 (bytes %d-%d)", 5119*512, 4096*512, 5120*512)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(tc.img)
			if tc.edit != nil {
				tc.edit(b)
			}
			n := int64(len(b))
			if tc.trunc > 0 {
				n = tc.trunc
				b = b[:n]
			}
			l, err := ReadAuto(bytes.NewReader(b), n)
			if err == nil {
				t.Fatalf("no error; layout %+v", l)
			}
			if !errors.Is(err, tc.kind) || !errors.Is(err, ErrCorrupt) {
				t.Errorf("error %q does not match %v and ErrCorrupt", err, tc.kind)
			}
			if sub, ok := strings.CutPrefix(tc.msg, "~"); ok {
				if !strings.Contains(err.Error(), sub) {
					t.Errorf("error\n %s\ndoes not contain\n %s", err, sub)
				}
			} else if err.Error() != tc.msg {
				t.Errorf("error\n %s\nwant\n %s", err, tc.msg)
			}
		})
	}
}

// TestEBRChainLimit builds chains of MaxLogical and MaxLogical+1 logical
// partitions (sfdisk refuses to make more than 60) inside the extended
// partition of an sfdisk image, each EBR written like sfdisk writes them.
func TestEBRChainLimit(t *testing.T) {
	needTools(t, "sfdisk")
	img := mustRead(t, sfdiskImage(t, t.TempDir(), 1<<20, "label: dos\nstart=2,type=5\n"))
	for _, n := range []int{MaxLogical, MaxLogical + 1} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			b := bytes.Clone(img)
			const xStart = 2
			for k := 0; k < n; k++ {
				e := b[(xStart+2*k)*512:][:512]
				clear(e)
				e[446+4] = 0x83
				binary.LittleEndian.PutUint32(e[446+8:], 1)
				binary.LittleEndian.PutUint32(e[446+12:], 1)
				if k < n-1 {
					e[446+16+4] = 0x05
					binary.LittleEndian.PutUint32(e[446+16+8:], uint32(2*(k+1)))
					binary.LittleEndian.PutUint32(e[446+16+12:], 2)
				}
				e[510], e[511] = 0x55, 0xAA
			}
			l, err := Read(bytes.NewReader(b), int64(len(b)), 512)
			if n > MaxLogical {
				if !errors.Is(err, ErrEBRChain) || !strings.Contains(err.Error(), fmt.Sprintf("chain longer than %d ebrs", MaxLogical)) {
					t.Errorf("error %v, want the chain limit", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := checkLayout(l); err != nil {
				t.Fatal(err)
			}
			if len(l.Partitions) != n || l.Partitions[n-1].Number != 4+n || len(l.Areas) != 1+n {
				t.Errorf("%d partitions (last %+v), %d areas", len(l.Partitions), l.Partitions[len(l.Partitions)-1], len(l.Areas))
			}
		})
	}
}

// TestNotAnMBR: a sector 0 that ends in 0x55AA but whose boot flags are
// neither 0x00 nor 0x80 is not a partition table.
func TestNotAnMBR(t *testing.T) {
	b := make([]byte, 1<<20)
	copy(b[446:], bytes.Repeat([]byte("not a partition table! "), 3))
	b[510], b[511] = 0x55, 0xAA
	l, err := Read(bytes.NewReader(b), int64(len(b)), 512)
	if err != nil {
		t.Fatal(err)
	}
	if l.Scheme != SchemeNone || len(l.Warnings) != 1 || !strings.Contains(l.Warnings[0], "slot 1 has boot flag 0x6e") {
		t.Errorf("got %+v", l)
	}
}

// TestGPTCopiesDisagree: a primary GPT whose last partition was grown over
// the backup's entry array (the backup left stale) is read from the
// primary; the overlapped backup sectors are partition data, not table.
func TestGPTCopiesDisagree(t *testing.T) {
	needTools(t, "sfdisk")
	b := mustRead(t, sfdiskImage(t, t.TempDir(), 4<<20, gptScript))
	last := uint64(len(b)/512 - 1)
	put64(b[512+48:], last-1) // primary last usable LBA: up to the backup header
	arr := int(binary.LittleEndian.Uint64(b[512+72:])) * 512
	put64(b[arr+2*128+40:], last-1) // entry 3 ends there too
	refreshGPT(b, 512)

	l, err := Read(bytes.NewReader(b), int64(len(b)), 512)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkLayout(l); err != nil {
		t.Fatal(err)
	}
	if p := l.Partitions[2]; p.Number != 3 || p.End() != int64(last)*512 {
		t.Errorf("partition 3: %+v, want it to end at the backup header", p)
	}
	w := strings.Join(l.Warnings, "\n")
	if len(l.Warnings) != 2 || !strings.Contains(w, "primary and backup GPT differ; using the primary") ||
		!strings.Contains(w, "backup GPT entries (bytes 4177408-4193792) lies inside gpt entry 3") {
		t.Errorf("warnings %q", l.Warnings)
	}
	for _, a := range l.Areas {
		if a.What == "backup GPT entries" {
			t.Errorf("backup entries still listed as an area: %+v", l.Areas)
		}
	}
}
