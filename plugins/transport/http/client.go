package unicast

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Defaults of a Fetcher's zero fields.
const (
	DefaultAttempts   = 5
	DefaultBackoff    = 250 * time.Millisecond
	DefaultMaxBackoff = 5 * time.Second
	DefaultTimeout    = 60 * time.Second
	// DefaultMaxMeta caps the metadata (an index of a few million chunks).
	DefaultMaxMeta = 1 << 30
	// DefaultMaxChunk caps a chunk when Sizes is not set: the format's
	// largest decoded chunk, which a stored one does not exceed.
	DefaultMaxChunk = 64 << 20
	// DefaultParallel is FetchAll's request count when parallel <= 0.
	DefaultParallel = 4
)

// Fetcher fetches one image's metadata and chunks from an image server.
// Set the fields before the first call; a Fetcher is then safe for
// concurrent use.
type Fetcher struct {
	// BaseURL is the server's address, such as http://198.18.0.1:8080 (a
	// path prefix is kept: http://host/diskcast).
	BaseURL string
	// ImageID is the image's ID in the server's catalog.
	ImageID string
	// Client makes the requests. Nil means a client of this package's own
	// that uses no proxy, dials with a 10 s timeout and keeps enough idle
	// connections for parallel fetches.
	Client *http.Client
	// Header is added to every request, such as an Authorization bearer
	// token for the orchestrator's image endpoints.
	Header http.Header
	// Sizes is the stored size of every chunk, from the image index. It
	// gives FetchAll the chunk count and Chunk the exact size to expect.
	// Without it Chunk accepts any size up to MaxChunk.
	Sizes []int64

	// Attempts is how many times a request is tried before giving up on
	// transient errors (default DefaultAttempts).
	Attempts int
	// Backoff is the wait before the first retry; it doubles each time up
	// to MaxBackoff, with ±25% jitter (defaults DefaultBackoff and
	// DefaultMaxBackoff).
	Backoff, MaxBackoff time.Duration
	// Timeout bounds one attempt, body included (default DefaultTimeout).
	Timeout time.Duration
	// MaxMeta and MaxChunk cap response bodies (defaults DefaultMaxMeta,
	// DefaultMaxChunk).
	MaxMeta, MaxChunk int64
	// Logger receives retries at debug level; nil discards them.
	Logger hclog.Logger

	once     sync.Once
	client   *http.Client
	requests atomic.Int64
	retries  atomic.Int64
	bytes    atomic.Int64
}

// Stats counts a Fetcher's work.
type Stats struct {
	Requests int64 // HTTP requests sent, retries included
	Retries  int64 // requests that were retries
	Bytes    int64 // body bytes received in successful responses
}

// Stats returns the counts so far.
func (f *Fetcher) Stats() Stats {
	return Stats{Requests: f.requests.Load(), Retries: f.retries.Load(), Bytes: f.bytes.Load()}
}

func (f *Fetcher) httpClient() *http.Client {
	f.once.Do(func() {
		f.client = f.Client
		if f.client == nil {
			f.client = &http.Client{Transport: &http.Transport{
				// Image servers sit on the nodes' LAN: never a proxy.
				Proxy:                 nil,
				DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
				MaxIdleConns:          256,
				MaxIdleConnsPerHost:   64,
				IdleConnTimeout:       90 * time.Second,
				ResponseHeaderTimeout: 30 * time.Second,
				// Chunks are compressed already.
				DisableCompression: true,
			}}
		}
	})
	return f.client
}

// Meta fetches the image metadata (header, index and trailer bytes).
func (f *Fetcher) Meta(ctx context.Context) ([]byte, error) {
	limit := f.MaxMeta
	if limit <= 0 {
		limit = DefaultMaxMeta
	}
	return f.get(ctx, "/meta", -1, limit)
}

// Chunk fetches the stored payload of chunk i. With Sizes set, a body of
// any other size is an error wrapping ErrSize.
func (f *Fetcher) Chunk(ctx context.Context, i int) ([]byte, error) {
	want := int64(-1)
	limit := f.MaxChunk
	if limit <= 0 {
		limit = DefaultMaxChunk
	}
	if f.Sizes != nil {
		if i < 0 || i >= len(f.Sizes) {
			return nil, fmt.Errorf("%w: chunk %d: the index has chunks 0 to %d", ErrNotFound, i, len(f.Sizes)-1)
		}
		want, limit = f.Sizes[i], f.Sizes[i]
	} else if i < 0 {
		return nil, fmt.Errorf("%w: chunk %d", ErrNotFound, i)
	}
	return f.get(ctx, "/chunks/"+strconv.Itoa(i), want, limit)
}

