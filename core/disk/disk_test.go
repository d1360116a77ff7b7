package disk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/diskfs/go-diskfs/partition/gpt"
)

// needTools skips the test when a command it runs is not installed.
func needTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: needs %s on PATH (%v)", tool, err)
		}
	}
}

// run runs a command, failing the test with its output on error.
func run(t testing.TB, stdin string, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout: %s\nstderr: %s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.Bytes()
}

// sparseFile creates a sparse file of the given size in dir.
func sparseFile(t testing.TB, dir, name string, size int64) string {
	t.Helper()
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// sfdiskImage makes a sparse image of size bytes partitioned by sfdisk
// from script, in which {img} stands for the image path (for numbered
// lines like "{img}5 : start=...").
func sfdiskImage(t testing.TB, dir string, size int64, script string) string {
	t.Helper()
	path := sparseFile(t, dir, "disk.img", size)
	sfdisk(t, path, script)
	return path
}

func sfdisk(t testing.TB, dev, script string, extra ...string) {
	t.Helper()
	args := append([]string{"-q", "--no-reread", "--no-tell-kernel"}, extra...)
	run(t, strings.ReplaceAll(script, "{img}", dev), "sfdisk", append(args, dev)...)
}

type sfdiskPart struct {
	Node     string `json:"node"`
	Start    int64  `json:"start"`
	Size     int64  `json:"size"`
	Type     string `json:"type"`
	UUID     string `json:"uuid"`
	Name     string `json:"name"`
	Attrs    string `json:"attrs"`
	Bootable bool   `json:"bootable"`
}

type sfdiskTable struct {
	Label      string       `json:"label"`
	ID         string       `json:"id"`
	FirstLBA   int64        `json:"firstlba"`
	LastLBA    int64        `json:"lastlba"`
	SectorSize int          `json:"sectorsize"`
	Partitions []sfdiskPart `json:"partitions"`
}

func sfdiskJSON(t testing.TB, dev string) sfdiskTable {
	t.Helper()
	var v struct {
		PT sfdiskTable `json:"partitiontable"`
	}
	out := run(t, "", "sfdisk", "--json", dev)
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("sfdisk --json %s: %v\n%s", dev, err, out)
	}
	return v.PT
}

var trailingDigits = regexp.MustCompile(`[0-9]+$`)

// gptAttrBits turns sfdisk's attrs text ("RequiredPartition
// LegacyBIOSBootable GUID:60,63") into the attribute bits.
func gptAttrBits(t testing.TB, s string) uint64 {
	t.Helper()
	var bits uint64
	for _, f := range strings.Fields(s) {
		switch {
		case f == "RequiredPartition":
			bits |= 1 << 0
		case f == "NoBlockIOProtocol":
			bits |= 1 << 1
		case f == "LegacyBIOSBootable":
			bits |= 1 << 2
		case strings.HasPrefix(f, "GUID:"):
			for _, n := range strings.Split(strings.TrimPrefix(f, "GUID:"), ",") {
				b, err := strconv.Atoi(n)
				if err != nil {
					t.Fatalf("sfdisk attrs %q: %v", s, err)
				}
				bits |= 1 << b
			}
		default:
			t.Fatalf("sfdisk attrs %q: unknown flag %q", s, f)
		}
	}
	return bits
}

