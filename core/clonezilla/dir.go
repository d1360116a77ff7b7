package clonezilla

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/diskcast/diskcast/core/disk"
	"github.com/diskcast/diskcast/core/image"
	"github.com/diskcast/diskcast/core/partclone"
)

// IsDir reports whether path is a directory that looks like a Clonezilla
// image (it has a disk or a parts file).
func IsDir(path string) bool {
	for _, f := range []string{"disk", "parts"} {
		if st, err := os.Stat(filepath.Join(path, f)); err == nil && st.Mode().IsRegular() {
			return true
		}
	}
	return false
}

// OpenDir plans the restore of one disk, or for a directory of saved
// partitions (ocs-sr saveparts) one partition, of the Clonezilla image
// directory dir. name picks the disk or partition (sda, nvme0n1, sdb2);
// with name "" the directory must hold just one. Every image file is
// opened and its header checked, so a restore can refuse before it writes.
func OpenDir(ctx context.Context, dir, name string) (*Plan, error) {
	if st, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("clonezilla: %w", err)
	} else if !st.IsDir() || !IsDir(dir) {
		return nil, fmt.Errorf("%w: %s has neither a disk nor a parts file", ErrNotClonezilla, dir)
	}
	disks := listFile(dir, "disk")
	parts := listFile(dir, "parts")
	switch {
	case name == "" && len(disks) == 1:
		name = disks[0]
	case name == "" && len(disks) > 1:
		return nil, fmt.Errorf("%w: %s holds disks %s; name one (DIR:%s)", ErrAmbiguous, dir, strings.Join(disks, ", "), disks[0])
	case name == "" && len(parts) == 1:
		name = parts[0]
	case name == "" && len(parts) > 1:
		return nil, fmt.Errorf("%w: %s holds partitions %s; name one (DIR:%s)", ErrAmbiguous, dir, strings.Join(parts, ", "), parts[0])
	case name == "":
		return nil, fmt.Errorf("%w: %s: its disk and parts files list nothing", ErrNotClonezilla, dir)
	}
	fs := readDevFS(dir)
	if slices.Contains(disks, name) {
		return openDisk(ctx, dir, name, parts, fs)
	}
	if slices.Contains(parts, name) {
		p := Part{Name: name, FS: fs[name]} // number 0: the image is of a partition source
		if err := findImage(ctx, dir, &p, true); err != nil {
			return nil, err
		}
		if p.Format == "" {
			return nil, fmt.Errorf("%w: %s: no image of partition %s (%s)", ErrMissing, dir, name, p.FS)
		}
		return &Plan{Source: dir, Name: name, Kind: image.SourcePartition, Size: p.Size, SectorSize: 512,
			Table: image.Table{Scheme: "none"}, Parts: []Part{p}}, nil
	}
	return nil, fmt.Errorf("%w: %s has no disk or partition %q (disks: %s; partitions: %s)", ErrMissing, dir, name,
		orNone(disks), orNone(parts))
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// listFile reads a whitespace-separated list file of the directory.
func listFile(dir, name string) []string {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return nil
	}
	return strings.Fields(string(b))
}

// readDevFS reads dev-fs.list: "/dev/sda1 ext4 512M" lines after comments.
func readDevFS(dir string) map[string]string {
	m := map[string]string{}
	f, err := os.Open(filepath.Join(dir, "dev-fs.list"))
	if err != nil {
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && !strings.HasPrefix(fields[0], "#") {
			m[toFilename(fields[0])] = fields[1]
		}
	}
	return m
}

