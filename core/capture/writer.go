package capture

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/diskcast/diskcast/core/image"
)

// Options tune how data becomes chunks.
type Options struct {
	Codec     image.Codec
	Level     int
	ChunkSize int // target stored bytes per chunk
	Workers   int // compression goroutines
	// NoX86Filter stores zstd chunks that hold machine code as plain zstd
	// instead of zstd+x86 (image.CodecZstdX86).
	NoX86Filter bool
}

// Defaults for Options fields left zero.
const (
	DefaultChunkSize = 1 << 20
	// blockSize is the granularity of zero detection: all-zero blocks of
	// this size are recorded as zero extents instead of being stored.
	blockSize = 4096
	// ratioLag is how many chunks behind the ratio estimate runs. It is
	// fixed (not derived from the worker count, which would make images
	// depend on the machine) and larger than the chunks in flight.
	ratioLag = 64
	// maxRawFactor bounds how much raw data one chunk may hold relative to
	// its target stored size, so highly compressible data does not make
	// chunks that cost restore workers huge buffers.
	maxRawFactor = 8
)

func (o Options) withDefaults() Options {
	if o.ChunkSize <= 0 {
		o.ChunkSize = DefaultChunkSize
	}
	if o.Workers <= 0 {
		o.Workers = runtime.NumCPU()
	}
	if o.Level == 0 {
		o.Level = image.DefaultLevel
	}
	return o
}

// Stats counts what a Writer has taken in and put out.
type Stats struct {
	Position    int64 // device offset reached
	InBytes     int64 // bytes given to Write and Zero
	DataBytes   int64 // non-zero bytes taken for chunks
	ZeroBytes   int64 // bytes recorded as zero extents
	StoredBytes int64 // payload bytes written
	Chunks      int64
}

// batch is one chunk on its way through the pipeline.
type batch struct {
	seq     int
	limit   int // raw bytes this chunk may hold
	raw     []byte
	runs    []image.Run
	payload []byte
	codec   image.Codec
	sum     [32]byte
}

// Writer turns device data, given in increasing offset order, into image
// chunks: it skips all-zero blocks, cuts the rest into chunks of about the
// target size, compresses and hashes them on all cores, and hands them to
// the image writer in order. Reading (the caller), compressing and writing
// overlap.
type Writer struct {
	img  *image.Writer
	opts Options

	cur     *batch
	nextSeq int
	end     int64 // end of the last Write or Zero, to enforce ordering
	zeros   []image.Run

	// The raw size of chunk n follows the compression ratio of chunks up
	// to n-lag, which are always written by the time chunk n starts; so
	// chunking, and the image, do not depend on timing.
	mu        sync.Mutex
	written   *sync.Cond
	ratios    []float64 // stored/raw of each written chunk, by sequence
	ewma      float64
	folded    int // ratios folded into ewma
	lag       int
	jobs      chan *batch
	done      chan *batch
	pool      sync.Pool
	workers   sync.WaitGroup
	collector chan struct{}

	ctx    context.Context
	cancel context.CancelCauseFunc

	pos, in, data, zero, stored, chunks atomic.Int64
}

// NewWriter starts the compression workers. Call Close to finish, or
// cancel ctx to abandon.
func NewWriter(ctx context.Context, img *image.Writer, opts Options) (*Writer, error) {
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancelCause(ctx)
	w := &Writer{
		img:       img,
		opts:      opts,
		jobs:      make(chan *batch, opts.Workers),
		done:      make(chan *batch, opts.Workers),
		collector: make(chan struct{}),
		ctx:       ctx,
		cancel:    cancel,
	}
	w.written = sync.NewCond(&w.mu)
	w.ewma = 0.5 // assume 2:1 until chunks say otherwise
	w.lag = ratioLag
	context.AfterFunc(ctx, func() {
		w.mu.Lock()
		w.written.Broadcast()
		w.mu.Unlock()
	})
	encoders := make([]*image.Encoder, opts.Workers)
	for i := range encoders {
		e, err := image.NewEncoder(opts.Codec, opts.Level)
		if err != nil {
			cancel(err)
			return nil, err
		}
		if opts.NoX86Filter {
			e.WithoutX86Filter()
		}
		encoders[i] = e
	}
	for _, e := range encoders {
		w.workers.Add(1)
		go w.compress(e)
	}
	go w.collect()
	return w, nil
}

