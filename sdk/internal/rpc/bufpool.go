package rpc

import (
	"math/bits"
	"sync"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/experimental"
)

// bufferPool is the gRPC buffer pool of the brokered connections, which
// carry the chunks of an image between the core and a transport plugin.
// gRPC's default pool clears every buffer it hands out, and buffers over
// 1 MiB are not pooled at all; for a chunk of a megabyte or more that
// clearing cost a receiver about a tenth of its CPU. gRPC fills every
// byte of a buffer it asks for (marshalling into it or reading into it),
// so these come back as they were left.
type bufferPool struct {
	classes [maxClass + 1]sync.Pool // class c holds buffers of capacity 1<<c
}

const (
	minClass = 9  // 512 bytes; smaller requests share it
	maxClass = 28 // 256 MiB, transport.MaxMessage; larger ones are not pooled
)

var chunkPool = &bufferPool{}

// gRPC's codec materializes a message that arrived in several frames into
// a buffer of the process-wide default pool, whatever pool the connection
// has, so that one must not clear either. Every process that speaks to a
// plugin (or is one) imports this package before it makes a connection.
func init() { experimental.SetDefaultBufferPool(chunkPool) }

func (p *bufferPool) Get(length int) *[]byte {
	c := max(bits.Len(uint(length-1)), minClass)
	if length <= 0 || c > maxClass {
		b := make([]byte, length)
		return &b
	}
	if b, ok := p.classes[c].Get().(*[]byte); ok {
		*b = (*b)[:length]
		return b
	}
	b := make([]byte, length, 1<<c)
	return &b
}

func (p *bufferPool) Put(b *[]byte) {
	c := bits.Len(uint(cap(*b))) - 1
	if c < minClass || c > maxClass || cap(*b) != 1<<c {
		return // not one of ours
	}
	p.classes[c].Put(b)
}

// ServerOptions are the options of a server that takes or serves chunks.
// The pool is named here although it is the default: gRPC's servers copy
// the default pool when gRPC itself is initialized, before init above.
func ServerOptions(opts ...grpc.ServerOption) []grpc.ServerOption {
	return append(opts, experimental.BufferPool(chunkPool))
}

// Dial connects to a service the other side offered on the broker.
func Dial(broker *plugin.GRPCBroker, id uint32) (*grpc.ClientConn, error) {
	return broker.DialWithOptions(id, experimental.WithBufferPool(chunkPool))
}
