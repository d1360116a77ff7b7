#!/bin/sh
# Regenerates the fuzz seeds in this directory. Each seed is the first bytes
# of a small filesystem made by the real mkfs; the fuzz reader supplies
# zeros after them up to the size in the file name (NAME-SIZE.bin), so the
# rest of the image reads as free space.
# Needs dosfstools, mtools and exfatprogs (mkfs.exfat, dump.exfat). Run
# from anywhere.
set -eu
cd "$(dirname "$0")"
export MTOOLS_SKIP_CHECK=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "hello, seed" > "$tmp/hello.txt"
head -c 600 /dev/zero | tr '\0' 'x' > "$tmp/Long Name File.txt"

# FAT12: 128 KiB, 2 KiB clusters; boot sector, FATs, root dir, first clusters.
mkfs.vfat --invariant -F 12 -n SEED12 -C "$tmp/fat12.img" 128
mcopy -i "$tmp/fat12.img" "$tmp/hello.txt" "$tmp/Long Name File.txt" ::/
mmd -i "$tmp/fat12.img" ::/dir
head -c 20480 "$tmp/fat12.img" > fat12-131072.bin

# FAT16: 2112 KiB, 512-byte clusters (4188 clusters), one-sector root dir.
mkfs.vfat --invariant -F 16 -s 1 -r 16 -n SEED16 -C "$tmp/fat16.img" 2112
mcopy -i "$tmp/fat16.img" "$tmp/hello.txt" "$tmp/Long Name File.txt" ::/
mmd -i "$tmp/fat16.img" ::/dir
head -c 24576 "$tmp/fat16.img" > fat16-2162688.bin

# FAT32: 34 MiB, 512-byte clusters (69K clusters); boot, FSInfo, backup
# boot sector and the start of the first FAT.
mkfs.vfat --invariant -F 32 -s 1 -n SEED32 -C "$tmp/fat32.img" 34816
mcopy -i "$tmp/fat32.img" "$tmp/hello.txt" ::/
head -c 20480 "$tmp/fat32.img" > fat32-35651584.bin

# exFAT: 1 MiB, 4 KiB clusters, 4 KiB alignment, so boot regions, FAT,
# bitmap, up-case table and root directory all sit in the first 32 KiB.
# The up-case table's contents are zeroed: the parser only locates the
# table, and 5.8 KiB of it would dominate every fuzz input.
truncate -s 1M "$tmp/exfat.img"
mkfs.exfat -b 4096 -c 4096 -L SEEDX "$tmp/exfat.img" > /dev/null
heap=$(dump.exfat "$tmp/exfat.img" | awk -F: '/Cluster Heap Offset/ {print $2 * 512}')
upcase=$(dump.exfat "$tmp/exfat.img" | awk -F: '/Upcase table start cluster/ {print $2}')
upsize=$(dump.exfat "$tmp/exfat.img" | awk -F: '/Upcase table size/ {print $2}')
dd if=/dev/zero of="$tmp/exfat.img" bs=1 seek=$((heap + (upcase - 2) * 4096)) count="$upsize" conv=notrunc status=none
head -c 32768 "$tmp/exfat.img" > exfat-1048576.bin
