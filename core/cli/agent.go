package cli

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/diskcast/diskcast/core/agent"
	"github.com/diskcast/diskcast/core/progress"
	"github.com/diskcast/diskcast/sdk/transport"
	"github.com/hashicorp/go-hclog"
)

var agentCommand = &command{
	name:    "agent",
	usage:   "[--server URL] [--mac MAC] [--interface NAME] [--once]",
	summary: "the node agent: ask the orchestrator for this node's work, receive and write the image, report, reboot",
	run:     runAgent,
}

func runAgent(ctx context.Context, e *env, fs *flag.FlagSet, args []string) error {
	server := fs.String("server", "", "the orchestrator's URL (default: diskcast.server= on the kernel command line)")
	mac := fs.String("mac", "", "this node's MAC (default: diskcast.mac=, else the interface's)")
	iface := fs.String("interface", "", "the NIC to receive on (default: diskcast.interface=, else the first one up)")
	once := fs.Bool("once", false, "one attempt, then exit (default: ask again until done)")
	retry := fs.Duration("retry", 0, "wait between attempts (default 10s)")
	timings := fs.String("timings", "/run/diskcast/timings", "phases the imaging environment measured before the agent (lines: PHASE SECONDS)")
	noPower := fs.Bool("no-power", false, "never reboot or power off, even in the imaging environment")
	dirs := pluginDirFlag(fs)
	if _, err := parseArgs(fs, args, 0, 0); err != nil {
		return err
	}
	cfg, inImagingEnv, err := agent.ReadCmdline(*timings)
	if err != nil {
		return err
	}
	if *server != "" {
		cfg.Server = *server
	}
	if *mac != "" {
		cfg.MAC = *mac
	}
	if *iface != "" {
		cfg.Interface = *iface
	}
	cfg.Once, cfg.Retry = *once, *retry
	cfg.Power = inImagingEnv && !*noPower
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "agent", Output: e.stderr})
	m := e.newManager(dirs)
	defer m.Close()
	cfg.Transport = func(ctx context.Context, name string) (transport.Client, error) { return m.Transport(ctx, name) }
	out, err := agent.Run(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "node %s: session %s done: %s written to %s by %s; %s\n", out.Node, out.Session, progress.Bytes(out.Bytes), out.Target, out.Transport, timingsText(out.Timings))
	return nil
}

// timingsText lists phases in the order they happen, then any others.
func timingsText(t map[string]float64) string {
	order := []string{"dhcp", "ipxe", "kernel", "linux", "modules", "network", "assignment", "receive", "verify"}
	var parts []string
	for _, k := range order {
		if v, ok := t[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %.2f s", k, v))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(t)) {
		if !slices.Contains(order, k) {
			parts = append(parts, fmt.Sprintf("%s %.2f s", k, t[k]))
		}
	}
	return strings.Join(parts, ", ")
}
