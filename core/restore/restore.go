// Package restore writes a diskcast image onto a block device or file.
// Chunks may arrive in any order (from a local file, or from a transport);
// each is checked against its SHA-256 before a single byte of it is
// written, decoded, and written at its device offsets.
package restore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/diskcast/diskcast/core/device"
	"github.com/diskcast/diskcast/core/image"
)

// FreeMode says what happens to bytes of the target the image does not
// cover (free space of the source's filesystems).
type FreeMode int

const (
	FreeKeep    FreeMode = iota // leave whatever the target holds
	FreeZero                    // make them read as zero
	FreeDiscard                 // discard (TRIM) them
)

// ParseFreeMode maps "keep", "zero" or "discard" to a FreeMode.
func ParseFreeMode(s string) (FreeMode, error) {
	switch s {
	case "", "keep":
		return FreeKeep, nil
	case "zero":
		return FreeZero, nil
	case "discard":
		return FreeDiscard, nil
	}
	return 0, fmt.Errorf("restore: --free %q: want keep, zero or discard", s)
}

// Errors returned by this package.
var (
	ErrTooSmall   = errors.New("restore: target too small")
	ErrIncomplete = errors.New("restore: target is incomplete")
	ErrInUse      = errors.New("restore: target is in use")
	// ErrFixUp means every chunk was written and verified, but a
	// filesystem plugin's post-restore fix-up failed (it may have written
	// part of its change).
	ErrFixUp = errors.New("restore: post-restore fix-up failed after every chunk was written and verified; restore again to start over from an exact copy")
)

// Stats counts restore progress; safe to read while a restore runs.
type Stats struct {
	Chunks    atomic.Int64
	DataBytes atomic.Int64 // decoded bytes written
	ZeroBytes atomic.Int64 // bytes zeroed for zero extents
}

// Target is a device being restored from an image's metadata.
type Target struct {
	Meta    *image.Reader
	Dev     *device.Device
	Created bool // the target file did not exist (so reads as zeros)
	Stats   Stats
	// done marks chunks already written, so a chunk that arrives twice
	// (multicast) is written once.
	mu   sync.Mutex
	done []bool
	// journal is the path of the resume journal, "" for none.
	journal string
}

// OpenTarget opens (or creates, for a file) path for restoring meta. It
// refuses a target smaller than the last byte the image writes before
// writing anything; a file target grows to the source size.
func OpenTarget(path string, meta *image.Reader) (*Target, error) {
	if use, err := device.InUse(path); err == nil && use.What != "" {
		return nil, fmt.Errorf("%w: %s; unmount it first, nothing was written", ErrInUse, use.What)
	}
	dev, created, err := device.Create(path)
	if err != nil {
		return nil, fmt.Errorf("restore: open target: %w", err)
	}
	need := meta.Index.LastUsedByte()
	if dev.Size < need && dev.Block {
		dev.Close()
		return nil, fmt.Errorf("%w: %s has %d bytes, but the image writes up to byte %d (the source was %d bytes); use a larger disk",
			ErrTooSmall, path, dev.Size, need, meta.Header.Source.Size)
	}
	if !dev.Block {
		if err := dev.Grow(max(need, meta.Header.Source.Size)); err != nil {
			dev.Close()
			return nil, fmt.Errorf("restore: grow %s: %w", path, err)
		}
	}
	return &Target{Meta: meta, Dev: dev, Created: created, done: make([]bool, len(meta.Index.Chunks))}, nil
}

// Close closes the device.
func (t *Target) Close() error { return t.Dev.Close() }

// Total is the number of bytes a full restore writes or zeroes.
func (t *Target) Total() int64 {
	return t.Meta.Index.DataBytes() + t.Meta.Index.ZeroBytes()
}

// Has reports whether chunk i has been written.
func (t *Target) Has(i int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.done[i]
}

// Missing lists the chunks not yet written.
func (t *Target) Missing() []int {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []int
	for i, d := range t.done {
		if !d {
			out = append(out, i)
		}
	}
	return out
}

