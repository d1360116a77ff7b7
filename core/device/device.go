// Package device opens the sources and targets diskcast reads and writes:
// block devices and plain files holding a disk or partition image. It knows
// their size and sector size, finds the holes of sparse files, and zeroes
// or discards ranges the fastest way each kind allows.
package device

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Errors returned by this package.
var (
	ErrNotDevice = errors.New("device: not a block device or regular file")
	ErrTooSmall  = errors.New("device: target too small")
)

// Device is an open block device or image file.
type Device struct {
	*os.File
	Path       string
	Size       int64
	SectorSize int
	Block      bool // a block device, not a file
}

// Open opens path for reading, or for reading and writing.
func Open(path string, writable bool) (*Device, error) {
	flag := os.O_RDONLY
	if writable {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	d, err := describe(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	return d, nil
}

// Create opens path as a restore target, creating a file if nothing is
// there. Created reports whether the file is new (and so reads as zeros).
func Create(path string) (d *Device, created bool, err error) {
	// A mistyped device name must not become a multi-gigabyte file in the
	// in-memory /dev.
	if abs, _ := filepath.Abs(path); strings.HasPrefix(abs, "/dev/") {
		if _, err := os.Stat(path); err != nil {
			return nil, false, fmt.Errorf("%s: no such device: %w", path, err)
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrExist) {
		d, err := Open(path, true)
		return d, false, err
	}
	if err != nil {
		return nil, false, err
	}
	d, err = describe(f, path)
	if err != nil {
		f.Close()
		return nil, false, err
	}
	return d, true, nil
}

func describe(f *os.File, path string) (*Device, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	d := &Device{File: f, Path: path, SectorSize: 512}
	switch {
	case st.Mode().IsRegular():
		d.Size = st.Size()
	case st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0:
		d.Block = true
		var size uint64
		if err := ioctl(f, unix.BLKGETSIZE64, unsafe.Pointer(&size)); err != nil {
			return nil, fmt.Errorf("%s: block device size: %w", path, err)
		}
		d.Size = int64(size)
		var ss int32
		if err := ioctl(f, unix.BLKSSZGET, unsafe.Pointer(&ss)); err == nil && ss > 0 {
			d.SectorSize = int(ss)
		}
	default:
		return nil, fmt.Errorf("%s: %w (mode %v)", path, ErrNotDevice, st.Mode())
	}
	return d, nil
}

func ioctl(f *os.File, req uint, arg unsafe.Pointer) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), uintptr(req), uintptr(arg))
	if errno != 0 {
		return errno
	}
	return nil
}

// Grow extends a file target to size bytes (sparse). Block devices cannot
// grow: a smaller one is refused.
func (d *Device) Grow(size int64) error {
	if d.Size >= size {
		return nil
	}
	if d.Block {
		return fmt.Errorf("%w: %s has %d bytes, needs %d", ErrTooSmall, d.Path, d.Size, size)
	}
	if err := d.Truncate(size); err != nil {
		return err
	}
	d.Size = size
	return nil
}

// NextData returns the next range holding data at or after off and before
// end. Holes in sparse files are skipped without reading them; block
// devices and filesystems without SEEK_DATA report everything as data.
// At the end it returns io.EOF.
func (d *Device) NextData(off, end int64) (start, stop int64, err error) {
	if off >= end {
		return 0, 0, io.EOF
	}
	if d.Block {
		return off, end, nil
	}
	fd := int(d.Fd())
	start, err = unix.Seek(fd, off, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		return 0, 0, io.EOF // only a hole remains
	}
	if err != nil {
		return off, end, nil // no SEEK_DATA here: treat all as data
	}
	if start >= end {
		return 0, 0, io.EOF
	}
	stop, err = unix.Seek(fd, start, unix.SEEK_HOLE)
	if err != nil || stop > end {
		stop = end
	}
	return start, stop, nil
}

// ZeroRange makes [off, off+length) read as zero: BLKZEROOUT on block
// devices, a punched hole in files, plain writes where neither works.
func (d *Device) ZeroRange(off, length int64) error {
	if length <= 0 {
		return nil
	}
	if d.Block {
		r := [2]uint64{uint64(off), uint64(length)}
		if ioctl(d.File, unix.BLKZEROOUT, unsafe.Pointer(&r)) == nil {
			return nil
		}
	} else if unix.Fallocate(int(d.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length) == nil {
		return nil
	}
	return d.writeZeros(off, length)
}

// Discard tells the device that [off, off+length) is unused: BLKDISCARD on
// block devices (contents afterwards are device-defined), a punched hole in
// files.
func (d *Device) Discard(off, length int64) error {
	if length <= 0 {
		return nil
	}
	if d.Block {
		r := [2]uint64{uint64(off), uint64(length)}
		if err := ioctl(d.File, unix.BLKDISCARD, unsafe.Pointer(&r)); err != nil {
			return fmt.Errorf("%s: discard %d+%d: %w", d.Path, off, length, err)
		}
		return nil
	}
	return unix.Fallocate(int(d.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length)
}

var zeros = make([]byte, 1<<20)

func (d *Device) writeZeros(off, length int64) error {
	for length > 0 {
		n := min(length, int64(len(zeros)))
		if _, err := d.WriteAt(zeros[:n], off); err != nil {
			return err
		}
		off += n
		length -= n
	}
	return nil
}
