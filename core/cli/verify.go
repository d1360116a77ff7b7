package cli

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/diskcast/diskcast/core/image"
	"github.com/diskcast/diskcast/core/progress"
)

var verifyCommand = &command{
	name:    "verify",
	usage:   "[--pubkey KEY] [--decode] IMAGE.dci",
	summary: "check the header, index, every chunk's SHA-256 and the signature",
	run:     runVerify,
}

func runVerify(ctx context.Context, e *env, fs *flag.FlagSet, args []string) error {
	pubkey := fs.String("pubkey", "", "require a valid signature by this public key")
	decode := fs.Bool("decode", false, "also decompress every chunk and check its size")
	jsonOut := fs.Bool("json", false, "progress and summary as JSON lines on stdout")
	pos, err := parseArgs(fs, args, 1, 1)
	if err != nil {
		return err
	}
	begin := time.Now()
	img, err := openImage(pos[0], *pubkey)
	if err != nil {
		return err
	}
	defer img.Close()
	pmode := progress.ModeFor(e.stderrFile, *jsonOut)
	out := e.stderr
	if pmode == progress.JSON {
		out = e.stdout
	}
	var done atomic.Int64
	total := img.Index.StoredBytes()
	meter := progress.Start(out, pmode, "verify", func() progress.Sample { return progress.Sample{Done: done.Load(), Total: total} })
	bad := verifyChunks(ctx, img.Reader, *decode, &done)
	meter.Stop()
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, err := range bad {
		fmt.Fprintf(e.stderr, "%s: %v\n", pos[0], err)
	}
	if len(bad) > 0 {
		return fmt.Errorf("%s: %d of %d chunks are corrupt; do not deploy this image", pos[0], len(bad), len(img.Index.Chunks))
	}
	signature := "unsigned"
	if img.Trailer.Signed() {
		signature = "valid, by " + image.KeyFingerprint(img.Trailer.PublicKey[:])
	}
	secs := time.Since(begin).Seconds()
	if *jsonOut {
		return writeJSON(e.stdout, map[string]any{"event": "verified", "image": pos[0], "chunks": len(img.Index.Chunks), "stored_bytes": total, "signature": signature, "seconds": secs})
	}
	fmt.Fprintf(e.stdout, "%s: OK: header, index and %d chunks (%s) verified in %.2f s; signature %s\n",
		pos[0], len(img.Index.Chunks), progress.Bytes(total), secs, signature)
	return nil
}

// verifyChunks checks every chunk on all cores and returns the failures,
// in chunk order.
func verifyChunks(ctx context.Context, r *image.Reader, decode bool, done *atomic.Int64) []error {
	n := len(r.Index.Chunks)
	errs := make([]error, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Go(func() {
			dec := image.NewDecoder()
			var buf, raw []byte
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				p, err := r.ReadPayload(i, buf)
				if err == nil {
					buf = p
					if decode {
						c := &r.Index.Chunks[i]
						raw, err = dec.Decode(raw, c.Codec, p, int(c.RawSize))
						if err != nil {
							err = fmt.Errorf("chunk %d: %w", i, err)
						}
					}
				}
				errs[i] = err
				done.Add(int64(r.Index.Chunks[i].StoredSize))
			}
		})
	}
	wg.Wait()
	var bad []error
	for _, err := range errs {
		if err != nil {
			bad = append(bad, err)
		}
	}
	return bad
}
