package transport

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/diskcast/diskcast/sdk/base"
)

// Mock is a Transport that carries an image through memory: Send copies
// the metadata and every chunk from its source, and Receive delivers them
// to a sink. It is for tests of code that drives transports.
type Mock struct {
	base.NoConfig
	Caps Capabilities

	mu     sync.Mutex
	meta   []byte
	chunks map[int64][]byte
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

// Send copies the metadata and every chunk of src.
func (m *Mock) Send(ctx context.Context, s Session, src Source) (Stats, error) {
	var st Stats
	chunks := map[int64][]byte{}
	for i := range int64(len(src.ChunkSizes())) {
		data, err := src.ReadChunk(ctx, i)
		if err != nil {
			return st, err
		}
		if int64(len(data)) != src.ChunkSizes()[i] {
			return st, fmt.Errorf("mock: chunk %d has %d bytes, the source said %d", i, len(data), src.ChunkSizes()[i])
		}
		chunks[i] = data
		st.Bytes += int64(len(data))
	}
	m.mu.Lock()
	m.meta, m.chunks = src.Meta(), chunks
	m.mu.Unlock()
	src.Progress(ctx, st)
	return st, nil
}

// Receive delivers the stored image to sink, skipping the chunks it
// holds; a chunk the sink rejects with ErrChecksum is offered once more.
func (m *Mock) Receive(ctx context.Context, s Session, sink Sink) (Stats, error) {
	var st Stats
	m.mu.Lock()
	meta, chunks := m.meta, m.chunks
	m.mu.Unlock()
	if meta == nil {
		return st, fmt.Errorf("%w: nothing was sent", ErrSession)
	}
	held, err := sink.Meta(ctx, meta)
	if err != nil {
		return st, err
	}
	st.ChunksTotal, st.ResumedChunks = held.Chunks, held.Count()
	for i := range held.Chunks {
		if held.Has(i) {
			continue
		}
		data, ok := chunks[i]
		if !ok {
			return st, fmt.Errorf("%w: chunk %d was never sent", ErrNoChunk, i)
		}
		err := sink.Write(ctx, i, data)
		if errors.Is(err, ErrChecksum) {
			err = sink.Write(ctx, i, data)
		}
		if err != nil {
			return st, err
		}
		st.Chunks++
		st.Bytes += int64(len(data))
	}
	sink.Progress(ctx, st)
	return st, nil
}

// Fetch returns a stored chunk when Caps.Repair is set.
func (m *Mock) Fetch(_ context.Context, _ Session, index int64) ([]byte, error) {
	if !m.Caps.Repair {
		return nil, fmt.Errorf("mock: fetch: %w", base.ErrUnsupported)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	data, ok := m.chunks[index]
	if !ok {
		return nil, fmt.Errorf("%w: chunk %d was never sent", ErrNoChunk, index)
	}
	return data, nil
}
