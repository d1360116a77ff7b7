package qemu

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BootenvCache is where Bootenv keeps the imaging environment it builds and
// the downloaded .debs, shared by test runs (CI builds it once).
const BootenvCache = "/var/tmp/diskcast-bootenv"

// built is what Bootenv found or built in this test binary.
var built struct {
	mu   sync.Mutex
	boot Boot
}

// Boot files of the imaging environment.
type Boot struct {
	Kernel, Initrd string
}

// Bootenv returns the imaging environment (scripts/bootenv/build.sh) with
// a diskcast binary built from the current sources. It rebuilds the
// initramfs in BootenvCache only when the binary or the build scripts
// changed, and compresses it fast (zstd -3): tests want it soon, not small.
// With DISKCAST_BOOTENV_DIR set it uses the vmlinuz and initrd.img there
// as they are (e.g. from make bootenv).
func Bootenv(t testing.TB) Boot {
	t.Helper()
	if dir := os.Getenv("DISKCAST_BOOTENV_DIR"); dir != "" {
		b := Boot{Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.img")}
		if !fileExists(b.Kernel) || !fileExists(b.Initrd) {
			t.Fatalf("DISKCAST_BOOTENV_DIR=%s: no vmlinuz and initrd.img there (run make bootenv BOOTENV_DIR=%s)", dir, dir)
		}
		return b
	}
	// Once per test binary: the sources do not change during a run.
	built.mu.Lock()
	defer built.mu.Unlock()
	if built.boot.Kernel != "" {
		return built.boot
	}
	root := repoRoot(t)
	if err := os.MkdirAll(BootenvCache, 0o755); err != nil {
		t.Fatalf("bootenv cache: %v", err)
	}
	unlock := lockFile(t, filepath.Join(BootenvCache, ".lock"))
	defer unlock()

	start := time.Now()
	bin := filepath.Join(BootenvCache, "diskcast")
	build := exec.Command(goTool(), "build", "-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w -buildid=", "-o", bin+".tmp", "./core/cmd/diskcast")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("bootenv: go build ./core/cmd/diskcast: %v\n%s", err, out)
	}
	if err := os.Rename(bin+".tmp", bin); err != nil {
		t.Fatal(err)
	}

	stamp := hashFiles(t, bin,
		filepath.Join(root, "scripts/bootenv/build.sh"),
		filepath.Join(root, "scripts/bootenv/lib.sh"),
		filepath.Join(root, "scripts/bootenv/init"),
		filepath.Join(root, "scripts/bootenv/udhcpc.script"))
	out := filepath.Join(BootenvCache, "out")
	b := Boot{Kernel: filepath.Join(out, "vmlinuz"), Initrd: filepath.Join(out, "initrd.img")}
	stampFile := filepath.Join(out, "STAMP")
	if old, err := os.ReadFile(stampFile); err == nil && string(old) == stamp && fileExists(b.Kernel) && fileExists(b.Initrd) {
		t.Logf("bootenv: up to date in %s (checked in %s)", out, time.Since(start).Round(time.Millisecond))
		built.boot = b
		return b
	}
	cmd := exec.Command(filepath.Join(root, "scripts/bootenv/build.sh"), out)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "DISKCAST_BIN="+bin, "BOOTENV_CACHE="+filepath.Join(BootenvCache, "cache"), "BOOTENV_ZSTD_LEVEL=3")
	if outp, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bootenv: scripts/bootenv/build.sh: %v\n%s", err, outp)
	}
	if err := os.WriteFile(stampFile, []byte(stamp), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("bootenv: built in %s into %s", time.Since(start).Round(time.Millisecond), out)
	built.boot = b
	return b
}

// MakeTestDisk writes a bootable test disk of sizeMiB to path with
// scripts/bootenv/mktestdisk.sh: booted, it prints
// "DISKCAST-TESTDISK-BOOTED id" on the serial console and powers off.
func MakeTestDisk(t testing.TB, path string, sizeMiB int, id string) {
	t.Helper()
	root := repoRoot(t)
	if err := os.MkdirAll(BootenvCache, 0o755); err != nil {
		t.Fatalf("bootenv cache: %v", err)
	}
	unlock := lockFile(t, filepath.Join(BootenvCache, ".lock"))
	defer unlock()
	cmd := exec.Command(filepath.Join(root, "scripts/bootenv/mktestdisk.sh"), path, strconv.Itoa(sizeMiB), id)
	cmd.Env = append(os.Environ(), "BOOTENV_CACHE="+filepath.Join(BootenvCache, "cache"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mktestdisk.sh %s: %v\n%s", path, err, out)
	}
}

// repoRoot finds the module root (the directory holding go.mod) above
// this source file.
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("qemu: cannot locate the source tree")
	}
	for dir := filepath.Dir(file); ; {
		if fileExists(filepath.Join(dir, "go.mod")) && fileExists(filepath.Join(dir, "scripts/bootenv/build.sh")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("qemu: no go.mod with scripts/bootenv above %s", file)
		}
		dir = parent
	}
}

func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

// lockFile serializes builds in BootenvCache across test binaries that
// run at once (go test runs packages in parallel).
func lockFile(t testing.TB, path string) (unlock func()) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("bootenv lock: %v", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		t.Fatalf("bootenv lock %s: %v", path, err)
	}
	return func() { f.Close() }
}

func hashFiles(t testing.TB, paths ...string) string {
	t.Helper()
	h := sha256.New()
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatalf("bootenv: %v", err)
		}
		fmt.Fprintf(h, "%s\n", filepath.Base(p))
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			t.Fatalf("bootenv: %v", err)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}
