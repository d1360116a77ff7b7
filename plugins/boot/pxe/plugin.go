package pxe

import (
	"context"
	"errors"
	"sync"

	"github.com/diskcast/diskcast/sdk/base"
	"github.com/diskcast/diskcast/sdk/boot"
	"github.com/diskcast/diskcast/sdk/plugin"
	"github.com/hashicorp/go-hclog"
)

// Plugin is the PXE boot plugin: the package's Server behind the
// diskcast boot contract (sdk/boot). Its settings are Config's.
type Plugin struct {
	// Logger receives the servers' log.
	Logger hclog.Logger

	mu  sync.Mutex
	cfg Config
	srv *Server // the running one, if any
}

var _ boot.Boot = (*Plugin)(nil)

// NewPlugin returns the plugin with DefaultConfig, logging where plugins
// log (sdk/plugin.Logger).
func NewPlugin() *Plugin {
	return &Plugin{cfg: DefaultConfig(), Logger: plugin.Logger().Named("pxe")}
}

// Info describes the plugin.
func (*Plugin) Info(context.Context) (*base.Info, error) {
	return &base.Info{Description: "PXE boot: DHCP (full or proxyDHCP), read-only TFTP for iPXE, HTTP for per-MAC iPXE scripts"}, nil
}

// ConfigSchema derives the schema from Config and DefaultConfig.
func (*Plugin) ConfigSchema(context.Context) (*base.Schema, error) {
	d := DefaultConfig()
	return base.SchemaOf(&d)
}

// Configure checks and keeps the settings; unset ones keep their
// defaults. server_ip and interface may come from the core at Serve.
func (p *Plugin) Configure(_ context.Context, cfg base.Config) error {
	c := DefaultConfig()
	if err := cfg.Decode(&c); err != nil {
		return err
	}
	if _, err := c.check(true); err != nil {
		return base.Mark(err, base.ErrInvalidConfig)
	}
	p.mu.Lock()
	p.cfg = c
	p.mu.Unlock()
	return nil
}

// Capabilities says what the configured mode serves.
func (p *Plugin) Capabilities(context.Context) (*boot.Capabilities, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return &boot.Capabilities{DHCP: p.cfg.Mode == ModeDHCP, ProxyDHCP: p.cfg.Mode == ModeProxy, TFTP: true, HTTP: true}, nil
}

// Serve runs a Server until ctx ends. The interface and server address
// of the configuration win over the core's n; n fills those left empty.
func (p *Plugin) Serve(ctx context.Context, n boot.Network, backend boot.Backend) error {
	p.mu.Lock()
	c := p.cfg
	p.mu.Unlock()
	if c.Interface == "" {
		c.Interface = n.Interface
	}
	if c.ServerIP == "" {
		c.ServerIP = n.ServerIP
	}
	srv, err := New(c)
	if err != nil {
		if errors.Is(err, ErrConfig) {
			return base.Mark(err, base.ErrInvalidConfig)
		}
		return err
	}
	srv.Logger = p.Logger
	p.mu.Lock()
	p.srv = srv
	p.mu.Unlock()
	return srv.Serve(ctx, backend)
}

// Stats returns the counters of the server Serve runs (or ran last).
func (p *Plugin) Stats() Stats {
	p.mu.Lock()
	srv := p.srv
	p.mu.Unlock()
	if srv == nil {
		return Stats{}
	}
	return srv.Stats()
}
