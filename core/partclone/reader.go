package partclone

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
)

// Reader reads one partclone image from a stream: NewReader takes the
// header and bitmap, Data the blocks.
type Reader struct {
	Header Header
	Bitmap *Bitmap

	src  *countReader
	br   *bufio.Reader
	data io.Reader // block data: br's leftover, then src directly
	// dataStart is the image offset of the first block; consumed counts
	// the bytes Data read since, for messages.
	dataStart, consumed int64
	closer              io.Closer
	done                atomic.Int64 // data bytes handed out
	used                bool
}

// countReader counts the bytes read through it, so errors can say where in
// the (decompressed) image they happened.
type countReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// NewReader reads the header and the bitmap of the image in r (already
// decompressed).
func NewReader(r io.Reader) (*Reader, error) {
	src := &countReader{r: r}
	rd := &Reader{src: src, br: bufio.NewReaderSize(src, 256<<10)}
	b := make([]byte, descSize, descSizeV1)
	if _, err := io.ReadFull(rd.br, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: header: %v", ErrTruncated, err)
		}
		return nil, fmt.Errorf("partclone: read header: %w", err)
	}
	h, needV1, err := parseHeader(b)
	if needV1 {
		b = b[:descSizeV1]
		if _, err := io.ReadFull(rd.br, b[descSize:]); err != nil {
			return nil, fmt.Errorf("%w: format 0001 header: %v", ErrTruncated, err)
		}
		h, _, err = parseHeader(b)
	}
	if err != nil {
		return nil, err
	}
	m, err := readBitmap(rd.br, h)
	if err != nil {
		return nil, err
	}
	h.UsedBlocks = m.Count()
	rd.Header, rd.Bitmap = *h, m
	// Blocks are read in large pieces: past the buffered bytes, read them
	// straight from the source instead of through the buffer (a checksum
	// read between groups would otherwise refill it and cost a copy of
	// most of the data). Format 0001 keeps the buffer for its look-ahead.
	rd.data = rd.br
	rd.dataStart = src.n.Load() - int64(rd.br.Buffered())
	if h.Version != 1 {
		rd.data = Unbuffer(rd.br, src)
	}
	return rd, nil
}

// Close closes the stream the Reader was opened on by Open.
func (r *Reader) Close() error {
	if r.closer != nil {
		return r.closer.Close()
	}
	return nil
}

// Done returns the number of data bytes Data has handed out so far; safe to
// call from any goroutine.
func (r *Reader) Done() int64 { return r.done.Load() }

// bufferBytes is how much block data Data collects before handing it out.
const bufferBytes = 16 << 20

// Data calls fn for every stored block, in increasing offset, in runs of
// consecutive blocks: off is the byte offset in the partition (block number
// times block size) and p the bytes, valid only during the call. A block
// reaches fn only after the checksum covering it has been verified, unless
// one checksum covers more than 16 MiB of blocks: then a mismatch is
// reported after those blocks went out. Data can be called once.
func (r *Reader) Data(ctx context.Context, fn func(off int64, p []byte) error) error {
	if r.used {
		return errors.New("partclone: Data called twice")
	}
	r.used = true
	h := &r.Header
	bs := int64(h.BlockSize)
	capBlocks := max(1, bufferBytes/bs)
	bpc := int64(h.BlocksPerChecksum)
	if bpc > 0 && bpc <= capBlocks {
		capBlocks -= capBlocks % bpc
	}
	capBlocks = min(capBlocks, max(h.UsedBlocks, 1))
	// Start small and grow while the image keeps delivering: a header
	// that claims much more than the stream holds costs no memory.
	unit := int64(1)
	if bpc > 0 && bpc <= capBlocks {
		unit = bpc
	}
	bufBlocks := min(capBlocks, max(unit, (256<<10)/bs/unit*unit))
	buf := make([]byte, bufBlocks*bs)
	var sum *summer
	if h.Checksum != ChecksumNone {
		sum = newSummer(h.Checksum)
	}
	stored := make([]byte, 16)
	// The checksum of format 0001 images is 4 bytes, or 8 from early 64-bit
	// builds; which one is decided at the second block.
	extra := 0
	v1probe := h.Version == 1 && h.UsedBlocks > 1

	remaining := h.UsedBlocks
	var index int64  // stored blocks read so far
	var cursor int64 // block number where the next run search starts
	inGroup := int64(0)
	groupStart := int64(0) // index of the first block of the current group
	for remaining > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		bufStart := index
		k := int64(0)
		for k < bufBlocks && remaining > 0 {
			n := min(bufBlocks-k, remaining)
			if bpc > 0 {
				n = min(n, bpc-inGroup)
			}
			if h.Version == 1 {
				n = 1
			}
			p := buf[k*bs : (k+n)*bs]
			if _, err := io.ReadFull(r.data, p); err != nil {
				return r.truncated(err, fmt.Sprintf("block %d", r.blockOf(cursor, k)))
			}
			r.consumed += int64(len(p))
			if sum != nil {
				sum.add(p)
			}
			k += n
			index += n
			remaining -= n
			inGroup += n
			if bpc == 0 || (inGroup < bpc && remaining > 0) {
				continue
			}
			// A group is complete: its checksum follows.
			if v1probe {
				v1probe = false
				var err error
				if extra, err = r.probeV1(sum, bs); err != nil {
					return err
				}
				h.ChecksumSize += extra
			}
			if cs := h.ChecksumSize; cs > 0 {
				if _, err := io.ReadFull(r.data, stored[:cs]); err != nil {
					return r.truncated(err, fmt.Sprintf("checksum of blocks %s", r.groupBlocks(cursor, bufStart, groupStart, index)))
				}
				r.consumed += int64(cs)
				if !sum.matches(stored[:cs-extra]) {
					return fmt.Errorf("%w: %s checksum of blocks %s (stored blocks %d-%d, image byte %d) is %x, the data gives %x; the image is corrupt there",
						ErrChecksum, h.Checksum, r.groupBlocks(cursor, bufStart, groupStart, index), groupStart, index-1,
						r.dataStart+r.consumed-int64(cs), stored[:cs-extra], sum.sum())
				}
				if h.Reseed {
					sum.reset()
				}
			}
			inGroup = 0
			groupStart = index
		}
		// Hand the buffer out as runs of consecutive blocks.
		for j := int64(0); j < k; {
			start, end := r.Bitmap.NextRun(cursor)
			if start >= h.TotalBlocks {
				return fmt.Errorf("%w: bitmap ran out of blocks at stored block %d", ErrCorrupt, bufStart+j)
			}
			n := min(end-start, k-j)
			if err := fn(start*bs, buf[j*bs:(j+n)*bs]); err != nil {
				return err
			}
			r.done.Add(n * bs)
			j += n
			cursor = start + n
		}
		if k == bufBlocks && bufBlocks < capBlocks {
			bufBlocks = min(capBlocks, 2*bufBlocks)
			buf = make([]byte, bufBlocks*bs)
		}
	}
	return nil
}

