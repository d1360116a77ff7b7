package swap

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const (
	testUUID  = "3f2a6c1e-9b7d-4e5f-a1b2-c3d4e5f60718"
	testLabel = "fleet-swap"
)

func requireTools(tb testing.TB, names ...string) {
	tb.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			tb.Skipf("%s not found in PATH (install util-linux): %v", n, err)
		}
	}
}

// makeSwap runs mkswap on a sparse file of sizeMiB and returns its path.
func makeSwap(tb testing.TB, sizeMiB int64, args ...string) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "swap.img")
	f, err := os.Create(p)
	if err != nil {
		tb.Fatal(err)
	}
	if err := f.Truncate(sizeMiB << 20); err != nil {
		tb.Fatal(err)
	}
	f.Close()
	out, err := exec.Command("mkswap", append(args, p)...).CombinedOutput()
	if err != nil {
		tb.Fatalf("mkswap %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return p
}

func extents(tb testing.TB, r *os.File, size int64) [][2]int64 {
	tb.Helper()
	var got [][2]int64
	err := UsedExtents(context.Background(), r, size, func(off, length int64) error {
		got = append(got, [2]int64{off, length})
		return nil
	})
	if err != nil {
		tb.Fatalf("UsedExtents: %v", err)
	}
	return got
}

// TestMkswap probes swap areas made by mkswap, restores only the reported
// header page onto a blank file, and checks that blkid and swaplabel see
// the same swap area with the same label and UUID.
func TestMkswap(t *testing.T) {
	requireTools(t, "mkswap", "blkid", "swaplabel")
	for _, ps := range []int64{4096, 16384, 65536} {
		t.Run(strconv.FormatInt(ps, 10), func(t *testing.T) {
			const sizeMiB = 32
			src := makeSwap(t, sizeMiB, "-L", testLabel, "-U", testUUID, "-p", strconv.FormatInt(ps, 10))
			f, err := os.Open(src)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			info, err := Probe(f, sizeMiB<<20)
			if err != nil {
				t.Fatal(err)
			}
			want := Info{FSType: "swap", BlockSize: ps, Blocks: uint64(sizeMiB<<20) / uint64(ps), UsedBlocks: 1, Label: testLabel, UUID: testUUID}
			if info.FSType != want.FSType || info.BlockSize != want.BlockSize || info.Blocks != want.Blocks ||
				info.UsedBlocks != want.UsedBlocks || info.Label != want.Label || info.UUID != want.UUID {
				t.Fatalf("Probe = %+v, want %+v", *info, want)
			}
			got := extents(t, f, sizeMiB<<20)
			if len(got) != 1 || got[0] != [2]int64{0, ps} {
				t.Fatalf("UsedExtents = %v, want only the header page [0 %d]", got, ps)
			}

			// Restore only that page onto a blank device.
			dst := filepath.Join(t.TempDir(), "copy.img")
			out, err := os.Create(dst)
			if err != nil {
				t.Fatal(err)
			}
			if err := out.Truncate(sizeMiB << 20); err != nil {
				t.Fatal(err)
			}
			page := make([]byte, ps)
			if _, err := f.ReadAt(page, 0); err != nil {
				t.Fatal(err)
			}
			if _, err := out.WriteAt(page, 0); err != nil {
				t.Fatal(err)
			}
			out.Close()
			for _, p := range []string{src, dst} {
				b, err := exec.Command("blkid", "-p", "-o", "export", p).Output()
				if err != nil {
					t.Fatalf("blkid %s: %v", p, err)
				}
				for _, kv := range []string{"TYPE=swap", "LABEL=" + testLabel, "UUID=" + testUUID} {
					if !strings.Contains(string(b), kv+"\n") {
						t.Fatalf("blkid %s: no %s in\n%s", p, kv, b)
					}
				}
			}
			sl, err := exec.Command("swaplabel", dst).CombinedOutput()
			if err != nil || !strings.Contains(string(sl), "LABEL: "+testLabel) || !strings.Contains(string(sl), "UUID:  "+testUUID) {
				t.Fatalf("swaplabel on the restored copy: %v\n%s", err, sl)
			}
		})
	}
}

// header builds a version 1 header page by hand, for the cases mkswap
// cannot produce (other byte order, damage, hibernation).
func header(ps int64, bo binary.ByteOrder, version, lastPage uint32, sig string) []byte {
	p := make([]byte, ps)
	bo.PutUint32(p[versionOff:], version)
	bo.PutUint32(p[lastPageOff:], lastPage)
	copy(p[uuidOff:], []byte{0x3f, 0x2a, 0x6c, 0x1e, 0x9b, 0x7d, 0x4e, 0x5f, 0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 0x07, 0x18})
	copy(p[labelOff:], testLabel)
	copy(p[ps-sigLen:], sig)
	return p
}

// device is a header followed by zeros up to size.
type device struct {
	head []byte
	size int64
}

func (d device) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= d.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), d.size-off))
	c := 0
	if off < int64(len(d.head)) {
		c = copy(p[:n], d.head[off:])
	}
	clear(p[c:n])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func TestHeaders(t *testing.T) {
	tests := []struct {
		name     string
		dev      device
		probeErr error
		usedErr  error
		msg      string
		note     string
	}{
		{name: "big-endian", dev: device{header(4096, binary.BigEndian, 1, 255, "SWAPSPACE2"), 1 << 20}, note: "big-endian"},
		{name: "8k pages", dev: device{header(8192, binary.LittleEndian, 1, 127, "SWAPSPACE2"), 1 << 20}, note: "8192-byte pages"},
		{name: "version 0", dev: device{header(4096, binary.LittleEndian, 0, 0, "SWAP-SPACE"), 1 << 20}, note: "version 0"},
		{name: "zeros", dev: device{nil, 1 << 20}, probeErr: ErrNotFound, usedErr: ErrNotFound, msg: "no swap signature"},
		{name: "smaller than a page", dev: device{nil, 100}, probeErr: ErrNotFound, usedErr: ErrNotFound, msg: "no swap signature"},
		{name: "bad version", dev: device{header(4096, binary.LittleEndian, 2, 255, "SWAPSPACE2"), 1 << 20}, probeErr: ErrCorrupt, usedErr: ErrCorrupt, msg: "version 2"},
		{name: "truncated", dev: device{header(4096, binary.LittleEndian, 1, 255, "SWAPSPACE2"), 512 << 10}, probeErr: ErrTruncated, usedErr: ErrTruncated, msg: "header says 256 pages of 4096 bytes, the device holds 128"},
		{name: "hibernation image", dev: device{header(4096, binary.LittleEndian, 1, 255, "S1SUSPEND"), 1 << 20}, usedErr: ErrUnsupported, msg: "hibernation image", note: "hibernation image"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info, err := Probe(tc.dev, tc.dev.size)
			switch {
			case tc.probeErr != nil:
				if !errors.Is(err, tc.probeErr) || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("Probe: got %v, want %v saying %q", err, tc.probeErr, tc.msg)
				}
			case err != nil:
				t.Fatalf("Probe: %v", err)
			case !strings.Contains(strings.Join(info.Notes, "; "), tc.note):
				t.Fatalf("Probe notes %q do not say %q", info.Notes, tc.note)
			}
			var got [][2]int64
			err = UsedExtents(context.Background(), tc.dev, tc.dev.size, func(off, length int64) error {
				got = append(got, [2]int64{off, length})
				return nil
			})
			if tc.usedErr != nil {
				if !errors.Is(err, tc.usedErr) || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("UsedExtents: got %v, want %v saying %q", err, tc.usedErr, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0] != [2]int64{0, info.BlockSize} {
				t.Fatalf("UsedExtents = %v, want [0 %d]", got, info.BlockSize)
			}
			if info.Label != "" && (info.Label != testLabel || info.UUID != testUUID) {
				t.Fatalf("label %q uuid %q", info.Label, info.UUID)
			}
		})
	}
}

func TestCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dev := device{header(4096, binary.LittleEndian, 1, 255, "SWAPSPACE2"), 1 << 20}
	if err := UsedExtents(ctx, dev, dev.size, func(int64, int64) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func FuzzProbe(f *testing.F) {
	f.Add(header(4096, binary.LittleEndian, 1, 255, "SWAPSPACE2"), uint32(1<<20))
	f.Add(header(4096, binary.BigEndian, 1, 255, "SWAPSPACE2"), uint32(1<<20))
	f.Add(header(8192, binary.LittleEndian, 1, 255, "SWAPSPACE2"), uint32(4<<20))
	f.Add(header(4096, binary.LittleEndian, 0, 0, "SWAP-SPACE"), uint32(1<<20))
	f.Add(header(4096, binary.LittleEndian, 1, 255, "S1SUSPEND"), uint32(1<<20))
	if _, err := exec.LookPath("mkswap"); err == nil {
		p := makeSwap(f, 1, "-L", testLabel, "-U", testUUID)
		if b, err := os.ReadFile(p); err == nil {
			f.Add(bytes.Clone(b[:4096]), uint32(len(b)))
		}
	}
	f.Fuzz(func(t *testing.T, head []byte, size uint32) {
		dev := device{head, int64(size)}
		info, err := Probe(dev, dev.size)
		if err != nil {
			if !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTruncated) {
				t.Fatalf("undocumented error: %v", err)
			}
			return
		}
		if info.BlockSize < 4096 || info.BlockSize > dev.size || info.Blocks*uint64(info.BlockSize) > uint64(dev.size) {
			t.Fatalf("Probe = %+v on %d bytes", *info, dev.size)
		}
		var got [][2]int64
		err = UsedExtents(context.Background(), dev, dev.size, func(off, length int64) error {
			got = append(got, [2]int64{off, length})
			return nil
		})
		if err == nil && (len(got) != 1 || got[0] != [2]int64{0, info.BlockSize}) {
			t.Fatalf("UsedExtents = %v with page size %d", got, info.BlockSize)
		}
		if err != nil && !errors.Is(err, ErrUnsupported) {
			t.Fatalf("UsedExtents after a successful Probe: %v", err)
		}
	})
}
