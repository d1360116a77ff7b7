package partclone

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
)

// On-disk layout. Both formats start with the magic and keep the version
// text at byte 30, so the first descSize bytes tell which one follows.
//
// Format 0002 header (110 bytes, all integers little-endian):
//
//	offset size field
//	     0   16 "partclone-image\0"
//	    16   14 partclone version that wrote it, e.g. "0.3.23"
//	    30    4 "0002"
//	    34    2 0xC0DE (a big-endian writer stored 0xDEC0)
//	    36   16 filesystem name, e.g. "EXTFS"
//	    52    8 device size in bytes
//	    60    8 total blocks
//	    68    8 used blocks as the filesystem reports them
//	    76    8 used blocks in the bitmap
//	    84    4 block size
//	    88    4 size of the options that follow (18)
//	    92    2 image version, 2
//	    94    2 bits of the writer's CPU
//	    96    2 checksum mode (0, 0x20, 0x30, 0x31)
//	    98    2 checksum size
//	   100    4 blocks per checksum
//	   104    1 reseed checksum after each one
//	   105    1 bitmap mode (0 none, 1 bits, 8 bytes)
//	   106    4 CRC32 of bytes 0-105
//
// then the bitmap as the writer held it in memory (ceil(total/8) bytes, bit
// i of byte i/8 for block i), then the CRC32 of those bytes.
//
// Format 0001 header (4160 bytes):
//
//	offset size field
//	     0   15 "partclone-image"
//	    15   15 filesystem name
//	    30    4 "0001"
//	    34    2 padding
//	    36    4 block size
//	    40    8 device size
//	    48    8 total blocks
//	    56    8 used blocks
//	    64 4096 unused
//
// then one byte per block (1 = stored; any other value = not stored), then
// "BiTmAgIc".
//
// Data: the stored blocks in block order. In format 0002 a checksum follows
// every BlocksPerChecksum blocks, and one more after the last block when the
// used count is not a multiple of it. In format 0001 a CRC follows every
// block, never reseeded; images from 64-bit builds before partclone 0.1.0
// stored it in 8 bytes.
const (
	magic      = "partclone-image"
	descSize   = 110  // format 0002 header
	descSizeV1 = 4160 // format 0001 header
	bitMagic   = "BiTmAgIc"
	endianLE   = 0xC0DE
	// maxBlockSize and maxTotalBlocks are partclone's own limits.
	maxBlockSize   = 64 << 20
	maxTotalBlocks = 8 << 40
)

// parseHeader decodes the first descSize bytes of an image. For a format
// 0001 image it needs the first descSizeV1 bytes; it returns needV1 = true
// when b is shorter than that.
func parseHeader(b []byte) (h *Header, needV1 bool, err error) {
	if len(b) < descSize {
		return nil, false, fmt.Errorf("%w: header: %d bytes, need %d", ErrTruncated, len(b), descSize)
	}
	if string(b[:len(magic)]) != magic {
		return nil, false, ErrNotPartclone
	}
	switch v := string(b[30:34]); v {
	case "0001":
		if len(b) < descSizeV1 {
			return nil, true, nil
		}
		h, err = parseV1(b)
	case "0002":
		h, err = parseV2(b)
	default:
		return nil, false, fmt.Errorf("%w %q (this reader knows 0001 and 0002)", ErrVersion, printable(b[30:34]))
	}
	if err != nil {
		return nil, false, err
	}
	return h, false, checkGeometry(h)
}

func parseV1(b []byte) (*Header, error) {
	h := &Header{
		Version:           1,
		FS:                cString(b[15:30]),
		BlockSize:         int(int32(binary.LittleEndian.Uint32(b[36:]))),
		Checksum:          ChecksumCRC32v1,
		ChecksumSize:      4,
		BlocksPerChecksum: 1,
		BitmapMode:        bitmapByte,
	}
	var err error
	if h.DeviceSize, err = int64Field(b[40:], "device size"); err != nil {
		return nil, err
	}
	if h.TotalBlocks, err = int64Field(b[48:], "total blocks"); err != nil {
		return nil, err
	}
	if h.SuperUsedBlocks, err = int64Field(b[56:], "used blocks"); err != nil {
		return nil, err
	}
	return h, nil
}

