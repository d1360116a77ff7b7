// Package orchestrator runs diskcast's imaging sessions: it keeps the
// nodes and sessions of the configuration (and those created over the API
// or discovered on the network) in the state store, starts and cancels
// session runs, hands each member node its assignment, follows every node
// through pending → booting → receiving → verifying → done or failed (with
// a reason and a timeout per step), and publishes events. The transport
// that moves the image is a Deployer; the REST API (core/api) is a thin
// layer over this package.
//
// A daemon that is killed recovers from the store: running sessions keep
// their multicast group, key and agent tokens, their Deployer is started
// again and the agents carry on where they were.
package orchestrator

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/diskcast/diskcast/core/config"
	"github.com/diskcast/diskcast/core/state"
	"github.com/hashicorp/go-hclog"
)

// Errors returned by the orchestrator. The API maps them to HTTP status
// codes; the messages say what is wrong and what to do.
var (
	ErrNotFound     = errors.New("orchestrator: not found")
	ErrInvalid      = errors.New("orchestrator: invalid request")
	ErrConflict     = errors.New("orchestrator: conflict")
	ErrUnauthorized = errors.New("orchestrator: unauthorized")
	ErrForbidden    = errors.New("orchestrator: forbidden")
	ErrImage        = errors.New("orchestrator: image unusable")
	ErrPool         = errors.New("orchestrator: multicast pool exhausted")
	ErrTransport    = errors.New("orchestrator: transport unavailable")
	ErrClosed       = errors.New("orchestrator: closed")
)

// A node's states within a session run.
const (
	StatePending   = "pending"   // the run started; the node has not shown up
	StateBooting   = "booting"   // the node asked for its assignment
	StateReceiving = "receiving" // the agent receives and writes the image
	StateVerifying = "verifying" // the agent verifies what it wrote
	StateDone      = "done"
	StateFailed    = "failed"
)

// A session's states.
const (
	SessionIdle      = "idle"      // defined, never started
	SessionRunning   = "running"   // a run is in progress
	SessionDone      = "done"      // every member finished done
	SessionFailed    = "failed"    // every member finished, some failed
	SessionCancelled = "cancelled" // cancelled by the operator
)

// stateRank orders node states; an agent may only move forward.
var stateRank = map[string]int{StatePending: 0, StateBooting: 1, StateReceiving: 2, StateVerifying: 3, StateDone: 4, StateFailed: 4}

func terminal(st string) bool { return st == StateDone || st == StateFailed }

// Options tune an Orchestrator; the zero value works.
type Options struct {
	Logger hclog.Logger
	// Deployers by transport kind ("multicast", "http"). "http" defaults
	// to HTTPDeployer; a session whose kind has no Deployer cannot start.
	Deployers map[string]Deployer
	// Tick is how often timeouts are checked and progress is written to
	// the store (default 1 s).
	Tick time.Duration
	// RecoveryGrace is the least time a node gets to finish its current
	// step after the daemon restarted, so that downtime is not charged to
	// the nodes (default 1 min, at most the step's timeout).
	RecoveryGrace time.Duration
}

