package pxe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/diskcast/diskcast/sdk/boot"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// maxHops is the most relay hops a request may have taken (RFC 1542
// suggests 16): more is a loop or a forgery.
const maxHops = 16

// listener says which socket a packet came in on.
type listener int

const (
	onDHCP  listener = iota // the DHCP port (67)
	onProxy                 // the PXE port (4011)
)

func (l listener) String() string {
	if l == onProxy {
		return "pxe"
	}
	return "dhcp"
}

// Client architectures (DHCP option 93, RFC 4578 and IANA's registry).
const (
	archBIOS    = 0
	archEFI32   = 6
	archEFI64   = 7
	archEFIBC   = 9 // x86-64 UEFI, as several firmwares send it
	archEFIARM6 = 11
)

// client is what a request says about the machine that sent it.
type client struct {
	mac      string
	arch     uint16
	hasArch  bool
	pxe      bool // option 60 starts with "PXEClient"
	ipxe     bool // user class "iPXE" or option 175
	archName string
}

// classify reads the client's identity from req.
func classify(req *dhcpv4.DHCPv4) client {
	c := client{mac: req.ClientHWAddr.String()}
	vc := req.ClassIdentifier()
	c.pxe = strings.HasPrefix(vc, "PXEClient")
	if v := req.Options.Get(dhcpv4.OptionClientSystemArchitectureType); len(v) >= 2 {
		c.arch, c.hasArch = binary.BigEndian.Uint16(v), true
	} else if rest, ok := strings.CutPrefix(vc, "PXEClient:Arch:"); ok && len(rest) >= 5 {
		// "PXEClient:Arch:00007:UNDI:003016" carries it too.
		if n, err := strconv.ParseUint(rest[:5], 10, 16); err == nil {
			c.arch, c.hasArch = uint16(n), true
		}
	}
	for _, uc := range req.UserClass() {
		if uc == "iPXE" {
			c.ipxe = true
		}
	}
	if req.Options.Has(dhcpv4.GenericOptionCode(175)) {
		c.ipxe = true
	}
	c.archName = archName(c.arch)
	return c
}

// archName names a client architecture as boot.Node.Arch reports it.
func archName(a uint16) string {
	switch a {
	case archBIOS:
		return "BIOS"
	case archEFI32:
		return "IA32 UEFI"
	case archEFI64, archEFIBC:
		return "x86-64 UEFI"
	case archEFIARM6:
		return "ARM64 UEFI"
	}
	return iana.Arch(a).String()
}

// bootFile is what the client should load: its script's URL for iPXE,
// else the iPXE binary for its firmware ("" if none is configured).
func (s *Server) bootFile(c client) string {
	if c.ipxe {
		return s.scriptURL(c.mac)
	}
	switch c.arch {
	case archBIOS:
		return s.cfg.BIOSFile
	case archEFI32:
		return s.cfg.EFI32File
	case archEFI64, archEFIBC:
		return s.cfg.EFIFile
	case archEFIARM6:
		return s.cfg.ARM64File
	}
	return ""
}

// reply is an answer and where it goes.
type reply struct {
	pkt *dhcpv4.DHCPv4
	to  *net.UDPAddr
	// event for the core, if any
	what, detail string
	mac          string
}

// handleDHCP decides the answer to one packet that came in on l from
// peer. A nil reply with a nil error means no answer is due; an error
// says why the packet was dropped (and was counted).
func (s *Server) handleDHCP(l listener, peer *net.UDPAddr, b []byte) (*reply, error) {
	s.stats.dhcpReceived.Add(1)
	req, err := s.parseRequest(b)
	if err != nil {
		s.stats.dhcpMalformed.Add(1)
		return nil, err
	}
	c := classify(req)
	s.remember(c, ip4(req.ClientIPAddr))
	var r *reply
	switch {
	case l == onProxy:
		r, err = s.pxeRequest(req, c, peer)
	case s.cfg.Mode == ModeProxy:
		r, err = s.proxyDiscover(req, c)
	default:
		r, err = s.fullDHCP(req, c)
	}
	if err != nil {
		return nil, err
	}
	if r != nil {
		r.mac = c.mac
		s.remember(c, ip4(r.pkt.YourIPAddr))
	}
	return r, nil
}

