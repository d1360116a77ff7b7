#!/usr/bin/env bash
# mkdata-ext4.sh builds the ext4 image that the capture/restore benchmark
# reads: by default 8 GiB, 45% in use (3.6 GiB), holding system files copied
# from this machine plus 1/8 of SIZE of incompressible data from a seeded
# generator. The same machine (same files under the source directories) gives
# a byte-identical image: fixed UUID, hash seed and creation time, sorted
# inputs, and every inode time reset afterwards.
#
# --dirty builds the "used disk" variant: the file is first filled with stale
# data (base64 text of a seeded stream, which compresses like old files do)
# and mkfs runs on top without discarding, so free blocks keep stale bytes.
# A raw copy (dd | zstd) then carries all of it; a filesystem-aware one only
# the used blocks.
#
# OUT.img.stamp records the recipe and a hash of the source file list; when
# the recipe matches, the image is reused (see --strict).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

# Bump when the recipe changes, so old stamps no longer match.
RECIPE=2

usage() {
	cat <<EOF
usage: ${0##*/} [--dirty] [--force | --strict] [--keep-staging] [OUT.img [SIZE]]

Build a reproducible ext4 benchmark image (default SIZE 8G; 45% used).
  --dirty         fill the file with stale data first, mkfs with nodiscard
  --force         rebuild even when OUT.img.stamp matches
  --strict        rebuild also when only the source files changed (by
                  default the image is then reused, with a note)
  --keep-staging  keep the staging tree next to OUT.img
OUT.img defaults to \$BENCH_DIR/ext4-8g.img (ext4-8g-dirty.img with --dirty);
BENCH_DIR is $BENCH_DIR.
EOF
}

dirty=0 force=0 strict=0 keep_staging=0
while [[ $# -gt 0 ]]; do
	case $1 in
	--dirty) dirty=1 ;;
	--force) force=1 ;;
	--strict) strict=1 ;;
	--keep-staging) keep_staging=1 ;;
	-h | --help) usage; exit 0 ;;
	--) shift; break ;;
	-*) usage >&2; die "unknown option $1" ;;
	*) break ;;
	esac
	shift
