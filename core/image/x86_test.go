package image

import (
	"bytes"
	"math/rand/v2"
	"os"
	"testing"
)

// machineCode returns n bytes shaped like x86 code: short runs of other
// bytes between calls and jumps to a few dozen functions.
func machineCode(n int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	funcs := make([]int, 40)
	for i := range funcs {
		funcs[i] = rng.IntN(n)
	}
	b := make([]byte, 0, n+16)
	for len(b) < n {
		for range 3 + rng.IntN(12) {
			b = append(b, byte(0x40+rng.IntN(0x60)))
		}
		d := uint32(funcs[rng.IntN(len(funcs))] - (len(b) + 5))
		b = append(b, 0xE8, byte(d), byte(d>>8), byte(d>>16), byte(d>>24))
	}
	return b[:n]
}

// ownCode returns 1 MiB of real machine code: the running test binary's
// text, which starts after its first page.
func ownCode(tb testing.TB) []byte {
	tb.Helper()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	bin, err := os.ReadFile(exe)
	if err != nil {
		tb.Fatal(err)
	}
	if len(bin) < 0x1000+1<<20 {
		tb.Fatalf("test binary is only %d bytes", len(bin))
	}
	return bin[0x1000 : 0x1000+1<<20]
}

func TestX86FilterVectors(t *testing.T) {
	for _, c := range []struct{ name, in, out string }{
		{"call forward", "\xe8\x10\x00\x00\x00", "\xe8\x15\x00\x00\x00"},
		{"jump backward, after 3 bytes", "abc\xe9\xf0\xff\xff\xff", "abc\xe9\xf8\xff\xff\xff"},
		{"top byte neither 00 nor ff", "\xe8\x10\x00\x00\x12", "\xe8\x10\x00\x00\x12"},
		// The E8 at 0 is left alone; the scan goes on at its byte 4, so the
		// E8 at 2 is not looked at (rewriting it would change byte 4).
		{"skip after a branch left alone", "\xe8\x01\xe8\x00\x12\x00\x00\x00\x00", "\xe8\x01\xe8\x00\x12\x00\x00\x00\x00"},
		{"E8 at byte 4 of one left alone", "\xe8\x01\x02\x03\xe8\x00\x00\x00\x00", "\xe8\x01\x02\x03\xe8\x09\x00\x00\x00"},
		{"wraps within 25 bits", "\xe8\xfe\xff\xff\x00", "\xe8\x03\x00\x00\xff"},
		{"too short", "\xe8\x00\x00\x00", "\xe8\x00\x00\x00"},
		{"past the first 8 bytes", "01234567\xe8\x00\x01\x00\x00ab", "01234567\xe8\x0d\x01\x00\x00ab"},
		{"E8 in the last 4 bytes", "0123\xe8\x00\x00\x00", "0123\xe8\x00\x00\x00"},
	} {
		got := []byte(c.in)
		x86Scan(got, x86Encode)
		if string(got) != c.out {
			t.Errorf("%s: filter gives % x, want % x", c.name, got, c.out)
		}
		x86Scan(got, x86Decode)
		if string(got) != c.in {
			t.Errorf("%s: unfilter gives % x, want % x", c.name, got, c.in)
		}
	}
}

// TestX86FilterRoundTrip runs the filter both ways over bytes dense in
// opcodes and 00/FF, where branches overlap in every possible way.
func TestX86FilterRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	alphabet := []byte{0xE8, 0xE9, 0x00, 0xFF, 0x12, 0x80}
	for range 20000 {
		in := make([]byte, rng.IntN(80))
		for i := range in {
			in[i] = alphabet[rng.IntN(len(alphabet))]
		}
		f := append([]byte(nil), in...)
		x86Scan(f, x86Encode)
		back := append([]byte(nil), f...)
		x86Scan(back, x86Decode)
		if !bytes.Equal(back, in) {
			t.Fatalf("round trip of % x: filtered % x, back % x", in, f, back)
		}
	}
}

// TestEncoderX86 checks that a zstd encoder filters machine code (here the
// test binary's own code), that this makes the payload smaller, that the
// decoder undoes it, and that text is left unfiltered.
func TestEncoderX86(t *testing.T) {
	code := ownCode(t)
	orig := append([]byte(nil), code...)
	e, _ := NewEncoder(CodecZstd, DefaultLevel)
	payload, codec := e.Encode(nil, code)
	if codec != CodecZstdX86 {
		t.Fatalf("machine code encoded as %v, want zstd+x86", codec)
	}
	if !bytes.Equal(code, orig) {
		t.Fatal("Encode changed its input")
	}
	plainEnc, _ := NewEncoder(CodecZstd, DefaultLevel)
	plain, pcodec := plainEnc.WithoutX86Filter().Encode(nil, code)
	if pcodec != CodecZstd {
		t.Fatalf("WithoutX86Filter encoded as %v", pcodec)
	}
	if len(payload) >= len(plain) {
		t.Errorf("filtered payload %d bytes, unfiltered %d: the filter did not help", len(payload), len(plain))
	}
	t.Logf("1 MiB of machine code: %d bytes filtered, %d unfiltered (%.2f%%)", len(payload), len(plain), 100*float64(len(payload))/float64(len(plain)))
	out, err := NewDecoder().Decode(nil, codec, payload, len(code))
	if err != nil || !bytes.Equal(out, code) {
		t.Fatalf("decode: %v (equal %v)", err, bytes.Equal(out, code))
	}
	text := bytes.Repeat([]byte("The quick brown fox jumps over the lazy dog. "), 20000)
	if _, c := e.Encode(nil, text); c != CodecZstd {
		t.Errorf("text encoded as %v, want zstd", c)
	}
	synth := machineCode(256 << 10)
	p, c := e.Encode(nil, synth)
	if c != CodecZstdX86 {
		t.Fatalf("synthetic code encoded as %v", c)
	}
	if out, err := NewDecoder().Decode(nil, c, p, len(synth)); err != nil || !bytes.Equal(out, synth) {
		t.Fatalf("synthetic code: decode: %v", err)
	}
}
