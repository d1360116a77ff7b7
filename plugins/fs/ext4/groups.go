package ext4

import (
	"encoding/binary"
	"fmt"
	"io"
)

// groupDesc is the part of a block group descriptor this package uses.
type groupDesc struct {
	blockBitmap  uint64
	inodeBitmap  uint64
	inodeTable   uint64
	freeClusters uint64
	flags        uint16
	bitmapCsum   uint32
	bitmapCsumHi bool // bitmapCsum holds 32 bits, not 16
}

// blockUninit reports whether the group's block bitmap was never written
// and must be computed. The flag only counts when descriptors are
// checksummed, as in the kernel.
func (d *groupDesc) blockUninit(s *super) bool {
	return s.groupCsum() && d.flags&bgBlockUninit != 0
}

// descReader reads group descriptors in any order, caching one block of the
// descriptor table: sequential access reads each table block once.
type descReader struct {
	s      *super
	r      io.ReaderAt
	buf    []byte
	cached uint64 // table block index held in buf, valid when loaded
	loaded bool
	// scratch holds checksum inputs: slices passed to the crc code escape,
	// so a buffer reused across groups avoids an allocation per group.
	scratch []byte
}

func newDescReader(s *super, r io.ReaderAt) *descReader {
	return &descReader{s: s, r: r, buf: make([]byte, s.blockSize), scratch: make([]byte, 6)}
}

// get reads and validates the descriptor of group g.
func (d *descReader) get(g uint64) (groupDesc, error) {
	s := d.s
	dpb := s.descsPerBlock()
	idx := g / dpb
	if !d.loaded || d.cached != idx {
		blk := s.descBlockNr(idx)
		if blk >= s.blocksCount {
			return groupDesc{}, fmt.Errorf("%w: group %d descriptor: descriptor block %d at block %d beyond end of filesystem (%d blocks)",
				ErrCorrupt, g, idx, blk, s.blocksCount)
		}
		if err := readFull(d.r, d.buf, int64(blk)<<s.blockLog); err != nil {
			return groupDesc{}, fmt.Errorf("ext4: group %d descriptor: read block %d: %w", g, blk, err)
		}
		d.cached, d.loaded = idx, true
	}
	off := int(g%dpb) * s.descSize
	raw := d.buf[off : off+s.descSize]
	if err := s.checkDescCsum(g, raw, d.scratch); err != nil {
		return groupDesc{}, err
	}
	desc := s.decodeDesc(raw)
	if err := s.checkDesc(g, &desc); err != nil {
		return groupDesc{}, err
	}
	return desc, nil
}

func (s *super) decodeDesc(raw []byte) groupDesc {
	le := binary.LittleEndian
	d := groupDesc{
		blockBitmap:  uint64(le.Uint32(raw[0x00:])),
		inodeBitmap:  uint64(le.Uint32(raw[0x04:])),
		inodeTable:   uint64(le.Uint32(raw[0x08:])),
		freeClusters: uint64(le.Uint16(raw[0x0C:])),
		flags:        le.Uint16(raw[0x12:]),
		bitmapCsum:   uint32(le.Uint16(raw[0x18:])),
	}
	if s.descSize >= 64 {
		d.blockBitmap |= uint64(le.Uint32(raw[0x20:])) << 32
		d.inodeBitmap |= uint64(le.Uint32(raw[0x24:])) << 32
		d.inodeTable |= uint64(le.Uint32(raw[0x28:])) << 32
		d.freeClusters |= uint64(le.Uint16(raw[0x2C:])) << 16
		d.bitmapCsum |= uint32(le.Uint16(raw[0x38:])) << 16
		d.bitmapCsumHi = true
	}
	return d
}

