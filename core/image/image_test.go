package image

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// buildImage writes a small image with a few chunks of each codec and
// returns its bytes.
func buildImage(t testing.TB, key ed25519.PrivateKey) []byte {
	t.Helper()
	h := &Header{
		ID:        ID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		Created:   time.Unix(1700000000, 0).UTC(),
		Codec:     CodecZstd,
		Level:     3,
		ChunkSize: 1 << 20,
		Creator:   "test",
		Source: Source{
			Name: "disk.img", Kind: SourceDisk, Size: 1 << 20, SectorSize: 512,
			Table: Table{Scheme: "mbr", DiskGUID: "0x12345678", Areas: []TableArea{{Offset: 0, Data: bytes.Repeat([]byte{0xAB}, 512)}}},
			Partitions: []Partition{
				{Number: 1, Start: 4096, Size: 65536, Type: "0x83", TypeName: "Linux", FSType: "ext4", Handler: "ext4"},
				{Number: 2, Start: 69632, Size: 8192, Type: "0x82", Handler: "raw"},
			},
		},
	}
	path := filepath.Join(t.TempDir(), "x.dci")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := NewWriter(f, h)
	if err != nil {
		t.Fatal(err)
	}
	off := int64(4096)
	for i, codec := range []Codec{CodecZstd, CodecGzip, CodecNone} {
		raw := bytes.Repeat([]byte{byte('a' + i), 1, 2, 3}, 2048)
		e, err := NewEncoder(codec, 3)
		if err != nil {
			t.Fatal(err)
		}
		payload, used := e.Encode(nil, raw)
		c := Chunk{RawSize: uint32(len(raw)), Codec: used, Sum: sha256.Sum256(payload),
			Runs: []Run{{Offset: off, Length: 4096}, {Offset: off + 8192, Length: 4096}}}
		if err := w.AddChunk(c, payload); err != nil {
			t.Fatal(err)
		}
		off += 16384
	}
	if err := w.AddZero(100000, 5000); err != nil {
		t.Fatal(err)
	}
	if err := w.AddZero(105000, 1000); err != nil {
		t.Fatal(err)
	}
	h.Source.Partitions[0].UsedBytes = 3 * 8192
	if _, err := w.Finish(h, key); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	b := buildImage(t, key)
	r, err := NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	h := r.Header
	if h.Source.Partitions[0].UsedBytes != 3*8192 || h.Source.Partitions[0].FSType != "ext4" || h.Source.Table.Areas[0].Data[511] != 0xAB {
		t.Errorf("header did not round trip: %+v", h.Source)
	}
	if got := len(r.Index.Chunks); got != 3 {
		t.Fatalf("chunks = %d, want 3", got)
	}
	if z := r.Index.Zeros; len(z) != 1 || z[0] != (Run{100000, 6000}) {
		t.Errorf("zero extents = %v, want one merged extent 100000+6000", z)
	}
	dec := NewDecoder()
	for i := range r.Index.Chunks {
		p, err := r.ReadPayload(i, nil)
		if err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		raw, err := dec.Decode(nil, r.Index.Chunks[i].Codec, p, int(r.Index.Chunks[i].RawSize))
		if err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		if want := bytes.Repeat([]byte{byte('a' + i), 1, 2, 3}, 2048); !bytes.Equal(raw, want) {
			t.Errorf("chunk %d decoded wrongly", i)
		}
	}
	if err := r.Verify(key.Public().(ed25519.PublicKey)); err != nil {
		t.Errorf("signature: %v", err)
	}
	other, _, _ := ed25519.GenerateKey(nil)
	if err := r.Verify(other); !errors.Is(err, ErrSignature) {
		t.Errorf("verify with another key: %v, want ErrSignature", err)
	}
	if r.Index.LastUsedByte() != 106000 {
		t.Errorf("last used byte = %d", r.Index.LastUsedByte())
	}
	hb, ib, tb := r.Meta()
	m, err := NewMeta(hb, ib, tb)
	if err != nil {
		t.Fatalf("NewMeta: %v", err)
	}
	p, _ := r.ReadPayload(1, nil)
	if err := m.VerifyPayload(1, p); err != nil {
		t.Errorf("metadata-only reader rejects a good payload: %v", err)
	}
}