// Stats returns the counters so far; safe to call from any goroutine.
func (w *Writer) Stats() Stats {
	return Stats{
		Position: w.pos.Load(), InBytes: w.in.Load(), DataBytes: w.data.Load(), ZeroBytes: w.zero.Load(),
		StoredBytes: w.stored.Load(), Chunks: w.chunks.Load(),
	}
}

func (w *Writer) newBatch() (*batch, error) {
	limit, err := w.nextLimit(w.nextSeq)
	if err != nil {
		return nil, err
	}
	b, ok := w.pool.Get().(*batch)
	if ok {
		b.raw, b.runs, b.payload = b.raw[:0], b.runs[:0], b.payload[:0]
	} else {
		// Full-size buffers up front: growing them shows up in profiles.
		maxRaw := w.maxRaw()
		b = &batch{raw: make([]byte, 0, maxRaw), payload: make([]byte, 0, maxRaw+maxRaw/64+1024)}
	}
	b.seq, b.limit = w.nextSeq, limit
	w.nextSeq++
	return b, nil
}

func (w *Writer) maxRaw() int { return min(maxRawFactor*w.opts.ChunkSize, image.MaxRawChunk) }

// nextLimit returns the raw size of chunk seq: the target stored size
// divided by the compression ratio of the chunks before seq-lag, waiting
// for those to be written.
func (w *Writer) nextLimit(seq int) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.folded <= seq-w.lag {
		for len(w.ratios) <= w.folded {
			if err := context.Cause(w.ctx); err != nil {
				return 0, err
			}
			w.written.Wait()
		}
		w.ewma = 0.7*w.ewma + 0.3*w.ratios[w.folded]
		w.folded++
	}
	target := float64(w.opts.ChunkSize) / math.Max(w.ewma, 1e-3)
	target = math.Min(math.Max(target, float64(w.opts.ChunkSize)), float64(w.maxRaw()))
	return int(target) &^ (blockSize - 1), nil
}

var zeroBlock = make([]byte, blockSize)

// Write adds device data p found at offset off. Offsets must increase from
// call to call. All-zero blocks become zero extents.
func (w *Writer) Write(off int64, p []byte) error {
	if err := w.check(off); err != nil {
		return err
	}
	w.in.Add(int64(len(p)))
	w.end = off + int64(len(p))
	w.pos.Store(w.end)
	for len(p) > 0 {
		// Blocks are aligned to device offsets, so the first may be short.
		n := blockSize - int(off%blockSize)
		n = min(n, len(p))
		if bytes.Equal(p[:n], zeroBlock[:n]) {
			w.addZero(off, int64(n))
			off, p = off+int64(n), p[n:]
			continue
		}
		// Extend over following non-zero blocks and copy them at once.
		for n < len(p) {
			m := min(blockSize, len(p)-n)
			if bytes.Equal(p[n:n+m], zeroBlock[:m]) {
				break
			}
			n += m
		}
		if err := w.addData(off, p[:n]); err != nil {
			return err
		}
		off, p = off+int64(n), p[n:]
	}
	return nil
}

// Zero records that [off, off+length) reads as zero without reading it
// (a hole in a sparse source).
func (w *Writer) Zero(off, length int64) error {
	if err := w.check(off); err != nil {
		return err
	}
	w.in.Add(length)
	w.end = off + length
	w.pos.Store(w.end)
	w.addZero(off, length)
	return nil
}

func (w *Writer) check(off int64) error {
	if err := context.Cause(w.ctx); err != nil {
		return err
	}
	if off < w.end {
		return fmt.Errorf("%w: data at %d after data ending at %d", image.ErrOrder, off, w.end)
	}
	return nil
}

