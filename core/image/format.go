package image

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"
)

// On-disk layout (all integers little-endian; docs/FORMAT.md has every
// field):
//
//	offset        size  what
//	0             8     magic "\x89DCI\r\n\x1a\n"
//	8             2     major version (1)
//	10            2     minor version (0)
//	12            4     header length H, including these 16 bytes
//	16            H-16  header fields: records {tag u16, flags u16, len u32, value}
//	H             ...   chunk payloads, back to back, at the offsets the index gives
//	I             L     index: "DCIINDEX", u64 chunk count, chunk entries,
//	                    u64 zero-extent count, zero extents
//	end-224       224   trailer: "DCITRAIL", u64 H, u64 I, u64 L,
//	                    [32] SHA-256 of header, [32] SHA-256 of index,
//	                    [32] digest, [32] signer key, [64] signature
//
// A chunk entry is: u64 file offset, u32 stored size, u32 raw size,
// u8 codec, u8 flags (0), u16 reserved (0), [32] SHA-256 of the stored
// payload, u32 run count, then per run uvarint gap and uvarint length. The
// first gap of a chunk is the absolute device offset; later gaps count from
// the end of the previous run. Zero extents use the same gap encoding,
// continued across the whole list.
//
// The digest is SHA-256 of trailer bytes 0..95 (which hold the header and
// index hashes), so it seals header, index and trailer; the signature is
// ed25519 over SignaturePrefix ‖ digest.
const (
	Magic             = "\x89DCI\r\n\x1a\n"
	indexMagic        = "DCIINDEX"
	trailerMagic      = "DCITRAIL"
	TrailerSize       = 224
	trailerPrefixSize = 96
	preambleSize      = 16
	fieldHeaderSize   = 8
	entryFixedSize    = 8 + 4 + 4 + 1 + 1 + 2 + 32 + 4
	// SignaturePrefix separates image signatures from any other use of the key.
	SignaturePrefix = "diskcast image signature v1\x00"

	// MaxRawChunk bounds the decoded size of one chunk, so a reader never
	// allocates more than this for a chunk whatever the index claims.
	MaxRawChunk = 64 << 20
	// maxHeader bounds the header length a reader accepts.
	maxHeader = 64 << 20
	// maxRuns bounds the runs of one chunk (one per 512-byte sector of the
	// largest chunk).
	maxRuns = MaxRawChunk / 512
)

// Header field tags. Flag bit 0 marks a field critical: a reader that does
// not know a critical field must refuse the image; it skips unknown
// optional ones.
const (
	tagID         = 1
	tagCreated    = 2
	tagCodec      = 3
	tagChunkSize  = 4
	tagSource     = 5
	tagSourceName = 6
	tagTable      = 7
	tagTableArea  = 8
	tagPartition  = 9
	tagCreator    = 10

	// fields inside a partition record
	ptagNumber   = 1
	ptagExtent   = 2
	ptagType     = 3
	ptagTypeName = 4
	ptagGUID     = 5
	ptagName     = 6
	ptagAttrs    = 7
	ptagFSType   = 8
	ptagHandler  = 9
	ptagUsed     = 10

	flagCritical = 1
)

// fieldWriter builds a sequence of tag-length-value records.
type fieldWriter struct{ b []byte }

func (w *fieldWriter) field(tag uint16, critical bool, value []byte) {
	var flags uint16
	if critical {
		flags = flagCritical
	}
	w.b = binary.LittleEndian.AppendUint16(w.b, tag)
	w.b = binary.LittleEndian.AppendUint16(w.b, flags)
	w.b = binary.LittleEndian.AppendUint32(w.b, uint32(len(value)))
	w.b = append(w.b, value...)
}

func (w *fieldWriter) u64(tag uint16, v uint64) {
	w.field(tag, false, binary.LittleEndian.AppendUint64(nil, v))
}

func (w *fieldWriter) str(tag uint16, s string) {
	if s != "" {
		w.field(tag, false, []byte(s))
	}
}

// field is one decoded record.
type field struct {
	tag      uint16
	critical bool
	value    []byte
}

// readFields splits b into records; where names the enclosing structure
// for error messages.
func readFields(b []byte, where string) ([]field, error) {
	var out []field
	for off := 0; off < len(b); {
		if len(b)-off < fieldHeaderSize {
			return nil, fmt.Errorf("%w: %s: field header at byte %d cut short", ErrCorrupt, where, off)
		}
		tag := binary.LittleEndian.Uint16(b[off:])
		flags := binary.LittleEndian.Uint16(b[off+2:])
		n := binary.LittleEndian.Uint32(b[off+4:])
		off += fieldHeaderSize
		if uint64(n) > uint64(len(b)-off) {
			return nil, fmt.Errorf("%w: %s: field %d at byte %d claims %d bytes, %d remain", ErrCorrupt, where, tag, off-fieldHeaderSize, n, len(b)-off)
		}
		out = append(out, field{tag: tag, critical: flags&flagCritical != 0, value: b[off : off+int(n)]})
		off += int(n)
	}
	return out, nil
}

