package multicast

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// testSource is a synthetic image: chunks of varied sizes (a byte, exact
// multiples of the block size, up to 1.5 MiB) of pseudo-random bytes, and
// a metadata blob that lists every chunk's size and SHA-256, as an image
// index does.
type testSource struct {
	data    []byte
	offs    []int
	sizes   []int
	meta    []byte
	readErr func(i int) error
}

func newTestSource(seed uint64, total int) *testSource {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	s := &testSource{data: make([]byte, total)}
	cr := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 7})
	cr.Read(s.data)
	special := []int{1, 1416, 2 * 1416, 1417, 1 << 20, 1415}
	for off, i := 0, 0; off < total; i++ {
		var n int
		if i < len(special) {
			n = special[i]
		} else {
			n = 256<<10 + rng.IntN(1280<<10)
		}
		n = min(n, total-off)
		s.offs = append(s.offs, off)
		s.sizes = append(s.sizes, n)
		off += n
	}
	m := []byte("TESTMETA")
	m = binary.LittleEndian.AppendUint32(m, uint32(len(s.sizes)))
	for i := range s.sizes {
		m = binary.LittleEndian.AppendUint64(m, uint64(s.offs[i]))
		m = binary.LittleEndian.AppendUint32(m, uint32(s.sizes[i]))
		sum := sha256.Sum256(s.chunk(i))
		m = append(m, sum[:]...)
	}
	s.meta = m
	return s
}

func (s *testSource) chunk(i int) []byte { return s.data[s.offs[i] : s.offs[i]+s.sizes[i]] }
func (s *testSource) Meta() []byte       { return s.meta }
func (s *testSource) NumChunks() int     { return len(s.sizes) }
func (s *testSource) ChunkSize(i int) int {
	return s.sizes[i]
}
func (s *testSource) ReadChunk(i int, p []byte) error {
	if s.readErr != nil {
		if err := s.readErr(i); err != nil {
			return err
		}
	}
	copy(p, s.chunk(i))
	return nil
}

// memSink is a target in memory: it parses the metadata the way the core
// does, verifies every chunk's SHA-256 and writes it at its offset.
type memSink struct {
	mu     sync.Mutex
	keep   bool // store the bytes (false: verify only)
	img    []byte
	offs   []int
	sizes  []int
	sums   [][32]byte
	held   []bool
	writes []int
	start  []bool // held before Receive (resume)
	// onChunk, if set, runs after each chunk is written.
	onChunk func(held int)
	nheld   int
}

func (m *memSink) Meta(blob []byte) (int, func(int) bool, error) {
	if len(blob) < 12 || string(blob[:8]) != "TESTMETA" {
		return 0, nil, errors.New("test metadata: bad magic")
	}
	n := int(binary.LittleEndian.Uint32(blob[8:]))
	if len(blob) != 12+n*44 {
		return 0, nil, fmt.Errorf("test metadata: %d bytes for %d chunks", len(blob), n)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.offs == nil {
		m.offs, m.sizes, m.sums = make([]int, n), make([]int, n), make([][32]byte, n)
		m.held, m.writes = make([]bool, n), make([]int, n)
		total := 0
		for i := range n {
			e := blob[12+i*44:]
			m.offs[i] = int(binary.LittleEndian.Uint64(e))
			m.sizes[i] = int(binary.LittleEndian.Uint32(e[8:]))
			copy(m.sums[i][:], e[12:44])
			total = max(total, m.offs[i]+m.sizes[i])
		}
		if m.keep {
			m.img = make([]byte, total)
		}
	}
	m.start = append([]bool(nil), m.held...)
	held := append([]bool(nil), m.held...)
	return n, func(i int) bool { return held[i] }, nil
}

func (m *memSink) Chunk(i int, p []byte) error {
	if len(p) != m.sizes[i] || sha256.Sum256(p) != m.sums[i] {
		return fmt.Errorf("chunk %d: %w", i, ErrChecksum)
	}
	m.mu.Lock()
	if m.keep {
		copy(m.img[m.offs[i]:], p)
	}
	m.writes[i]++
	if !m.held[i] {
		m.held[i] = true
		m.nheld++
	}
	held, fn := m.nheld, m.onChunk
	m.mu.Unlock()
	if fn != nil {
		fn(held)
	}
	return nil
}

func (m *memSink) heldCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.nheld
}

