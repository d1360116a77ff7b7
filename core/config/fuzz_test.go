package config

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad loads arbitrary bytes as a configuration file: it must report
// problems as diagnostics and never panic.
func FuzzLoad(f *testing.F) {
	lab, err := os.ReadFile("../../configs/lab.hcl")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(lab)
	f.Add([]byte(okImage + "session \"s\" {\n  image = \"golden\"\n  nodes = [\"pc[001-004]\"]\n}\n"))
	f.Add([]byte("locals {\n  a = local.b\n  b = upper(\"x\")\n}\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		path := filepath.Join(t.TempDir(), "f.hcl")
		if err := os.WriteFile(path, src, 0o644); err != nil {
			t.Fatal(err)
		}
		LoadFiles(path)
	})
}
