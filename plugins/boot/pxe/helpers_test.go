package pxe

import (
	"context"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/diskcast/diskcast/sdk/boot"
	"github.com/hashicorp/go-hclog"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

// memBackend is an in-memory core: it knows the nodes in assign and
// records the events.
type memBackend struct {
	mu      sync.Mutex
	assign  map[string]boot.Assignment
	fail    error
	events  []boot.Event
	lookups []boot.Node
}

func (b *memBackend) Lookup(_ context.Context, n boot.Node) (*boot.Assignment, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lookups = append(b.lookups, n)
	if b.fail != nil {
		return nil, b.fail
	}
	a := b.assign[n.MAC]
	return &a, nil
}

func (b *memBackend) Report(_ context.Context, e boot.Event) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.events = append(b.events, e)
	return nil
}

// waitEvent waits for an event of kind what about mac.
func (b *memBackend) waitEvent(t *testing.T, mac, what string) boot.Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		b.mu.Lock()
		for _, e := range b.events {
			if e.MAC == mac && e.What == what {
				b.mu.Unlock()
				return e
			}
		}
		b.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	t.Fatalf("no %q event for %s; events: %+v", what, mac, b.events)
	return boot.Event{}
}

// testConfig is a full-mode config on loopback with high ports.
func testConfig(t testing.TB) Config {
	c := DefaultConfig()
	c.Mode = ModeDHCP
	c.ServerIP = "127.0.0.1"
	c.PoolStart, c.PoolEnd, c.SubnetMask = "127.0.0.100", "127.0.0.103", "255.0.0.0"
	c.Router = "127.0.0.254"
	c.DNS = []string{"127.0.0.53"}
	c.LeaseFile = filepath.Join(t.TempDir(), "leases.json")
	c.HTTPListen = "127.0.0.1:18067"
	c.DHCPPort, c.ProxyPort, c.TFTPPort, c.ClientPort, c.RelayPort = 10067, 14011, 10069, 10068, 10167
	return c
}

func newServer(t *testing.T, c Config) *Server {
	t.Helper()
	s, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	s.log = hclog.NewNullLogger()
	return s
}

var (
	macBIOS = net.HardwareAddr{0x52, 0x54, 0x00, 0x00, 0x00, 0x01}
	macUEFI = net.HardwareAddr{0x52, 0x54, 0x00, 0x00, 0x00, 0x02}
	macIPXE = net.HardwareAddr{0x52, 0x54, 0x00, 0x00, 0x00, 0x03}
	macLinx = net.HardwareAddr{0x52, 0x54, 0x00, 0x00, 0x00, 0x04}
)

// pkt describes a client request.
type pkt struct {
	mac     net.HardwareAddr
	typ     dhcpv4.MessageType
	arch    int    // -1: no option 93
	vendor  string // option 60
	ipxe    bool   // user class iPXE and option 175, as iPXE sends them
	giaddr  net.IP
	ciaddr  net.IP
	reqIP   net.IP
	server  net.IP // option 54
	guid    bool   // option 97
	xid     byte
	hops    uint8
	noMsgTp bool
}

// pxeVendor is option 60 as PXE firmware sends it.
func pxeVendor(arch int) string {
	return "PXEClient:Arch:" + []string{"00000", "", "", "", "", "", "00006", "00007", "", "00009", "", "00011"}[arch] + ":UNDI:002001"
}

// build makes the wire bytes of p, with the options real PXE and iPXE
// clients send.
func (p pkt) build(t testing.TB) []byte {
	t.Helper()
	mods := []dhcpv4.Modifier{
		dhcpv4.WithHwAddr(p.mac),
		dhcpv4.WithTransactionID(dhcpv4.TransactionID{0xd1, 0x5c, 0xa5, p.xid}),
		dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(1472)),
		dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer,
			dhcpv4.OptionVendorSpecificInformation, dhcpv4.OptionClassIdentifier, dhcpv4.OptionTFTPServerName, dhcpv4.OptionBootfileName),
	}
	if !p.noMsgTp {
		mods = append(mods, dhcpv4.WithMessageType(p.typ))
	}
	if p.arch >= 0 {
		mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{0, byte(p.arch)}),
			dhcpv4.WithGeneric(dhcpv4.OptionClientNetworkInterfaceIdentifier, []byte{1, 2, 1}))
	}
	if p.vendor != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClassIdentifier(p.vendor)))
	}
	if p.ipxe {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")),
			dhcpv4.WithGeneric(dhcpv4.GenericOptionCode(175), []byte{0xb1, 0x05, 0x01, 0x80, 0x86, 0x10, 0x0e, 0x13, 0x01, 0x01}))
	}
	if p.guid {
		mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier,
			[]byte{0, 0x8f, 0x1e, 0x5b, 0x5e, 0x3b, 0x2e, 0x4a, 0x4e, 0x9b, 0x36, 0x0b, 0x30, 0x1a, 0x9c, 0x11, 0x07}))
	}
	if p.giaddr != nil {
		mods = append(mods, dhcpv4.WithGatewayIP(p.giaddr))
	}
	if p.ciaddr != nil {
		mods = append(mods, dhcpv4.WithClientIP(p.ciaddr))
	}
	if p.reqIP != nil {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(p.reqIP)))
	}
	if p.server != nil {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(p.server)))
	}
	d, err := dhcpv4.New(mods...)
	if err != nil {
		t.Fatal(err)
	}
	d.HopCount = p.hops
	d.SetBroadcast()
	return d.ToBytes()
}

// seedPackets are real-shaped requests for fuzzing.
func seedPackets(t testing.TB) [][]byte {
	relay := net.IPv4(127, 0, 0, 1)
	return [][]byte{
		pkt{mac: macBIOS, typ: dhcpv4.MessageTypeDiscover, arch: 0, vendor: pxeVendor(0), guid: true}.build(t),
		pkt{mac: macUEFI, typ: dhcpv4.MessageTypeDiscover, arch: 7, vendor: pxeVendor(7)}.build(t),
		pkt{mac: macIPXE, typ: dhcpv4.MessageTypeDiscover, arch: 0, vendor: pxeVendor(0), ipxe: true}.build(t),
		pkt{mac: macIPXE, typ: dhcpv4.MessageTypeRequest, arch: 0, vendor: pxeVendor(0), ipxe: true,
			reqIP: net.IPv4(127, 0, 0, 100), server: net.IPv4(127, 0, 0, 1)}.build(t),
		pkt{mac: macLinx, typ: dhcpv4.MessageTypeDiscover, arch: -1, giaddr: relay}.build(t),
		pkt{mac: macLinx, typ: dhcpv4.MessageTypeRelease, arch: -1, ciaddr: net.IPv4(127, 0, 0, 101)}.build(t),
		pkt{mac: macBIOS, typ: dhcpv4.MessageTypeRequest, arch: 0, vendor: pxeVendor(0), ciaddr: net.IPv4(127, 0, 0, 102)}.build(t),
	}
}

// decode parses a reply's bytes as a client would.
func decode(t *testing.T, r *reply) *dhcpv4.DHCPv4 {
	t.Helper()
	d, err := dhcpv4.FromBytes(r.pkt.ToBytes())
	if err != nil {
		t.Fatalf("reply does not decode: %v", err)
	}
	return d
}

// waitStats polls s's counters until ok holds (5 s at most).
func waitStats(s *Server, ok func(Stats) bool) Stats {
	deadline := time.Now().Add(5 * time.Second)
	for !ok(s.Stats()) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	return s.Stats()
}
