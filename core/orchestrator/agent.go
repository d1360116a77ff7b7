package orchestrator

import (
	"context"
	"encoding/hex"
	"fmt"
	"maps"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/diskcast/diskcast/core/state"
)

// Assignment is what a member node's agent needs to run its part of a
// session. URLs are paths on the server the agent asked.
type Assignment struct {
	Session     string            `json:"session"`
	Run         int               `json:"run"`
	Node        string            `json:"node"`
	MAC         string            `json:"mac"`
	State       string            `json:"state"` // the node's state now
	Token       string            `json:"token"` // for progress, result and image requests
	Target      string            `json:"target"`
	After       string            `json:"after"`
	Image       AssignedImage     `json:"image"`
	Transport   AssignedTransport `json:"transport"`
	Timeouts    TimeoutsStatus    `json:"timeouts"`
	ProgressURL string            `json:"progress_url"`
	ResultURL   string            `json:"result_url"`
}

// AssignedImage names the image and where to fetch it over HTTP (always
// available: for the http transport, and for multicast repair).
type AssignedImage struct {
	Name      string `json:"name"`
	ID        string `json:"id"`
	Size      int64  `json:"size"`
	Chunks    int    `json:"chunks"`
	MetaURL   string `json:"meta_url"`
	ChunksURL string `json:"chunks_url"` // append the chunk number
}

// AssignedTransport is how the session moves the image.
type AssignedTransport struct {
	Kind         string            `json:"kind"`
	Group        string            `json:"group"` // multicast address
	Port         int               `json:"port"`  // data port; control is port+1
	SessionID    uint64            `json:"session_id"`
	Key          string            `json:"key"` // hex, authenticates the session's packets
	RateBytes    int64             `json:"rate_bytes"`
	MinReceivers int               `json:"min_receivers"`
	MinWait      string            `json:"min_wait,omitempty"`
	MaxWait      string            `json:"max_wait,omitempty"`
	Params       map[string]string `json:"params,omitempty"`
}

// Progress is an agent's report while it works.
type Progress struct {
	Session     string `json:"session,omitempty"` // optional; must match the token
	Node        string `json:"node,omitempty"`    // optional; must match the token
	State       string `json:"state"`             // booting, receiving or verifying
	Bytes       int64  `json:"bytes"`             // done in this state
	Total       int64  `json:"total"`
	Chunks      int64  `json:"chunks"`
	ChunksTotal int64  `json:"chunks_total"`
	Message     string `json:"message,omitempty"`
}

// Result is an agent's final report.
type Result struct {
	Session string             `json:"session,omitempty"`
	Node    string             `json:"node,omitempty"`
	OK      bool               `json:"ok"`
	Error   string             `json:"error,omitempty"` // required when not OK
	Bytes   int64              `json:"bytes,omitempty"`
	Timings map[string]float64 `json:"timings,omitempty"` // seconds per phase
}

// Ack answers progress and result reports.
type Ack struct {
	Session string `json:"session"`
	Run     int    `json:"run"`
	Node    string `json:"node"`
	State   string `json:"state"`
}

// NormalizeMAC parses an Ethernet MAC address into its canonical form.
func NormalizeMAC(s string) (string, error) {
	hw, err := net.ParseMAC(strings.TrimSpace(s))
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("%w: mac %q is not an Ethernet MAC address; write it like 52:54:00:12:34:56", ErrInvalid, s)
	}
	return hw.String(), nil
}

// MaxDiscovered bounds the discovered nodes kept, so that a host making
// up MACs cannot fill the state store.
const MaxDiscovered = 4096

func (o *Orchestrator) discovered() int {
	n := 0
	for _, nd := range o.nodes {
		if nd.Origin == state.OriginDiscovered {
			n++
		}
	}
	return n
}

func discoveredName(mac string) string {
	return "discovered-" + strings.ReplaceAll(mac, ":", "")
}

