// Package squashfs is a complete third-party diskcast filesystem plugin,
// written against the SDK only: it recognises a squashfs 4.0 image by its
// superblock and reports [0, bytes_used) as used, rounded up to the 4 KiB
// padding mksquashfs writes. Everything after it is free.
//
// The superblock (little-endian, 96 bytes at offset 0) fields it reads:
//
//	off  size  field
//	  0     4  magic "hsqs"
//	 12     4  block_size (4 KiB to 1 MiB, a power of two)
//	 22     2  block_log (log2 of block_size)
//	 28     2  major version (4)
//	 30     2  minor version (0)
//	 40     8  bytes_used
//	 48    48  six table offsets, each below bytes_used (or all ones: absent)
package squashfs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/diskcast/diskcast/sdk/base"
	"github.com/diskcast/diskcast/sdk/filesystem"
)

// Errors of the plugin.
var (
	errNotSquashfs = errors.New("squashfs: no squashfs superblock")
	errCorrupt     = errors.New("squashfs: corrupt superblock")
)

const (
	superSize = 96
	pad       = 4096 // mksquashfs pads the image to a multiple of this
)

// Config is the plugin's settings, and the source of its config schema.
type Config struct {
	KeepPadding bool `hcl:"keep_padding,optional" help:"also capture the zero padding mksquashfs adds after bytes_used, so that the restored image equals the original file byte for byte"`
}

// Plugin is the squashfs filesystem plugin.
type Plugin struct {
	filesystem.NoFixUp
	mu  sync.Mutex
	cfg Config
}

// New returns the plugin with its default settings.
func New() *Plugin { return &Plugin{cfg: defaults} }

var defaults = Config{KeepPadding: true}

var _ filesystem.Filesystem = (*Plugin)(nil)

// Info describes the plugin.
func (*Plugin) Info(context.Context) (*base.Info, error) {
	return &base.Info{Description: "squashfs 4.0: the image is [0, bytes_used) from the superblock"}, nil
}

// ConfigSchema derives the schema from Config.
func (*Plugin) ConfigSchema(context.Context) (*base.Schema, error) {
	return base.SchemaOf(defaults)
}

// Configure replaces the settings; missing ones take their defaults.
func (p *Plugin) Configure(_ context.Context, cfg base.Config) error {
	c := defaults
	if err := cfg.Decode(&c); err != nil {
		return err
	}
	p.mu.Lock()
	p.cfg = c
	p.mu.Unlock()
	return nil
}

// Capabilities says the plugin has no fix-up.
func (*Plugin) Capabilities(context.Context) (*filesystem.Capabilities, error) {
	return &filesystem.Capabilities{}, nil
}

// super is what the plugin needs from the superblock.
type super struct {
	blockSize uint32
	bytesUsed int64
}

// readSuper parses and checks the superblock.
func readSuper(r io.ReaderAt, size int64) (*super, error) {
	if size < superSize {
		return nil, errNotSquashfs
	}
	b := make([]byte, superSize)
	if _, err := r.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("squashfs: read superblock: %w", err)
	}
	if string(b[0:4]) != "hsqs" {
		return nil, errNotSquashfs
	}
	le := binary.LittleEndian
	s := &super{blockSize: le.Uint32(b[12:]), bytesUsed: int64(le.Uint64(b[40:]))}
	major, minor, blockLog := le.Uint16(b[28:]), le.Uint16(b[30:]), le.Uint16(b[22:])
	switch {
	case major != 4 || minor != 0:
		return nil, fmt.Errorf("%w: version %d.%d, want 4.0", errCorrupt, major, minor)
	case s.blockSize < 4096 || s.blockSize > 1<<20 || s.blockSize&(s.blockSize-1) != 0:
		return nil, fmt.Errorf("%w: block_size %d is not a power of two from 4 KiB to 1 MiB", errCorrupt, s.blockSize)
	case uint32(1)<<blockLog != s.blockSize:
		return nil, fmt.Errorf("%w: block_log %d does not match block_size %d", errCorrupt, blockLog, s.blockSize)
	case s.bytesUsed < superSize:
		return nil, fmt.Errorf("%w: bytes_used %d is smaller than the superblock", errCorrupt, s.bytesUsed)
	case s.bytesUsed > size:
		return nil, base.Mark(fmt.Errorf("squashfs: bytes_used %d is past the end of the %d-byte volume", s.bytesUsed, size), filesystem.ErrTruncated)
	}
	names := []string{"id", "xattr_id", "inode", "directory", "fragment", "lookup"}
	for i, name := range names {
		t := le.Uint64(b[48+8*i:])
		if t != ^uint64(0) && t >= uint64(s.bytesUsed) {
			return nil, fmt.Errorf("%w: %s table at %d is past bytes_used %d", errCorrupt, name, t, s.bytesUsed)
		}
	}
	return s, nil
}

// Probe recognises a squashfs 4.0 superblock. Its magic, version, block
// size and table offsets agree: high confidence.
func (*Plugin) Probe(_ context.Context, r io.ReaderAt, size int64) (*filesystem.ProbeResult, error) {
	s, err := readSuper(r, size)
	if errors.Is(err, errNotSquashfs) {
		return &filesystem.ProbeResult{}, nil
	}
	if errors.Is(err, errCorrupt) {
		return nil, base.Mark(err, filesystem.ErrCorrupt)
	}
	if err != nil {
		return nil, err
	}
	return &filesystem.ProbeResult{
		Confidence: filesystem.HighConfidence,
		FSType:     "squashfs",
		BlockSize:  pad,
		Blocks:     uint64(size / pad),
		UsedBlocks: uint64((s.bytesUsed + pad - 1) / pad),
		Notes:      []string{fmt.Sprintf("block size %d, %d bytes used", s.blockSize, s.bytesUsed)},
	}, nil
}

// UsedExtents reports the one used extent.
func (p *Plugin) UsedExtents(ctx context.Context, r io.ReaderAt, size int64, emit func(off, length int64) error) error {
	s, err := readSuper(r, size)
	if errors.Is(err, errCorrupt) {
		return base.Mark(err, filesystem.ErrCorrupt)
	}
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p.mu.Lock()
	keep := p.cfg.KeepPadding
	p.mu.Unlock()
	used := s.bytesUsed
	if keep {
		used = min((used+pad-1)/pad*pad, size)
	}
	return emit(0, used)
}
