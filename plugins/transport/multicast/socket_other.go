//go:build !linux

package multicast

import (
	"context"
	"net"
	"time"
)

// The engine needs Linux socket options (IP_MULTICAST_ALL, recvmmsg,
// SO_RCVBUFFORCE); elsewhere it compiles and refuses to run.

type sockOpts struct {
	group   net.IP
	port    int
	dst     *net.UDPAddr
	ifi     *net.Interface
	ttl     int
	rcvbuf  int
	sndbuf  int
	batch   int
	bufSize int
}

type mconn struct{ rcvbuf, sndbuf int }

func openConn(context.Context, sockOpts) (*mconn, error)      { return nil, ErrUnsupported }
func (c *mconn) readBatch(time.Time) (int, error)             { return 0, ErrUnsupported }
func (c *mconn) msg(int) []byte                               { return nil }
func (c *mconn) writeBatch([][]byte) error                    { return ErrUnsupported }
func (c *mconn) write([]byte) error                           { return ErrUnsupported }
func (c *mconn) close() error                                 { return nil }
func resolveInterface(string, net.IP) (*net.Interface, error) { return nil, ErrUnsupported }