// probeV1 decides whether a format 0001 image stores 8-byte CRCs. It is
// called after the first block, before its CRC is read: the next bytes are
// either <crc 4><block><crc 4> or <crc 4><4 bytes><block><crc 4>, and only
// one of them continues the CRC.
func (r *Reader) probeV1(sum *summer, bs int64) (extra int, err error) {
	if need := int(8 + bs + 8); r.br.Size() < need {
		r.br = bufio.NewReaderSize(r.br, need)
	}
	b, err := r.br.Peek(int(8 + bs + 8))
	if err != nil && len(b) < int(4+bs+4) {
		return 0, r.truncated(err, "block 1")
	}
	if !sum.matches(b[:4]) {
		// The first block's own CRC decides nothing; report it.
		return 0, nil
	}
	after := *sum
	after.add(b[4 : 4+bs])
	if after.matches(b[4+bs : 8+bs]) {
		return 0, nil
	}
	if len(b) >= int(8+bs+8) {
		bug := *sum
		bug.add(b[8 : 8+bs])
		if bug.matches(b[8+bs : 12+bs]) {
			return 4, nil
		}
	}
	return 0, nil
}

// blockOf returns the block number of the k-th stored block at or after
// block cursor; for messages.
func (r *Reader) blockOf(cursor, k int64) int64 {
	for {
		start, end := r.Bitmap.NextRun(cursor)
		if start >= r.Header.TotalBlocks {
			return start
		}
		if end-start > k {
			return start + k
		}
		k -= end - start
		cursor = end
	}
}

// groupBlocks names the block range of the stored blocks [first, end) for
// messages; cursor is where the current buffer's first block (index
// bufStart) is searched from.
func (r *Reader) groupBlocks(cursor, bufStart, first, end int64) string {
	if first < bufStart {
		// The group began in an earlier buffer; name what is known.
		first = bufStart
	}
	a := r.blockOf(cursor, first-bufStart)
	b := r.blockOf(cursor, end-1-bufStart)
	if a == b {
		return fmt.Sprintf("%d", a)
	}
	return fmt.Sprintf("%d-%d", a, b)
}

// Unbuffer returns a reader that yields what br has buffered, then reads
// from r, the reader br wraps, directly.
func Unbuffer(br *bufio.Reader, r io.Reader) io.Reader {
	n := br.Buffered()
	if n == 0 {
		return r
	}
	b, _ := br.Peek(n)
	return io.MultiReader(bytes.NewReader(bytes.Clone(b)), r)
}

func (r *Reader) truncated(err error, where string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %s: the image ends at byte %d (%d of %d data bytes read)", ErrTruncated, where, r.dataStart+r.consumed, r.done.Load(), r.Header.Bytes())
	}
	return fmt.Errorf("partclone: %s: %w", where, err)
}