func (w *Writer) addZero(off, length int64) {
	w.zero.Add(length)
	if n := len(w.zeros); n > 0 && w.zeros[n-1].End() == off {
		w.zeros[n-1].Length += length
		return
	}
	w.zeros = append(w.zeros, image.Run{Offset: off, Length: length})
}

func (w *Writer) addData(off int64, p []byte) error {
	for len(p) > 0 {
		if w.cur == nil {
			b, err := w.newBatch()
			if err != nil {
				return err
			}
			w.cur = b
		}
		b := w.cur
		room := b.limit - len(b.raw)
		n := min(room, len(p))
		if n > 0 {
			w.data.Add(int64(n))
			b.raw = append(b.raw, p[:n]...)
			if k := len(b.runs); k > 0 && b.runs[k-1].End() == off {
				b.runs[k-1].Length += int64(n)
			} else {
				b.runs = append(b.runs, image.Run{Offset: off, Length: int64(n)})
			}
			off, p = off+int64(n), p[n:]
		}
		if len(b.raw) >= b.limit {
			if err := w.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// flush sends the current batch to the workers.
func (w *Writer) flush() error {
	b := w.cur
	if b == nil || len(b.raw) == 0 {
		return nil
	}
	w.cur = nil
	select {
	case w.jobs <- b:
		return nil
	case <-w.ctx.Done():
		return context.Cause(w.ctx)
	}
}

func (w *Writer) compress(e *image.Encoder) {
	defer w.workers.Done()
	for b := range w.jobs {
		// Every chunk is compressed, even one that looks incompressible:
		// zstd passes such data at over 1 GB/s, and a chunk that mixes it
		// with compressible data keeps the gain on the rest. (Skipping
		// chunks whose samples did not compress cost 0.1-0.2% of the
		// image on the benchmark images for no measurable time.)
		b.payload = b.payload[:0]
		if w.opts.Codec != image.CodecNone {
			b.payload, b.codec = e.Encode(b.payload, b.raw)
		}
		// Incompressible data is stored as is: restoring it then costs
		// nothing to decode.
		if len(b.payload) == 0 || len(b.payload) >= len(b.raw) {
			b.payload = append(b.payload[:0], b.raw...)
			b.codec = image.CodecNone
		}
		b.sum = sha256.Sum256(b.payload)
		select {
		case w.done <- b:
		case <-w.ctx.Done():
			return
		}
	}
}

// collect writes finished chunks to the image in sequence order and
// records their compression ratios.
func (w *Writer) collect() {
	defer close(w.collector)
	pending := map[int]*batch{}
	next := 0
	for b := range w.done {
		pending[b.seq] = b
		for {
			b, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			next++
			if context.Cause(w.ctx) != nil {
				continue
			}
			c := image.Chunk{RawSize: uint32(len(b.raw)), Codec: b.codec, Sum: b.sum, Runs: append([]image.Run(nil), b.runs...)}
			if err := w.img.AddChunk(c, b.payload); err != nil {
				w.cancel(err)
				continue
			}
			w.stored.Add(int64(len(b.payload)))
			w.chunks.Add(1)
			w.mu.Lock()
			w.ratios = append(w.ratios, float64(len(b.payload))/float64(len(b.raw)))
			w.written.Broadcast()
			w.mu.Unlock()
			w.pool.Put(b)
		}
	}
}

// Close flushes the last chunk, waits for all chunks to be written and
// records the zero extents. The image still needs Finish.
func (w *Writer) Close() (Stats, error) {
	err := w.flush()
	close(w.jobs)
	w.workers.Wait()
	close(w.done)
	<-w.collector
	if err == nil {
		err = context.Cause(w.ctx)
	}
	if err == nil {
		for _, z := range w.zeros {
			if err = w.img.AddZero(z.Offset, z.Length); err != nil {
				break
			}
		}
	}
	w.cancel(nil)
	return w.Stats(), err
}
