// Package fat finds the used byte ranges of FAT12, FAT16, FAT32 and exFAT
// filesystems, so that capture reads only what a restore needs.
//
// It reads the on-disk structures by hand (Microsoft FAT specification 1.03
// and exFAT specification 1.00) from an io.ReaderAt: a partition, a whole
// device holding a "superfloppy" filesystem, or an image file. It never
// writes.
//
// # FAT12, FAT16, FAT32
//
//	sector 0                 boot sector with the BPB
//	sectors 1..Rsvd-1        FAT32: FSInfo, backup boot sector; otherwise spare
//	Rsvd ..                  NumFATs copies of the FAT, FATSz sectors each
//	..                       FAT12/16 only: fixed root directory, RootEntCnt*32 bytes
//	first data sector ..     clusters 2 .. CountOfClusters+1, SecPerClus sectors each
//	..                       tail sectors that do not fill a cluster (unused)
//
// The FAT type follows from the cluster count, as the specification says:
// fewer than 4085 clusters is FAT12, fewer than 65525 FAT16, otherwise
// FAT32. The type string in the boot sector is ignored. One exception: a BPB
// with the FAT32 layout (BPB_FATSz16 = 0, BPB_RootEntCnt = 0) but fewer than
// 65525 clusters is read as FAT32, because that is what mkfs.fat creates for
// small volumes (with a warning), what Linux mounts and what fsck.fat checks;
// read by the count alone it would be a FAT16 without a root directory. Such
// volumes carry a note in Info.Notes.
//
// Used extents are the whole area before the first data sector (reserved
// sectors, every FAT copy, the FAT12/16 root directory) and every cluster
// whose entry in the active FAT is not zero, except clusters marked bad.
// Bad clusters hold no file data, the copied FAT keeps them marked bad on the
// target, and reading them on the source is what fails or stalls a capture,
// so they are left out; Info.Notes counts them.
//
// The active FAT is the first one, unless FAT32 mirroring is disabled
// (BPB_ExtFlags bit 7), in which case it is the one BPB_ExtFlags names. The
// other copies are copied byte for byte but not interpreted.
//
// An entry that is neither free, bad, end of chain, nor a cluster number of
// this volume (for example a chain pointing past the last cluster) makes
// Probe and UsedExtents fail with ErrCorrupt: the allocation cannot be
// trusted, so fsck.fat should look at it or the partition be captured raw.
//
// # exFAT
//
//	sectors 0..11            main boot region (boot sector, extended boot
//	                         sectors, OEM parameters, reserved, checksum)
//	sectors 12..23           backup boot region
//	FatOffset ..             NumberOfFats FATs, FatLength sectors each
//	ClusterHeapOffset ..     clusters 2 .. ClusterCount+1
//
// Used extents are both boot regions, every FAT, the allocation bitmap(s),
// the up-case table, the root directory chain, and every cluster whose bit
// is set in the active allocation bitmap. The allocation bitmap and the
// up-case table are taken to be contiguous, as the Linux driver does. The
// root directory chain is followed through the FAT; files marked NoFatChain
// need no FAT walk because the bitmap alone says which clusters are in use.
// Clusters marked bad in the FAT are not looked at: for contiguous files the
// FAT entries are undefined, so only the bitmap is trusted.
//
// After a restore, the plugin's fix-up (setting new_serial) writes a new
// random volume serial number (SetSerial): into the boot sector, FAT32's
// backup boot sector too, and on exFAT with the boot region checksum
// recomputed and the backup boot region rewritten; without the setting a
// restored volume stays exactly as captured.
package fat