// parseRequest decodes b and refuses what no honest client sends.
func (s *Server) parseRequest(b []byte) (*dhcpv4.DHCPv4, error) {
	req, err := dhcpv4.FromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %d bytes: %v", ErrMalformed, len(b), err)
	}
	switch {
	case req.OpCode != dhcpv4.OpcodeBootRequest:
		return nil, fmt.Errorf("%w: op %d is not BOOTREQUEST", ErrMalformed, req.OpCode)
	case req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6:
		return nil, fmt.Errorf("%w: hardware type %d length %d: want Ethernet, 6", ErrMalformed, req.HWType, len(req.ClientHWAddr))
	case req.ClientHWAddr[0]&1 != 0 || isZero(req.ClientHWAddr):
		return nil, fmt.Errorf("%w: chaddr %s is not a unicast MAC", ErrMalformed, req.ClientHWAddr)
	case req.HopCount > maxHops:
		return nil, fmt.Errorf("%w: %d relay hops", ErrMalformed, req.HopCount)
	case req.MessageType() == dhcpv4.MessageTypeNone:
		return nil, fmt.Errorf("%w: no DHCP message type (BOOTP is not served)", ErrMalformed)
	}
	if g := req.GatewayIPAddr.To4(); g != nil && !g.IsUnspecified() {
		if !g.IsGlobalUnicast() && !g.IsLoopback() || g.Equal(net.IPv4bcast) {
			return nil, fmt.Errorf("%w: giaddr %s is not a unicast address", ErrMalformed, g)
		}
	}
	return req, nil
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// ignore counts a packet that is not ours to answer and says why.
func (s *Server) ignore(format string, a ...any) (*reply, error) {
	s.stats.dhcpIgnored.Add(1)
	return nil, fmt.Errorf("ignored: "+format, a...)
}

// fullDHCP answers on the DHCP port in full mode.
func (s *Server) fullDHCP(req *dhcpv4.DHCPv4, c client) (*reply, error) {
	relayed := !ip4(req.GatewayIPAddr).IsUnspecified()
	if relayed && !s.cfg.pool.prefix.Contains(ip4(req.GatewayIPAddr)) {
		s.stats.dhcpNoAddress.Add(1)
		return nil, fmt.Errorf("no pool for relay %s (pool subnet %s)", req.GatewayIPAddr, s.cfg.pool.prefix)
	}
	if !relayed && !s.cfg.pool.prefix.Contains(s.cfg.serverIP) {
		s.stats.dhcpNoAddress.Add(1)
		return nil, fmt.Errorf("no pool on the local link: server_ip %s is outside pool subnet %s", s.cfg.serverIP, s.cfg.pool.prefix)
	}
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		addr, err := s.leases.offer(c.mac, ip4(req.RequestedIPAddress()))
		if err != nil {
			s.stats.dhcpNoAddress.Add(1)
			return nil, err
		}
		r, err := s.answer(req, c, dhcpv4.MessageTypeOffer, addr, true)
		if r != nil {
			r.what, r.detail = boot.EventDHCPOffer, addr.String()+" "+r.pkt.BootFileName
		}
		return r, err
	case dhcpv4.MessageTypeRequest:
		if sid := ip4(req.ServerIdentifier()); sid.IsValid() && !sid.IsUnspecified() && sid != s.cfg.serverIP {
			s.leases.forget(c.mac)
			return s.ignore("%s chose server %s", c.mac, sid)
		}
		want := ip4(req.RequestedIPAddress())
		if !want.IsValid() || want.IsUnspecified() {
			want = ip4(req.ClientIPAddr)
		}
		if !want.IsValid() || want.IsUnspecified() {
			s.stats.dhcpMalformed.Add(1)
			return nil, fmt.Errorf("%w: DHCPREQUEST from %s names no address", ErrMalformed, c.mac)
		}
		if err := s.leases.ack(c.mac, want, s.cfg.leaseTime); errors.Is(err, ErrNotLeased) {
			s.stats.dhcpNAKs.Add(1)
			return s.nak(req, fmt.Sprintf("%s is not yours", want)), nil
		} else if err != nil {
			// The lease holds in memory; losing it at a restart is the
			// lesser harm than refusing the machine now.
			s.log.Error("cannot save leases", "error", err)
		}
		r, err := s.answer(req, c, dhcpv4.MessageTypeAck, want, true)
		if r != nil {
			r.what, r.detail = boot.EventDHCPAck, want.String()+" "+r.pkt.BootFileName
		}
		return r, err
	case dhcpv4.MessageTypeInform:
		return s.answer(req, c, dhcpv4.MessageTypeAck, netip.Addr{}, true)
	case dhcpv4.MessageTypeRelease:
		if err := s.leases.release(c.mac, ip4(req.ClientIPAddr)); err != nil {
			s.log.Error("cannot save leases", "error", err)
		}
		return nil, nil
	case dhcpv4.MessageTypeDecline:
		if err := s.leases.decline(c.mac, ip4(req.RequestedIPAddress())); err != nil {
			s.log.Error("cannot save leases", "error", err)
		}
		return nil, nil
	}
	return s.ignore("message type %s", req.MessageType())
}

