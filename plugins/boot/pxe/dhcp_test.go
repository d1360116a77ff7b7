package pxe

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

func TestHandleDHCP(t *testing.T) {
	relay := net.IPv4(127, 0, 0, 1).To4()
	far := net.IPv4(10, 9, 8, 1).To4()
	bcast := &net.UDPAddr{IP: net.IPv4bcast, Port: 10068}
	toRelay := &net.UDPAddr{IP: relay, Port: 10167}
	scriptURL := func(mac net.HardwareAddr) string {
		return "http://127.0.0.1:18067/boot.ipxe?mac=" + mac.String()
	}
	type want struct {
		typ      dhcpv4.MessageType // MessageTypeNone: no reply
		yiaddr   bool
		file     string
		pxe      bool // option 60 PXEClient, siaddr
		opt43    bool
		guid     bool
		to       *net.UDPAddr
		netOpts  bool // mask, router, dns, lease time
		dropped  string
		counters func(Stats) bool
	}
	cases := []struct {
		name string
		mode string
		on   listener
		peer *net.UDPAddr
		req  pkt
		want want
	}{
		{"BIOS PXE discover", ModeDHCP, onDHCP, nil,
			pkt{mac: macBIOS, typ: dhcpv4.MessageTypeDiscover, arch: 0, vendor: pxeVendor(0), guid: true},
			want{typ: dhcpv4.MessageTypeOffer, yiaddr: true, file: "undionly.kpxe", pxe: true, opt43: true, guid: true, to: bcast, netOpts: true}},
		{"UEFI arch 7 discover", ModeDHCP, onDHCP, nil,
			pkt{mac: macUEFI, typ: dhcpv4.MessageTypeDiscover, arch: 7, vendor: pxeVendor(7)},
			want{typ: dhcpv4.MessageTypeOffer, yiaddr: true, file: "snponly.efi", pxe: true, opt43: true, to: bcast, netOpts: true}},
		{"UEFI arch 9 discover", ModeDHCP, onDHCP, nil,
			pkt{mac: macUEFI, typ: dhcpv4.MessageTypeDiscover, arch: 9, vendor: pxeVendor(9)},
			want{typ: dhcpv4.MessageTypeOffer, yiaddr: true, file: "snponly.efi", pxe: true, opt43: true, to: bcast, netOpts: true}},
		{"arch from option 60 only", ModeDHCP, onDHCP, nil,
			pkt{mac: macUEFI, typ: dhcpv4.MessageTypeDiscover, arch: -1, vendor: pxeVendor(7)},
			want{typ: dhcpv4.MessageTypeOffer, yiaddr: true, file: "snponly.efi", pxe: true, opt43: true, to: bcast, netOpts: true}},
		{"iPXE gets its script URL", ModeDHCP, onDHCP, nil,
			pkt{mac: macIPXE, typ: dhcpv4.MessageTypeDiscover, arch: 0, vendor: pxeVendor(0), ipxe: true},
			want{typ: dhcpv4.MessageTypeOffer, yiaddr: true, file: scriptURL(macIPXE), pxe: true, to: bcast, netOpts: true}},
		{"ARM64 UEFI without a file: address only", ModeDHCP, onDHCP, nil,
			pkt{mac: macUEFI, typ: dhcpv4.MessageTypeDiscover, arch: 11, vendor: pxeVendor(11)},
			want{typ: dhcpv4.MessageTypeOffer, yiaddr: true, to: bcast, netOpts: true,
				counters: func(s Stats) bool { return s.DHCPUnsupportedArch == 1 }}},
		{"non-PXE client gets an address, no boot info", ModeDHCP, onDHCP, nil,
			pkt{mac: macLinx, typ: dhcpv4.MessageTypeDiscover, arch: -1, vendor: "udhcp 1.36.1"},
			want{typ: dhcpv4.MessageTypeOffer, yiaddr: true, to: bcast, netOpts: true}},
		{"relayed discover goes to the relay", ModeDHCP, onDHCP, nil,
			pkt{mac: macBIOS, typ: dhcpv4.MessageTypeDiscover, arch: 0, vendor: pxeVendor(0), giaddr: relay},
			want{typ: dhcpv4.MessageTypeOffer, yiaddr: true, file: "undionly.kpxe", pxe: true, opt43: true, to: toRelay, netOpts: true}},
		{"relay outside every pool", ModeDHCP, onDHCP, nil,
			pkt{mac: macBIOS, typ: dhcpv4.MessageTypeDiscover, arch: 0, vendor: pxeVendor(0), giaddr: far},
			want{dropped: "no pool for relay", counters: func(s Stats) bool { return s.DHCPNoAddress == 1 }}},
		{"inform from a client with an address", ModeDHCP, onDHCP, nil,
			pkt{mac: macLinx, typ: dhcpv4.MessageTypeInform, arch: -1, ciaddr: net.IPv4(127, 0, 0, 102)},
			want{typ: dhcpv4.MessageTypeAck, to: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 102).To4(), Port: 10068}, netOpts: true}},
		{"request for another server", ModeDHCP, onDHCP, nil,
			pkt{mac: macLinx, typ: dhcpv4.MessageTypeRequest, arch: -1, reqIP: net.IPv4(127, 0, 0, 100), server: net.IPv4(127, 0, 0, 9)},
			want{dropped: "chose server", counters: func(s Stats) bool { return s.DHCPIgnored == 1 }}},
		{"request for an address outside the pool", ModeDHCP, onDHCP, nil,
			pkt{mac: macLinx, typ: dhcpv4.MessageTypeRequest, arch: -1, reqIP: net.IPv4(127, 0, 0, 50)},
			want{typ: dhcpv4.MessageTypeNak, to: bcast, counters: func(s Stats) bool { return s.DHCPNAKs == 1 }}},
		{"proxy: BIOS PXE discover, no address", ModeProxy, onDHCP, nil,
			pkt{mac: macBIOS, typ: dhcpv4.MessageTypeDiscover, arch: 0, vendor: pxeVendor(0), guid: true},
			want{typ: dhcpv4.MessageTypeOffer, file: "undionly.kpxe", pxe: true, opt43: true, guid: true, to: bcast}},
		{"proxy: iPXE discover", ModeProxy, onDHCP, nil,
			pkt{mac: macIPXE, typ: dhcpv4.MessageTypeDiscover, arch: 7, vendor: pxeVendor(7), ipxe: true},
			want{typ: dhcpv4.MessageTypeOffer, file: scriptURL(macIPXE), pxe: true, to: bcast}},
		{"proxy: non-PXE client ignored", ModeProxy, onDHCP, nil,
			pkt{mac: macLinx, typ: dhcpv4.MessageTypeDiscover, arch: -1, vendor: "udhcp 1.36.1"},
			want{dropped: "not a PXE client", counters: func(s Stats) bool { return s.DHCPIgnored == 1 && s.DHCPReceived == 1 }}},
		{"proxy: request on port 67 left to the site server", ModeProxy, onDHCP, nil,
			pkt{mac: macBIOS, typ: dhcpv4.MessageTypeRequest, arch: 0, vendor: pxeVendor(0), reqIP: net.IPv4(10, 0, 0, 5), server: net.IPv4(10, 0, 0, 1)},
			want{dropped: "proxy mode answers DISCOVER", counters: func(s Stats) bool { return s.DHCPIgnored == 1 }}},
		{"proxy: relayed discover goes to the relay", ModeProxy, onDHCP, nil,
			pkt{mac: macUEFI, typ: dhcpv4.MessageTypeDiscover, arch: 7, vendor: pxeVendor(7), giaddr: relay},
			want{typ: dhcpv4.MessageTypeOffer, file: "snponly.efi", pxe: true, opt43: true, to: toRelay}},
		{"PXE port: request answered where it came from", ModeProxy, onProxy, &net.UDPAddr{IP: net.IPv4(10, 0, 0, 5).To4(), Port: 68},
			pkt{mac: macUEFI, typ: dhcpv4.MessageTypeRequest, arch: 7, vendor: pxeVendor(7), ciaddr: net.IPv4(10, 0, 0, 5)},
			want{typ: dhcpv4.MessageTypeAck, file: "snponly.efi", pxe: true, opt43: true, to: &net.UDPAddr{IP: net.IPv4(10, 0, 0, 5).To4(), Port: 68}}},
		{"PXE port: iPXE request", ModeProxy, onProxy, &net.UDPAddr{IP: net.IPv4(10, 0, 0, 6).To4(), Port: 4011},
			pkt{mac: macIPXE, typ: dhcpv4.MessageTypeRequest, arch: 0, vendor: pxeVendor(0), ipxe: true, ciaddr: net.IPv4(10, 0, 0, 6)},
			want{typ: dhcpv4.MessageTypeAck, file: scriptURL(macIPXE), pxe: true, to: &net.UDPAddr{IP: net.IPv4(10, 0, 0, 6).To4(), Port: 4011}}},
		{"PXE port: discover ignored", ModeProxy, onProxy, &net.UDPAddr{IP: net.IPv4(10, 0, 0, 6).To4(), Port: 68},
			pkt{mac: macBIOS, typ: dhcpv4.MessageTypeDiscover, arch: 0, vendor: pxeVendor(0)},
			want{dropped: "on the PXE port", counters: func(s Stats) bool { return s.DHCPIgnored == 1 }}},
		{"PXE port: non-PXE client ignored", ModeDHCP, onProxy, &net.UDPAddr{IP: net.IPv4(10, 0, 0, 6).To4(), Port: 68},
			pkt{mac: macLinx, typ: dhcpv4.MessageTypeRequest, arch: -1},
			want{dropped: "not a PXE client", counters: func(s Stats) bool { return s.DHCPIgnored == 1 }}},
		{"too many relay hops", ModeDHCP, onDHCP, nil,
			pkt{mac: macBIOS, typ: dhcpv4.MessageTypeDiscover, arch: 0, vendor: pxeVendor(0), hops: 17, giaddr: relay},
			want{dropped: "17 relay hops", counters: func(s Stats) bool { return s.DHCPMalformed == 1 }}},
		{"BOOTP without message type", ModeDHCP, onDHCP, nil,
			pkt{mac: macBIOS, arch: 0, noMsgTp: true},
			want{dropped: "no DHCP message type", counters: func(s Stats) bool { return s.DHCPMalformed == 1 }}},
		{"multicast chaddr", ModeDHCP, onDHCP, nil,
			pkt{mac: net.HardwareAddr{1, 0, 0x5e, 0, 0, 1}, typ: dhcpv4.MessageTypeDiscover, arch: 0},
			want{dropped: "not a unicast MAC", counters: func(s Stats) bool { return s.DHCPMalformed == 1 }}},
		{"broadcast giaddr", ModeDHCP, onDHCP, nil,
			pkt{mac: macBIOS, typ: dhcpv4.MessageTypeDiscover, arch: 0, giaddr: net.IPv4bcast},
			want{dropped: "giaddr 255.255.255.255", counters: func(s Stats) bool { return s.DHCPMalformed == 1 }}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig(t)
			c.Mode = tc.mode
			if tc.mode == ModeProxy {
				c.PoolStart, c.PoolEnd, c.SubnetMask, c.Router, c.DNS = "", "", "", "", nil
			}
			s := newServer(t, c)
			r, err := s.handleDHCP(tc.on, tc.peer, tc.req.build(t))
			w := tc.want
			if w.counters != nil && !w.counters(s.Stats()) {
				t.Errorf("counters %+v", s.Stats())
			}
			if w.dropped != "" {
				if r != nil || err == nil || !strings.Contains(err.Error(), w.dropped) {
					t.Fatalf("reply %v, error %v: want a drop saying %q", r, err, w.dropped)
				}
				return
			}
			if err != nil || r == nil {
				t.Fatalf("no reply: %v", err)
			}
			d := decode(t, r)
			if d.OpCode != dhcpv4.OpcodeBootReply || d.MessageType() != w.typ || d.ClientHWAddr.String() != tc.req.mac.String() ||
				d.TransactionID != (dhcpv4.TransactionID{0xd1, 0x5c, 0xa5, 0}) {
				t.Errorf("reply %s", d.Summary())
			}
			if got := d.ServerIdentifier(); !got.Equal(net.IPv4(127, 0, 0, 1)) {
				t.Errorf("server identifier %v", got)
			}
			if yi := !d.YourIPAddr.IsUnspecified(); yi != w.yiaddr {
				t.Errorf("yiaddr %v, want one: %v", d.YourIPAddr, w.yiaddr)
			}
			if w.yiaddr && (d.YourIPAddr.To4()[3] < 100 || d.YourIPAddr.To4()[3] > 103) {
				t.Errorf("yiaddr %v outside the pool", d.YourIPAddr)
			}
			if d.BootFileName != w.file || (w.file != "" && d.BootFileNameOption() != w.file) {
				t.Errorf("boot file %q (option 67 %q), want %q", d.BootFileName, d.BootFileNameOption(), w.file)
			}
			if pxe := d.ClassIdentifier() == "PXEClient" && d.ServerIPAddr.Equal(net.IPv4(127, 0, 0, 1)); pxe != w.pxe {
				t.Errorf("option 60 %q, siaddr %v; want PXEClient and next-server: %v", d.ClassIdentifier(), d.ServerIPAddr, w.pxe)
			}
			if got := d.Options.Has(dhcpv4.OptionVendorSpecificInformation); got != w.opt43 {
				t.Errorf("option 43 present %v, want %v", got, w.opt43)
			}
			if got := len(d.Options.Get(dhcpv4.OptionClientMachineIdentifier)) == 17; got != w.guid {
				t.Errorf("option 97 copied %v, want %v", got, w.guid)
			}
			netOpts := d.SubnetMask() != nil && len(d.Router()) == 1 && len(d.DNS()) == 1
			if netOpts != w.netOpts {
				t.Errorf("network options (mask %v router %v dns %v), want them: %v", d.SubnetMask(), d.Router(), d.DNS(), w.netOpts)
			}
			if w.yiaddr && d.IPAddressLeaseTime(0) != time.Hour {
				t.Errorf("lease time %v", d.IPAddressLeaseTime(0))
			}
			if r.to.String() != w.to.String() {
				t.Errorf("sent to %v, want %v", r.to, w.to)
			}
			if w.to == toRelay && !d.GatewayIPAddr.Equal(relay) {
				t.Errorf("giaddr %v not kept in the reply", d.GatewayIPAddr)
			}
		})
	}
}

