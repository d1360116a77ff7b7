package multicast

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
)

func sealed(a *auth, typ ptype, payload []byte) []byte {
	buf := make([]byte, headerLen+len(payload)+tagLen)
	copy(buf[headerLen:], payload)
	return a.seal(buf, typ, 0x11223344, 7, len(payload))
}

func TestSealOpen(t *testing.T) {
	a := newAuth(0xfeed, testKey)
	b := beacon{state: senderRunning, blockSize: 1416, chunks: 83, metaSize: 3664, rate: 64e6,
		queued: 123456, receivers: 3, statusMs: 100, segSize: metaSegment}
	b.metaHash[0], b.metaHash[31] = 0xaa, 0x55
	bp := make([]byte, beaconLen)
	b.encode(bp)
	st := status{state: rcvReceiving, tag: 9, instance: 0x1234, held: 5, total: 83, received: 1000, expected: 1010}
	sp := make([]byte, statusLen)
	st.encode(sp)
	np := make([]byte, 4+2*noticeEntry)
	encodeNotice(np, []noticeEnt{{1, noticeDoneAck}, {2, noticeCutOff}})
	var w reqWriter
	rp := make([]byte, maxControl-overhead)
	w.reset(rp, 77)
	w.add(kindChunk, 0, 12, nil)
	w.add(kindMeta, flagRepair, 0, []blockRange{{0, 3}, {10, 1}})
	w.setSeen(0x5e5d, 4242)
	rp = rp[:w.n]
	dp := make([]byte, dataHdrLen+100)
	(&dataHdr{kind: kindChunk, flags: flagLast, block: 2, obj: 5, size: 2*1416 + 100, tag: 77}).encode(dp)

	tests := []struct {
		name    string
		typ     ptype
		payload []byte
		check   func(t *testing.T, p []byte)
	}{
		{"beacon", typeBeacon, bp, func(t *testing.T, p []byte) {
			got, err := decodeBeacon(p)
			if err != nil || got != b {
				t.Fatalf("beacon = %+v, %v; want %+v", got, err, b)
			}
		}},
		{"status", typeStatus, sp, func(t *testing.T, p []byte) {
			got, err := decodeStatus(p)
			if err != nil || got != st {
				t.Fatalf("status = %+v, %v; want %+v", got, err, st)
			}
		}},
		{"notice", typeNotice, np, func(t *testing.T, p []byte) {
			var got []noticeEnt
			if err := decodeNotice(p, func(e noticeEnt) { got = append(got, e) }); err != nil {
				t.Fatal(err)
			}
			if want := []noticeEnt{{1, noticeDoneAck}, {2, noticeCutOff}}; !reflect.DeepEqual(got, want) {
				t.Fatalf("notice = %v, want %v", got, want)
			}
		}},
		{"request", typeRequest, rp, func(t *testing.T, p []byte) {
			got, err := decodeRequest(p)
			want := request{tag: 77, instance: 0x5e5d, seen: 4242, entries: []reqEntry{{kind: kindChunk, obj: 12},
				{kind: kindMeta, flags: flagRepair, ranges: []blockRange{{0, 3}, {10, 1}}}}}
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("request = %+v, %v; want %+v", got, err, want)
			}
		}},
		{"data", typeData, dp, func(t *testing.T, p []byte) {
			d, blk, err := decodeData(p, 1416)
			if err != nil || d.block != 2 || d.obj != 5 || d.flags != flagLast || d.tag != 77 || len(blk) != 100 {
				t.Fatalf("data = %+v (%d bytes), %v", d, len(blk), err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pkt := sealed(a, tc.typ, tc.payload)
			if len(pkt) != headerLen+len(tc.payload)+tagLen {
				t.Fatalf("sealed %d bytes", len(pkt))
			}
			h, p, err := a.open(pkt)
			if err != nil {
				t.Fatal(err)
			}
			if h.typ != tc.typ || h.session != 0xfeed || h.node != 0x11223344 || h.seq != 7 {
				t.Fatalf("header %+v", h)
			}
			if !bytes.Equal(p, tc.payload) {
				t.Fatal("payload changed")
			}
			tc.check(t, p)
		})
	}
}

// TestDataPacketFitsMTU checks the size the protocol promises: a full DATA
// packet is a 1500-byte IP packet.
func TestDataPacketFitsMTU(t *testing.T) {
	a := newAuth(1, testKey)
	_, pkt := dataPacket(a, blockSizeFor(DefaultMTU))
	if got := len(pkt) + ipUDPLen; got != 1500 {
		t.Fatalf("DATA packet is %d bytes of IP, want 1500", got)
	}
	if blockSizeFor(DefaultMTU) != 1416 {
		t.Fatalf("block size %d, want 1416", blockSizeFor(DefaultMTU))
	}
}

func TestOpenRejects(t *testing.T) {
	a := newAuth(0xfeed, testKey)
	good := sealed(a, typeStatus, make([]byte, statusLen))
	mod := func(f func(p []byte) []byte) []byte { return f(bytes.Clone(good)) }
	other := newAuth(0xbeef, testKey)
	forger := newAuth(0xfeed, bytes.Repeat([]byte{1}, 32))
	tests := []struct {
		name string
		pkt  []byte
		want error
	}{
		{"empty", nil, errMalformed},
		{"short", good[:30], errMalformed},
		{"magic", mod(func(p []byte) []byte { p[0] = 'X'; return p }), errMalformed},
		{"version", mod(func(p []byte) []byte { p[4] = 2; return p }), errMalformed},
		{"length", mod(func(p []byte) []byte { binary.LittleEndian.PutUint16(p[6:], 41); return p }), errMalformed},
		{"truncated", good[:len(good)-1], errMalformed},
		{"other session", sealed(other, typeStatus, make([]byte, statusLen)), errStray},
		{"forged", sealed(forger, typeStatus, make([]byte, statusLen)), errForged},
		{"flipped payload bit", mod(func(p []byte) []byte { p[headerLen+3] ^= 1; return p }), errForged},
		{"flipped tag bit", mod(func(p []byte) []byte { p[len(p)-1] ^= 0x80; return p }), errForged},
		{"unknown type", sealed(a, ptype(9), make([]byte, 4)), errMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := a.open(tc.pkt)
			if !errors.Is(err, tc.want) {
				t.Fatalf("open: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	req := func(entries ...[]byte) []byte {
		p := binary.LittleEndian.AppendUint32(nil, 77)
		p = append(p, make([]byte, 8)...)
		p = binary.LittleEndian.AppendUint16(p, uint16(len(entries)))
		p = append(p, 0, 0)
		for _, e := range entries {
			p = append(p, e...)
		}
		return p
	}
	entry := func(kind byte, obj uint32, ranges ...uint16) []byte {
		e := []byte{kind, 0}
		e = binary.LittleEndian.AppendUint16(e, uint16(len(ranges)/2))
		e = binary.LittleEndian.AppendUint32(e, obj)
		for _, r := range ranges {
			e = binary.LittleEndian.AppendUint16(e, r)
		}
		return e
	}
	bcn := func(f func(b *beacon)) []byte {
		b := beacon{state: 2, blockSize: 1416, chunks: 1, metaSize: 10, segSize: metaSegment}
		f(&b)
		p := make([]byte, beaconLen)
		b.encode(p)
		return p
	}
	tests := []struct {
		name   string
		decode func() error
	}{
		{"request no entries", func() error { _, err := decodeRequest(req()); return err }},
		{"request bad kind", func() error { _, err := decodeRequest(req(entry(2, 0))); return err }},
		{"request empty range", func() error { _, err := decodeRequest(req(entry(0, 0, 5, 0))); return err }},
		{"request overlapping ranges", func() error { _, err := decodeRequest(req(entry(0, 0, 5, 3, 6, 1))); return err }},
		{"request range beyond 65535", func() error { _, err := decodeRequest(req(entry(0, 0, 65000, 1000))); return err }},
		{"request truncated", func() error { p := req(entry(0, 0, 1, 2)); _, err := decodeRequest(p[:len(p)-1]); return err }},
		{"request trailing", func() error { _, err := decodeRequest(append(req(entry(0, 0)), 0)); return err }},
		{"request count beyond data", func() error {
			p := req(entry(0, 0))
			p[12] = 2
			_, err := decodeRequest(p)
			return err
		}},
		{"beacon state", func() error { _, err := decodeBeacon(bcn(func(b *beacon) { b.state = 9 })); return err }},
		{"beacon block size", func() error { _, err := decodeBeacon(bcn(func(b *beacon) { b.blockSize = 10 })); return err }},
		{"beacon no metadata", func() error { _, err := decodeBeacon(bcn(func(b *beacon) { b.metaSize = 0 })); return err }},
		{"beacon huge metadata", func() error { _, err := decodeBeacon(bcn(func(b *beacon) { b.metaSize = 1 << 40 })); return err }},
		{"beacon segment", func() error { _, err := decodeBeacon(bcn(func(b *beacon) { b.segSize = 0 })); return err }},
		{"beacon length", func() error { _, err := decodeBeacon(make([]byte, beaconLen-1)); return err }},
		{"status state", func() error { p := make([]byte, statusLen); _, err := decodeStatus(p); return err }},
		{"status held > total", func() error {
			p := make([]byte, statusLen)
			(&status{state: 2, held: 5, total: 4}).encode(p)
			_, err := decodeStatus(p)
			return err
		}},
		{"notice empty", func() error { return decodeNotice([]byte{0, 0, 0, 0}, func(noticeEnt) {}) }},
		{"notice code", func() error { return decodeNotice([]byte{1, 0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0}, func(noticeEnt) {}) }},
		{"data short block", func() error {
			p := make([]byte, dataHdrLen+10)
			(&dataHdr{size: 2000, block: 0}).encode(p)
			_, _, err := decodeData(p, 1416)
			return err
		}},
		{"data block beyond size", func() error {
			p := make([]byte, dataHdrLen+10)
			(&dataHdr{size: 10, block: 1}).encode(p)
			_, _, err := decodeData(p, 1416)
			return err
		}},
		{"data object too big", func() error {
			p := make([]byte, dataHdrLen+1416)
			(&dataHdr{size: 1416*65535 + 1}).encode(p)
			_, _, err := decodeData(p, 1416)
			return err
		}},
		{"data kind", func() error {
			p := make([]byte, dataHdrLen+10)
			(&dataHdr{kind: 3, size: 10}).encode(p)
			_, _, err := decodeData(p, 1416)
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.decode(); !errors.Is(err, errMalformed) {
				t.Fatalf("got %v, want a malformed-packet error", err)
			}
		})
	}
}

func TestMissingRanges(t *testing.T) {
	have, asked := newBitmap(200), newBitmap(200)
	have.setRange(0, 10)
	have.setRange(70, 60)
	asked.setRange(150, 10)
	tests := []struct {
		name  string
		asked bitmap
		want  []blockRange
	}{
		{"without asks", nil, []blockRange{{10, 60}, {130, 70}}},
		{"minus asks", asked, []blockRange{{10, 60}, {130, 20}, {160, 40}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := missingRanges(nil, have, tc.asked, 200); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	if n := newBitmap(130).setRange(0, 130); n != 130 {
		t.Fatalf("setRange added %d, want 130", n)
	}
	b := newBitmap(300)
	b.set(5)
	b.set(200)
	if got := []int{b.next(0, 300), b.next(6, 300), b.next(201, 300), b.nextClear(5, 300)}; !reflect.DeepEqual(got, []int{5, 200, -1, 6}) {
		t.Fatalf("next/nextClear = %v", got)
	}
}
