package ntfs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"
)

func tinyExtents(t *testing.T, img []byte, size int64, opts Options) ([]extent, error) {
	t.Helper()
	var exts []extent
	err := UsedExtentsWithOptions(context.Background(), bytes.NewReader(img), size, opts, func(off, length int64) error {
		exts = append(exts, extent{off, length})
		return nil
	})
	return exts, err
}

// TestTinyVolume checks every extent of the hand-assembled volume,
// including the masked $Bitmap padding, the backup boot sector right
// after the volume, the device's last sector, and the skip options.
func TestTinyVolume(t *testing.T) {
	const s = 512
	tail := []extent{{tinyVolSectors * s, s}, {(tinySectors - 1) * s, s}}
	with := func(e ...extent) []extent { return append(e, tail...) }
	cases := []struct {
		name string
		o    tinyOpts
		opts Options
		want []extent
	}{
		{"plain", tinyOpts{}, Options{},
			with(extent{0, 65 * s}, extent{66 * s, 20 * s})},
		{"split bitmap", tinyOpts{splitBitmap: true}, Options{},
			with(extent{0, 86 * s})},
		{"skip pagefile", tinyOpts{}, Options{SkipPagefile: true},
			with(extent{0, 65 * s}, extent{76 * s, 10 * s})},
		{"skip hiberfil keeps its header page", tinyOpts{}, Options{SkipHiberfil: true},
			with(extent{0, 65 * s}, extent{66 * s, 18 * s})},
		{"skip both", tinyOpts{hiberHeader: "wake"}, Options{SkipPagefile: true, SkipHiberfil: true},
			with(extent{0, 65 * s}, extent{76 * s, 8 * s})},
		{"hibernated: nothing skipped", tinyOpts{hiberHeader: "hibr"}, Options{SkipPagefile: true, SkipHiberfil: true},
			with(extent{0, 65 * s}, extent{66 * s, 20 * s})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			img := buildTinyNTFS(tc.o)
			got, err := tinyExtents(t, img, int64(len(img)), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !equalExtents(got, tc.want) {
				t.Fatalf("extents = %v, want %v", got, tc.want)
			}
		})
	}
	info, err := Probe(bytes.NewReader(buildTinyNTFS(tinyOpts{})), tinySectors*512)
	if err != nil {
		t.Fatal(err)
	}
	want := Info{FSType: "ntfs", BlockSize: 512, Blocks: tinyVolSectors, UsedBlocks: 65 + 20, Label: "tiny", UUID: "1122334455667788"}
	if info.FSType != want.FSType || info.BlockSize != want.BlockSize || info.Blocks != want.Blocks ||
		info.UsedBlocks != want.UsedBlocks || info.Label != want.Label || info.UUID != want.UUID {
		t.Errorf("Probe = %+v, want %+v", *info, want)
	}
}

func equalExtents(a, b []extent) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// tinyMFT returns record n of a tiny image.
func tinyMFT(img []byte, n int) []byte {
	return img[tinyMFTLCN*512+n*1024 : tinyMFTLCN*512+(n+1)*1024]
}

