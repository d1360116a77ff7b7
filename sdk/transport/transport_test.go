package transport

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
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

// source is the core's side of a send: chunk i holds "chunk-i"; extra
// makes ReadChunk fail past the end.
type source struct {
	n        int64
	extra    int64
	mu       sync.Mutex
	progress int
}

func (s *source) Meta() []byte { return []byte("META") }

func (s *source) ChunkSizes() []int64 {
	var sizes []int64
	for i := range s.n + s.extra {
		sizes = append(sizes, int64(len(fmt.Sprintf("chunk-%d", i))))
	}
	return sizes
}

func (s *source) ReadChunk(_ context.Context, i int64) ([]byte, error) {
	if i < 0 || i >= s.n {
		return nil, fmt.Errorf("%w: %d of %d", ErrNoChunk, i, s.n)
	}
	return []byte(fmt.Sprintf("chunk-%d", i)), nil
}

func (s *source) Progress(context.Context, Stats) { s.mu.Lock(); s.progress++; s.mu.Unlock() }

// sink is the core's side of a receive: it holds chunk 0 already and
// rejects the first delivery of chunk 2.
type sink struct {
	mu       sync.Mutex
	meta     string
	got      map[int64]string
	rejected bool
	progress Stats
}

func (s *sink) Meta(_ context.Context, meta []byte) (*Held, error) {
	s.meta = string(meta)
	h := NewHeld(5)
	h.Set(0)
	return h, nil
}

func (s *sink) Write(_ context.Context, i int64, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i == 2 && !s.rejected {
		s.rejected = true
		return fmt.Errorf("%w: chunk 2 hash differs", ErrChecksum)
	}
	s.got[i] = string(data)
	return nil
}

func (s *sink) Repair(context.Context, int64) ([]byte, error) { return nil, ErrNoRepair }

func (s *sink) Progress(_ context.Context, st Stats) { s.mu.Lock(); s.progress = st; s.mu.Unlock() }

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
	src := &source{n: 5}
	st, err := c.Send(ctx, s, src)
	if err != nil {
		t.Fatal(err)
	}
	if st.Bytes != 5*7 || src.progress != 1 {
		t.Fatalf("send stats %+v, %d progress calls", st, src.progress)
	}

	k := &sink{got: map[int64]string{}}
	st, err = c.Receive(ctx, s, k)
	if err != nil {
		t.Fatal(err)
	}
	if k.meta != "META" || len(k.got) != 4 || k.got[0] != "" || k.got[2] != "chunk-2" || k.got[4] != "chunk-4" {
		t.Fatalf("sink got meta %q, chunks %v", k.meta, k.got)
	}
	if st.Chunks != 4 || st.ResumedChunks != 1 || st.ChunksTotal != 5 || k.progress.Chunks != 4 {
		t.Errorf("receive stats %+v, progress %+v", st, k.progress)
	}
	if data, err := c.Fetch(ctx, s, 3); err != nil || string(data) != "chunk-3" {
		t.Errorf("fetch: %q, %v", data, err)
	}

	// Errors keep their identity both ways: the core's source failing
	// inside the plugin's Send, and the plugin's own.
	if _, err := c.Send(ctx, s, &source{n: 5, extra: 1}); !errors.Is(err, ErrNoChunk) || !strings.Contains(err.Error(), "5 of 5") {
		t.Errorf("send past the end: %v", err)
	}
	if _, err := c.Fetch(ctx, s, 99); !errors.Is(err, ErrNoChunk) || !strings.Contains(err.Error(), "chunk 99 was never sent") {
		t.Errorf("fetch of a missing chunk: %v", err)
	}
	m.Caps.Repair = false
	if _, err := c.Fetch(ctx, s, 1); !errors.Is(err, base.ErrUnsupported) {
		t.Errorf("fetch without repair: %v", err)
	}
	if err := c.Configure(ctx, base.Config{"rate": 1}); !errors.Is(err, base.ErrInvalidConfig) {
		t.Errorf("configure: %v", err)
	}
}

// A chunk larger than gRPC's default 4 MiB message limit crosses the
// plugin boundary both ways.
func TestLargeChunk(t *testing.T) {
	c := dial(t, &Mock{})
	big := &bigSource{data: make([]byte, 9<<20)}
	for i := range big.data {
		big.data[i] = byte(i * 7)
	}
	ctx := context.Background()
	if _, err := c.Send(ctx, Session{}, big); err != nil {
		t.Fatal(err)
	}
	k := &bigSink{}
	if _, err := c.Receive(ctx, Session{}, k); err != nil {
		t.Fatal(err)
	}
	if len(k.got) != len(big.data) || string(k.got) != string(big.data) || len(k.meta) != len(big.Meta()) {
		t.Fatalf("got %d bytes and %d of metadata", len(k.got), len(k.meta))
	}
}

type bigSource struct{ data []byte }

func (b *bigSource) Meta() []byte        { return b.data[:6<<20] }
func (b *bigSource) ChunkSizes() []int64 { return []int64{int64(len(b.data))} }
func (b *bigSource) ReadChunk(context.Context, int64) ([]byte, error) {
	return b.data, nil
}
func (b *bigSource) Progress(context.Context, Stats) {}

type bigSink struct{ meta, got []byte }

func (b *bigSink) Meta(_ context.Context, m []byte) (*Held, error) {
	b.meta = append([]byte(nil), m...)
	return NewHeld(1), nil
}
func (b *bigSink) Write(_ context.Context, _ int64, d []byte) error {
	b.got = append([]byte(nil), d...)
	return nil
}
func (b *bigSink) Repair(context.Context, int64) ([]byte, error) { return nil, ErrNoRepair }
func (b *bigSink) Progress(context.Context, Stats)               {}

func TestHeld(t *testing.T) {
	h := NewHeld(10)
	for _, i := range []int64{0, 7, 8, 9, 10, -1} {
		h.Set(i)
	}
	if h.Count() != 4 || !h.Has(8) || h.Has(10) || h.Has(-1) || h.Has(1) {
		t.Errorf("held %08b, count %d", h.Bits(), h.Count())
	}
	if g := HeldFromBits(10, []byte{0x81}); g.Count() != 2 || !g.Has(7) {
		t.Errorf("from bits: %08b", g.Bits())
	}
}
