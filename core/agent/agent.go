// Package agent is the node agent, `diskcast agent`, which runs in the
// imaging environment a node network-boots into. It asks the
// orchestrator for its node's assignment, receives the image (by
// multicast, falling back to unicast from the orchestrator), verifies and
// writes it with the checks of diskcast restore, reports progress and the
// outcome with the time of each phase, and then does what the session
// says: reboot, power off or stay. On failure it reports why and asks
// again later, so the node stays reachable for a retry; a target is
// never left half-written without the orchestrator knowing.
package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/diskcast/diskcast/core/api"
	"github.com/diskcast/diskcast/core/orchestrator"
	"github.com/diskcast/diskcast/core/restore"
	"github.com/diskcast/diskcast/core/transfer"
	"github.com/diskcast/diskcast/sdk/transport"
	"github.com/hashicorp/go-hclog"
)

// Errors of Run.
var (
	// ErrNoAssignment means no running session includes this node.
	ErrNoAssignment = errors.New("agent: no assignment for this node")
	// ErrConfig means the agent's parameters are unusable.
	ErrConfig = errors.New("agent: bad parameters")
)

// Config are the agent's parameters, from the kernel command line
// (ParseCmdline) or flags.
type Config struct {
	Server    string // the orchestrator's base URL, such as http://198.18.0.1:7400
	MAC       string // this node's MAC (default: Interface's)
	Interface string // the NIC to receive multicast on (default: the first up with an address)
	// Power makes the agent reboot or power off the machine after
	// success, as the session says; without it, it only says what it
	// would do. Only the imaging environment sets it.
	Power bool
	// Once makes Run return after one attempt instead of asking again.
	Once bool
	// Retry is the wait between attempts (default 10 s).
	Retry time.Duration
	// BootTimings are phases measured before the agent started (DHCP,
	// kernel download, ...), in seconds; they are reported with its own.
	BootTimings map[string]float64
	// Transport returns a transport plugin by name ("multicast", "http").
	Transport func(ctx context.Context, name string) (transport.Client, error)
	Logger    hclog.Logger
}

// Outcome is what one attempt did.
type Outcome struct {
	Node, Session string
	Target        string
	Transport     string // the transport that completed the image
	Bytes         int64
	Timings       map[string]float64
	After         string
}

// Run works until ctx ends: ask, receive, report, act; on failure it asks
// again after cfg.Retry. With cfg.Once it returns after one attempt.
func Run(ctx context.Context, cfg Config) (*Outcome, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	for {
		out, err := attempt(ctx, &cfg)
		if err == nil {
			return out, act(&cfg, out)
		}
		if cfg.Once || ctx.Err() != nil {
			return out, err
		}
		if errors.Is(err, ErrNoAssignment) {
			cfg.Logger.Info("no assignment yet; asking again", "in", cfg.Retry)
		} else {
			cfg.Logger.Error("imaging failed; asking again", "error", err, "in", cfg.Retry)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(cfg.Retry):
		}
	}
}

func (c *Config) fill() error {
	if c.Logger == nil {
		c.Logger = hclog.New(&hclog.LoggerOptions{Name: "agent", Output: os.Stderr})
	}
	if c.Retry <= 0 {
		c.Retry = 10 * time.Second
	}
	if c.Server == "" {
		return fmt.Errorf("%w: no orchestrator address (diskcast.server= on the kernel command line, or --server)", ErrConfig)
	}
	if c.Transport == nil {
		return fmt.Errorf("%w: no transports", ErrConfig)
	}
	if c.Interface == "" {
		c.Interface = firstUpInterface()
	}
	if c.MAC == "" {
		ifi, err := net.InterfaceByName(c.Interface)
		if err != nil || len(ifi.HardwareAddr) != 6 {
			return fmt.Errorf("%w: no MAC given and interface %q has none; pass diskcast.mac= or --mac", ErrConfig, c.Interface)
		}
		c.MAC = ifi.HardwareAddr.String()
	}
	mac, err := orchestrator.NormalizeMAC(c.MAC)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	c.MAC = mac
	return nil
}

// firstUpInterface names the first interface that is up, not loopback,
// and has an IPv4 address.
func firstUpInterface() string {
	ifs, _ := net.Interfaces()
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifi.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				return ifi.Name
			}
		}
	}
	return ""
}

// attempt runs one assignment to its end.
func attempt(ctx context.Context, cfg *Config) (*Outcome, error) {
	client := &api.Client{BaseURL: cfg.Server}
	timings := map[string]float64{}
	for k, v := range cfg.BootTimings {
		timings[k] = v
	}
	t0 := time.Now()
	asg, err := client.Assignment(ctx, cfg.MAC)
	switch api.StatusOf(err) {
	case 0:
	case 404:
		return nil, fmt.Errorf("%w (%s): %v", ErrNoAssignment, cfg.MAC, err)
	case 409:
		return nil, fmt.Errorf("%w (%s): this node already finished its session", ErrNoAssignment, cfg.MAC)
	}
	if err != nil {
		return nil, fmt.Errorf("agent: ask %s for the assignment of %s: %w", cfg.Server, cfg.MAC, err)
	}
	timings["assignment"] = time.Since(t0).Seconds()
	log := cfg.Logger.With("session", asg.Session, "run", asg.Run, "node", asg.Node)
	log.Info("assigned", "image", asg.Image.Name, "target", asg.Target, "transport", asg.Transport.Kind)
	out := &Outcome{Node: asg.Node, Session: asg.Session, Target: asg.Target, After: asg.After, Timings: timings}
	node := client.WithToken(asg.Token)

	err = receive(ctx, cfg, asg, node, out, log)
	if err != nil {
		res := &orchestrator.Result{OK: false, Error: err.Error(), Timings: timings}
		if _, rerr := node.Result(context.WithoutCancel(ctx), res); rerr != nil {
			log.Warn("could not report the failure", "error", rerr)
		}
		return out, err
	}
	if _, err := node.Result(ctx, &orchestrator.Result{OK: true, Bytes: out.Bytes, Timings: timings}); err != nil {
		return out, fmt.Errorf("agent: report the result: %w", err)
	}
	log.Info("done", "bytes", out.Bytes, "timings", timings)
	return out, nil
}

