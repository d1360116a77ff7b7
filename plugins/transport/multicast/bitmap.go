package multicast

import "math/bits"

// bitmap is a set of block numbers.
type bitmap []uint64

func newBitmap(n int) bitmap { return make(bitmap, (n+63)/64) }

// resize returns b cleared and sized for n bits, reusing its storage.
func (b bitmap) resize(n int) bitmap {
	w := (n + 63) / 64
	if cap(b) < w {
		return make(bitmap, w)
	}
	b = b[:w]
	clear(b)
	return b
}

func (b bitmap) has(i int) bool { return b[i>>6]&(1<<(uint(i)&63)) != 0 }
func (b bitmap) set(i int)      { b[i>>6] |= 1 << (uint(i) & 63) }
func (b bitmap) unset(i int)    { b[i>>6] &^= 1 << (uint(i) & 63) }

// setRange sets bits first .. first+count-1 and returns how many were
// newly set.
func (b bitmap) setRange(first, count int) int {
	added := 0
	for i := first; i < first+count; {
		if i&63 == 0 && first+count-i >= 64 {
			added += 64 - bits.OnesCount64(b[i>>6])
			b[i>>6] = ^uint64(0)
			i += 64
			continue
		}
		if !b.has(i) {
			b.set(i)
			added++
		}
		i++
	}
	return added
}

// next returns the first set bit at or after i below n, or -1.
func (b bitmap) next(i, n int) int {
	for i < n {
		w := b[i>>6] >> (uint(i) & 63)
		if w != 0 {
			j := i + bits.TrailingZeros64(w)
			if j < n {
				return j
			}
			return -1
		}
		i = (i | 63) + 1
	}
	return -1
}

// nextClear returns the first clear bit at or after i below n, or -1.
func (b bitmap) nextClear(i, n int) int {
	for i < n {
		w := ^b[i>>6] >> (uint(i) & 63)
		if w != 0 {
			j := i + bits.TrailingZeros64(w)
			if j < n {
				return j
			}
			return -1
		}
		i = (i | 63) + 1
	}
	return -1
}

func (b bitmap) count() int {
	c := 0
	for _, w := range b {
		c += bits.OnesCount64(w)
	}
	return c
}

// missingRanges appends the runs of blocks below n that are set in
// neither have nor asked (asked may be nil) to dst.
func missingRanges(dst []blockRange, have, asked bitmap, n int) []blockRange {
	for i := 0; i < n; {
		if have.has(i) || (asked != nil && asked.has(i)) {
			i++
			continue
		}
		j := i + 1
		for j < n && j-i < 65535 && !have.has(j) && (asked == nil || !asked.has(j)) {
			j++
		}
		dst = append(dst, blockRange{first: uint16(i), count: uint16(j - i)})
		i = j
	}
	return dst
}
