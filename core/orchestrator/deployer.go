package orchestrator

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Deployer moves a session's image to its nodes. The orchestrator owns the
// session's parameters (group, port, key, start policy) and the nodes'
// states; a Deployer only sends. One Deployer serves every session of its
// transport kind; Start is called once per session run, also when a
// daemon restarts and recovers a running session.
type Deployer interface {
	Start(ctx context.Context, spec *SessionSpec) (Running, error)
}

// SessionSpec is what a Deployer needs to send one session run.
type SessionSpec struct {
	Session string
	Run     int
	// The image, as opened and checked by the orchestrator. ImagePath is
	// the file; Meta is its header, index and trailer bytes concatenated
	// (what receivers get first); Chunks is the number of chunks.
	ImageName string
	ImageID   string
	ImagePath string
	Meta      []byte
	Chunks    int
	// Group is the multicast group and data port allocated from the
	// server's pool; the next port (Group.Port()+1) is reserved too.
	Group netip.AddrPort
	// SessionID and Key authenticate the session's packets; agents get
	// both in their assignment.
	SessionID uint64
	Key       []byte
	// RateBytes caps the send rate in bytes/s; 0 means adaptive.
	RateBytes int64
	// Start policy: wait for MinReceivers and MinWait, or at most MaxWait.
	MinReceivers     int
	MinWait, MaxWait time.Duration
	// Interface is the server's multicast interface ("" for the route's).
	Interface string
	// Nodes are the members' names.
	Nodes  []string
	Logger hclog.Logger
}

// Running is one session run being sent.
type Running interface {
	// Stats reports what was sent so far; it must be cheap.
	Stats() DeployStats
	// Params are extra transport parameters for the agents' assignment.
	Params() map[string]string
	// Stop stops sending; it is idempotent and returns once stopped.
	Stop()
	// Done is closed when sending ended, by Stop or on its own; Err then
	// says why it ended on its own (nil when it finished normally).
	Done() <-chan struct{}
	Err() error
}

// DeployStats counts what a Running sent.
type DeployStats struct {
	BytesSent          int64 `json:"bytes_sent"`
	BytesRetransmitted int64 `json:"bytes_retransmitted"`
	Receivers          int   `json:"receivers"`
}

// chunkObserver is implemented by a Running that wants to count the chunks
// the API serves to its session's agents. whole is false for a Range
// request that sent part of the chunk.
type chunkObserver interface {
	ChunkServed(node string, chunk int, bytes int64, whole bool)
}

// HTTPDeployer is the transport that needs nothing but the daemon: agents
// fetch the image metadata and chunks from the daemon's own API
// (GET /api/v1/images/NAME/meta and /chunks/N, with their agent token).
// Its Running counts the bytes served and, as retransmitted, chunks a node
// fetched again.
type HTTPDeployer struct{}

// Start begins a session run; the API serves it from now on.
func (HTTPDeployer) Start(_ context.Context, spec *SessionSpec) (Running, error) {
	return &httpRun{chunks: spec.Chunks, seen: map[string][]bool{}, done: make(chan struct{})}, nil
}

type httpRun struct {
	mu       sync.Mutex
	chunks   int
	seen     map[string][]bool
	sent     int64
	resent   int64
	stopOnce sync.Once
	done     chan struct{}
}

func (r *httpRun) ChunkServed(node string, chunk int, n int64, whole bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent += n
	seen := r.seen[node]
	if seen == nil {
		seen = make([]bool, r.chunks)
		r.seen[node] = seen
	}
	if chunk < 0 || chunk >= len(seen) {
		return
	}
	// Bytes of a chunk the node already had in full are sent again; a
	// partial (Range) fetch completes a chunk only in the node's eyes.
	if seen[chunk] {
		r.resent += n
	}
	if whole {
		seen[chunk] = true
	}
}

func (r *httpRun) Stats() DeployStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return DeployStats{BytesSent: r.sent, BytesRetransmitted: r.resent, Receivers: len(r.seen)}
}

func (r *httpRun) Params() map[string]string { return nil }
func (r *httpRun) Stop()                     { r.stopOnce.Do(func() { close(r.done) }) }
func (r *httpRun) Done() <-chan struct{}     { return r.done }
func (r *httpRun) Err() error                { return nil }
