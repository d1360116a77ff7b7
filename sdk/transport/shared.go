package transport

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/diskcast/diskcast/sdk/internal/proto"
	"github.com/diskcast/diskcast/sdk/internal/rpc"
	"github.com/diskcast/diskcast/sdk/internal/shm"
)

// errNoShared is the core's answer to a chunk in shared memory it cannot
// map; the plugin then sends chunks inline.
var errNoShared = errors.New("transport: shared memory unavailable")

// sharedMem is a plugin's side of the shared memory of one session: its
// regions, whether the core turned out unable to map them, and how many
// chunks crossed each way.
type sharedMem struct {
	pool           shm.Pool
	unavailable    atomic.Bool
	shared, inline atomic.Int64
}

// pass runs call with a region of n bytes, which call fills or has the
// core fill and names in its request. ok is false when shared memory is
// unavailable, now or from an earlier call: the chunk then goes inline
// (the caller counts it in inline).
func (m *sharedMem) pass(n int, call func(*shm.Region) error) (ok bool, err error) {
	if m.unavailable.Load() {
		return false, nil
	}
	r, err := m.pool.Get(n)
	if err != nil {
		m.unavailable.Store(true)
		return false, nil
	}
	defer m.pool.Put(r)
	err = call(r)
	if errors.Is(err, errNoShared) {
		m.unavailable.Store(true)
		return false, nil
	}
	m.shared.Add(1)
	return true, err
}

func (m *sharedMem) close() { m.pool.Close() }

// count adds the counts to a plugin's stats, so an operator (and a test)
// can see whether chunks took the fast path.
func (m *sharedMem) count(st *Stats) {
	if st.Counters == nil {
		st.Counters = map[string]int64{}
	}
	st.Counters["chunks_shared_memory"] = m.shared.Load()
	st.Counters["chunks_inline"] = m.inline.Load()
}

// region is the core's side of a chunk in shared memory: the bytes the
// plugin named, and a release to call once done with them. Its error is
// a status for the plugin already.
func region(m *shm.Maps, p *proto.Shared, index int64) ([]byte, func(), error) {
	b, release, err := m.Bytes(shm.Ref{ID: p.Id, PID: int(p.Pid), FD: int(p.Fd), Size: p.Size, Length: p.Length})
	if errors.Is(err, shm.ErrUnavailable) {
		return nil, nil, rpc.ToStatus(fmt.Errorf("%w: %v", errNoShared, err), codeMap)
	}
	if err != nil {
		return nil, nil, rpc.ToStatus(fmt.Errorf("transport: chunk %d: %w", index, err), codeMap)
	}
	return b, release, nil
}

func sharedProto(r shm.Ref) *proto.Shared {
	return &proto.Shared{Id: r.ID, Pid: int32(r.PID), Fd: int32(r.FD), Size: r.Size, Length: r.Length}
}

// fill copies a chunk read inline into the caller's buffer, which must
// have the chunk's size.
func fill(p, data []byte, index int64) error {
	if len(data) != len(p) {
		return fmt.Errorf("transport: chunk %d: %d bytes for a buffer of %d", index, len(data), len(p))
	}
	copy(p, data)
	return nil
}