// compareSfdisk checks l against what sfdisk --json says about dev.
func compareSfdisk(t *testing.T, l *Layout, dev string) {
	t.Helper()
	sf := sfdiskJSON(t, dev)
	wantScheme := map[string]Scheme{"gpt": SchemeGPT, "dos": SchemeMBR}[sf.Label]
	if l.Scheme != wantScheme {
		t.Fatalf("scheme %q, sfdisk says label %q", l.Scheme, sf.Label)
	}
	if l.SectorSize != sf.SectorSize {
		t.Errorf("sector size %d, sfdisk says %d", l.SectorSize, sf.SectorSize)
	}
	if l.DiskGUID != sf.ID {
		t.Errorf("disk GUID %q, sfdisk says %q", l.DiskGUID, sf.ID)
	}
	ss := int64(sf.SectorSize)
	byNumber := map[int]Partition{}
	for _, p := range append(append([]Partition(nil), l.Partitions...), l.Extended...) {
		if _, dup := byNumber[p.Number]; dup {
			t.Fatalf("partition number %d listed twice", p.Number)
		}
		byNumber[p.Number] = p
	}
	if len(byNumber) != len(sf.Partitions) {
		t.Errorf("%d partitions (%d extended), sfdisk lists %d", len(byNumber), len(l.Extended), len(sf.Partitions))
	}
	for _, sp := range sf.Partitions {
		n, err := strconv.Atoi(trailingDigits.FindString(sp.Node))
		if err != nil {
			t.Fatalf("sfdisk node %q: no partition number", sp.Node)
		}
		p, ok := byNumber[n]
		if !ok {
			t.Errorf("partition %d (%s) missing", n, sp.Node)
			continue
		}
		if p.Start != sp.Start*ss || p.Size != sp.Size*ss {
			t.Errorf("partition %d: bytes %d+%d, sfdisk says %d+%d", n, p.Start, p.Size, sp.Start*ss, sp.Size*ss)
		}
		switch sf.Label {
		case "gpt":
			if p.Type != sp.Type || p.GUID != sp.UUID || p.Name != sp.Name {
				t.Errorf("partition %d: type %s guid %s name %q, sfdisk says %s %s %q", n, p.Type, p.GUID, p.Name, sp.Type, sp.UUID, sp.Name)
			}
			if want := gptAttrBits(t, sp.Attrs); p.Attributes != want {
				t.Errorf("partition %d: attributes %#x, sfdisk says %q = %#x", n, p.Attributes, sp.Attrs, want)
			}
			if p.Logical {
				t.Errorf("partition %d: gpt partition marked logical", n)
			}
		case "dos":
			typ, err := strconv.ParseUint(sp.Type, 16, 8)
			if err != nil {
				t.Fatalf("sfdisk type %q: %v", sp.Type, err)
			}
			if want := fmt.Sprintf("0x%02x", typ); p.Type != want {
				t.Errorf("partition %d: type %s, sfdisk says %s", n, p.Type, want)
			}
			if got := p.Attributes&0x80 != 0; got != sp.Bootable {
				t.Errorf("partition %d: bootable %v, sfdisk says %v", n, got, sp.Bootable)
			}
			if p.Logical != (n >= 5) {
				t.Errorf("partition %d: logical=%v", n, p.Logical)
			}
			if isExtended(byte(typ)) != containsNumber(l.Extended, n) {
				t.Errorf("partition %d (type %s): listed in Extended=%v", n, sp.Type, containsNumber(l.Extended, n))
			}
		}
	}
}

func containsNumber(ps []Partition, n int) bool {
	for _, p := range ps {
		if p.Number == n {
			return true
		}
	}
	return false
}

// compareGoDiskfs checks a GPT layout against go-diskfs's reading of it,
// a second independent parser.
func compareGoDiskfs(t *testing.T, l *Layout, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tbl, err := gpt.Read(f, l.SectorSize, l.SectorSize)
	if err != nil {
		t.Fatalf("go-diskfs gpt.Read: %v", err)
	}
	if tbl.GUID != l.DiskGUID {
		t.Errorf("disk GUID %s, go-diskfs says %s", l.DiskGUID, tbl.GUID)
	}
	if len(tbl.Partitions) != len(l.Partitions) {
		t.Fatalf("%d partitions, go-diskfs says %d", len(l.Partitions), len(tbl.Partitions))
	}
	for _, gp := range tbl.Partitions {
		var p *Partition
		for i := range l.Partitions {
			if l.Partitions[i].Number == gp.Index {
				p = &l.Partitions[i]
			}
		}
		if p == nil {
			t.Errorf("go-diskfs partition %d missing", gp.Index)
			continue
		}
		ss := uint64(l.SectorSize)
		if uint64(p.Start) != gp.Start*ss || uint64(p.Size) != gp.Size || p.Type != string(gp.Type) ||
			p.GUID != gp.GUID || p.Name != gp.Name || p.Attributes != gp.Attributes {
			t.Errorf("partition %d: %+v, go-diskfs says %+v", p.Number, *p, *gp)
		}
	}
}

