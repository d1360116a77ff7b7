package transport

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/diskcast/diskcast/sdk/base"
	"github.com/diskcast/diskcast/sdk/internal/proto"
	"github.com/diskcast/diskcast/sdk/internal/rpc"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

var codeMap = []rpc.Code{
	{Err: ErrNoChunk, Code: codes.NotFound},
	{Err: ErrSession, Code: codes.FailedPrecondition},
}

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
	Info(ctx context.Context) (*base.Info, error)
	ConfigSchema(ctx context.Context) (*base.Schema, error)
	Configure(ctx context.Context, cfg base.Config) error
	Capabilities(ctx context.Context) (*Capabilities, error)
	Send(ctx context.Context, s Session, src ChunkSource) error
	Receive(ctx context.Context, s Session, want []int64, deliver func(index int64, data []byte) error) error
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

func toProto(s Session) *proto.Session {
	return &proto.Session{Id: s.ID, ImageId: s.ImageID, Chunks: s.Chunks, Params: s.Params}
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

func (s *server) Send(ctx context.Context, req *proto.SendRequest) (*proto.Empty, error) {
	conn, err := s.broker.Dial(req.ChunkSource)
	if err != nil {
		return nil, rpc.ToStatus(fmt.Errorf("transport: connect to the core's chunk source: %w", err), codeMap)
	}
	defer conn.Close()
	src := &sourceClient{c: proto.NewChunkSourceClient(conn)}
	if err := s.impl.Send(ctx, sessionOf(req.Session), src); err != nil {
		return nil, rpc.ToStatus(err, codeMap)
	}
	return &proto.Empty{}, nil
}

func (s *server) Receive(req *proto.ReceiveRequest, stream proto.Transport_ReceiveServer) error {
	err := s.impl.Receive(stream.Context(), sessionOf(req.Session), req.Want, func(index int64, data []byte) error {
		return stream.Send(&proto.Chunk{Index: index, Data: data})
	})
	return rpc.ToStatus(err, codeMap)
}

// sourceClient is the plugin's view of the core's ChunkSource.
type sourceClient struct{ c proto.ChunkSourceClient }

func (s *sourceClient) ReadChunk(ctx context.Context, index int64) ([]byte, error) {
	r, err := s.c.ReadChunk(ctx, &proto.ChunkRef{Index: index})
	if err != nil {
		return nil, rpc.FromStatus(err, nil, codeMap)
	}
	return r.Data, nil
}

// sourceServer serves the core's ChunkSource to the plugin.
type sourceServer struct {
	proto.UnimplementedChunkSourceServer
	src ChunkSource
}

func (s *sourceServer) ReadChunk(ctx context.Context, ref *proto.ChunkRef) (*proto.Chunk, error) {
	data, err := s.src.ReadChunk(ctx, ref.Index)
	if err != nil {
		return nil, rpc.ToStatus(err, codeMap)
	}
	return &proto.Chunk{Index: ref.Index, Data: data}, nil
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

// Send serves src to the plugin over a brokered connection for as long as
// the plugin's Send runs.
func (c *client) Send(ctx context.Context, s Session, src ChunkSource) error {
	ctx, cancel := rpc.Join(ctx, c.Ctx)
	defer cancel()
	id := c.broker.NextId()
	ln, err := c.broker.Accept(id)
	if err != nil {
		return fmt.Errorf("transport: offer the chunk source to the plugin: %w", err)
	}
	gs := grpc.NewServer()
	proto.RegisterChunkSourceServer(gs, &sourceServer{src: src})
	go gs.Serve(ln)
	defer gs.Stop()
	_, err = c.c.Send(ctx, &proto.SendRequest{Session: toProto(s), ChunkSource: id})
	return rpc.FromStatus(err, c.Ctx, codeMap)
}

func (c *client) Receive(ctx context.Context, s Session, want []int64, deliver func(index int64, data []byte) error) error {
	ctx, cancel := rpc.Join(ctx, c.Ctx)
	defer cancel()
	stream, err := c.c.Receive(ctx, &proto.ReceiveRequest{Session: toProto(s), Want: want})
	if err != nil {
		return rpc.FromStatus(err, c.Ctx, codeMap)
	}
	for {
		ch, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return rpc.FromStatus(err, c.Ctx, codeMap)
		}
		if err := deliver(ch.Index, ch.Data); err != nil {
			return err
		}
	}
}
