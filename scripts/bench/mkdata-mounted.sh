#!/usr/bin/env bash
# mkdata-mounted.sh builds a benchmark image of a filesystem that has no
# "mkfs -d" (NTFS, FAT32, XFS): mkfs on a sparse file with fixed identifiers,
# loop mount, copy a fixed data set in, unmount. By default 3 GiB, about 45%
# in use: system files from this machine (sorted paths, compressible like a
# real system) plus 1/8 of SIZE of incompressible data from a seeded
# generator (AES-128-CTR of zeros, one IV per file).
#
# The file contents and their order are deterministic on one machine; the
# image bytes are not quite (the filesystem drivers stamp times and
# allocate as they see fit), so OUT.img.stamp records the recipe and the
# image's SHA-256, and the image is reused while the recipe matches.
#
# Called by mkdata-ntfs.sh, mkdata-fat.sh and mkdata-xfs.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

RECIPE=2

usage() {
	cat <<EOF
usage: ${0##*/} [--force] ntfs|fat|xfs [OUT.img [SIZE]]

Build a benchmark image of the given filesystem (default SIZE 3G, 45% used).
OUT.img defaults to \$BENCH_DIR/FS-SIZE.img (e.g. ntfs-3g.img);
BENCH_DIR is $BENCH_DIR.
EOF
}

force=0
while [[ $# -gt 0 ]]; do
	case $1 in
	--force) force=1 ;;
	-h | --help) usage; exit 0 ;;
	-*) usage >&2; die "unknown option $1" ;;
	*) break ;;
	esac
	shift
