package transport

import (
	"context"
	"fmt"
	"time"

	"github.com/diskcast/diskcast/sdk/base"
	"github.com/diskcast/diskcast/sdk/internal/proto"
	"github.com/diskcast/diskcast/sdk/internal/rpc"
	"github.com/diskcast/diskcast/sdk/internal/shm"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

var codeMap = []rpc.Code{
	{Err: ErrNoChunk, Code: codes.NotFound},
	{Err: ErrSession, Code: codes.FailedPrecondition},
	{Err: ErrChecksum, Code: codes.DataLoss},
	{Err: ErrNoRepair, Code: codes.Unavailable},
	{Err: errNoShared, Code: codes.Aborted},
}

// MaxMessage bounds one gRPC message between the core and a transport
// plugin: a chunk (at most 64 MiB stored) or the metadata of a large
// image.
const MaxMessage = 256 << 20

// serverOpts lift gRPC's 4 MiB limit on received messages for the core's
// brokered servers (go-plugin lifts it on the client side of every
// connection). Large messages (chunks, metadata) only ever travel to
// these servers or in answers from them, never to a plugin's server.
var serverOpts = []grpc.ServerOption{grpc.MaxRecvMsgSize(MaxMessage), grpc.MaxSendMsgSize(MaxMessage)}

// GRPCPlugin is the go-plugin glue of the transport kind. A plugin sets
// Impl and Meta; the core dispenses a Client.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Transport
	Meta base.Info
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// Client is the core's side of a transport plugin.
type Client interface {
	base.Plugin
	Capabilities(ctx context.Context) (*Capabilities, error)
	Send(ctx context.Context, s Session, src Source) (Stats, error)
	Receive(ctx context.Context, s Session, sink Sink) (Stats, error)
	Fetch(ctx context.Context, s Session, index int64) ([]byte, error)
}

// GRPCServer registers the Base and Transport services.
func (p *GRPCPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	meta := p.Meta
	meta.Kind = base.KindTransport
	(&rpc.BaseServer{Impl: p.Impl, Meta: meta}).Register(s)
	proto.RegisterTransportServer(s, &server{impl: p.Impl, broker: broker})
	return nil
}

// GRPCClient returns a Client.
func (p *GRPCPlugin) GRPCClient(ctx context.Context, broker *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &client{
		BaseClient: rpc.BaseClient{C: proto.NewBaseClient(c), Ctx: ctx},
		c:          proto.NewTransportClient(c),
		broker:     broker,
	}, nil
}

func sessionOf(s *proto.Session) Session {
	return Session{ID: s.GetId(), ImageID: s.GetImageId(), Chunks: s.GetChunks(), Params: s.GetParams()}
}

func sessionProto(s Session) *proto.Session {
	return &proto.Session{Id: s.ID, ImageId: s.ImageID, Chunks: s.Chunks, Params: s.Params}
}

func statsOf(p *proto.TransportStats) Stats {
	return Stats{
		Elapsed: time.Duration(p.GetElapsedNs()), Bytes: p.GetBytes(), Chunks: p.GetChunks(), ChunksTotal: p.GetChunksTotal(),
		RetransmittedBytes: p.GetRetransmittedBytes(), DuplicateBytes: p.GetDuplicateBytes(), LostPackets: p.GetLostPackets(),
		RepairedChunks: p.GetRepairedChunks(), ResumedChunks: p.GetResumedChunks(),
		Receivers: p.GetReceivers(), Completed: p.GetCompleted(), Rate: p.GetRate(), Counters: p.GetCounters(),
	}
}

func statsProto(s Stats) *proto.TransportStats {
	return &proto.TransportStats{
		ElapsedNs: int64(s.Elapsed), Bytes: s.Bytes, Chunks: s.Chunks, ChunksTotal: s.ChunksTotal,
		RetransmittedBytes: s.RetransmittedBytes, DuplicateBytes: s.DuplicateBytes, LostPackets: s.LostPackets,
		RepairedChunks: s.RepairedChunks, ResumedChunks: s.ResumedChunks,
		Receivers: s.Receivers, Completed: s.Completed, Rate: s.Rate, Counters: s.Counters,
	}
}

// server is the plugin side.
type server struct {
	proto.UnimplementedTransportServer
	impl   Transport
	broker *plugin.GRPCBroker
}

func (s *server) Capabilities(ctx context.Context, _ *proto.Empty) (*proto.TransportCapabilities, error) {
	c, err := s.impl.Capabilities(ctx)
	if err != nil {
		return nil, rpc.ToStatus(err, codeMap)
	}
	return &proto.TransportCapabilities{Multicast: c.Multicast, Repair: c.Repair}, nil
}

func (s *server) Send(ctx context.Context, req *proto.SendRequest) (*proto.TransportStats, error) {
	conn, err := rpc.Dial(s.broker, req.ChunkSource)
	if err != nil {
		return nil, rpc.ToStatus(fmt.Errorf("transport: connect to the core's chunk source: %w", err), codeMap)
	}
	defer conn.Close()
	sc := proto.NewChunkSourceClient(conn)
	img, err := sc.Image(ctx, &proto.Empty{})
	if err != nil {
		return nil, rpc.ToStatus(fmt.Errorf("transport: get the image from the core: %w", rpc.FromStatus(err, nil, codeMap)), codeMap)
	}
	src := &sourceClient{c: sc, meta: img.Meta, sizes: img.ChunkSizes}
	defer src.mem.close()
	st, err := s.impl.Send(ctx, sessionOf(req.Session), src)
	if err != nil {
		return nil, rpc.ToStatus(err, codeMap)
	}
	src.mem.count(&st)
	return statsProto(st), nil
}

func (s *server) Receive(ctx context.Context, req *proto.ReceiveRequest) (*proto.TransportStats, error) {
	conn, err := rpc.Dial(s.broker, req.ChunkSink)
	if err != nil {
		return nil, rpc.ToStatus(fmt.Errorf("transport: connect to the core's chunk sink: %w", err), codeMap)
	}
	defer conn.Close()
	sink := &sinkClient{c: proto.NewChunkSinkClient(conn)}
	defer sink.mem.close()
	st, err := s.impl.Receive(ctx, sessionOf(req.Session), sink)
	if err != nil {
		return nil, rpc.ToStatus(err, codeMap)
	}
	sink.mem.count(&st)
	return statsProto(st), nil
}

func (s *server) Fetch(ctx context.Context, req *proto.FetchRequest) (*proto.Chunk, error) {
	data, err := s.impl.Fetch(ctx, sessionOf(req.Session), req.Index)
	if err != nil {
		return nil, rpc.ToStatus(err, codeMap)
	}
	return &proto.Chunk{Index: req.Index, Data: data}, nil
}

// sourceClient is the plugin's view of the core's Source.
type sourceClient struct {
	c     proto.ChunkSourceClient
	meta  []byte
	sizes []int64
	mem   sharedMem
}

func (s *sourceClient) Meta() []byte        { return s.meta }
func (s *sourceClient) ChunkSizes() []int64 { return s.sizes }

func (s *sourceClient) ReadChunk(ctx context.Context, index int64) ([]byte, error) {
	r, err := s.c.ReadChunk(ctx, &proto.ChunkRef{Index: index})
	if err != nil {
		return nil, rpc.FromStatus(err, nil, codeMap)
	}
	return r.Data, nil
}

// ReadChunkInto has the core read the chunk into a shared region, then
// copies it into p; without shared memory it reads the chunk inline.
func (s *sourceClient) ReadChunkInto(ctx context.Context, index int64, p []byte) error {
	ok, err := s.mem.pass(len(p), func(r *shm.Region) error {
		_, err := s.c.ReadChunk(ctx, &proto.ChunkRef{Index: index, Shared: sharedProto(r.Ref(len(p)))})
		if err == nil {
			copy(p, r.Mem)
		}
		return rpc.FromStatus(err, nil, codeMap)
	})
	if ok {
		return err
	}
	s.mem.inline.Add(1)
	data, err := s.ReadChunk(ctx, index)
	if err != nil {
		return err
	}
	return fill(p, data, index)
}

func (s *sourceClient) Progress(ctx context.Context, st Stats) {
	s.c.Progress(ctx, statsProto(st)) // best effort: progress is advisory
}

// sourceServer serves the core's Source to the plugin.
type sourceServer struct {
	proto.UnimplementedChunkSourceServer
	src    Source
	shared *shm.Maps
}

func (s *sourceServer) Image(context.Context, *proto.Empty) (*proto.SourceImage, error) {
	return &proto.SourceImage{Meta: s.src.Meta(), ChunkSizes: s.src.ChunkSizes()}, nil
}

func (s *sourceServer) ReadChunk(ctx context.Context, ref *proto.ChunkRef) (*proto.Chunk, error) {
	if ref.Shared != nil {
		return s.readShared(ctx, ref)
	}
	data, err := s.src.ReadChunk(ctx, ref.Index)
	if err != nil {
		return nil, rpc.ToStatus(err, codeMap)
	}
	return &proto.Chunk{Index: ref.Index, Data: data}, nil
}

// readShared puts the chunk into the plugin's region.
func (s *sourceServer) readShared(ctx context.Context, ref *proto.ChunkRef) (*proto.Chunk, error) {
	p, release, err := region(s.shared, ref.Shared, ref.Index)
	if err != nil {
		return nil, err
	}
	defer release()
	if rd, ok := s.src.(ChunkReaderInto); ok {
		err = rd.ReadChunkInto(ctx, ref.Index, p)
	} else {
		var data []byte
		if data, err = s.src.ReadChunk(ctx, ref.Index); err == nil {
			err = fill(p, data, ref.Index)
		}
	}
	if err != nil {
		return nil, rpc.ToStatus(err, codeMap)
	}
	return &proto.Chunk{Index: ref.Index}, nil
}

func (s *sourceServer) Progress(ctx context.Context, st *proto.TransportStats) (*proto.Empty, error) {
	s.src.Progress(ctx, statsOf(st))
	return &proto.Empty{}, nil
}

// sinkClient is the plugin's view of the core's Sink.
type sinkClient struct {
	c   proto.ChunkSinkClient
	mem sharedMem
}

func (s *sinkClient) Meta(ctx context.Context, meta []byte) (*Held, error) {
	r, err := s.c.Meta(ctx, &proto.MetaBlob{Meta: meta})
	if err != nil {
		return nil, rpc.FromStatus(err, nil, codeMap)
	}
	return HeldFromBits(r.Chunks, r.Have), nil
}

func (s *sinkClient) Write(ctx context.Context, index int64, data []byte) error {
	ok, err := s.mem.pass(len(data), func(r *shm.Region) error {
		copy(r.Mem, data)
		_, err := s.c.Write(ctx, &proto.Chunk{Index: index, Shared: sharedProto(r.Ref(len(data)))})
		return rpc.FromStatus(err, nil, codeMap)
	})
	if ok {
		return err
	}
	s.mem.inline.Add(1)
	_, err = s.c.Write(ctx, &proto.Chunk{Index: index, Data: data})
	return rpc.FromStatus(err, nil, codeMap)
}

func (s *sinkClient) Repair(ctx context.Context, index int64) ([]byte, error) {
	r, err := s.c.Repair(ctx, &proto.ChunkRef{Index: index})
	if err != nil {
		return nil, rpc.FromStatus(err, nil, codeMap)
	}
	return r.Data, nil
}

func (s *sinkClient) Progress(ctx context.Context, st Stats) {
	s.c.Progress(ctx, statsProto(st)) // best effort: progress is advisory
}

// sinkServer serves the core's Sink to the plugin.
type sinkServer struct {
	proto.UnimplementedChunkSinkServer
	sink   Sink
	shared *shm.Maps
}

func (s *sinkServer) Meta(ctx context.Context, m *proto.MetaBlob) (*proto.MetaReply, error) {
	h, err := s.sink.Meta(ctx, m.Meta)
	if err != nil {
		return nil, rpc.ToStatus(err, codeMap)
	}
	return &proto.MetaReply{Chunks: h.Chunks, Have: h.Bits()}, nil
}

func (s *sinkServer) Write(ctx context.Context, c *proto.Chunk) (*proto.Empty, error) {
	data := c.Data
	if c.Shared != nil {
		// The sink verifies the payload where it lies: the region is the
		// SDK's own, left untouched by the plugin until this call returns.
		b, release, err := region(s.shared, c.Shared, c.Index)
		if err != nil {
			return nil, err
		}
		defer release()
		data = b
	}
	if err := s.sink.Write(ctx, c.Index, data); err != nil {
		return nil, rpc.ToStatus(err, codeMap)
	}
	return &proto.Empty{}, nil
}

func (s *sinkServer) Repair(ctx context.Context, ref *proto.ChunkRef) (*proto.Chunk, error) {
	data, err := s.sink.Repair(ctx, ref.Index)
	if err != nil {
		return nil, rpc.ToStatus(err, codeMap)
	}
	return &proto.Chunk{Index: ref.Index, Data: data}, nil
}

func (s *sinkServer) Progress(ctx context.Context, st *proto.TransportStats) (*proto.Empty, error) {
	s.sink.Progress(ctx, statsOf(st))
	return &proto.Empty{}, nil
}

// client is the core side.
type client struct {
	rpc.BaseClient
	c      proto.TransportClient
	broker *plugin.GRPCBroker
}

func (c *client) Capabilities(ctx context.Context) (*Capabilities, error) {
	ctx, cancel := rpc.Join(ctx, c.Ctx)
	defer cancel()
	r, err := c.c.Capabilities(ctx, &proto.Empty{})
	if err != nil {
		return nil, rpc.FromStatus(err, c.Ctx, codeMap)
	}
	return &Capabilities{Multicast: r.Multicast, Repair: r.Repair}, nil
}

// Send serves src to the plugin for as long as the plugin's Send runs.
func (c *client) Send(ctx context.Context, s Session, src Source) (Stats, error) {
	ctx, cancel := rpc.Join(ctx, c.Ctx)
	defer cancel()
	shared := &shm.Maps{Writable: true}
	defer shared.Close()
	id, stop, err := rpc.Offer(c.broker, func(gs *grpc.Server) {
		proto.RegisterChunkSourceServer(gs, &sourceServer{src: src, shared: shared})
	}, serverOpts...)
	if err != nil {
		return Stats{}, fmt.Errorf("transport: offer the chunk source to the plugin: %w", err)
	}
	defer stop()
	r, err := c.c.Send(ctx, &proto.SendRequest{Session: sessionProto(s), ChunkSource: id})
	if err != nil {
		return Stats{}, rpc.FromStatus(err, c.Ctx, codeMap)
	}
	return statsOf(r), nil
}

// Receive serves sink to the plugin for as long as the plugin's Receive
// runs.
func (c *client) Receive(ctx context.Context, s Session, sink Sink) (Stats, error) {
	ctx, cancel := rpc.Join(ctx, c.Ctx)
	defer cancel()
	shared := &shm.Maps{}
	defer shared.Close()
	id, stop, err := rpc.Offer(c.broker, func(gs *grpc.Server) {
		proto.RegisterChunkSinkServer(gs, &sinkServer{sink: sink, shared: shared})
	}, serverOpts...)
	if err != nil {
		return Stats{}, fmt.Errorf("transport: offer the chunk sink to the plugin: %w", err)
	}
	defer stop()
	r, err := c.c.Receive(ctx, &proto.ReceiveRequest{Session: sessionProto(s), ChunkSink: id})
	if err != nil {
		return Stats{}, rpc.FromStatus(err, c.Ctx, codeMap)
	}
	return statsOf(r), nil
}

func (c *client) Fetch(ctx context.Context, s Session, index int64) ([]byte, error) {
	ctx, cancel := rpc.Join(ctx, c.Ctx)
	defer cancel()
	r, err := c.c.Fetch(ctx, &proto.FetchRequest{Session: sessionProto(s), Index: index})
	if err != nil {
		return nil, rpc.FromStatus(err, c.Ctx, codeMap)
	}
	return r.Data, nil
}

// InProcess returns a Client that calls impl directly, in this process.
func InProcess(impl Transport, meta base.Info) Client {
	meta.Kind = base.KindTransport
	return &local{Transport: impl, meta: meta}
}

type local struct {
	Transport
	meta base.Info
}

func (l *local) Info(ctx context.Context) (*base.Info, error) {
	return rpc.FillInfo(ctx, l.Transport, l.meta)
}