func parseV2(b []byte) (*Header, error) {
	le := binary.LittleEndian
	if e := le.Uint16(b[34:]); e != endianLE {
		return nil, fmt.Errorf("%w: header: endianness mark 0x%04x: the image was written on a big-endian machine, which partclone itself cannot restore elsewhere", ErrVersion, e)
	}
	if got, want := crcRaw(crcSeed, b[:descSize-4]), le.Uint32(b[descSize-4:]); got != want {
		return nil, fmt.Errorf("%w: header CRC32 is 0x%08x, bytes 0-105 give 0x%08x; the header is corrupt", ErrChecksum, want, got)
	}
	h := &Header{
		Version:           2,
		Tool:              cString(b[16:30]),
		FS:                cString(b[36:52]),
		BlockSize:         int(int32(le.Uint32(b[84:]))),
		CPUBits:           int(le.Uint16(b[94:])),
		Checksum:          Checksum(le.Uint16(b[96:])),
		ChecksumSize:      int(le.Uint16(b[98:])),
		BlocksPerChecksum: int(le.Uint32(b[100:])),
		Reseed:            b[104] != 0,
		BitmapMode:        int(b[105]),
	}
	var err error
	if h.DeviceSize, err = int64Field(b[52:], "device size"); err != nil {
		return nil, err
	}
	if h.TotalBlocks, err = int64Field(b[60:], "total blocks"); err != nil {
		return nil, err
	}
	if h.SuperUsedBlocks, err = int64Field(b[68:], "filesystem used blocks"); err != nil {
		return nil, err
	}
	if v := le.Uint16(b[92:]); v != 2 {
		return nil, fmt.Errorf("%w: header says format 0002 but its options say version %d", ErrCorrupt, v)
	}
	if n := h.Checksum.size(); n < 0 || h.Checksum == ChecksumCRC32v1 {
		return nil, fmt.Errorf("%w: checksum mode 0x%02x is unknown (known: 0 none, 0x20 CRC32, 0x30 XXH64, 0x31 XXH128)", ErrCorrupt, uint16(h.Checksum))
	} else if n != h.ChecksumSize {
		return nil, fmt.Errorf("%w: checksum size %d does not match checksum mode %s (%d bytes)", ErrCorrupt, h.ChecksumSize, h.Checksum, n)
	}
	if h.Checksum != ChecksumNone && h.BlocksPerChecksum == 0 {
		return nil, fmt.Errorf("%w: checksum mode %s with 0 blocks per checksum", ErrCorrupt, h.Checksum)
	}
	if h.Checksum == ChecksumNone {
		// Without a checksum the field is meaningless; the data is plain
		// blocks.
		h.BlocksPerChecksum = 0
	}
	switch h.BitmapMode {
	case bitmapNone, bitmapBit, bitmapByte:
	default:
		return nil, fmt.Errorf("%w: bitmap mode %d is unknown (known: 0 none, 1 bits, 8 bytes)", ErrCorrupt, h.BitmapMode)
	}
	return h, nil
}

func checkGeometry(h *Header) error {
	switch {
	case h.BlockSize <= 0 || h.BlockSize > maxBlockSize:
		return fmt.Errorf("%w: block size %d (want 1 to %d)", ErrCorrupt, h.BlockSize, maxBlockSize)
	case h.TotalBlocks > maxTotalBlocks:
		return fmt.Errorf("%w: %d total blocks is more than partclone allows (%d)", ErrCorrupt, h.TotalBlocks, int64(maxTotalBlocks))
	case h.SuperUsedBlocks > h.TotalBlocks:
		return fmt.Errorf("%w: %d used blocks of %d total", ErrCorrupt, h.SuperUsedBlocks, h.TotalBlocks)
	}
	hi, lo := bits.Mul64(uint64(h.TotalBlocks), uint64(h.BlockSize))
	if hi != 0 || lo > uint64(h.DeviceSize) {
		return fmt.Errorf("%w: %d blocks of %d bytes do not fit in the %d-byte device", ErrCorrupt, h.TotalBlocks, h.BlockSize, h.DeviceSize)
	}
	return nil
}

func int64Field(b []byte, what string) (int64, error) {
	v := binary.LittleEndian.Uint64(b)
	if v > 1<<62 {
		return 0, fmt.Errorf("%w: %s %d out of range", ErrCorrupt, what, v)
	}
	return int64(v), nil
}

// cString returns the text of a NUL-padded field.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return printable(b)
}

func printable(b []byte) string {
	out := make([]rune, 0, len(b))
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			out = append(out, '?')
			continue
		}
		out = append(out, rune(c))
	}
	return string(out)
}

// Bitmap says which blocks an image stores: bit i%64 of word i/64 for
// block i. Bits past the last block are clear.
type Bitmap struct {
	words []uint64
	n     int64
	all   bool // every block stored (bitmap mode none): no words
}

// Used reports whether block i is stored.
func (m *Bitmap) Used(i int64) bool {
	return i >= 0 && i < m.n && (m.all || m.words[i>>6]&(1<<(uint(i)&63)) != 0)
}

// Count returns the number of stored blocks.
func (m *Bitmap) Count() int64 {
	if m.all {
		return m.n
	}
	var c int
	for _, w := range m.words {
		c += bits.OnesCount64(w)
	}
	return int64(c)
}