done
# The wrappers (mkdata-ntfs.sh ...) name the filesystem in MKDATA_FS.
if [[ -z ${MKDATA_FS:-} ]]; then
	[[ $# -ge 1 ]] || { usage >&2; die "want FS [OUT.img [SIZE]]"; }
	MKDATA_FS=$1
	shift
fi
[[ $# -le 2 ]] || { usage >&2; die "want FS [OUT.img [SIZE]]"; }
fs=$MKDATA_FS
size_arg=${2:-3G}
size=$(numfmt --from=iec "$size_arg" 2>/dev/null) || die "SIZE $size_arg: not a size (try 3G)"
((size >= 512 * 1024 * 1024)) || die "SIZE $size_arg: want at least 512M (FAT32 needs room)"
((size % 1048576 == 0)) || die "SIZE $size_arg: not a multiple of 1 MiB"
out=${1:-$BENCH_DIR/$fs-$((size / 1073741824))g.img}
[[ $(id -u) -eq 0 ]] || die "run as root: the image is loop mounted"

# Fixed identifiers: the same volume serial / UUID every build.
case $fs in
ntfs)
	need mkntfs ntfs-3g
	need ntfs-3g ntfs-3g
	mkfs_cmd() { mkntfs -q -F -f -L diskcast-bench -c 4096 "$1" >/dev/null; }
	# mkntfs picks a random serial: set a fixed one afterwards (both boot
	# sectors), as ntfslabel --new-serial does.
	fix_ids() {
		printf '\x90\x8d\x7f\x5e\x6b\x0a\x3d\x9c' | dd of="$1" bs=1 seek=72 conv=notrunc status=none
		printf '\x90\x8d\x7f\x5e\x6b\x0a\x3d\x9c' | dd of="$1" bs=1 seek=$((size - 512 + 72)) conv=notrunc status=none
	}
	mount_cmd() { ntfs-3g -o noatime "$1" "$2"; }
	used_cmd() { df -B1 --output=used "$1" | tail -n 1; }
	umount_cmd() { umount "$1"; }
	check_cmd() { ntfsfix -n "$1"; }
	;;
fat)
	need mkfs.vfat dosfstools
	need mcopy mtools
	mkfs_cmd() { mkfs.vfat -F 32 -s 8 -n DCBENCH -i 5e7f8d90 "$1" >/dev/null; }
	fix_ids() { :; }
	# Kernels without vfat (as here) cannot mount it: fill a staging tree
	# and copy it in with mtools when "unmounting".
	mount_cmd() { mkdir -p "$2"; }
	used_cmd() { echo $((size / 512 + $(du -s -B4096 "$1" | cut -f1) * 4096)); } # two FATs of 4 bytes per 4 KiB cluster
	umount_cmd() {
		MTOOLS_SKIP_CHECK=1 mcopy -s -Q -m -i "$out.tmp" "$1"/* ::/ || die "mcopy into $out.tmp failed"
		rm -rf "$1"
	}
	check_cmd() { fsck.vfat -n "$1"; }
	;;
xfs)
	need mkfs.xfs xfsprogs
	mkfs_cmd() { mkfs.xfs -q -f -L dcbench -m uuid=4d1c2a5e-8b7f-4e21-9c3d-0a6b5e7f8d91 "$1"; }
	fix_ids() { :; }
	mount_cmd() { mount -o loop,noatime "$1" "$2"; }
	used_cmd() { df -B1 --output=used "$1" | tail -n 1; }
	umount_cmd() { umount "$1"; }
	check_cmd() { xfs_repair -n "$1"; }
	;;
*) usage >&2; die "filesystem $fs: want ntfs, fat or xfs" ;;
esac
need openssl openssl
need tar tar

DATA_KEY=6469736b636173742d62656e63682d32 # "diskcast-bench-2"
USED_PERMILLE=450
RANDOM_PERMILLE=125
SOURCES=(/usr/lib/x86_64-linux-gnu /usr/share /usr/lib/jvm /usr/local/go)
[[ -n ${MKDATA_SOURCES:-} ]] && read -ra SOURCES <<<"$MKDATA_SOURCES"

mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
stamp=$out.stamp
want_stamp=$(printf 'recipe %s\nfs %s\nsize %s\nsources %s\n' "$RECIPE" "$fs" "$size" "${SOURCES[*]}")
if [[ $force -eq 0 && -f $out && -f $stamp && $(head -n 4 "$stamp") == "$want_stamp" ]]; then
	note "reusing $out ($(sed -n 's/^image-sha256 //p' "$stamp" | cut -c1-16))"
	exit 0
fi
avail=$(df -B1 --output=avail "$(dirname "$out")" | tail -n 1)
((avail >= size * USED_PERMILLE / 1000 + 1073741824)) || die "$(dirname "$out"): $(gib "$avail") free, need $(gib $((size * USED_PERMILLE / 1000 + 1073741824)))"

mnt=$out.mnt
cleanup() {
	mountpoint -q "$mnt" 2>/dev/null && umount "$mnt"
	[[ $fs == fat ]] && rm -rf "$mnt"
	rmdir "$mnt" 2>/dev/null || true
	rm -f "$out.list"
}
trap cleanup EXIT

rm -f "$out.tmp"
truncate -s "$size" "$out.tmp"
mkfs_cmd "$out.tmp"
fix_ids "$out.tmp"
mkdir -p "$mnt"
mount_cmd "$out.tmp" "$mnt"
base_used=$(used_cmd "$mnt")
random_bytes=$((size * RANDOM_PERMILLE / 1000 / 4096 * 4096))
sys_budget=$((size * USED_PERMILLE / 1000 - base_used - random_bytes))
((sys_budget > 0)) || die "SIZE $size_arg: no room for system files"
note "building $out ($fs, $(gib "$size")): metadata $(gib "$base_used"), random $(gib "$random_bytes"), system files $(gib "$sys_budget")"

# System files: regular files only, one path per inode (FAT has no links,
# and tar would make later paths hard links that take no room), names every
# filesystem here can hold, no two paths equal but for case (FAT folds case),
# sorted, up to the budget (sizes rounded up to 4 KiB).
for dir in "${SOURCES[@]}"; do
	[[ -d $dir ]] && find "$dir" -xdev -type f -size -1048576k -printf '%s\t%D:%i\t%p\n'
done | LC_ALL=C sort -t $'\t' -k3 | awk -F '\t' -v budget="$sys_budget" '
	$3 !~ /^[A-Za-z0-9._+\/-]+$/ { next }
	$2 in inode { next }
	{ k = tolower($3); if (k in seen) next; seen[k] = 1; inode[$2] = 1 }
	{ cost = ($1 + 4095) - ($1 + 4095) % 4096; if (used + cost > budget) next; used += cost; print substr($3, 2) }' >"$out.list"
rc=0
tar -C / --no-recursion --verbatim-files-from -T "$out.list" -cf - 2> >(grep -v 'file changed as we read it' >&2) |
	tar -C "$mnt/" --no-same-owner --no-same-permissions -m -xf - || rc=$?
((rc <= 1)) || die "copying system files failed: tar exit $rc"
note "system files: $(wc -l <"$out.list") files"

# Incompressible data.
write_blobs "$mnt" "$random_bytes" "$DATA_KEY"
used=$(used_cmd "$mnt")
umount_cmd "$mnt"
check_cmd "$out.tmp" >"$out.check" 2>&1 || die "$fs checker fails on the new image: $(tail -n 5 "$out.check")"
rm -f "$out.check"
sha=$(sha256sum "$out.tmp" | cut -c1-64)
mv "$out.tmp" "$out"
{
	echo "$want_stamp"
	echo "image-sha256 $sha"
	echo "used-bytes $used"
} >"$stamp"
note "built $out: $(gib "$used") used of $(gib "$size"), sha256 ${sha:0:16}"
