package fat

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Info describes a FAT or exFAT filesystem.
type Info struct {
	FSType     string // "fat12", "fat16", "fat32", "exfat"
	BlockSize  int64  // cluster size in bytes
	Blocks     uint64 // total clusters
	UsedBlocks uint64 // used clusters: the ones UsedExtents emits (bad clusters excluded)
	Label      string // volume label, trailing spaces removed
	UUID       string // volume serial number as "ABCD-1234"
	Notes      []string
}

var (
	// ErrNotFound means the device does not hold a FAT or exFAT filesystem.
	ErrNotFound = errors.New("fat: not a FAT12/16/32 or exFAT filesystem")
	// ErrCorrupt means the device holds a FAT or exFAT filesystem whose
	// structures contradict each other; check it with fsck.fat/fsck.exfat
	// or capture the partition raw.
	ErrCorrupt = errors.New("fat: corrupt filesystem")
	// ErrTruncated means the filesystem claims more bytes than the device
	// has: the partition or image was cut short.
	ErrTruncated = errors.New("fat: filesystem extends past the end of the device")
)

// fsError carries a message that names the structure and field at fault and
// matches ErrCorrupt or ErrTruncated under errors.Is.
type fsError struct {
	kind error
	msg  string
}

func (e *fsError) Error() string        { return e.msg }
func (e *fsError) Is(target error) bool { return target == e.kind }

func corruptf(format string, args ...any) error {
	return &fsError{kind: ErrCorrupt, msg: "fat: " + fmt.Sprintf(format, args...)}
}

func truncatedf(format string, args ...any) error {
	return &fsError{kind: ErrTruncated, msg: "fat: " + fmt.Sprintf(format, args...)}
}

func notFoundf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrNotFound}, args...)...)
}

// volume is a parsed FAT or exFAT boot sector.
type volume interface {
	// scan emits every used extent in increasing order and returns the
	// count of used clusters it found.
	scan(ctx context.Context, r io.ReaderAt, m *merger) (scanResult, error)
	// describe fills Info from the boot sector, the scan and the root
	// directory.
	describe(ctx context.Context, r io.ReaderAt, res scanResult) (*Info, error)
}

type scanResult struct {
	used uint64 // clusters emitted
	bad  uint64 // clusters marked bad (FAT12/16/32 only)
}

// Probe reports the filesystem on r, a device or image of size bytes. It
// reads the whole FAT (or exFAT allocation bitmap) to count used clusters.
// It returns an error wrapping ErrNotFound when r holds no FAT or exFAT
// filesystem, and one wrapping ErrCorrupt or ErrTruncated when it does but
// the structures are inconsistent.
func Probe(r io.ReaderAt, size int64) (*Info, error) {
	ctx := context.Background()
	v, err := open(ctx, r, size)
	if err != nil {
		return nil, err
	}
	res, err := v.scan(ctx, r, &merger{})
	if err != nil {
		return nil, err
	}
	return v.describe(ctx, r, res)
}

// UsedExtents calls emit for every used byte range of the filesystem on r,
// in increasing order, non-overlapping, with adjacent ranges merged, all
// within [0, size). It stops at the first error from emit or ctx and
// returns it.
func UsedExtents(ctx context.Context, r io.ReaderAt, size int64, emit func(off, length int64) error) error {
	v, err := open(ctx, r, size)
	if err != nil {
		return err
	}
	m := &merger{emit: emit, ctx: ctx}
	if _, err := v.scan(ctx, r, m); err != nil {
		return err
	}
	return m.flush()
}

// bootSectorSize is how much of sector 0 holds every field we read; sectors
// can be larger, but the BPB and the signature sit in the first 512 bytes.
const bootSectorSize = 512

func open(ctx context.Context, r io.ReaderAt, size int64) (volume, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if size < bootSectorSize {
		return nil, notFoundf("device of %d bytes is smaller than a boot sector", size)
	}
	b := make([]byte, bootSectorSize)
	if err := readFull(r, b, 0, "boot sector"); err != nil {
		return nil, err
	}
	// Return nil interfaces, not typed nil pointers, on error.
	if string(b[3:11]) == "EXFAT   " {
		v, err := openExFAT(r, size, b)
		if err != nil {
			return nil, err
		}
		return v, nil
	}
	v, err := openFAT(r, size, b)
	if err != nil {
		return nil, err
	}
	return v, nil
}

// readFull reads len(p) bytes at off. A short read means the device is
// smaller than its filesystem says.
func readFull(r io.ReaderAt, p []byte, off int64, what string) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return truncatedf("%s at offset %d: device ends after %d of %d bytes", what, off, n, len(p))
	}
	return fmt.Errorf("fat: read %s at offset %d: %w", what, off, err)
}

// merger joins extents that arrive in non-decreasing start order, merging
// overlapping and adjacent ones, and hands them to emit. A nil emit only
// counts.
type merger struct {
	emit       func(off, length int64) error
	ctx        context.Context
	start, end int64
	have       bool
	emitted    int
}

func (m *merger) add(off, length int64) error {
	if length <= 0 {
		return nil
	}
	end := off + length
	if m.have {
		if off < m.start {
			return fmt.Errorf("fat: internal error: extent at %d after extent at %d", off, m.start)
		}
		if off <= m.end {
			if end > m.end {
				m.end = end
			}
			return nil
		}
		if err := m.flush(); err != nil {
			return err
		}
	}
	m.start, m.end, m.have = off, end, true
	return nil
}

func (m *merger) flush() error {
	if !m.have {
		return nil
	}
	m.have = false
	if m.emit == nil {
		return nil
	}
	m.emitted++
	// A slow consumer can make emitting the bulk of the work.
	if m.ctx != nil && m.emitted%4096 == 0 {
		if err := m.ctx.Err(); err != nil {
			return err
		}
	}
	return m.emit(m.start, m.end-m.start)
}

func le16(b []byte) uint16 { return binary.LittleEndian.Uint16(b) }
func le32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }
func le64(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }

func serialString(s uint32) string {
	return fmt.Sprintf("%04X-%04X", s>>16, s&0xFFFF)
}
