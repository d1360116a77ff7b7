package config

import (
	"reflect"
	"strings"
	"testing"

	"github.com/diskcast/diskcast/sdk/base"
)

func TestDecodePlugin(t *testing.T) {
	schema, err := base.SchemaOf(struct {
		Interface string   `hcl:"interface,optional"`
		TTL       int      `hcl:"ttl,optional"`
		Ratio     float64  `hcl:"ratio,optional"`
		Fast      bool     `hcl:"fast,optional"`
		Dirs      []string `hcl:"dirs,optional"`
		Key       string   `hcl:"key"`
	}{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, diags := load(t, map[string]string{"p.hcl": `
locals { nic = "eth1" }
plugin "transport" "multicast" {
  interface = local.nic
  ttl       = 2
  ratio     = 0.5
  fast      = true
  dirs      = ["/a", "/b"]
  key       = upper("k")
}
plugin "transport" "bad" {
  ttl    = "two"
  colour = 1
}
`})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	got, diags := DecodePlugin(cfg.Plugins[0], schema)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	want := base.Config{"interface": "eth1", "ttl": int64(2), "ratio": 0.5, "fast": true, "dirs": []string{"/a", "/b"}, "key": "K"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded %#v, want %#v", got, want)
	}
	_, diags = DecodePlugin(cfg.Plugins[1], schema)
	var text string
	for _, d := range diags {
		text += d.Subject.String() + ": " + d.Summary + ": " + d.Detail + "\n"
	}
	for _, w := range []string{"p.hcl:12", "a number is required", "p.hcl:13", `"colour" is not expected`, `"key" is required`} {
		if !strings.Contains(text, w) {
			t.Errorf("diagnostics lack %q: %s", w, text)
		}
	}
}