// receive writes the image onto the target and verifies it.
func receive(ctx context.Context, cfg *Config, asg *orchestrator.Assignment, node *api.Client, out *Outcome, log hclog.Logger) error {
	if asg.Target == "" {
		return fmt.Errorf("%w: the assignment names no target disk", ErrConfig)
	}
	sink := &transfer.Sink{
		Target:  asg.Target,
		Journal: restore.DefaultJournal(asg.Target),
		ImageID: asg.Image.ID,
		Fetch: func(ctx context.Context, i int64) ([]byte, error) {
			return node.ImageChunk(ctx, asg.Image.Name, int(i))
		},
	}
	guard := &sinkGuard{Sink: sink}
	defer sink.Close()
	rep := startReporter(ctx, node, sink, log)
	defer rep.stop()

	t0 := time.Now()
	web := transport.Session{ID: asg.Session, Params: map[string]string{
		"url": strings.TrimSuffix(cfg.Server, "/") + "/api", "image": asg.Image.Name, "token": asg.Token,
	}}
	var err error
	out.Transport = asg.Transport.Kind
	if asg.Transport.Kind == "multicast" {
		err = receiveMulticast(ctx, cfg, asg, guard)
		if err != nil && guard.failed() == nil && ctx.Err() == nil {
			log.Warn("multicast failed; fetching the rest from the orchestrator", "error", err)
			out.Transport = "multicast+http"
			err = receiveWith(ctx, cfg, "http", web, guard)
		}
	} else {
		err = receiveWith(ctx, cfg, "http", web, guard)
	}
	if err != nil {
		if serr := guard.failed(); serr != nil {
			err = serr // the target's own error says more than the transport's
		}
		return err
	}
	out.Timings["receive"] = time.Since(t0).Seconds()

	t1 := time.Now()
	rep.setState("verifying")
	if err := sink.Finish(ctx); err != nil {
		return err
	}
	out.Timings["verify"] = time.Since(t1).Seconds()
	res := sink.Result()
	out.Bytes = res.DataBytes
	rep.stop()
	return nil
}

func receiveMulticast(ctx context.Context, cfg *Config, asg *orchestrator.Assignment, sink transport.Sink) error {
	tr := asg.Transport
	params := map[string]string{
		"group":      net.JoinHostPort(tr.Group, strconv.Itoa(tr.Port)),
		"session_id": strconv.FormatUint(tr.SessionID, 10),
		"key":        tr.Key,
		"repair":     "true",
	}
	for k, v := range tr.Params {
		params[k] = v
	}
	if cfg.Interface != "" {
		params["interface"] = cfg.Interface
	}
	if cfg.Interface == "lo" {
		params["host_only"] = "true"
	}
	return receiveWith(ctx, cfg, "multicast", transport.Session{ID: asg.Session, Params: params}, sink)
}

func receiveWith(ctx context.Context, cfg *Config, name string, s transport.Session, sink transport.Sink) error {
	tr, err := cfg.Transport(ctx, name)
	if err != nil {
		return err
	}
	_, err = tr.Receive(ctx, s, sink)
	return err
}

// sinkGuard remembers the first error the target itself gave (too small,
// in use, another image, a write error): no other transport can help
// then. Checksum failures are the transport's business.
type sinkGuard struct {
	*transfer.Sink
	mu  sync.Mutex
	err error
}

func (g *sinkGuard) note(err error) error {
	if err != nil && !errors.Is(err, transport.ErrChecksum) {
		g.mu.Lock()
		if g.err == nil {
			g.err = err
		}
		g.mu.Unlock()
	}
	return err
}

func (g *sinkGuard) failed() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

func (g *sinkGuard) Meta(ctx context.Context, blob []byte) (*transport.Held, error) {
	h, err := g.Sink.Meta(ctx, blob)
	return h, g.note(err)
}

func (g *sinkGuard) Write(ctx context.Context, i int64, data []byte) error {
	return g.note(g.Sink.Write(ctx, i, data))
}

// act does what the session says once the node is done.
func act(cfg *Config, out *Outcome) error {
	what := out.After
	if what == "" || what == "stay" {
		cfg.Logger.Info("staying up, as the session says")
		return nil
	}
	if !cfg.Power {
		cfg.Logger.Info("not in the imaging environment: would now "+what, "after", what)
		return nil
	}
	syscall.Sync()
	switch what {
	case "reboot":
		return syscall.Reboot(syscall.LINUX_REBOOT_CMD_RESTART)
	case "poweroff":
		return syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	}
	return fmt.Errorf("agent: unknown action after imaging %q", what)
}
