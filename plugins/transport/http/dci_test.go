package unicast

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The tests serve .dci files: real ones written by `diskcast capture`, and
// synthetic ones laid out by writeDCI. Both are opened by openDCI, which
// reads the trailer and index as docs/FORMAT.md describes them (this package
// may not import the core's image reader).

const (
	dciTrailerSize = 224
	dciEntryFixed  = 8 + 4 + 4 + 1 + 1 + 2 + 32 + 4
)

// dciFile is an opened .dci: a ChunkSource.
type dciFile struct {
	f             *os.File
	size          int64
	meta          []byte
	offs, sizes   []int64
	sums          [][32]byte
	header, index []byte
	trailer       []byte
	closed        bool
}

func (d *dciFile) Meta() []byte                    { return d.meta }
func (d *dciFile) NumChunks() int                  { return len(d.offs) }
func (d *dciFile) ChunkRange(i int) (int64, int64) { return d.offs[i], d.sizes[i] }
func (d *dciFile) ImageFile() io.ReaderAt          { return d.f }
func (d *dciFile) Size() int64                     { return d.size }
func (d *dciFile) Close() error {
	d.closed = true
	return d.f.Close()
}

var errDCI = errors.New("test dci: malformed")

// openDCI opens path and reads its header, index and trailer.
func openDCI(path string) (*dciFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	d, err := readDCI(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

func readDCI(f *os.File) (*dciFile, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	if size < dciTrailerSize+16 {
		return nil, fmt.Errorf("%w: %d bytes", errDCI, size)
	}
	tr := make([]byte, dciTrailerSize)
	if _, err := f.ReadAt(tr, size-dciTrailerSize); err != nil {
		return nil, err
	}
	if string(tr[:8]) != "DCITRAIL" {
		return nil, fmt.Errorf("%w: trailer magic %q", errDCI, tr[:8])
	}
	h := int64(binary.LittleEndian.Uint64(tr[8:]))
	ioff := int64(binary.LittleEndian.Uint64(tr[16:]))
	l := int64(binary.LittleEndian.Uint64(tr[24:]))
	if h < 16 || ioff < h || l < 24 || ioff+l+dciTrailerSize != size {
		return nil, fmt.Errorf("%w: trailer H=%d I=%d L=%d for a %d-byte file", errDCI, h, ioff, l, size)
	}
	hb := make([]byte, h)
	ib := make([]byte, l)
	if _, err := f.ReadAt(hb, 0); err != nil {
		return nil, err
	}
	if _, err := f.ReadAt(ib, ioff); err != nil {
		return nil, err
	}
	if string(ib[:8]) != "DCIINDEX" {
		return nil, fmt.Errorf("%w: index magic %q", errDCI, ib[:8])
	}
	d := &dciFile{f: f, size: size, header: hb, index: ib, trailer: tr}
	n := binary.LittleEndian.Uint64(ib[8:])
	p := ib[16:]
	for i := uint64(0); i < n; i++ {
		if len(p) < dciEntryFixed {
			return nil, fmt.Errorf("%w: entry %d cut short", errDCI, i)
		}
		off := int64(binary.LittleEndian.Uint64(p))
		stored := int64(binary.LittleEndian.Uint32(p[8:]))
		var sum [32]byte
		copy(sum[:], p[20:52])
		runs := binary.LittleEndian.Uint32(p[52:])
		p = p[dciEntryFixed:]
		for r := uint32(0); r < 2*runs; r++ {
			_, k := binary.Uvarint(p)
			if k <= 0 {
				return nil, fmt.Errorf("%w: entry %d run %d", errDCI, i, r/2)
			}
			p = p[k:]
		}
		if off < h || off+stored > ioff {
			return nil, fmt.Errorf("%w: entry %d at %d+%d outside the payload area", errDCI, i, off, stored)
		}
		d.offs = append(d.offs, off)
		d.sizes = append(d.sizes, stored)
		d.sums = append(d.sums, sum)
	}
	d.meta = append(append(append([]byte(nil), hb...), ib...), tr...)
	return d, nil
}

// writeDCI writes a .dci-shaped file whose chunks have the given stored
// sizes and seeded random contents (codec none, one run each), and returns
// the whole file's bytes.
func writeDCI(t testing.TB, path string, sizes []int, seed uint64) []byte {
	t.Helper()
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	rng := rand.NewChaCha8(key)
	random := func(n int) []byte {
		b := make([]byte, n)
		rng.Read(b)
		return b
	}
	const h = 512
	file := make([]byte, 16, h)
	copy(file, "\x89DCI\r\n\x1a\n")
	binary.LittleEndian.PutUint16(file[8:], 1)
	binary.LittleEndian.PutUint32(file[12:], h)
	file = append(file, random(h-16)...)
	var index []byte
	index = append(index, "DCIINDEX"...)
	index = binary.LittleEndian.AppendUint64(index, uint64(len(sizes)))
	var dev uint64
	for _, n := range sizes {
		payload := random(n)
		sum := sha256.Sum256(payload)
		index = binary.LittleEndian.AppendUint64(index, uint64(len(file)))
		index = binary.LittleEndian.AppendUint32(index, uint32(n))
		index = binary.LittleEndian.AppendUint32(index, uint32(n))
		index = append(index, 0, 0, 0, 0)
		index = append(index, sum[:]...)
		index = binary.LittleEndian.AppendUint32(index, 1)
		index = binary.AppendUvarint(index, dev)
		index = binary.AppendUvarint(index, uint64(n))
		dev = 4096 // later runs follow at a gap
		file = append(file, payload...)
	}
	index = binary.LittleEndian.AppendUint64(index, 0)
	ioff := len(file)
	file = append(file, index...)
	tr := make([]byte, dciTrailerSize)
	copy(tr, "DCITRAIL")
	binary.LittleEndian.PutUint64(tr[8:], h)
	binary.LittleEndian.PutUint64(tr[16:], uint64(ioff))
	binary.LittleEndian.PutUint64(tr[24:], uint64(len(index)))
	hs, is := sha256.Sum256(file[:h]), sha256.Sum256(index)
	copy(tr[32:], hs[:])
	copy(tr[64:], is[:])
	ds := sha256.Sum256(tr[:96])
	copy(tr[96:], ds[:])
	file = append(file, tr...)
	if err := os.WriteFile(path, file, 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestOpenDCI checks the test's own reader against the writer, so that the
// transport tests rest on a correct picture of the file.
func TestOpenDCI(t *testing.T) {
	path := t.TempDir() + "/x.dci"
	sizes := []int{1, 100, 70000}
	file := writeDCI(t, path, sizes, 1)
	d, err := openDCI(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.NumChunks() != len(sizes) {
		t.Fatalf("%d chunks, want %d", d.NumChunks(), len(sizes))
	}
	for i, n := range sizes {
		off, size := d.ChunkRange(i)
		if size != int64(n) || sha256.Sum256(file[off:off+size]) != d.sums[i] {
			t.Fatalf("chunk %d: range %d+%d does not hold the payload written", i, off, size)
		}
	}
	if !bytes.Equal(d.meta[:16], file[:16]) || !bytes.Equal(d.meta[len(d.meta)-dciTrailerSize:], file[len(file)-dciTrailerSize:]) {
		t.Fatal("meta does not start with the header and end with the trailer")
	}
}

// diskcastBinary returns the diskcast command: $DISKCAST, else the
// repository's bin/diskcast (make build), else one built now.
func diskcastBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("DISKCAST"); p != "" {
		return p
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := dir; d != filepath.Dir(d); d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err != nil {
			continue
		}
		if p := filepath.Join(d, "bin", "diskcast"); fileExists(p) {
			return p
		}
		p := filepath.Join(t.TempDir(), "diskcast")
		cmd := exec.Command("go", "build", "-o", p, "./core/cmd/diskcast")
		cmd.Dir = d
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building diskcast: %v\n%s", err, out)
		}
		return p
	}
	t.Fatal("go.mod not found above the test directory")
	return ""
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// TestRealImage moves an image that `diskcast capture` made of a real ext4
// filesystem: every chunk matches its SHA-256 in the index, the image put
// back together from the fetched metadata and chunks is byte-identical and
// passes `diskcast verify`, and `diskcast restore` of it gives back the
// filesystem.
func TestRealImage(t *testing.T) {
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		if mkfs, err = exec.LookPath("/usr/sbin/mkfs.ext4"); err != nil {
			t.Skip("skipping: mkfs.ext4 is not installed (Debian package e2fsprogs)")
		}
	}
	diskcast := diskcastBinary(t)
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 40 {
		b := make([]byte, rng.IntN(200<<10))
		for j := range b {
			if i%2 == 0 {
				b[j] = byte(rng.Uint32())
			} else {
				b[j] = "diskcast unicast test\n"[j%22]
			}
		}
		sub := filepath.Join(tree, fmt.Sprintf("d%d", i%5))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%02d", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fs := filepath.Join(dir, "fs.img")
	if err := os.WriteFile(fs, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(fs, 24<<20); err != nil {
		t.Fatal(err)
	}
	run(t, mkfs, "-q", "-F", "-E", "root_owner=0:0", "-d", tree, fs)
	images := filepath.Join(dir, "images")
	if err := os.Mkdir(images, 0o755); err != nil {
		t.Fatal(err)
	}
	orig := filepath.Join(images, "golden.dci")
	run(t, diskcast, "capture", "-chunk-size", "128K", fs, orig)

	d := &Dir{Path: images, Open: func(p string) (ChunkSource, error) { return openDCI(p) }}
	defer d.Close()
	srv := httptest.NewServer(NewHandler(d, nil))
	defer srv.Close()

	f := &Fetcher{BaseURL: srv.URL, ImageID: "golden"}
	meta, err := f.Meta(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want, err := openDCI(orig)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	if !bytes.Equal(meta, want.meta) {
		t.Fatal("meta differs from the file's header, index and trailer")
	}
	if want.NumChunks() < 10 {
		t.Fatalf("the capture has %d chunks; the test wants at least 10", want.NumChunks())
	}
	f.Sizes = want.sizes

	rebuilt := make([]byte, want.size)
	copy(rebuilt, want.header)
	ioff := want.size - int64(len(want.index)) - dciTrailerSize
	copy(rebuilt[ioff:], want.index)
	copy(rebuilt[want.size-dciTrailerSize:], want.trailer)
	var mu sync.Mutex
	err = f.FetchAll(context.Background(), nil, func(i int, p []byte) error {
		if sha256.Sum256(p) != want.sums[i] {
			return fmt.Errorf("chunk %d: SHA-256 differs from the index", i)
		}
		mu.Lock()
		defer mu.Unlock()
		copy(rebuilt[want.offs[i]:], p)
		return nil
	}, 4)
	if err != nil {
		t.Fatal(err)
	}
	origBytes, err := os.ReadFile(orig)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rebuilt, origBytes) {
		t.Fatal("the image put together from meta and chunks differs from the original")
	}
	copyPath := filepath.Join(dir, "copy.dci")
	if err := os.WriteFile(copyPath, rebuilt, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, diskcast, "verify", "-decode", copyPath)
	target := filepath.Join(dir, "target.img")
	run(t, diskcast, "restore", copyPath, target)
	a, err := os.ReadFile(fs)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(target)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("restored filesystem differs from the captured one")
	}
}
