// Package rpc holds what the client and server shims of every plugin kind
// share: the Base service on both sides, the mapping between errors and
// gRPC status codes (so that errors.Is works across the plugin boundary),
// and joining a caller's context with the plugin's.
package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/diskcast/diskcast/sdk/base"
	"github.com/diskcast/diskcast/sdk/internal/proto"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Code pairs a sentinel error with the gRPC code that carries it.
type Code struct {
	Err  error
	Code codes.Code
}

// common maps the sentinels every kind shares.
var common = []Code{
	{context.Canceled, codes.Canceled},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
	{base.ErrInvalidConfig, codes.InvalidArgument},
	{base.ErrUnsupported, codes.Unimplemented},
}

// ToStatus turns a plugin's error into a gRPC status error that keeps its
// message; the code names the first sentinel of kind (then the common
// ones) that err wraps.
func ToStatus(err error, kind []Code) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, c := range append(kind[:len(kind):len(kind)], common...) {
		if errors.Is(err, c.Err) {
			return status.Error(c.Code, err.Error())
		}
	}
	return status.Error(codes.Unknown, err.Error())
}

// FromStatus turns an error from a gRPC call back into the plugin's
// error: same message, and errors.Is holds for the sentinel its code
// carries. If the plugin process has gone (pluginCtx is done, or the
// connection broke), the error wraps base.ErrPluginExited.
func FromStatus(err error, pluginCtx context.Context, kind []Code) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	if pluginCtx != nil && pluginCtx.Err() != nil || st.Code() == codes.Unavailable {
		return fmt.Errorf("%w (%s)", base.ErrPluginExited, st.Message())
	}
	for _, c := range append(kind[:len(kind):len(kind)], common...) {
		if c.Code == st.Code() {
			return base.Mark(errors.New(st.Message()), c.Err)
		}
	}
	return errors.New(st.Message())
}

// Join returns a context that ends when either the caller's or the
// plugin's does, so a call into a plugin that died returns at once.
func Join(caller, plugin context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(caller)
	if plugin == nil {
		return ctx, cancel
	}
	stop := context.AfterFunc(plugin, cancel)
	return ctx, func() { stop(); cancel() }
}

// BaseServer serves the Base service for a plugin implementation; info
// holds what the registration knows (kind, name, version).
type BaseServer struct {
	proto.UnimplementedBaseServer
	Impl base.Plugin
	Meta base.Info
}

// Register adds the Base service to s.
func (b *BaseServer) Register(s *grpc.Server) { proto.RegisterBaseServer(s, b) }

// Info merges the implementation's Info with the registration's.
func (b *BaseServer) Info(ctx context.Context, _ *proto.Empty) (*proto.PluginInfo, error) {
	info, err := FillInfo(ctx, b.Impl, b.Meta)
	if err != nil {
		return nil, ToStatus(err, nil)
	}
	return &proto.PluginInfo{Kind: string(info.Kind), Name: info.Name, Version: info.Version,
		ApiVersion: int32(info.APIVersion), Description: info.Description}, nil
}

// FillInfo asks impl for its Info and fills the fields the registration
// owns.
func FillInfo(ctx context.Context, impl base.Plugin, meta base.Info) (*base.Info, error) {
	info, err := impl.Info(ctx)
	if err != nil {
		return nil, err
	}
	out := *info
	if meta.Kind != "" {
		out.Kind = meta.Kind
	}
	if meta.Name != "" {
		out.Name = meta.Name
	}
	if meta.Version != "" {
		out.Version = meta.Version
	}
	out.APIVersion = base.APIVersion
	return &out, nil
}

// Schema returns the implementation's config schema.
func (b *BaseServer) Schema(ctx context.Context, _ *proto.Empty) (*proto.ConfigSchema, error) {
	s, err := b.Impl.ConfigSchema(ctx)
	if err != nil {
		return nil, ToStatus(err, nil)
	}
	out := &proto.ConfigSchema{}
	for _, a := range s.Attributes {
		pa := &proto.Attribute{Name: a.Name, Type: a.Type, Required: a.Required, Description: a.Description}
		if a.Default != nil {
			d, err := json.Marshal(a.Default)
			if err != nil {
				return nil, status.Errorf(codes.Internal, "config schema: default of %s: %v", a.Name, err)
			}
			pa.DefaultJson = string(d)
		}
		out.Attributes = append(out.Attributes, pa)
	}
	return out, nil
}

// Configure passes the settings to the implementation.
func (b *BaseServer) Configure(ctx context.Context, req *proto.ConfigureRequest) (*proto.Empty, error) {
	var cfg base.Config
	if len(req.ConfigJson) > 0 {
		if err := json.Unmarshal(req.ConfigJson, &cfg); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "%v: not a JSON object: %v", base.ErrInvalidConfig, err)
		}
	}
	if err := b.Impl.Configure(ctx, cfg); err != nil {
		return nil, ToStatus(err, nil)
	}
	return &proto.Empty{}, nil
}

// BaseClient calls the Base service of a plugin.
type BaseClient struct {
	C proto.BaseClient
	// Ctx ends when the plugin process exits.
	Ctx context.Context
}

// Info returns the plugin's Info.
func (b *BaseClient) Info(ctx context.Context) (*base.Info, error) {
	ctx, cancel := Join(ctx, b.Ctx)
	defer cancel()
	r, err := b.C.Info(ctx, &proto.Empty{})
	if err != nil {
		return nil, FromStatus(err, b.Ctx, nil)
	}
	return &base.Info{Kind: base.Kind(r.Kind), Name: r.Name, Version: r.Version,
		APIVersion: int(r.ApiVersion), Description: r.Description}, nil
}

// ConfigSchema returns the plugin's config schema.
func (b *BaseClient) ConfigSchema(ctx context.Context) (*base.Schema, error) {
	ctx, cancel := Join(ctx, b.Ctx)
	defer cancel()
	r, err := b.C.Schema(ctx, &proto.Empty{})
	if err != nil {
		return nil, FromStatus(err, b.Ctx, nil)
	}
	s := &base.Schema{}
	for _, a := range r.Attributes {
		attr := base.Attribute{Name: a.Name, Type: a.Type, Required: a.Required, Description: a.Description}
		if a.DefaultJson != "" {
			if err := json.Unmarshal([]byte(a.DefaultJson), &attr.Default); err != nil {
				return nil, fmt.Errorf("plugin config schema: default of %s: %w", a.Name, err)
			}
		}
		s.Attributes = append(s.Attributes, attr)
	}
	return s, nil
}

// Configure sends settings to the plugin.
func (b *BaseClient) Configure(ctx context.Context, cfg base.Config) error {
	ctx, cancel := Join(ctx, b.Ctx)
	defer cancel()
	raw, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("%w: %v", base.ErrInvalidConfig, err)
	}
	_, err = b.C.Configure(ctx, &proto.ConfigureRequest{ConfigJson: raw})
	return FromStatus(err, b.Ctx, nil)
}

// Offer serves a service of the core to a plugin over a new brokered
// connection, until the returned stop is called; the plugin dials id.
func Offer(broker *plugin.GRPCBroker, register func(*grpc.Server), opts ...grpc.ServerOption) (id uint32, stop func(), err error) {
	id = broker.NextId()
	ln, err := broker.Accept(id)
	if err != nil {
		return 0, nil, err
	}
	gs := grpc.NewServer(ServerOptions(opts...)...)
	register(gs)
	go gs.Serve(ln)
	return id, gs.Stop, nil
}
