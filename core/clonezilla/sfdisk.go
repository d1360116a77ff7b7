package clonezilla

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Table is a partition table as `sfdisk -d` dumps it (Clonezilla's
// <disk>-pt.sf).
type Table struct {
	Label      string // gpt or dos
	ID         string // GPT disk GUID or MBR signature (0x...)
	Device     string // /dev/sda
	FirstLBA   int64
	LastLBA    int64
	SectorSize int
	Parts      []TablePart
}

// TablePart is one partition line of the dump.
type TablePart struct {
	Device string // /dev/sda1
	Number int    // trailing number of the device name
	Start  int64  // sectors
	Size   int64  // sectors
	Type   string // GPT type GUID (upper case) or MBR type as hex without 0x
	UUID   string
	Name   string
	Attrs  string
	Boot   bool
}

// ParseSfdisk reads an `sfdisk -d` dump.
func ParseSfdisk(r io.Reader) (*Table, error) {
	t := &Table{SectorSize: 512}
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		if dev, rest, ok := strings.Cut(s, " : "); ok {
			p, err := parsePartLine(strings.TrimSpace(dev), rest)
			if err != nil {
				return nil, fmt.Errorf("%w: line %d: %v", ErrTable, line, err)
			}
			t.Parts = append(t.Parts, p)
			continue
		}
		key, val, ok := strings.Cut(s, ":")
		if !ok {
			continue // e.g. sfdisk warnings Clonezilla failed to clean
		}
		val = strings.TrimSpace(val)
		var err error
		switch strings.TrimSpace(key) {
		case "label":
			t.Label = val
		case "label-id":
			t.ID = val
		case "device":
			t.Device = val
		case "first-lba":
			t.FirstLBA, err = strconv.ParseInt(val, 10, 64)
		case "last-lba":
			t.LastLBA, err = strconv.ParseInt(val, 10, 64)
		case "sector-size":
			t.SectorSize, err = strconv.Atoi(val)
			if err == nil && t.SectorSize != 512 && t.SectorSize != 1024 && t.SectorSize != 2048 && t.SectorSize != 4096 {
				err = fmt.Errorf("sector size %d", t.SectorSize)
			}
		case "unit":
			if val != "sectors" {
				err = fmt.Errorf("unit %q (sfdisk -d writes sectors)", val)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %s: %v", ErrTable, line, key, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if t.Label != "gpt" && t.Label != "dos" {
		return nil, fmt.Errorf("%w: label %q (want gpt or dos)", ErrTable, t.Label)
	}
	return t, nil
}

func parsePartLine(dev, rest string) (TablePart, error) {
	p := TablePart{Device: dev, Number: trailingNumber(dev)}
	for _, f := range splitFields(rest) {
		key, val, _ := strings.Cut(f, "=")
		key, val = strings.TrimSpace(key), strings.Trim(strings.TrimSpace(val), `"`)
		var err error
		switch key {
		case "start":
			p.Start, err = strconv.ParseInt(val, 10, 64)
		case "size":
			p.Size, err = strconv.ParseInt(val, 10, 64)
		case "type", "Id":
			p.Type = strings.ToUpper(val)
		case "uuid":
			p.UUID = strings.ToUpper(val)
		case "name":
			p.Name = val
		case "attrs":
			p.Attrs = val
		case "bootable":
			p.Boot = true
		}
		if err != nil {
			return p, fmt.Errorf("%s: %s=%q: %v", dev, key, val, err)
		}
	}
	if p.Start < 0 || p.Size < 0 || p.Start > 1<<50 || p.Size > 1<<50 {
		return p, fmt.Errorf("%s: start %d size %d out of range", dev, p.Start, p.Size)
	}
	if p.Number <= 0 {
		return p, fmt.Errorf("%s: no partition number in the device name", dev)
	}
	return p, nil
}

// splitFields splits at commas outside double quotes.
func splitFields(s string) []string {
	var out []string
	var b strings.Builder
	quoted := false
	for _, c := range s {
		switch {
		case c == '"':
			quoted = !quoted
			b.WriteRune(c)
		case c == ',' && !quoted:
			out = append(out, b.String())
			b.Reset()
		default:
			b.WriteRune(c)
		}
	}
	if strings.TrimSpace(b.String()) != "" {
		out = append(out, b.String())
	}
	return out
}

func trailingNumber(s string) int {
	i := len(s)
	for i > 0 && s[i-1] >= '0' && s[i-1] <= '9' {
		i--
	}
	n, _ := strconv.Atoi(s[i:])
	return n
}
