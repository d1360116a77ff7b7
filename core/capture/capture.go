// Package capture turns a disk or partition into a diskcast image: it reads
// the partition table, asks a filesystem analyzer (or falls back to raw)
// which bytes of each partition matter, reads those, and streams them
// through a parallel compress-and-hash pipeline into an image file.
package capture

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/diskcast/diskcast/core/device"
	"github.com/diskcast/diskcast/core/disk"
	"github.com/diskcast/diskcast/core/image"
)

// ErrInUse is returned for a source with a filesystem mounted read-write.
var ErrInUse = errors.New("capture: source is in use")

// Analysis says which bytes of a partition to capture.
type Analysis struct {
	FSType  string
	Handler string
	// Extents calls emit for each used range, relative to the partition
	// start, in increasing order.
	Extents func(ctx context.Context, emit func(off, length int64) error) error
}

// Analyzer inspects a partition (size bytes at off in r). It returns nil
// when it does not recognise the filesystem, so the partition is captured
// raw.
type Analyzer func(ctx context.Context, r io.ReaderAt, off, size int64) (*Analysis, error)

// Request describes one capture.
type Request struct {
	Source  string
	Output  string
	Options Options
	Sign    ed25519.PrivateKey // nil: unsigned
	Analyze Analyzer           // nil: every partition raw
	Creator string
	// Started is called once the source is open, with the writer whose
	// Stats report progress (InBytes of total source bytes).
	Started func(w *Writer, total int64)
	// Warn receives operator-facing warnings (e.g. a partition captured raw).
	Warn func(msg string)
	// AllowInUse captures a device even when a filesystem on it is
	// mounted read-write (the image may then be inconsistent).
	AllowInUse bool
}

// Result summarises a finished capture.
type Result struct {
	Header   *image.Header
	Stats    Stats
	FileSize int64
	Elapsed  time.Duration
}

// segment is a stretch of the source captured one way.
type segment struct {
	start, size int64
	part        int       // index into header partitions, -1 for table areas and gaps
	analysis    *Analysis // nil: raw
}

// Run captures req.Source into req.Output. The output appears only when
// the capture succeeded; a failed capture leaves nothing behind.
func Run(ctx context.Context, req Request) (*Result, error) {
	begin := time.Now()
	opts := req.Options.withDefaults()
	src, err := device.Open(req.Source, false)
	if err != nil {
		return nil, fmt.Errorf("capture: open source: %w", err)
	}
	defer src.Close()
	if use, err := device.InUse(req.Source); err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	} else if use.What != "" && !use.ReadOnly {
		if !req.AllowInUse {
			return nil, fmt.Errorf("capture %s: %w: %s; unmount it (or remount it read-only) first", req.Source, ErrInUse, use.What)
		}
		warn(req, "%s: %s; the image may be inconsistent", req.Source, use.What)
	}
	hdr, segs, err := describe(src, opts, req)
	if err != nil {
		return nil, fmt.Errorf("capture %s: %w", req.Source, err)
	}

	// Probe every partition before writing the header, which names the
	// handler of each.
	for i := range segs {
		if err := analyze(ctx, src, hdr, &segs[i], req); err != nil {
			return nil, fmt.Errorf("capture %s: %w", req.Source, err)
		}
	}

	tmp := req.Output + ".partial"
	out, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("capture: create output: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			out.Close()
			os.Remove(tmp)
		}
	}()
	iw, err := image.NewWriter(out, hdr)
	if err != nil {
		return nil, err
	}
	w, err := NewWriter(ctx, iw, opts)
	if err != nil {
		return nil, err
	}
	if req.Started != nil {
		req.Started(w, src.Size)
	}
	c := &capturer{src: src, hdr: hdr, req: req, r: newReader(ctx, src, w)}
	for _, s := range segs {
		if err = c.segment(ctx, s); err != nil {
			break
		}
	}
	if rerr := c.r.close(); err == nil {
		err = rerr
	}
	stats, cerr := w.Close()
	if err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("capture %s: %w", req.Source, err)
	}
	countUsed(hdr, iw.Index())
	if _, err := iw.Finish(hdr, req.Sign); err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	if err := out.Sync(); err != nil {
		return nil, fmt.Errorf("capture: sync output: %w", err)
	}
	st, err := out.Stat()
	if err != nil {
		return nil, err
	}
	if err := out.Close(); err != nil {
		return nil, fmt.Errorf("capture: close output: %w", err)
	}
	if err := os.Rename(tmp, req.Output); err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	ok = true
	return &Result{Header: hdr, Stats: stats, FileSize: st.Size(), Elapsed: time.Since(begin)}, nil
}

