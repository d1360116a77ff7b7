package transport

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/diskcast/diskcast/sdk/base"
	"github.com/hashicorp/go-plugin"
)

func dial(t *testing.T, impl Transport) Client {
	t.Helper()
	gc, _ := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{
		"transport": &GRPCPlugin{Impl: impl, Meta: base.Info{Name: "mock", Version: "0.1.0"}},
	})
	t.Cleanup(func() { gc.Close() })
	raw, err := gc.Dispense("transport")
	if err != nil {
		t.Fatal(err)
	}
	return raw.(Client)
}

// chunks is the core's side of a send: chunk i holds "chunk-i".
type chunks struct{ n int64 }

func (c chunks) ReadChunk(_ context.Context, i int64) ([]byte, error) {
	if i < 0 || i >= c.n {
		return nil, fmt.Errorf("%w: %d of %d", ErrNoChunk, i, c.n)
	}
	return []byte(fmt.Sprintf("chunk-%d", i)), nil
}

func TestSendReceive(t *testing.T) {
	m := &Mock{Caps: Capabilities{Repair: true}}
	c := dial(t, m)
	ctx := context.Background()
	info, err := c.Info(ctx)
	if err != nil || info.Kind != base.KindTransport || info.Name != "mock" || info.APIVersion != base.APIVersion {
		t.Fatalf("info %+v, %v", info, err)
	}
	caps, err := c.Capabilities(ctx)
	if err != nil || !caps.Repair || caps.Multicast {
		t.Fatalf("capabilities %+v, %v", caps, err)
	}
	s := Session{ID: "lab-a", ImageID: []byte("0123456789abcdef"), Chunks: 5, Params: map[string]string{"group": "239.1.2.3"}}
	if err := c.Send(ctx, s, chunks{n: 5}); err != nil {
		t.Fatal(err)
	}
	if len(m.Store) != 5 || string(m.Store[4]) != "chunk-4" {
		t.Fatalf("plugin got %d chunks", len(m.Store))
	}
	got := map[int64]string{}
	err = c.Receive(ctx, s, []int64{3, 1}, func(i int64, data []byte) error {
		got[i] = string(data)
		return nil
	})
	if err != nil || len(got) != 2 || got[3] != "chunk-3" || got[1] != "chunk-1" {
		t.Fatalf("receive: %v, %v", got, err)
	}

	// Errors keep their identity both ways: the core's source failing
	// inside the plugin's Send, and the plugin's own.
	s.Chunks = 6
	if err := c.Send(ctx, s, chunks{n: 5}); !errors.Is(err, ErrNoChunk) || !strings.Contains(err.Error(), "5 of 5") {
		t.Errorf("send past the end: %v", err)
	}
	err = c.Receive(ctx, s, []int64{99}, func(int64, []byte) error { return nil })
	if !errors.Is(err, ErrNoChunk) || !strings.Contains(err.Error(), "chunk 99 was never sent") {
		t.Errorf("receive of a missing chunk: %v", err)
	}
	if err := c.Configure(ctx, base.Config{"rate": 1}); !errors.Is(err, base.ErrInvalidConfig) {
		t.Errorf("configure: %v", err)
	}
}
