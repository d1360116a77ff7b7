package orchestrator

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/diskcast/diskcast/core/config"
	"github.com/diskcast/diskcast/core/state"
)

// SessionStatus is a session's definition and the state of its latest run.
type SessionStatus struct {
	Name      string          `json:"name"`
	Origin    string          `json:"origin"`
	Image     string          `json:"image"`
	ImageID   string          `json:"image_id,omitempty"`
	Members   []string        `json:"members"`
	Target    string          `json:"target"`
	After     string          `json:"after"`
	Autostart bool            `json:"autostart"`
	Transport TransportStatus `json:"transport"`
	Timeouts  TimeoutsStatus  `json:"timeouts"`

	Run     int               `json:"run"`
	State   string            `json:"state"`
	Reason  string            `json:"reason,omitempty"`
	Created time.Time         `json:"created"`
	Started time.Time         `json:"started,omitzero"`
	Ended   time.Time         `json:"ended,omitzero"`
	Nodes   []NodeRunStatus   `json:"nodes"`
	Counts  map[string]int    `json:"counts"` // members per state
	Bytes   int64             `json:"bytes"`  // sum of the members' progress
	Total   int64             `json:"total"`
	Rate    float64           `json:"rate"`             // sum of the members' rates, bytes/s
	Deploy  *DeployStats      `json:"deploy,omitempty"` // while running
	Served  int64             `json:"served_bytes"`     // chunk bytes the API served to this run
	Params  map[string]string `json:"params,omitempty"`
}

// TransportStatus is a session's transport settings.
type TransportStatus struct {
	Kind         string `json:"kind"`
	Group        string `json:"group,omitempty"` // while running: multicast group:port
	RateBytes    int64  `json:"rate_bytes"`      // 0: adaptive
	MinReceivers int    `json:"min_receivers"`
	MinWait      string `json:"min_wait"`
	MaxWait      string `json:"max_wait"`
}

// TimeoutsStatus is a session's step timeouts.
type TimeoutsStatus struct {
	Boot    string `json:"boot"`
	Receive string `json:"receive"`
	Verify  string `json:"verify"`
}

// NodeRunStatus is one member's progress in the latest run.
type NodeRunStatus struct {
	Name        string             `json:"name"`
	MAC         string             `json:"mac,omitempty"`
	State       string             `json:"state"`
	Reason      string             `json:"reason,omitempty"`
	Since       time.Time          `json:"since,omitzero"`
	Deadline    time.Time          `json:"deadline,omitzero"`
	Updated     time.Time          `json:"updated,omitzero"`
	Bytes       int64              `json:"bytes"`
	Total       int64              `json:"total"`
	Chunks      int64              `json:"chunks"`
	ChunksTotal int64              `json:"chunks_total"`
	Rate        float64            `json:"rate"` // bytes/s
	Timings     map[string]float64 `json:"timings,omitempty"`
}

