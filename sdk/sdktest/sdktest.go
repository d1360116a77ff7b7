// Package sdktest is the conformance harness for diskcast plugins. A
// plugin's tests hand it the implementation and real sample volumes; it
// drives the plugin both in process and over go-plugin's in-memory gRPC
// connection, checks every rule of the contract, and compares the two
// paths. Built-in and third-party plugins pass the same harness.
package sdktest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/diskcast/diskcast/sdk/base"
	"github.com/diskcast/diskcast/sdk/filesystem"
	"github.com/hashicorp/go-plugin"
)

// Sample is a volume for the harness: Size bytes at Offset in the image
// file at Path (Size 0: to the end of the file).
type Sample struct {
	Name         string
	Path         string
	Offset, Size int64
	// Config is applied with Configure before the sample is probed.
	Config base.Config
	// WantFSType, if set, is the FSType Probe must report.
	WantFSType string
	// WantUsedBytes, if not 0, is what the extents must add up to, as
	// the filesystem's own tools report it (dumpe2fs, fsck.fat, ...).
	WantUsedBytes int64
	// Verify, if set, is called with a file of the volume's size that
	// holds only the used extents (zeros elsewhere): it should run the
	// filesystem's checker and compare file contents.
	Verify func(t testing.TB, path string)
}

// FilesystemSuite describes a filesystem plugin under test.
type FilesystemSuite struct {
	Name string // registration name
	Impl filesystem.Filesystem
	// Samples hold the plugin's filesystem; Foreign ones do not (other
	// filesystems). The harness adds zeros and random bytes to Foreign.
	Samples []Sample
	Foreign []Sample
}

// RunFilesystem runs the conformance tests of a filesystem plugin.
func RunFilesystem(t *testing.T, s FilesystemSuite) {
	t.Helper()
	if len(s.Samples) == 0 {
		t.Fatal("sdktest: a filesystem suite needs at least one sample of the plugin's filesystem")
	}
	clients := map[string]filesystem.Client{
		"in-process": filesystem.InProcess(s.Impl, base.Info{Name: s.Name, Version: "test"}),
		"grpc":       dialFilesystem(t, s),
	}
	paths := slices.Sorted(func(yield func(string) bool) {
		for k := range clients {
			if !yield(k) {
				return
			}
		}
	})
	t.Run("base", func(t *testing.T) {
		for _, p := range paths {
			t.Run(p, func(t *testing.T) { checkBase(t, clients[p], base.KindFilesystem, s.Name) })
		}
	})
	t.Run("fix-up capability", func(t *testing.T) {
		caps, err := clients["grpc"].Capabilities(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !caps.FixUp {
			err := clients["grpc"].FixUp(context.Background(), volume(t, s.Samples[0]))
			if !errors.Is(err, base.ErrUnsupported) {
				t.Errorf("FixUp of a plugin without the capability: %v, want base.ErrUnsupported", err)
			}
		}
	})
	for _, sm := range s.Samples {
		t.Run("sample/"+sm.Name, func(t *testing.T) {
			var first [][2]int64
			for _, p := range paths {
				got := checkSample(t, p, clients[p], sm)
				if first == nil {
					first = got
				} else if !slices.Equal(first, got) {
					t.Errorf("%s reported %d extents, %s %d: the paths disagree", paths[0], len(first), p, len(got))
				}
			}
			if sm.Verify != nil && first != nil && !t.Failed() {
				sm.Verify(t, copyUsed(t, volume(t, sm), first))
			}
		})
		t.Run("truncated/"+sm.Name, func(t *testing.T) {
			v := volume(t, sm)
			for _, frac := range []int64{2, 8} {
				cut := v
				cut.Size = v.Size / frac &^ 511
				if cut.Size == 0 {
					continue
				}
				checkTolerant(t, clients["grpc"], cut)
			}
		})
		t.Run("cancel/"+sm.Name, func(t *testing.T) {
			for _, p := range paths {
				checkCancel(t, p, clients[p], sm)
			}
		})
	}
	foreign := append(slices.Clone(s.Foreign), synthetic(t)...)
	for _, sm := range foreign {
		t.Run("foreign/"+sm.Name, func(t *testing.T) {
			for _, p := range paths {
				r, err := clients[p].Probe(context.Background(), volume(t, sm))
				if err != nil {
					t.Errorf("%s: Probe of a volume without the filesystem: %v, want confidence 0 and no error", p, err)
				} else if r.Confidence != 0 {
					t.Errorf("%s: Probe claims %s with confidence %d", p, r.FSType, r.Confidence)
				}
			}
		})
	}
}

func dialFilesystem(t *testing.T, s FilesystemSuite) filesystem.Client {
	gc, _ := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{
		string(base.KindFilesystem): &filesystem.GRPCPlugin{Impl: s.Impl, Meta: base.Info{Name: s.Name, Version: "test"}, Timeout: time.Minute},
	})
	t.Cleanup(func() { gc.Close() })
	raw, err := gc.Dispense(string(base.KindFilesystem))
	if err != nil {
		t.Fatalf("sdktest: dispense: %v", err)
	}
	return raw.(filesystem.Client)
}

