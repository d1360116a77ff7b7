package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/diskcast/diskcast/core/api"
	"github.com/diskcast/diskcast/core/config"
	"github.com/diskcast/diskcast/core/orchestrator"
	"github.com/diskcast/diskcast/sdk/base"
	"github.com/diskcast/diskcast/sdk/boot"
	"github.com/diskcast/diskcast/sdk/transport"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"
)

var serveCommand = &command{
	name:    "serve",
	usage:   "-config DIR [-listen HOST:PORT]",
	summary: "run the orchestrator daemon: REST API, sessions, node state and metrics",
	run:     runServe,
}

func runServe(ctx context.Context, e *env, fs *flag.FlagSet, args []string) error {
	dir := fs.String("config", "", "configuration directory (its *.hcl files are loaded) or file")
	listen := fs.String("listen", "", "listen on HOST:PORT instead of the server block's listen")
	pos, err := parseArgs(fs, args, 0, 1)
	if err != nil {
		return err
	}
	if *dir == "" && len(pos) == 1 {
		*dir = pos[0]
	}
	if *dir == "" {
		return fmt.Errorf("%w: -config DIR is required", errUsage)
	}
	cfg, diags := loadConfig(*dir)
	if len(diags) > 0 {
		var files map[string]*hcl.File
		if cfg != nil {
			files = cfg.Files
		}
		hcl.NewDiagnosticTextWriter(e.stderr, files, 100, false).WriteDiagnostics(diags)
	}
	if diags.HasErrors() {
		return fmt.Errorf("%s: %d error(s) in the configuration; nothing was started", *dir, len(diags.Errs()))
	}
	if *listen != "" {
		cfg.Server.Listen = *listen
	}
	if !filepath.IsAbs(cfg.Server.StateDir) {
		if abs, err := filepath.Abs(cfg.Server.StateDir); err == nil {
			cfg.Server.StateDir = abs
		}
	}

	log := hclog.New(&hclog.LoggerOptions{
		Name:       "diskcast",
		Output:     e.stderr,
		Level:      hclog.Info,
		JSONFormat: cfg.Server.LogFormat == "json",
	})
	token, where, generated, err := api.LoadToken(cfg.Server)
	if err != nil {
		return err
	}
	if generated {
		fmt.Fprintf(e.stderr, "diskcast serve: generated an API token and saved it in %s:\n  %s\nClients on this host read it from there; others need it in $DISKCAST_TOKEN.\n", where, token)
	}
	m := e.newManager(nil)
	if len(cfg.Server.PluginDirs) > 0 {
		m.Dirs = cfg.Server.PluginDirs
	}
	defer m.Close()
	if diags := configurePlugins(ctx, m, cfg); diags.HasErrors() {
		hcl.NewDiagnosticTextWriter(e.stderr, cfg.Files, 100, false).WriteDiagnostics(diags)
		return fmt.Errorf("%s: %d error(s) in the plugin settings; nothing was started", *dir, len(diags.Errs()))
	}
	deps := map[string]orchestrator.Deployer{
		"multicast": orchestrator.PluginDeployer{Transport: func(ctx context.Context) (transport.Client, error) {
			return m.Transport(ctx, "multicast")
		}},
	}
	for _, s := range cfg.Sessions {
		if _, ok := deps[s.Transport.Kind]; !ok && s.Transport.Kind != "http" { // http is the orchestrator's own
			log.Warn("session uses a transport this daemon does not provide; it cannot start until it does (use transport \"http\" meanwhile)",
				"session", s.Name, "transport", s.Transport.Kind)
		}
	}
	o, err := orchestrator.New(cfg, orchestrator.Options{Logger: log.Named("orchestrator"), Deployers: deps})
	if err != nil {
		return err
	}
	defer o.Close()
	api.Version = Version
	srv := &http.Server{
		Handler:           api.NewServer(o, token, log.Named("api")),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.Named("http").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w; change server.listen or pass -listen", cfg.Server.Listen, err)
	}
	if host, _, _ := net.SplitHostPort(cfg.Server.Listen); !isLoopback(host) {
		log.Info("the API is reachable from the network; state-changing requests need the token", "listen", ln.Addr().String())
	}
	fmt.Fprintf(e.stdout, "diskcast serve: API on http://%s, state in %s, token from %s\n", ln.Addr(), o.StatePath(), where)
	log.Info("serving", "listen", ln.Addr().String(), "state", o.StatePath(), "images", len(cfg.Images), "nodes", len(cfg.Nodes), "sessions", len(cfg.Sessions))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	booted := make(chan error, 1)
	bootCtx, stopBoot := context.WithCancel(ctx)
	defer stopBoot()
	if p := bootPlugin(cfg); p != "" {
		bp, err := m.Boot(ctx, p)
		if err != nil {
			return err
		}
		network := boot.Network{Interface: cfg.Server.Interface, ServerIP: urlHost(cfg.Server.URL), HTTPURL: cfg.Server.URL}
		log.Info("network boot", "plugin", p, "interface", network.Interface, "server_ip", network.ServerIP, "boot_dir", cfg.Server.BootDir)
		go func() { booted <- bp.Serve(bootCtx, network, orchestrator.BootBackend{O: o}) }()
	}
	select {
	case err := <-served:
		return fmt.Errorf("API server: %w", err)
	case err := <-booted:
		if err == nil {
			err = errors.New("stopped")
		}
		return fmt.Errorf("boot plugin: %w", err)
	case <-ctx.Done():
	}
	stopBoot()
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Warn("shutdown", "error", err)
	}
	srv.Close() // event streams do not end by themselves
	return nil
}

