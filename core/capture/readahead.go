package capture

import (
	"context"
	"fmt"
	"sync"

	"github.com/diskcast/diskcast/core/device"
)

// readSize is the size of one read from the source.
const readSize = 4 << 20

// readAhead is the number of reads that may be in flight or waiting.
const readAhead = 4

// readJob is one planned piece of the source: data to read, or a range
// known to be zero (a hole).
type readJob struct {
	off  int64
	n    int
	zero bool
	buf  []byte
	err  error
}

// reader reads planned ranges on its own goroutine and feeds them to the
// Writer on another, so device I/O overlaps zero detection, copying and
// compression instead of alternating with them.
type reader struct {
	src    *device.Device
	w      *Writer
	ctx    context.Context
	cancel context.CancelCauseFunc
	jobs   chan *readJob
	filled chan *readJob
	free   chan []byte
	wg     sync.WaitGroup
}

func newReader(ctx context.Context, src *device.Device, w *Writer) *reader {
	ctx, cancel := context.WithCancelCause(ctx)
	r := &reader{
		src: src, w: w, ctx: ctx, cancel: cancel,
		jobs:   make(chan *readJob, readAhead),
		filled: make(chan *readJob, readAhead),
		free:   make(chan []byte, readAhead),
	}
	for range readAhead {
		r.free <- make([]byte, readSize)
	}
	r.wg.Go(r.read)
	r.wg.Go(r.feed)
	return r
}

func (r *reader) read() {
	defer close(r.filled)
	for j := range r.jobs {
		if !j.zero {
			select {
			case j.buf = <-r.free:
			case <-r.ctx.Done():
				return
			}
			if _, err := r.src.ReadAt(j.buf[:j.n], j.off); err != nil {
				j.err = fmt.Errorf("read source at byte %d: %w", j.off, err)
			}
		}
		select {
		case r.filled <- j:
		case <-r.ctx.Done():
			return
		}
	}
}

func (r *reader) feed() {
	for j := range r.filled {
		err := j.err
		if err == nil && j.zero {
			err = r.w.Zero(j.off, int64(j.n))
		} else if err == nil {
			err = r.w.Write(j.off, j.buf[:j.n])
		}
		if j.buf != nil {
			r.free <- j.buf
		}
		if err != nil {
			r.cancel(err)
			return
		}
	}
}

// add plans a job; it blocks while the read-ahead window is full.
func (r *reader) add(j *readJob) error {
	select {
	case r.jobs <- j:
		return nil
	case <-r.ctx.Done():
		return context.Cause(r.ctx)
	}
}

// zero plans a range known to read as zero.
func (r *reader) zero(off, length int64) error {
	// Zero jobs carry no buffer, so their length is not bounded by readSize.
	for length > 0 {
		n := min(length, 1<<30)
		if err := r.add(&readJob{off: off, n: int(n), zero: true}); err != nil {
			return err
		}
		off, length = off+n, length-n
	}
	return nil
}

// copyRange plans [off, off+length) of the source, skipping holes of
// sparse files without reading them.
func (r *reader) copyRange(off, length int64) error {
	end := off + length
	for pos := off; pos < end; {
		start, stop, err := r.src.NextData(pos, end)
		if err != nil {
			// io.EOF: only a hole remains.
			return r.zero(pos, end-pos)
		}
		if err := r.zero(pos, start-pos); err != nil {
			return err
		}
		for pos = start; pos < stop; {
			n := min(int64(readSize), stop-pos)
			if err := r.add(&readJob{off: pos, n: int(n)}); err != nil {
				return err
			}
			pos += n
		}
	}
	return nil
}

// close waits for every planned job to reach the Writer.
func (r *reader) close() error {
	close(r.jobs)
	r.wg.Wait()
	err := context.Cause(r.ctx)
	r.cancel(nil)
	return err
}