// baseClient is what every kind's client offers.
type baseClient interface {
	Info(ctx context.Context) (*base.Info, error)
	ConfigSchema(ctx context.Context) (*base.Schema, error)
	Configure(ctx context.Context, cfg base.Config) error
}

// checkBase checks the shared base of any plugin.
func checkBase(t *testing.T, c baseClient, kind base.Kind, name string) {
	ctx := context.Background()
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.Kind != kind || info.Name != name || info.APIVersion != base.APIVersion || info.Description == "" {
		t.Errorf("Info %+v: want kind %s, name %s, API %d and a description", *info, kind, name, base.APIVersion)
	}
	schema, err := c.ConfigSchema(ctx)
	if err != nil {
		t.Fatalf("ConfigSchema: %v", err)
	}
	types := []string{base.TypeString, base.TypeBool, base.TypeNumber, base.TypeStringList}
	seen := map[string]bool{}
	for _, a := range schema.Attributes {
		if a.Name == "" || seen[a.Name] || !slices.Contains(types, a.Type) || a.Description == "" {
			t.Errorf("config attribute %+v: want a unique name, a type of %v and a description", a, types)
		}
		seen[a.Name] = true
	}
	if err := c.Configure(ctx, base.Config{}); err != nil {
		t.Errorf("Configure with no settings: %v", err)
	}
	err = c.Configure(ctx, base.Config{"sdktest_no_such_setting": true})
	if !errors.Is(err, base.ErrInvalidConfig) || !strings.Contains(err.Error(), "sdktest_no_such_setting") {
		t.Errorf("Configure with an unknown setting: %v, want base.ErrInvalidConfig naming it", err)
	}
	if err := c.Configure(ctx, base.Config{}); err != nil {
		t.Errorf("Configure after a rejected one: %v", err)
	}
}

// checkSample probes a sample and collects its extents, checking them.
func checkSample(t *testing.T, path string, c filesystem.Client, sm Sample) [][2]int64 {
	ctx := context.Background()
	v := volume(t, sm)
	if err := c.Configure(ctx, sm.Config); err != nil {
		t.Fatalf("%s: Configure(%v): %v", path, sm.Config, err)
	}
	defer c.Configure(ctx, base.Config{})
	r, err := c.Probe(ctx, v)
	if err != nil {
		t.Fatalf("%s: Probe: %v", path, err)
	}
	if r.Confidence <= 0 || r.FSType == "" || r.BlockSize <= 0 || r.Blocks == 0 {
		t.Fatalf("%s: Probe %+v: want confidence > 0, a type, a block size and a block count", path, *r)
	}
	if sm.WantFSType != "" && r.FSType != sm.WantFSType {
		t.Errorf("%s: FSType %q, want %q", path, r.FSType, sm.WantFSType)
	}
	if r.Unsupported != "" {
		t.Logf("%s: plugin says capture raw: %s", path, r.Unsupported)
		return nil
	}
	var got [][2]int64
	var used, end int64
	err = c.UsedExtents(ctx, v, func(off, length int64) error {
		if off < end || length <= 0 || off+length > v.Size {
			return fmt.Errorf("extent %d+%d after one ending at %d, volume %d bytes: out of order, empty or outside", off, length, end, v.Size)
		}
		got = append(got, [2]int64{off, length})
		used += length
		end = off + length
		return nil
	})
	if err != nil {
		t.Fatalf("%s: UsedExtents: %v", path, err)
	}
	if len(got) == 0 {
		t.Errorf("%s: no extents: a filesystem uses at least its superblock", path)
	}
	if sm.WantUsedBytes != 0 && used != sm.WantUsedBytes {
		t.Errorf("%s: extents add up to %d bytes, the filesystem's tools say %d", path, used, sm.WantUsedBytes)
	}
	if want := (sm.WantUsedBytes + r.BlockSize - 1) / r.BlockSize; r.UsedBlocks != 0 && sm.WantUsedBytes != 0 && int64(r.UsedBlocks) != want {
		t.Errorf("%s: Probe says %d used blocks of %d bytes, the filesystem's tools %d bytes (%d blocks)", path, r.UsedBlocks, r.BlockSize, sm.WantUsedBytes, want)
	}
	return got
}

