package clonezilla

import (
	"bytes"
	"context"
	"encoding/binary"
	"strings"
	"testing"
)

// ntfscloneImage builds a version 10.1 ntfsclone image of a 4-cluster
// volume with 1 KiB clusters: clusters 0 and 1 stored, a gap of 2, then
// the backup boot sector cluster cut to the device end.
func ntfscloneImage() []byte {
	var b bytes.Buffer
	h := make([]byte, 56)
	copy(h, ntfscloneMagic)
	h[16], h[17] = 10, 1
	le := binary.LittleEndian
	le.PutUint32(h[18:], 1024)
	le.PutUint64(h[22:], 4*1024+512)
	le.PutUint64(h[30:], 4)
	le.PutUint64(h[38:], 3)
	le.PutUint32(h[46:], 56)
	b.Write(h)
	for i := range 2 {
		b.WriteByte(cmdNext)
		b.Write(bytes.Repeat([]byte{byte('a' + i)}, 1024))
	}
	b.WriteByte(cmdGap)
	binary.Write(&b, le, int64(2))
	b.WriteByte(cmdNext)
	b.Write(bytes.Repeat([]byte{'z'}, 512))
	return b.Bytes()
}

func TestNtfscloneReader(t *testing.T) {
	n, err := NewNtfsclone(bytes.NewReader(ntfscloneImage()))
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, n.Header.DeviceSize)
	var runs []int64
	if err := n.Data(context.Background(), func(off int64, p []byte) error {
		runs = append(runs, off, int64(len(p)))
		copy(got[off:], p)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := append(append(append(bytes.Repeat([]byte{'a'}, 1024), bytes.Repeat([]byte{'b'}, 1024)...), make([]byte, 2048)...), bytes.Repeat([]byte{'z'}, 512)...)
	if !bytes.Equal(got, want) || len(runs) != 4 || runs[0] != 0 || runs[1] != 2048 || runs[2] != 4096 || runs[3] != 512 {
		t.Fatalf("runs %v", runs)
	}
	// A gap past the end and an unknown command are named.
	bad := ntfscloneImage()
	bad[56+2*1025+1] = 9 // gap count 9 > 2 clusters left
	n, _ = NewNtfsclone(bytes.NewReader(bad))
	if err := n.Data(context.Background(), func(int64, []byte) error { return nil }); err == nil || !strings.Contains(err.Error(), "gap of 9 clusters") {
		t.Errorf("bad gap: %v", err)
	}
	bad = ntfscloneImage()
	bad[56] = 7
	n, _ = NewNtfsclone(bytes.NewReader(bad))
	if err := n.Data(context.Background(), func(int64, []byte) error { return nil }); err == nil || !strings.Contains(err.Error(), "unknown command 7") {
		t.Errorf("bad command: %v", err)
	}
}

// FuzzNtfsclone: arbitrary bytes must give data in order or an error.
func FuzzNtfsclone(f *testing.F) {
	f.Add(ntfscloneImage())
	f.Add(ntfscloneImage()[:100])
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := NewNtfsclone(bytes.NewReader(b))
		if err != nil || n.Header.ClusterSize > 1<<20 {
			return
		}
		last := int64(-1)
		n.Data(context.Background(), func(off int64, p []byte) error {
			if off <= last || off+int64(len(p)) > n.Header.DeviceSize {
				t.Fatalf("run %d+%d after %d, device %d", off, len(p), last, n.Header.DeviceSize)
			}
			last = off + int64(len(p)) - 1
			return nil
		})
	})
}

// FuzzSfdisk: arbitrary dumps parse or fail, never panic.
func FuzzSfdisk(f *testing.F) {
	f.Add("label: gpt\nlabel-id: 9E0E4D52-3A0B-4C55-9D1F-6C5E2A7B8C91\nunit: sectors\nfirst-lba: 34\nsector-size: 512\n\n/dev/sda1 : start=2048, size=4096, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"a, b\"\n")
	f.Add("label: dos\n/dev/nvme0n1p1 : start=63, size=1, type=7, bootable\n")
	f.Fuzz(func(t *testing.T, s string) {
		tb, err := ParseSfdisk(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, p := range tb.Parts {
			if p.Start < 0 || p.Size < 0 || p.Number <= 0 {
				t.Fatalf("bad part %+v", p)
			}
		}
	})
}
