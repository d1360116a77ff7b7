package partclone

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"

	"github.com/cespare/xxhash/v2"
	"github.com/zeebo/xxh3"
)

// partclone's CRC32 is the reflected IEEE polynomial with the register
// seeded to all ones and never inverted at the end: the raw register after
// the bytes. Go's crc32 inverts on the way in and out, so the register is
// the complement of Go's value.
const crcSeed uint32 = 0xFFFFFFFF

func crcRaw(reg uint32, p []byte) uint32 {
	return ^crc32.Update(^reg, crc32.IEEETable, p)
}

// crcV1 is format 0001's CRC: the loop fed the block's first byte once per
// byte of the block, because its input pointer never advanced.
func crcV1(reg uint32, p []byte) uint32 {
	if len(p) == 0 {
		return reg
	}
	t := crc32.IEEETable
	b := uint32(p[0])
	for range len(p) {
		reg = reg>>8 ^ t[(reg^b)&0xff]
	}
	return reg
}

// summer accumulates the checksum of one group of blocks.
type summer struct {
	mode Checksum
	reg  uint32
	x64  *xxhash.Digest
	x128 *xxh3.Hasher
	out  [16]byte
}

func newSummer(mode Checksum) *summer {
	s := &summer{mode: mode}
	switch mode {
	case ChecksumXXH64:
		s.x64 = xxhash.New()
	case ChecksumXXH128:
		s.x128 = xxh3.New()
	}
	s.reset()
	return s
}

func (s *summer) reset() {
	s.reg = crcSeed
	switch s.mode {
	case ChecksumXXH64:
		s.x64.Reset()
	case ChecksumXXH128:
		s.x128.Reset()
	}
}

// add feeds one block (format 0001 needs them one at a time) or several
// whole blocks (format 0002).
func (s *summer) add(p []byte) {
	switch s.mode {
	case ChecksumCRC32:
		s.reg = crcRaw(s.reg, p)
	case ChecksumCRC32v1:
		s.reg = crcV1(s.reg, p)
	case ChecksumXXH64:
		s.x64.Write(p)
	case ChecksumXXH128:
		s.x128.Write(p)
	}
}

// sum returns the checksum as partclone stores it: the C value's bytes on a
// little-endian machine.
func (s *summer) sum() []byte {
	switch s.mode {
	case ChecksumCRC32, ChecksumCRC32v1:
		binary.LittleEndian.PutUint32(s.out[:], s.reg)
		return s.out[:4]
	case ChecksumXXH64:
		binary.LittleEndian.PutUint64(s.out[:], s.x64.Sum64())
		return s.out[:8]
	case ChecksumXXH128:
		// XXH128_hash_t is {low64, high64}.
		v := s.x128.Sum128()
		binary.LittleEndian.PutUint64(s.out[:], v.Lo)
		binary.LittleEndian.PutUint64(s.out[8:], v.Hi)
		return s.out[:16]
	}
	return nil
}

func (s *summer) matches(stored []byte) bool { return bytes.Equal(s.sum(), stored) }
