package image

import (
	"encoding/binary"
	"fmt"
)

// MetaBlob returns the image metadata as one blob, the way transports and
// the image server carry it: header, index and trailer, concatenated.
func (r *Reader) MetaBlob() []byte {
	h, i, t := r.Meta()
	return append(append(append(make([]byte, 0, len(h)+len(i)+len(t)), h...), i...), t...)
}

// ParseMeta splits a metadata blob (MetaBlob) and checks it: the header's
// preamble gives its length, the trailer is the last TrailerSize bytes,
// and the trailer's hashes must match the header and the index.
func ParseMeta(b []byte) (*Reader, error) {
	if len(b) < 16+TrailerSize {
		return nil, fmt.Errorf("%w: metadata of %d bytes cannot hold a header and a trailer", ErrTruncated, len(b))
	}
	h := int64(binary.LittleEndian.Uint32(b[12:16]))
	end := int64(len(b)) - TrailerSize
	if h < 16 || h > end {
		return nil, fmt.Errorf("%w: header length %d does not fit %d bytes of metadata", ErrCorrupt, h, len(b))
	}
	return NewMeta(b[:h], b[h:end], b[end:])
}