func TestUnsigned(t *testing.T) {
	b := buildImage(t, nil)
	r, err := NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Verify(nil); err != nil {
		t.Errorf("unsigned image without a required key: %v", err)
	}
	pub, _, _ := ed25519.GenerateKey(nil)
	if err := r.Verify(pub); !errors.Is(err, ErrUnsigned) {
		t.Errorf("unsigned image with a required key: %v, want ErrUnsigned", err)
	}
}

// TestCorruption flips one byte in every part of the file and truncates it,
// and expects a precise error every time.
func TestCorruption(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	good := buildImage(t, key)
	r, err := NewReader(bytes.NewReader(good), int64(len(good)))
	if err != nil {
		t.Fatal(err)
	}
	tr := r.Trailer
	chunk1 := r.Index.Chunks[1]
	tests := []struct {
		name string
		mut  func([]byte) []byte
		want error
		// chunk, when >= 0, means opening succeeds and reading this chunk fails
		chunk int
	}{
		{"magic", func(b []byte) []byte { b[0] = 'X'; return b }, ErrMagic, -1},
		{"major version", func(b []byte) []byte { b[8] = 9; return b }, ErrVersion, -1},
		{"header field", func(b []byte) []byte { b[30] ^= 1; return b }, ErrChecksum, -1},
		{"index", func(b []byte) []byte { b[tr.IndexOffset+20] ^= 1; return b }, ErrChecksum, -1},
		{"trailer offsets", func(b []byte) []byte { b[len(b)-TrailerSize+16] ^= 1; return b }, ErrCorrupt, -1},
		{"trailer digest", func(b []byte) []byte { b[len(b)-TrailerSize+100] ^= 1; return b }, ErrChecksum, -1},
		{"signature", func(b []byte) []byte { b[len(b)-10] ^= 1; return b }, ErrSignature, -1},
		{"truncated end", func(b []byte) []byte { return b[:len(b)-1] }, ErrTruncated, -1},
		{"truncated half", func(b []byte) []byte { return b[:len(b)/2] }, ErrTruncated, -1},
		{"empty", func(b []byte) []byte { return nil }, ErrTruncated, -1},
		{"chunk payload", func(b []byte) []byte { b[chunk1.FileOffset+3] ^= 0x80; return b }, ErrChecksum, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mut(bytes.Clone(good))
			r, err := NewReader(bytes.NewReader(b), int64(len(b)))
			if err == nil {
				err = r.Verify(nil)
			}
			if tc.chunk >= 0 {
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				_, err = r.ReadPayload(tc.chunk, nil)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			t.Logf("%v", err)
		})
	}
}

func TestUnknownFields(t *testing.T) {
	h := &Header{ID: NewID(), Source: Source{Size: 4096, SectorSize: 512, Kind: SourcePartition}}
	b := MarshalHeader(h)
	// Append an optional field with an unknown tag: readers skip it.
	var fw fieldWriter
	fw.field(999, false, []byte("future"))
	opt := append(bytes.Clone(b), fw.b...)
	setLen := func(b []byte) {
		b[12], b[13], b[14], b[15] = byte(len(b)), byte(len(b)>>8), byte(len(b)>>16), byte(len(b)>>24)
	}
	setLen(opt)
	if _, err := UnmarshalHeader(opt); err != nil {
		t.Errorf("unknown optional field: %v", err)
	}
	var cw fieldWriter
	cw.field(998, true, []byte("must understand"))
	crit := append(bytes.Clone(b), cw.b...)
	setLen(crit)
	if _, err := UnmarshalHeader(crit); !errors.Is(err, ErrCritical) {
		t.Errorf("unknown critical field: %v, want ErrCritical", err)
	}
}

func TestKeyFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k")
	pub, err := GenerateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := GenerateKey(path); err == nil {
		t.Error("GenerateKey overwrote an existing key")
	}
	priv, err := ReadPrivateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	pub2, err := ReadPublicKey(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(pub2) || !pub.Equal(priv.Public()) {
		t.Error("key files do not round trip")
	}
	if _, err := ReadPrivateKey(path + ".pub"); err == nil {
		t.Error("a public key file was accepted as a private key")
	}
}
