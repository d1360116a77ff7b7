package clonezilla

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"sort"
	"sync/atomic"
	"time"

	"github.com/diskcast/diskcast/core/capture"
	"github.com/diskcast/diskcast/core/device"
	"github.com/diskcast/diskcast/core/image"
	"github.com/diskcast/diskcast/core/partclone"
)

// Progress counts the bytes a Restore or Import has written; safe to read
// while it runs.
type Progress struct {
	Done  atomic.Int64
	Total int64
}

// Result summarises a restore or an import.
type Result struct {
	DataBytes int64 // bytes written (restore) or taken in (import)
	Elapsed   time.Duration
	// Import only:
	Header   *image.Header
	Stats    capture.Stats
	FileSize int64
}

// step is one piece of a plan in device order: raw bytes or a partition.
type step struct {
	off  int64
	area *Area
	part *Part
}

func (p *Plan) steps() []step {
	var s []step
	for i := range p.Areas {
		s = append(s, step{off: p.Areas[i].Offset, area: &p.Areas[i]})
	}
	for i := range p.Parts {
		if p.Parts[i].Format != "" {
			s = append(s, step{off: p.Parts[i].Start, part: &p.Parts[i]})
		}
	}
	sort.SliceStable(s, func(i, j int) bool { return s[i].off < s[j].off })
	return s
}

// feed hands every byte of the plan to fn in increasing device offset.
func (p *Plan) feed(ctx context.Context, prog *Progress, fn func(off int64, b []byte) error, partBegin, partDone func(pt *Part)) error {
	for _, s := range p.steps() {
		if s.area != nil {
			if err := fn(s.off, s.area.Data); err != nil {
				return fmt.Errorf("%s: %w", s.area.What, err)
			}
			prog.Done.Add(int64(len(s.area.Data)))
			continue
		}
		pt := s.part
		if partBegin != nil {
			partBegin(pt)
		}
		o, err := openImage(pt.Files[0])
		if err != nil {
			return fmt.Errorf("partition %s: %w", pt.Name, err)
		}
		if rd, ok := o.data.(*rawData); ok {
			rd.limit = pt.Size
		}
		err = o.data.Data(ctx, func(off int64, b []byte) error {
			if off+int64(len(b)) > pt.Size {
				return fmt.Errorf("%w: data at bytes %d-%d of a %d-byte partition", ErrOutside, off, off+int64(len(b))-1, pt.Size)
			}
			if err := fn(pt.Start+off, b); err != nil {
				return err
			}
			prog.Done.Add(int64(len(b)))
			return nil
		})
		o.Close()
		if err != nil {
			return fmt.Errorf("partition %s (%s): %w", pt.Name, pt.Files[0], err)
		}
		if partDone != nil {
			partDone(pt)
		}
	}
	return nil
}

// RestoreOptions tune a direct restore.
type RestoreOptions struct {
	// Started is called once the target is open.
	Started func(p *Progress)
}

// Restore writes the plan straight onto target (a block device or a file,
// created when missing), as Clonezilla's own restore would: only the bytes
// the images hold are written; the rest of the target is left as it is. A
// block device smaller than the source is refused before anything is
// written; a file grows to the source size.
func Restore(ctx context.Context, p *Plan, target string, opts RestoreOptions) (*Result, error) {
	begin := time.Now()
	dev, created, err := device.Create(target)
	if err != nil {
		return nil, fmt.Errorf("clonezilla: open target: %w", err)
	}
	defer dev.Close()
	if dev.Block && dev.Size < p.Size {
		return nil, fmt.Errorf("%w: %s has %d bytes, the %s %s needs %d", ErrTooSmall, target, dev.Size, p.Kind, p.Name, p.Size)
	}
	if err := dev.Grow(p.Size); err != nil {
		return nil, fmt.Errorf("clonezilla: grow %s: %w", target, err)
	}
	prog := &Progress{Total: p.Total()}
	if opts.Started != nil {
		opts.Started(prog)
	}
	err = p.feed(ctx, prog, writeFunc(dev, created), nil, nil)
	if err != nil {
		return nil, fmt.Errorf("clonezilla: restore %s onto %s (the target is incomplete): %w", p.Source, target, err)
	}
	if err := dev.Sync(); err != nil {
		return nil, fmt.Errorf("clonezilla: sync %s: %w", target, err)
	}
	return &Result{DataBytes: prog.Done.Load(), Elapsed: time.Since(begin)}, nil
}

// writeFunc writes device data onto dev. A new file reads as zero, so
// there all-zero blocks are skipped to keep it sparse (the bytes are the
// same).
func writeFunc(dev *device.Device, created bool) func(off int64, b []byte) error {
	zero := make([]byte, 4096)
	write := func(b []byte, off int64) error {
		if _, err := dev.WriteAt(b, off); err != nil {
			return fmt.Errorf("write %s at byte %d: %w", dev.Path, off, err)
		}
		return nil
	}
	return func(off int64, b []byte) error {
		if !created {
			return write(b, off)
		}
		for len(b) > 0 {
			n := min(len(b), 4096-int(off%4096))
			if !bytes.Equal(b[:n], zero[:n]) {
				for n < len(b) {
					k := min(4096, len(b)-n)
					if bytes.Equal(b[n:n+k], zero[:k]) {
						break
					}
					n += k
				}
				if err := write(b[:n], off); err != nil {
					return err
				}
			}
			off, b = off+int64(n), b[n:]
		}
		return nil
	}
}