// WriteChunk verifies payload as chunk i, decodes it with dec into buf
// and writes it. It returns buf (possibly grown) for reuse. A chunk that
// fails verification is not written. Safe for concurrent use with distinct
// decoders.
func (t *Target) WriteChunk(dec *image.Decoder, buf []byte, i int, payload []byte) ([]byte, error) {
	if err := t.Meta.VerifyPayload(i, payload); err != nil {
		return buf, err
	}
	if t.Has(i) {
		return buf, nil
	}
	c := &t.Meta.Index.Chunks[i]
	raw, err := dec.Decode(buf, c.Codec, payload, int(c.RawSize))
	if err != nil {
		return buf, fmt.Errorf("chunk %d: %w", i, err)
	}
	// Handing back the whole decoded buffer (not what is left after the
	// runs) lets the caller reuse it instead of growing a new one.
	rest := raw
	for _, r := range c.Runs {
		if _, err := t.Dev.WriteAt(rest[:r.Length], r.Offset); err != nil {
			return raw[:0], fmt.Errorf("chunk %d: write %s at byte %d: %w", i, t.Dev.Path, r.Offset, err)
		}
		rest = rest[r.Length:]
	}
	t.mu.Lock()
	t.done[i] = true
	t.mu.Unlock()
	t.Stats.Chunks.Add(1)
	t.Stats.DataBytes.Add(int64(c.RawSize))
	return raw[:0], nil
}

// ZeroExtents makes the image's zero extents read as zero on the target.
// A freshly created file already does.
func (t *Target) ZeroExtents(ctx context.Context) error {
	for _, z := range t.Meta.Index.Zeros {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !t.Created {
			if err := t.Dev.ZeroRange(z.Offset, z.Length); err != nil {
				return fmt.Errorf("zero %s at byte %d (+%d): %w", t.Dev.Path, z.Offset, z.Length, err)
			}
		}
		t.Stats.ZeroBytes.Add(z.Length)
	}
	return nil
}

// Free returns the ranges of the target the image leaves untouched.
func (t *Target) Free() []image.Run {
	var used []image.Run
	for i := range t.Meta.Index.Chunks {
		used = append(used, t.Meta.Index.Chunks[i].Runs...)
	}
	used = append(used, t.Meta.Index.Zeros...)
	slices.SortFunc(used, func(a, b image.Run) int { return cmp.Compare(a.Offset, b.Offset) })
	var free []image.Run
	var pos int64
	size := min(t.Dev.Size, t.Meta.Header.Source.Size)
	for _, r := range used {
		if r.Offset > pos {
			free = append(free, image.Run{Offset: pos, Length: r.Offset - pos})
		}
		pos = max(pos, r.End())
	}
	if pos < size {
		free = append(free, image.Run{Offset: pos, Length: size - pos})
	}
	return free
}

// HandleFree zeroes or discards the free ranges as mode says.
func (t *Target) HandleFree(ctx context.Context, mode FreeMode) error {
	if mode == FreeKeep || (mode == FreeZero && t.Created) {
		return nil
	}
	for _, r := range t.Free() {
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		if mode == FreeZero {
			err = t.Dev.ZeroRange(r.Offset, r.Length)
		} else {
			err = t.Dev.Discard(r.Offset, r.Length)
		}
		if err != nil {
			return fmt.Errorf("free space at byte %d: %w", r.Offset, err)
		}
	}
	return nil
}

// Options tune a restore from a local image.
type Options struct {
	Workers int
	Free    FreeMode
	// Journal is the resume journal's path ("" for none; see JournalPath).
	Journal string
	// Started is called once the target is open, so a caller can show
	// progress.
	Started func(t *Target)
	// FixUp, if set, runs after the image is on the target and synced,
	// once for every partition a filesystem plugin captured (see
	// Target.FixUps). nil keeps the restore byte-exact.
	FixUp FixUpFunc
}

// FixUpFunc runs the post-restore fix-up of partition p, which lies at
// v on the target. Callers connect it to the plugin named by p.Handler.
type FixUpFunc func(ctx context.Context, p image.Partition, v Volume) error

// Volume is where a partition lies on the target: Size bytes at Offset of
// the file or block device at Path. A fix-up works on the target file
// itself at that offset, so a file target needs no loop device.
type Volume struct {
	Path   string
	Offset int64
	Size   int64
}

