package xfs

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
)

// AGF fields (offsets into the AGF sector, big endian).
const (
	agfMagic     = 0x00 // "XAGF"
	agfVersion   = 0x04
	agfSeqno     = 0x08
	agfLength    = 0x0C
	agfBnoRoot   = 0x10
	agfBnoLevel  = 0x1C
	agfFlCount   = 0x30
	agfFreeBlks  = 0x34
	agfBtreeBlks = 0x3C
	agfUUID      = 0x40
	agfCRC       = 0xD8
	agfSize      = 0xE0
)

// Short-form btree block header.
const (
	bbMagic    = 0x00
	bbLevel    = 0x04
	bbNumRecs  = 0x06
	bbBlkno    = 0x10 // v5 only, from here on
	bbUUID     = 0x20
	bbOwner    = 0x30
	bbCRC      = 0x34
	bbHdrV4    = 16
	bbHdrV5    = 56
	allocRec   = 8 // (startblock, blockcount)
	allocKey   = 8
	allocPtr   = 4
	magicBnoV4 = "ABTB"
	magicBnoV5 = "AB3B"
)

type agf struct {
	length     uint32
	bnoRoot    uint32
	bnoLevels  uint32
	flCount    uint32
	freeBlocks uint32
	btreeBlks  uint32
}

func (fs *filesystem) agOffset(ag uint32) int64 {
	return int64(ag) * int64(fs.sb.agBlocks) * fs.sb.blockSize
}

func (fs *filesystem) readAGF(ag uint32) (*agf, error) {
	sb := fs.sb
	buf := make([]byte, sb.sectSize)
	what := fmt.Sprintf("AG %d: AGF", ag)
	if err := fs.readAt(buf, fs.agOffset(ag)+sb.sectSize, what); err != nil {
		return nil, err
	}
	if string(buf[agfMagic:agfMagic+4]) != "XAGF" {
		return nil, fmt.Errorf("%w: %s: bad magic %q, want \"XAGF\"", ErrCorrupt, what, buf[:4])
	}
	be := binary.BigEndian
	if v := be.Uint32(buf[agfVersion:]); v != 1 {
		return nil, fmt.Errorf("%w: %s: version %d, want 1", ErrCorrupt, what, v)
	}
	if sb.crc {
		if !verifyCRC(buf, agfCRC) {
			return nil, fmt.Errorf("%w: %s: CRC mismatch", ErrCorrupt, what)
		}
		if !bytes.Equal(buf[agfUUID:agfUUID+16], sb.metaUUID[:]) {
			return nil, fmt.Errorf("%w: %s: UUID %x is not the filesystem's", ErrCorrupt, what, buf[agfUUID:agfUUID+16])
		}
	}
	if seq := be.Uint32(buf[agfSeqno:]); seq != ag {
		return nil, fmt.Errorf("%w: %s: says it belongs to AG %d", ErrCorrupt, what, seq)
	}
	a := &agf{
		length:     be.Uint32(buf[agfLength:]),
		bnoRoot:    be.Uint32(buf[agfBnoRoot:]),
		bnoLevels:  be.Uint32(buf[agfBnoLevel:]),
		flCount:    be.Uint32(buf[agfFlCount:]),
		freeBlocks: be.Uint32(buf[agfFreeBlks:]),
		btreeBlks:  be.Uint32(buf[agfBtreeBlks:]),
	}
	if want := sb.agLen(ag); a.length != want {
		return nil, fmt.Errorf("%w: %s: length %d blocks, superblock implies %d", ErrCorrupt, what, a.length, want)
	}
	if a.bnoLevels < 1 || a.bnoLevels > maxLevels {
		return nil, fmt.Errorf("%w: %s: bno btree has %d levels (1..%d allowed)", ErrCorrupt, what, a.bnoLevels, maxLevels)
	}
	if a.bnoRoot == 0 || a.bnoRoot >= a.length {
		return nil, fmt.Errorf("%w: %s: bno btree root at block %d, outside the AG (%d blocks)", ErrCorrupt, what, a.bnoRoot, a.length)
	}
	if a.freeBlocks > a.length {
		return nil, fmt.Errorf("%w: %s: %d free blocks in an AG of %d", ErrCorrupt, what, a.freeBlocks, a.length)
	}
	return a, nil
}

// freeWalk is one walk of an AG's bno btree.
type freeWalk struct {
	fs      *filesystem
	ctx     context.Context
	ag      uint32
	agf     *agf
	fn      func(start, count uint32) error
	visited uint32
	prevEnd uint32 // end of the last free extent seen
	any     bool
	bufs    [][]byte // one block buffer per level
}

