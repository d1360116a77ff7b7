package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/diskcast/diskcast/core/api"
	"github.com/diskcast/diskcast/core/orchestrator"
	"golang.org/x/term"
)

var sessionCommand = &command{
	name:    "session",
	usage:   "start|cancel|status|watch NAME | list  [--json] [--reason R] [--interval D] [--server URL]",
	summary: "start, cancel, show or watch (live per-node table) an imaging session on the daemon",
	run:     runSession,
}

func runSession(ctx context.Context, e *env, fs *flag.FlagSet, args []string) error {
	jsonOut := fs.Bool("json", false, "print JSON (watch: one status object per line)")
	reason := fs.String("reason", "", "cancel: why, recorded with every unfinished node")
	interval := fs.Duration("interval", time.Second, "watch: how often to refresh")
	co := addClientFlags(fs)
	pos, err := parseArgs(fs, args, 1, 2)
	if err != nil {
		return err
	}
	verb := pos[0]
	if verb == "list" {
		if len(pos) != 1 {
			return fmt.Errorf("%w: list takes no NAME", errUsage)
		}
	} else if len(pos) != 2 {
		return fmt.Errorf("%w: %s needs a session NAME", errUsage, verb)
	}
	if *interval <= 0 {
		return fmt.Errorf("%w: --interval must be positive", errUsage)
	}
	c, err := co.client()
	if err != nil {
		return err
	}
	switch verb {
	case "list":
		list, err := c.Sessions(ctx)
		if err != nil {
			return err
		}
		if *jsonOut {
			return writeJSON(e.stdout, list)
		}
		if len(list) == 0 {
			fmt.Fprintln(e.stdout, "no sessions")
			return nil
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSTATE\tRUN\tIMAGE\tTRANSPORT\tNODES\tPROGRESS\tORIGIN")
		for _, s := range list {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\t%s\t%s\n", s.Name, s.State, s.Run, s.Image, s.Transport.Kind, len(s.Members), countsText(s), s.Origin)
		}
		return tw.Flush()
	case "start":
		st, err := c.StartSession(ctx, pos[1])
		if err != nil {
			return fmt.Errorf("start %s: %w", pos[1], err)
		}
		if *jsonOut {
			return writeJSON(e.stdout, st)
		}
		fmt.Fprintf(e.stdout, "session %s: run %d started: image %s, %s transport, group %s, %d nodes\nwatch it with: diskcast session watch %s\n",
			st.Name, st.Run, st.Image, st.Transport.Kind, st.Transport.Group, len(st.Members), st.Name)
		return nil
	case "cancel":
		st, err := c.CancelSession(ctx, pos[1], *reason)
		if err != nil {
			return fmt.Errorf("cancel %s: %w", pos[1], err)
		}
		if *jsonOut {
			return writeJSON(e.stdout, st)
		}
		fmt.Fprintf(e.stdout, "session %s: run %d cancelled (%s)\n", st.Name, st.Run, countsText(st))
		return nil
	case "status":
		st, err := c.Session(ctx, pos[1])
		if err != nil {
			return err
		}
		if *jsonOut {
			return writeJSON(e.stdout, st)
		}
		_, err = e.stdout.Write(renderSession(st))
		return err
	case "watch":
		return watchSession(ctx, e, c, pos[1], *jsonOut, *interval)
	}
	return fmt.Errorf("%w: unknown action %q: use start, cancel, status, watch or list", errUsage, verb)
}

// countsText summarises members by state: "2 done, 1 receiving".
func countsText(s *orchestrator.SessionStatus) string {
	if s.Run == 0 {
		return "-"
	}
	order := []string{orchestrator.StateDone, orchestrator.StateFailed, orchestrator.StateVerifying, orchestrator.StateReceiving, orchestrator.StateBooting, orchestrator.StatePending}
	var parts []string
	for _, st := range order {
		if n := s.Counts[st]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, st))
		}
	}
	return strings.Join(parts, ", ")
}

