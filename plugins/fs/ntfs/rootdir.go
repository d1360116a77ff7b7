package ntfs

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
)

const (
	pagefileName = "pagefile.sys"
	hiberfilName = "hiberfil.sys"
	// hiberHeaderSize is the header page of hiberfil.sys, the part the
	// boot manager reads to decide whether to resume.
	hiberHeaderSize = 4096
	// maxIndexBlocks caps the root directory's $I30 allocation walk.
	maxIndexBlocks = 1 << 20
)

// rootLookup finds the MFT record numbers of the root directory entries
// whose names match (case-insensitively) one of names. Entries come from
// $INDEX_ROOT and every in-use block of $INDEX_ALLOCATION; the tree order
// is not needed because every entry is visited.
func (v *volume) rootLookup(ctx context.Context, names ...string) (map[string]int64, error) {
	rec, err := v.readRecord(ctx, recRoot)
	if err != nil {
		return nil, err
	}
	what := recName(recRoot)
	if rec.flags&recordInUse == 0 || rec.flags&recordDirectory == 0 {
		return nil, fmt.Errorf("%w: %s is not an in-use directory (flags 0x%04X)", ErrCorrupt, what, rec.flags)
	}
	found := map[string]int64{}
	visit := func(ref uint64, key []byte) {
		if len(key) < 0x42 {
			return
		}
		nameLen := int(key[0x40])
		if 0x42+2*nameLen > len(key) {
			return
		}
		name := decodeUTF16(key[0x42 : 0x42+2*nameLen])
		for _, want := range names {
			if strings.EqualFold(name, want) {
				if _, dup := found[want]; !dup {
					found[want] = int64(ref & 0xFFFFFFFFFFFF)
				}
			}
		}
	}

	ir := rec.findAttr(atIndexRoot, "$I30")
	if ir == nil || ir.nonResident || len(ir.value) < 0x20 {
		return nil, fmt.Errorf("%w: %s: no resident $INDEX_ROOT $I30", ErrCorrupt, what)
	}
	blockSize := int64(binary.LittleEndian.Uint32(ir.value[8:]))
	if err := walkIndexEntries(ir.value[0x10:], what+": $INDEX_ROOT", visit); err != nil {
		return nil, err
	}
	if ir.value[0x1C]&0x01 == 0 { // no $INDEX_ALLOCATION
		return found, nil
	}
	if blockSize < fixupStride || blockSize > maxRecordSize || blockSize%fixupStride != 0 {
		return nil, fmt.Errorf("%w: %s: index block size %d is invalid", ErrCorrupt, what, blockSize)
	}
	alloc, err := v.dataStream(ctx, rec, atIndexAlloc, "$I30")
	if err != nil {
		return nil, err
	}
	var inUse []byte
	if bm := rec.findAttr(atBitmap, "$I30"); bm != nil {
		if inUse, err = v.attrValue(ctx, rec, bm, maxIndexBlocks/8, what+": $BITMAP $I30"); err != nil {
			return nil, err
		}
	}
	blocks := alloc.dataSize / blockSize
	if blocks > maxIndexBlocks {
		return nil, fmt.Errorf("%w: %s: %d index blocks, more than %d", ErrUnsupported, what, blocks, maxIndexBlocks)
	}
	buf := make([]byte, blockSize)
	for i := int64(0); i < blocks; i++ {
		if inUse != nil && (i/8 >= int64(len(inUse)) || inUse[i/8]&(1<<(i%8)) == 0) {
			continue
		}
		where := fmt.Sprintf("%s: index block %d", what, i)
		if err := v.readStream(ctx, alloc.runs, i*blockSize, buf, where); err != nil {
			return nil, err
		}
		if string(buf[:4]) != "INDX" {
			return nil, fmt.Errorf("%w: %s: bad magic %q, want \"INDX\"", ErrCorrupt, where, buf[:4])
		}
		if err := applyFixups(buf, where); err != nil {
			return nil, err
		}
		if err := walkIndexEntries(buf[0x18:], where, visit); err != nil {
			return nil, err
		}
	}
	return found, nil
}

// walkIndexEntries visits the entries that follow an index header
// (entries offset, index length, allocated size, flags).
func walkIndexEntries(hdr []byte, where string, visit func(ref uint64, key []byte)) error {
	if len(hdr) < 16 {
		return fmt.Errorf("%w: %s: index header truncated", ErrCorrupt, where)
	}
	first := int(binary.LittleEndian.Uint32(hdr[0:]))
	end := int(binary.LittleEndian.Uint32(hdr[4:]))
	if first < 16 || end > len(hdr) || first > end {
		return fmt.Errorf("%w: %s: entries %d..%d outside the %d-byte index", ErrCorrupt, where, first, end, len(hdr))
	}
	for off := first; off+16 <= end; {
		e := hdr[off:end]
		l := int(binary.LittleEndian.Uint16(e[8:]))
		keyLen := int(binary.LittleEndian.Uint16(e[10:]))
		flags := binary.LittleEndian.Uint16(e[12:])
		if l < 16 || l > len(e) || l%8 != 0 {
			return fmt.Errorf("%w: %s: index entry at %d has length %d", ErrCorrupt, where, off, l)
		}
		if flags&0x02 != 0 { // last entry: no key
			return nil
		}
		if 16+keyLen > l {
			return fmt.Errorf("%w: %s: index entry at %d: key of %d bytes does not fit", ErrCorrupt, where, off, keyLen)
		}
		visit(binary.LittleEndian.Uint64(e), e[16:16+keyLen])
		off += l
	}
	return fmt.Errorf("%w: %s: index has no last entry", ErrCorrupt, where)
}

