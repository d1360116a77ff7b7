package disk

// bootSectorFS returns "NTFS", "exFAT" or "FAT" when sector 0 is the boot
// sector of such a volume, and "" otherwise. All three end in 0x55AA like
// an MBR.
func bootSectorFS(b []byte) string {
	switch string(b[3:11]) {
	case "NTFS    ":
		return "NTFS"
	case "EXFAT   ":
		return "exFAT"
	}
	// FAT BIOS parameter block: a jump instruction, then bytes per sector,
	// sectors per cluster, reserved sectors, number of FATs and media
	// descriptor in their spec ranges (the same checks the Linux kernel's
	// msdos partition parser makes before calling a sector a FAT volume).
	jump := (b[0] == 0xEB && b[2] == 0x90) || b[0] == 0xE9
	bps := le16(b[11:])
	spc := b[13]
	reserved := le16(b[14:])
	fats := b[16]
	media := b[21]
	if !jump || bps < 512 || bps > 4096 || bps&(bps-1) != 0 ||
		spc == 0 || spc&(spc-1) != 0 || reserved == 0 || fats < 1 || fats > 2 ||
		(media != 0xF0 && media < 0xF8) {
		return ""
	}
	return "FAT"
}

// gptTypeNames names common GPT partition types, with the names fdisk and
// sfdisk use.
var gptTypeNames = map[string]string{
	"C12A7328-F81F-11D2-BA4B-00A0C93EC93B": "EFI System",
	"024DEE41-33E7-11D3-9D69-0008C781F39F": "MBR partition scheme",
	"21686148-6449-6E6F-744E-656564454649": "BIOS boot",
	"E3C9E316-0B5C-4DB8-817D-F92DF00215AE": "Microsoft reserved",
	"EBD0A0A2-B9E5-4433-87C0-68B6B72699C7": "Microsoft basic data",
	"5808C8AA-7E8F-42E0-85D2-E1E90434CFB3": "Microsoft LDM metadata",
	"AF9B60A0-1431-4F62-BC68-3311714A69AD": "Microsoft LDM data",
	"DE94BBA4-06D1-4D40-A16A-BFD50179D6AC": "Windows recovery environment",
	"E75CAF8F-F680-4CEE-AFA3-B001E56EFC2D": "Microsoft Storage Spaces",
	"0657FD6D-A4AB-43C4-84E5-0933C84B4F4F": "Linux swap",
	"0FC63DAF-8483-4772-8E79-3D69D8477DE4": "Linux filesystem",
	"3B8F8425-20E0-4F3B-907F-1A25A76F98E8": "Linux server data",
	"44479540-F297-41B2-9AF7-D131D5F0458A": "Linux root (x86)",
	"4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709": "Linux root (x86-64)",
	"69DAD710-2CE4-4E3C-B16C-21A1D49ABED3": "Linux root (ARM)",
	"B921B045-1DF0-41C3-AF44-4C6F280D3FAE": "Linux root (ARM-64)",
	"72EC70A6-CF74-40E6-BD49-4BDA08E8F224": "Linux root (RISC-V-64)",
	"8484680C-9521-48C6-9C11-B0720656F69E": "Linux /usr (x86-64)",
	"B0E01050-EE5F-4390-949A-9101B17104E9": "Linux /usr (ARM-64)",
	"8DA63339-0007-60C0-C436-083AC8230908": "Linux reserved",
	"933AC7E1-2EB4-4F13-B844-0E14E2AEF915": "Linux home",
	"A19D880F-05FC-4D3B-A006-743F0F84911E": "Linux RAID",
	"E6D6D379-F507-44C2-A23C-238F2A3DF928": "Linux LVM",
	"4D21B016-B534-45C2-A9FB-5C16E091FD2D": "Linux variable data",
	"7EC6F557-3BC5-4ACA-B293-16EF5DF639D1": "Linux temporary data",
	"BC13C2FF-59E6-4262-A352-B275FD6F7172": "Linux extended boot",
	"CA7D7CCB-63ED-4C53-861C-1742536059CC": "Linux LUKS",
	"7FFEC5C9-2D00-49B7-8941-3EA10A5586B7": "Linux dm-crypt",
	"83BD6B9D-7F41-11DC-BE0B-001560B84F0F": "FreeBSD boot",
	"516E7CB4-6ECF-11D6-8FF8-00022D09712B": "FreeBSD data",
	"516E7CB5-6ECF-11D6-8FF8-00022D09712B": "FreeBSD swap",
	"516E7CB6-6ECF-11D6-8FF8-00022D09712B": "FreeBSD UFS",
	"516E7CBA-6ECF-11D6-8FF8-00022D09712B": "FreeBSD ZFS",
	"48465300-0000-11AA-AA11-00306543ECAC": "Apple HFS/HFS+",
	"7C3457EF-0000-11AA-AA11-00306543ECAC": "Apple APFS",
	"426F6F74-0000-11AA-AA11-00306543ECAC": "Apple boot",
	"6A898CC3-1DD2-11B2-99A6-080020736631": "Solaris /usr & Apple ZFS",
	"824CC7A0-36A8-11E3-890A-952519AD3F61": "OpenBSD data",
	"49F48D5A-B10E-11DC-B99B-0019D1879648": "NetBSD FFS",
	"FE3A2A5D-4F32-41A7-B725-ACCC3285A309": "ChromeOS kernel",
	"3CB8E202-3B7E-47DD-8A3C-7FF2A13CFCEC": "ChromeOS root fs",
	"AA31E02A-400F-11DB-9590-000C2911D1B8": "VMware VMFS",
	"9E1A2D38-C612-4316-AA26-8B49521E5A8B": "PowerPC PReP boot",
}

// mbrTypeNames names common MBR partition type bytes.
var mbrTypeNames = map[byte]string{
	0x01: "FAT12",
	0x04: "FAT16 <32M",
	0x05: "Extended",
	0x06: "FAT16",
	0x07: "NTFS/exFAT",
	0x0B: "FAT32",
	0x0C: "FAT32 LBA",
	0x0E: "FAT16 LBA",
	0x0F: "Extended LBA",
	0x11: "Hidden FAT12",
	0x12: "Compaq diagnostics",
	0x14: "Hidden FAT16 <32M",
	0x16: "Hidden FAT16",
	0x17: "Hidden NTFS/exFAT",
	0x1B: "Hidden FAT32",
	0x1C: "Hidden FAT32 LBA",
	0x1E: "Hidden FAT16 LBA",
	0x27: "Hidden NTFS WinRE",
	0x41: "PPC PReP Boot",
	0x42: "SFS",
	0x82: "Linux swap",
	0x83: "Linux",
	0x84: "Intel hibernation",
	0x85: "Linux extended",
	0x86: "NTFS volume set",
	0x87: "NTFS volume set",
	0x8E: "Linux LVM",
	0xA5: "FreeBSD",
	0xA6: "OpenBSD",
	0xA8: "Darwin UFS",
	0xA9: "NetBSD",
	0xAB: "Darwin boot",
	0xAF: "HFS/HFS+",
	0xBF: "Solaris",
	0xDE: "Dell Utility",
	0xEA: "Linux extended boot",
	0xEE: "GPT protective",
	0xEF: "EFI System",
	0xFB: "VMware VMFS",
	0xFC: "VMware VMKCORE",
	0xFD: "Linux RAID autodetect",
}
