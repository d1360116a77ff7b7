package xfs

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
//	v + patches            the device is the tiny filesystem (v4 if v is
//	                       even, v5 if odd), cut to (v>>1)*1 KiB if that is
//	                       non-zero, with patches applied: each is offset
//	                       (2 bytes, little endian, modulo the size),
//	                       length (1 byte, modulo 32), then that many bytes.
//	                       v4 matters most: without CRCs, changes reach
//	                       the btree walk.
func fuzzDevice(data []byte) []byte {
	if len(data) == 0 {
		return nil
	}
	if data[0] == 'R' {
		return data[1:]
	}
	img := buildTinyXFS(data[0]%2 == 1)
	if cut := int(data[0]>>1) * 1024; cut > 0 && cut < len(img) {
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
	f.Add([]byte{0})
	f.Add([]byte{1})
	patch := func(off int, b ...byte) []byte {
		return append([]byte{0, byte(off), byte(off >> 8), byte(len(b))}, b...)
	}
	ag1 := tinyAGBlocks * tinyBS
	f.Add(patch(ag1+5*tinyBS+bbHdrV4+8*((tinyBS-bbHdrV4)/12), 0, 0, 0, 5)) // node points to itself
	f.Add(patch(4*tinyBS+bbHdrV4, 0, 0, 0, 40))                            // overlapping free extents
	f.Add(patch(ag1+tinyBS+agfBnoLevel, 0, 0, 0, 3))                       // deeper than the tree
	f.Add([]byte{0 | 40<<1})                                               // cut to 40 KiB
	f.Add(append([]byte("R"), buildTinyXFS(false)[:3*tinyBS]...))
	f.Add([]byte("RXFSB"))
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
		var prevEnd int64 = -1
		_ = UsedExtents(context.Background(), bytes.NewReader(dev), size, func(off, length int64) error {
			if length <= 0 || off <= prevEnd || off+length > size {
				t.Fatalf("bad extent (%d,+%d) after end %d, size %d", off, length, prevEnd, size)
			}
			prevEnd = off + length
			return nil
		})
	})
}
