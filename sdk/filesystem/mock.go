package filesystem

import (
	"context"
	"io"
	"sync"

	"github.com/diskcast/diskcast/sdk/base"
)

// Mock is a Filesystem for tests of code that drives filesystem plugins.
// Each behaviour is a field; a nil field gives the default described on
// it. It records the settings it was configured with.
type Mock struct {
	// Description is returned by Info.
	Description string
	// Schema is returned by ConfigSchema (default: no settings).
	Schema *base.Schema
	// Caps is returned by Capabilities (default: no fix-up).
	Caps Capabilities
	// ProbeFunc answers Probe (default: not recognised).
	ProbeFunc func(ctx context.Context, r io.ReaderAt, size int64) (*ProbeResult, error)
	// Extents are emitted by UsedExtents when ExtentsFunc is nil.
	Extents [][2]int64
	// ExtentsFunc answers UsedExtents.
	ExtentsFunc func(ctx context.Context, r io.ReaderAt, size int64, emit func(off, length int64) error) error
	// FixUpFunc answers FixUp (default: base.ErrUnsupported).
	FixUpFunc func(ctx context.Context, rw ReadWriterAt, size int64) error

	mu  sync.Mutex
	cfg base.Config
}

var _ Filesystem = (*Mock)(nil)

// Info returns the description.
func (m *Mock) Info(context.Context) (*base.Info, error) {
	return &base.Info{Kind: base.KindFilesystem, Description: m.Description}, nil
}

// ConfigSchema returns Schema.
func (m *Mock) ConfigSchema(context.Context) (*base.Schema, error) {
	if m.Schema == nil {
		return &base.Schema{}, nil
	}
	return m.Schema, nil
}

// Configure records cfg; it rejects names missing from Schema.
func (m *Mock) Configure(_ context.Context, cfg base.Config) error {
	known := map[string]bool{}
	if m.Schema != nil {
		for _, a := range m.Schema.Attributes {
			known[a.Name] = true
		}
	}
	for k := range cfg {
		if !known[k] {
			return base.Mark(&configError{name: k}, base.ErrInvalidConfig)
		}
	}
	m.mu.Lock()
	m.cfg = cfg
	m.mu.Unlock()
	return nil
}

type configError struct{ name string }

func (e *configError) Error() string { return "mock: unknown setting " + e.name }

// Configured returns the last settings Configure accepted.
func (m *Mock) Configured() base.Config {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cfg
}

// Capabilities returns Caps.
func (m *Mock) Capabilities(context.Context) (*Capabilities, error) {
	c := m.Caps
	return &c, nil
}

// Probe calls ProbeFunc.
func (m *Mock) Probe(ctx context.Context, r io.ReaderAt, size int64) (*ProbeResult, error) {
	if m.ProbeFunc == nil {
		return &ProbeResult{}, nil
	}
	return m.ProbeFunc(ctx, r, size)
}

// UsedExtents calls ExtentsFunc, or emits Extents.
func (m *Mock) UsedExtents(ctx context.Context, r io.ReaderAt, size int64, emit func(off, length int64) error) error {
	if m.ExtentsFunc != nil {
		return m.ExtentsFunc(ctx, r, size, emit)
	}
	for _, e := range m.Extents {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := emit(e[0], e[1]); err != nil {
			return err
		}
	}
	return nil
}

// FixUp calls FixUpFunc.
func (m *Mock) FixUp(ctx context.Context, rw ReadWriterAt, size int64) error {
	if m.FixUpFunc == nil {
		return base.ErrUnsupported
	}
	return m.FixUpFunc(ctx, rw, size)
}
