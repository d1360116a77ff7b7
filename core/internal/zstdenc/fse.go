package zstdenc

import (
	"math"
	"math/bits"
)

// fseTable is an FSE encoding table for one of the three sequence symbol
// kinds (literal length, match length and offset codes), built the way the
// format's decoders build theirs (RFC 8878 section 4.1.1), so a state
// written here is the state they read.
type fseTable struct {
	tableLog uint8
	rle      bool          // one symbol, coded in zero bits (Symbol_Compression_Mode RLE)
	norm     [maxSym]int16 // normalized counts; -1 means "below 1"
	nSym     int           // highest symbol with a non-zero count, plus one
	state    []uint16      // next state, indexed by deltaFindState + (state >> bits)
	tt       [maxSym]symTransform
	cost     [maxSym]float64 // bits to code each symbol, for choosing a mode
}

type symTransform struct {
	deltaNbBits    uint32
	deltaFindState int32
}

// maxSym bounds the symbol alphabets: match length codes go up to 52.
const maxSym = 53

// build fills t from the normalized counts in t.norm[:t.nSym] at t.tableLog.
func (t *fseTable) build() {
	size := 1 << t.tableLog
	mask := size - 1
	if cap(t.state) < size {
		t.state = make([]uint16, size)
	}
	t.state = t.state[:size]
	var symbols [1 << maxTableLog]uint8
	var cumul [maxSym + 1]int
	high := size - 1
	for s := range t.nSym {
		switch n := t.norm[s]; {
		case n == -1:
			cumul[s+1] = cumul[s] + 1
			symbols[high] = uint8(s)
			high--
		default:
			cumul[s+1] = cumul[s] + int(n)
		}
	}
	step := size>>1 + size>>3 + 3
	pos := 0
	for s := range t.nSym {
		for range max(int(t.norm[s]), 0) {
			symbols[pos] = uint8(s)
			pos = (pos + step) & mask
			for pos > high {
				pos = (pos + step) & mask
			}
		}
	}
	for u := range size {
		s := symbols[u]
		t.state[cumul[s]] = uint16(size + u)
		cumul[s]++
	}
	total := int32(0)
	for s := range maxSym {
		n := int32(0)
		if s < t.nSym {
			n = int32(t.norm[s])
		}
		switch n {
		case 0:
			t.tt[s] = symTransform{}
			t.cost[s] = math.Inf(1)
		case -1, 1:
			t.tt[s] = symTransform{deltaNbBits: uint32(t.tableLog)<<16 - uint32(size), deltaFindState: total - 1}
			t.cost[s] = float64(t.tableLog)
			total++
		default:
			maxBitsOut := uint32(t.tableLog) - uint32(bits.Len32(uint32(n-1))-1)
			minStatePlus := uint32(n) << maxBitsOut
			t.tt[s] = symTransform{deltaNbBits: maxBitsOut<<16 - minStatePlus, deltaFindState: total - n}
			t.cost[s] = float64(t.tableLog) - math.Log2(float64(n))
			total += n
		}
	}
}

// setRLE makes t the single-symbol table of the RLE mode: one state, which
// every symbol leaves as it is, in zero bits.
func (t *fseTable) setRLE(sym uint8) {
	t.rle, t.tableLog, t.nSym = true, 0, int(sym)+1
	t.state = append(t.state[:0], 0)
	for s := range maxSym {
		t.tt[s] = symTransform{}
		t.cost[s] = math.Inf(1)
	}
	t.cost[sym] = 0
}

// normalize sets t.norm to counts scaled to 1<<tableLog, every present
// symbol getting a share (at least 1, or -1 for "below 1"), and picks the
// table log like the reference encoder does: no larger than the number of
// symbols coded needs.
func (t *fseTable) normalize(count []uint32, total int, maxLog uint8) {
	t.rle = false
	nSym := len(count)
	for nSym > 0 && count[nSym-1] == 0 {
		nSym--
	}
	t.nSym = nSym
	log := maxLog
	if srcLog := uint8(bits.Len(uint(total - 1))); srcLog < log {
		log = srcLog
	}
	if symLog := uint8(bits.Len(uint(nSym-1))) + 1; symLog > log {
		log = symLog
	}
	log = max(log, minTableLog)
	t.tableLog = log
	size := 1 << log
	if t.normalizeFloor(count[:nSym], total, log) {
		return
	}
	// Round each share, then move the rounding error onto the largest
	// counts, where one unit costs the least.
	sum := 0
	largest := 0
	for s := range nSym {
		c := count[s]
		if c == 0 {
			t.norm[s] = 0
			continue
		}
		n := int((uint64(c)*uint64(size) + uint64(total)/2) / uint64(total))
		n = max(n, 1)
		t.norm[s] = int16(n)
		sum += n
		if c > count[largest] {
			largest = s
		}
	}
	for diff := size - sum; diff != 0; {
		if diff > 0 {
			t.norm[largest] += int16(diff)
			break
		}
		// Take from the largest shares first, one unit each round, so no
		// share drops below 1.
		took := false
		for s := range nSym {
			if diff == 0 {
				break
			}
			if t.norm[s] > 1 && int(t.norm[s]) >= int(t.norm[largest])/2 {
				t.norm[s]--
				diff++
				took = true
			}
		}
		if !took {
			for s := range nSym {
				if diff == 0 {
					break
				}
				if t.norm[s] > 1 {
					t.norm[s]--
					diff++
				}
			}
		}
	}
}

