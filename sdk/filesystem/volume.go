package filesystem

import (
	"fmt"
	"io"
	"os"
)

// openVolume opens v's file or device (read-only unless write) and checks
// that the volume fits in it.
func openVolume(v Volume, write bool) (*os.File, *section, error) {
	if v.Path == "" || v.Offset < 0 || v.Size <= 0 {
		return nil, nil, fmt.Errorf("%w: %q offset %d size %d: want a path, offset >= 0 and size > 0", ErrBadVolume, v.Path, v.Offset, v.Size)
	}
	flag := os.O_RDONLY
	if write {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(v.Path, flag, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBadVolume, err)
	}
	// Seek works for block devices, whose Stat size is 0.
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%w: %s: size: %v", ErrBadVolume, v.Path, err)
	}
	if v.Offset > end || v.Size > end-v.Offset {
		f.Close()
		return nil, nil, fmt.Errorf("%w: %s: %d bytes at offset %d extend past its end (%d bytes)", ErrBadVolume, v.Path, v.Size, v.Offset, end)
	}
	return f, &section{f: f, off: v.Offset, size: v.Size}, nil
}

// section is an io.ReaderAt and io.WriterAt over size bytes at off of f.
type section struct {
	f         *os.File
	off, size int64
}

func (s *section) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= s.size {
		return 0, io.EOF
	}
	short := false
	if int64(len(p)) > s.size-off {
		p, short = p[:s.size-off], true
	}
	n, err := s.f.ReadAt(p, s.off+off)
	if err == nil && short {
		err = io.EOF
	}
	return n, err
}

func (s *section) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > s.size {
		return 0, fmt.Errorf("%w: write of %d bytes at %d outside the %d-byte volume", ErrBadVolume, len(p), off, s.size)
	}
	return s.f.WriteAt(p, s.off+off)
}

// checker validates a stream of extents.
type checker struct {
	size, end int64
}

// check reports whether the extent is to be passed on (empty ones are
// dropped) or is wrong.
func (c *checker) check(off, length int64) (bool, error) {
	if length == 0 && off >= c.end && off <= c.size {
		return false, nil
	}
	if off < c.end || length < 0 || off > c.size || length > c.size-off {
		return false, fmt.Errorf("%w: %d+%d (previous ended at %d) out of order or outside the %d-byte volume", ErrBadExtent, off, length, c.end, c.size)
	}
	c.end = off + length
	return true, nil
}
