package api

import (
	"bufio"
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/diskcast/diskcast/core/orchestrator"
)

// The metrics are written by hand in the Prometheus text exposition
// format (version 0.0.4): a few dozen families do not justify a client
// library and its dependencies.

var nodeStates = []string{orchestrator.StatePending, orchestrator.StateBooting, orchestrator.StateReceiving,
	orchestrator.StateVerifying, orchestrator.StateDone, orchestrator.StateFailed}

var sessionStates = []string{orchestrator.SessionIdle, orchestrator.SessionRunning, orchestrator.SessionDone,
	orchestrator.SessionFailed, orchestrator.SessionCancelled}

// expo collects samples per metric family and writes each family's
// samples together, as the format requires, in the order the families
// were declared.
type expo struct {
	order []string
	help  map[string]string
	buf   map[string]*strings.Builder
}

func newExpo() *expo {
	return &expo{help: map[string]string{}, buf: map[string]*strings.Builder{}}
}

func (e *expo) family(name, typ, help string) {
	if _, ok := e.buf[name]; ok {
		return
	}
	e.order = append(e.order, name)
	e.help[name] = fmt.Sprintf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	e.buf[name] = &strings.Builder{}
}

// sample adds one sample of a declared family; labels are name/value
// pairs.
func (e *expo) sample(name string, v float64, labels ...string) {
	b := e.buf[name]
	b.WriteString(name)
	if len(labels) > 0 {
		b.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(labels[i])
			b.WriteString(`="`)
			b.WriteString(escapeLabel(labels[i+1]))
			b.WriteByte('"')
		}
		b.WriteByte('}')
	}
	b.WriteByte(' ')
	b.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
	b.WriteByte('\n')
}

