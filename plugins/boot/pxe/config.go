package pxe

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Modes of the DHCP server.
const (
	ModeDHCP  = "dhcp"  // full DHCP server with an address pool
	ModeProxy = "proxy" // proxyDHCP beside the site's own DHCP server
)

// What to do with a machine the core does not know.
const (
	UnknownLocal = "local" // boot it from its local disk
	UnknownHold  = "hold"  // keep it waiting in iPXE, asking again
)

// How a known node without an assignment boots its local disk.
const (
	LocalExit    = "exit"    // iPXE exits: the firmware tries its next boot device
	LocalSanboot = "sanboot" // BIOS: sanboot drive 0x80; UEFI: exit
)

// Config is the plugin's configuration. Its hcl tags are the plugin's
// config schema (base.SchemaOf), and DefaultConfig's values its defaults.
type Config struct {
	Mode      string `hcl:"mode,optional" help:"DHCP mode: \"dhcp\" (full server with an address pool) or \"proxy\" (proxyDHCP beside the site's DHCP server: boot information only, no addresses)"`
	Interface string `hcl:"interface,optional" help:"network interface to serve on (its broadcasts only); empty: bind to server_ip, which then sees only unicast and relayed requests"`
	ServerIP  string `hcl:"server_ip,optional" help:"this host's IPv4 address on the boot network: next-server, DHCP server identifier and host of the script URLs (default: from the core)"`

	PoolStart  string   `hcl:"pool_start,optional" help:"first address of the DHCP pool (mode dhcp)"`
	PoolEnd    string   `hcl:"pool_end,optional" help:"last address of the DHCP pool (mode dhcp)"`
	SubnetMask string   `hcl:"subnet_mask,optional" help:"subnet mask of the pool's network (mode dhcp)"`
	Router     string   `hcl:"router,optional" help:"default gateway handed out (option 3); empty: none"`
	DNS        []string `hcl:"dns,optional" help:"DNS servers handed out (option 6); empty: none"`
	LeaseTime  int      `hcl:"lease_time,optional" help:"lease time in seconds (mode dhcp)"`
	LeaseFile  string   `hcl:"lease_file,optional" help:"file that keeps the leases across restarts (mode dhcp); empty: leases live in memory only"`

	TFTPRoot   string `hcl:"tftp_root,optional" help:"directory served read-only over TFTP (the iPXE binaries)"`
	BIOSFile   string `hcl:"bios_file,optional" help:"TFTP file for BIOS PXE firmware (client arch 0)"`
	EFIFile    string `hcl:"efi_file,optional" help:"TFTP file for x86-64 UEFI firmware (client arch 7 and 9)"`
	EFI32File  string `hcl:"efi32_file,optional" help:"TFTP file for IA32 UEFI firmware (client arch 6); empty: such clients get no answer"`
	ARM64File  string `hcl:"arm64_file,optional" help:"TFTP file for ARM64 UEFI firmware (client arch 11); empty: such clients get no answer"`
	HTTPListen string `hcl:"http_listen,optional" help:"address:port of the HTTP server for iPXE scripts and files_dir"`
	FilesDir   string `hcl:"files_dir,optional" help:"directory served read-only under /files/ over HTTP (kernels, initrds); empty: none"`
	Unknown    string `hcl:"unknown,optional" help:"machines the core does not know: \"local\" (boot the local disk) or \"hold\" (wait in iPXE and ask again)"`
	HoldRetry  int    `hcl:"hold_retry,optional" help:"seconds a held machine waits before it asks again"`
	LocalBoot  string `hcl:"local_boot,optional" help:"how iPXE boots the local disk: \"exit\" (back to the firmware's next boot device) or \"sanboot\" (BIOS: sanboot drive 0x80; UEFI: exit)"`

	DHCPPort   int `hcl:"dhcp_port,optional" help:"DHCP server port"`
	ProxyPort  int `hcl:"proxy_port,optional" help:"PXE (proxyDHCP) request port"`
	TFTPPort   int `hcl:"tftp_port,optional" help:"TFTP port"`
	ClientPort int `hcl:"client_port,optional" help:"port DHCP clients listen on"`
	RelayPort  int `hcl:"relay_port,optional" help:"port relay agents listen on (replies to relayed requests go to giaddr on this port)"`
}

// DefaultConfig returns the defaults: proxyDHCP (a full DHCP server
// started by accident on a site's LAN would hand out addresses beside the
// site's own), standard ports, the iPXE binaries of Debian's ipxe
// package, unknown machines boot locally. For UEFI it is snponly.efi
// (iPXE driving the NIC through the firmware's own driver): Debian's
// /usr/lib/ipxe/ipxe.efi is a symbolic link to /boot/ipxe.efi, which the
// confined TFTP server refuses.
func DefaultConfig() Config {
	return Config{
		Mode:       ModeProxy,
		LeaseTime:  3600,
		TFTPRoot:   "/usr/lib/ipxe",
		BIOSFile:   "undionly.kpxe",
		EFIFile:    "snponly.efi",
		HTTPListen: ":8067",
		Unknown:    UnknownLocal,
		HoldRetry:  10,
		LocalBoot:  LocalExit,
		DHCPPort:   67,
		ProxyPort:  4011,
		TFTPPort:   69,
		ClientPort: 68,
		RelayPort:  67,
	}
}

// settings is a checked Config in the forms the servers use.
type settings struct {
	Config
	serverIP   netip.Addr
	pool       *pool // nil in proxy mode
	router     net.IP
	dns        []net.IP
	leaseTime  time.Duration
	httpPort   int
	scriptBase string // http://server:port
}

