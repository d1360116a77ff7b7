// Package api is the orchestrator's REST API: JSON under /api/v1/,
// server-sent events, Prometheus metrics at /metrics and /healthz; and
// the Go client that the CLI (and the node agent) use. docs/API.md
// documents every endpoint.
//
// Reads are open; anything that changes state needs the admin bearer
// token. Agent endpoints take a member's own agent token, which its
// assignment hands out; an agent token is refused on admin endpoints.
package api

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/diskcast/diskcast/core/orchestrator"
	"github.com/hashicorp/go-hclog"
)

// Errors of the client; server errors arrive as *Error.
var (
	ErrNoToken = errors.New("api: no API token")
	ErrMeta    = errors.New("api: malformed image metadata")
)

// maxBody bounds request bodies.
const maxBody = 1 << 20

// Server serves the API for one Orchestrator.
type Server struct {
	o     *orchestrator.Orchestrator
	token string
	log   hclog.Logger
	mux   *http.ServeMux
	start time.Time

	mu       sync.Mutex
	requests map[reqKey]int64
}

type reqKey struct {
	route string
	code  int
}

// NewServer returns the API handler. token is the admin bearer token
// (see LoadToken); it must not be empty.
func NewServer(o *orchestrator.Orchestrator, token string, log hclog.Logger) *Server {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	s := &Server{o: o, token: token, log: log, mux: http.NewServeMux(), start: time.Now(), requests: map[reqKey]int64{}}
	m := s.mux
	m.HandleFunc("GET /healthz", s.health)
	m.HandleFunc("GET /metrics", s.metrics)
	m.HandleFunc("GET /api/v1/images", s.listImages)
	m.HandleFunc("GET /api/v1/images/{name}", s.getImage)
	m.HandleFunc("GET /api/v1/images/{name}/meta", s.imageMeta)
	m.HandleFunc("GET /api/v1/images/{name}/chunks/{n}", s.imageChunk)
	m.HandleFunc("GET /api/v1/nodes", s.listNodes)
	m.HandleFunc("POST /api/v1/nodes", s.admin(s.createNode))
	m.HandleFunc("GET /api/v1/nodes/{name}", s.getNode)
	m.HandleFunc("DELETE /api/v1/nodes/{name}", s.admin(s.deleteNode))
	m.HandleFunc("GET /api/v1/sessions", s.listSessions)
	m.HandleFunc("POST /api/v1/sessions", s.admin(s.createSession))
	m.HandleFunc("GET /api/v1/sessions/{name}", s.getSession)
	m.HandleFunc("DELETE /api/v1/sessions/{name}", s.admin(s.deleteSession))
	m.HandleFunc("POST /api/v1/sessions/{name}/start", s.admin(s.startSession))
	m.HandleFunc("POST /api/v1/sessions/{name}/cancel", s.admin(s.cancelSession))
	m.HandleFunc("GET /api/v1/events", s.streamEvents)
	m.HandleFunc("GET /api/v1/agent/assignment", s.assignment)
	m.HandleFunc("GET /boot/{file}", s.bootFile)
	m.HandleFunc("POST /api/v1/agent/progress", s.agent(s.progress))
	m.HandleFunc("POST /api/v1/agent/result", s.agent(s.result))
	return s
}

// ServeHTTP routes a request, counts it for /metrics, and turns the
// router's own 404 and 405 answers into JSON errors.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, route := s.mux.Handler(r)
	sw := &statusWriter{ResponseWriter: w}
	if route == "" {
		// Unknown path or method: let the mux decide which (it sets Allow
		// on 405), then answer in JSON.
		rec := &discardWriter{h: http.Header{}}
		s.mux.ServeHTTP(rec, r)
		if allow := rec.h.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		msg := fmt.Sprintf("no endpoint %s %s; see docs/API.md", r.Method, r.URL.Path)
		if rec.code == http.StatusMethodNotAllowed {
			msg = fmt.Sprintf("%s does not accept %s (allowed: %s)", r.URL.Path, r.Method, rec.h.Get("Allow"))
		}
		writeError(sw, rec.code, msg)
		route = "unmatched"
	} else {
		s.mux.ServeHTTP(sw, r)
	}
	if sw.code == 0 {
		sw.code = http.StatusOK
	}
	s.mu.Lock()
	s.requests[reqKey{route, sw.code}]++
	s.mu.Unlock()
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush lets event streams through.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(code int)        { d.code = code }

