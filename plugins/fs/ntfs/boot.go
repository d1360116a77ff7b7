package ntfs

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
)

// Boot sector layout (little endian), as far as this package needs it:
//
//	0x03  8  OEM ID "NTFS    "
//	0x0B  2  bytes per sector
//	0x0D  1  sectors per cluster (values > 0x80: 2^(256-v))
//	0x28  8  total sectors (the backup boot sector is not counted)
//	0x30  8  LCN of $MFT
//	0x38  8  LCN of $MFTMirr
//	0x40  1  clusters per MFT record (signed; negative n: 2^-n bytes)
//	0x44  1  clusters per index block (same encoding)
//	0x48  8  volume serial number
//	0x1FE 2  0x55 0xAA
type bootSector struct {
	sectorSize     int64
	clusterSize    int64
	totalSectors   int64
	clusters       int64
	mftLCN         int64
	mftMirrLCN     int64
	recordSize     int64
	indexBlockSize int64
	serial         uint64
}

// backupOffset is where the backup boot sector sits: the sector after the
// last one the BPB counts.
func (b *bootSector) backupOffset() int64 { return b.totalSectors * b.sectorSize }

const (
	maxClusterSize = 2 << 20 // Windows 10 allows up to 2 MiB clusters
	maxRecordSize  = 64 << 10
)

func parseBoot(sec []byte, size int64) (*bootSector, error) {
	if len(sec) < 512 || string(sec[3:11]) != "NTFS    " {
		return nil, fmt.Errorf("%w: no \"NTFS    \" OEM ID in sector 0", ErrNotFound)
	}
	if sec[510] != 0x55 || sec[511] != 0xAA {
		return nil, fmt.Errorf("%w: boot sector: end marker is %02x%02x, want 55aa", ErrCorrupt, sec[510], sec[511])
	}
	b := &bootSector{}
	bps := int64(binary.LittleEndian.Uint16(sec[0x0B:]))
	if bps < 256 || bps > 4096 || bits.OnesCount64(uint64(bps)) != 1 {
		return nil, fmt.Errorf("%w: boot sector: bytes per sector %d is not a power of two in 256..4096", ErrCorrupt, bps)
	}
	b.sectorSize = bps
	spcRaw := sec[0x0D]
	var spc int64
	switch {
	case spcRaw == 0:
		return nil, fmt.Errorf("%w: boot sector: sectors per cluster is 0", ErrCorrupt)
	case spcRaw <= 0x80:
		spc = int64(spcRaw)
		if bits.OnesCount64(uint64(spc)) != 1 {
			return nil, fmt.Errorf("%w: boot sector: sectors per cluster %d is not a power of two", ErrCorrupt, spc)
		}
	default:
		shift := 256 - int(spcRaw)
		if shift > 20 {
			return nil, fmt.Errorf("%w: boot sector: sectors per cluster 2^%d is too large", ErrCorrupt, shift)
		}
		spc = 1 << shift
	}
	b.clusterSize = spc * bps
	if b.clusterSize > maxClusterSize {
		return nil, fmt.Errorf("%w: boot sector: cluster size %d is larger than %d", ErrCorrupt, b.clusterSize, maxClusterSize)
	}
	total := binary.LittleEndian.Uint64(sec[0x28:])
	if total == 0 || total > uint64(1<<62)/uint64(bps) {
		return nil, fmt.Errorf("%w: boot sector: total sectors %d is out of range", ErrCorrupt, total)
	}
	b.totalSectors = int64(total)
	b.clusters = b.totalSectors / spc
	if b.clusters == 0 {
		return nil, fmt.Errorf("%w: boot sector: volume of %d sectors holds no whole cluster", ErrCorrupt, total)
	}
	if volBytes := b.clusters * b.clusterSize; volBytes > size {
		return nil, fmt.Errorf("%w: volume is %d bytes (%d clusters of %d) but the device has %d bytes",
			ErrTruncated, volBytes, b.clusters, b.clusterSize, size)
	}
	mft := binary.LittleEndian.Uint64(sec[0x30:])
	if mft == 0 || mft >= uint64(b.clusters) {
		return nil, fmt.Errorf("%w: boot sector: $MFT cluster %d is outside the volume (%d clusters)", ErrCorrupt, mft, b.clusters)
	}
	b.mftLCN = int64(mft)
	mirr := binary.LittleEndian.Uint64(sec[0x38:])
	if mirr >= uint64(b.clusters) {
		return nil, fmt.Errorf("%w: boot sector: $MFTMirr cluster %d is outside the volume (%d clusters)", ErrCorrupt, mirr, b.clusters)
	}
	b.mftMirrLCN = int64(mirr)
	var err error
	if b.recordSize, err = decodeSizeField(int8(sec[0x40]), b.clusterSize); err != nil {
		return nil, fmt.Errorf("%w: boot sector: MFT record size: %v", ErrCorrupt, err)
	}
	if b.recordSize < 512 || b.recordSize > maxRecordSize {
		return nil, fmt.Errorf("%w: boot sector: MFT record size %d is outside 512..%d", ErrCorrupt, b.recordSize, maxRecordSize)
	}
	if b.indexBlockSize, err = decodeSizeField(int8(sec[0x44]), b.clusterSize); err != nil {
		return nil, fmt.Errorf("%w: boot sector: index block size: %v", ErrCorrupt, err)
	}
	b.serial = binary.LittleEndian.Uint64(sec[0x48:])
	return b, nil
}

