// Package config loads the orchestrator's HCL configuration: a directory of
// *.hcl files with server, plugin, image, node, node_group and session
// blocks, plus variables and locals. Loading reports every problem at once
// as hcl.Diagnostics with file:line and a hint, so `diskcast validate`
// can show them all.
package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Config is a loaded, validated configuration.
type Config struct {
	Files    map[string]*hcl.File // by path, for printing diagnostics
	Server   Server
	Plugins  []*Plugin
	Images   []*Image
	Nodes    []*Node
	Groups   []*NodeGroup
	Sessions []*Session
}

// Server is the `server` block.
type Server struct {
	Listen        string   `hcl:"listen,optional"`
	Interface     string   `hcl:"interface,optional"`
	StateDir      string   `hcl:"state_dir,optional"`
	ImageDir      string   `hcl:"image_dir,optional"`
	PluginDirs    []string `hcl:"plugin_dirs,optional"`
	MulticastPool string   `hcl:"multicast_pool,optional"`
	Ports         string   `hcl:"ports,optional"`
	LogFormat     string   `hcl:"log_format,optional"`
	Auth          *Auth    `hcl:"auth,block"`
	// Network boot: the URL nodes reach the API at, the directory of the
	// imaging environment (vmlinuz, initrd.img) and its extra kernel
	// parameters.
	URL         string `hcl:"url,optional"`
	BootDir     string `hcl:"boot_dir,optional"`
	BootCmdline string `hcl:"boot_cmdline,optional"`

	// Derived from the fields above.
	Pool     netip.Prefix
	body     hcl.Body
	PortLow  int
	PortHigh int
}

// Auth holds the API's bearer token (inline, or in a file).
type Auth struct {
	Token     string `hcl:"token,optional"`
	TokenFile string `hcl:"token_file,optional"`
}

// Plugin is a `plugin "KIND" "NAME"` block; its body is decoded later with
// the schema the plugin reports.
type Plugin struct {
	Kind     string   `hcl:"kind,label"`
	Name     string   `hcl:"name,label"`
	Body     hcl.Body `hcl:",remain"`
	EvalCtx  *hcl.EvalContext
	DefRange hcl.Range
}

// Image is an `image "NAME"` block.
type Image struct {
	Name        string `hcl:"name,label"`
	Path        string `hcl:"path"`
	Signer      string `hcl:"signer,optional"`
	Description string `hcl:"description,optional"`
	DefRange    hcl.Range
	body        hcl.Body
}

// Node is a `node "NAME"` block.
type Node struct {
	Name     string            `hcl:"name,label"`
	MAC      string            `hcl:"mac"`
	IP       string            `hcl:"ip,optional"`
	Disk     string            `hcl:"disk,optional"`
	Labels   map[string]string `hcl:"labels,optional"`
	HW       net.HardwareAddr
	DefRange hcl.Range
	body     hcl.Body
}

// NodeGroup is a `node_group "NAME"` block; members are node names or
// range expressions such as pc[001-080].
type NodeGroup struct {
	Name     string   `hcl:"name,label"`
	Members  []string `hcl:"nodes"`
	Expanded []string
	DefRange hcl.Range
	body     hcl.Body
}

// Session is a `session "NAME"` block.
type Session struct {
	Name      string     `hcl:"name,label"`
	Image     string     `hcl:"image"`
	Nodes     []string   `hcl:"nodes,optional"`
	Groups    []string   `hcl:"groups,optional"`
	Target    string     `hcl:"target,optional"`
	After     string     `hcl:"after,optional"`
	Autostart bool       `hcl:"autostart,optional"`
	Transport *Transport `hcl:"transport,block"`
	Timeouts  *Timeouts  `hcl:"timeouts,block"`

	// Derived.
	Members  []string // every node name, groups expanded, in order
	DefRange hcl.Range
	body     hcl.Body
}

