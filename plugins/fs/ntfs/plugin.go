package ntfs

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"

	"github.com/diskcast/diskcast/sdk/base"
	"github.com/diskcast/diskcast/sdk/filesystem"
)

// Plugin is the NTFS filesystem plugin: Probe and UsedExtentsWithOptions
// behind the diskcast filesystem contract (sdk/filesystem). Its settings
// are PluginConfig; its fix-up gives a restored volume a new serial
// number when NewSerial is set, and leaves it untouched otherwise.
type Plugin struct {
	base.Settings[PluginConfig]
}

// PluginConfig is the plugin's settings; it is the single source of its
// config schema.
type PluginConfig struct {
	SkipPagefile bool `hcl:"skip_pagefile,optional" help:"leave out the contents of pagefile.sys (Windows recreates it; the restored file holds stale bytes)"`
	SkipHiberfil bool `hcl:"skip_hiberfil,optional" help:"leave out the contents of hiberfil.sys except its header page (ignored when the volume holds a pending resume)"`
	NewSerial    bool `hcl:"new_serial,optional" help:"after a restore, give the volume a new random serial number in both boot sectors (like ntfslabel --new-serial), so clones differ (an fstab entry naming it by UUID= no longer matches); without it the restore stays byte-exact"`
}

// NewPlugin returns the plugin with default settings.
func NewPlugin() *Plugin { return &Plugin{} }

var _ filesystem.Filesystem = (*Plugin)(nil)

// Info describes the plugin.
func (*Plugin) Info(context.Context) (*base.Info, error) {
	return &base.Info{Description: "NTFS: used clusters from $Bitmap, the backup boot sector included; optionally without the contents of pagefile.sys and hiberfil.sys"}, nil
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
	if err := ctx.Err(); err != nil {
		return err
	}
	var b [8]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	_, err := SetSerial(rw, size, binary.LittleEndian.Uint64(b[:]))
	return classify(err)
}

// Probe reports an NTFS volume with high confidence: the boot sector,
// $MFT, $Volume and $Bitmap were read and checked.
func (*Plugin) Probe(_ context.Context, r io.ReaderAt, size int64) (*filesystem.ProbeResult, error) {
	info, err := Probe(r, size)
	if errors.Is(err, ErrNotFound) {
		return &filesystem.ProbeResult{}, nil
	}
	if errors.Is(err, ErrUnsupported) {
		// Ours, but not readable: the core captures it raw and says why.
		return &filesystem.ProbeResult{Confidence: filesystem.HighConfidence, FSType: "ntfs", Unsupported: err.Error()}, nil
	}
	if err != nil {
		return nil, classify(err)
	}
	return &filesystem.ProbeResult{
		Confidence: filesystem.HighConfidence, FSType: info.FSType, BlockSize: info.BlockSize,
		Blocks: info.Blocks, UsedBlocks: info.UsedBlocks, Label: info.Label, UUID: info.UUID, Notes: info.Notes,
	}, nil
}

// UsedExtents streams the used byte ranges, honouring the settings.
func (p *Plugin) UsedExtents(ctx context.Context, r io.ReaderAt, size int64, emit func(off, length int64) error) error {
	c := p.Get()
	opts := Options{SkipPagefile: c.SkipPagefile, SkipHiberfil: c.SkipHiberfil}
	return classify(UsedExtentsWithOptions(ctx, r, size, opts, emit))
}

// classify marks the package's errors with the contract's sentinels.
var classify = filesystem.Errors{Corrupt: ErrCorrupt, Truncated: ErrTruncated, Unsupported: ErrUnsupported}.Mark