// Orchestrator owns the sessions and nodes of one daemon.
type Orchestrator struct {
	log       hclog.Logger
	store     *state.Store
	server    config.Server
	groups    map[string][]string // node groups from the configuration
	images    *catalog
	deployers map[string]Deployer
	opts      Options
	events    broker

	mu       sync.Mutex
	nodes    map[string]*state.Node // by name
	macs     map[string]string      // MAC → node name
	sessions map[string]*session
	tokens   map[string]agentID // agent token → session and node
	dirty    bool               // progress or node sightings not yet in the store
	closed   bool
	boots    bootLog // boot plugin events, for boot timings

	unicastBytes atomic.Int64 // chunk bytes served by the API, all sessions

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type session struct {
	rec     *state.Session
	running Running
	rates   map[string]*rateMeter
	served  atomic.Int64 // chunk bytes the API served to this run
}

type agentID struct{ session, node string }

type rateMeter struct {
	bytes int64
	at    time.Time
	rate  float64
}

// New opens the state store in the configuration's state dir, merges the
// configuration into it, recovers running sessions and starts autostart
// sessions that never ran.
func New(cfg *config.Config, opts Options) (*Orchestrator, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Tick <= 0 {
		opts.Tick = time.Second
	}
	if opts.RecoveryGrace <= 0 {
		opts.RecoveryGrace = time.Minute
	}
	deps := map[string]Deployer{"http": HTTPDeployer{}}
	maps.Copy(deps, opts.Deployers)
	store, err := state.Open(cfg.Server.StateDir)
	if err != nil {
		return nil, err
	}
	o := &Orchestrator{
		log:       opts.Logger,
		store:     store,
		server:    cfg.Server,
		groups:    map[string][]string{},
		images:    newCatalog(cfg.Images),
		deployers: deps,
		opts:      opts,
		nodes:     map[string]*state.Node{},
		macs:      map[string]string{},
		sessions:  map[string]*session{},
		tokens:    map[string]agentID{},
	}
	for _, g := range cfg.Groups {
		o.groups[g.Name] = g.Expanded
	}
	if err := o.load(cfg); err != nil {
		store.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	o.cancel = cancel
	o.mu.Lock()
	o.recoverRunning(ctx)
	o.autostart(ctx)
	o.mu.Unlock()
	o.wg.Go(func() { o.loop(ctx) })
	return o, nil
}

// Close stops the Deployers and writes pending progress; sessions stay
// running in the store, so the next daemon recovers them.
func (o *Orchestrator) Close() error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil
	}
	o.closed = true
	// Stop the transports first: their watchers end when they do.
	for _, s := range o.sessions {
		o.stopRunning(s)
	}
	o.mu.Unlock()
	o.cancel()
	o.wg.Wait()
	o.mu.Lock()
	defer o.mu.Unlock()
	err := o.flushLocked()
	o.images.close()
	return errors.Join(err, o.store.Close())
}

// StatePath is the state database file.
func (o *Orchestrator) StatePath() string { return o.store.Path() }

// Healthy checks that the state store answers.
func (o *Orchestrator) Healthy() error {
	o.mu.Lock()
	closed := o.closed
	o.mu.Unlock()
	if closed {
		return ErrClosed
	}
	return o.store.View(func(tx *state.Tx) error { _, err := tx.Session(""); return ignoreNotFound(err) })
}

func ignoreNotFound(err error) error {
	if errors.Is(err, state.ErrNotFound) {
		return nil
	}
	return err
}

