package ntfs

import (
	"context"
	"encoding/binary"
	"fmt"
	"sort"
	"unicode/utf16"
)

// Well-known MFT record numbers.
const (
	recMFT    = 0
	recVolume = 3
	recRoot   = 5
	recBitmap = 6
)

// Attribute type codes.
const (
	atFileName      = 0x30
	atAttributeList = 0x20
	atVolumeName    = 0x60
	atVolumeInfo    = 0x70
	atData          = 0x80
	atIndexRoot     = 0x90
	atIndexAlloc    = 0xA0
	atBitmap        = 0xB0
	atEnd           = 0xFFFFFFFF
)

// Attribute flags.
const (
	attrCompressed = 0x00FF
	attrEncrypted  = 0x4000
)

const (
	recordInUse     = 0x0001
	recordDirectory = 0x0002
	// fixupStride is the unit of the update sequence array: always 512
	// bytes, whatever the sector size.
	fixupStride = 512
	// maxAttrList caps an $ATTRIBUTE_LIST (Windows limits it to 256 KiB).
	maxAttrList = 1 << 20
	// maxVCN bounds VCNs so that VCN*cluster size cannot overflow.
	maxVCN = 1 << 40
)

// run maps length clusters starting at vcn to lcn; lcn < 0 is sparse.
type run struct {
	vcn, lcn, length int64
}

func recName(n int64) string {
	switch n {
	case recMFT:
		return "MFT record 0 ($MFT)"
	case recVolume:
		return "MFT record 3 ($Volume)"
	case recRoot:
		return "MFT record 5 (root directory)"
	case recBitmap:
		return "MFT record 6 ($Bitmap)"
	}
	return fmt.Sprintf("MFT record %d", n)
}

// applyFixups checks and undoes the update sequence protection of a
// multi-sector record ("FILE" or "INDX") in place.
func applyFixups(buf []byte, what string) error {
	if len(buf) < 8 || len(buf)%fixupStride != 0 {
		return fmt.Errorf("%w: %s: size %d is not a multiple of %d", ErrCorrupt, what, len(buf), fixupStride)
	}
	usaOff := int(binary.LittleEndian.Uint16(buf[4:]))
	usaCount := int(binary.LittleEndian.Uint16(buf[6:]))
	sectors := len(buf) / fixupStride
	if usaCount != sectors+1 || usaOff%2 != 0 || usaOff < 8 || usaOff+2*usaCount > fixupStride-2 {
		return fmt.Errorf("%w: %s: update sequence array (offset %d, %d entries) does not fit a %d-byte record",
			ErrCorrupt, what, usaOff, usaCount, len(buf))
	}
	usn := buf[usaOff : usaOff+2]
	for i := 0; i < sectors; i++ {
		end := (i+1)*fixupStride - 2
		if buf[end] != usn[0] || buf[end+1] != usn[1] {
			return fmt.Errorf("%w: %s: update sequence mismatch in sector %d (torn write)", ErrCorrupt, what, i)
		}
		copy(buf[end:end+2], buf[usaOff+2+2*i:usaOff+4+2*i])
	}
	return nil
}

// record is one MFT record after fixups.
type record struct {
	num   int64
	buf   []byte
	flags uint16
	base  int64 // base record number, or -1 for a base record
	attrs []attr
}

// attr is one attribute header with its value or runlist bytes.
type attr struct {
	typ         uint32
	nonResident bool
	name        string
	flags       uint16
	id          uint16
	value       []byte // resident value
	lowVCN      int64  // non-resident: first VCN of this segment
	highVCN     int64  // non-resident: last VCN of this segment
	runData     []byte // non-resident: mapping pairs
	allocSize   int64
	dataSize    int64
	initSize    int64
}

// readRecord reads MFT record n through the $MFT runlist.
func (v *volume) readRecord(ctx context.Context, n int64) (*record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	what := recName(n)
	rs := v.bs.recordSize
	if n < 0 || (v.mftSize > 0 && n >= v.mftSize/rs) {
		return nil, fmt.Errorf("%w: %s does not exist: $MFT holds %d records", ErrCorrupt, what, v.mftSize/rs)
	}
	buf := make([]byte, rs)
	if err := v.readStream(ctx, v.mftRuns, n*rs, buf, what); err != nil {
		return nil, err
	}
	return v.parseRecord(n, buf)
}

