// Package transport is the contract between diskcast and its transport
// plugins, which move the chunks of an image from the host that has it to
// the nodes that want it (multicast, unicast HTTP, ...).
//
// The core owns the image and the target. On the sending side it hands
// the plugin a Source: the image metadata, which receivers get first and
// the transport carries as an opaque blob, the stored size of each chunk,
// and the chunks themselves. On the receiving side the plugin hands every
// blob and chunk it gets to a Sink: the core parses the metadata, says
// which chunks the target already holds (an interrupted restore resumes),
// and verifies each chunk against the image index before it writes it.
// Chunks are identified by their index in the image; the plugin only
// carries bytes.
//
// Changing anything exported here breaks every transport plugin built
// against an earlier SDK: add, never change, or bump base.APIVersion.
package transport

import (
	"context"
	"errors"
	"time"

	"github.com/diskcast/diskcast/sdk/base"
)

// Errors of transport plugins and of the core's source and sink.
var (
	// ErrNoChunk means a chunk index is outside the image.
	ErrNoChunk = errors.New("transport: no such chunk")
	// ErrSession means the session parameters are unusable; the message
	// names the parameter.
	ErrSession = errors.New("transport: bad session parameters")
	// ErrChecksum means a chunk did not match the image index; the
	// transport should get it again.
	ErrChecksum = errors.New("transport: chunk does not match the image index")
	// ErrNoRepair means the core has no other way to fetch a chunk.
	ErrNoRepair = errors.New("transport: no repair source")
)

// Session is one transfer of one image.
type Session struct {
	ID      string
	ImageID []byte // the image's 16-byte ID, when known ahead
	Chunks  int64  // chunks in the image, when known ahead
	// Params are the transport's own settings for this session, such as
	// a multicast group and port, a key or a rate limit. Each transport
	// documents its keys.
	Params map[string]string
}

// Capabilities lists what a transport offers.
type Capabilities struct {
	Multicast bool `json:"multicast"` // one send reaches many receivers
	Repair    bool `json:"repair"`    // Fetch gets single chunks on request
}

// Stats is what a transport reports while it runs and when it ends. The
// named fields have the same meaning for every transport; Counters holds
// a transport's own.
type Stats struct {
	Elapsed time.Duration
	// Bytes are chunk payload bytes sent (sender) or delivered to the
	// sink (receiver).
	Bytes       int64
	Chunks      int64 // chunks delivered to the sink (receiver)
	ChunksTotal int64 // chunks in the image
	// RetransmittedBytes were sent again (sender); DuplicateBytes arrived
	// again (receiver).
	RetransmittedBytes int64
	DuplicateBytes     int64
	LostPackets        int64 // estimate
	RepairedChunks     int64 // fetched through Sink.Repair
	ResumedChunks      int64 // held before the session
	Receivers          int64 // receivers the sender heard
	Completed          int64 // receivers that reported complete
	Rate               int64 // current rate, bytes/s
	Counters           map[string]int64
}

// Source is the core's side of a send.
type Source interface {
	// Meta is the image metadata receivers get before any chunk.
	Meta() []byte
	// ChunkSizes are the stored sizes of the image's chunks.
	ChunkSizes() []int64
	// ReadChunk returns the stored payload of a chunk.
	ReadChunk(ctx context.Context, index int64) ([]byte, error)
	// Progress receives the transport's stats about twice a second.
	Progress(ctx context.Context, s Stats)
}

// ChunkReaderInto is a Source that can read a chunk into the caller's
// buffer. The Source a plugin gets always is one, and reading into a
// buffer the plugin keeps saves a copy and an allocation per chunk; a
// core's Source that is one lets the SDK read from disk straight into the
// memory it shares with the plugin.
type ChunkReaderInto interface {
	// ReadChunkInto fills p, which has the chunk's stored size, with the
	// stored payload of chunk index.
	ReadChunkInto(ctx context.Context, index int64, p []byte) error
}

// Held is the set of chunks a receiver already has.
type Held struct {
	Chunks int64
	bits   []byte
}

// NewHeld returns an empty set for n chunks.
func NewHeld(n int64) *Held { return &Held{Chunks: n, bits: make([]byte, (n+7)/8)} }

// HeldFromBits wraps a bitmap (bit i, least significant first, is chunk
// i); a short bitmap means the rest is not held.
func HeldFromBits(n int64, bits []byte) *Held {
	h := NewHeld(n)
	copy(h.bits, bits)
	return h
}

// Set marks chunk i held.
func (h *Held) Set(i int64) {
	if i >= 0 && i < h.Chunks {
		h.bits[i/8] |= 1 << (i % 8)
	}
}

// Has reports whether chunk i is held.
func (h *Held) Has(i int64) bool {
	return i >= 0 && i < h.Chunks && h.bits[i/8]&(1<<(i%8)) != 0
}

// Count returns the number of held chunks.
func (h *Held) Count() int64 {
	var n int64
	for i := range h.Chunks {
		if h.Has(i) {
			n++
		}
	}
	return n
}

// Bits returns the bitmap.
func (h *Held) Bits() []byte { return h.bits }

// Sink is the core's side of a receive.
type Sink interface {
	// Meta parses and checks the image metadata and returns the chunks
	// the target already holds. It is called once, before any Write.
	Meta(ctx context.Context, meta []byte) (*Held, error)
	// Write verifies data as chunk index and writes it. An error wrapping
	// ErrChecksum means the chunk is needed again; any other error ends
	// the receive. Write may be called concurrently; data is not kept.
	Write(ctx context.Context, index int64, data []byte) error
	// Repair fetches a chunk by other means (the unicast transport), for
	// a receiver the multicast sender left behind; ErrNoRepair when there
	// are none.
	Repair(ctx context.Context, index int64) ([]byte, error)
	// Progress receives the transport's stats about twice a second.
	Progress(ctx context.Context, s Stats)
}

// Transport is what a transport plugin implements.
type Transport interface {
	base.Plugin
	Capabilities(ctx context.Context) (*Capabilities, error)
	// Send offers the session's chunks, read from src, to receivers until
	// the session is complete or ctx ends.
	Send(ctx context.Context, s Session, src Source) (Stats, error)
	// Receive gets the image metadata and then every chunk the sink does
	// not hold yet, delivering each to the sink, until all are written.
	Receive(ctx context.Context, s Session, sink Sink) (Stats, error)
	// Fetch gets one chunk (transports with the Repair capability;
	// others return an error wrapping base.ErrUnsupported).
	Fetch(ctx context.Context, s Session, index int64) ([]byte, error)
}
