// Package multicast is diskcast's reliable, receiver-driven multicast
// protocol engine: Send serves one image to any number of receivers on an
// IP multicast group, Receive fetches it. The wire protocol is documented
// byte by byte in docs/PROTOCOL.md.
//
// The engine moves opaque objects and knows nothing of the image format:
// the sender reads chunks through a ChunkSource, the receiver hands the
// metadata blob and each complete chunk to a ChunkSink, which verifies and
// writes it. It imports nothing from the diskcast core, so it can run
// inside a transport plugin.
//
// Receivers ask for what they miss; requests are multicast so receivers
// overhear each other and hold back duplicates; the sender merges requests
// into one work queue and sends each requested block once for everyone.
// Every packet carries the session ID and an HMAC-SHA256 tag keyed by the
// per-session secret; packets of other sessions and forged packets are
// dropped and counted.
package multicast

import "errors"

// Errors returned by Send and Receive. A ChunkSink signals a checksum
// mismatch by returning an error that wraps ErrChecksum.
var (
	ErrConfig       = errors.New("multicast: invalid configuration")
	ErrChecksum     = errors.New("multicast: chunk checksum mismatch")
	ErrSenderLost   = errors.New("multicast: sender lost")
	ErrSenderEnded  = errors.New("multicast: sender ended the session before this receiver was complete")
	ErrImageChanged = errors.New("multicast: sender now serves another image")
	ErrStraggler    = errors.New("multicast: cut off as a straggler")
	ErrIdle         = errors.New("multicast: idle timeout with no receiver")
	ErrMetadata     = errors.New("multicast: metadata rejected")
	ErrSource       = errors.New("multicast: chunk source")
	ErrUnsupported  = errors.New("multicast: unsupported on this platform")

	// errMalformed is wrapped by every packet decoding error; such packets
	// are counted and dropped, never returned.
	errMalformed = errors.New("multicast: malformed packet")
	errStray     = errors.New("multicast: packet of another session")
	errForged    = errors.New("multicast: bad authentication tag")
)