// RestoreRaw writes the raw (dd) image at path, compressed or not, split or
// not, onto target byte for byte, as `zcat IMAGE | dd of=TARGET` would.
func RestoreRaw(ctx context.Context, path, target string) (*Result, error) {
	begin := time.Now()
	pieces, err := partclone.Pieces(path)
	if err != nil {
		return nil, err
	}
	s, err := partclone.OpenStream(pieces)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	dev, created, err := device.Create(target)
	if err != nil {
		return nil, fmt.Errorf("clonezilla: open target: %w", err)
	}
	defer dev.Close()
	rd := &rawData{r: s}
	write := writeFunc(dev, created)
	var end int64
	err = rd.Data(ctx, func(off int64, b []byte) error {
		if dev.Block && off+int64(len(b)) > dev.Size {
			return fmt.Errorf("%w: the image goes past the end of %s (%d bytes)", ErrTooSmall, target, dev.Size)
		}
		end = off + int64(len(b))
		return write(off, b)
	})
	if err == nil && !dev.Block {
		err = dev.Grow(end)
	}
	if err != nil {
		return nil, fmt.Errorf("clonezilla: restore %s onto %s (the target is incomplete): %w", path, target, err)
	}
	if err := dev.Sync(); err != nil {
		return nil, fmt.Errorf("clonezilla: sync %s: %w", target, err)
	}
	return &Result{DataBytes: end, Elapsed: time.Since(begin)}, nil
}

// ImportOptions tune an import.
type ImportOptions struct {
	Capture capture.Options
	Sign    ed25519.PrivateKey
	Creator string
	// Started is called once the output is open.
	Started func(p *Progress, w *capture.Writer)
}

// Header returns the diskcast image header that describes the plan.
func (p *Plan) Header(opts capture.Options, creator string) *image.Header {
	h := &image.Header{
		ID:        image.NewID(),
		Created:   time.Now().UTC(),
		Codec:     opts.Codec,
		Level:     opts.Level,
		ChunkSize: opts.ChunkSize,
		Creator:   creator,
		Source: image.Source{
			Name:       p.Source,
			Kind:       p.Kind,
			Size:       p.Size,
			SectorSize: p.SectorSize,
			Table:      p.Table,
		},
	}
	if h.ChunkSize == 0 {
		h.ChunkSize = capture.DefaultChunkSize
	}
	if h.Level == 0 {
		h.Level = image.DefaultLevel
	}
	for _, pt := range p.Parts {
		handler := pt.Format
		if handler == "" {
			handler = "none"
		}
		h.Source.Partitions = append(h.Source.Partitions, image.Partition{
			Number: pt.Number, Start: pt.Start, Size: pt.Size, Type: pt.Type, TypeName: pt.TypeName,
			GUID: pt.GUID, Name: pt.Label, Attributes: pt.Attributes, FSType: pt.FS, Handler: handler,
		})
	}
	return h
}

// Import writes the plan as a diskcast image at out: every byte a restore
// of the plan writes becomes chunk data (all-zero blocks zero extents) at
// its device offset, and the header lists the partitions. The output
// appears only when complete.
func Import(ctx context.Context, p *Plan, out string, opts ImportOptions) (*Result, error) {
	begin := time.Now()
	hdr := p.Header(opts.Capture, opts.Creator)
	tmp := out + ".partial"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("clonezilla: create output: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	iw, err := image.NewWriter(f, hdr)
	if err != nil {
		return nil, err
	}
	w, err := capture.NewWriter(ctx, iw, opts.Capture)
	if err != nil {
		return nil, err
	}
	prog := &Progress{Total: p.Total()}
	if opts.Started != nil {
		opts.Started(prog, w)
	}
	var before int64
	err = p.feed(ctx, prog, func(off int64, b []byte) error {
		return w.Write(off, b)
	}, func(*Part) {
		before = w.Stats().DataBytes
	}, func(pt *Part) {
		// Like capture: the non-zero bytes of the partition; its zero
		// blocks became zero extents.
		for i := range hdr.Source.Partitions {
			if hdr.Source.Partitions[i].Number == pt.Number && hdr.Source.Partitions[i].Start == pt.Start {
				hdr.Source.Partitions[i].UsedBytes = w.Stats().DataBytes - before
			}
		}
	})
	stats, cerr := w.Close()
	if err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("clonezilla: import %s: %w", p.Source, err)
	}
	if _, err := iw.Finish(hdr, opts.Sign); err != nil {
		return nil, fmt.Errorf("clonezilla: %w", err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("clonezilla: sync output: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("clonezilla: close output: %w", err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return nil, fmt.Errorf("clonezilla: %w", err)
	}
	ok = true
	return &Result{DataBytes: prog.Done.Load(), Elapsed: time.Since(begin), Header: hdr, Stats: stats, FileSize: st.Size()}, nil
}
