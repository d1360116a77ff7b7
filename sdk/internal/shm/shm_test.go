//go:build linux

package shm

import (
	"bytes"
	"errors"
	"os"
	"sync"
	"testing"
	"time"
)

// TestRoundTrip fills regions as a plugin does and reads them back as the
// core does, through /proc, including a region that grows while a payload
// of its smaller mapping is still in use.
func TestRoundTrip(t *testing.T) {
	pool := &Pool{}
	defer pool.Close()
	maps := &Maps{}
	defer maps.Close()

	r, err := pool.Get(1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Mem) != minRegion {
		t.Fatalf("region of %d bytes for 1000, want %d", len(r.Mem), minRegion)
	}
	small := bytes.Repeat([]byte("diskcast"), 125)
	copy(r.Mem, small)
	got, release, err := maps.Bytes(r.Ref(len(small)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, small) {
		t.Fatal("payload read through the mapping differs from what was written")
	}
	pool.Put(r)

	// The same region, grown, comes back for a larger payload.
	r2, err := pool.Get(3 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if r2 != r || len(r2.Mem) != 4<<20 {
		t.Fatalf("got a region of %d bytes (same: %v), want the first grown to 4 MiB", len(r2.Mem), r2 == r)
	}
	big := bytes.Repeat([]byte{0xa5}, 3<<20)
	copy(r2.Mem, big)
	got2, release2, err := maps.Bytes(r2.Ref(len(big)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got2, big) {
		t.Fatal("payload of the grown region differs")
	}
	// The old mapping stays valid until Close: it shows the region's
	// current start.
	if got[0] != 0xa5 {
		t.Fatalf("old mapping reads %#x, want the region's new content", got[0])
	}
	release()
	release2()
	pool.Put(r2)
}

// TestRefused checks the refs a core must not follow.
func TestRefused(t *testing.T) {
	maps := &Maps{}
	defer maps.Close()
	pool := &Pool{}
	defer pool.Close()
	r, err := pool.Get(10)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Put(r)

	notChild := r.Ref(10)
	notChild.PID = 1 // init is nobody's plugin
	if os.Getpid() == 1 {
		t.Skip("running as pid 1")
	}
	if _, _, err := maps.Bytes(notChild); !errors.Is(err, ErrUnavailable) {
		t.Errorf("ref into pid 1: %v, want ErrUnavailable", err)
	}
	noFD := r.Ref(10)
	noFD.FD = 1 << 20
	if _, _, err := maps.Bytes(noFD); !errors.Is(err, ErrUnavailable) {
		t.Errorf("ref to a closed descriptor: %v, want ErrUnavailable", err)
	}
	tooLong := r.Ref(10)
	tooLong.Length = tooLong.Size + 1
	if _, _, err := maps.Bytes(tooLong); err == nil {
		t.Error("a length beyond the region was accepted")
	}
	tooBig := r.Ref(10)
	tooBig.Size = 4 * r.Ref(0).Size // larger than the region's file
	if _, _, err := maps.Bytes(tooBig); !errors.Is(err, ErrUnavailable) {
		t.Errorf("a size beyond the region's file: %v, want ErrUnavailable", err)
	}
}

// TestCloseWaits checks that Close does not unmap a payload in use.
func TestCloseWaits(t *testing.T) {
	pool := &Pool{}
	defer pool.Close()
	maps := &Maps{}
	r, err := pool.Get(10)
	if err != nil {
		t.Fatal(err)
	}
	copy(r.Mem, "0123456789")
	got, release, err := maps.Bytes(r.Ref(10))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	closed := make(chan struct{})
	wg.Go(func() { maps.Close(); close(closed) })
	time.Sleep(20 * time.Millisecond) // let Close start waiting
	select {
	case <-closed:
		t.Fatal("Close returned while a payload was in use")
	default:
	}
	if string(got) != "0123456789" {
		t.Fatal("payload changed")
	}
	release()
	wg.Wait()
	if _, _, err := maps.Bytes(r.Ref(10)); err == nil {
		t.Error("Bytes after Close succeeded")
	}
	pool.Put(r)
}

// TestPoolAfterClose checks that a region out during Close is released
// when put back, and that Get fails.
func TestPoolAfterClose(t *testing.T) {
	pool := &Pool{}
	r, err := pool.Get(10)
	if err != nil {
		t.Fatal(err)
	}
	pool.Close()
	pool.Put(r)
	if r.Mem != nil {
		t.Error("a region put back after Close is still mapped")
	}
	if _, err := pool.Get(10); err == nil {
		t.Error("Get after Close succeeded")
	}
}
