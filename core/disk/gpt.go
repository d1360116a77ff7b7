package disk

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"strings"
	"unicode/utf16"
)

// GPT header layout (UEFI spec 5.3.2, "GPT Header"). All fields
// little-endian.
//
//	offset size field
//	     0    8 signature "EFI PART"
//	     8    4 revision (0x00010000)
//	    12    4 header size (92 .. sector size)
//	    16    4 header CRC32 (computed with this field zeroed)
//	    20    4 reserved
//	    24    8 my LBA
//	    32    8 alternate LBA
//	    40    8 first usable LBA
//	    48    8 last usable LBA
//	    56   16 disk GUID
//	    72    8 partition entry array LBA
//	    80    4 number of partition entries
//	    84    4 size of a partition entry (128 * 2^n)
//	    88    4 partition entry array CRC32
//
// Partition entry (UEFI spec 5.3.3, "GPT Partition Entry Array"):
//
//	offset size field
//	     0   16 partition type GUID (all zero: unused entry)
//	    16   16 unique partition GUID
//	    32    8 starting LBA
//	    40    8 ending LBA (inclusive)
//	    48    8 attributes
//	    56   72 partition name, UTF-16LE, NUL-padded
const (
	gptSignature      = "EFI PART"
	gptMinHeaderSize  = 92
	gptMinEntrySize   = 128
	gptMaxEntrySize   = 4096
	typeGPTProtective = 0xEE
)

type gptHeader struct {
	myLBA, altLBA           uint64
	firstUsable, lastUsable uint64
	diskGUID                string
	entriesLBA              uint64
	count, entrySize        uint32
	entriesCRC              uint32
}

func (h *gptHeader) arrayBytes() int { return int(h.count) * int(h.entrySize) }

// arraySectors is the number of sectors the entry array occupies.
func (h *gptHeader) arraySectors(ss int) uint64 {
	return (uint64(h.arrayBytes()) + uint64(ss) - 1) / uint64(ss)
}

// gptCopy is one of the two copies of a GPT: a header and, if its CRC
// matched, its entry array.
type gptCopy struct {
	what    string // "primary" or "backup"
	hdr     *gptHeader
	entries []byte
}

// parseGPTHeader checks a header sector read at LBA at, on a disk of
// diskSectors sectors of ss bytes.
func parseGPTHeader(b []byte, at uint64, ss int, diskSectors uint64, what string) (*gptHeader, error) {
	where := fmt.Sprintf("%s gpt header at LBA %d", what, at)
	if string(b[:8]) != gptSignature {
		return nil, corrupt(ErrCorrupt, "%s: signature is %q, not %q", where, b[:8], gptSignature)
	}
	if rev := le32(b[8:]); rev>>16 != 1 {
		return nil, corrupt(ErrCorrupt, "%s: revision 0x%08x, want 1.x (0x0001xxxx)", where, rev)
	}
	hs := le32(b[12:])
	if hs < gptMinHeaderSize || hs > uint32(ss) {
		return nil, corrupt(ErrCorrupt, "%s: header size %d, want %d to %d", where, hs, gptMinHeaderSize, ss)
	}
	want := le32(b[16:])
	h := make([]byte, hs)
	copy(h, b)
	clear(h[16:20])
	if got := crc32.ChecksumIEEE(h); got != want {
		return nil, corrupt(ErrCorrupt, "%s: header crc32 0x%08x does not match the computed 0x%08x", where, want, got)
	}
	hdr := &gptHeader{
		myLBA:       le64(b[24:]),
		altLBA:      le64(b[32:]),
		firstUsable: le64(b[40:]),
		lastUsable:  le64(b[48:]),
		diskGUID:    guidString(b[56:72]),
		entriesLBA:  le64(b[72:]),
		count:       le32(b[80:]),
		entrySize:   le32(b[84:]),
		entriesCRC:  le32(b[88:]),
	}
	if hdr.myLBA != at {
		return nil, corrupt(ErrCorrupt, "%s: my-LBA field says %d", where, hdr.myLBA)
	}
	if hdr.altLBA >= diskSectors {
		return nil, corrupt(ErrOutside, "%s: alternate header LBA %d is past the end of the disk (%d sectors of %d bytes); is the image truncated?",
			where, hdr.altLBA, diskSectors, ss)
	}
	if hdr.altLBA == at {
		return nil, corrupt(ErrCorrupt, "%s: alternate header LBA %d is this header's own LBA", where, hdr.altLBA)
	}
	if hdr.firstUsable > hdr.lastUsable {
		return nil, corrupt(ErrCorrupt, "%s: first usable LBA %d is after last usable LBA %d", where, hdr.firstUsable, hdr.lastUsable)
	}
	if hdr.lastUsable >= diskSectors {
		return nil, corrupt(ErrOutside, "%s: last usable LBA %d is past the end of the disk (%d sectors of %d bytes); is the image truncated?",
			where, hdr.lastUsable, diskSectors, ss)
	}
	if hdr.firstUsable <= 1 {
		return nil, corrupt(ErrCorrupt, "%s: first usable LBA %d overlaps the protective MBR or primary header", where, hdr.firstUsable)
	}
	for _, x := range []struct {
		name string
		lba  uint64
	}{{"the header", at}, {"the alternate header", hdr.altLBA}} {
		if x.lba == 0 || (x.lba >= hdr.firstUsable && x.lba <= hdr.lastUsable) {
			return nil, corrupt(ErrCorrupt, "%s: %s (LBA %d) lies inside the usable range %d-%d or on the MBR",
				where, x.name, x.lba, hdr.firstUsable, hdr.lastUsable)
		}
	}
	es := hdr.entrySize
	if es < gptMinEntrySize || es > gptMaxEntrySize || es&(es-1) != 0 {
		return nil, corrupt(ErrCorrupt, "%s: partition entry size %d, want 128 times a power of two, at most %d", where, es, gptMaxEntrySize)
	}
	if uint64(hdr.count)*uint64(es) > maxEntryArray {
		return nil, corrupt(ErrCorrupt, "%s: %d entries of %d bytes make an entry array over the %d-byte limit", where, hdr.count, es, maxEntryArray)
	}
	n := hdr.arraySectors(ss)
	if hdr.entriesLBA < 2 || hdr.entriesLBA >= diskSectors || n > diskSectors-hdr.entriesLBA {
		return nil, corrupt(ErrOutside, "%s: entry array at LBA %d (%d sectors) is not inside the disk (%d sectors)", where, hdr.entriesLBA, n, diskSectors)
	}
	arrEnd := hdr.entriesLBA + n // exclusive
	if hdr.entriesLBA <= hdr.lastUsable && arrEnd > hdr.firstUsable {
		return nil, corrupt(ErrOverlap, "%s: entry array LBA %d-%d overlaps the usable range %d-%d",
			where, hdr.entriesLBA, arrEnd-1, hdr.firstUsable, hdr.lastUsable)
	}
	if at >= hdr.entriesLBA && at < arrEnd {
		return nil, corrupt(ErrOverlap, "%s: entry array LBA %d-%d covers the header itself", where, hdr.entriesLBA, arrEnd-1)
	}
	return hdr, nil
}