// load reads the store and merges the configuration into it.
func (o *Orchestrator) load(cfg *config.Config) error {
	now := time.Now()
	return o.store.Update(func(tx *state.Tx) error {
		stored, err := tx.Nodes()
		if err != nil {
			return err
		}
		byName := map[string]*state.Node{}
		for _, n := range stored {
			byName[n.Name] = n
		}
		inConfig := map[string]bool{}
		for _, cn := range cfg.Nodes {
			inConfig[cn.Name] = true
		}
		// Nodes the configuration no longer has go first, so their MACs
		// are free for the nodes that replace them.
		for _, n := range stored {
			if n.Origin == state.OriginConfig && !inConfig[n.Name] {
				o.log.Info("node removed from the configuration", "node", n.Name)
				if err := tx.DeleteNode(n.Name); err != nil {
					return err
				}
				delete(byName, n.Name)
			}
		}
		for _, cn := range cfg.Nodes {
			mac := cn.HW.String()
			n := byName[cn.Name]
			if n == nil {
				n = &state.Node{Name: cn.Name}
			}
			// A node discovered or created over the API with this MAC
			// becomes the configured node.
			if owner, err := tx.NodeByMAC(mac); err == nil && owner.Name != cn.Name {
				o.log.Info("node merged into its configured definition", "node", cn.Name, "was", owner.Name, "origin", owner.Origin, "mac", mac)
				if n.FirstSeen.IsZero() || (!owner.FirstSeen.IsZero() && owner.FirstSeen.Before(n.FirstSeen)) {
					n.FirstSeen = owner.FirstSeen
				}
				if owner.LastSeen.After(n.LastSeen) {
					n.LastSeen, n.LastAddr = owner.LastSeen, owner.LastAddr
				}
				if err := tx.DeleteNode(owner.Name); err != nil {
					return err
				}
				delete(byName, owner.Name)
			}
			n.MAC, n.IP, n.Disk, n.Labels, n.Origin = mac, cn.IP, cn.Disk, cn.Labels, state.OriginConfig
			if err := tx.PutNode(n); err != nil {
				return err
			}
			byName[n.Name] = n
		}
		for name, n := range byName {
			o.nodes[name] = n
			if n.MAC != "" {
				o.macs[n.MAC] = name
			}
		}

		sessions, err := tx.Sessions()
		if err != nil {
			return err
		}
		recs := map[string]*state.Session{}
		for _, s := range sessions {
			recs[s.Name] = s
		}
		inConfig = map[string]bool{}
		for _, cs := range cfg.Sessions {
			inConfig[cs.Name] = true
			rec := recs[cs.Name]
			if rec == nil {
				rec = &state.Session{Name: cs.Name, State: SessionIdle, Created: now}
			}
			if rec.Origin == state.OriginAPI {
				o.log.Warn("session defined in the configuration replaces the one created over the API", "session", cs.Name)
			}
			rec.Origin = state.OriginConfig
			spec := specFromConfig(cs)
			if rec.State == SessionRunning {
				if !sameSpec(rec, spec) {
					o.log.Warn("session changed in the configuration while running; the change applies to its next run", "session", cs.Name)
				}
			} else {
				applySpec(rec, spec)
			}
			if err := tx.PutSession(rec); err != nil {
				return err
			}
			recs[cs.Name] = rec
		}
		for name, rec := range recs {
			if rec.Origin == state.OriginConfig && !inConfig[name] {
				if rec.State == SessionRunning {
					o.log.Warn("session removed from the configuration keeps running until it ends", "session", name)
				} else {
					o.log.Info("session removed from the configuration", "session", name)
					if err := tx.DeleteSession(name); err != nil {
						return err
					}
					continue
				}
			}
			s := &session{rec: rec, rates: map[string]*rateMeter{}}
			o.sessions[name] = s
			o.indexTokens(s)
		}
		return nil
	})
}

// specFromConfig is a session definition as the store keeps it.
func specFromConfig(cs *config.Session) *state.Session {
	s := &state.Session{
		Image: cs.Image, Members: slices.Clone(cs.Members), Target: cs.Target, After: cs.After, Autostart: cs.Autostart,
	}
	if t := cs.Transport; t != nil {
		s.Transport = state.Transport{Kind: t.Kind, RateBytes: t.RateBytes, MinReceivers: t.MinReceivers, MinWait: t.MinWaitDur, MaxWait: t.MaxWaitDur}
	}
	if t := cs.Timeouts; t != nil {
		s.Timeouts = state.Timeouts{Boot: t.BootDur, Receive: t.ReceiveDur, Verify: t.VerifyDur}
	}
	return s
}

func sameSpec(a, b *state.Session) bool {
	return a.Image == b.Image && slices.Equal(a.Members, b.Members) && a.Target == b.Target && a.After == b.After &&
		a.Autostart == b.Autostart && a.Transport == b.Transport && a.Timeouts == b.Timeouts
}

func applySpec(dst, spec *state.Session) {
	dst.Image, dst.Members, dst.Target, dst.After, dst.Autostart = spec.Image, spec.Members, spec.Target, spec.After, spec.Autostart
	dst.Transport, dst.Timeouts = spec.Transport, spec.Timeouts
}

