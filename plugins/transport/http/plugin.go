package unicast

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/diskcast/diskcast/sdk/base"
	"github.com/diskcast/diskcast/sdk/plugin"
	"github.com/diskcast/diskcast/sdk/transport"
)

// Plugin is the unicast HTTP transport behind the diskcast transport
// contract (sdk/transport). A session's parameters:
//
//	url       receive, fetch: the server's base URL, such as
//	          http://198.18.0.1:8080 (diskcast send --http) or
//	          http://server:7780/api (the orchestrator's API)
//	image     the image's ID in the server's catalog (send: default "image")
//	token     receive, fetch: a bearer token sent with every request
//	parallel  receive: concurrent requests (default 4)
//	listen    send: the address to serve on, such as 198.18.0.1:8080
//
// Send serves the image until its context ends; Receive fetches every
// chunk the sink does not hold.
type Plugin struct {
	base.NoConfig
	mu       sync.Mutex
	fetchers map[string]*Fetcher // by url, image and token: Fetch reuses connections
}

// NewPlugin returns the plugin.
func NewPlugin() *Plugin { return &Plugin{} }

var _ transport.Transport = (*Plugin)(nil)

// Info describes the plugin.
func (*Plugin) Info(context.Context) (*base.Info, error) {
	return &base.Info{Description: "unicast HTTP: image metadata and single chunks by index, with retries; repairs what multicast receivers miss"}, nil
}

// Capabilities: single chunks on request.
func (*Plugin) Capabilities(context.Context) (*transport.Capabilities, error) {
	return &transport.Capabilities{Repair: true}, nil
}

func (p *Plugin) fetcher(s transport.Session) (*Fetcher, error) {
	u, id, token := s.Params["url"], s.Params["image"], s.Params["token"]
	if u == "" || id == "" {
		return nil, fmt.Errorf("%w: url=%q image=%q: both are needed", transport.ErrSession, u, id)
	}
	key := u + "\x00" + id + "\x00" + token
	p.mu.Lock()
	defer p.mu.Unlock()
	if f, ok := p.fetchers[key]; ok {
		return f, nil
	}
	f := &Fetcher{BaseURL: u, ImageID: id, Logger: plugin.Logger().Named("http")}
	if token != "" {
		f.Header = http.Header{"Authorization": {"Bearer " + token}}
	}
	if _, err := f.url(""); err != nil {
		return nil, fmt.Errorf("%w: %w", transport.ErrSession, err)
	}
	if p.fetchers == nil {
		p.fetchers = map[string]*Fetcher{}
	}
	p.fetchers[key] = f
	return f, nil
}

// Fetch gets one chunk.
func (p *Plugin) Fetch(ctx context.Context, s transport.Session, index int64) ([]byte, error) {
	f, err := p.fetcher(s)
	if err != nil {
		return nil, err
	}
	return f.Chunk(ctx, int(index))
}

