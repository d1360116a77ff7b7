// Package testenv holds the test helpers shared by core's packages: skips
// that say exactly what is missing, and builders of real fixtures (disk
// images made with the real tools).
package testenv

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// RequireRoot skips the test unless it runs as root.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("skipping: needs root (%s); run the tests as root (CI does)", why)
	}
}

// RequireCommands skips the test unless every named command is on PATH
// (or in /sbin, /usr/sbin).
func RequireCommands(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := LookPath(n); err != nil {
			t.Skipf("skipping: %s is not installed (run 'make deps' as root)", n)
		}
	}
}

// LookPath finds a command on PATH or in the sbin directories.
func LookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return exec.LookPath(name)
}

// Run runs a command and fails the test with its output if it fails.
func Run(t testing.TB, stdin string, name string, args ...string) string {
	t.Helper()
	path, err := LookPath(name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), "E2FSPROGS_FAKE_TIME=1700000000")
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// FillTree writes a directory of files with mixed content (text, random,
// zeros, sizes from 0 to a few hundred KiB) from a fixed seed.
func FillTree(t testing.TB, dir string, files int, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := range files {
		sub := filepath.Join(dir, "d"+string(rune('a'+i%7)))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		n := rng.IntN(300 << 10)
		data := make([]byte, n)
		switch i % 3 {
		case 0:
			for j := range data {
				data[j] = byte(rng.Uint32())
			}
		case 1:
			line := []byte("diskcast test line with some repetition 0123456789\n")
			for j := range data {
				data[j] = line[j%len(line)] + byte(i)
			}
		}
		if err := os.WriteFile(filepath.Join(sub, "f"+hex.EncodeToString([]byte{byte(i), byte(i >> 8)})), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// MkfsExt4 makes an ext4 filesystem image of size bytes at path, filled
// from dir with mkfs.ext4 -d.
func MkfsExt4(t testing.TB, path string, size int64, dir string) {
	t.Helper()
	RequireCommands(t, "mkfs.ext4")
	if err := os.Truncate(path, 0); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(size)
	f.Close()
	args := []string{"-q", "-F", "-U", "6a1c4a8e-0000-4000-8000-000000000001", "-E", "root_owner=0:0"}
	if dir != "" {
		args = append(args, "-d", dir)
	}
	Run(t, "", "mkfs.ext4", append(args, path)...)
}

// FileSHA256 returns the hex SHA-256 of a file.
func FileSHA256(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// WriteAt writes data into an existing file at off.
func WriteAt(t testing.TB, path string, off int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
}

// Random returns n pseudo-random bytes from seed, every value equally
// likely: data no compressor can shrink.
func Random(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// Garbage returns n pseudo-random bytes from seed, all odd, so that no
// block reads as free space (7 bits each: a literal coder shrinks them by
// an eighth; use Random for incompressible data).
func Garbage(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32() | 1) // never zero, so nothing looks free
	}
	return b
}

// FilesEqual reports the first differing offset of two files, or -1.
func FilesEqual(t testing.TB, a, b string) int64 {
	t.Helper()
	da, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	db, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(da, db) {
		return -1
	}
	for i := range min(len(da), len(db)) {
		if da[i] != db[i] {
			return int64(i)
		}
	}
	return int64(min(len(da), len(db)))
}

// LoopDevice attaches path to a loop device (root only) and detaches it
// when the test ends.
func LoopDevice(t testing.TB, path string) string {
	t.Helper()
	RequireRoot(t, "loop devices")
	RequireCommands(t, "losetup")
	out, err := exec.Command("losetup", "--find", "--show", path).CombinedOutput()
	if err != nil {
		t.Skipf("skipping: cannot attach a loop device: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev
}
