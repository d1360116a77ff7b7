// Package plugin finds, checks, starts and talks to diskcast's plugins.
//
// Built-in plugins are compiled into the diskcast binary (the binary's
// main registers them) and run out of process all the same, by
// re-executing the binary with the hidden subcommand BuiltinCommand.
// Third-party plugins are executables named diskcast-plugin-NAME in the
// plugin directories; each must have a checksum file NAME.sha256 next to
// it, and runs only while its SHA-256 matches (see Checksum). A plugin
// that crashes, hangs or speaks another API version gives an error that
// says which plugin and what to do; no call waits forever.
//
// The Manager also turns the filesystem plugins into the capture
// pipeline's Analyzer: every filesystem plugin probes a partition and the
// most confident one reports its used extents.
package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/diskcast/diskcast/sdk/base"
	"github.com/diskcast/diskcast/sdk/boot"
	"github.com/diskcast/diskcast/sdk/filesystem"
	"github.com/diskcast/diskcast/sdk/transport"
	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin" // this package is called plugin too
)

// Errors of plugin discovery and start.
var (
	ErrNotFound  = errors.New("plugin: no such plugin installed")
	ErrChecksum  = errors.New("plugin: checksum mismatch")
	ErrNoSum     = errors.New("plugin: no checksum file")
	ErrDescribe  = errors.New("plugin: cannot describe plugin")
	ErrStart     = errors.New("plugin: cannot start plugin")
	ErrDuplicate = errors.New("plugin: name already taken")
)

// BuiltinCommand is the hidden diskcast subcommand that serves a
// built-in plugin: diskcast BuiltinCommand KIND NAME.
const BuiltinCommand = "__plugin"

// BinaryPrefix starts the file name of every third-party plugin binary.
const BinaryPrefix = "diskcast-plugin-"

// SystemDir is the plugin directory of a system-wide install.
const SystemDir = "/usr/lib/diskcast/plugins"

// PathEnv, if set, is a colon-separated list of plugin directories that
// replaces the defaults.
const PathEnv = "DISKCAST_PLUGIN_PATH"

// Defaults of the Manager's timeouts.
const (
	DefaultStartTimeout    = 15 * time.Second
	DefaultDescribeTimeout = 15 * time.Second
)

// Builtins is the set of plugins compiled into the diskcast binary
// (sdk/plugin.Set satisfies it); the binary's main supplies it.
type Builtins interface {
	Describe() base.Description
	Filesystem(name string) (filesystem.Filesystem, bool)
	Transport(name string) (transport.Transport, bool)
	Boot(name string) (boot.Boot, bool)
}

// Installed is one plugin the Manager found.
type Installed struct {
	Kind       base.Kind `json:"kind"`
	Name       string    `json:"name"`
	Version    string    `json:"version"`
	APIVersion int       `json:"api_version"`
	// BuiltIn is true for plugins compiled into diskcast; Path is the
	// binary of a third-party plugin.
	BuiltIn bool   `json:"built_in"`
	Path    string `json:"path,omitempty"`
	// Sum is the verified SHA-256 of a third-party binary.
	Sum string `json:"sha256,omitempty"`
	// Err says why the plugin cannot be used; nil if it can.
	Err error `json:"-"`
}

// Origin is "built-in" or the binary's path.
func (i Installed) Origin() string {
	if i.BuiltIn {
		return "built-in"
	}
	return i.Path
}