// walkFree calls fn for every free extent of AG ag in increasing order.
func (fs *filesystem) walkFree(ctx context.Context, ag uint32, a *agf, fn func(start, count uint32) error) error {
	w := &freeWalk{fs: fs, ctx: ctx, ag: ag, agf: a, fn: fn, bufs: make([][]byte, a.bnoLevels)}
	return w.block(a.bnoRoot, int(a.bnoLevels)-1, true)
}

func (w *freeWalk) block(agbno uint32, level int, root bool) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	sb := w.fs.sb
	what := fmt.Sprintf("AG %d: bno btree block %d", w.ag, agbno)
	w.visited++
	if w.visited > w.agf.length {
		return fmt.Errorf("%w: %s: more btree blocks visited than the AG has (a cycle)", ErrCorrupt, what)
	}
	if w.bufs[level] == nil {
		w.bufs[level] = make([]byte, sb.blockSize)
	}
	buf := w.bufs[level]
	daddr := (int64(w.ag)*int64(sb.agBlocks) + int64(agbno)) * sb.bbPerBlock
	if err := w.fs.readAt(buf, daddr*512, what); err != nil {
		return err
	}
	be := binary.BigEndian
	hdr := bbHdrV4
	magic := magicBnoV4
	if sb.crc {
		hdr, magic = bbHdrV5, magicBnoV5
	}
	if string(buf[bbMagic:bbMagic+4]) != magic {
		return fmt.Errorf("%w: %s: bad magic %q, want %q", ErrCorrupt, what, buf[:4], magic)
	}
	if sb.crc {
		if !verifyCRC(buf, bbCRC) {
			return fmt.Errorf("%w: %s: CRC mismatch", ErrCorrupt, what)
		}
		if got := be.Uint64(buf[bbBlkno:]); got != uint64(daddr) {
			return fmt.Errorf("%w: %s: block says it lives at sector %d, not %d", ErrCorrupt, what, got, daddr)
		}
		if !bytes.Equal(buf[bbUUID:bbUUID+16], sb.metaUUID[:]) {
			return fmt.Errorf("%w: %s: UUID %x is not the filesystem's", ErrCorrupt, what, buf[bbUUID:bbUUID+16])
		}
		if owner := be.Uint32(buf[bbOwner:]); owner != w.ag {
			return fmt.Errorf("%w: %s: owner is AG %d", ErrCorrupt, what, owner)
		}
	}
	if got := int(be.Uint16(buf[bbLevel:])); got != level {
		return fmt.Errorf("%w: %s: level %d, expected %d", ErrCorrupt, what, got, level)
	}
	n := int(be.Uint16(buf[bbNumRecs:]))
	if n == 0 && !root {
		return fmt.Errorf("%w: %s: empty non-root block", ErrCorrupt, what)
	}
	avail := int(sb.blockSize) - hdr
	if level == 0 {
		if n > avail/allocRec {
			return fmt.Errorf("%w: %s: %d records, a leaf holds at most %d", ErrCorrupt, what, n, avail/allocRec)
		}
		for i := 0; i < n; i++ {
			rec := buf[hdr+i*allocRec:]
			start, count := be.Uint32(rec), be.Uint32(rec[4:])
			if count == 0 || start >= w.agf.length || count > w.agf.length-start {
				return fmt.Errorf("%w: %s: record %d: free extent %d+%d outside the AG (%d blocks)",
					ErrCorrupt, what, i, start, count, w.agf.length)
			}
			if w.any && start < w.prevEnd {
				return fmt.Errorf("%w: %s: record %d: free extent at %d starts before the previous one ends (%d)",
					ErrCorrupt, what, i, start, w.prevEnd)
			}
			w.prevEnd, w.any = start+count, true
			if err := w.fn(start, count); err != nil {
				return err
			}
		}
		return nil
	}
	maxRecs := avail / (allocKey + allocPtr)
	if n > maxRecs {
		return fmt.Errorf("%w: %s: %d pointers, a node holds at most %d", ErrCorrupt, what, n, maxRecs)
	}
	ptrs := hdr + maxRecs*allocKey
	for i := 0; i < n; i++ {
		// Children overwrite deeper buffers only; re-read this block's
		// pointer from buf, which is this level's own buffer.
		child := be.Uint32(buf[ptrs+i*allocPtr:])
		if child == 0 || child >= w.agf.length {
			return fmt.Errorf("%w: %s: pointer %d to block %d, outside the AG (%d blocks)", ErrCorrupt, what, i, child, w.agf.length)
		}
		if err := w.block(child, level-1, false); err != nil {
			return err
		}
	}
	return nil
}
