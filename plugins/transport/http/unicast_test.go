package unicast

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fixture is a synthetic image served by a test server.
type fixture struct {
	file []byte
	img  *dciFile
	srv  *httptest.Server
}

// chunkSizes are the stored sizes of the fixture's chunks: tiny, typical
// (around 1 MiB) and larger than the usual chunk size.
var chunkSizes = []int{1, 1 << 20, 917_504, 37, 3 << 20, 65_536, 1_048_575, 200_001, 12, 700_000}

func newFixture(t *testing.T, wrap func(http.Handler) http.Handler) *fixture {
	t.Helper()
	path := filepath.Join(t.TempDir(), "img.dci")
	file := writeDCI(t, path, chunkSizes, 7)
	img, err := openDCI(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { img.Close() })
	var cat Images
	cat.Add("img", img)
	var h http.Handler = NewHandler(&cat, nil)
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &fixture{file: file, img: img, srv: srv}
}

// fetcher returns a Fetcher of the fixture's image with fast retries.
func (fx *fixture) fetcher() *Fetcher {
	return &Fetcher{
		BaseURL:    fx.srv.URL,
		ImageID:    "img",
		Sizes:      fx.img.sizes,
		Attempts:   3,
		Backoff:    5 * time.Millisecond,
		MaxBackoff: 20 * time.Millisecond,
		Timeout:    5 * time.Second,
	}
}

func (fx *fixture) chunk(i int) []byte {
	off, size := fx.img.ChunkRange(i)
	return fx.file[off : off+size]
}

// collect runs FetchAll and returns what sink received.
func collect(t *testing.T, f *Fetcher, have func(int) bool, parallel int) (map[int][]byte, error) {
	t.Helper()
	var mu sync.Mutex
	got := map[int][]byte{}
	err := f.FetchAll(context.Background(), have, func(i int, p []byte) error {
		mu.Lock()
		defer mu.Unlock()
		if _, dup := got[i]; dup {
			return fmt.Errorf("chunk %d delivered twice", i)
		}
		got[i] = p
		return nil
	}, parallel)
	return got, err
}

func TestFetchAll(t *testing.T) {
	fx := newFixture(t, nil)
	tests := []struct {
		name     string
		parallel int
		have     func(int) bool
	}{
		{"serial", 1, nil},
		{"parallel-4", 4, nil},
		{"parallel-16", 16, nil},
		{"default-parallel", 0, nil},
		{"resume-every-third-present", 3, func(i int) bool { return i%3 == 0 }},
		{"all-present", 4, func(int) bool { return true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := fx.fetcher()
			meta, err := f.Meta(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(meta, fx.img.meta) {
				t.Fatalf("meta: got %d bytes, want the %d bytes of header, index and trailer", len(meta), len(fx.img.meta))
			}
			got, err := collect(t, f, tt.have, tt.parallel)
			if err != nil {
				t.Fatal(err)
			}
			want := 0
			for i := range chunkSizes {
				if tt.have != nil && tt.have(i) {
					if _, ok := got[i]; ok {
						t.Errorf("chunk %d fetched although present", i)
					}
					continue
				}
				want++
				if !bytes.Equal(got[i], fx.chunk(i)) {
					t.Errorf("chunk %d: got %d bytes, differ from the file's %d", i, len(got[i]), len(fx.chunk(i)))
				}
				if sha256.Sum256(got[i]) != fx.img.sums[i] {
					t.Errorf("chunk %d: SHA-256 differs from the index", i)
				}
			}
			if len(got) != want {
				t.Errorf("sink got %d chunks, want %d", len(got), want)
			}
			if st := f.Stats(); st.Requests != int64(want+1) || st.Retries != 0 {
				t.Errorf("stats %+v: want %d requests, no retries", st, want+1)
			}
		})
	}
}

func TestChunkWithoutSizes(t *testing.T) {
	fx := newFixture(t, nil)
	f := fx.fetcher()
	f.Sizes = nil
	p, err := f.Chunk(context.Background(), 4)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p, fx.chunk(4)) {
		t.Fatal("chunk 4 differs")
	}
	f.MaxChunk = 1 << 20
	if _, err := f.Chunk(context.Background(), 4); !errors.Is(err, ErrSize) {
		t.Fatalf("3 MiB chunk under a 1 MiB cap: %v, want ErrSize", err)
	}
	if err := f.FetchAll(context.Background(), nil, func(int, []byte) error { return nil }, 2); !errors.Is(err, ErrNoSizes) {
		t.Fatalf("FetchAll without Sizes: %v, want ErrNoSizes", err)
	}
	f.MaxMeta = 100
	if _, err := f.Meta(context.Background()); !errors.Is(err, ErrSize) {
		t.Fatalf("meta over MaxMeta: %v, want ErrSize", err)
	}
}

