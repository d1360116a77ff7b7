package fat

import (
	"context"
	"errors"
	"io"

	"github.com/diskcast/diskcast/sdk/base"
	"github.com/diskcast/diskcast/sdk/filesystem"
)

// Plugin is the FAT12/16/32 and exFAT filesystem plugin: Probe and UsedExtents behind
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
	return &base.Info{Description: "FAT12, FAT16, FAT32 (used clusters from the FAT) and exFAT (from its allocation bitmap); reserved sectors, FATs and root directory are kept"}, nil
}

// Capabilities says the plugin has no fix-up.
func (*Plugin) Capabilities(context.Context) (*filesystem.Capabilities, error) {
	return &filesystem.Capabilities{}, nil
}

// Probe reports a FAT or exFAT filesystem with medium confidence: a boot
// sector's BIOS parameter block is a weaker sign than a superblock magic.
func (*Plugin) Probe(_ context.Context, r io.ReaderAt, size int64) (*filesystem.ProbeResult, error) {
	info, err := Probe(r, size)
	if errors.Is(err, ErrNotFound) {
		return &filesystem.ProbeResult{}, nil
	}
	if err != nil {
		return nil, classify(err)
	}
	res := &filesystem.ProbeResult{
		Confidence: filesystem.MediumConfidence, FSType: info.FSType, BlockSize: info.BlockSize,
		Blocks: info.Blocks, UsedBlocks: info.UsedBlocks, Label: info.Label, UUID: info.UUID, Notes: info.Notes,
	}
	return res, nil
}

// UsedExtents streams the used byte ranges.
func (*Plugin) UsedExtents(ctx context.Context, r io.ReaderAt, size int64, emit func(off, length int64) error) error {
	return classify(UsedExtents(ctx, r, size, emit))
}

// classify marks the package's errors with the contract's sentinels.
func classify(err error) error {
	switch {
	case errors.Is(err, ErrCorrupt):
		return base.Mark(err, filesystem.ErrCorrupt)
	case errors.Is(err, ErrTruncated):
		return base.Mark(err, filesystem.ErrTruncated)
	}
	return err
}