// roundUp holds, for shares below 8 units, how far past the unit (in
// millionths of a unit's 2^20 scale) a share must be to round up.
var roundUp = [8]uint64{0, 473195, 504333, 520860, 550000, 700000, 750000, 830000}

// normalizeFloor is the reference encoder's normalization: floor each
// share (rounding small ones up past a threshold), give symbols rarer than
// one unit the "below 1" count -1 when there are many sequences, and put
// what is left on the largest share. It reports false when that would take
// half of the largest share.
func (t *fseTable) normalizeFloor(count []uint32, total int, log uint8) bool {
	low := int16(1)
	if total >= 2048 {
		low = -1
	}
	scale := 62 - uint(log)
	step := (uint64(1) << 62) / uint64(total)
	vStep := uint64(1) << (scale - 20)
	still := 1 << log
	largest, largestP := 0, int16(0)
	lowThreshold := uint32(total >> log)
	for s, c := range count {
		switch {
		case c == 0:
			t.norm[s] = 0
		case c <= lowThreshold:
			t.norm[s] = low
			still--
		default:
			p := int16((uint64(c) * step) >> scale)
			if p < 8 && uint64(c)*step-uint64(p)<<scale > vStep*roundUp[p] {
				p++
			}
			if p > largestP {
				largest, largestP = s, p
			}
			t.norm[s] = p
			still -= int(p)
		}
	}
	if -still >= int(t.norm[largest]>>1) {
		return false
	}
	t.norm[largest] += int16(still)
	return true
}

// appendDescription appends the FSE table description of t (RFC 8878
// section 4.1.1): the accuracy log, then each normalized count in a
// variable number of bits, with runs of zero counts in 2-bit repeat flags.
func (t *fseTable) appendDescription(dst []byte) []byte {
	var bitStream uint32
	bitCount := uint(0)
	bitStream = uint32(t.tableLog - minTableLog)
	bitCount = 4
	size := 1 << t.tableLog
	remaining := size + 1
	threshold := size
	nbBits := uint(t.tableLog) + 1
	previous0 := false
	for s := 0; s < t.nSym && remaining > 1; {
		if previous0 {
			start := s
			for s < t.nSym && t.norm[s] == 0 {
				s++
			}
			for s >= start+24 {
				start += 24
				bitStream += 0xFFFF << bitCount
				dst = append(dst, byte(bitStream), byte(bitStream>>8))
				bitStream >>= 16
			}
			for s >= start+3 {
				start += 3
				bitStream += 3 << bitCount
				bitCount += 2
			}
			bitStream += uint32(s-start) << bitCount
			bitCount += 2
			if bitCount > 16 {
				dst = append(dst, byte(bitStream), byte(bitStream>>8))
				bitStream >>= 16
				bitCount -= 16
			}
		}
		count := int(t.norm[s])
		s++
		maxV := 2*threshold - 1 - remaining
		if count < 0 {
			remaining += count
		} else {
			remaining -= count
		}
		count++
		if count >= threshold {
			count += maxV
		}
		bitStream += uint32(count) << bitCount
		bitCount += nbBits
		if count < maxV {
			bitCount--
		}
		previous0 = count == 1
		for remaining < threshold {
			nbBits--
			threshold >>= 1
		}
		if bitCount > 16 {
			dst = append(dst, byte(bitStream), byte(bitStream>>8))
			bitStream >>= 16
			bitCount -= 16
		}
	}
	dst = append(dst, byte(bitStream), byte(bitStream>>8))
	return dst[:len(dst)-2+int(bitCount+7)/8]
}

// fseState is one interleaved FSE encoder state.
type fseState struct {
	value uint32
	t     *fseTable
}

func (s *fseState) init(t *fseTable, sym uint8) {
	s.t = t
	tt := t.tt[sym]
	nbOut := (tt.deltaNbBits + 1<<15) >> 16
	v := nbOut<<16 - tt.deltaNbBits
	s.value = uint32(t.state[int32(v>>nbOut)+tt.deltaFindState])
}

func (s *fseState) encode(w *bitWriter, sym uint8) {
	tt := s.t.tt[sym]
	nbOut := (s.value + tt.deltaNbBits) >> 16
	w.add(uint64(s.value), uint(nbOut))
	s.value = uint32(s.t.state[int32(s.value>>nbOut)+tt.deltaFindState])
}

func (s *fseState) flush(w *bitWriter) {
	w.add(uint64(s.value), uint(s.t.tableLog))
	w.flush()
}

// bitWriter writes the backward-read bitstream of the sequences section:
// bits go in least significant first, and the decoder reads them from the
// end.
type bitWriter struct {
	c   uint64
	n   uint
	out []byte
}

// add appends the low nb bits of v; at most 56 bits may wait between
// flushes (flush leaves at most 7).
func (w *bitWriter) add(v uint64, nb uint) {
	w.c |= (v & (1<<nb - 1)) << w.n
	w.n += nb
}

func (w *bitWriter) flush() {
	n := w.n >> 3
	w.out = append(w.out, byte(w.c), byte(w.c>>8), byte(w.c>>16), byte(w.c>>24),
		byte(w.c>>32), byte(w.c>>40), byte(w.c>>48), byte(w.c>>56))
	w.out = w.out[:len(w.out)-8+int(n)]
	w.c >>= n * 8
	w.n &= 7
}

// close writes the end mark (a 1 bit) and the last partial byte.
func (w *bitWriter) close() {
	w.add(1, 1)
	w.flush()
	if w.n > 0 {
		w.out = append(w.out, byte(w.c))
		w.c, w.n = 0, 0
	}
}
