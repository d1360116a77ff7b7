package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

func load(t *testing.T, files map[string]string) (*Config, hcl.Diagnostics) {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return LoadDir(dir)
}

// TestExamples parses every configuration in configs/.
func TestExamples(t *testing.T) {
	paths, _ := filepath.Glob("../../configs/*.hcl")
	if len(paths) == 0 {
		t.Fatal("no example configurations found")
	}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			cfg, diags := LoadFiles(p)
			for _, d := range diags {
				if d.Severity == hcl.DiagError {
					t.Errorf("%s", d)
				}
			}
			if cfg == nil || len(cfg.Sessions) == 0 {
				t.Fatal("no sessions")
			}
		})
	}
}

func TestLab(t *testing.T) {
	cfg, diags := LoadFiles("../../configs/lab.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	s := cfg.Session("deploy-row-a")
	if want := []string{"pc001", "pc002", "pc003", "pc004"}; !reflect.DeepEqual(s.Members, want) {
		t.Errorf("members %v, want %v", s.Members, want)
	}
	if s.Transport.RateBytes != 75_000_000 || s.Transport.MinReceivers != 4 || s.Transport.MaxWaitDur.Minutes() != 2 {
		t.Errorf("transport %+v", s.Transport)
	}
	if cfg.Image("golden").Path != "/srv/diskcast/lab/golden-2026-11.dci" {
		t.Errorf("image path %q: variables and locals not applied", cfg.Image("golden").Path)
	}
	if cfg.Server.Pool.String() != "239.192.10.0/24" || cfg.Server.PortLow != 40000 {
		t.Errorf("server %+v", cfg.Server)
	}
	if len(cfg.Plugins) != 1 || cfg.Plugins[0].Kind != "filesystem" || cfg.Plugins[0].Name != "ntfs" {
		t.Errorf("plugins %+v", cfg.Plugins)
	}
}

func TestVariableFromEnvironment(t *testing.T) {
	t.Setenv(EnvPrefix+"site", "rack9")
	cfg, diags := LoadFiles("../../configs/lab.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if got := cfg.Image("golden").Path; !strings.Contains(got, "/rack9/") {
		t.Errorf("image path %q ignores DISKCAST_VAR_site", got)
	}
}

const okImage = `image "golden" { path = "/nonexistent/golden.dci" }
node "pc001" { mac = "52:54:00:00:00:01" }
`

// TestInvalid checks that each mistake is reported, with its line, and
// that all problems of a file are reported at once.
func TestInvalid(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // "line:summary" of each expected error
	}{
		{"syntax", "session \"x\" {\n  image = \n}\n", []string{"2:Invalid expression"}},
		{"unknown block", "widget \"x\" {}\n", []string{"1:Unsupported block type"}},
		{"unknown image with hint", okImage + "session \"s\" {\n  image = \"goldne\"\n  nodes = [\"pc001\"]\n}\n", []string{"4:Unknown image"}},
		{"bad mac and duplicate mac", "node \"a\" { mac = \"52:54:00:00:00:01\" }\nnode \"b\" {\n  mac = \"52:54:00:00:00:01\"\n}\nnode \"c\" {\n  mac = \"nonsense\"\n}\n",
			[]string{"3:Duplicate MAC address", "6:Invalid MAC address"}},
		{"duplicate node", "node \"a\" { mac = \"52:54:00:00:00:01\" }\nnode \"a\" { mac = \"52:54:00:00:00:02\" }\n", []string{"2:Duplicate node"}},
		{"bad range", okImage + "node_group \"g\" {\n  nodes = [\"pc[010-001]\"]\n}\n", []string{"4:Invalid node range"}},
		{"several at once", okImage + "session \"s\" {\n  image = \"nope\"\n  nodes = [\"pc001\"]\n  after = \"explode\"\n  target = \"sda\"\n}\n",
			[]string{"4:Unknown image", "6:Invalid after", "7:Relative target"}},
		{"server", "server {\n  listen = \"nowhere\"\n  multicast_pool = \"10.0.0.0/8\"\n  ports = \"80-90\"\n}\n" + okImage + "session \"s\" {\n  image = \"golden\"\n  nodes = [\"pc001\"]\n}\n",
			[]string{"2:Invalid listen address", "3:Not a multicast range", "4:Invalid port range"}},
		{"variable without value", "variable \"v\" {}\n", []string{"1:Variable without a value"}},
		{"local cycle", "locals {\n  a = local.b\n  b = local.a\n}\n", []string{"2:Unresolvable local", "3:Unresolvable local"}},
		{"wrong type", okImage + "session \"s\" {\n  image = \"golden\"\n  nodes = \"pc001\"\n}\n", []string{"5:Unsuitable value type"}},
		{"no nodes", okImage + "session \"s\" {\n  image = \"golden\"\n}\n", []string{"3:Session without nodes"}},
		{"bad rate", okImage + "session \"s\" {\n  image = \"golden\"\n  nodes = [\"pc001\"]\n  transport \"multicast\" {\n    rate = \"fast\"\n  }\n}\n", []string{"3:Invalid rate"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, diags := load(t, map[string]string{"site.hcl": tc.src})
			var got []string
			for _, d := range diags {
				if d.Severity != hcl.DiagError {
					continue
				}
				line := 0
				if d.Subject != nil {
					line = d.Subject.Start.Line
					if !strings.HasSuffix(d.Subject.Filename, "site.hcl") {
						t.Errorf("diagnostic %q names file %q", d.Summary, d.Subject.Filename)
					}
				}
				got = append(got, strconv.Itoa(line)+":"+d.Summary)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors:\n got %q\nwant %q\n%s", got, tc.want, diags)
			}
		})
	}
}

func TestHintNamesTheClosestImage(t *testing.T) {
	_, diags := load(t, map[string]string{"a.hcl": okImage + "session \"s\" {\n  image = \"goldne\"\n  nodes = [\"pc001\"]\n}\n"})
	var all strings.Builder
	for _, d := range diags {
		all.WriteString(d.Detail)
	}
	if !strings.Contains(all.String(), `Did you mean "golden"?`) {
		t.Errorf("no hint: %s", diags)
	}
}

func TestExpandRange(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		bad  bool
	}{
		{in: "pc001", want: []string{"pc001"}},
		{in: "pc[001-003]", want: []string{"pc001", "pc002", "pc003"}},
		{in: "r[1-2]-n[1,3]", want: []string{"r1-n1", "r1-n3", "r2-n1", "r2-n3"}},
		{in: "n[8-10]x", want: []string{"n8x", "n9x", "n10x"}},
		{in: "pc[3-1]", bad: true},
		{in: "pc[1-3", bad: true},
		{in: "pc]1", bad: true},
		{in: "pc[a-b]", bad: true},
		{in: "pc[0-99999999]", bad: true},
		{in: "", bad: true},
	}
	for _, tc := range tests {
		got, err := ExpandRange(tc.in)
		if tc.bad != (err != nil) || (!tc.bad && !reflect.DeepEqual(got, tc.want)) {
			t.Errorf("ExpandRange(%q) = %v, %v", tc.in, got, err)
		}
	}
}
