package pxe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/diskcast/diskcast/sdk/boot"
	"github.com/hashicorp/go-hclog"
	"github.com/pin/tftp/v3"
	"golang.org/x/sys/unix"
)

// Stats counts what the servers did and what they dropped.
type Stats struct {
	DHCPReceived        uint64 // packets read on the DHCP and PXE ports
	DHCPReplies         uint64 // answers sent
	DHCPMalformed       uint64 // undecodable or impossible packets (dropped)
	DHCPIgnored         uint64 // well-formed but not ours to answer
	DHCPNoAddress       uint64 // no pool for the link or relay, or pool exhausted
	DHCPNAKs            uint64
	DHCPUnsupportedArch uint64 // PXE clients whose architecture has no boot file
	DHCPUnsent          uint64 // answers that could not be sent
	TFTPTransfers       uint64 // files sent whole
	TFTPRefused         uint64 // paths outside the root, missing files, writes
	TFTPFailed          uint64 // transfers that broke off
	HTTPScripts         uint64
	HTTPFiles           uint64
	HTTPRefused         uint64
	EventsDropped       uint64 // events not reported: the core was too slow
}

type stats struct {
	dhcpReceived, dhcpReplies, dhcpMalformed, dhcpIgnored, dhcpNoAddress, dhcpNAKs,
	dhcpUnsupportedArch, dhcpUnsent, tftpTransfers, tftpRefused, tftpFailed,
	httpScripts, httpFiles, httpRefused, eventsDropped atomic.Uint64
}

// Addrs are the addresses a Server listens on.
type Addrs struct {
	DHCP, Proxy, TFTP *net.UDPAddr
	HTTP              *net.TCPAddr
}

// Server is the DHCP, TFTP and HTTP servers of one boot network.
type Server struct {
	// Logger receives the servers' log; set it before Serve. Nil: none.
	Logger hclog.Logger

	cfg    *settings
	log    hclog.Logger
	leases *leases // nil in proxy mode
	stats  stats
	now    func() time.Time

	mu         sync.Mutex
	listening  bool
	dhcpConn   *net.UDPConn
	proxyConn  *net.UDPConn
	tftpConn   *net.UDPConn
	httpLn     net.Listener
	scriptBase string
	seen       map[string]string // MAC -> architecture name, from DHCP
	ipMAC      map[netip.Addr]string
	discovered map[string]bool
	events     chan boot.Event
}

// maxSeen bounds the per-MAC memories: a flood of forged MACs must not
// grow them without end.
const maxSeen = 1 << 16

// New checks cfg and opens the lease file. It binds nothing: Listen or
// Serve does.
func New(cfg Config) (*Server, error) {
	st, err := cfg.check(false)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: st, log: hclog.NewNullLogger(), now: time.Now,
		seen: map[string]string{}, ipMAC: map[netip.Addr]string{}, discovered: map[string]bool{}}
	if st.pool != nil {
		reserved := []netip.Addr{st.serverIP}
		if st.router != nil {
			reserved = append(reserved, ip4(st.router))
		}
		s.leases, err = openLeases(st.pool, st.LeaseFile, reserved, func() time.Time { return s.now() })
		if err != nil {
			return nil, err
		}
	}
	s.scriptBase = s.baseURL(st.httpPort)
	return s, nil
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	c := &s.stats
	return Stats{
		DHCPReceived: c.dhcpReceived.Load(), DHCPReplies: c.dhcpReplies.Load(), DHCPMalformed: c.dhcpMalformed.Load(),
		DHCPIgnored: c.dhcpIgnored.Load(), DHCPNoAddress: c.dhcpNoAddress.Load(), DHCPNAKs: c.dhcpNAKs.Load(),
		DHCPUnsupportedArch: c.dhcpUnsupportedArch.Load(), DHCPUnsent: c.dhcpUnsent.Load(),
		TFTPTransfers: c.tftpTransfers.Load(), TFTPRefused: c.tftpRefused.Load(), TFTPFailed: c.tftpFailed.Load(),
		HTTPScripts: c.httpScripts.Load(), HTTPFiles: c.httpFiles.Load(), HTTPRefused: c.httpRefused.Load(),
		EventsDropped: c.eventsDropped.Load(),
	}
}

func (s *Server) baseURL(port int) string {
	return "http://" + net.JoinHostPort(s.cfg.serverIP.String(), strconv.Itoa(port))
}

