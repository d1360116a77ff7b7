// Package image reads and writes diskcast images (.dci): a header that
// describes the source disk, independently decompressible chunks of device
// data, an index that locates and hashes every chunk, and a trailer that
// seals header and index with a SHA-256 digest and an optional ed25519
// signature. The byte layout is documented in format.go and docs/FORMAT.md.
//
// Any chunk can be located, fetched and verified without reading the
// others; multicast in any order, late join, HTTP range repair and resume
// all rely on that.
package image

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Errors returned by this package. Callers wrap them with context (which
// part, which chunk) and test them with errors.Is.
var (
	ErrMagic       = errors.New("image: not a diskcast image (bad magic)")
	ErrVersion     = errors.New("image: unsupported format version")
	ErrTruncated   = errors.New("image: file is truncated")
	ErrCorrupt     = errors.New("image: corrupt")
	ErrChecksum    = errors.New("image: checksum mismatch")
	ErrSignature   = errors.New("image: signature invalid")
	ErrUnsigned    = errors.New("image: image is not signed")
	ErrCodec       = errors.New("image: unknown codec")
	ErrCritical    = errors.New("image: unknown critical header field")
	ErrOrder       = errors.New("image: data must be added in increasing offset order")
	ErrHeaderGrown = errors.New("image: header changed size after chunks were written")
)

// Version of the format this package writes. A reader accepts any minor
// version of its major version and skips optional fields it does not know.
const (
	MajorVersion = 1
	MinorVersion = 1 // 1.1 added chunk codec 3, zstd+x86
)

// ID identifies an image: 128 random bits chosen at capture.
type ID [16]byte

// NewID returns a random image ID.
func NewID() ID {
	var id ID
	if _, err := rand.Read(id[:]); err != nil {
		panic("image: no randomness: " + err.Error())
	}
	return id
}

func (id ID) String() string { return hex.EncodeToString(id[:]) }

// SourceKind says whether the image holds a whole disk or one partition.
type SourceKind uint8

const (
	SourceDisk      SourceKind = 1
	SourcePartition SourceKind = 2
)

func (k SourceKind) String() string {
	switch k {
	case SourceDisk:
		return "disk"
	case SourcePartition:
		return "partition"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Header describes the image and its source. It is written at the start of
// the file so that a reader (or a multicast receiver) knows what it is
// restoring before any chunk arrives.
type Header struct {
	Major, Minor uint16
	ID           ID
	Created      time.Time
	Codec        Codec // default codec; each chunk names its own
	Level        int   // compression level the capture used
	ChunkSize    int   // target compressed chunk size in bytes
	Creator      string
	Source       Source
}

// Source describes the captured device.
type Source struct {
	Name       string // device or file name at capture
	Kind       SourceKind
	Size       int64 // bytes
	SectorSize int
	Table      Table
	Partitions []Partition
}

// Table is the partition table of a whole-disk source.
type Table struct {
	Scheme   string // "gpt", "mbr" or "none"
	DiskGUID string
	Areas    []TableArea // raw bytes of the table as read at capture
}

// TableArea is one stretch of partition-table bytes (MBR, GPT header and
// entries, EBR).
type TableArea struct {
	Offset int64
	Data   []byte
}

// Partition describes one partition of the source and how it was captured.
// For a partition source there is exactly one, covering the whole source.
type Partition struct {
	Number     int
	Start      int64
	Size       int64
	Type       string // GPT type GUID or MBR type such as "0x83"
	TypeName   string
	GUID       string
	Name       string
	Attributes uint64
	FSType     string // detected filesystem, "" when unknown
	Handler    string // what decided which bytes to store: "raw" or a filesystem plugin
	UsedBytes  int64  // bytes stored or recorded as zero for this partition
}

// ByPlugin reports whether a filesystem plugin captured the partition
// (rather than nothing, or raw capture): its plugin may have a fix-up.
func (p Partition) ByPlugin() bool { return p.Handler != "" && p.Handler != "raw" }

// Run is a stretch of the source device: Length bytes at device Offset.
type Run struct {
	Offset int64
	Length int64
}

// End returns the offset just past the run.
func (r Run) End() int64 { return r.Offset + r.Length }

// Chunk is one index entry: where the payload lies in the file, how it is
// encoded, its SHA-256, and which device runs its decoded bytes fill, in
// order.
type Chunk struct {
	FileOffset int64
	StoredSize uint32
	RawSize    uint32 // sum of run lengths
	Codec      Codec
	Sum        [32]byte // SHA-256 of the stored payload
	Runs       []Run
}

// Index lists every chunk and every zero extent: device ranges that read as
// zero in the source and were therefore not stored.
type Index struct {
	Chunks []Chunk
	Zeros  []Run
}

// Trailer seals the image. HeaderSum and IndexSum are SHA-256 of the
// header and index bytes; Digest is SHA-256 of the trailer's first 96 bytes
// (which hold both); a signature, when present, signs the digest.
type Trailer struct {
	HeaderLength int64
	IndexOffset  int64
	IndexLength  int64
	HeaderSum    [32]byte
	IndexSum     [32]byte
	Digest       [32]byte
	PublicKey    [32]byte // zero when unsigned
	Signature    [64]byte // zero when unsigned
}

// Signed reports whether the trailer carries a signature.
func (t *Trailer) Signed() bool { return t.PublicKey != [32]byte{} }

// StoredBytes is the sum of all chunk payload sizes.
func (ix *Index) StoredBytes() int64 {
	var n int64
	for i := range ix.Chunks {
		n += int64(ix.Chunks[i].StoredSize)
	}
	return n
}

// DataBytes is the number of device bytes the chunks hold.
func (ix *Index) DataBytes() int64 {
	var n int64
	for i := range ix.Chunks {
		n += int64(ix.Chunks[i].RawSize)
	}
	return n
}

// ZeroBytes is the number of device bytes recorded as zero.
func (ix *Index) ZeroBytes() int64 {
	var n int64
	for _, z := range ix.Zeros {
		n += z.Length
	}
	return n
}

// LastUsedByte returns the offset just past the last byte that a restore
// writes (data or zero). A target must be at least this large.
func (ix *Index) LastUsedByte() int64 {
	var end int64
	for i := range ix.Chunks {
		for _, r := range ix.Chunks[i].Runs {
			end = max(end, r.End())
		}
	}
	for _, z := range ix.Zeros {
		end = max(end, z.End())
	}
	return end
}