func fixedLen(f field, n int, where string) error {
	if len(f.value) != n {
		return fmt.Errorf("%w: %s: field %d is %d bytes, want %d", ErrCorrupt, where, f.tag, len(f.value), n)
	}
	return nil
}

// MarshalHeader encodes h. Integers are fixed-width so that the encoding
// keeps its length when only counts (such as used bytes) change.
func MarshalHeader(h *Header) []byte {
	var w fieldWriter
	w.field(tagID, true, h.ID[:])
	if !h.Created.IsZero() {
		w.u64(tagCreated, uint64(h.Created.UnixNano()))
	}
	w.field(tagCodec, false, []byte{byte(h.Codec), byte(int8(h.Level))})
	w.u64(tagChunkSize, uint64(h.ChunkSize))
	src := binary.LittleEndian.AppendUint64(nil, uint64(h.Source.Size))
	src = binary.LittleEndian.AppendUint32(src, uint32(h.Source.SectorSize))
	src = append(src, byte(h.Source.Kind))
	w.field(tagSource, true, src)
	w.str(tagSourceName, h.Source.Name)
	w.str(tagCreator, h.Creator)
	if t := h.Source.Table; t.Scheme != "" {
		w.field(tagTable, false, appendString(appendString(nil, t.Scheme), t.DiskGUID))
		for _, a := range t.Areas {
			w.field(tagTableArea, false, append(binary.LittleEndian.AppendUint64(nil, uint64(a.Offset)), a.Data...))
		}
	}
	for _, p := range h.Source.Partitions {
		var pw fieldWriter
		pw.u64(ptagNumber, uint64(p.Number))
		ext := binary.LittleEndian.AppendUint64(nil, uint64(p.Start))
		pw.field(ptagExtent, true, binary.LittleEndian.AppendUint64(ext, uint64(p.Size)))
		pw.str(ptagType, p.Type)
		pw.str(ptagTypeName, p.TypeName)
		pw.str(ptagGUID, p.GUID)
		pw.str(ptagName, p.Name)
		pw.u64(ptagAttrs, p.Attributes)
		pw.str(ptagFSType, p.FSType)
		pw.str(ptagHandler, p.Handler)
		pw.u64(ptagUsed, uint64(p.UsedBytes))
		w.field(tagPartition, false, pw.b)
	}
	out := make([]byte, preambleSize, preambleSize+len(w.b))
	copy(out, Magic)
	binary.LittleEndian.PutUint16(out[8:], MajorVersion)
	binary.LittleEndian.PutUint16(out[10:], MinorVersion)
	binary.LittleEndian.PutUint32(out[12:], uint32(preambleSize+len(w.b)))
	return append(out, w.b...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func readString(b []byte) (string, []byte, bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return "", nil, false
	}
	return string(b[k : k+int(n)]), b[k+int(n):], true
}

// headerLength checks the preamble and returns the header length it
// declares.
func headerLength(pre []byte) (int64, error) {
	if len(pre) < preambleSize {
		return 0, fmt.Errorf("%w: header: %d bytes, need %d", ErrTruncated, len(pre), preambleSize)
	}
	if string(pre[:8]) != Magic {
		return 0, fmt.Errorf("%w: header: first bytes are %q", ErrMagic, pre[:8])
	}
	if major := binary.LittleEndian.Uint16(pre[8:]); major != MajorVersion {
		return 0, fmt.Errorf("%w: header: format %d.%d, this diskcast reads %d.x; use a diskcast release that supports format %d",
			ErrVersion, major, binary.LittleEndian.Uint16(pre[10:]), MajorVersion, major)
	}
	n := int64(binary.LittleEndian.Uint32(pre[12:]))
	if n < preambleSize || n > maxHeader {
		return 0, fmt.Errorf("%w: header: length %d out of range", ErrCorrupt, n)
	}
	return n, nil
}

// UnmarshalHeader decodes a header, including its 16-byte preamble.
func UnmarshalHeader(b []byte) (*Header, error) {
	n, err := headerLength(b)
	if err != nil {
		return nil, err
	}
	if int64(len(b)) < n {
		return nil, fmt.Errorf("%w: header: %d of %d bytes", ErrTruncated, len(b), n)
	}
	h := &Header{Major: binary.LittleEndian.Uint16(b[8:]), Minor: binary.LittleEndian.Uint16(b[10:])}
	fields, err := readFields(b[preambleSize:n], "header")
	if err != nil {
		return nil, err
	}
	var haveID, haveSource bool
	for _, f := range fields {
		where := fmt.Sprintf("header field %d", f.tag)
		switch f.tag {
		case tagID:
			if err := fixedLen(f, 16, "header"); err != nil {
				return nil, err
			}
			copy(h.ID[:], f.value)
			haveID = true
		case tagCreated:
			if err := fixedLen(f, 8, "header"); err != nil {
				return nil, err
			}
			h.Created = time.Unix(0, int64(binary.LittleEndian.Uint64(f.value))).UTC()
		case tagCodec:
			if err := fixedLen(f, 2, "header"); err != nil {
				return nil, err
			}
			h.Codec, h.Level = Codec(f.value[0]), int(int8(f.value[1]))
		case tagChunkSize:
			if err := fixedLen(f, 8, "header"); err != nil {
				return nil, err
			}
			h.ChunkSize = int(binary.LittleEndian.Uint64(f.value) & 0x7fffffff)
		case tagSource:
			if err := fixedLen(f, 13, "header source"); err != nil {
				return nil, err
			}
			h.Source.Size = int64(binary.LittleEndian.Uint64(f.value))
			h.Source.SectorSize = int(binary.LittleEndian.Uint32(f.value[8:]))
			h.Source.Kind = SourceKind(f.value[12])
			if h.Source.Size < 0 {
				return nil, fmt.Errorf("%w: header source: size %d", ErrCorrupt, h.Source.Size)
			}
			haveSource = true
		case tagSourceName:
			h.Source.Name = string(f.value)
		case tagCreator:
			h.Creator = string(f.value)
		case tagTable:
			scheme, rest, ok1 := readString(f.value)
			guid, _, ok2 := readString(rest)
			if !ok1 || !ok2 {
				return nil, fmt.Errorf("%w: %s: bad partition table record", ErrCorrupt, where)
			}
			h.Source.Table.Scheme, h.Source.Table.DiskGUID = scheme, guid
		case tagTableArea:
			if len(f.value) < 8 {
				return nil, fmt.Errorf("%w: %s: table area shorter than its offset", ErrCorrupt, where)
			}
			h.Source.Table.Areas = append(h.Source.Table.Areas, TableArea{
				Offset: int64(binary.LittleEndian.Uint64(f.value)),
				Data:   bytes.Clone(f.value[8:]),
			})
		case tagPartition:
			p, err := unmarshalPartition(f.value, len(h.Source.Partitions))
			if err != nil {
				return nil, err
			}
			h.Source.Partitions = append(h.Source.Partitions, p)
		default:
			if f.critical {
				return nil, fmt.Errorf("%w: tag %d; this image needs a newer diskcast", ErrCritical, f.tag)
			}
		}
	}
	if !haveID || !haveSource {
		return nil, fmt.Errorf("%w: header: missing image ID or source description", ErrCorrupt)
	}
	return h, nil
}

func unmarshalPartition(b []byte, i int) (Partition, error) {
	where := fmt.Sprintf("header partition record %d", i)
	fields, err := readFields(b, where)
	if err != nil {
		return Partition{}, err
	}
	var p Partition
	for _, f := range fields {
		switch f.tag {
		case ptagNumber, ptagAttrs, ptagUsed:
			if err := fixedLen(f, 8, where); err != nil {
				return p, err
			}
			v := binary.LittleEndian.Uint64(f.value)
			switch f.tag {
			case ptagNumber:
				p.Number = int(v & 0xffff)
			case ptagAttrs:
				p.Attributes = v
			case ptagUsed:
				p.UsedBytes = int64(v)
			}
		case ptagExtent:
			if err := fixedLen(f, 16, where); err != nil {
				return p, err
			}
			p.Start = int64(binary.LittleEndian.Uint64(f.value))
			p.Size = int64(binary.LittleEndian.Uint64(f.value[8:]))
			if p.Start < 0 || p.Size < 0 {
				return p, fmt.Errorf("%w: %s: negative extent", ErrCorrupt, where)
			}
		case ptagType:
			p.Type = string(f.value)
		case ptagTypeName:
			p.TypeName = string(f.value)
		case ptagGUID:
			p.GUID = string(f.value)
		case ptagName:
			p.Name = string(f.value)
		case ptagFSType:
			p.FSType = string(f.value)
		case ptagHandler:
			p.Handler = string(f.value)
		default:
			if f.critical {
				return p, fmt.Errorf("%w: %s: tag %d; this image needs a newer diskcast", ErrCritical, where, f.tag)
			}
		}
	}
	return p, nil
}

// MarshalIndex encodes ix.
func MarshalIndex(ix *Index) []byte {
	b := make([]byte, 0, 16+len(ix.Chunks)*(entryFixedSize+8)+len(ix.Zeros)*6)
	b = append(b, indexMagic...)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(ix.Chunks)))
	for i := range ix.Chunks {
		c := &ix.Chunks[i]
		b = binary.LittleEndian.AppendUint64(b, uint64(c.FileOffset))
		b = binary.LittleEndian.AppendUint32(b, c.StoredSize)
		b = binary.LittleEndian.AppendUint32(b, c.RawSize)
		b = append(b, byte(c.Codec), 0, 0, 0)
		b = append(b, c.Sum[:]...)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(c.Runs)))
		b = appendRuns(b, c.Runs)
	}
	b = binary.LittleEndian.AppendUint64(b, uint64(len(ix.Zeros)))
	return appendRuns(b, ix.Zeros)
}