// scriptURL is the URL of mac's iPXE script.
func (s *Server) scriptURL(mac string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.scriptBase + "/boot.ipxe?mac=" + mac
}

// remember notes a client's architecture and address for the HTTP and
// TFTP servers, which see only an IP address or a MAC.
func (s *Server) remember(c client, ip netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.seen) >= maxSeen {
		clear(s.seen)
	}
	if len(s.ipMAC) >= maxSeen {
		clear(s.ipMAC)
	}
	if c.hasArch {
		s.seen[c.mac] = c.archName
	}
	if ip.IsValid() && !ip.IsUnspecified() {
		s.ipMAC[ip] = c.mac
	}
}

// macOf returns the MAC last seen with ip, or "".
func (s *Server) macOf(ip netip.Addr) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ipMAC[ip.Unmap()]
}

// archOf returns the architecture last seen from mac, or "".
func (s *Server) archOf(mac string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[mac]
}

// Listen binds every socket. Serve calls it if it was not called.
func (s *Server) Listen() (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listening {
		return nil
	}
	var closers []func() error
	defer func() {
		if err != nil {
			for _, c := range closers {
				c()
			}
		}
	}()
	c := s.cfg
	if s.dhcpConn, err = listenUDP(c.Interface, c.serverIP, c.DHCPPort); err != nil {
		return fmt.Errorf("pxe: DHCP port: %w", err)
	}
	closers = append(closers, s.dhcpConn.Close)
	if s.proxyConn, err = listenUDP(c.Interface, c.serverIP, c.ProxyPort); err != nil {
		return fmt.Errorf("pxe: PXE port: %w", err)
	}
	closers = append(closers, s.proxyConn.Close)
	// TFTP requests come unicast to server_ip; transfers bind to it too.
	if s.tftpConn, err = listenUDP("", c.serverIP, c.TFTPPort); err != nil {
		return fmt.Errorf("pxe: TFTP port: %w", err)
	}
	closers = append(closers, s.tftpConn.Close)
	if s.httpLn, err = net.Listen("tcp", c.HTTPListen); err != nil {
		return fmt.Errorf("pxe: HTTP: %w", err)
	}
	s.scriptBase = s.baseURL(s.httpLn.Addr().(*net.TCPAddr).Port)
	s.listening = true
	return nil
}

// Addrs returns the bound addresses (zero before Listen).
func (s *Server) Addrs() Addrs {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.listening {
		return Addrs{}
	}
	return Addrs{
		DHCP: s.dhcpConn.LocalAddr().(*net.UDPAddr), Proxy: s.proxyConn.LocalAddr().(*net.UDPAddr),
		TFTP: s.tftpConn.LocalAddr().(*net.UDPAddr), HTTP: s.httpLn.Addr().(*net.TCPAddr),
	}
}

