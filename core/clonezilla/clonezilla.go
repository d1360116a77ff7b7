// Package clonezilla reads Clonezilla image directories, and the lone
// partclone and ntfsclone image files they hold, as image sources: a Plan
// lists what a restore writes where (partition-table copies, the MBR and
// the data hidden after it, and each partition's image at its start), and
// Restore writes it straight onto a device while Import turns it into a
// diskcast image.
//
// A directory written by ocs-sr savedisk holds, per disk (sda, nvme0n1,
// ...; a "/" in a device name becomes "-"): disk (the disk names), parts
// (the partition names), <disk>-pt.sf (sfdisk -d), <disk>-mbr (sector 0),
// <disk>-hidden-data-after-mbr (MBR disks), <disk>-gpt-1st and
// <disk>-gpt-2nd (raw primary and backup GPT), and one image per
// partition: <part>.<fs>-ptcl-img.<comp> (partclone), <part>.dd-ptcl-img.*
// or <part>.dd-img.* (raw), or <part>.ntfs-img.* (ntfsclone), each usually
// split into .aa, .ab, ... pieces. blkdev.list, dev-fs.list, clonezilla-img
// and Info-*.txt are informational; dev-fs.list names filesystems.
package clonezilla

import (
	"errors"
	"strings"

	"github.com/diskcast/diskcast/core/image"
)

// Errors returned by this package.
var (
	ErrNotClonezilla = errors.New("clonezilla: not a Clonezilla image directory")
	ErrFormat        = errors.New("clonezilla: unsupported or corrupt image file")
	ErrTruncated     = errors.New("clonezilla: image file is truncated")
	ErrTable         = errors.New("clonezilla: bad partition table dump")
	ErrMissing       = errors.New("clonezilla: file missing from the image directory")
	ErrAmbiguous     = errors.New("clonezilla: the directory holds several disks or partitions")
	ErrTooSmall      = errors.New("clonezilla: target too small")
	ErrOutside       = errors.New("clonezilla: image data outside its partition")
)

// Plan is what restoring a Clonezilla disk, partition or image file
// writes: raw areas and partition images, in increasing offset order.
type Plan struct {
	Source     string // the directory or file
	Name       string // disk or partition name in the directory (sda, nvme0n1p2); the file name for a lone image
	Kind       image.SourceKind
	Size       int64 // bytes of the disk or partition
	SectorSize int
	Table      image.Table // scheme, disk ID and the table's raw areas (informational)
	Areas      []Area      // bytes written as they are
	Parts      []Part
	Warnings   []string
}

// Area is a stretch of raw bytes of the disk: partition-table copies, the
// MBR, the data hidden between MBR and first partition.
type Area struct {
	Offset int64
	Data   []byte
	What   string
}

// Part is one partition of a plan and the image that fills it.
type Part struct {
	Name       string // sda1, nvme0n1p2
	Number     int
	Start      int64 // byte offset on the disk (0 for a partition plan)
	Size       int64
	Type       string
	TypeName   string
	GUID       string
	Label      string // GPT partition name
	Attributes uint64
	FS         string // ext4, vfat, ntfs, swap, ... when known
	Format     string // partclone, ntfsclone, dd; "" when the directory has no image of it
	Files      []string
	Used       int64 // bytes the image stores
}

// Total is the number of bytes a restore of the plan writes.
func (p *Plan) Total() int64 {
	var n int64
	for _, a := range p.Areas {
		n += int64(len(a.Data))
	}
	for _, pt := range p.Parts {
		n += pt.Used
	}
	return n
}

// toFilename is how ocs-sr turns a device name into a file name
// (cciss/c0d0 -> cciss-c0d0).
func toFilename(dev string) string {
	return strings.ReplaceAll(strings.TrimPrefix(dev, "/dev/"), "/", "-")
}
