package cli

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/diskcast/diskcast/core/progress"
	"github.com/diskcast/diskcast/core/transfer"
	"github.com/diskcast/diskcast/sdk/transport"
)

var sendCommand = &command{
	name:    "send",
	usage:   "[flags] IMAGE.dci",
	summary: "multicast an image to any number of receivers (diskcast receive), without the orchestrator",
	run:     runSend,
}

func runSend(ctx context.Context, e *env, fs *flag.FlagSet, args []string) error {
	cast := addCastFlags(fs)
	rateFlag := fs.String("rate", "adaptive", "send rate cap in bits/s, as udp-sender's --max-bitrate (600m, 1G), or adaptive")
	minReceivers := fs.Int("min-receivers", 1, "start once this many receivers have joined")
	minWait := fs.Duration("min-wait", 0, "wait at least this long for receivers before starting")
	maxWait := fs.Duration("max-wait", 0, "start after this long with at least one receiver, even if fewer than --min-receivers joined (0: wait for them)")
	idle := fs.Duration("idle-timeout", 0, "give up when no receiver has been heard for this long (0: never)")
	budget := fs.Float64("straggler-budget", 0.10, "share of the image a receiver may have resent before it is cut off (negative: never)")
	httpAddr := fs.String("http", "", "also serve the image over HTTP on ADDR:PORT, for repair and for unicast receivers (diskcast receive --from)")
	pubkey := fs.String("pubkey", "", "require a valid signature by this public key")
	jsonOut := fs.Bool("json", false, "progress and summary as JSON lines on stdout")
	dirs := pluginDirFlag(fs)
	pos, err := parseArgs(fs, args, 1, 1)
	if err != nil {
		return err
	}
	capBytes, err := parseRate(*rateFlag)
	if err != nil {
		return err
	}
	if *minReceivers < 1 {
		return fmt.Errorf("%w: --min-receivers %d: at least 1", errUsage, *minReceivers)
	}
	session, _, err := cast.session("send", true)
	if err != nil {
		return err
	}
	p := session.Params
	p["rate"] = strconv.FormatInt(capBytes, 10)
	p["min_receivers"] = strconv.Itoa(*minReceivers)
	p["min_wait"] = minWait.String()
	p["max_wait"] = maxWait.String()
	p["idle_timeout"] = idle.String()
	p["straggler_budget"] = strconv.FormatFloat(*budget, 'g', -1, 64)

	img, err := openImage(pos[0], *pubkey)
	if err != nil {
		return err
	}
	defer img.Close()
	m := e.newManager(dirs)
	defer m.Close()
	tr, err := m.Transport(ctx, "multicast")
	if err != nil {
		return err
	}
	src := transfer.NewSource(img.Reader)
	var latest atomic.Pointer[transport.Stats]
	src.OnProgress = func(st transport.Stats) { latest.Store(&st) }

	// The HTTP server runs beside the multicast send and stops with it.
	var httpDone sync.WaitGroup
	httpCtx, stopHTTP := context.WithCancel(ctx)
	defer func() { stopHTTP(); httpDone.Wait() }()
	repair := ""
	if *httpAddr != "" {
		web, err := m.Transport(ctx, "http")
		if err != nil {
			return err
		}
		errc := make(chan error, 1)
		httpDone.Go(func() {
			_, err := web.Send(httpCtx, transport.Session{ID: "send", Params: map[string]string{"listen": *httpAddr, "image": "image"}}, src)
			errc <- err
		})
		select {
		case err := <-errc:
			if err != nil {
				return fmt.Errorf("--http %s: %w", *httpAddr, err)
			}
		case <-time.After(200 * time.Millisecond): // listening
		}
		repair = " --repair-from http://" + *httpAddr
	}

	total := img.Size()
	fmt.Fprintf(e.stderr, "sending %s (image %s, %d chunks, %s) on %s, waiting for %d receiver(s); on each receiver run:\n  diskcast receive --target DEVICE --group %s --session-key %s%s%s\n",
		pos[0], img.Header.ID, len(img.Index.Chunks), progress.Bytes(total), p["group"], *minReceivers, p["group"], p["key"], ifaceHint(p), repair)

	pmode := progress.ModeFor(e.stderrFile, *jsonOut)
	out := e.stderr
	if pmode == progress.JSON {
		out = e.stdout
	}
	meter := progress.Start(out, pmode, "send", func() progress.Sample {
		st := latest.Load()
		if st == nil {
			return progress.Sample{Total: total}
		}
		return progress.Sample{Done: st.Bytes, Total: total, Extra: map[string]int64{
			"receivers": st.Receivers, "complete": st.Completed, "resent_MB": st.RetransmittedBytes >> 20, "rate_MBps": st.Rate >> 20,
		}}
	})
	st, err := tr.Send(ctx, session, src)
	meter.Stop()
	if err != nil {
		return err
	}
	if *httpAddr != "" && st.Counters["cut_off"] > 0 {
		// Receivers cut off as stragglers are still fetching what they
		// miss from the HTTP server: serve until they have been quiet.
		fmt.Fprintf(e.stderr, "serving %d straggler(s) over HTTP until no chunk was asked for %v\n", st.Counters["cut_off"], stragglerQuiet)
		for src.IdleFor() < stragglerQuiet && ctx.Err() == nil {
			time.Sleep(time.Second)
		}
	}
	resent := 0.0
	if st.Bytes > 0 {
		resent = 100 * float64(st.RetransmittedBytes) / float64(st.Bytes)
	}
	secs := st.Elapsed.Seconds()
	if *jsonOut {
		return writeJSON(e.stdout, map[string]any{
			"event": "sent", "image": pos[0], "id": img.Header.ID.String(), "receivers": st.Receivers, "completed": st.Completed,
			"cut_off": st.Counters["cut_off"], "left": st.Counters["forgotten"], "bytes": st.Bytes, "retransmitted_bytes": st.RetransmittedBytes,
			"seconds": secs, "counters": st.Counters,
		})
	}
	fmt.Fprintf(e.stdout, "sent %s to %d receiver(s): %d complete, %d cut off as stragglers, %d left early; %s in %.2f s (%s), %.1f%% resent, %d requests\n",
		pos[0], st.Receivers, st.Completed, st.Counters["cut_off"], st.Counters["forgotten"], progress.Bytes(st.Bytes), secs, rate(st.Bytes, secs), resent, st.Counters["requests"])
	if st.Completed == 0 {
		return fmt.Errorf("no receiver completed")
	}
	return nil
}

// stragglerQuiet is how long the HTTP server of a send stays up after its
// last chunk request once the multicast session has ended.
const stragglerQuiet = 10 * time.Second

func ifaceHint(p map[string]string) string {
	if p["host_only"] == "true" {
		return " --host-only"
	}
	return ""
}