// loadGPT reads the header at LBA at and its entry array. A header that
// passes its checks is returned even when the entry array does not, so the
// caller can still place the areas. Errors from the reader come back
// unchanged (not as *tableError).
func loadGPT(r io.ReaderAt, size int64, ss int, at uint64, what string) (*gptCopy, error) {
	diskSectors := uint64(size) / uint64(ss)
	c := &gptCopy{what: what}
	if at >= diskSectors {
		return c, corrupt(ErrOutside, "%s gpt header LBA %d is past the end of the disk (%d sectors)", what, at, diskSectors)
	}
	b, err := readAt(r, size, int64(at)*int64(ss), ss, what+" gpt header")
	if err != nil {
		return c, err
	}
	h, err := parseGPTHeader(b, at, ss, diskSectors, what)
	if err != nil {
		return c, err
	}
	c.hdr = h
	ents, err := readAt(r, size, int64(h.entriesLBA)*int64(ss), h.arrayBytes(), what+" gpt entry array")
	if err != nil {
		return c, err
	}
	if got := crc32.ChecksumIEEE(ents); got != h.entriesCRC {
		return c, corrupt(ErrCorrupt, "%s gpt entry array at LBA %d: crc32 0x%08x in the header does not match the computed 0x%08x",
			what, h.entriesLBA, h.entriesCRC, got)
	}
	c.entries = ents
	return c, nil
}

func isTableError(err error) bool {
	var te *tableError
	return errors.As(err, &te)
}

