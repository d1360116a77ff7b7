// Package cli implements the diskcast command line: one subcommand per
// file, each parsing its own flags and calling into the core packages.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/diskcast/diskcast/core/plugin"
)

// Version is set at build time with -ldflags "-X ...cli.Version=v1.2.3".
var Version = "0.1.0-dev"

// command is one subcommand.
type command struct {
	name    string
	usage   string // arguments, after the command name
	summary string
	// run defines its flags on fs, parses args with parseArgs and acts.
	run func(ctx context.Context, e *env, fs *flag.FlagSet, args []string) error
}

// commands lists every subcommand in the order `diskcast help` shows them.
var commands = []*command{
	captureCommand,
	restoreCommand,
	sendCommand,
	receiveCommand,
	importCommand,
	exportCommand,
	infoCommand,
	verifyCommand,
	keygenCommand,
	validateCommand,
	serveCommand,
	agentCommand,
	sessionCommand,
	nodesCommand,
	imagesCommand,
	pluginsCommand,
	versionCommand,
}

// env carries the process's streams, so commands can be tested.
type env struct {
	stdout, stderr io.Writer
	stderrFile     *os.File // for terminal detection
	builtins       Builtins // plugins compiled into the binary (nil: none)
}

// errUsage marks errors caused by how the command was called (exit 2).
var errUsage = errors.New("usage")

// Main runs the command line and returns the process exit code.
// builtins are the plugins compiled into the binary.
func Main(ctx context.Context, args []string, builtins Builtins) int {
	e := &env{stdout: os.Stdout, stderr: os.Stderr, stderrFile: os.Stderr, builtins: builtins}
	return e.main(ctx, args)
}

func (e *env) main(ctx context.Context, args []string) int {
	if len(args) > 0 && args[0] == plugin.BuiltinCommand {
		return e.serveBuiltin(args[1:])
	}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		e.usage()
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name == args[0] {
			err := c.run(ctx, e, e.newFlags(c), args[1:])
			switch {
			case err == nil:
				return 0
			case errors.Is(err, flag.ErrHelp):
				return 0
			case errors.Is(err, errUsage):
				fmt.Fprintf(e.stderr, "diskcast %s: %v\nusage: diskcast %s %s\n", c.name, err, c.name, c.usage)
				return 2
			case errors.Is(err, context.Canceled):
				fmt.Fprintf(e.stderr, "diskcast %s: interrupted\n", c.name)
				return 130
			default:
				fmt.Fprintf(e.stderr, "diskcast %s: %v\n", c.name, err)
				return 1
			}
		}
	}
	fmt.Fprintf(e.stderr, "diskcast: unknown command %q; run 'diskcast help'\n", args[0])
	return 2
}

func (e *env) usage() {
	fmt.Fprintf(e.stdout, "diskcast %s: capture disks into compact images and write them to many machines at once\n\nusage: diskcast COMMAND [ARGS]\n\ncommands:\n", Version)
	for _, c := range commands {
		fmt.Fprintf(e.stdout, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(e.stdout, "\nRun 'diskcast COMMAND -h' for a command's flags.\n")
}

// newFlags returns a flag set that prints the command's usage on -h.
func (e *env) newFlags(c *command) *flag.FlagSet {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: diskcast %s %s\n\n%s\n\nflags:\n", c.name, c.usage, c.summary)
		fs.PrintDefaults()
	}
	return fs
}

// parseArgs parses flags that may come before, between or after the
// positional arguments, and checks the number of positional arguments.
func parseArgs(fs *flag.FlagSet, args []string, minPos, maxPos int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) < minPos || len(pos) > maxPos {
		return nil, fmt.Errorf("%w: %d arguments given", errUsage, len(pos))
	}
	return pos, nil
}

// parseSize reads sizes such as 1048576, 512K, 1M, 1MiB, 2G.
func parseSize(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B"), "I")
	mult := int64(1)
	if t != "" {
		switch t[len(t)-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			t = t[:len(t)-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: size %q: want a number with an optional K, M, G or T suffix", errUsage, s)
	}
	return n * mult, nil
}

func creator() string {
	return fmt.Sprintf("diskcast %s (%s/%s)", Version, runtime.GOOS, runtime.GOARCH)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func rate(bytes int64, seconds float64) string {
	if seconds <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f MB/s", float64(bytes)/seconds/1e6)
}