// Assign answers a node's request for work by MAC. A member of a running
// session gets its assignment, token included (a pending member becomes
// booting; a failed one retries). An unknown MAC is recorded as a
// discovered node. addr is the requester's address, for the node record.
func (o *Orchestrator) Assign(ctx context.Context, mac, addr string) (*Assignment, error) {
	mac, err := NormalizeMAC(mac)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil, ErrClosed
	}
	name, known, err := o.sightLocked(mac, addr, "asked for an assignment from "+addr, now)
	if err != nil {
		return nil, err
	}
	if !known {
		return nil, fmt.Errorf("%w: MAC %s belongs to no known node; recorded as discovered node %q: add a node block to the configuration or POST /api/v1/nodes to enroll it", ErrNotFound, mac, name)
	}
	o.boots.note(mac, stepAgent, now)
	s := o.runningSessionOf(name)
	if s == nil {
		return nil, fmt.Errorf("%w: node %q (%s) has no assignment: no running session includes it", ErrNotFound, name, mac)
	}
	run := s.rec.Nodes[name]
	switch run.State {
	case StatePending:
		if err := o.transition(s, name, StateBooting, "", now, nil); err != nil {
			return nil, err
		}
	case StateFailed:
		if err := o.transition(s, name, StateBooting, "retry after: "+run.Reason, now, func(r *state.NodeRun) {
			r.Bytes, r.Total, r.Chunks, r.ChunksTotal, r.Timings = 0, 0, 0, 0, nil
		}); err != nil {
			return nil, err
		}
	case StateDone:
		return nil, fmt.Errorf("%w: node %q already finished run %d of session %q; it should boot from its disk", ErrConflict, name, s.rec.Run, s.rec.Name)
	}
	return o.assignmentLocked(s, name)
}

// sightLocked records that the node with this MAC was seen, from addr
// ("" if unknown). An unknown MAC becomes a discovered node, why saying
// how it showed up; known is false then. o.mu is held.
func (o *Orchestrator) sightLocked(mac, addr, why string, now time.Time) (name string, known bool, err error) {
	name, ok := o.macs[mac]
	if !ok {
		name, err = o.discoverLocked(mac, addr, why, now)
		return name, false, err
	}
	n := o.nodes[name]
	n.LastSeen = now
	if addr != "" {
		n.LastAddr = addr
	}
	if n.FirstSeen.IsZero() {
		n.FirstSeen = now
	}
	o.dirty = true
	return name, true, nil
}

// discoverLocked records an unknown MAC as a discovered node; o.mu is
// held.
func (o *Orchestrator) discoverLocked(mac, addr, why string, now time.Time) (string, error) {
	if o.discovered() >= MaxDiscovered {
		return "", fmt.Errorf("%w: MAC %s belongs to no known node, and %d discovered nodes are recorded already (the limit); enroll or delete some", ErrNotFound, mac, MaxDiscovered)
	}
	name := discoveredName(mac)
	n := &state.Node{Name: name, MAC: mac, Origin: state.OriginDiscovered, FirstSeen: now, LastSeen: now, LastAddr: addr}
	err := o.store.Update(func(tx *state.Tx) error {
		if err := tx.PutNode(n); err != nil {
			return err
		}
		return tx.AppendHistory(name, &state.HistoryEntry{Time: now, State: "discovered", Reason: why})
	})
	if err != nil {
		return "", fmt.Errorf("orchestrator: write state: %w", err)
	}
	o.nodes[name], o.macs[mac] = n, name
	o.log.Info("unknown node discovered", "mac", mac, "node", name, "addr", addr)
	o.events.publish(Event{Time: now, Type: EventDiscovered, Node: name, MAC: mac})
	return name, nil
}