// checkDescCsum verifies a descriptor's checksum; scratch is 6 bytes.
func (s *super) checkDescCsum(g uint64, raw, scratch []byte) error {
	var got uint16
	want := binary.LittleEndian.Uint16(raw[0x1E:])
	le32, zero := scratch[:4], scratch[4:6]
	binary.LittleEndian.PutUint32(le32, uint32(g))
	clear(zero)
	switch {
	case s.metadataCsum():
		c := crc32c(s.csumSeed, le32)
		c = crc32c(c, raw[:0x1E])
		c = crc32c(c, zero)
		c = crc32c(c, raw[0x20:])
		got = uint16(c)
	case s.roCompat&roCompatGdtCsum != 0:
		c := crc16(0xFFFF, s.uuid[:])
		c = crc16(c, le32)
		c = crc16(c, raw[:0x1E])
		if len(raw) > 0x20 {
			c = crc16(c, raw[0x20:])
		}
		got = c
	default:
		return nil
	}
	if got != want {
		return fmt.Errorf("%w: group %d descriptor: checksum 0x%04x, computed 0x%04x: run e2fsck", ErrCorrupt, g, want, got)
	}
	return nil
}

// checkDesc rejects descriptors whose metadata lies outside the filesystem.
func (s *super) checkDesc(g uint64, d *groupDesc) error {
	// Nothing but the boot block and superblock can precede the first
	// descriptor table block.
	lowest := s.superBlockNr(0) + 1
	inRange := func(b, n uint64) bool { return b >= lowest && b < s.blocksCount && n <= s.blocksCount-b }
	switch {
	case !inRange(d.blockBitmap, 1):
		return fmt.Errorf("%w: group %d descriptor: block bitmap 0x%x beyond end of filesystem (%d blocks)", ErrCorrupt, g, d.blockBitmap, s.blocksCount)
	case !inRange(d.inodeBitmap, 1):
		return fmt.Errorf("%w: group %d descriptor: inode bitmap 0x%x beyond end of filesystem (%d blocks)", ErrCorrupt, g, d.inodeBitmap, s.blocksCount)
	case !inRange(d.inodeTable, s.itableBlocks()):
		return fmt.Errorf("%w: group %d descriptor: inode table 0x%x+%d beyond end of filesystem (%d blocks)",
			ErrCorrupt, g, d.inodeTable, s.itableBlocks(), s.blocksCount)
	}
	if clusters := (s.groupBlocks(g) + 1<<s.clusterLog - 1) >> s.clusterLog; d.freeClusters > clusters {
		unit := "blocks"
		if s.clusterLog > 0 {
			unit = "clusters"
		}
		return fmt.Errorf("%w: group %d descriptor: %d free %s in a group of %d", ErrCorrupt, g, d.freeClusters, unit, clusters)
	}
	return nil
}

// baseMeta returns the block ranges that group g holds before any bitmap
// or inode table: superblock copy, descriptor table copy and reserved GDT
// blocks (classic layout), or the meta_bg descriptor block. This is what
// the kernel marks when it computes an uninitialised bitmap. With meta_bg
// the reserved GDT blocks are counted too, as the kernel does and
// e2fsprogs does not, which only ever adds blocks.
func (s *super) baseMeta(g uint64) (out [2]blockRange, n int) {
	hasSuper := s.hasSuper(g)
	first := s.groupFirstBlock(g)
	sb := s.superBlockNr(g)
	if hasSuper {
		// In group 0 this also covers the boot block of 1 KiB bigalloc.
		out[n] = blockRange{first, sb + 1}
		n++
	}
	dpb := s.descsPerBlock()
	if s.incompat&incompatMetaBG == 0 || g/dpb < s.firstMetaBG {
		if hasSuper {
			gdt := s.gdtBlocks
			if s.incompat&incompatMetaBG != 0 {
				gdt = s.firstMetaBG
			}
			out[n] = blockRange{sb + 1, sb + 1 + gdt + s.reservedGDT}
			n++
		}
		return out, n
	}
	if r := g % dpb; r == 0 || r == 1 || r == dpb-1 {
		b := s.descBlockNr(g / dpb)
		if r != 0 {
			// Backups in the second and last group of the metagroup sit
			// after that group's own superblock copy, if any.
			b = first
			if hasSuper {
				b++
			}
		}
		out[n] = blockRange{b, b + 1}
		n++
	}
	return out, n
}