// A machine keeps its address through discover, request, a restart of
// the server (lease file), and a new boot.
func TestLeasePersistence(t *testing.T) {
	c := testConfig(t)
	s := newServer(t, c)
	r, err := s.handleDHCP(onDHCP, nil, pkt{mac: macIPXE, typ: dhcpv4.MessageTypeDiscover, arch: 0, vendor: pxeVendor(0), ipxe: true}.build(t))
	if err != nil {
		t.Fatal(err)
	}
	offered := r.pkt.YourIPAddr
	if _, err := os.Stat(c.LeaseFile); !os.IsNotExist(err) {
		t.Errorf("an offer wrote the lease file: %v", err)
	}
	r, err = s.handleDHCP(onDHCP, nil, pkt{mac: macIPXE, typ: dhcpv4.MessageTypeRequest, arch: 0, vendor: pxeVendor(0), ipxe: true,
		reqIP: offered, server: net.IPv4(127, 0, 0, 1)}.build(t))
	if err != nil || r.pkt.MessageType() != dhcpv4.MessageTypeAck || !r.pkt.YourIPAddr.Equal(offered) {
		t.Fatalf("request: %v %v", r, err)
	}
	var f leaseFile
	b, err := os.ReadFile(c.LeaseFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &f); err != nil || len(f.Leases) != 1 || f.Leases[0].MAC != macIPXE.String() || f.Leases[0].IP != offered.String() {
		t.Fatalf("lease file %s: %v", b, err)
	}
	if left, _ := os.ReadDir(t.TempDir()); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}

	// Restart: another machine asks first and must not get that address.
	s2 := newServer(t, c)
	r, err = s2.handleDHCP(onDHCP, nil, pkt{mac: macLinx, typ: dhcpv4.MessageTypeDiscover, arch: -1, reqIP: offered}.build(t))
	if err != nil || r.pkt.YourIPAddr.Equal(offered) {
		t.Fatalf("after restart another machine got %v (%v), held by %s", r.pkt.YourIPAddr, err, macIPXE)
	}
	r, err = s2.handleDHCP(onDHCP, nil, pkt{mac: macIPXE, typ: dhcpv4.MessageTypeDiscover, arch: -1}.build(t))
	if err != nil || !r.pkt.YourIPAddr.Equal(offered) {
		t.Fatalf("after restart the machine got %v (%v), want %v", r.pkt.YourIPAddr, err, offered)
	}
	// INIT-REBOOT of the leased machine is acknowledged.
	r, err = s2.handleDHCP(onDHCP, nil, pkt{mac: macIPXE, typ: dhcpv4.MessageTypeRequest, arch: -1, reqIP: offered}.build(t))
	if err != nil || r.pkt.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("init-reboot: %v %v", r, err)
	}
	// Another machine asking for it is refused.
	r, err = s2.handleDHCP(onDHCP, nil, pkt{mac: macBIOS, typ: dhcpv4.MessageTypeRequest, arch: -1, reqIP: offered}.build(t))
	if err != nil || r.pkt.MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("request for a leased address by another machine: %v %v, want NAK", r, err)
	}
	// Release, then the address is free for others but still the
	// machine's first choice.
	if _, err := s2.handleDHCP(onDHCP, nil, pkt{mac: macIPXE, typ: dhcpv4.MessageTypeRelease, arch: -1, ciaddr: offered}.build(t)); err != nil {
		t.Fatal(err)
	}
	if _, ok := s2.leases.lookup(macIPXE.String()); ok {
		t.Error("lease still bound after release")
	}
}

