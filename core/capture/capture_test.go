package capture_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/diskcast/diskcast/core/capture"
	"github.com/diskcast/diskcast/core/image"
	"github.com/diskcast/diskcast/core/internal/testenv"
)

// newImage starts an image file and a capture writer on it.
func newImage(t *testing.T, size int64, opts capture.Options) (*os.File, *image.Writer, *capture.Writer) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "w.dci"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	iw, err := image.NewWriter(f, &image.Header{ID: image.NewID(), Source: image.Source{Kind: image.SourcePartition, Size: size, SectorSize: 512}})
	if err != nil {
		t.Fatal(err)
	}
	w, err := capture.NewWriter(context.Background(), iw, opts)
	if err != nil {
		t.Fatal(err)
	}
	return f, iw, w
}

func TestWriterZeroDetection(t *testing.T) {
	_, iw, w := newImage(t, 1<<20, capture.Options{Codec: image.CodecZstd, ChunkSize: 64 << 10})
	// Unaligned start, a zero block in the middle, data after it.
	data := append(bytes.Repeat([]byte{7}, 5000), make([]byte, 8192)...)
	data = append(data, bytes.Repeat([]byte{9}, 3000)...)
	if err := w.Write(1000, data); err != nil {
		t.Fatal(err)
	}
	if err := w.Zero(20000, 4096); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(10, []byte{1}); !errors.Is(err, image.ErrOrder) {
		t.Errorf("out-of-order write: %v, want ErrOrder", err)
	}
	st, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	// Data 1000..6000, zeros 6000..14192, data 14192..17192: only the
	// whole aligned block 8192..12288 is a zero extent.
	ix := iw.Index()
	var runs []image.Run
	for _, c := range ix.Chunks {
		runs = append(runs, c.Runs...)
	}
	wantData := int64(0)
	for _, r := range runs {
		wantData += r.Length
	}
	if st.DataBytes != wantData || st.DataBytes+st.ZeroBytes != int64(len(data))+4096 {
		t.Errorf("data %d + zero %d, runs hold %d, input %d", st.DataBytes, st.ZeroBytes, wantData, len(data)+4096)
	}
	if len(ix.Zeros) != 2 || ix.Zeros[0] != (image.Run{Offset: 8192, Length: 4096}) || ix.Zeros[1] != (image.Run{Offset: 20000, Length: 4096}) {
		t.Errorf("zero extents %v", ix.Zeros)
	}
}

func TestIncompressibleStoredRaw(t *testing.T) {
	_, iw, w := newImage(t, 64<<20, capture.Options{Codec: image.CodecZstd, ChunkSize: 256 << 10})
	random := testenv.Random(4<<20, 1)
	text := bytes.Repeat([]byte("compressible text, over and over. "), (4<<20)/34)
	if err := w.Write(0, random); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(8<<20, text); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for i, c := range iw.Index().Chunks {
		// A chunk may straddle both regions; judge only pure ones.
		inRandom := c.Runs[len(c.Runs)-1].End() <= 4<<20
		inText := c.Runs[0].Offset >= 8<<20
		if inRandom && c.Codec != image.CodecNone {
			t.Errorf("chunk %d of random data stored as %v", i, c.Codec)
		}
		if inText && c.Codec != image.CodecZstd {
			t.Errorf("chunk %d of text stored as %v", i, c.Codec)
		}
	}
}

// TestCancelLeavesNothing cancels a capture: neither the output nor its
// partial file may remain.
func TestCancelLeavesNothing(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src.img")
	os.WriteFile(src, testenv.Garbage(32<<20, 2), 0o644)
	out := filepath.Join(t.TempDir(), "out.dci")
	ctx, cancel := context.WithCancel(context.Background())
	_, err := capture.Run(ctx, capture.Request{Source: src, Output: out, Started: func(*capture.Writer, int64) { cancel() }})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled capture: %v", err)
	}
	for _, p := range []string{out, out + ".partial"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s exists after a cancelled capture", p)
		}
	}
}

// TestBadExtents: an analyzer that reports extents out of order or outside
// the partition fails the capture instead of producing a wrong image.
func TestBadExtents(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src.img")
	os.WriteFile(src, testenv.Garbage(1<<20, 3), 0o644)
	for name, ext := range map[string][][2]int64{
		"outside":      {{0, 4096}, {1 << 20, 4096}},
		"out of order": {{8192, 4096}, {0, 4096}},
	} {
		t.Run(name, func(t *testing.T) {
			an := func(ctx context.Context, r io.ReaderAt, off, size int64) (*capture.Analysis, error) {
				return &capture.Analysis{FSType: "x", Handler: "bad", Extents: func(ctx context.Context, emit func(off, length int64) error) error {
					for _, e := range ext {
						if err := emit(e[0], e[1]); err != nil {
							return err
						}
					}
					return nil
				}}, nil
			}
			out := filepath.Join(t.TempDir(), "o.dci")
			if _, err := capture.Run(context.Background(), capture.Request{Source: src, Output: out, Analyze: an}); err == nil {
				t.Fatal("capture accepted bad extents")
			}
		})
	}
}
