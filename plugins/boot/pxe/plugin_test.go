package pxe

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/diskcast/diskcast/sdk/base"
	"github.com/diskcast/diskcast/sdk/boot"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

// dial serves impl over go-plugin's in-memory gRPC connection, as the
// core reaches it, and returns the core's client.
func dial(t *testing.T, impl *Plugin) boot.Client {
	t.Helper()
	gc, _ := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{
		string(base.KindBoot): &boot.GRPCPlugin{Impl: impl, Meta: base.Info{Name: "pxe", Version: "test"}},
	})
	t.Cleanup(func() { gc.Close() })
	raw, err := gc.Dispense(string(base.KindBoot))
	if err != nil {
		t.Fatal(err)
	}
	return raw.(boot.Client)
}

func quietPlugin() *Plugin {
	p := NewPlugin()
	p.Logger = hclog.NewNullLogger()
	return p
}

func TestPluginBase(t *testing.T) {
	ctx := context.Background()
	c := dial(t, quietPlugin())
	info, err := c.Info(ctx)
	if err != nil || info.Kind != base.KindBoot || info.Name != "pxe" || info.APIVersion != base.APIVersion || info.Description == "" {
		t.Fatalf("Info %+v, %v", info, err)
	}
	schema, err := c.ConfigSchema(ctx)
	if err != nil {
		t.Fatal(err)
	}
	attrs := map[string]base.Attribute{}
	for _, a := range schema.Attributes {
		if a.Description == "" || a.Required {
			t.Errorf("attribute %+v: want a description and optional", a)
		}
		attrs[a.Name] = a
	}
	for name, def := range map[string]any{"mode": "proxy", "tftp_root": "/usr/lib/ipxe", "bios_file": "undionly.kpxe", "efi_file": "snponly.efi",
		"unknown": "local", "dhcp_port": float64(67), "proxy_port": float64(4011), "tftp_port": float64(69), "http_listen": ":8067"} {
		if a, ok := attrs[name]; !ok || a.Default != def {
			t.Errorf("attribute %s: %+v, want default %v", name, a, def)
		}
	}
	for _, name := range []string{"interface", "server_ip", "pool_start", "pool_end", "subnet_mask", "router", "dns", "lease_time", "lease_file", "files_dir"} {
		if _, ok := attrs[name]; !ok {
			t.Errorf("attribute %s missing", name)
		}
	}
	if err := c.Configure(ctx, base.Config{}); err != nil {
		t.Errorf("Configure with no settings: %v", err)
	}
	for _, tc := range []struct {
		cfg  base.Config
		says []string
	}{
		{base.Config{"no_such": true}, []string{"no_such: unknown setting"}},
		{base.Config{"mode": "dhcp"}, []string{"mode dhcp needs pool_start"}},
		{base.Config{"mode": "dhcp", "pool_start": "198.18.0.100", "pool_end": "198.18.0.10", "subnet_mask": "255.255.255.0", "dhcp_port": float64(70000)},
			[]string{"pool_end: 198.18.0.10 is before pool_start", "dhcp_port: 70000"}},
		{base.Config{"dns": "198.18.0.1"}, []string{"dns: want a list of strings"}},
	} {
		err := c.Configure(ctx, tc.cfg)
		for _, w := range tc.says {
			if !errors.Is(err, base.ErrInvalidConfig) || !strings.Contains(err.Error(), w) {
				t.Errorf("Configure(%v): %v, want base.ErrInvalidConfig saying %q", tc.cfg, err, w)
			}
		}
	}
	caps, err := c.Capabilities(ctx)
	if err != nil || caps.DHCP || !caps.ProxyDHCP || !caps.TFTP || !caps.HTTP {
		t.Errorf("capabilities of the default proxy mode: %+v, %v", caps, err)
	}
	if err := c.Configure(ctx, base.Config{"mode": "dhcp", "pool_start": "198.18.0.100", "pool_end": "198.18.0.200",
		"subnet_mask": "255.255.255.0", "dns": []any{"198.18.0.1"}, "lease_time": float64(600)}); err != nil {
		t.Fatal(err)
	}
	caps, err = c.Capabilities(ctx)
	if err != nil || !caps.DHCP || caps.ProxyDHCP {
		t.Errorf("capabilities in dhcp mode: %+v, %v", caps, err)
	}
	// Without server_ip from the config or the core, Serve refuses, and
	// the error keeps its kind across the process boundary.
	err = c.Serve(ctx, boot.Network{}, &memBackend{})
	if !errors.Is(err, base.ErrInvalidConfig) || !strings.Contains(err.Error(), "server_ip: required") {
		t.Errorf("Serve without server_ip: %v", err)
	}
}