// proxyDiscover answers on the DHCP port in proxy mode: PXE clients'
// DISCOVERs only, with boot information and no address.
func (s *Server) proxyDiscover(req *dhcpv4.DHCPv4, c client) (*reply, error) {
	if !c.pxe {
		return s.ignore("%s is not a PXE client (proxy mode)", c.mac)
	}
	if req.MessageType() != dhcpv4.MessageTypeDiscover {
		return s.ignore("%s from %s (proxy mode answers DISCOVER here)", req.MessageType(), c.mac)
	}
	r, err := s.answer(req, c, dhcpv4.MessageTypeOffer, netip.Addr{}, false)
	if r != nil {
		r.what, r.detail = boot.EventProxyOffer, r.pkt.BootFileName
	}
	return r, err
}

// pxeRequest answers on the PXE port (4011): a PXE client that has its
// address asks for its boot file.
func (s *Server) pxeRequest(req *dhcpv4.DHCPv4, c client, peer *net.UDPAddr) (*reply, error) {
	if !c.pxe {
		return s.ignore("%s is not a PXE client (PXE port)", c.mac)
	}
	switch req.MessageType() {
	case dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeInform:
	default:
		return s.ignore("%s from %s on the PXE port", req.MessageType(), c.mac)
	}
	r, err := s.answer(req, c, dhcpv4.MessageTypeAck, netip.Addr{}, false)
	if err != nil || r == nil {
		return r, err
	}
	// The client has an address by now: answer where it asked from.
	if peer != nil && !ip4(peer.IP).IsUnspecified() && ip4(req.GatewayIPAddr).IsUnspecified() {
		r.to = peer
	}
	r.what, r.detail = boot.EventProxyAck, r.pkt.BootFileName
	return r, nil
}

