package fat

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	"math/bits"
	"slices"
)

const (
	exfatBootRegionSectors = 12 // main boot region; the backup follows it
	exfatMaxClusters       = 0xFFFFFFF5
	exfatMaxDirBytes       = 256 << 20 // a directory is at most 256 MiB
	exfatEOC               = 0xFFFFFFFF
	exfatBad               = 0xFFFFFFF7
	dirChunk               = 64 << 10 // directory reads, whatever the cluster size
)

// exfatVolume is a validated exFAT boot sector plus what the root
// directory says. Sizes are in sectors unless the name says bytes.
type exfatVolume struct {
	bps         int64
	clusterSize int64
	volSecs     int64
	fatOffset   int64
	fatLength   int64
	numFATs     int64
	heapOffset  int64
	clusters    uint32 // valid cluster numbers are 2..clusters+1
	rootCluster uint32
	serial      uint32
	activeFAT   int64
	notes       []string
	root        *exfatRoot // filled by scan
}

// exfatRoot is what the root directory holds for us.
type exfatRoot struct {
	chain   []uint32 // root directory clusters in chain order
	bitmaps [2]clusterRange
	upcase  clusterRange
	label   string
}

type clusterRange struct {
	first  uint32
	length uint64 // bytes
	ok     bool
}

type extent struct{ off, length int64 }

func openExFAT(r io.ReaderAt, size int64, b []byte) (*exfatVolume, error) {
	for i := 11; i < 64; i++ {
		if b[i] != 0 {
			return nil, corruptf("exfat boot sector: byte %d of the MustBeZero field (11..63) is 0x%02X", i, b[i])
		}
	}
	bpsShift, spcShift := uint(b[108]), uint(b[109])
	if bpsShift < 9 || bpsShift > 12 {
		return nil, corruptf("exfat boot sector: bytes per sector shift %d is outside 9..12", bpsShift)
	}
	if spcShift > 25-bpsShift {
		return nil, corruptf("exfat boot sector: sectors per cluster shift %d makes clusters larger than 32 MiB (at most %d with %d-byte sectors)",
			spcShift, 25-bpsShift, 1<<bpsShift)
	}
	v := &exfatVolume{
		bps:         1 << bpsShift,
		clusterSize: 1 << (bpsShift + spcShift),
		numFATs:     int64(b[110]),
		fatOffset:   int64(le32(b[80:])),
		fatLength:   int64(le32(b[84:])),
		heapOffset:  int64(le32(b[88:])),
		clusters:    le32(b[92:]),
		rootCluster: le32(b[96:]),
		serial:      le32(b[100:]),
	}
	volSecs := le64(b[72:])
	if v.numFATs != 1 && v.numFATs != 2 {
		return nil, corruptf("exfat boot sector: number of FATs %d is not 1 or 2", v.numFATs)
	}
	if volSecs > math.MaxInt64>>bpsShift {
		return nil, corruptf("exfat boot sector: volume length %d sectors is impossibly large", volSecs)
	}
	v.volSecs = int64(volSecs)
	if v.fatOffset < 2*exfatBootRegionSectors {
		return nil, corruptf("exfat boot sector: FAT offset %d overlaps the boot regions (sectors 0..23)", v.fatOffset)
	}
	if v.fatLength == 0 {
		return nil, corruptf("exfat boot sector: FAT length is 0")
	}
	if end := v.fatOffset + v.numFATs*v.fatLength; end > v.heapOffset {
		return nil, corruptf("exfat boot sector: %d FATs of %d sectors from sector %d end at %d, past the cluster heap offset %d",
			v.numFATs, v.fatLength, v.fatOffset, end, v.heapOffset)
	}
	if v.clusters == 0 || v.clusters > exfatMaxClusters {
		return nil, corruptf("exfat boot sector: cluster count %d is outside 1..%d", v.clusters, uint32(exfatMaxClusters))
	}
	if end := v.heapOffset + int64(v.clusters)<<spcShift; end > v.volSecs {
		return nil, corruptf("exfat boot sector: cluster heap of %d clusters from sector %d ends at sector %d, past the volume length %d",
			v.clusters, v.heapOffset, end, v.volSecs)
	}
	if need := (int64(v.clusters) + 2) * 4; v.fatLength*v.bps < need {
		return nil, corruptf("exfat boot sector: FAT of %d sectors is smaller than the %d bytes that %d clusters need", v.fatLength, need, v.clusters)
	}
	if v.rootCluster < 2 || uint64(v.rootCluster) > uint64(v.clusters)+1 {
		return nil, corruptf("exfat boot sector: root directory cluster %d is outside clusters 2..%d", v.rootCluster, uint64(v.clusters)+1)
	}
	if fsBytes := v.volSecs * v.bps; fsBytes > size {
		return nil, truncatedf("exfat boot sector: volume is %d bytes (%d sectors of %d) but the device has only %d bytes", fsBytes, v.volSecs, v.bps, size)
	}
	flags := le16(b[106:])
	v.activeFAT = int64(flags & 1)
	if v.activeFAT >= v.numFATs {
		return nil, corruptf("exfat boot sector: VolumeFlags 0x%04X selects the second FAT, but there is only one", flags)
	}
	if flags&2 != 0 {
		v.notes = append(v.notes, "volume dirty flag set: not cleanly unmounted; consider fsck.exfat before capture")
	}
	if flags&4 != 0 {
		v.notes = append(v.notes, "media failure flag set: the volume has reported bad sectors")
	}
	if rev := le16(b[104:]); rev>>8 != 1 {
		v.notes = append(v.notes, fmt.Sprintf("file system revision %d.%02d is not 1.x", rev>>8, rev&0xFF))
	}
	if b[510] != 0x55 || b[511] != 0xAA {
		v.notes = append(v.notes, "boot sector signature 0x55AA is missing")
	}
	if err := v.checkBootChecksum(r); err != nil {
		return nil, err
	}
	return v, nil
}

