package pxe

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/diskcast/diskcast/sdk/boot"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/pin/tftp/v3"
)

// serve runs s until the test ends.
func serve(t *testing.T, s *Server, b boot.Backend) {
	t.Helper()
	if err := s.Listen(); err != nil {
		t.Fatalf("listen on loopback: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, b) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
}

// exchange sends b to the server from conn and reads one reply.
func exchange(t *testing.T, conn *net.UDPConn, to *net.UDPAddr, b []byte) *dhcpv4.DHCPv4 {
	t.Helper()
	if _, err := conn.WriteToUDP(b, to); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, from, err := conn.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("no reply from %v: %v", to, err)
	}
	if from.Port != to.Port {
		t.Errorf("reply from port %d, want %d", from.Port, to.Port)
	}
	d, err := dhcpv4.FromBytes(buf[:n])
	if err != nil {
		t.Fatalf("reply: %v", err)
	}
	return d
}

// The whole chain over loopback sockets, as a relayed iPXE client sees
// it: DHCP discover and request through a relay (giaddr 127.0.0.1, the
// test's socket on relay_port), then iPXE over TFTP, then the script
// over HTTP.
func TestLoopbackBoot(t *testing.T) {
	root := tftpRoot(t)
	c := testConfig(t)
	c.TFTPRoot = root
	c.HTTPListen = "127.0.0.1:0"
	s := newServer(t, c)
	relay, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: c.RelayPort})
	if err != nil {
		t.Fatalf("relay socket: %v", err)
	}
	defer relay.Close()
	b := &memBackend{assign: map[string]boot.Assignment{
		macIPXE.String(): {Known: true, KernelURL: "http://127.0.0.1/vmlinuz", InitrdURL: "http://127.0.0.1/initrd.img", Cmdline: "diskcast.session=lab-a"},
	}}
	serve(t, s, b)
	addrs := s.Addrs()

	// Firmware first: BIOS PXE gets undionly.kpxe.
	dhcpAddr := addrs.DHCP
	o := exchange(t, relay, dhcpAddr, pkt{mac: macBIOS, typ: dhcpv4.MessageTypeDiscover, arch: 0, vendor: pxeVendor(0), giaddr: net.IPv4(127, 0, 0, 1)}.build(t))
	if o.MessageType() != dhcpv4.MessageTypeOffer || o.BootFileName != "undionly.kpxe" || o.ClassIdentifier() != "PXEClient" || o.YourIPAddr.IsUnspecified() {
		t.Fatalf("offer to BIOS PXE: %s", o.Summary())
	}
	// TFTP from the next-server the offer named.
	tc, err := tftp.NewClient(net.JoinHostPort(o.ServerIPAddr.String(), "10069"))
	if err != nil {
		t.Fatal(err)
	}
	tc.SetBlockSize(1468)
	wt, err := tc.Receive(o.BootFileName, "octet")
	if err != nil {
		t.Fatalf("tftp %s: %v", o.BootFileName, err)
	}
	var got strings.Builder
	if _, err := wt.WriteTo(&got); err != nil || got.String() != tftpFiles["undionly.kpxe"] {
		t.Fatalf("tftp got %d bytes, %v", got.Len(), err)
	}

	// Then iPXE: discover, request, script.
	o = exchange(t, relay, dhcpAddr, pkt{mac: macIPXE, typ: dhcpv4.MessageTypeDiscover, arch: 0, vendor: pxeVendor(0), ipxe: true, giaddr: net.IPv4(127, 0, 0, 1)}.build(t))
	a := exchange(t, relay, dhcpAddr, pkt{mac: macIPXE, typ: dhcpv4.MessageTypeRequest, arch: 0, vendor: pxeVendor(0), ipxe: true,
		giaddr: net.IPv4(127, 0, 0, 1), reqIP: o.YourIPAddr, server: o.ServerIdentifier()}.build(t))
	if a.MessageType() != dhcpv4.MessageTypeAck || !a.YourIPAddr.Equal(o.YourIPAddr) || !strings.HasPrefix(a.BootFileName, "http://127.0.0.1:") {
		t.Fatalf("ack to iPXE: %s", a.Summary())
	}
	resp, err := http.Get(a.BootFileName)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := "#!ipxe\necho diskcast: 52:54:00:00:00:03: booting the imaging environment\n" +
		"kernel http://127.0.0.1/vmlinuz initrd=initrd.img diskcast.session=lab-a\n" +
		"initrd http://127.0.0.1/initrd.img\nboot\n"
	if resp.StatusCode != 200 || string(body) != want {
		t.Fatalf("script %d:\n%s\nwant:\n%s", resp.StatusCode, body, want)
	}
	b.waitEvent(t, macIPXE.String(), "dhcp-ack")
	b.waitEvent(t, macIPXE.String(), "script")
	b.waitEvent(t, macBIOS.String(), "dhcp-offer")
	st := waitStats(s, func(st Stats) bool { return st.TFTPTransfers == 1 })
	if st.DHCPReplies != 3 || st.TFTPTransfers != 1 || st.HTTPScripts != 1 {
		t.Errorf("stats %+v", st)
	}

	// A malformed packet is dropped and counted, and the server goes on.
	relay.WriteToUDP([]byte("not dhcp"), dhcpAddr)
	exchange(t, relay, dhcpAddr, pkt{mac: macLinx, typ: dhcpv4.MessageTypeDiscover, arch: -1, giaddr: net.IPv4(127, 0, 0, 1)}.build(t))
	if st := waitStats(s, func(st Stats) bool { return st.DHCPReplies == 4 }); st.DHCPMalformed != 1 || st.DHCPReplies != 4 {
		t.Errorf("after a malformed packet: %+v", st)
	}
}

