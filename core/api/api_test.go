package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diskcast/diskcast/core/api"
	"github.com/diskcast/diskcast/core/internal/testenv"
	"github.com/diskcast/diskcast/core/orchestrator"
)

// call makes a raw request and returns status, headers and body.
func call(t *testing.T, method, url, token, body string) (int, http.Header, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// errorMessage checks that an error answer is a JSON object with a
// non-empty error and returns it.
func errorMessage(t *testing.T, h http.Header, body string) string {
	t.Helper()
	if ct := h.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type %q, want application/json", ct)
	}
	var eb api.ErrorBody
	if err := json.Unmarshal([]byte(body), &eb); err != nil || eb.Error == "" {
		t.Errorf("error body %q is not {\"error\": \"...\"}", body)
	}
	return eb.Error
}

const twoSessions = fourNodes + `
session "lab-a" {
  image = "golden"
  nodes = ["pc001", "pc002"]
  transport "http" {}
}
session "lab-b" {
  image = "silver"
  nodes = ["pc003", "pc004"]
  transport "http" {}
}
`

func TestAuth(t *testing.T) {
	h := newHarness(t, true, twoSessions)
	ctx := context.Background()
	if _, err := h.admin.StartSession(ctx, "lab-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.admin.StartSession(ctx, "lab-b"); err != nil {
		t.Fatal(err)
	}
	a1, err := h.anon.Assignment(ctx, mac(1))
	if err != nil {
		t.Fatal(err)
	}
	a3, err := h.anon.Assignment(ctx, mac(3))
	if err != nil {
		t.Fatal(err)
	}
	agentA, agentB := a1.Token, a3.Token

	admin := []struct{ method, path, body string }{
		{"POST", "/api/v1/sessions", `{"name":"x","image":"golden","nodes":["pc001"]}`},
		{"DELETE", "/api/v1/sessions/lab-a", ""},
		{"POST", "/api/v1/sessions/lab-a/start", ""},
		{"POST", "/api/v1/sessions/lab-a/cancel", ""},
		{"POST", "/api/v1/nodes", `{"name":"pc099","mac":"52:54:00:00:00:99"}`},
		{"DELETE", "/api/v1/nodes/pc001", ""},
	}
	for _, ep := range admin {
		for _, tc := range []struct {
			who   string
			token string
			want  int
			msg   string
		}{
			{"no token", "", 401, "needs the API token"},
			{"wrong token", "not-the-token-at-all-0000", 401, "the API token is wrong"},
			{"agent token", agentA, 403, "an agent token cannot be used here"},
		} {
			t.Run(ep.method+" "+ep.path+" "+tc.who, func(t *testing.T) {
				code, hdr, body := call(t, ep.method, h.url+ep.path, tc.token, ep.body)
				if code != tc.want || !strings.Contains(errorMessage(t, hdr, body), tc.msg) {
					t.Errorf("got %d %s, want %d with %q", code, body, tc.want, tc.msg)
				}
				if code == 401 && hdr.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
			})
		}
	}
	// Nothing changed: both sessions still run, nothing was created.
	for _, name := range []string{"lab-a", "lab-b"} {
		if st, err := h.anon.Session(ctx, name); err != nil || st.State != "running" {
			t.Errorf("%s after refused requests: %v %v", name, st.State, err)
		}
	}
	if _, err := h.anon.Session(ctx, "x"); api.StatusOf(err) != 404 {
		t.Errorf("session x: %v, want 404", err)
	}

	agentCases := []struct {
		name, method, path, token, body string
		want                            int
		msg                             string
	}{
		{"progress without token", "POST", "/api/v1/agent/progress", "", `{"state":"receiving"}`, 401, "agent token"},
		{"progress with admin token", "POST", "/api/v1/agent/progress", adminToken, `{"state":"receiving"}`, 403, "admin token cannot report for a node"},
		{"progress with unknown token", "POST", "/api/v1/agent/progress", "0123456789abcdef0123456789abcdef", `{"state":"receiving"}`, 401, "not valid"},
		{"progress for another session", "POST", "/api/v1/agent/progress", agentA, `{"session":"lab-b","state":"receiving"}`, 403, `token is for session "lab-a", not "lab-b"`},
		{"progress for another node", "POST", "/api/v1/agent/progress", agentA, `{"node":"pc002","state":"receiving"}`, 403, `token is for node "pc001", not "pc002"`},
		{"result for another session", "POST", "/api/v1/agent/result", agentB, `{"session":"lab-a","ok":true}`, 403, `token is for session "lab-b"`},
		{"image of another session", "GET", "/api/v1/images/golden/meta", agentB, "", 403, `grants image "silver", not "golden"`},
		{"chunk of another session", "GET", "/api/v1/images/silver/chunks/0", agentA, "", 403, `grants image "golden", not "silver"`},
		{"meta without token", "GET", "/api/v1/images/golden/meta", "", "", 401, "image data needs a token"},
		{"chunk without token", "GET", "/api/v1/images/golden/chunks/0", "", "", 401, "image data needs a token"},
	}
	for _, tc := range agentCases {
		t.Run(tc.name, func(t *testing.T) {
			code, hdr, body := call(t, tc.method, h.url+tc.path, tc.token, tc.body)
			if code != tc.want || !strings.Contains(errorMessage(t, hdr, body), tc.msg) {
				t.Errorf("got %d %s, want %d with %q", code, body, tc.want, tc.msg)
			}
		})
	}
	// What is allowed: the node's own reports and image, and the admin
	// token on images (by name or ID).
	imgs, err := h.anon.Images(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ok := range []struct{ method, path, token, body string }{
		{"GET", "/api/v1/images/" + imgs[0].ID + "/meta", adminToken, ""},
		{"GET", "/api/v1/images/" + imgs[0].ID + "/chunks/0", agentA, ""},
		{"POST", "/api/v1/agent/progress", agentA, `{"session":"lab-a","node":"pc001","state":"receiving","bytes":1,"total":10}`},
		{"GET", "/api/v1/images/golden/meta", agentA, ""},
		{"GET", "/api/v1/images/silver/chunks/0", agentB, ""},
		{"GET", "/api/v1/images/silver/meta", adminToken, ""},
		{"GET", "/api/v1/nodes", "", ""},
		{"GET", "/api/v1/sessions/lab-a", "", ""},
	} {
		if code, _, body := call(t, ok.method, h.url+ok.path, ok.token, ok.body); code != 200 {
			t.Errorf("%s %s: %d %s", ok.method, ok.path, code, body)
		}
	}
	// Read answers never carry secrets.
	_, _, body := call(t, "GET", h.url+"/api/v1/sessions/lab-a", "", "")
	if strings.Contains(body, agentA) || strings.Contains(body, a1.Transport.Key) || strings.Contains(body, "secret") {
		t.Errorf("session status leaks a token or key: %s", body)
	}
}

func TestBadInput(t *testing.T) {
	h := newHarness(t, false, fourNodes+`
session "lab" {
  image = "golden"
  nodes = ["pc001"]
  transport "http" {}
}`)
	ctx := context.Background()
	if _, err := h.admin.StartSession(ctx, "lab"); err != nil {
		t.Fatal(err)
	}
	as, err := h.anon.Assignment(ctx, mac(1))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, method, path, token, body string
		want                            int
		msg                             string
	}{
		{"truncated JSON", "POST", "/api/v1/sessions", adminToken, `{"name":`, 400, "ends in the middle of the JSON"},
		{"not JSON", "POST", "/api/v1/sessions", adminToken, `name=x`, 400, "not valid JSON"},
		{"empty body", "POST", "/api/v1/sessions", adminToken, ``, 400, "request body is empty"},
		{"unknown field", "POST", "/api/v1/sessions", adminToken, `{"name":"x","image":"golden","nodes":["pc001"],"colour":"red"}`, 400, `unknown field "colour"`},
		{"wrong type", "POST", "/api/v1/sessions", adminToken, `{"name":"x","image":"golden","nodes":"pc001"}`, 400, `field "nodes": got JSON string`},
		{"trailing data", "POST", "/api/v1/sessions", adminToken, `{"name":"x","image":"golden","nodes":["pc001"]} {}`, 400, "data after the JSON object"},
		{"unknown image", "POST", "/api/v1/sessions", adminToken, `{"name":"x","image":"nope","nodes":["pc001"]}`, 400, `image "nope" is not configured`},
		{"bad timeout", "POST", "/api/v1/sessions", adminToken, `{"name":"x","image":"golden","nodes":["pc001"],"timeouts":{"boot":"soon"}}`, 400, `timeouts.boot "soon"`},
		{"start unknown session", "POST", "/api/v1/sessions/nope/start", adminToken, "", 404, `no session "nope"`},
		{"start running session", "POST", "/api/v1/sessions/lab/start", adminToken, "", 409, "already running"},
		{"cancel with bad body", "POST", "/api/v1/sessions/lab/cancel", adminToken, `{"why":"x"}`, 400, `unknown field "why"`},
		{"bad MAC", "POST", "/api/v1/nodes", adminToken, `{"name":"n1","mac":"zz:zz"}`, 400, `mac "zz:zz" is not an Ethernet MAC address`},
		{"bad node name", "POST", "/api/v1/nodes", adminToken, `{"name":"../etc","mac":"52:54:00:00:00:99"}`, 400, `name "../etc"`},
		{"assignment without mac", "GET", "/api/v1/agent/assignment", "", "", 400, "mac is required"},
		{"assignment with bad mac", "GET", "/api/v1/agent/assignment?mac=hello", "", "", 400, `mac "hello"`},
		{"unknown node", "GET", "/api/v1/nodes/nope", "", "", 404, `no node "nope"`},
		{"bad history", "GET", "/api/v1/nodes/pc001?history=-1", "", "", 400, "history=\"-1\""},
		{"unknown image info", "GET", "/api/v1/images/nope", "", "", 404, `image "nope" is not configured`},
		{"chunk not a number", "GET", "/api/v1/images/golden/chunks/x1", adminToken, "", 400, `chunk "x1": not a chunk number`},
		{"chunk out of range", "GET", "/api/v1/images/golden/chunks/99999", adminToken, "", 404, "chunk 99999: image \"golden\" has"},
		{"events of unknown session", "GET", "/api/v1/events?session=nope", "", "", 404, `no session "nope"`},
		{"bad state", "POST", "/api/v1/agent/progress", as.Token, `{"state":"dancing"}`, 400, `state "dancing": want "booting", "receiving" or "verifying"`},
		{"final state as progress", "POST", "/api/v1/agent/progress", as.Token, `{"state":"done"}`, 400, "send the final outcome to /api/v1/agent/result"},
		{"bytes over total", "POST", "/api/v1/agent/progress", as.Token, `{"state":"receiving","bytes":11,"total":10}`, 400, "bytes 11 is more than total 10"},
		{"negative bytes", "POST", "/api/v1/agent/progress", as.Token, `{"state":"receiving","bytes":-1}`, 400, "cannot be negative"},
		{"failure without reason", "POST", "/api/v1/agent/result", as.Token, `{"ok":false}`, 400, "ok is false but error is empty"},
		{"huge body", "POST", "/api/v1/agent/progress", as.Token, `{"message":"` + strings.Repeat("x", 2<<20) + `"}`, 413, "larger than"},
		{"wrong method", "PUT", "/api/v1/sessions", adminToken, "", 405, "does not accept PUT"},
		{"unknown path", "GET", "/api/v2/sessions", "", "", 404, "no endpoint GET /api/v2/sessions"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, hdr, body := call(t, tc.method, h.url+tc.path, tc.token, tc.body)
			if code != tc.want || !strings.Contains(errorMessage(t, hdr, body), tc.msg) {
				t.Errorf("got %d %.300s, want %d with %q", code, body, tc.want, tc.msg)
			}
			if code == 405 && hdr.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
		})
	}
	// None of that changed the node's state.
	if st, _ := h.anon.Session(ctx, "lab"); st.Nodes[0].State != "booting" {
		t.Errorf("pc001 is %s after bad reports, want booting", st.Nodes[0].State)
	}
}