// checkBootChecksum verifies sector 11 of the main boot region: the
// checksum of sectors 0..10, leaving out VolumeFlags and PercentInUse,
// repeated to fill the sector.
func (v *exfatVolume) checkBootChecksum(r io.ReaderAt) error {
	buf := make([]byte, exfatBootRegionSectors*v.bps)
	if err := readFull(r, buf, 0, "exfat main boot region"); err != nil {
		return err
	}
	var sum uint32
	for i, c := range buf[:11*v.bps] {
		if i == 106 || i == 107 || i == 112 {
			continue
		}
		sum = bits.RotateLeft32(sum, -1) + uint32(c)
	}
	stored := buf[11*v.bps:]
	for i := 0; i < len(stored); i += 4 {
		if got := le32(stored[i:]); got != sum {
			return corruptf("exfat boot region: checksum 0x%08X at byte %d of sector 11 does not match 0x%08X computed over sectors 0..10", got, i, sum)
		}
	}
	return nil
}

func (v *exfatVolume) clusterOffset(c uint32) int64 {
	return v.heapOffset*v.bps + int64(c-2)*v.clusterSize
}

func (v *exfatVolume) lastCluster() uint32 { return v.clusters + 1 }

// fatEntry reads the active-FAT entry of cluster c.
func (v *exfatVolume) fatEntry(r io.ReaderAt, c uint32) (uint32, error) {
	var b [4]byte
	off := (v.fatOffset+v.activeFAT*v.fatLength)*v.bps + int64(c)*4
	if err := readFull(r, b[:], off, fmt.Sprintf("exfat FAT entry of cluster %d", c)); err != nil {
		return 0, err
	}
	return le32(b[:]), nil
}

