package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/diskcast/diskcast/core/image"
	"github.com/diskcast/diskcast/core/orchestrator"
)

// Error is an error answer from the server.
type Error struct {
	Status  int    // HTTP status code
	Message string // the server's message
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status)
}

// StatusOf returns the HTTP status of an *Error in err's chain, or 0.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// Client talks to a diskcast daemon.
type Client struct {
	// BaseURL is the daemon's address, such as http://127.0.0.1:7400.
	BaseURL string
	// Token is sent as a bearer token: the admin token for the CLI, a
	// node's agent token for an agent (see WithToken).
	Token string
	// HTTP makes the requests; nil uses a client without proxy and with
	// a 30 s response-header timeout.
	HTTP *http.Client
}

var defaultHTTP = &http.Client{Transport: &http.Transport{
	Proxy:                 nil, // the daemon is local or on the nodes' LAN
	ResponseHeaderTimeout: 30 * time.Second,
	MaxIdleConnsPerHost:   16,
	DisableCompression:    true,
}}

// WithToken returns a copy of c that sends tok.
func (c *Client) WithToken(tok string) *Client {
	cc := *c
	cc.Token = tok
	return &cc
}

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return defaultHTTP
}

func (c *Client) url(path string) (string, error) {
	u, err := url.Parse(c.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("api: server address %q: want http://HOST:PORT", c.BaseURL)
	}
	return strings.TrimSuffix(c.BaseURL, "/") + path, nil
}

