package xfs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
)

func extentsOf(r io.ReaderAt, size int64) ([]extent, error) {
	var exts []extent
	err := UsedExtents(context.Background(), r, size, func(off, length int64) error {
		exts = append(exts, extent{off, length})
		return nil
	})
	return exts, err
}

func TestTinyFilesystem(t *testing.T) {
	const b = tinyBS
	want := []extent{{0, 20 * b}, {30 * b, 10 * b}, {60 * b, 12 * b}, {76 * b, 18 * b}}
	for _, v5 := range []bool{false, true} {
		img := buildTinyXFS(v5)
		got, err := extentsOf(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			t.Fatalf("v5=%v: %v", v5, err)
		}
		if len(got) != len(want) {
			t.Fatalf("v5=%v: extents = %v, want %v", v5, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("v5=%v: extents = %v, want %v", v5, got, want)
			}
		}
		info, err := Probe(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			t.Fatal(err)
		}
		if info.Blocks != tinyDBlocks || info.UsedBlocks != tinyDBlocks-60 || info.Label != "tiny" ||
			info.UUID != "deadbeef-0102-0304-0506-0708090a0b0c" || info.BlockSize != b {
			t.Errorf("v5=%v: Probe = %+v", v5, info)
		}
	}
}

// patch applies fn to a copy of img.
func patched(img []byte, fn func(b []byte)) []byte {
	c := bytes.Clone(img)
	fn(c)
	return c
}

func TestHostileTiny(t *testing.T) {
	be := binary.BigEndian
	ag1 := tinyAGBlocks * tinyBS
	blk := func(b []byte, ag, n int) []byte {
		return b[ag*tinyAGBlocks*tinyBS+n*tinyBS : ag*tinyAGBlocks*tinyBS+(n+1)*tinyBS]
	}
	cases := []struct {
		name   string
		v5     bool
		size   int64
		mutate func(b []byte)
		is     error
		want   string
	}{
		{name: "device too small", size: 100 * tinyBS, is: ErrTruncated, want: "filesystem is 61440 bytes"},
		{name: "superblock version 3", mutate: func(b []byte) { be.PutUint16(b[sbVersionNum:], 3) },
			is: ErrUnsupported, want: "superblock version 3"},
		{name: "superblock CRC", v5: true, mutate: func(b []byte) { b[sbFname] = 'X' },
			is: ErrCorrupt, want: "superblock: CRC mismatch"},
		{name: "agcount zero", mutate: func(b []byte) { be.PutUint32(b[sbAGCount:], 0) },
			is: ErrCorrupt, want: "0 AGs of 64 blocks"},
		{name: "dblocks beyond AGs", mutate: func(b []byte) { be.PutUint64(b[sbDBlocks:], 200) },
			is: ErrCorrupt, want: "200 data blocks do not fit 2 AGs of 64 blocks"},
		{name: "AGF magic", mutate: func(b []byte) { copy(b[ag1+tinyBS:], "XXXX") },
			is: ErrCorrupt, want: `AG 1: AGF: bad magic "XXXX"`},
		{name: "AGF of another AG", mutate: func(b []byte) { be.PutUint32(b[ag1+tinyBS+agfSeqno:], 0) },
			is: ErrCorrupt, want: "AG 1: AGF: says it belongs to AG 0"},
		{name: "AGF CRC", v5: true, mutate: func(b []byte) { b[ag1+tinyBS+agfFreeBlks]++ },
			is: ErrCorrupt, want: "AG 1: AGF: CRC mismatch"},
		{name: "root outside AG", mutate: func(b []byte) { be.PutUint32(b[tinyBS+agfBnoRoot:], 999) },
			is: ErrCorrupt, want: "AG 0: AGF: bno btree root at block 999, outside the AG"},
		{name: "too many levels", mutate: func(b []byte) { be.PutUint32(b[tinyBS+agfBnoLevel:], 40) },
			is: ErrCorrupt, want: "bno btree has 40 levels"},
		{name: "btree magic", mutate: func(b []byte) { copy(blk(b, 0, 4), "ABTC") },
			is: ErrCorrupt, want: `AG 0: bno btree block 4: bad magic "ABTC", want "ABTB"`},
		{name: "btree CRC", v5: true, mutate: func(b []byte) { blk(b, 1, 6)[200] ^= 1 },
			is: ErrCorrupt, want: "AG 1: bno btree block 6: CRC mismatch"},
		{name: "btree block from elsewhere", v5: true, mutate: func(b []byte) {
			be.PutUint64(blk(b, 1, 6)[bbBlkno:], 7)
			setCRC(blk(b, 1, 6), bbCRC)
		}, is: ErrCorrupt, want: "block says it lives at sector 7, not 70"},
		{name: "level mismatch", mutate: func(b []byte) { be.PutUint16(blk(b, 1, 4)[bbLevel:], 1) },
			is: ErrCorrupt, want: "AG 1: bno btree block 4: level 1, expected 0"},
		{name: "node points to itself", mutate: func(b []byte) {
			be.PutUint32(blk(b, 1, 5)[bbHdrV4+8*((tinyBS-bbHdrV4)/12):], 5)
		}, is: ErrCorrupt, want: "AG 1: bno btree block 5: level 1, expected 0"},
		{name: "node points twice to one leaf", mutate: func(b []byte) {
			be.PutUint32(blk(b, 1, 5)[bbHdrV4+8*((tinyBS-bbHdrV4)/12)+4:], 4)
		}, is: ErrCorrupt, want: "AG 1: bno btree block 4: record 0: free extent at 8 starts before the previous one ends (12)"},
		{name: "pointer outside AG", mutate: func(b []byte) {
			be.PutUint32(blk(b, 1, 5)[bbHdrV4+8*((tinyBS-bbHdrV4)/12)+4:], 56)
		}, is: ErrCorrupt, want: "pointer 1 to block 56, outside the AG (56 blocks)"},
		{name: "free extent past AG end", mutate: func(b []byte) { be.PutUint32(blk(b, 0, 4)[bbHdrV4+12:], 25) },
			is: ErrCorrupt, want: "record 1: free extent 40+25 outside the AG (64 blocks)"},
		{name: "free extents out of order", mutate: func(b []byte) { be.PutUint32(blk(b, 0, 4)[bbHdrV4+8:], 25) },
			is: ErrCorrupt, want: "record 1: free extent at 25 starts before the previous one ends (30)"},
		{name: "numrecs too large", mutate: func(b []byte) { be.PutUint16(blk(b, 0, 4)[bbNumRecs:], 9999) },
			is: ErrCorrupt, want: "9999 records, a leaf holds at most 62"},
		{name: "empty leaf below a node", mutate: func(b []byte) { be.PutUint16(blk(b, 1, 6)[bbNumRecs:], 0) },
			is: ErrCorrupt, want: "AG 1: bno btree block 6: empty non-root block"},
		{name: "freeblks disagrees", mutate: func(b []byte) { be.PutUint32(b[tinyBS+agfFreeBlks:], 33) },
			is: ErrCorrupt, want: "AG 0: bno btree holds 30 free blocks, agf_freeblks says 33"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			img := patched(buildTinyXFS(tc.v5), func(b []byte) {
				if tc.mutate != nil {
					tc.mutate(b)
				}
			})
			size := int64(len(img))
			if tc.size != 0 {
				size = tc.size
			}
			_, err := extentsOf(bytes.NewReader(img[:size]), size)
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("UsedExtents error = %v\nwant %v containing %q", err, tc.is, tc.want)
			}
		})
	}
}

