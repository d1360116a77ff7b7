package transfer

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"

	"github.com/diskcast/diskcast/core/image"
	"github.com/diskcast/diskcast/core/restore"
	"github.com/diskcast/diskcast/sdk/transport"
)

// Errors of a Sink.
var (
	// ErrWrongImage means the metadata a transport delivered is not the
	// image the caller expects (another ID, or another image than an
	// earlier delivery to the same sink).
	ErrWrongImage = errors.New("transfer: wrong image")
	// ErrNotStarted means Finish was called before any metadata arrived.
	ErrNotStarted = errors.New("transfer: no image metadata was received")
)

// Sink restores what a transport delivers onto a target. Set its fields,
// pass it to a transport's Receive (or to Receive), then Close it. One
// Sink may serve several transports in turn, such as multicast and then
// a unicast fallback: the chunks the first wrote are not asked for again.
type Sink struct {
	Target string
	// Journal is the resume journal's path ("" for none; see
	// restore.DefaultJournal).
	Journal string
	// ImageID, if set, is the ID (hex) the metadata must carry.
	ImageID string
	// PublicKey, if set, must have signed the image. A signed image is
	// always checked against its own key.
	PublicKey ed25519.PublicKey
	Free      restore.FreeMode
	// Fetch, if set, gets a chunk by other means (the unicast transport)
	// for a transport that asks for repair (see transport.Sink).
	Fetch func(ctx context.Context, index int64) ([]byte, error)
	// OnProgress, if set, receives the transport's stats.
	OnProgress func(transport.Stats)
	// Started, if set, is called once the target is open, with the
	// chunks an earlier receive had written.
	Started func(t *restore.Target, resumed int)
	// FixUp, if set, runs the filesystem plugins' post-restore fix-ups
	// once the image is on the target (see restore.Options.FixUp). It
	// gets the image's header, known once the metadata came.
	FixUp func(h *image.Header) restore.FixUpFunc

	mu              sync.Mutex
	meta            []byte
	t               *restore.Target
	resumed         int
	stopCheckpoints func()
	cpErr           error
	workers         sync.Pool // of *worker
}

var _ transport.Sink = (*Sink)(nil)

type worker struct {
	dec *image.Decoder
	buf []byte
}

// Meta checks the metadata and opens the target. A second delivery of
// the same metadata returns what is held now.
func (s *Sink) Meta(_ context.Context, blob []byte) (*transport.Held, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.t != nil {
		if !bytes.Equal(blob, s.meta) {
			return nil, fmt.Errorf("%w: the transport now delivers other metadata than it did first", ErrWrongImage)
		}
		return s.held(), nil
	}
	img, err := image.ParseMeta(blob)
	if err != nil {
		return nil, fmt.Errorf("image metadata: %w", err)
	}
	if s.ImageID != "" && img.Header.ID.String() != s.ImageID {
		return nil, fmt.Errorf("%w: the metadata is of image %s, expected %s", ErrWrongImage, img.Header.ID, s.ImageID)
	}
	if err := img.Verify(s.PublicKey); err != nil {
		return nil, err
	}
	t, err := restore.OpenTarget(s.Target, img)
	if err != nil {
		return nil, err
	}
	if s.Journal != "" {
		if s.resumed, err = t.UseJournal(s.Journal); err != nil {
			t.Close()
			return nil, fmt.Errorf("restore: %w", err)
		}
		s.stopCheckpoints = t.StartCheckpoints(func(err error) {
			s.mu.Lock()
			s.cpErr = err
			s.mu.Unlock()
		})
	}
	s.t, s.meta = t, bytes.Clone(blob)
	if s.Started != nil {
		s.Started(t, s.resumed)
	}
	return s.held(), nil
}

// held lists the written chunks; s.mu is held.
func (s *Sink) held() *transport.Held {
	n := int64(len(s.t.Meta.Index.Chunks))
	h := transport.NewHeld(n)
	for i := range n {
		if s.t.Has(int(i)) {
			h.Set(i)
		}
	}
	return h
}

func (s *Sink) target() *restore.Target {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.t
}

// Write verifies data as chunk index and writes it.
func (s *Sink) Write(_ context.Context, index int64, data []byte) error {
	t := s.target()
	if t == nil {
		return fmt.Errorf("%w: chunk %d arrived before the metadata", ErrNotStarted, index)
	}
	if index < 0 || index >= int64(len(t.Meta.Index.Chunks)) {
		return fmt.Errorf("%w: chunk %d of %d", transport.ErrNoChunk, index, len(t.Meta.Index.Chunks))
	}
	w, _ := s.workers.Get().(*worker)
	if w == nil {
		w = &worker{dec: image.NewDecoder()}
	}
	defer s.workers.Put(w)
	var err error
	w.buf, err = t.WriteChunk(w.dec, w.buf, int(index), data)
	if errors.Is(err, image.ErrChecksum) || errors.Is(err, image.ErrCorrupt) {
		return fmt.Errorf("%w: %w", transport.ErrChecksum, err)
	}
	if err == nil {
		s.mu.Lock()
		err = s.cpErr
		s.mu.Unlock()
	}
	return err
}

// Repair gets a chunk through s.Fetch.
func (s *Sink) Repair(ctx context.Context, index int64) ([]byte, error) {
	if s.Fetch == nil {
		return nil, fmt.Errorf("%w: chunk %d", transport.ErrNoRepair, index)
	}
	return s.Fetch(ctx, index)
}

// Progress hands the stats to OnProgress.
func (s *Sink) Progress(_ context.Context, st transport.Stats) {
	if s.OnProgress != nil {
		s.OnProgress(st)
	}
}

// Result summarises a finished receive.
type Result struct {
	Resumed   int // chunks an earlier, interrupted receive had written
	Chunks    int64
	DataBytes int64
	ZeroBytes int64
}

// Finish completes the restore once the transport delivered everything:
// zero extents, free space, sync, and the journal dropped.
func (s *Sink) Finish(ctx context.Context) error {
	t := s.target()
	if t == nil {
		return ErrNotStarted
	}
	s.stopCheckpointing()
	if err := t.ZeroExtents(ctx); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := t.Finish(ctx, s.Free); err != nil {
		return err
	}
	if s.FixUp == nil {
		return nil
	}
	return t.FixUps(ctx, s.FixUp(t.Meta.Header))
}

// Total is the data bytes the image writes (0 before the metadata came).
func (s *Sink) Total() int64 {
	if t := s.target(); t != nil {
		return t.Meta.Index.DataBytes()
	}
	return 0
}

// ChunksTotal is the image's chunk count (0 before the metadata came).
func (s *Sink) ChunksTotal() int64 {
	if t := s.target(); t != nil {
		return int64(len(t.Meta.Index.Chunks))
	}
	return 0
}

// Result reports what the sink wrote.
func (s *Sink) Result() Result {
	t := s.target()
	if t == nil {
		return Result{}
	}
	return Result{Resumed: s.resumed, Chunks: t.Stats.Chunks.Load(), DataBytes: t.Stats.DataBytes.Load(), ZeroBytes: t.Stats.ZeroBytes.Load()}
}

func (s *Sink) stopCheckpointing() {
	s.mu.Lock()
	stop := s.stopCheckpoints
	s.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// Close records what was written in the journal (when the restore is not
// finished) and closes the target.
func (s *Sink) Close() error {
	t := s.target()
	if t == nil {
		return nil
	}
	s.stopCheckpointing()
	var err error
	if len(t.Missing()) > 0 {
		err = t.Checkpoint()
	}
	return errors.Join(err, t.Close())
}
