#!/usr/bin/env bash
# import.sh compares `diskcast import` of a partclone image with partclone's
# own restore of the same image to a file, in the same invocation:
#   peer      DECOMPRESS < IMG | partclone.ext4 -r -s - -O out.raw ; sync out.raw
#   diskcast  diskcast import IMG out.dci   (zstd chunks, fsynced)
# for the image stored plain, gzip'd (pigz) and zstd'd, each made once with
# partclone.ext4 -c (its default CRC32 checksums) from a reproducible ext4
# image (default 2 GiB, 45% used: system files plus incompressible data,
# built by mkdata-ext4.sh). Runs are interleaved and their order rotates so
# machine noise spreads over both; the table shows medians of N runs and the
# ratio peer/diskcast (above 1: the import is faster). Every import is then
# restored once and compared with partclone's restore.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

usage() {
	cat <<EOF
usage: ${0##*/} [--runs N] [--size SIZE] [--comp LIST] [--diskcast PATH] [--keep]

Time diskcast import against partclone.ext4 -r to a file (medians of N runs,
default 3) and print the ratios.
  --size SIZE      size of the ext4 image (default 2G; 45% used)
  --comp LIST      comma-separated: none,gzip,zstd (default all three)
  --diskcast PATH  diskcast binary (default: built into \$BENCH_DIR)
  --keep           keep the images and outputs in \$BENCH_DIR/import
BENCH_DIR is $BENCH_DIR. Extra import flags: DISKCAST_IMPORT_FLAGS.
EOF
}

runs=3 size=2G comps=none,gzip,zstd diskcast= keep=0
while [[ $# -gt 0 ]]; do
	case $1 in
	--runs) runs=${2:?--runs needs a number}; shift ;;
	--size) size=${2:?--size needs a size}; shift ;;
	--comp) comps=${2:?--comp needs a list}; shift ;;
	--diskcast) diskcast=${2:?--diskcast needs a path}; shift ;;
	--keep) keep=1 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument $1" ;;
	esac
	shift
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "--runs $runs: want a positive number"
[[ $(id -u) -eq 0 ]] || die "partclone needs root"
need partclone.ext4 partclone
need zstd zstd
need pigz pigz

work=$BENCH_DIR/import
mkdir -p "$work"
cleanup() { [[ $keep -eq 1 ]] || rm -rf "$work"; }
trap cleanup EXIT

if [[ -z $diskcast ]]; then
	diskcast=$work/diskcast
	note "building diskcast"
	(cd "$root" && go build -o "$diskcast" ./core/cmd/diskcast)
fi

src=$BENCH_DIR/ext4-$size.img
"$here/mkdata-ext4.sh" "$src" "$size" >&2
note "cloning $src with partclone.ext4 -c"
base=$work/sda1.ext4-ptcl-img
partclone.ext4 -c -q -L /dev/null -s "$src" -O "$base" >/dev/null 2>&1 || die "partclone.ext4 -c failed"
devsize=$(stat -c %s "$src")

declare -A file decomp
for c in ${comps//,/ }; do
	case $c in
	none) file[$c]=$base decomp[$c]="cat" ;;
	gzip) pigz -c -1 <"$base" >"$base.gz"; file[$c]=$base.gz decomp[$c]="pigz -dc" ;;
	zstd) zstd -q -T0 -3 -c "$base" >"$base.zst"; file[$c]=$base.zst decomp[$c]="zstd -q -dc" ;;
	*) die "--comp: unknown $c" ;;
	esac
done
sync

# timed SCRIPT runs a bash script and leaves its wall time in $took and its
# CPU time (user + sys of every process it ran) in $cpu.
timed() {
	local log=$work/run.log t=$work/run.time
	/usr/bin/time -f '%e %U %S' -o "$t" bash -o pipefail -c "$1" >"$log" 2>&1 || { cat "$log" >&2; die "failed: $1"; }
	read -r took u s <"$t"
	cpu=$(echo "$u + $s" | bc -l)
}

peer() { # COMP: the peer's script
	echo "rm -f '$work/out.raw'; ${decomp[$1]} '${file[$1]}' | partclone.ext4 -r -q -W -C -L /dev/null -s - -O '$work/out.raw' && sync '$work/out.raw'"
}

mine() { # COMP: the import's script
	echo "'$diskcast' import --force ${DISKCAST_IMPORT_FLAGS:-} '${file[$1]}' '$work/out.dci'"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

declare -A tp td tpc tdc
for c in ${comps//,/ }; do
	pt=() dt=() pc=() dc=()
	for ((i = 0; i < runs; i++)); do
		if ((i % 2 == 0)); then
			timed "$(peer "$c")"; pt+=("$took"); pc+=("$cpu")
			timed "$(mine "$c")"; dt+=("$took"); dc+=("$cpu")
		else
			timed "$(mine "$c")"; dt+=("$took"); dc+=("$cpu")
			timed "$(peer "$c")"; pt+=("$took"); pc+=("$cpu")
		fi
		note "$c run $((i + 1)): partclone ${pt[-1]} s (cpu ${pc[-1]} s), diskcast ${dt[-1]} s (cpu ${dc[-1]} s)"
	done
	tp[$c]=$(printf '%s\n' "${pt[@]}" | median)
	td[$c]=$(printf '%s\n' "${dt[@]}" | median)
	tpc[$c]=$(printf '%s\n' "${pc[@]}" | median)
	tdc[$c]=$(printf '%s\n' "${dc[@]}" | median)
	# The import must restore to what partclone restores.
	bash -o pipefail -c "$(peer "$c")" >/dev/null 2>&1 || die "$c: partclone restore failed"
	truncate -s "$devsize" "$work/out.raw"
	rm -f "$work/check.raw"
	"$diskcast" restore "$work/out.dci" "$work/check.raw" >/dev/null
	cmp "$work/out.raw" "$work/check.raw" || die "$c: the imported image restores differently from partclone"
done

used=$(ext4_used_bytes "$src")
printf '\nimport of a partclone image of a %s ext4 (%s used), medians of %d runs\n' "$size" "$(numfmt --to=iec "$used")" "$runs"
printf 'load average at the end: %s (the machine is shared; compare ratios, not times)\n\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s %8s %8s %7s   %8s %8s %7s %10s\n' image peer-s import-s ratio peer-cpu imp-cpu ratio image
for c in ${comps//,/ }; do
	printf '%-6s %8.2f %8.2f %6.2fx   %8.2f %8.2f %6.2fx %10s\n' "$c" "${tp[$c]}" "${td[$c]}" "$(echo "${tp[$c]} / ${td[$c]}" | bc -l)" \
		"${tpc[$c]}" "${tdc[$c]}" "$(echo "${tpc[$c]} / ${tdc[$c]}" | bc -l)" "$(numfmt --to=iec "$(stat -c %s "${file[$c]}")")"
done
printf '\npeer = DECOMPRESS | partclone.ext4 -r to a file (then sync); import = diskcast import %s\n' "${DISKCAST_IMPORT_FLAGS:-}"
printf 'ratio = peer / import: above 1, the import is faster (wall) or cheaper (cpu: user+sys of all processes)\n'
