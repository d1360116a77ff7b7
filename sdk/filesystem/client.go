package filesystem

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/diskcast/diskcast/sdk/base"
	"github.com/diskcast/diskcast/sdk/internal/proto"
	"github.com/diskcast/diskcast/sdk/internal/rpc"
)

// client is the core side of the Filesystem service.
type client struct {
	rpc.BaseClient
	c       proto.FilesystemClient
	timeout time.Duration
}

var _ Client = (*client)(nil)

func toProto(v Volume) *proto.Volume {
	return &proto.Volume{Path: v.Path, Offset: v.Offset, Size: v.Size}
}

// call bounds one unary call by the timeout and the plugin's life, and
// turns its error back into the plugin's.
func (c *client) call(ctx context.Context, what string, fn func(ctx context.Context) error) error {
	joined, cancel := rpc.Join(ctx, c.Ctx)
	defer cancel()
	deadline := time.Now().Add(c.timeout)
	tctx, tcancel := context.WithDeadline(joined, deadline)
	defer tcancel()
	err := fn(tctx)
	if err == nil {
		return nil
	}
	// Told by the clock, not by tctx.Err(): the plugin's end of the call
	// has the deadline too and may give up (the call ends "cancelled")
	// before this side's timer has fired on a loaded host.
	d, ok := ctx.Deadline()
	callerFirst := ok && !d.After(deadline)
	if !time.Now().Before(deadline) && !callerFirst && ctx.Err() == nil && joined.Err() == nil {
		return fmt.Errorf("%w: %s: no answer in %v", base.ErrTimeout, what, c.timeout)
	}
	return rpc.FromStatus(err, c.Ctx, codeMap)
}

func (c *client) Capabilities(ctx context.Context) (*Capabilities, error) {
	var r *proto.FilesystemCapabilities
	err := c.call(ctx, "capabilities", func(ctx context.Context) (err error) {
		r, err = c.c.Capabilities(ctx, &proto.Empty{})
		return err
	})
	if err != nil {
		return nil, err
	}
	return &Capabilities{FixUp: r.FixUp}, nil
}

func (c *client) Probe(ctx context.Context, v Volume) (*ProbeResult, error) {
	var r *proto.ProbeResult
	err := c.call(ctx, "probe", func(ctx context.Context) (err error) {
		r, err = c.c.Probe(ctx, toProto(v))
		return err
	})
	if err != nil {
		return nil, err
	}
	return &ProbeResult{
		Confidence: int(r.Confidence), FSType: r.FsType, BlockSize: r.BlockSize,
		Blocks: r.Blocks, UsedBlocks: r.UsedBlocks, Label: r.Label, UUID: r.Uuid,
		Notes: r.Notes, Unsupported: r.Unsupported,
	}, nil
}

func (c *client) FixUp(ctx context.Context, v Volume) error {
	return c.call(ctx, "fix-up", func(ctx context.Context) error {
		_, err := c.c.FixUp(ctx, toProto(v))
		return err
	})
}

// UsedExtents streams the extents. The timeout applies to each wait for
// the next batch, not to the time emit takes.
func (c *client) UsedExtents(ctx context.Context, v Volume, emit func(off, length int64) error) error {
	joined, cancel := rpc.Join(ctx, c.Ctx)
	defer cancel()
	stream, err := c.c.UsedExtents(joined, toProto(v))
	if err != nil {
		return rpc.FromStatus(err, c.Ctx, codeMap)
	}
	chk := checker{size: v.Size}
	// Set by any wait's timer; a timer may fire just as its Recv returns,
	// and then the next Recv fails.
	var timedOut atomic.Bool
	for {
		t := time.AfterFunc(c.timeout, func() { timedOut.Store(true); cancel() })
		batch, err := stream.Recv()
		t.Stop()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if timedOut.Load() && ctx.Err() == nil {
				return fmt.Errorf("%w: no extents for %v", base.ErrTimeout, c.timeout)
			}
			return rpc.FromStatus(err, c.Ctx, codeMap)
		}
		if len(batch.Offsets) != len(batch.Lengths) {
			return fmt.Errorf("%w: batch with %d offsets and %d lengths", ErrBadExtent, len(batch.Offsets), len(batch.Lengths))
		}
		for i, off := range batch.Offsets {
			pass, err := chk.check(off, batch.Lengths[i])
			if err != nil {
				return err
			}
			if !pass {
				continue
			}
			if err := emit(off, batch.Lengths[i]); err != nil {
				return err
			}
		}
	}
}
