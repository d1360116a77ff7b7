package xfs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math/bits"
)

// Superblock fields (offsets into the first sector, big endian).
const (
	sbMagic       = 0x00 // "XFSB"
	sbBlockSize   = 0x04
	sbDBlocks     = 0x08
	sbRBlocks     = 0x10
	sbUUID        = 0x20
	sbLogStart    = 0x30
	sbAGBlocks    = 0x54
	sbAGCount     = 0x58
	sbLogBlocks   = 0x60
	sbVersionNum  = 0x64
	sbSectSize    = 0x66
	sbFname       = 0x6C
	sbBlockLog    = 0x78
	sbSectLog     = 0x79
	sbAGBlkLog    = 0x7C
	sbInProgress  = 0x7E
	sbFdBlocks    = 0x90
	sbIncompat    = 0xD8
	sbCRC         = 0xE0
	sbMetaUUID    = 0xF8
	sbMinV5Length = 0x108

	incompatMetaUUID    = 1 << 2
	incompatNeedsRepair = 1 << 4
)

// maxLevels caps btree depth. XFS computes its own limit from the AG size;
// no real free-space btree comes near this.
const maxLevels = 12

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// verifyCRC checks an XFS CRC32C: computed over buf with the 4-byte field
// at off taken as zero, stored little endian.
func verifyCRC(buf []byte, off int) bool {
	stored := binary.LittleEndian.Uint32(buf[off:])
	c := crc32.Update(0, castagnoli, buf[:off])
	c = crc32.Update(c, castagnoli, []byte{0, 0, 0, 0})
	c = crc32.Update(c, castagnoli, buf[off+4:])
	return c == stored
}

type superblock struct {
	blockSize  int64
	sectSize   int64
	dblocks    uint64
	rblocks    uint64
	agBlocks   uint32
	agCount    uint32
	lastAGLen  uint32
	version    int
	crc        bool
	uuid       [16]byte
	metaUUID   [16]byte // v5: the UUID stamped in metadata blocks
	label      string
	logStart   uint64
	logBlocks  uint32
	fdblocks   uint64
	incompat   uint32
	bbPerBlock int64 // 512-byte basic blocks per filesystem block
}

func parseSuperblock(buf []byte, size int64) (*superblock, error) {
	if len(buf) < 512 || string(buf[sbMagic:sbMagic+4]) != "XFSB" {
		return nil, fmt.Errorf("%w: no \"XFSB\" magic in the first sector", ErrNotFound)
	}
	be := binary.BigEndian
	sb := &superblock{}
	ver := be.Uint16(buf[sbVersionNum:])
	sb.version = int(ver & 0x000F)
	switch sb.version {
	case 4:
	case 5:
		sb.crc = true
	default:
		return nil, fmt.Errorf("%w: superblock version %d (only 4 and 5 are read)", ErrUnsupported, sb.version)
	}
	bs := be.Uint32(buf[sbBlockSize:])
	if bs < 512 || bs > 65536 || bits.OnesCount32(bs) != 1 || 1<<buf[sbBlockLog] != bs {
		return nil, fmt.Errorf("%w: superblock: block size %d (log %d) is not a power of two in 512..65536",
			ErrCorrupt, bs, buf[sbBlockLog])
	}
	sb.blockSize = int64(bs)
	sb.bbPerBlock = sb.blockSize / 512
	ss := uint32(be.Uint16(buf[sbSectSize:]))
	if ss < 512 || ss > 32768 || bits.OnesCount32(ss) != 1 || 1<<buf[sbSectLog] != ss || ss > bs {
		return nil, fmt.Errorf("%w: superblock: sector size %d (log %d) is not a power of two in 512..min(32768, block size %d)",
			ErrCorrupt, ss, buf[sbSectLog], bs)
	}
	sb.sectSize = int64(ss)
	if sb.crc {
		if int64(len(buf)) < sb.sectSize {
			return nil, fmt.Errorf("%w: superblock: sector of %d bytes not read", ErrCorrupt, sb.sectSize)
		}
		if !verifyCRC(buf[:sb.sectSize], sbCRC) {
			return nil, fmt.Errorf("%w: superblock: CRC mismatch", ErrCorrupt)
		}
	}
	sb.dblocks = be.Uint64(buf[sbDBlocks:])
	sb.rblocks = be.Uint64(buf[sbRBlocks:])
	sb.agBlocks = be.Uint32(buf[sbAGBlocks:])
	sb.agCount = be.Uint32(buf[sbAGCount:])
	if sb.agBlocks < 5 || sb.agCount == 0 {
		return nil, fmt.Errorf("%w: superblock: %d AGs of %d blocks", ErrCorrupt, sb.agCount, sb.agBlocks)
	}
	if log := buf[sbAGBlkLog]; log > 31 || uint64(sb.agBlocks) > 1<<log || uint64(sb.agBlocks) <= 1<<log>>1 {
		return nil, fmt.Errorf("%w: superblock: agblklog %d does not match %d blocks per AG", ErrCorrupt, log, sb.agBlocks)
	}
	full := uint64(sb.agCount-1) * uint64(sb.agBlocks)
	if sb.dblocks <= full || sb.dblocks > full+uint64(sb.agBlocks) {
		return nil, fmt.Errorf("%w: superblock: %d data blocks do not fit %d AGs of %d blocks", ErrCorrupt, sb.dblocks, sb.agCount, sb.agBlocks)
	}
	sb.lastAGLen = uint32(sb.dblocks - full)
	if sb.dblocks > uint64(1<<62)/uint64(sb.blockSize) {
		return nil, fmt.Errorf("%w: superblock: %d data blocks is too large", ErrCorrupt, sb.dblocks)
	}
	if need := int64(sb.dblocks) * sb.blockSize; need > size {
		return nil, fmt.Errorf("%w: filesystem is %d bytes (%d blocks of %d) but the device has %d bytes",
			ErrTruncated, need, sb.dblocks, sb.blockSize, size)
	}
	if buf[sbInProgress] != 0 {
		return nil, fmt.Errorf("%w: superblock: sb_inprogress is set (mkfs did not finish)", ErrCorrupt)
	}
	copy(sb.uuid[:], buf[sbUUID:])
	sb.metaUUID = sb.uuid
	sb.label = string(bytes.TrimRight(buf[sbFname:sbFname+12], "\x00"))
	sb.logStart = be.Uint64(buf[sbLogStart:])
	sb.logBlocks = be.Uint32(buf[sbLogBlocks:])
	sb.fdblocks = be.Uint64(buf[sbFdBlocks:])
	if sb.crc {
		sb.incompat = be.Uint32(buf[sbIncompat:])
		if sb.incompat&incompatMetaUUID != 0 {
			copy(sb.metaUUID[:], buf[sbMetaUUID:])
		}
	}
	return sb, nil
}