done
[[ $# -le 2 ]] || { usage >&2; die "too many arguments"; }

variant=clean
[[ $dirty -eq 1 ]] && variant=dirty
if [[ $# -ge 1 ]]; then
	out=$1
else
	out=$BENCH_DIR/ext4-8g.img
	[[ $dirty -eq 1 ]] && out=$BENCH_DIR/ext4-8g-dirty.img
fi
size_arg=${2:-8G}
size=$(numfmt --from=iec "$size_arg" 2>/dev/null) || die "SIZE $size_arg: not a size (try 8G or 512M)"
((size >= 256 * 1024 * 1024)) || die "SIZE $size_arg: want at least 256M"
((size % 4096 == 0)) || die "SIZE $size_arg: not a multiple of 4096"

[[ $(id -u) -eq 0 ]] || die "run as root: the staging copy must keep file owners and modes"
need mkfs.ext4 e2fsprogs
need debugfs e2fsprogs
need openssl openssl
need tar tar

# Fixed inputs: these make the image reproducible.
FS_UUID=4d1c2a5e-8b7f-4e21-9c3d-0a6b5e7f8d90
HASH_SEED=9e8d7c6b-5a49-4837-a625-140312f0e1d2
FAKE_TIME=1700000000 # 2023-11-14 22:13:20 UTC
DATA_KEY=6469736b636173742d62656e63682d31  # "diskcast-bench-1"
STALE_KEY=6469736b636173742d7374616c652d31 # "diskcast-stale-1"
USED_PERMILLE=450  # target: 45% of SIZE in use
RANDOM_PERMILLE=125 # 1/8 of SIZE incompressible

# System file sources, in this order, each with its share (percent) of the
# system-file budget. Files are taken in sorted path order until the share is
# used up. Missing or small directories leave budget over; it is filled by
# cycling through the taken files again under another prefix.
SOURCES=(
	/usr/bin:8
	/usr/lib/x86_64-linux-gnu:22
	/usr/share:20
	/usr/lib/google-cloud-sdk:22
	/usr/lib/jvm:10
	/usr/lib/llvm-14:10
	/usr/local/go:8
)
# MKDATA_SOURCES="DIR:PERCENT ..." replaces the list (another machine, tests).
if [[ -n ${MKDATA_SOURCES:-} ]]; then
	read -ra SOURCES <<<"$MKDATA_SOURCES"
fi
for src in "${SOURCES[@]}"; do
	[[ $src =~ ^/.*:[0-9]+$ ]] || die "source $src: want /ABSOLUTE/DIR:PERCENT"
done

mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
stamp=$out.stamp
work=$out.staging
trap 'rm -rf "$work.lists"' EXIT

# Manifest of candidate files: size, mtime, type, inode and path of every
# regular file and symlink under each source, sorted by path. Its hash goes into the stamp, so a change
# on this machine (a package installed) is noticed.
mkdir -p "$work.lists"
manifest_hash=$(
	for src in "${SOURCES[@]}"; do
		dir=${src%:*}
		[[ -d $dir ]] || continue
		find "$dir" -xdev \( -type f -o -type l \) ! -name $'*\n*' -printf '%s\t%T@\t%y\t%i\t%p\n' |
			LC_ALL=C sort -t $'\t' -k5 >"$work.lists/$(echo "$dir" | tr / _).manifest"
		cat "$work.lists/$(echo "$dir" | tr / _).manifest"
	done | sha256sum | cut -c1-64
)
want_stamp=$(printf 'recipe %s\nvariant %s\nsize %s\nsources %s\nmanifest %s\n' \
	"$RECIPE" "$variant" "$size" "${SOURCES[*]}" "$manifest_hash")

# Reuse when the recipe matches. Files on the machine change (packages come
# and go): then the image no longer matches what a rebuild would give, but it
# is still the same kind of data; reuse it and say so, unless --strict.
if [[ $force -eq 0 && -f $out && -f $stamp && $(stat -c %s "$out") -eq $size ]]; then
	have_sha=$(sed -n 's/^image-sha256 //p' "$stamp" | cut -c1-16)
	if [[ $(head -n 5 "$stamp") == "$want_stamp" ]]; then
		note "reusing $out (stamp matches: $have_sha)"
		exit 0
	fi
	if [[ $strict -eq 0 && $(head -n 4 "$stamp") == "$(head -n 4 <<<"$want_stamp")" ]]; then
		note "reusing $out ($have_sha): files under the sources changed since it was built, so a rebuild (--force) would differ"
		exit 0
	fi
fi
if [[ $force -eq 1 ]]; then
	note "rebuilding $out (--force)"
elif [[ -f $stamp ]]; then
	note "rebuilding $out: stamp differs:"
	diff <(head -n 5 "$stamp") <(echo "$want_stamp") >&2 || true
fi

avail=$(df -B1 --output=avail "$(dirname "$out")" | tail -n 1)
# Staging (about USED) plus the image (USED, or SIZE when dirty), with 1 GiB spare.
need_bytes=$((size * USED_PERMILLE * 2 / 1000 + 1073741824))
[[ $dirty -eq 1 ]] && need_bytes=$((size * USED_PERMILLE / 1000 + size + 1073741824))
((avail >= need_bytes)) || die "$(dirname "$out"): $(gib "$avail") free, need about $(gib "$need_bytes")"

mkfs_opts=(-F -q -t ext4 -b 4096 -i 16384 -I 256 -L diskcast-bench -U "$FS_UUID"
	-E "root_owner=0:0,hash_seed=$HASH_SEED")
[[ $dirty -eq 1 ]] && mkfs_opts=(-F -q -t ext4 -b 4096 -i 16384 -I 256 -L diskcast-bench -U "$FS_UUID"
	-E "root_owner=0:0,hash_seed=$HASH_SEED,nodiscard")
export E2FSPROGS_FAKE_TIME=$FAKE_TIME

# Baseline: what an empty filesystem of this size already uses (inode tables,
# journal, bitmaps, reserved GDT blocks). The file budget is the rest.
rm -f "$out.tmp"
truncate -s "$size" "$out.tmp"
mkfs.ext4 "${mkfs_opts[@]}" "$out.tmp"
base_used=$(ext4_used_bytes "$out.tmp")
rm -f "$out.tmp"
target_used=$((size * USED_PERMILLE / 1000))
random_bytes=$((size * RANDOM_PERMILLE / 1000 / 4096 * 4096))
sys_budget=$((target_used - base_used - random_bytes))
((sys_budget > 0)) || die "SIZE $size_arg: no room for system files after metadata and random data"
note "building $out ($variant, $(gib "$size")): metadata $(gib "$base_used"), random $(gib "$random_bytes"), system files $(gib "$sys_budget")"

rm -rf "$work"
mkdir -p "$work/sys" "$work/data"

# Pick the system files: per source, sorted paths until its share is used up.
# A file costs its size rounded up to 4 KiB blocks; a second hard link and a
# short symlink (kept in the inode) cost nothing.
pick() { # pick BUDGET < manifest: prints "cost<TAB>path"
	awk -F '\t' -v budget="$1" '
	{
		cost = ($1 + 4095) - ($1 + 4095) % 4096
		if ($3 == "l" && $1 < 60) cost = 0
		if ($3 == "f" && seen[$4]++) cost = 0
		if (used + cost > budget) { if (used >= budget * 0.98) exit; next }
		used += cost
		printf "%.0f\t%s\n", cost, $5
	}'
}
: >"$work.lists/all"
for src in "${SOURCES[@]}"; do
	dir=${src%:*} share=${src##*:}
	m=$work.lists/$(echo "$dir" | tr / _).manifest
	[[ -s $m ]] || { note "source $dir missing or empty: its share is filled by cycling"; continue; }
	pick $((sys_budget * share / 100)) <"$m" >>"$work.lists/all"
done
[[ -s $work.lists/all ]] || die "no system files found under any of: ${SOURCES[*]%:*}"

# Copy the picks, then measure what they really take: mkfs -d leaves all-zero
# blocks out (holes), and so does tar -S --hole-detection=raw here, so du of
# the staging tree predicts the image's allocation. Later rounds (r2, r3...)
# cycle through the picks again until the budget is reached.
declared=0 copied=0 round=1
cp "$work.lists/all" "$work.lists/round"
while :; do
	mkdir -p "$work/sys/r$round"
	cut -f2- "$work.lists/round" | sed 's|^/||' >"$work.lists/names"
	rc=0
	tar -C / -S --hole-detection=raw --no-recursion --verbatim-files-from -T "$work.lists/names" -cf - \
		2> >(grep -v 'file changed as we read it' >&2) |
		tar -C "$work/sys/r$round" -xpf - || rc=$?
	# tar exits 1 when a file changed while read; the copy is still complete.
	((rc <= 1)) || die "copying system files (round $round) failed: tar exit $rc"
	declared=$((declared + $(awk -F '\t' '{ s += $1 } END { printf "%.0f\n", s }' "$work.lists/round")))
	before=$copied
	copied=$(du -s -B1 "$work/sys" | cut -f1)
	((copied >= sys_budget * 99 / 100 || round >= 1000)) && break
	# Nothing small enough left to add: stop short of the budget.
	((copied > before + 65536)) || break
	# Ask for the shortfall scaled by how much of a declared byte was kept.
	left=$(((sys_budget - copied) * (declared / 4096) / (copied / 4096)))
	awk -F '\t' -v budget="$left" '{ if (used + $1 > budget) next; used += $1; print }' \
		"$work.lists/all" >"$work.lists/round"
	[[ -s $work.lists/round ]] || break
	round=$((round + 1))
done
note "system files: $(gib "$copied") in $round round(s)"

# Incompressible data.
write_blobs "$work" "$random_bytes" "$DATA_KEY"

rm -f "$out.tmp"
if [[ $dirty -eq 1 ]]; then
	note "filling $(gib "$size") with stale data"
	keystream "$STALE_KEY" 0 | { base64 -w 76 || true; } | head -c "$size" >"$out.tmp"
	[[ $(stat -c %s "$out.tmp") -eq $size ]] || die "filling $out.tmp: short write"
else
	truncate -s "$size" "$out.tmp"
fi
mkfs.ext4 "${mkfs_opts[@]}" -d "$work" "$out.tmp"

# mkfs -d copies atime and ctime from the staging tree (the time of the copy):
# reset all three times of every inode in use to the fixed creation time.
ext4_used_ranges "$out.tmp" inodes |
	awk -v t="$FAKE_TIME" '{
		for (i = $1; i <= $2; i++) {
			if (i != 2 && i < 11) continue # reserved inodes other than the root
			printf "sif <%d> atime @%s\nsif <%d> ctime @%s\nsif <%d> mtime @%s\n", i, t, i, t, i, t
		}
	}' >"$work.lists/times"
debugfs -w -f "$work.lists/times" "$out.tmp" >/dev/null 2>"$work.lists/debugfs.err" ||
	die "debugfs resetting inode times failed: $(tail -n 3 "$work.lists/debugfs.err")"
if grep -v '^debugfs [0-9]' "$work.lists/debugfs.err" | grep -q .; then
	die "debugfs resetting inode times: $(grep -v '^debugfs [0-9]' "$work.lists/debugfs.err" | head -n 3)"
fi
e2fsck -fn "$out.tmp" >"$work.lists/fsck" 2>&1 || die "e2fsck -fn of the new image failed: $(tail -n 5 "$work.lists/fsck")"

used=$(ext4_used_bytes "$out.tmp")
sha=$(sha256sum "$out.tmp" | cut -c1-64)
mv "$out.tmp" "$out"
{
	echo "$want_stamp"
	echo "image-sha256 $sha"
	echo "used-bytes $used"
} >"$stamp"
[[ $keep_staging -eq 1 ]] || rm -rf "$work"
note "built $out: $(gib "$used") used of $(gib "$size"), sha256 ${sha:0:16}"
