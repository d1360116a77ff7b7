#!/usr/bin/env bash
# capture.sh compares diskcast's capture and restore of an ext4 image with
# the peers on the same machine in the same invocation:
#   capture  partclone.ext4 -c | zstd -T0 -3   (what Clonezilla does)
#            dd | pigz                          (the raw .img.gz habit)
#            dd | zstd -T0 -3                   (--with-dd-zstd)
#            diskcast capture
#   restore  zstd -d | partclone.ext4 -r
#            diskcast restore
# Each is run N times, interleaved and in rotating order so machine noise
# spreads over all tools; the table shows medians and ratios to partclone
# (and to dd | pigz for capture). Wall time and CPU time (user+sys of the
# whole pipeline) come from /usr/bin/time. Outputs and restore targets are
# fsynced inside the timed command, so every tool pays for its own writes.
# Every restored target is checked: e2fsck -fn, and its used blocks (per the
# source's bitmaps) compared byte for byte with the source image.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

usage() {
	cat <<EOF
usage: ${0##*/} [--runs N] [--image PATH | --dirty] [--diskcast PATH]
                [--with-dd-zstd] [--no-diskcast] [--verify all|last|none] [--keep]

Time capture and restore of an ext4 image: partclone+zstd, dd|pigz and
diskcast (medians of N runs, default 3), then print a table of ratios.
  --image PATH     ext4 image to read (default \$BENCH_DIR/ext4-8g.img,
                   built by mkdata-ext4.sh when missing)
  --dirty          use \$BENCH_DIR/ext4-8g-dirty.img (stale data in free space)
  --diskcast PATH  diskcast binary (default $root/bin/diskcast)
  --with-dd-zstd   also time dd | zstd -T0 -3 (raw copy, same compressor)
  --no-diskcast    time the peers only
  --verify WHICH   check restored targets after every run (all, default),
                   the last run only, or not at all
  --keep           keep outputs and targets in \$BENCH_DIR/out
BENCH_DIR is $BENCH_DIR. Extra diskcast flags: DISKCAST_CAPTURE_FLAGS,
DISKCAST_RESTORE_FLAGS.
EOF
}

runs=3 image='' dirty=0 diskcast=$root/bin/diskcast with_ddzst=0 no_diskcast=0 verify=all keep=0
while [[ $# -gt 0 ]]; do
	case $1 in
	--runs) runs=${2:?--runs needs a number}; shift ;;
	--image) image=${2:?--image needs a path}; shift ;;
	--dirty) dirty=1 ;;
	--diskcast) diskcast=${2:?--diskcast needs a path}; shift ;;
	--with-dd-zstd) with_ddzst=1 ;;
	--no-diskcast) no_diskcast=1 ;;
	--verify) verify=${2:?--verify needs all, last or none}; shift ;;
	--keep) keep=1 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument $1" ;;
	esac
	shift
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "--runs $runs: want a positive number"
[[ $verify =~ ^(all|last|none)$ ]] || die "--verify $verify: want all, last or none"
[[ $(id -u) -eq 0 ]] || die "run as root: missing peer tools are installed with apt-get, and the peers run on image files as root"

need partclone.ext4 partclone
need zstd zstd
need pigz pigz
need e2fsck e2fsprogs
need cmp diffutils
[[ -x /usr/bin/time ]] || need /usr/bin/time time

if [[ -z $image ]]; then
	if [[ $dirty -eq 1 ]]; then
		image=$BENCH_DIR/ext4-8g-dirty.img
		"$here/mkdata-ext4.sh" --dirty "$image"
	else
		image=$BENCH_DIR/ext4-8g.img
		"$here/mkdata-ext4.sh" "$image"
	fi
fi
[[ -f $image || -b $image ]] || die "--image $image: no such file"
e2fsck -fn "$image" >/dev/null 2>&1 || die "$image: e2fsck -fn fails on the source image; rebuild it"