// rootFile returns the unnamed $DATA stream of root directory entry name
// found in record n, after checking that the record really is that file.
// It returns nil if the file has no non-resident data.
func (v *volume) rootFile(ctx context.Context, n int64, name string) (*stream, error) {
	rec, err := v.readRecord(ctx, n)
	if err != nil {
		return nil, err
	}
	what := fmt.Sprintf("%s (\\%s)", recName(n), name)
	if rec.flags&recordInUse == 0 || rec.flags&recordDirectory != 0 || rec.base >= 0 {
		return nil, fmt.Errorf("%w: %s: root index points to a record that is not an in-use base file record", ErrCorrupt, what)
	}
	names, err := v.attrsOfType(ctx, rec, atFileName)
	if err != nil {
		return nil, err
	}
	ok := false
	for _, a := range names {
		if a.typ != atFileName || a.nonResident || len(a.value) < 0x42 {
			continue
		}
		nameLen := int(a.value[0x40])
		if 0x42+2*nameLen > len(a.value) {
			continue
		}
		parent := binary.LittleEndian.Uint64(a.value) & 0xFFFFFFFFFFFF
		if parent == recRoot && strings.EqualFold(decodeUTF16(a.value[0x42:0x42+2*nameLen]), name) {
			ok = true
		}
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s: record has no $FILE_NAME %q in the root directory", ErrCorrupt, what, name)
	}
	if a := rec.findAttr(atData, ""); a != nil && !a.nonResident {
		return nil, nil
	}
	return v.dataStream(ctx, rec, atData, "")
}

// skipRanges returns the sorted, disjoint cluster ranges whose contents
// opts allow to leave out.
func (v *volume) skipRanges(ctx context.Context, opts Options) ([]clusterRange, error) {
	found, err := v.rootLookup(ctx, pagefileName, hiberfilName)
	if err != nil {
		return nil, err
	}
	var page, hiber *stream
	if n, ok := found[pagefileName]; ok {
		if page, err = v.rootFile(ctx, n, pagefileName); err != nil {
			return nil, err
		}
	}
	if n, ok := found[hiberfilName]; ok {
		if hiber, err = v.rootFile(ctx, n, hiberfilName); err != nil {
			return nil, err
		}
	}
	if hiber != nil {
		resume, err := v.hiberResumePending(ctx, hiber)
		if err != nil {
			return nil, err
		}
		if resume {
			// Windows will resume from hiberfil.sys and needs the page
			// file as it was: copy both.
			return nil, nil
		}
	}
	var skip []clusterRange
	if opts.SkipPagefile && page != nil {
		skip = appendRuns(skip, page.runs, 0)
	}
	if opts.SkipHiberfil && hiber != nil {
		cs := v.bs.clusterSize
		skip = appendRuns(skip, hiber.runs, (hiberHeaderSize+cs-1)/cs)
	}
	sort.Slice(skip, func(i, j int) bool { return skip[i].first < skip[j].first })
	out := skip[:0]
	for _, r := range skip {
		if n := len(out); n > 0 && r.first <= out[n-1].end {
			out[n-1].end = max(out[n-1].end, r.end)
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// appendRuns adds the allocated clusters of runs from VCN fromVCN on.
func appendRuns(dst []clusterRange, runs []run, fromVCN int64) []clusterRange {
	for _, r := range runs {
		if r.lcn < 0 || r.vcn+r.length <= fromVCN {
			continue
		}
		lcn, length := r.lcn, r.length
		if r.vcn < fromVCN {
			lcn += fromVCN - r.vcn
			length -= fromVCN - r.vcn
		}
		dst = append(dst, clusterRange{lcn, lcn + length})
	}
	return dst
}

// hiberResumePending reports whether hiberfil.sys may hold an image
// Windows would resume from: anything but an all-zero or "wake" header.
func (v *volume) hiberResumePending(ctx context.Context, s *stream) (bool, error) {
	if s.flags&(attrCompressed|attrEncrypted) != 0 {
		return true, nil // cannot read the header raw: keep everything
	}
	n := min(int64(hiberHeaderSize), s.dataSize)
	hdr := make([]byte, n)
	if err := v.readStream(ctx, s.runs, 0, hdr, "hiberfil.sys header"); err != nil {
		return false, err
	}
	clearPastInit(hdr, 0, s.initSize)
	if len(hdr) >= 4 && strings.EqualFold(string(hdr[:4]), "wake") {
		return false, nil
	}
	return len(bytes.Trim(hdr, "\x00")) != 0, nil
}