// checkLayout checks the invariants every successful Read must hold.
func checkLayout(l *Layout) error {
	switch l.Scheme {
	case SchemeNone, SchemeMBR, SchemeGPT:
	default:
		return fmt.Errorf("scheme %q", l.Scheme)
	}
	if l.Scheme == SchemeNone && (len(l.Partitions) > 0 || len(l.Extended) > 0 || len(l.Areas) > 0) {
		return fmt.Errorf("scheme none with partitions or areas: %+v", l)
	}
	var prevEnd int64
	for i, p := range l.Partitions {
		if p.Start < 0 || p.Size <= 0 || p.End() > l.DiskSize {
			return fmt.Errorf("partition %d: bytes %d+%d outside disk of %d bytes", p.Number, p.Start, p.Size, l.DiskSize)
		}
		if i > 0 && p.Start < prevEnd {
			return fmt.Errorf("partition %d: starts at %d, before the end %d of the one before (unsorted or overlapping)", p.Number, p.Start, prevEnd)
		}
		if p.Start%int64(l.SectorSize) != 0 || p.Size%int64(l.SectorSize) != 0 {
			return fmt.Errorf("partition %d: not sector aligned", p.Number)
		}
		if p.Logical {
			inside := false
			for _, x := range l.Extended {
				inside = inside || (p.Start >= x.Start && p.End() <= x.End())
			}
			if !inside {
				return fmt.Errorf("logical partition %d outside every extended partition", p.Number)
			}
		}
		prevEnd = p.End()
	}
	for _, x := range l.Extended {
		if x.Start <= 0 || x.End() > l.DiskSize {
			return fmt.Errorf("extended partition %d outside the disk", x.Number)
		}
	}
	for _, a := range l.Areas {
		if a.Offset < 0 || a.Length <= 0 || a.Offset+a.Length > l.DiskSize {
			return fmt.Errorf("area %q bytes %d+%d outside the disk", a.What, a.Offset, a.Length)
		}
		for _, p := range l.Partitions {
			if a.Offset < p.End() && p.Start < a.Offset+a.Length {
				return fmt.Errorf("area %q overlaps partition %d", a.What, p.Number)
			}
		}
	}
	// Partitions and Unused tile the disk exactly; unused extents are
	// merged (never adjacent) and non-empty.
	var covered int64
	u := l.Unused()
	for i, e := range u {
		if e.Length <= 0 || e.Offset < 0 || e.Offset+e.Length > l.DiskSize {
			return fmt.Errorf("unused extent %+v outside disk", e)
		}
		if i > 0 && e.Offset <= u[i-1].Offset+u[i-1].Length {
			return fmt.Errorf("unused extents %+v and %+v not sorted and merged", u[i-1], e)
		}
		for _, p := range l.Partitions {
			if e.Offset < p.End() && p.Start < e.Offset+e.Length {
				return fmt.Errorf("unused extent %+v overlaps partition %d", e, p.Number)
			}
		}
		covered += e.Length
	}
	for _, p := range l.Partitions {
		covered += p.Size
	}
	if covered != l.DiskSize {
		return fmt.Errorf("partitions and unused extents cover %d bytes of %d", covered, l.DiskSize)
	}
	return nil
}

func readFile(t testing.TB, path string) *Layout {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	l, err := ReadAuto(f, fi.Size())
	if err != nil {
		t.Fatalf("ReadAuto(%s): %v", filepath.Base(path), err)
	}
	if err := checkLayout(l); err != nil {
		t.Fatalf("layout of %s: %v", filepath.Base(path), err)
	}
	return l
}