// decodeSizeField decodes the "clusters per record" encoding: positive
// values count clusters, negative values n mean 2^-n bytes.
func decodeSizeField(v int8, clusterSize int64) (int64, error) {
	switch {
	case v == 0:
		return 0, fmt.Errorf("size field is 0")
	case v > 0:
		return int64(v) * clusterSize, nil
	case v < -31:
		return 0, fmt.Errorf("size 2^%d is too large", -int(v))
	default:
		return 1 << uint(-v), nil
	}
}

// volume is an opened NTFS volume: boot sector plus the $MFT runlist.
type volume struct {
	r       io.ReaderAt
	size    int64
	bs      *bootSector
	mftRuns []run
	mftSize int64 // bytes in $MFT's $DATA
}

func open(ctx context.Context, r io.ReaderAt, size int64) (*volume, error) {
	if size < 512 {
		return nil, fmt.Errorf("%w: device has only %d bytes", ErrNotFound, size)
	}
	sec := make([]byte, 512)
	if _, err := r.ReadAt(sec, 0); err != nil {
		return nil, fmt.Errorf("ntfs: read boot sector: %w", err)
	}
	bs, err := parseBoot(sec, size)
	if err != nil {
		return nil, err
	}
	v := &volume{r: r, size: size, bs: bs}
	if err := v.loadMFT(ctx); err != nil {
		return nil, err
	}
	return v, nil
}

// readAt reads len(buf) bytes at off, refusing reads past the device end.
func (v *volume) readAt(buf []byte, off int64, what string) error {
	if off < 0 || off > v.size || int64(len(buf)) > v.size-off {
		return fmt.Errorf("%w: %s: %d bytes at offset %d lie past the end of the device (%d bytes)",
			ErrTruncated, what, len(buf), off, v.size)
	}
	if _, err := v.r.ReadAt(buf, off); err != nil {
		return fmt.Errorf("ntfs: %s: read %d bytes at offset %d: %w", what, len(buf), off, err)
	}
	return nil
}

// tailNotes describes the backup boot sector for Info.Notes.
func (v *volume) tailNotes() []string {
	off := v.bs.backupOffset()
	var notes []string
	if off+v.bs.sectorSize > v.size {
		return append(notes, fmt.Sprintf("no room for the backup boot sector: it belongs at byte %d but the device has %d bytes", off, v.size))
	}
	notes = append(notes, fmt.Sprintf("backup boot sector at byte %d", off))
	sec := make([]byte, 512)
	if err := v.readAt(sec, off, "backup boot sector"); err == nil {
		if string(sec[3:11]) != "NTFS    " || sec[510] != 0x55 || sec[511] != 0xAA {
			notes = append(notes, "backup boot sector is not a valid NTFS boot sector (chkdsk would rewrite it)")
		}
	}
	if extra := v.size - off - v.bs.sectorSize; extra > 0 {
		notes = append(notes, fmt.Sprintf("device has %d bytes after the backup boot sector", extra))
	}
	return notes
}
