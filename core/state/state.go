// Package state keeps the orchestrator's durable state in one bbolt file
// in the state directory: nodes (configured, created over the API, or
// discovered when an unknown MAC asked for work), sessions with every
// member's progress, and a bounded history per node. One binary, no
// database server: the daemon opens the file at start and recovers from
// it after a crash.
//
// Records are stored as JSON, so a newer daemon can read what an older one
// wrote; the schema version in the meta bucket guards incompatible changes.
package state

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterr "go.etcd.io/bbolt/errors"
)

// Errors returned by this package.
var (
	ErrNotFound = errors.New("state: not found")
	ErrLocked   = errors.New("state: database is in use by another process")
	ErrSchema   = errors.New("state: unsupported schema version")
	ErrInvalid  = errors.New("state: invalid record")
)

// FileName is the database file in the state directory.
const FileName = "diskcast.db"

// SchemaVersion is the layout this package reads and writes.
const SchemaVersion = 1

// MaxHistory bounds the history kept per node; older entries are dropped.
const MaxHistory = 1000

var (
	bucketMeta     = []byte("meta")
	bucketNodes    = []byte("nodes")
	bucketMACs     = []byte("macs")
	bucketSessions = []byte("sessions")
	bucketHistory  = []byte("history")
	keySchema      = []byte("schema")
)

// Node origins.
const (
	OriginConfig     = "config"     // a node block in the configuration
	OriginAPI        = "api"        // created with POST /api/v1/nodes
	OriginDiscovered = "discovered" // an unknown MAC asked for an assignment
)