func TestReadSfdiskImages(t *testing.T) {
	needTools(t, "sfdisk")
	const mib = 1 << 20
	tests := []struct {
		name     string
		size     int64
		script   string
		warnings int
	}{
		{"mbr primaries", 8 * mib, `label: dos
label-id: 0x1234abcd
start=2048,size=2048,type=83,bootable
start=4096,size=1024,type=82
start=6144,size=2048,type=7
start=10240,type=c
`, 0},
		{"mbr extended with 3 logicals", 8 * mib, `label: dos
start=2048,size=2048,type=83
start=4096,size=1024,type=ef,bootable
start=6144,type=5
start=6656,size=1024,type=83
start=8192,size=2048,type=82
start=12288,type=7
`, 0},
		{"mbr lba extended in slot 1", 4 * mib, `label: dos
start=2,size=6000,type=f
start=6002,type=83
{img}5 : start=4,size=100,type=83
{img}6 : start=200,size=5802,type=b
`, 0},
		{"mbr empty", 1 * mib, "label: dos\n", 0},
		{"gpt several partitions", 8 * mib, `label: gpt
{img}1 : start=2048,size=2048,type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B,name="EFI system partition"
{img}2 : start=4096,size=64,type=21686148-6449-6E6F-744E-656564454649,name="bios"
{img}3 : start=12288,size=2048,type=L,name="root fs é ✓",attrs="LegacyBIOSBootable GUID:60,63"
{img}4 : start=8192,size=2048,type=S,attrs="RequiredPartition"
{img}7 : start=14336,type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7,name="data"
`, 0},
		{"gpt tiny table", 64 << 10, `label: gpt
table-length: 4
first-lba: 3
last-lba: 124
{img}2 : start=3,size=40,type=L,name="a"
{img}1 : start=50,size=20,type=U
{img}4 : start=80,size=44,type=S,name="swap"
`, 0},
		{"gpt empty", 1 * mib, "label: gpt\n", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := sfdiskImage(t, t.TempDir(), tc.size, tc.script)
			l := readFile(t, path)
			compareSfdisk(t, l, path)
			if len(l.Warnings) != tc.warnings {
				t.Errorf("warnings %q, want %d", l.Warnings, tc.warnings)
			}
			checkAreas(t, l)
			if l.Scheme == SchemeGPT {
				compareGoDiskfs(t, l, path)
			}
		})
	}
}

// checkAreas checks the metadata areas against the scheme: GPT has a
// protective MBR, both headers and both entry arrays, the backup header
// in the last sector; MBR has sector 0 and one EBR per logical partition
// (these sfdisk tables have no empty EBRs), each inside its container.
func checkAreas(t *testing.T, l *Layout) {
	t.Helper()
	ss := int64(l.SectorSize)
	count := map[string]int{}
	for _, a := range l.Areas {
		count[strings.Fields(a.What)[0]]++
	}
	switch l.Scheme {
	case SchemeGPT:
		if len(l.Areas) != 5 || l.Areas[0] != (Area{0, ss, "protective MBR"}) || l.Areas[1] != (Area{ss, ss, "primary GPT header"}) ||
			l.Areas[4] != (Area{l.DiskSize - ss, ss, "backup GPT header"}) {
			t.Errorf("gpt areas %+v", l.Areas)
		}
	case SchemeMBR:
		logicals := 0
		for _, p := range l.Partitions {
			if p.Logical {
				logicals++
			}
		}
		if l.Areas[0] != (Area{0, ss, "MBR"}) || count["EBR"] != logicals || len(l.Areas) != 1+logicals {
			t.Errorf("mbr areas %+v for %d logical partitions", l.Areas, logicals)
		}
		for _, a := range l.Areas[1:] {
			if len(l.Extended) != 1 || a.Offset < l.Extended[0].Start || a.Offset+a.Length > l.Extended[0].End() {
				t.Errorf("ebr area %+v outside the extended partition %+v", a, l.Extended)
			}
		}
	}
	// Every area lies in unused space (checkLayout proved areas miss all
	// partitions, so this holds when Unused is right).
	for _, a := range l.Areas {
		in := false
		for _, e := range l.Unused() {
			in = in || (a.Offset >= e.Offset && a.Offset+a.Length <= e.Offset+e.Length)
		}
		if !in {
			t.Errorf("area %+v not inside an unused extent %+v", a, l.Unused())
		}
	}
}