func appendRuns(b []byte, runs []Run) []byte {
	var end int64
	for _, r := range runs {
		b = binary.AppendUvarint(b, uint64(r.Offset-end))
		b = binary.AppendUvarint(b, uint64(r.Length))
		end = r.End()
	}
	return b
}

// indexDecoder walks index bytes, remembering where it is for errors.
type indexDecoder struct {
	b   []byte
	off int
	err error
}

func (d *indexDecoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: index byte %d: %s", ErrCorrupt, d.off, fmt.Sprintf(format, args...))
	}
}

func (d *indexDecoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.b)-d.off {
		d.err = fmt.Errorf("%w: index byte %d: need %d bytes, %d remain", ErrTruncated, d.off, n, len(d.b)-d.off)
		return nil
	}
	p := d.b[d.off : d.off+n]
	d.off += n
	return p
}

func (d *indexDecoder) u64() uint64 {
	if p := d.take(8); p != nil {
		return binary.LittleEndian.Uint64(p)
	}
	return 0
}

func (d *indexDecoder) u32() uint32 {
	if p := d.take(4); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}

func (d *indexDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, k := binary.Uvarint(d.b[d.off:])
	if k <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.off += k
	return v
}

// runs decodes n gap-encoded runs that must stay below limit.
func (d *indexDecoder) runs(n uint64, limit int64, what string) []Run {
	// Each run takes at least 2 bytes; a count beyond what remains is corrupt.
	if d.err != nil || n > uint64(len(d.b)-d.off)/2 {
		d.fail("%s: %d runs cannot fit in the index", what, n)
		return nil
	}
	out := make([]Run, 0, n)
	var end int64
	for i := uint64(0); i < n && d.err == nil; i++ {
		gap, length := d.uvarint(), d.uvarint()
		if gap > uint64(limit) || length == 0 || length > uint64(limit) || end+int64(gap)+int64(length) > limit {
			d.fail("%s: run %d (gap %d, length %d) leaves the %d-byte device", what, i, gap, length, limit)
			return nil
		}
		r := Run{Offset: end + int64(gap), Length: int64(length)}
		out = append(out, r)
		end = r.End()
	}
	return out
}