// describe builds the header and the capture plan of a source.
func describe(src *device.Device, opts Options, req Request) (*image.Header, []segment, error) {
	hdr := &image.Header{
		ID:        image.NewID(),
		Created:   time.Now().UTC(),
		Codec:     opts.Codec,
		Level:     opts.Level,
		ChunkSize: opts.ChunkSize,
		Creator:   req.Creator,
		Source: image.Source{
			Name:       src.Path,
			Size:       src.Size,
			SectorSize: src.SectorSize,
		},
	}
	// A block device knows its logical sector size; an image file does
	// not, so the GPT signature's position decides.
	var layout *disk.Layout
	var err error
	if src.Block {
		layout, err = disk.Read(src, src.Size, src.SectorSize)
	} else {
		layout, err = disk.ReadAuto(src, src.Size)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("partition table: %w", err)
	}
	for _, w := range layout.Warnings {
		warn(req, "partition table: %s", w)
	}
	if layout.Scheme == disk.SchemeNone {
		hdr.Source.Kind = image.SourcePartition
		hdr.Source.Table.Scheme = string(disk.SchemeNone)
		hdr.Source.Partitions = []image.Partition{{Number: 0, Start: 0, Size: src.Size}}
		return hdr, []segment{{start: 0, size: src.Size, part: 0}}, nil
	}
	hdr.Source.Kind = image.SourceDisk
	hdr.Source.SectorSize = layout.SectorSize
	hdr.Source.Table = image.Table{Scheme: string(layout.Scheme), DiskGUID: layout.DiskGUID}
	for _, a := range layout.Areas {
		data := make([]byte, a.Length)
		if _, err := src.ReadAt(data, a.Offset); err != nil {
			return nil, nil, fmt.Errorf("read %s at %d: %w", a.What, a.Offset, err)
		}
		hdr.Source.Table.Areas = append(hdr.Source.Table.Areas, image.TableArea{Offset: a.Offset, Data: data})
	}
	var segs []segment
	for i, p := range layout.Partitions {
		hdr.Source.Partitions = append(hdr.Source.Partitions, image.Partition{
			Number: p.Number, Start: p.Start, Size: p.Size, Type: p.Type, TypeName: p.TypeName,
			GUID: p.GUID, Name: p.Name, Attributes: p.Attributes,
		})
		segs = append(segs, segment{start: p.Start, size: p.Size, part: i})
	}
	// Everything outside the partitions (tables, boot loader areas, gaps,
	// extended-partition chains, the backup GPT) is copied raw.
	for _, u := range layout.Unused() {
		segs = append(segs, segment{start: u.Offset, size: u.Length, part: -1})
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].start < segs[j].start })
	return hdr, segs, nil
}

// capturer walks the plan of one capture.
type capturer struct {
	src *device.Device
	hdr *image.Header
	req Request
	r   *reader
}

// analyze decides how a partition segment is captured and records it in
// the header.
func analyze(ctx context.Context, src *device.Device, hdr *image.Header, s *segment, req Request) error {
	if s.part < 0 {
		return nil
	}
	p := &hdr.Source.Partitions[s.part]
	p.Handler = "raw"
	if req.Analyze == nil {
		return nil
	}
	a, err := req.Analyze(ctx, src, s.start, s.size)
	if err := ctx.Err(); err != nil {
		return err
	}
	switch {
	case err != nil:
		warn(req, "%s: %v; capturing it raw (zero blocks skipped)", partName(hdr, s.part), err)
	case a == nil:
		warn(req, "%s: no filesystem recognised; capturing it raw (zero blocks skipped)", partName(hdr, s.part))
	default:
		s.analysis = a
		p.FSType, p.Handler = a.FSType, a.Handler
	}
	return nil
}

func warn(req Request, format string, args ...any) {
	if req.Warn != nil {
		req.Warn(fmt.Sprintf(format, args...))
	}
}

func (c *capturer) segment(ctx context.Context, s segment) error {
	if s.part < 0 {
		return c.r.copyRange(s.start, s.size)
	}
	a := s.analysis
	if a == nil {
		return c.r.copyRange(s.start, s.size)
	}
	// Free space between used extents is neither stored nor zeroed: a
	// restore leaves it as the target has it.
	end := int64(0)
	return a.Extents(ctx, func(off, length int64) error {
		if off < end || length < 0 || off+length > s.size {
			return fmt.Errorf("%s: %s reported extent %d+%d (after one ending at %d) outside the %d-byte partition or out of order",
				partName(c.hdr, s.part), a.Handler, off, length, end, s.size)
		}
		end = off + length
		return c.r.copyRange(s.start+off, length)
	})
}

// countUsed sets each partition's used bytes: the chunk data that falls
// inside it (a run may continue across a partition boundary).
func countUsed(hdr *image.Header, ix *image.Index) {
	parts := hdr.Source.Partitions
	for i := range parts {
		parts[i].UsedBytes = 0
	}
	for _, c := range ix.Chunks {
		for _, r := range c.Runs {
			for i := range parts {
				lo, hi := max(r.Offset, parts[i].Start), min(r.End(), parts[i].Start+parts[i].Size)
				if hi > lo {
					parts[i].UsedBytes += hi - lo
				}
			}
		}
	}
}

func partName(hdr *image.Header, i int) string {
	if hdr.Source.Kind == image.SourcePartition {
		return "source"
	}
	return fmt.Sprintf("partition %d", hdr.Source.Partitions[i].Number)
}
