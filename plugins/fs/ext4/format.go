package ext4

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math/bits"
	"strings"
)

// On-disk layout used here (all fields little endian), from the kernel's
// Documentation/filesystems/ext4. Only the fields this package needs.
//
// Superblock, 1024 bytes at byte offset 1024 of the device:
//
//	0x000 u32 s_inodes_count        0x004 u32 s_blocks_count_lo
//	0x00C u32 s_free_blocks_count_lo 0x014 u32 s_first_data_block
//	0x018 u32 s_log_block_size      0x01C u32 s_log_cluster_size
//	0x020 u32 s_blocks_per_group    0x024 u32 s_clusters_per_group
//	0x028 u32 s_inodes_per_group    0x038 u16 s_magic (0xEF53)
//	0x03A u16 s_state               0x04C u32 s_rev_level
//	0x058 u16 s_inode_size          0x05C u32 s_feature_compat
//	0x060 u32 s_feature_incompat    0x064 u32 s_feature_ro_compat
//	0x068 [16] s_uuid               0x078 [16] s_volume_name
//	0x0CE u16 s_reserved_gdt_blocks 0x0FE u16 s_desc_size
//	0x104 u32 s_first_meta_bg       0x150 u32 s_blocks_count_hi
//	0x158 u32 s_free_blocks_count_hi 0x175 u8 s_checksum_type
//	0x24C u32 s_backup_bgs[2]       0x270 u32 s_checksum_seed
//	0x3FC u32 s_checksum (crc32c of bytes 0x000-0x3FB)
//
// Group descriptor, 32 bytes, or s_desc_size (>= 64) with the 64bit feature:
//
//	0x00 u32 bg_block_bitmap_lo     0x04 u32 bg_inode_bitmap_lo
//	0x08 u32 bg_inode_table_lo      0x0C u16 bg_free_blocks_count_lo
//	0x12 u16 bg_flags               0x18 u16 bg_block_bitmap_csum_lo
//	0x1E u16 bg_checksum            0x20 u32 bg_block_bitmap_hi
//	0x24 u32 bg_inode_bitmap_hi     0x28 u32 bg_inode_table_hi
//	0x2C u16 bg_free_blocks_count_hi 0x38 u16 bg_block_bitmap_csum_hi
const (
	superblockOffset = 1024
	superblockSize   = 1024
	// bootAreaEnd is reported used on every filesystem: the 1024-byte boot
	// area plus the primary superblock.
	bootAreaEnd = superblockOffset + superblockSize

	magic = 0xEF53

	stateValid  = 0x0001 // cleanly unmounted
	stateErrors = 0x0002 // errors detected

	bgInodeUninit = 0x0001
	bgBlockUninit = 0x0002

	minBlockLog = 10
	maxBlockLog = 16 // 64 KiB blocks
)

// Feature bits. The names are those e2fsprogs prints.
const (
	compatHasJournal   = 0x0004
	compatResizeInode  = 0x0010
	compatSparseSuper2 = 0x0200

	incompatRecover    = 0x0004
	incompatJournalDev = 0x0008
	incompatMetaBG     = 0x0010
	incompat64Bit      = 0x0080
	incompatCsumSeed   = 0x2000

	roCompatSparseSuper  = 0x0001
	roCompatGdtCsum      = 0x0010
	roCompatBigalloc     = 0x0200
	roCompatMetadataCsum = 0x0400
)

type feature struct {
	bit  uint32
	name string
}

