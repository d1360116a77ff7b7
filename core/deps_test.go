// Package core_test holds the tests that keep the repository's shape:
// which top-level parts may import which, and one package doc comment per
// package. They read every Go file of the repository (examples included),
// so they need no build.
package core_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/diskcast/diskcast"

// goFile is one parsed Go file.
type goFile struct {
	rel     string // slash path from the repository root
	pkg     string
	test    bool
	doc     bool
	imports []string
}

func repoFiles(t *testing.T) []goFile {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root %s has no go.mod: %v", root, err)
	}
	var files []goFile
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != root && (strings.HasPrefix(name, ".") || name == "vendor" || name == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		gf := goFile{rel: filepath.ToSlash(rel), pkg: f.Name.Name, test: strings.HasSuffix(name, "_test.go"), doc: f.Doc != nil}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			gf.imports = append(gf.imports, path)
		}
		files = append(files, gf)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 50 {
		t.Fatalf("found only %d Go files under %s", len(files), root)
	}
	return files
}

// allowed says whether the file at rel may import the repository path
// imp (both relative to the module root), and if not, why.
func allowed(rel, imp string) (bool, string) {
	part := func(p string, n int) string { // first n path elements
		el := strings.Split(p, "/")
		if len(el) < n {
			return p
		}
		return strings.Join(el[:n], "/")
	}
	under := func(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }
	switch {
	case under(rel, "sdk"):
		if !under(imp, "sdk") {
			return false, "the SDK imports nothing from core, plugins or examples"
		}
	case under(rel, "plugins"):
		own := part(rel, 3) // plugins/KIND/NAME
		if !under(imp, "sdk") && !under(imp, own) {
			return false, "a plugin imports the SDK and its own packages (" + own + ") only"
		}
	case under(rel, "examples"):
		own := part(rel, 2) // examples/NAME
		if !under(imp, "sdk") && !under(imp, own) {
			return false, "an example imports the SDK and its own packages (" + own + ") only"
		}
	case under(rel, "core/cmd/diskcast"):
		// The composition root: it links the built-in plugins in.
		if under(imp, "examples") {
			return false, "diskcast does not link examples"
		}
	case under(rel, "core"):
		if under(imp, "plugins") || under(imp, "examples") {
			return false, "the core never imports plugins (built-ins are linked in by core/cmd/diskcast) or examples"
		}
	}
	return true, ""
}

func TestDependencies(t *testing.T) {
	checked := 0
	for _, f := range repoFiles(t) {
		for _, imp := range f.imports {
			if imp != module && !strings.HasPrefix(imp, module+"/") {
				continue
			}
			checked++
			rel := strings.TrimPrefix(strings.TrimPrefix(imp, module), "/")
			if ok, why := allowed(f.rel, rel); !ok {
				t.Errorf("%s imports %s: %s", f.rel, imp, why)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no imports of the module's own packages found")
	}
}

// TestDependencyRules checks the rules themselves, so that a broken rule
// cannot pass every file.
func TestDependencyRules(t *testing.T) {
	tests := []struct {
		file, imp string
		ok        bool
	}{
		{"core/cli/capture.go", "core/plugin", true},
		{"core/cli/capture.go", "sdk/filesystem", true},
		{"core/cli/capture.go", "plugins/fs/ext4", false},
		{"core/plugin/x_test.go", "examples/squashfs", false},
		{"core/cmd/diskcast/main.go", "plugins/fs/ext4", true},
		{"core/cmd/diskcast/main.go", "examples/squashfs", false},
		{"plugins/fs/ext4/plugin.go", "sdk/filesystem", true},
		{"plugins/fs/ext4/plugin.go", "plugins/fs/ext4/internal/x", true},
		{"plugins/fs/ext4/plugin.go", "plugins/fs/fat", false},
		{"plugins/fs/ext4/plugin.go", "core/image", false},
		{"examples/squashfs/cmd/x/main.go", "examples/squashfs", true},
		{"examples/squashfs/squashfs.go", "core/capture", false},
		{"sdk/plugin/set.go", "sdk/filesystem", true},
		{"sdk/plugin/set.go", "core/image", false},
		{"sdk/sdktest/x.go", "plugins/fs/ext4", false},
	}
	for _, tc := range tests {
		if ok, _ := allowed(tc.file, tc.imp); ok != tc.ok {
			t.Errorf("%s importing %s: allowed %v, want %v", tc.file, tc.imp, ok, tc.ok)
		}
	}
}

// TestPackageDocs checks that every package has exactly one package doc
// comment.
func TestPackageDocs(t *testing.T) {
	type pkg struct{ docs []string }
	pkgs := map[string]*pkg{} // dir + package name
	for _, f := range repoFiles(t) {
		if f.test {
			continue // test-only packages and _test packages need none
		}
		key := filepath.ToSlash(filepath.Dir(f.rel)) + " (package " + f.pkg + ")"
		p := pkgs[key]
		if p == nil {
			p = &pkg{}
			pkgs[key] = p
		}
		if f.doc {
			p.docs = append(p.docs, filepath.Base(f.rel))
		}
	}
	keys := make([]string, 0, len(pkgs))
	for k := range pkgs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch docs := pkgs[k].docs; len(docs) {
		case 1:
		case 0:
			t.Errorf("%s has no package doc comment: say what it is for, in doc.go or its main file", k)
		default:
			t.Errorf("%s has %d package doc comments (%s): keep one", k, len(docs), strings.Join(docs, ", "))
		}
	}
}
