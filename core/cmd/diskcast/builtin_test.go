package main

import (
	"bytes"
	"crypto/sha256"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/diskcast/diskcast/core/cli"
	"github.com/diskcast/diskcast/core/plugin"
	"github.com/diskcast/diskcast/sdk/base"
	"github.com/diskcast/diskcast/sdk/sdktest"
)

// TestMain lets the test binary serve the built-in plugins when it is
// re-executed as one, exactly as the diskcast binary does.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == plugin.BuiltinCommand {
		os.Exit(cli.Main(nil, os.Args[1:], builtins()))
	}
	os.Exit(m.Run())
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// content is the deterministic content of test file i.
func content(i, size int) []byte {
	b := make([]byte, size)
	for j := range b {
		b[j] = byte(i*131 + j*7 + j>>12)
	}
	return b
}

// testFiles are put on every sample filesystem.
var testFiles = []struct {
	name string
	size int
}{{"small.txt", 13}, {"block", 4096}, {"big.bin", 300_000}}

func filesDir(t testing.TB) string {
	dir := t.TempDir()
	for i, f := range testFiles {
		if err := os.WriteFile(filepath.Join(dir, f.name), content(i, f.size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// checkFiles compares each test file, read by read(name), with its content.
func checkFiles(t testing.TB, read func(name string) []byte) {
	for i, f := range testFiles {
		if got := read(f.name); sha256.Sum256(got) != sha256.Sum256(content(i, f.size)) {
			t.Errorf("%s: content differs after copying only the used extents (%d bytes)", f.name, len(got))
		}
	}
}

func ext4Sample(t *testing.T, name string, mkfsArgs ...string) sdktest.Sample {
	img := sdktest.MakeImage(t, 32<<20, "e2fsprogs", "mkfs.ext4", append([]string{"-q", "-F", "-d", filesDir(t)}, mkfsArgs...)...)
	out := run(t, "dumpe2fs", "-h", img)
	field := func(f string) int64 {
		for _, l := range strings.Split(out, "\n") {
			if v, ok := strings.CutPrefix(l, f+":"); ok {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				return n
			}
		}
		t.Fatalf("dumpe2fs: no %s", f)
		return 0
	}
	return sdktest.Sample{
		Name: name, Path: img, WantFSType: "ext4",
		WantUsedBytes: (field("Block count") - field("Free blocks")) * field("Block size"),
		Verify: func(t testing.TB, p string) {
			run(t, "e2fsck", "-fn", p)
			checkFiles(t, func(name string) []byte {
				dst := filepath.Join(t.TempDir(), name)
				run(t, "debugfs", "-R", "dump /"+name+" "+dst, p)
				b, _ := os.ReadFile(dst)
				return b
			})
		},
	}
}

func fatSample(t *testing.T, bits string, size int64) sdktest.Sample {
	img := sdktest.MakeImage(t, size, "dosfstools", "mkfs.vfat", "-F", bits, "-n", "FAT"+bits)
	sdktest.NeedCommand(t, "mcopy", "mtools")
	dir := filesDir(t)
	for _, f := range testFiles {
		run(t, "mcopy", "-i", img, filepath.Join(dir, f.name), "::"+f.name)
	}
	return sdktest.Sample{
		Name: "fat" + bits, Path: img, WantFSType: "fat" + bits,
		Verify: func(t testing.TB, p string) {
			run(t, "fsck.vfat", "-n", p)
			checkFiles(t, func(name string) []byte {
				b, _ := exec.Command("mtype", "-i", p, "::"+name).Output()
				return b
			})
		},
	}
}

func ntfsSample(t *testing.T) sdktest.Sample {
	img := sdktest.MakeImage(t, 32<<20, "ntfs-3g", "mkntfs", "-q", "-F", "-Q", "-L", "NTFS")
	sdktest.NeedCommand(t, "ntfscp", "ntfs-3g")
	dir := filesDir(t)
	for _, f := range testFiles {
		run(t, "ntfscp", "-q", img, filepath.Join(dir, f.name), f.name)
	}
	return sdktest.Sample{
		Name: "ntfs", Path: img, WantFSType: "ntfs",
		Verify: func(t testing.TB, p string) {
			run(t, "ntfsfix", "-n", p)
			checkFiles(t, func(name string) []byte {
				b, _ := exec.Command("ntfscat", p, name).Output()
				return b
			})
		},
	}
}

func xfsSample(t *testing.T) sdktest.Sample {
	// 300 MiB is mkfs.xfs's minimum; the file stays sparse.
	img := sdktest.MakeImage(t, 300<<20, "xfsprogs", "mkfs.xfs", "-q", "-f", "-L", "XFS")
	return sdktest.Sample{
		Name: "xfs", Path: img, WantFSType: "xfs",
		Verify: func(t testing.TB, p string) { run(t, "xfs_repair", "-n", p) },
	}
}

func swapSample(t *testing.T) sdktest.Sample {
	img := sdktest.MakeImage(t, 16<<20, "util-linux", "mkswap", "-L", "SWAP", "-U", "0b5e3c2a-62e4-4d4a-9a4e-2f0f6a1b7c11")
	return sdktest.Sample{
		Name: "swap", Path: img, WantFSType: "swap", WantUsedBytes: 4096,
		Verify: func(t testing.TB, p string) {
			out := run(t, "blkid", "-p", "-o", "export", p)
			for _, want := range []string{"TYPE=swap", "LABEL=SWAP", "UUID=0b5e3c2a-62e4-4d4a-9a4e-2f0f6a1b7c11"} {
				if !strings.Contains(out, want) {
					t.Errorf("blkid of the used extents lacks %s:\n%s", want, out)
				}
			}
		},
	}
}

// TestBuiltinConformance runs sdk/sdktest against every built-in
// filesystem plugin, with real filesystems made by their mkfs.
func TestBuiltinConformance(t *testing.T) {
	set := builtins()
	samples := map[string]func(t *testing.T) []sdktest.Sample{
		"ext4": func(t *testing.T) []sdktest.Sample {
			return []sdktest.Sample{
				ext4Sample(t, "ext4-4k", "-b", "4096"),
				ext4Sample(t, "ext4-1k-no-flex", "-b", "1024", "-O", "^flex_bg"),
			}
		},
		"fat": func(t *testing.T) []sdktest.Sample {
			return []sdktest.Sample{fatSample(t, "12", 4<<20), fatSample(t, "16", 32<<20), fatSample(t, "32", 64<<20)}
		},
		"ntfs": func(t *testing.T) []sdktest.Sample { return []sdktest.Sample{ntfsSample(t)} },
		"xfs":  func(t *testing.T) []sdktest.Sample { return []sdktest.Sample{xfsSample(t)} },
		"swap": func(t *testing.T) []sdktest.Sample { return []sdktest.Sample{swapSample(t)} },
	}
	for _, c := range set.Describe().Plugins {
		if c.Kind != base.KindFilesystem {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			impl, ok := set.Filesystem(c.Name)
			if !ok {
				t.Fatalf("built-in %s has no implementation", c.Name)
			}
			mk, ok := samples[c.Name]
			if !ok {
				t.Fatalf("no conformance samples for built-in filesystem plugin %s: add them here", c.Name)
			}
			own := mk(t)
			// The other plugins' first samples are foreign to this one.
			var foreign []sdktest.Sample
			for name, other := range samples {
				if name != c.Name {
					s := other(t)[0]
					s.Name = name
					s.Verify = nil
					foreign = append(foreign, s)
				}
			}
			sdktest.RunFilesystem(t, sdktest.FilesystemSuite{Name: c.Name, Impl: impl, Samples: own, Foreign: foreign})
		})
	}
}

// TestBuiltinsServedByReexec checks the hidden entry point: the plugins
// this binary describes are the ones it serves when re-executed.
func TestBuiltinsServedByReexec(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	m := &plugin.Manager{Builtins: builtins(), Executable: exe, Dirs: []string{}}
	defer m.Close()
	ctx := t.Context()
	for _, name := range m.Names(ctx, "filesystem") {
		c, err := m.Filesystem(ctx, name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		info, err := c.Info(ctx)
		if err != nil || info.Name != name {
			t.Errorf("%s: info %+v, %v", name, info, err)
		}
	}
	var out bytes.Buffer
	cmd := exec.Command(exe, plugin.BuiltinCommand, "filesystem", "ext4")
	cmd.Stderr = &out
	if err := cmd.Run(); err == nil || !strings.Contains(out.String(), "not started by diskcast") {
		t.Errorf("serving without the handshake: %v, %q", err, out.String())
	}
}

// TestTransportConformance runs the built-in transports through the
// conformance harness on loopback.
func TestTransportConformance(t *testing.T) {
	set := builtins()
	key := strings.Repeat("5a", 32)
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a free port for the HTTP server
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	suites := map[string]sdktest.TransportSuite{
		"multicast": {
			SendParams: map[string]string{"group": "239.77.3.9:43210", "session_id": "77", "key": key, "local_addr": "127.0.0.1", "host_only": "true"},
			ReceiveParams: map[string]string{"group": "239.77.3.9:43210", "session_id": "77", "key": key, "local_addr": "127.0.0.1", "host_only": "true",
				"sender_timeout": "20s"},
		},
		"http": {
			SendParams:    map[string]string{"listen": addr, "image": "img"},
			ReceiveParams: map[string]string{"url": "http://" + addr, "image": "img"},
			FetchParams:   map[string]string{"url": "http://" + addr, "image": "img"},
		},
	}
	for _, c := range set.Describe().Plugins {
		if c.Kind != base.KindTransport {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			impl, ok := set.Transport(c.Name)
			if !ok {
				t.Fatalf("built-in %s has no implementation", c.Name)
			}
			suite, ok := suites[c.Name]
			if !ok {
				t.Fatalf("no conformance parameters for built-in transport plugin %s: add them here", c.Name)
			}
			suite.Name, suite.Impl = c.Name, impl
			sdktest.RunTransport(t, suite)
		})
	}
}
