package clonezilla

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
)

// ntfsclone's "special image" format (ntfsclone --save-image), version 10:
//
//	offset size field (little-endian)
//	     0   16 "\0ntfsclone-image"
//	    16    1 major version (10)
//	    17    1 minor version (0 or 1)
//	    18    4 cluster size
//	    22    8 device size in bytes
//	    30    8 clusters in the volume
//	    38    8 clusters in use
//	    46    4 offset of the data from the start of the file
//
// then, from that offset, one command per step through the clusters: 0
// (gap) followed by a signed 64-bit count of clusters to skip, or 1 (next)
// followed by one cluster of data. Version 10.1 also stores the cluster
// holding the backup boot sector past the last cluster, cut at the device
// end. Versions before 10 were written in the machine's byte order and
// are not read.
const (
	ntfscloneMagic      = "\x00ntfsclone-image"
	ntfscloneHeaderSize = 50
	ntfscloneMajor      = 10
	cmdGap              = 0
	cmdNext             = 1
)

// NtfsHeader describes an ntfsclone image.
type NtfsHeader struct {
	Major, Minor int
	ClusterSize  int
	DeviceSize   int64
	Clusters     int64
	InUse        int64
}

// Ntfsclone reads an ntfsclone special image from a stream.
type Ntfsclone struct {
	Header NtfsHeader
	br     *bufio.Reader
	pos    int64 // bytes of the image read, for messages
	done   atomic.Int64
}

// NewNtfsclone reads the header of the ntfsclone image in r (already
// decompressed).
func NewNtfsclone(r io.Reader) (*Ntfsclone, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	b := make([]byte, ntfscloneHeaderSize)
	if _, err := io.ReadFull(br, b[:46]); err != nil {
		return nil, fmt.Errorf("%w: ntfsclone header: %v", ErrTruncated, err)
	}
	if string(b[:16]) != ntfscloneMagic {
		return nil, fmt.Errorf("%w: not an ntfsclone image (bad magic)", ErrFormat)
	}
	le := binary.LittleEndian
	h := NtfsHeader{Major: int(b[16]), Minor: int(b[17]), ClusterSize: int(le.Uint32(b[18:]))}
	if h.Major != ntfscloneMajor {
		return nil, fmt.Errorf("%w: ntfsclone image version %d.%d (this reader knows version 10, written since ntfsprogs 2.0; restore it with ntfsclone --restore-image)", ErrFormat, h.Major, h.Minor)
	}
	if _, err := io.ReadFull(br, b[46:50]); err != nil {
		return nil, fmt.Errorf("%w: ntfsclone header: %v", ErrTruncated, err)
	}
	dev, nr, inuse := le.Uint64(b[22:]), le.Uint64(b[30:]), le.Uint64(b[38:])
	off := int64(le.Uint32(b[46:]))
	switch {
	case h.ClusterSize <= 0 || h.ClusterSize > 64<<20 || h.ClusterSize&(h.ClusterSize-1) != 0:
		return nil, fmt.Errorf("%w: ntfsclone cluster size %d", ErrFormat, h.ClusterSize)
	case dev > 1<<62 || nr > 1<<62 || inuse > nr+1:
		return nil, fmt.Errorf("%w: ntfsclone header: device %d bytes, %d clusters, %d in use", ErrFormat, dev, nr, inuse)
	case nr*uint64(h.ClusterSize) > dev:
		return nil, fmt.Errorf("%w: ntfsclone header: %d clusters of %d bytes do not fit the %d-byte device", ErrFormat, nr, h.ClusterSize, dev)
	case off < ntfscloneHeaderSize || off > 1<<20:
		return nil, fmt.Errorf("%w: ntfsclone data offset %d", ErrFormat, off)
	}
	h.DeviceSize, h.Clusters, h.InUse = int64(dev), int64(nr), int64(inuse)
	if _, err := br.Discard(int(off - ntfscloneHeaderSize)); err != nil {
		return nil, fmt.Errorf("%w: ntfsclone header padding: %v", ErrTruncated, err)
	}
	return &Ntfsclone{Header: h, br: br, pos: off}, nil
}

// Done returns the data bytes handed out so far.
func (n *Ntfsclone) Done() int64 { return n.done.Load() }

// Data calls fn for the stored clusters in increasing offset, in runs of
// consecutive clusters (p is valid only during the call).
func (n *Ntfsclone) Data(ctx context.Context, fn func(off int64, p []byte) error) error {
	h := &n.Header
	cs := int64(h.ClusterSize)
	// Grow the buffer as clusters arrive, up to 16 MiB: the header's
	// count is only a claim.
	limit := max(cs, min(16<<20, (h.InUse+1)*cs))
	buf := make([]byte, min(limit, max(cs, 256<<10)))
	var lcn int64   // next cluster
	var start int64 // device offset of buf[0]
	var fill int64  // bytes in buf
	flush := func() error {
		if fill == 0 {
			return nil
		}
		if err := fn(start, buf[:fill]); err != nil {
			return err
		}
		n.done.Add(fill)
		fill = 0
		return ctx.Err()
	}
	var cmd [9]byte
	for lcn <= h.Clusters {
		c, err := n.br.ReadByte()
		if errors.Is(err, io.EOF) && lcn == h.Clusters {
			break // version 10.0: no backup boot sector stored
		}
		if err != nil {
			return fmt.Errorf("%w: ntfsclone command for cluster %d at image byte %d: %v", ErrTruncated, lcn, n.pos, err)
		}
		n.pos++
		switch c {
		case cmdGap:
			if _, err := io.ReadFull(n.br, cmd[1:]); err != nil {
				return fmt.Errorf("%w: ntfsclone gap at image byte %d: %v", ErrTruncated, n.pos-1, err)
			}
			n.pos += 8
			count := int64(binary.LittleEndian.Uint64(cmd[1:]))
			if count <= 0 || count > h.Clusters-lcn {
				return fmt.Errorf("%w: ntfsclone gap of %d clusters at cluster %d (image byte %d) leaves the %d-cluster volume",
					ErrFormat, count, lcn, n.pos-9, h.Clusters)
			}
			if err := flush(); err != nil {
				return err
			}
			lcn += count
		case cmdNext:
			size := min(cs, h.DeviceSize-lcn*cs)
			if size <= 0 {
				return fmt.Errorf("%w: ntfsclone cluster %d (image byte %d) lies past the %d-byte device", ErrFormat, lcn, n.pos-1, h.DeviceSize)
			}
			if fill+size > int64(len(buf)) && int64(len(buf)) < limit {
				buf = append(buf[:fill], make([]byte, min(limit, 2*int64(len(buf)))-fill)...)
			}
			if fill > 0 && (start+fill != lcn*cs || fill+size > int64(len(buf))) {
				if err := flush(); err != nil {
					return err
				}
			}
			if fill == 0 {
				start = lcn * cs
			}
			if _, err := io.ReadFull(n.br, buf[fill:fill+size]); err != nil {
				return fmt.Errorf("%w: ntfsclone cluster %d at image byte %d: %v", ErrTruncated, lcn, n.pos, err)
			}
			n.pos += size
			fill += size
			lcn++
		default:
			return fmt.Errorf("%w: ntfsclone: unknown command %d at image byte %d (cluster %d)", ErrFormat, c, n.pos-1, lcn)
		}
	}
	return flush()
}
