package pxe

import (
	"bytes"
	"net"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// FuzzHandleDHCP feeds packets to both modes on both ports: no panic,
// and every answer is a well-formed reply to the request, sent to an
// address and port the rules allow, giving only pool addresses.
func FuzzHandleDHCP(f *testing.F) {
	for _, b := range seedPackets(f) {
		f.Add(b, false)
		f.Add(b, true)
	}
	full := testConfig(f)
	full.LeaseFile = ""
	proxy := full
	proxy.Mode, proxy.PoolStart, proxy.PoolEnd, proxy.SubnetMask = ModeProxy, "", "", ""
	f.Fuzz(func(t *testing.T, b []byte, proxyPort bool) {
		for _, c := range []Config{full, proxy} {
			mode := c.Mode
			s, err := New(c)
			if err != nil {
				t.Fatal(err)
			}
			on := onDHCP
			peer := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 68}
			if proxyPort {
				on = onProxy
			}
			r, err := s.handleDHCP(on, peer, b)
			st := s.Stats()
			if st.DHCPReceived != 1 {
				t.Fatalf("received %d", st.DHCPReceived)
			}
			if r == nil {
				if err == nil {
					continue // release, decline: no answer due
				}
				if dropped := st.DHCPMalformed + st.DHCPIgnored + st.DHCPNoAddress + st.DHCPUnsupportedArch; dropped == 0 {
					t.Fatalf("dropped uncounted: %v", err)
				}
				continue
			}
			req, err := dhcpv4.FromBytes(b)
			if err != nil {
				t.Fatalf("answered an undecodable packet: %v", err)
			}
			out := r.pkt.ToBytes()
			d, err := dhcpv4.FromBytes(out)
			if err != nil {
				t.Fatalf("reply does not decode: %v", err)
			}
			if d.OpCode != dhcpv4.OpcodeBootReply || d.TransactionID != req.TransactionID || !bytes.Equal(d.ClientHWAddr, req.ClientHWAddr) {
				t.Fatalf("reply %s to %s", d.Summary(), req.Summary())
			}
			if yi := ip4(d.YourIPAddr); !yi.IsUnspecified() && (mode == ModeProxy || !s.cfg.pool.contains(yi)) {
				t.Fatalf("mode %s gave %v", mode, yi)
			}
			switch port := r.to.Port; {
			case port == c.ClientPort, port == c.RelayPort && r.to.IP.Equal(req.GatewayIPAddr), on == onProxy && r.to == peer:
			default:
				t.Fatalf("reply to %v", r.to)
			}
			if len(out) > 576 && !strings.HasPrefix(d.BootFileName, "http://") {
				t.Fatalf("reply of %d bytes", len(out))
			}
		}
	})
}

func FuzzParseMAC(f *testing.F) {
	for _, s := range []string{"52:54:00:ab:cd:0f", "52-54-00-AB-CD-0F", "5254.00ab.cd0f", "525400abcd0f", "${net0/mac}", "", "::::::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMAC(s)
		if err != nil {
			return
		}
		hw, perr := net.ParseMAC(m)
		if len(m) != 17 || perr != nil || hw.String() != m {
			t.Fatalf("ParseMAC(%q) = %q, not canonical", s, m)
		}
		if again, err := ParseMAC(m); err != nil || again != m {
			t.Fatalf("ParseMAC(%q) = %q, %v: not idempotent", m, again, err)
		}
	})
}

// FuzzConfinedName: whatever is asked, the name handed to os.Root is
// relative and has no ".." element.
func FuzzConfinedName(f *testing.F) {
	for _, s := range []string{"undionly.kpxe", "/ipxe.efi", "../etc/passwd", `..\..\x`, "a/./b", "//", "a/../b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := confinedName(s)
		if err != nil {
			return
		}
		if n == "" || strings.HasPrefix(n, "/") || strings.Contains(n, "\\") {
			t.Fatalf("confinedName(%q) = %q", s, n)
		}
		for _, el := range strings.Split(n, "/") {
			if el == ".." {
				t.Fatalf("confinedName(%q) = %q", s, n)
			}
		}
	})
}
