// Package filesystem is the contract between diskcast and its filesystem
// plugins. A filesystem plugin looks at a partition and says two things:
// whether it holds the plugin's filesystem (Probe), and which byte ranges
// of it are in use (UsedExtents). diskcast then reads and stores only
// those ranges. A plugin may also offer a post-restore fix-up (FixUp).
//
// Plugins never send filesystem data to the core, only extents: the core
// tells the plugin which file or device to open (path, offset, size), the
// plugin reads what metadata it needs there itself, read-only, and streams
// extents back in batches, so a filesystem with millions of fragments
// costs neither a huge message nor a round trip per fragment.
//
// Changing anything exported here breaks every filesystem plugin built
// against an earlier SDK: add, never change, or bump base.APIVersion.
package filesystem

import (
	"context"
	"errors"
	"io"

	"github.com/diskcast/diskcast/sdk/base"
)

// Errors a filesystem plugin classifies its failures with (base.Mark),
// so that the core can tell them apart across the process boundary.
var (
	// ErrCorrupt means the filesystem is the plugin's but its metadata is
	// inconsistent; the message says which structure.
	ErrCorrupt = errors.New("filesystem: corrupt metadata")
	// ErrTruncated means the filesystem extends past the end of the volume.
	ErrTruncated = errors.New("filesystem: filesystem extends past the end of the volume")
	// ErrBadExtent means a plugin reported an extent out of order,
	// overlapping another or outside the volume.
	ErrBadExtent = errors.New("filesystem: bad extent")
	// ErrBadVolume means the volume to inspect cannot be opened or does
	// not fit in its file or device.
	ErrBadVolume = errors.New("filesystem: bad volume")
)

// Errors names a plugin's own sentinels for the contract's kinds of
// failure; a nil field matches nothing.
type Errors struct{ Corrupt, Truncated, Unsupported error }

// Mark marks err, if it wraps one of e's sentinels, with the contract's
// (ErrCorrupt, ErrTruncated, base.ErrUnsupported), keeping its message.
func (e Errors) Mark(err error) error {
	switch {
	case err == nil:
		return nil
	case e.Corrupt != nil && errors.Is(err, e.Corrupt):
		return base.Mark(err, ErrCorrupt)
	case e.Truncated != nil && errors.Is(err, e.Truncated):
		return base.Mark(err, ErrTruncated)
	case e.Unsupported != nil && errors.Is(err, e.Unsupported):
		return base.Mark(err, base.ErrUnsupported)
	}
	return err
}

// Filesystem is what a filesystem plugin implements.
type Filesystem interface {
	base.Plugin

	// Capabilities says which optional operations the plugin offers.
	Capabilities(ctx context.Context) (*Capabilities, error)

	// Probe reports whether the size bytes of r hold the plugin's
	// filesystem. A result with Confidence 0 (or nil) means "not mine".
	// An error means the filesystem looks like the plugin's but cannot be
	// read (mark it with ErrCorrupt or ErrTruncated), or r failed.
	Probe(ctx context.Context, r io.ReaderAt, size int64) (*ProbeResult, error)

	// UsedExtents calls emit for every byte range the filesystem uses
	// (metadata, journal and allocated data), relative to the start of r,
	// in increasing order, not overlapping, all within [0, size). It
	// returns emit's error as is, and stops when ctx ends. Memory should
	// not grow with the number of extents.
	UsedExtents(ctx context.Context, r io.ReaderAt, size int64, emit func(off, length int64) error) error

	// FixUp runs after the core restored the filesystem onto rw (size
	// bytes), for changes a byte-exact copy cannot make (e.g. a new UUID
	// or a resized filesystem). Plugins without fix-ups return
	// base.ErrUnsupported and say FixUp: false in Capabilities; embed
	// NoFixUp for that.
	FixUp(ctx context.Context, rw ReadWriterAt, size int64) error
}

// ReadWriterAt is a volume opened for a fix-up.
type ReadWriterAt interface {
	io.ReaderAt
	io.WriterAt
}

// Capabilities lists the optional operations of a filesystem plugin.
type Capabilities struct {
	FixUp bool `json:"fix_up"`
}

// Confidence levels of a probe. A plugin that verified a superblock
// checksum or several independent fields says High; one that matched
// only a magic number says Low. The core picks the plugin with the
// highest confidence.
const (
	NoConfidence     = 0
	LowConfidence    = 25
	MediumConfidence = 50
	HighConfidence   = 90
	Certain          = 100
)

// ProbeResult describes a recognised filesystem.
type ProbeResult struct {
	// Confidence is 0 (not this plugin's filesystem) to 100 (certain).
	Confidence int      `json:"confidence"`
	FSType     string   `json:"fs_type"` // e.g. "ext4", "vfat", "ntfs"
	BlockSize  int64    `json:"block_size"`
	Blocks     uint64   `json:"blocks"`      // blocks in the filesystem
	UsedBlocks uint64   `json:"used_blocks"` // blocks UsedExtents will report, if known
	Label      string   `json:"label,omitempty"`
	UUID       string   `json:"uuid,omitempty"`
	Notes      []string `json:"notes,omitempty"`
	// Unsupported, when set, says why the used blocks of this (the
	// plugin's) filesystem cannot be determined; the core then captures
	// the volume raw and tells the operator this reason.
	Unsupported string `json:"unsupported,omitempty"`
}

// Volume is the part of a file or block device that holds a filesystem:
// Size bytes at Offset in the file at Path.
type Volume struct {
	Path   string
	Offset int64
	Size   int64
}

// Client is the core's side of a filesystem plugin: the same operations as
// Filesystem, on a Volume the plugin opens itself. The gRPC client shim
// (a plugin in another process) and InProcess (the same code called
// directly) both implement it.
type Client interface {
	Info(ctx context.Context) (*base.Info, error)
	ConfigSchema(ctx context.Context) (*base.Schema, error)
	Configure(ctx context.Context, cfg base.Config) error
	Capabilities(ctx context.Context) (*Capabilities, error)
	Probe(ctx context.Context, v Volume) (*ProbeResult, error)
	UsedExtents(ctx context.Context, v Volume, emit func(off, length int64) error) error
	FixUp(ctx context.Context, v Volume) error
}

// NoFixUp implements FixUp for plugins without fix-ups: embed it.
type NoFixUp struct{}

// FixUp returns an error wrapping base.ErrUnsupported.
func (NoFixUp) FixUp(context.Context, ReadWriterAt, int64) error {
	return base.ErrUnsupported
}
