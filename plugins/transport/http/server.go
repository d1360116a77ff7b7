package unicast

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// ChunkSource is one image as the server sees it. The caller, which can
// parse the image, supplies the metadata and where each chunk lies.
type ChunkSource interface {
	// Meta is the image's header, index and trailer bytes, concatenated.
	Meta() []byte
	// NumChunks is the number of chunks in the index.
	NumChunks() int
	// ChunkRange is the file offset and stored size of chunk i.
	ChunkRange(i int) (off, size int64)
	// ImageFile reads the image file.
	ImageFile() io.ReaderAt
	// Size is the image file's size in bytes.
	Size() int64
}

// A ChunkSource may also implement these; the server then sends an ETag
// (so that If-Range works) and Last-Modified. A chunkReader serves chunks
// itself (ChunkRange and ImageFile are then unused for chunks); its
// ImageFile may be nil, and the whole-file path is then not served.
type (
	etagger     interface{ ETag() string }
	modTimer    interface{ ModTime() time.Time }
	chunkReader interface {
		ReadChunk(ctx context.Context, i int) ([]byte, error)
	}
)

// Catalog finds images by the ID that requests name.
type Catalog interface {
	// Lookup returns the image called id, or an error wrapping ErrNotFound.
	Lookup(ctx context.Context, id string) (ChunkSource, error)
}

// CatalogFunc makes a function a Catalog.
type CatalogFunc func(ctx context.Context, id string) (ChunkSource, error)

// Lookup calls f.
func (f CatalogFunc) Lookup(ctx context.Context, id string) (ChunkSource, error) { return f(ctx, id) }

// Images is a fixed list of images by ID. Its zero value is empty; it is
// safe for concurrent use.
type Images struct {
	mu sync.RWMutex
	m  map[string]ChunkSource
}

// Add serves src as id, replacing any image of that ID.
func (c *Images) Add(id string, src ChunkSource) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]ChunkSource{}
	}
	c.m[id] = src
}

// Remove stops serving id.
func (c *Images) Remove(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
}

// Lookup returns the image added as id.
func (c *Images) Lookup(_ context.Context, id string) (ChunkSource, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if src, ok := c.m[id]; ok {
		return src, nil
	}
	return nil, fmt.Errorf("%w: image %q", ErrNotFound, id)
}

// Dir serves the images in a directory: ID names the file ID.dci. Open
// turns a file into a ChunkSource (it parses the image, which this package
// cannot). Opened images are kept; a file that is replaced (new size,
// modification time or inode) is opened again, and the old ChunkSource is
// closed by Close, not before, because requests may still read it.
type Dir struct {
	Path string
	Open func(path string) (ChunkSource, error)

	mu     sync.Mutex
	open   map[string]dirEntry
	stale  []*dirSource
	closed bool
}

type dirEntry struct {
	key string // size, mtime and inode of the file when opened
	src *dirSource
}

// dirSource adds an ETag and a modification time, taken from the file, to
// what Open returned.
type dirSource struct {
	ChunkSource
	etag string
	mod  time.Time
}

func (s *dirSource) ETag() string       { return s.etag }
func (s *dirSource) ModTime() time.Time { return s.mod }
func (s *dirSource) Close() error       { return closeSource(s.ChunkSource) }

// Lookup opens (or reuses) Path/id.dci.
func (d *Dir) Lookup(_ context.Context, id string) (ChunkSource, error) {
	if !validFileID(id) {
		return nil, fmt.Errorf("%w: image %q: not a file name in %s", ErrNotFound, id, d.Path)
	}
	path := filepath.Join(d.Path, id+".dci")
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: image %q: no %s", ErrNotFound, id, path)
		}
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: image %q: %s is not a regular file", ErrNotFound, id, path)
	}
	key := fmt.Sprintf("%x-%x", st.Size(), st.ModTime().UnixNano())
	if sys, ok := st.Sys().(interface{ Ino() uint64 }); ok {
		key += fmt.Sprintf("-%x", sys.Ino())
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, fmt.Errorf("%w: image %q: catalog closed", ErrNotFound, id)
	}
	if e, ok := d.open[id]; ok {
		if e.key == key {
			return e.src, nil
		}
		d.stale = append(d.stale, e.src)
	}
	inner, err := d.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: image %q: %v", ErrImage, id, err)
	}
	src := &dirSource{ChunkSource: inner, etag: key, mod: st.ModTime()}
	if d.open == nil {
		d.open = map[string]dirEntry{}
	}
	d.open[id] = dirEntry{key: key, src: src}
	return src, nil
}

// Close closes every ChunkSource Dir opened that implements io.Closer.
func (d *Dir) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	var errs []error
	for _, src := range d.stale {
		errs = append(errs, src.Close())
	}
	for _, e := range d.open {
		errs = append(errs, e.src.Close())
	}
	d.open, d.stale = nil, nil
	return errors.Join(errs...)
}