// readGPT fills l from the GPT of the disk. sec0 is LBA 0; protective
// says whether it holds a 0xEE entry.
func readGPT(r io.ReaderAt, l *Layout, sec0 []byte, protective bool) error {
	ss, size := l.SectorSize, l.DiskSize
	diskSectors := uint64(size) / uint64(ss)
	l.Scheme = SchemeGPT
	checkProtectiveMBR(l, sec0, protective, diskSectors)

	if diskSectors < 3 {
		return corrupt(ErrOutside, "gpt: the disk has only %d sectors of %d bytes, too few for a gpt", diskSectors, ss)
	}
	primary, perr := loadGPT(r, size, ss, 1, "primary")
	if perr != nil && !isTableError(perr) {
		return perr
	}
	var used, other *gptCopy
	var oerr error
	if perr == nil {
		used = primary
		other, oerr = loadGPT(r, size, ss, primary.hdr.altLBA, "backup")
		if oerr != nil && !isTableError(oerr) {
			return oerr
		}
		if oerr != nil {
			l.Warnings = append(l.Warnings, fmt.Sprintf("backup GPT is unusable (%v); reading the primary", oerr))
		}
	} else {
		// Prefer the backup where the primary header says it is, then the
		// last sector where it belongs.
		cands := []uint64{diskSectors - 1}
		if h := primary.hdr; h != nil && h.altLBA != diskSectors-1 {
			cands = []uint64{h.altLBA, diskSectors - 1}
		}
		var berrs []error
		for _, at := range cands {
			b, berr := loadGPT(r, size, ss, at, "backup")
			if berr != nil && !isTableError(berr) {
				return berr
			}
			if berr == nil {
				used = b
				break
			}
			berrs = append(berrs, berr)
		}
		if used == nil {
			msg := "no valid gpt"
			if alt := sectorSizeHint(r, size, ss); alt != 0 {
				msg += fmt.Sprintf(" with %d-byte sectors (a gpt header sits where %d-byte sectors put it: read with that sector size)", ss, alt)
			}
			msgs := []string{perr.Error()}
			for _, e := range berrs {
				msgs = append(msgs, e.Error())
			}
			return &tableError{msg: msg + ": " + strings.Join(msgs, "; "), kinds: append([]error{perr}, berrs...)}
		}
		other = primary
		l.Warnings = append(l.Warnings, fmt.Sprintf("primary GPT is unusable (%v); read the partition table from the backup GPT at LBA %d", perr, used.hdr.myLBA))
	}
	h := used.hdr
	l.DiskGUID = h.diskGUID
	if backupLBA := max(h.myLBA, h.altLBA); backupLBA != diskSectors-1 {
		l.Warnings = append(l.Warnings, fmt.Sprintf(
			"backup GPT header is at LBA %d, not in the last sector (LBA %d): the disk is larger than the table was made for",
			backupLBA, diskSectors-1))
	}
	if other != nil && other.entries != nil {
		o := other.hdr
		if o.diskGUID != h.diskGUID || o.firstUsable != h.firstUsable || o.lastUsable != h.lastUsable ||
			o.count != h.count || o.entrySize != h.entrySize || o.entriesCRC != h.entriesCRC {
			l.Warnings = append(l.Warnings, fmt.Sprintf("primary and backup GPT differ; using the %s", used.what))
		}
	}

	setGPTAreas(l, used, other)
	sortAreas(l.Areas)

	for i := 0; i < int(h.count); i++ {
		e := used.entries[i*int(h.entrySize):][:gptMinEntrySize]
		if allZero(e[:16]) {
			continue
		}
		p, err := gptPartition(i, e, h, ss, size)
		if err != nil {
			return err
		}
		l.Partitions = append(l.Partitions, p)
	}
	sortPartitions(l.Partitions)
	if err := checkOverlap(l.Partitions, func(p Partition) string { return fmt.Sprintf("gpt entry %d", p.Number) }); err != nil {
		return err
	}
	// The copy in use keeps its own sectors out of its usable range, but
	// the other copy may disagree with it; its sectors inside a partition
	// belong to that partition.
	kept := l.Areas[:0]
	for _, a := range l.Areas {
		if p, ok := overlapping(l.Partitions, a.Offset, a.Length); ok {
			l.Warnings = append(l.Warnings, fmt.Sprintf("%s (bytes %d-%d) lies inside gpt entry %d; taken as partition data",
				a.What, a.Offset, a.Offset+a.Length, p.Number))
			continue
		}
		kept = append(kept, a)
	}
	l.Areas = kept
	return nil
}

// overlapping returns a partition that shares a byte with [off, off+n).
func overlapping(parts []Partition, off, n int64) (Partition, bool) {
	for _, p := range parts {
		if off < p.End() && p.Start < off+n {
			return p, true
		}
	}
	return Partition{}, false
}

func gptPartition(i int, e []byte, h *gptHeader, ss int, size int64) (Partition, error) {
	first, last := le64(e[32:]), le64(e[40:])
	where := fmt.Sprintf("gpt entry %d", i+1)
	diskSectors := uint64(size) / uint64(ss)
	if first > last {
		return Partition{}, corrupt(ErrCorrupt, "%s: first LBA %d is after last LBA %d", where, first, last)
	}
	if last >= diskSectors {
		return Partition{}, corrupt(ErrOutside, "%s: ends at byte %s, past the end of the disk (%d bytes)", where, endByte(last, ss), size)
	}
	if first < h.firstUsable || last > h.lastUsable {
		return Partition{}, corrupt(ErrCorrupt, "%s: LBA %d-%d is outside the usable range %d-%d of the gpt header",
			where, first, last, h.firstUsable, h.lastUsable)
	}
	p := Partition{
		Number:     i + 1,
		Start:      int64(first) * int64(ss),
		Size:       int64(last-first+1) * int64(ss),
		Type:       guidString(e[0:16]),
		GUID:       guidString(e[16:32]),
		Attributes: le64(e[48:]),
		Name:       utf16Name(e[56:128]),
	}
	p.TypeName = gptTypeNames[p.Type]
	return p, nil
}