// pool is a range of addresses in one subnet.
type pool struct {
	start, end netip.Addr
	mask       net.IPMask
	prefix     netip.Prefix
}

func (p *pool) contains(a netip.Addr) bool {
	return a.Is4() && p.start.Compare(a) <= 0 && a.Compare(p.end) <= 0
}

func (p *pool) size() int {
	return int(ip4u(p.end)-ip4u(p.start)) + 1
}

func ip4u(a netip.Addr) uint32 { b := a.As4(); return binary.BigEndian.Uint32(b[:]) }

func u2ip4(u uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], u)
	return netip.AddrFrom4(b)
}

// check validates c and reports every problem at once, naming the key.
// With partial, a missing server_ip is accepted: the plugin learns it
// from the core when it starts serving.
func (c Config) check(partial bool) (*settings, error) {
	s := &settings{Config: c}
	var problems []string
	bad := func(key, format string, a ...any) {
		problems = append(problems, key+": "+fmt.Sprintf(format, a...))
	}
	addr4 := func(key, v string) netip.Addr {
		a, err := netip.ParseAddr(v)
		if err != nil || !a.Is4() {
			bad(key, "%q is not an IPv4 address", v)
			return netip.Addr{}
		}
		return a
	}
	switch c.Mode {
	case ModeDHCP, ModeProxy:
	default:
		bad("mode", "%q: want %q or %q", c.Mode, ModeDHCP, ModeProxy)
	}
	if c.ServerIP == "" {
		if !partial {
			bad("server_ip", "required (the core did not give one either)")
		}
	} else {
		s.serverIP = addr4("server_ip", c.ServerIP)
	}
	if c.Mode == ModeDHCP {
		s.pool = c.checkPool(bad, addr4)
		if c.LeaseTime < 60 || c.LeaseTime > 1<<30 {
			bad("lease_time", "%d s: want 60 to %d", c.LeaseTime, 1<<30)
		}
		s.leaseTime = time.Duration(c.LeaseTime) * time.Second
	}
	if c.Router != "" {
		if a := addr4("router", c.Router); a.IsValid() {
			s.router = net.IP(a.AsSlice())
		}
	}
	for i, d := range c.DNS {
		if a := addr4(fmt.Sprintf("dns[%d]", i), d); a.IsValid() {
			s.dns = append(s.dns, net.IP(a.AsSlice()))
		}
	}
	if c.TFTPRoot == "" {
		bad("tftp_root", "required")
	}
	if c.BIOSFile == "" && c.EFIFile == "" && c.EFI32File == "" && c.ARM64File == "" {
		bad("bios_file", "at least one of bios_file, efi_file, efi32_file, arm64_file is needed")
	}
	switch c.Unknown {
	case UnknownLocal, UnknownHold:
	default:
		bad("unknown", "%q: want %q or %q", c.Unknown, UnknownLocal, UnknownHold)
	}
	switch c.LocalBoot {
	case LocalExit, LocalSanboot:
	default:
		bad("local_boot", "%q: want %q or %q", c.LocalBoot, LocalExit, LocalSanboot)
	}
	if c.HoldRetry < 1 || c.HoldRetry > 3600 {
		bad("hold_retry", "%d s: want 1 to 3600", c.HoldRetry)
	}
	host, port, err := net.SplitHostPort(c.HTTPListen)
	if err != nil {
		bad("http_listen", "%q: want address:port (%v)", c.HTTPListen, err)
	} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		bad("http_listen", "%q: bad port", c.HTTPListen)
	} else {
		s.httpPort = p
		if host != "" {
			if a, err := netip.ParseAddr(host); err != nil || !(a.Is4() || a.Is6()) {
				bad("http_listen", "%q: host must be an IP address", c.HTTPListen)
			}
		}
	}
	for _, p := range []struct {
		key  string
		port int
	}{{"dhcp_port", c.DHCPPort}, {"proxy_port", c.ProxyPort}, {"tftp_port", c.TFTPPort}, {"client_port", c.ClientPort}, {"relay_port", c.RelayPort}} {
		if p.port < 1 || p.port > 65535 {
			bad(p.key, "%d: want 1 to 65535", p.port)
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrConfig, strings.Join(problems, "; "))
	}
	return s, nil
}

func (c Config) checkPool(bad func(key, format string, a ...any), addr4 func(key, v string) netip.Addr) *pool {
	if c.PoolStart == "" || c.PoolEnd == "" || c.SubnetMask == "" {
		bad("pool_start", "mode dhcp needs pool_start, pool_end and subnet_mask")
		return nil
	}
	start, end := addr4("pool_start", c.PoolStart), addr4("pool_end", c.PoolEnd)
	m := addr4("subnet_mask", c.SubnetMask)
	if !start.IsValid() || !end.IsValid() || !m.IsValid() {
		return nil
	}
	mask := net.IPMask(m.AsSlice())
	ones, bits := mask.Size()
	if bits == 0 || ones == 0 {
		bad("subnet_mask", "%s is not a contiguous mask", c.SubnetMask)
		return nil
	}
	prefix := netip.PrefixFrom(start, ones).Masked()
	if end.Less(start) {
		bad("pool_end", "%s is before pool_start %s", end, start)
		return nil
	}
	if !prefix.Contains(end) {
		bad("pool_end", "%s is outside pool_start's subnet %s", end, prefix)
		return nil
	}
	if ip4u(end)-ip4u(start) >= 1<<20 {
		bad("pool_end", "pool %s-%s holds more than %d addresses", start, end, 1<<20)
		return nil
	}
	return &pool{start: start, end: end, mask: mask, prefix: prefix}
}
