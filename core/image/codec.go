package image

import (
	"bytes"
	"fmt"
	"io"

	"github.com/diskcast/diskcast/core/internal/zstdenc"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Codec names how a chunk payload is encoded.
type Codec uint8

const (
	CodecNone Codec = 0
	CodecZstd Codec = 1
	CodecGzip Codec = 2
	// CodecZstdX86 is zstd over bytes passed through the x86 branch filter
	// (x86.go). A capture with codec zstd picks it for chunks that hold
	// machine code.
	CodecZstdX86 Codec = 3
)

func (c Codec) String() string {
	switch c {
	case CodecNone:
		return "none"
	case CodecZstd:
		return "zstd"
	case CodecGzip:
		return "gzip"
	case CodecZstdX86:
		return "zstd+x86"
	}
	return fmt.Sprintf("codec(%d)", uint8(c))
}

// ParseCodec maps a codec name to its value.
func ParseCodec(s string) (Codec, error) {
	switch s {
	case "none":
		return CodecNone, nil
	case "zstd":
		return CodecZstd, nil
	case "gzip":
		return CodecGzip, nil
	}
	return 0, fmt.Errorf("%w %q (want zstd, gzip or none)", ErrCodec, s)
}

// DefaultLevel is the zstd level a capture uses unless told otherwise; it
// matches the zstd command line's default.
const DefaultLevel = 3

// Encoder compresses chunks with one codec. It is not safe for concurrent
// use: each capture worker owns one.
type Encoder struct {
	codec    Codec
	zstd     interface{ EncodeAll(src, dst []byte) []byte }
	x86      bool   // zstd: filter chunks that hold machine code
	filtered []byte // the filter's output
	gzbuf    bytes.Buffer
	gz       *gzip.Writer
}

// NewEncoder returns an encoder for codec at level (gzip 1-9; zstd 1-22:
// levels 3-5 use zstdenc, the others map onto klauspost/compress's speed
// classes: 1-2 fastest, 6-9 better, 10-22 best). A zstd encoder passes
// chunks that hold machine code through the x86 branch filter; use
// WithoutX86Filter to turn that off.
func NewEncoder(codec Codec, level int) (*Encoder, error) {
	e := &Encoder{codec: codec, x86: codec == CodecZstd}
	switch codec {
	case CodecNone:
	case CodecZstd:
		if zstd.EncoderLevelFromZstd(level) == zstd.SpeedDefault {
			// Levels 3-5: zstdenc's chunks are 1.8-1.9% smaller than
			// klauspost's "default" speed class, at about its speed.
			e.zstd = zstdenc.New()
			break
		}
		z, err := zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)),
			zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderCRC(false), // the chunk SHA-256 covers integrity
			zstd.WithZeroFrames(true))
		if err != nil {
			return nil, err
		}
		e.zstd = z
	case CodecGzip:
		if level < gzip.HuffmanOnly || level > gzip.BestCompression {
			level = gzip.DefaultCompression
		}
		gz, err := gzip.NewWriterLevel(&e.gzbuf, level)
		if err != nil {
			return nil, err
		}
		e.gz = gz
	default:
		return nil, fmt.Errorf("%w %d", ErrCodec, codec)
	}
	return e, nil
}

// WithoutX86Filter makes a zstd encoder compress every chunk as it is
// (codec zstd), for readers that predate codec zstd+x86.
func (e *Encoder) WithoutX86Filter() *Encoder {
	e.x86 = false
	return e
}

// Encode appends the encoding of src to dst[:0] and returns it with the
// codec it used. src is not modified.
func (e *Encoder) Encode(dst, src []byte) ([]byte, Codec) {
	switch e.codec {
	case CodecZstd:
		if e.x86 && x86Worthwhile(src) {
			if cap(e.filtered) < len(src) {
				e.filtered = make([]byte, len(src))
			}
			f := e.filtered[:len(src)]
			copy(f, src)
			x86Scan(f, x86Encode)
			return e.zstd.EncodeAll(f, dst[:0]), CodecZstdX86
		}
		return e.zstd.EncodeAll(src, dst[:0]), CodecZstd
	case CodecGzip:
		e.gzbuf.Reset()
		e.gz.Reset(&e.gzbuf)
		e.gz.Write(src) // writes to a bytes.Buffer cannot fail
		e.gz.Close()
		return append(dst[:0], e.gzbuf.Bytes()...), CodecGzip
	}
	return append(dst[:0], src...), CodecNone
}

// Decoder decodes chunk payloads of any codec. It is not safe for
// concurrent use: each restore worker owns one.
type Decoder struct {
	zstd *zstd.Decoder
	gz   *gzip.Reader
}

// NewDecoder returns a decoder.
func NewDecoder() *Decoder { return &Decoder{} }

// Decode decodes payload into dst[:0] and checks that exactly rawSize bytes
// come out.
func (d *Decoder) Decode(dst []byte, codec Codec, payload []byte, rawSize int) ([]byte, error) {
	if cap(dst) < rawSize {
		dst = make([]byte, 0, rawSize)
	}
	var out []byte
	switch codec {
	case CodecNone:
		out = append(dst[:0], payload...)
	case CodecZstd, CodecZstdX86:
		if d.zstd == nil {
			z, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(2*MaxRawChunk))
			if err != nil {
				return nil, err
			}
			d.zstd = z
		}
		var err error
		out, err = d.zstd.DecodeAll(payload, dst[:0])
		if err != nil {
			return nil, fmt.Errorf("%w: zstd: %v", ErrCorrupt, err)
		}
	case CodecGzip:
		var err error
		if d.gz == nil {
			d.gz, err = gzip.NewReader(bytes.NewReader(payload))
		} else {
			err = d.gz.Reset(bytes.NewReader(payload))
		}
		if err != nil {
			return nil, fmt.Errorf("%w: gzip: %v", ErrCorrupt, err)
		}
		out = dst[:rawSize]
		n, err := io.ReadFull(d.gz, out)
		if err != nil {
			return nil, fmt.Errorf("%w: gzip: %d of %d bytes: %v", ErrCorrupt, n, rawSize, err)
		}
		if extra, _ := d.gz.Read(make([]byte, 1)); extra != 0 {
			return nil, fmt.Errorf("%w: gzip: more than %d bytes", ErrCorrupt, rawSize)
		}
	default:
		return nil, fmt.Errorf("%w %d", ErrCodec, codec)
	}
	if len(out) != rawSize {
		return nil, fmt.Errorf("%w: decoded %d bytes, index says %d", ErrCorrupt, len(out), rawSize)
	}
	if codec == CodecZstdX86 {
		x86Scan(out, x86Decode)
	}
	return out, nil
}
