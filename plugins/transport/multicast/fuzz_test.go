package multicast

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// FuzzDecode feeds arbitrary datagrams to the packet decoder: the header
// and tag checks, and (since random bytes rarely carry a valid tag) every
// payload decoder directly. Valid payloads must survive a round trip
// through their encoder.
func FuzzDecode(f *testing.F) {
	a := newAuth(0xfeed, testKey)
	seeds := [][]byte{}
	bp := make([]byte, beaconLen)
	(&beacon{state: 2, blockSize: 1416, chunks: 3, metaSize: 100, segSize: metaSegment}).encode(bp)
	seeds = append(seeds, sealed(a, typeBeacon, bp))
	sp := make([]byte, statusLen)
	(&status{state: 2, held: 1, total: 3, received: 10, expected: 12}).encode(sp)
	seeds = append(seeds, sealed(a, typeStatus, sp))
	np := make([]byte, 4+noticeEntry)
	encodeNotice(np, []noticeEnt{{7, noticeCutOff}})
	seeds = append(seeds, sealed(a, typeNotice, np))
	var w reqWriter
	rp := make([]byte, 200)
	w.reset(rp, 77)
	w.add(kindChunk, flagRepair, 3, []blockRange{{1, 2}, {9, 4}})
	w.add(kindMeta, 0, 0, nil)
	seeds = append(seeds, sealed(a, typeRequest, rp[:w.n]))
	_, dp := dataPacket(a, 1416)
	seeds = append(seeds, dp)
	for _, s := range seeds {
		f.Add(s)
		f.Add(s[headerLen : len(s)-tagLen])
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		h, p, err := a.open(pkt)
		if err == nil {
			if len(p) != len(pkt)-overhead || h.session != 0xfeed {
				t.Fatalf("open accepted %d bytes with payload %d, session %#x", len(pkt), len(p), h.session)
			}
			// A valid tag over the same bytes re-seals identically.
			again := a.seal(bytes.Clone(pkt), h.typ, h.node, h.seq, len(p))
			if !bytes.Equal(again, pkt) {
				t.Fatal("re-sealing changed the datagram")
			}
		} else if !errors.Is(err, errMalformed) && !errors.Is(err, errStray) && !errors.Is(err, errForged) {
			t.Fatalf("open: unclassified error %v", err)
		}
		payload := pkt
		if len(pkt) >= overhead {
			payload = pkt[headerLen : len(pkt)-tagLen]
		}
		for _, p := range [][]byte{pkt, payload} {
			if b, err := decodeBeacon(p); err == nil {
				q := make([]byte, beaconLen)
				b.encode(q)
				if b2, err := decodeBeacon(q); err != nil || b2 != b {
					t.Fatalf("beacon round trip: %+v, %v; was %+v", b2, err, b)
				}
			}
			if s, err := decodeStatus(p); err == nil {
				q := make([]byte, statusLen)
				s.encode(q)
				if s2, err := decodeStatus(q); err != nil || s2 != s {
					t.Fatalf("status round trip: %+v, %v; was %+v", s2, err, s)
				}
			}
			var ents []noticeEnt
			if err := decodeNotice(p, func(e noticeEnt) { ents = append(ents, e) }); err == nil {
				q := make([]byte, 4+len(ents)*noticeEntry)
				encodeNotice(q, ents)
				var again []noticeEnt
				if err := decodeNotice(q, func(e noticeEnt) { again = append(again, e) }); err != nil || !reflect.DeepEqual(again, ents) {
					t.Fatalf("notice round trip: %v, %v; was %v", again, err, ents)
				}
			}
			if r, err := decodeRequest(p); err == nil {
				var w reqWriter
				q := make([]byte, len(p))
				w.reset(q, r.tag)
				w.setSeen(r.instance, r.seen)
				for _, e := range r.entries {
					w.add(e.kind, e.flags, e.obj, e.ranges)
				}
				r2, err := decodeRequest(q[:w.n])
				if err != nil || !reflect.DeepEqual(r2, r) {
					t.Fatalf("request round trip: %+v, %v; was %+v", r2, err, r)
				}
			}
			if d, blk, err := decodeData(p, 1416); err == nil {
				if int(d.block)*1416+len(blk) > int(d.size) || len(blk) == 0 {
					t.Fatalf("data block %d of %d bytes beyond object size %d", d.block, len(blk), d.size)
				}
			}
		}
	})
}
