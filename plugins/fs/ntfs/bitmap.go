package ntfs

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/bits"
)

// bitmapChunk is how much of $Bitmap is read at a time (a multiple of 8).
const bitmapChunk = 1 << 20

// clusterRange is [first, end) in clusters.
type clusterRange struct{ first, end int64 }

// clusterBitmap is the $Bitmap stream of a volume.
type clusterBitmap struct {
	v *volume
	s *stream
}

func (v *volume) bitmap(ctx context.Context) (*clusterBitmap, error) {
	rec, err := v.readRecord(ctx, recBitmap)
	if err != nil {
		return nil, err
	}
	what := recName(recBitmap) + ": $DATA"
	if rec.flags&recordInUse == 0 {
		return nil, fmt.Errorf("%w: %s is not in use", ErrCorrupt, recName(recBitmap))
	}
	if rec.base >= 0 {
		return nil, fmt.Errorf("%w: %s is an extension of record %d", ErrCorrupt, recName(recBitmap), rec.base)
	}
	s, err := v.dataStream(ctx, rec, atData, "")
	if err != nil {
		return nil, err
	}
	if s.flags&(attrCompressed|attrEncrypted) != 0 {
		return nil, fmt.Errorf("%w: %s is compressed or encrypted (flags 0x%04X)", ErrUnsupported, what, s.flags)
	}
	need := (v.bs.clusters + 7) / 8
	if s.dataSize < need || s.initSize < need {
		return nil, fmt.Errorf("%w: %s holds %d bytes (%d initialized), the volume's %d clusters need %d",
			ErrCorrupt, what, s.dataSize, s.initSize, v.bs.clusters, need)
	}
	for i, r := range s.runs {
		if r.lcn < 0 && r.vcn*v.bs.clusterSize < need {
			return nil, fmt.Errorf("%w: %s: run %d is sparse", ErrCorrupt, what, i)
		}
	}
	return &clusterBitmap{v: v, s: s}, nil
}

// scan calls fn(first, end) for every run of in-use clusters, in order.
// Runs that continue across read chunks are reported in pieces that touch.
func (b *clusterBitmap) scan(ctx context.Context, fn func(first, end int64) error) error {
	clusters := b.v.bs.clusters
	need := (clusters + 7) / 8
	buf := make([]byte, min(need+7, bitmapChunk))
	for off := int64(0); off < need; off += bitmapChunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(need-off, bitmapChunk)
		chunk := buf[:(n+7)&^7]
		clear(chunk[n:])
		if err := b.v.readStream(ctx, b.s.runs, off, chunk[:n], recName(recBitmap)+": $DATA"); err != nil {
			return err
		}
		base := off * 8
		// Padding bits past the last cluster mean nothing.
		if valid := clusters - base; valid < int64(len(chunk))*8 {
			for i := valid; i < int64(len(chunk))*8; i++ {
				chunk[i/8] &^= 1 << (i % 8)
			}
		}
		if err := scanBits(chunk, base, fn); err != nil {
			return err
		}
	}
	return nil
}

// scanBits reports the runs of set bits in chunk (len a multiple of 8,
// bit i of byte j is cluster base+8j+i) as [first, end) ranges.
func scanBits(chunk []byte, base int64, fn func(first, end int64) error) error {
	inRun := false
	var start int64
	for i := 0; i < len(chunk); i += 8 {
		w := binary.LittleEndian.Uint64(chunk[i:])
		if (inRun && w == ^uint64(0)) || (!inRun && w == 0) {
			continue
		}
		wb := base + int64(i)*8
		for pos := 0; pos < 64; {
			if !inRun {
				rest := w >> uint(pos)
				if rest == 0 {
					break
				}
				pos += bits.TrailingZeros64(rest)
				start, inRun = wb+int64(pos), true
			} else {
				rest := ^w >> uint(pos)
				if rest == 0 {
					break
				}
				pos += bits.TrailingZeros64(rest)
				if err := fn(start, wb+int64(pos)); err != nil {
					return err
				}
				inRun = false
			}
		}
	}
	if inRun {
		return fn(start, base+int64(len(chunk))*8)
	}
	return nil
}