// agentToken derives a member's token from its run's secret: each node
// gets its own, and a new run (new secret) invalidates the old ones.
func agentToken(secret []byte, session, node string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("diskcast agent token v1\x00" + session + "\x00" + node))
	return hex.EncodeToString(m.Sum(nil))
}

// indexTokens (re)builds the token index entries of s.
func (o *Orchestrator) indexTokens(s *session) {
	for tok, id := range o.tokens {
		if id.session == s.rec.Name {
			delete(o.tokens, tok)
		}
	}
	if len(s.rec.Secret) == 0 {
		return
	}
	for _, m := range s.rec.Members {
		o.tokens[agentToken(s.rec.Secret, s.rec.Name, m)] = agentID{s.rec.Name, m}
	}
}

// IsAgentToken reports whether tok is a member's agent token (of any
// session run still known), so the API can tell a wrong token from an
// agent using an admin endpoint.
func (o *Orchestrator) IsAgentToken(tok string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.tokens[tok]
	return ok
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("orchestrator: no randomness: " + err.Error())
	}
	return b
}

// randomSessionID is a non-zero 53-bit number, exact in any JSON reader.
func randomSessionID() uint64 {
	for {
		if id := binary.LittleEndian.Uint64(randomBytes(8)) & (1<<53 - 1); id != 0 {
			return id
		}
	}
}

// allocGroup finds a group and a port pair (data P, control P+1) that no
// running session uses.
func (o *Orchestrator) allocGroup() (netip.AddrPort, error) {
	usedAddr, usedPort := map[netip.Addr]bool{}, map[uint16]bool{}
	for _, s := range o.sessions {
		if s.rec.State != SessionRunning || s.rec.Group == "" {
			continue
		}
		if ap, err := netip.ParseAddrPort(s.rec.Group); err == nil {
			usedAddr[ap.Addr()], usedPort[ap.Port()] = true, true
		}
	}
	pool := o.server.Pool
	if !pool.IsValid() {
		pool = netip.MustParsePrefix(config.DefaultPool)
	}
	lo, hi := o.server.PortLow, o.server.PortHigh
	if lo == 0 {
		lo, hi = 40000, 40999
	}
	var addr netip.Addr
	for a := pool.Addr(); a.IsValid() && pool.Contains(a); a = a.Next() {
		if !usedAddr[a] {
			addr = a
			break
		}
	}
	port := 0
	for p := lo; p+1 <= hi; p += 2 {
		if !usedPort[uint16(p)] {
			port = p
			break
		}
	}
	if !addr.IsValid() || port == 0 {
		return netip.AddrPort{}, fmt.Errorf("%w: %d sessions are running and the pool %s with ports %d-%d has no free group or port pair; wait for one to end or widen multicast_pool/ports",
			ErrPool, len(usedAddr), pool, lo, hi)
	}
	return netip.AddrPortFrom(addr, uint16(port)), nil
}

// loop checks timeouts and writes progress until ctx ends.
func (o *Orchestrator) loop(ctx context.Context) {
	t := time.NewTicker(o.opts.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			o.mu.Lock()
			o.checkTimeouts(now)
			if err := o.flushLocked(); err != nil {
				o.log.Error("cannot write progress to the state store", "error", err)
			}
			o.mu.Unlock()
		}
	}
}

// flushLocked writes sessions with unsaved progress and node sightings.
func (o *Orchestrator) flushLocked() error {
	if !o.dirty {
		return nil
	}
	err := o.store.Update(func(tx *state.Tx) error {
		for _, s := range o.sessions {
			if s.rec.State == SessionRunning {
				if err := tx.PutSession(s.rec); err != nil {
					return err
				}
			}
		}
		for _, n := range o.nodes {
			if err := tx.PutNode(n); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		o.dirty = false
	}
	return err
}
