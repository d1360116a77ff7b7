package filesystem

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diskcast/diskcast/sdk/base"
	"github.com/hashicorp/go-plugin"
)

// clients returns the mock behind both paths: over go-plugin's in-memory
// gRPC connection, and in process.
func clients(t testing.TB, m *Mock, timeout time.Duration) map[string]Client {
	t.Helper()
	meta := base.Info{Name: "mockfs", Version: "1.2.3"}
	gc, _ := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{
		"filesystem": &GRPCPlugin{Impl: m, Meta: meta, Timeout: timeout},
	})
	t.Cleanup(func() { gc.Close() })
	raw, err := gc.Dispense("filesystem")
	if err != nil {
		t.Fatal(err)
	}
	return map[string]Client{"grpc": raw.(Client), "in-process": InProcess(m, meta)}
}

// volume writes data to a file with pad bytes before it and returns the
// volume covering data.
func volume(t *testing.T, data []byte, pad int) Volume {
	t.Helper()
	p := filepath.Join(t.TempDir(), "vol.img")
	if err := os.WriteFile(p, append(make([]byte, pad), data...), 0o644); err != nil {
		t.Fatal(err)
	}
	return Volume{Path: p, Offset: int64(pad), Size: int64(len(data))}
}

func TestInfoAndConfig(t *testing.T) {
	m := &Mock{
		Description: "a mock",
		Schema: &base.Schema{Attributes: []base.Attribute{
			{Name: "skip_swap", Type: base.TypeBool, Default: true, Description: "skip it"},
		}},
	}
	for name, c := range clients(t, m, 0) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			info, err := c.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := base.Info{Kind: base.KindFilesystem, Name: "mockfs", Version: "1.2.3", APIVersion: base.APIVersion, Description: "a mock"}
			if *info != want {
				t.Errorf("info %+v, want %+v", *info, want)
			}
			s, err := c.ConfigSchema(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Attributes) != 1 || s.Attributes[0].Name != "skip_swap" || s.Attributes[0].Default != true || s.Attributes[0].Description != "skip it" {
				t.Errorf("schema %+v", s.Attributes)
			}
			if err := c.Configure(ctx, base.Config{"skip_swap": false}); err != nil {
				t.Fatal(err)
			}
			if got := m.Configured()["skip_swap"]; got != false {
				t.Errorf("configured skip_swap = %v", got)
			}
			err = c.Configure(ctx, base.Config{"colour": "blue"})
			if !errors.Is(err, base.ErrInvalidConfig) || !strings.Contains(err.Error(), "unknown setting colour") {
				t.Errorf("bad setting: %v, want ErrInvalidConfig naming it", err)
			}
			caps, err := c.Capabilities(ctx)
			if err != nil || caps.FixUp {
				t.Errorf("capabilities %+v, %v", caps, err)
			}
		})
	}
}

func TestProbe(t *testing.T) {
	data := []byte("....MAGIC......")
	m := &Mock{ProbeFunc: func(_ context.Context, r io.ReaderAt, size int64) (*ProbeResult, error) {
		buf := make([]byte, size)
		if _, err := r.ReadAt(buf, 0); err != nil {
			return nil, err
		}
		switch {
		case bytes.Contains(buf, []byte("MAGIC")):
			return &ProbeResult{Confidence: 250, FSType: "mockfs", BlockSize: 512, Blocks: 8, UsedBlocks: 3, Label: "L", UUID: "U", Notes: []string{"n1"}}, nil
		case bytes.Contains(buf, []byte("BROKEN")):
			return nil, base.Mark(errors.New("mockfs: superblock 3: bad checksum"), ErrCorrupt)
		}
		return nil, nil
	}}
	for name, c := range clients(t, m, 0) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			r, err := c.Probe(ctx, volume(t, data, 7))
			if err != nil {
				t.Fatal(err)
			}
			if r.Confidence != Certain || r.FSType != "mockfs" || r.BlockSize != 512 || r.Blocks != 8 || r.UsedBlocks != 3 ||
				r.Label != "L" || r.UUID != "U" || len(r.Notes) != 1 {
				t.Errorf("probe %+v (confidence clamped to 100)", r)
			}
			// The offset is honoured: MAGIC lies before the volume.
			v := volume(t, []byte("MAGIC...other..."), 0)
			v.Offset, v.Size = 5, 11
			if r, err := c.Probe(ctx, v); err != nil || r.Confidence != 0 {
				t.Errorf("probe past the magic: %+v, %v", r, err)
			}
			_, err = c.Probe(ctx, volume(t, []byte("xxBROKENxx"), 0))
			if !errors.Is(err, ErrCorrupt) || err.Error() != "mockfs: superblock 3: bad checksum" {
				t.Errorf("corrupt: %v, want ErrCorrupt with the plugin's message", err)
			}
			v = volume(t, data, 0)
			v.Size++
			if _, err := c.Probe(ctx, v); !errors.Is(err, ErrBadVolume) || !strings.Contains(err.Error(), "extend past its end") {
				t.Errorf("volume past the end: %v", err)
			}
			if _, err := c.Probe(ctx, Volume{Path: "/nonexistent/dev", Size: 1}); !errors.Is(err, ErrBadVolume) {
				t.Errorf("missing device: %v", err)
			}
		})
	}
}