// bootPlugin names the boot plugin the configuration sets up, if any.
func bootPlugin(cfg *config.Config) string {
	for _, p := range cfg.Plugins {
		if p.Kind == string(base.KindBoot) {
			return p.Name
		}
	}
	return ""
}

// urlHost is the host of a URL (the server's address nodes reach).
func urlHost(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// clientOpts are the flags of the commands that talk to a daemon.
type clientOpts struct {
	server, token, tokenFile, config *string
}

func addClientFlags(fs *flag.FlagSet) *clientOpts {
	return &clientOpts{
		server:    fs.String("server", "", "daemon address (default $DISKCAST_SERVER, else the -config listen address, else http://"+config.DefaultListen+")"),
		token:     fs.String("token", "", "API token (default: -token-file, else $DISKCAST_TOKEN or $DISKCAST_TOKEN_FILE, else the token the -config names or its daemon generated)"),
		tokenFile: fs.String("token-file", "", "read the API token from this file"),
		config:    fs.String("config", "", "take the daemon's address and token from this configuration directory"),
	}
}

// client builds an API client from the flags, the environment and the
// configuration, in that order. A missing token is not an error here:
// reads do not need one, and the daemon says when a call does.
func (c *clientOpts) client() (*api.Client, error) {
	var srv *config.Server
	if *c.config != "" {
		cfg, diags := loadConfig(*c.config)
		if diags.HasErrors() {
			return nil, fmt.Errorf("%s: %s; run 'diskcast validate %s'", *c.config, diags.Errs()[0], *c.config)
		}
		srv = &cfg.Server
	}
	base := firstNonEmpty(*c.server, os.Getenv("DISKCAST_SERVER"))
	if base == "" {
		listen := config.DefaultListen
		if srv != nil {
			listen = srv.Listen
		}
		host, port, err := net.SplitHostPort(listen)
		if err != nil {
			return nil, fmt.Errorf("listen address %q: %w", listen, err)
		}
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		base = "http://" + net.JoinHostPort(host, port)
	} else if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	// Explicit flags first, then the environment, then the configuration,
	// then the token a local daemon generated.
	token, file := *c.token, *c.tokenFile
	if token == "" && file == "" {
		token, file = os.Getenv("DISKCAST_TOKEN"), os.Getenv("DISKCAST_TOKEN_FILE")
	}
	if token == "" && file == "" {
		switch {
		case srv != nil && srv.Auth != nil && srv.Auth.Token != "":
			token = srv.Auth.Token
		case srv != nil && srv.Auth != nil && srv.Auth.TokenFile != "":
			file = srv.Auth.TokenFile
		case srv != nil:
			file = filepath.Join(srv.StateDir, api.TokenFileName)
		default:
			// Readable only by the daemon's user; without it, reads still work.
			if b, err := os.ReadFile(filepath.Join(config.DefaultStateDir, api.TokenFileName)); err == nil {
				token = strings.TrimSpace(string(b))
			}
		}
	}
	if token == "" && file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("API token: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	return &api.Client{BaseURL: base, Token: token}, nil
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