// findImage finds and opens the image of partition p in dir, and fills in
// its format, files, used bytes and (for a partition plan, sizeFromImage)
// its size.
func findImage(ctx context.Context, dir string, p *Part, sizeFromImage bool) error {
	fn := toFilename(p.Name)
	var candidates []string
	for _, pat := range []string{fn + ".*-ptcl-img*", fn + ".dd-img*", fn + ".ntfs-img*"} {
		m, _ := filepath.Glob(filepath.Join(dir, partclone.GlobEscape(fn)+pat[len(fn):]))
		candidates = append(candidates, m...)
	}
	// One image per partition: collapse split pieces to their first.
	var images []string
	for _, c := range candidates {
		if strings.HasSuffix(c, ".info") || strings.HasSuffix(c, ".txt") {
			continue
		}
		base := c
		if i := strings.LastIndexByte(c, '.'); i > 0 && isSplitSuffix(c[i+1:]) {
			base = c[:i]
		}
		if !slices.Contains(images, base) {
			images = append(images, base)
		}
	}
	if len(images) == 0 {
		return nil
	}
	if len(images) > 1 {
		return fmt.Errorf("%w: %s: partition %s has several images: %s", ErrAmbiguous, dir, p.Name, strings.Join(images, ", "))
	}
	o, err := openImage(images[0])
	if err != nil {
		return fmt.Errorf("clonezilla: partition %s: %w", p.Name, err)
	}
	defer o.Close()
	p.Format, p.Files = o.format, o.stream.Files
	if p.FS == "" {
		p.FS = fsFromName(filepath.Base(images[0]), fn)
	}
	switch {
	case o.deviceSize >= 0 && sizeFromImage:
		p.Size = o.deviceSize
	case o.deviceSize > p.Size:
		return fmt.Errorf("%w: partition %s: its %s image is of a %d-byte partition, the table gives it %d bytes",
			ErrOutside, p.Name, o.format, o.deviceSize, p.Size)
	case o.deviceSize < 0 && sizeFromImage:
		if p.Size, err = countRaw(ctx, images[0]); err != nil {
			return fmt.Errorf("clonezilla: partition %s: %w", p.Name, err)
		}
	}
	p.Used = o.used
	if p.Used < 0 {
		p.Used = p.Size
	}
	return nil
}

func isSplitSuffix(s string) bool {
	if len(s) < 2 || len(s) > 6 {
		return false
	}
	for _, c := range s {
		if c < 'a' || c > 'z' {
			return false
		}
	}
	return s != "gz" && s != "xz" && s != "zst" && s != "lz" && s != "lzma" && s != "bz" && s != "lzo" && s != "lrz"
}

// fsFromName takes the filesystem from sda1.ext4-ptcl-img.gz.aa.
func fsFromName(base, part string) string {
	rest := strings.TrimPrefix(base, part+".")
	if fs, _, ok := strings.Cut(rest, "-ptcl-img"); ok {
		if fs == "dd" {
			return ""
		}
		return fs
	}
	if strings.HasPrefix(rest, "ntfs-img") {
		return "ntfs"
	}
	return ""
}

