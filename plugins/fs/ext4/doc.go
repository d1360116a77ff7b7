// Package ext4 finds the used blocks of ext2, ext3 and ext4 filesystems so
// that a capture copies only what a restore must write.
//
// It parses the on-disk structures itself (superblock, group descriptors,
// block bitmaps) from a read-only io.ReaderAt: an unmounted partition or an
// image file. Used blocks are the union of every group's block bitmap and,
// for groups whose bitmap was never initialised (BLOCK_UNINIT), the blocks
// the kernel would mark when it computes that bitmap: the superblock and
// group descriptor backups (sparse_super, sparse_super2, meta_bg), reserved
// GDT blocks, and any group's bitmaps or inode table that lie in the group.
// Checksums are verified where the filesystem has them: superblock
// (metadata_csum), group descriptors (metadata_csum or uninit_bg) and block
// bitmaps (metadata_csum).
//
// The first 2048 bytes of the device (boot area and primary superblock) are
// always reported, whatever the block size: boot loaders live there, and on
// 1 KiB-block filesystems block 0 lies outside every block group. Block
// count in the superblock includes that block 0 and the bitmaps never free
// it, so on a clean filesystem the reported bytes are exactly
// (Block count - Free blocks) * Block size as dumpe2fs prints them, for
// every block size.
//
// Inode tables are reported whole, as the block bitmap has them allocated,
// even where bg_itable_unused says their tail holds no inode. Skipping that
// tail onto a garbage-filled target passed e2fsck -fn (and later kernel
// use) in a trial on checksummed filesystems, but e2fsck trusts
// bg_itable_unused only while the descriptor checksums are valid: once it
// has to distrust them it reads every inode, and garbage with a non-zero
// link count would be taken for live inodes. Copying whole tables keeps the
// target exactly as consistent as the source, including tables that mkfs
// left unzeroed with lazy_itable_init.
//
// bigalloc filesystems are handled: their bitmaps count clusters, and each
// used cluster is reported whole.
//
// Filesystems whose on-disk bitmaps cannot be trusted are refused with an
// error wrapping ErrUnsupported, so the caller can fall back to a raw copy:
// a journal that needs recovery (the filesystem is mounted or was not
// unmounted cleanly), an ext2 filesystem not cleanly unmounted or with
// errors recorded, an external journal device, and unknown incompatible
// features. Probe reports these with a note starting "capture raw: ".
package ext4