// NextRun returns the first run of stored blocks at or after block i as
// [start, end); start == end == total when none is left.
func (m *Bitmap) NextRun(i int64) (start, end int64) {
	start = m.next(i, true)
	if start >= m.n {
		return m.n, m.n
	}
	return start, m.next(start, false)
}

// next returns the first block at or after i whose bit equals set, or n.
func (m *Bitmap) next(i int64, set bool) int64 {
	if m.all {
		if set {
			return min(max(i, 0), m.n)
		}
		return m.n
	}
	for i < m.n {
		w := m.words[i>>6]
		if !set {
			w = ^w
		}
		w >>= uint(i) & 63
		if w != 0 {
			return min(i+int64(bits.TrailingZeros64(w)), m.n)
		}
		i = (i | 63) + 1
	}
	return m.n
}

// readBitmap reads the bitmap that follows header h. Memory grows with the
// bytes actually read, so a short or lying stream fails before a huge
// allocation.
func readBitmap(r io.Reader, h *Header) (*Bitmap, error) {
	m := &Bitmap{n: h.TotalBlocks}
	switch h.BitmapMode {
	case bitmapNone:
		m.all = true
		return m, nil
	case bitmapBit:
		return m, readBits(r, h, m)
	case bitmapByte:
		return m, readBytes(r, h, m)
	}
	return nil, fmt.Errorf("%w: bitmap mode %d", ErrCorrupt, h.BitmapMode)
}

const bitmapPiece = 64 << 10

func readBits(r io.Reader, h *Header, m *Bitmap) error {
	size := (h.TotalBlocks + 7) / 8
	crc := crcSeed
	buf := make([]byte, min(size, bitmapPiece)+8)
	m.words = make([]uint64, 0, min((h.TotalBlocks+63)/64, 1024))
	var pending []byte // bytes not yet forming a whole word
	for done := int64(0); done < size; {
		n := int(min(size-done, bitmapPiece))
		p := buf[len(pending) : len(pending)+n]
		if _, err := io.ReadFull(r, p); err != nil {
			return fmt.Errorf("%w: bitmap: bytes %d-%d of %d: %v", ErrTruncated, done, done+int64(n)-1, size, err)
		}
		crc = crcRaw(crc, p)
		copy(buf, pending)
		p = buf[:len(pending)+n]
		for len(p) >= 8 {
			m.words = append(m.words, binary.LittleEndian.Uint64(p))
			p = p[8:]
		}
		pending = append(pending[:0], p...)
		done += int64(n)
	}
	if len(pending) > 0 {
		var w [8]byte
		copy(w[:], pending)
		m.words = append(m.words, binary.LittleEndian.Uint64(w[:]))
	}
	var sum [4]byte
	if _, err := io.ReadFull(r, sum[:]); err != nil {
		return fmt.Errorf("%w: bitmap CRC32: %v", ErrTruncated, err)
	}
	if want := binary.LittleEndian.Uint32(sum[:]); crc != want {
		return fmt.Errorf("%w: bitmap CRC32 is 0x%08x, its %d bytes give 0x%08x; the bitmap is corrupt", ErrChecksum, want, size, crc)
	}
	// The writer's in-memory bitmap may carry bits past the last block;
	// partclone never looks at them.
	m.clearTail()
	return nil
}

func readBytes(r io.Reader, h *Header, m *Bitmap) error {
	buf := make([]byte, min(h.TotalBlocks, bitmapPiece))
	m.words = make([]uint64, 0, min((h.TotalBlocks+63)/64, 1024))
	var w uint64
	for done := int64(0); done < h.TotalBlocks; {
		n := int(min(h.TotalBlocks-done, bitmapPiece))
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return fmt.Errorf("%w: bitmap: bytes %d-%d of %d: %v", ErrTruncated, done, done+int64(n)-1, h.TotalBlocks, err)
		}
		for i, c := range buf[:n] {
			// partclone takes only 1 as stored; some old images hold
			// other values, which it treats as free.
			if c == 1 {
				w |= 1 << (uint(done+int64(i)) & 63)
			}
			if (done+int64(i))&63 == 63 {
				m.words = append(m.words, w)
				w = 0
			}
		}
		done += int64(n)
	}
	if h.TotalBlocks&63 != 0 {
		m.words = append(m.words, w)
	}
	var mg [len(bitMagic)]byte
	if _, err := io.ReadFull(r, mg[:]); err != nil {
		return fmt.Errorf("%w: bitmap end mark: %v", ErrTruncated, err)
	}
	if string(mg[:]) != bitMagic {
		return fmt.Errorf("%w: bitmap end mark is %q, want %q", ErrCorrupt, printable(mg[:]), bitMagic)
	}
	return nil
}

func (m *Bitmap) clearTail() {
	if r := m.n & 63; r != 0 && len(m.words) > 0 {
		m.words[len(m.words)-1] &= 1<<uint(r) - 1
	}
}