func TestUsedExtents(t *testing.T) {
	const n = 3*BatchSize + 17 // several batches and a partial one
	var want [][2]int64
	for i := range int64(n) {
		want = append(want, [2]int64{i * 8192, 4096})
	}
	size := int64(n) * 8192
	vol := volume(t, make([]byte, 0), 0)
	if err := os.Truncate(vol.Path, size); err != nil {
		t.Fatal(err)
	}
	vol.Size = size
	tests := []struct {
		name    string
		extents [][2]int64
		fn      func(ctx context.Context, r io.ReaderAt, size int64, emit func(off, length int64) error) error
		wantErr error
		msg     string
	}{
		{name: "many", extents: want},
		{name: "empty dropped", extents: [][2]int64{{0, 10}, {10, 0}, {20, 5}}},
		{name: "overlap", extents: [][2]int64{{0, 10}, {5, 10}}, wantErr: ErrBadExtent, msg: "5+10 (previous ended at 10)"},
		{name: "past end", extents: [][2]int64{{size - 10, 11}}, wantErr: ErrBadExtent, msg: "outside the"},
		{name: "plugin error", fn: func(ctx context.Context, _ io.ReaderAt, _ int64, emit func(off, length int64) error) error {
			if err := emit(0, 512); err != nil {
				return err
			}
			return base.Mark(errors.New("mockfs: group 12: bitmap beyond end"), ErrCorrupt)
		}, wantErr: ErrCorrupt, msg: "mockfs: group 12: bitmap beyond end"},
		{name: "truncated", fn: func(context.Context, io.ReaderAt, int64, func(off, length int64) error) error {
			return base.Mark(errors.New("mockfs: needs 9 blocks"), ErrTruncated)
		}, wantErr: ErrTruncated, msg: "mockfs: needs 9 blocks"},
	}
	for _, tc := range tests {
		m := &Mock{Extents: tc.extents, ExtentsFunc: tc.fn}
		for name, c := range clients(t, m, 0) {
			t.Run(tc.name+"/"+name, func(t *testing.T) {
				var got [][2]int64
				err := c.UsedExtents(context.Background(), vol, func(off, length int64) error {
					got = append(got, [2]int64{off, length})
					return nil
				})
				if tc.wantErr != nil {
					if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.msg) {
						t.Fatalf("err %v, want %v containing %q", err, tc.wantErr, tc.msg)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				var exp [][2]int64
				for _, e := range tc.extents {
					if e[1] > 0 {
						exp = append(exp, e)
					}
				}
				if fmt.Sprint(got) != fmt.Sprint(exp) {
					t.Errorf("got %d extents, want %d (first %v)", len(got), len(exp), got[:min(3, len(got))])
				}
			})
		}
	}
}

func TestUsedExtentsStopsOnEmitError(t *testing.T) {
	stop := errors.New("disk full")
	var want [][2]int64
	for i := range int64(3 * BatchSize) {
		want = append(want, [2]int64{i * 2, 1})
	}
	m := &Mock{Extents: want}
	vol := volume(t, make([]byte, 6*BatchSize), 0)
	for name, c := range clients(t, m, 0) {
		t.Run(name, func(t *testing.T) {
			calls := 0
			err := c.UsedExtents(context.Background(), vol, func(off, length int64) error {
				calls++
				if calls == 10 {
					return stop
				}
				return nil
			})
			if err != stop || calls != 10 {
				t.Errorf("err %v after %d calls, want emit's error as is after 10", err, calls)
			}
		})
	}
}

func TestTimeoutAndCancel(t *testing.T) {
	hang := &Mock{
		ProbeFunc: func(ctx context.Context, _ io.ReaderAt, _ int64) (*ProbeResult, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		},
		ExtentsFunc: func(ctx context.Context, _ io.ReaderAt, _ int64, emit func(off, length int64) error) error {
			if err := emit(0, 1); err != nil {
				return err
			}
			<-ctx.Done()
			return ctx.Err()
		},
	}
	vol := volume(t, make([]byte, 100), 0)
	c := clients(t, hang, 300*time.Millisecond)["grpc"]
	start := time.Now()
	_, err := c.Probe(context.Background(), vol)
	if !errors.Is(err, base.ErrTimeout) || !strings.Contains(err.Error(), "probe: no answer in 300ms") {
		t.Errorf("probe: %v, want ErrTimeout", err)
	}
	n := 0
	err = c.UsedExtents(context.Background(), vol, func(off, length int64) error { n++; return nil })
	if !errors.Is(err, base.ErrTimeout) || n != 1 {
		t.Errorf("extents: %v after %d extents, want ErrTimeout after 1", err, n)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("timeouts took %v", d)
	}
	// A caller's cancellation is not a timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	c = clients(t, hang, time.Minute)["grpc"]
	if _, err := c.Probe(ctx, vol); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, base.ErrTimeout) {
		t.Errorf("cancelled probe: %v, want the caller's deadline", err)
	}
}

