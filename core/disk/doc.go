// Package disk reads the partition table of a whole-disk source (a block
// device or an image file) so that capture can tell partitions, which
// filesystem plugins shrink to their used blocks, from everything else
// (boot code, gaps, partition-table sectors), which is copied raw.
//
// Reading never writes: the source is only ever an io.ReaderAt.
//
// # Schemes
//
// [Read] recognises three cases and reports them in [Layout.Scheme]:
//
//   - GPT (UEFI 2.10 spec, chapter 5.3): a protective MBR (type 0xEE) in
//     LBA 0, a header in LBA 1 and its partition entry array, and a backup
//     header in the last sector with its own entry array before it. Both
//     header CRC32s and both entry-array CRC32s are checked. If the
//     primary is unusable but the backup is good, the backup is used and
//     [Layout.Warnings] says so; if both are bad, Read fails. A GPT header
//     in LBA 1 without a protective MBR is still read, with a warning.
//   - MBR: four primary entries in LBA 0 and, for each extended container
//     (types 0x05, 0x0f, 0x85), the chain of extended boot records (EBRs)
//     that holds the logical partitions. The chain is walked here; it is
//     capped at [MaxLogical] logical partitions and loops are refused.
//   - none: no partition table, e.g. a bare filesystem image. An image of
//     a FAT, exFAT or NTFS volume ends its first sector in 0x55AA just like
//     an MBR; when sector 0 carries such a boot sector (NTFS/exFAT OEM ID,
//     or a FAT BIOS parameter block that passes the checks the Linux
//     kernel also makes) and its partition slots do not form a valid,
//     non-empty table, the source is taken as unpartitioned. A sector 0
//     ending in 0x55AA whose slots have boot flags other than 0x00/0x80 is
//     not an MBR either (the kernel's msdos parser makes the same call).
//
// # Numbering and units
//
// Partition numbers follow Linux: a GPT partition is its entry index plus
// one (gaps in the array leave gaps in the numbers); MBR primaries are 1 to
// 4 by slot and logical partitions count from 5 in chain order. Offsets and
// sizes are bytes. LBAs in the on-disk tables count logical sectors of the
// size given to [Read]; GPT tells its sector size by where "EFI PART" sits
// (byte 512 or byte 4096, or at the end of the disk for the backup), which
// [DetectSectorSize] and [ReadAuto] use. An MBR does not record its sector
// size: a caller reading a block device should pass the device's logical
// sector size (BLKSSZGET) to Read rather than rely on ReadAuto's default of
// 512.
//
// # Validation
//
// The tables come from disks we did not write, so everything is checked
// before it is used: partitions must lie inside the disk (a partition that
// ends past the end usually means a truncated image), must not overlap one
// another or the table's own sectors, GPT entries must lie in the header's
// usable LBA range, logical partitions must lie inside their extended
// container, and the sizes read from the disk are bounded before anything
// is allocated from them. Every error names the table, entry and field at
// fault, for example
//
//	disk: gpt entry 3: ends at byte 5243392, past the end of the disk (4194304 bytes)
//
// and matches [ErrCorrupt] plus a more specific sentinel ([ErrOutside],
// [ErrOverlap], [ErrEBRChain]) under errors.Is. Oddities that do not stop
// a faithful capture (a missing or hybrid protective MBR, a stale or
// misplaced backup GPT, ignored half-empty MBR slots) are reported in
// [Layout.Warnings] instead.
//
// # Why not go-diskfs
//
// The project's design names github.com/diskfs/go-diskfs for GPT and MBR.
// This package parses both formats itself, because in go-diskfs v1.9.4:
// gpt.Read and mbr.Read take a backend.File (fs.File, Seeker and Closer)
// and find the disk size by seeking, where capture has an io.ReaderAt and
// a size from the device; the GPT header fields capture needs to place the
// table's own sectors (entry-array LBA, usable range, alternate LBA) are
// unexported; the entry array is allocated from the header's count times
// entry size without a bound, so a hostile 4-byte count makes it allocate
// gigabytes; headers larger than 92 bytes and entries larger than 128
// bytes, both allowed by the UEFI spec, are refused; partitions are not
// checked against the disk size or each other; and MBR logical partitions
// and bare FAT/NTFS boot sectors are not handled at all. The formats are
// small and fully specified, so the parser here is a few hundred lines and
// its results are tested against sfdisk's on images sfdisk made.
package disk
