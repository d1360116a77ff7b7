package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"github.com/klauspost/pgzip"

	"github.com/diskcast/diskcast/core/image"
	"github.com/diskcast/diskcast/core/progress"
	"github.com/diskcast/diskcast/core/restore"
)

var exportCommand = &command{
	name:    "export",
	usage:   "[flags] IMAGE.dci OUT",
	summary: "write an image out as a plain disk or partition image: raw (sparse file) or raw.gz (gzip stream of every byte)",
	run:     runExport,
}

func runExport(ctx context.Context, e *env, fs *flag.FlagSet, args []string) error {
	format := fs.String("format", "raw", "raw (a sparse file) or raw.gz (gzip, every byte including zeros, so zcat | cmp works)")
	level := fs.Int("level", 1, "gzip level for raw.gz (1-9)")
	pubkey := fs.String("pubkey", "", "require a valid signature by this public key")
	workers := fs.Int("workers", 0, "decompression and compression workers (default: one per core)")
	force := fs.Bool("force", false, "overwrite OUT if it exists")
	jsonOut := fs.Bool("json", false, "progress and summary as JSON lines on stdout")
	pos, err := parseArgs(fs, args, 2, 2)
	if err != nil {
		return err
	}
	if *format != "raw" && *format != "raw.gz" {
		return fmt.Errorf("%w: --format %q: want raw or raw.gz", errUsage, *format)
	}
	if *level < 1 || *level > 9 {
		return fmt.Errorf("%w: --level %d: want 1-9", errUsage, *level)
	}
	out := pos[1]
	if _, err := os.Stat(out); err == nil {
		if !*force {
			return fmt.Errorf("%s exists; use --force to overwrite it", out)
		}
		if err := os.Remove(out); err != nil {
			return err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	img, err := openImage(pos[0], *pubkey)
	if err != nil {
		return err
	}
	defer img.Close()
	pmode := progress.ModeFor(e.stderrFile, *jsonOut)
	pout := e.stderr
	if pmode == progress.JSON {
		pout = e.stdout
	}
	begin := time.Now()
	var meter *progress.Meter
	var written int64
	switch *format {
	case "raw":
		// A raw export is a restore onto a new file: sparse, the source's
		// size, every chunk verified.
		tmp := out + ".partial"
		os.Remove(tmp)
		_, err = restore.Run(ctx, img.Reader, tmp, restore.Options{
			Workers: *workers,
			Started: func(t *restore.Target) {
				meter = progress.Start(pout, pmode, "export", func() progress.Sample {
					return progress.Sample{Done: t.Stats.DataBytes.Load() + t.Stats.ZeroBytes.Load(), Total: t.Total()}
				})
			},
		})
		if err == nil {
			err = os.Rename(tmp, out)
		} else {
			os.Remove(tmp)
		}
		written = img.Header.Source.Size
	case "raw.gz":
		var done progressCounter
		meter = progress.Start(pout, pmode, "export", func() progress.Sample {
			return progress.Sample{Done: done.n.Load(), Total: img.Header.Source.Size}
		})
		written, err = exportGzip(ctx, img.Reader, out, *level, *workers, &done)
	}
	if meter != nil {
		meter.Stop()
	}
	if err != nil {
		return err
	}
	secs := time.Since(begin).Seconds()
	st, _ := os.Stat(out)
	var size int64
	if st != nil {
		size = st.Size()
	}
	if *jsonOut {
		return writeJSON(e.stdout, map[string]any{
			"event": "exported", "image": pos[0], "output": out, "format": *format,
			"source_bytes": written, "file_bytes": size, "seconds": secs,
		})
	}
	fmt.Fprintf(e.stdout, "exported %s to %s (%s): %s of %s, file %s, %.2f s (%s)\n", pos[0], out, *format,
		progress.Bytes(written), img.Header.Source.Kind, progress.Bytes(size), secs, rate(written, secs))
	return nil
}

// progressCounter is the device offset an export has reached.
type progressCounter struct{ n atomic.Int64 }

// exportGzip writes every byte of the image's source, zeros included, as
// one gzip stream (pgzip, compressed on all cores). Chunks are read and
// decoded ahead in parallel and written in device order.
func exportGzip(ctx context.Context, img *image.Reader, out string, level, workers int, done *progressCounter) (int64, error) {
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	ix := img.Index
	order := make([]int, len(ix.Chunks))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		return int(ix.Chunks[a].Runs[0].Offset - ix.Chunks[b].Runs[0].Offset)
	})
	// Runs must not overlap across chunks: a stream has one byte per
	// offset.
	var last int64
	for _, i := range order {
		for _, r := range ix.Chunks[i].Runs {
			if r.Offset < last {
				return 0, fmt.Errorf("export: chunk %d: run at byte %d overlaps data ending at %d; the image cannot be written as one stream", i, r.Offset, last)
			}
			last = r.End()
		}
	}
	size := img.Header.Source.Size
	tmp := out + ".partial"
	f, err := os.Create(tmp)
	if err != nil {
		return 0, err
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	gz, err := pgzip.NewWriterLevel(f, level)
	if err != nil {
		return 0, err
	}
	if err := gz.SetConcurrency(1<<20, 2*workers); err != nil {
		return 0, err
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	type decoded struct {
		raw []byte
		err error
	}
	type job struct {
		chunk int
		out   chan decoded
	}
	jobs := make(chan job)
	queue := make(chan job, 2*workers) // decoded ahead, in order
	go func() {
		defer close(queue)
		defer close(jobs)
		for _, i := range order {
			j := job{chunk: i, out: make(chan decoded, 1)}
			select {
			case queue <- j:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- j:
			case <-ctx.Done():
				return
			}
		}
	}()
	for range workers {
		go func() {
			dec := image.NewDecoder()
			var payload []byte
			for j := range jobs {
				c := &ix.Chunks[j.chunk]
				p, err := img.ReadPayload(j.chunk, payload)
				if err != nil {
					j.out <- decoded{err: err}
					continue
				}
				payload = p
				raw, err := dec.Decode(nil, c.Codec, p, int(c.RawSize))
				if err != nil {
					err = fmt.Errorf("chunk %d: %w", j.chunk, err)
				}
				j.out <- decoded{raw: raw, err: err}
			}
		}()
	}
	zeros := make([]byte, 1<<20)
	var pos int64
	writeZeros := func(to int64) error {
		for pos < to {
			n := min(to-pos, int64(len(zeros)))
			if _, err := gz.Write(zeros[:n]); err != nil {
				return err
			}
			pos += n
			done.n.Store(pos)
		}
		return nil
	}
	for j := range queue {
		d := <-j.out
		if d.err != nil {
			cancel(d.err)
			return 0, fmt.Errorf("export: %w", d.err)
		}
		raw := d.raw
		for _, r := range ix.Chunks[j.chunk].Runs {
			if err := writeZeros(r.Offset); err != nil {
				return 0, err
			}
			if _, err := gz.Write(raw[:r.Length]); err != nil {
				return 0, err
			}
			raw = raw[r.Length:]
			pos += r.Length
			done.n.Store(pos)
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
	}
	if err := writeZeros(size); err != nil {
		return 0, err
	}
	if err := gz.Close(); err != nil {
		return 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp, out); err != nil {
		return 0, err
	}
	ok = true
	return size, nil
}