func (v *volume) parseRecord(n int64, buf []byte) (*record, error) {
	what := recName(n)
	switch string(buf[:4]) {
	case "FILE":
	case "BAAD":
		return nil, fmt.Errorf("%w: %s is marked BAAD (a multi-sector write failed)", ErrCorrupt, what)
	default:
		return nil, fmt.Errorf("%w: %s: bad magic %q, want \"FILE\"", ErrCorrupt, what, buf[:4])
	}
	if err := applyFixups(buf, what); err != nil {
		return nil, err
	}
	rec := &record{num: n, buf: buf, base: -1}
	rec.flags = binary.LittleEndian.Uint16(buf[0x16:])
	firstAttr := int(binary.LittleEndian.Uint16(buf[0x14:]))
	used := int(binary.LittleEndian.Uint32(buf[0x18:]))
	if used > len(buf) || used < 0x30 {
		return nil, fmt.Errorf("%w: %s: bytes in use %d outside 48..%d", ErrCorrupt, what, used, len(buf))
	}
	if firstAttr < 0x18 || firstAttr+4 > used {
		return nil, fmt.Errorf("%w: %s: first attribute offset %d outside the %d bytes in use", ErrCorrupt, what, firstAttr, used)
	}
	// NTFS 3.1 records carry their own number; older ones (update sequence
	// array at 0x2A) do not.
	if usaOff := binary.LittleEndian.Uint16(buf[4:]); usaOff >= 0x30 {
		if own := int64(binary.LittleEndian.Uint32(buf[0x2C:])); own != n&0xFFFFFFFF {
			return nil, fmt.Errorf("%w: %s: record says it is number %d", ErrCorrupt, what, own)
		}
	}
	if baseRef := binary.LittleEndian.Uint64(buf[0x20:]); baseRef != 0 {
		rec.base = int64(baseRef & 0xFFFFFFFFFFFF)
	}
	attrs, err := parseAttrs(buf[:used], firstAttr, what)
	if err != nil {
		return nil, err
	}
	rec.attrs = attrs
	return rec, nil
}

func parseAttrs(buf []byte, off int, what string) ([]attr, error) {
	var attrs []attr
	for off+4 <= len(buf) {
		typ := binary.LittleEndian.Uint32(buf[off:])
		if typ == atEnd {
			return attrs, nil
		}
		if off+16 > len(buf) {
			break
		}
		length := int(binary.LittleEndian.Uint32(buf[off+4:]))
		if length < 24 || length%8 != 0 || length > len(buf)-off {
			return nil, fmt.Errorf("%w: %s: attribute 0x%X at offset %d has length %d (record has %d bytes in use)",
				ErrCorrupt, what, typ, off, length, len(buf))
		}
		a := buf[off : off+length]
		at := attr{
			typ:         typ,
			nonResident: a[8] != 0,
			flags:       binary.LittleEndian.Uint16(a[0x0C:]),
			id:          binary.LittleEndian.Uint16(a[0x0E:]),
		}
		where := fmt.Sprintf("%s: attribute 0x%X at offset %d", what, typ, off)
		if nameLen := int(a[9]); nameLen > 0 {
			nameOff := int(binary.LittleEndian.Uint16(a[0x0A:]))
			if nameOff+2*nameLen > length {
				return nil, fmt.Errorf("%w: %s: name runs past the attribute", ErrCorrupt, where)
			}
			at.name = decodeUTF16(a[nameOff : nameOff+2*nameLen])
		}
		if at.nonResident {
			if length < 0x40 {
				return nil, fmt.Errorf("%w: %s: non-resident header needs 64 bytes, attribute has %d", ErrCorrupt, where, length)
			}
			at.lowVCN = int64(binary.LittleEndian.Uint64(a[0x10:]))
			at.highVCN = int64(binary.LittleEndian.Uint64(a[0x18:]))
			runOff := int(binary.LittleEndian.Uint16(a[0x20:]))
			at.allocSize = int64(binary.LittleEndian.Uint64(a[0x28:]))
			at.dataSize = int64(binary.LittleEndian.Uint64(a[0x30:]))
			at.initSize = int64(binary.LittleEndian.Uint64(a[0x38:]))
			if runOff < 0x40 || runOff > length {
				return nil, fmt.Errorf("%w: %s: runlist offset %d outside the attribute (%d bytes)", ErrCorrupt, where, runOff, length)
			}
			if at.lowVCN < 0 || at.lowVCN > maxVCN || at.highVCN < at.lowVCN-1 || at.highVCN > maxVCN {
				return nil, fmt.Errorf("%w: %s: VCN range %d..%d is invalid", ErrCorrupt, where, at.lowVCN, at.highVCN)
			}
			if at.dataSize < 0 || at.initSize < 0 || at.allocSize < 0 {
				return nil, fmt.Errorf("%w: %s: negative size", ErrCorrupt, where)
			}
			at.runData = a[runOff:]
		} else {
			valLen := int(binary.LittleEndian.Uint32(a[0x10:]))
			valOff := int(binary.LittleEndian.Uint16(a[0x14:]))
			if valOff > length || valLen > length-valOff {
				return nil, fmt.Errorf("%w: %s: resident value (%d bytes at %d) runs past the attribute (%d bytes)",
					ErrCorrupt, where, valLen, valOff, length)
			}
			at.value = a[valOff : valOff+valLen]
		}
		attrs = append(attrs, at)
		off += length
	}
	return nil, fmt.Errorf("%w: %s: attribute list has no end marker", ErrCorrupt, what)
}

