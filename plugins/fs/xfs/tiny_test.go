package xfs

import (
	"encoding/binary"
	"hash/crc32"
)

// A tiny XFS data device assembled byte by byte (64 KiB), the base of the
// fuzz inputs and exact enough to predict every extent:
//
//	512-byte blocks and sectors, 2 AGs of 64 blocks, dblocks 120 (the
//	last AG has 56), device 128 blocks (8 past the filesystem).
//	AG 0: bno root leaf at block 4; free (20,10) and (40,20), so its
//	      last blocks are used and merge with AG 1's first
//	AG 1: bno root node at block 5 over leaves 4 and 6; free (8,4) and (30,26)
const (
	tinyBS       = 512
	tinyAGBlocks = 64
	tinyDBlocks  = 120
	tinyDevice   = 128
)

var tinyUUID = [16]byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}

func tinyFree() [2][][2]uint32 {
	return [2][][2]uint32{{{20, 10}, {40, 20}}, {{8, 4}, {30, 26}}}
}

func buildTinyXFS(v5 bool) []byte {
	img := make([]byte, tinyDevice*tinyBS)
	be := binary.BigEndian
	sb := img[:tinyBS]
	copy(sb, "XFSB")
	be.PutUint32(sb[sbBlockSize:], tinyBS)
	be.PutUint64(sb[sbDBlocks:], tinyDBlocks)
	copy(sb[sbUUID:], tinyUUID[:])
	be.PutUint64(sb[sbLogStart:], 10)
	be.PutUint32(sb[sbAGBlocks:], tinyAGBlocks)
	be.PutUint32(sb[sbAGCount:], 2)
	be.PutUint32(sb[sbLogBlocks:], 4)
	ver := uint16(4)
	if v5 {
		ver = 5
	}
	be.PutUint16(sb[sbVersionNum:], ver)
	be.PutUint16(sb[sbSectSize:], tinyBS)
	copy(sb[sbFname:], "tiny")
	sb[sbBlockLog], sb[sbSectLog], sb[sbAGBlkLog] = 9, 9, 6
	if v5 {
		setCRC(sb, sbCRC)
	}

	free := tinyFree()
	for ag := uint32(0); ag < 2; ag++ {
		base := int(ag) * tinyAGBlocks * tinyBS
		length := uint32(tinyAGBlocks)
		if ag == 1 {
			length = tinyDBlocks - tinyAGBlocks
		}
		var sum uint32
		for _, r := range free[ag] {
			sum += r[1]
		}
		a := img[base+tinyBS : base+2*tinyBS]
		copy(a, "XAGF")
		be.PutUint32(a[agfVersion:], 1)
		be.PutUint32(a[agfSeqno:], ag)
		be.PutUint32(a[agfLength:], length)
		be.PutUint32(a[agfFreeBlks:], sum)
		copy(a[agfUUID:], tinyUUID[:])
		block := func(agbno int) []byte { return img[base+agbno*tinyBS : base+(agbno+1)*tinyBS] }
		if ag == 0 {
			be.PutUint32(a[agfBnoRoot:], 4)
			be.PutUint32(a[agfBnoLevel:], 1)
			tinyBtreeBlock(block(4), v5, ag, 4, 0, free[0], nil)
		} else {
			be.PutUint32(a[agfBnoRoot:], 5)
			be.PutUint32(a[agfBnoLevel:], 2)
			tinyBtreeBlock(block(4), v5, ag, 4, 0, free[1][:1], nil)
			tinyBtreeBlock(block(6), v5, ag, 6, 0, free[1][1:], nil)
			tinyBtreeBlock(block(5), v5, ag, 5, 1, free[1], []uint32{4, 6})
		}
		if v5 {
			setCRC(a, agfCRC)
		}
	}
	return img
}

// tinyBtreeBlock writes a bno btree block: a leaf with recs, or a node
// with recs as keys and ptrs as child pointers.
func tinyBtreeBlock(b []byte, v5 bool, ag uint32, agbno int, level int, recs [][2]uint32, ptrs []uint32) {
	be := binary.BigEndian
	hdr := bbHdrV4
	copy(b, magicBnoV4)
	if v5 {
		hdr = bbHdrV5
		copy(b, magicBnoV5)
	}
	be.PutUint16(b[bbLevel:], uint16(level))
	be.PutUint16(b[bbNumRecs:], uint16(len(recs)))
	be.PutUint32(b[8:], 0xFFFFFFFF)
	be.PutUint32(b[12:], 0xFFFFFFFF)
	for i, r := range recs {
		be.PutUint32(b[hdr+8*i:], r[0])
		be.PutUint32(b[hdr+8*i+4:], r[1])
	}
	if level > 0 {
		maxRecs := (len(b) - hdr) / 12
		for i, p := range ptrs {
			be.PutUint32(b[hdr+8*maxRecs+4*i:], p)
		}
	}
	if v5 {
		be.PutUint64(b[bbBlkno:], uint64(int(ag)*tinyAGBlocks+agbno))
		copy(b[bbUUID:], tinyUUID[:])
		be.PutUint32(b[bbOwner:], ag)
		setCRC(b, bbCRC)
	}
}

// setCRC stores the XFS CRC32C of b with the field at off taken as zero.
func setCRC(b []byte, off int) {
	binary.LittleEndian.PutUint32(b[off:], 0)
	binary.LittleEndian.PutUint32(b[off:], crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
}
