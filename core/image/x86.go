package image

import (
	"encoding/binary"
	"math/bits"
)

// The x86 filter (codec zstd+x86) makes x86 machine code compress better.
// Calls and jumps (opcodes E8 and E9) carry a 32-bit displacement from the
// next instruction, so many calls to one function all look different. The
// filter rewrites each displacement that looks like a near one (top byte
// 00 or FF) into the absolute target position within the chunk; repeated
// calls then repeat bytes, which zstd finds. Executables and libraries
// compress 2-4% smaller; chunks without machine code are stored unfiltered
// (see x86Worthwhile).
//
// The scan visits positions i from 0 while i+5 <= len:
//   - byte i is not E8 or E9: go on at i+1;
//   - byte i+4 is 00 or FF: the displacement d (bytes i+1..i+4, little
//     endian) is a 25-bit signed value; replace it by (d + i + 5) modulo
//     2^25 (decoding: minus), sign-extended from bit 24; go on at i+5;
//   - otherwise go on at i+4.
//
// Encoding and decoding see the same bytes wherever the scan decides: a
// rewrite never touches an opcode byte, nor byte i+4 of an E8/E9 left
// alone, and keeps the top byte 00 or FF. So both visit the same positions
// and rewrite the same displacements.

// Constants of the 8-bytes-at-a-time search for E8/E9.
const (
	swarOnes  = 0x0101010101010101
	swarHighs = 0x8080808080808080
)

// x86Op is what x86Scan does with each displacement it finds.
type x86Op int

const (
	x86Encode x86Op = iota
	x86Decode
	x86CountOnly
)

// x86Scan rewrites b's displacements in place (or only counts them) and
// returns how many it found.
func x86Scan(b []byte, op x86Op) int {
	n := 0
	for i := 0; i+5 <= len(b); {
		// Skip 8 bytes at a time while none is E8 or E9: v has a zero
		// byte exactly where b has one of them.
		if i+8 <= len(b) {
			v := binary.LittleEndian.Uint64(b[i:])&0xFEFEFEFEFEFEFEFE ^ 0xE8E8E8E8E8E8E8E8
			m := (v - swarOnes) &^ v & swarHighs
			if m == 0 {
				i += 8
				continue
			}
			// The lowest flagged byte is exact (only bytes above a real
			// match can be flagged falsely).
			i += bits.TrailingZeros64(m) / 8
			if i+5 > len(b) {
				break
			}
		} else if b[i]&0xFE != 0xE8 {
			i++
			continue
		}
		if top := b[i+4]; top != 0 && top != 0xFF {
			i += 4
			continue
		}
		n++
		if op != x86CountOnly {
			p := b[i+1 : i+5 : i+5]
			d := binary.LittleEndian.Uint32(p)
			if op == x86Decode {
				d -= uint32(i + 5)
			} else {
				d += uint32(i + 5)
			}
			d = uint32(int32(d<<7) >> 7) // sign-extend from bit 24
			binary.LittleEndian.PutUint32(p, d)
		}
		i += 5
	}
	return n
}

// Samples on which x86Worthwhile decides.
const (
	x86Samples    = 4
	x86SampleSize = 16 << 10
)

// x86Worthwhile reports whether a chunk holds enough displacements to be
// worth filtering: more than one per 4 KiB in samples spread over it.
// Random bytes give one per 16 KiB; machine code gives dozens per KiB.
// Sampling keeps the cost off chunks without code (on code, the filter's
// pass takes a seventh of zstd's time).
func x86Worthwhile(b []byte) bool {
	if len(b) <= x86Samples*x86SampleSize {
		return x86Scan(b, x86CountOnly) > len(b)/4096
	}
	n := 0
	step := (len(b) - x86SampleSize) / (x86Samples - 1)
	for i := range x86Samples {
		n += x86Scan(b[i*step:i*step+x86SampleSize], x86CountOnly)
	}
	return n > x86Samples*x86SampleSize/4096
}
