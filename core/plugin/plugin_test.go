package plugin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/diskcast/diskcast/sdk/base"
	"github.com/diskcast/diskcast/sdk/boot"
	"github.com/diskcast/diskcast/sdk/filesystem"
	"github.com/diskcast/diskcast/sdk/transport"
)

// Binaries built once for all tests.
var (
	diskcastBin   string // the real diskcast binary, with its built-in plugins
	testPluginBin string // testdata/testplugin
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "diskcast-plugin-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	diskcastBin = filepath.Join(dir, "diskcast")
	testPluginBin = filepath.Join(dir, "testplugin")
	for _, b := range []struct{ out, pkg string }{
		{diskcastBin, "../cmd/diskcast"},
		{testPluginBin, "./testdata/testplugin"},
	} {
		cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build %s: %v\n%s", b.pkg, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// builtinList is what the diskcast binary says it has built in.
type builtinList struct{ d base.Description }

func (b builtinList) Describe() base.Description { return b.d }
func (b builtinList) Filesystem(string) (filesystem.Filesystem, bool) {
	return nil, false // these tests run built-ins out of process only
}

func (b builtinList) Transport(string) (transport.Transport, bool) { return nil, false }
func (b builtinList) Boot(string) (boot.Boot, bool)                { return nil, false }

func builtins(t *testing.T) builtinList {
	t.Helper()
	out, err := exec.Command(diskcastBin, "plugins", "--json", "--plugin-dir", t.TempDir()).Output()
	if err != nil {
		t.Fatalf("diskcast plugins: %v", err)
	}
	var rows []Installed
	if err := json.Unmarshal(out, &rows); err != nil {
		t.Fatal(err)
	}
	d := base.Description{APIVersion: base.APIVersion, Version: "test"}
	for _, r := range rows {
		if r.BuiltIn {
			d.Plugins = append(d.Plugins, base.Component{Kind: r.Kind, Name: r.Name})
		}
	}
	return builtinList{d}
}

// install copies a plugin binary into dir as diskcast-plugin-NAME and
// writes its checksum file the way sha256sum does.
func install(t *testing.T, dir, name, bin string) string {
	t.Helper()
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, BinaryPrefix+name)
	if err := os.WriteFile(p, data, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	line := hex.EncodeToString(sum[:]) + "  " + filepath.Base(p) + "\n"
	if err := os.WriteFile(p+SumSuffix, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// testVolume writes a TESTFS volume with n non-zero 4 KiB blocks.
func testVolume(t *testing.T, n int) filesystem.Volume {
	t.Helper()
	data := make([]byte, (n+8)*4096)
	copy(data, "TESTFS")
	for i := range n {
		data[(i+1)*4096+7] = 1
	}
	p := filepath.Join(t.TempDir(), "testfs.img")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return filesystem.Volume{Path: p, Size: int64(len(data))}
}

func countExtents(ctx context.Context, c filesystem.Client, v filesystem.Volume) (int, error) {
	n := 0
	err := c.UsedExtents(ctx, v, func(off, length int64) error { n++; return nil })
	return n, err
}

func need(t *testing.T, cmd, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(cmd); err != nil {
		t.Skipf("%s is not installed (apt-get install %s)", cmd, pkg)
	}
}

func mkext4(t *testing.T, size string) (img, files string) {
	t.Helper()
	need(t, "mkfs.ext4", "e2fsprogs")
	files = filepath.Join(t.TempDir(), "files")
	os.MkdirAll(filepath.Join(files, "dir", "deeper"), 0o755)
	for i, sz := range []int{0, 1, 4095, 4096, 70000, 3 << 20} {
		data := make([]byte, sz)
		for j := range data {
			data[j] = byte(i*31 + j*7 + j/4096)
		}
		sub := []string{"", "dir", "dir/deeper"}[i%3]
		if err := os.WriteFile(filepath.Join(files, sub, fmt.Sprintf("f%d", i)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img = filepath.Join(t.TempDir(), "ext4.img")
	run(t, "truncate", "-s", size, img)
	run(t, "mkfs.ext4", "-q", "-F", "-d", files, img)
	return img, files
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// dumpe2fsUsed is the used bytes of an ext4 image as dumpe2fs reports them.
func dumpe2fsUsed(t *testing.T, img string) int64 {
	out := run(t, "dumpe2fs", "-h", img)
	field := func(name string) int64 {
		for _, l := range strings.Split(out, "\n") {
			if v, ok := strings.CutPrefix(l, name+":"); ok {
				n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
		}
		t.Fatalf("dumpe2fs: no %s", name)
		return 0
	}
	return (field("Block count") - field("Free blocks")) * field("Block size")
}

func TestBuiltinReexec(t *testing.T) {
	img, _ := mkext4(t, "24M")
	m := &Manager{Builtins: builtins(t), Executable: diskcastBin, Dirs: []string{}}
	defer m.Close()
	ctx := context.Background()
	if names := m.Names(ctx, base.KindFilesystem); !strings.Contains(strings.Join(names, ","), "ext4") {
		t.Fatalf("built-in filesystem plugins %v: no ext4", names)
	}
	c, err := m.Filesystem(ctx, "ext4")
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil || info.Name != "ext4" || info.Kind != base.KindFilesystem || info.APIVersion != base.APIVersion {
		t.Fatalf("info %+v, %v", info, err)
	}
	st, _ := os.Stat(img)
	v := filesystem.Volume{Path: img, Size: st.Size()}
	r, err := c.Probe(ctx, v)
	if err != nil || r.FSType != "ext4" || r.Confidence == 0 {
		t.Fatalf("probe %+v, %v", r, err)
	}
	var used int64
	if err := c.UsedExtents(ctx, v, func(off, length int64) error { used += length; return nil }); err != nil {
		t.Fatal(err)
	}
	if want := dumpe2fsUsed(t, img); used != want {
		t.Errorf("ext4 plugin reports %d used bytes, dumpe2fs %d", used, want)
	}
	// The same plugin is started once.
	if c2, _ := m.Filesystem(ctx, "ext4"); c2 != c {
		t.Error("second Filesystem call started another process")
	}
	if _, err := m.Filesystem(ctx, "zfs"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "installed: ") {
		t.Errorf("unknown plugin: %v", err)
	}
}

func TestThirdPartyChecksum(t *testing.T) {
	ctx := context.Background()
	v := testVolume(t, 100)

	t.Run("good", func(t *testing.T) {
		dir := t.TempDir()
		p := install(t, dir, "test", testPluginBin)
		m := &Manager{Dirs: []string{dir}}
		defer m.Close()
		list := m.List(ctx)
		if len(list) != 3 || list[0].Path != p || list[0].Err != nil || list[0].Version != "0.0.1" || list[0].Origin() != p {
			t.Fatalf("list %+v", list)
		}
		c, err := m.Filesystem(ctx, "good")
		if err != nil {
			t.Fatal(err)
		}
		if n, err := countExtents(ctx, c, v); err != nil || n != 101 {
			t.Fatalf("%d extents, %v; want 101 (the magic block and 100 others)", n, err)
		}
	})
	t.Run("bad sum", func(t *testing.T) {
		dir := t.TempDir()
		p := install(t, dir, "test", testPluginBin)
		wrong := strings.Repeat("ab", 32)
		os.WriteFile(p+SumSuffix, []byte(wrong+"\n"), 0o644)
		m := &Manager{Dirs: []string{dir}}
		defer m.Close()
		list := m.List(ctx)
		data, _ := os.ReadFile(p)
		real := sha256.Sum256(data)
		if len(list) != 1 || !errors.Is(list[0].Err, ErrChecksum) {
			t.Fatalf("list %+v", list)
		}
		for _, want := range []string{p, p + SumSuffix, hex.EncodeToString(real[:]), wrong} {
			if !strings.Contains(list[0].Err.Error(), want) {
				t.Errorf("error %q does not name %s", list[0].Err, want)
			}
		}
		if _, err := m.Filesystem(ctx, "good"); !errors.Is(err, ErrNotFound) {
			t.Errorf("start of a refused plugin: %v", err)
		}
	})
	t.Run("missing sum", func(t *testing.T) {
		dir := t.TempDir()
		p := install(t, dir, "test", testPluginBin)
		os.Remove(p + SumSuffix)
		list := (&Manager{Dirs: []string{dir}}).List(ctx)
		if len(list) != 1 || !errors.Is(list[0].Err, ErrNoSum) || !strings.Contains(list[0].Err.Error(), "sha256sum "+p+" > "+p+SumSuffix) {
			t.Fatalf("list %+v", list)
		}
	})
	t.Run("replaced after discovery", func(t *testing.T) {
		dir := t.TempDir()
		p := install(t, dir, "test", testPluginBin)
		m := &Manager{Dirs: []string{dir}}
		defer m.Close()
		m.List(ctx)
		f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
		f.Write([]byte("tampered"))
		f.Close()
		if _, err := m.Filesystem(ctx, "good"); !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), "changed since it was checked") {
			t.Fatalf("start of a replaced binary: %v", err)
		}
	})
}

func TestCrashMidStream(t *testing.T) {
	dir := t.TempDir()
	install(t, dir, "test", testPluginBin)
	m := &Manager{Dirs: []string{dir}}
	defer m.Close()
	ctx := context.Background()
	c, err := m.Filesystem(ctx, "crash")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	n, err := countExtents(ctx, c, testVolume(t, 6000))
	if !errors.Is(err, base.ErrPluginExited) {
		t.Fatalf("after %d extents: %v, want ErrPluginExited", n, err)
	}
	for _, want := range []string{"filesystem plugin crash (" + dir, "used extents", "panic: testplugin: simulated crash after 5000 extents"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if n == 0 || n > 5000 {
		t.Errorf("%d extents before the crash, want 1-5000", n)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("crash noticed after %v", d)
	}
}

func TestHang(t *testing.T) {
	dir := t.TempDir()
	install(t, dir, "test", testPluginBin)
	m := &Manager{Dirs: []string{dir}, Timeout: time.Second}
	ctx := context.Background()
	c, err := m.Filesystem(ctx, "hang")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	n, err := countExtents(ctx, c, testVolume(t, 50))
	if !errors.Is(err, base.ErrTimeout) || !strings.Contains(err.Error(), "filesystem plugin hang") || !strings.Contains(err.Error(), "no extents for 1s") {
		t.Fatalf("after %d extents: %v, want ErrTimeout naming the plugin", n, err)
	}
	if n != 10 {
		t.Errorf("%d extents before the hang, want 10", n)
	}
	if err := m.Close(); err != nil {
		t.Error(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("timeout and close took %v", d)
	}
}

func TestWrongAPIVersion(t *testing.T) {
	ctx := context.Background()
	t.Run("described", func(t *testing.T) {
		t.Setenv("TESTPLUGIN_API", "2")
		dir := t.TempDir()
		p := install(t, dir, "test", testPluginBin)
		m := &Manager{Dirs: []string{dir}}
		list := m.List(ctx)
		if len(list) == 0 || !errors.Is(list[0].Err, base.ErrAPIVersion) ||
			!strings.Contains(list[0].Err.Error(), p+" speaks plugin API 2, this diskcast speaks 1") {
			t.Fatalf("list %+v", list)
		}
		if _, err := m.Filesystem(ctx, "good"); !errors.Is(err, base.ErrAPIVersion) {
			t.Errorf("start: %v", err)
		}
	})
	t.Run("handshake", func(t *testing.T) {
		// describe claims API 1, the handshake says 2.
		t.Setenv("TESTPLUGIN_API", "2")
		t.Setenv("TESTPLUGIN_DESCRIBE_API", "1")
		dir := t.TempDir()
		install(t, dir, "test", testPluginBin)
		m := &Manager{Dirs: []string{dir}}
		defer m.Close()
		start := time.Now()
		_, err := m.Filesystem(ctx, "good")
		if !errors.Is(err, base.ErrAPIVersion) || !strings.Contains(err.Error(), "speaks plugin API 2, this diskcast speaks 1") {
			t.Fatalf("start: %v", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("refusal took %v", d)
		}
	})
}

func TestBrokenBinaries(t *testing.T) {
	ctx := context.Background()
	describeOK := `echo '{"api_version":1,"version":"9","plugins":[{"kind":"filesystem","name":"script"}]}'`
	tests := []struct {
		name, script string
		listErr      error
		startErr     error
		msg          string
	}{
		{"describe fails", "echo 'cannot load libfoo' >&2; exit 1", ErrDescribe, nil, "cannot load libfoo"},
		{"describe garbage", "echo hello", ErrDescribe, nil, "not the JSON of a plugin description"},
		{"describe hangs", "exec sleep 60", ErrDescribe, nil, "no answer in"},
		{"start exits", `[ "$1" = describe ] && { ` + describeOK + `; exit 0; }; echo 'bad config' >&2; exit 2`, nil, ErrStart, "bad config"},
		{"start hangs", `[ "$1" = describe ] && { ` + describeOK + `; exit 0; }; exec sleep 60`, nil, ErrStart, "no handshake in 1s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			script := filepath.Join(t.TempDir(), "script")
			os.WriteFile(script, []byte("#!/bin/sh\n"+tc.script+"\n"), 0o755)
			install(t, dir, "script", script)
			m := &Manager{Dirs: []string{dir}, StartTimeout: time.Second, DescribeTimeout: time.Second}
			defer m.Close()
			list := m.List(ctx)
			if len(list) != 1 {
				t.Fatalf("list %+v", list)
			}
			if tc.listErr != nil {
				if !errors.Is(list[0].Err, tc.listErr) || !strings.Contains(list[0].Err.Error(), tc.msg) {
					t.Errorf("list error %v, want %v with %q", list[0].Err, tc.listErr, tc.msg)
				}
				return
			}
			start := time.Now()
			_, err := m.Filesystem(ctx, "script")
			if !errors.Is(err, tc.startErr) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("start error %v, want %v with %q", err, tc.startErr, tc.msg)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("start failure took %v", d)
			}
		})
	}
}

func TestDuplicateNames(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	pa := install(t, a, "one", testPluginBin)
	install(t, b, "two", testPluginBin)
	list := (&Manager{Dirs: []string{a, b}}).List(context.Background())
	if len(list) != 6 {
		t.Fatalf("list %+v", list)
	}
	for _, i := range list[3:] {
		if !errors.Is(i.Err, ErrDuplicate) || !strings.Contains(i.Err.Error(), "already provided by "+pa) {
			t.Errorf("%s from the second directory: %v", i.Name, i.Err)
		}
	}
}

// TestOrphanedPluginExits kills a diskcast that runs a plugin (a send,
// with its multicast plugin) with SIGKILL: the plugin process must end
// by itself rather than go on sending.
func TestOrphanedPluginExits(t *testing.T) {
	send := exec.Command(diskcastBin, "send", "--host-only", "--group", "239.77.9.9:44100", "--min-receivers", "2", "../image/testdata/small.dci")
	if err := send.Start(); err != nil {
		t.Fatal(err)
	}
	defer send.Process.Kill()
	var plugin int
	for range 100 { // until the plugin runs
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", send.Process.Pid))
		var children []string
		for _, task := range tasks {
			b, _ := os.ReadFile(task)
			children = append(children, strings.Fields(string(b))...)
		}
		for _, f := range children {
			cmdline, _ := os.ReadFile("/proc/" + f + "/cmdline")
			if strings.Contains(string(cmdline), BuiltinCommand) {
				plugin, _ = strconv.Atoi(f)
			}
		}
		if plugin != 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if plugin == 0 {
		t.Skip("skipping: cannot find the plugin process (needs /proc/PID/task/*/children)")
	}
	send.Process.Signal(syscall.SIGKILL)
	send.Wait()
	for range 100 {
		// Gone, or a zombie nobody reaps (its parent is gone).
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", plugin))
		if _, after, _ := strings.Cut(string(stat), ") "); err != nil || strings.HasPrefix(after, "Z") {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	syscall.Kill(plugin, syscall.SIGKILL)
	t.Errorf("plugin process %d still runs 5 s after its diskcast was killed", plugin)
}