// endByte formats the byte offset just past LBA last, which may not fit
// in 64 bits when the LBA is garbage.
func endByte(last uint64, ss int) string {
	if last >= math.MaxInt64/uint64(ss) {
		return fmt.Sprintf("%d*%d", last+1, ss)
	}
	return fmt.Sprint((last + 1) * uint64(ss))
}

func setGPTAreas(l *Layout, used, other *gptCopy) {
	ss := int64(l.SectorSize)
	l.Areas = append(l.Areas, Area{0, ss, "protective MBR"})
	add := func(c *gptCopy, note string) {
		h := c.hdr
		l.Areas = append(l.Areas,
			Area{int64(h.myLBA) * ss, ss, c.what + " GPT header" + note},
			Area{int64(h.entriesLBA) * ss, int64(h.arraySectors(int(ss))) * ss, c.what + " GPT entries" + note})
	}
	add(used, "")
	if other != nil && other.hdr != nil {
		note := ""
		if other.entries == nil {
			note = " (unusable)"
		}
		add(other, note)
		return
	}
	// The other copy's header did not parse: place it where the one in
	// use says it is, with an entry array as large, in the usual spot.
	h := used.hdr
	n := h.arraySectors(int(ss))
	if used.what == "primary" {
		at := h.altLBA
		l.Areas = append(l.Areas, Area{int64(at) * ss, ss, "backup GPT header (unusable)"})
		if at > n && at-n > h.lastUsable {
			l.Areas = append(l.Areas, Area{int64(at-n) * ss, int64(n) * ss, "backup GPT entries (unusable, assumed)"})
		}
		return
	}
	l.Areas = append(l.Areas, Area{ss, ss, "primary GPT header (unusable)"})
	if 2+n <= h.firstUsable {
		l.Areas = append(l.Areas, Area{2 * ss, int64(n) * ss, "primary GPT entries (unusable, assumed)"})
	}
}

// checkProtectiveMBR notes anything unusual about LBA 0 of a GPT disk.
func checkProtectiveMBR(l *Layout, sec0 []byte, protective bool, diskSectors uint64) {
	if !protective {
		l.Warnings = append(l.Warnings, "no protective MBR (type 0xEE entry) in sector 0; reading the GPT anyway")
		return
	}
	var others, size []string
	for i, e := range mbrEntries(sec0) {
		switch {
		case e.typ == typeGPTProtective:
			want := min(diskSectors-1, math.MaxUint32)
			if e.start != 1 || uint64(e.sectors) != want {
				size = append(size, fmt.Sprintf(
					"protective MBR slot %d covers LBA %d+%d sectors; for this disk it should be 1+%d", i+1, e.start, e.sectors, want))
			}
		case e.typ != 0 && e.sectors != 0:
			others = append(others, fmt.Sprintf("slot %d type 0x%02x", i+1, e.typ))
		}
	}
	if len(others) > 0 {
		// A hybrid MBR's 0xEE entry covers only the GPT's own sectors.
		l.Warnings = append(l.Warnings, fmt.Sprintf("hybrid MBR (%s besides the 0xEE entry); the GPT is used", strings.Join(others, ", ")))
		return
	}
	l.Warnings = append(l.Warnings, size...)
}

// sectorSizeHint returns another sector size at whose LBA 1 a GPT
// signature sits, or 0.
func sectorSizeHint(r io.ReaderAt, size int64, ss int) int {
	for _, alt := range []int{512, 4096} {
		if alt == ss || size < 2*int64(alt) {
			continue
		}
		if b, err := readAt(r, size, int64(alt), 8, "gpt signature"); err == nil && string(b) == gptSignature {
			return alt
		}
	}
	return 0
}

// guidString formats a GUID stored in the mixed-endian EFI layout (first
// three fields little-endian) in the canonical upper-case text form.
func guidString(b []byte) string {
	return fmt.Sprintf("%08X-%04X-%04X-%02X%02X-%02X%02X%02X%02X%02X%02X",
		le32(b[0:]), le16(b[4:]), le16(b[6:]), b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15])
}

// utf16Name decodes a NUL-padded UTF-16LE partition name.
func utf16Name(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := le16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
