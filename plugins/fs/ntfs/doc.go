// Package ntfs tells which byte ranges of an NTFS volume are in use, so
// that capture can copy only those and restore can reproduce the volume.
//
// It reads the on-disk structures itself (no driver, no mount, read only):
//
//	boot sector (sector 0)   bytes/sector, sectors/cluster, total sectors,
//	                         $MFT cluster, MFT record and index block sizes
//	$MFT (record 0)          its unnamed $DATA runlist locates every record
//	$Volume (record 3)       label, NTFS version, dirty flag
//	root (record 5)          $I30 index: finds pagefile.sys and hiberfil.sys
//	$Bitmap (record 6)       one bit per cluster, 1 = in use
//
// Every MFT record and index block is checked for its magic ("FILE",
// "INDX") and has its update sequence fixups applied and verified (a torn
// multi-sector write is reported, not read through). Runlists are decoded
// with bounds checks: a run that points outside the volume, VCNs that do
// not line up, or attribute lists that refer to the wrong records are
// errors that name the record and run.
//
// # What counts as used
//
// Every cluster whose $Bitmap bit is set, plus two areas the bitmap does
// not describe, which are always reported:
//
//   - the first 8 KiB ($Boot: boot sector and boot code) and cluster 0;
//   - the end of the volume: the sectors after the last whole cluster, the
//     backup boot sector (which sits in the sector right after the
//     BPB's total sector count, i.e. outside the cluster count) and the
//     last sector of the device. mkntfs and Windows set total sectors to
//     partition sectors - 1 so the backup is the partition's last sector;
//     after a resize without a partition change it can sit elsewhere, so
//     both places are kept. A copy of only what the bitmap marks
//     (partclone 0.3.23 restores that way) loses the backup boot sector.
//
// Bits of $Bitmap past the last cluster (padding to a multiple of 8 bytes,
// which Windows may set) are ignored.
//
// So the bytes reported are exactly
//
//	(clusters - free clusters) * cluster size + (device size - clusters * cluster size)
//
// where clusters and free clusters are what `ntfsinfo -m` prints as
// "Volume Size in Clusters" and "Free Clusters", whenever the device ends
// at most one sector after the backup boot sector (always so for a volume
// made to fill its partition; the second term is then the tail that holds
// the backup boot sector: one sector if the partition is a whole number
// of clusters plus one sector). On a larger device the unused space
// between the backup boot sector and the device's last sector is left out.
//
// # pagefile.sys and hiberfil.sys
//
// [UsedExtentsWithOptions] can leave out the contents of the two files
// Windows rewrites anyway. The files stay allocated in $Bitmap and in the
// MFT, so the restored volume is consistent; only their data clusters are
// not copied and hold whatever the target disk had.
//
//   - pagefile.sys: Windows does not read old page file contents at boot,
//     so stale bytes are harmless.
//   - hiberfil.sys: stale bytes are harmless only if Windows does not try
//     to resume from them, and a target disk that held an earlier image
//     may well carry a valid-looking stale header. So the first 4 KiB of
//     the file (its header page, rounded up to whole clusters) are always
//     copied from the source: the restored header is then exactly the
//     source's, which is zero (or "wake") on a cleanly shut down Windows,
//     and the boot manager will not resume. No fix-up is needed after
//     restore.
//   - If the source header shows anything else (e.g. "hibr"/"HIBR":
//     Windows is hibernated, or shut down with Fast Startup), the
//     hibernation image and the page file are both needed to resume, so
//     neither file is skipped, whatever the options say.
//
// The two files are looked up by name in the root directory index (case
// insensitively, in both the Win32 and DOS namespaces), and each match is
// confirmed from its own MFT record ($FILE_NAME with parent record 5).
//
// After a restore, the plugin's fix-up (setting new_serial) writes a new
// random volume serial number into the boot sector and the backup boot
// sector (SetSerial), the only places NTFS keeps it, so that clones of one
// image differ; without the setting a restored volume stays exactly as
// captured.
package ntfs