func closeSource(src ChunkSource) error {
	if c, ok := src.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// validFileID accepts IDs that are plain file names: no path separators,
// no leading dot.
func validFileID(id string) bool {
	if id == "" || len(id) > 200 || id[0] == '.' {
		return false
	}
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return false
		}
	}
	return true
}

// Handler serves a Catalog's images over HTTP (see the package doc for
// the paths). Create it with NewHandler.
type Handler struct {
	catalog Catalog
	log     hclog.Logger
	mux     *http.ServeMux
}

// NewHandler returns a handler serving the images of c. A nil logger
// discards the log.
func NewHandler(c Catalog, log hclog.Logger) *Handler {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	h := &Handler{catalog: c, log: log, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /v1/images/{id}/meta", h.serveMeta)
	h.mux.HandleFunc("GET /v1/images/{id}/chunks/{n}", h.serveChunk)
	h.mux.HandleFunc("GET /v1/images/{file}", h.serveFile)
	return h
}

// ServeHTTP routes a request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// lookup finds the image of a request, or answers the error and returns nil.
func (h *Handler) lookup(w http.ResponseWriter, r *http.Request, id string) ChunkSource {
	if id == "" || strings.ContainsAny(id, "/\x00") {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("image ID %q is malformed", id))
		return nil
	}
	src, err := h.catalog.Lookup(r.Context(), id)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			httpError(w, http.StatusNotFound, err.Error())
			return nil
		}
		h.log.Error("image lookup failed", "image", id, "error", err)
		httpError(w, http.StatusInternalServerError, err.Error())
		return nil
	}
	return src
}

func (h *Handler) serveMeta(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	src := h.lookup(w, r, id)
	if src == nil {
		return
	}
	serve(w, r, src, "meta", bytes.NewReader(src.Meta()))
}

func (h *Handler) serveChunk(w http.ResponseWriter, r *http.Request) {
	id, ns := r.PathValue("id"), r.PathValue("n")
	n, err := strconv.ParseUint(ns, 10, 31)
	if err != nil || (len(ns) > 1 && ns[0] == '0') {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("chunk %q: not a chunk number", ns))
		return
	}
	src := h.lookup(w, r, id)
	if src == nil {
		return
	}
	i := int(n)
	if count := src.NumChunks(); i >= count {
		httpError(w, http.StatusNotFound, fmt.Sprintf("%v: image %q: chunk %d: the image has %d chunks", ErrNotFound, id, i, count))
		return
	}
	if cr, ok := src.(chunkReader); ok {
		data, err := cr.ReadChunk(r.Context(), i)
		if err != nil {
			h.log.Error("chunk read failed", "image", id, "chunk", i, "error", err)
			httpError(w, http.StatusInternalServerError, fmt.Sprintf("image %q: chunk %d: %v", id, i, err))
			return
		}
		serve(w, r, src, "chunk-"+ns, bytes.NewReader(data))
		return
	}
	off, size := src.ChunkRange(i)
	if off < 0 || size < 0 || off > src.Size()-size {
		h.log.Error("chunk outside the image file", "image", id, "chunk", i, "offset", off, "size", size, "file_size", src.Size())
		httpError(w, http.StatusInternalServerError, fmt.Sprintf("%v: image %q: chunk %d at %d+%d lies outside the %d-byte file", ErrImage, id, i, off, size, src.Size()))
		return
	}
	serve(w, r, src, "chunk-"+ns, io.NewSectionReader(src.ImageFile(), off, size))
}

func (h *Handler) serveFile(w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutSuffix(r.PathValue("file"), ".dci")
	if !ok {
		httpError(w, http.StatusNotFound, fmt.Sprintf("%v: %s: want /v1/images/ID.dci, /v1/images/ID/meta or /v1/images/ID/chunks/N", ErrNotFound, r.URL.Path))
		return
	}
	src := h.lookup(w, r, id)
	if src == nil {
		return
	}
	file := src.ImageFile()
	if file == nil {
		httpError(w, http.StatusNotFound, fmt.Sprintf("%v: image %q: this server serves its metadata and chunks, not the file", ErrNotFound, id))
		return
	}
	serve(w, r, src, "file", io.NewSectionReader(file, 0, src.Size()))
}

// serve answers with content, honouring Range, If-Range and HEAD. A read
// error part way leaves the body short of its Content-Length, which the
// client sees as a broken transfer.
func serve(w http.ResponseWriter, r *http.Request, src ChunkSource, part string, content io.ReadSeeker) {
	w.Header().Set("Content-Type", "application/octet-stream")
	if e, ok := src.(etagger); ok {
		if tag := e.ETag(); tag != "" {
			// One tag per part of one image version.
			w.Header().Set("ETag", `"`+tag+"-"+part+`"`)
		}
	}
	var mod time.Time
	if m, ok := src.(modTimer); ok {
		mod = m.ModTime()
	}
	http.ServeContent(w, r, "", mod, content)
}

func httpError(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}
