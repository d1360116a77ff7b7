package boot

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/diskcast/diskcast/sdk/base"
	"github.com/hashicorp/go-plugin"
)

// backend knows one node.
type backend struct {
	mu     sync.Mutex
	events []Event
}

func (b *backend) Lookup(_ context.Context, n Node) (*Assignment, error) {
	if n.MAC == "52:54:00:00:00:01" {
		return &Assignment{Known: true, KernelURL: "http://198.18.0.1/vmlinuz", Cmdline: "console=ttyS0"}, nil
	}
	return &Assignment{}, nil
}

func (b *backend) Report(_ context.Context, e Event) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.events = append(b.events, e)
	return nil
}

func (b *backend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.events)
}

func TestServe(t *testing.T) {
	m := &Mock{Caps: Capabilities{ProxyDHCP: true, TFTP: true}, Nodes: []Node{
		{MAC: "52:54:00:00:00:01", Arch: "x86-64 UEFI"}, {MAC: "52:54:00:00:00:02"},
	}}
	gc, _ := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{
		"boot": &GRPCPlugin{Impl: m, Meta: base.Info{Name: "pxe", Version: "0.1.0"}},
	})
	defer gc.Close()
	raw, err := gc.Dispense("boot")
	if err != nil {
		t.Fatal(err)
	}
	c := raw.(Client)
	caps, err := c.Capabilities(context.Background())
	if err != nil || !caps.ProxyDHCP || !caps.TFTP || caps.DHCP {
		t.Fatalf("capabilities %+v, %v", caps, err)
	}
	b := &backend{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, Network{Interface: "br0", ServerIP: "198.18.0.1"}, b) }()
	deadline := time.Now().Add(5 * time.Second)
	for b.count() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve after cancel: %v, want nil", err)
	}
	a := m.Assignments()
	if !a["52:54:00:00:00:01"].Known || a["52:54:00:00:00:01"].Cmdline != "console=ttyS0" || a["52:54:00:00:00:02"].Known {
		t.Errorf("assignments %+v", a)
	}
	if len(b.events) != 2 || b.events[0].Detail != "http://198.18.0.1/vmlinuz" || b.events[1].Detail != "unknown" {
		t.Errorf("events %+v", b.events)
	}
}
