// Package progress shows how a long operation advances: a bar that
// redraws in place on a terminal, or one JSON object per line for
// programs (--json).
package progress

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// Sample is one reading of an operation's progress.
type Sample struct {
	Done  int64
	Total int64
	// Extra holds operation-specific counters shown after the rate
	// ("chunks", "retransmits", ...).
	Extra map[string]int64
}

// Mode chooses how progress is shown.
type Mode int

const (
	Quiet Mode = iota
	Bar
	JSON
)

// ModeFor picks Bar on a terminal, JSON when asked, and Quiet otherwise.
func ModeFor(f *os.File, jsonLines bool) Mode {
	switch {
	case jsonLines:
		return JSON
	case term.IsTerminal(int(f.Fd())):
		return Bar
	}
	return Quiet
}

// Meter polls a sampler and reports until stopped.
type Meter struct {
	w      io.Writer
	mode   Mode
	phase  string
	sample func() Sample
	start  time.Time
	stop   chan struct{}
	wg     sync.WaitGroup
}

// Start begins reporting phase to w every interval (bar: 200 ms, JSON: 1 s).
func Start(w io.Writer, mode Mode, phase string, sample func() Sample) *Meter {
	m := &Meter{w: w, mode: mode, phase: phase, sample: sample, start: time.Now(), stop: make(chan struct{})}
	if mode == Quiet {
		return m
	}
	interval := 200 * time.Millisecond
	if mode == JSON {
		interval = time.Second
	}
	m.wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				m.report(false)
			case <-m.stop:
				return
			}
		}
	})
	return m
}

// Stop draws the final state and ends the line.
func (m *Meter) Stop() {
	if m.mode == Quiet {
		return
	}
	close(m.stop)
	m.wg.Wait()
	m.report(true)
}

func (m *Meter) report(final bool) {
	s := m.sample()
	elapsed := time.Since(m.start)
	rate := float64(s.Done) / max(elapsed.Seconds(), 1e-3)
	switch m.mode {
	case JSON:
		line := map[string]any{
			"phase": m.phase, "done": s.Done, "total": s.Total,
			"elapsed_s": round3(elapsed.Seconds()), "rate_bps": int64(rate), "final": final,
		}
		for k, v := range s.Extra {
			line[k] = v
		}
		b, _ := json.Marshal(line)
		fmt.Fprintf(m.w, "%s\n", b)
	case Bar:
		frac := 0.0
		if s.Total > 0 {
			frac = min(float64(s.Done)/float64(s.Total), 1)
		}
		const width = 28
		filled := int(frac * width)
		bar := strings.Repeat("=", filled) + strings.Repeat(" ", width-filled)
		eta := ""
		if rate > 0 && !final && s.Total > s.Done {
			eta = " eta " + time.Duration(float64(s.Total-s.Done)/rate*float64(time.Second)).Round(time.Second).String()
		}
		extra := ""
		for _, k := range slices.Sorted(maps.Keys(s.Extra)) {
			extra += fmt.Sprintf(" %s %d", k, s.Extra[k])
		}
		fmt.Fprintf(m.w, "\r%-8s [%s] %3.0f%% %s/%s %s/s%s%s\033[K", m.phase, bar, frac*100,
			Bytes(s.Done), Bytes(s.Total), Bytes(int64(rate)), extra, eta)
		if final {
			fmt.Fprintln(m.w)
		}
	}
}

func round3(f float64) float64 { return float64(int64(f*1000)) / 1000 }

// Bytes formats n with a binary unit.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
