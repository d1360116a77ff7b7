package sdktest

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/diskcast/diskcast/sdk/base"
	"github.com/diskcast/diskcast/sdk/transport"
	"github.com/hashicorp/go-plugin"
)

// TransportSuite describes a transport plugin under test. The harness
// runs a send and a receive at once over go-plugin's gRPC connection, so
// the parameters must make the two meet on this host (loopback, TTL 0).
type TransportSuite struct {
	Name string // registration name
	Impl transport.Transport
	// SendParams and ReceiveParams are the session parameters of the two
	// sides; FetchParams those of Fetch, for a transport with the Repair
	// capability (it runs while the send does).
	SendParams, ReceiveParams, FetchParams map[string]string
	// Chunks and ChunkSize size the synthetic image (defaults 24 and
	// 300 KiB; the last chunk is shorter).
	Chunks    int
	ChunkSize int
}

// RunTransport runs the conformance tests of a transport plugin: the base
// contract; a receive that resumes (some chunks held), survives a chunk
// the sink rejects once as damaged, and delivers every other chunk
// exactly as sent; Fetch when the plugin can repair; and a sink error
// that ends the receive with that error.
func RunTransport(t *testing.T, s TransportSuite) {
	t.Helper()
	if s.Chunks <= 0 {
		s.Chunks = 24
	}
	if s.ChunkSize <= 0 {
		s.ChunkSize = 300 << 10
	}
	c := dialTransport(t, s)
	t.Run("base", func(t *testing.T) { checkBase(t, c, base.KindTransport, s.Name) })
	caps, err := c.Capabilities(context.Background())
	if err != nil {
		t.Fatalf("Capabilities: %v", err)
	}
	img := newSyntheticImage(s.Chunks, s.ChunkSize)

	t.Run("send and receive", func(t *testing.T) {
		sink := &checkingSink{img: img, held: []int64{0, 3}, reject: 5, failAt: -1}
		res := runPair(t, c, s, img, sink)
		if res.recvErr != nil {
			t.Fatalf("Receive: %v", res.recvErr)
		}
		sink.mu.Lock()
		defer sink.mu.Unlock()
		for i := range s.Chunks {
			held := i == 0 || i == 3
			if got := sink.writes[int64(i)]; held && got != 0 || !held && got != 1 {
				t.Errorf("chunk %d written %d times (held before: %v); want once, or never when held", i, got, held)
			}
		}
		if !sink.rejected {
			t.Error("the chunk the sink rejected as damaged was never offered again")
		}
		if sink.metaCalls != 1 {
			t.Errorf("Meta called %d times, want once", sink.metaCalls)
		}
		if res.recvStats.Chunks == 0 || res.recvStats.ResumedChunks != 2 {
			t.Errorf("receive stats %+v: want chunks delivered and 2 resumed", res.recvStats)
		}
	})
	if caps.Repair {
		t.Run("fetch", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			sent := make(chan error, 1)
			go func() {
				_, err := c.Send(ctx, transport.Session{ID: "sdktest", Params: s.SendParams}, img)
				sent <- err
			}()
			var data []byte
			var err error
			for try := 0; try < 50; try++ { // until the sender serves
				if data, err = c.Fetch(ctx, transport.Session{ID: "sdktest", Params: s.FetchParams}, 7); err == nil {
					break
				}
				select {
				case err := <-sent:
					t.Fatalf("Send ended before the fetch: %v", err)
				case <-time.After(100 * time.Millisecond):
				}
			}
			if err != nil || !bytes.Equal(data, img.chunks[7]) {
				t.Errorf("Fetch chunk 7: %d bytes, %v", len(data), err)
			}
			cancel()
			<-sent
		})
	}
	t.Run("sink error ends the receive", func(t *testing.T) {
		sink := &checkingSink{img: img, reject: -1, failAt: 9}
		res := runPair(t, c, s, img, sink)
		if res.recvErr == nil || !errStrings(res.recvErr, "sdktest: target write failed at chunk 9") {
			t.Errorf("Receive returned %v, want the sink's error", res.recvErr)
		}
	})
}

func errStrings(err error, want string) bool {
	return err != nil && bytes.Contains([]byte(err.Error()), []byte(want))
}

func dialTransport(t *testing.T, s TransportSuite) transport.Client {
	gc, _ := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{
		string(base.KindTransport): &transport.GRPCPlugin{Impl: s.Impl, Meta: base.Info{Name: s.Name, Version: "test"}},
	})
	t.Cleanup(func() { gc.Close() })
	raw, err := gc.Dispense(string(base.KindTransport))
	if err != nil {
		t.Fatalf("sdktest: dispense: %v", err)
	}
	return raw.(transport.Client)
}