var (
	compatFeatures = []feature{
		{0x0001, "dir_prealloc"}, {0x0002, "imagic_inodes"}, {0x0004, "has_journal"},
		{0x0008, "ext_attr"}, {0x0010, "resize_inode"}, {0x0020, "dir_index"},
		{0x0040, "lazy_bg"}, {0x0080, "snapshot_bitmap"}, {0x0100, "exclude_bitmap"},
		{0x0200, "sparse_super2"}, {0x0400, "fast_commit"}, {0x0800, "stable_inodes"},
		{0x1000, "orphan_file"},
	}
	incompatFeatures = []feature{
		{0x0001, "compression"}, {0x0002, "filetype"}, {0x0004, "needs_recovery"},
		{0x0008, "journal_dev"}, {0x0010, "meta_bg"}, {0x0040, "extent"},
		{0x0080, "64bit"}, {0x0100, "mmp"}, {0x0200, "flex_bg"},
		{0x0400, "ea_inode"}, {0x1000, "dirdata"}, {0x2000, "metadata_csum_seed"},
		{0x4000, "large_dir"}, {0x8000, "inline_data"}, {0x10000, "encrypt"},
		{0x20000, "casefold"},
	}
	roCompatFeatures = []feature{
		{0x0001, "sparse_super"}, {0x0002, "large_file"}, {0x0004, "btree_dir"},
		{0x0008, "huge_file"}, {0x0010, "uninit_bg"}, {0x0020, "dir_nlink"},
		{0x0040, "extra_isize"}, {0x0080, "snapshot"}, {0x0100, "quota"},
		{0x0200, "bigalloc"}, {0x0400, "metadata_csum"}, {0x0800, "replica"},
		{0x1000, "read-only"}, {0x2000, "project"}, {0x4000, "shared_blocks"},
		{0x8000, "verity"}, {0x10000, "orphan_present"},
	}
)

