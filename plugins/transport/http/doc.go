// Package unicast is diskcast's unicast HTTP transport: an image server
// that makes every chunk of an image addressable by its index, and a client
// that fetches the image metadata and single chunks with timeouts, retries
// and size checks. A node uses it to restore an image on its own
// (`diskcast receive --from http://...`), and the multicast receiver uses it
// to repair the chunks it missed.
//
// The package is named unicast rather than http so that it can be used
// next to net/http without an import alias.
//
// The wire protocol (all GET, HEAD works too; ID is the image's name in the
// server's catalog):
//
//	/v1/images/ID/meta       the image metadata: header, index and trailer
//	                         bytes, concatenated
//	/v1/images/ID/chunks/N   the stored (compressed) payload of chunk N,
//	                         0-based, exactly as in the image file
//	/v1/images/ID.dci        the whole image file, with Range support
//	                         (curl -r 0-1023 works)
//
// Errors are plain-text bodies with the usual status codes: 400 for a
// malformed request, 404 for an unknown image or chunk, 500 when the image
// on the server is unreadable.
//
// The transport only moves bytes. It checks sizes against what the caller
// expects, but the caller (the core) parses the metadata and verifies each
// chunk's SHA-256 against the index. The package imports nothing of
// diskcast's core, so that it can run inside a plugin process.
package unicast

import "errors"

// Errors of the server and the client. Test them with errors.Is.
var (
	// ErrNotFound means the server has no such image, or no such chunk in it.
	ErrNotFound = errors.New("unicast: not found")
	// ErrBadRequest means the server refused the request as malformed.
	ErrBadRequest = errors.New("unicast: bad request")
	// ErrStatus means the server answered with an unexpected HTTP status.
	ErrStatus = errors.New("unicast: unexpected HTTP status")
	// ErrSize means a response body is not the size the image index gives,
	// or exceeds the cap: the server holds another image or a damaged one.
	ErrSize = errors.New("unicast: wrong response size")
	// ErrUnavailable means a request kept failing with transient errors
	// (connection refused or reset, timeouts, 5xx) until the attempts ran out.
	ErrUnavailable = errors.New("unicast: server unavailable")
	// ErrNoSizes means FetchAll was called before Fetcher.Sizes was set.
	ErrNoSizes = errors.New("unicast: chunk sizes not set")
	// ErrImage means the image a catalog returned is inconsistent (a chunk
	// outside the file).
	ErrImage = errors.New("unicast: inconsistent image")
)
