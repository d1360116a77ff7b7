package fat

import (
	"context"
	"fmt"
	"io"
	"sync"
)

// readBlock is how much of a FAT or allocation bitmap is read at once: a
// FAT32 FAT of tens of MiB costs a handful of reads, and the pooled buffer
// keeps memory per scan bounded whatever the FAT size.
const readBlock = 4 << 20

// blockPool recycles read buffers: a large fresh buffer costs a memclr of
// its whole size on every scan.
var blockPool = sync.Pool{New: func() any { return new([readBlock]byte) }}

// fatRuns turns per-cluster allocation into merged extents.
type fatRuns struct {
	v        *fatVolume
	m        *merger
	bad      uint32 // the bad-cluster value of this FAT type
	eoc      uint32 // the smallest end-of-chain value
	last     uint32 // the last valid cluster number
	inRun    bool
	runStart uint32
	used     uint64
	badCount uint64
}

// endRun closes the run of used clusters before cluster c.
func (s *fatRuns) endRun(c uint32) error {
	if !s.inRun {
		return nil
	}
	s.inRun = false
	n := uint64(c - s.runStart)
	s.used += n
	return s.m.add(s.v.clusterOffset(s.runStart), int64(n)*s.v.clusterSize)
}

// entry handles val, the FAT entry of cluster c (c >= 2).
func (s *fatRuns) entry(c, val uint32) error {
	switch {
	case val == 0:
		return s.endRun(c)
	case val == s.bad:
		s.badCount++
		return s.endRun(c)
	case val >= s.eoc || (val >= 2 && val <= s.last):
		if !s.inRun {
			s.inRun, s.runStart = true, c
		}
		return nil
	}
	return s.v.badEntry(c, val)
}

// inRunValue reports whether val keeps a run going: a cluster number or
// end of chain. (val-2 wraps for 0 and 1.)
func (s *fatRuns) inRunValue(val uint32) bool {
	return val-2 <= s.last-2 || val >= s.eoc
}

func (v *fatVolume) badEntry(c, val uint32) error {
	return corruptf("%s: FAT %d entry of cluster %d is 0x%X, which is not free, bad, end of chain or a cluster number 2..%d; run fsck.fat -n",
		v.fsType(), v.activeFAT, c, val, uint64(v.clusters)+1)
}

func (v *fatVolume) fsType() string { return fmt.Sprintf("fat%d", v.bits) }

// scan emits the region before the data area, then every cluster whose
// active-FAT entry is allocated or end of chain, reading the FAT in large
// blocks. It also checks every entry.
func (v *fatVolume) scan(ctx context.Context, r io.ReaderAt, m *merger) (scanResult, error) {
	if err := m.add(0, v.dataStart); err != nil {
		return scanResult{}, err
	}
	s := &fatRuns{v: v, m: m, last: v.clusters + 1}
	entries := uint64(v.clusters) + 2
	var nbytes int64
	switch v.bits {
	case 12:
		s.bad, s.eoc = 0xFF7, 0xFF8
		nbytes = int64(entries*3+1) / 2
	case 16:
		s.bad, s.eoc = 0xFFF7, 0xFFF8
		nbytes = int64(entries) * 2
	case 32:
		s.bad, s.eoc = 0x0FFFFFF7, 0x0FFFFFF8
		nbytes = int64(entries) * 4
	}
	base := v.fatOffset(v.activeFAT)
	block := blockPool.Get().(*[readBlock]byte)
	defer blockPool.Put(block)
	buf := block[:min(nbytes, readBlock)]
	// readBlock is a multiple of 4 and 2; a FAT12 FAT (at most 6 KiB) is
	// always read in one piece, so no entry straddles two blocks.
	for off := int64(0); off < nbytes; off += int64(len(buf)) {
		if err := ctx.Err(); err != nil {
			return scanResult{}, err
		}
		if rest := nbytes - off; rest < int64(len(buf)) {
			buf = buf[:rest]
		}
		if err := readFull(r, buf, base+off, fmt.Sprintf("FAT %d", v.activeFAT)); err != nil {
			return scanResult{}, err
		}
		var err error
		switch v.bits {
		case 12:
			err = s.scan12(buf)
		case 16:
			err = s.scan16(buf, uint32(off/2))
		case 32:
			err = s.scan32(buf, uint32(off/4))
		}
		if err != nil {
			return scanResult{}, err
		}
	}
	if err := s.endRun(s.last + 1); err != nil {
		return scanResult{}, err
	}
	return scanResult{used: s.used, bad: s.badCount}, nil
}

