//go:build linux

package multicast

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// sockOpts describes one socket of a session.
type sockOpts struct {
	group   net.IP // bound and joined
	port    int    // bound
	dst     *net.UDPAddr
	ifi     *net.Interface // nil: the kernel's choice
	ttl     int
	rcvbuf  int
	sndbuf  int
	batch   int // datagrams per recvmmsg
	bufSize int // bytes per receive buffer
}

// mconn is a UDP socket bound to a multicast group and port. Reads use
// recvmmsg directly: ipv4.PacketConn.ReadBatch parses a source address
// into a new net.UDPAddr for every datagram, and this path runs at
// 200k+ datagrams per second. Writes use ipv4.PacketConn.WriteBatch
// (sendmmsg), which does not allocate per datagram.
type mconn struct {
	uc  *net.UDPConn
	pc  *ipv4.PacketConn
	rc  syscall.RawConn
	dst *net.UDPAddr

	hdrs     []unix.Mmsghdr
	iovs     []unix.Iovec
	bufs     [][]byte
	deadline time.Time
	nread    int
	rerr     error
	readFn   func(uintptr) bool

	wmsgs []ipv4.Message

	rcvbuf, sndbuf int // as the kernel reports them
}

func openConn(ctx context.Context, o sockOpts) (*mconn, error) {
	if o.group.To4() == nil || !o.group.IsMulticast() {
		return nil, fmt.Errorf("%w: group %v is not an IPv4 multicast address", ErrConfig, o.group)
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			// Several receivers on one host share the group and port.
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
				serr = fmt.Errorf("SO_REUSEADDR: %w", serr)
				return
			}
			// Only the groups joined on this socket, not every group
			// any socket of the host joined on this port.
			if serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0); serr != nil {
				serr = fmt.Errorf("IP_MULTICAST_ALL: %w", serr)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	addr := net.JoinHostPort(o.group.String(), strconv.Itoa(o.port))
	pconn, err := lc.ListenPacket(ctx, "udp4", addr)
	if err != nil {
		return nil, fmt.Errorf("multicast: listen %s: %w", addr, err)
	}
	uc := pconn.(*net.UDPConn)
	c := &mconn{uc: uc, pc: ipv4.NewPacketConn(uc), dst: o.dst}
	if err := c.setup(o); err != nil {
		uc.Close()
		return nil, fmt.Errorf("multicast: socket %s: %w", addr, err)
	}
	return c, nil
}

func (c *mconn) setup(o sockOpts) error {
	if err := c.pc.JoinGroup(o.ifi, &net.UDPAddr{IP: o.group}); err != nil {
		return fmt.Errorf("join group on %s: %w", ifName(o.ifi), err)
	}
	if o.ifi != nil {
		if err := c.pc.SetMulticastInterface(o.ifi); err != nil {
			return fmt.Errorf("multicast interface %s: %w", o.ifi.Name, err)
		}
	}
	if err := c.pc.SetMulticastTTL(o.ttl); err != nil {
		return fmt.Errorf("multicast TTL %d: %w", o.ttl, err)
	}
	// Sender and receivers may share a host (and tests run them in one
	// process); a receiver also overhears its own requests and ignores
	// them by node ID.
	if err := c.pc.SetMulticastLoopback(true); err != nil {
		return fmt.Errorf("multicast loopback: %w", err)
	}
	rc, err := c.uc.SyscallConn()
	if err != nil {
		return err
	}
	c.rc = rc
	var serr error
	err = rc.Control(func(fd uintptr) {
		c.rcvbuf, serr = setBuffer(int(fd), unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, o.rcvbuf)
		if serr != nil {
			return
		}
		c.sndbuf, serr = setBuffer(int(fd), unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, o.sndbuf)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return err
	}
	batch := max(o.batch, 1)
	c.hdrs = make([]unix.Mmsghdr, batch)
	c.iovs = make([]unix.Iovec, batch)
	c.bufs = make([][]byte, batch)
	for i := range c.hdrs {
		c.bufs[i] = make([]byte, o.bufSize)
		c.iovs[i].Base = &c.bufs[i][0]
		c.iovs[i].SetLen(o.bufSize)
		c.hdrs[i].Hdr.Iov = &c.iovs[i]
		c.hdrs[i].Hdr.SetIovlen(1)
	}
	c.readFn = c.recvmmsg
	return nil
}

// setBuffer sets a socket buffer size, beyond the sysctl limit when the
// process may (force), else as far as the limit allows. It returns the
// size the kernel reports.
func setBuffer(fd, force, plain, size int) (int, error) {
	if size > 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, size); err != nil {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, plain, size); err != nil {
				return 0, fmt.Errorf("socket buffer %d bytes: %w", size, err)
			}
		}
	}
	return unix.GetsockoptInt(fd, unix.SOL_SOCKET, plain)
}

