package xfs

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Errors returned by this package; test them with errors.Is. Returned
// errors add context after the sentinel's text (which AG, which block).
var (
	ErrNotFound    = errors.New("xfs: not an XFS filesystem")
	ErrCorrupt     = errors.New("xfs: corrupt filesystem (check it with xfs_repair -n or capture the partition raw)")
	ErrTruncated   = errors.New("xfs: device is smaller than the filesystem")
	ErrUnsupported = errors.New("xfs: unsupported filesystem version")
)

// Info describes a filesystem found by [Probe].
type Info struct {
	FSType     string // always "xfs"
	BlockSize  int64  // filesystem block size in bytes
	Blocks     uint64 // sb_dblocks: blocks in the data section
	UsedBlocks uint64 // dblocks - Σ agf_freeblks (AGFL and btree blocks count as used)
	Label      string // sb_fname
	UUID       string // sb_uuid, as blkid shows it
	Notes      []string
}

// Probe returns an error wrapping [ErrNotFound] when r does not hold an
// XFS filesystem, and an error wrapping [ErrCorrupt], [ErrTruncated] or
// [ErrUnsupported] when it does but cannot be read. size is the size of
// the device or partition in bytes. Probe reads the superblock and every
// AGF (one sector per AG); it takes the free-block counts from the AGFs
// without walking the btrees.
func Probe(r io.ReaderAt, size int64) (*Info, error) {
	ctx := context.Background()
	fs, err := open(r, size)
	if err != nil {
		return nil, err
	}
	sb := fs.sb
	info := &Info{
		FSType:    "xfs",
		BlockSize: sb.blockSize,
		Blocks:    sb.dblocks,
		Label:     sb.label,
		UUID:      formatUUID(sb.uuid),
		Notes:     sb.notes(),
	}
	var free uint64
	for ag := uint32(0); ag < sb.agCount; ag++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		agf, err := fs.readAGF(ag)
		if err != nil {
			return nil, err
		}
		free += uint64(agf.freeBlocks)
	}
	if free > sb.dblocks {
		return nil, fmt.Errorf("%w: AGFs count %d free blocks, more than the %d in the filesystem", ErrCorrupt, free, sb.dblocks)
	}
	info.UsedBlocks = sb.dblocks - free
	return info, nil
}

// UsedExtents calls emit for every byte range of r that the filesystem
// uses, in increasing order, non-overlapping, with adjacent ranges merged,
// all within [0, size). It walks each AG's by-block-number free-space
// btree and streams the gaps between free extents; memory does not grow
// with the number of extents. An error from emit is returned as is.
func UsedExtents(ctx context.Context, r io.ReaderAt, size int64, emit func(off, length int64) error) error {
	fs, err := open(r, size)
	if err != nil {
		return err
	}
	m := &merger{emit: emit, limit: size}
	sb := fs.sb
	for ag := uint32(0); ag < sb.agCount; ag++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		agf, err := fs.readAGF(ag)
		if err != nil {
			return err
		}
		base := int64(ag) * int64(sb.agBlocks)
		var cursor uint32 // first AG block not yet accounted for
		var free uint64
		err = fs.walkFree(ctx, ag, agf, func(start, count uint32) error {
			free += uint64(count)
			if start > cursor {
				if err := m.add((base+int64(cursor))*sb.blockSize, int64(start-cursor)*sb.blockSize); err != nil {
					return err
				}
			}
			cursor = start + count
			return nil
		})
		if err != nil {
			return err
		}
		if free != uint64(agf.freeBlocks) {
			return fmt.Errorf("%w: AG %d: bno btree holds %d free blocks, agf_freeblks says %d", ErrCorrupt, ag, free, agf.freeBlocks)
		}
		if cursor < agf.length {
			if err := m.add((base+int64(cursor))*sb.blockSize, int64(agf.length-cursor)*sb.blockSize); err != nil {
				return err
			}
		}
	}
	return m.flush()
}

// merger turns increasing (possibly touching) byte ranges into the merged,
// clipped stream that emit must see.
type merger struct {
	emit       func(off, length int64) error
	limit      int64
	start, end int64
	pending    bool
}

func (m *merger) add(off, length int64) error {
	if length <= 0 || off >= m.limit {
		return nil
	}
	end := min(off+length, m.limit)
	if m.pending {
		if off < m.start {
			return fmt.Errorf("xfs: internal error: extent at %d after extent at %d", off, m.start)
		}
		if off <= m.end {
			m.end = max(m.end, end)
			return nil
		}
		if err := m.emit(m.start, m.end-m.start); err != nil {
			return err
		}
	}
	m.start, m.end, m.pending = off, end, true
	return nil
}

func (m *merger) flush() error {
	if !m.pending {
		return nil
	}
	m.pending = false
	return m.emit(m.start, m.end-m.start)
}

func formatUUID(u [16]byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}