func (e *expo) writeTo(w *bufio.Writer) {
	for _, name := range e.order {
		w.WriteString(e.help[name])
		w.WriteString(e.buf[name].String())
	}
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	e := newExpo()
	defer func() {
		bw := bufio.NewWriter(w)
		e.writeTo(bw)
		bw.Flush()
	}()

	e.family("diskcast_up", "gauge", "1 when the state store answers.")
	e.sample("diskcast_up", b2f(s.o.Healthy() == nil))
	e.family("diskcast_uptime_seconds", "gauge", "Seconds since the API server started.")
	e.sample("diskcast_uptime_seconds", time.Since(s.start).Seconds())

	s.mu.Lock()
	keys := make([]reqKey, 0, len(s.requests))
	for k := range s.requests {
		keys = append(keys, k)
	}
	counts := make(map[reqKey]int64, len(keys))
	for _, k := range keys {
		counts[k] = s.requests[k]
	}
	s.mu.Unlock()
	slices.SortFunc(keys, func(a, b reqKey) int { return cmp.Or(cmp.Compare(a.route, b.route), cmp.Compare(a.code, b.code)) })
	e.family("diskcast_http_requests_total", "counter", "API requests by route and status code; rate() gives request rates.")
	for _, k := range keys {
		e.sample("diskcast_http_requests_total", float64(counts[k]), "route", k.route, "code", strconv.Itoa(k.code))
	}
	e.family("diskcast_api_chunk_bytes_total", "counter", "Image chunk bytes served by the API (http transport and repairs).")
	e.sample("diskcast_api_chunk_bytes_total", float64(s.o.ServedBytes()))

	nodes := s.o.Nodes()
	byOrigin := map[string]int{}
	for _, n := range nodes {
		byOrigin[n.Origin]++
	}
	e.family("diskcast_nodes", "gauge", "Known nodes by origin (config, api, discovered).")
	for _, o := range []string{"config", "api", "discovered"} {
		e.sample("diskcast_nodes", float64(byOrigin[o]), "origin", o)
	}

	sessions := s.o.Sessions()
	byState := map[string]int{}
	for _, ss := range sessions {
		byState[ss.State]++
	}
	e.family("diskcast_sessions", "gauge", "Sessions by state.")
	for _, st := range sessionStates {
		e.sample("diskcast_sessions", float64(byState[st]), "state", st)
	}
	e.family("diskcast_session_state", "gauge", "1 for a session's current state, 0 for the others.")
	for _, ss := range sessions {
		for _, st := range sessionStates {
			e.sample("diskcast_session_state", b2f(ss.State == st), "session", ss.Name, "state", st)
		}
	}
	e.family("diskcast_session_run", "gauge", "Number of a session's latest run (0: never started).")
	for _, ss := range sessions {
		e.sample("diskcast_session_run", float64(ss.Run), "session", ss.Name)
	}
	e.family("diskcast_session_nodes", "gauge", "Members of a session's latest run by node state.")
	for _, ss := range sessions {
		if ss.Run == 0 {
			continue
		}
		for _, st := range nodeStates {
			e.sample("diskcast_session_nodes", float64(ss.Counts[st]), "session", ss.Name, "state", st)
		}
	}
	e.family("diskcast_session_progress_bytes", "gauge", "Sum of the members' reported bytes in their current step.")
	e.family("diskcast_session_total_bytes", "gauge", "Sum of the members' reported totals.")
	e.family("diskcast_session_progress_ratio", "gauge", "progress_bytes / total_bytes (0 before any report).")
	for _, ss := range sessions {
		if ss.Run == 0 {
			continue
		}
		e.sample("diskcast_session_progress_bytes", float64(ss.Bytes), "session", ss.Name)
		e.sample("diskcast_session_total_bytes", float64(ss.Total), "session", ss.Name)
		ratio := 0.0
		if ss.Total > 0 {
			ratio = float64(ss.Bytes) / float64(ss.Total)
		}
		e.sample("diskcast_session_progress_ratio", ratio, "session", ss.Name)
	}
	e.family("diskcast_session_bytes_sent_total", "counter", "Bytes the session's transport sent in this run.")
	e.family("diskcast_session_bytes_retransmitted_total", "counter", "Bytes the session's transport sent again (repairs, repeats) in this run.")
	e.family("diskcast_session_receivers", "gauge", "Receivers the session's transport knows.")
	e.family("diskcast_session_served_bytes_total", "counter", "Chunk bytes the API served to the session's agents in this run.")
	for _, ss := range sessions {
		if ss.Deploy == nil {
			continue
		}
		e.sample("diskcast_session_bytes_sent_total", float64(ss.Deploy.BytesSent), "session", ss.Name, "transport", ss.Transport.Kind)
		e.sample("diskcast_session_bytes_retransmitted_total", float64(ss.Deploy.BytesRetransmitted), "session", ss.Name, "transport", ss.Transport.Kind)
		e.sample("diskcast_session_receivers", float64(ss.Deploy.Receivers), "session", ss.Name)
		e.sample("diskcast_session_served_bytes_total", float64(ss.Served), "session", ss.Name)
	}
	e.family("diskcast_node_state", "gauge", "1 for a member's current state in a session's latest run, 0 for the others.")
	e.family("diskcast_node_progress_bytes", "gauge", "A member's reported bytes in its current step.")
	e.family("diskcast_node_total_bytes", "gauge", "A member's reported total for its current step.")
	e.family("diskcast_node_progress_ratio", "gauge", "progress_bytes / total_bytes of a member.")
	e.family("diskcast_node_rate_bytes_per_second", "gauge", "A member's smoothed rate while receiving or verifying.")
	for _, ss := range sessions {
		if ss.Run == 0 {
			continue
		}
		for _, n := range ss.Nodes {
			for _, st := range nodeStates {
				e.sample("diskcast_node_state", b2f(n.State == st), "session", ss.Name, "node", n.Name, "state", st)
			}
		}
		for _, n := range ss.Nodes {
			e.sample("diskcast_node_progress_bytes", float64(n.Bytes), "session", ss.Name, "node", n.Name)
			e.sample("diskcast_node_total_bytes", float64(n.Total), "session", ss.Name, "node", n.Name)
			ratio := 0.0
			if n.Total > 0 {
				ratio = float64(n.Bytes) / float64(n.Total)
			}
			e.sample("diskcast_node_progress_ratio", ratio, "session", ss.Name, "node", n.Name)
			e.sample("diskcast_node_rate_bytes_per_second", n.Rate, "session", ss.Name, "node", n.Name)
		}
	}
}