func TestRangeReads(t *testing.T) {
	fx := newFixture(t, nil)
	size := int64(len(fx.file))
	off3, size3 := fx.img.ChunkRange(3)
	tests := []struct {
		name, path, rng string
		status          int
		want            []byte
	}{
		{"magic", "/v1/images/img.dci", "bytes=0-7", 206, fx.file[:8]},
		{"trailer-suffix", "/v1/images/img.dci", "bytes=-224", 206, fx.file[size-224:]},
		{"open-ended", "/v1/images/img.dci", fmt.Sprintf("bytes=%d-", size-1000), 206, fx.file[size-1000:]},
		{"chunk-3-by-offset", "/v1/images/img.dci", fmt.Sprintf("bytes=%d-%d", off3, off3+size3-1), 206, fx.chunk(3)},
		{"whole-file", "/v1/images/img.dci", "", 200, fx.file},
		{"inside-a-chunk", "/v1/images/img/chunks/1", "bytes=1000-1999", 206, fx.chunk(1)[1000:2000]},
		{"inside-meta", "/v1/images/img/meta", "bytes=0-15", 206, fx.img.meta[:16]},
		{"beyond-the-end", "/v1/images/img.dci", fmt.Sprintf("bytes=%d-", size), 416, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", fx.srv.URL+tt.path, nil)
			if tt.rng != "" {
				req.Header.Set("Range", tt.rng)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status {
				t.Fatalf("status %s, want %d: %s", resp.Status, tt.status, body)
			}
			if tt.want != nil && !bytes.Equal(body, tt.want) {
				t.Fatalf("got %d bytes, want %d, contents differ", len(body), len(tt.want))
			}
		})
	}
	t.Run("head", func(t *testing.T) {
		resp, err := http.Head(fx.srv.URL + "/v1/images/img.dci")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ContentLength != size || resp.Header.Get("Accept-Ranges") != "bytes" {
			t.Fatalf("HEAD: %s, length %d, Accept-Ranges %q; want 200, %d, bytes", resp.Status, resp.ContentLength, resp.Header.Get("Accept-Ranges"), size)
		}
	})
	t.Run("curl", func(t *testing.T) {
		curl, err := exec.LookPath("curl")
		if err != nil {
			t.Skip("skipping: curl is not installed (Debian package curl)")
		}
		out, err := exec.Command(curl, "-sS", "--fail", "-r", "4096-8191", fx.srv.URL+"/v1/images/img.dci").Output()
		if err != nil {
			t.Fatalf("curl -r: %v", err)
		}
		if !bytes.Equal(out, fx.file[4096:8192]) {
			t.Fatalf("curl -r 4096-8191 got %d bytes, differ from the file", len(out))
		}
	})
}

