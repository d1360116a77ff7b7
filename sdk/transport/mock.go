package transport

import (
	"context"
	"fmt"
	"sync"

	"github.com/diskcast/diskcast/sdk/base"
)

// Mock is a Transport that carries chunks through memory: Send reads
// every chunk of the session from its source into Store, and Receive
// delivers chunks from Store. It is for tests of code that drives
// transports.
type Mock struct {
	base.NoConfig
	Caps Capabilities

	mu    sync.Mutex
	Store map[int64][]byte
}

var _ Transport = (*Mock)(nil)

// Info describes the mock.
func (m *Mock) Info(context.Context) (*base.Info, error) {
	return &base.Info{Kind: base.KindTransport, Description: "in-memory transport for tests"}, nil
}

// Capabilities returns Caps.
func (m *Mock) Capabilities(context.Context) (*Capabilities, error) {
	c := m.Caps
	return &c, nil
}

// Send copies every chunk of the session from src into Store.
func (m *Mock) Send(ctx context.Context, s Session, src ChunkSource) error {
	for i := range s.Chunks {
		data, err := src.ReadChunk(ctx, i)
		if err != nil {
			return err
		}
		m.mu.Lock()
		if m.Store == nil {
			m.Store = map[int64][]byte{}
		}
		m.Store[i] = data
		m.mu.Unlock()
	}
	return nil
}

// Receive delivers the wanted chunks (all when want is empty) from Store.
func (m *Mock) Receive(ctx context.Context, s Session, want []int64, deliver func(int64, []byte) error) error {
	if len(want) == 0 {
		for i := range s.Chunks {
			want = append(want, i)
		}
	}
	for _, i := range want {
		if err := ctx.Err(); err != nil {
			return err
		}
		m.mu.Lock()
		data, ok := m.Store[i]
		m.mu.Unlock()
		if !ok {
			return fmt.Errorf("%w: chunk %d was never sent", ErrNoChunk, i)
		}
		if err := deliver(i, data); err != nil {
			return err
		}
	}
	return nil
}
