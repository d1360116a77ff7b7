package ntfs

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Errors returned by this package; test them with errors.Is. Returned
// errors add context after the sentinel's text (which record, which run).
var (
	ErrNotFound    = errors.New("ntfs: not an NTFS filesystem")
	ErrCorrupt     = errors.New("ntfs: corrupt filesystem (check it with chkdsk /f or capture the partition raw)")
	ErrTruncated   = errors.New("ntfs: device is smaller than the filesystem")
	ErrUnsupported = errors.New("ntfs: unsupported layout")
)

// Info describes a volume found by [Probe].
type Info struct {
	FSType     string // always "ntfs"
	BlockSize  int64  // cluster size in bytes
	Blocks     uint64 // clusters in the volume
	UsedBlocks uint64 // clusters marked in use in $Bitmap
	Label      string // volume name from $Volume
	UUID       string // volume serial number, 16 upper-case hex digits (as blkid shows it)
	Notes      []string
}

// Options changes what [UsedExtentsWithOptions] reports.
type Options struct {
	// SkipPagefile leaves out the data clusters of \pagefile.sys.
	SkipPagefile bool
	// SkipHiberfil leaves out the data clusters of \hiberfil.sys except
	// its first 4 KiB (its header page), which are always copied so that
	// the restored header matches the source's and Windows does not
	// resume from stale bytes. If the header shows a pending resume,
	// neither file is skipped (see the package documentation).
	SkipHiberfil bool
}

// Probe returns an error wrapping [ErrNotFound] when r does not hold an
// NTFS volume, and an error wrapping [ErrCorrupt], [ErrTruncated] or
// [ErrUnsupported] when it does but cannot be read. size is the size of
// the device or partition in bytes. Probe reads the whole $Bitmap to count
// used clusters.
func Probe(r io.ReaderAt, size int64) (*Info, error) {
	ctx := context.Background()
	v, err := open(ctx, r, size)
	if err != nil {
		return nil, err
	}
	info := &Info{
		FSType:    "ntfs",
		BlockSize: v.bs.clusterSize,
		Blocks:    uint64(v.bs.clusters),
		UUID:      fmt.Sprintf("%016X", v.bs.serial),
	}
	vol, err := v.volumeInfo(ctx)
	if err != nil {
		return nil, err
	}
	info.Label = vol.label
	info.Notes = append(info.Notes, fmt.Sprintf("NTFS version %d.%d", vol.major, vol.minor))
	if vol.dirty {
		info.Notes = append(info.Notes, "volume is marked dirty: Windows was not shut down cleanly or chkdsk is pending")
	}
	info.Notes = append(info.Notes, v.tailNotes()...)

	bm, err := v.bitmap(ctx)
	if err != nil {
		return nil, err
	}
	var used uint64
	err = bm.scan(ctx, func(first, end int64) error {
		used += uint64(end - first)
		return nil
	})
	if err != nil {
		return nil, err
	}
	info.UsedBlocks = used
	return info, nil
}

// UsedExtents calls emit for every byte range of r that the volume uses,
// in increasing order, non-overlapping, with adjacent ranges merged, all
// within [0, size). It is [UsedExtentsWithOptions] with zero Options.
func UsedExtents(ctx context.Context, r io.ReaderAt, size int64, emit func(off, length int64) error) error {
	return UsedExtentsWithOptions(ctx, r, size, Options{}, emit)
}

// UsedExtentsWithOptions is [UsedExtents] with the choice to leave out the
// contents of pagefile.sys and hiberfil.sys. It streams: memory does not
// grow with the number of extents. An error from emit is returned as is.
func UsedExtentsWithOptions(ctx context.Context, r io.ReaderAt, size int64, opts Options, emit func(off, length int64) error) error {
	v, err := open(ctx, r, size)
	if err != nil {
		return err
	}
	bm, err := v.bitmap(ctx)
	if err != nil {
		return err
	}
	var skip []clusterRange
	if opts.SkipPagefile || opts.SkipHiberfil {
		skip, err = v.skipRanges(ctx, opts)
		if err != nil {
			return err
		}
	}

	m := &merger{emit: emit, limit: size}
	// $Boot is 8 KiB whatever the cluster size; the bitmap marks it too,
	// but the boot sector must never depend on a bitmap bit.
	if err := m.add(0, max(bootAreaSize, v.bs.clusterSize)); err != nil {
		return err
	}
	cs := v.bs.clusterSize
	si := 0
	err = bm.scan(ctx, func(first, end int64) error {
		// Subtract the skipped ranges (sorted, disjoint) from [first,end).
		for first < end {
			for si < len(skip) && skip[si].end <= first {
				si++
			}
			if si == len(skip) || skip[si].first >= end {
				return m.add(first*cs, (end-first)*cs)
			}
			if skip[si].first > first {
				if err := m.add(first*cs, (skip[si].first-first)*cs); err != nil {
					return err
				}
			}
			first = skip[si].end
		}
		return nil
	})
	if err != nil {
		return err
	}
	// The tail: partial cluster, backup boot sector, last device sector.
	volEnd := v.bs.clusters * cs
	if err := m.add(volEnd, v.bs.backupOffset()+v.bs.sectorSize-volEnd); err != nil {
		return err
	}
	if err := m.add(size-v.bs.sectorSize, v.bs.sectorSize); err != nil {
		return err
	}
	return m.flush()
}

// bootAreaSize is the size of $Boot: 16 sectors of 512 bytes.
const bootAreaSize = 8192

// merger turns increasing (possibly overlapping or touching) byte ranges
// into the merged, clipped stream that emit must see.
type merger struct {
	emit       func(off, length int64) error
	limit      int64 // device size: nothing at or past it is emitted
	start, end int64
	pending    bool
}

func (m *merger) add(off, length int64) error {
	if off < 0 {
		length += off
		off = 0
	}
	if length <= 0 || off >= m.limit {
		return nil
	}
	end := off + length
	if end > m.limit || end < off {
		end = m.limit
	}
	if m.pending {
		if off < m.start {
			// Callers feed increasing offsets; this guards the invariant
			// emit relies on rather than silently reordering.
			return fmt.Errorf("ntfs: internal error: extent at %d after extent at %d", off, m.start)
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