// TestDir serves .dci files from a directory, with ETags that follow the
// file: a replaced image is reopened and If-Range stops matching.
func TestDir(t *testing.T) {
	dir := t.TempDir()
	writeDCI(t, filepath.Join(dir, "golden.dci"), []int{10, 20, 30}, 1)
	var opened []*dciFile
	d := &Dir{Path: dir, Open: func(path string) (ChunkSource, error) {
		f, err := openDCI(path)
		if err == nil {
			opened = append(opened, f)
		}
		return f, err
	}}
	srv := httptest.NewServer(NewHandler(d, nil))
	defer srv.Close()
	f := &Fetcher{BaseURL: srv.URL, ImageID: "golden", Attempts: 1}
	p, err := f.Chunk(context.Background(), 2)
	if err != nil || len(p) != 30 {
		t.Fatalf("chunk 2: %d bytes, %v", len(p), err)
	}
	if _, err := f.Chunk(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if len(opened) != 1 {
		t.Fatalf("opened the file %d times for two requests, want once", len(opened))
	}
	resp, err := http.Head(srv.URL + "/v1/images/golden.dci")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	etag := resp.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag for a Dir image")
	}
	// Replace the file (new inode): the next request opens the new one.
	tmp := filepath.Join(dir, "golden.dci.new")
	writeDCI(t, tmp, []int{10, 20, 40}, 2)
	if err := os.Rename(tmp, filepath.Join(dir, "golden.dci")); err != nil {
		t.Fatal(err)
	}
	if p, err = f.Chunk(context.Background(), 2); err != nil || len(p) != 40 {
		t.Fatalf("chunk 2 after replacing the file: %d bytes, %v; want 40", len(p), err)
	}
	req, _ := http.NewRequest("GET", srv.URL+"/v1/images/golden.dci", nil)
	req.Header.Set("Range", "bytes=0-9")
	req.Header.Set("If-Range", etag)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("If-Range with the old ETag: %s, want 200 (the whole new file)", resp.Status)
	}
	for _, tt := range []struct {
		id  string
		err error
	}{{"../golden", ErrBadRequest}, {".hidden", ErrNotFound}, {"missing", ErrNotFound}, {"golden.dci", ErrNotFound}} {
		f := &Fetcher{BaseURL: srv.URL, ImageID: tt.id, Attempts: 1}
		if _, err := f.Meta(context.Background()); !errors.Is(err, tt.err) {
			t.Errorf("image %q: %v, want %v", tt.id, err, tt.err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	for i, o := range opened {
		if !o.closed {
			t.Errorf("image opened %d was not closed by Dir.Close", i)
		}
	}
}

func TestNotFound(t *testing.T) {
	fx := newFixture(t, nil)
	tests := []struct {
		name, path string
		status     int
	}{
		{"unknown-image-meta", "/v1/images/nope/meta", 404},
		{"unknown-image-chunk", "/v1/images/nope/chunks/0", 404},
		{"unknown-image-file", "/v1/images/nope.dci", 404},
		{"chunk-past-the-end", fmt.Sprintf("/v1/images/img/chunks/%d", len(chunkSizes)), 404},
		{"chunk-huge", "/v1/images/img/chunks/99999999999", 400},
		{"chunk-negative", "/v1/images/img/chunks/-1", 400},
		{"chunk-not-a-number", "/v1/images/img/chunks/abc", 400},
		{"chunk-leading-zero", "/v1/images/img/chunks/01", 400},
		{"not-dci", "/v1/images/img.img", 404},
		{"other-path", "/v2/images/img/meta", 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Get(fx.srv.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("%s: %s, want %d: %s", tt.path, resp.Status, tt.status, body)
			}
		})
	}
	t.Run("client", func(t *testing.T) {
		for _, tt := range []struct {
			id    string
			chunk int
		}{{"nope", 0}, {"img", len(chunkSizes)}} {
			f := fx.fetcher()
			f.ImageID, f.Sizes = tt.id, nil
			_, err := f.Chunk(context.Background(), tt.chunk)
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("image %s chunk %d: %v, want ErrNotFound", tt.id, tt.chunk, err)
			}
			url := fmt.Sprintf("%s/v1/images/%s/chunks/%d", fx.srv.URL, tt.id, tt.chunk)
			if msg := err.Error(); !strings.Contains(msg, url) || !strings.Contains(msg, "404") {
				t.Errorf("error %q does not name the URL %s and the status", msg, url)
			}
			if st := f.Stats(); st.Requests != 1 {
				t.Errorf("a 404 was retried: %d requests", st.Requests)
			}
		}
		f := fx.fetcher()
		if _, err := f.Chunk(context.Background(), len(chunkSizes)); !errors.Is(err, ErrNotFound) || f.Stats().Requests != 0 {
			t.Errorf("chunk past the index: %v after %d requests, want ErrNotFound without asking", err, f.Stats().Requests)
		}
	})
}

// chunkPath reports whether r asks for chunk i.
func chunkPath(r *http.Request, i int) bool {
	return r.URL.Path == fmt.Sprintf("/v1/images/img/chunks/%d", i)
}

