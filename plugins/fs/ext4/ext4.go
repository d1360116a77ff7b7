package ext4

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
)

var (
	// ErrNotFound means the device holds no ext2/3/4 superblock.
	ErrNotFound = errors.New("ext4: no ext2/3/4 superblock")
	// ErrCorrupt means the filesystem is there but its metadata is
	// inconsistent; the message says which structure.
	ErrCorrupt = errors.New("ext4: corrupt metadata")
	// ErrTruncated means the filesystem extends past the end of the device.
	ErrTruncated = errors.New("ext4: filesystem extends past end of device")
	// ErrUnsupported means the used blocks cannot be determined safely;
	// the caller should copy the device raw.
	ErrUnsupported = errors.New("ext4: unsupported filesystem, copy raw")
)

// Info describes a probed filesystem.
type Info struct {
	FSType      string // "ext2", "ext3", "ext4"
	BlockSize   int64
	Blocks      uint64 // total blocks of the filesystem
	UsedBlocks  uint64 // blocks that UsedExtents reports
	Label, UUID string
	Notes       []string // e.g. "features: has_journal ext_attr ..."
}

// Probe reports whether r (a partition or filesystem image of the given
// size) holds an ext2/3/4 filesystem. It returns an error wrapping
// ErrNotFound when it doesn't, and other errors when it does but the
// metadata is corrupt.
//
// UsedBlocks comes from the group descriptors' free counts, which the
// kernel keeps in step with the bitmaps: on a filesystem that e2fsck finds
// clean, UsedBlocks*BlockSize is exactly the byte total UsedExtents
// reports, and equals (Block count - Free blocks) * Block size as dumpe2fs
// prints them. When a note starts with "capture raw: ", UsedExtents will
// return ErrUnsupported; UsedBlocks is then 0 if the group layout could not
// even be read.
func Probe(r io.ReaderAt, size int64) (*Info, error) {
	s, err := parseSuper(r, size)
	if err != nil {
		return nil, err
	}
	info := &Info{
		FSType:    s.fsType(),
		BlockSize: s.blockSize,
		Blocks:    s.blocksCount,
		Label:     s.label,
		UUID:      formatUUID(s.uuid),
		Notes:     []string{"features: " + s.featureNames()},
	}
	if s.unsupported != "" {
		info.Notes = append(info.Notes, "capture raw: "+s.unsupported)
	}
	if rest := size - int64(s.blocksCount)<<s.blockLog; rest > 0 {
		info.Notes = append(info.Notes, fmt.Sprintf("filesystem ends %d bytes before the end of the device; those bytes are not reported", rest))
	}
	if s.layoutUnknown {
		return info, nil
	}
	if s.clusterLog > 0 {
		info.Notes = append(info.Notes, fmt.Sprintf("bigalloc: %d-byte clusters, used clusters reported whole", s.blockSize<<s.clusterLog))
	}
	dr := newDescReader(s, r)
	used := s.firstDataBlock // block 0 of 1 KiB filesystems: the boot block
	var uninit uint64
	for g := range s.groups {
		d, err := dr.get(g)
		if err != nil {
			return nil, err
		}
		freeBlocks := d.freeClusters << s.clusterLog
		if n := s.groupBlocks(g); freeBlocks < n {
			used += n - freeBlocks
		}
		if d.blockUninit(s) {
			uninit++
		}
	}
	info.UsedBlocks = used
	if uninit > 0 {
		info.Notes = append(info.Notes, fmt.Sprintf("%d of %d groups have uninitialised block bitmaps (computed)", uninit, s.groups))
	}
	return info, nil
}

// blockRange is a half-open range of block numbers.
type blockRange struct{ start, end uint64 }