func (o *Orchestrator) assignmentLocked(s *session, node string) (*Assignment, error) {
	r := s.rec
	img, err := o.images.get(r.Image)
	if err != nil {
		return nil, err
	}
	ap, err := parseGroup(r.Group)
	if err != nil {
		return nil, err
	}
	target := r.Target
	n := o.nodes[node]
	if n != nil && n.Disk != "" {
		target = n.Disk
	}
	base := "/api/v1/images/" + url.PathEscape(r.Image)
	a := &Assignment{
		Session: r.Name, Run: r.Run, Node: node, State: r.Nodes[node].State,
		Token:  agentToken(r.Secret, r.Name, node),
		Target: target, After: r.After,
		Image: AssignedImage{Name: r.Image, ID: r.ImageID, Size: img.info.Size, Chunks: img.info.Chunks,
			MetaURL: base + "/meta", ChunksURL: base + "/chunks/"},
		Transport: AssignedTransport{Kind: r.Transport.Kind, Group: ap.addr, Port: ap.port, SessionID: r.SessionID,
			Key: hex.EncodeToString(r.Key), RateBytes: r.Transport.RateBytes, MinReceivers: r.Transport.MinReceivers,
			MinWait: dur(r.Transport.MinWait), MaxWait: dur(r.Transport.MaxWait)},
		Timeouts:    TimeoutsStatus{Boot: dur(r.Timeouts.Boot), Receive: dur(r.Timeouts.Receive), Verify: dur(r.Timeouts.Verify)},
		ProgressURL: "/api/v1/agent/progress",
		ResultURL:   "/api/v1/agent/result",
	}
	if n != nil {
		a.MAC = n.MAC
	}
	if s.running != nil {
		a.Transport.Params = s.running.Params()
	}
	return a, nil
}

type groupPort struct {
	addr string
	port int
}

func parseGroup(g string) (groupPort, error) {
	host, port, err := net.SplitHostPort(g)
	if err != nil {
		return groupPort{}, fmt.Errorf("orchestrator: session group %q: %v", g, err)
	}
	var p int
	fmt.Sscan(port, &p)
	return groupPort{host, p}, nil
}

// agentLocked resolves an agent token and checks the optional session and
// node names of a report against it.
func (o *Orchestrator) agentLocked(token, sessionName, node string) (*session, string, error) {
	id, ok := o.tokens[token]
	if !ok {
		return nil, "", fmt.Errorf("%w: the agent token is not valid: it belongs to no session run (a new run issues new tokens; fetch the assignment again)", ErrUnauthorized)
	}
	if sessionName != "" && sessionName != id.session {
		return nil, "", fmt.Errorf("%w: the token is for session %q, not %q", ErrForbidden, id.session, sessionName)
	}
	if node != "" && node != id.node {
		return nil, "", fmt.Errorf("%w: the token is for node %q, not %q", ErrForbidden, id.node, node)
	}
	s := o.sessions[id.session]
	if s == nil {
		return nil, "", fmt.Errorf("%w: session %q no longer exists", ErrUnauthorized, id.session)
	}
	return s, id.node, nil
}

func (o *Orchestrator) checkRunning(s *session, node string) (*state.NodeRun, error) {
	if s.rec.State != SessionRunning {
		return nil, fmt.Errorf("%w: session %q is %s (%s); stop and wait for a new assignment", ErrConflict, s.rec.Name, s.rec.State, s.rec.Reason)
	}
	return s.rec.Nodes[node], nil
}