// Manager finds and runs plugins. Set its fields before the first call;
// the zero value (with Builtins nil) finds third-party plugins in the
// default directories. Close it to stop the plugin processes.
type Manager struct {
	// Builtins are the plugins compiled into this binary.
	Builtins Builtins
	// Dirs are searched for third-party plugins, in order; nil means
	// DefaultDirs().
	Dirs []string
	// Executable is the diskcast binary that serves built-ins; "" means
	// this process's own binary.
	Executable string
	// Logger receives the plugins' logs (nil: warnings and errors on
	// stderr).
	Logger hclog.Logger
	// Timeout bounds each call into a plugin and each wait for the next
	// batch of extents (0: filesystem.DefaultTimeout).
	Timeout time.Duration
	// StartTimeout bounds a plugin's start (0: DefaultStartTimeout).
	StartTimeout time.Duration
	// DescribeTimeout bounds a binary's describe (0: DefaultDescribeTimeout).
	DescribeTimeout time.Duration
	// InProcess runs built-in plugins inside this process instead of
	// re-executing the binary: for measuring what the process boundary
	// costs, and for debugging.
	InProcess bool

	mu      sync.Mutex
	found   []Installed
	scanned bool
	running map[string]*running // by kind/name
}

// running is a started plugin.
type running struct {
	inst   Installed
	client *goplugin.Client  // nil in process
	fs     filesystem.Client // the client of its kind
	tr     transport.Client
	bt     boot.Client
	tail   *tail
	// startTimeout is the start's limit, for its error message.
	startTimeout time.Duration
}

// DefaultDirs returns the plugin directories: those in $DISKCAST_PLUGIN_PATH
// if set, else the directory of the diskcast binary and SystemDir.
func DefaultDirs() []string {
	if p := os.Getenv(PathEnv); p != "" {
		return slices.DeleteFunc(strings.Split(p, ":"), func(s string) bool { return s == "" })
	}
	var dirs []string
	if exe, err := os.Executable(); err == nil {
		if exe, err = filepath.EvalSymlinks(exe); err == nil {
			dirs = append(dirs, filepath.Dir(exe))
		}
	}
	return append(dirs, SystemDir)
}

func (m *Manager) logger() hclog.Logger {
	if m.Logger != nil {
		return m.Logger
	}
	return hclog.New(&hclog.LoggerOptions{Name: "plugin", Output: os.Stderr, Level: hclog.Warn})
}

func (m *Manager) executable() (string, error) {
	if m.Executable != "" {
		return m.Executable, nil
	}
	return os.Executable()
}

// List returns every plugin found: built-ins first, then third-party
// plugins by directory. Plugins that cannot be used are listed with Err
// set. The result is computed once per Manager.
func (m *Manager) List(ctx context.Context) []Installed {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.scan(ctx))
}

// scan finds the plugins; m.mu is held.
func (m *Manager) scan(ctx context.Context) []Installed {
	if m.scanned {
		return m.found
	}
	m.scanned = true
	taken := map[string]string{} // kind/name -> origin
	add := func(i Installed) {
		k := string(i.Kind) + "/" + i.Name
		if prev, ok := taken[k]; ok && i.Err == nil {
			i.Err = fmt.Errorf("%w: %s plugin %q is already provided by %s; this one is ignored", ErrDuplicate, i.Kind, i.Name, prev)
		} else if i.Err == nil {
			taken[k] = i.Origin()
		}
		m.found = append(m.found, i)
	}
	if m.Builtins != nil {
		d := m.Builtins.Describe()
		for _, c := range d.Plugins {
			add(Installed{Kind: c.Kind, Name: c.Name, Version: d.Version, APIVersion: d.APIVersion, BuiltIn: true})
		}
	}
	dirs := m.Dirs
	if dirs == nil {
		dirs = DefaultDirs()
	}
	seen := map[string]bool{}
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue // a missing directory is normal
		}
		for _, e := range entries {
			name := e.Name()
			if !strings.HasPrefix(name, BinaryPrefix) || strings.HasSuffix(name, SumSuffix) || e.IsDir() {
				continue
			}
			path := filepath.Join(dir, name)
			if real, err := filepath.EvalSymlinks(path); err == nil {
				if seen[real] {
					continue
				}
				seen[real] = true
			}
			for _, i := range m.describe(ctx, path) {
				add(i)
			}
		}
	}
	return m.found
}