// scan12 handles a whole FAT12 FAT: entries are 12 bits, two in three
// bytes.
func (s *fatRuns) scan12(buf []byte) error {
	for c, i := uint32(0), 0; i+1 < len(buf) && c <= s.last; c++ {
		pair := uint32(buf[i]) | uint32(buf[i+1])<<8
		val := pair & 0xFFF
		if c&1 == 0 {
			i++
		} else {
			val = pair >> 4
			i += 2
		}
		if c >= 2 {
			if err := s.entry(c, val); err != nil {
				return err
			}
		}
	}
	return nil
}

// scan16 and scan32 handle a block of 16- or 32-bit entries, the first of
// which belongs to cluster c. Runs of free entries are skipped 32 bytes at
// a time, runs of allocated ones without a call per entry: most FATs are
// mostly one or the other.
func (s *fatRuns) scan16(buf []byte, c uint32) error {
	for i := 0; i+2 <= len(buf); {
		if c >= 2 && !s.inRun {
			for i+32 <= len(buf) && le64(buf[i:])|le64(buf[i+8:])|le64(buf[i+16:])|le64(buf[i+24:]) == 0 {
				i += 32
				c += 16
			}
		} else if s.inRun {
			for i+2 <= len(buf) && s.inRunValue(uint32(le16(buf[i:]))) {
				i += 2
				c++
			}
		}
		if i+2 > len(buf) {
			break
		}
		if c >= 2 {
			if err := s.entry(c, uint32(le16(buf[i:]))); err != nil {
				return err
			}
		}
		i += 2
		c++
	}
	return nil
}

func (s *fatRuns) scan32(buf []byte, c uint32) error {
	const mask2 = 0x0FFFFFFF0FFFFFFF // the top 4 bits of FAT32 entries are reserved
	for i := 0; i+4 <= len(buf); {
		if c >= 2 && !s.inRun {
			for i+32 <= len(buf) && (le64(buf[i:])|le64(buf[i+8:])|le64(buf[i+16:])|le64(buf[i+24:]))&mask2 == 0 {
				i += 32
				c += 8
			}
		} else if s.inRun {
			for i+4 <= len(buf) && s.inRunValue(le32(buf[i:])&0x0FFFFFFF) {
				i += 4
				c++
			}
		}
		if i+4 > len(buf) {
			break
		}
		if c >= 2 {
			if err := s.entry(c, le32(buf[i:])&0x0FFFFFFF); err != nil {
				return err
			}
		}
		i += 4
		c++
	}
	return nil
}

// describe builds Info: label and serial, FSInfo and flag checks.
func (v *fatVolume) describe(ctx context.Context, r io.ReaderAt, res scanResult) (*Info, error) {
	info := &Info{
		FSType:     v.fsType(),
		BlockSize:  v.clusterSize,
		Blocks:     uint64(v.clusters),
		UsedBlocks: res.used,
		Notes:      append([]string(nil), v.notes...),
	}
	if v.hasSerial {
		info.UUID = serialString(v.serial)
	} else {
		info.Notes = append(info.Notes, "no extended boot signature: the volume has no serial number")
	}
	if res.bad > 0 {
		info.Notes = append(info.Notes, fmt.Sprintf("%d clusters marked bad (%d bytes), left out of the used extents", res.bad, res.bad*uint64(v.clusterSize)))
	}
	if v.dirty {
		info.Notes = append(info.Notes, "dirty flag set in the boot sector: not cleanly unmounted; consider fsck.fat before capture")
	}
	label, err := v.rootLabel(ctx, r)
	if err != nil {
		return nil, err
	}
	if label == nil && v.bpbLabel != nil && string(v.bpbLabel) != "NO NAME    " {
		label = v.bpbLabel
	}
	info.Label = decodeLabel(label)
	if err := v.checkFAT01(r, info); err != nil {
		return nil, err
	}
	if v.fsInfoSec != 0 {
		if err := v.checkFSInfo(r, res, info); err != nil {
			return nil, err
		}
	}
	return info, nil
}