// The PXE port (4011) answers a proxy request at the client's address.
func TestLoopbackProxyPort(t *testing.T) {
	c := testConfig(t)
	c.Mode = ModeProxy
	c.PoolStart, c.PoolEnd, c.SubnetMask = "", "", ""
	c.TFTPRoot = t.TempDir()
	c.HTTPListen = "127.0.0.1:0"
	s := newServer(t, c)
	serve(t, s, &memBackend{})
	cl, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	a := exchange(t, cl, s.Addrs().Proxy, pkt{mac: macUEFI, typ: dhcpv4.MessageTypeRequest, arch: 7, vendor: pxeVendor(7), ciaddr: net.IPv4(127, 0, 0, 1)}.build(t))
	if a.MessageType() != dhcpv4.MessageTypeAck || a.BootFileName != "snponly.efi" || !a.YourIPAddr.IsUnspecified() || a.ClassIdentifier() != "PXEClient" {
		t.Fatalf("proxy ack: %s", a.Summary())
	}
	// Port 67 in proxy mode, unicast discover without giaddr: the offer
	// would be broadcast, and without an interface it is not sent.
	cl.WriteToUDP(pkt{mac: macUEFI, typ: dhcpv4.MessageTypeDiscover, arch: 7, vendor: pxeVendor(7)}.build(t), s.Addrs().DHCP)
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().DHCPUnsent == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if st := s.Stats(); st.DHCPUnsent != 1 {
		t.Errorf("broadcast without interface: %+v, want it unsent", st)
	}
}

func TestListenBusyPort(t *testing.T) {
	c := testConfig(t)
	c.HTTPListen = "127.0.0.1:0"
	busy, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: c.ProxyPort})
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	s := newServer(t, c)
	err = s.Serve(context.Background(), &memBackend{})
	if err == nil || !strings.Contains(err.Error(), "pxe: PXE port") || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Serve with port %d taken: %v", c.ProxyPort, err)
	}
	// The DHCP port opened before it was closed again.
	again, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: c.DHCPPort})
	if err != nil {
		t.Fatalf("DHCP port left open after the failed Listen: %v", err)
	}
	again.Close()
}