// describe checks a third-party binary's checksum and asks it what it
// serves. A binary that fails gives one Installed with Err set.
func (m *Manager) describe(ctx context.Context, path string) []Installed {
	bad := func(err error) []Installed {
		return []Installed{{Name: strings.TrimPrefix(filepath.Base(path), BinaryPrefix), Path: path, Err: err}}
	}
	sum, err := Verify(path)
	if err != nil {
		return bad(err)
	}
	limit := m.DescribeTimeout
	if limit <= 0 {
		limit = DefaultDescribeTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "describe")
	cmd.WaitDelay = time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if ctx.Err() != nil {
		return bad(fmt.Errorf("%w: %s describe: no answer in %v", ErrDescribe, path, limit))
	}
	if err != nil {
		return bad(fmt.Errorf("%w: %s describe: %v%s", ErrDescribe, path, err, quote(stderr.String())))
	}
	d, err := parseDescription(out)
	if err != nil {
		return bad(fmt.Errorf("%w: %s describe: %v", ErrDescribe, path, err))
	}
	var apiErr error
	if d.APIVersion != base.APIVersion {
		apiErr = apiError(path, d.APIVersion)
	}
	var list []Installed
	for _, c := range d.Plugins {
		list = append(list, Installed{Kind: c.Kind, Name: c.Name, Version: d.Version, APIVersion: d.APIVersion,
			Path: path, Sum: sum, Err: apiErr})
	}
	if len(list) == 0 {
		return bad(fmt.Errorf("%w: %s describe: it serves no plugins", ErrDescribe, path))
	}
	return list
}

func apiError(path string, v int) error {
	return fmt.Errorf("%w: %s speaks plugin API %d, this diskcast speaks %d: install a release of the plugin built for API %d, or a diskcast that speaks %d",
		base.ErrAPIVersion, path, v, base.APIVersion, base.APIVersion, v)
}

// quote formats a plugin's output for an error message.
func quote(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	return "; it said: " + s
}

// find returns the usable plugin of a kind and name; m.mu is held.
func (m *Manager) find(ctx context.Context, kind base.Kind, name string) (Installed, error) {
	var names []string
	for _, i := range m.scan(ctx) {
		if i.Kind != kind {
			continue
		}
		if i.Name == name {
			if i.Err != nil && !errors.Is(i.Err, ErrDuplicate) {
				return i, i.Err
			}
			if i.Err == nil {
				return i, nil
			}
		}
		if i.Err == nil {
			names = append(names, i.Name)
		}
	}
	return Installed{}, fmt.Errorf("%w: %s plugin %q (installed: %s)", ErrNotFound, kind, name, strings.Join(names, ", "))
}

// Names returns the usable plugins of a kind, sorted.
func (m *Manager) Names(ctx context.Context, kind base.Kind) []string {
	var out []string
	for _, i := range m.List(ctx) {
		if i.Kind == kind && i.Err == nil {
			out = append(out, i.Name)
		}
	}
	slices.Sort(out)
	return out
}

// Filesystem starts (once) and returns the named filesystem plugin.
func (m *Manager) Filesystem(ctx context.Context, name string) (filesystem.Client, error) {
	r, err := m.get(ctx, base.KindFilesystem, name)
	if err != nil {
		return nil, err
	}
	return r.fs, nil
}

// Transport starts (once) and returns the named transport plugin.
func (m *Manager) Transport(ctx context.Context, name string) (transport.Client, error) {
	r, err := m.get(ctx, base.KindTransport, name)
	if err != nil {
		return nil, err
	}
	return r.tr, nil
}

// Boot starts (once) and returns the named boot plugin.
func (m *Manager) Boot(ctx context.Context, name string) (boot.Client, error) {
	r, err := m.get(ctx, base.KindBoot, name)
	if err != nil {
		return nil, err
	}
	return r.bt, nil
}

