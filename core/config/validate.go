package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// validate fills defaults and derived fields and checks references,
// reporting every problem.
func (cfg *Config) validate() hcl.Diagnostics {
	var diags hcl.Diagnostics
	diags = append(diags, cfg.Server.validate()...)
	diags = append(diags, checkUnique(cfg.Images, "image", func(i *Image) (string, hcl.Range) { return i.Name, i.DefRange })...)
	diags = append(diags, checkUnique(cfg.Nodes, "node", func(n *Node) (string, hcl.Range) { return n.Name, n.DefRange })...)
	diags = append(diags, checkUnique(cfg.Groups, "node_group", func(g *NodeGroup) (string, hcl.Range) { return g.Name, g.DefRange })...)
	diags = append(diags, checkUnique(cfg.Sessions, "session", func(s *Session) (string, hcl.Range) { return s.Name, s.DefRange })...)
	diags = append(diags, checkUnique(cfg.Plugins, "plugin", func(p *Plugin) (string, hcl.Range) { return p.Kind + " " + p.Name, p.DefRange })...)

	for _, im := range cfg.Images {
		if im.Path == "" {
			diags = append(diags, errAt(attrRange(im.body, "path", im.DefRange), "Empty image path", "Set path to the .dci file, e.g. \"/srv/diskcast/golden.dci\"."))
		} else if _, err := os.Stat(im.Path); err != nil {
			diags = append(diags, warnAt(attrRange(im.body, "path", im.DefRange), "Image file not found",
				fmt.Sprintf("%s does not exist yet (%v); capture it before starting a session that uses it.", im.Path, errText(err))))
		}
		if im.Signer != "" {
			if _, err := os.Stat(im.Signer); err != nil {
				diags = append(diags, errAt(attrRange(im.body, "signer", im.DefRange), "Signer key not found",
					fmt.Sprintf("%s: %s; point signer at a public key file from 'diskcast keygen'.", im.Signer, errText(err))))
			}
		}
	}

	macs := map[string]*Node{}
	for _, n := range cfg.Nodes {
		hw, err := net.ParseMAC(n.MAC)
		if err != nil || len(hw) != 6 {
			diags = append(diags, errAt(attrRange(n.body, "mac", n.DefRange), "Invalid MAC address",
				fmt.Sprintf("%q is not an Ethernet MAC address; write it like \"52:54:00:12:34:56\".", n.MAC)))
			continue
		}
		n.HW = hw
		if first, dup := macs[hw.String()]; dup {
			diags = append(diags, errAt(attrRange(n.body, "mac", n.DefRange), "Duplicate MAC address",
				fmt.Sprintf("Nodes %q and %q both have MAC %s (%q is at %s).", first.Name, n.Name, hw, first.Name, first.DefRange)))
		}
		macs[hw.String()] = n
		if n.IP != "" {
			if _, err := netip.ParseAddr(n.IP); err != nil {
				diags = append(diags, errAt(attrRange(n.body, "ip", n.DefRange), "Invalid IP address", fmt.Sprintf("%q: %v.", n.IP, err)))
			}
		}
		if n.Disk != "" && !filepath.IsAbs(n.Disk) {
			diags = append(diags, errAt(attrRange(n.body, "disk", n.DefRange), "Relative disk path", fmt.Sprintf("disk %q must be an absolute device path such as /dev/sda.", n.Disk)))
		}
	}

	for _, g := range cfg.Groups {
		var d hcl.Diagnostics
		g.Expanded, d = cfg.expandMembers(g.Members, attrRange(g.body, "nodes", g.DefRange))
		diags = append(diags, d...)
	}
	for _, s := range cfg.Sessions {
		diags = append(diags, cfg.validateSession(s)...)
	}
	return diags
}

