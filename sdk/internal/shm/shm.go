// Package shm moves chunk payloads between a plugin and the core through
// shared memory instead of through the gRPC stream. A chunk sent inline is
// copied five times on its way (marshal, socket write and read, gather,
// unmarshal) and its buffers churn the allocator; on a receiver that cost
// as much CPU as verifying the chunk. Here the plugin owns a memfd region,
// copies a payload into it (or has the core fill it) and sends only a
// Ref; the core maps the region through /proc/PID/fd (it is the plugin's
// parent, so the kernel lets it) and uses the payload in place.
//
// Where that is impossible (no /proc, another OS, a refusing kernel) the
// core answers that shared memory is unavailable and the plugin goes back
// to inline messages: this is a fast path, never a requirement.
package shm

import (
	"errors"
	"fmt"
	"sync"
)

// Ref names length bytes at the start of a region: the region's id, the
// plugin's pid and the descriptor number of the region in it, and the
// region's size when the Ref was made.
type Ref struct {
	ID     uint64
	PID    int
	FD     int
	Size   int64
	Length int64
}

// ErrUnavailable means shared memory cannot be used between these two
// processes.
var ErrUnavailable = errors.New("shared memory unavailable")

const (
	minRegion = 1 << 20
	// MaxRegion bounds one region: the largest stored chunk of an image.
	MaxRegion = 256 << 20
	// maxMapped bounds what the core maps for one plugin connection, so a
	// plugin cannot make it map without end.
	maxMapped = 1 << 30
)

// Pool hands out regions to a plugin's concurrent callers. Each caller
// takes a region, fills it, sends its Ref, and puts it back once the call
// that named it has returned: the core reads it only during that call.
type Pool struct {
	mu     sync.Mutex
	free   []*Region
	err    error
	closed bool
}

// Get returns a region of at least n bytes.
func (p *Pool) Get(n int) (*Region, error) {
	if n > MaxRegion {
		return nil, fmt.Errorf("shm: %d bytes is over the %d-byte limit of a region", n, MaxRegion)
	}
	p.mu.Lock()
	if p.err != nil {
		p.mu.Unlock()
		return nil, p.err
	}
	var r *Region
	if k := len(p.free); k > 0 {
		r = p.free[k-1]
		p.free = p.free[:k-1]
	}
	p.mu.Unlock()
	if r == nil {
		var err error
		if r, err = newRegion(sizeFor(n)); err != nil {
			p.mu.Lock()
			p.err = err
			p.mu.Unlock()
			return nil, err
		}
	}
	if len(r.Mem) < n {
		if err := r.grow(sizeFor(n)); err != nil {
			p.Put(r)
			return nil, err
		}
	}
	return r, nil
}

// Put returns a region to the pool.
func (p *Pool) Put(r *Region) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		r.close()
		return
	}
	p.free = append(p.free, r)
}

// Close releases the regions; those still out are released when they are
// put back. Get fails afterwards.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.free {
		r.close()
	}
	p.free, p.closed = nil, true
	p.err = errors.New("shm: pool closed")
}

// sizeFor rounds n up to a power of two of at least minRegion, so that a
// region grows a few times at most over an image's chunks.
func sizeFor(n int) int {
	s := minRegion
	for s < n {
		s *= 2
	}
	return s
}
