package api_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/diskcast/diskcast/core/api"
	"github.com/diskcast/diskcast/core/image"
)

// FuzzSplitMeta feeds SplitMeta (which an agent runs on bytes from the
// network) damaged metadata: it must refuse it with ErrMeta, never panic,
// and accept only metadata whose hashes hold.
func FuzzSplitMeta(f *testing.F) {
	fx := makeFixture(f, 1)
	img, err := image.Open(fx.img)
	if err != nil {
		f.Fatal(err)
	}
	h, ix, tr := img.Meta()
	img.Close()
	good := append(append(append([]byte{}, h...), ix...), tr...)
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add(good[16:])
	f.Add([]byte{})
	flipped := bytes.Clone(good)
	flipped[len(h)+20] ^= 1
	f.Add(flipped)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := api.SplitMeta(b)
		if err != nil {
			if !errors.Is(err, api.ErrMeta) {
				t.Fatalf("error %v is not ErrMeta", err)
			}
			return
		}
		hb, ib, tb := r.Meta()
		if !bytes.Equal(append(append(append([]byte{}, hb...), ib...), tb...), b) {
			t.Fatal("accepted metadata does not split back into the input")
		}
	})
}

// FuzzAgentReports posts arbitrary bodies to the agent endpoints with a
// valid token: the answer is always a 2xx or a 4xx with a JSON error,
// never a 500 or a panic.
func FuzzAgentReports(f *testing.F) {
	h := newHarness(f, false, fourNodes+`
session "lab" {
  image = "golden"
  nodes = ["pc001"]
  transport "http" {}
}`)
	ctx := context.Background()
	if _, err := h.admin.StartSession(ctx, "lab"); err != nil {
		f.Fatal(err)
	}
	as, err := h.anon.Assignment(ctx, mac(1))
	if err != nil {
		f.Fatal(err)
	}
	srv := api.NewServer(h.o, adminToken, nil)
	for _, seed := range []string{
		`{"state":"receiving","bytes":1,"total":10}`,
		`{"state":"verifying","chunks":3,"chunks_total":2}`,
		`{"ok":false,"error":"x"}`,
		`{"ok":true,"timings":{"a":-1}}`,
		`{"session":"lab","node":"pc002","state":"booting"}`,
		`[]`, `null`, `{"bytes":1e400}`, "\x00",
	} {
		f.Add(true, seed)
		f.Add(false, seed)
	}
	f.Fuzz(func(t *testing.T, result bool, body string) {
		path := "/api/v1/agent/progress"
		if result {
			path = "/api/v1/agent/result"
		}
		req := httptest.NewRequest("POST", path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+as.Token)
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		switch {
		case rec.Code == http.StatusOK:
		case rec.Code >= 400 && rec.Code < 500:
			if !strings.Contains(rec.Body.String(), `"error"`) {
				t.Fatalf("%d without a JSON error: %s", rec.Code, rec.Body)
			}
		default:
			t.Fatalf("%s %q: %d %s", path, body, rec.Code, rec.Body)
		}
	})
}