func (sb *superblock) agLen(ag uint32) uint32 {
	if ag == sb.agCount-1 {
		return sb.lastAGLen
	}
	return sb.agBlocks
}

func (sb *superblock) notes() []string {
	var n []string
	if sb.crc {
		n = append(n, "v5 superblock (metadata CRCs)")
	} else {
		n = append(n, "v4 superblock (no metadata CRCs)")
	}
	n = append(n, fmt.Sprintf("%d allocation groups of %d blocks (last %d)", sb.agCount, sb.agBlocks, sb.lastAGLen))
	if sb.logStart != 0 {
		n = append(n, fmt.Sprintf("internal log: %d blocks", sb.logBlocks))
	} else {
		n = append(n, "external log device: image it separately")
	}
	if sb.rblocks != 0 {
		n = append(n, fmt.Sprintf("realtime section of %d blocks on a separate device: image it separately", sb.rblocks))
	}
	if sb.incompat&incompatNeedsRepair != 0 {
		n = append(n, "needsrepair flag set: run xfs_repair before use")
	}
	return n
}

// filesystem is an opened XFS data device.
type filesystem struct {
	r    io.ReaderAt
	size int64
	sb   *superblock
}

func open(r io.ReaderAt, size int64) (*filesystem, error) {
	if size < 512 {
		return nil, fmt.Errorf("%w: device has only %d bytes", ErrNotFound, size)
	}
	first := make([]byte, 512)
	if _, err := r.ReadAt(first, 0); err != nil {
		return nil, fmt.Errorf("xfs: read superblock: %w", err)
	}
	if string(first[:4]) != "XFSB" {
		return nil, fmt.Errorf("%w: no \"XFSB\" magic in the first sector", ErrNotFound)
	}
	// v5 CRCs cover the whole sector, which may be larger than 512 bytes.
	ss := int64(binary.BigEndian.Uint16(first[sbSectSize:]))
	buf := first
	if ss > 512 && ss <= 32768 && ss <= size {
		buf = make([]byte, ss)
		if _, err := r.ReadAt(buf, 0); err != nil {
			return nil, fmt.Errorf("xfs: read superblock: %w", err)
		}
	}
	sb, err := parseSuperblock(buf, size)
	if err != nil {
		return nil, err
	}
	return &filesystem{r: r, size: size, sb: sb}, nil
}

func (fs *filesystem) readAt(buf []byte, off int64, what string) error {
	if off < 0 || off > fs.size || int64(len(buf)) > fs.size-off {
		return fmt.Errorf("%w: %s: %d bytes at offset %d lie past the end of the device (%d bytes)",
			ErrTruncated, what, len(buf), off, fs.size)
	}
	if _, err := fs.r.ReadAt(buf, off); err != nil {
		return fmt.Errorf("xfs: %s: read %d bytes at offset %d: %w", what, len(buf), off, err)
	}
	return nil
}
