package multicast

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/diskcast/diskcast/sdk/base"
	"github.com/diskcast/diskcast/sdk/plugin"
	"github.com/diskcast/diskcast/sdk/transport"
)

// Plugin is the multicast transport behind the diskcast transport
// contract (sdk/transport). Its settings (PluginConfig) are defaults; a
// session's parameters (transport.Session.Params) override them:
//
//	group             239.192.0.1:41000 (required): group and data port;
//	                  the control port is the next one
//	session_id        decimal, non-zero (required): the session's ID
//	key               hex, at least 16 bytes (required): the session secret
//	interface         interface name; local_addr: one of its addresses
//	ttl               multicast TTL (default 1); host_only=true sets 0
//	rate              send cap in bytes/s; 0 or absent: adaptive
//	min_receivers     start policy (default 1), with min_wait and max_wait
//	min_wait, max_wait durations such as 10s
//	idle_timeout      end a send with no receiver for this long
//	straggler_budget  share of the image a receiver may have resent before
//	                  it is cut off (default 0.10; negative: never)
//	sender_timeout    a receiver gives up when the sender is silent this long
//	straggler_limit   a cut-off receiver without repair fails after this long
//	repair=true       a cut-off receiver fetches what it misses through the
//	                  core's Sink.Repair (the unicast transport)
type Plugin struct {
	base.Settings[PluginConfig]
}

// PluginConfig is the plugin's settings; it is the single source of its
// config schema.
type PluginConfig struct {
	Interface   string `hcl:"interface,optional" help:"network interface for multicast (default: the route's)"`
	TTL         int    `hcl:"ttl,optional" help:"multicast TTL (default 1: the local network only)"`
	MTU         int    `hcl:"mtu,optional" help:"link MTU that sizes data packets (default 1500)"`
	ReadBuffer  int    `hcl:"read_buffer,optional" help:"receive socket buffer in bytes (default 16 MiB)"`
	WriteBuffer int    `hcl:"write_buffer,optional" help:"send socket buffer in bytes (default 4 MiB)"`
}

// NewPlugin returns the plugin with default settings.
func NewPlugin() *Plugin { return &Plugin{} }

var _ transport.Transport = (*Plugin)(nil)

// Info describes the plugin.
func (*Plugin) Info(context.Context) (*base.Info, error) {
	return &base.Info{Description: "reliable receiver-driven IP multicast (docs/PROTOCOL.md): one send reaches every receiver; stragglers repair through the unicast transport"}, nil
}

// Capabilities: multicast, and no single-chunk fetch.
func (*Plugin) Capabilities(context.Context) (*transport.Capabilities, error) {
	return &transport.Capabilities{Multicast: true}, nil
}

// Fetch is not offered: multicast has no single-chunk requests outside a
// session.
func (*Plugin) Fetch(context.Context, transport.Session, int64) ([]byte, error) {
	return nil, fmt.Errorf("multicast: fetch: %w", base.ErrUnsupported)
}

// common are the parameters both sides share.
type common struct {
	group     *net.UDPAddr
	iface     string
	localAddr net.IP
	ttl       int
	hostOnly  bool
	sessionID uint64
	key       []byte
}

// params reads a session's parameters, naming the first bad one.
type params struct {
	m   map[string]string
	err error
}

func (p *params) fail(key, value, want string) {
	if p.err == nil {
		p.err = fmt.Errorf("%w: %s=%q: %s", transport.ErrSession, key, value, want)
	}
}

func (p *params) str(key, def string) string {
	if v, ok := p.m[key]; ok {
		return v
	}
	return def
}

func (p *params) int(key string, def int64) int64 {
	v, ok := p.m[key]
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		p.fail(key, v, "want an integer")
	}
	return n
}

func (p *params) float(key string, def float64) float64 {
	v, ok := p.m[key]
	if !ok {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		p.fail(key, v, "want a number")
	}
	return f
}

func (p *params) bool(key string) bool {
	v, ok := p.m[key]
	if !ok {
		return false
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		p.fail(key, v, "want true or false")
	}
	return b
}

func (p *params) duration(key string) time.Duration {
	v, ok := p.m[key]
	if !ok {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		p.fail(key, v, "want a duration such as 30s")
	}
	return d
}