func decodeUTF16(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u))
}

// decodeRuns decodes the mapping pairs of one attribute segment. Runs must
// stay inside the volume and cover exactly lowVCN..highVCN.
func (v *volume) decodeRuns(a *attr, where string) ([]run, error) {
	var runs []run
	data := a.runData
	vcn := a.lowVCN
	var lcn int64
	for i := 0; len(data) > 0; i++ {
		h := data[0]
		if h == 0 {
			break
		}
		lenBytes, offBytes := int(h&0x0F), int(h>>4)
		if lenBytes == 0 || lenBytes > 8 || offBytes > 8 || 1+lenBytes+offBytes > len(data) {
			return nil, fmt.Errorf("%w: %s: run %d: header byte 0x%02X is invalid or runs past the attribute", ErrCorrupt, where, i, h)
		}
		length := leInt(data[1:1+lenBytes], false)
		if length <= 0 || length > maxVCN {
			return nil, fmt.Errorf("%w: %s: run %d: length %d clusters is invalid", ErrCorrupt, where, i, length)
		}
		r := run{vcn: vcn, lcn: -1, length: length}
		if offBytes > 0 {
			delta := leInt(data[1+lenBytes:1+lenBytes+offBytes], true)
			lcn += delta
			if lcn < 0 || lcn >= v.bs.clusters || length > v.bs.clusters-lcn {
				return nil, fmt.Errorf("%w: %s: run %d: clusters %d..%d lie outside the volume (%d clusters)",
					ErrCorrupt, where, i, lcn, lcn+length-1, v.bs.clusters)
			}
			r.lcn = lcn
		}
		runs = append(runs, r)
		vcn += length
		if vcn > maxVCN {
			return nil, fmt.Errorf("%w: %s: run %d: VCN %d is too large", ErrCorrupt, where, i, vcn)
		}
		data = data[1+lenBytes+offBytes:]
	}
	if vcn != a.highVCN+1 {
		return nil, fmt.Errorf("%w: %s: runs cover VCN %d..%d, header says %d..%d",
			ErrCorrupt, where, a.lowVCN, vcn-1, a.lowVCN, a.highVCN)
	}
	return runs, nil
}

// leInt decodes a little-endian integer of 1..8 bytes.
func leInt(b []byte, signed bool) int64 {
	var u uint64
	for i := len(b) - 1; i >= 0; i-- {
		u = u<<8 | uint64(b[i])
	}
	if signed && len(b) < 8 && b[len(b)-1]&0x80 != 0 {
		u |= ^uint64(0) << (8 * uint(len(b)))
	}
	return int64(u)
}