func TestCorruptLeaseFile(t *testing.T) {
	c := testConfig(t)
	if err := os.WriteFile(c.LeaseFile, []byte(`{"version":1,"leases":[{"mac":"zz","ip":"127.0.0.100"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := New(c)
	if !errors.Is(err, ErrLeaseFile) || !strings.Contains(err.Error(), `bad mac "zz"`) {
		t.Fatalf("New with a corrupt lease file: %v, want ErrLeaseFile naming the lease", err)
	}
}

func TestPoolExhaustion(t *testing.T) {
	c := testConfig(t) // 4 addresses: .100-.103
	s := newServer(t, c)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	seen := map[string]bool{}
	for i := range 4 {
		mac := net.HardwareAddr{0x52, 0x54, 0, 0, 1, byte(i)}
		r, err := s.handleDHCP(onDHCP, nil, pkt{mac: mac, typ: dhcpv4.MessageTypeDiscover, arch: -1}.build(t))
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		ip := r.pkt.YourIPAddr
		if seen[ip.String()] {
			t.Fatalf("client %d got %v twice", i, ip)
		}
		seen[ip.String()] = true
		if _, err := s.handleDHCP(onDHCP, nil, pkt{mac: mac, typ: dhcpv4.MessageTypeRequest, arch: -1, reqIP: ip, server: net.IPv4(127, 0, 0, 1)}.build(t)); err != nil {
			t.Fatal(err)
		}
	}
	fifth := pkt{mac: net.HardwareAddr{0x52, 0x54, 0, 0, 1, 9}, typ: dhcpv4.MessageTypeDiscover, arch: -1}
	r, err := s.handleDHCP(onDHCP, nil, fifth.build(t))
	if r != nil || !errors.Is(err, ErrPoolExhausted) || s.Stats().DHCPNoAddress != 1 {
		t.Fatalf("fifth client: %v, %v, %+v: want ErrPoolExhausted counted", r, err, s.Stats())
	}
	// Once a lease expires, its address goes to the newcomer.
	now = now.Add(2 * time.Hour)
	r, err = s.handleDHCP(onDHCP, nil, fifth.build(t))
	if err != nil || !seen[r.pkt.YourIPAddr.String()] {
		t.Fatalf("after expiry: %v %v", r, err)
	}
}

func TestMalformedCounted(t *testing.T) {
	good := pkt{mac: macBIOS, typ: dhcpv4.MessageTypeDiscover, arch: 0, vendor: pxeVendor(0)}.build(t)
	bad := map[string][]byte{
		"empty":             {},
		"short header":      good[:100],
		"bad cookie":        append(append([]byte{}, good[:236]...), 1, 2, 3, 4),
		"option overruns":   append(append([]byte{}, good[:240]...), 53, 200, 1),
		"no end option":     append(append([]byte{}, good[:240]...), 53, 1, 1),
		"reply not request": append([]byte{2}, good[1:]...),
		"token ring":        append([]byte{1, 6}, good[2:]...),
		"hlen 16":           append([]byte{1, 1, 16}, good[3:]...),
	}
	s := newServer(t, testConfig(t))
	for name, b := range bad {
		t.Run(name, func(t *testing.T) {
			before := s.Stats().DHCPMalformed
			r, err := s.handleDHCP(onDHCP, nil, b)
			if r != nil || !errors.Is(err, ErrMalformed) || s.Stats().DHCPMalformed != before+1 {
				t.Errorf("reply %v, err %v, malformed %d->%d", r, err, before, s.Stats().DHCPMalformed)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		edit func(c *Config)
		want []string
	}{
		{"several at once", func(c *Config) {
			c.Mode, c.HTTPListen, c.DNS, c.TFTPPort = "both", "nohost", []string{"dns.example"}, 0
		}, []string{`mode: "both"`, "http_listen", "dns[0]", "tftp_port: 0"}},
		{"pool backwards", func(c *Config) { c.PoolEnd = "127.0.0.99" }, []string{"pool_end: 127.0.0.99 is before pool_start"}},
		{"pool across subnets", func(c *Config) { c.SubnetMask = "255.255.255.128"; c.PoolEnd = "127.0.0.200" }, []string{"outside pool_start's subnet 127.0.0.0/25"}},
		{"full mode without pool", func(c *Config) { c.PoolStart = "" }, []string{"mode dhcp needs pool_start"}},
		{"no server address", func(c *Config) { c.ServerIP = "" }, []string{"server_ip: required"}},
		{"unknown policy", func(c *Config) { c.Unknown = "pxe" }, []string{`unknown: "pxe"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig(t)
			tc.edit(&c)
			_, err := New(c)
			for _, w := range tc.want {
				if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v: want ErrConfig saying %q", err, w)
				}
			}
		})
	}
}