// TestServerDies covers a server that breaks connections part way through
// a chunk: the client retries, and recovers when the server comes back.
func TestServerDies(t *testing.T) {
	t.Run("drops-twice", func(t *testing.T) {
		var broken atomic.Int32
		fx := newFixture(t, func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if chunkPath(r, 4) && broken.Add(1) <= 2 {
					w.Header().Set("Content-Length", fmt.Sprint(3<<20))
					w.WriteHeader(200)
					w.Write(make([]byte, 1<<20))
					panic(http.ErrAbortHandler) // cut the connection
				}
				next.ServeHTTP(w, r)
			})
		})
		f := fx.fetcher()
		got, err := collect(t, f, nil, 4)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[4], fx.chunk(4)) {
			t.Fatal("chunk 4 differs after retries")
		}
		if st := f.Stats(); st.Retries != 2 {
			t.Fatalf("stats %+v: want 2 retries", st)
		}
	})
	t.Run("dies-for-good", func(t *testing.T) {
		stalled := make(chan struct{})
		var once sync.Once
		fx := newFixture(t, func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if chunkPath(r, 4) {
					w.Header().Set("Content-Length", fmt.Sprint(3<<20))
					w.WriteHeader(200)
					w.Write(make([]byte, 1<<20))
					w.(http.Flusher).Flush()
					once.Do(func() { close(stalled) })
					<-r.Context().Done()
					return
				}
				next.ServeHTTP(w, r)
			})
		})
		go func() {
			<-stalled
			fx.srv.CloseClientConnections()
			fx.srv.Close()
		}()
		f := fx.fetcher()
		start := time.Now()
		_, err := collect(t, f, nil, 2)
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("server gone: %v, want ErrUnavailable", err)
		}
		if !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("error %q does not say the connection was refused", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("gave up after %v; the retries should take well under a second", d)
		}
	})
	t.Run("restarts", func(t *testing.T) {
		// The server dies mid-chunk, and a new one listens on the same
		// address 200 ms later.
		path := filepath.Join(t.TempDir(), "img.dci")
		file := writeDCI(t, path, chunkSizes, 7)
		img, err := openDCI(path)
		if err != nil {
			t.Fatal(err)
		}
		defer img.Close()
		var cat Images
		cat.Add("img", img)
		h := NewHandler(&cat, nil)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		first := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if chunkPath(r, 6) {
				w.Header().Set("Content-Length", fmt.Sprint(chunkSizes[6]))
				w.WriteHeader(200)
				w.Write(make([]byte, 1000))
				w.(http.Flusher).Flush()
				go func() {
					ln.Close()
					time.Sleep(200 * time.Millisecond)
					ln2, err := net.Listen("tcp", addr)
					if err != nil {
						t.Errorf("restart on %s: %v", addr, err)
						return
					}
					second := &http.Server{Handler: h}
					t.Cleanup(func() { second.Close() })
					go second.Serve(ln2)
				}()
				panic(http.ErrAbortHandler)
			}
			h.ServeHTTP(w, r)
		})}
		go first.Serve(ln)
		defer first.Close()
		f := &Fetcher{BaseURL: "http://" + addr, ImageID: "img", Sizes: img.sizes, Attempts: 8, Backoff: 50 * time.Millisecond}
		var mu sync.Mutex
		got := map[int][]byte{}
		err = f.FetchAll(context.Background(), nil, func(i int, p []byte) error {
			mu.Lock()
			got[i] = p
			mu.Unlock()
			return nil
		}, 1)
		if err != nil {
			t.Fatal(err)
		}
		for i := range chunkSizes {
			off, size := img.ChunkRange(i)
			if !bytes.Equal(got[i], file[off:off+size]) {
				t.Fatalf("chunk %d differs", i)
			}
		}
		if st := f.Stats(); st.Retries < 1 {
			t.Fatalf("stats %+v: the restart needed no retry?", st)
		}
	})
}