// TestReadSectorSize4096 partitions disks with 4096-byte logical sectors.
// sfdisk writes them for a device whose logical sector size is 4096; the
// installed sfdisk may lack --sector-size for plain files, so the image is
// attached to a loop device with that sector size (needs root).
func TestReadSectorSize4096(t *testing.T) {
	needTools(t, "sfdisk", "losetup")
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to attach a loop device with 4096-byte sectors (losetup --sector-size 4096)")
	}
	tests := []struct{ name, script string }{
		{"gpt", `label: gpt
start=256,size=256,type=U,name="esp"
start=512,size=512,type=L,name="root"
start=1280,type=S
`},
		{"mbr with logicals", `label: dos
start=256,size=256,type=83,bootable
start=512,type=5
start=768,size=256,type=83
start=1280,type=82
`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := sparseFile(t, t.TempDir(), "disk.img", 8<<20)
			dev := strings.TrimSpace(string(run(t, "", "losetup", "--find", "--show", "--sector-size", "4096", path)))
			t.Cleanup(func() { run(t, "", "losetup", "--detach", dev) })
			sfdisk(t, dev, tc.script)
			f, err := os.Open(dev)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			size, err := f.Seek(0, 2)
			if err != nil {
				t.Fatal(err)
			}
			// MBR does not record the sector size: the caller passes the
			// device's; GPT is detected.
			l, err := Read(f, size, 4096)
			if err != nil {
				t.Fatal(err)
			}
			if err := checkLayout(l); err != nil {
				t.Fatal(err)
			}
			compareSfdisk(t, l, dev)
			checkAreas(t, l)
			if l.Scheme == SchemeGPT {
				if auto := readFile(t, path); auto.SectorSize != 4096 || len(auto.Partitions) != len(l.Partitions) {
					t.Errorf("ReadAuto on the image file: sector size %d, %d partitions", auto.SectorSize, len(auto.Partitions))
				}
				compareGoDiskfs(t, l, path)
				// The wrong sector size fails and says which one is right.
				_, err := Read(f, size, 512)
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "4096-byte sectors put it") {
					t.Errorf("Read with 512-byte sectors: %v", err)
				}
			}
		})
	}
}

// TestBareFilesystems: filesystem images are not partition tables, even
// when their first sector ends in 0x55AA like an MBR.
func TestBareFilesystems(t *testing.T) {
	tests := []struct {
		name string
		size int64
		tool string
		args []string
	}{
		{"fat12", 4 << 20, "mkfs.vfat", []string{"-F", "12"}},
		{"fat16", 16 << 20, "mkfs.vfat", []string{"-F", "16"}},
		{"fat32", 40 << 20, "mkfs.vfat", []string{"-F", "32"}},
		{"fat32 4096-byte sectors", 64 << 20, "mkfs.vfat", []string{"-F", "32", "-S", "4096"}},
		{"exfat", 8 << 20, "mkfs.exfat", nil},
		{"ntfs", 8 << 20, "mkntfs", []string{"-F", "-f", "-Q"}},
		{"ext4", 8 << 20, "mkfs.ext4", []string{"-q", "-F"}},
		{"swap", 1 << 20, "mkswap", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			needTools(t, tc.tool)
			path := sparseFile(t, t.TempDir(), "fs.img", tc.size)
			run(t, "", tc.tool, append(tc.args, path)...)
			sec0, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			sig := sec0[510] == 0x55 && sec0[511] == 0xAA
			if strings.HasPrefix(tc.name, "fat") || tc.name == "ntfs" || tc.name == "exfat" {
				if !sig {
					t.Fatalf("%s image has no 0x55AA in sector 0: the test no longer exercises MBR look-alikes", tc.name)
				}
			}
			l := readFile(t, path)
			if l.Scheme != SchemeNone || len(l.Warnings) != 0 {
				t.Errorf("scheme %q warnings %q, want none and no warnings", l.Scheme, l.Warnings)
			}
			if u := l.Unused(); len(u) != 1 || u[0] != (Extent{0, tc.size}) {
				t.Errorf("unused %+v, want the whole disk", u)
			}
		})
	}
}

