package cli

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/diskcast/diskcast/core/capture"
	"github.com/diskcast/diskcast/core/plugin"
	"github.com/diskcast/diskcast/sdk/base"
)

// Builtins is the set of plugins compiled into the binary; the binary's
// main builds it (sdk/plugin.Set) and passes it to Main.
type Builtins interface {
	plugin.Builtins
	// Start serves one built-in plugin to the diskcast process that
	// re-executed this binary with the hidden plugin subcommand.
	Start(kind base.Kind, name string) error
}

var pluginsCommand = &command{
	name:    "plugins",
	usage:   "[--json] [--plugin-dir DIR]...",
	summary: "list the installed plugins: kind, name, version, API version and origin (built-in or binary)",
	run:     runPlugins,
}

// dirsFlag collects --plugin-dir values.
type dirsFlag []string

func (d *dirsFlag) String() string     { return strings.Join(*d, ":") }
func (d *dirsFlag) Set(v string) error { *d = append(*d, v); return nil }

func pluginDirFlag(fs *flag.FlagSet) *dirsFlag {
	d := &dirsFlag{}
	fs.Var(d, "plugin-dir", fmt.Sprintf("look for third-party plugins here (repeatable; default $%s, else the diskcast binary's directory and %s)", plugin.PathEnv, plugin.SystemDir))
	return d
}

// newManager returns a plugin manager for a command.
func (e *env) newManager(dirs *dirsFlag) *plugin.Manager {
	m := &plugin.Manager{}
	if e.builtins != nil {
		m.Builtins = e.builtins
	}
	if dirs != nil && len(*dirs) > 0 {
		m.Dirs = *dirs
	}
	return m
}

func runPlugins(ctx context.Context, e *env, fs *flag.FlagSet, args []string) error {
	jsonOut := fs.Bool("json", false, "print the list as JSON")
	dirs := pluginDirFlag(fs)
	if _, err := parseArgs(fs, args, 0, 0); err != nil {
		return err
	}
	list := e.newManager(dirs).List(ctx)
	if *jsonOut {
		type row struct {
			plugin.Installed
			Origin string `json:"origin"`
			Error  string `json:"error,omitempty"`
		}
		rows := []row{}
		for _, i := range list {
			r := row{Installed: i, Origin: i.Origin()}
			if i.Err != nil {
				r.Error = i.Err.Error()
			}
			rows = append(rows, r)
		}
		return writeJSON(e.stdout, rows)
	}
	if len(list) == 0 {
		fmt.Fprintln(e.stdout, "no plugins installed")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tNAME\tVERSION\tAPI\tORIGIN")
	var problems []string
	for _, i := range list {
		kind, version, api := string(i.Kind), i.Version, strconv.Itoa(i.APIVersion)
		if kind == "" { // a binary that could not say what it serves
			kind, version, api = "-", "-", "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", kind, i.Name, version, api, i.Origin())
		if i.Err != nil {
			problems = append(problems, fmt.Sprintf("%s %s (%s): %v", i.Kind, i.Name, i.Origin(), i.Err))
		}
	}
	tw.Flush()
	if len(problems) > 0 {
		fmt.Fprintf(e.stdout, "\nnot usable:\n  %s\n", strings.Join(problems, "\n  "))
	}
	return nil
}

// serveBuiltin is the hidden entry point by which diskcast runs its own
// built-in plugins out of process: diskcast __plugin KIND NAME.
func (e *env) serveBuiltin(args []string) int {
	if len(args) != 2 || e.builtins == nil {
		fmt.Fprintf(e.stderr, "diskcast %s: diskcast runs this itself to serve a built-in plugin (arguments: KIND NAME)\n", plugin.BuiltinCommand)
		return 2
	}
	if err := e.builtins.Start(base.Kind(args[0]), args[1]); err != nil {
		fmt.Fprintf(e.stderr, "diskcast %s: %v\n", plugin.BuiltinCommand, err)
		return 1
	}
	return 0
}

// fsChoice is how capture uses the filesystem plugins.
type fsChoice struct {
	raw          *bool
	only         *string
	skipPagefile *bool
	dirs         *dirsFlag
}

func fsFlags(fs *flag.FlagSet) fsChoice {
	return fsChoice{
		raw:          fs.Bool("raw", false, "capture every partition raw (all-zero blocks skipped), without filesystem plugins"),
		only:         fs.String("fs", "", "use only this filesystem plugin (see 'diskcast plugins'); partitions it does not recognise are captured raw"),
		skipPagefile: fs.Bool("skip-pagefile", false, "NTFS: leave out the contents of pagefile.sys"),
		dirs:         pluginDirFlag(fs),
	}
}

// analyzer starts the filesystem plugins for a capture of source. The
// returned function stops them. With --raw, or when no filesystem plugin
// is installed, it returns a nil Analyzer: every partition raw.
func (e *env) analyzer(ctx context.Context, source string, c fsChoice) (capture.Analyzer, func(), error) {
	nothing := func() {}
	if *c.raw {
		if *c.only != "" || *c.skipPagefile {
			return nil, nothing, fmt.Errorf("%w: --raw uses no filesystem plugin: drop --fs and --skip-pagefile", errUsage)
		}
		return nil, nothing, nil
	}
	m := e.newManager(c.dirs)
	if *c.only == "" && len(m.Names(ctx, base.KindFilesystem)) == 0 && !*c.skipPagefile {
		return nil, nothing, nil
	}
	opts := plugin.AnalyzeOptions{
		Only: *c.only,
		Warn: func(msg string) { fmt.Fprintf(e.stderr, "warning: %s\n", msg) },
	}
	if *c.skipPagefile {
		opts.Config = map[string]base.Config{"ntfs": {"skip_pagefile": true}}
	}
	a, err := m.Analyzer(ctx, source, opts)
	if err != nil {
		m.Close()
		return nil, nothing, err
	}
	return a, func() { m.Close() }, nil
}
