// Package transport is the contract between diskcast and its transport
// plugins, which move the chunks of an image from the host that has it to
// the nodes that want it (multicast, unicast HTTP, ...). Chunks are
// identified by their index in the image; the core reads, verifies and
// writes them, the plugin only carries bytes.
//
// Provisional: this contract will change while the first transports are
// written, before it is declared stable. After that, changing anything
// exported here breaks every transport plugin built against an earlier
// SDK: add, never change, or bump base.APIVersion.
package transport

import (
	"context"
	"errors"

	"github.com/diskcast/diskcast/sdk/base"
)

// Errors of transport plugins and of the core's chunk source.
var (
	// ErrNoChunk means a chunk index is outside the image.
	ErrNoChunk = errors.New("transport: no such chunk")
	// ErrSession means the session parameters are unusable; the message
	// names the parameter.
	ErrSession = errors.New("transport: bad session parameters")
)

// Session is one transfer of one image.
type Session struct {
	ID      string
	ImageID []byte // the image's 16-byte ID
	Chunks  int64  // chunks in the image
	// Params are the transport's own settings for this session, such as
	// a multicast group and port or a rate limit.
	Params map[string]string
}

// Capabilities lists what a transport offers.
type Capabilities struct {
	Multicast bool `json:"multicast"` // one send reaches many receivers
	Repair    bool `json:"repair"`    // can fetch single chunks on request
}

// ChunkSource is the core's side of a send: it hands the plugin the
// stored (compressed) bytes of a chunk.
type ChunkSource interface {
	ReadChunk(ctx context.Context, index int64) ([]byte, error)
}

// Transport is what a transport plugin implements.
type Transport interface {
	base.Plugin
	Capabilities(ctx context.Context) (*Capabilities, error)
	// Send offers the session's chunks, read from src, to receivers until
	// the session is complete or ctx ends.
	Send(ctx context.Context, s Session, src ChunkSource) error
	// Receive fetches the chunks listed in want (all of them when want is
	// empty) and calls deliver once for each, in any order. It returns
	// deliver's error as is.
	Receive(ctx context.Context, s Session, want []int64, deliver func(index int64, data []byte) error) error
}