// ReportProgress records an agent's progress. State may only move
// forward (booting → receiving → verifying); reports in the same state
// update the byte counts, which reach the store within a tick.
func (o *Orchestrator) ReportProgress(ctx context.Context, token string, p *Progress) (*Ack, error) {
	switch p.State {
	case StateBooting, StateReceiving, StateVerifying:
	case StateDone, StateFailed:
		return nil, fmt.Errorf("%w: state %q: send the final outcome to /api/v1/agent/result", ErrInvalid, p.State)
	default:
		return nil, fmt.Errorf("%w: state %q: want \"booting\", \"receiving\" or \"verifying\"", ErrInvalid, p.State)
	}
	if p.Bytes < 0 || p.Total < 0 || p.Chunks < 0 || p.ChunksTotal < 0 {
		return nil, fmt.Errorf("%w: bytes, total, chunks and chunks_total cannot be negative", ErrInvalid)
	}
	if p.Total > 0 && p.Bytes > p.Total {
		return nil, fmt.Errorf("%w: bytes %d is more than total %d", ErrInvalid, p.Bytes, p.Total)
	}
	if p.ChunksTotal > 0 && p.Chunks > p.ChunksTotal {
		return nil, fmt.Errorf("%w: chunks %d is more than chunks_total %d", ErrInvalid, p.Chunks, p.ChunksTotal)
	}
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	s, node, err := o.agentLocked(token, p.Session, p.Node)
	if err != nil {
		return nil, err
	}
	run, err := o.checkRunning(s, node)
	if err != nil {
		return nil, err
	}
	if terminal(run.State) {
		return nil, fmt.Errorf("%w: node %q already %s in session %q (%s); fetch the assignment again to retry", ErrConflict, node, run.State, s.rec.Name, run.Reason)
	}
	if stateRank[p.State] < stateRank[run.State] {
		return nil, fmt.Errorf("%w: node %q is %s; it cannot go back to %s", ErrConflict, node, run.State, p.State)
	}
	set := func(r *state.NodeRun) {
		r.Bytes, r.Total, r.Chunks, r.ChunksTotal, r.Updated = p.Bytes, p.Total, p.Chunks, p.ChunksTotal, now
	}
	if p.State != run.State {
		if err := o.transition(s, node, p.State, "", now, set); err != nil {
			return nil, err
		}
		s.rates[node] = &rateMeter{bytes: p.Bytes, at: now}
	} else {
		set(run)
		o.dirty = true
		rm := s.rates[node]
		if rm == nil {
			s.rates[node] = &rateMeter{bytes: p.Bytes, at: now}
		} else if dt := now.Sub(rm.at).Seconds(); dt > 0.05 {
			inst := float64(p.Bytes-rm.bytes) / dt
			if rm.rate == 0 {
				rm.rate = inst
			} else {
				rm.rate = 0.5*rm.rate + 0.5*inst
			}
			rm.bytes, rm.at = p.Bytes, now
		}
	}
	e := Event{Time: now, Type: EventProgress, Session: s.rec.Name, Run: s.rec.Run, Node: node, State: p.State, Bytes: p.Bytes, Total: p.Total}
	if rm := s.rates[node]; rm != nil {
		e.Rate = rm.rate
	}
	o.events.publish(e)
	return &Ack{Session: s.rec.Name, Run: s.rec.Run, Node: node, State: s.rec.Nodes[node].State}, nil
}

// ReportResult records an agent's final outcome. Sending the same outcome
// again (a retry after a lost answer) is accepted.
func (o *Orchestrator) ReportResult(ctx context.Context, token string, res *Result) (*Ack, error) {
	if !res.OK && strings.TrimSpace(res.Error) == "" {
		return nil, fmt.Errorf("%w: ok is false but error is empty; say why the node failed", ErrInvalid)
	}
	if res.Bytes < 0 {
		return nil, fmt.Errorf("%w: bytes cannot be negative", ErrInvalid)
	}
	for k, v := range res.Timings {
		if v < 0 || k == "" {
			return nil, fmt.Errorf("%w: timings[%q] = %v: want a phase name and seconds >= 0", ErrInvalid, k, v)
		}
	}
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	s, node, err := o.agentLocked(token, res.Session, res.Node)
	if err != nil {
		return nil, err
	}
	to, reason := StateDone, ""
	if !res.OK {
		to, reason = StateFailed, "agent: "+res.Error
	}
	run := s.rec.Nodes[node]
	if run != nil && terminal(run.State) && run.State == to && run.Reason == reason && s.rec.Run > 0 {
		return &Ack{Session: s.rec.Name, Run: s.rec.Run, Node: node, State: run.State}, nil
	}
	if run, err = o.checkRunning(s, node); err != nil {
		return nil, err
	}
	if terminal(run.State) {
		return nil, fmt.Errorf("%w: node %q already %s in session %q; fetch the assignment again to retry", ErrConflict, node, run.State, s.rec.Name)
	}
	timings := map[string]float64{}
	if n := o.nodes[node]; n != nil {
		timings = o.boots.timings(n.MAC)
	}
	maps.Copy(timings, res.Timings)
	if err := o.transition(s, node, to, reason, now, func(r *state.NodeRun) {
		r.Timings = timings
		if res.Bytes > 0 {
			r.Bytes = res.Bytes
		}
	}); err != nil {
		return nil, err
	}
	return &Ack{Session: s.rec.Name, Run: s.rec.Run, Node: node, State: to}, nil
}