// Transport says how a session moves the image.
type Transport struct {
	Kind         string `hcl:"kind,label"` // "multicast" or "http"
	Rate         string `hcl:"rate,optional"`
	MinReceivers int    `hcl:"min_receivers,optional"`
	MinWait      string `hcl:"min_wait,optional"`
	MaxWait      string `hcl:"max_wait,optional"`

	RateBytes              int64 // 0: adaptive
	MinWaitDur, MaxWaitDur time.Duration
}

// Timeouts bound each step of a node's session.
type Timeouts struct {
	Boot    string `hcl:"boot,optional"`
	Receive string `hcl:"receive,optional"`
	Verify  string `hcl:"verify,optional"`

	BootDur, ReceiveDur, VerifyDur time.Duration
}

// Defaults for fields left out.
const (
	DefaultListen    = "127.0.0.1:7400"
	DefaultStateDir  = "/var/lib/diskcast"
	DefaultBootDir   = "/usr/lib/diskcast/bootenv"
	DefaultCmdline   = "console=tty0 console=ttyS0,115200"
	DefaultPool      = "239.192.0.0/24"
	DefaultPorts     = "40000-40999"
	DefaultTarget    = "/dev/sda"
	DefaultAfter     = "reboot"
	defaultBootTO    = 10 * time.Minute
	defaultReceiveTO = 2 * time.Hour
	defaultVerifyTO  = 30 * time.Minute
)

// fileBody is what a file may contain at the top level.
var fileSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "variable", LabelNames: []string{"name"}},
		{Type: "locals"},
		{Type: "server"},
		{Type: "plugin", LabelNames: []string{"kind", "name"}},
		{Type: "image", LabelNames: []string{"name"}},
		{Type: "node", LabelNames: []string{"name"}},
		{Type: "node_group", LabelNames: []string{"name"}},
		{Type: "session", LabelNames: []string{"name"}},
	},
}

// LoadDir loads every *.hcl file in dir (sorted by name). Variables can be
// set from the environment as DISKCAST_VAR_<name>.
func LoadDir(dir string) (*Config, hcl.Diagnostics) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.hcl"))
	if err != nil || len(paths) == 0 {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "No configuration files",
			Detail:   fmt.Sprintf("%s has no *.hcl files; see configs/ for examples.", dir),
		}}
	}
	sort.Strings(paths)
	return LoadFiles(paths...)
}

// LoadFiles loads the given files as one configuration.
func LoadFiles(paths ...string) (*Config, hcl.Diagnostics) {
	p := hclparse.NewParser()
	var diags hcl.Diagnostics
	var bodies []hcl.Body
	for _, path := range paths {
		f, d := p.ParseHCLFile(path)
		diags = append(diags, d...)
		if f != nil {
			bodies = append(bodies, f.Body)
		}
	}
	cfg := &Config{Files: p.Files()}
	if diags.HasErrors() {
		return cfg, diags
	}
	var blocks hcl.Blocks
	for _, b := range bodies {
		content, d := b.Content(fileSchema)
		diags = append(diags, d...)
		if content != nil {
			blocks = append(blocks, content.Blocks...)
		}
	}
	ctx, d := evalContext(blocks, os.Getenv)
	diags = append(diags, d...)
	if d.HasErrors() {
		return cfg, diags
	}
	diags = append(diags, cfg.decode(blocks, ctx)...)
	diags = append(diags, cfg.validate()...)
	sortDiags(diags)
	return cfg, diags
}

// sortDiags orders diagnostics by file and line, so they read like the
// configuration.
func sortDiags(diags hcl.Diagnostics) {
	sort.SliceStable(diags, func(i, j int) bool {
		a, b := diags[i].Subject, diags[j].Subject
		if a == nil || b == nil {
			return a != nil
		}
		if a.Filename != b.Filename {
			return a.Filename < b.Filename
		}
		return a.Start.Byte < b.Start.Byte
	})
}