// Configurable is what a plugin of any kind offers for its settings.
type Configurable interface {
	ConfigSchema(ctx context.Context) (*base.Schema, error)
	Configure(ctx context.Context, cfg base.Config) error
}

// Configurable starts (once) and returns the plugin of a kind and name,
// for its settings.
func (m *Manager) Configurable(ctx context.Context, kind base.Kind, name string) (Configurable, error) {
	r, err := m.get(ctx, kind, name)
	if err != nil {
		return nil, err
	}
	switch {
	case r.fs != nil:
		return r.fs, nil
	case r.tr != nil:
		return r.tr, nil
	case r.bt != nil:
		return r.bt, nil
	}
	return nil, fmt.Errorf("%w: %s: the core cannot run %s plugins", ErrStart, r.what(), kind)
}

// get starts (once) and returns the plugin of a kind and name.
func (m *Manager) get(ctx context.Context, kind base.Kind, name string) (*running, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := string(kind) + "/" + name
	if r, ok := m.running[key]; ok {
		return r, nil
	}
	inst, err := m.find(ctx, kind, name)
	if err != nil {
		return nil, err
	}
	r, err := m.start(inst)
	if err != nil {
		return nil, err
	}
	if m.running == nil {
		m.running = map[string]*running{}
	}
	m.running[key] = r
	return r, nil
}

// start runs a plugin process (or, InProcess, wraps a built-in).
func (m *Manager) start(inst Installed) (*running, error) {
	timeout := m.Timeout
	if timeout <= 0 {
		timeout = filesystem.DefaultTimeout
	}
	if inst.BuiltIn && m.InProcess {
		return m.inProcess(inst)
	}
	var cmd *exec.Cmd
	var secure *goplugin.SecureConfig
	if inst.BuiltIn {
		exe, err := m.executable()
		if err != nil {
			return nil, fmt.Errorf("%w: built-in %s %s: find the diskcast binary: %v", ErrStart, inst.Kind, inst.Name, err)
		}
		cmd = exec.Command(exe, BuiltinCommand, string(inst.Kind), inst.Name)
	} else {
		// Verified at discovery; go-plugin checks it again right before
		// it starts the binary.
		sum, err := decodeSum(inst.Sum)
		if err != nil {
			return nil, err
		}
		secure = &goplugin.SecureConfig{Checksum: sum, Hash: newHash()}
		cmd = exec.Command(inst.Path, "start", string(inst.Kind), inst.Name)
	}
	startTimeout := m.StartTimeout
	if startTimeout <= 0 {
		startTimeout = DefaultStartTimeout
	}
	t := &tail{}
	client := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig: base.Handshake,
		VersionedPlugins: map[int]goplugin.PluginSet{
			base.APIVersion: {
				string(base.KindFilesystem): &filesystem.GRPCPlugin{Timeout: timeout},
				string(base.KindTransport):  &transport.GRPCPlugin{},
				string(base.KindBoot):       &boot.GRPCPlugin{},
			},
		},
		Cmd:              cmd,
		SecureConfig:     secure,
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		Logger:           m.logger().Named(inst.Name),
		StartTimeout:     startTimeout,
		Stderr:           t,
		SyncStderr:       t,
	})
	r := &running{inst: inst, client: client, tail: t, startTimeout: startTimeout}
	rpcClient, err := client.Client()
	if err != nil {
		client.Kill()
		return nil, r.startError(err)
	}
	raw, err := rpcClient.Dispense(string(inst.Kind))
	if err != nil {
		client.Kill()
		return nil, r.startError(err)
	}
	switch c := raw.(type) {
	case filesystem.Client:
		r.fs = &decorated{Client: c, r: r}
	case transport.Client:
		r.tr = &transportDecorated{Client: c, r: r}
	case boot.Client:
		r.bt = &bootDecorated{Client: c, r: r}
	default:
		client.Kill()
		return nil, fmt.Errorf("%w: %s: the core cannot run %s plugins", ErrStart, r.what(), inst.Kind)
	}
	return r, nil
}

