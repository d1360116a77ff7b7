package filesystem

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/diskcast/diskcast/sdk/internal/proto"
	"github.com/diskcast/diskcast/sdk/internal/rpc"
)

// server is the plugin side of the Filesystem service.
type server struct {
	proto.UnimplementedFilesystemServer
	impl Filesystem
}

func volumeOf(v *proto.Volume) Volume {
	return Volume{Path: v.GetPath(), Offset: v.GetOffset(), Size: v.GetSize()}
}

func (s *server) Capabilities(ctx context.Context, _ *proto.Empty) (*proto.FilesystemCapabilities, error) {
	c, err := s.impl.Capabilities(ctx)
	if err != nil {
		return nil, rpc.ToStatus(err, codeMap)
	}
	return &proto.FilesystemCapabilities{FixUp: c.FixUp}, nil
}

func (s *server) Probe(ctx context.Context, v *proto.Volume) (*proto.ProbeResult, error) {
	r, err := probe(ctx, s.impl, volumeOf(v))
	if err != nil {
		return nil, rpc.ToStatus(err, codeMap)
	}
	return &proto.ProbeResult{
		Confidence: int32(r.Confidence), FsType: r.FSType, BlockSize: r.BlockSize,
		Blocks: r.Blocks, UsedBlocks: r.UsedBlocks, Label: r.Label, Uuid: r.UUID,
		Notes: r.Notes, Unsupported: r.Unsupported,
	}, nil
}

// UsedExtents streams the plugin's extents in batches. A batch goes out
// when it is full, or when it has waited flushAfter, from a goroutine of
// its own: the plugin keeps parsing while batches are on the wire, and a
// plugin that finds few extents still shows progress.
func (s *server) UsedExtents(v *proto.Volume, stream proto.Filesystem_UsedExtentsServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	b := &batcher{queue: make(chan *proto.ExtentBatch, 4), cur: newBatch()}
	sent := make(chan error, 1)
	go func() {
		var err error
		for batch := range b.queue {
			if err == nil {
				if err = stream.Send(batch); err != nil {
					b.fail(err)
					cancel()
				}
			}
		}
		sent <- err
	}()
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(flushAfter)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				b.mu.Lock()
				b.push()
				b.mu.Unlock()
			case <-done:
				return
			}
		}
	}()
	err := usedExtents(ctx, s.impl, volumeOf(v), b.emit)
	close(done)
	b.mu.Lock()
	if err == nil {
		b.push()
	}
	close(b.queue)
	b.mu.Unlock()
	if serr := <-sent; serr != nil {
		return serr
	}
	return rpc.ToStatus(err, codeMap)
}

// batcher collects extents into batches for the sending goroutine.
type batcher struct {
	mu    sync.Mutex
	cur   *proto.ExtentBatch
	queue chan *proto.ExtentBatch // batches in order; closed at the end
	// broken holds the stream's error. It has no part in mu: the sender
	// sets it while emit may hold mu, blocked on a full queue.
	broken atomic.Pointer[error]
}

func newBatch() *proto.ExtentBatch {
	return &proto.ExtentBatch{Offsets: make([]int64, 0, BatchSize), Lengths: make([]int64, 0, BatchSize)}
}

func (b *batcher) emit(off, length int64) error {
	if err := b.broken.Load(); err != nil {
		return *err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cur.Offsets = append(b.cur.Offsets, off)
	b.cur.Lengths = append(b.cur.Lengths, length)
	if len(b.cur.Offsets) == BatchSize {
		b.push()
	}
	return nil
}

// push queues the current batch, if not empty; b.mu is held.
func (b *batcher) push() {
	if len(b.cur.Offsets) == 0 || b.broken.Load() != nil {
		return
	}
	b.queue <- b.cur
	b.cur = newBatch()
}

func (b *batcher) fail(err error) { b.broken.Store(&err) }

func (s *server) FixUp(ctx context.Context, v *proto.Volume) (*proto.Empty, error) {
	if err := fixUp(ctx, s.impl, volumeOf(v)); err != nil {
		return nil, rpc.ToStatus(err, codeMap)
	}
	return &proto.Empty{}, nil
}

// probe opens the volume read-only and probes it.
func probe(ctx context.Context, impl Filesystem, v Volume) (*ProbeResult, error) {
	f, r, err := openVolume(v, false)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	res, err := impl.Probe(ctx, r, v.Size)
	if err != nil {
		return nil, err
	}
	if res == nil {
		res = &ProbeResult{}
	}
	res.Confidence = min(max(res.Confidence, NoConfidence), Certain)
	return res, nil
}

// usedExtents opens the volume read-only and streams its extents through
// a checker, so that a plugin's mistake is caught where it is made.
func usedExtents(ctx context.Context, impl Filesystem, v Volume, emit func(off, length int64) error) error {
	f, r, err := openVolume(v, false)
	if err != nil {
		return err
	}
	defer f.Close()
	c := checker{size: v.Size}
	var bad error
	err = impl.UsedExtents(ctx, r, v.Size, func(off, length int64) error {
		pass, err := c.check(off, length)
		if err != nil {
			bad = err
		}
		if !pass {
			return err
		}
		return emit(off, length)
	})
	if bad != nil {
		return bad // even if the plugin ignored it
	}
	return err
}

// fixUp opens the volume read-write and runs the fix-up.
func fixUp(ctx context.Context, impl Filesystem, v Volume) error {
	f, rw, err := openVolume(v, true)
	if err != nil {
		return err
	}
	if err := impl.FixUp(ctx, rw, v.Size); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("fix-up: sync %s: %w", v.Path, err)
	}
	return f.Close()
}
