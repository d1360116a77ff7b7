package transport

import (
	"context"
	"errors"
	"os"
	"runtime"
	"testing"

	"github.com/diskcast/diskcast/sdk/internal/proto"
	"github.com/diskcast/diskcast/sdk/internal/rpc"
	"github.com/diskcast/diskcast/sdk/internal/shm"
	"google.golang.org/grpc"
)

// travel records how each chunk crossed between a plugin and the core.
type travel struct {
	shared, inline int
	pid            int32 // if set, regions seem to belong to this process
}

// note counts one chunk, passed in region s or (s nil) inline.
func (t *travel) note(s *proto.Shared) {
	if s == nil {
		t.inline++
		return
	}
	if t.pid != 0 {
		s.Pid = t.pid
	}
	t.shared++
}

// loopSink is a ChunkSinkClient that calls a sinkServer directly and
// records how each chunk travelled.
type loopSink struct {
	proto.ChunkSinkClient
	travel
	srv *sinkServer
}

func (l *loopSink) Write(ctx context.Context, c *proto.Chunk, _ ...grpc.CallOption) (*proto.Empty, error) {
	l.note(c.Shared)
	return l.srv.Write(ctx, c)
}

// TestSharedWrite checks that chunks reach the core's sink through shared
// memory, and go inline once the core cannot map the plugin's regions.
func TestSharedWrite(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("shared memory regions are Linux only")
	}
	ctx := context.Background()
	k := &bigSink{}
	maps := &shm.Maps{}
	defer maps.Close()
	l := &loopSink{srv: &sinkServer{sink: k, shared: maps}}
	c := &sinkClient{c: l}
	defer c.mem.close()

	data := make([]byte, 3<<20+17)
	for i := range data {
		data[i] = byte(i * 13)
	}
	if err := c.Write(ctx, 0, data); err != nil {
		t.Fatal(err)
	}
	if l.shared != 1 || l.inline != 0 || string(k.got) != string(data) {
		t.Fatalf("%d shared and %d inline writes, %d bytes arrived intact: %v", l.shared, l.inline, len(k.got), string(k.got) == string(data))
	}

	// A core that may not look into the plugin's memory (here: the region
	// seems to belong to pid 1) refuses, and the chunk goes inline.
	if os.Getpid() == 1 {
		t.Skip("running as pid 1")
	}
	l.srv.shared = &shm.Maps{}
	defer l.srv.shared.Close()
	l.pid = 1
	k.got = nil
	if err := c.Write(ctx, 1, data[:100]); err != nil {
		t.Fatal(err)
	}
	if err := c.Write(ctx, 2, data[:200]); err != nil {
		t.Fatal(err)
	}
	if l.shared != 2 || l.inline != 2 || string(k.got) != string(data[:200]) {
		t.Fatalf("after the refusal: %d shared and %d inline writes, last chunk %d bytes", l.shared, l.inline, len(k.got))
	}
}

// TestSharedRefusedCode checks that the refusal crosses gRPC as itself.
func TestSharedRefusedCode(t *testing.T) {
	if runtime.GOOS != "linux" || os.Getpid() == 1 {
		t.Skip("needs Linux, not as pid 1")
	}
	maps := &shm.Maps{}
	defer maps.Close()
	srv := &sinkServer{sink: &bigSink{}, shared: maps}
	_, err := srv.Write(context.Background(), &proto.Chunk{Index: 3, Shared: &proto.Shared{Id: 1, Pid: 1, Fd: 0, Size: 1 << 20, Length: 10}})
	if err == nil {
		t.Fatal("a region of pid 1 was accepted")
	}
	if got := rpc.FromStatus(err, nil, codeMap); !errors.Is(got, errNoShared) {
		t.Fatalf("refusal came back as %v, want errNoShared", got)
	}
}

// loopSource is a ChunkSourceClient that calls a sourceServer directly
// and records how each chunk travelled.
type loopSource struct {
	proto.ChunkSourceClient
	travel
	srv *sourceServer
}

func (l *loopSource) ReadChunk(ctx context.Context, ref *proto.ChunkRef, _ ...grpc.CallOption) (*proto.Chunk, error) {
	l.note(ref.Shared)
	return l.srv.ReadChunk(ctx, ref)
}

// TestSharedRead checks that a sending plugin gets chunks through shared
// memory, filled by the core, and inline once the core cannot map them.
func TestSharedRead(t *testing.T) {
	if runtime.GOOS != "linux" || os.Getpid() == 1 {
		t.Skip("needs Linux, not as pid 1")
	}
	ctx := context.Background()
	big := &bigSource{data: make([]byte, 5<<20+3)}
	for i := range big.data {
		big.data[i] = byte(i * 31)
	}
	maps := &shm.Maps{Writable: true}
	defer maps.Close()
	l := &loopSource{srv: &sourceServer{src: big, shared: maps}}
	c := &sourceClient{c: l, sizes: big.ChunkSizes()}
	defer c.mem.close()

	p := make([]byte, len(big.data))
	if err := c.ReadChunkInto(ctx, 0, p); err != nil {
		t.Fatal(err)
	}
	if l.shared != 1 || l.inline != 0 || string(p) != string(big.data) {
		t.Fatalf("%d shared and %d inline reads, chunk intact: %v", l.shared, l.inline, string(p) == string(big.data))
	}
	if err := c.ReadChunkInto(ctx, 0, p[:10]); err == nil {
		t.Error("a buffer of the wrong size was filled")
	}

	l.srv.shared = &shm.Maps{Writable: true} // a core that has not mapped the region yet
	defer l.srv.shared.Close()
	l.pid = 1
	clear(p)
	if err := c.ReadChunkInto(ctx, 0, p); err != nil {
		t.Fatal(err)
	}
	if err := c.ReadChunkInto(ctx, 0, p); err != nil {
		t.Fatal(err)
	}
	if l.inline != 2 || string(p) != string(big.data) {
		t.Fatalf("after the refusal: %d shared and %d inline reads, chunk intact: %v", l.shared, l.inline, string(p) == string(big.data))
	}
}
