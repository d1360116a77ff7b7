// Package xfs tells which byte ranges of an XFS filesystem's data device
// are in use, so that capture can copy only those and restore can
// reproduce the filesystem.
//
// It reads the on-disk structures itself (read only, no mount): the
// primary superblock, then per allocation group (AG) the AGF and the
// free-space B+tree indexed by block number (the "bno" btree, magic
// "ABTB", or "AB3B" on v5 filesystems with CRCs). Everything in an AG
// that this tree does not list as free is used: AG headers, the internal
// log, inode chunks, every btree, directory and file blocks, and the AG
// free list (AGFL). Both v4 and v5 (CRC) superblocks are handled, any
// number of AGs (the last one may be shorter), sector sizes 512..32768
// and block sizes 512..65536.
//
// Layout (big endian), as far as this package needs it:
//
//	superblock  AG 0, byte 0     "XFSB", block size, dblocks, agblocks,
//	                             agcount, sector size, version, UUID, label
//	AGF         each AG, sector 1 "XAGF", seqno, length, bno root and
//	                             levels, freeblks, flcount, btreeblks
//	bno btree   short-form blocks: magic, level, numrecs, siblings,
//	                             (v5: blkno, lsn, uuid, owner, crc);
//	                             leaves hold (startblock, blockcount)
//	                             records, nodes hold keys then pointers
//
// On v5 filesystems every superblock, AGF and btree block read is checked
// against its CRC32C, its UUID and its own block number, so stale blocks
// of an earlier filesystem are not mistaken for live ones.
//
// # Hostile input
//
// A damaged tree cannot make the walk loop or blow up: depth is bounded by
// agf_levels (itself capped at [maxLevels]), every child must be exactly one
// level below its parent, non-root blocks must hold records, free extents
// must come in strictly increasing order (a block reached twice repeats
// records and is caught), at most one block per AG block is visited, and
// the free blocks found must add up to agf_freeblks. Errors name the AG and
// the block.
//
// # Used bytes
//
// The bytes reported are exactly
//
//	(dblocks - Σ agf_freeblks) * blocksize
//
// where Σ agf_freeblks, the sum of all bno btree records, equals
// `xfs_db -r -c 'freesp -s'`'s "total free blocks" minus Σ agf_flcount
// (freesp counts AGFL blocks as free; they are not in the bno btree and
// are reported used here, a few blocks per AG, which is harmless), and
// equals sb_fdblocks - Σ (agf_flcount + agf_btreeblks) on a cleanly
// unmounted filesystem (fdblocks also counts the AGFL and the free-space
// btrees' own blocks as free). The data device may be larger than
// dblocks blocks; the rest is not reported. An external log or realtime
// device is a separate device and not covered here.
package xfs