use_diskcast=1
if [[ $no_diskcast -eq 1 ]]; then
	use_diskcast=0
elif [[ ! -x $diskcast ]]; then
	note "$diskcast: not built (cd $root && CGO_ENABLED=0 go build -o bin/diskcast ./core/cmd/diskcast): timing the peers only"
	use_diskcast=0
fi

out=$BENCH_DIR/out
mkdir -p "$out"
rm -f "$out"/*
img_bytes=$(stat -L -c %s "$image")
[[ -b $image ]] && img_bytes=$(blockdev --getsize64 "$image")
used_bytes=$(ext4_used_bytes "$image")
# Room for the outputs (at most the image each, dd | pigz on a dirty image
# comes close) and two restore targets.
avail=$(df -B1 --output=avail "$out" | tail -n 1)
((avail > used_bytes * 5 + 1073741824)) ||
	note "warning: $out has $(gib "$avail") free; outputs and targets may need up to $(gib $((used_bytes * 5)))"

# Used block ranges of the source, adjacent ranges merged, in bytes.
bs=$(ext4_field "$image" "Block size")
ext4_used_ranges "$image" blocks | sort -n | awk -v bs="$bs" '
	NR > 1 && $1 == hi + 1 { hi = $2; next }
	NR > 1 { printf "%.0f %.0f\n", lo * bs, (hi - lo + 1) * bs }
	{ lo = $1; hi = $2 }
	END { if (NR) printf "%.0f %.0f\n", lo * bs, (hi - lo + 1) * bs }' >"$out/used.ranges"

# check_target NAME TARGET: e2fsck and used-block comparison with the source.
failures=0
check_target() {
	local name=$1 tgt=$2 off len bad=0 diff n at
	if ! e2fsck -fn "$tgt" >"$out/$name.fsck" 2>&1; then
		note "FAIL $name: e2fsck -fn $tgt: $(tail -n 3 "$out/$name.fsck" | tr '\n' ' ')"
		failures=$((failures + 1))
		return
	fi
	while read -r off len; do
		if ! diff=$(cmp -n "$len" -i "$off:$off" "$image" "$tgt" 2>&1); then
			# cmp says "... differ: byte N, line L" (N counted from 1 at off).
			n=$(sed -n 's/.* differ: \(char\|byte\) \([0-9]*\),.*/\2/p' <<<"$diff")
			if [[ -n $n ]]; then
				at=$((off + n - 1))
				note "FAIL $name: byte $at (block $((at / bs))) differs from the source, in a used block"
			else
				note "FAIL $name: comparing used bytes $off..$((off + len - 1)): $diff"
			fi
			bad=1
			break
		fi
	done <"$out/used.ranges"
	if [[ $bad -eq 1 ]]; then
		failures=$((failures + 1))
	else
		echo "    check $name: e2fsck clean; $(gib "$used_bytes") of used blocks identical to the source"
	fi
}

# timed TOOL RUN OUTPUT CMD: run CMD under /usr/bin/time, record
# "tool run wall cpu size" in results; OUTPUT is the file whose size counts.
: >"$out/results"
timed() {
	local tool=$1 run=$2 output=$3 cmd=$4 t wall user sys cpu size
	sync # earlier runs' dirty pages are not this run's cost
	if ! /usr/bin/time -f '%e %U %S' -o "$out/time" bash -o pipefail -c "$cmd" >"$out/$tool.log" 2>&1; then
		die "$tool (run $run) failed: $cmd
$(tail -n 5 "$out/$tool.log")"
	fi
	read -r wall user sys <"$out/time"
	cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
	size=0
	[[ -n $output ]] && size=$(stat -c %s "$output")
	echo "$tool $run $wall $cpu $size" >>"$out/results"
	printf '  run %d  %-22s wall %7.2f s  cpu %7.2f s%s\n' "$run" "$tool" "$wall" "$cpu" \
		"$([[ -n $output ]] && echo "  size $(gb "$size")")"
}

