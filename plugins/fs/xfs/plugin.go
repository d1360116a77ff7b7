package xfs

import (
	"context"
	"errors"
	"io"

	"github.com/diskcast/diskcast/sdk/base"
	sdkfs "github.com/diskcast/diskcast/sdk/filesystem" // this package has a type named filesystem
)

// Plugin is the XFS filesystem plugin: Probe and UsedExtents behind
// the diskcast filesystem contract (sdk/filesystem). It has no settings
// and no fix-up.
type Plugin struct {
	base.NoConfig
	sdkfs.NoFixUp
}

// NewPlugin returns the plugin.
func NewPlugin() *Plugin { return &Plugin{} }

var _ sdkfs.Filesystem = (*Plugin)(nil)

// Info describes the plugin.
func (*Plugin) Info(context.Context) (*base.Info, error) {
	return &base.Info{Description: "XFS (v4 and v5): everything but the free space recorded in each allocation group's free-space b-trees; the log is kept"}, nil
}

// Capabilities says the plugin has no fix-up.
func (*Plugin) Capabilities(context.Context) (*sdkfs.Capabilities, error) {
	return &sdkfs.Capabilities{}, nil
}

// Probe reports an XFS filesystem with high confidence: the magic
// number, the superblock and every AGF were read and checked.
func (*Plugin) Probe(_ context.Context, r io.ReaderAt, size int64) (*sdkfs.ProbeResult, error) {
	info, err := Probe(r, size)
	if errors.Is(err, ErrNotFound) {
		return &sdkfs.ProbeResult{}, nil
	}
	if errors.Is(err, ErrUnsupported) {
		// Ours, but not readable: the core captures it raw and says why.
		return &sdkfs.ProbeResult{Confidence: sdkfs.HighConfidence, FSType: "xfs", Unsupported: err.Error()}, nil
	}
	if err != nil {
		return nil, classify(err)
	}
	res := &sdkfs.ProbeResult{
		Confidence: sdkfs.HighConfidence, FSType: info.FSType, BlockSize: info.BlockSize,
		Blocks: info.Blocks, UsedBlocks: info.UsedBlocks, Label: info.Label, UUID: info.UUID, Notes: info.Notes,
	}
	return res, nil
}

// UsedExtents streams the used byte ranges.
func (*Plugin) UsedExtents(ctx context.Context, r io.ReaderAt, size int64, emit func(off, length int64) error) error {
	return classify(UsedExtents(ctx, r, size, emit))
}

// classify marks the package's errors with the contract's sentinels.
var classify = sdkfs.Errors{Corrupt: ErrCorrupt, Truncated: ErrTruncated, Unsupported: ErrUnsupported}.Mark
