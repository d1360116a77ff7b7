package unicast

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// FuzzHandler sends arbitrary paths and Range headers to a server of a
// consistent image: it must never fail (5xx) or panic, and whatever it
// serves whole must be the right bytes.
func FuzzHandler(f *testing.F) {
	for _, s := range []struct{ path, rng string }{
		{"/v1/images/img/meta", ""},
		{"/v1/images/img/chunks/3", ""},
		{"/v1/images/img/chunks/3", "bytes=5-9"},
		{"/v1/images/img.dci", "bytes=-224"},
		{"/v1/images/img.dci", "bytes=0-1,5-9"},
		{"/v1/images/img/chunks/99", ""},
		{"/v1/images/%2e%2e/meta", ""},
		{"/v1/images//chunks/0", ""},
		{"/v1/images/img/chunks/18446744073709551616", "bytes=9999999999999999999-"},
	} {
		f.Add(s.path, s.rng)
	}
	path := filepath.Join(f.TempDir(), "img.dci")
	sizes := []int{5, 300, 17, 4096, 1}
	file := writeDCI(f, path, sizes, 11)
	img, err := openDCI(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { img.Close() })
	var cat Images
	cat.Add("img", img)
	h := NewHandler(&cat, nil)
	f.Fuzz(func(t *testing.T, path, rng string) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req, err := http.NewRequest("GET", "http://server"+path, nil)
		if err != nil {
			return // not a URL a client could send
		}
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("GET %q Range %q: %d %s", path, rng, w.Code, w.Body)
		}
		if w.Code != http.StatusOK {
			return
		}
		var want []byte
		switch p := req.URL.Path; {
		case p == "/v1/images/img/meta":
			want = img.meta
		case p == "/v1/images/img.dci":
			want = file
		case strings.HasPrefix(p, "/v1/images/img/chunks/"):
			i, err := strconv.Atoi(strings.TrimPrefix(p, "/v1/images/img/chunks/"))
			if err != nil || i < 0 || i >= len(sizes) {
				t.Fatalf("GET %q: 200 for no chunk", path)
			}
			off, size := img.ChunkRange(i)
			want = file[off : off+size]
		default:
			t.Fatalf("GET %q: 200 for an unknown path", path)
		}
		if !bytes.Equal(w.Body.Bytes(), want) {
			t.Fatalf("GET %q: 200 with %d bytes that are not the %d expected", path, w.Body.Len(), len(want))
		}
	})
}
