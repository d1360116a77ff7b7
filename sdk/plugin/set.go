// Package plugin turns a program into a diskcast plugin binary. A
// plugin's whole main is a few lines:
//
//	func main() {
//		set := plugin.NewSet()
//		set.RegisterFilesystem("squashfs", squashfs.New())
//		set.SetVersion("1.0.0")
//		if err := set.Run(); err != nil {
//			fmt.Fprintln(os.Stderr, err)
//			os.Exit(1)
//		}
//	}
//
// Run understands two subcommands: "describe" prints what the binary
// serves as JSON (base.Description), which diskcast reads when it lists
// plugins; "start KIND NAME" serves one plugin to diskcast over
// go-plugin's gRPC protocol. diskcast runs both; an operator runs
// neither. The diskcast binary uses a Set too, for its built-in plugins.
package plugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/diskcast/diskcast/sdk/base"
	"github.com/diskcast/diskcast/sdk/boot"
	"github.com/diskcast/diskcast/sdk/filesystem"
	"github.com/diskcast/diskcast/sdk/transport"
	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin" // this package is called plugin too
)

// Errors returned by Run and Start.
var (
	ErrUsage        = errors.New("plugin: usage")
	ErrNoSuchPlugin = errors.New("plugin: no such plugin in this binary")
	ErrNotStarted   = errors.New("plugin: not started by diskcast")
)

// Set is the plugins one binary serves.
type Set struct {
	version     string
	filesystems map[string]filesystem.Filesystem
	transports  map[string]transport.Transport
	boots       map[string]boot.Boot
}

// NewSet returns an empty set with version "0.0.0".
func NewSet() *Set {
	return &Set{
		version:     "0.0.0",
		filesystems: map[string]filesystem.Filesystem{},
		transports:  map[string]transport.Transport{},
		boots:       map[string]boot.Boot{},
	}
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

func (s *Set) check(kind base.Kind, name string, impl any) {
	if !nameRE.MatchString(name) {
		panic(fmt.Sprintf("plugin: register %s %q: a name is 1-63 of a-z, 0-9, '-' and '_', starting with a letter or digit", kind, name))
	}
	if impl == nil {
		panic(fmt.Sprintf("plugin: register %s %q: nil implementation", kind, name))
	}
	if s.has(kind, name) {
		panic(fmt.Sprintf("plugin: %s %q registered twice", kind, name))
	}
}

func (s *Set) has(kind base.Kind, name string) bool {
	switch kind {
	case base.KindFilesystem:
		_, ok := s.filesystems[name]
		return ok
	case base.KindTransport:
		_, ok := s.transports[name]
		return ok
	case base.KindBoot:
		_, ok := s.boots[name]
		return ok
	}
	return false
}

// RegisterFilesystem adds a filesystem plugin. It panics if the name is
// taken or invalid.
func (s *Set) RegisterFilesystem(name string, impl filesystem.Filesystem) {
	s.check(base.KindFilesystem, name, impl)
	s.filesystems[name] = impl
}

// RegisterTransport adds a transport plugin. It panics if the name is
// taken or invalid.
func (s *Set) RegisterTransport(name string, impl transport.Transport) {
	s.check(base.KindTransport, name, impl)
	s.transports[name] = impl
}

// RegisterBoot adds a boot plugin. It panics if the name is taken or
// invalid.
func (s *Set) RegisterBoot(name string, impl boot.Boot) {
	s.check(base.KindBoot, name, impl)
	s.boots[name] = impl
}

// SetVersion sets the version every plugin of the set reports.
func (s *Set) SetVersion(v string) { s.version = v }

// Filesystem returns a registered filesystem plugin, to call in process.
func (s *Set) Filesystem(name string) (filesystem.Filesystem, bool) {
	fs, ok := s.filesystems[name]
	return fs, ok
}

// Transport returns the registered transport plugin of that name.
func (s *Set) Transport(name string) (transport.Transport, bool) {
	t, ok := s.transports[name]
	return t, ok
}

// Boot returns the registered boot plugin of that name.
func (s *Set) Boot(name string) (boot.Boot, bool) {
	b, ok := s.boots[name]
	return b, ok
}

// Describe lists the set's plugins, sorted by kind and name.
func (s *Set) Describe() base.Description {
	d := base.Description{APIVersion: base.APIVersion, Version: s.version, Plugins: []base.Component{}}
	add := func(kind base.Kind, names []string) {
		slices.Sort(names)
		for _, n := range names {
			d.Plugins = append(d.Plugins, base.Component{Kind: kind, Name: n})
		}
	}
	add(base.KindFilesystem, keys(s.filesystems))
	add(base.KindTransport, keys(s.transports))
	add(base.KindBoot, keys(s.boots))
	return d
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// Run acts on the program's arguments: "describe" or "start KIND NAME".
func (s *Set) Run() error {
	return s.RunArgs(os.Args[1:], os.Stdout)
}

// RunArgs is Run with explicit arguments and output.
func (s *Set) RunArgs(args []string, stdout io.Writer) error {
	switch {
	case len(args) == 1 && args[0] == "describe":
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(s.Describe())
	case len(args) == 3 && args[0] == "start":
		return s.Start(base.Kind(args[1]), args[2])
	}
	return fmt.Errorf("%w: this is a diskcast plugin (%s); diskcast runs it: put it in a plugin directory with its .sha256 file and see 'diskcast plugins'. Subcommands: describe | start KIND NAME",
		ErrUsage, strings.Join(componentNames(s.Describe()), ", "))
}

func componentNames(d base.Description) []string {
	var out []string
	for _, c := range d.Plugins {
		out = append(out, string(c.Kind)+" "+c.Name)
	}
	return out
}

// Start serves one plugin of the set to the diskcast process that started
// this one, until diskcast stops it.
func (s *Set) Start(kind base.Kind, name string) error {
	gp, err := s.grpcPlugin(kind, name)
	if err != nil {
		return err
	}
	if os.Getenv(base.Handshake.MagicCookieKey) != base.Handshake.MagicCookieValue {
		return fmt.Errorf("%w: %s %s is served to diskcast, which starts it itself", ErrNotStarted, kind, name)
	}
	go exitWithParent(os.Getppid())
	if kind == base.KindTransport && os.Getenv("GOMAXPROCS") == "" {
		// A transport runs one event loop per session, which wakes often
		// and otherwise waits. With a second P, each of its wake-ups also
		// woke an idle thread to look for work: 8-10% of a multicast
		// sender's and receiver's CPU. An operator's GOMAXPROCS wins.
		runtime.GOMAXPROCS(1)
	}
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig: base.Handshake,
		VersionedPlugins: map[int]goplugin.PluginSet{
			base.APIVersion: {string(kind): gp},
		},
		GRPCServer: goplugin.DefaultGRPCServer,
		Logger:     Logger(),
	})
	return nil
}