// openDisk plans a whole-disk restore.
func openDisk(ctx context.Context, dir, name string, listed []string, fs map[string]string) (*Plan, error) {
	fn := toFilename(name)
	ptPath := filepath.Join(dir, fn+"-pt.sf")
	ptb, err := os.ReadFile(ptPath)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: the partition table dump of %s: %v", ErrMissing, dir, name, err)
	}
	t, err := ParseSfdisk(bytes.NewReader(ptb))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ptPath, err)
	}
	ss := int64(t.SectorSize)
	pl := &Plan{Source: dir, Name: name, Kind: image.SourceDisk, SectorSize: t.SectorSize}
	read := func(suffix string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, fn+suffix))
		if err != nil {
			return nil
		}
		return b
	}
	// The disk size: the GPT says it; for MBR disks parted's dump, or the
	// end of the last partition.
	var lastEnd int64
	for _, p := range t.Parts {
		lastEnd = max(lastEnd, (p.Start+p.Size)*ss)
	}
	switch t.Label {
	case "gpt":
		pl.Table.Scheme = "gpt"
		first, second := read("-gpt-1st"), read("-gpt-2nd")
		if first == nil {
			if first, second, err = sfdiskTables(ptb, t, lastEnd+34*ss); err != nil {
				return nil, err
			}
			pl.Warnings = append(pl.Warnings, fmt.Sprintf("%s-gpt-1st missing: the GPT was made from %s-pt.sf with sfdisk", fn, fn))
		}
		if int64(len(first)) < 2*ss || string(first[ss:ss+8]) != "EFI PART" {
			return nil, fmt.Errorf("%w: %s-gpt-1st holds no GPT header at byte %d", ErrTable, fn, ss)
		}
		alt := binary.LittleEndian.Uint64(first[ss+32:])
		if alt < 2 || alt > 1<<50 {
			return nil, fmt.Errorf("%w: %s-gpt-1st: backup header LBA %d", ErrTable, fn, alt)
		}
		pl.Size = int64(alt+1) * ss
		pl.Areas = append(pl.Areas, Area{0, first, fn + "-gpt-1st"})
		if second != nil {
			if int64(len(second)) > pl.Size/2 {
				return nil, fmt.Errorf("%w: %s-gpt-2nd is %d bytes", ErrTable, fn, len(second))
			}
			pl.Areas = append(pl.Areas, Area{pl.Size - int64(len(second)), second, fn + "-gpt-2nd"})
		} else {
			pl.Warnings = append(pl.Warnings, fmt.Sprintf("%s-gpt-2nd missing: the backup GPT is not restored", fn))
		}
	case "dos":
		pl.Table.Scheme = "mbr"
		pl.Size = max(lastEnd, partedSize(read("-pt.parted"), ss))
		mbr := read("-mbr")
		logical := slices.ContainsFunc(t.Parts, func(p TablePart) bool { return p.Number >= 5 })
		var ebrs []Area
		if mbr == nil || logical {
			built, _, err := sfdiskTables(ptb, t, pl.Size)
			if err != nil {
				return nil, err
			}
			if mbr == nil {
				mbr = built[:512]
				pl.Warnings = append(pl.Warnings, fmt.Sprintf("%s-mbr missing: the MBR was made from %s-pt.sf with sfdisk (no boot code)", fn, fn))
			}
			if logical {
				if ebrs, err = ebrAreas(built, pl.Size, int(ss)); err != nil {
					return nil, err
				}
			}
		}
		if len(mbr) < 512 {
			return nil, fmt.Errorf("%w: %s-mbr is %d bytes, want 512", ErrTable, fn, len(mbr))
		}
		pl.Areas = append(pl.Areas, Area{0, mbr[:512], fn + "-mbr"})
		if hidden := read("-hidden-data-after-mbr"); len(hidden) > 0 {
			firstStart := pl.Size
			for _, p := range t.Parts {
				firstStart = min(firstStart, p.Start*ss)
			}
			if 512+int64(len(hidden)) > firstStart {
				// ocs-sr skips it too when it does not fit.
				pl.Warnings = append(pl.Warnings, fmt.Sprintf("%s-hidden-data-after-mbr (%d bytes) does not fit before the first partition at byte %d; not restored", fn, len(hidden), firstStart))
			} else {
				pl.Areas = append(pl.Areas, Area{512, hidden, fn + "-hidden-data-after-mbr"})
			}
		}
		pl.Areas = append(pl.Areas, ebrs...)
	}
	pl.Table.DiskGUID = t.ID
	if pl.Table.Scheme == "gpt" {
		pl.Table.DiskGUID = strings.ToUpper(t.ID)
	}

	// Partition details as the table bytes say them (types, names), read
	// the way capture reads a disk.
	layout, lerr := disk.Read(areaReader(pl.Areas), pl.Size, t.SectorSize)
	if lerr != nil {
		pl.Warnings = append(pl.Warnings, fmt.Sprintf("the saved partition table does not parse (%v); using %s-pt.sf alone", lerr, fn))
	} else {
		for _, a := range layout.Areas {
			data := make([]byte, a.Length)
			areaReader(pl.Areas).ReadAt(data, a.Offset)
			pl.Table.Areas = append(pl.Table.Areas, image.TableArea{Offset: a.Offset, Data: data})
		}
	}
	for _, tp := range t.Parts {
		if t.Label == "dos" && isExtended(tp.Type) {
			continue
		}
		p := Part{
			Name: toFilename(tp.Device), Number: tp.Number, Start: tp.Start * ss, Size: tp.Size * ss,
			Type: tp.Type, GUID: tp.UUID, Label: tp.Name,
		}
		if t.Label == "dos" {
			p.Type = "0x" + strings.ToLower(tp.Type)
			if tp.Boot {
				p.Attributes = 0x80
			}
		}
		if layout != nil {
			i := slices.IndexFunc(layout.Partitions, func(lp disk.Partition) bool { return lp.Number == tp.Number })
			if i < 0 || layout.Partitions[i].Start != p.Start || layout.Partitions[i].Size != p.Size {
				return nil, fmt.Errorf("%w: %s-pt.sf and the saved table disagree about partition %d", ErrTable, fn, tp.Number)
			}
			lp := layout.Partitions[i]
			p.Type, p.TypeName, p.GUID, p.Label, p.Attributes = lp.Type, lp.TypeName, lp.GUID, lp.Name, lp.Attributes
		}
		p.FS = fs[p.Name]
		if err := findImage(ctx, dir, &p, false); err != nil {
			return nil, err
		}
		if p.Format == "" && slices.Contains(listed, p.Name) {
			if p.FS == "swap" || fileExists(filepath.Join(dir, "swappt-"+p.Name+".info")) {
				pl.Warnings = append(pl.Warnings, fmt.Sprintf("partition %s is swap: Clonezilla keeps no image of it; run mkswap on it after the restore", p.Name))
			} else {
				return nil, fmt.Errorf("%w: %s: partition %s is listed in parts but has no image file (%s.*-ptcl-img*, .dd-img*, .ntfs-img*)",
					ErrMissing, dir, p.Name, p.Name)
			}
		}
		pl.Parts = append(pl.Parts, p)
	}
	sort.Slice(pl.Parts, func(i, j int) bool { return pl.Parts[i].Start < pl.Parts[j].Start })
	sort.Slice(pl.Areas, func(i, j int) bool { return pl.Areas[i].Offset < pl.Areas[j].Offset })
	return pl, pl.check()
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func isExtended(t string) bool {
	switch strings.ToLower(strings.TrimPrefix(strings.ToLower(t), "0x")) {
	case "5", "f", "85":
		return true
	}
	return false
}