func (sv *Server) validate() hcl.Diagnostics {
	var diags hcl.Diagnostics
	def := hcl.Range{}
	at := func(name string) *hcl.Range {
		if sv.body == nil {
			return nil
		}
		return attrRange(sv.body, name, def)
	}
	if sv.Listen == "" {
		sv.Listen = DefaultListen
	}
	if _, _, err := net.SplitHostPort(sv.Listen); err != nil {
		diags = append(diags, errAt(at("listen"), "Invalid listen address", fmt.Sprintf("%q: %v; write host:port, e.g. \"127.0.0.1:7400\".", sv.Listen, err)))
	}
	if sv.StateDir == "" {
		sv.StateDir = DefaultStateDir
	}
	if sv.BootDir == "" {
		sv.BootDir = DefaultBootDir
	}
	if sv.BootCmdline == "" {
		sv.BootCmdline = DefaultCmdline
	}
	if sv.URL == "" {
		host, port, _ := net.SplitHostPort(sv.Listen)
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1" // nodes need url set; see the README
		}
		sv.URL = "http://" + net.JoinHostPort(host, port)
	} else if u, err := url.Parse(sv.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		diags = append(diags, errAt(at("url"), "Invalid URL", fmt.Sprintf("%q: write the address nodes reach the API at, e.g. \"http://10.0.0.1:7400\".", sv.URL)))
	}
	sv.URL = strings.TrimSuffix(sv.URL, "/")
	if sv.MulticastPool == "" {
		sv.MulticastPool = DefaultPool
	}
	pool, err := netip.ParsePrefix(sv.MulticastPool)
	switch {
	case err != nil:
		diags = append(diags, errAt(at("multicast_pool"), "Invalid multicast pool", fmt.Sprintf("%q: %v; write a CIDR such as \"239.192.0.0/24\".", sv.MulticastPool, err)))
	case !pool.Addr().Is4() || !pool.Addr().IsMulticast():
		diags = append(diags, errAt(at("multicast_pool"), "Not a multicast range", fmt.Sprintf("%s is not in 224.0.0.0/4; use an administratively scoped range in 239.0.0.0/8.", sv.MulticastPool)))
	default:
		sv.Pool = pool.Masked()
		if !netip.MustParsePrefix("239.0.0.0/8").Contains(pool.Addr()) {
			diags = append(diags, warnAt(at("multicast_pool"), "Multicast pool outside 239.0.0.0/8", "Groups outside the administratively scoped range may be routed beyond the LAN."))
		}
	}
	if sv.Ports == "" {
		sv.Ports = DefaultPorts
	}
	lo, hi, ok := strings.Cut(sv.Ports, "-")
	a, err1 := strconv.Atoi(lo)
	b, err2 := strconv.Atoi(hi)
	if !ok || err1 != nil || err2 != nil || a < 1024 || b > 65535 || b < a {
		diags = append(diags, errAt(at("ports"), "Invalid port range", fmt.Sprintf("%q: write LOW-HIGH within 1024-65535, e.g. %q.", sv.Ports, DefaultPorts)))
	} else {
		sv.PortLow, sv.PortHigh = a, b
	}
	switch sv.LogFormat {
	case "", "text", "json":
	default:
		diags = append(diags, errAt(at("log_format"), "Invalid log format", fmt.Sprintf("%q: use \"text\" or \"json\".", sv.LogFormat)))
	}
	if sv.Auth != nil && sv.Auth.Token != "" && sv.Auth.TokenFile != "" {
		diags = append(diags, errAt(at("auth"), "Two API tokens", "Set either token or token_file in the auth block, not both."))
	}
	return diags
}

func (cfg *Config) validateSession(s *Session) hcl.Diagnostics {
	var diags hcl.Diagnostics
	if cfg.Image(s.Image) == nil {
		diags = append(diags, errAt(attrRange(s.body, "image", s.DefRange), "Unknown image",
			fmt.Sprintf("Session %q uses image %q, which no image block defines.%s", s.Name, s.Image, suggest(s.Image, names(cfg.Images, func(i *Image) string { return i.Name })))))
	}
	members, d := cfg.expandMembers(s.Nodes, attrRange(s.body, "nodes", s.DefRange))
	diags = append(diags, d...)
	for _, gname := range s.Groups {
		i := -1
		for j, g := range cfg.Groups {
			if g.Name == gname {
				i = j
			}
		}
		if i < 0 {
			diags = append(diags, errAt(attrRange(s.body, "groups", s.DefRange), "Unknown node group",
				fmt.Sprintf("Session %q uses node_group %q, which is not defined.%s", s.Name, gname, suggest(gname, names(cfg.Groups, func(g *NodeGroup) string { return g.Name })))))
			continue
		}
		members = append(members, cfg.Groups[i].Expanded...)
	}
	seen := map[string]bool{}
	for _, m := range members {
		if !seen[m] {
			seen[m] = true
			s.Members = append(s.Members, m)
		}
	}
	if len(s.Members) == 0 && !diags.HasErrors() {
		diags = append(diags, errAt(s.DefRange.Ptr(), "Session without nodes", fmt.Sprintf("Session %q names no nodes; set nodes = [...] or groups = [...].", s.Name)))
	}
	if s.Target == "" {
		s.Target = DefaultTarget
	} else if !filepath.IsAbs(s.Target) {
		diags = append(diags, errAt(attrRange(s.body, "target", s.DefRange), "Relative target", fmt.Sprintf("target %q must be an absolute device path such as /dev/sda or /dev/nvme0n1.", s.Target)))
	}
	switch s.After {
	case "":
		s.After = DefaultAfter
	case "reboot", "poweroff", "stay":
	default:
		diags = append(diags, errAt(attrRange(s.body, "after", s.DefRange), "Invalid after", fmt.Sprintf("after = %q: use \"reboot\" (boot the new system), \"poweroff\" or \"stay\".", s.After)))
	}
	if s.Transport == nil {
		s.Transport = &Transport{Kind: "multicast"}
	}
	diags = append(diags, s.Transport.validate(s)...)
	if s.Timeouts == nil {
		s.Timeouts = &Timeouts{}
	}
	t := s.Timeouts
	for _, f := range []struct {
		text string
		dst  *time.Duration
		def  time.Duration
		name string
	}{{t.Boot, &t.BootDur, defaultBootTO, "boot"}, {t.Receive, &t.ReceiveDur, defaultReceiveTO, "receive"}, {t.Verify, &t.VerifyDur, defaultVerifyTO, "verify"}} {
		*f.dst = f.def
		if f.text != "" {
			d, err := time.ParseDuration(f.text)
			if err != nil || d <= 0 {
				diags = append(diags, errAt(s.DefRange.Ptr(), "Invalid timeout", fmt.Sprintf("timeouts.%s = %q: write a duration such as \"10m\" or \"1h30m\".", f.name, f.text)))
			}
			*f.dst = d
		}
	}
	return diags
}

