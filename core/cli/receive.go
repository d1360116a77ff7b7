package cli

import (
	"context"
	"crypto/ed25519"
	"flag"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/diskcast/diskcast/core/image"
	"github.com/diskcast/diskcast/core/progress"
	"github.com/diskcast/diskcast/core/restore"
	"github.com/diskcast/diskcast/core/transfer"
	"github.com/diskcast/diskcast/sdk/transport"
)

var receiveCommand = &command{
	name:    "receive",
	usage:   "--target DEVICE|FILE [flags]",
	summary: "receive an image by multicast (or HTTP with --from) and write it, verifying every chunk before it is written",
	run:     runReceive,
}

func runReceive(ctx context.Context, e *env, fs *flag.FlagSet, args []string) error {
	target := fs.String("target", "", "the block device or file to write (required)")
	cast := addCastFlags(fs)
	from := fs.String("from", "", "fetch over HTTP from this image server instead of multicast, such as http://198.18.0.1:8080 (diskcast send --http)")
	repairFrom := fs.String("repair-from", "", "fetch the chunks multicast misses for this receiver from this image server")
	imageID := fs.String("image", "image", "the image's name on the server of --from or --repair-from")
	free := fs.String("free", "keep", "free space of the target: keep (leave as is), zero or discard")
	pubkey := fs.String("pubkey", "", "require a valid signature by this public key")
	senderTimeout := fs.Duration("sender-timeout", 0, "give up when the sender is silent this long (default 30s)")
	noResume := fs.Bool("no-resume", false, "start over instead of resuming an interrupted receive of the same image")
	fx := addFixUpFlags(fs)
	jsonOut := fs.Bool("json", false, "progress and summary as JSON lines on stdout")
	dirs := pluginDirFlag(fs)
	if _, err := parseArgs(fs, args, 0, 0); err != nil {
		return err
	}
	if *target == "" {
		return fmt.Errorf("%w: --target is required", errUsage)
	}
	if err := fx.check(); err != nil {
		return err
	}
	mode, err := restore.ParseFreeMode(*free)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	var pub ed25519.PublicKey
	if *pubkey != "" {
		if pub, err = image.ReadPublicKey(*pubkey); err != nil {
			return err
		}
	}
	journal := restore.DefaultJournal(*target)
	if *noResume {
		os.Remove(journal)
	}

	m := e.newManager(dirs)
	defer m.Close()
	name, session := "multicast", transport.Session{ID: "receive"}
	web := transport.Session{ID: "receive", Params: map[string]string{"url": *from, "image": *imageID}}
	if *from != "" {
		name, session = "http", web
	} else {
		if session, _, err = cast.session("receive", false); err != nil {
			return err
		}
		if *senderTimeout != 0 {
			session.Params["sender_timeout"] = senderTimeout.String()
		}
	}
	tr, err := m.Transport(ctx, name)
	if err != nil {
		return err
	}

	pmode := progress.ModeFor(e.stderrFile, *jsonOut)
	out := e.stderr
	if pmode == progress.JSON {
		out = e.stdout
	}
	var latest atomic.Pointer[transport.Stats]
	var meter *progress.Meter
	sink := &transfer.Sink{
		Target: *target, Journal: journal, PublicKey: pub, Free: mode,
		OnProgress: func(st transport.Stats) { latest.Store(&st) },
		FixUp:      func(h *image.Header) restore.FixUpFunc { return fx.fixUp(e, m, h) },
		Started: func(t *restore.Target, resumed int) {
			if resumed > 0 {
				fmt.Fprintf(e.stderr, "resuming: %d chunks are already on %s\n", resumed, *target)
			}
			meter = progress.Start(out, pmode, "receive", func() progress.Sample {
				s := progress.Sample{Done: t.Stats.DataBytes.Load(), Total: t.Meta.Index.DataBytes(), Extra: map[string]int64{"chunks": t.Stats.Chunks.Load()}}
				if st := latest.Load(); st != nil {
					s.Extra["dup_KB"] = st.DuplicateBytes >> 10
					s.Extra["lost"] = st.LostPackets
					s.Extra["repaired"] = st.RepairedChunks
				}
				return s
			})
		},
	}
	if *repairFrom != "" && *from == "" {
		web.Params["url"] = *repairFrom
		fetcher, err := m.Transport(ctx, "http")
		if err != nil {
			return err
		}
		sink.Fetch = func(ctx context.Context, i int64) ([]byte, error) { return fetcher.Fetch(ctx, web, i) }
		session.Params["repair"] = "true"
	}
	defer sink.Close()
	st, err := transfer.Receive(ctx, tr, session, sink)
	if meter != nil {
		meter.Stop()
	}
	if err != nil {
		return err
	}
	res := sink.Result()
	secs := st.Elapsed.Seconds()
	dup := 0.0
	if st.Bytes > 0 {
		dup = 100 * float64(st.DuplicateBytes) / float64(st.Bytes)
	}
	if *jsonOut {
		return writeJSON(e.stdout, map[string]any{
			"event": "received", "target": *target, "transport": name, "chunks": res.Chunks, "resumed_chunks": res.Resumed,
			"repaired_chunks": st.RepairedChunks, "data_bytes": res.DataBytes, "zero_bytes": res.ZeroBytes,
			"received_bytes": st.Bytes, "duplicate_bytes": st.DuplicateBytes, "lost_packets": st.LostPackets, "seconds": secs,
			"counters": st.Counters,
		})
	}
	fmt.Fprintf(e.stdout, "received onto %s by %s: %d chunks verified (%d resumed, %d repaired), %s written, %s zeroed, %.2f s (%s); %.1f%% duplicate, %d packets lost\n",
		*target, name, res.Chunks, res.Resumed, st.RepairedChunks, progress.Bytes(res.DataBytes), progress.Bytes(res.ZeroBytes), secs, rate(res.DataBytes, secs), dup, st.LostPackets)
	return nil
}
