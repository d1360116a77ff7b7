package image

import (
	"bytes"
	"os"
	"reflect"
	"testing"
)

func seedImage(f *testing.F) []byte {
	b, err := os.ReadFile("testdata/small.dci")
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// FuzzReader opens arbitrary bytes as an image and, when that succeeds,
// reads and decodes every chunk. It must never panic or allocate without
// bound.
func FuzzReader(f *testing.F) {
	good := seedImage(f)
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add(buildImage(f, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := NewReader(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		dec := NewDecoder()
		for i := range r.Index.Chunks {
			p, err := r.ReadPayload(i, nil)
			if err != nil {
				continue
			}
			c := r.Index.Chunks[i]
			if _, err := dec.Decode(nil, c.Codec, p, int(c.RawSize)); err != nil {
				continue
			}
		}
	})
}

// FuzzHeader decodes headers; whatever decodes must encode and decode to
// the same value.
func FuzzHeader(f *testing.F) {
	good := seedImage(f)
	n, _ := headerLength(good)
	f.Add(good[:n])
	f.Add(MarshalHeader(&Header{ID: NewID(), Source: Source{Kind: SourcePartition, Size: 1}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := UnmarshalHeader(b)
		if err != nil {
			return
		}
		h2, err := UnmarshalHeader(MarshalHeader(h))
		if err != nil {
			t.Fatalf("re-decoding an encoded header: %v", err)
		}
		h2.Minor = h.Minor // a writer always writes its own minor version
		if !reflect.DeepEqual(h, h2) {
			t.Fatalf("header does not round trip:\n%+v\n%+v", h, h2)
		}
	})
}

// FuzzIndex decodes indexes; whatever decodes must round trip.
func FuzzIndex(f *testing.F) {
	good := seedImage(f)
	r, err := NewReader(bytes.NewReader(good), int64(len(good)))
	if err != nil {
		f.Fatal(err)
	}
	_, ib, _ := r.Meta()
	f.Add(ib, r.Header.Source.Size, r.Trailer.HeaderLength, r.Trailer.IndexOffset)
	f.Fuzz(func(t *testing.T, b []byte, size, start, end int64) {
		ix, err := UnmarshalIndex(b, size, start, end)
		if err != nil {
			return
		}
		ix2, err := UnmarshalIndex(MarshalIndex(ix), size, start, end)
		if err != nil {
			t.Fatalf("re-decoding an encoded index: %v", err)
		}
		if !reflect.DeepEqual(ix, ix2) {
			t.Fatal("index does not round trip")
		}
	})
}

// FuzzChunk decodes arbitrary payloads with every codec.
func FuzzChunk(f *testing.F) {
	raw := bytes.Repeat([]byte("diskcast"), 512)
	code := machineCode(4096)
	for _, c := range []struct {
		codec Codec
		level int
		raw   []byte
	}{{CodecZstd, 3, raw}, {CodecZstd, 3, code}, {CodecGzip, 6, raw}} {
		e, _ := NewEncoder(c.codec, c.level)
		payload, used := e.Encode(nil, c.raw)
		f.Add(uint8(used), payload, uint32(len(c.raw)))
	}
	f.Add(uint8(CodecNone), raw, uint32(len(raw)))
	f.Fuzz(func(t *testing.T, codec uint8, payload []byte, rawSize uint32) {
		if rawSize > 1<<20 {
			rawSize %= 1 << 20
		}
		out, err := NewDecoder().Decode(nil, Codec(codec), payload, int(rawSize))
		if err == nil && len(out) != int(rawSize) {
			t.Fatalf("decoded %d bytes without error, want %d", len(out), rawSize)
		}
	})
}

// FuzzX86 checks that the x86 filter's decoding undoes its encoding for
// any bytes.
func FuzzX86(f *testing.F) {
	f.Add(machineCode(4096))
	f.Add([]byte("\xe8\x01\xe8\x00\x12\x00\x00\x00\x00\xe8\x01\x02\x03\xe8\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, in []byte) {
		b := append([]byte(nil), in...)
		x86Scan(b, x86Encode)
		x86Scan(b, x86Decode)
		if !bytes.Equal(b, in) {
			t.Fatalf("round trip of % x gives % x", in, b)
		}
	})
}
