package ext4

import (
	"context"
	"errors"
	"io"
	"strings"

	"github.com/diskcast/diskcast/sdk/base"
	"github.com/diskcast/diskcast/sdk/filesystem"
)

// Plugin is the ext2/3/4 filesystem plugin: Probe and UsedExtents behind
// the diskcast filesystem contract (sdk/filesystem). It has no settings
// and no fix-up.
type Plugin struct {
	base.NoConfig
	filesystem.NoFixUp
}

// NewPlugin returns the plugin.
func NewPlugin() *Plugin { return &Plugin{} }

var _ filesystem.Filesystem = (*Plugin)(nil)

// Info describes the plugin.
func (*Plugin) Info(context.Context) (*base.Info, error) {
	return &base.Info{Description: "ext2, ext3 and ext4: used blocks from the group descriptors and block bitmaps; the journal is kept"}, nil
}

// Capabilities says the plugin has no fix-up.
func (*Plugin) Capabilities(context.Context) (*filesystem.Capabilities, error) {
	return &filesystem.Capabilities{}, nil
}

// Probe reports an ext2/3/4 filesystem with high confidence: the magic
// number and the superblock's geometry were checked against each other.
func (*Plugin) Probe(_ context.Context, r io.ReaderAt, size int64) (*filesystem.ProbeResult, error) {
	info, err := Probe(r, size)
	if errors.Is(err, ErrNotFound) {
		return &filesystem.ProbeResult{}, nil
	}
	if err != nil {
		return nil, classify(err)
	}
	res := &filesystem.ProbeResult{
		Confidence: filesystem.HighConfidence, FSType: info.FSType, BlockSize: info.BlockSize,
		Blocks: info.Blocks, UsedBlocks: info.UsedBlocks, Label: info.Label, UUID: info.UUID, Notes: info.Notes,
	}
	// Probe says in a note when UsedExtents would refuse the filesystem.
	for _, n := range info.Notes {
		if reason, ok := strings.CutPrefix(n, "capture raw: "); ok {
			res.Unsupported = reason
		}
	}
	return res, nil
}

// UsedExtents streams the used byte ranges.
func (*Plugin) UsedExtents(ctx context.Context, r io.ReaderAt, size int64, emit func(off, length int64) error) error {
	return classify(UsedExtents(ctx, r, size, emit))
}

// classify marks the package's errors with the contract's sentinels.
var classify = filesystem.Errors{Corrupt: ErrCorrupt, Truncated: ErrTruncated, Unsupported: ErrUnsupported}.Mark
