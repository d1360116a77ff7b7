package disk

import (
	"errors"
	"fmt"
	"io"
	"slices"
)

// Scheme names the kind of partition table found on a disk.
type Scheme string

// The schemes Read reports.
const (
	SchemeNone Scheme = "none"
	SchemeMBR  Scheme = "mbr"
	SchemeGPT  Scheme = "gpt"
)

// MaxLogical caps the number of MBR logical partitions read from one
// extended partition chain; a longer chain is refused as corrupt (real
// tools stop far below this; a crafted chain could otherwise go on for as
// many sectors as the disk has).
const MaxLogical = 128

// maxEntryArray bounds the GPT partition entry array read from disk. The
// spec minimum is 16 KiB (128 entries of 128 bytes); tools that grow the
// table stay well under this.
const maxEntryArray = 8 << 20

var (
	// ErrCorrupt matches every error about the contents of a partition
	// table (as opposed to an I/O error or a bad argument).
	ErrCorrupt = errors.New("disk: corrupt partition table")
	// ErrOutside: a partition or table structure reaches past the end of
	// the disk; usually the image is truncated or the wrong size was given.
	ErrOutside = errors.New("disk: partition table reaches past the end of the disk")
	// ErrOverlap: two partitions, or a partition and the table's own
	// sectors, overlap.
	ErrOverlap = errors.New("disk: overlapping partitions")
	// ErrEBRChain: the chain of MBR extended boot records is broken,
	// loops, or is longer than MaxLogical.
	ErrEBRChain = errors.New("disk: broken extended partition chain")
	// ErrSectorSize: the sector size given is not 512, 1024, 2048 or 4096.
	ErrSectorSize = errors.New("disk: unsupported sector size")
	// ErrDiskSize: the disk size given is negative.
	ErrDiskSize = errors.New("disk: invalid disk size")
)

// Partition is one partition holding data. MBR extended containers are
// not Partitions of the layout; they are listed in Layout.Extended.
type Partition struct {
	Number     int    // Linux numbering: GPT entry index+1; MBR primaries 1-4, logicals from 5 in chain order
	Start      int64  // byte offset on the disk
	Size       int64  // bytes
	Type       string // GPT: partition type GUID, canonical upper-case text form; MBR: "0x83" style
	TypeName   string // human name when known, "" otherwise
	GUID       string // GPT unique partition GUID, "" for MBR
	Name       string // GPT partition name (UTF-16LE decoded), "" for MBR
	Attributes uint64 // GPT attribute bits; for MBR bit 7 (0x80) = bootable flag
	Logical    bool   // MBR logical partition inside an extended one
}

// End returns the byte offset just past the partition.
func (p Partition) End() int64 { return p.Start + p.Size }

// Area is a byte range of the disk holding partition-table metadata (MBR
// sector, GPT header and entries, primary and backup, each EBR sector).
type Area struct {
	Offset, Length int64
	What           string
}

// Extent is a byte range of the disk.
type Extent struct{ Offset, Length int64 }

// Layout is the partition table of a disk.
type Layout struct {
	Scheme     Scheme
	SectorSize int
	DiskSize   int64
	DiskGUID   string      // GPT disk GUID; MBR: disk signature as "0x1234abcd"
	Partitions []Partition // sorted by Start; extended MBR containers are NOT listed (their EBRs are in Areas)
	Extended   []Partition // MBR extended containers, for information
	Areas      []Area      // sorted by Offset
	Warnings   []string
}

// Read parses the partition table of a whole disk of the given size in
// bytes, whose logical sectors are sectorSize bytes. A source without a
// recognised partition table (e.g. a bare filesystem image) returns a
// Layout with Scheme SchemeNone and no error.
//
// Read takes no context: it reads at most a few hundred sectors and one
// bounded GPT entry array per copy.
func Read(r io.ReaderAt, size int64, sectorSize int) (*Layout, error) {
	l, err := read(r, size, sectorSize)
	if err != nil {
		return nil, fmt.Errorf("disk: %w", err)
	}
	return l, nil
}

