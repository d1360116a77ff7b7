package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/diskcast/diskcast/core/capture"
	"github.com/diskcast/diskcast/core/clonezilla"
	"github.com/diskcast/diskcast/core/partclone"
	"github.com/diskcast/diskcast/core/progress"
)

var importCommand = &command{
	name:    "import",
	usage:   "[flags] CLONEZILLA_DIR[:NAME] | IMAGE_FILE  OUT.dci",
	summary: "turn a Clonezilla image directory, a partclone or ntfsclone image, or a (compressed) raw disk image into a diskcast image",
	run:     runImport,
}

func runImport(ctx context.Context, e *env, fs *flag.FlagSet, args []string) error {
	// Level 1, not capture's 3: an import recompresses every used byte of
	// an image that was already compressed once, and should keep pace with
	// partclone's own restore of it; the image is a few percent larger.
	flags := addImageFlags(fs, 1, "compression level (zstd 1-22, gzip 1-9); 3 or more for a smaller image")
	selectName := fs.String("select", "", "disk or partition of a Clonezilla directory (sda, nvme0n1, sdb2); same as DIR:NAME")
	pos, err := parseArgs(fs, args, 2, 2)
	if err != nil {
		return err
	}
	src, out := pos[0], pos[1]
	copts, key, err := flags.options(out)
	if err != nil {
		return err
	}
	pmode := progress.ModeFor(e.stderrFile, *flags.json)
	pout := e.stderr
	if pmode == progress.JSON {
		pout = e.stdout
	}
	warn := func(msg string) { fmt.Fprintf(e.stderr, "warning: %s\n", msg) }

	plan, raw, err := planForeign(ctx, src, *selectName)
	if err != nil {
		return err
	}
	var meter *progress.Meter
	var res *clonezilla.Result
	switch {
	case plan != nil:
		for _, w := range plan.Warnings {
			warn(w)
		}
		res, err = clonezilla.Import(ctx, plan, out, clonezilla.ImportOptions{
			Capture: copts, Sign: key, Creator: creator(),
			Started: func(p *clonezilla.Progress, w *capture.Writer) {
				meter = progress.Start(pout, pmode, "import", func() progress.Sample {
					return progress.Sample{Done: p.Done.Load(), Total: p.Total, Extra: map[string]int64{"chunks": w.Stats().Chunks}}
				})
			},
		})
	default:
		res, err = importRaw(ctx, raw, out, copts, key, warn, func(w *capture.Writer, total int64) {
			meter = progress.Start(pout, pmode, "import", func() progress.Sample {
				s := w.Stats()
				return progress.Sample{Done: s.Position, Total: total, Extra: map[string]int64{"chunks": s.Chunks}}
			})
		})
	}
	if meter != nil {
		meter.Stop()
	}
	if err != nil {
		return err
	}
	h, s := res.Header, res.Stats
	secs := res.Elapsed.Seconds()
	if *flags.json {
		return writeJSON(e.stdout, map[string]any{
			"event": "imported", "source": src, "image": out, "id": h.ID.String(), "kind": h.Source.Kind.String(),
			"source_bytes": h.Source.Size, "data_bytes": s.DataBytes, "zero_bytes": s.ZeroBytes,
			"stored_bytes": s.StoredBytes, "file_bytes": res.FileSize, "chunks": s.Chunks, "seconds": secs, "signed": key != nil,
		})
	}
	fmt.Fprintf(e.stdout, "imported %s into %s (id %s)\n", src, out, h.ID)
	fmt.Fprintf(e.stdout, "  source %s (%s, %s), %d partition(s)\n", progress.Bytes(h.Source.Size), h.Source.Kind, h.Source.Table.Scheme, len(h.Source.Partitions))
	fmt.Fprintf(e.stdout, "  data %s in %d chunks, %s zero, image %s\n", progress.Bytes(s.DataBytes), s.Chunks, progress.Bytes(s.ZeroBytes), progress.Bytes(res.FileSize))
	fmt.Fprintf(e.stdout, "  %.2f s, %s of data\n", secs, rate(s.DataBytes+s.ZeroBytes, secs))
	return nil
}

// rawSource is a plain or compressed raw disk or partition image.
type rawSource struct {
	path        string
	compression string
}

// planForeign works out what src is: a Clonezilla directory (DIR, or
// DIR:NAME picking a disk or partition), a partclone or ntfsclone image
// file (plan), or a raw image (raw). A diskcast image is an error.
func planForeign(ctx context.Context, src, name string) (*clonezilla.Plan, *rawSource, error) {
	dir, sel := splitSelect(src)
	if name != "" {
		sel = name
	}
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		p, err := clonezilla.OpenDir(ctx, dir, sel)
		return p, nil, err
	}
	if sel != "" {
		return nil, nil, fmt.Errorf("%w: %s is not a Clonezilla directory, so it has no disk or partition %q to pick", errUsage, dir, sel)
	}
	if isDCI(src) {
		return nil, nil, fmt.Errorf("%s is already a diskcast image", src)
	}
	p, err := clonezilla.OpenFile(ctx, src)
	if err == nil {
		return p, nil, nil
	}
	if !errors.Is(err, clonezilla.ErrFormat) {
		return nil, nil, err
	}
	pieces, err := partclone.Pieces(src)
	if err != nil {
		return nil, nil, err
	}
	s, err := partclone.OpenStream(pieces)
	if err != nil {
		return nil, nil, err
	}
	s.Close()
	return nil, &rawSource{path: src, compression: s.Compression}, nil
}

