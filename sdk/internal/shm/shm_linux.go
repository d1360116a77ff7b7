package shm

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Region is a memfd-backed buffer of a plugin.
type Region struct {
	id  uint64
	fd  int
	Mem []byte // the whole region, mapped read-write
}

func newRegion(size int) (*Region, error) {
	fd, err := unix.MemfdCreate("diskcast-chunk", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("%w: memfd_create: %v", ErrUnavailable, err)
	}
	var id [8]byte
	rand.Read(id[:])
	r := &Region{id: binary.LittleEndian.Uint64(id[:]), fd: fd}
	if err := r.grow(size); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return r, nil
}

func (r *Region) grow(size int) error {
	if err := unix.Ftruncate(r.fd, int64(size)); err != nil {
		return fmt.Errorf("%w: resize to %d bytes: %v", ErrUnavailable, size, err)
	}
	mem, err := unix.Mmap(r.fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("%w: map %d bytes: %v", ErrUnavailable, size, err)
	}
	if r.Mem != nil {
		unix.Munmap(r.Mem)
	}
	r.Mem = mem
	return nil
}

func (r *Region) close() {
	if r.Mem != nil {
		unix.Munmap(r.Mem)
		r.Mem = nil
	}
	unix.Close(r.fd)
}

// Ref names the first n bytes of the region.
func (r *Region) Ref(n int) Ref {
	return Ref{ID: r.id, PID: os.Getpid(), FD: r.fd, Size: int64(len(r.Mem)), Length: int64(n)}
}

// Maps is the core's side: the regions of one plugin connection it has
// mapped. A mapping stays until Close, even when the region grows (the
// larger one is mapped beside it): a payload handed out by Bytes is never
// unmapped under its reader.
type Maps struct {
	// Writable maps regions for writing too: the core fills them with
	// the chunks a sending plugin reads.
	Writable bool

	use    sync.RWMutex // held for reading while a payload is in use
	mu     sync.Mutex   // guards the fields below
	byID   map[uint64][]byte
	old    [][]byte
	mapped int64
	closed bool
}

// Bytes returns the payload ref names and a release to call once done
// with it.
func (m *Maps) Bytes(ref Ref) ([]byte, func(), error) {
	if ref.Length < 0 || ref.Length > ref.Size || ref.Size > MaxRegion {
		return nil, nil, fmt.Errorf("shm: region %x: %d bytes of %d named", ref.ID, ref.Length, ref.Size)
	}
	m.use.RLock()
	mem, err := m.lookup(ref)
	if err != nil {
		m.use.RUnlock()
		return nil, nil, err
	}
	return mem[:ref.Length], m.use.RUnlock, nil
}

func (m *Maps) lookup(ref Ref) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, fmt.Errorf("shm: closed")
	}
	mem := m.byID[ref.ID]
	if int64(len(mem)) >= ref.Size {
		return mem, nil
	}
	if m.mapped+ref.Size > maxMapped {
		return nil, fmt.Errorf("shm: region %x: over the %d bytes mapped for one plugin", ref.ID, maxMapped)
	}
	mem, err := mapRef(ref, m.Writable)
	if err != nil {
		return nil, err
	}
	if old := m.byID[ref.ID]; old != nil {
		m.old = append(m.old, old)
	}
	if m.byID == nil {
		m.byID = map[uint64][]byte{}
	}
	m.byID[ref.ID] = mem
	m.mapped += ref.Size
	return mem, nil
}

// Close waits until no payload is in use and unmaps every region.
func (m *Maps) Close() {
	m.use.Lock()
	defer m.use.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, mem := range m.byID {
		unix.Munmap(mem)
	}
	for _, mem := range m.old {
		unix.Munmap(mem)
	}
	m.byID, m.old, m.closed = nil, nil, true
}

// mapRef maps a region of a child process (or of this one).
func mapRef(ref Ref, writable bool) ([]byte, error) {
	if ref.PID != os.Getpid() && parentOf(ref.PID) != os.Getpid() {
		return nil, fmt.Errorf("%w: process %d is not a plugin of this one", ErrUnavailable, ref.PID)
	}
	path := fmt.Sprintf("/proc/%d/fd/%d", ref.PID, ref.FD)
	flag, prot := os.O_RDONLY, unix.PROT_READ
	if writable {
		flag, prot = os.O_RDWR, unix.PROT_READ|unix.PROT_WRITE
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() < ref.Size {
		return nil, fmt.Errorf("%w: %s is not a region of %d bytes", ErrUnavailable, path, ref.Size)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(ref.Size), prot, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("%w: map %s: %v", ErrUnavailable, path, err)
	}
	return mem, nil
}

// parentOf returns the parent of pid, or -1.
func parentOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// The command name in parentheses may hold spaces and parentheses;
	// the fields after its last ")" are "state ppid ...".
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 2 {
		return -1
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return -1
	}
	return ppid
}