// imageFor authorises an image request: admin requests may read any
// configured image; an agent token only its running session's image.
func (o *Orchestrator) imageFor(token string, admin bool, name string) (*openImage, chunkObserver, *session, string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if admin {
		img, err := o.images.get(o.images.resolve(name))
		return img, nil, nil, "", err
	}
	s, node, err := o.agentLocked(token, "", "")
	if err != nil {
		return nil, nil, nil, "", err
	}
	if s.rec.Image != name && s.rec.ImageID != name {
		return nil, nil, nil, "", fmt.Errorf("%w: the token of session %q grants image %q, not %q", ErrForbidden, s.rec.Name, s.rec.Image, name)
	}
	if _, err := o.checkRunning(s, node); err != nil {
		return nil, nil, nil, "", err
	}
	img, err := o.images.get(s.rec.Image)
	if err != nil {
		return nil, nil, nil, "", err
	}
	if img.info.ID != s.rec.ImageID {
		return nil, nil, nil, "", fmt.Errorf("%w: image %q changed on disk since session %q started (now %s, was %s); cancel and start the session again",
			ErrImage, s.rec.Image, s.rec.Name, img.info.ID, s.rec.ImageID)
	}
	obs, _ := s.running.(chunkObserver)
	return img, obs, s, node, nil
}

// ImageMeta returns an image's header, index and trailer bytes,
// concatenated. See imageFor for who may read what.
func (o *Orchestrator) ImageMeta(token string, admin bool, name string) ([]byte, error) {
	img, _, _, _, err := o.imageFor(token, admin, name)
	if err != nil {
		return nil, err
	}
	return img.meta, nil
}

// ChunkRead is a chunk payload being served. Call Finish once with the
// number of bytes actually sent (a Range request sends part of it); it
// counts them and hands the buffer back.
type ChunkRead struct {
	Payload []byte
	finish  func(sent int64)
	once    sync.Once
}

// Finish records what was sent and releases the payload buffer.
func (c *ChunkRead) Finish(sent int64) { c.once.Do(func() { c.finish(sent) }) }

// ImageChunk reads the stored payload of chunk i, verified against the
// index. See imageFor for who may read what.
func (o *Orchestrator) ImageChunk(token string, admin bool, name string, i int) (*ChunkRead, error) {
	img, obs, s, node, err := o.imageFor(token, admin, name)
	if err != nil {
		return nil, err
	}
	p, release, err := img.payload(i)
	if err != nil {
		return nil, err
	}
	full := int64(len(p))
	return &ChunkRead{Payload: p, finish: func(sent int64) {
		release()
		o.unicastBytes.Add(sent)
		if s != nil {
			s.served.Add(sent)
		}
		if obs != nil && sent > 0 {
			obs.ChunkServed(node, i, sent, sent == full)
		}
	}}, nil
}

// ServedBytes is the number of chunk bytes the API served since start.
func (o *Orchestrator) ServedBytes() int64 { return o.unicastBytes.Load() }