// FetchAll fetches every chunk that have reports missing (have may be nil:
// all of them), with up to parallel requests at once, and hands each payload
// to sink. sink is called from several goroutines at once and owns the
// payload. The first error (a fetch that failed after its retries, or
// sink's error, returned as is) stops the rest. It needs Sizes.
func (f *Fetcher) FetchAll(ctx context.Context, have func(i int) bool, sink func(i int, payload []byte) error, parallel int) error {
	if f.Sizes == nil {
		return fmt.Errorf("%w: set Fetcher.Sizes from the image index before FetchAll", ErrNoSizes)
	}
	if parallel <= 0 {
		parallel = DefaultParallel
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range parallel {
		wg.Go(func() {
			for i := range jobs {
				p, err := f.Chunk(ctx, i)
				if err == nil {
					err = sink(i, p)
				}
				if err != nil {
					cancel(err)
					return
				}
			}
		})
	}
feed:
	for i := range f.Sizes {
		if have != nil && have(i) {
			continue
		}
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
}

// url joins the base URL, the image path and suffix.
func (f *Fetcher) url(suffix string) (string, error) {
	u, err := url.Parse(f.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%w: base URL %q: want http://HOST[:PORT][/PREFIX]", ErrBadRequest, f.BaseURL)
	}
	if f.ImageID == "" {
		return "", fmt.Errorf("%w: no image ID", ErrBadRequest)
	}
	return strings.TrimSuffix(u.String(), "/") + "/v1/images/" + url.PathEscape(f.ImageID) + suffix, nil
}

// get fetches suffix with retries. want is the exact size expected (-1:
// any up to limit).
func (f *Fetcher) get(ctx context.Context, suffix string, want, limit int64) ([]byte, error) {
	u, err := f.url(suffix)
	if err != nil {
		return nil, err
	}
	attempts := f.Attempts
	if attempts <= 0 {
		attempts = DefaultAttempts
	}
	backoff, maxBackoff := f.Backoff, f.MaxBackoff
	if backoff <= 0 {
		backoff = DefaultBackoff
	}
	if maxBackoff <= 0 {
		maxBackoff = DefaultMaxBackoff
	}
	var last error
	for n := 1; ; n++ {
		if n > 1 {
			f.retries.Add(1)
		}
		body, err := f.attempt(ctx, u, want, limit)
		if err == nil {
			f.bytes.Add(int64(len(body)))
			return body, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("unicast: GET %s: %w", u, context.Cause(ctx))
		}
		var te *transientError
		if !errors.As(err, &te) {
			return nil, err
		}
		last = te.err
		if n >= attempts {
			return nil, fmt.Errorf("%w: GET %s: gave up after %d attempts: %w", ErrUnavailable, u, n, last)
		}
		wait := backoff << (n - 1)
		if wait > maxBackoff || wait <= 0 {
			wait = maxBackoff
		}
		wait = wait*3/4 + rand.N(wait/2+1)
		if f.Logger != nil {
			f.Logger.Debug("retrying request", "url", u, "attempt", n, "wait", wait, "error", last)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("unicast: GET %s: %w (after %d attempts; last error: %v)", u, context.Cause(ctx), n, last)
		case <-t.C:
		}
	}
}

// transientError marks a failure that a retry may cure.
type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

func transient(err error) error { return &transientError{err} }

// attempt makes one request.
func (f *Fetcher) attempt(ctx context.Context, u string, want, limit int64) ([]byte, error) {
	timeout := f.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	for k, v := range f.Header {
		req.Header[k] = v
	}
	f.requests.Add(1)
	resp, err := f.httpClient().Do(req)
	if err != nil {
		return nil, transient(fmt.Errorf("GET %s: %w", u, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(u, resp)
	}
	if cl := resp.ContentLength; cl >= 0 {
		if want >= 0 && cl != want {
			return nil, fmt.Errorf("%w: GET %s: server sends %d bytes, the index says %d", ErrSize, u, cl, want)
		}
		if cl > limit {
			return nil, fmt.Errorf("%w: GET %s: server sends %d bytes, more than the %d-byte cap", ErrSize, u, cl, limit)
		}
		body := make([]byte, cl)
		if _, err := io.ReadFull(resp.Body, body); err != nil {
			// The connection broke part way (server died, reset, timeout).
			return nil, transient(fmt.Errorf("GET %s: body: %w", u, err))
		}
		return body, nil
	}
	// No Content-Length (chunked encoding): read up to the cap plus one byte
	// to notice an oversized body.
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, transient(fmt.Errorf("GET %s: body: %w", u, err))
	}
	switch n := int64(len(body)); {
	case n > limit && want >= 0:
		return nil, fmt.Errorf("%w: GET %s: server sends more than the %d bytes the index says", ErrSize, u, want)
	case n > limit:
		return nil, fmt.Errorf("%w: GET %s: server sends more than the %d-byte cap", ErrSize, u, limit)
	case want >= 0 && n != want:
		return nil, fmt.Errorf("%w: GET %s: server sent %d bytes, the index says %d", ErrSize, u, n, want)
	}
	return body, nil
}

// statusError turns a non-200 answer into an error that names the URL, the
// status and the server's message; 5xx, 408 and 429 are transient.
func statusError(u string, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	// The server's messages repeat the sentinel's text; the error has it.
	msg := strings.TrimPrefix(strings.TrimSpace(string(b)), ErrNotFound.Error()+": ")
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	if msg != "" {
		msg = ": " + msg
	}
	switch c := resp.StatusCode; {
	case c == http.StatusNotFound:
		return fmt.Errorf("%w: GET %s: %s%s", ErrNotFound, u, resp.Status, msg)
	case c == http.StatusBadRequest:
		return fmt.Errorf("%w: GET %s: %s%s", ErrBadRequest, u, resp.Status, msg)
	case c >= 500, c == http.StatusRequestTimeout, c == http.StatusTooManyRequests:
		return transient(fmt.Errorf("%w: GET %s: %s%s", ErrStatus, u, resp.Status, msg))
	default:
		return fmt.Errorf("%w: GET %s: %s%s", ErrStatus, u, resp.Status, msg)
	}
}
