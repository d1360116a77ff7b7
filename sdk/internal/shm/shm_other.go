//go:build !linux

package shm

import "fmt"

// Region is a buffer shared with the core; only Linux has them.
type Region struct{ Mem []byte }

func newRegion(int) (*Region, error) {
	return nil, fmt.Errorf("%w on this operating system", ErrUnavailable)
}

func (r *Region) grow(int) error { return ErrUnavailable }
func (r *Region) close()         {}

// Ref names the first n bytes of the region.
func (r *Region) Ref(n int) Ref { return Ref{} }

// Maps is the core's side of shared regions; only Linux has them.
type Maps struct{ Writable bool }

// Bytes always fails here.
func (m *Maps) Bytes(Ref) ([]byte, func(), error) {
	return nil, nil, fmt.Errorf("%w on this operating system", ErrUnavailable)
}

// Close does nothing.
func (m *Maps) Close() {}