// FixUps calls fn for every partition of the image that a filesystem
// plugin captured (Partition.ByPlugin), in partition order,
// then syncs the target again. It stops at the first error, which names
// the partition.
func (t *Target) FixUps(ctx context.Context, fn FixUpFunc) error {
	if fn == nil {
		return nil
	}
	src := t.Meta.Header.Source
	ran := false
	for _, p := range src.Partitions {
		if !p.ByPlugin() {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		v := Volume{Path: t.Dev.Path, Offset: p.Start, Size: p.Size}
		if src.Kind == image.SourcePartition {
			// The image is the partition itself: it starts at byte 0.
			v.Offset, v.Size = 0, src.Size
		}
		if v.Size <= 0 || v.Offset < 0 || v.Offset+v.Size > max(t.Dev.Size, src.Size) {
			return fmt.Errorf("%w: partition %d (plugin %s) at byte %d, %d bytes, does not fit the %d-byte target %s", ErrFixUp, p.Number, p.Handler, v.Offset, v.Size, t.Dev.Size, v.Path)
		}
		if err := fn(ctx, p, v); err != nil {
			what := fmt.Sprintf("partition %d", p.Number)
			if src.Kind == image.SourcePartition {
				what = "the partition"
			}
			return fmt.Errorf("%w: %s (%s, plugin %s, at byte %d of %s): %w", ErrFixUp, what, p.FSType, p.Handler, v.Offset, v.Path, err)
		}
		ran = true
	}
	if !ran {
		return nil
	}
	if err := t.Dev.Sync(); err != nil {
		return fmt.Errorf("%w: sync %s: %w", ErrFixUp, t.Dev.Path, err)
	}
	return nil
}

// Result summarises a finished restore.
type Result struct {
	Resumed   int // chunks an earlier, interrupted restore had written
	Chunks    int64
	DataBytes int64
	ZeroBytes int64
	Elapsed   time.Duration
}

// Run restores the image img (opened with image.Open) onto target.
func Run(ctx context.Context, img *image.Reader, target string, opts Options) (*Result, error) {
	begin := time.Now()
	t, err := OpenTarget(target, img)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	var resumed int
	if opts.Journal != "" {
		if resumed, err = t.UseJournal(opts.Journal); err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
	}
	if opts.Started != nil {
		opts.Started(t)
	}
	if err := t.ZeroExtents(ctx); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if err := t.writeAll(ctx, img, opts.Workers); err != nil {
		// Keep what is done for the next attempt.
		if cerr := t.Checkpoint(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrIncomplete, target, err)
	}
	if err := t.HandleFree(ctx, opts.Free); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if err := t.Dev.Sync(); err != nil {
		return nil, fmt.Errorf("restore: sync %s: %w", target, err)
	}
	// The journal goes before the fix-ups: a restore started again after a
	// failed fix-up rewrites every chunk, so fix-ups always start from an
	// exact copy.
	t.dropJournal()
	if err := t.FixUps(ctx, opts.FixUp); err != nil {
		return nil, err
	}
	return &Result{
		Resumed: resumed,
		Chunks:  t.Stats.Chunks.Load(), DataBytes: t.Stats.DataBytes.Load(), ZeroBytes: t.Stats.ZeroBytes.Load(),
		Elapsed: time.Since(begin),
	}, nil
}

// writeAll reads, verifies, decodes and writes every chunk on all cores.
func (t *Target) writeAll(ctx context.Context, img *image.Reader, workers int) error {
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	stopCheckpoints := t.StartCheckpoints(func(err error) { cancel(err) })
	var workersDone sync.WaitGroup
	for range workers {
		workersDone.Go(func() {
			dec := image.NewDecoder()
			var payload, raw []byte
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(img.Index.Chunks) {
					return
				}
				if t.Has(i) {
					continue
				}
				p, err := img.ReadPayload(i, payload)
				if err == nil {
					payload = p
					raw, err = t.WriteChunk(dec, raw, i, p)
				}
				if err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	workersDone.Wait()
	stopCheckpoints()
	return context.Cause(ctx)
}

// checkpointEvery is how often a running restore syncs and updates its
// journal.
const checkpointEvery = 5 * time.Second

// StartCheckpoints syncs the target and updates its journal every
// checkpointEvery until the returned stop is called (which waits for a
// checkpoint under way). A failed checkpoint is passed to onError and ends
// the checkpoints. Without a journal it does nothing.
func (t *Target) StartCheckpoints(onError func(error)) (stop func()) {
	if t.journal == "" {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(checkpointEvery)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				if err := t.Checkpoint(); err != nil {
					onError(err)
					return
				}
			case <-done:
				return
			}
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		wg.Wait()
	}
}