func ifName(ifi *net.Interface) string {
	if ifi == nil {
		return "the default interface"
	}
	return ifi.Name
}

func (c *mconn) recvmmsg(fd uintptr) bool {
	for {
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&c.hdrs[0])), uintptr(len(c.hdrs)), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			c.nread = int(r)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			c.rerr = fmt.Errorf("recvmmsg: %w", e)
			return true
		}
	}
}

// readBatch waits until at least one datagram arrives or the deadline
// passes (it may return earlier) and returns how many were received;
// msg(i) returns datagram i. A deadline that passes returns 0 and no
// error.
func (c *mconn) readBatch(deadline time.Time) (int, error) {
	// Moving the deadline costs a timer update; keep an earlier one that
	// has not passed (waking early is harmless), since this runs for
	// every batch.
	if deadline.Before(c.deadline) || !c.deadline.After(time.Now()) {
		if err := c.uc.SetReadDeadline(deadline); err != nil {
			return 0, err
		}
		c.deadline = deadline
	}
	c.nread, c.rerr = 0, nil
	if err := c.rc.Read(c.readFn); err != nil {
		if errors.Is(err, unix.ETIMEDOUT) || isTimeout(err) {
			return 0, nil
		}
		return 0, err
	}
	return c.nread, c.rerr
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// msg returns datagram i of the last batch; truncated datagrams (larger
// than the buffer) come back as nil.
func (c *mconn) msg(i int) []byte {
	h := &c.hdrs[i]
	if h.Hdr.Flags&unix.MSG_TRUNC != 0 {
		return nil
	}
	return c.bufs[i][:h.Len]
}

// writeBatch sends every datagram of pkts to the destination.
func (c *mconn) writeBatch(pkts [][]byte) error {
	if cap(c.wmsgs) < len(pkts) {
		c.wmsgs = make([]ipv4.Message, len(pkts))
		for i := range c.wmsgs {
			c.wmsgs[i].Buffers = make([][]byte, 1)
		}
	}
	ms := c.wmsgs[:len(pkts)]
	for i, p := range pkts {
		ms[i].Buffers[0] = p
		ms[i].Addr = c.dst
	}
	for len(ms) > 0 {
		n, err := c.pc.WriteBatch(ms, 0)
		if err != nil {
			return fmt.Errorf("multicast: send to %v: %w", c.dst, err)
		}
		ms = ms[n:]
	}
	return nil
}

// write sends one datagram.
func (c *mconn) write(p []byte) error {
	if _, err := c.uc.WriteToUDP(p, c.dst); err != nil {
		return fmt.Errorf("multicast: send to %v: %w", c.dst, err)
	}
	return nil
}

func (c *mconn) close() error { return c.uc.Close() }

// resolveInterface finds the interface to send and join on: by name, by
// local address, or (both empty) the kernel's choice (nil).
func resolveInterface(name string, local net.IP) (*net.Interface, error) {
	if name != "" {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return nil, fmt.Errorf("%w: interface %q: %v", ErrConfig, name, err)
		}
		return ifi, nil
	}
	if local == nil {
		return nil, nil
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("multicast: list interfaces: %w", err)
	}
	for i := range ifs {
		addrs, err := ifs[i].Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.Equal(local) {
				return &ifs[i], nil
			}
		}
	}
	return nil, fmt.Errorf("%w: no interface has address %v", ErrConfig, local)
}