func (p *Plugin) common(s transport.Session) (*params, common) {
	cfg := p.Get()
	ps := &params{m: s.Params}
	var c common
	g := ps.str("group", "")
	addr, err := net.ResolveUDPAddr("udp4", g)
	if err != nil || addr.IP == nil {
		ps.fail("group", g, "want a multicast group and port such as 239.192.0.1:41000")
	}
	c.group = addr
	c.iface = ps.str("interface", cfg.Interface)
	if a := ps.str("local_addr", ""); a != "" {
		if c.localAddr = net.ParseIP(a); c.localAddr == nil {
			ps.fail("local_addr", a, "want an IP address")
		}
	}
	c.ttl = int(ps.int("ttl", int64(cfg.TTL)))
	c.hostOnly = ps.bool("host_only")
	id := ps.str("session_id", "")
	if c.sessionID, err = strconv.ParseUint(id, 10, 64); err != nil || c.sessionID == 0 {
		ps.fail("session_id", id, "want a non-zero decimal number")
	}
	k := ps.str("key", "")
	if c.key, err = hex.DecodeString(k); err != nil || len(c.key) < 16 {
		ps.fail("key", "…", "want at least 16 bytes in hex")
	}
	return ps, c
}

// Send serves src to the group until every receiver is complete, the
// start policy or idle timeout ends the session, or ctx ends.
func (p *Plugin) Send(ctx context.Context, s transport.Session, src transport.Source) (transport.Stats, error) {
	ps, c := p.common(s)
	cfg := p.Get()
	sc := SenderConfig{
		Group: c.group, Interface: c.iface, LocalAddr: c.localAddr, TTL: c.ttl, HostOnly: c.hostOnly,
		SessionID: c.sessionID, Key: c.key,
		Rate:            ps.int("rate", 0),
		MinReceivers:    int(ps.int("min_receivers", 1)),
		MinWait:         ps.duration("min_wait"),
		MaxWait:         ps.duration("max_wait"),
		IdleTimeout:     ps.duration("idle_timeout"),
		ReceiverTimeout: ps.duration("receiver_timeout"),
		StragglerBudget: ps.float("straggler_budget", 0),
		MTU:             int(ps.int("mtu", int64(cfg.MTU))),
		WriteBuffer:     cfg.WriteBuffer,
		Logger:          plugin.Logger().Named("multicast"),
	}
	if ps.err != nil {
		return transport.Stats{}, ps.err
	}
	progress := newForwarder(ctx, func(st transport.Stats) { src.Progress(ctx, st) })
	defer progress.stop()
	sc.Progress = func(st SenderStats) { progress.post(senderStats(st)) }
	st, err := Send(ctx, sc, &source{ctx: ctx, src: src})
	return senderStats(st), err
}

// Receive joins the group and delivers the image to sink.
func (p *Plugin) Receive(ctx context.Context, s transport.Session, sink transport.Sink) (transport.Stats, error) {
	ps, c := p.common(s)
	cfg := p.Get()
	rc := ReceiverConfig{
		Group: c.group, Interface: c.iface, LocalAddr: c.localAddr, TTL: c.ttl, HostOnly: c.hostOnly,
		SessionID: c.sessionID, Key: c.key,
		SenderTimeout:  ps.duration("sender_timeout"),
		StragglerLimit: ps.duration("straggler_limit"),
		ReadBuffer:     cfg.ReadBuffer,
		Logger:         plugin.Logger().Named("multicast"),
	}
	if ps.bool("repair") {
		rc.Repair = func(ctx context.Context, i int) ([]byte, error) { return sink.Repair(ctx, int64(i)) }
	}
	if ps.err != nil {
		return transport.Stats{}, ps.err
	}
	progress := newForwarder(ctx, func(st transport.Stats) { sink.Progress(ctx, st) })
	defer progress.stop()
	rc.Progress = func(st ReceiverStats) { progress.post(receiverStats(st)) }
	st, err := Receive(ctx, rc, &sinkAdapter{ctx: ctx, sink: sink})
	return receiverStats(st), err
}

// source adapts the core's Source to the engine's.
type source struct {
	ctx context.Context
	src transport.Source
}

func (s *source) Meta() []byte        { return s.src.Meta() }
func (s *source) NumChunks() int      { return len(s.src.ChunkSizes()) }
func (s *source) ChunkSize(i int) int { return int(s.src.ChunkSizes()[i]) }
func (s *source) ReadChunk(i int, p []byte) error {
	if rd, ok := s.src.(transport.ChunkReaderInto); ok {
		return rd.ReadChunkInto(s.ctx, int64(i), p)
	}
	data, err := s.src.ReadChunk(s.ctx, int64(i))
	if err != nil {
		return err
	}
	if len(data) != len(p) {
		return fmt.Errorf("chunk %d: the core gave %d bytes, the image index says %d", i, len(data), len(p))
	}
	copy(p, data)
	return nil
}

