package ntfs

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"
)

// Fuzz inputs come in two forms, so that they stay small (the fuzzer
// minimizes every new input, which takes minutes for 64 KiB ones):
//
//	'R' + bytes            the device is bytes, as is
//	v + patches            the device is tiny volume variant v%4, cut to
//	                       (v>>2)*1 KiB if that is non-zero, with patches
//	                       applied: each is offset (2 bytes, little
//	                       endian, modulo the size), length (1 byte,
//	                       modulo 32), then that many bytes
var tinyVariants = []tinyOpts{{}, {splitBitmap: true}, {hiberHeader: "hibr"}, {hiberHeader: "wake"}}

func fuzzDevice(data []byte) []byte {
	if len(data) == 0 {
		return nil
	}
	if data[0] == 'R' {
		return data[1:]
	}
	img := buildTinyNTFS(tinyVariants[data[0]%4])
	if cut := int(data[0]>>2) * 1024; cut > 0 && cut < len(img) {
		img = img[:cut]
	}
	for p := data[1:]; len(p) >= 3; {
		off := int(binary.LittleEndian.Uint16(p)) % len(img)
		n := min(int(p[2])%32, len(p)-3)
		copy(img[off:], p[3:3+n])
		p = p[3+n:]
	}
	return img
}

func fuzzSeeds(f *testing.F) {
	for v := range tinyVariants {
		f.Add([]byte{byte(v)})
	}
	patch := func(v byte, off uint16, b ...byte) []byte {
		return append([]byte{v, byte(off), byte(off >> 8), byte(len(b))}, b...)
	}
	mft := uint16(tinyMFTLCN * 512)
	f.Add(patch(0, mft+6*1024+0x38+4, 0, 0, 0, 0))           // $Bitmap attribute length 0
	f.Add(patch(1, mft+6*1024+0x48, 0xFF, 0xFF, 0xFF, 0x7F)) // attribute list entry VCN
	f.Add(patch(0, mft+5*1024+0x60, 0x11, 0x22))             // root index entries
	f.Add(patch(0, 0x0D, 0xF0))                              // 2^16 sectors per cluster
	f.Add([]byte{0 | 20<<2})                                 // cut to 20 KiB
	f.Add(append([]byte("R"), buildTinyNTFS(tinyOpts{})[:1024]...))
	f.Add([]byte("R\xeb\x52\x90NTFS    "))
}

func FuzzProbe(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		dev := fuzzDevice(data)
		info, err := Probe(bytes.NewReader(dev), int64(len(dev)))
		if err == nil && (info.Blocks == 0 || info.UsedBlocks > info.Blocks) {
			t.Fatalf("Probe accepted %+v", info)
		}
	})
}

func FuzzUsedExtents(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		dev := fuzzDevice(data)
		size := int64(len(dev))
		for _, opts := range []Options{{}, {SkipPagefile: true, SkipHiberfil: true}} {
			var prevEnd int64 = -1
			_ = UsedExtentsWithOptions(context.Background(), bytes.NewReader(dev), size, opts, func(off, length int64) error {
				if length <= 0 || off <= prevEnd || off+length > size {
					t.Fatalf("bad extent (%d,+%d) after end %d, size %d", off, length, prevEnd, size)
				}
				prevEnd = off + length
				return nil
			})
		}
	})
}