// TestHTTPDeployerRestore restores the image through the API, as an
// agent with the http transport does, and compares the result with a
// local restore of the same image.
func TestHTTPDeployerRestore(t *testing.T) {
	h := newHarness(t, false, fourNodes+`
session "lab" {
  image = "golden"
  nodes = ["pc001"]
  transport "http" {}
}`)
	ctx := context.Background()
	if _, err := h.admin.StartSession(ctx, "lab"); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "node-disk.img")
	ag := &agent{c: h.anon, mac: mac(1), target: target}
	as, err := ag.run(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if d := testenv.FilesEqual(t, h.fx.want, target); d >= 0 {
		t.Fatalf("restored over the API differs from the local restore at byte %d", d)
	}
	if d := testenv.FilesEqual(t, h.fx.src, target); d >= 0 {
		t.Fatalf("restored over the API differs from the source at byte %d", d)
	}
	st, err := h.anon.Session(ctx, "lab")
	if err != nil {
		t.Fatal(err)
	}
	info, err := h.anon.Images(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != "done" || st.Nodes[0].State != "done" {
		t.Errorf("session %s, node %s", st.State, st.Nodes[0].State)
	}
	if st.Served != info[0].StoredBytes {
		t.Errorf("served %d bytes, the image stores %d", st.Served, info[0].StoredBytes)
	}
	if as.Image.Chunks != info[0].Chunks || as.Image.ID != info[0].ID {
		t.Errorf("assignment image %+v, images %+v", as.Image, info[0])
	}

	// Statistics while running: a chunk fetched twice is retransmitted,
	// and a Range request serves part of a chunk.
	if _, err := h.admin.StartSession(ctx, "lab"); err != nil {
		t.Fatal(err)
	}
	as, err = h.anon.Assignment(ctx, mac(1))
	if err != nil {
		t.Fatal(err)
	}
	ac := h.anon.WithToken(as.Token)
	c0, err := ac.ImageChunk(ctx, "golden", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ac.ImageChunk(ctx, "golden", 0); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", h.url+"/api/v1/images/golden/chunks/1", nil)
	req.Header.Set("Authorization", "Bearer "+as.Token)
	req.Header.Set("Range", "bytes=0-99")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	part, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || len(part) != 100 {
		t.Errorf("range request: %d, %d bytes", resp.StatusCode, len(part))
	}
	st, _ = h.anon.Session(ctx, "lab")
	if st.Deploy == nil || st.Deploy.BytesSent != 2*int64(len(c0))+100 || st.Deploy.BytesRetransmitted != int64(len(c0)) || st.Deploy.Receivers != 1 {
		t.Errorf("deploy stats %+v, want sent %d, retransmitted %d", st.Deploy, 2*len(c0)+100, len(c0))
	}
}

// TestTwoConcurrentSessions runs two sessions with different images at
// once, two nodes each, every agent restoring over the API in parallel.
func TestTwoConcurrentSessions(t *testing.T) {
	h := newHarness(t, true, twoSessions)
	ctx := context.Background()
	sa, err := h.admin.StartSession(ctx, "lab-a")
	if err != nil {
		t.Fatal(err)
	}
	sb, err := h.admin.StartSession(ctx, "lab-b")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var wg sync.WaitGroup
	assignments := make([]*orchestrator.Assignment, 4)
	errs := make([]error, 4)
	for i := range 4 {
		wg.Go(func() {
			ag := &agent{c: h.anon, mac: mac(i + 1), target: filepath.Join(dir, "pc"+strconv.Itoa(i+1))}
			assignments[i], errs[i] = ag.run(ctx, 0)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	a1, a2, a3 := assignments[0], assignments[1], assignments[2]
	if net.JoinHostPort(a1.Transport.Group, strconv.Itoa(a1.Transport.Port)) != sa.Transport.Group {
		t.Errorf("assignment group %s:%d, session %s", a1.Transport.Group, a1.Transport.Port, sa.Transport.Group)
	}
	if a1.Transport.Group == a3.Transport.Group || a1.Transport.Port == a3.Transport.Port || a1.Transport.Key == a3.Transport.Key ||
		a1.Transport.SessionID == a3.Transport.SessionID || sa.Transport.Group == sb.Transport.Group {
		t.Errorf("sessions share a group, port, key or ID:\n%+v\n%+v", a1.Transport, a3.Transport)
	}
	if a1.Transport.Key != a2.Transport.Key || a1.Token == a2.Token {
		t.Errorf("members of one session: same key %v, same token %v", a1.Transport.Key == a2.Transport.Key, a1.Token == a2.Token)
	}
	for i := range 4 {
		want := h.fx.want
		if i >= 2 {
			want = h.fx2.want
		}
		if d := testenv.FilesEqual(t, want, filepath.Join(dir, "pc"+strconv.Itoa(i+1))); d >= 0 {
			t.Errorf("pc%d differs from its image at byte %d", i+1, d)
		}
	}
	for _, name := range []string{"lab-a", "lab-b"} {
		st, err := h.anon.Session(ctx, name)
		if err != nil || st.State != "done" || st.Counts["done"] != 2 {
			t.Errorf("%s: %+v %v", name, st, err)
		}
	}
}

func TestEventStream(t *testing.T) {
	h := newHarness(t, false, fourNodes+`
session "lab" {
  image = "golden"
  nodes = ["pc001"]
  transport "http" {}
}`)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan orchestrator.Event, 100)
	streamed := make(chan error, 1)
	go func() {
		streamed <- h.anon.Events(ctx, "lab", func(e orchestrator.Event) error {
			got <- e
			if e.Type == "session" && e.State == "done" {
				return io.EOF // enough
			}
			return nil
		})
	}()
	// The subscription is in place once its ready event arrived.
	select {
	case e := <-got:
		if e.Type != "ready" || e.Session != "lab" {
			t.Fatalf("first event %+v, want ready", e)
		}
	case err := <-streamed:
		t.Fatalf("stream ended: %v", err)
	case <-ctx.Done():
		t.Fatal("no ready event")
	}
	if _, err := h.admin.StartSession(ctx, "lab"); err != nil {
		t.Fatal(err)
	}
	ag := &agent{c: h.anon, mac: mac(1), target: filepath.Join(t.TempDir(), "disk")}
	if _, err := ag.run(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := <-streamed; !errors.Is(err, io.EOF) {
		t.Fatalf("stream ended with %v", err)
	}
	close(got)
	var seq []string
	var last uint64
	for e := range got {
		if e.Seq <= last {
			t.Errorf("event seq %d after %d", e.Seq, last)
		}
		last = e.Seq
		if e.Session != "lab" {
			t.Errorf("event of session %q in a stream of lab", e.Session)
		}
		if e.Type != "progress" {
			seq = append(seq, e.Type+":"+e.State)
		}
	}
	want := "session:running node:pending node:booting node:receiving node:verifying node:done session:done"
	if strings.Join(seq, " ") != want {
		t.Errorf("events\n%s\nwant\n%s", strings.Join(seq, " "), want)
	}
}

var sampleRE = regexp.MustCompile(`^([a-z_]+)(\{[a-z_]+="(?:[^"\\]|\\.)*"(?:,[a-z_]+="(?:[^"\\]|\\.)*")*\})? (-?[0-9.e+-]+|NaN|\+Inf|-Inf)$`)

// TestMetrics checks the exposition format (every sample parses, belongs
// to a family announced by # TYPE, families are contiguous) and values.
func TestMetricsAndHealth(t *testing.T) {
	h := newHarness(t, false, fourNodes+`
session "lab" {
  image = "golden"
  nodes = ["pc001", "pc002"]
  transport "http" {}
}`)
	ctx := context.Background()
	if _, err := h.admin.StartSession(ctx, "lab"); err != nil {
		t.Fatal(err)
	}
	ag := &agent{c: h.anon, mac: mac(1), target: filepath.Join(t.TempDir(), "disk")}
	if _, err := ag.run(ctx, 0); err != nil {
		t.Fatal(err)
	}
	call(t, "POST", h.url+"/api/v1/sessions/lab/cancel", "", "") // a 401
	text, err := h.anon.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	typed := map[string]bool{}
	done := map[string]bool{}
	values := map[string]float64{}
	current := ""
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || (f[1] != "counter" && f[1] != "gauge") {
				t.Errorf("bad TYPE line %q", line)
			}
			typed[f[0]] = true
			continue
		}
		if strings.HasPrefix(line, "# HELP ") {
			continue
		}
		m := sampleRE.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("sample line does not parse: %q", line)
			continue
		}
		if !typed[m[1]] {
			t.Errorf("sample of %s before its # TYPE", m[1])
		}
		if m[1] != current {
			if done[m[1]] {
				t.Errorf("samples of %s are not contiguous", m[1])
			}
			done[current], current = true, m[1]
		}
		v, _ := strconv.ParseFloat(m[3], 64)
		values[m[1]+m[2]] = v
	}
	imgs, _ := h.anon.Images(ctx)
	for key, want := range map[string]float64{
		`diskcast_up`: 1,
		`diskcast_session_bytes_sent_total{session="lab",transport="http"}`:                    float64(imgs[0].StoredBytes),
		`diskcast_session_bytes_retransmitted_total{session="lab",transport="http"}`:           0,
		`diskcast_node_state{session="lab",node="pc001",state="done"}`:                         1,
		`diskcast_node_state{session="lab",node="pc001",state="receiving"}`:                    0,
		`diskcast_node_state{session="lab",node="pc002",state="pending"}`:                      1,
		`diskcast_node_progress_ratio{session="lab",node="pc001"}`:                             1,
		`diskcast_session_nodes{session="lab",state="done"}`:                                   1,
		`diskcast_session_state{session="lab",state="running"}`:                                1,
		`diskcast_sessions{state="running"}`:                                                   1,
		`diskcast_nodes{origin="config"}`:                                                      4,
		`diskcast_http_requests_total{route="POST /api/v1/sessions/{name}/cancel",code="401"}`: 1,
		`diskcast_http_requests_total{route="GET /api/v1/agent/assignment",code="200"}`:        1,
	} {
		if got, ok := values[key]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", key, got, ok, want)
		}
	}
	if values[`diskcast_http_requests_total{route="GET /api/v1/images/{name}/chunks/{n}",code="200"}`] != float64(imgs[0].Chunks) {
		t.Errorf("chunk requests counted %v, want %d", values[`diskcast_http_requests_total{route="GET /api/v1/images/{name}/chunks/{n}",code="200"}`], imgs[0].Chunks)
	}

	hl, err := h.anon.Health(ctx)
	if err != nil || hl.Status != "ok" || hl.Running != 1 || hl.Nodes != 4 {
		t.Errorf("health: %+v %v", hl, err)
	}
}