q() { printf '%q' "$1"; }
I=$(q "$image") O=$(q "$out")
fresh_target() { rm -f "$1"; truncate -s "$img_bytes" "$1"; }

capture_tools=(partclone+zstd dd+pigz)
[[ $with_ddzst -eq 1 ]] && capture_tools+=(dd+zstd)
[[ $use_diskcast -eq 1 ]] && capture_tools+=(diskcast)
restore_tools=(partclone+zstd)
[[ $use_diskcast -eq 1 ]] && restore_tools+=(diskcast)

capture_cmd() {
	case $1 in
	partclone+zstd) echo "partclone.ext4 -q -L $O/pc-c.plog -c -s $I -o - | zstd -T0 -3 -q > $O/out.pc.zst && sync $O/out.pc.zst" ;;
	dd+pigz) echo "dd if=$I bs=4M status=none | pigz > $O/out.img.gz && sync $O/out.img.gz" ;;
	dd+zstd) echo "dd if=$I bs=4M status=none | zstd -T0 -3 -q > $O/out.img.zst && sync $O/out.img.zst" ;;
	diskcast) echo "$(q "$diskcast") capture ${DISKCAST_CAPTURE_FLAGS:-} $I $O/out.dci && sync $O/out.dci" ;;
	esac
}
capture_out() {
	case $1 in
	partclone+zstd) echo "$out/out.pc.zst" ;;
	dd+pigz) echo "$out/out.img.gz" ;;
	dd+zstd) echo "$out/out.img.zst" ;;
	diskcast) echo "$out/out.dci" ;;
	esac
}
restore_cmd() {
	case $1 in
	partclone+zstd) echo "zstd -d -c -q $O/out.pc.zst | partclone.ext4 -q -L $O/pc-r.plog -r -s - -O $O/target.pc && sync $O/target.pc" ;;
	diskcast) echo "$(q "$diskcast") restore ${DISKCAST_RESTORE_FLAGS:-} $O/out.dci $O/target.dc && sync $O/target.dc" ;;
	esac
}
restore_target() {
	case $1 in
	partclone+zstd) echo "$out/target.pc" ;;
	diskcast) echo "$out/target.dc" ;;
	esac
}

# Header: what ran where.
echo "== diskcast capture/restore benchmark"
echo "date:     $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "machine:  $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/^MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r)"
echo "load:     $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min)$([[ -r /proc/pressure/cpu ]] && echo ", cpu pressure $(awk '/^some/ { print $2 }' /proc/pressure/cpu)")"
echo "image:    $image: $(gib "$img_bytes"), $(gib "$used_bytes") used (dumpe2fs), $(wc -l <"$out/used.ranges") used ranges"
[[ -f $image.stamp ]] && echo "          $(grep -E '^(variant|image-sha256)' "$image.stamp" | tr '\n' ' ')"
echo "tools:    $(partclone.ext4 --version 2>&1 | grep -o 'v[0-9.]*' | head -n 1 | sed 's/^/partclone /'), $(zstd --version | grep -o 'v[0-9.]*' | sed 's/^/zstd /'), $(pigz --version 2>&1), $(dd --version | head -n 1)"
if [[ $use_diskcast -eq 1 ]]; then
	echo "          $("$diskcast" version 2>/dev/null | head -n 1 || echo 'diskcast (no version subcommand)') at $diskcast, built $(date -u -r "$diskcast" '+%Y-%m-%d %H:%M UTC')"
else
	echo "          diskcast: not timed"
fi
echo "method:   $runs runs, tools interleaved in rotating order; medians below."
echo "          Page cache warmed first (one untimed cat of the image): every tool reads from memory."
echo "          Outputs and targets are fsynced inside the timed command; sync before each."
echo "          Targets are fresh sparse files of the image's size on the same disk ($out)."

note "warming the page cache: cat $image > /dev/null"
cat "$image" >/dev/null