// inProcess wraps a built-in plugin to be called in this process.
func (m *Manager) inProcess(inst Installed) (*running, error) {
	meta := base.Info{Name: inst.Name, Version: inst.Version}
	r := &running{inst: inst}
	missing := fmt.Errorf("%w: built-in %s plugin %q has no implementation", ErrStart, inst.Kind, inst.Name)
	switch inst.Kind {
	case base.KindFilesystem:
		impl, ok := m.Builtins.Filesystem(inst.Name)
		if !ok {
			return nil, missing
		}
		r.fs = filesystem.InProcess(impl, meta)
	case base.KindTransport:
		impl, ok := m.Builtins.Transport(inst.Name)
		if !ok {
			return nil, missing
		}
		r.tr = transport.InProcess(impl, meta)
	case base.KindBoot:
		impl, ok := m.Builtins.Boot(inst.Name)
		if !ok {
			return nil, missing
		}
		r.bt = boot.InProcess(impl, meta)
	default:
		return nil, missing
	}
	return r, nil
}

// what names a running plugin for messages.
func (r *running) what() string {
	if r.inst.BuiltIn {
		return fmt.Sprintf("%s plugin %s (built-in)", r.inst.Kind, r.inst.Name)
	}
	return fmt.Sprintf("%s plugin %s (%s)", r.inst.Kind, r.inst.Name, r.inst.Path)
}

func (r *running) startError(err error) error {
	msg := err.Error()
	switch {
	case errors.Is(err, goplugin.ErrChecksumsDoNotMatch):
		return fmt.Errorf("%w: %s: the binary changed since it was checked; check it and update %s", ErrChecksum, r.what(), r.inst.Path+SumSuffix)
	case strings.Contains(msg, "incompatible API version"):
		return fmt.Errorf("%s: %w", r.what(), apiError(r.inst.Origin(), parseServerVersion(msg)))
	case strings.Contains(msg, "timeout while waiting for plugin to start"):
		return fmt.Errorf("%w: %s: no handshake in %v%s", ErrStart, r.what(), r.startTimeout, quote(r.tail.String()))
	}
	return fmt.Errorf("%w: %s: %v%s", ErrStart, r.what(), firstLine(msg), quote(r.tail.String()))
}

// parseServerVersion finds the plugin's version in go-plugin's
// "incompatible API version" message; -1 if it is not there.
func parseServerVersion(msg string) int {
	_, rest, ok := strings.Cut(msg, "Plugin version: ")
	if !ok {
		return -1
	}
	v := 0
	n := 0
	for _, c := range rest {
		if c < '0' || c > '9' {
			break
		}
		v = v*10 + int(c-'0')
		n++
	}
	if n == 0 {
		return -1
	}
	return v
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

func parseDescription(out []byte) (*base.Description, error) {
	var d base.Description
	if err := json.Unmarshal(out, &d); err != nil {
		return nil, fmt.Errorf("not the JSON of a plugin description: %v", err)
	}
	for _, c := range d.Plugins {
		if !slices.Contains(base.Kinds, c.Kind) || c.Name == "" {
			return nil, fmt.Errorf("plugin %q of unknown kind %q", c.Name, c.Kind)
		}
	}
	return &d, nil
}

// Close stops every plugin process the Manager started.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range m.running {
		if r.client != nil {
			wg.Add(1)
			go func() { defer wg.Done(); r.client.Kill() }()
		}
	}
	wg.Wait()
	m.running = nil
	return nil
}

// decorated names the plugin in its errors, and for a plugin that died
// adds what it wrote last.
type decorated struct {
	filesystem.Client
	r *running
}

func (d *decorated) wrap(op string, err error) error { return d.r.wrap(op, err) }