// Node is one machine the orchestrator knows.
type Node struct {
	Name      string            `json:"name"`
	MAC       string            `json:"mac"` // canonical lower-case form
	IP        string            `json:"ip,omitempty"`
	Disk      string            `json:"disk,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	Origin    string            `json:"origin"`
	FirstSeen time.Time         `json:"first_seen,omitzero"`
	LastSeen  time.Time         `json:"last_seen,omitzero"`
	LastAddr  string            `json:"last_addr,omitempty"`
}

// Session is a session's definition and the state of its latest run.
type Session struct {
	Name      string    `json:"name"`
	Origin    string    `json:"origin"` // OriginConfig or OriginAPI
	Image     string    `json:"image"`
	Members   []string  `json:"members"`
	Target    string    `json:"target"`
	After     string    `json:"after"`
	Autostart bool      `json:"autostart,omitempty"`
	Transport Transport `json:"transport"`
	Timeouts  Timeouts  `json:"timeouts"`

	// The latest run; Run is 0 before the first start.
	Run       int                 `json:"run"`
	State     string              `json:"state"`
	Reason    string              `json:"reason,omitempty"`
	Created   time.Time           `json:"created"`
	Started   time.Time           `json:"started,omitzero"`
	Ended     time.Time           `json:"ended,omitzero"`
	ImageID   string              `json:"image_id,omitempty"`
	ImagePath string              `json:"image_path,omitempty"`
	Group     string              `json:"group,omitempty"` // multicast group:port
	SessionID uint64              `json:"session_id,omitempty"`
	Key       []byte              `json:"key,omitempty"`          // transport authentication secret
	Secret    []byte              `json:"agent_secret,omitempty"` // derives the agents' tokens
	Nodes     map[string]*NodeRun `json:"nodes,omitempty"`
}

// Transport holds a session's transport settings.
type Transport struct {
	Kind         string        `json:"kind"`
	RateBytes    int64         `json:"rate_bytes,omitempty"`
	MinReceivers int           `json:"min_receivers,omitempty"`
	MinWait      time.Duration `json:"min_wait,omitempty"`
	MaxWait      time.Duration `json:"max_wait,omitempty"`
}

// Timeouts bound each step of a node's run.
type Timeouts struct {
	Boot    time.Duration `json:"boot"`
	Receive time.Duration `json:"receive"`
	Verify  time.Duration `json:"verify"`
}

// NodeRun is one member's progress in a session's run.
type NodeRun struct {
	State       string             `json:"state"`
	Reason      string             `json:"reason,omitempty"`
	Since       time.Time          `json:"since"`             // when State was entered
	Deadline    time.Time          `json:"deadline,omitzero"` // when the current step times out
	Updated     time.Time          `json:"updated,omitzero"`
	Bytes       int64              `json:"bytes,omitempty"`
	Total       int64              `json:"total,omitempty"`
	Chunks      int64              `json:"chunks,omitempty"`
	ChunksTotal int64              `json:"chunks_total,omitempty"`
	Timings     map[string]float64 `json:"timings,omitempty"`
}

// HistoryEntry is one event in a node's life: a state change in a
// session, a discovery, a retry.
type HistoryEntry struct {
	Seq     uint64             `json:"seq"`
	Time    time.Time          `json:"time"`
	Session string             `json:"session,omitempty"`
	Run     int                `json:"run,omitempty"`
	State   string             `json:"state"`
	Reason  string             `json:"reason,omitempty"`
	Bytes   int64              `json:"bytes,omitempty"`
	Timings map[string]float64 `json:"timings,omitempty"`
}

// Store is an open state database.
type Store struct {
	db   *bolt.DB
	path string
}

// Open opens (creating when needed) the database in dir. It fails with
// ErrLocked after a second when another process holds it.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state: create state dir: %w", err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolterr.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s; is another diskcast serve running with this state_dir?", ErrLocked, path)
		}
		return nil, fmt.Errorf("state: open %s: %w", path, err)
	}
	s := &Store{db: db, path: path}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketNodes, bucketMACs, bucketSessions, bucketHistory} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		v := meta.Get(keySchema)
		if v == nil {
			return meta.Put(keySchema, binary.BigEndian.AppendUint32(nil, SchemaVersion))
		}
		if len(v) != 4 || binary.BigEndian.Uint32(v) != SchemaVersion {
			return fmt.Errorf("%w: %s has schema %x, this diskcast reads %d; use the diskcast release that wrote it",
				ErrSchema, path, v, SchemaVersion)
		}
		return nil
	})
	if err != nil {
		db.Close()
		if errors.Is(err, ErrSchema) {
			return nil, err
		}
		return nil, fmt.Errorf("state: initialise %s: %w", path, err)
	}
	return s, nil
}

// Path is the database file.
func (s *Store) Path() string { return s.path }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Update runs fn in a read-write transaction, committed (and synced) when
// fn returns nil.
func (s *Store) Update(fn func(*Tx) error) error {
	return s.db.Update(func(tx *bolt.Tx) error { return fn(&Tx{tx}) })
}

// View runs fn in a read-only transaction.
func (s *Store) View(fn func(*Tx) error) error {
	return s.db.View(func(tx *bolt.Tx) error { return fn(&Tx{tx}) })
}

// Tx is a transaction with typed accessors.
type Tx struct{ tx *bolt.Tx }

func get[T any](b *bolt.Bucket, key, what string) (*T, error) {
	v := b.Get([]byte(key))
	if v == nil {
		return nil, fmt.Errorf("%w: %s %q", ErrNotFound, what, key)
	}
	out := new(T)
	if err := json.Unmarshal(v, out); err != nil {
		return nil, fmt.Errorf("%w: %s %q: %v", ErrInvalid, what, key, err)
	}
	return out, nil
}

func all[T any](b *bolt.Bucket, what string) ([]*T, error) {
	var out []*T
	err := b.ForEach(func(k, v []byte) error {
		if v == nil { // nested bucket
			return nil
		}
		r := new(T)
		if err := json.Unmarshal(v, r); err != nil {
			return fmt.Errorf("%w: %s %q: %v", ErrInvalid, what, k, err)
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

func put(b *bolt.Bucket, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), data)
}

// Node returns the node called name.
func (t *Tx) Node(name string) (*Node, error) {
	return get[Node](t.tx.Bucket(bucketNodes), name, "node")
}

// NodeByMAC returns the node with the MAC (canonical form).
func (t *Tx) NodeByMAC(mac string) (*Node, error) {
	name := t.tx.Bucket(bucketMACs).Get([]byte(mac))
	if name == nil {
		return nil, fmt.Errorf("%w: MAC %s", ErrNotFound, mac)
	}
	return t.Node(string(name))
}

// Nodes returns every node, by name.
func (t *Tx) Nodes() ([]*Node, error) {
	return all[Node](t.tx.Bucket(bucketNodes), "node")
}

// PutNode stores n and indexes its MAC. Another node holding the same MAC
// is an error: delete or change it first.
func (t *Tx) PutNode(n *Node) error {
	if n.Name == "" {
		return fmt.Errorf("%w: node without a name", ErrInvalid)
	}
	macs := t.tx.Bucket(bucketMACs)
	if n.MAC != "" {
		if owner := macs.Get([]byte(n.MAC)); owner != nil && string(owner) != n.Name {
			return fmt.Errorf("%w: node %q: MAC %s already belongs to node %q", ErrInvalid, n.Name, n.MAC, owner)
		}
	}
	if old, err := t.Node(n.Name); err == nil && old.MAC != "" && old.MAC != n.MAC {
		if err := macs.Delete([]byte(old.MAC)); err != nil {
			return err
		}
	}
	if n.MAC != "" {
		if err := macs.Put([]byte(n.MAC), []byte(n.Name)); err != nil {
			return err
		}
	}
	return put(t.tx.Bucket(bucketNodes), n.Name, n)
}

// DeleteNode removes a node and its MAC index entry; its history stays.
func (t *Tx) DeleteNode(name string) error {
	n, err := t.Node(name)
	if err != nil {
		return err
	}
	if n.MAC != "" {
		if err := t.tx.Bucket(bucketMACs).Delete([]byte(n.MAC)); err != nil {
			return err
		}
	}
	return t.tx.Bucket(bucketNodes).Delete([]byte(name))
}

// Session returns the session called name.
func (t *Tx) Session(name string) (*Session, error) {
	return get[Session](t.tx.Bucket(bucketSessions), name, "session")
}

// Sessions returns every session, by name.
func (t *Tx) Sessions() ([]*Session, error) {
	return all[Session](t.tx.Bucket(bucketSessions), "session")
}

// PutSession stores s.
func (t *Tx) PutSession(s *Session) error {
	if s.Name == "" {
		return fmt.Errorf("%w: session without a name", ErrInvalid)
	}
	return put(t.tx.Bucket(bucketSessions), s.Name, s)
}

// DeleteSession removes a session.
func (t *Tx) DeleteSession(name string) error {
	b := t.tx.Bucket(bucketSessions)
	if b.Get([]byte(name)) == nil {
		return fmt.Errorf("%w: session %q", ErrNotFound, name)
	}
	return b.Delete([]byte(name))
}

// AppendHistory adds e to node's history (setting e.Seq) and drops the
// oldest entries beyond MaxHistory.
func (t *Tx) AppendHistory(node string, e *HistoryEntry) error {
	b, err := t.tx.Bucket(bucketHistory).CreateBucketIfNotExists([]byte(node))
	if err != nil {
		return err
	}
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	e.Seq = seq
	if err := put(b, string(binary.BigEndian.AppendUint64(nil, seq)), e); err != nil {
		return err
	}
	if seq > MaxHistory {
		c := b.Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= seq-MaxHistory; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
	}
	return nil
}

// History returns node's newest limit entries (all when limit <= 0),
// oldest first.
func (t *Tx) History(node string, limit int) ([]*HistoryEntry, error) {
	b := t.tx.Bucket(bucketHistory).Bucket([]byte(node))
	if b == nil {
		return nil, nil
	}
	var out []*HistoryEntry
	c := b.Cursor()
	for k, v := c.Last(); k != nil && (limit <= 0 || len(out) < limit); k, v = c.Prev() {
		e := new(HistoryEntry)
		if err := json.Unmarshal(v, e); err != nil {
			return nil, fmt.Errorf("%w: history of %q entry %d: %v", ErrInvalid, node, binary.BigEndian.Uint64(k), err)
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out, nil
}