// UnmarshalIndex decodes index bytes for a source of sourceSize bytes whose
// chunk payloads lie in the file between dataStart and dataEnd.
func UnmarshalIndex(b []byte, sourceSize, dataStart, dataEnd int64) (*Index, error) {
	d := &indexDecoder{b: b}
	if m := d.take(8); m != nil && string(m) != indexMagic {
		return nil, fmt.Errorf("%w: index: magic %q", ErrCorrupt, m)
	}
	n := d.u64()
	if d.err == nil && n > uint64(len(b))/entryFixedSize {
		d.fail("%d chunks cannot fit in %d index bytes", n, len(b))
	}
	ix := &Index{Chunks: make([]Chunk, 0, min(n, 1<<20))}
	for i := uint64(0); i < n && d.err == nil; i++ {
		var c Chunk
		c.FileOffset = int64(d.u64())
		c.StoredSize = d.u32()
		c.RawSize = d.u32()
		if p := d.take(4); p != nil {
			c.Codec = Codec(p[0])
		}
		if p := d.take(32); p != nil {
			copy(c.Sum[:], p)
		}
		nruns := d.u32()
		if d.err != nil {
			break
		}
		what := fmt.Sprintf("chunk %d", i)
		switch {
		case c.FileOffset < dataStart || c.FileOffset > dataEnd || int64(c.StoredSize) > dataEnd-c.FileOffset:
			d.fail("%s: payload at %d+%d lies outside the data area %d..%d", what, c.FileOffset, c.StoredSize, dataStart, dataEnd)
		case c.RawSize == 0 || c.RawSize > MaxRawChunk:
			d.fail("%s: raw size %d out of range", what, c.RawSize)
		case c.Codec > CodecZstdX86:
			d.fail("%s: unknown codec %d", what, c.Codec)
		case nruns == 0 || nruns > maxRuns:
			d.fail("%s: %d runs", what, nruns)
		}
		c.Runs = d.runs(uint64(nruns), sourceSize, what)
		var sum int64
		for _, r := range c.Runs {
			sum += r.Length
		}
		if d.err == nil && sum != int64(c.RawSize) {
			d.fail("%s: runs cover %d bytes, raw size is %d", what, sum, c.RawSize)
		}
		ix.Chunks = append(ix.Chunks, c)
	}
	nz := d.u64()
	ix.Zeros = d.runs(nz, sourceSize, "zero extents")
	if d.err == nil && d.off != len(b) {
		d.fail("%d unexpected bytes after the zero extents", len(b)-d.off)
	}
	if d.err != nil {
		return nil, d.err
	}
	return ix, nil
}