// readRoot follows the root directory chain and collects the allocation
// bitmap, up-case table and label entries.
func (v *exfatVolume) readRoot(ctx context.Context, r io.ReaderAt) (*exfatRoot, error) {
	root := &exfatRoot{}
	maxLen := max(exfatMaxDirBytes/v.clusterSize, 1)
	buf := make([]byte, min(v.clusterSize, dirChunk))
	ended := false
	for c := v.rootCluster; ; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		root.chain = append(root.chain, c)
		if int64(len(root.chain)) > maxLen || len(root.chain) > int(v.clusters) {
			return nil, corruptf("exfat root directory: cluster chain from %d is longer than %d clusters (a loop?)", v.rootCluster, min(maxLen, int64(v.clusters)))
		}
		for off := int64(0); !ended && off < v.clusterSize; off += int64(len(buf)) {
			if err := readFull(r, buf, v.clusterOffset(c)+off, fmt.Sprintf("exfat root directory cluster %d", c)); err != nil {
				return nil, err
			}
			ended = root.parse(buf)
		}
		next, err := v.fatEntry(r, c)
		if err != nil {
			return nil, err
		}
		if next == exfatEOC {
			break
		}
		if next < 2 || next > v.lastCluster() {
			return nil, corruptf("exfat root directory: FAT entry of cluster %d is 0x%08X, not end of chain or a cluster number 2..%d",
				c, next, v.lastCluster())
		}
		c = next
	}
	return root, nil
}

// parse reads directory entries from buf and reports whether it met the
// end-of-directory marker.
func (root *exfatRoot) parse(buf []byte) bool {
	for i := 0; i+32 <= len(buf); i += 32 {
		e := buf[i : i+32]
		switch e[0] {
		case 0x00:
			return true
		case 0x81: // allocation bitmap; bit 0 of BitmapFlags picks the FAT it goes with
			root.bitmaps[e[1]&1] = clusterRange{first: le32(e[20:]), length: le64(e[24:]), ok: true}
		case 0x82:
			root.upcase = clusterRange{first: le32(e[20:]), length: le64(e[24:]), ok: true}
		case 0x83:
			n := min(int(e[1]), 11)
			root.label = decodeUTF16Label(e[2 : 2+2*n])
		}
	}
	return false
}

// rangeExtent checks that a contiguous structure lies in the cluster heap
// and returns its clusters as a byte extent.
func (v *exfatVolume) rangeExtent(cr clusterRange, what string) (extent, error) {
	if cr.length == 0 {
		return extent{}, corruptf("exfat %s: length is 0", what)
	}
	cs := uint64(v.clusterSize)
	n := cr.length / cs // rounded up below; adding first could overflow
	if cr.length%cs != 0 {
		n++
	}
	if cr.first < 2 || uint64(cr.first)+n-1 > uint64(v.lastCluster()) {
		return extent{}, corruptf("exfat %s: %d bytes from cluster %d do not fit in clusters 2..%d", what, cr.length, cr.first, v.lastCluster())
	}
	return extent{v.clusterOffset(cr.first), int64(n) * v.clusterSize}, nil
}

// staticExtents lists the metadata that UsedExtents always copies, sorted.
func (v *exfatVolume) staticExtents() ([]extent, error) {
	root := v.root
	ext := []extent{
		{0, 2 * exfatBootRegionSectors * v.bps},
		{v.fatOffset * v.bps, v.numFATs * v.fatLength * v.bps},
	}
	for i, bm := range root.bitmaps {
		if !bm.ok {
			continue
		}
		e, err := v.rangeExtent(bm, fmt.Sprintf("allocation bitmap %d", i))
		if err != nil {
			return nil, err
		}
		ext = append(ext, e)
	}
	if root.upcase.ok {
		e, err := v.rangeExtent(root.upcase, "up-case table")
		if err != nil {
			return nil, err
		}
		ext = append(ext, e)
	}
	for _, c := range root.chain {
		ext = append(ext, extent{v.clusterOffset(c), v.clusterSize})
	}
	slices.SortFunc(ext, func(a, b extent) int { return cmp.Compare(a.off, b.off) })
	return ext, nil
}