// patchReader overlays byte patches on a file, so a real image can be
// damaged without copying hundreds of megabytes.
type patchReader struct {
	r       io.ReaderAt
	patches map[int64][]byte
}

func (p *patchReader) ReadAt(b []byte, off int64) (int, error) {
	n, err := p.r.ReadAt(b, off)
	for at, data := range p.patches {
		for i, c := range data {
			if pos := at + int64(i) - off; pos >= 0 && pos < int64(n) {
				b[pos] = c
			}
		}
	}
	return n, err
}

// TestHostileReal damages filesystems made by mkfs.xfs.
func TestHostileReal(t *testing.T) {
	needTools(t, "mkfs.xfs", "xfs_db")
	dir := t.TempDir()
	img := makeXFS(t, dir, 300<<20, "")
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sb := xfsDB(t, img, "sb 0", "p agblocks", "p blocksize", "p sectsize")
	agb, bs, ss := sb[0], sb[1], sb[2]
	root := xfsDB(t, img, "agf 2", "p bnoroot")[0]
	rootOff := (2*agb + root) * bs
	size := int64(300 << 20)
	cases := []struct {
		name    string
		size    int64
		patches map[int64][]byte
		is      error
		want    string
	}{
		{name: "cut short", size: 200 << 20, is: ErrTruncated, want: "device has 209715200 bytes"},
		{name: "magic gone", patches: map[int64][]byte{0: []byte("EXT4")}, is: ErrNotFound, want: "no \"XFSB\""},
		{name: "AGF 3 zeroed", patches: map[int64][]byte{3*agb*bs + ss: make([]byte, 4)},
			is: ErrCorrupt, want: `AG 3: AGF: bad magic "\x00\x00\x00\x00"`},
		{name: "bno root of AG 2 damaged", patches: map[int64][]byte{rootOff + 100: {0xFF, 0xFF}},
			is: ErrCorrupt, want: "AG 2: bno btree block"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sz := size
			if tc.size != 0 {
				sz = tc.size
			}
			r := &patchReader{r: f, patches: tc.patches}
			_, err := extentsOf(r, sz)
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("UsedExtents error = %v\nwant %v containing %q", err, tc.is, tc.want)
			}
		})
	}
}

func TestCancel(t *testing.T) {
	img := buildTinyXFS(true)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := UsedExtents(ctx, bytes.NewReader(img), int64(len(img)), func(off, length int64) error { return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("UsedExtents with a cancelled context = %v", err)
	}
	stop := errors.New("stop")
	err = UsedExtents(context.Background(), bytes.NewReader(img), int64(len(img)), func(off, length int64) error { return stop })
	if !errors.Is(err, stop) {
		t.Fatalf("emit error not returned: %v", err)
	}
}