// MarshalTrailer encodes t; the digest and signature must already be set.
func MarshalTrailer(t *Trailer) []byte {
	b := make([]byte, 0, TrailerSize)
	b = append(b, TrailerPrefix(t)...)
	b = append(b, t.Digest[:]...)
	b = append(b, t.PublicKey[:]...)
	return append(b, t.Signature[:]...)
}

// TrailerPrefix is the part of the trailer the digest covers.
func TrailerPrefix(t *Trailer) []byte {
	b := make([]byte, 0, trailerPrefixSize)
	b = append(b, trailerMagic...)
	b = binary.LittleEndian.AppendUint64(b, uint64(t.HeaderLength))
	b = binary.LittleEndian.AppendUint64(b, uint64(t.IndexOffset))
	b = binary.LittleEndian.AppendUint64(b, uint64(t.IndexLength))
	b = append(b, t.HeaderSum[:]...)
	return append(b, t.IndexSum[:]...)
}

// UnmarshalTrailer decodes the last TrailerSize bytes of an image of
// fileSize bytes and checks that the offsets it names fit the file.
func UnmarshalTrailer(b []byte, fileSize int64) (*Trailer, error) {
	t, err := decodeTrailer(b)
	if err != nil {
		return nil, err
	}
	return t, t.check(fileSize)
}

func decodeTrailer(b []byte) (*Trailer, error) {
	if len(b) != TrailerSize {
		return nil, fmt.Errorf("%w: trailer: %d bytes, want %d", ErrTruncated, len(b), TrailerSize)
	}
	if string(b[:8]) != trailerMagic {
		return nil, fmt.Errorf("%w: trailer: magic %q at the end of the file; the file is truncated or not a finished image", ErrTruncated, b[:8])
	}
	t := &Trailer{
		HeaderLength: int64(binary.LittleEndian.Uint64(b[8:]) & (1<<62 - 1)),
		IndexOffset:  int64(binary.LittleEndian.Uint64(b[16:]) & (1<<62 - 1)),
		IndexLength:  int64(binary.LittleEndian.Uint64(b[24:]) & (1<<62 - 1)),
	}
	copy(t.HeaderSum[:], b[32:64])
	copy(t.IndexSum[:], b[64:96])
	copy(t.Digest[:], b[96:128])
	copy(t.PublicKey[:], b[128:160])
	copy(t.Signature[:], b[160:224])
	return t, nil
}

// check verifies that the trailer's offsets fit a file of fileSize bytes.
func (t *Trailer) check(fileSize int64) error {
	indexEnd := fileSize - TrailerSize
	switch {
	case t.HeaderLength < preambleSize || t.HeaderLength > maxHeader:
		return fmt.Errorf("%w: trailer: header length %d out of range", ErrCorrupt, t.HeaderLength)
	case t.IndexOffset < t.HeaderLength || t.IndexOffset > indexEnd:
		return fmt.Errorf("%w: trailer: index offset %d outside %d..%d", ErrCorrupt, t.IndexOffset, t.HeaderLength, indexEnd)
	case t.IndexLength != indexEnd-t.IndexOffset:
		return fmt.Errorf("%w: trailer: index length %d, but %d bytes lie between index and trailer", ErrCorrupt, t.IndexLength, indexEnd-t.IndexOffset)
	}
	return nil
}
