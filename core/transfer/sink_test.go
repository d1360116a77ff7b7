package transfer_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskcast/diskcast/core/image"
	"github.com/diskcast/diskcast/core/internal/testenv"
	"github.com/diskcast/diskcast/core/restore"
	"github.com/diskcast/diskcast/core/transfer"
	"github.com/diskcast/diskcast/sdk/base"
	"github.com/diskcast/diskcast/sdk/transport"
)

// small is core/image's test image (see its testdata/README.md).
const small = "../image/testdata/small.dci"

func openSmall(t *testing.T) *image.File {
	t.Helper()
	img, err := image.Open(small)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { img.Close() })
	return img
}

func wantSHA(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../image/testdata/small.img.sha256")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))[0]
}

// The in-memory transport carries the image through the same contract a
// plugin implements; the sink restores it exactly.
func TestSinkRestores(t *testing.T) {
	img := openSmall(t)
	tr := transport.InProcess(&transport.Mock{}, base.Info{Name: "mock"})
	ctx := context.Background()
	if _, err := tr.Send(ctx, transport.Session{}, transfer.NewSource(img.Reader)); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "target.img")
	sink := &transfer.Sink{Target: target, ImageID: img.Header.ID.String(), Journal: restore.DefaultJournal(target)}
	defer sink.Close()
	if _, err := transfer.Receive(ctx, tr, transport.Session{}, sink); err != nil {
		t.Fatal(err)
	}
	if got := testenv.FileSHA256(t, target); got != wantSHA(t) {
		t.Errorf("restored target has SHA-256 %s, want %s", got, wantSHA(t))
	}
	if res := sink.Result(); res.Chunks != int64(len(img.Index.Chunks)) {
		t.Errorf("result %+v for %d chunks", res, len(img.Index.Chunks))
	}
	if _, err := os.Stat(restore.DefaultJournal(target)); !os.IsNotExist(err) {
		t.Errorf("the journal of a finished receive is still there: %v", err)
	}
}

func TestSinkRefuses(t *testing.T) {
	img := openSmall(t)
	meta := img.MetaBlob()
	ctx := context.Background()
	target := func() string { return filepath.Join(t.TempDir(), "t") }

	t.Run("another image", func(t *testing.T) {
		s := &transfer.Sink{Target: target(), ImageID: "00000000000000000000000000000000"}
		if _, err := s.Meta(ctx, meta); !errors.Is(err, transfer.ErrWrongImage) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("damaged metadata", func(t *testing.T) {
		bad := append([]byte(nil), meta...)
		bad[len(bad)/2] ^= 1
		s := &transfer.Sink{Target: target()}
		if _, err := s.Meta(ctx, bad); err == nil {
			t.Error("damaged metadata accepted")
		}
	})
	t.Run("damaged chunk", func(t *testing.T) {
		s := &transfer.Sink{Target: target()}
		defer s.Close()
		if _, err := s.Meta(ctx, meta); err != nil {
			t.Fatal(err)
		}
		p, err := img.ReadPayload(0, nil)
		if err != nil {
			t.Fatal(err)
		}
		p[0] ^= 1
		if err := s.Write(ctx, 0, p); !errors.Is(err, transport.ErrChecksum) {
			t.Errorf("damaged chunk: %v", err)
		}
		if err := s.Write(ctx, int64(len(img.Index.Chunks)), p); !errors.Is(err, transport.ErrNoChunk) {
			t.Errorf("chunk past the end: %v", err)
		}
		if err := s.Finish(ctx); !errors.Is(err, restore.ErrIncomplete) {
			t.Errorf("finish with chunks missing: %v", err)
		}
	})
	t.Run("chunk before metadata", func(t *testing.T) {
		s := &transfer.Sink{Target: target()}
		if err := s.Write(ctx, 0, []byte("x")); !errors.Is(err, transfer.ErrNotStarted) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("metadata changes", func(t *testing.T) {
		s := &transfer.Sink{Target: target()}
		defer s.Close()
		if _, err := s.Meta(ctx, meta); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Meta(ctx, meta[:len(meta)-1]); !errors.Is(err, transfer.ErrWrongImage) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("no repair", func(t *testing.T) {
		s := &transfer.Sink{Target: target()}
		if _, err := s.Repair(ctx, 0); !errors.Is(err, transport.ErrNoRepair) {
			t.Errorf("got %v", err)
		}
	})
}
