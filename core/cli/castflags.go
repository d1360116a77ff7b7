package cli

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/diskcast/diskcast/core/config"
	"github.com/diskcast/diskcast/sdk/transport"
)

// DefaultGroup is the multicast group and data port of send and receive
// when --group is not given (the control port is the next one).
const DefaultGroup = "239.192.75.1:41000"

// castFlags are the multicast settings send and receive share.
type castFlags struct {
	group     *string
	iface     *string
	key       *string
	keyFile   *string
	sessionID *uint64
	ttl       *int
	hostOnly  *bool
}

func addCastFlags(fs *flag.FlagSet) *castFlags {
	return &castFlags{
		group:     fs.String("group", DefaultGroup, "multicast group and data port (the control port is the next one)"),
		iface:     fs.String("interface", "", "network interface for multicast (default: the route's)"),
		key:       fs.String("session-key", "", "the session secret, hex (send: default a new random one, printed)"),
		keyFile:   fs.String("session-key-file", "", "read the session secret (hex) from this file"),
		sessionID: fs.Uint64("session-id", 0, "session ID (default: derived from the key)"),
		ttl:       fs.Int("ttl", 1, "multicast TTL"),
		hostOnly:  fs.Bool("host-only", false, "TTL 0: packets never leave this host (tests, demos)"),
	}
}

// session builds the multicast transport's session parameters. A sender
// without a key gets a new one.
func (c *castFlags) session(name string, generate bool) (transport.Session, []byte, error) {
	g, err := netip.ParseAddrPort(*c.group)
	if err != nil || !g.Addr().Is4() || !g.Addr().IsMulticast() || g.Port() == 0 || g.Port() == 65535 {
		return transport.Session{}, nil, fmt.Errorf("%w: --group %q: want an IPv4 multicast group and port such as %s", errUsage, *c.group, DefaultGroup)
	}
	hexKey := strings.TrimSpace(*c.key)
	if *c.keyFile != "" {
		b, err := os.ReadFile(*c.keyFile)
		if err != nil {
			return transport.Session{}, nil, fmt.Errorf("--session-key-file: %w", err)
		}
		hexKey = strings.TrimSpace(string(b))
	}
	var key []byte
	switch {
	case hexKey != "":
		if key, err = hex.DecodeString(hexKey); err != nil || len(key) < 16 {
			return transport.Session{}, nil, fmt.Errorf("%w: --session-key: want at least 16 bytes (32 hex digits), in hex", errUsage)
		}
	case generate:
		key = make([]byte, 32)
		rand.Read(key)
	default:
		return transport.Session{}, nil, fmt.Errorf("%w: --session-key or --session-key-file is required: the sender prints the key", errUsage)
	}
	id := *c.sessionID
	if id == 0 {
		id = sessionIDOf(key)
	}
	params := map[string]string{
		"group":      g.String(),
		"session_id": strconv.FormatUint(id, 10),
		"key":        hex.EncodeToString(key),
		"ttl":        strconv.Itoa(*c.ttl),
	}
	if *c.iface != "" {
		params["interface"] = *c.iface
	}
	if *c.hostOnly {
		params["host_only"] = "true"
	}
	return transport.Session{ID: name, Params: params}, key, nil
}

// sessionIDOf derives a session ID from the key, so that an operator
// passes one secret to the receivers, not two values.
func sessionIDOf(key []byte) uint64 {
	sum := sha256.Sum256(append([]byte("diskcast session id\x00"), key...))
	if id := binary.BigEndian.Uint64(sum[:8]); id != 0 {
		return id
	}
	return 1
}

// parseRate reads a rate cap in bits per second as udpcast's
// --max-bitrate and the configuration's rate take it ("600m", "1G");
// "adaptive" or 0 means adaptive. It returns bytes per second.
func parseRate(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" || s == "adaptive" {
		return 0, nil
	}
	n, err := config.ParseRate(s)
	if err != nil {
		return 0, fmt.Errorf("%w: rate %q: %v", errUsage, s, err)
	}
	return n, nil
}