// Receive fetches the metadata, then every chunk the sink lacks.
func (p *Plugin) Receive(ctx context.Context, s transport.Session, sink transport.Sink) (transport.Stats, error) {
	begin := time.Now()
	var st transport.Stats
	f, err := p.fetcher(s)
	if err != nil {
		return st, err
	}
	parallel := DefaultParallel
	if v := s.Params["parallel"]; v != "" {
		if parallel, err = strconv.Atoi(v); err != nil || parallel < 1 || parallel > 64 {
			return st, fmt.Errorf("%w: parallel=%q: want 1..64", transport.ErrSession, v)
		}
	}
	meta, err := f.Meta(ctx)
	if err != nil {
		return st, err
	}
	held, err := sink.Meta(ctx, meta)
	if err != nil {
		return st, err
	}
	st.ChunksTotal, st.ResumedChunks = held.Chunks, held.Count()

	var chunks, bytes atomic.Int64
	stats := func() transport.Stats {
		out := st
		out.Elapsed, out.Chunks, out.Bytes = time.Since(begin), chunks.Load(), bytes.Load()
		fs := f.Stats()
		out.Counters = map[string]int64{"requests": fs.Requests, "retries": fs.Retries}
		return out
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan int64)
	var wg sync.WaitGroup
	for range parallel {
		wg.Go(func() {
			for i := range jobs {
				n, err := fetchInto(ctx, f, sink, i)
				if err != nil {
					cancel(err)
					return
				}
				chunks.Add(1)
				bytes.Add(n)
			}
		})
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
feed:
	for i := range held.Chunks {
		if held.Has(i) {
			continue
		}
		for {
			select {
			case jobs <- i:
				continue feed
			case <-tick.C:
				sink.Progress(ctx, stats())
			case <-ctx.Done():
				break feed
			}
		}
	}
	close(jobs)
	wg.Wait()
	if ctx.Err() != nil {
		return stats(), context.Cause(ctx)
	}
	final := stats()
	sink.Progress(ctx, final)
	return final, nil
}

// fetchInto fetches chunk i and writes it through sink, fetching once
// more if the sink finds it damaged.
func fetchInto(ctx context.Context, f *Fetcher, sink transport.Sink, i int64) (int64, error) {
	for try := 0; ; try++ {
		data, err := f.Chunk(ctx, int(i))
		if err != nil {
			return 0, err
		}
		err = sink.Write(ctx, i, data)
		if errors.Is(err, transport.ErrChecksum) && try == 0 {
			continue
		}
		return int64(len(data)), err
	}
}

// Send serves the image over HTTP on the listen address until ctx ends.
func (p *Plugin) Send(ctx context.Context, s transport.Session, src transport.Source) (transport.Stats, error) {
	begin := time.Now()
	addr, id := s.Params["listen"], s.Params["image"]
	if id == "" {
		id = "image"
	}
	if addr == "" {
		return transport.Stats{}, fmt.Errorf("%w: listen: the address to serve on is needed", transport.ErrSession)
	}
	ln, err := net.Listen("tcp", addr)
	// A server of an earlier send may still be shutting down: its caller
	// can return before it has closed its listener.
	for wait := 0; errors.Is(err, syscall.EADDRINUSE) && wait < 30 && ctx.Err() == nil; wait++ {
		time.Sleep(100 * time.Millisecond)
		ln, err = net.Listen("tcp", addr)
	}
	if err != nil {
		return transport.Stats{}, fmt.Errorf("%w: listen=%q: %v", transport.ErrSession, addr, err)
	}
	served := &servedSource{src: src}
	var images Images
	images.Add(id, served)
	srv := &http.Server{Handler: NewHandler(&images, plugin.Logger().Named("http")), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err = <-errc:
	case <-ctx.Done():
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		srv.Shutdown(shut)
		cancel()
		err = nil
	}
	return transport.Stats{Elapsed: time.Since(begin), Bytes: served.bytes.Load(), Counters: map[string]int64{"chunks_served": served.chunks.Load()}}, err
}

// servedSource is the core's Source as the Handler sees it: chunks come
// from ReadChunk, so there is no image file to serve whole.
type servedSource struct {
	src           transport.Source
	chunks, bytes atomic.Int64
}

func (s *servedSource) Meta() []byte                    { return s.src.Meta() }
func (s *servedSource) NumChunks() int                  { return len(s.src.ChunkSizes()) }
func (s *servedSource) ChunkRange(i int) (int64, int64) { return 0, s.src.ChunkSizes()[i] }
func (s *servedSource) ImageFile() io.ReaderAt          { return nil }
func (s *servedSource) Size() int64                     { return 0 }

func (s *servedSource) ReadChunk(ctx context.Context, i int) ([]byte, error) {
	data, err := s.src.ReadChunk(ctx, int64(i))
	if err == nil {
		s.chunks.Add(1)
		s.bytes.Add(int64(len(data)))
	}
	return data, err
}