rotate() { # rotate N ITEMS...: print ITEMS rotated left by N
	local n=$1; shift
	local a=("$@") i k
	k=${#a[@]}
	for ((i = 0; i < k; i++)); do echo "${a[(i + n) % k]}"; done
}

for ((r = 1; r <= runs; r++)); do
	echo "-- run $r/$runs (load $(cut -d' ' -f1 /proc/loadavg))"
	mapfile -t order < <(rotate $((r - 1)) "${capture_tools[@]}")
	for t in "${order[@]}"; do
		rm -f "$(capture_out "$t")"
		timed "capture:$t" "$r" "$(capture_out "$t")" "$(capture_cmd "$t")"
	done
	mapfile -t order < <(rotate $((r - 1)) "${restore_tools[@]}")
	for t in "${order[@]}"; do
		fresh_target "$(restore_target "$t")"
		timed "restore:$t" "$r" "" "$(restore_cmd "$t")"
	done
	if [[ $verify == all || ($verify == last && $r -eq $runs) ]]; then
		for t in "${restore_tools[@]}"; do
			check_target "restore:$t" "$(restore_target "$t")"
		done
	fi
done
if [[ $use_diskcast -eq 1 && $verify != none ]]; then
	if cmp -s "$out/target.pc" "$out/target.dc"; then
		echo "    partclone's and diskcast's targets are identical, free space included"
	elif [[ $failures -eq 0 ]]; then
		echo "    partclone's and diskcast's targets differ only outside the used blocks (free space)"
	else
		echo "    partclone's and diskcast's targets differ"
	fi
fi

# Summary table: medians, spread ((max-min)/median), ratios.
echo
echo "== medians of $runs runs (load now $(cut -d' ' -f1-3 /proc/loadavg))"
awk -v runs="$runs" '
	function median(s,    n, v, i, j, t) {
		n = split(s, v, " ")
		for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
		lo = v[1]; hi = v[n]
		return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
	}
	{
		if (!($1 in wall)) order[++k] = $1
		wall[$1] = wall[$1] " " $3; cpu[$1] = cpu[$1] " " $4; size[$1] = $5
	}
	END {
		for (i = 1; i <= k; i++) {
			t = order[i]
			W[t] = median(wall[t]); spread[t] = (W[t] > 0 ? (hi - lo) / W[t] * 100 : 0)
			C[t] = median(cpu[t])
		}
		pc = "capture:partclone+zstd"; dd = "capture:dd+pigz"; pr = "restore:partclone+zstd"
		printf "%-24s %8s %8s %7s %9s %8s %8s %8s %8s %8s\n", "tool", "wall s", "cpu s", "spread", "size GB", "wall/pc", "cpu/pc", "size/pc", "wall/dd", "size/dd"
		for (i = 1; i <= k; i++) {
			t = order[i]
			if (t !~ /^capture:/) continue
			printf "%-24s %8.2f %8.2f %6.0f%% %9.3f %8.2f %8.2f %8.2f %8.2f %8.2f\n", t, W[t], C[t], spread[t], size[t] / 1e9,
				W[t] / W[pc], C[t] / C[pc], size[t] / size[pc], W[t] / W[dd], size[t] / size[dd]
		}
		for (i = 1; i <= k; i++) {
			t = order[i]
			if (t !~ /^restore:/) continue
			printf "%-24s %8.2f %8.2f %6.0f%% %9s %8.2f %8.2f\n", t, W[t], C[t], spread[t], "-", W[t] / W[pr], C[t] / C[pr]
		}
		print "pc = partclone+zstd (restore rows: its restore), dd = dd | pigz; ratios < 1 beat the reference."
		print "spread = (max - min) / median of wall time over the runs."
	}' "$out/results"

if [[ $keep -eq 0 ]]; then
	rm -f "$out"/target.* "$out"/out.*
fi
if [[ $failures -gt 0 ]]; then
	die "$failures check(s) failed: see FAIL lines above"
fi