// checkFAT01 notes a media byte that disagrees with FAT[0] and a cleared
// clean-shutdown bit in FAT[1].
func (v *fatVolume) checkFAT01(r io.ReaderAt, info *Info) error {
	b := make([]byte, 8)
	if err := readFull(r, b, v.fatOffset(v.activeFAT), "FAT entries 0 and 1"); err != nil {
		return err
	}
	if b[0] != v.media {
		info.Notes = append(info.Notes, fmt.Sprintf("FAT[0] media byte 0x%02X differs from the BPB media descriptor 0x%02X", b[0], v.media))
	}
	switch v.bits {
	case 16:
		if le16(b[2:])&0x8000 == 0 {
			info.Notes = append(info.Notes, "FAT[1] clean-shutdown bit is clear: not cleanly unmounted")
		}
	case 32:
		if le32(b[4:])&0x08000000 == 0 {
			info.Notes = append(info.Notes, "FAT[1] clean-shutdown bit is clear: not cleanly unmounted")
		}
	}
	return nil
}

// checkFSInfo compares the FSInfo free-cluster hint with the FAT.
func (v *fatVolume) checkFSInfo(r io.ReaderAt, res scanResult, info *Info) error {
	b := make([]byte, 512)
	off := v.fsInfoSec * v.bps
	if err := readFull(r, b, off, "FSInfo sector"); err != nil {
		return err
	}
	if le32(b[0:]) != 0x41615252 || le32(b[484:]) != 0x61417272 || le32(b[508:]) != 0xAA550000 {
		info.Notes = append(info.Notes, fmt.Sprintf("FSInfo sector %d has bad signatures; ignored", v.fsInfoSec))
		return nil
	}
	free := uint64(v.clusters) - res.used - res.bad
	if hint := le32(b[488:]); hint != 0xFFFFFFFF && uint64(hint) != free {
		info.Notes = append(info.Notes, fmt.Sprintf("FSInfo free cluster count %d differs from the FAT's %d; the FAT is what counts", hint, free))
	}
	return nil
}

// maxDirBytes bounds a directory scan: the FAT specification limits a
// directory to 65536 entries of 32 bytes.
const maxDirBytes = 65536 * 32

// rootLabel returns the volume label entry of the root directory, or nil.
func (v *fatVolume) rootLabel(ctx context.Context, r io.ReaderAt) ([]byte, error) {
	if v.bits != 32 {
		off := v.fatOffset(v.numFATs)
		n := v.rootDirSecs * v.bps
		buf := make([]byte, min(n, 64<<10))
		for done := int64(0); done < n; done += int64(len(buf)) {
			if rest := n - done; rest < int64(len(buf)) {
				buf = buf[:rest]
			}
			if err := readFull(r, buf, off+done, "root directory"); err != nil {
				return nil, err
			}
			if label, end := findLabel(buf); label != nil || end {
				return label, nil
			}
		}
		return nil, nil
	}
	buf := make([]byte, v.clusterSize)
	c := v.rootCluster
	for done := int64(0); done < maxDirBytes; done += v.clusterSize {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := readFull(r, buf, v.clusterOffset(c), fmt.Sprintf("root directory cluster %d", c)); err != nil {
			return nil, err
		}
		if label, end := findLabel(buf); label != nil || end {
			return label, nil
		}
		next, err := v.entry(r, c)
		if err != nil {
			return nil, err
		}
		if next < 2 || next > v.clusters+1 {
			// End of chain, or a broken one: the scan has already judged
			// every entry, so there is no label to find past here.
			return nil, nil
		}
		c = next
	}
	return nil, nil
}

// entry reads the active-FAT entry of cluster c (FAT32 only).
func (v *fatVolume) entry(r io.ReaderAt, c uint32) (uint32, error) {
	var b [4]byte
	if err := readFull(r, b[:], v.fatOffset(v.activeFAT)+int64(c)*4, fmt.Sprintf("FAT entry of cluster %d", c)); err != nil {
		return 0, err
	}
	return le32(b[:]) & 0x0FFFFFFF, nil
}

// findLabel looks for a live volume-label entry in a directory block; end
// reports the end-of-directory marker.
func findLabel(buf []byte) (label []byte, end bool) {
	for i := 0; i+32 <= len(buf); i += 32 {
		e := buf[i : i+32]
		switch e[0] {
		case 0x00:
			return nil, true
		case 0xE5:
			continue
		}
		attr := e[11]
		if attr&0x3F == 0x0F { // long-name entry
			continue
		}
		if attr&0x18 == 0x08 {
			l := append([]byte(nil), e[:11]...)
			if l[0] == 0x05 { // stands for a leading 0xE5 byte
				l[0] = 0xE5
			}
			return l, false
		}
	}
	return nil, false
}