// TestFATBootSectorWithTable: a FAT boot sector whose partition slots hold
// a valid table (sfdisk wrote one over it, keeping the BPB) is an MBR.
func TestFATBootSectorWithTable(t *testing.T) {
	needTools(t, "sfdisk", "mkfs.vfat")
	path := sparseFile(t, t.TempDir(), "disk.img", 8<<20)
	run(t, "", "mkfs.vfat", path)
	sfdisk(t, path, "label: dos\nstart=2048,type=c\n", "--wipe", "never")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bootSectorFS(b) != "FAT" {
		t.Fatal("sfdisk removed the FAT boot sector; the test no longer covers this case")
	}
	l := readFile(t, path)
	compareSfdisk(t, l, path)
	if len(l.Warnings) != 1 || !strings.Contains(l.Warnings[0], "FAT boot sector") {
		t.Errorf("warnings %q", l.Warnings)
	}
}

// TestHybridAndMissingProtectiveMBR: GPT read with warnings when sector 0
// is a hybrid MBR (made by sgdisk) or blank.
func TestHybridAndMissingProtectiveMBR(t *testing.T) {
	needTools(t, "sfdisk")
	script := "label: gpt\nstart=2048,size=2048,type=U\nstart=4096,type=L\n"
	t.Run("hybrid", func(t *testing.T) {
		needTools(t, "sgdisk")
		path := sfdiskImage(t, t.TempDir(), 4<<20, script)
		run(t, "", "sgdisk", "--hybrid=1:EE", path)
		l := readFile(t, path)
		compareSfdisk(t, l, path)
		if len(l.Warnings) != 1 || !strings.Contains(l.Warnings[0], "hybrid MBR (slot 1 type 0xef") {
			t.Errorf("warnings %q", l.Warnings)
		}
	})
	t.Run("blank sector 0", func(t *testing.T) {
		path := sfdiskImage(t, t.TempDir(), 4<<20, script)
		want := readFile(t, path)
		b := mustRead(t, path)
		clear(b[:512])
		l, err := Read(bytes.NewReader(b), int64(len(b)), 512)
		if err != nil {
			t.Fatal(err)
		}
		if l.Scheme != SchemeGPT || !equalPartitions(l.Partitions, want.Partitions) {
			t.Errorf("got %+v, want the partitions %+v", l, want.Partitions)
		}
		if len(l.Warnings) != 1 || !strings.Contains(l.Warnings[0], "no protective MBR") {
			t.Errorf("warnings %q", l.Warnings)
		}
	})
	t.Run("grown disk", func(t *testing.T) {
		path := sfdiskImage(t, t.TempDir(), 4<<20, script)
		want := readFile(t, path)
		if err := os.Truncate(path, 6<<20); err != nil {
			t.Fatal(err)
		}
		l := readFile(t, path)
		if !equalPartitions(l.Partitions, want.Partitions) {
			t.Errorf("partitions %+v, want %+v", l.Partitions, want.Partitions)
		}
		if len(l.Warnings) != 2 || !strings.Contains(strings.Join(l.Warnings, "\n"), "not in the last sector") {
			t.Errorf("warnings %q, want the protective MBR size and the misplaced backup", l.Warnings)
		}
		u := l.Unused()
		if last := u[len(u)-1]; last.Offset+last.Length != 6<<20 || last.Offset > 4<<20-512 {
			t.Errorf("unused %+v does not end with the old backup GPT and the new space", u)
		}
	})
}

