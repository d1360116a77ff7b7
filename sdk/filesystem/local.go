package filesystem

import (
	"context"

	"github.com/diskcast/diskcast/sdk/base"
	"github.com/diskcast/diskcast/sdk/internal/rpc"
)

// InProcess returns a Client that calls impl directly, in this process,
// opening volumes the way a plugin process would. The core uses it to
// measure what running out of process costs, and tests use it to compare
// both paths; meta is the registration (name, version).
func InProcess(impl Filesystem, meta base.Info) Client {
	meta.Kind = base.KindFilesystem
	return &local{impl: impl, meta: meta}
}

type local struct {
	impl Filesystem
	meta base.Info
}

func (l *local) Info(ctx context.Context) (*base.Info, error) {
	return rpc.FillInfo(ctx, l.impl, l.meta)
}

func (l *local) ConfigSchema(ctx context.Context) (*base.Schema, error) {
	return l.impl.ConfigSchema(ctx)
}

func (l *local) Configure(ctx context.Context, cfg base.Config) error {
	return l.impl.Configure(ctx, cfg)
}

func (l *local) Capabilities(ctx context.Context) (*Capabilities, error) {
	return l.impl.Capabilities(ctx)
}

func (l *local) Probe(ctx context.Context, v Volume) (*ProbeResult, error) {
	return probe(ctx, l.impl, v)
}

func (l *local) UsedExtents(ctx context.Context, v Volume, emit func(off, length int64) error) error {
	return usedExtents(ctx, l.impl, v, emit)
}

func (l *local) FixUp(ctx context.Context, v Volume) error {
	return fixUp(ctx, l.impl, v)
}
