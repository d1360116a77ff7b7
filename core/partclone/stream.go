package partclone

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// Pieces returns the files that make up the image at path: path alone, or
// when path is the first piece of a split image (NAME.aa) or the name the
// pieces share (NAME, with NAME.aa, NAME.ab, ... beside it), every piece in
// order. A missing piece in the sequence is an error.
func Pieces(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err == nil && !st.Mode().IsRegular() {
		return nil, fmt.Errorf("partclone: %s is not a regular file", path)
	}
	prefix := ""
	switch {
	case err == nil && firstPiece(path):
		prefix = path[:len(path)-splitSuffix(path)]
	case err == nil:
		return []string{path}, nil
	case errors.Is(err, os.ErrNotExist):
		prefix = path + "."
	default:
		return nil, err
	}
	matches, err := filepath.Glob(GlobEscape(prefix) + "*")
	if err != nil {
		return nil, err
	}
	var pieces []string
	for _, m := range matches {
		if n := splitSuffix(m); n > 0 && len(m)-n == len(prefix) && strings.HasPrefix(m, prefix) {
			pieces = append(pieces, m)
		}
	}
	if len(pieces) == 0 {
		if err != nil {
			return nil, fmt.Errorf("%w: %s: no such file, and no pieces %saa, %sab, ...", ErrNoFiles, path, prefix, prefix)
		}
		return nil, fmt.Errorf("%w: %s", ErrNoFiles, path)
	}
	slices.Sort(pieces)
	// All pieces have suffixes of one length, counting aa, ab, ... az, ba.
	n := len(pieces[0]) - len(prefix)
	for i, p := range pieces {
		if want := prefix + suffixAt(i, n); p != want {
			return nil, fmt.Errorf("partclone: split image %s*: piece %s is missing (found %s next)", prefix, want, filepath.Base(p))
		}
	}
	return pieces, nil
}

// splitSuffix returns the length of the split suffix of name (".aa" ->
// 2), or 0. split(1) names pieces with two or more lower-case letters.
func splitSuffix(name string) int {
	dot := strings.LastIndexByte(name, '.')
	if dot < 0 || strings.ContainsRune(name[dot:], '/') {
		return 0
	}
	s := name[dot+1:]
	if len(s) < 2 || len(s) > 6 {
		return 0
	}
	for _, c := range s {
		if c < 'a' || c > 'z' {
			return 0
		}
	}
	return len(s)
}

// firstPiece reports whether name ends in the first split suffix (.aa,
// .aaa, ...).
func firstPiece(name string) bool {
	n := splitSuffix(name)
	return n > 0 && strings.Trim(name[len(name)-n:], "a") == ""
}

// suffixAt is the i-th split suffix of length n: aa, ab, ..., az, ba, ...
func suffixAt(i, n int) string {
	b := make([]byte, n)
	for k := n - 1; k >= 0; k-- {
		b[k] = byte('a' + i%26)
		i /= 26
	}
	return string(b)
}

// GlobEscape quotes the characters filepath.Glob treats as patterns, so a
// file name can be used literally in a pattern.
func GlobEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Stream is the decompressed content of the pieces of one image file.
type Stream struct {
	io.Reader
	Compression string // none, gzip, zstd, xz, lzma, lz4, bzip2
	Files       []string
	Size        int64 // bytes of the files as stored

	files []*os.File
	in    *countReader
	dec   io.Closer
}

// InBytes returns how many stored (compressed) bytes have been read.
func (s *Stream) InBytes() int64 { return s.in.n.Load() }