func (t *Transport) validate(s *Session) hcl.Diagnostics {
	var diags hcl.Diagnostics
	at := s.DefRange.Ptr()
	switch t.Kind {
	case "multicast", "http":
	default:
		diags = append(diags, errAt(at, "Unknown transport", fmt.Sprintf("transport %q in session %q: use \"multicast\" or \"http\".", t.Kind, s.Name)))
	}
	if t.Rate != "" && t.Rate != "adaptive" {
		n, err := ParseRate(t.Rate)
		if err != nil {
			diags = append(diags, errAt(at, "Invalid rate", fmt.Sprintf("rate = %q in session %q: %v.", t.Rate, s.Name, err)))
		}
		t.RateBytes = n
	}
	if t.MinReceivers < 0 {
		diags = append(diags, errAt(at, "Invalid min_receivers", "min_receivers cannot be negative."))
	}
	for _, f := range []struct {
		text string
		dst  *time.Duration
		name string
	}{{t.MinWait, &t.MinWaitDur, "min_wait"}, {t.MaxWait, &t.MaxWaitDur, "max_wait"}} {
		if f.text == "" {
			continue
		}
		d, err := time.ParseDuration(f.text)
		if err != nil || d < 0 {
			diags = append(diags, errAt(at, "Invalid duration", fmt.Sprintf("%s = %q: write a duration such as \"30s\" or \"5m\".", f.name, f.text)))
		}
		*f.dst = d
	}
	if t.MaxWaitDur > 0 && t.MinWaitDur > t.MaxWaitDur {
		diags = append(diags, errAt(at, "min_wait after max_wait", fmt.Sprintf("min_wait %s is longer than max_wait %s.", t.MinWaitDur, t.MaxWaitDur)))
	}
	return diags
}

// ParseRate reads a bit rate such as "600M" or "1G" (bits per second, as
// udpcast's --max-bitrate) and returns bytes per second.
func ParseRate(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToLower(s), "bps"), "bit")
	mult := 1.0
	switch {
	case strings.HasSuffix(t, "k"):
		mult, t = 1e3, t[:len(t)-1]
	case strings.HasSuffix(t, "m"):
		mult, t = 1e6, t[:len(t)-1]
	case strings.HasSuffix(t, "g"):
		mult, t = 1e9, t[:len(t)-1]
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("write a bit rate such as \"600M\" or \"1G\", or \"adaptive\"")
	}
	return int64(v * mult / 8), nil
}

// expandMembers expands node names and range expressions. Names that no
// node block defines are allowed (nodes may enroll at run time) but warned
// about.
func (cfg *Config) expandMembers(exprs []string, at *hcl.Range) ([]string, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	var out []string
	for _, e := range exprs {
		names, err := ExpandRange(e)
		if err != nil {
			diags = append(diags, errAt(at, "Invalid node range", fmt.Sprintf("%v; write names like \"pc001\" or ranges like \"pc[001-080]\".", err)))
			continue
		}
		var unknown []string
		for _, n := range names {
			if cfg.Node(n) == nil {
				unknown = append(unknown, n)
			}
		}
		if len(unknown) > 0 {
			diags = append(diags, warnAt(at, "Nodes not defined",
				fmt.Sprintf("%d of the names in %q (first: %s) have no node block; they can join only after they enroll.", len(unknown), e, unknown[0])))
		}
		out = append(out, names...)
	}
	return out, diags
}

func checkUnique[T any](items []T, kind string, key func(T) (string, hcl.Range)) hcl.Diagnostics {
	var diags hcl.Diagnostics
	seen := map[string]hcl.Range{}
	for _, it := range items {
		name, r := key(it)
		if first, dup := seen[name]; dup {
			diags = append(diags, errAt(r.Ptr(), "Duplicate "+kind, fmt.Sprintf("%s %q is already defined at %s; rename one of them.", kind, name, first)))
			continue
		}
		seen[name] = r
	}
	return diags
}

func names[T any](items []T, name func(T) string) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = name(it)
	}
	return out
}

// suggest returns a " Did you mean ...?" hint for the closest known name.
func suggest(got string, known []string) string {
	best, dist := "", 3
	for _, k := range known {
		if d := levenshtein(got, k); d < dist {
			best, dist = k, d
		}
	}
	if best != "" {
		return fmt.Sprintf(" Did you mean %q?", best)
	}
	if len(known) > 0 {
		return " Defined: " + quoted(known) + "."
	}
	return ""
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

func errText(err error) string {
	if os.IsNotExist(err) {
		return "no such file"
	}
	return err.Error()
}
