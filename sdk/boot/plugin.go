package boot

import (
	"context"
	"fmt"

	"github.com/diskcast/diskcast/sdk/base"
	"github.com/diskcast/diskcast/sdk/internal/proto"
	"github.com/diskcast/diskcast/sdk/internal/rpc"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// GRPCPlugin is the go-plugin glue of the boot kind. A plugin sets Impl
// and Meta; the core dispenses a Client.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Boot
	Meta base.Info
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// Client is the core's side of a boot plugin.
type Client interface {
	Info(ctx context.Context) (*base.Info, error)
	ConfigSchema(ctx context.Context) (*base.Schema, error)
	Configure(ctx context.Context, cfg base.Config) error
	Capabilities(ctx context.Context) (*Capabilities, error)
	Serve(ctx context.Context, n Network, backend Backend) error
}

// GRPCServer registers the Base and Boot services.
func (p *GRPCPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	meta := p.Meta
	meta.Kind = base.KindBoot
	(&rpc.BaseServer{Impl: p.Impl, Meta: meta}).Register(s)
	proto.RegisterBootServer(s, &server{impl: p.Impl, broker: broker})
	return nil
}

// GRPCClient returns a Client.
func (p *GRPCPlugin) GRPCClient(ctx context.Context, broker *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &client{
		BaseClient: rpc.BaseClient{C: proto.NewBaseClient(c), Ctx: ctx},
		c:          proto.NewBootClient(c),
		broker:     broker,
	}, nil
}

type server struct {
	proto.UnimplementedBootServer
	impl   Boot
	broker *plugin.GRPCBroker
}

func (s *server) Capabilities(ctx context.Context, _ *proto.Empty) (*proto.BootCapabilities, error) {
	c, err := s.impl.Capabilities(ctx)
	if err != nil {
		return nil, rpc.ToStatus(err, nil)
	}
	return &proto.BootCapabilities{Dhcp: c.DHCP, ProxyDhcp: c.ProxyDHCP, Tftp: c.TFTP, Http: c.HTTP}, nil
}

func (s *server) Serve(ctx context.Context, req *proto.BootServeRequest) (*proto.Empty, error) {
	conn, err := rpc.Dial(s.broker, req.Backend)
	if err != nil {
		return nil, rpc.ToStatus(fmt.Errorf("boot: connect to the core's backend: %w", err), nil)
	}
	defer conn.Close()
	n := Network{Interface: req.Interface, ServerIP: req.ServerIp, HTTPURL: req.HttpUrl}
	if err := s.impl.Serve(ctx, n, &backendClient{c: proto.NewBootBackendClient(conn)}); err != nil {
		return nil, rpc.ToStatus(err, nil)
	}
	return &proto.Empty{}, nil
}

// backendClient is the plugin's view of the core's Backend.
type backendClient struct{ c proto.BootBackendClient }

func (b *backendClient) Lookup(ctx context.Context, n Node) (*Assignment, error) {
	r, err := b.c.Lookup(ctx, &proto.NodeRef{Mac: n.MAC, Ip: n.IP, Arch: n.Arch})
	if err != nil {
		return nil, rpc.FromStatus(err, nil, nil)
	}
	return &Assignment{Known: r.Known, KernelURL: r.KernelUrl, InitrdURL: r.InitrdUrl, Cmdline: r.Cmdline, IPXEScript: r.IpxeScript}, nil
}

func (b *backendClient) Report(ctx context.Context, e Event) error {
	_, err := b.c.Report(ctx, &proto.NodeEvent{Mac: e.MAC, What: e.What, Detail: e.Detail})
	return rpc.FromStatus(err, nil, nil)
}

// backendServer serves the core's Backend to the plugin.
type backendServer struct {
	proto.UnimplementedBootBackendServer
	b Backend
}

func (s *backendServer) Lookup(ctx context.Context, n *proto.NodeRef) (*proto.Assignment, error) {
	a, err := s.b.Lookup(ctx, Node{MAC: n.Mac, IP: n.Ip, Arch: n.Arch})
	if err != nil {
		return nil, rpc.ToStatus(err, nil)
	}
	return &proto.Assignment{Known: a.Known, KernelUrl: a.KernelURL, InitrdUrl: a.InitrdURL, Cmdline: a.Cmdline, IpxeScript: a.IPXEScript}, nil
}

func (s *backendServer) Report(ctx context.Context, e *proto.NodeEvent) (*proto.Empty, error) {
	if err := s.b.Report(ctx, Event{MAC: e.Mac, What: e.What, Detail: e.Detail}); err != nil {
		return nil, rpc.ToStatus(err, nil)
	}
	return &proto.Empty{}, nil
}

type client struct {
	rpc.BaseClient
	c      proto.BootClient
	broker *plugin.GRPCBroker
}

func (c *client) Capabilities(ctx context.Context) (*Capabilities, error) {
	ctx, cancel := rpc.Join(ctx, c.Ctx)
	defer cancel()
	r, err := c.c.Capabilities(ctx, &proto.Empty{})
	if err != nil {
		return nil, rpc.FromStatus(err, c.Ctx, nil)
	}
	return &Capabilities{DHCP: r.Dhcp, ProxyDHCP: r.ProxyDhcp, TFTP: r.Tftp, HTTP: r.Http}, nil
}

// Serve runs the plugin's Serve, serving backend to it over a brokered
// connection, until ctx ends (then it returns nil) or the plugin fails.
func (c *client) Serve(ctx context.Context, n Network, backend Backend) error {
	jctx, cancel := rpc.Join(ctx, c.Ctx)
	defer cancel()
	id, stop, err := rpc.Offer(c.broker, func(gs *grpc.Server) { proto.RegisterBootBackendServer(gs, &backendServer{b: backend}) })
	if err != nil {
		return fmt.Errorf("boot: offer the backend to the plugin: %w", err)
	}
	defer stop()
	_, err = c.c.Serve(jctx, &proto.BootServeRequest{Interface: n.Interface, ServerIp: n.ServerIP, HttpUrl: n.HTTPURL, Backend: id})
	if err != nil && ctx.Err() != nil && c.Ctx.Err() == nil {
		return nil // stopped by the caller
	}
	return rpc.FromStatus(err, c.Ctx, nil)
}

// InProcess returns a Client that calls impl directly, in this process.
func InProcess(impl Boot, meta base.Info) Client {
	meta.Kind = base.KindBoot
	return &local{Boot: impl, meta: meta}
}

type local struct {
	Boot
	meta base.Info
}

func (l *local) Info(ctx context.Context) (*base.Info, error) {
	return rpc.FillInfo(ctx, l.Boot, l.meta)
}