func TestHostileTiny(t *testing.T) {
	le64 := binary.LittleEndian.PutUint64
	cases := []struct {
		name   string
		o      tinyOpts
		opts   Options
		size   int64 // 0: whole image
		mutate func(img []byte)
		is     error
		want   string
	}{
		{name: "truncated device", size: 40 * 512, is: ErrTruncated, want: "device has 20480 bytes"},
		{name: "MFT cluster outside volume", mutate: func(img []byte) { le64(img[0x30:], 5000) },
			is: ErrCorrupt, want: "$MFT cluster 5000 is outside the volume"},
		{name: "bad boot end marker", mutate: func(img []byte) { img[511] = 0 }, is: ErrCorrupt, want: "end marker"},
		{name: "odd sector size", mutate: func(img []byte) { binary.LittleEndian.PutUint16(img[0x0B:], 600) },
			is: ErrCorrupt, want: "bytes per sector 600"},
		{name: "bitmap record magic", mutate: func(img []byte) { copy(tinyMFT(img, 6), "XXXX") },
			is: ErrCorrupt, want: `MFT record 6 ($Bitmap): bad magic "XXXX"`},
		{name: "torn bitmap record", mutate: func(img []byte) { tinyMFT(img, 6)[1022] ^= 0xFF },
			is: ErrCorrupt, want: "MFT record 6 ($Bitmap): update sequence mismatch in sector 1"},
		{name: "record number", mutate: func(img []byte) { tinyMFT(img, 6)[0x2C] = 9 },
			is: ErrCorrupt, want: "record says it is number 9"},
		{name: "zero attribute length", mutate: func(img []byte) { binary.LittleEndian.PutUint32(tinyMFT(img, 6)[0x38+4:], 0) },
			is: ErrCorrupt, want: "attribute 0x80 at offset 56 has length 0"},
		{name: "bitmap run past the end", mutate: func(img []byte) {
			copy(tinyMFT(img, 6), tinyRecord(6, recordInUse, 0,
				tinyNonResident(atData, "", 1, 0, 0, encodeRuns([]run{{0, 118, 1 << 20}}), 512, 16, 16)))
		}, is: ErrCorrupt, want: "outside the volume (119 clusters)"},
		{name: "runlist shorter than header", mutate: func(img []byte) {
			copy(tinyMFT(img, 6), tinyRecord(6, recordInUse, 0,
				tinyNonResident(atData, "", 1, 0, 5, encodeRuns([]run{{0, tinyBitmapLCN, 1}}), 512, 16, 16)))
		}, is: ErrCorrupt, want: "runs cover VCN 0..0, header says 0..5"},
		{name: "negative LCN", mutate: func(img []byte) {
			copy(tinyMFT(img, 6), tinyRecord(6, recordInUse, 0,
				tinyNonResident(atData, "", 1, 0, 1, []byte{0x11, 1, 10, 0x11, 1, 0xF1}, 1024, 16, 16))) // LCN 10, then 10-15
		}, is: ErrCorrupt, want: "run 1: clusters -5..-5 lie outside"},
		{name: "bitmap too short", mutate: func(img []byte) {
			copy(tinyMFT(img, 6), tinyRecord(6, recordInUse, 0,
				tinyNonResident(atData, "", 1, 0, 0, encodeRuns([]run{{0, tinyBitmapLCN, 1}}), 512, 4, 4)))
		}, is: ErrCorrupt, want: "the volume's 119 clusters need 15"},
		{name: "attribute list loops back to the base segment", o: tinyOpts{splitBitmap: true}, mutate: func(img []byte) {
			list := append(tinyListEntry(atData, 0, recBitmap, 1), tinyListEntry(atData, 1, recBitmap, 1)...)
			copy(tinyMFT(img, 6), tinyRecord(6, recordInUse, 0,
				tinyResident(atAttributeList, "", 3, list),
				tinyNonResident(atData, "", 1, 0, 0, encodeRuns([]run{{0, tinyBitmapLCN, 1}}), 1024, 16, 16)))
		}, is: ErrCorrupt, want: "segment 1 starts at VCN 0, expected 1"},
		{name: "extension of another record", o: tinyOpts{splitBitmap: true}, mutate: func(img []byte) {
			copy(tinyMFT(img, 18), tinyRecord(18, recordInUse, recRoot|1<<48,
				tinyNonResident(atData, "", 0, 1, 1, encodeRuns([]run{{1, tinyBitmapLCN + 1, 1}}), 0, 0, 0)))
		}, is: ErrCorrupt, want: "extension MFT record 18 belongs to base record 5, not 6"},
		{name: "attribute list points past $MFT", o: tinyOpts{splitBitmap: true}, mutate: func(img []byte) {
			list := append(tinyListEntry(atData, 0, recBitmap, 1), tinyListEntry(atData, 1, 5000, 0)...)
			copy(tinyMFT(img, 6), tinyRecord(6, recordInUse, 0,
				tinyResident(atAttributeList, "", 3, list),
				tinyNonResident(atData, "", 1, 0, 0, encodeRuns([]run{{0, tinyBitmapLCN, 1}}), 1024, 16, 16)))
		}, is: ErrCorrupt, want: "MFT record 5000 does not exist: $MFT holds 24 records"},
		{name: "page file entry points at $Volume", opts: Options{SkipPagefile: true}, mutate: func(img []byte) {
			root := tinyResident(atIndexRoot, "$I30", 1, tinyIndexRoot([][]byte{
				tinyIndexEntry(recVolume|1<<48, tinyFileName("pagefile.sys", 0))}))
			copy(tinyMFT(img, 5), tinyRecord(5, recordInUse|recordDirectory, 0, root))
		}, is: ErrCorrupt, want: `MFT record 3 ($Volume) (\pagefile.sys): record has no $FILE_NAME "pagefile.sys" in the root directory`},
		{name: "root index entry of length 0", opts: Options{SkipHiberfil: true}, mutate: func(img []byte) {
			e := tinyIndexEntry(16|1<<48, tinyFileName("pagefile.sys", 0))
			binary.LittleEndian.PutUint16(e[8:], 0)
			copy(tinyMFT(img, 5), tinyRecord(5, recordInUse|recordDirectory, 0,
				tinyResident(atIndexRoot, "$I30", 1, tinyIndexRoot([][]byte{e}))))
		}, is: ErrCorrupt, want: "index entry at 16 has length 0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			img := buildTinyNTFS(tc.o)
			if tc.mutate != nil {
				tc.mutate(img)
			}
			size := int64(len(img))
			if tc.size != 0 {
				size = tc.size
			}
			_, err := tinyExtents(t, img, size, tc.opts)
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("UsedExtents error = %v\nwant %v containing %q", err, tc.is, tc.want)
			}
			if tc.opts == (Options{}) {
				if _, err := Probe(bytes.NewReader(img), size); !errors.Is(err, tc.is) {
					t.Fatalf("Probe error = %v, want %v", err, tc.is)
				}
			}
		})
	}
}

