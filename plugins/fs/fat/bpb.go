package fat

import (
	"fmt"
	"io"
)

// Cluster count limits from the FAT specification ("FAT type
// determination"): below 4085 is FAT12, below 65525 FAT16.
const (
	maxFAT12Clusters = 4084
	maxFAT16Clusters = 65524
	maxFAT32Clusters = 0x0FFFFFF5 // entries 0x0FFFFFF7.. are bad/EOC
)

// fatVolume is a validated FAT12/16/32 boot sector. Sizes are in sectors
// unless the name says bytes.
type fatVolume struct {
	bits         int   // 12, 16 or 32
	bps          int64 // bytes per sector
	clusterSize  int64 // bytes
	reservedSecs int64
	numFATs      int64
	fatSecs      int64
	rootDirSecs  int64 // FAT12/16 fixed root directory
	totalSecs    int64
	dataStart    int64  // byte offset of cluster 2
	clusters     uint32 // CountOfClusters; valid cluster numbers are 2..clusters+1
	activeFAT    int64
	rootCluster  uint32 // FAT32
	fsInfoSec    int64  // FAT32 FSInfo sector, 0 if none
	media        byte
	serial       uint32
	hasSerial    bool
	bpbLabel     []byte // nil unless the extended boot signature is 0x29
	dirty        bool
	notes        []string
}

// identifyFAT decides whether sector 0 is meant to be a FAT boot sector.
// With a type string ("FAT12   " etc.) next to an extended boot signature it
// is claimed, and later BPB errors are corruption. Without one, the sector
// must look like a FAT boot sector throughout (x86 jump, 0x55AA, plausible
// BPB), as blkid requires, since MBRs and other boot sectors share the
// layout.
func identifyFAT(b []byte) error {
	switch string(b[3:11]) {
	case "NTFS    ":
		return notFoundf("boot sector names NTFS")
	}
	fat16Str := b[38] == 0x29 && string(b[54:57]) == "FAT"
	fat32Str := b[66] == 0x29 && string(b[82:90]) == "FAT32   "
	if fat16Str || fat32Str {
		return nil
	}
	if b[510] != 0x55 || b[511] != 0xAA {
		return notFoundf("no boot signature 0x55AA at offset 510 and no FAT type string")
	}
	if !(b[0] == 0xEB && b[2] == 0x90) && b[0] != 0xE9 {
		return notFoundf("no x86 jump instruction at offset 0 and no FAT type string")
	}
	switch string(b[54:62]) {
	case "HPFS    ", "JFS     ":
		// OS/2 tools leave a FAT-like BPB in front of these.
		return notFoundf("boot sector names %q", b[54:62])
	}
	if p := basicBPBProblem(b); p != "" {
		return notFoundf("boot sector has no FAT type string, and %s", p)
	}
	return nil
}

// basicBPBProblem checks the fields every FAT type shares and describes
// the first one that is wrong, or returns "".
func basicBPBProblem(b []byte) string {
	bps := le16(b[11:])
	if bps < 512 || bps > 4096 || bps&(bps-1) != 0 {
		return fmt.Sprintf("bpb: bytes per sector %d is not a power of two between 512 and 4096", bps)
	}
	if spc := b[13]; spc == 0 || spc&(spc-1) != 0 {
		return fmt.Sprintf("bpb: sectors per cluster %d is not a power of two between 1 and 128", spc)
	}
	if le16(b[14:]) == 0 {
		return "bpb: reserved sector count is 0, but the boot sector itself is reserved"
	}
	if b[16] == 0 {
		return "bpb: number of FATs is 0"
	}
	if m := b[21]; m != 0xF0 && m < 0xF8 {
		return fmt.Sprintf("bpb: media descriptor 0x%02X is not 0xF0 or 0xF8..0xFF", m)
	}
	if le16(b[19:]) == 0 && le32(b[32:]) == 0 {
		return "bpb: total sector count is 0 in both BPB_TotSec16 and BPB_TotSec32"
	}
	if le16(b[22:]) == 0 && le32(b[36:]) == 0 {
		return "bpb: FAT size is 0 in both BPB_FATSz16 and BPB_FATSz32"
	}
	return ""
}