func TestTypeNamesMatchSfdisk(t *testing.T) {
	needTools(t, "sfdisk")
	line := regexp.MustCompile(`^\s*([0-9A-Fa-f-]+)\s+(.+?)\s*$`)
	list := func(label string) map[string]string {
		m := map[string]string{}
		for _, l := range strings.Split(string(run(t, "", "sfdisk", "--label", label, "-T")), "\n") {
			if s := line.FindStringSubmatch(l); s != nil {
				m[strings.ToUpper(s[1])] = s[2]
			}
		}
		return m
	}
	gptList := list("gpt")
	if len(gptList) < 50 {
		t.Fatalf("sfdisk -T listed %d gpt types; parse problem", len(gptList))
	}
	known := 0
	for guid, name := range gptTypeNames {
		if sname, ok := gptList[guid]; ok {
			known++
			if sname != name {
				t.Errorf("gpt type %s: named %q, sfdisk names it %q", guid, name, sname)
			}
		}
	}
	if known < len(gptTypeNames)-4 {
		t.Errorf("only %d of %d gpt type GUIDs are known to sfdisk", known, len(gptTypeNames))
	}
	dosList := list("dos")
	for typ := range mbrTypeNames {
		if _, ok := dosList[strings.ToUpper(strconv.FormatUint(uint64(typ), 16))]; !ok {
			t.Errorf("mbr type 0x%02x unknown to sfdisk", typ)
		}
	}
}

func TestUnused(t *testing.T) {
	tests := []struct {
		name  string
		l     Layout
		wantU []Extent
	}{
		{"none", Layout{DiskSize: 100}, []Extent{{0, 100}}},
		{"full", Layout{DiskSize: 100, Partitions: []Partition{{Start: 0, Size: 100}}}, nil},
		{"gaps", Layout{DiskSize: 100, Partitions: []Partition{{Start: 10, Size: 10}, {Start: 20, Size: 5}, {Start: 50, Size: 10}}},
			[]Extent{{0, 10}, {25, 25}, {60, 40}}},
		{"unsorted input", Layout{DiskSize: 100, Partitions: []Partition{{Start: 50, Size: 50}, {Start: 10, Size: 10}}},
			[]Extent{{0, 10}, {20, 30}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.l.Unused()
			if fmt.Sprint(got) != fmt.Sprint(tc.wantU) {
				t.Errorf("Unused() = %v, want %v", got, tc.wantU)
			}
		})
	}
}

func TestBadArguments(t *testing.T) {
	r := bytes.NewReader(make([]byte, 4096))
	if _, err := Read(r, 4096, 520); !errors.Is(err, ErrSectorSize) || errors.Is(err, ErrCorrupt) {
		t.Errorf("sector size 520: %v", err)
	}
	if _, err := Read(r, -1, 512); !errors.Is(err, ErrDiskSize) {
		t.Errorf("size -1: %v", err)
	}
	if _, err := ReadAuto(r, -1); !errors.Is(err, ErrDiskSize) {
		t.Errorf("ReadAuto size -1: %v", err)
	}
	// A source shorter than it claims is an I/O error, not a table error.
	if _, err := Read(bytes.NewReader(make([]byte, 100)), 4096, 512); err == nil || errors.Is(err, ErrCorrupt) {
		t.Errorf("short reader: %v", err)
	}
	// Smaller than a sector: nothing to read, no table.
	l, err := Read(bytes.NewReader(make([]byte, 100)), 100, 512)
	if err != nil || l.Scheme != SchemeNone {
		t.Errorf("100-byte disk: %+v, %v", l, err)
	}
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func equalPartitions(a, b []Partition) bool {
	return fmt.Sprintf("%+v", a) == fmt.Sprintf("%+v", b)
}
