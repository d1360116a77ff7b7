package ntfs

import (
	"encoding/binary"
	"unicode/utf16"
)

// A tiny NTFS volume assembled byte by byte, the base of the fuzz
// inputs (64 KiB) and exact enough to predict every extent:
//
//	512-byte sectors and clusters, 128 sectors in the device, the BPB
//	counts 119 (so clusters 0..118, backup boot sector in sector 119,
//	sectors 120..127 unused), 1 KiB MFT records.
//	clusters  0..15   $Boot
//	clusters 16..63   $MFT, 24 records
//	cluster  64       $Bitmap (cluster 65 too when split)
//	clusters 66..75   pagefile.sys (record 16)
//	clusters 76..85   hiberfil.sys (record 17)
//
// $Bitmap's padding bits (clusters 119..127) are set, as Windows may do.
const (
	tinySectors     = 128
	tinyVolSectors  = 119
	tinyMFTLCN      = 16
	tinyMFTClusters = 48
	tinyBitmapLCN   = 64
	tinyPageLCN     = 66
	tinyHiberLCN    = 76
	tinyFileLen     = 10
)

type tinyOpts struct {
	// splitBitmap stores $Bitmap's $DATA as two segments, the second in
	// extension record 18, reached through an $ATTRIBUTE_LIST.
	splitBitmap bool
	// hiberHeader is written at the start of hiberfil.sys.
	hiberHeader string
}

func buildTinyNTFS(o tinyOpts) []byte {
	img := make([]byte, tinySectors*512)
	boot := make([]byte, 512)
	boot[0], boot[1], boot[2] = 0xEB, 0x52, 0x90
	copy(boot[3:], "NTFS    ")
	binary.LittleEndian.PutUint16(boot[0x0B:], 512)
	boot[0x0D] = 1
	boot[0x15] = 0xF8
	binary.LittleEndian.PutUint64(boot[0x28:], tinyVolSectors)
	binary.LittleEndian.PutUint64(boot[0x30:], tinyMFTLCN)
	binary.LittleEndian.PutUint64(boot[0x38:], 2)
	boot[0x40] = 0xF6 // 2^10 = 1024-byte records
	boot[0x44] = 0xF4 // 4096-byte index blocks
	binary.LittleEndian.PutUint64(boot[0x48:], 0x1122334455667788)
	boot[510], boot[511] = 0x55, 0xAA
	copy(img, boot)
	copy(img[tinyVolSectors*512:], boot)

	mft := func(n int) []byte { return img[tinyMFTLCN*512+n*1024 : tinyMFTLCN*512+(n+1)*1024] }
	put := func(n int, flags uint16, base uint64, attrs ...[]byte) {
		copy(mft(n), tinyRecord(n, flags, base, attrs...))
	}
	put(0, recordInUse, 0, tinyNonResident(atData, "", 0, 0, tinyMFTClusters-1,
		encodeRuns([]run{{0, tinyMFTLCN, tinyMFTClusters}}), tinyMFTClusters*512, 24*1024, 24*1024))
	put(3, recordInUse, 0,
		tinyResident(atVolumeName, "", 1, utf16le("tiny")),
		tinyResident(atVolumeInfo, "", 2, []byte{0, 0, 0, 0, 0, 0, 0, 0, 3, 1, 0, 0}))

	files := []struct {
		rec  int
		name string
		lcn  int64
	}{{16, "pagefile.sys", tinyPageLCN}, {17, "hiberfil.sys", tinyHiberLCN}}
	var entries [][]byte
	for _, f := range files {
		fn := tinyFileName(f.name, tinyFileLen*512)
		put(f.rec, recordInUse, 0,
			tinyResident(atFileName, "", 1, fn),
			tinyNonResident(atData, "", 2, 0, tinyFileLen-1, encodeRuns([]run{{0, f.lcn, tinyFileLen}}),
				tinyFileLen*512, tinyFileLen*512, tinyFileLen*512))
		entries = append(entries, tinyIndexEntry(uint64(f.rec)|1<<48, fn))
		for i := int64(0); i < tinyFileLen*512; i++ {
			img[f.lcn*512+i] = byte(i*7 + 1)
		}
	}
	hib := img[tinyHiberLCN*512:]
	clear(hib[:hiberHeaderSize])
	copy(hib, o.hiberHeader)
	put(5, recordInUse|recordDirectory, 0, tinyResident(atIndexRoot, "$I30", 1, tinyIndexRoot(entries)))

	bmClusters := int64(1)
	if o.splitBitmap {
		bmClusters = 2
	}
	if o.splitBitmap {
		list := append(tinyListEntry(atData, 0, recBitmap, 1), tinyListEntry(atData, 1, 18, 0)...)
		put(6, recordInUse, 0,
			tinyResident(atAttributeList, "", 3, list),
			tinyNonResident(atData, "", 1, 0, 0, encodeRuns([]run{{0, tinyBitmapLCN, 1}}), 1024, 16, 16))
		put(18, recordInUse, recBitmap|1<<48,
			tinyNonResident(atData, "", 0, 1, 1, encodeRuns([]run{{1, tinyBitmapLCN + 1, 1}}), 0, 0, 0))
	} else {
		put(6, recordInUse, 0,
			tinyNonResident(atData, "", 1, 0, 0, encodeRuns([]run{{0, tinyBitmapLCN, 1}}), 512, 16, 16))
	}
	bm := img[tinyBitmapLCN*512 : tinyBitmapLCN*512+16]
	set := func(first, n int64) {
		for c := first; c < first+n; c++ {
			bm[c/8] |= 1 << (c % 8)
		}
	}
	set(0, tinyMFTLCN+tinyMFTClusters)
	set(tinyBitmapLCN, bmClusters)
	set(tinyPageLCN, 2*tinyFileLen)
	set(tinyVolSectors, 128-tinyVolSectors) // padding
	return img
}

