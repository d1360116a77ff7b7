package ntfs

import (
	"encoding/binary"
	"fmt"
	"io"
)

// serialOffset is where the volume serial number sits in a boot sector.
const serialOffset = 0x48

// SetSerial sets the volume serial number of the NTFS volume on rw (size
// bytes) in the boot sector and, when the backup boot sector after the
// last counted sector holds a copy, in the backup too (Windows and
// ntfs-3g fall back on it). It returns the serial it replaced. Nothing
// else in NTFS records the serial, so the volume stays consistent.
func SetSerial(rw interface {
	io.ReaderAt
	io.WriterAt
}, size int64, serial uint64) (old uint64, err error) {
	sec := make([]byte, 512)
	if err := readSector(rw, sec, 0, "boot sector"); err != nil {
		return 0, err
	}
	b, err := parseBoot(sec, size)
	if err != nil {
		return 0, err
	}
	var buf [8]byte
	binary.LittleEndian.PutUint64(buf[:], serial)
	if _, err := rw.WriteAt(buf[:], serialOffset); err != nil {
		return 0, fmt.Errorf("ntfs: boot sector: write serial: %w", err)
	}
	at := b.backupOffset()
	if at+512 > size {
		return b.serial, nil
	}
	backup := make([]byte, 512)
	if err := readSector(rw, backup, at, "backup boot sector"); err != nil {
		return 0, err
	}
	if string(backup[3:11]) != "NTFS    " {
		// No copy there (a restore by a tool that leaves it out): keep
		// those bytes as they are.
		return b.serial, nil
	}
	if _, err := rw.WriteAt(buf[:], at+serialOffset); err != nil {
		return 0, fmt.Errorf("ntfs: backup boot sector at byte %d: write serial: %w", at, err)
	}
	return b.serial, nil
}

func readSector(r io.ReaderAt, buf []byte, off int64, what string) error {
	if n, err := r.ReadAt(buf, off); n < len(buf) {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return fmt.Errorf("%w: %s at byte %d: past the end of the device", ErrTruncated, what, off)
		}
		return fmt.Errorf("ntfs: read %s at byte %d: %w", what, off, err)
	}
	return nil
}
