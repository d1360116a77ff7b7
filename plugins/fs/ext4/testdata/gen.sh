#!/bin/sh
# Regenerates the fuzz seed images in this directory (e2fsprogs 1.47.0,
# zstd). Each is a tiny filesystem made by the real mkfs with a few files,
# compressed with zstd -19. Run from this directory: sh gen.sh
set -eu
export E2FSPROGS_FAKE_TIME=1700000000
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
mkdir -p "$src/sub"
echo hello >"$src/hello.txt"
seq 1 800 >"$src/sub/numbers.txt"
ln -s hello.txt "$src/link"

make() { # name program size-KiB mkfs-options...
	name=$1 prog=$2 kib=$3
	shift 3
	rm -f "$name.img" "$name.img.zst"
	truncate -s "${kib}K" "$name.img"
	"$prog" -F -q -U 5b0e8f1c-2d3a-4b5c-8d6e-7f8091a2b3c4 \
		-E hash_seed=0a1b2c3d-4e5f-4061-8273-94a5b6c7d8e9 -d "$src" "$@" "$name.img"
	e2fsck -fn "$name.img" >/dev/null
	zstd -q -19 --rm "$name.img"
}

make ext2-1k mkfs.ext2 768 -b 1024 -g 256 -N 48
make ext3-1k-journal mkfs.ext3 3072 -b 1024 -g 1024 -N 48 -J size=1
make ext4-1k-csum mkfs.ext4 768 -b 1024 -g 256 -N 48 -O ^has_journal,^resize_inode
make ext4-4k-flex mkfs.ext4 2048 -b 4096 -g 256 -N 32 -O ^has_journal,^resize_inode
make ext4-uninit-bg mkfs.ext4 1024 -b 1024 -g 256 -N 32 -O ^has_journal,^metadata_csum,uninit_bg,^64bit
make ext4-meta-bg mkfs.ext4 2048 -b 1024 -g 256 -N 32 -O ^has_journal,^resize_inode,meta_bg,^64bit
make ext4-bigalloc mkfs.ext4 2048 -b 1024 -C 4096 -g 256 -N 32 -O ^has_journal,^resize_inode,bigalloc