// exitWithParent ends the plugin once the diskcast process that started it
// is gone. A diskcast killed with SIGKILL cannot stop its plugins, and an
// orphaned plugin must not go on serving: a multicast sender would keep
// sending.
func exitWithParent(parent int) {
	for range time.Tick(500 * time.Millisecond) {
		if os.Getppid() != parent {
			fmt.Fprintf(os.Stderr, "plugin: diskcast (pid %d) is gone; exiting\n", parent)
			os.Exit(3)
		}
	}
}

func (s *Set) grpcPlugin(kind base.Kind, name string) (goplugin.Plugin, error) {
	meta := base.Info{Kind: kind, Name: name, Version: s.version}
	switch kind {
	case base.KindFilesystem:
		if impl, ok := s.filesystems[name]; ok {
			return &filesystem.GRPCPlugin{Impl: impl, Meta: meta}, nil
		}
	case base.KindTransport:
		if impl, ok := s.transports[name]; ok {
			return &transport.GRPCPlugin{Impl: impl, Meta: meta}, nil
		}
	case base.KindBoot:
		if impl, ok := s.boots[name]; ok {
			return &boot.GRPCPlugin{Impl: impl, Meta: meta}, nil
		}
	}
	return nil, fmt.Errorf("%w: %s %q (it has: %s)", ErrNoSuchPlugin, kind, name, strings.Join(componentNames(s.Describe()), ", "))
}

// Logger returns the logger a plugin should use: JSON lines on stderr,
// which diskcast reads and merges into its own log. The level comes from
// DISKCAST_PLUGIN_LOG (trace, debug, info, warn, error; default info).
func Logger() hclog.Logger {
	level := hclog.LevelFromString(os.Getenv("DISKCAST_PLUGIN_LOG"))
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	return hclog.New(&hclog.LoggerOptions{Output: os.Stderr, JSONFormat: true, Level: level})
}
