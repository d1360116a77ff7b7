package zstdenc

import (
	"math"
	"math/bits"

	"github.com/klauspost/compress/huff0"
)

// Sequence symbol alphabets and their largest accuracy logs (RFC 8878
// section 3.1.1.3.2).
const (
	llMaxLog    = 9
	mlMaxLog    = 9
	ofMaxLog    = 8
	minTableLog = 5
	maxTableLog = 9
)

// Symbol_Compression_Modes.
const (
	modePredefined = 0
	modeRLE        = 1
	modeCompressed = 2
	modeRepeat     = 3
)

// Literals_Block_Type.
const (
	litRaw        = 0
	litRLE        = 1
	litCompressed = 2
	litTreeless   = 3
)

var (
	llBits = [36]uint8{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		1, 1, 1, 1, 2, 2, 3, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	mlBits = [53]uint8{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		1, 1, 1, 1, 2, 2, 3, 3, 4, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	// The default distributions (RFC 8878 section 3.1.1.3.2.2).
	llDefault = []int16{4, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1,
		2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 2, 1, 1, 1, 1, 1, -1, -1, -1, -1}
	mlDefault = []int16{1, 4, 3, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1,
		1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
		1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1}
	ofDefault = []int16{1, 1, 1, 1, 1, 1, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1,
		1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1}

	llPredefined = predefined(llDefault, 6)
	mlPredefined = predefined(mlDefault, 6)
	ofPredefined = predefined(ofDefault, 5)

	llCodes [64]uint8  // literal length below 64 -> code
	mlCodes [128]uint8 // match length - 3 below 128 -> code
)

func init() {
	base := uint32(0)
	for code, nb := range llBits {
		for v := base; v < base+1<<nb && v < 64; v++ {
			llCodes[v] = uint8(code)
		}
		base += 1 << nb
	}
	base = 0
	for code, nb := range mlBits {
		for v := base; v < base+1<<nb && v < 128; v++ {
			mlCodes[v] = uint8(code)
		}
		base += 1 << nb
	}
}

func predefined(norm []int16, log uint8) *fseTable {
	t := &fseTable{tableLog: log, nSym: len(norm)}
	copy(t.norm[:], norm)
	t.build()
	return t
}

func llCode(ll uint32) uint8 {
	if ll < 64 {
		return llCodes[ll]
	}
	return uint8(bits.Len32(ll)-1) + 19
}

func mlCode(mlBase uint32) uint8 {
	if mlBase < 128 {
		return mlCodes[mlBase]
	}
	return uint8(bits.Len32(mlBase)-1) + 36
}

// seq is one sequence: litLen literals, then matchLen bytes copied from
// earlier output. offVal is the format's Offset_Value: 1-3 name a repeat
// offset, larger values are the offset plus 3. The codes are the symbols
// the three FSE streams carry; the rest of each value goes as extra bits.
type seq struct {
	litLen, matchLen, offVal uint32
	llCode, mlCode, ofCode   uint8
}

func newSeq(litLen, matchLen, offVal uint32) seq {
	return seq{litLen: litLen, matchLen: matchLen, offVal: offVal,
		llCode: llCode(litLen), mlCode: mlCode(matchLen - 3), ofCode: uint8(bits.Len32(offVal) - 1)}
}

// entropy holds what a block's encoding carries into the next block of the
// same frame: the Huffman table of the literals and the three sequence
// tables, which later blocks may reuse without describing them again.
type entropy struct {
	lit        huff0.Scratch
	ll, ml, of symbolTables
	w          bitWriter
}

// symbolTables are the FSE tables of one symbol kind within a frame.
type symbolTables struct {
	prev *fseTable // what the last compressed block used; nil at the start of a frame
	cur  *fseTable // what this block uses
	// A block builds its own table into own[next]; once a block that used
	// it is accepted, it stays readable as prev while the next block
	// builds into the other one.
	own  [2]fseTable
	next int
}

// reset forgets every table, as at the start of a frame.
func (e *entropy) reset() {
	e.lit.Reuse = huff0.ReusePolicyNone
	e.ll.prev, e.ml.prev, e.of.prev = nil, nil, nil
}

// encodeBlock appends a compressed block's content (literals section and
// sequences section) to dst. ok is false when the content would not be
// smaller than limit; the caller then writes a raw block and calls reject.
func (e *entropy) encodeBlock(dst, lits []byte, seqs []seq, limit int) (out []byte, ok bool) {
	start := len(dst)
	dst = e.appendLiterals(dst, lits)
	if len(dst)-start >= limit {
		return dst, false
	}
	dst = e.appendSequences(dst, seqs)
	return dst, len(dst)-start < limit
}

// accept makes this block's tables the ones later blocks may repeat.
func (e *entropy) accept() {
	for _, k := range []*symbolTables{&e.ll, &e.ml, &e.of} {
		if k.cur == &k.own[k.next] {
			k.next ^= 1
		}
		k.prev = k.cur
	}
}

// reject is called for a block that was written raw instead: the decoder
// never saw its tables, so nothing may refer to them.
func (e *entropy) reject() {
	e.lit.Reuse = huff0.ReusePolicyNone
}

func (e *entropy) appendLiterals(dst, lits []byte) []byte {
	var (
		out    []byte
		reused bool
		err    error
		single bool
	)
	switch {
	case len(lits) >= 1024:
		out, reused, err = huff0.Compress4X(lits, &e.lit)
	case len(lits) > 16:
		single = true
		out, reused, err = huff0.Compress1X(lits, &e.lit)
	default:
		err = huff0.ErrIncompressible
	}
	switch err {
	case nil:
		typ := litCompressed
		if reused {
			typ = litTreeless
		}
		at := len(dst)
		dst = appendCompressedLiteralsHeader(dst, typ, single, len(lits), len(out))
		dst = append(dst, out...)
		var raw [3]byte
		if len(dst)-at < len(appendRawLiteralsHeader(raw[:0], litRaw, len(lits)))+len(lits) {
			e.lit.Reuse = huff0.ReusePolicyAllow
			return dst
		}
		// No smaller than raw literals: store them raw. huff0 may now
		// hold a table the decoder will not see; it must not be reused.
		dst = dst[:at]
		if !reused {
			e.lit.Reuse = huff0.ReusePolicyNone
		}
	case huff0.ErrUseRLE:
		// huff0 keeps its last table when it declines, and RLE or raw
		// literals leave the decoder's as they were: later blocks may
		// still reuse it.
		dst = appendRawLiteralsHeader(dst, litRLE, len(lits))
		return append(dst, lits[0])
	}
	dst = appendRawLiteralsHeader(dst, litRaw, len(lits))
	return append(dst, lits...)
}

func appendRawLiteralsHeader(dst []byte, typ int, n int) []byte {
	switch {
	case n < 32:
		return append(dst, byte(typ|n<<3))
	case n < 4096:
		v := typ | 1<<2 | n<<4
		return append(dst, byte(v), byte(v>>8))
	}
	v := typ | 3<<2 | n<<4
	return append(dst, byte(v), byte(v>>8), byte(v>>16))
}

func appendCompressedLiteralsHeader(dst []byte, typ int, single bool, regen, comp int) []byte {
	switch {
	case regen < 1024 && comp < 1024:
		format := 1
		if single {
			format = 0
		}
		v := uint32(typ) | uint32(format)<<2 | uint32(regen)<<4 | uint32(comp)<<14
		return append(dst, byte(v), byte(v>>8), byte(v>>16))
	case regen < 16384 && comp < 16384:
		v := uint32(typ) | 2<<2 | uint32(regen)<<4 | uint32(comp)<<18
		return append(dst, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
	}
	v := uint64(typ) | 3<<2 | uint64(regen)<<4 | uint64(comp)<<22
	return append(dst, byte(v), byte(v>>8), byte(v>>16), byte(v>>24), byte(v>>32))
}

func (e *entropy) appendSequences(dst []byte, seqs []seq) []byte {
	n := len(seqs)
	switch {
	case n < 128:
		dst = append(dst, byte(n))
	case n < 0x7F00:
		dst = append(dst, byte(n>>8)+128, byte(n))
	default:
		dst = append(dst, 255, byte(n-0x7F00), byte((n-0x7F00)>>8))
	}
	if n == 0 {
		e.ll.cur, e.ml.cur, e.of.cur = e.ll.prev, e.ml.prev, e.of.prev
		return dst
	}
	var llCount, mlCount, ofCount [maxSym]uint32
	for _, s := range seqs {
		llCount[s.llCode]++
		mlCount[s.mlCode]++
		ofCount[s.ofCode]++
	}
	modes := len(dst)
	dst = append(dst, 0)
	var llMode, ofMode, mlMode int
	llMode, dst = e.ll.choose(dst, llCount[:36], n, llMaxLog, llPredefined)
	ofMode, dst = e.of.choose(dst, ofCount[:32], n, ofMaxLog, ofPredefined)
	mlMode, dst = e.ml.choose(dst, mlCount[:53], n, mlMaxLog, mlPredefined)
	dst[modes] = byte(llMode<<6 | ofMode<<4 | mlMode<<2)

	// The bitstream is read backwards: encode the last sequence first.
	w := &e.w
	w.out, w.c, w.n = dst, 0, 0
	var ll, ml, of fseState
	s := &seqs[n-1]
	ml.init(e.ml.cur, s.mlCode)
	of.init(e.of.cur, s.ofCode)
	ll.init(e.ll.cur, s.llCode)
	w.add(uint64(s.litLen), uint(llBits[s.llCode]))
	w.add(uint64(s.matchLen-3), uint(mlBits[s.mlCode]))
	w.flush()
	w.add(uint64(s.offVal), uint(s.ofCode))
	w.flush()
	for i := n - 2; i >= 0; i-- {
		s := &seqs[i]
		of.encode(w, s.ofCode)
		ml.encode(w, s.mlCode)
		ll.encode(w, s.llCode)
		// The states took at most 9+9+8 bits after the last flush (which
		// leaves at most 7); flush again only when the extra bits could
		// overflow the 64-bit buffer.
		llb, mlb, ofb := uint(llBits[s.llCode]), uint(mlBits[s.mlCode]), uint(s.ofCode)
		if llb+mlb+ofb >= 64-7-26 {
			w.flush()
		}
		w.add(uint64(s.litLen), llb)
		w.add(uint64(s.matchLen-3), mlb)
		if llb+mlb+ofb > 56 {
			w.flush()
		}
		w.add(uint64(s.offVal), ofb)
		w.flush()
	}
	ml.flush(w)
	of.flush(w)
	ll.flush(w)
	w.close()
	return w.out
}

// choose picks the cheapest way to code one symbol kind in this block, sets
// k.cur to it and returns its mode: the default distribution, a single
// repeated symbol, the previous block's table, or a table of its own
// (whose description is then appended to dst).
func (k *symbolTables) choose(dst []byte, count []uint32, n int, maxLog uint8, def *fseTable) (int, []byte) {
	own := &k.own[k.next]
	distinct, top := 0, 0
	for s, c := range count {
		if c > 0 {
			distinct++
			top = s
		}
	}
	if distinct == 1 && n > 2 {
		own.setRLE(uint8(top))
		k.cur = own
		return modeRLE, append(dst, byte(top))
	}
	cost := func(t *fseTable) float64 {
		if t == nil || t.rle {
			return math.Inf(1)
		}
		bits := 0.0
		for s, c := range count {
			if c > 0 {
				if s >= t.nSym {
					return math.Inf(1)
				}
				bits += float64(c) * t.cost[s]
			}
		}
		return bits
	}
	own.normalize(count, n, maxLog)
	own.build()
	desc := len(dst)
	dst = own.appendDescription(dst)
	ownCost := cost(own) + float64(8*(len(dst)-desc))
	defCost, prevCost := cost(def), cost(k.prev)
	switch {
	case prevCost <= defCost && prevCost <= ownCost:
		k.cur = k.prev
		return modeRepeat, dst[:desc]
	case defCost <= ownCost:
		k.cur = def
		return modePredefined, dst[:desc]
	}
	k.cur = own
	return modeCompressed, dst
}