func openFAT(r io.ReaderAt, size int64, b []byte) (*fatVolume, error) {
	if err := identifyFAT(b); err != nil {
		return nil, err
	}
	if p := basicBPBProblem(b); p != "" {
		return nil, corruptf("%s", p)
	}
	v := &fatVolume{
		bps:          int64(le16(b[11:])),
		reservedSecs: int64(le16(b[14:])),
		numFATs:      int64(b[16]),
		media:        b[21],
	}
	spc := int64(b[13])
	v.clusterSize = v.bps * spc
	v.totalSecs = int64(le16(b[19:]))
	if v.totalSecs == 0 {
		v.totalSecs = int64(le32(b[32:]))
	}
	rootEnt := int64(le16(b[17:]))
	fat32Layout := le16(b[22:]) == 0
	if fat32Layout {
		v.fatSecs = int64(le32(b[36:]))
		if rootEnt != 0 {
			return nil, corruptf("bpb: root entry count %d must be 0 when the FAT size is in BPB_FATSz32 (FAT32 layout)", rootEnt)
		}
	} else {
		v.fatSecs = int64(le16(b[22:]))
		if rootEnt == 0 {
			return nil, corruptf("bpb: root entry count is 0, leaving a FAT12/16 volume without a root directory")
		}
	}
	v.rootDirSecs = (rootEnt*32 + v.bps - 1) / v.bps
	firstData := v.reservedSecs + v.numFATs*v.fatSecs + v.rootDirSecs
	if firstData >= v.totalSecs {
		return nil, corruptf("bpb: data region would start at sector %d (%d reserved + %d FATs of %d + %d root directory), but the volume has only %d sectors",
			firstData, v.reservedSecs, v.numFATs, v.fatSecs, v.rootDirSecs, v.totalSecs)
	}
	v.dataStart = firstData * v.bps
	clusters := (v.totalSecs - firstData) / spc
	if clusters == 0 {
		return nil, corruptf("bpb: the %d sectors after the data region start hold no whole cluster of %d sectors", v.totalSecs-firstData, spc)
	}
	switch {
	case fat32Layout:
		v.bits = 32
		if clusters > maxFAT32Clusters {
			return nil, corruptf("bpb: %d clusters exceed the FAT32 maximum of %d", clusters, maxFAT32Clusters)
		}
		if clusters <= maxFAT16Clusters {
			v.notes = append(v.notes, fmt.Sprintf("FAT32 layout with only %d clusters (the FAT specification wants at least %d); read as FAT32 like Linux and fsck.fat do", clusters, maxFAT16Clusters+1))
		}
	case clusters <= maxFAT12Clusters:
		v.bits = 12
	case clusters <= maxFAT16Clusters:
		v.bits = 16
	default:
		return nil, corruptf("bpb: %d clusters need FAT32, but the FAT size is in BPB_FATSz16 (FAT12/16 layout)", clusters)
	}
	v.clusters = uint32(clusters)
	if capacity := v.fatSecs * v.bps * 8 / int64(v.bits); capacity < clusters+2 {
		return nil, corruptf("bpb: FAT of %d sectors holds %d entries, fewer than the %d clusters (+2 reserved entries) the sector counts give",
			v.fatSecs, capacity, clusters)
	}
	if fsBytes := v.totalSecs * v.bps; fsBytes > size {
		return nil, truncatedf("bpb: filesystem is %d bytes (%d sectors of %d) but the device has only %d bytes", fsBytes, v.totalSecs, v.bps, size)
	}

	extSig := 38 // extended boot signature offset, FAT12/16
	if v.bits == 32 {
		extSig = 66
		if flags := le16(b[40:]); flags&0x80 != 0 {
			v.activeFAT = int64(flags & 0x0F)
			if v.activeFAT >= v.numFATs {
				return nil, corruptf("bpb: BPB_ExtFlags 0x%04X makes FAT %d active, but there are only %d FATs", flags, v.activeFAT, v.numFATs)
			}
			v.notes = append(v.notes, fmt.Sprintf("FAT mirroring disabled; FAT %d is active", v.activeFAT))
		}
		v.rootCluster = le32(b[44:])
		if v.rootCluster < 2 || uint64(v.rootCluster) > uint64(v.clusters)+1 {
			return nil, corruptf("bpb: root directory cluster %d is outside clusters 2..%d", v.rootCluster, uint64(v.clusters)+1)
		}
		if ver := le16(b[42:]); ver != 0 {
			v.notes = append(v.notes, fmt.Sprintf("FAT32 version %d.%d is not 0.0", ver>>8, ver&0xFF))
		}
		if s := int64(le16(b[48:])); s != 0 && s != 0xFFFF {
			if s < v.reservedSecs {
				v.fsInfoSec = s
			} else {
				v.notes = append(v.notes, fmt.Sprintf("FSInfo sector %d lies outside the %d reserved sectors; ignored", s, v.reservedSecs))
			}
		}
	}
	switch b[extSig] {
	case 0x29:
		v.bpbLabel = b[extSig+5 : extSig+16]
		fallthrough
	case 0x28:
		v.serial = le32(b[extSig+1:])
		v.hasSerial = true
		// Linux keeps its dirty flag in the byte before the signature.
		v.dirty = b[extSig-1]&0x01 != 0
	}
	if b[510] != 0x55 || b[511] != 0xAA {
		v.notes = append(v.notes, "boot sector signature 0x55AA is missing")
	}
	return v, nil
}

// fatOffset is the byte offset of FAT copy i.
func (v *fatVolume) fatOffset(i int64) int64 {
	return (v.reservedSecs + i*v.fatSecs) * v.bps
}

// clusterOffset is the byte offset of cluster c (2 <= c <= clusters+1).
func (v *fatVolume) clusterOffset(c uint32) int64 {
	return v.dataStart + int64(c-2)*v.clusterSize
}