// checkTolerant feeds a truncated volume: any answer is fine except a
// panic, a hang, or extents outside the volume.
func checkTolerant(t *testing.T, c filesystem.Client, v filesystem.Volume) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := c.Probe(ctx, v)
	if errors.Is(err, base.ErrPluginExited) {
		t.Fatalf("Probe of the first %d bytes crashed the plugin: %v", v.Size, err)
	}
	if err != nil || r.Confidence == 0 || r.Unsupported != "" {
		return
	}
	err = c.UsedExtents(ctx, v, func(off, length int64) error { return nil })
	if errors.Is(err, filesystem.ErrBadExtent) || errors.Is(err, base.ErrPluginExited) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("UsedExtents of the first %d bytes: %v", v.Size, err)
	}
}

// checkCancel checks that UsedExtents returns emit's error as is, and
// stops on a cancelled context.
func checkCancel(t *testing.T, path string, c filesystem.Client, sm Sample) {
	v := volume(t, sm)
	if r, err := c.Probe(context.Background(), v); err != nil || r.Unsupported != "" {
		return
	}
	stop := errors.New("sdktest: stop")
	err := c.UsedExtents(context.Background(), v, func(off, length int64) error { return stop })
	if !errors.Is(err, stop) {
		t.Errorf("%s: UsedExtents whose emit fails: %v, want emit's error", path, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	err = c.UsedExtents(ctx, v, func(off, length int64) error {
		n++
		cancel()
		return nil
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("%s: UsedExtents cancelled after %d extents: %v, want context.Canceled", path, n, err)
	}
}

// volume resolves a sample's size.
func volume(t testing.TB, sm Sample) filesystem.Volume {
	v := filesystem.Volume{Path: sm.Path, Offset: sm.Offset, Size: sm.Size}
	if v.Size == 0 {
		st, err := os.Stat(sm.Path)
		if err != nil {
			t.Fatalf("sdktest: sample %s: %v", sm.Name, err)
		}
		v.Size = st.Size() - sm.Offset
	}
	return v
}

// synthetic makes volumes that hold no filesystem: zeros and random bytes.
func synthetic(t *testing.T) []Sample {
	dir := t.TempDir()
	zeros := filepath.Join(dir, "zeros")
	random := filepath.Join(dir, "random")
	if err := os.WriteFile(zeros, make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4<<20)
	rng := rand.NewChaCha8([32]byte{'d', 'i', 's', 'k', 'c', 'a', 's', 't'})
	rng.Read(buf)
	if err := os.WriteFile(random, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	return []Sample{{Name: "zeros", Path: zeros}, {Name: "random", Path: random}}
}

// copyUsed writes a file of the volume's size holding only the extents.
func copyUsed(t testing.TB, v filesystem.Volume, extents [][2]int64) string {
	src, err := os.Open(v.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	p := filepath.Join(t.TempDir(), "used-only.img")
	dst, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if err := dst.Truncate(v.Size); err != nil {
		t.Fatal(err)
	}
	for _, e := range extents {
		r := io.NewSectionReader(src, v.Offset+e[0], e[1])
		if _, err := io.Copy(io.NewOffsetWriter(dst, e[0]), r); err != nil {
			t.Fatalf("sdktest: copy extent %d+%d: %v", e[0], e[1], err)
		}
	}
	return p
}

// NeedCommand skips the test unless the named program is installed,
// saying which Debian package has it.
func NeedCommand(t testing.TB, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/sbin"} {
			if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
				return filepath.Join(dir, name)
			}
		}
		t.Skipf("%s is not installed (apt-get install %s)", name, debianPackage)
	}
	return p
}

// MakeImage creates a file of size bytes in a temporary directory and
// runs the command with the file's path as its last argument (for
// example mkfs.ext4 -q -F). It skips the test if the command is missing.
func MakeImage(t testing.TB, size int64, debianPackage, command string, args ...string) string {
	t.Helper()
	bin := NeedCommand(t, command, debianPackage)
	p := filepath.Join(t.TempDir(), filepath.Base(command)+".img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out, err := exec.Command(bin, append(args, p)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", command, strings.Join(args, " "), err, out)
	}
	return p
}