// ReadAuto is Read with the sector size found by DetectSectorSize.
func ReadAuto(r io.ReaderAt, size int64) (*Layout, error) {
	ss, err := DetectSectorSize(r, size)
	if err != nil {
		return nil, err
	}
	return Read(r, size, ss)
}

// DetectSectorSize tells a GPT disk's logical sector size from where its
// "EFI PART" header signature is: at byte 512 or 4096 for the primary, or
// in the last 512-byte or 4096-byte sector for the backup (whose own-LBA
// field must then name that sector). Anything else, including every MBR
// disk, gets the default of 512.
func DetectSectorSize(r io.ReaderAt, size int64) (int, error) {
	if size < 0 {
		return 0, fmt.Errorf("disk: size %d: %w", size, ErrDiskSize)
	}
	sizes := []int{512, 4096}
	for _, ss := range sizes {
		if size < 2*int64(ss) {
			continue
		}
		b, err := readAt(r, size, int64(ss), 8, "gpt signature")
		if err != nil {
			return 0, fmt.Errorf("disk: %w", err)
		}
		if string(b) == gptSignature {
			return ss, nil
		}
	}
	for _, ss := range sizes {
		last := size/int64(ss) - 1
		if last < 2 {
			continue
		}
		b, err := readAt(r, size, last*int64(ss), 32, "backup gpt signature")
		if err != nil {
			return 0, fmt.Errorf("disk: %w", err)
		}
		if string(b[:8]) == gptSignature && le64(b[24:]) == uint64(last) {
			return ss, nil
		}
	}
	return 512, nil
}

// Unused returns the byte ranges of [0, DiskSize) not covered by any
// listed partition: the area before the first partition, gaps, EBR regions
// inside extended containers, the backup GPT at the end. They are sorted
// and merged; for SchemeNone it is the whole disk.
func (l *Layout) Unused() []Extent {
	parts := slices.Clone(l.Partitions)
	slices.SortFunc(parts, func(a, b Partition) int { return cmpInt64(a.Start, b.Start) })
	var out []Extent
	var cur int64
	for _, p := range parts {
		if p.Start > cur {
			out = append(out, Extent{cur, min(p.Start, l.DiskSize) - cur})
		}
		cur = max(cur, p.End())
	}
	if cur < l.DiskSize {
		out = append(out, Extent{cur, l.DiskSize - cur})
	}
	return out
}

func read(r io.ReaderAt, size int64, ss int) (*Layout, error) {
	switch ss {
	case 512, 1024, 2048, 4096:
	default:
		return nil, &tableError{msg: fmt.Sprintf("sector size %d: want 512, 1024, 2048 or 4096", ss), kinds: []error{ErrSectorSize}}
	}
	if size < 0 {
		return nil, &tableError{msg: fmt.Sprintf("disk size %d is negative", size), kinds: []error{ErrDiskSize}}
	}
	l := &Layout{Scheme: SchemeNone, SectorSize: ss, DiskSize: size}
	if size < int64(ss) {
		// Too small to hold even sector 0: nothing here is a table.
		return l, nil
	}
	sec0, err := readAt(r, size, 0, ss, "sector 0")
	if err != nil {
		return nil, err
	}
	hasSig := sec0[510] == 0x55 && sec0[511] == 0xAA
	ents := mbrEntries(sec0)
	protective := false
	if hasSig {
		for _, e := range ents {
			protective = protective || e.typ == typeGPTProtective
		}
	}
	gptAtLBA1 := false
	if size >= 2*int64(ss) {
		b, err := readAt(r, size, int64(ss), 8, "gpt signature")
		if err != nil {
			return nil, err
		}
		gptAtLBA1 = string(b) == gptSignature
	}
	if protective || gptAtLBA1 {
		if err := readGPT(r, l, sec0, protective); err != nil {
			return nil, err
		}
		return l, nil
	}
	if !hasSig {
		return l, nil
	}
	for i, e := range ents {
		if e.boot != 0 && e.boot != 0x80 {
			if bootSectorFS(sec0) == "" {
				l.Warnings = append(l.Warnings, fmt.Sprintf(
					"sector 0 ends in 0x55AA but slot %d has boot flag 0x%02x (want 0x00 or 0x80), so it is not an MBR: the source is taken as unpartitioned",
					i+1, e.boot))
			}
			return l, nil
		}
	}
	if fs := bootSectorFS(sec0); fs != "" {
		// A bare FAT/exFAT/NTFS volume, unless its partition slots form a
		// valid, non-empty table (then it is an MBR whose boot code happens
		// to look like a boot sector).
		m := &Layout{Scheme: SchemeNone, SectorSize: ss, DiskSize: size}
		err := readMBR(r, m, sec0)
		var te *tableError
		if errors.As(err, &te) || (err == nil && len(m.Partitions)+len(m.Extended) == 0) {
			return l, nil
		}
		if err != nil {
			return nil, err
		}
		m.Warnings = append(m.Warnings, fmt.Sprintf("sector 0 looks like a %s boot sector but holds a valid partition table: read as an MBR", fs))
		return m, nil
	}
	if err := readMBR(r, l, sec0); err != nil {
		return nil, err
	}
	return l, nil
}