// sinkAdapter adapts the core's Sink to the engine's.
type sinkAdapter struct {
	ctx  context.Context
	sink transport.Sink
}

func (s *sinkAdapter) Meta(blob []byte) (int, func(int) bool, error) {
	held, err := s.sink.Meta(s.ctx, blob)
	if err != nil {
		return 0, nil, err
	}
	return int(held.Chunks), func(i int) bool { return held.Has(int64(i)) }, nil
}

func (s *sinkAdapter) Chunk(i int, payload []byte) error {
	err := s.sink.Write(s.ctx, int64(i), payload)
	if errors.Is(err, transport.ErrChecksum) {
		return fmt.Errorf("%w: %w", ErrChecksum, err)
	}
	return err
}

// senderStats maps the engine's counters onto the contract's. Resent
// bytes are estimated from the share of resent DATA packets.
func senderStats(s SenderStats) transport.Stats {
	var resent int64
	if s.DataBlocks > 0 {
		resent = int64(float64(s.Bytes) * float64(s.ResentBlocks) / float64(s.DataBlocks))
	}
	return transport.Stats{
		Elapsed: s.Duration, Bytes: int64(s.Bytes), RetransmittedBytes: resent,
		Receivers: int64(s.Receivers), Completed: int64(s.Completed), Rate: s.Rate,
		Counters: map[string]int64{
			"packets": int64(s.Packets), "data_blocks": int64(s.DataBlocks), "resent_blocks": int64(s.ResentBlocks),
			"passes": int64(s.Passes), "requests": int64(s.Requests), "requested_blocks": int64(s.RequestedBlocks),
			"merged_blocks": int64(s.MergedBlocks), "ignored_requests": int64(s.IgnoredRequests),
			"control_dropped": int64(s.ControlDropped), "cut_off": int64(s.CutOff), "forgotten": int64(s.Forgotten),
			"backoffs": int64(s.Backoffs), "idle_ms": s.Idle.Milliseconds(),
			"malformed": int64(s.Malformed), "strays": int64(s.Strays), "forged": int64(s.Forged),
		},
	}
}

// receiverStats maps the engine's counters onto the contract's.
func receiverStats(s ReceiverStats) transport.Stats {
	var dup int64
	if t := s.DataBlocks + s.Duplicates; t > 0 {
		dup = int64(float64(s.Bytes) * float64(s.Duplicates) / float64(t))
	}
	cut := int64(0)
	if s.CutOff {
		cut = 1
	}
	return transport.Stats{
		Elapsed: s.Duration, Bytes: int64(s.Bytes), DuplicateBytes: dup, LostPackets: int64(s.Lost),
		Chunks: int64(s.Received + s.Repaired), ChunksTotal: int64(s.Chunks),
		RepairedChunks: int64(s.Repaired), ResumedChunks: int64(s.Resumed),
		Counters: map[string]int64{
			"packets": int64(s.Packets), "data_blocks": int64(s.DataBlocks), "duplicate_blocks": int64(s.Duplicates),
			"discarded_blocks": int64(s.Discarded), "requests": int64(s.Requests), "overheard": int64(s.Overheard),
			"checksum_failures": int64(s.ChecksumFailures), "sender_restarts": int64(s.SenderRestarts), "cut_off": cut,
			"malformed": int64(s.Malformed), "strays": int64(s.Strays), "forged": int64(s.Forged),
		},
	}
}

// forwarder hands the latest stats to a slow consumer (a call into the
// core) without ever blocking the engine's goroutine.
type forwarder struct {
	ch   chan transport.Stats
	done chan struct{}
}

func newForwarder(ctx context.Context, fn func(transport.Stats)) *forwarder {
	f := &forwarder{ch: make(chan transport.Stats, 1), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		for st := range f.ch {
			if ctx.Err() == nil {
				fn(st)
			}
		}
	}()
	return f
}

// post replaces a pending, undelivered value.
func (f *forwarder) post(st transport.Stats) {
	select {
	case f.ch <- st:
		return
	default:
	}
	select {
	case <-f.ch:
	default:
	}
	select {
	case f.ch <- st:
	default:
	}
}

func (f *forwarder) stop() {
	close(f.ch)
	<-f.done
}