// Features ext3 understands; anything else makes a journaled filesystem
// ext4 (the rule blkid uses). ext2 understands the same minus the journal.
const (
	ext3Incompat = 0x0002 | 0x0004 | 0x0010 // filetype, needs_recovery, meta_bg
	ext3RoCompat = 0x0001 | 0x0002 | 0x0004 // sparse_super, large_file, btree_dir
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32c continues a raw CRC32C (no pre- or post-inversion), as the kernel's
// crc32c_le does; Go's crc32.Update inverts on entry and exit.
func crc32c(crc uint32, p []byte) uint32 {
	return ^crc32.Update(^crc, castagnoli, p)
}

// crc16 is the kernel's lib/crc16 (poly 0x8005 reflected, no inversion),
// used by uninit_bg group descriptor checksums.
func crc16(crc uint16, p []byte) uint16 {
	for _, b := range p {
		crc ^= uint16(b)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

// super is the parsed, validated superblock with derived geometry.
type super struct {
	blockSize      int64
	blockLog       uint
	blocksCount    uint64
	firstDataBlock uint64
	blocksPerGroup uint64
	clustersPerGrp uint64
	clusterLog     uint // log2(blocks per cluster); 0 without bigalloc
	inodesPerGroup uint64
	inodeSize      uint64
	descSize       int
	groups         uint64
	gdtBlocks      uint64 // blocks holding the descriptor table (non-meta_bg layout)
	reservedGDT    uint64
	firstMetaBG    uint64
	backupBGs      [2]uint64
	state          uint16
	compat         uint32
	incompat       uint32
	roCompat       uint32
	csumSeed       uint32
	uuid           [16]byte
	label          string

	// unsupported says why UsedExtents must refuse this filesystem
	// (wrapped in ErrUnsupported); empty when it is fine.
	unsupported string
	// layoutUnknown means the group structures cannot even be read.
	layoutUnknown bool
}

func (s *super) metadataCsum() bool { return s.roCompat&roCompatMetadataCsum != 0 }

// groupCsum says whether descriptors carry checksums, which is also what
// makes the BLOCK_UNINIT flag meaningful.
func (s *super) groupCsum() bool {
	return s.roCompat&(roCompatMetadataCsum|roCompatGdtCsum) != 0
}

func (s *super) descsPerBlock() uint64 { return uint64(s.blockSize) / uint64(s.descSize) }

// itableBlocks is the length in blocks of one group's inode table.
func (s *super) itableBlocks() uint64 {
	return (s.inodesPerGroup*s.inodeSize + uint64(s.blockSize) - 1) / uint64(s.blockSize)
}

func (s *super) groupFirstBlock(g uint64) uint64 { return s.firstDataBlock + g*s.blocksPerGroup }

// groupBlocks is the number of blocks in group g: the last one is short.
func (s *super) groupBlocks(g uint64) uint64 {
	first := s.groupFirstBlock(g)
	return min(s.blocksPerGroup, s.blocksCount-first)
}

// hasSuper reports whether group g holds a superblock backup.
func (s *super) hasSuper(g uint64) bool {
	if g == 0 {
		return true
	}
	if s.compat&compatSparseSuper2 != 0 {
		return g == s.backupBGs[0] || g == s.backupBGs[1]
	}
	if g == 1 || s.roCompat&roCompatSparseSuper == 0 {
		return true
	}
	if g%2 == 0 {
		return false
	}
	return isPower(g, 3) || isPower(g, 5) || isPower(g, 7)
}

func isPower(n, base uint64) bool {
	for n%base == 0 {
		n /= base
	}
	return n == 1
}

// superBlockNr is the block holding group g's superblock (copy).
func (s *super) superBlockNr(g uint64) uint64 {
	if g == 0 {
		return superblockOffset >> s.blockLog
	}
	return s.groupFirstBlock(g)
}

// descBlockNr is where block i of the group descriptor table lives.
func (s *super) descBlockNr(i uint64) uint64 {
	if s.incompat&incompatMetaBG == 0 || i < s.firstMetaBG {
		return s.superBlockNr(0) + 1 + i
	}
	g := i * s.descsPerBlock()
	b := s.groupFirstBlock(g)
	if s.hasSuper(g) {
		b++
	}
	if s.firstDataBlock == 0 && s.blockSize == 1024 {
		// 1 KiB bigalloc: block 0 is the boot block, the superblock is block 1.
		b++
	}
	return b
}

// readFull reads len(p) bytes at off, treating a short read as an error.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func parseSuper(r io.ReaderAt, size int64) (*super, error) {
	if size < bootAreaEnd {
		return nil, fmt.Errorf("%w: device is %d bytes, too small for a superblock", ErrNotFound, size)
	}
	raw := make([]byte, superblockSize)
	if err := readFull(r, raw, superblockOffset); err != nil {
		return nil, fmt.Errorf("ext4: read superblock: %w", err)
	}
	le := binary.LittleEndian
	if m := le.Uint16(raw[0x38:]); m != magic {
		return nil, fmt.Errorf("%w (magic 0x%04x at byte %d)", ErrNotFound, m, superblockOffset+0x38)
	}
	s := &super{}
	s.state = le.Uint16(raw[0x3A:])
	rev := le.Uint32(raw[0x4C:])
	if rev > 1 {
		s.unsupported = fmt.Sprintf("superblock revision %d (only 0 and 1 exist)", rev)
		s.layoutUnknown = true
	}
	if rev >= 1 {
		s.compat = le.Uint32(raw[0x5C:])
		s.incompat = le.Uint32(raw[0x60:])
		s.roCompat = le.Uint32(raw[0x64:])
	}
	copy(s.uuid[:], raw[0x68:0x78])
	s.label = cString(raw[0x78:0x88])

	if s.metadataCsum() {
		if t := raw[0x175]; t != 1 {
			return nil, fmt.Errorf("%w: superblock: checksum type %d, only 1 (crc32c) exists", ErrCorrupt, t)
		}
		want := le.Uint32(raw[0x3FC:])
		if got := crc32c(^uint32(0), raw[:0x3FC]); got != want {
			return nil, fmt.Errorf("%w: superblock checksum 0x%08x, computed 0x%08x: run e2fsck", ErrCorrupt, want, got)
		}
		if s.incompat&incompatCsumSeed != 0 {
			s.csumSeed = le.Uint32(raw[0x270:])
		} else {
			s.csumSeed = crc32c(^uint32(0), s.uuid[:])
		}
	}

	logBS := le.Uint32(raw[0x18:])
	if logBS > maxBlockLog-minBlockLog {
		return nil, fmt.Errorf("%w: superblock: block size 2^(10+%d)", ErrCorrupt, logBS)
	}
	s.blockLog = uint(logBS) + minBlockLog
	s.blockSize = 1 << s.blockLog

	s.blocksCount = uint64(le.Uint32(raw[0x04:]))
	if s.incompat&incompat64Bit != 0 {
		s.blocksCount |= uint64(le.Uint32(raw[0x150:])) << 32
	}
	s.firstDataBlock = uint64(le.Uint32(raw[0x14:]))
	s.inodesPerGroup = uint64(le.Uint32(raw[0x28:]))
	s.reservedGDT = uint64(le.Uint16(raw[0xCE:]))
	s.firstMetaBG = uint64(le.Uint32(raw[0x104:]))
	s.backupBGs = [2]uint64{uint64(le.Uint32(raw[0x24C:])), uint64(le.Uint32(raw[0x250:]))}
	s.inodeSize = 128
	if rev >= 1 {
		s.inodeSize = uint64(le.Uint16(raw[0x58:]))
	}

	if s.blocksCount > uint64(1<<63-1)>>s.blockLog {
		return nil, fmt.Errorf("%w: superblock: block count %d too large", ErrCorrupt, s.blocksCount)
	}
	if fsBytes := int64(s.blocksCount) << s.blockLog; fsBytes > size {
		return nil, fmt.Errorf("%w: filesystem is %d bytes (%d blocks of %d) but the device holds %d: truncated image or wrong partition size",
			ErrTruncated, fsBytes, s.blocksCount, s.blockSize, size)
	}
	if s.incompat&incompatJournalDev != 0 {
		// An external journal has no block groups: copy it raw.
		s.unsupported = "external journal device (journal_dev)"
		s.layoutUnknown = true
	}
	if unknown := unknownFeatures(s); unknown != "" {
		s.unsupported = "unknown features " + unknown
		s.layoutUnknown = true
	}
	if s.layoutUnknown {
		return s, nil
	}

	bpg := uint64(le.Uint32(raw[0x20:]))
	if s.roCompat&roCompatBigalloc != 0 {
		logCS := le.Uint32(raw[0x1C:])
		if logCS < logBS || logCS-logBS > 16 {
			return nil, fmt.Errorf("%w: superblock: cluster size 2^(10+%d) with block size %d", ErrCorrupt, logCS, s.blockSize)
		}
		s.clusterLog = uint(logCS - logBS)
		s.clustersPerGrp = uint64(le.Uint32(raw[0x24:]))
		if bpg != s.clustersPerGrp<<s.clusterLog {
			return nil, fmt.Errorf("%w: superblock: %d blocks per group is not %d clusters of %d blocks",
				ErrCorrupt, bpg, s.clustersPerGrp, 1<<s.clusterLog)
		}
		if s.firstDataBlock != 0 {
			return nil, fmt.Errorf("%w: superblock: bigalloc with first data block %d", ErrCorrupt, s.firstDataBlock)
		}
	} else {
		s.clustersPerGrp = bpg
	}
	s.blocksPerGroup = bpg
	bitsPerBlock := uint64(s.blockSize) * 8
	switch {
	case s.clustersPerGrp == 0 || s.clustersPerGrp > bitsPerBlock || s.clustersPerGrp%8 != 0:
		return nil, fmt.Errorf("%w: superblock: %d clusters per group (bitmap holds %d)", ErrCorrupt, s.clustersPerGrp, bitsPerBlock)
	case s.inodesPerGroup == 0 || s.inodesPerGroup > bitsPerBlock:
		return nil, fmt.Errorf("%w: superblock: %d inodes per group (bitmap holds %d)", ErrCorrupt, s.inodesPerGroup, bitsPerBlock)
	case s.inodeSize < 128 || s.inodeSize > uint64(s.blockSize) || bits.OnesCount64(s.inodeSize) != 1:
		return nil, fmt.Errorf("%w: superblock: inode size %d", ErrCorrupt, s.inodeSize)
	case s.firstDataBlock > 1 || (s.blockSize > 1024 && s.firstDataBlock != 0):
		return nil, fmt.Errorf("%w: superblock: first data block %d with block size %d", ErrCorrupt, s.firstDataBlock, s.blockSize)
	case s.blocksCount <= s.firstDataBlock:
		return nil, fmt.Errorf("%w: superblock: block count %d", ErrCorrupt, s.blocksCount)
	case s.reservedGDT > uint64(s.blockSize)/4:
		return nil, fmt.Errorf("%w: superblock: %d reserved GDT blocks", ErrCorrupt, s.reservedGDT)
	}

	s.descSize = 32
	if s.incompat&incompat64Bit != 0 {
		s.descSize = int(le.Uint16(raw[0xFE:]))
		if s.descSize < 64 || s.descSize > 1024 || bits.OnesCount(uint(s.descSize)) != 1 {
			return nil, fmt.Errorf("%w: superblock: group descriptor size %d", ErrCorrupt, s.descSize)
		}
	}
	s.groups = (s.blocksCount - s.firstDataBlock + bpg - 1) / bpg
	if s.groups > 1<<32 {
		return nil, fmt.Errorf("%w: superblock: %d block groups", ErrCorrupt, s.groups)
	}
	if ic := uint64(le.Uint32(raw[0x00:])); ic != s.groups*s.inodesPerGroup {
		return nil, fmt.Errorf("%w: superblock: inode count %d is not %d groups of %d inodes", ErrCorrupt, ic, s.groups, s.inodesPerGroup)
	}
	s.gdtBlocks = (s.groups + s.descsPerBlock() - 1) / s.descsPerBlock()
	if s.incompat&incompatMetaBG != 0 && s.firstMetaBG > s.gdtBlocks {
		return nil, fmt.Errorf("%w: superblock: first meta_bg %d beyond the %d descriptor blocks", ErrCorrupt, s.firstMetaBG, s.gdtBlocks)
	}

	switch {
	case s.incompat&incompatRecover != 0:
		s.unsupported = "journal needs recovery (filesystem mounted or not cleanly unmounted): unmount it, or run e2fsck -fy, before capturing"
	case s.state&stateErrors != 0:
		s.unsupported = "errors recorded in the superblock: run e2fsck -fy before capturing"
	case s.state&stateValid == 0:
		s.unsupported = "not cleanly unmounted (mounted, or crashed): unmount it, or run e2fsck -fy, before capturing"
	}
	return s, nil
}

func unknownFeatures(s *super) string {
	var names []string
	for _, f := range []struct {
		kind string
		have uint32
		set  []feature
	}{{"incompat", s.incompat, incompatFeatures}, {"ro_compat", s.roCompat, roCompatFeatures}} {
		rest := f.have
		for _, k := range f.set {
			rest &^= k.bit
		}
		if rest != 0 {
			names = append(names, fmt.Sprintf("%s 0x%x", f.kind, rest))
		}
	}
	return strings.Join(names, ", ")
}

// featureNames lists the features in the order dumpe2fs prints them.
func (s *super) featureNames() string {
	var names []string
	for _, f := range []struct {
		have uint32
		set  []feature
	}{{s.compat, compatFeatures}, {s.incompat, incompatFeatures}, {s.roCompat, roCompatFeatures}} {
		for _, k := range f.set {
			if f.have&k.bit != 0 {
				names = append(names, k.name)
			}
		}
	}
	return strings.Join(names, " ")
}

// fsType classifies as blkid does: ext4 as soon as a feature ext3 lacks is
// present, ext3 with a journal, else ext2.
func (s *super) fsType() string {
	beyond := s.incompat&^ext3Incompat != 0 || s.roCompat&^ext3RoCompat != 0
	switch {
	case beyond:
		return "ext4"
	case s.compat&compatHasJournal != 0:
		return "ext3"
	default:
		return "ext2"
	}
}

func cString(b []byte) string {
	if i := strings.IndexByte(string(b), 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func formatUUID(u [16]byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}