// Close closes the decompressor and the files.
func (s *Stream) Close() error {
	if s.dec != nil {
		s.dec.Close()
	}
	var first error
	for _, f := range s.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Compression magics.
var (
	magicGzip  = []byte{0x1f, 0x8b}
	magicZstd  = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicXz    = []byte{0xfd, '7', 'z', 'X', 'Z', 0}
	magicLz4   = []byte{0x04, 0x22, 0x4d, 0x18}
	magicLz4L  = []byte{0x02, 0x21, 0x4c, 0x18} // lz4 -l legacy frames
	magicBzip2 = []byte("BZh")
	magicLzop  = []byte{0x89, 'L', 'Z', 'O', 0}
	magicLzip  = []byte("LZIP")
)

// OpenStream opens the pieces (see Pieces) as one stream and undoes the
// compression its first bytes announce. lzma (which has no magic) is
// recognised by a .lzma in the file name.
func OpenStream(pieces []string) (*Stream, error) {
	if len(pieces) == 0 {
		return nil, ErrNoFiles
	}
	s := &Stream{Files: pieces}
	readers := make([]io.Reader, 0, len(pieces))
	for _, p := range pieces {
		f, err := os.Open(p)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("partclone: %w", err)
		}
		s.files = append(s.files, f)
		if st, err := f.Stat(); err == nil {
			s.Size += st.Size()
		}
		readers = append(readers, f)
	}
	s.in = &countReader{r: io.MultiReader(readers...)}
	br := bufio.NewReaderSize(s.in, 1<<20)
	head, _ := br.Peek(8)
	name := filepath.Base(pieces[0])
	fail := func(what, how string) (*Stream, error) {
		s.Close()
		return nil, fmt.Errorf("%w: %s is %s compressed; %s", ErrCompression, name, what, how)
	}
	var err error
	switch {
	case bytes.HasPrefix(head, magicGzip):
		s.Compression = "gzip"
		var z *pgzip.Reader
		z, err = pgzip.NewReaderN(br, 1<<20, 8)
		s.Reader, s.dec = z, z
	case bytes.HasPrefix(head, magicZstd):
		s.Compression = "zstd"
		var z *zstd.Decoder
		z, err = zstd.NewReader(br, zstd.WithDecoderMaxWindow(1<<31))
		if err == nil {
			s.Reader, s.dec = z, closerFunc(func() error { z.Close(); return nil })
		}
	case bytes.HasPrefix(head, magicXz):
		s.Compression = "xz"
		s.Reader, err = xz.NewReader(br)
	case bytes.HasPrefix(head, magicLz4), bytes.HasPrefix(head, magicLz4L):
		s.Compression = "lz4"
		s.Reader = lz4.NewReader(br)
	case bytes.HasPrefix(head, magicBzip2):
		s.Compression = "bzip2"
		s.Reader = bzip2.NewReader(br)
	case bytes.HasPrefix(head, magicLzop):
		return fail("lzop", "decompress it first (lzop -dc) and give the result")
	case bytes.HasPrefix(head, magicLzip):
		return fail("lzip", "decompress it first (lzip -dc) and give the result")
	case strings.Contains(name, ".lzma"):
		s.Compression = "lzma"
		s.Reader, err = lzma.NewReader(br)
	default:
		s.Compression = "none"
		s.Reader = Unbuffer(br, s.in)
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("partclone: %s: %s stream: %w", name, s.Compression, err)
	}
	switch s.Compression {
	case "none", "gzip":
		// pgzip reads ahead by itself.
	default:
		// Decompress ahead on another goroutine, so the decoder keeps a
		// core busy while the consumer waits on its own output.
		ra := newReadAhead(s.Reader, 4<<20, 4)
		prev := s.dec
		s.Reader = ra
		s.dec = closerFunc(func() error {
			ra.Close()
			if prev != nil {
				return prev.Close()
			}
			return nil
		})
	}
	return s, nil
}

// readAhead reads its source on a goroutine into a few buffers ahead of
// the consumer.
type readAhead struct {
	full chan []byte
	free chan []byte
	buf  []byte // the buffer being consumed
	cur  []byte // its unread part
	err  error
	done chan struct{}
	// exited closes when the goroutine has returned: only then may the
	// source (a decompressor) be closed, or a read in flight uses it
	// after Close.
	exited chan struct{}
	errc   chan error
	close  sync.Once
}

func newReadAhead(r io.Reader, size, n int) *readAhead {
	ra := &readAhead{full: make(chan []byte, n), free: make(chan []byte, n), done: make(chan struct{}), exited: make(chan struct{}), errc: make(chan error, 1)}
	for range n {
		ra.free <- make([]byte, size)
	}
	go func() {
		defer close(ra.exited)
		defer close(ra.full)
		for {
			var b []byte
			select {
			case b = <-ra.free:
			case <-ra.done:
				return
			}
			k, err := io.ReadFull(r, b)
			if k > 0 {
				select {
				case ra.full <- b[:k]:
				case <-ra.done:
					return
				}
			}
			if err != nil {
				if errors.Is(err, io.ErrUnexpectedEOF) {
					err = io.EOF
				}
				ra.errc <- err
				return
			}
		}
	}()
	return ra
}

func (ra *readAhead) Read(p []byte) (int, error) {
	for len(ra.cur) == 0 {
		if ra.buf != nil {
			ra.free <- ra.buf[:cap(ra.buf)]
			ra.buf = nil
		}
		b, ok := <-ra.full
		if !ok {
			if ra.err == nil {
				select {
				case ra.err = <-ra.errc:
				default:
					ra.err = io.ErrClosedPipe
				}
			}
			return 0, ra.err
		}
		ra.buf, ra.cur = b, b
	}
	n := copy(p, ra.cur)
	ra.cur = ra.cur[n:]
	return n, nil
}

// Close stops the reading goroutine and waits for it to return.
func (ra *readAhead) Close() error {
	ra.close.Do(func() { close(ra.done) })
	<-ra.exited
	return nil
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// Open opens the partclone image at path (one file, or split pieces; see
// Pieces), compressed or not, and reads its header and bitmap. Close the
// Reader when done.
func Open(path string) (*Reader, *Stream, error) {
	pieces, err := Pieces(path)
	if err != nil {
		return nil, nil, err
	}
	s, err := OpenStream(pieces)
	if err != nil {
		return nil, nil, err
	}
	r, err := NewReader(s)
	if err != nil {
		s.Close()
		return nil, nil, fmt.Errorf("%s: %w", pieces[0], err)
	}
	r.closer = s
	return r, s, nil
}