// A boot through the gRPC path: DHCP over loopback to the plugin, the
// script over HTTP, the core's Lookup and Report over the brokered
// backend connection.
func TestPluginServeGRPC(t *testing.T) {
	p := quietPlugin()
	c := dial(t, p)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lc := testConfig(t)
	if err := c.Configure(ctx, base.Config{
		"mode": "dhcp", "pool_start": "127.0.0.100", "pool_end": "127.0.0.110", "subnet_mask": "255.0.0.0",
		"lease_file": filepath.Join(t.TempDir(), "leases.json"), "tftp_root": t.TempDir(), "http_listen": "127.0.0.1:18068",
		"dhcp_port": float64(lc.DHCPPort), "proxy_port": float64(lc.ProxyPort), "tftp_port": float64(lc.TFTPPort),
		"relay_port": float64(lc.RelayPort), "client_port": float64(lc.ClientPort),
	}); err != nil {
		t.Fatal(err)
	}
	relay, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: lc.RelayPort})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	b := &memBackend{assign: map[string]boot.Assignment{
		macIPXE.String(): {Known: true, KernelURL: "http://127.0.0.1/k", Cmdline: "quiet"},
	}}
	done := make(chan error, 1)
	// The core gives the server address; the config leaves it empty.
	go func() { done <- c.Serve(ctx, boot.Network{ServerIP: "127.0.0.1"}, b) }()

	dhcpAddr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: lc.DHCPPort}
	req := pkt{mac: macIPXE, typ: dhcpv4.MessageTypeDiscover, arch: 0, vendor: pxeVendor(0), ipxe: true, giaddr: net.IPv4(127, 0, 0, 1)}.build(t)
	var o *dhcpv4.DHCPv4
	for deadline := time.Now().Add(10 * time.Second); o == nil; {
		// Serve starts asynchronously: ask until it answers.
		relay.WriteToUDP(req, dhcpAddr)
		relay.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		buf := make([]byte, 1500)
		if n, _, err := relay.ReadFromUDP(buf); err == nil {
			if o, err = dhcpv4.FromBytes(buf[:n]); err != nil {
				t.Fatal(err)
			}
		} else if time.Now().After(deadline) {
			t.Fatalf("no offer: %v", err)
		}
	}
	if o.BootFileName != "http://127.0.0.1:18068/boot.ipxe?mac="+macIPXE.String() {
		t.Fatalf("offer %s", o.Summary())
	}
	resp, err := http.Get(o.BootFileName)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "kernel http://127.0.0.1/k quiet\n") {
		t.Errorf("script:\n%s", body)
	}
	b.waitEvent(t, macIPXE.String(), "dhcp-offer")
	b.waitEvent(t, macIPXE.String(), "script")
	if st := p.Stats(); st.DHCPReplies == 0 || st.HTTPScripts != 1 {
		t.Errorf("stats %+v", st)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after cancel: %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if !slices.ContainsFunc(b.lookups, func(n boot.Node) bool { return n.MAC == macIPXE.String() && n.Arch == "BIOS" }) {
		t.Errorf("lookups %+v", b.lookups)
	}
}
