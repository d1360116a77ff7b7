package ext4

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

// Bitmaps are little-endian bit arrays: bit i is bit i%8 of byte i/8, so
// reading 8 bytes as a little-endian word keeps bit order.

// word returns the 64 bits starting at bit 64*w, zero-padded past the end.
func word(bm []byte, w int) uint64 {
	off := w * 8
	if off+8 <= len(bm) {
		return binary.LittleEndian.Uint64(bm[off:])
	}
	var tmp [8]byte
	copy(tmp[:], bm[off:])
	return binary.LittleEndian.Uint64(tmp[:])
}

// nextBit returns the first bit >= i and < n whose value is set (or clear,
// when set is false), or n.
func nextBit(bm []byte, i, n int, set bool) int {
	for i < n {
		w := word(bm, i/64)
		if !set {
			w = ^w
		}
		w >>= uint(i % 64)
		if w != 0 {
			return min(i+bits.TrailingZeros64(w), n)
		}
		i = (i/64 + 1) * 64
	}
	return n
}

// setBits sets bits [a, b).
func setBits(bm []byte, a, b int) {
	for ; a < b && a%8 != 0; a++ {
		bm[a/8] |= 1 << (a % 8)
	}
	for ; a+8 <= b; a += 8 {
		bm[a/8] = 0xFF
	}
	for ; a < b; a++ {
		bm[a/8] |= 1 << (a % 8)
	}
}

// merger turns a stream of byte ranges with non-decreasing starts into
// maximal non-overlapping, non-adjacent ranges, holding one range at a time.
type merger struct {
	emit       func(off, length int64) error
	start, end int64
	pending    bool
	emitted    int64 // total bytes emitted
}

func (m *merger) add(start, end int64) error {
	if start >= end {
		return nil
	}
	if m.pending {
		if start < m.start {
			// Callers walk the filesystem in block order; this is a bug.
			return fmt.Errorf("ext4: internal error: range %d-%d after %d", start, end, m.start)
		}
		if start <= m.end {
			m.end = max(m.end, end)
			return nil
		}
		if err := m.flush(); err != nil {
			return err
		}
	}
	m.start, m.end, m.pending = start, end, true
	return nil
}

func (m *merger) flush() error {
	if !m.pending {
		return nil
	}
	m.pending = false
	m.emitted += m.end - m.start
	return m.emit(m.start, m.end-m.start)
}
