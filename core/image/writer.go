package image

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"io"
)

// WriterAtWriter is what a Writer writes to: payloads are appended, and the
// header is rewritten in place when the image is finished.
type WriterAtWriter interface {
	io.Writer
	io.WriterAt
}

// Writer lays out an image: header first, then payloads as they come, then
// index and trailer. It is not safe for concurrent use; the capture
// pipeline funnels finished chunks to it from one goroutine.
type Writer struct {
	w         WriterAtWriter
	headerLen int64
	off       int64
	index     Index
	zeroEnd   int64
}

// NewWriter writes h at the start of w. Used-byte counts in h may change
// before Finish; nothing else that changes the header's length may.
func NewWriter(w WriterAtWriter, h *Header) (*Writer, error) {
	hb := MarshalHeader(h)
	if _, err := w.Write(hb); err != nil {
		return nil, fmt.Errorf("write header: %w", err)
	}
	return &Writer{w: w, headerLen: int64(len(hb)), off: int64(len(hb))}, nil
}

// AddChunk appends payload and records its index entry. c.Runs, c.RawSize,
// c.Codec and c.Sum must be set; runs must follow all earlier runs.
func (w *Writer) AddChunk(c Chunk, payload []byte) error {
	if len(c.Runs) == 0 || c.RawSize == 0 || c.RawSize > MaxRawChunk {
		return fmt.Errorf("image: chunk %d: %d runs, raw size %d", len(w.index.Chunks), len(c.Runs), c.RawSize)
	}
	c.FileOffset = w.off
	c.StoredSize = uint32(len(payload))
	if _, err := w.w.Write(payload); err != nil {
		return fmt.Errorf("write chunk %d: %w", len(w.index.Chunks), err)
	}
	w.off += int64(len(payload))
	w.index.Chunks = append(w.index.Chunks, c)
	return nil
}

// AddZero records that [off, off+length) reads as zero in the source.
// Zero extents must come in increasing order.
func (w *Writer) AddZero(off, length int64) error {
	if length <= 0 {
		return nil
	}
	if off < w.zeroEnd {
		return fmt.Errorf("%w: zero extent at %d after one ending at %d", ErrOrder, off, w.zeroEnd)
	}
	z := w.index.Zeros
	if n := len(z); n > 0 && z[n-1].End() == off {
		z[n-1].Length += length
	} else {
		w.index.Zeros = append(z, Run{Offset: off, Length: length})
	}
	w.zeroEnd = off + length
	return nil
}

// Index returns the index built so far.
func (w *Writer) Index() *Index { return &w.index }

// Finish rewrites the header (now with final counts), writes the index and
// the trailer, and signs the image when key is not nil. The caller syncs
// and closes the file.
func (w *Writer) Finish(h *Header, key ed25519.PrivateKey) (*Trailer, error) {
	hb := MarshalHeader(h)
	if int64(len(hb)) != w.headerLen {
		return nil, fmt.Errorf("%w: %d bytes, was %d", ErrHeaderGrown, len(hb), w.headerLen)
	}
	if _, err := w.w.WriteAt(hb, 0); err != nil {
		return nil, fmt.Errorf("rewrite header: %w", err)
	}
	ib := MarshalIndex(&w.index)
	t := &Trailer{
		HeaderLength: w.headerLen,
		IndexOffset:  w.off,
		IndexLength:  int64(len(ib)),
		HeaderSum:    sha256.Sum256(hb),
		IndexSum:     sha256.Sum256(ib),
	}
	t.Digest = sha256.Sum256(TrailerPrefix(t))
	if key != nil {
		copy(t.PublicKey[:], key.Public().(ed25519.PublicKey))
		copy(t.Signature[:], ed25519.Sign(key, signedMessage(t.Digest)))
	}
	if _, err := w.w.Write(ib); err != nil {
		return nil, fmt.Errorf("write index: %w", err)
	}
	if _, err := w.w.Write(MarshalTrailer(t)); err != nil {
		return nil, fmt.Errorf("write trailer: %w", err)
	}
	w.off += int64(len(ib)) + TrailerSize
	return t, nil
}
