// Package partclone reads partclone images, the per-partition format that
// Clonezilla and partclone.<fs> -c write: a header describing the
// filesystem, a bitmap of used blocks, then the used blocks in order,
// interleaved with checksums.
//
// Both image formats are read: "0001" (partclone before 0.3: byte-per-block
// bitmap, a CRC after every block computed by a function whose input pointer
// never advanced, and from old 64-bit builds an 8-byte CRC field) and
// "0002" (bit-per-block bitmap with its own CRC32, a header CRC32, and one
// checksum of mode none, CRC32, XXH64 or XXH128 every N blocks). Every
// checksum is verified while reading; a mismatch names the block.
//
// Images are read as a stream: compressed (gzip, zstd, xz, lz4, bzip2,
// detected by their magic bytes) and split into pieces (.aa, .ab, ...)
// images are read in one pass without temporary files.
package partclone

import (
	"errors"
	"fmt"
)

// Errors returned by this package. Callers test them with errors.Is.
var (
	ErrNotPartclone = errors.New("partclone: not a partclone image (bad magic)")
	ErrVersion      = errors.New("partclone: unsupported image version")
	ErrCorrupt      = errors.New("partclone: corrupt image")
	ErrChecksum     = errors.New("partclone: checksum mismatch")
	ErrTruncated    = errors.New("partclone: image is truncated")
	ErrCompression  = errors.New("partclone: unsupported compression")
	ErrNoFiles      = errors.New("partclone: no image files")
)

// Checksum is a checksum mode as stored in a version 2 image header. The
// stored values are not the -a numbers of partclone's command line (and not
// the values its format document gives): -a1 stores 0x20, -a2 0x30, -a3
// 0x31.
type Checksum uint16

// Checksum modes.
const (
	ChecksumNone   Checksum = 0x00
	ChecksumCRC32  Checksum = 0x20
	ChecksumXXH64  Checksum = 0x30
	ChecksumXXH128 Checksum = 0x31
	// ChecksumCRC32v1 is the CRC of format 0001 images, which fed the first
	// byte of a block into the CRC once per byte of the block. It is never
	// stored; version 1 images always use it.
	ChecksumCRC32v1 Checksum = 0xFF
)

func (c Checksum) String() string {
	switch c {
	case ChecksumNone:
		return "none"
	case ChecksumCRC32:
		return "crc32"
	case ChecksumXXH64:
		return "xxh64"
	case ChecksumXXH128:
		return "xxh128"
	case ChecksumCRC32v1:
		return "crc32 (format 0001)"
	}
	return fmt.Sprintf("checksum(0x%02x)", uint16(c))
}

// size is the stored size of one checksum of mode c, or -1 when c is not a
// known mode.
func (c Checksum) size() int {
	switch c {
	case ChecksumNone:
		return 0
	case ChecksumCRC32, ChecksumCRC32v1:
		return 4
	case ChecksumXXH64:
		return 8
	case ChecksumXXH128:
		return 16
	}
	return -1
}

// Bitmap modes of a version 2 header.
const (
	bitmapNone = 0x00 // every block present, no bitmap stored
	bitmapBit  = 0x01 // one bit per block
	bitmapByte = 0x08 // one byte per block (format 0001 always)
)

// Header describes a partclone image.
type Header struct {
	Version         int    // 1 or 2
	Tool            string // partclone version that wrote the image (format 2 only)
	FS              string // filesystem as partclone names it: EXTFS, FAT, NTFS, raw, ...
	DeviceSize      int64  // bytes of the source partition
	BlockSize       int    // bytes per block
	TotalBlocks     int64
	UsedBlocks      int64 // blocks set in the bitmap (the blocks stored)
	SuperUsedBlocks int64 // used blocks as the filesystem reported them
	CPUBits         int   // 32 or 64 (format 2 only)
	Checksum        Checksum
	ChecksumSize    int // bytes stored per checksum (8 for old 64-bit format 0001 images)
	// BlocksPerChecksum is how many blocks one checksum covers; 0 when the
	// image has no checksums.
	BlocksPerChecksum int
	Reseed            bool // the checksum restarts after each stored checksum
	BitmapMode        int
}

// Bytes is the number of bytes the used blocks hold.
func (h *Header) Bytes() int64 { return h.UsedBlocks * int64(h.BlockSize) }