// partedSize reads "Disk /dev/sda: 16777216s" from <disk>-pt.parted.
func partedSize(b []byte, ss int64) int64 {
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Disk /dev/"); ok {
			if _, v, ok := strings.Cut(rest, ": "); ok {
				if n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), "s"), 10, 64); err == nil {
					return n * ss
				}
			}
		}
	}
	return 0
}

// check refuses plans whose pieces overlap or leave the disk.
func (p *Plan) check() error {
	type span struct {
		off, end int64
		what     string
	}
	var spans []span
	for _, a := range p.Areas {
		spans = append(spans, span{a.Offset, a.Offset + int64(len(a.Data)), a.What})
	}
	for _, pt := range p.Parts {
		if pt.Format != "" {
			spans = append(spans, span{pt.Start, pt.Start + pt.Size, "partition " + pt.Name})
		}
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].off < spans[j].off })
	for i, s := range spans {
		if s.off < 0 || s.end > p.Size {
			return fmt.Errorf("%w: %s (bytes %d-%d) lies outside the %d-byte disk", ErrTable, s.what, s.off, s.end-1, p.Size)
		}
		if i > 0 && s.off < spans[i-1].end {
			return fmt.Errorf("%w: %s (from byte %d) overlaps %s (to byte %d)", ErrTable, s.what, s.off, spans[i-1].what, spans[i-1].end-1)
		}
	}
	return nil
}

// areaReader presents raw areas as a disk that reads zero elsewhere.
type areaReader []Area