func utf16le(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.LittleEndian.PutUint16(b[2*i:], c)
	}
	return b
}

func align8(n int) int { return (n + 7) &^ 7 }

func tinyRecord(n int, flags uint16, base uint64, attrs ...[]byte) []byte {
	r := make([]byte, 1024)
	copy(r, "FILE")
	binary.LittleEndian.PutUint16(r[4:], 0x30) // update sequence array
	binary.LittleEndian.PutUint16(r[6:], 3)
	binary.LittleEndian.PutUint16(r[0x10:], 1) // sequence number
	binary.LittleEndian.PutUint16(r[0x12:], 1)
	binary.LittleEndian.PutUint16(r[0x14:], 0x38)
	binary.LittleEndian.PutUint16(r[0x16:], flags)
	binary.LittleEndian.PutUint32(r[0x1C:], 1024)
	binary.LittleEndian.PutUint64(r[0x20:], base)
	binary.LittleEndian.PutUint16(r[0x28:], 8)
	binary.LittleEndian.PutUint32(r[0x2C:], uint32(n))
	off := 0x38
	for _, a := range attrs {
		off += copy(r[off:], a)
	}
	binary.LittleEndian.PutUint32(r[off:], atEnd)
	binary.LittleEndian.PutUint32(r[0x18:], uint32(off+8))
	// Update sequence: number 0x0007, the saved sector tails after it.
	binary.LittleEndian.PutUint16(r[0x30:], 7)
	for i := 0; i < 2; i++ {
		end := (i+1)*512 - 2
		copy(r[0x32+2*i:], r[end:end+2])
		binary.LittleEndian.PutUint16(r[end:], 7)
	}
	return r
}

func tinyResident(typ uint32, name string, id uint16, value []byte) []byte {
	nm := utf16le(name)
	valOff := align8(0x18 + len(nm))
	a := make([]byte, align8(valOff+len(value)))
	binary.LittleEndian.PutUint32(a, typ)
	binary.LittleEndian.PutUint32(a[4:], uint32(len(a)))
	a[9] = byte(len(nm) / 2)
	binary.LittleEndian.PutUint16(a[0x0A:], 0x18)
	binary.LittleEndian.PutUint16(a[0x0E:], id)
	binary.LittleEndian.PutUint32(a[0x10:], uint32(len(value)))
	binary.LittleEndian.PutUint16(a[0x14:], uint16(valOff))
	copy(a[0x18:], nm)
	copy(a[valOff:], value)
	return a
}