func dur(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

func (o *Orchestrator) statusLocked(s *session) *SessionStatus {
	r := s.rec
	st := &SessionStatus{
		Name: r.Name, Origin: r.Origin, Image: r.Image, ImageID: r.ImageID, Members: slices.Clone(r.Members),
		Target: r.Target, After: r.After, Autostart: r.Autostart,
		Transport: TransportStatus{Kind: r.Transport.Kind, RateBytes: r.Transport.RateBytes, MinReceivers: r.Transport.MinReceivers,
			MinWait: dur(r.Transport.MinWait), MaxWait: dur(r.Transport.MaxWait)},
		Timeouts: TimeoutsStatus{Boot: dur(r.Timeouts.Boot), Receive: dur(r.Timeouts.Receive), Verify: dur(r.Timeouts.Verify)},
		Run:      r.Run, State: r.State, Reason: r.Reason, Created: r.Created, Started: r.Started, Ended: r.Ended,
		Counts: map[string]int{}, Nodes: []NodeRunStatus{}, Served: s.served.Load(),
	}
	if r.State == SessionRunning {
		st.Transport.Group = r.Group
	}
	for _, m := range r.Members {
		nr := NodeRunStatus{Name: m, State: ""}
		if n := o.nodes[m]; n != nil {
			nr.MAC = n.MAC
		}
		if run := r.Nodes[m]; run != nil {
			nr.State, nr.Reason, nr.Since, nr.Deadline, nr.Updated = run.State, run.Reason, run.Since, run.Deadline, run.Updated
			nr.Bytes, nr.Total, nr.Chunks, nr.ChunksTotal, nr.Timings = run.Bytes, run.Total, run.Chunks, run.ChunksTotal, maps.Clone(run.Timings)
			if rm := s.rates[m]; rm != nil && (run.State == StateReceiving || run.State == StateVerifying) {
				nr.Rate = rm.rate
			}
			st.Counts[run.State]++
		} else {
			nr.State = "-"
		}
		st.Bytes += nr.Bytes
		st.Total += nr.Total
		st.Rate += nr.Rate
		st.Nodes = append(st.Nodes, nr)
	}
	if s.running != nil {
		d := s.running.Stats()
		st.Deploy = &d
		st.Params = s.running.Params()
	}
	return st
}

// Sessions lists every session, by name.
func (o *Orchestrator) Sessions() []*SessionStatus {
	o.mu.Lock()
	defer o.mu.Unlock()
	names := slices.Sorted(maps.Keys(o.sessions))
	out := make([]*SessionStatus, 0, len(names))
	for _, n := range names {
		out = append(out, o.statusLocked(o.sessions[n]))
	}
	return out
}

// Session returns one session's status.
func (o *Orchestrator) Session(name string) (*SessionStatus, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	s, err := o.sessionLocked(name)
	if err != nil {
		return nil, err
	}
	return o.statusLocked(s), nil
}

func (o *Orchestrator) sessionLocked(name string) (*session, error) {
	s := o.sessions[name]
	if s == nil {
		return nil, fmt.Errorf("%w: no session %q (sessions: %s)", ErrNotFound, name, strings.Join(slices.Sorted(maps.Keys(o.sessions)), ", "))
	}
	return s, nil
}

// runningSessionOf returns the running session that includes node.
func (o *Orchestrator) runningSessionOf(node string) *session {
	for _, s := range o.sessions {
		if s.rec.State == SessionRunning && s.rec.Nodes[node] != nil {
			return s
		}
	}
	return nil
}

// histItem is a history entry for a node, written with a session commit.
type histItem struct {
	node string
	e    state.HistoryEntry
}

// commit writes rec and history entries in one transaction and, when that
// succeeded, makes rec the session's record.
func (o *Orchestrator) commit(s *session, rec *state.Session, hist []histItem) error {
	err := o.store.Update(func(tx *state.Tx) error {
		if err := tx.PutSession(rec); err != nil {
			return err
		}
		for i := range hist {
			if err := tx.AppendHistory(hist[i].node, &hist[i].e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("orchestrator: write state: %w", err)
	}
	s.rec = rec
	return nil
}

// cloneRec copies a record deeply enough to change its node runs.
func cloneRec(r *state.Session) *state.Session {
	c := *r
	c.Nodes = make(map[string]*state.NodeRun, len(r.Nodes))
	for k, v := range r.Nodes {
		nv := *v
		c.Nodes[k] = &nv
	}
	return &c
}

// StartSession starts a new run of a session: it allocates a multicast
// group and port, makes a new key and new agent tokens, sets every member
// pending and starts the session's Deployer.
func (o *Orchestrator) StartSession(ctx context.Context, name string) (*SessionStatus, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil, ErrClosed
	}
	s, err := o.sessionLocked(name)
	if err != nil {
		return nil, err
	}
	if err := o.startLocked(ctx, s, time.Now()); err != nil {
		return nil, err
	}
	return o.statusLocked(s), nil
}

func (o *Orchestrator) startLocked(ctx context.Context, s *session, now time.Time) error {
	r := s.rec
	if r.State == SessionRunning {
		return fmt.Errorf("%w: session %q is already running (run %d, started %s); cancel it first to start over",
			ErrConflict, r.Name, r.Run, r.Started.Format(time.RFC3339))
	}
	for _, m := range r.Members {
		if other := o.runningSessionOf(m); other != nil {
			return fmt.Errorf("%w: node %q is in running session %q; wait for it to end or cancel it", ErrConflict, m, other.rec.Name)
		}
	}
	dep := o.deployers[r.Transport.Kind]
	if dep == nil {
		return fmt.Errorf("%w: session %q uses transport %q, which this daemon does not provide (available: %s)",
			ErrTransport, r.Name, r.Transport.Kind, strings.Join(slices.Sorted(maps.Keys(o.deployers)), ", "))
	}
	img, err := o.images.get(r.Image)
	if err != nil {
		return fmt.Errorf("session %q: %w", r.Name, err)
	}
	group, err := o.allocGroup()
	if err != nil {
		return err
	}
	rec := cloneRec(r)
	rec.Run++
	rec.State, rec.Reason = SessionRunning, ""
	rec.Started, rec.Ended = now, time.Time{}
	rec.ImageID, rec.ImagePath = img.info.ID, img.info.Path
	rec.Group = group.String()
	rec.SessionID = randomSessionID()
	rec.Key = randomBytes(32)
	rec.Secret = randomBytes(32)
	rec.Nodes = map[string]*state.NodeRun{}
	var hist []histItem
	for _, m := range rec.Members {
		rec.Nodes[m] = &state.NodeRun{State: StatePending, Since: now, Deadline: now.Add(rec.Timeouts.Boot)}
		hist = append(hist, histItem{m, state.HistoryEntry{Time: now, Session: rec.Name, Run: rec.Run, State: StatePending}})
	}
	run, err := dep.Start(ctx, o.spec(rec, img))
	if err != nil {
		return fmt.Errorf("%w: session %q: start %s transport: %v", ErrTransport, r.Name, r.Transport.Kind, err)
	}
	if err := o.commit(s, rec, hist); err != nil {
		run.Stop()
		return err
	}
	s.running = run
	s.rates = map[string]*rateMeter{}
	s.served.Store(0)
	o.indexTokens(s)
	o.watchRunning(s, run, rec.Run)
	o.log.Info("session started", "session", rec.Name, "run", rec.Run, "image", rec.Image, "image_id", rec.ImageID,
		"transport", rec.Transport.Kind, "group", rec.Group, "nodes", len(rec.Members))
	o.events.publish(Event{Time: now, Type: EventSession, Session: rec.Name, Run: rec.Run, State: SessionRunning})
	for _, m := range rec.Members {
		o.events.publish(Event{Time: now, Type: EventNode, Session: rec.Name, Run: rec.Run, Node: m, State: StatePending})
	}
	return nil
}

func (o *Orchestrator) spec(rec *state.Session, img *openImage) *SessionSpec {
	ap, _ := netip.ParseAddrPort(rec.Group)
	return &SessionSpec{
		Session: rec.Name, Run: rec.Run,
		ImageName: rec.Image, ImageID: rec.ImageID, ImagePath: rec.ImagePath, Meta: img.meta, Chunks: len(img.file.Index.Chunks),
		Group: ap, SessionID: rec.SessionID, Key: rec.Key,
		RateBytes: rec.Transport.RateBytes, MinReceivers: rec.Transport.MinReceivers, MinWait: rec.Transport.MinWait, MaxWait: rec.Transport.MaxWait,
		Interface: o.server.Interface, Nodes: slices.Clone(rec.Members),
		Logger: o.log.Named("deploy").With("session", rec.Name, "run", rec.Run),
	}
}

// watchRunning fails the run's unfinished members if the Deployer stops
// with an error while the run is still going.
func (o *Orchestrator) watchRunning(s *session, run Running, runNo int) {
	o.wg.Go(func() {
		<-run.Done()
		err := run.Err()
		if err == nil {
			return
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		if s.running != run || s.rec.Run != runNo || s.rec.State != SessionRunning {
			return
		}
		o.log.Error("transport failed", "session", s.rec.Name, "run", runNo, "error", err)
		o.failRemaining(s, time.Now(), "transport failed: "+err.Error())
	})
}

// failUnfinished marks every unfinished member of rec failed with reason
// and returns their history entries and names.
func failUnfinished(rec *state.Session, now time.Time, reason string) (hist []histItem, changed []string) {
	for _, m := range rec.Members {
		run := rec.Nodes[m]
		if run == nil || terminal(run.State) {
			continue
		}
		run.State, run.Reason, run.Since, run.Deadline = StateFailed, reason, now, time.Time{}
		hist = append(hist, histItem{m, state.HistoryEntry{Time: now, Session: rec.Name, Run: rec.Run, State: StateFailed, Reason: reason, Bytes: run.Bytes}})
		changed = append(changed, m)
	}
	return hist, changed
}

// failRemaining fails every unfinished member of a running session.
func (o *Orchestrator) failRemaining(s *session, now time.Time, reason string) {
	rec := cloneRec(s.rec)
	hist, changed := failUnfinished(rec, now, reason)
	if err := o.commit(s, rec, hist); err != nil {
		o.log.Error("cannot record failed nodes", "session", rec.Name, "error", err)
		return
	}
	for _, m := range changed {
		o.events.publish(Event{Time: now, Type: EventNode, Session: rec.Name, Run: rec.Run, Node: m, State: StateFailed, Reason: reason})
	}
	o.maybeFinish(s, now)
}

// CancelSession ends a running session: unfinished members fail with the
// reason, the Deployer stops, the group and port are freed.
func (o *Orchestrator) CancelSession(ctx context.Context, name, reason string) (*SessionStatus, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	s, err := o.sessionLocked(name)
	if err != nil {
		return nil, err
	}
	if s.rec.State != SessionRunning {
		return nil, fmt.Errorf("%w: session %q is not running (it is %s)", ErrConflict, name, s.rec.State)
	}
	if reason == "" {
		reason = "cancelled by the operator"
	} else {
		reason = "cancelled: " + reason
	}
	now := time.Now()
	rec := cloneRec(s.rec)
	hist, changed := failUnfinished(rec, now, reason)
	rec.State, rec.Reason, rec.Ended = SessionCancelled, reason, now
	if err := o.commit(s, rec, hist); err != nil {
		return nil, err
	}
	o.stopRunning(s)
	o.log.Info("session cancelled", "session", name, "run", rec.Run, "reason", reason, "unfinished", len(changed))
	for _, m := range changed {
		o.events.publish(Event{Time: now, Type: EventNode, Session: name, Run: rec.Run, Node: m, State: StateFailed, Reason: reason})
	}
	o.events.publish(Event{Time: now, Type: EventSession, Session: name, Run: rec.Run, State: SessionCancelled, Reason: reason})
	return o.statusLocked(s), nil
}

func (o *Orchestrator) stopRunning(s *session) {
	if s.running != nil {
		run := s.running
		s.running = nil
		run.Stop()
	}
}

// maybeFinish ends a running session once every member is done or failed.
func (o *Orchestrator) maybeFinish(s *session, now time.Time) {
	r := s.rec
	if r.State != SessionRunning {
		return
	}
	var failed []string
	for _, m := range r.Members {
		run := r.Nodes[m]
		if run == nil || !terminal(run.State) {
			return
		}
		if run.State == StateFailed {
			failed = append(failed, m+": "+run.Reason)
		}
	}
	rec := cloneRec(r)
	rec.State, rec.Ended = SessionDone, now
	if len(failed) > 0 {
		rec.State = SessionFailed
		rec.Reason = fmt.Sprintf("%d of %d nodes failed (%s)", len(failed), len(r.Members), strings.Join(failed, "; "))
	}
	if err := o.commit(s, rec, nil); err != nil {
		o.log.Error("cannot record the end of a session", "session", r.Name, "error", err)
		return
	}
	o.stopRunning(s)
	o.log.Info("session ended", "session", r.Name, "run", r.Run, "state", rec.State, "failed", len(failed), "elapsed", now.Sub(r.Started).Round(time.Millisecond).String())
	o.events.publish(Event{Time: now, Type: EventSession, Session: r.Name, Run: r.Run, State: rec.State, Reason: rec.Reason})
}

// transition moves one member to a new state, with its history entry,
// and ends the session when that was the last member.
func (o *Orchestrator) transition(s *session, node, to, reason string, now time.Time, update func(*state.NodeRun)) error {
	rec := cloneRec(s.rec)
	run := rec.Nodes[node]
	from := run.State
	run.State, run.Reason, run.Since, run.Updated = to, reason, now, now
	switch to {
	case StatePending:
		run.Deadline = now.Add(rec.Timeouts.Boot)
	case StateBooting:
		if from != StatePending { // a retry gets a fresh boot budget
			run.Deadline = now.Add(rec.Timeouts.Boot)
		}
	case StateReceiving:
		run.Deadline = now.Add(rec.Timeouts.Receive)
	case StateVerifying:
		run.Deadline = now.Add(rec.Timeouts.Verify)
	default:
		run.Deadline = time.Time{}
	}
	if update != nil {
		update(run)
	}
	e := state.HistoryEntry{Time: now, Session: rec.Name, Run: rec.Run, State: to, Reason: reason, Bytes: run.Bytes}
	if terminal(to) {
		e.Timings = run.Timings
	}
	if err := o.commit(s, rec, []histItem{{node, e}}); err != nil {
		return err
	}
	delete(s.rates, node)
	o.log.Info("node state changed", "session", rec.Name, "run", rec.Run, "node", node, "from", from, "to", to, "reason", reason)
	o.events.publish(Event{Time: now, Type: EventNode, Session: rec.Name, Run: rec.Run, Node: node, State: to, Reason: reason, Bytes: run.Bytes, Total: run.Total})
	if terminal(to) {
		o.maybeFinish(s, now)
	}
	return nil
}

// checkTimeouts fails members whose current step ran out of time.
func (o *Orchestrator) checkTimeouts(now time.Time) {
	for _, s := range o.sessions {
		if s.rec.State != SessionRunning {
			continue
		}
		for _, m := range s.rec.Members {
			run := s.rec.Nodes[m]
			if run == nil || terminal(run.State) || run.Deadline.IsZero() || now.Before(run.Deadline) {
				continue
			}
			var reason string
			switch run.State {
			case StatePending, StateBooting:
				reason = fmt.Sprintf("boot timeout: no progress from the agent within %s; check that the node PXE boots and reaches the server", s.rec.Timeouts.Boot)
			case StateReceiving:
				reason = fmt.Sprintf("receive timeout: not received within %s (%d of %d bytes)", s.rec.Timeouts.Receive, run.Bytes, run.Total)
			case StateVerifying:
				reason = fmt.Sprintf("verify timeout: not verified within %s", s.rec.Timeouts.Verify)
			}
			if err := o.transition(s, m, StateFailed, reason, now, nil); err != nil {
				o.log.Error("cannot record a timeout", "session", s.rec.Name, "node", m, "error", err)
			}
		}
	}
}

// recoverRunning restarts the Deployers of sessions that were running when
// the previous daemon stopped.
func (o *Orchestrator) recoverRunning(ctx context.Context) {
	now := time.Now()
	for _, name := range slices.Sorted(maps.Keys(o.sessions)) {
		s := o.sessions[name]
		r := s.rec
		if r.State != SessionRunning {
			continue
		}
		fail := func(err error) {
			o.log.Error("cannot resume session", "session", name, "run", r.Run, "error", err)
			o.failRemaining(s, now, "daemon restart: cannot resume: "+err.Error())
		}
		img, err := o.images.get(r.Image)
		if err == nil && img.info.ID != r.ImageID {
			err = fmt.Errorf("%w: image %q is now %s, the run started with %s", ErrImage, r.Image, img.info.ID, r.ImageID)
		}
		if err != nil {
			fail(err)
			continue
		}
		dep := o.deployers[r.Transport.Kind]
		if dep == nil {
			fail(fmt.Errorf("%w: transport %q", ErrTransport, r.Transport.Kind))
			continue
		}
		// Downtime is not the nodes' fault: every unfinished step gets at
		// least the grace period from now.
		rec := cloneRec(r)
		for _, run := range rec.Nodes {
			if terminal(run.State) || run.Deadline.IsZero() {
				continue
			}
			grace := min(o.opts.RecoveryGrace, o.stepTimeout(rec, run.State))
			if d := now.Add(grace); run.Deadline.Before(d) {
				run.Deadline = d
			}
		}
		run, err := dep.Start(ctx, o.spec(rec, img))
		if err != nil {
			fail(err)
			continue
		}
		if err := o.commit(s, rec, nil); err != nil {
			run.Stop()
			fail(err)
			continue
		}
		s.running = run
		o.watchRunning(s, run, rec.Run)
		o.log.Info("session recovered", "session", name, "run", rec.Run, "group", rec.Group, "counts", countStates(rec))
		o.maybeFinish(s, now)
	}
}

func (o *Orchestrator) stepTimeout(r *state.Session, st string) time.Duration {
	switch st {
	case StateReceiving:
		return r.Timeouts.Receive
	case StateVerifying:
		return r.Timeouts.Verify
	}
	return r.Timeouts.Boot
}

func countStates(r *state.Session) string {
	c := map[string]int{}
	for _, run := range r.Nodes {
		c[run.State]++
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(c)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, c[k]))
	}
	return strings.Join(parts, " ")
}

// autostart starts sessions marked autostart that have never run. A
// session that ran before is not started again by a daemon restart: that
// would re-image its nodes every time.
func (o *Orchestrator) autostart(ctx context.Context) {
	now := time.Now()
	for _, name := range slices.Sorted(maps.Keys(o.sessions)) {
		s := o.sessions[name]
		if !s.rec.Autostart || s.rec.Run != 0 || s.rec.State != SessionIdle {
			continue
		}
		if err := o.startLocked(ctx, s, now); err != nil {
			o.log.Error("cannot autostart session", "session", name, "error", err)
		}
	}
}

// SessionRequest creates a session over the API. Durations are Go
// durations ("10m"), rate a bit rate ("600M") or "adaptive".
type SessionRequest struct {
	Name      string   `json:"name"`
	Image     string   `json:"image"`
	Nodes     []string `json:"nodes"`
	Groups    []string `json:"groups"`
	Target    string   `json:"target"`
	After     string   `json:"after"`
	Transport *struct {
		Kind         string `json:"kind"`
		Rate         string `json:"rate"`
		MinReceivers int    `json:"min_receivers"`
		MinWait      string `json:"min_wait"`
		MaxWait      string `json:"max_wait"`
	} `json:"transport"`
	Timeouts *struct {
		Boot    string `json:"boot"`
		Receive string `json:"receive"`
		Verify  string `json:"verify"`
	} `json:"timeouts"`
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

// CreateSession defines a new session (it does not start it).
func (o *Orchestrator) CreateSession(req *SessionRequest) (*SessionStatus, error) {
	rec, err := o.validateRequest(req)
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.sessions[rec.Name] != nil {
		return nil, fmt.Errorf("%w: session %q already exists", ErrConflict, rec.Name)
	}
	s := &session{rates: map[string]*rateMeter{}}
	if err := o.commit(s, rec, nil); err != nil {
		return nil, err
	}
	o.sessions[rec.Name] = s
	o.log.Info("session created", "session", rec.Name, "image", rec.Image, "nodes", len(rec.Members))
	o.events.publish(Event{Type: EventSession, Session: rec.Name, State: SessionIdle})
	return o.statusLocked(s), nil
}

func (o *Orchestrator) validateRequest(req *SessionRequest) (*state.Session, error) {
	bad := func(format string, args ...any) (*state.Session, error) {
		return nil, fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
	}
	if !nameRE.MatchString(req.Name) {
		return bad("name %q: use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit", req.Name)
	}
	if req.Image == "" {
		return bad("image is required (configured images: %s)", strings.Join(o.images.names(), ", "))
	}
	if o.images.images[req.Image] == nil {
		return bad("image %q is not configured (configured images: %s)", req.Image, strings.Join(o.images.names(), ", "))
	}
	var members []string
	for _, e := range req.Nodes {
		names, err := config.ExpandRange(e)
		if err != nil {
			return bad("nodes: %v; write names like \"pc001\" or ranges like \"pc[001-080]\"", err)
		}
		members = append(members, names...)
	}
	for _, g := range req.Groups {
		names, ok := o.groups[g]
		if !ok {
			return bad("groups: no node_group %q in the configuration", g)
		}
		members = append(members, names...)
	}
	seen := map[string]bool{}
	var uniq []string
	for _, m := range members {
		if !seen[m] {
			seen[m] = true
			uniq = append(uniq, m)
		}
	}
	if len(uniq) == 0 {
		return bad("a session needs nodes: set \"nodes\" (names or ranges) or \"groups\"")
	}
	rec := &state.Session{
		Name: req.Name, Origin: state.OriginAPI, Image: req.Image, Members: uniq, Target: req.Target, After: req.After,
		State: SessionIdle, Created: time.Now(),
		Transport: state.Transport{Kind: "multicast"},
		Timeouts:  state.Timeouts{Boot: 10 * time.Minute, Receive: 2 * time.Hour, Verify: 30 * time.Minute},
	}
	if rec.Target == "" {
		rec.Target = config.DefaultTarget
	} else if !strings.HasPrefix(rec.Target, "/") {
		return bad("target %q must be an absolute device path such as /dev/sda", rec.Target)
	}
	switch rec.After {
	case "":
		rec.After = config.DefaultAfter
	case "reboot", "poweroff", "stay":
	default:
		return bad("after %q: use \"reboot\", \"poweroff\" or \"stay\"", rec.After)
	}
	parseDur := func(field, s string, dst *time.Duration, positive bool) error {
		if s == "" {
			return nil
		}
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || (positive && d == 0) {
			return fmt.Errorf("%w: %s %q: write a duration such as \"30s\" or \"10m\"", ErrInvalid, field, s)
		}
		*dst = d
		return nil
	}
	if t := req.Transport; t != nil {
		switch t.Kind {
		case "", "multicast":
		case "http":
			rec.Transport.Kind = "http"
		default:
			return bad("transport.kind %q: use \"multicast\" or \"http\"", t.Kind)
		}
		if t.Rate != "" && t.Rate != "adaptive" {
			n, err := config.ParseRate(t.Rate)
			if err != nil {
				return bad("transport.rate %q: %v", t.Rate, err)
			}
			rec.Transport.RateBytes = n
		}
		if t.MinReceivers < 0 {
			return bad("transport.min_receivers %d: cannot be negative", t.MinReceivers)
		}
		rec.Transport.MinReceivers = t.MinReceivers
		if err := parseDur("transport.min_wait", t.MinWait, &rec.Transport.MinWait, false); err != nil {
			return nil, err
		}
		if err := parseDur("transport.max_wait", t.MaxWait, &rec.Transport.MaxWait, false); err != nil {
			return nil, err
		}
		if rec.Transport.MaxWait > 0 && rec.Transport.MinWait > rec.Transport.MaxWait {
			return bad("transport.min_wait %s is longer than max_wait %s", rec.Transport.MinWait, rec.Transport.MaxWait)
		}
	}
	if t := req.Timeouts; t != nil {
		for _, f := range []struct {
			name, text string
			dst        *time.Duration
		}{{"timeouts.boot", t.Boot, &rec.Timeouts.Boot}, {"timeouts.receive", t.Receive, &rec.Timeouts.Receive}, {"timeouts.verify", t.Verify, &rec.Timeouts.Verify}} {
			if err := parseDur(f.name, f.text, f.dst, true); err != nil {
				return nil, err
			}
		}
	}
	return rec, nil
}

// DeleteSession removes a session created over the API that is not
// running. Configured sessions are removed by editing the configuration.
func (o *Orchestrator) DeleteSession(name string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	s, err := o.sessionLocked(name)
	if err != nil {
		return err
	}
	if s.rec.Origin == state.OriginConfig {
		return fmt.Errorf("%w: session %q is defined in the configuration; remove its session block instead", ErrConflict, name)
	}
	if s.rec.State == SessionRunning {
		return fmt.Errorf("%w: session %q is running; cancel it first", ErrConflict, name)
	}
	if err := o.store.Update(func(tx *state.Tx) error { return tx.DeleteSession(name) }); err != nil {
		return fmt.Errorf("orchestrator: write state: %w", err)
	}
	delete(o.sessions, name)
	for tok, id := range o.tokens {
		if id.session == name {
			delete(o.tokens, tok)
		}
	}
	o.log.Info("session deleted", "session", name)
	return nil
}