// renderSession draws a session and its per-node table.
func renderSession(s *orchestrator.SessionStatus) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "session %s: %s", s.Name, s.State)
	if s.Run > 0 {
		fmt.Fprintf(&b, ", run %d", s.Run)
	}
	fmt.Fprintf(&b, ", image %s, %s transport", s.Image, s.Transport.Kind)
	if s.Transport.Group != "" {
		fmt.Fprintf(&b, " on %s", s.Transport.Group)
	}
	if !s.Started.IsZero() {
		end := time.Now()
		if !s.Ended.IsZero() {
			end = s.Ended
		}
		fmt.Fprintf(&b, ", %s", end.Sub(s.Started).Round(time.Second))
	}
	b.WriteByte('\n')
	if s.Reason != "" {
		fmt.Fprintf(&b, "  %s\n", s.Reason)
	}
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATE\tPROGRESS\tRATE\tREASON")
	for _, n := range s.Nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.Name, n.State, progressText(n.Bytes, n.Total), rateText(n.Rate, n.State), n.Reason)
	}
	tw.Flush()
	fmt.Fprintf(&b, "%d nodes: %s; %s", len(s.Members), countsText(s), progressText(s.Bytes, s.Total))
	if s.Rate > 0 {
		fmt.Fprintf(&b, ", %s", rateText(s.Rate, orchestrator.StateReceiving))
	}
	if s.Deploy != nil {
		fmt.Fprintf(&b, "; sent %s, retransmitted %s", apiBytes(s.Deploy.BytesSent), apiBytes(s.Deploy.BytesRetransmitted))
	}
	b.WriteByte('\n')
	return b.Bytes()
}

func progressText(done, total int64) string {
	if total <= 0 {
		if done > 0 {
			return apiBytes(done)
		}
		return "-"
	}
	return fmt.Sprintf("%s / %s %3.0f%%", apiBytes(done), apiBytes(total), 100*float64(done)/float64(total))
}

func rateText(r float64, state string) string {
	if r <= 0 || (state != orchestrator.StateReceiving && state != orchestrator.StateVerifying) {
		return "-"
	}
	return fmt.Sprintf("%.1f MB/s", r/1e6)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// watchSession follows a session until its run ends: on a terminal the
// table is redrawn in place; otherwise each node's state changes are
// printed as lines, with a summary now and then and the table at the end.
// It fails when the run ends failed or cancelled, so scripts can test it.
func watchSession(ctx context.Context, e *env, c *api.Client, name string, jsonOut bool, interval time.Duration) error {
	tty := !jsonOut && isTerminal(e.stdout)
	drawn := 0
	seen := map[string]string{}
	var lastSummary time.Time
	for first := true; ; first = false {
		st, err := c.Session(ctx, name)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if first && st.State == orchestrator.SessionIdle {
			return fmt.Errorf("session %s has never been started; start it with: diskcast session start %s", name, name)
		}
		running := st.State == orchestrator.SessionRunning
		switch {
		case jsonOut:
			line, _ := json.Marshal(st)
			fmt.Fprintf(e.stdout, "%s\n", line)
		case tty:
			out := renderSession(st)
			if drawn > 0 {
				fmt.Fprintf(e.stdout, "\x1b[%dF\x1b[J", drawn) // back to the table's first line, clear below
			}
			e.stdout.Write(out)
			drawn = bytes.Count(out, []byte{'\n'})
		default:
			now := time.Now()
			for _, n := range st.Nodes {
				key := n.State + "\x00" + n.Reason
				if seen[n.Name] != key {
					seen[n.Name] = key
					line := fmt.Sprintf("%s %s: %s", now.Format("15:04:05"), n.Name, n.State)
					if n.Total > 0 {
						line += " " + progressText(n.Bytes, n.Total)
					}
					if n.Reason != "" {
						line += ": " + n.Reason
					}
					fmt.Fprintln(e.stdout, line)
				}
			}
			if running && now.Sub(lastSummary) >= 10*time.Second {
				lastSummary = now
				fmt.Fprintf(e.stdout, "%s %s: %s; %s, %s\n", now.Format("15:04:05"), name, countsText(st), progressText(st.Bytes, st.Total), rateText(st.Rate, orchestrator.StateReceiving))
			}
			if !running {
				e.stdout.Write(renderSession(st))
			}
		}
		if !running {
			switch st.State {
			case orchestrator.SessionDone:
				return nil
			default:
				failed := slices.DeleteFunc(slices.Clone(st.Nodes), func(n orchestrator.NodeRunStatus) bool { return n.State != orchestrator.StateFailed })
				return fmt.Errorf("session %s %s (%d of %d nodes failed): %s", name, st.State, len(failed), len(st.Members), st.Reason)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}