// stream is a non-resident attribute's data: its runs and sizes.
type stream struct {
	runs      []run
	flags     uint16
	allocSize int64
	dataSize  int64
	initSize  int64
}

// findAttr returns the first attribute of rec with the given type and name.
func (rec *record) findAttr(typ uint32, name string) *attr {
	for i := range rec.attrs {
		if rec.attrs[i].typ == typ && rec.attrs[i].name == name {
			return &rec.attrs[i]
		}
	}
	return nil
}

// attrValue returns the value of a resident attribute, or reads a
// non-resident one of at most limit bytes.
func (v *volume) attrValue(ctx context.Context, rec *record, a *attr, limit int64, where string) ([]byte, error) {
	if !a.nonResident {
		return a.value, nil
	}
	if a.lowVCN != 0 {
		return nil, fmt.Errorf("%w: %s: first segment starts at VCN %d", ErrCorrupt, where, a.lowVCN)
	}
	if a.dataSize > limit {
		return nil, fmt.Errorf("%w: %s: %d bytes, more than the %d allowed", ErrCorrupt, where, a.dataSize, limit)
	}
	runs, err := v.decodeRuns(a, where)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, a.dataSize)
	if err := v.readStream(ctx, runs, 0, buf, where); err != nil {
		return nil, err
	}
	clearPastInit(buf, 0, a.initSize)
	return buf, nil
}

// clearPastInit zeroes the bytes of buf (which holds stream bytes from
// off on) that lie at or past the initialized size: NTFS reads them as 0.
func clearPastInit(buf []byte, off, initSize int64) {
	if initSize <= off {
		clear(buf)
	} else if initSize-off < int64(len(buf)) {
		clear(buf[initSize-off:])
	}
}

// dataStream gathers all runs of the non-resident attribute (typ, name) of
// base record rec, following an $ATTRIBUTE_LIST into extension records.
// For $MFT itself, v.mftRuns grows as segments are found so that later
// extension records can be located.
func (v *volume) dataStream(ctx context.Context, rec *record, typ uint32, name string) (*stream, error) {
	what := fmt.Sprintf("%s: attribute 0x%X %q", recName(rec.num), typ, name)
	list := rec.findAttr(atAttributeList, "")
	if list == nil {
		a := rec.findAttr(typ, name)
		if a == nil {
			return nil, fmt.Errorf("%w: %s: not found", ErrCorrupt, what)
		}
		b := &streamBuilder{v: v, what: what}
		if err := b.add(ctx, a); err != nil {
			return nil, err
		}
		return b.finish()
	}
	all, err := v.attrList(ctx, rec, list)
	if err != nil {
		return nil, err
	}
	var entries []listEntry
	for _, e := range all {
		if e.typ == typ && e.name == name {
			entries = append(entries, e)
		}
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("%w: %s: not in $ATTRIBUTE_LIST", ErrCorrupt, what)
	}
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].vcn < entries[j].vcn })
	b := &streamBuilder{v: v, what: what}
	for i, e := range entries {
		// Extension records of $MFT must be reachable through the
		// segments read so far.
		if rec.num == recMFT && len(b.s.runs) > 0 {
			v.mftRuns = b.s.runs
		}
		seg, err := v.listedAttr(ctx, rec, e)
		if err != nil {
			return nil, fmt.Errorf("%s: segment %d: %w", what, i, err)
		}
		if err := b.add(ctx, seg); err != nil {
			return nil, err
		}
	}
	return b.finish()
}

// listEntry is one $ATTRIBUTE_LIST entry.
type listEntry struct {
	typ  uint32
	name string
	vcn  int64
	ref  int64
	id   uint16
}

