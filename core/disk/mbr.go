package disk

import (
	"fmt"
	"io"
)

// MBR layout (sector 0, and each EBR sector, first 512 bytes):
//
//	offset size field
//	     0  440 boot code
//	   440    4 disk signature (MBR only)
//	   444    2 reserved
//	   446   64 four 16-byte partition entries
//	   510    2 0x55 0xAA
//
// Partition entry:
//
//	offset size field
//	     0    1 boot flag (0x80 bootable, 0x00 not)
//	     1    3 CHS start (ignored)
//	     4    1 type
//	     5    3 CHS end (ignored)
//	     8    4 start LBA
//	    12    4 number of sectors
//
// In an EBR the first data entry's start is relative to the EBR itself,
// and the link to the next EBR (an entry of an extended type) is relative
// to the start of the outermost extended partition.
const mbrEntryOffset = 446

type mbrEntry struct {
	boot, typ      byte
	start, sectors uint32
}

func mbrEntries(sec []byte) [4]mbrEntry {
	var out [4]mbrEntry
	for i := range out {
		e := sec[mbrEntryOffset+16*i:]
		out[i] = mbrEntry{boot: e[0], typ: e[4], start: le32(e[8:]), sectors: le32(e[12:])}
	}
	return out
}

func isExtended(typ byte) bool { return typ == 0x05 || typ == 0x0F || typ == 0x85 }

func mbrPartition(number int, e mbrEntry, ss int) Partition {
	typ := fmt.Sprintf("0x%02x", e.typ)
	return Partition{
		Number:     number,
		Start:      int64(e.start) * int64(ss),
		Size:       int64(e.sectors) * int64(ss),
		Type:       typ,
		TypeName:   mbrTypeNames[e.typ],
		Attributes: uint64(e.boot & 0x80),
	}
}

// readMBR fills l from the MBR in sec0 and the EBR chains it points to.
func readMBR(r io.ReaderAt, l *Layout, sec0 []byte) error {
	ss, size := l.SectorSize, l.DiskSize
	l.Scheme = SchemeMBR
	l.DiskGUID = fmt.Sprintf("0x%08x", le32(sec0[440:]))
	l.Areas = append(l.Areas, Area{0, int64(ss), "MBR"})

	var top []Partition // primaries and extended containers
	for i, e := range mbrEntries(sec0) {
		n := i + 1
		if e.typ == 0 || e.sectors == 0 {
			if e.typ != 0 || e.sectors != 0 {
				l.Warnings = append(l.Warnings, fmt.Sprintf("mbr slot %d: type 0x%02x with %d sectors at LBA %d is taken as empty", n, e.typ, e.sectors, e.start))
			}
			continue
		}
		if e.start == 0 {
			return corrupt(ErrOverlap, "mbr partition %d: starts at LBA 0, on the MBR itself", n)
		}
		p := mbrPartition(n, e, ss)
		if p.End() > size {
			return corrupt(ErrOutside, "mbr partition %d: ends at byte %d, past the end of the disk (%d bytes)", n, p.End(), size)
		}
		top = append(top, p)
		if isExtended(e.typ) {
			l.Extended = append(l.Extended, p)
		} else {
			l.Partitions = append(l.Partitions, p)
		}
	}
	sortPartitions(top)
	if err := checkOverlap(top, func(p Partition) string { return fmt.Sprintf("mbr partition %d", p.Number) }); err != nil {
		return err
	}

	next := 5
	var ebrs []Area
	for _, x := range l.Extended {
		var err error
		next, ebrs, err = walkEBR(r, l, x, next, ebrs)
		if err != nil {
			return err
		}
	}
	sortPartitions(l.Partitions)
	if err := checkOverlap(l.Partitions, func(p Partition) string { return fmt.Sprintf("mbr partition %d", p.Number) }); err != nil {
		return err
	}
	// An EBR inside a data partition would be overwritten by that
	// partition's contents on restore (and vice versa).
	for _, a := range ebrs {
		if p, ok := overlapping(l.Partitions, a.Offset, a.Length); ok {
			return corrupt(ErrOverlap, "%s at byte %d lies inside mbr partition %d (bytes %d-%d)", a.What, a.Offset, p.Number, p.Start, p.End())
		}
	}
	l.Areas = append(l.Areas, ebrs...)
	sortAreas(l.Areas)
	return nil
}