// TestBadBodies serves chunk 1 wrongly in several ways.
func TestBadBodies(t *testing.T) {
	want := chunkSizes[1]
	tests := []struct {
		name     string
		serve    func(w http.ResponseWriter)
		err      error
		requests int64
	}{
		{"truncated-declared", func(w http.ResponseWriter) {
			w.Header().Set("Content-Length", fmt.Sprint(want-10))
			w.Write(make([]byte, want-10))
		}, ErrSize, 1},
		{"oversized-declared", func(w http.ResponseWriter) {
			w.Header().Set("Content-Length", fmt.Sprint(want+10))
			w.Write(make([]byte, want+10))
		}, ErrSize, 1},
		{"oversized-chunked", func(w http.ResponseWriter) {
			w.WriteHeader(200)
			w.(http.Flusher).Flush() // no Content-Length: chunked encoding
			w.Write(make([]byte, want+10))
		}, ErrSize, 1},
		{"truncated-chunked", func(w http.ResponseWriter) {
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			w.Write(make([]byte, want-10))
		}, ErrSize, 1},
		{"cut-short", func(w http.ResponseWriter) {
			w.Header().Set("Content-Length", fmt.Sprint(want))
			w.Write(make([]byte, want/2))
			panic(http.ErrAbortHandler)
		}, ErrUnavailable, 3},
		{"chunked-cut-short", func(w http.ResponseWriter) {
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			w.Write(make([]byte, want/2))
			panic(http.ErrAbortHandler)
		}, ErrUnavailable, 3},
		{"status-503", func(w http.ResponseWriter) {
			http.Error(w, "busy", http.StatusServiceUnavailable)
		}, ErrUnavailable, 3},
		{"status-403", func(w http.ResponseWriter) {
			http.Error(w, "go away", http.StatusForbidden)
		}, ErrStatus, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if chunkPath(r, 1) {
						tt.serve(w)
						return
					}
					next.ServeHTTP(w, r)
				})
			})
			f := fx.fetcher()
			_, err := f.Chunk(context.Background(), 1)
			if !errors.Is(err, tt.err) {
				t.Fatalf("got %v, want %v", err, tt.err)
			}
			if !strings.Contains(err.Error(), "/v1/images/img/chunks/1") {
				t.Errorf("error %q does not name the URL", err)
			}
			if st := f.Stats(); st.Requests != tt.requests {
				t.Errorf("%d requests, want %d", st.Requests, tt.requests)
			}
			// The other chunks are unaffected.
			if p, err := f.Chunk(context.Background(), 2); err != nil || !bytes.Equal(p, fx.chunk(2)) {
				t.Errorf("chunk 2 afterwards: %v", err)
			}
		})
	}
}

func TestTransientThenOK(t *testing.T) {
	var calls atomic.Int32
	fx := newFixture(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if chunkPath(r, 0) && calls.Add(1) <= 2 {
				http.Error(w, "try later", http.StatusServiceUnavailable)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	f := fx.fetcher()
	p, err := f.Chunk(context.Background(), 0)
	if err != nil || !bytes.Equal(p, fx.chunk(0)) {
		t.Fatalf("chunk 0 after two 503s: %v", err)
	}
	if st := f.Stats(); st.Requests != 3 || st.Retries != 2 {
		t.Fatalf("stats %+v: want 3 requests, 2 retries", st)
	}
}

func TestTimeoutsAndCancel(t *testing.T) {
	var calls atomic.Int32
	fx := newFixture(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if chunkPath(r, 2) && calls.Add(1) == 1 {
				<-r.Context().Done() // stall until the client gives up
				return
			}
			if chunkPath(r, 5) {
				<-r.Context().Done()
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	t.Run("attempt-timeout-retried", func(t *testing.T) {
		f := fx.fetcher()
		f.Timeout = 200 * time.Millisecond
		p, err := f.Chunk(context.Background(), 2)
		if err != nil || !bytes.Equal(p, fx.chunk(2)) {
			t.Fatalf("chunk 2 after one stalled attempt: %v", err)
		}
		if st := f.Stats(); st.Retries != 1 {
			t.Fatalf("stats %+v: want 1 retry", st)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		f := fx.fetcher()
		ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := f.Chunk(ctx, 5)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want the caller's deadline", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("returned %v after the caller's deadline", d)
		}
	})
}

func TestSinkError(t *testing.T) {
	fx := newFixture(t, nil)
	stop := errors.New("disk full")
	for _, parallel := range []int{1, 4} {
		t.Run(fmt.Sprint("parallel-", parallel), func(t *testing.T) {
			f := fx.fetcher()
			var calls atomic.Int32
			err := f.FetchAll(context.Background(), nil, func(i int, _ []byte) error {
				calls.Add(1)
				if i == 0 {
					return stop
				}
				return nil
			}, parallel)
			if err != stop {
				t.Fatalf("FetchAll returned %v, want sink's error as is", err)
			}
			// One worker stops at once: nothing after chunk 0 is handed on.
			if n := calls.Load(); parallel == 1 && n != 1 {
				t.Fatalf("sink called %d times: FetchAll went on after the error", n)
			}
		})
	}
}

func TestBadBaseURL(t *testing.T) {
	for _, u := range []string{"", "ftp://x", "198.18.0.1:8080", "http://"} {
		f := &Fetcher{BaseURL: u, ImageID: "img"}
		if _, err := f.Meta(context.Background()); !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "base URL") {
			t.Errorf("base URL %q: %v, want ErrBadRequest naming the base URL", u, err)
		}
	}
}
