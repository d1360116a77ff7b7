package fat

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"

	"github.com/diskcast/diskcast/sdk/base"
	"github.com/diskcast/diskcast/sdk/filesystem"
)

// Plugin is the FAT12/16/32 and exFAT filesystem plugin: Probe and UsedExtents behind
// the diskcast filesystem contract (sdk/filesystem). Its settings are
// PluginConfig; its fix-up gives a restored volume a new serial number
// when NewSerial is set, and leaves it untouched otherwise.
type Plugin struct {
	base.Settings[PluginConfig]
}

// PluginConfig is the plugin's settings; it is the single source of its
// config schema.
type PluginConfig struct {
	NewSerial bool `hcl:"new_serial,optional" help:"after a restore, give the volume a new random serial number (volume ID; FAT32's backup boot sector and exFAT's boot checksum updated), so clones differ (an fstab entry naming it by UUID= no longer matches); without it the restore stays byte-exact"`
}

// NewPlugin returns the plugin.
func NewPlugin() *Plugin { return &Plugin{} }

var _ filesystem.Filesystem = (*Plugin)(nil)

// Info describes the plugin.
func (*Plugin) Info(context.Context) (*base.Info, error) {
	return &base.Info{Description: "FAT12, FAT16, FAT32 (used clusters from the FAT) and exFAT (from its allocation bitmap); reserved sectors, FATs and root directory are kept"}, nil
}

// Capabilities says the plugin has a fix-up.
func (*Plugin) Capabilities(context.Context) (*filesystem.Capabilities, error) {
	return &filesystem.Capabilities{FixUp: true}, nil
}

// FixUp writes a new random serial number when NewSerial is set; with the
// default settings it writes nothing.
func (p *Plugin) FixUp(ctx context.Context, rw filesystem.ReadWriterAt, size int64) error {
	c := p.Get()
	if !c.NewSerial {
		return nil
	}
	var b [4]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	_, err := SetSerial(ctx, rw, size, binary.LittleEndian.Uint32(b[:]))
	return classify(err)
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
var classify = filesystem.Errors{Corrupt: ErrCorrupt, Truncated: ErrTruncated}.Mark
