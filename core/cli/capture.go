package cli

import (
	"context"
	"crypto/ed25519"
	"flag"
	"fmt"

	"github.com/diskcast/diskcast/core/capture"
	"github.com/diskcast/diskcast/core/image"
	"github.com/diskcast/diskcast/core/progress"
)

var captureCommand = &command{
	name:    "capture",
	usage:   "[flags] SOURCE OUT.dci",
	summary: "capture a disk or partition (block device or image file) into a diskcast image",
	run:     runCapture,
}

func runCapture(ctx context.Context, e *env, fs *flag.FlagSet, args []string) error {
	flags := addImageFlags(fs, image.DefaultLevel, "compression level (zstd 1-22, gzip 1-9)")
	allowInUse := fs.Bool("allow-in-use", false, "capture even if a filesystem on SOURCE is mounted read-write (inconsistent image)")
	choice := fsFlags(fs)
	pos, err := parseArgs(fs, args, 2, 2)
	if err != nil {
		return err
	}
	opts, key, err := flags.options(pos[1])
	if err != nil {
		return err
	}
	analyze, stopPlugins, err := e.analyzer(ctx, pos[0], choice)
	if err != nil {
		return err
	}
	defer stopPlugins()
	mode := progress.ModeFor(e.stderrFile, *flags.json)
	out := e.stderr
	if mode == progress.JSON {
		out = e.stdout
	}
	var meter *progress.Meter
	req := capture.Request{
		Source:     pos[0],
		Output:     pos[1],
		Options:    opts,
		Sign:       key,
		Creator:    creator(),
		AllowInUse: *allowInUse,
		Analyze:    analyze,
		Warn:       func(msg string) { fmt.Fprintf(e.stderr, "warning: %s\n", msg) },
		Started: func(w *capture.Writer, total int64) {
			meter = progress.Start(out, mode, "capture", func() progress.Sample {
				s := w.Stats()
				return progress.Sample{Done: s.Position, Total: total, Extra: map[string]int64{"chunks": s.Chunks}}
			})
		},
	}
	res, err := capture.Run(ctx, req)
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
			"event": "captured", "image": pos[1], "id": h.ID.String(), "source": pos[0],
			"source_bytes": h.Source.Size, "data_bytes": s.DataBytes, "zero_bytes": s.ZeroBytes,
			"stored_bytes": s.StoredBytes, "file_bytes": res.FileSize, "chunks": s.Chunks,
			"seconds": secs, "signed": key != nil,
		})
	}
	fmt.Fprintf(e.stdout, "captured %s into %s (id %s)\n", pos[0], pos[1], h.ID)
	fmt.Fprintf(e.stdout, "  source %s (%s, %s), %d partition(s)\n", progress.Bytes(h.Source.Size), h.Source.Kind, h.Source.Table.Scheme, len(h.Source.Partitions))
	fmt.Fprintf(e.stdout, "  data %s in %d chunks, %s zero, image %s (%.1f%% of the source)\n",
		progress.Bytes(s.DataBytes), s.Chunks, progress.Bytes(s.ZeroBytes), progress.Bytes(res.FileSize), 100*float64(res.FileSize)/float64(max(h.Source.Size, 1)))
	fmt.Fprintf(e.stdout, "  %.2f s, %s of source, %s of data\n", secs, rate(h.Source.Size, secs), rate(s.DataBytes, secs))
	if key != nil {
		fmt.Fprintf(e.stdout, "  signed by %s\n", image.KeyFingerprint(key.Public().(ed25519.PublicKey)))
	}
	return nil
}