// answer builds a reply of type t giving addr (if valid) and, to PXE
// clients, boot information. withNet adds the pool's network options.
func (s *Server) answer(req *dhcpv4.DHCPv4, c client, t dhcpv4.MessageType, addr netip.Addr, withNet bool) (*reply, error) {
	file := ""
	if c.pxe || c.ipxe {
		file = s.bootFile(c)
		if file == "" {
			s.stats.dhcpUnsupportedArch.Add(1)
			if !withNet || !addr.IsValid() {
				return nil, fmt.Errorf("no boot file for client arch %d (%s) of %s", c.arch, c.archName, c.mac)
			}
			// Still give the address: the machine may boot otherwise.
		}
	}
	sid := net.IP(s.cfg.serverIP.AsSlice())
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(t),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(sid)),
	}
	if addr.IsValid() {
		mods = append(mods, dhcpv4.WithYourIP(net.IP(addr.AsSlice())))
	}
	if t == dhcpv4.MessageTypeAck && !ip4(req.ClientIPAddr).IsUnspecified() {
		mods = append(mods, dhcpv4.WithClientIP(req.ClientIPAddr))
	}
	if withNet && s.cfg.pool != nil {
		mods = append(mods, dhcpv4.WithNetmask(s.cfg.pool.mask))
		if addr.IsValid() {
			mods = append(mods, dhcpv4.WithLeaseTime(uint32(s.cfg.leaseTime.Seconds())))
		}
		if s.cfg.router != nil {
			mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRouter(s.cfg.router)))
		}
		if len(s.cfg.dns) > 0 {
			mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDNS(s.cfg.dns...)))
		}
	}
	if (c.pxe || c.ipxe) && file != "" {
		mods = append(mods,
			dhcpv4.WithServerIP(sid),
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient")),
			dhcpv4.WithOption(dhcpv4.OptBootFileName(file)),
			dhcpv4.WithOptionCopied(req, dhcpv4.OptionClientMachineIdentifier),
		)
		if !c.ipxe {
			// PXE vendor options: discovery control 8 = boot from the
			// file named here, no boot server discovery.
			mods = append(mods, dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, []byte{6, 1, 8, 255})))
		}
	}
	resp, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		return nil, fmt.Errorf("pxe: build %s for %s: %w", t, c.mac, err)
	}
	resp.BootFileName = file
	if (c.pxe || c.ipxe) && file != "" {
		resp.ServerHostName = s.cfg.serverIP.String()
	}
	return &reply{pkt: resp, to: s.destination(req, resp)}, nil
}

// nak builds a DHCPNAK.
func (s *Server) nak(req *dhcpv4.DHCPv4, msg string) *reply {
	resp, err := dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(s.cfg.serverIP.AsSlice()))),
		dhcpv4.WithOption(dhcpv4.OptMessage(msg)),
	)
	if err != nil {
		return nil
	}
	to := &net.UDPAddr{IP: net.IPv4bcast, Port: s.cfg.ClientPort}
	if g := ip4(req.GatewayIPAddr); !g.IsUnspecified() {
		resp.SetBroadcast() // RFC 2131 4.3.2: the relay must broadcast it
		to = &net.UDPAddr{IP: net.IP(g.AsSlice()), Port: s.cfg.RelayPort}
	}
	return &reply{pkt: resp, to: to, what: boot.EventDHCPNak, detail: msg, mac: req.ClientHWAddr.String()}
}

// destination is where a reply goes (RFC 2131 4.1): to the relay agent
// if there is one, else to the client's address if it has one, else
// broadcast (a UDP socket cannot unicast to a MAC without an address).
func (s *Server) destination(req, resp *dhcpv4.DHCPv4) *net.UDPAddr {
	if g := ip4(req.GatewayIPAddr); !g.IsUnspecified() {
		return &net.UDPAddr{IP: net.IP(g.AsSlice()), Port: s.cfg.RelayPort}
	}
	if ci := ip4(req.ClientIPAddr); !ci.IsUnspecified() {
		return &net.UDPAddr{IP: net.IP(ci.AsSlice()), Port: s.cfg.ClientPort}
	}
	return &net.UDPAddr{IP: net.IPv4bcast, Port: s.cfg.ClientPort}
}

// ip4 converts an IPv4 net.IP; anything else becomes the zero address
// 0.0.0.0 (never an invalid Addr, so comparisons stay simple).
func ip4(ip net.IP) netip.Addr {
	if v := ip.To4(); v != nil {
		return netip.AddrFrom4([4]byte(v))
	}
	return netip.IPv4Unspecified()
}