// listenUDP binds port on iface (every address, SO_BINDTODEVICE, so
// that broadcasts on that interface arrive and no others), or on ip
// alone when iface is empty.
func listenUDP(iface string, ip netip.Addr, port int) (*net.UDPConn, error) {
	addr := net.JoinHostPort(ip.String(), strconv.Itoa(port))
	if iface != "" {
		addr = net.JoinHostPort("0.0.0.0", strconv.Itoa(port))
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1); serr != nil {
				return
			}
			if iface != "" {
				if serr = unix.BindToDevice(int(fd), iface); serr != nil {
					serr = fmt.Errorf("bind to interface %s: %w", iface, serr)
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", addr)
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// Serve answers DHCP, TFTP and HTTP requests until ctx ends, asking
// backend what each node boots and telling it what happened. It returns
// nil when ctx ends, or the error that stopped a server.
func (s *Server) Serve(ctx context.Context, backend boot.Backend) error {
	if s.Logger != nil {
		s.log = s.Logger
	}
	if err := s.Listen(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	s.events = make(chan boot.Event, 256)
	s.mu.Unlock()

	tsrv := tftp.NewServer(s.tftpRead, nil) // nil: write requests are refused
	tsrv.SetHook(tftpHook{s})
	tsrv.SetTimeout(2 * time.Second)
	hsrv := &http.Server{Handler: s.Handler(backend), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}

	errc := make(chan error, 5)
	var wg sync.WaitGroup
	run := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("pxe: %s: %w", name, err)
				cancel()
			}
		}()
	}
	run("DHCP", func() error { return s.dhcpLoop(ctx, s.dhcpConn, onDHCP) })
	run("PXE", func() error { return s.dhcpLoop(ctx, s.proxyConn, onProxy) })
	run("TFTP", func() error { return tsrv.Serve(s.tftpConn) })
	run("HTTP", func() error {
		if err := hsrv.Serve(s.httpLn); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	wg.Add(1)
	go func() { defer wg.Done(); s.reportLoop(ctx, backend) }()
	s.log.Info("serving", "mode", s.cfg.Mode, "interface", s.cfg.Interface, "server_ip", s.cfg.serverIP.String(),
		"dhcp", s.dhcpConn.LocalAddr().String(), "pxe", s.proxyConn.LocalAddr().String(),
		"tftp", s.tftpConn.LocalAddr().String(), "http", s.httpLn.Addr().String())

	<-ctx.Done()
	s.dhcpConn.Close()
	s.proxyConn.Close()
	tsrv.Shutdown()
	sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
	hsrv.Shutdown(sctx)
	scancel()
	hsrv.Close()
	wg.Wait()
	s.mu.Lock()
	s.listening = false
	s.mu.Unlock()
	st := s.Stats()
	s.log.Info("stopped", "dhcp_received", st.DHCPReceived, "dhcp_replies", st.DHCPReplies,
		"dhcp_malformed", st.DHCPMalformed, "tftp_transfers", st.TFTPTransfers, "http_scripts", st.HTTPScripts)
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// dhcpLoop reads packets from conn and answers them one at a time: a
// flood then costs one core, not unbounded goroutines.
func (s *Server) dhcpLoop(ctx context.Context, conn *net.UDPConn, l listener) error {
	buf := make([]byte, 4096)
	var lastLog time.Time
	var logged Stats
	for {
		n, peer, err := conn.ReadFromUDP(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		if n == len(buf) {
			s.stats.dhcpReceived.Add(1)
			s.stats.dhcpMalformed.Add(1)
			continue // longer than any DHCP packet we accept
		}
		r, err := s.handleDHCP(l, peer, buf[:n])
		if err != nil {
			s.log.Debug("dhcp packet dropped", "port", l.String(), "peer", peer.String(), "reason", err.Error())
			if now := time.Now(); now.Sub(lastLog) >= 10*time.Second {
				st := s.Stats()
				if st.DHCPMalformed != logged.DHCPMalformed || st.DHCPNoAddress != logged.DHCPNoAddress {
					s.log.Warn("dhcp packets dropped", "malformed", st.DHCPMalformed, "ignored", st.DHCPIgnored,
						"no_address", st.DHCPNoAddress, "unsupported_arch", st.DHCPUnsupportedArch, "last", err.Error())
					lastLog, logged = now, st
				}
			}
			continue
		}
		if r == nil {
			continue
		}
		if err := s.send(conn, r); err != nil {
			s.stats.dhcpUnsent.Add(1)
			s.log.Warn("dhcp reply not sent", "mac", r.mac, "to", r.to.String(), "error", err.Error())
			continue
		}
		s.stats.dhcpReplies.Add(1)
		if r.what != "" {
			s.event(boot.Event{MAC: r.mac, What: r.what, Detail: r.detail})
		}
	}
}

// send writes r. Without an interface there is no link to broadcast on:
// the packet would leave by the default route, so it is not sent.
func (s *Server) send(conn *net.UDPConn, r *reply) error {
	if r.to.IP.Equal(net.IPv4bcast) && s.cfg.Interface == "" {
		return errors.New("broadcast needs an interface (set interface)")
	}
	_, err := conn.WriteToUDP(r.pkt.ToBytes(), r.to)
	return err
}

// event queues e for the core; it never blocks a server.
func (s *Server) event(e boot.Event) {
	s.mu.Lock()
	ch := s.events
	s.mu.Unlock()
	if ch == nil {
		return
	}
	select {
	case ch <- e:
	default:
		s.stats.eventsDropped.Add(1)
	}
}

func (s *Server) reportLoop(ctx context.Context, b boot.Backend) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-s.events:
			if err := b.Report(ctx, e); err != nil && ctx.Err() == nil {
				s.log.Warn("cannot report event", "mac", e.MAC, "what", e.What, "error", err.Error())
			}
		}
	}
}