// ErrorBody is the JSON body of every error answer.
type ErrorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="diskcast"`)
	}
	writeJSON(w, code, ErrorBody{Error: msg})
}

// fail answers an orchestrator error with the status its sentinel means.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, orchestrator.ErrInvalid):
		code = http.StatusBadRequest
	case errors.Is(err, orchestrator.ErrUnauthorized):
		code = http.StatusUnauthorized
	case errors.Is(err, orchestrator.ErrForbidden):
		code = http.StatusForbidden
	case errors.Is(err, orchestrator.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, orchestrator.ErrConflict), errors.Is(err, orchestrator.ErrImage),
		errors.Is(err, orchestrator.ErrPool), errors.Is(err, orchestrator.ErrTransport):
		code = http.StatusConflict
	case errors.Is(err, orchestrator.ErrClosed):
		code = http.StatusServiceUnavailable
	}
	if code == http.StatusInternalServerError {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "error", err)
	}
	writeError(w, code, stripPrefix(err.Error()))
}

// stripPrefix drops the package prefix of a sentinel ("orchestrator:
// conflict: ") that the status code already says.
func stripPrefix(msg string) string {
	for _, p := range []string{"orchestrator: invalid request: ", "orchestrator: unauthorized: ", "orchestrator: forbidden: ",
		"orchestrator: not found: ", "orchestrator: conflict: "} {
		if rest, ok := strings.CutPrefix(msg, p); ok {
			return rest
		}
	}
	return msg
}

// bearer returns the request's bearer token, or "".
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

func (s *Server) isAdmin(tok string) bool {
	return tok != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.token)) == 1
}

// admin wraps a handler that changes state: it needs the admin token.
func (s *Server) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok := bearer(r)
		switch {
		case tok == "":
			writeError(w, http.StatusUnauthorized, "this endpoint changes state and needs the API token: send Authorization: Bearer TOKEN (the token is in the server's auth block or its state dir)")
		case s.isAdmin(tok):
			h(w, r)
		case s.o.IsAgentToken(tok):
			writeError(w, http.StatusForbidden, "an agent token cannot be used here: agent tokens only reach /api/v1/agent/ and the session's image")
		default:
			writeError(w, http.StatusUnauthorized, "the API token is wrong")
		}
	}
}

// agent wraps an agent endpoint: it needs an agent token.
func (s *Server) agent(h func(w http.ResponseWriter, r *http.Request, tok string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok := bearer(r)
		switch {
		case tok == "":
			writeError(w, http.StatusUnauthorized, "agent endpoints need the node's agent token (from its assignment): send Authorization: Bearer TOKEN")
		case s.isAdmin(tok):
			writeError(w, http.StatusForbidden, "the admin token cannot report for a node; agents use their own token")
		default:
			h(w, r, tok)
		}
	}
}

// decode reads a JSON body into v, strictly: unknown fields and trailing
// data are errors that name the problem. The Content-Type is not checked:
// minimal HTTP clients in the imaging environment may not set it.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		msg := err.Error()
		switch {
		case errors.As(err, &mbe):
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", maxBody))
			return false
		case errors.Is(err, io.EOF):
			msg = "request body is empty; send a JSON object"
		case errors.Is(err, io.ErrUnexpectedEOF):
			msg = "request body ends in the middle of the JSON object"
		case errors.As(err, &se):
			msg = fmt.Sprintf("request body is not valid JSON: %v (at byte %d)", se, se.Offset)
		case errors.As(err, &te):
			msg = fmt.Sprintf("field %q: got JSON %s, want %s", te.Field, te.Value, te.Type)
		case strings.HasPrefix(msg, "json: unknown field"):
			msg = "unknown field " + strings.TrimPrefix(msg, "json: unknown field ") + "; see docs/API.md for the fields"
		default:
			msg = "request body: " + msg
		}
		writeError(w, http.StatusBadRequest, msg)
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "request body has data after the JSON object")
		return false
	}
	return true
}

// Health is the /healthz answer.
type Health struct {
	Status   string  `json:"status"` // "ok" or "unhealthy"
	Error    string  `json:"error,omitempty"`
	Version  string  `json:"version,omitempty"`
	Uptime   float64 `json:"uptime_seconds"`
	Running  int     `json:"sessions_running"`
	Sessions int     `json:"sessions"`
	Nodes    int     `json:"nodes"`
}

// Version is reported by /healthz; the CLI sets it.
var Version = ""

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	h := Health{Status: "ok", Version: Version, Uptime: time.Since(s.start).Seconds()}
	if err := s.o.Healthy(); err != nil {
		h.Status, h.Error = "unhealthy", err.Error()
		writeJSON(w, http.StatusServiceUnavailable, h)
		return
	}
	for _, ss := range s.o.Sessions() {
		h.Sessions++
		if ss.State == orchestrator.SessionRunning {
			h.Running++
		}
	}
	h.Nodes = len(s.o.Nodes())
	writeJSON(w, http.StatusOK, h)
}

func (s *Server) listImages(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.o.Images())
}

func (s *Server) getImage(w http.ResponseWriter, r *http.Request) {
	info, err := s.o.Image(r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

func (s *Server) imageMeta(w http.ResponseWriter, r *http.Request) {
	tok := bearer(r)
	if tok == "" {
		writeError(w, http.StatusUnauthorized, "image data needs a token: the agent token of a running session that uses this image, or the API token")
		return
	}
	meta, err := s.o.ImageMeta(tok, s.isAdmin(tok), r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(meta))
}

func (s *Server) imageChunk(w http.ResponseWriter, r *http.Request) {
	ns := r.PathValue("n")
	n, err := strconv.ParseUint(ns, 10, 31)
	if err != nil || (len(ns) > 1 && ns[0] == '0') {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("chunk %q: not a chunk number (0, 1, 2, ...)", ns))
		return
	}
	tok := bearer(r)
	if tok == "" {
		writeError(w, http.StatusUnauthorized, "image data needs a token: the agent token of a running session that uses this image, or the API token")
		return
	}
	chunk, err := s.o.ImageChunk(tok, s.isAdmin(tok), r.PathValue("name"), int(n))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	cw := &countWriter{ResponseWriter: w}
	defer func() { chunk.Finish(cw.n) }()
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(cw, r, "", time.Time{}, bytes.NewReader(chunk.Payload))
}

// countWriter counts body bytes, for the transport statistics.
type countWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

func (s *Server) listNodes(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.o.Nodes())
}

func (s *Server) getNode(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if v := r.URL.Query().Get("history"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("history=%q: want a number of entries (0 for all)", v))
			return
		}
		limit = n
	}
	d, err := s.o.Node(r.PathValue("name"), limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) createNode(w http.ResponseWriter, r *http.Request) {
	var req orchestrator.NodeRequest
	if !decode(w, r, &req) {
		return
	}
	n, err := s.o.CreateNode(&req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, n)
}

func (s *Server) deleteNode(w http.ResponseWriter, r *http.Request) {
	if err := s.o.DeleteNode(r.PathValue("name")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) listSessions(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.o.Sessions())
}

func (s *Server) getSession(w http.ResponseWriter, r *http.Request) {
	st, err := s.o.Session(r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) createSession(w http.ResponseWriter, r *http.Request) {
	var req orchestrator.SessionRequest
	if !decode(w, r, &req) {
		return
	}
	st, err := s.o.CreateSession(&req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, st)
}

func (s *Server) deleteSession(w http.ResponseWriter, r *http.Request) {
	if err := s.o.DeleteSession(r.PathValue("name")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) startSession(w http.ResponseWriter, r *http.Request) {
	st, err := s.o.StartSession(r.Context(), r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// CancelRequest is the optional body of a cancel.
type CancelRequest struct {
	Reason string `json:"reason"`
}

func (s *Server) cancelSession(w http.ResponseWriter, r *http.Request) {
	var req CancelRequest
	if r.ContentLength != 0 && r.Body != http.NoBody {
		if !decode(w, r, &req) {
			return
		}
	}
	st, err := s.o.CancelSession(r.Context(), r.PathValue("name"), req.Reason)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// bootFile serves the imaging environment's kernel and initrd to nodes
// that network-boot (no token: firmware has none).
func (s *Server) bootFile(w http.ResponseWriter, r *http.Request) {
	path, err := s.o.BootFile(r.PathValue("file"))
	if err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	f, err := os.Open(path)
	if err != nil {
		s.log.Error("boot file", "path", path, "error", err)
		writeError(w, http.StatusNotFound, fmt.Sprintf("%s: %v; build the imaging environment with make bootenv and set server.boot_dir", r.PathValue("file"), err))
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", st.ModTime(), f)
}

func (s *Server) assignment(w http.ResponseWriter, r *http.Request) {
	mac := r.URL.Query().Get("mac")
	if mac == "" {
		writeError(w, http.StatusBadRequest, "mac is required: GET /api/v1/agent/assignment?mac=52:54:00:12:34:56")
		return
	}
	addr := r.RemoteAddr
	if host, _, err := net.SplitHostPort(addr); err == nil {
		addr = host
	}
	a, err := s.o.Assign(r.Context(), mac, addr)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

func (s *Server) progress(w http.ResponseWriter, r *http.Request, tok string) {
	var p orchestrator.Progress
	if !decode(w, r, &p) {
		return
	}
	ack, err := s.o.ReportProgress(r.Context(), tok, &p)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ack)
}

func (s *Server) result(w http.ResponseWriter, r *http.Request, tok string) {
	var res orchestrator.Result
	if !decode(w, r, &res) {
		return
	}
	ack, err := s.o.ReportResult(r.Context(), tok, &res)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ack)
}

// heartbeat is how often an idle event stream sends a comment, so that
// proxies and clients see the connection alive.
var heartbeat = 15 * time.Second

func (s *Server) streamEvents(w http.ResponseWriter, r *http.Request) {
	session := r.URL.Query().Get("session")
	if session != "" {
		if _, err := s.o.Session(session); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming is not supported by this connection")
		return
	}
	ch, stop := s.o.Subscribe(session)
	defer stop()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, ": diskcast events%s\n\n", map[bool]string{true: " of session " + session, false: ""}[session != ""])
	flusher.Flush()
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
			if _, err := io.WriteString(w, ": keepalive\n\n"); err != nil {
				return
			}
			flusher.Flush()
		case e, ok := <-ch:
			if !ok {
				return
			}
			data, _ := json.Marshal(e)
			if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.Seq, e.Type, data); err != nil {
				return
			}
			flusher.Flush()
		}
	}
}