func (cfg *Config) decode(blocks hcl.Blocks, ctx *hcl.EvalContext) hcl.Diagnostics {
	var diags hcl.Diagnostics
	var serverSeen *hcl.Block
	for _, b := range blocks {
		switch b.Type {
		case "server":
			if serverSeen != nil {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError, Summary: "Duplicate server block",
					Detail:  fmt.Sprintf("Only one server block is allowed; the first is at %s.", serverSeen.DefRange),
					Subject: b.DefRange.Ptr(),
				})
				continue
			}
			serverSeen = b
			cfg.Server.body = b.Body
			diags = append(diags, gohcl.DecodeBody(b.Body, ctx, &cfg.Server)...)
		case "plugin":
			diags = append(diags, decodeInto(b, ctx, func(pl *Plugin) { pl.EvalCtx, pl.DefRange = ctx, b.DefRange; cfg.Plugins = append(cfg.Plugins, pl) })...)
		case "image":
			diags = append(diags, decodeInto(b, ctx, func(im *Image) { im.DefRange, im.body = b.DefRange, b.Body; cfg.Images = append(cfg.Images, im) })...)
		case "node":
			diags = append(diags, decodeInto(b, ctx, func(n *Node) { n.DefRange, n.body = b.DefRange, b.Body; cfg.Nodes = append(cfg.Nodes, n) })...)
		case "node_group":
			diags = append(diags, decodeInto(b, ctx, func(g *NodeGroup) { g.DefRange, g.body = b.DefRange, b.Body; cfg.Groups = append(cfg.Groups, g) })...)
		case "session":
			diags = append(diags, decodeInto(b, ctx, func(s *Session) { s.DefRange, s.body = b.DefRange, b.Body; cfg.Sessions = append(cfg.Sessions, s) })...)
		}
	}
	return diags
}

// decodeInto decodes a labelled block into a new T and hands it to keep
// when decoding succeeded.
func decodeInto[T any](b *hcl.Block, ctx *hcl.EvalContext, keep func(*T)) hcl.Diagnostics {
	v := new(T)
	diags := gohcl.DecodeBody(b.Body, ctx, v)
	if diags.HasErrors() {
		return diags
	}
	setLabels(v, b.Labels)
	keep(v)
	return diags
}

// setLabels fills the label fields, which gohcl only fills for nested
// blocks decoded through a parent struct.
func setLabels(v any, labels []string) {
	switch t := v.(type) {
	case *Plugin:
		t.Kind, t.Name = labels[0], labels[1]
	case *Image:
		t.Name = labels[0]
	case *Node:
		t.Name = labels[0]
	case *NodeGroup:
		t.Name = labels[0]
	case *Session:
		t.Name = labels[0]
	}
}

// attrRange returns where attribute name is set in a block, or the block
// header when that is unknown.
func attrRange(body hcl.Body, name string, def hcl.Range) *hcl.Range {
	if sb, ok := body.(*hclsyntax.Body); ok {
		if a, ok := sb.Attributes[name]; ok {
			r := a.SrcRange
			return &r
		}
	}
	return def.Ptr()
}

func errAt(subject *hcl.Range, summary, detail string) *hcl.Diagnostic {
	return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: subject}
}

func warnAt(subject *hcl.Range, summary, detail string) *hcl.Diagnostic {
	return &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: summary, Detail: detail, Subject: subject}
}

// Session returns the named session, or nil.
func (cfg *Config) Session(name string) *Session {
	i := slices.IndexFunc(cfg.Sessions, func(s *Session) bool { return s.Name == name })
	if i < 0 {
		return nil
	}
	return cfg.Sessions[i]
}

// Image returns the named image, or nil.
func (cfg *Config) Image(name string) *Image {
	i := slices.IndexFunc(cfg.Images, func(im *Image) bool { return im.Name == name })
	if i < 0 {
		return nil
	}
	return cfg.Images[i]
}

// Node returns the named node, or nil.
func (cfg *Config) Node(name string) *Node {
	i := slices.IndexFunc(cfg.Nodes, func(n *Node) bool { return n.Name == name })
	if i < 0 {
		return nil
	}
	return cfg.Nodes[i]
}

// quoted lists names for hints.
func quoted(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}