// TestHostileReal damages a volume made by mkntfs.
func TestHostileReal(t *testing.T) {
	needTools(t, "mkntfs")
	clean := makeNTFS(t, t.TempDir(), 8<<20)
	orig, err := os.ReadFile(clean)
	if err != nil {
		t.Fatal(err)
	}
	mftOff := int64(binary.LittleEndian.Uint64(orig[0x30:])) * 4096
	cases := []struct {
		name   string
		size   int64
		mutate func(img []byte)
		is     error
		want   string
	}{
		{name: "cut in half", size: 4 << 20, is: ErrTruncated, want: "device has 4194304 bytes"},
		{name: "OEM ID gone", mutate: func(img []byte) { copy(img[3:], "MSWIN4.1") }, is: ErrNotFound, want: "no \"NTFS    \" OEM ID"},
		{name: "$MFT record 0 wiped", mutate: func(img []byte) { clear(img[mftOff : mftOff+1024]) },
			is: ErrCorrupt, want: `MFT record 0 ($MFT): bad magic "\x00\x00\x00\x00"`},
		{name: "$Bitmap record torn", mutate: func(img []byte) { img[mftOff+6*1024+510]++ },
			is: ErrCorrupt, want: "MFT record 6 ($Bitmap): update sequence mismatch in sector 0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			img := bytes.Clone(orig)
			if tc.mutate != nil {
				tc.mutate(img)
			}
			size := int64(len(img))
			if tc.size != 0 {
				size = tc.size
			}
			_, err := Probe(bytes.NewReader(img[:size]), size)
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Probe error = %v\nwant %v containing %q", err, tc.is, tc.want)
			}
			err = UsedExtents(context.Background(), bytes.NewReader(img[:size]), size, func(off, length int64) error { return nil })
			if !errors.Is(err, tc.is) {
				t.Fatalf("UsedExtents error = %v, want %v", err, tc.is)
			}
		})
	}
}

func TestCancel(t *testing.T) {
	img := buildTinyNTFS(tinyOpts{})
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
