package boot

import (
	"context"
	"sync"

	"github.com/diskcast/diskcast/sdk/base"
)

// Mock is a Boot for tests of code that drives boot plugins. Serve asks
// the backend about each node in Nodes, reports an event per node with
// the assignment's kernel URL (or "unknown"), records the assignments and
// then waits for ctx to end.
type Mock struct {
	base.NoConfig
	Caps  Capabilities
	Nodes []Node

	mu       sync.Mutex
	Assigned map[string]Assignment
}

var _ Boot = (*Mock)(nil)

// Info describes the mock.
func (m *Mock) Info(context.Context) (*base.Info, error) {
	return &base.Info{Kind: base.KindBoot, Description: "boot plugin for tests"}, nil
}

// Capabilities returns Caps.
func (m *Mock) Capabilities(context.Context) (*Capabilities, error) {
	c := m.Caps
	return &c, nil
}

// Serve looks up every node, reports, and waits for ctx.
func (m *Mock) Serve(ctx context.Context, _ Network, b Backend) error {
	for _, n := range m.Nodes {
		a, err := b.Lookup(ctx, n)
		if err != nil {
			return err
		}
		m.mu.Lock()
		if m.Assigned == nil {
			m.Assigned = map[string]Assignment{}
		}
		m.Assigned[n.MAC] = *a
		m.mu.Unlock()
		detail := "unknown"
		if a.Known {
			detail = a.KernelURL
		}
		if err := b.Report(ctx, Event{MAC: n.MAC, What: "lookup", Detail: detail}); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return nil
}

// Assignments returns a copy of what Serve recorded.
func (m *Mock) Assignments() map[string]Assignment {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]Assignment{}
	for k, v := range m.Assigned {
		out[k] = v
	}
	return out
}