// attrList parses the $ATTRIBUTE_LIST attribute list of base record rec.
func (v *volume) attrList(ctx context.Context, rec *record, list *attr) ([]listEntry, error) {
	what := recName(rec.num) + ": $ATTRIBUTE_LIST"
	raw, err := v.attrValue(ctx, rec, list, maxAttrList, what)
	if err != nil {
		return nil, err
	}
	var entries []listEntry
	for off := 0; off+0x1A <= len(raw); {
		l := int(binary.LittleEndian.Uint16(raw[off+4:]))
		if l < 0x1A || l > len(raw)-off {
			return nil, fmt.Errorf("%w: %s: entry at %d has length %d", ErrCorrupt, what, off, l)
		}
		e := raw[off : off+l]
		nameLen, nameOff := int(e[6]), int(e[7])
		if nameOff+2*nameLen > l {
			return nil, fmt.Errorf("%w: %s: entry at %d: name runs past the entry", ErrCorrupt, what, off)
		}
		entries = append(entries, listEntry{
			typ:  binary.LittleEndian.Uint32(e),
			name: decodeUTF16(e[nameOff : nameOff+2*nameLen]),
			vcn:  int64(binary.LittleEndian.Uint64(e[8:])),
			ref:  int64(binary.LittleEndian.Uint64(e[0x10:]) & 0xFFFFFFFFFFFF),
			id:   binary.LittleEndian.Uint16(e[0x18:]),
		})
		off += l
	}
	return entries, nil
}

// listedAttr returns the attribute an $ATTRIBUTE_LIST entry of base
// record rec points to, in rec itself or in an extension record.
func (v *volume) listedAttr(ctx context.Context, rec *record, e listEntry) (*attr, error) {
	holder := rec
	if e.ref != rec.num {
		var err error
		if holder, err = v.readRecord(ctx, e.ref); err != nil {
			return nil, err
		}
		if holder.base != rec.num {
			return nil, fmt.Errorf("%w: extension %s belongs to base record %d, not %d", ErrCorrupt, recName(e.ref), holder.base, rec.num)
		}
	}
	for j := range holder.attrs {
		a := &holder.attrs[j]
		if a.typ == e.typ && a.name == e.name && a.id == e.id {
			return a, nil
		}
	}
	return nil, fmt.Errorf("%w: attribute 0x%X id %d missing from %s", ErrCorrupt, e.typ, e.id, recName(e.ref))
}

// attrsOfType returns every attribute of type typ of base record rec,
// including those an $ATTRIBUTE_LIST places in extension records.
func (v *volume) attrsOfType(ctx context.Context, rec *record, typ uint32) ([]*attr, error) {
	list := rec.findAttr(atAttributeList, "")
	var out []*attr
	if list == nil {
		for i := range rec.attrs {
			if rec.attrs[i].typ == typ {
				out = append(out, &rec.attrs[i])
			}
		}
		return out, nil
	}
	entries, err := v.attrList(ctx, rec, list)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if e.typ != typ {
			continue
		}
		a, err := v.listedAttr(ctx, rec, e)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", recName(rec.num), err)
		}
		out = append(out, a)
	}
	return out, nil
}

// streamBuilder joins the runs of attribute segments, which must follow
// each other in VCN order; sizes come from the first segment.
type streamBuilder struct {
	v    *volume
	what string
	s    stream
	n    int   // segments added
	next int64 // next VCN expected
}

func (b *streamBuilder) add(ctx context.Context, a *attr) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !a.nonResident {
		return fmt.Errorf("%w: %s: is resident, expected non-resident", ErrUnsupported, b.what)
	}
	if a.lowVCN != b.next {
		return fmt.Errorf("%w: %s: segment %d starts at VCN %d, expected %d", ErrCorrupt, b.what, b.n, a.lowVCN, b.next)
	}
	if b.n == 0 {
		b.s.flags, b.s.allocSize, b.s.dataSize, b.s.initSize = a.flags, a.allocSize, a.dataSize, a.initSize
	}
	runs, err := b.v.decodeRuns(a, fmt.Sprintf("%s: segment %d", b.what, b.n))
	if err != nil {
		return err
	}
	b.s.runs = append(b.s.runs, runs...)
	b.next = a.highVCN + 1
	b.n++
	return nil
}

