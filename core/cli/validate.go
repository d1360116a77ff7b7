package cli

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/diskcast/diskcast/core/config"
	"github.com/hashicorp/hcl/v2"
)

var validateCommand = &command{
	name:    "validate",
	usage:   "CONFIG_DIR|FILE.hcl",
	summary: "check an orchestrator configuration directory and report every problem with file:line",
	run:     runValidate,
}

func runValidate(ctx context.Context, e *env, fs *flag.FlagSet, args []string) error {
	pos, err := parseArgs(fs, args, 1, 1)
	if err != nil {
		return err
	}
	cfg, diags := loadConfig(pos[0])
	if cfg != nil && !diags.HasErrors() && len(cfg.Plugins) > 0 {
		// Plugin blocks are checked against the schemas the plugins report.
		m := e.newManager(nil)
		if len(cfg.Server.PluginDirs) > 0 {
			m.Dirs = cfg.Server.PluginDirs
		}
		diags = append(diags, configurePlugins(ctx, m, cfg)...)
		m.Close()
	}
	var files map[string]*hcl.File
	if cfg != nil {
		files = cfg.Files
	}
	if len(diags) > 0 {
		w := hcl.NewDiagnosticTextWriter(e.stderr, files, 100, false)
		w.WriteDiagnostics(diags)
	}
	errs, warns := 0, 0
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			errs++
		} else {
			warns++
		}
	}
	if errs > 0 {
		return fmt.Errorf("%s: %d error(s), %d warning(s)", pos[0], errs, warns)
	}
	fmt.Fprintf(e.stdout, "%s: OK (%d images, %d nodes, %d node groups, %d sessions; %d warning(s))\n",
		pos[0], len(cfg.Images), len(cfg.Nodes), len(cfg.Groups), len(cfg.Sessions), warns)
	return nil
}

// loadConfig loads a configuration directory (its *.hcl files) or one
// file.
func loadConfig(path string) (*config.Config, hcl.Diagnostics) {
	if st, err := os.Stat(path); err == nil && !st.IsDir() {
		return config.LoadFiles(path)
	}
	return config.LoadDir(path)
}