func tinyNonResident(typ uint32, name string, id uint16, low, high int64, runs []byte, alloc, data, init int64) []byte {
	nm := utf16le(name)
	runOff := align8(0x40 + len(nm))
	a := make([]byte, align8(runOff+len(runs)+1))
	binary.LittleEndian.PutUint32(a, typ)
	binary.LittleEndian.PutUint32(a[4:], uint32(len(a)))
	a[8] = 1
	a[9] = byte(len(nm) / 2)
	binary.LittleEndian.PutUint16(a[0x0A:], 0x40)
	binary.LittleEndian.PutUint16(a[0x0E:], id)
	binary.LittleEndian.PutUint64(a[0x10:], uint64(low))
	binary.LittleEndian.PutUint64(a[0x18:], uint64(high))
	binary.LittleEndian.PutUint16(a[0x20:], uint16(runOff))
	binary.LittleEndian.PutUint64(a[0x28:], uint64(alloc))
	binary.LittleEndian.PutUint64(a[0x30:], uint64(data))
	binary.LittleEndian.PutUint64(a[0x38:], uint64(init))
	copy(a[0x40:], nm)
	copy(a[runOff:], runs)
	return a
}

// encodeRuns writes mapping pairs (no terminator) with minimal field sizes.
func encodeRuns(runs []run) []byte {
	var out []byte
	var prev int64
	for _, r := range runs {
		lb := leBytes(r.length, false)
		var ob []byte
		if r.lcn >= 0 {
			ob = leBytes(r.lcn-prev, true)
			prev = r.lcn
		}
		out = append(out, byte(len(ob)<<4|len(lb)))
		out = append(out, lb...)
		out = append(out, ob...)
	}
	return out
}

func leBytes(v int64, signed bool) []byte {
	var b []byte
	for {
		b = append(b, byte(v))
		v >>= 8
		last := b[len(b)-1]
		if signed && ((v == 0 && last&0x80 == 0) || (v == -1 && last&0x80 != 0)) {
			return b
		}
		if !signed && v == 0 {
			return b
		}
	}
}

func tinyFileName(name string, size int64) []byte {
	nm := utf16le(name)
	v := make([]byte, 0x42+len(nm))
	binary.LittleEndian.PutUint64(v, recRoot|5<<48)
	binary.LittleEndian.PutUint64(v[0x28:], uint64(size))
	binary.LittleEndian.PutUint64(v[0x30:], uint64(size))
	binary.LittleEndian.PutUint32(v[0x38:], 0x06) // hidden, system
	v[0x40] = byte(len(nm) / 2)
	v[0x41] = 3 // Win32 and DOS
	copy(v[0x42:], nm)
	return v
}

func tinyIndexEntry(ref uint64, key []byte) []byte {
	e := make([]byte, align8(16+len(key)))
	binary.LittleEndian.PutUint64(e, ref)
	binary.LittleEndian.PutUint16(e[8:], uint16(len(e)))
	binary.LittleEndian.PutUint16(e[10:], uint16(len(key)))
	copy(e[16:], key)
	return e
}

func tinyIndexRoot(entries [][]byte) []byte {
	var body []byte
	for _, e := range entries {
		body = append(body, e...)
	}
	last := make([]byte, 16)
	binary.LittleEndian.PutUint16(last[8:], 16)
	binary.LittleEndian.PutUint16(last[12:], 2)
	body = append(body, last...)
	v := make([]byte, 0x20, 0x20+len(body))
	binary.LittleEndian.PutUint32(v, atFileName)
	binary.LittleEndian.PutUint32(v[4:], 1) // filename collation
	binary.LittleEndian.PutUint32(v[8:], 4096)
	v[0x0C] = 8
	binary.LittleEndian.PutUint32(v[0x10:], 0x10)
	binary.LittleEndian.PutUint32(v[0x14:], uint32(0x10+len(body)))
	binary.LittleEndian.PutUint32(v[0x18:], uint32(0x10+len(body)))
	return append(v, body...)
}

func tinyListEntry(typ uint32, vcn int64, rec uint64, id uint16) []byte {
	e := make([]byte, 0x20)
	binary.LittleEndian.PutUint32(e, typ)
	binary.LittleEndian.PutUint16(e[4:], 0x20)
	e[7] = 0x1A
	binary.LittleEndian.PutUint64(e[8:], uint64(vcn))
	binary.LittleEndian.PutUint64(e[0x10:], rec|1<<48)
	binary.LittleEndian.PutUint16(e[0x18:], id)
	return e
}
