package image

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
)

// Reader gives random access to the chunks of an image. Opening checks
// the trailer, header and index hashes; every chunk is checked against its
// own hash when read.
type Reader struct {
	Header  *Header
	Index   *Index
	Trailer *Trailer

	r    io.ReaderAt
	size int64
	// raw bytes, kept so that transports can hand the metadata to receivers
	headerBytes, indexBytes, trailerBytes []byte
}

// File is a Reader over an open file.
type File struct {
	*Reader
	f *os.File
}

// Open opens and checks the image at path.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	r, err := NewReader(f, st.Size())
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &File{Reader: r, f: f}, nil
}

// Close closes the file.
func (f *File) Close() error { return f.f.Close() }

// NewReader reads the trailer, header and index of an image of size bytes.
func NewReader(r io.ReaderAt, size int64) (*Reader, error) {
	pre := make([]byte, preambleSize)
	if size < preambleSize {
		return nil, fmt.Errorf("%w: %d bytes is smaller than a header", ErrTruncated, size)
	}
	if _, err := r.ReadAt(pre, 0); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	hlen, err := headerLength(pre)
	if err != nil {
		return nil, err
	}
	if size < hlen+TrailerSize {
		return nil, fmt.Errorf("%w: %d bytes cannot hold a %d-byte header and the trailer", ErrTruncated, size, hlen)
	}
	tb := make([]byte, TrailerSize)
	if _, err := r.ReadAt(tb, size-TrailerSize); err != nil {
		return nil, fmt.Errorf("trailer: %w", err)
	}
	t, err := UnmarshalTrailer(tb, size)
	if err != nil {
		return nil, err
	}
	if t.HeaderLength != hlen {
		return nil, fmt.Errorf("%w: header says it is %d bytes, trailer says %d", ErrCorrupt, hlen, t.HeaderLength)
	}
	hb := make([]byte, hlen)
	if _, err := r.ReadAt(hb, 0); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	ib := make([]byte, t.IndexLength)
	if _, err := r.ReadAt(ib, t.IndexOffset); err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	rd, err := parseMeta(hb, ib, tb, t, size)
	if err != nil {
		return nil, err
	}
	rd.r, rd.size = r, size
	return rd, nil
}

// NewMeta builds a Reader from the header, index and trailer bytes alone
// (as a receiver gets them from a sender). ReadPayload is not available;
// VerifyPayload is.
func NewMeta(header, index, trailer []byte) (*Reader, error) {
	t, err := decodeTrailer(trailer)
	if err != nil {
		return nil, err
	}
	if int64(len(header)) != t.HeaderLength || int64(len(index)) != t.IndexLength {
		return nil, fmt.Errorf("%w: metadata: header %d and index %d bytes, trailer says %d and %d",
			ErrCorrupt, len(header), len(index), t.HeaderLength, t.IndexLength)
	}
	fileSize := t.IndexOffset + t.IndexLength + TrailerSize
	if err := t.check(fileSize); err != nil {
		return nil, err
	}
	return parseMeta(header, index, trailer, t, fileSize)
}

func parseMeta(hb, ib, tb []byte, t *Trailer, fileSize int64) (*Reader, error) {
	if sha256.Sum256(TrailerPrefix(t)) != t.Digest {
		return nil, fmt.Errorf("%w: trailer: digest does not match; the trailer is corrupt", ErrChecksum)
	}
	if sha256.Sum256(hb) != t.HeaderSum {
		return nil, fmt.Errorf("%w: header (bytes 0-%d) does not match its hash in the trailer; the header is corrupt", ErrChecksum, len(hb)-1)
	}
	if sha256.Sum256(ib) != t.IndexSum {
		return nil, fmt.Errorf("%w: index (bytes %d-%d) does not match its hash in the trailer; the index is corrupt", ErrChecksum, t.IndexOffset, t.IndexOffset+t.IndexLength-1)
	}
	h, err := UnmarshalHeader(hb)
	if err != nil {
		return nil, err
	}
	ix, err := UnmarshalIndex(ib, h.Source.Size, t.HeaderLength, t.IndexOffset)
	if err != nil {
		return nil, err
	}
	return &Reader{Header: h, Index: ix, Trailer: t, size: fileSize, headerBytes: hb, indexBytes: ib, trailerBytes: tb}, nil
}

// Meta returns the raw header, index and trailer bytes.
func (r *Reader) Meta() (header, index, trailer []byte) {
	return r.headerBytes, r.indexBytes, r.trailerBytes
}

// Size is the image file size.
func (r *Reader) Size() int64 { return r.size }

// ReadPayload reads chunk i's stored payload into buf (grown as needed)
// and verifies its hash.
func (r *Reader) ReadPayload(i int, buf []byte) ([]byte, error) {
	if i < 0 || i >= len(r.Index.Chunks) {
		return nil, fmt.Errorf("%w: chunk %d does not exist (image has %d)", ErrCorrupt, i, len(r.Index.Chunks))
	}
	if r.r == nil {
		return nil, fmt.Errorf("image: chunk %d: only metadata is available", i)
	}
	c := &r.Index.Chunks[i]
	if cap(buf) < int(c.StoredSize) {
		buf = make([]byte, c.StoredSize)
	}
	buf = buf[:c.StoredSize]
	if n, err := r.r.ReadAt(buf, c.FileOffset); n != len(buf) {
		if err == io.EOF || err == nil {
			err = ErrTruncated
		}
		return nil, fmt.Errorf("chunk %d (file offset %d): %w", i, c.FileOffset, err)
	}
	return buf, r.VerifyPayload(i, buf)
}

// VerifyPayload checks a stored payload of chunk i against the index.
func (r *Reader) VerifyPayload(i int, payload []byte) error {
	c := &r.Index.Chunks[i]
	if len(payload) != int(c.StoredSize) {
		return fmt.Errorf("chunk %d: %w: %d bytes, index says %d", i, ErrCorrupt, len(payload), c.StoredSize)
	}
	if sha256.Sum256(payload) != c.Sum {
		return fmt.Errorf("chunk %d (file offset %d): %w: payload does not match its SHA-256 in the index", i, c.FileOffset, ErrChecksum)
	}
	return nil
}

// Verify checks the signature against pub. With pub nil, an unsigned image
// passes and a signed one must carry a valid signature by its own key.
func (r *Reader) Verify(pub ed25519.PublicKey) error {
	t := r.Trailer
	if !t.Signed() {
		if pub != nil {
			return fmt.Errorf("%w: a signature by %s is required", ErrUnsigned, KeyFingerprint(pub))
		}
		return nil
	}
	if pub != nil && string(pub) != string(t.PublicKey[:]) {
		return fmt.Errorf("%w: signed by %s, expected %s", ErrSignature, KeyFingerprint(t.PublicKey[:]), KeyFingerprint(pub))
	}
	if !ed25519.Verify(t.PublicKey[:], signedMessage(t.Digest), t.Signature[:]) {
		return fmt.Errorf("%w: the signature by %s does not match the image", ErrSignature, KeyFingerprint(t.PublicKey[:]))
	}
	return nil
}