// wrap names the plugin in err, and for a plugin that died adds what it
// wrote last.
func (r *running) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, base.ErrPluginExited) {
		if r.client != nil {
			// Give go-plugin a moment to collect the exit and the last
			// lines of stderr (it has read them all once Exited is true).
			for i := 0; i < 300 && !r.client.Exited(); i++ {
				time.Sleep(10 * time.Millisecond)
			}
		}
		return fmt.Errorf("%s: %s: the plugin process died: %w%s", r.what(), op, err, quote(r.tail.String()))
	}
	return fmt.Errorf("%s: %s: %w", r.what(), op, err)
}

func (d *decorated) Info(ctx context.Context) (*base.Info, error) {
	i, err := d.Client.Info(ctx)
	return i, d.wrap("info", err)
}

func (d *decorated) Configure(ctx context.Context, cfg base.Config) error {
	return d.wrap("configure", d.Client.Configure(ctx, cfg))
}

func (d *decorated) Capabilities(ctx context.Context) (*filesystem.Capabilities, error) {
	c, err := d.Client.Capabilities(ctx)
	return c, d.wrap("capabilities", err)
}

func (d *decorated) Probe(ctx context.Context, v filesystem.Volume) (*filesystem.ProbeResult, error) {
	r, err := d.Client.Probe(ctx, v)
	return r, d.wrap("probe", err)
}

func (d *decorated) UsedExtents(ctx context.Context, v filesystem.Volume, emit func(off, length int64) error) error {
	var emitErr error
	err := d.Client.UsedExtents(ctx, v, func(off, length int64) error {
		emitErr = emit(off, length)
		return emitErr
	})
	if err != nil && err == emitErr {
		return err // the caller's own error, as is
	}
	return d.wrap("used extents", err)
}

func (d *decorated) FixUp(ctx context.Context, v filesystem.Volume) error {
	return d.wrap("fix-up", d.Client.FixUp(ctx, v))
}

// transportDecorated names the plugin in a transport's errors. Errors the
// core's own source or sink returned inside a call come back through
// the plugin and are named too: the message says which side failed.
type transportDecorated struct {
	transport.Client
	r *running
}

func (d *transportDecorated) Configure(ctx context.Context, cfg base.Config) error {
	return d.r.wrap("configure", d.Client.Configure(ctx, cfg))
}

func (d *transportDecorated) Capabilities(ctx context.Context) (*transport.Capabilities, error) {
	c, err := d.Client.Capabilities(ctx)
	return c, d.r.wrap("capabilities", err)
}

func (d *transportDecorated) Send(ctx context.Context, s transport.Session, src transport.Source) (transport.Stats, error) {
	st, err := d.Client.Send(ctx, s, src)
	return st, d.r.wrap("send", err)
}

func (d *transportDecorated) Receive(ctx context.Context, s transport.Session, sink transport.Sink) (transport.Stats, error) {
	st, err := d.Client.Receive(ctx, s, sink)
	return st, d.r.wrap("receive", err)
}

func (d *transportDecorated) Fetch(ctx context.Context, s transport.Session, index int64) ([]byte, error) {
	b, err := d.Client.Fetch(ctx, s, index)
	return b, d.r.wrap(fmt.Sprintf("fetch chunk %d", index), err)
}

// bootDecorated names the plugin in a boot plugin's errors.
type bootDecorated struct {
	boot.Client
	r *running
}

func (d *bootDecorated) Configure(ctx context.Context, cfg base.Config) error {
	return d.r.wrap("configure", d.Client.Configure(ctx, cfg))
}

func (d *bootDecorated) Capabilities(ctx context.Context) (*boot.Capabilities, error) {
	c, err := d.Client.Capabilities(ctx)
	return c, d.r.wrap("capabilities", err)
}

func (d *bootDecorated) Serve(ctx context.Context, n boot.Network, b boot.Backend) error {
	return d.r.wrap("serve", d.Client.Serve(ctx, n, b))
}