// scan reads the root directory, then the active allocation bitmap in
// large blocks, and emits metadata and set-bit clusters in order.
func (v *exfatVolume) scan(ctx context.Context, r io.ReaderAt, m *merger) (scanResult, error) {
	root, err := v.readRoot(ctx, r)
	if err != nil {
		return scanResult{}, err
	}
	v.root = root
	bm := root.bitmaps[v.activeFAT]
	if !bm.ok {
		return scanResult{}, corruptf("exfat root directory: no allocation bitmap entry for FAT %d", v.activeFAT)
	}
	nbytes := (int64(v.clusters) + 7) / 8
	if bm.length < uint64(nbytes) {
		return scanResult{}, corruptf("exfat allocation bitmap %d: %d bytes cannot hold %d clusters (%d bytes needed)", v.activeFAT, bm.length, v.clusters, nbytes)
	}
	static, err := v.staticExtents()
	if err != nil {
		return scanResult{}, err
	}
	si := 0
	// addStatic emits the metadata extents that start at or before off, so
	// the merger sees starts in order.
	addStatic := func(off int64) error {
		for ; si < len(static) && static[si].off <= off; si++ {
			if err := m.add(static[si].off, static[si].length); err != nil {
				return err
			}
		}
		return nil
	}
	var used uint64
	addRun := func(from, to uint64) error { // bit indexes; bit k is cluster k+2
		off := v.clusterOffset(uint32(from) + 2)
		if err := addStatic(off); err != nil {
			return err
		}
		return m.add(off, int64(to-from)*v.clusterSize)
	}

	total := uint64(v.clusters)
	bmOff := v.clusterOffset(bm.first)
	block := blockPool.Get().(*[readBlock]byte) // a multiple of 8 bytes
	defer blockPool.Put(block)
	inRun := false
	var runStart uint64
	for off := int64(0); off < nbytes; off += readBlock {
		if err := ctx.Err(); err != nil {
			return scanResult{}, err
		}
		n := min(nbytes-off, readBlock)
		b := block[:(n+7)&^7]
		if err := readFull(r, b[:n], bmOff+off, fmt.Sprintf("exfat allocation bitmap %d", v.activeFAT)); err != nil {
			return scanResult{}, err
		}
		clear(b[n:])
		for i := 0; i < len(b); i += 8 {
			w := le64(b[i:])
			bit0 := uint64(off+int64(i)) * 8
			if bit0+64 > total { // bits past the last cluster mean nothing
				if bit0 >= total {
					w = 0
				} else {
					w &= 1<<(total-bit0) - 1
				}
			}
			used += uint64(bits.OnesCount64(w))
			if (!inRun && w == 0) || (inRun && w == math.MaxUint64) {
				continue
			}
			for p := uint(0); p < 64; {
				if inRun {
					x := ^w >> p
					if x == 0 {
						break
					}
					p += uint(bits.TrailingZeros64(x))
					if err := addRun(runStart, bit0+uint64(p)); err != nil {
						return scanResult{}, err
					}
					inRun = false
				} else {
					x := w >> p
					if x == 0 {
						break
					}
					p += uint(bits.TrailingZeros64(x))
					runStart, inRun = bit0+uint64(p), true
				}
			}
		}
	}
	if inRun {
		if err := addRun(runStart, total); err != nil {
			return scanResult{}, err
		}
	}
	if err := addStatic(math.MaxInt64); err != nil {
		return scanResult{}, err
	}
	return scanResult{used: used}, nil
}

func (v *exfatVolume) describe(_ context.Context, _ io.ReaderAt, res scanResult) (*Info, error) {
	info := &Info{
		FSType:     "exfat",
		BlockSize:  v.clusterSize,
		Blocks:     uint64(v.clusters),
		UsedBlocks: res.used,
		UUID:       serialString(v.serial),
		Notes:      append([]string(nil), v.notes...),
	}
	if v.root != nil {
		info.Label = v.root.label
		if !v.root.upcase.ok {
			info.Notes = append(info.Notes, "root directory has no up-case table entry")
		}
	}
	return info, nil
}