// do sends a request with an optional JSON body and decodes a JSON answer
// into out (when not nil).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	resp, err := c.send(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("api: %s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// send makes a request and returns a response with a 2xx status; any
// other status becomes an *Error with the server's message.
func (c *Client) send(ctx context.Context, method, path string, in any) (*http.Response, error) {
	u, err := c.url(path)
	if err != nil {
		return nil, err
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, fmt.Errorf("api: %s %s: %w", method, u, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var eb ErrorBody
	if json.Unmarshal(b, &eb) != nil || eb.Error == "" {
		eb.Error = strings.TrimSpace(string(b))
		if eb.Error == "" {
			eb.Error = resp.Status
		}
	}
	return nil, &Error{Status: resp.StatusCode, Message: eb.Error}
}

// Health returns /healthz.
func (c *Client) Health(ctx context.Context) (*Health, error) {
	var h Health
	return &h, c.do(ctx, "GET", "/healthz", nil, &h)
}

// Metrics returns the /metrics text.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	resp, err := c.send(ctx, "GET", "/metrics", nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// Images lists the configured images.
func (c *Client) Images(ctx context.Context) ([]orchestrator.ImageInfo, error) {
	var out []orchestrator.ImageInfo
	return out, c.do(ctx, "GET", "/api/v1/images", nil, &out)
}

// Nodes lists the nodes.
func (c *Client) Nodes(ctx context.Context) ([]orchestrator.NodeStatus, error) {
	var out []orchestrator.NodeStatus
	return out, c.do(ctx, "GET", "/api/v1/nodes", nil, &out)
}

// Node returns a node with its newest history entries (0: all).
func (c *Client) Node(ctx context.Context, name string, history int) (*orchestrator.NodeDetail, error) {
	var out orchestrator.NodeDetail
	return &out, c.do(ctx, "GET", "/api/v1/nodes/"+url.PathEscape(name)+"?history="+strconv.Itoa(history), nil, &out)
}

// CreateNode enrolls a node.
func (c *Client) CreateNode(ctx context.Context, req *orchestrator.NodeRequest) (*orchestrator.NodeStatus, error) {
	var out orchestrator.NodeStatus
	return &out, c.do(ctx, "POST", "/api/v1/nodes", req, &out)
}

// DeleteNode removes a node created over the API or discovered.
func (c *Client) DeleteNode(ctx context.Context, name string) error {
	return c.do(ctx, "DELETE", "/api/v1/nodes/"+url.PathEscape(name), nil, nil)
}

// Sessions lists the sessions.
func (c *Client) Sessions(ctx context.Context) ([]*orchestrator.SessionStatus, error) {
	var out []*orchestrator.SessionStatus
	return out, c.do(ctx, "GET", "/api/v1/sessions", nil, &out)
}

// Session returns a session's status.
func (c *Client) Session(ctx context.Context, name string) (*orchestrator.SessionStatus, error) {
	var out orchestrator.SessionStatus
	return &out, c.do(ctx, "GET", "/api/v1/sessions/"+url.PathEscape(name), nil, &out)
}

// CreateSession defines a session.
func (c *Client) CreateSession(ctx context.Context, req *orchestrator.SessionRequest) (*orchestrator.SessionStatus, error) {
	var out orchestrator.SessionStatus
	return &out, c.do(ctx, "POST", "/api/v1/sessions", req, &out)
}

// DeleteSession removes a session created over the API.
func (c *Client) DeleteSession(ctx context.Context, name string) error {
	return c.do(ctx, "DELETE", "/api/v1/sessions/"+url.PathEscape(name), nil, nil)
}

// StartSession starts a new run of a session.
func (c *Client) StartSession(ctx context.Context, name string) (*orchestrator.SessionStatus, error) {
	var out orchestrator.SessionStatus
	return &out, c.do(ctx, "POST", "/api/v1/sessions/"+url.PathEscape(name)+"/start", nil, &out)
}

// CancelSession cancels a running session.
func (c *Client) CancelSession(ctx context.Context, name, reason string) (*orchestrator.SessionStatus, error) {
	var out orchestrator.SessionStatus
	return &out, c.do(ctx, "POST", "/api/v1/sessions/"+url.PathEscape(name)+"/cancel", &CancelRequest{Reason: reason}, &out)
}

// Assignment asks for the work of the node with this MAC.
func (c *Client) Assignment(ctx context.Context, mac string) (*orchestrator.Assignment, error) {
	var out orchestrator.Assignment
	return &out, c.do(ctx, "GET", "/api/v1/agent/assignment?mac="+url.QueryEscape(mac), nil, &out)
}

// Progress reports an agent's progress (c.Token is the agent token).
func (c *Client) Progress(ctx context.Context, p *orchestrator.Progress) (*orchestrator.Ack, error) {
	var out orchestrator.Ack
	return &out, c.do(ctx, "POST", "/api/v1/agent/progress", p, &out)
}

// Result reports an agent's final outcome (c.Token is the agent token).
func (c *Client) Result(ctx context.Context, r *orchestrator.Result) (*orchestrator.Ack, error) {
	var out orchestrator.Ack
	return &out, c.do(ctx, "POST", "/api/v1/agent/result", r, &out)
}

// ImageMeta fetches an image's metadata and checks it (hashes of header
// and index against the trailer).
func (c *Client) ImageMeta(ctx context.Context, imageName string) (*image.Reader, error) {
	b, err := c.get(ctx, "/api/v1/images/"+url.PathEscape(imageName)+"/meta", 1<<30)
	if err != nil {
		return nil, err
	}
	return SplitMeta(b)
}

// ImageChunk fetches the stored payload of chunk i; the caller verifies it
// (restore.Target.WriteChunk does).
func (c *Client) ImageChunk(ctx context.Context, imageName string, i int) ([]byte, error) {
	return c.get(ctx, "/api/v1/images/"+url.PathEscape(imageName)+"/chunks/"+strconv.Itoa(i), image.MaxRawChunk+1<<20)
}

func (c *Client) get(ctx context.Context, path string, limit int64) ([]byte, error) {
	resp, err := c.send(ctx, "GET", path, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("api: GET %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("api: GET %s: answer larger than %d bytes", path, limit)
	}
	if resp.ContentLength >= 0 && int64(len(b)) != resp.ContentLength {
		return nil, fmt.Errorf("api: GET %s: %d of %d bytes", path, len(b), resp.ContentLength)
	}
	return b, nil
}

// SplitMeta parses an image's concatenated header, index and trailer (as
// /meta serves them); see image.ParseMeta.
func SplitMeta(b []byte) (*image.Reader, error) {
	r, err := image.ParseMeta(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMeta, err)
	}
	return r, nil
}

// Events streams events (of one session, or all when session is "") to
// fn until ctx ends, fn returns an error, or the server closes the
// stream. It returns fn's error, or nil when ctx ended.
func (c *Client) Events(ctx context.Context, session string, fn func(orchestrator.Event) error) error {
	path := "/api/v1/events"
	if session != "" {
		path += "?session=" + url.QueryEscape(session)
	}
	u, err := c.url(path)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	// No timeout on the body: the stream is long-lived.
	hc := &http.Client{Transport: c.http().Transport}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("api: events: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var eb ErrorBody
		json.Unmarshal(b, &eb)
		return &Error{Status: resp.StatusCode, Message: eb.Error}
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var data []byte
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if len(data) > 0 {
				var e orchestrator.Event
				if err := json.Unmarshal(data, &e); err != nil {
					return fmt.Errorf("api: events: bad event %q: %w", data, err)
				}
				if err := fn(e); err != nil {
					return err
				}
			}
			data = data[:0]
		case strings.HasPrefix(line, "data:"):
			data = append(data, strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " ")...)
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("api: events: %w", err)
	}
	return nil
}