type pairResult struct {
	recvStats transport.Stats
	recvErr   error
}

// runPair runs a receive and a send of img at once; the send is stopped
// once the receive has ended.
func runPair(t *testing.T, c transport.Client, s TransportSuite, img *syntheticImage, sink transport.Sink) pairResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sendCtx, stopSend := context.WithCancel(ctx)
	defer stopSend()
	sent := make(chan error, 1)
	go func() {
		_, err := c.Send(sendCtx, transport.Session{ID: "sdktest", Params: s.SendParams}, img)
		sent <- err
	}()
	var res pairResult
	for try := 0; ; try++ {
		res.recvStats, res.recvErr = c.Receive(ctx, transport.Session{ID: "sdktest", Params: s.ReceiveParams}, sink)
		// A unicast receiver may start before the sender listens.
		if res.recvErr == nil || try == 20 || errStrings(res.recvErr, "sdktest:") || ctx.Err() != nil {
			break
		}
		if cs, ok := sink.(*checkingSink); ok && cs.started() {
			break
		}
		select {
		case err := <-sent:
			t.Fatalf("Send ended before the receive: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	stopSend()
	select {
	case <-sent:
	case <-time.After(30 * time.Second):
		t.Error("Send did not return within 30 s of its context ending")
	}
	return res
}

// syntheticImage is a Source of random chunks.
type syntheticImage struct {
	meta   []byte
	chunks [][]byte
	sizes  []int64
}

func newSyntheticImage(n, size int) *syntheticImage {
	rng := rand.New(rand.NewPCG(uint64(n), uint64(size)))
	img := &syntheticImage{meta: []byte(fmt.Sprintf("sdktest image: %d chunks", n))}
	for i := range n {
		sz := size
		if i == n-1 {
			sz = size/3 + 1
		}
		b := make([]byte, sz)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		img.chunks = append(img.chunks, b)
		img.sizes = append(img.sizes, int64(sz))
	}
	return img
}

func (s *syntheticImage) Meta() []byte        { return s.meta }
func (s *syntheticImage) ChunkSizes() []int64 { return s.sizes }
func (s *syntheticImage) ReadChunk(_ context.Context, i int64) ([]byte, error) {
	if i < 0 || i >= int64(len(s.chunks)) {
		return nil, fmt.Errorf("%w: %d", transport.ErrNoChunk, i)
	}
	return s.chunks[i], nil
}
func (s *syntheticImage) Progress(context.Context, transport.Stats) {}

// checkingSink checks what a transport delivers against the image.
type checkingSink struct {
	img    *syntheticImage
	held   []int64
	reject int64 // rejected as damaged the first time (-1: none)
	failAt int64 // fails the receive (-1: never)

	mu        sync.Mutex
	metaCalls int
	writes    map[int64]int
	rejected  bool
}

func (k *checkingSink) started() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.metaCalls > 0
}

func (k *checkingSink) Meta(_ context.Context, meta []byte) (*transport.Held, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.metaCalls++
	if !bytes.Equal(meta, k.img.meta) {
		return nil, fmt.Errorf("sdktest: metadata %q differs from what was sent", meta)
	}
	h := transport.NewHeld(int64(len(k.img.chunks)))
	for _, i := range k.held {
		h.Set(i)
	}
	return h, nil
}

func (k *checkingSink) Write(_ context.Context, i int64, data []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.writes == nil {
		k.writes = map[int64]int{}
	}
	if i < 0 || i >= int64(len(k.img.chunks)) {
		return fmt.Errorf("sdktest: chunk %d is outside the image", i)
	}
	if !bytes.Equal(data, k.img.chunks[i]) {
		return fmt.Errorf("%w: sdktest: chunk %d differs from what was sent", transport.ErrChecksum, i)
	}
	if i == k.failAt {
		return fmt.Errorf("sdktest: target write failed at chunk %d", i)
	}
	if i == k.reject && !k.rejected {
		k.rejected = true
		return fmt.Errorf("%w: sdktest rejects chunk %d once", transport.ErrChecksum, i)
	}
	k.writes[i]++
	return nil
}

func (k *checkingSink) Repair(context.Context, int64) ([]byte, error) {
	return nil, transport.ErrNoRepair
}

func (k *checkingSink) Progress(context.Context, transport.Stats) {}