// UsedExtents calls emit with every used byte range of the filesystem, in
// increasing offset order, non-overlapping, adjacent ranges merged, all
// within [0,size): the boot area and primary superblock, superblock and
// descriptor backups, reserved GDT blocks, bitmaps, inode tables, the
// journal and every allocated block. It reads one bitmap block at a time
// and holds one pending range, so memory does not grow with fragmentation.
func UsedExtents(ctx context.Context, r io.ReaderAt, size int64, emit func(off, length int64) error) error {
	s, err := parseSuper(r, size)
	if err != nil {
		return err
	}
	if s.unsupported != "" {
		return fmt.Errorf("%w: %s", ErrUnsupported, s.unsupported)
	}
	dr := newDescReader(s, r)

	// Pass 1: validate every descriptor and note which groups have a
	// bitmap to compute, before emitting anything.
	uninit := make([]uint64, (s.groups+63)/64)
	anyUninit := false
	for g := range s.groups {
		if g%256 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		d, err := dr.get(g)
		if err != nil {
			return err
		}
		if d.blockUninit(s) {
			uninit[g/64] |= 1 << (g % 64)
			anyUninit = true
		}
	}
	isUninit := func(g uint64) bool { return uninit[g/64]&(1<<(g%64)) != 0 }

	// Pass 2: with flex_bg a group's bitmaps and inode table may live in
	// another group. Collect those landing in uninitialised groups (mke2fs
	// avoids this, so the list is normally empty).
	var foreign []blockRange
	if anyUninit {
		for g := range s.groups {
			if g%256 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			d, err := dr.get(g)
			if err != nil {
				return err
			}
			for _, br := range d.metaRanges(s) {
				// Cut at group boundaries: each part lies in one group.
				for br.start < br.end {
					t := (br.start - s.firstDataBlock) / s.blocksPerGroup
					stop := min(br.end, s.groupFirstBlock(t)+s.blocksPerGroup)
					if t != g && isUninit(t) {
						foreign = append(foreign, blockRange{br.start, stop})
					}
					br.start = stop
				}
			}
		}
		slices.SortFunc(foreign, func(a, b blockRange) int { return cmp.Compare(a.start, b.start) })
	}

	// Pass 3: emit.
	m := &merger{emit: emit}
	if err := m.add(0, bootAreaEnd); err != nil {
		return err
	}
	bm := make([]byte, s.blockSize)
	bitmapBytes := int(s.clustersPerGrp / 8)
	fi := 0
	for g := range s.groups {
		if err := ctx.Err(); err != nil {
			return err
		}
		d, err := dr.get(g)
		if err != nil {
			return err
		}
		first := s.groupFirstBlock(g)
		nblocks := s.groupBlocks(g)
		end := first + nblocks
		nclusters := int((nblocks + 1<<s.clusterLog - 1) >> s.clusterLog)
		if isUninit(g) {
			clear(bm)
			base, nb := s.baseMeta(g)
			for _, br := range base[:nb] {
				markClusters(s, bm, first, end, br)
			}
			for _, br := range d.metaRanges(s) {
				markClusters(s, bm, first, end, br)
			}
			for ; fi < len(foreign) && foreign[fi].start < end; fi++ {
				markClusters(s, bm, first, end, foreign[fi])
			}
		} else {
			if err := readFull(r, bm, int64(d.blockBitmap)<<s.blockLog); err != nil {
				return fmt.Errorf("ext4: group %d: read block bitmap at block %d: %w", g, d.blockBitmap, err)
			}
			if s.metadataCsum() {
				got := crc32c(s.csumSeed, bm[:bitmapBytes])
				if !d.bitmapCsumHi {
					got &= 0xFFFF
				}
				if got != d.bitmapCsum {
					return fmt.Errorf("%w: group %d block bitmap at block %d: checksum 0x%x, computed 0x%x: run e2fsck",
						ErrCorrupt, g, d.blockBitmap, d.bitmapCsum, got)
				}
			}
		}
		// Each run of used clusters becomes one byte range.
		for a := nextBit(bm, 0, nclusters, true); a < nclusters; a = nextBit(bm, a, nclusters, true) {
			b := nextBit(bm, a, nclusters, false)
			start := first + uint64(a)<<s.clusterLog
			stop := min(first+uint64(b)<<s.clusterLog, end)
			if err := m.add(int64(start)<<s.blockLog, int64(stop)<<s.blockLog); err != nil {
				return err
			}
			a = b
		}
	}
	return m.flush()
}

// metaRanges is the group's own block bitmap, inode bitmap and inode table.
func (d *groupDesc) metaRanges(s *super) [3]blockRange {
	return [3]blockRange{
		{d.blockBitmap, d.blockBitmap + 1},
		{d.inodeBitmap, d.inodeBitmap + 1},
		{d.inodeTable, d.inodeTable + s.itableBlocks()},
	}
}

// markClusters sets the bits of the clusters that br covers inside the
// group of blocks [first, end).
func markClusters(s *super, bm []byte, first, end uint64, br blockRange) {
	a, b := max(br.start, first), min(br.end, end)
	if a < b {
		ratio := uint64(1) << s.clusterLog
		setBits(bm, int((a-first)>>s.clusterLog), int((b-first+ratio-1)>>s.clusterLog))
	}
}
