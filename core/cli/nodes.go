package cli

import (
	"context"
	"flag"
	"fmt"
	"text/tabwriter"
	"time"
)

var nodesCommand = &command{
	name:    "nodes",
	usage:   "[NAME] [--json] [--history N] [--server URL]",
	summary: "list the daemon's nodes (configured, enrolled, discovered), or show one with its history",
	run:     runNodes,
}

func runNodes(ctx context.Context, e *env, fs *flag.FlagSet, args []string) error {
	jsonOut := fs.Bool("json", false, "print JSON")
	history := fs.Int("history", 20, "with NAME: how many history entries to show (0: all)")
	co := addClientFlags(fs)
	pos, err := parseArgs(fs, args, 0, 1)
	if err != nil {
		return err
	}
	c, err := co.client()
	if err != nil {
		return err
	}
	if len(pos) == 1 {
		d, err := c.Node(ctx, pos[0], *history)
		if err != nil {
			return err
		}
		if *jsonOut {
			return writeJSON(e.stdout, d)
		}
		fmt.Fprintf(e.stdout, "node %s\n  mac:        %s\n  origin:     %s\n", d.Name, d.MAC, d.Origin)
		for _, kv := range [][2]string{{"ip", d.IP}, {"disk", d.Disk}, {"last seen", apiAgo(d.LastSeen)}, {"last addr", d.LastAddr}} {
			if kv[1] != "" && kv[1] != "-" {
				fmt.Fprintf(e.stdout, "  %-11s %s\n", kv[0]+":", kv[1])
			}
		}
		for k, v := range d.Labels {
			fmt.Fprintf(e.stdout, "  label:      %s=%s\n", k, v)
		}
		if d.Session != "" {
			fmt.Fprintf(e.stdout, "  session:    %s (run %d): %s %s\n", d.Session, d.Run, d.State, d.Reason)
		}
		fmt.Fprintf(e.stdout, "\nhistory (%d entries):\n", len(d.History))
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tSESSION\tRUN\tSTATE\tBYTES\tREASON")
		for _, h := range d.History {
			run := "-"
			if h.Run > 0 {
				run = fmt.Sprint(h.Run)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", h.Time.Local().Format("2006-01-02 15:04:05"), orDash(h.Session), run, h.State, apiBytes(h.Bytes), h.Reason)
		}
		return tw.Flush()
	}
	nodes, err := c.Nodes(ctx)
	if err != nil {
		return err
	}
	if *jsonOut {
		return writeJSON(e.stdout, nodes)
	}
	if len(nodes) == 0 {
		fmt.Fprintln(e.stdout, "no nodes")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tMAC\tORIGIN\tSESSION\tSTATE\tLAST SEEN\tREASON")
	for _, n := range nodes {
		sess := "-"
		if n.Session != "" {
			sess = fmt.Sprintf("%s#%d", n.Session, n.Run)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.MAC, n.Origin, sess, orDash(n.State), apiAgo(n.LastSeen), n.Reason)
	}
	return tw.Flush()
}

// apiAgo says how long ago t was, "-" for never.
func apiAgo(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return t.Local().Format("2006-01-02")
}

// apiBytes prints a byte count in decimal units, as rates are.
func apiBytes(n int64) string {
	switch {
	case n <= 0:
		return "0"
	case n < 1e3:
		return fmt.Sprintf("%d B", n)
	case n < 1e6:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	case n < 1e9:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.2f GB", float64(n)/1e9)
}