func (r areaReader) ReadAt(p []byte, off int64) (int, error) {
	clear(p)
	for _, a := range r {
		lo, hi := max(off, a.Offset), min(off+int64(len(p)), a.Offset+int64(len(a.Data)))
		if lo < hi {
			copy(p[lo-off:hi-off], a.Data[lo-a.Offset:hi-a.Offset])
		}
	}
	return len(p), nil
}

// sfdiskTables builds the partition table of the dump with sfdisk on a
// scratch file of size bytes, as ocs-sr does on the target, and returns its
// first 34 sectors and (GPT) its last 33.
func sfdiskTables(dump []byte, t *Table, size int64) (first, last []byte, err error) {
	bin, err := exec.LookPath("sfdisk")
	if err != nil {
		for _, d := range []string{"/usr/sbin/sfdisk", "/sbin/sfdisk"} {
			if fileExists(d) {
				bin, err = d, nil
			}
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w: rebuilding the partition table needs sfdisk (util-linux), which is not installed", ErrMissing)
	}
	f, err := os.CreateTemp("", "diskcast-sfdisk-*")
	if err != nil {
		return nil, nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return nil, nil, err
	}
	// Like ocs-sr: drop last-lba so the table fits the disk at hand.
	var in bytes.Buffer
	for _, line := range strings.Split(string(dump), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "last-lba:") {
			in.WriteString(line + "\n")
		}
	}
	cmd := exec.Command(bin, "--no-reread", "--no-tell-kernel", "-q", f.Name())
	cmd.Stdin = &in
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, nil, fmt.Errorf("%w: sfdisk could not rebuild the table: %v: %s", ErrTable, err, out)
	}
	ss := int64(t.SectorSize)
	whole := make([]byte, size)
	if _, err := io.ReadFull(f, whole); err != nil {
		return nil, nil, err
	}
	first = whole[:min(size, 34*ss)]
	if t.Label == "gpt" {
		last = whole[size-33*ss:]
	} else {
		first = whole // the EBRs lie anywhere
	}
	return first, last, nil
}

// ebrAreas returns the extended boot records of a table built by sfdisk.
func ebrAreas(built []byte, size int64, ss int) ([]Area, error) {
	l, err := disk.Read(bytes.NewReader(built), size, ss)
	if err != nil {
		return nil, fmt.Errorf("%w: the table sfdisk built does not parse: %v", ErrTable, err)
	}
	var out []Area
	for _, a := range l.Areas {
		if strings.HasPrefix(a.What, "EBR") {
			out = append(out, Area{a.Offset, bytes.Clone(built[a.Offset : a.Offset+a.Length]), a.What})
		}
	}
	return out, nil
}

// OpenFile plans the restore of a lone partclone or ntfsclone image file
// (or its split pieces) as a partition.
func OpenFile(ctx context.Context, path string) (*Plan, error) {
	o, err := openImage(path)
	if err != nil {
		return nil, err
	}
	defer o.Close()
	if o.format == "dd" {
		return nil, fmt.Errorf("%w: %s is neither a partclone nor an ntfsclone image", ErrFormat, path)
	}
	name := filepath.Base(o.stream.Files[0])
	p := Part{Name: name, Size: o.deviceSize, Format: o.format, Files: o.stream.Files, Used: o.used, FS: fsName(o.fs)}
	return &Plan{Source: path, Name: name, Kind: image.SourcePartition, Size: o.deviceSize, SectorSize: 512,
		Table: image.Table{Scheme: "none"}, Parts: []Part{p}}, nil
}

// fsName maps partclone's filesystem names to the usual ones.
func fsName(s string) string {
	switch strings.ToUpper(s) {
	case "EXTFS", "EXT4":
		return "ext4"
	case "EXT3":
		return "ext3"
	case "EXT2":
		return "ext2"
	case "FAT", "FAT16", "FAT32", "VFAT":
		return "vfat"
	case "NTFS":
		return "ntfs"
	case "":
		return ""
	}
	return strings.ToLower(s)
}