// tableError is an error about table contents. Its message is complete
// on its own (the caller adds the "disk: " prefix); errors.Is matches each
// of its kinds.
type tableError struct {
	msg   string
	kinds []error
}

func (e *tableError) Error() string   { return e.msg }
func (e *tableError) Unwrap() []error { return e.kinds }

// corrupt builds a table-content error of the given kind (which may be
// ErrCorrupt itself); it always matches ErrCorrupt too.
func corrupt(kind error, format string, args ...any) error {
	kinds := []error{ErrCorrupt}
	if kind != ErrCorrupt {
		kinds = []error{kind, ErrCorrupt}
	}
	return &tableError{msg: fmt.Sprintf(format, args...), kinds: kinds}
}

// readAt reads exactly n bytes at off, refusing reads past size (so a
// bogus table cannot make us read or allocate beyond the disk).
func readAt(r io.ReaderAt, size, off int64, n int, what string) ([]byte, error) {
	if off < 0 || n < 0 || off > size || int64(n) > size-off {
		return nil, corrupt(ErrOutside, "%s: bytes %d-%d lie past the end of the disk (%d bytes)", what, off, off+int64(n), size)
	}
	b := make([]byte, n)
	got, err := r.ReadAt(b, off)
	if got == n {
		return b, nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return nil, fmt.Errorf("read %s at byte %d: %w", what, off, err)
}

// checkOverlap reports the first pair of overlapping extents in parts
// (sorted by Start); name formats a partition for the message.
func checkOverlap(parts []Partition, name func(Partition) string) error {
	for i := 1; i < len(parts); i++ {
		a, b := parts[i-1], parts[i]
		if b.Start < a.End() {
			return corrupt(ErrOverlap, "%s and %s overlap: %s ends at byte %d, %s starts at byte %d",
				name(a), name(b), name(a), a.End(), name(b), b.Start)
		}
	}
	return nil
}

func sortPartitions(p []Partition) {
	slices.SortStableFunc(p, func(a, b Partition) int { return cmpInt64(a.Start, b.Start) })
}

func sortAreas(a []Area) {
	slices.SortStableFunc(a, func(x, y Area) int { return cmpInt64(x.Offset, y.Offset) })
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func le16(b []byte) uint16 { return uint16(b[0]) | uint16(b[1])<<8 }
func le32(b []byte) uint32 { return uint32(le16(b)) | uint32(le16(b[2:]))<<16 }
func le64(b []byte) uint64 { return uint64(le32(b)) | uint64(le32(b[4:]))<<32 }