// check compares the target with the source.
func (m *memSink) check(t *testing.T, name string, src *testSource) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, h := range m.held {
		if !h {
			t.Errorf("%s: chunk %d never written", name, i)
			return
		}
	}
	if m.keep && !bytes.Equal(m.img, src.data) {
		for i := range src.sizes {
			if !bytes.Equal(m.img[m.offs[i]:m.offs[i]+m.sizes[i]], src.chunk(i)) {
				t.Errorf("%s: chunk %d differs from the source", name, i)
				return
			}
		}
		t.Errorf("%s: target differs from the source", name)
	}
}

var (
	srcOnce  sync.Once
	src64    *testSource
	testSize = 64 << 20
)

func source64() *testSource {
	srcOnce.Do(func() { src64 = newTestSource(1, testSize) })
	return src64
}

// testGroup picks a group in 239.0.0.0/8 and a port at random, so tests
// (and other packages' tests running at the same time) do not meet.
func testGroup() *net.UDPAddr {
	return &net.UDPAddr{
		IP:   net.IPv4(239, 77, byte(rand.IntN(250)+1), byte(rand.IntN(250)+1)),
		Port: 20000 + 2*rand.IntN(20000),
	}
}

var testKey = bytes.Repeat([]byte{0x5a}, 32)

// testLogger logs at the level in $MC_LOG (info by default) when the
// tests run with -v.
func testLogger(t testing.TB) hclog.Logger {
	if !testing.Verbose() {
		return hclog.NewNullLogger()
	}
	return hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: logLevel(), Output: testWriter{t}})
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// Loopback only: TTL 0, the multicast interface and joins on 127.0.0.1.
func senderCfg(t testing.TB, g *net.UDPAddr, session uint64) SenderConfig {
	return SenderConfig{Group: g, LocalAddr: net.IPv4(127, 0, 0, 1), HostOnly: true,
		SessionID: session, Key: testKey, Logger: testLogger(t)}
}

func receiverCfg(t testing.TB, g *net.UDPAddr, session uint64) ReceiverConfig {
	return ReceiverConfig{Group: g, LocalAddr: net.IPv4(127, 0, 0, 1), HostOnly: true,
		SessionID: session, Key: testKey, Logger: testLogger(t), SenderTimeout: 10 * time.Second}
}

type sendResult struct {
	stats SenderStats
	err   error
}

func goSend(ctx context.Context, cfg SenderConfig, src ChunkSource) <-chan sendResult {
	ch := make(chan sendResult, 1)
	go func() {
		st, err := Send(ctx, cfg, src)
		ch <- sendResult{st, err}
	}()
	return ch
}

type recvResult struct {
	stats ReceiverStats
	err   error
	took  time.Duration
}

func goReceive(ctx context.Context, cfg ReceiverConfig, sink ChunkSink) <-chan recvResult {
	ch := make(chan recvResult, 1)
	go func() {
		t0 := time.Now()
		st, err := Receive(ctx, cfg, sink)
		ch <- recvResult{st, err, time.Since(t0)}
	}()
	return ch
}

// dropRate returns a drop hook losing a share p of datagrams.
func dropRate(p float64) func([]byte) bool {
	return func([]byte) bool { return rand.Float64() < p }
}

// waitHeld waits until sink holds at least n chunks.
func waitHeld(t *testing.T, ctx context.Context, m *memSink, n int) {
	t.Helper()
	for m.heldCount() < n {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %d chunks: %v (held %d)", n, ctx.Err(), m.heldCount())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func sha256Of(b []byte) [32]byte { return sha256.Sum256(b) }

func logLevel() hclog.Level {
	if l := hclog.LevelFromString(os.Getenv("MC_LOG")); l != hclog.NoLevel {
		return l
	}
	return hclog.Info
}