func (b *streamBuilder) finish() (*stream, error) {
	if b.s.dataSize > b.next*b.v.bs.clusterSize || b.s.initSize > b.s.dataSize {
		return nil, fmt.Errorf("%w: %s: data size %d (initialized %d) exceeds the %d clusters mapped",
			ErrCorrupt, b.what, b.s.dataSize, b.s.initSize, b.next)
	}
	return &b.s, nil
}

// readStream reads len(buf) bytes at byte offset off of a stream mapped
// by runs (sorted, contiguous from VCN 0). Sparse runs read as zeros.
func (v *volume) readStream(ctx context.Context, runs []run, off int64, buf []byte, what string) error {
	cs := v.bs.clusterSize
	for len(buf) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		vcn := off / cs
		i := sort.Search(len(runs), func(i int) bool { return runs[i].vcn+runs[i].length > vcn })
		if i == len(runs) || runs[i].vcn > vcn {
			return fmt.Errorf("%w: %s: byte %d (VCN %d) is not mapped by the runlist", ErrCorrupt, what, off, vcn)
		}
		r := runs[i]
		within := off - r.vcn*cs
		n := min(int64(len(buf)), r.length*cs-within)
		if r.lcn < 0 {
			clear(buf[:n])
		} else if err := v.readAt(buf[:n], r.lcn*cs+within, what); err != nil {
			return err
		}
		buf = buf[n:]
		off += n
	}
	return nil
}

// loadMFT reads record 0 at the boot sector's $MFT cluster and maps $MFT.
func (v *volume) loadMFT(ctx context.Context) error {
	rs := v.bs.recordSize
	buf := make([]byte, rs)
	if err := v.readAt(buf, v.bs.mftLCN*v.bs.clusterSize, recName(recMFT)); err != nil {
		return err
	}
	rec, err := v.parseRecord(recMFT, buf)
	if err != nil {
		return err
	}
	if rec.flags&recordInUse == 0 {
		return fmt.Errorf("%w: %s is not in use", ErrCorrupt, recName(recMFT))
	}
	a := rec.findAttr(atData, "")
	if a == nil || !a.nonResident {
		return fmt.Errorf("%w: %s has no non-resident $DATA attribute", ErrCorrupt, recName(recMFT))
	}
	if a.lowVCN != 0 {
		return fmt.Errorf("%w: %s: $DATA starts at VCN %d", ErrCorrupt, recName(recMFT), a.lowVCN)
	}
	runs, err := v.decodeRuns(a, recName(recMFT)+": $DATA")
	if err != nil {
		return err
	}
	if len(runs) == 0 || runs[0].lcn != v.bs.mftLCN {
		return fmt.Errorf("%w: %s: $DATA does not start at the boot sector's $MFT cluster %d", ErrCorrupt, recName(recMFT), v.bs.mftLCN)
	}
	v.mftRuns = runs
	v.mftSize = a.dataSize
	if rec.findAttr(atAttributeList, "") != nil {
		s, err := v.dataStream(ctx, rec, atData, "")
		if err != nil {
			return err
		}
		v.mftRuns = s.runs
		v.mftSize = s.dataSize
	}
	if v.mftSize < (recBitmap+1)*rs {
		return fmt.Errorf("%w: %s: $MFT holds %d bytes, too few for the system files", ErrCorrupt, recName(recMFT), v.mftSize)
	}
	return nil
}

// volInfo is what $Volume says.
type volInfo struct {
	label        string
	major, minor int
	dirty        bool
}

func (v *volume) volumeInfo(ctx context.Context) (*volInfo, error) {
	rec, err := v.readRecord(ctx, recVolume)
	if err != nil {
		return nil, err
	}
	vi := &volInfo{}
	if a := rec.findAttr(atVolumeName, ""); a != nil && !a.nonResident {
		vi.label = decodeUTF16(a.value)
	}
	if a := rec.findAttr(atVolumeInfo, ""); a != nil && !a.nonResident && len(a.value) >= 12 {
		vi.major, vi.minor = int(a.value[8]), int(a.value[9])
		vi.dirty = binary.LittleEndian.Uint16(a.value[10:])&0x0001 != 0
	}
	return vi, nil
}
