// Package swap recognises Linux swap areas so that a capture copies only
// their header page: the rest of a swap area is scratch space that the
// kernel never reads before writing.
//
// Header page layout (union swap_header in the kernel's include/linux/swap.h),
// in the byte order of the machine that ran mkswap:
//
//	0x000 [1024]  boot bits (left alone; may hold a disk label)
//	0x400 u32     version (1)
//	0x404 u32     last_page: index of the last usable page
//	0x408 u32     nr_badpages
//	0x40C [16]    uuid
//	0x41C [16]    volume name (label)
//	0x42C u32[]   bad page list
//	pagesize-10   "SWAPSPACE2" (version 1) or "SWAP-SPACE" (version 0)
//
// A hibernation image replaces the signature with one of its own
// ("S1SUSPEND", ...); such an area is reported with a note starting
// "capture raw: " and UsedBlocks 0, and UsedExtents refuses it with
// ErrUnsupported: the image spans the area, and restoring only its header
// would leave the target trying to resume from a broken image.
package swap

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

var (
	// ErrNotFound means no swap signature was found.
	ErrNotFound = errors.New("swap: no swap signature")
	// ErrCorrupt means the signature is there but the header is not valid.
	ErrCorrupt = errors.New("swap: corrupt header")
	// ErrTruncated means the header describes more pages than the device has.
	ErrTruncated = errors.New("swap: swap area extends past end of device")
	// ErrUnsupported means the area holds something other than plain swap
	// (a hibernation image); the caller should copy it raw.
	ErrUnsupported = errors.New("swap: unsupported swap area, copy raw")
)

// Info describes a probed filesystem.
type Info struct {
	FSType      string // "swap"
	BlockSize   int64  // page size of the swap header
	Blocks      uint64 // pages in the swap area, header included
	UsedBlocks  uint64 // blocks that UsedExtents reports: the header page
	Label, UUID string
	Notes       []string
}

// pageSizes are the page sizes Linux uses, in the order they are tried.
var pageSizes = []int64{4096, 8192, 16384, 32768, 65536}

const (
	sigLen      = 10
	versionOff  = 0x400
	lastPageOff = 0x404
	badPagesOff = 0x408
	uuidOff     = 0x40C
	labelOff    = 0x41C
	badListOff  = 0x42C
)

// Signatures that hibernation writes over the swap signature (the ones
// blkid knows).
var hibernationSigs = [][]byte{
	[]byte("S1SUSPEND"), []byte("S2SUSPEND"), []byte("ULSUSPEND"),
	[]byte("LINHIB0001"), []byte("\xed\xc3\x02\xe9\x98\x56\xe5\x0c"),
}

// Probe reports whether r (a partition or image of the given size) holds a
// Linux swap area. It returns an error wrapping ErrNotFound when it doesn't,
// and other errors when it does but the header is corrupt.
func Probe(r io.ReaderAt, size int64) (*Info, error) {
	sig := make([]byte, sigLen)
	for _, ps := range pageSizes {
		if size < ps {
			break
		}
		if err := readFull(r, sig, ps-sigLen); err != nil {
			return nil, fmt.Errorf("swap: read signature at byte %d: %w", ps-sigLen, err)
		}
		switch {
		case bytes.Equal(sig, []byte("SWAPSPACE2")):
			return probeV1(r, size, ps)
		case bytes.Equal(sig, []byte("SWAP-SPACE")):
			return &Info{
				FSType: "swap", BlockSize: ps, Blocks: uint64(size / ps), UsedBlocks: 1,
				Notes: []string{fmt.Sprintf("version 0 swap area, %d-byte pages", ps)},
			}, nil
		}
		for _, h := range hibernationSigs {
			if bytes.HasPrefix(sig, h) {
				return &Info{
					FSType: "swap", BlockSize: ps, Blocks: uint64(size / ps),
					Notes: []string{fmt.Sprintf("capture raw: holds a hibernation image (signature %q); or run mkswap on the source first", h)},
				}, nil
			}
		}
	}
	return nil, fmt.Errorf("%w (none at page size 4 KiB to 64 KiB)", ErrNotFound)
}

func probeV1(r io.ReaderAt, size, ps int64) (*Info, error) {
	hdr := make([]byte, badListOff)
	if err := readFull(r, hdr, 0); err != nil {
		return nil, fmt.Errorf("swap: read header: %w", err)
	}
	// mkswap writes in host byte order: the version tells which.
	var bo binary.ByteOrder = binary.LittleEndian
	switch v := binary.LittleEndian.Uint32(hdr[versionOff:]); {
	case v == 1:
	case binary.BigEndian.Uint32(hdr[versionOff:]) == 1:
		bo = binary.BigEndian
	default:
		return nil, fmt.Errorf("%w: SWAPSPACE2 signature with version %d (want 1) at byte %d", ErrCorrupt, v, versionOff)
	}
	lastPage := uint64(bo.Uint32(hdr[lastPageOff:]))
	badPages := uint64(bo.Uint32(hdr[badPagesOff:]))
	if lastPage == 0 {
		return nil, fmt.Errorf("%w: last page is 0", ErrCorrupt)
	}
	if pages := uint64(size / ps); lastPage >= pages {
		return nil, fmt.Errorf("%w: header says %d pages of %d bytes, the device holds %d: truncated image or wrong partition size",
			ErrTruncated, lastPage+1, ps, pages)
	}
	if maxBad := uint64(ps-badListOff-sigLen) / 4; badPages > maxBad {
		return nil, fmt.Errorf("%w: %d bad pages listed, a %d-byte header holds %d", ErrCorrupt, badPages, ps, maxBad)
	}
	info := &Info{
		FSType:     "swap",
		BlockSize:  ps,
		Blocks:     lastPage + 1,
		UsedBlocks: 1,
		Label:      cString(hdr[labelOff : labelOff+16]),
		Notes:      []string{fmt.Sprintf("version 1 swap area, %d-byte pages", ps)},
	}
	if u := hdr[uuidOff : uuidOff+16]; !bytes.Equal(u, make([]byte, 16)) {
		info.UUID = fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	}
	if bo == binary.BigEndian {
		info.Notes = append(info.Notes, "big-endian header")
	}
	if badPages > 0 {
		info.Notes = append(info.Notes, fmt.Sprintf("%d bad pages listed", badPages))
	}
	return info, nil
}

// UsedExtents calls emit once, with the header page: the only part of a
// swap area a restore must write for the target to be usable as swap with
// the same label and UUID.
func UsedExtents(ctx context.Context, r io.ReaderAt, size int64, emit func(off, length int64) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	info, err := Probe(r, size)
	if err != nil {
		return err
	}
	if info.UsedBlocks == 0 {
		return fmt.Errorf("%w: %s", ErrUnsupported, strings.TrimPrefix(info.Notes[0], "capture raw: "))
	}
	return emit(0, info.BlockSize)
}

func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
