// Package transfer joins images to transport plugins. Source serves an
// image file to a sending transport. Sink restores what a receiving
// transport delivers, with exactly the checks of diskcast restore: the
// metadata is checked (and its signature, when asked), a target too small
// or in use is refused before anything is written, every chunk is
// verified against the index before it is written, and an interrupted
// receive resumes from its journal.
package transfer

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/diskcast/diskcast/core/image"
	"github.com/diskcast/diskcast/sdk/transport"
)

// Source serves an opened image to a sending transport.
type Source struct {
	img   *image.Reader
	meta  []byte
	sizes []int64
	// OnProgress, if set, receives the transport's stats.
	OnProgress func(transport.Stats)
	lastRead   atomic.Int64 // unix nanoseconds of the latest ReadChunk
}

var _ transport.Source = (*Source)(nil)

// NewSource serves img (opened and verified by the caller).
func NewSource(img *image.Reader) *Source {
	sizes := make([]int64, len(img.Index.Chunks))
	for i := range img.Index.Chunks {
		sizes[i] = int64(img.Index.Chunks[i].StoredSize)
	}
	return &Source{img: img, meta: img.MetaBlob(), sizes: sizes}
}

// Meta is the image's header, index and trailer.
func (s *Source) Meta() []byte { return s.meta }

// ChunkSizes are the stored chunk sizes.
func (s *Source) ChunkSizes() []int64 { return s.sizes }

// ReadChunk reads a chunk's stored payload and checks it against the
// index, so a damaged image file is never sent.
func (s *Source) ReadChunk(_ context.Context, index int64) ([]byte, error) {
	return s.read(index, nil)
}

// ReadChunkInto reads a chunk's stored payload into p (its stored size)
// and checks it, as ReadChunk does: a sending plugin's shared memory.
func (s *Source) ReadChunkInto(_ context.Context, index int64, p []byte) error {
	if index >= 0 && index < int64(len(s.sizes)) && int64(len(p)) != s.sizes[index] {
		return fmt.Errorf("chunk %d has %d bytes, not %d", index, s.sizes[index], len(p))
	}
	_, err := s.read(index, p)
	return err
}

// read reads chunk index into buf if it is large enough.
func (s *Source) read(index int64, buf []byte) ([]byte, error) {
	if index < 0 || index >= int64(len(s.sizes)) {
		return nil, fmt.Errorf("%w: chunk %d of %d", transport.ErrNoChunk, index, len(s.sizes))
	}
	s.lastRead.Store(time.Now().UnixNano())
	return s.img.ReadPayload(int(index), buf)
}

// IdleFor is how long no chunk has been read.
func (s *Source) IdleFor() time.Duration {
	return time.Since(time.Unix(0, s.lastRead.Load()))
}

// Progress hands the stats to OnProgress.
func (s *Source) Progress(_ context.Context, st transport.Stats) {
	if s.OnProgress != nil {
		s.OnProgress(st)
	}
}

// Receive runs a receiving transport into sink and completes the restore:
// afterwards the target holds the whole image, or the error says why not
// and the journal keeps what was written.
func Receive(ctx context.Context, tr transport.Client, s transport.Session, sink *Sink) (transport.Stats, error) {
	st, err := tr.Receive(ctx, s, sink)
	if err != nil {
		return st, err
	}
	return st, sink.Finish(ctx)
}
