package clonezilla

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync/atomic"

	"github.com/diskcast/diskcast/core/partclone"
)

// partData is an open partition image: Data hands out its bytes in
// increasing offset order, relative to the partition start.
type partData interface {
	Data(ctx context.Context, fn func(off int64, p []byte) error) error
	Done() int64
}

// opened is an open partition image file.
type opened struct {
	format     string
	deviceSize int64 // bytes of the partition the image was made of; -1 when unknown (raw)
	used       int64 // bytes the image stores; -1 when unknown (raw)
	fs         string
	data       partData
	stream     *partclone.Stream
}

func (o *opened) Close() error { return o.stream.Close() }

// openImage opens the image file (or split pieces) at path and tells its
// format by its first bytes once decompressed: partclone, ntfsclone, or
// anything else as raw (dd) data.
func openImage(path string) (*opened, error) {
	pieces, err := partclone.Pieces(path)
	if err != nil {
		return nil, err
	}
	s, err := partclone.OpenStream(pieces)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(s, 1<<20)
	head, _ := br.Peek(16)
	o := &opened{stream: s, deviceSize: -1, used: -1}
	name := filepath.Base(pieces[0])
	switch {
	case bytes.HasPrefix(head, []byte("partclone-image")):
		r, err := partclone.NewReader(br)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		o.format, o.data = "partclone", r
		o.deviceSize, o.used, o.fs = r.Header.DeviceSize, r.Header.Bytes(), r.Header.FS
	case bytes.HasPrefix(head, []byte(ntfscloneMagic)):
		n, err := NewNtfsclone(br)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		o.format, o.data = "ntfsclone", n
		o.deviceSize, o.used, o.fs = n.Header.DeviceSize, (n.Header.InUse+1)*int64(n.Header.ClusterSize), "ntfs"
	default:
		o.format, o.data = "dd", &rawData{r: br}
	}
	return o, nil
}

// rawData is a dd image: every byte of the partition in order.
type rawData struct {
	r     io.Reader
	limit int64 // partition size; the image must not be longer
	done  atomic.Int64
}

func (d *rawData) Done() int64 { return d.done.Load() }

func (d *rawData) Data(ctx context.Context, fn func(off int64, p []byte) error) error {
	buf := make([]byte, 16<<20)
	var off int64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := io.ReadFull(d.r, buf)
		if n > 0 {
			if d.limit > 0 && off+int64(n) > d.limit {
				return fmt.Errorf("%w: the raw image is longer than the %d-byte partition", ErrOutside, d.limit)
			}
			if ferr := fn(off, buf[:n]); ferr != nil {
				return ferr
			}
			off += int64(n)
			d.done.Add(int64(n))
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("raw image at byte %d: %w", off, err)
		}
	}
}

// countRaw decompresses a raw image once to learn its size.
func countRaw(ctx context.Context, path string) (int64, error) {
	o, err := openImage(path)
	if err != nil {
		return 0, err
	}
	defer o.Close()
	var n int64
	err = o.data.Data(ctx, func(off int64, p []byte) error {
		n = off + int64(len(p))
		return nil
	})
	return n, err
}
