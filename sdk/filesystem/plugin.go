package filesystem

import (
	"context"
	"time"

	"github.com/diskcast/diskcast/sdk/base"
	"github.com/diskcast/diskcast/sdk/internal/proto"
	"github.com/diskcast/diskcast/sdk/internal/rpc"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// BatchSize is the most extents one streamed message carries (about
// 40 KiB on the wire with varint offsets).
const BatchSize = 4096

// flushAfter bounds how long an extent waits in a partial batch, so that
// a slow plugin still shows progress.
const flushAfter = 200 * time.Millisecond

// DefaultTimeout is how long the client waits for an answer to a call or
// for the next batch of extents.
const DefaultTimeout = 2 * time.Minute

// codeMap carries this kind's sentinels across the boundary.
var codeMap = []rpc.Code{
	{Err: ErrCorrupt, Code: codes.DataLoss},
	{Err: ErrTruncated, Code: codes.OutOfRange},
	{Err: ErrBadExtent, Code: codes.Internal},
	{Err: ErrBadVolume, Code: codes.FailedPrecondition},
}

// GRPCPlugin is the go-plugin glue of the filesystem kind. A plugin sets
// Impl and Meta (sdk/plugin.Set does this); the core sets Timeout and
// dispenses a Client.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	// Impl is the implementation (plugin side).
	Impl Filesystem
	// Meta is the registration: kind, name and version (plugin side).
	Meta base.Info
	// Timeout bounds each call and each wait for the next batch of
	// extents (core side); zero means DefaultTimeout.
	Timeout time.Duration
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// GRPCServer registers the Base and Filesystem services.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	meta := p.Meta
	meta.Kind = base.KindFilesystem
	(&rpc.BaseServer{Impl: p.Impl, Meta: meta}).Register(s)
	proto.RegisterFilesystemServer(s, &server{impl: p.Impl})
	return nil
}

// GRPCClient returns a Client. ctx ends when the plugin process exits.
func (p *GRPCPlugin) GRPCClient(ctx context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &client{
		BaseClient: rpc.BaseClient{C: proto.NewBaseClient(c), Ctx: ctx},
		c:          proto.NewFilesystemClient(c),
		timeout:    timeout,
	}, nil
}
