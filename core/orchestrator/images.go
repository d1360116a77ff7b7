package orchestrator

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/diskcast/diskcast/core/config"
	"github.com/diskcast/diskcast/core/image"
)

// ImageInfo describes a configured image. Error is set when the file
// cannot be used (missing, corrupt, wrong signer); the other fields are
// then those of the configuration only.
type ImageInfo struct {
	Name        string `json:"name"`
	Path        string `json:"path"`
	Description string `json:"description,omitempty"`
	Signer      string `json:"signer,omitempty"` // key file the image must be signed with
	ID          string `json:"id,omitempty"`
	Size        int64  `json:"size,omitempty"` // file bytes
	Created     string `json:"created,omitempty"`
	SourceKind  string `json:"source_kind,omitempty"`
	SourceSize  int64  `json:"source_size,omitempty"`
	Chunks      int    `json:"chunks,omitempty"`
	StoredBytes int64  `json:"stored_bytes,omitempty"`
	DataBytes   int64  `json:"data_bytes,omitempty"`
	Signed      bool   `json:"signed"`
	SignedBy    string `json:"signed_by,omitempty"` // key fingerprint
	Error       string `json:"error,omitempty"`
}

// catalog opens configured images on demand and keeps them open while the
// file is unchanged.
type catalog struct {
	mu     sync.Mutex
	images map[string]*config.Image
	open   map[string]*openImage // by name
	stale  []*openImage          // replaced files, closed at the end
}

type openImage struct {
	file *image.File
	meta []byte // header ‖ index ‖ trailer
	key  string // size and mtime when opened
	info ImageInfo
	// pool of payload buffers for serving chunks
	bufs sync.Pool
}

func newCatalog(images []*config.Image) *catalog {
	c := &catalog{images: map[string]*config.Image{}, open: map[string]*openImage{}}
	for _, im := range images {
		c.images[im.Name] = im
	}
	return c
}

func (c *catalog) names() []string {
	var out []string
	for n := range c.images {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// get returns the open image called name, reopening it when the file
// changed; a missing, unreadable or badly signed image is an error
// wrapping ErrImage.
func (c *catalog) get(name string) (*openImage, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	im := c.images[name]
	if im == nil {
		return nil, fmt.Errorf("%w: image %q is not configured (known: %v)", ErrNotFound, name, c.names())
	}
	st, err := os.Stat(im.Path)
	if err != nil {
		return nil, fmt.Errorf("%w: image %q: %v", ErrImage, name, err)
	}
	key := fmt.Sprintf("%d-%d", st.Size(), st.ModTime().UnixNano())
	if o := c.open[name]; o != nil {
		if o.key == key {
			return o, nil
		}
		c.stale = append(c.stale, o)
		delete(c.open, name)
	}
	f, err := image.Open(im.Path)
	if err != nil {
		return nil, fmt.Errorf("%w: image %q: %v", ErrImage, name, err)
	}
	if im.Signer != "" {
		pub, err := image.ReadPublicKey(im.Signer)
		if err == nil {
			err = f.Verify(pub)
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%w: image %q: signer %s: %v", ErrImage, name, im.Signer, err)
		}
	} else if err := f.Verify(nil); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: image %q: %v", ErrImage, name, err)
	}
	h, ix, tr := f.Meta()
	meta := make([]byte, 0, len(h)+len(ix)+len(tr))
	meta = append(append(append(meta, h...), ix...), tr...)
	o := &openImage{file: f, meta: meta, key: key, info: describe(im)}
	o.info.ID = f.Header.ID.String()
	o.info.Size = f.Size()
	o.info.Created = f.Header.Created.UTC().Format(time.RFC3339)
	o.info.SourceKind = f.Header.Source.Kind.String()
	o.info.SourceSize = f.Header.Source.Size
	o.info.Chunks = len(f.Index.Chunks)
	o.info.StoredBytes = f.Index.StoredBytes()
	o.info.DataBytes = f.Index.DataBytes()
	o.info.Signed = f.Trailer.Signed()
	if o.info.Signed {
		o.info.SignedBy = image.KeyFingerprint(f.Trailer.PublicKey[:])
	}
	c.open[name] = o
	return o, nil
}

func describe(im *config.Image) ImageInfo {
	return ImageInfo{Name: im.Name, Path: im.Path, Description: im.Description, Signer: im.Signer}
}

// resolve maps an image ID (hex) to the name of the configured image
// with that ID; anything else is returned as is.
func (c *catalog) resolve(nameOrID string) string {
	if _, ok := c.images[nameOrID]; ok || len(nameOrID) != 2*len(image.ID{}) {
		return nameOrID
	}
	for _, name := range c.names() {
		if o, err := c.get(name); err == nil && o.info.ID == nameOrID {
			return name
		}
	}
	return nameOrID
}

// info describes an image, with the error that keeps it from being used.
func (c *catalog) info(name string) (ImageInfo, error) {
	o, err := c.get(name)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return ImageInfo{}, err
		}
		c.mu.Lock()
		info := describe(c.images[name])
		c.mu.Unlock()
		info.Error = err.Error()
		return info, nil
	}
	return o.info, nil
}

// payload reads and verifies chunk i into a pooled buffer; release returns
// the buffer.
func (o *openImage) payload(i int) ([]byte, func(), error) {
	if i < 0 || i >= len(o.file.Index.Chunks) {
		return nil, nil, fmt.Errorf("%w: chunk %d: image %q has %d chunks (0-%d)", ErrNotFound, i, o.info.Name, len(o.file.Index.Chunks), len(o.file.Index.Chunks)-1)
	}
	bp, _ := o.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	p, err := o.file.ReadPayload(i, *bp)
	if err != nil {
		o.bufs.Put(bp)
		return nil, nil, fmt.Errorf("%w: image %q: %v", ErrImage, o.info.Name, err)
	}
	*bp = p
	return p, func() { o.bufs.Put(bp) }, nil
}

func (c *catalog) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, o := range c.open {
		o.file.Close()
	}
	for _, o := range c.stale {
		o.file.Close()
	}
	c.open, c.stale = map[string]*openImage{}, nil
}
