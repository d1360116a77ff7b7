package fat

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
)

// Where the volume serial number (volume ID) sits in a boot sector.
const (
	fat16SerialOffset = 39  // BS_VolID, FAT12/16 (extended boot signature at 38)
	fat32SerialOffset = 67  // BS_VolID, FAT32 (extended boot signature at 66)
	fat32BackupField  = 50  // BPB_BkBootSec: sector of the backup boot sector
	exfatSerialOffset = 100 // VolumeSerialNumber
)

// SetSerial sets the volume serial number of the FAT12/16/32 or exFAT
// filesystem on rw (size bytes) and returns the one it replaced. FAT32's
// backup boot sector is updated too; on exFAT the boot region checksum
// is recomputed and the backup boot region rewritten as a copy of the
// main one, so fsck.fat and fsck.exfat find them consistent.
func SetSerial(ctx context.Context, rw interface {
	io.ReaderAt
	io.WriterAt
}, size int64, serial uint32) (old uint32, err error) {
	v, err := open(ctx, rw, size)
	if err != nil {
		return 0, err
	}
	switch v := v.(type) {
	case *fatVolume:
		return v.setSerial(rw, serial)
	case *exfatVolume:
		return v.setSerial(rw, serial)
	}
	return 0, fmt.Errorf("fat: set serial: unknown volume type %T", v)
}

func (v *fatVolume) setSerial(rw interface {
	io.ReaderAt
	io.WriterAt
}, serial uint32) (uint32, error) {
	if !v.hasSerial {
		return 0, fmt.Errorf("fat: boot sector has no extended boot signature (0x29), so no volume serial number to change")
	}
	at := int64(fat16SerialOffset)
	if v.bits == 32 {
		at = fat32SerialOffset
	}
	var buf [4]byte
	binary.LittleEndian.PutUint32(buf[:], serial)
	if _, err := rw.WriteAt(buf[:], at); err != nil {
		return 0, fmt.Errorf("fat: boot sector: write serial: %w", err)
	}
	if v.bits != 32 {
		return v.serial, nil
	}
	boot := make([]byte, bootSectorSize)
	if err := readFull(rw, boot, 0, "boot sector"); err != nil {
		return 0, err
	}
	bk := int64(le16(boot[fat32BackupField:]))
	if bk == 0 || bk == 0xFFFF || bk >= v.reservedSecs {
		return v.serial, nil // no backup boot sector
	}
	backup := make([]byte, bootSectorSize)
	if err := readFull(rw, backup, bk*v.bps, "backup boot sector"); err != nil {
		return 0, err
	}
	// Only a copy of the boot sector is updated; other bytes stay as they are.
	if !bytes.Equal(backup[3:11], boot[3:11]) || string(backup[82:90]) != "FAT32   " {
		return v.serial, nil
	}
	if _, err := rw.WriteAt(buf[:], bk*v.bps+fat32SerialOffset); err != nil {
		return 0, fmt.Errorf("fat: backup boot sector %d: write serial: %w", bk, err)
	}
	return v.serial, nil
}

func (v *exfatVolume) setSerial(rw interface {
	io.ReaderAt
	io.WriterAt
}, serial uint32) (uint32, error) {
	n := exfatBootRegionSectors * v.bps
	region := make([]byte, n)
	if err := readFull(rw, region, 0, "exfat main boot region"); err != nil {
		return 0, err
	}
	old := le32(region[exfatSerialOffset:])
	binary.LittleEndian.PutUint32(region[exfatSerialOffset:], serial)
	var sum uint32
	for i, c := range region[:11*v.bps] {
		if i == 106 || i == 107 || i == 112 { // VolumeFlags, PercentInUse
			continue
		}
		sum = bits.RotateLeft32(sum, -1) + uint32(c)
	}
	for i := 11 * v.bps; i < n; i += 4 {
		binary.LittleEndian.PutUint32(region[i:], sum)
	}
	if _, err := rw.WriteAt(region, 0); err != nil {
		return 0, fmt.Errorf("fat: exfat main boot region: write: %w", err)
	}
	if _, err := rw.WriteAt(region, n); err != nil {
		return 0, fmt.Errorf("fat: exfat backup boot region: write: %w", err)
	}
	return old, nil
}