// splitSelect splits DIR:NAME when DIR is a directory and the whole is not.
func splitSelect(src string) (string, string) {
	if _, err := os.Stat(src); err == nil {
		return src, ""
	}
	if i := strings.LastIndexByte(src, ':'); i > 0 {
		if st, err := os.Stat(src[:i]); err == nil && st.IsDir() {
			return src[:i], src[i+1:]
		}
	}
	return src, ""
}

func isDCI(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [8]byte
	n, _ := io.ReadFull(f, b[:])
	return n == 8 && bytes.Equal(b[:], []byte("\x89DCI\r\n\x1a\n"))
}

// importRaw captures a raw disk or partition image the way `diskcast
// capture` does; a compressed one is first decompressed into a sparse file
// beside the output (its partition table needs random access).
func importRaw(ctx context.Context, raw *rawSource, out string, opts capture.Options, key ed25519.PrivateKey,
	warn func(string), started func(*capture.Writer, int64)) (*clonezilla.Result, error) {
	source := raw.path
	if raw.compression != "none" {
		tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".raw-*")
		if err != nil {
			return nil, err
		}
		defer os.Remove(tmp.Name())
		tmp.Close()
		warn(fmt.Sprintf("%s is a %s-compressed raw image: decompressing it into %s first", raw.path, raw.compression, tmp.Name()))
		if err := decompressRaw(ctx, raw.path, tmp.Name()); err != nil {
			return nil, err
		}
		source = tmp.Name()
	}
	r, err := capture.Run(ctx, capture.Request{
		Source: source, Output: out, Options: opts, Sign: key, Creator: creator(), Warn: warn, Started: started,
	})
	if err != nil {
		return nil, err
	}
	r.Header.Source.Name = raw.path
	return &clonezilla.Result{Header: r.Header, Stats: r.Stats, FileSize: r.FileSize, Elapsed: r.Elapsed}, nil
}

// decompressRaw writes the decompressed raw image at src into the file dst
// (sparse: all-zero blocks are skipped).
func decompressRaw(ctx context.Context, src, dst string) error {
	_, err := clonezilla.RestoreRaw(ctx, src, dst)
	return err
}

// foreignOptions are the restore flags that apply to a foreign source.
type foreignOptions struct {
	json   bool
	pubkey string
	free   string
}

// restoreForeign restores src onto target when src is not a diskcast
// image: a Clonezilla directory (DIR or DIR:NAME), a partclone or ntfsclone
// image file, or a compressed raw image. It reports handled = false for
// anything else (a .dci, or a file it does not know), which the caller then
// opens as a diskcast image.
func restoreForeign(ctx context.Context, e *env, src, target string, opts foreignOptions) (handled bool, err error) {
	dir, sel := splitSelect(src)
	st, serr := os.Stat(dir)
	if serr != nil || isDCI(src) {
		return false, nil
	}
	var plan *clonezilla.Plan
	var rawPath string
	switch {
	case st.IsDir():
		if plan, err = clonezilla.OpenDir(ctx, dir, sel); err != nil {
			return true, err
		}
	default:
		p, raw, err := planForeign(ctx, src, "")
		if err != nil {
			if errors.Is(err, partclone.ErrNoFiles) {
				return false, nil
			}
			return true, err
		}
		if raw != nil && raw.compression == "none" {
			return false, nil // a plain file: the diskcast image reader says what is wrong with it
		}
		plan = p
		if raw != nil {
			rawPath = raw.path
		}
	}
	if opts.pubkey != "" {
		return true, fmt.Errorf("%w: --pubkey: %s is not a diskcast image and carries no signature", errUsage, src)
	}
	if opts.free != "" && opts.free != "keep" {
		return true, fmt.Errorf("%w: --free %s applies to diskcast images; import %s first (diskcast import) to use it", errUsage, opts.free, src)
	}
	pmode := progress.ModeFor(e.stderrFile, opts.json)
	pout := e.stderr
	if pmode == progress.JSON {
		pout = e.stdout
	}
	var meter *progress.Meter
	var res *clonezilla.Result
	if rawPath != "" {
		res, err = clonezilla.RestoreRaw(ctx, rawPath, target)
	} else {
		for _, w := range plan.Warnings {
			fmt.Fprintf(e.stderr, "warning: %s\n", w)
		}
		res, err = clonezilla.Restore(ctx, plan, target, clonezilla.RestoreOptions{
			Started: func(p *clonezilla.Progress) {
				meter = progress.Start(pout, pmode, "restore", func() progress.Sample {
					return progress.Sample{Done: p.Done.Load(), Total: p.Total}
				})
			},
		})
	}
	if meter != nil {
		meter.Stop()
	}
	if err != nil {
		return true, err
	}
	secs := res.Elapsed.Seconds()
	if opts.json {
		return true, writeJSON(e.stdout, map[string]any{
			"event": "restored", "image": src, "target": target, "data_bytes": res.DataBytes, "seconds": secs,
		})
	}
	fmt.Fprintf(e.stdout, "restored %s onto %s: %s written, %.2f s (%s)\n", src, target, progress.Bytes(res.DataBytes), secs, rate(res.DataBytes, secs))
	return true, nil
}
