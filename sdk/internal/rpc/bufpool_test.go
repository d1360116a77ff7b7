package rpc

import "testing"

func TestBufferPool(t *testing.T) {
	p := &bufferPool{}
	for _, n := range []int{0, 1, 511, 512, 513, 1 << 20, 1<<20 + 1, 300 << 20} {
		b := p.Get(n)
		if len(*b) != n {
			t.Fatalf("Get(%d) gave %d bytes", n, len(*b))
		}
		for i := range *b {
			(*b)[i] = 0xff
		}
		p.Put(b)
	}
	// A buffer comes back whole for a request of its class, uncleared.
	b := p.Get(3000)
	(*b)[0] = 7
	p.Put(b)
	again := p.Get(4096)
	if cap(*again) != 4096 {
		t.Fatalf("Get(4096) gave capacity %d", cap(*again))
	}
	// A buffer that is not one of the pool's sizes is dropped, not pooled
	// into a class it cannot serve.
	odd := make([]byte, 5000)
	p.Put(&odd)
	if got := p.Get(8192); cap(*got) < 8192 {
		t.Fatalf("Get(8192) gave capacity %d", cap(*got))
	}
}