// walkEBR follows the chain of EBRs of extended partition x, appending
// its logical partitions (numbered from next) to l.Partitions and the EBR
// sectors to ebrs.
func walkEBR(r io.ReaderAt, l *Layout, x Partition, next int, ebrs []Area) (int, []Area, error) {
	ss := int64(l.SectorSize)
	xStart, xEnd := x.Start/ss, x.End()/ss // sectors, end exclusive
	seen := map[int64]bool{}
	logicals := 0
	ebr := xStart
	for {
		where := fmt.Sprintf("extended partition %d: ebr at LBA %d", x.Number, ebr)
		if seen[ebr] {
			return next, ebrs, corrupt(ErrEBRChain, "%s: the chain comes back to this ebr (a loop)", where)
		}
		seen[ebr] = true
		if len(seen) > MaxLogical {
			return next, ebrs, corrupt(ErrEBRChain, "extended partition %d: chain longer than %d ebrs", x.Number, MaxLogical)
		}
		sec, err := readAt(r, l.DiskSize, ebr*ss, int(ss), "ebr")
		if err != nil {
			return next, ebrs, err
		}
		if sec[510] != 0x55 || sec[511] != 0xAA {
			if ebr == xStart && allZero(sec[mbrEntryOffset:510]) {
				// An extended partition that holds no logical partitions.
				return next, ebrs, nil
			}
			return next, ebrs, corrupt(ErrEBRChain, "%s: no 0x55AA signature at byte 510", where)
		}
		ebrs = append(ebrs, Area{ebr * ss, ss, fmt.Sprintf("EBR at LBA %d (extended partition %d)", ebr, x.Number)})

		link := int64(-1)
		data := 0
		for i, e := range mbrEntries(sec) {
			if e.typ == 0 || e.sectors == 0 {
				continue
			}
			slot := fmt.Sprintf("%s: slot %d", where, i+1)
			if isExtended(e.typ) {
				if link >= 0 {
					l.Warnings = append(l.Warnings, fmt.Sprintf("%s: second link to a next ebr ignored", slot))
					continue
				}
				link = xStart + int64(e.start)
				if link <= xStart || link >= xEnd {
					return next, ebrs, corrupt(ErrEBRChain, "%s: next ebr at LBA %d is outside extended partition %d (LBA %d-%d)",
						slot, link, x.Number, xStart, xEnd-1)
				}
				continue
			}
			if e.boot != 0 && e.boot != 0x80 {
				return next, ebrs, corrupt(ErrCorrupt, "%s: boot flag 0x%02x, want 0x00 or 0x80", slot, e.boot)
			}
			if data++; data > 1 || i != 0 {
				l.Warnings = append(l.Warnings, fmt.Sprintf("%s: logical partition entry not in slot 1 alone; read anyway", slot))
			}
			if logicals++; logicals > MaxLogical {
				return next, ebrs, corrupt(ErrEBRChain, "%s: more than %d logical partitions", slot, MaxLogical)
			}
			if e.start == 0 {
				return next, ebrs, corrupt(ErrOverlap, "mbr partition %d (logical, %s): starts on its own ebr", next, slot)
			}
			p := mbrPartition(next, mbrEntry{boot: e.boot, typ: e.typ, start: 0, sectors: e.sectors}, int(ss))
			p.Start = (ebr + int64(e.start)) * ss
			p.Logical = true
			if p.End() > l.DiskSize {
				return next, ebrs, corrupt(ErrOutside, "mbr partition %d (logical, %s): ends at byte %d, past the end of the disk (%d bytes)",
					next, slot, p.End(), l.DiskSize)
			}
			if p.Start < x.Start || p.End() > x.End() {
				return next, ebrs, corrupt(ErrCorrupt, "mbr partition %d (logical, %s): bytes %d-%d are outside extended partition %d (bytes %d-%d)",
					next, slot, p.Start, p.End(), x.Number, x.Start, x.End())
			}
			l.Partitions = append(l.Partitions, p)
			next++
		}
		if link < 0 {
			return next, ebrs, nil
		}
		ebr = link
	}
}