func TestFixUp(t *testing.T) {
	m := &Mock{Caps: Capabilities{FixUp: true}, FixUpFunc: func(_ context.Context, rw ReadWriterAt, size int64) error {
		_, err := rw.WriteAt([]byte("FIXED"), size-5)
		return err
	}}
	for name, c := range clients(t, m, 0) {
		t.Run(name, func(t *testing.T) {
			v := volume(t, []byte("0123456789"), 3)
			if err := c.FixUp(context.Background(), v); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(v.Path)
			if string(got[3:]) != "01234FIXED" {
				t.Errorf("after fix-up: %q", got)
			}
		})
	}
	for name, c := range clients(t, &Mock{}, 0) {
		t.Run("unsupported/"+name, func(t *testing.T) {
			if err := c.FixUp(context.Background(), volume(t, []byte("x"), 0)); !errors.Is(err, base.ErrUnsupported) {
				t.Errorf("fix-up without support: %v", err)
			}
		})
	}
}

func TestErrorsMark(t *testing.T) {
	errBad := errors.New("myfs: bad superblock")
	errShort := errors.New("myfs: short volume")
	e := Errors{Corrupt: errBad, Truncated: errShort}
	for _, tc := range []struct {
		err  error
		want error
	}{
		{fmt.Errorf("group 3: %w", errBad), ErrCorrupt},
		{fmt.Errorf("block 9: %w", errShort), ErrTruncated},
		{fmt.Errorf("feature x: %w", base.ErrUnsupported), base.ErrUnsupported},
	} {
		got := e.Mark(tc.err)
		if !errors.Is(got, tc.want) || got.Error() != tc.err.Error() {
			t.Errorf("Mark(%v) = %v, want it marked %v with the same message", tc.err, got, tc.want)
		}
	}
	other := errors.New("io failure")
	if got := e.Mark(other); got != other {
		t.Errorf("Mark of an unrelated error changed it: %v", got)
	}
	if e.Mark(nil) != nil {
		t.Error("Mark(nil) is not nil")
	}
}
