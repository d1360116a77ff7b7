#!/usr/bin/env bash
# capture.sh compares diskcast's capture and restore of filesystem images
# (ext4, and with --fs also NTFS, FAT32 and XFS) with the peers on the same
# machine in the same invocation:
#   capture  partclone.<fs> -c | zstd -T0 -3   (what Clonezilla does)
#            dd | pigz                          (the raw .img.gz habit; ext4
#                                               only unless --with-dd-pigz)
#            dd | zstd -T0 -3                   (--with-dd-zstd)
#            diskcast capture
#   restore  zstd -d | partclone.<fs> -r
#            diskcast restore
# Each is run N times, interleaved and in rotating order so machine noise
# spreads over all tools; the table shows medians and ratios to partclone
# (and to dd | pigz for capture). Wall time and CPU time (user+sys of the
# whole pipeline) come from /usr/bin/time. Outputs and restore targets are
# fsynced inside the timed command, so every tool pays for its own writes.
# Every restored target is checked with the filesystem's own checker
# (e2fsck -fn, ntfsfix -n, fsck.vfat -n, xfs_repair -n). ext4 targets have
# their used blocks (per the source's bitmaps) compared byte for byte with
# the source image; the NTFS, FAT32 and XFS images are built on zeroed files,
# so their targets are compared whole: diskcast's must equal the source
# byte for byte, partclone's differences are reported.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

usage() {
	cat <<EOF
usage: ${0##*/} [--runs N] [--fs LIST] [--image PATH | --dirty] [--diskcast PATH]
                [--with-dd-zstd] [--with-dd-pigz] [--no-diskcast]
                [--verify all|last|none] [--keep]

Time capture and restore of filesystem images: partclone+zstd, dd|pigz and
diskcast (medians of N runs, default 3), then print a table of ratios.
  --fs LIST        comma-separated filesystems to bench, in order: ext4, ntfs,
                   fat, xfs (default ext4). Images: \$BENCH_DIR/ext4-8g.img and
                   ntfs-3g.img, fat-3g.img, xfs-3g.img, built by mkdata-<fs>.sh
                   when missing
  --image PATH     image to read (only with a single --fs; default above)
  --dirty          ext4: use \$BENCH_DIR/ext4-8g-dirty.img (stale data in free space)
  --diskcast PATH  diskcast binary (default $root/bin/diskcast)
  --with-dd-zstd   also time dd | zstd -T0 -3 (raw copy, same compressor)
  --with-dd-pigz   also time dd | pigz for NTFS, FAT32 and XFS (always for ext4)
  --no-diskcast    time the peers only
  --verify WHICH   check restored targets after every run (all, default),
                   the last run only, or not at all
  --keep           keep outputs and targets in \$BENCH_DIR/out
BENCH_DIR is $BENCH_DIR. Extra diskcast flags: DISKCAST_CAPTURE_FLAGS,
DISKCAST_RESTORE_FLAGS.
EOF
}

runs=3 fslist=ext4 image='' dirty=0 diskcast=$root/bin/diskcast with_ddzst=0 with_ddpigz=0 no_diskcast=0 verify=all keep=0
while [[ $# -gt 0 ]]; do
	case $1 in
	--runs) runs=${2:?--runs needs a number}; shift ;;
	--fs) fslist=${2:?--fs needs a list such as ext4,ntfs,fat,xfs}; shift ;;
	--image) image=${2:?--image needs a path}; shift ;;
	--dirty) dirty=1 ;;
	--diskcast) diskcast=${2:?--diskcast needs a path}; shift ;;
	--with-dd-zstd) with_ddzst=1 ;;
	--with-dd-pigz) with_ddpigz=1 ;;
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
IFS=, read -ra filesystems <<<"$fslist"
for fs in "${filesystems[@]}"; do
	[[ $fs =~ ^(ext4|ntfs|fat|xfs)$ ]] || die "--fs $fslist: $fs is not one of ext4, ntfs, fat, xfs"
done
[[ -z $image || ${#filesystems[@]} -eq 1 ]] || die "--image needs a single --fs"
[[ $dirty -eq 0 || $fslist == ext4 ]] || die "--dirty is for ext4 only"
[[ $(id -u) -eq 0 ]] || die "run as root: missing peer tools are installed with apt-get, and the peers run on image files as root"

need zstd zstd
need pigz pigz
need cmp diffutils
[[ -x /usr/bin/time ]] || need /usr/bin/time time
for fs in "${filesystems[@]}"; do
	case $fs in
	ext4) need partclone.ext4 partclone; need e2fsck e2fsprogs ;;
	ntfs) need partclone.ntfs partclone; need ntfsfix ntfs-3g ;;
	fat) need partclone.fat32 partclone; need fsck.vfat dosfstools ;;
	xfs) need partclone.xfs partclone; need xfs_repair xfsprogs ;;
	esac
done

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
: >"$out/results"
failures=0
q() { printf '%q' "$1"; }
O=$(q "$out")

# fs_check FS IMG: the filesystem's own checker, read-only.
fs_check() {
	case $1 in
	ext4) e2fsck -fn "$2" ;;
	ntfs) ntfsfix -n "$2" ;;
	fat) fsck.vfat -n "$2" ;;
	xfs) xfs_repair -n "$2" ;;
	esac
}
fs_checker_name() {
	case $1 in
	ext4) echo "e2fsck -fn" ;; ntfs) echo "ntfsfix -n" ;; fat) echo "fsck.vfat -n" ;; xfs) echo "xfs_repair -n" ;;
	esac
}
partclone_of() {
	case $1 in
	ext4) echo partclone.ext4 ;; ntfs) echo partclone.ntfs ;; fat) echo partclone.fat32 ;; xfs) echo partclone.xfs ;;
	esac
}

# check_target FS NAME TARGET: the checker, then the comparison with the
# source: used blocks for ext4, the whole image for the others.
check_target() {
	local fs=$1 name=$2 tgt=$3 off len bad=0 diff n at ndiff
	local checked
	checked="$(fs_checker_name "$fs") clean"
	if ! fs_check "$fs" "$tgt" >"$out/$name.fsck" 2>&1; then
		if [[ $name == restore:diskcast || $fs == ext4 ]]; then
			note "FAIL $fs $name: $(fs_checker_name "$fs") $tgt: $(tail -n 3 "$out/$name.fsck" | tr '\n' ' ')"
			failures=$((failures + 1))
			return
		fi
		# A peer's defect is reported, not counted as a failure of this run
		# (partclone 0.3.23's NTFS restore leaves out the backup boot sector).
		checked="$(fs_checker_name "$fs") FAILS: $({ grep -m 1 -E 'BAD|rror' "$out/$name.fsck" || tail -n 1 "$out/$name.fsck"; } | tr -s ' ')"
	fi
	if [[ $fs != ext4 ]]; then
		if cmp -s "$image" "$tgt"; then
			echo "    check $fs $name: $checked; identical to the source, byte for byte ($(gib "$img_bytes"))"
			return
		fi
		# cmp exits 1 when the files differ.
		ndiff=$({ cmp -l "$image" "$tgt" || true; } | wc -l)
		at=$({ cmp "$image" "$tgt" || true; } | sed -n 's/.* differ: \(char\|byte\) \([0-9]*\),.*/\2/p')
		at=$((at - 1))
		if [[ $name == restore:diskcast ]]; then
			note "FAIL $fs $name: $ndiff bytes differ from the source, the first at byte $at (the image's last 512 bytes start at $((img_bytes - 512)))"
			failures=$((failures + 1))
		else
			echo "    check $fs $name: $checked; $ndiff bytes differ from the source, the first at byte $at (the image's last 512 bytes start at $((img_bytes - 512)))"
		fi
		return
	fi
	while read -r off len; do
		if ! diff=$(cmp -n "$len" -i "$off:$off" "$image" "$tgt" 2>&1); then
			# cmp says "... differ: byte N, line L" (N counted from 1 at off).
			n=$(sed -n 's/.* differ: \(char\|byte\) \([0-9]*\),.*/\2/p' <<<"$diff")
			if [[ -n $n ]]; then
				at=$((off + n - 1))
				note "FAIL $fs $name: byte $at (block $((at / bs))) differs from the source, in a used block"
			else
				note "FAIL $fs $name: comparing used bytes $off..$((off + len - 1)): $diff"
			fi
			bad=1
			break
		fi
	done <"$out/used.ranges"
	if [[ $bad -eq 1 ]]; then
		failures=$((failures + 1))
	else
		echo "    check $fs $name: e2fsck clean; $(gib "$used_bytes") of used blocks identical to the source"
	fi
}

# timed FS TOOL RUN OUTPUT CMD: run CMD under /usr/bin/time, record
# "fs tool run wall cpu size load1" in results; OUTPUT is the file whose
# size counts.
timed() {
	local fs=$1 tool=$2 run=$3 output=$4 cmd=$5 wall user sys cpu size load
	sync # earlier runs' dirty pages are not this run's cost
	load=$(cut -d' ' -f1 /proc/loadavg)
	if ! /usr/bin/time -f '%e %U %S' -o "$out/time" bash -o pipefail -c "$cmd" >"$out/$tool.log" 2>&1; then
		die "$fs $tool (run $run) failed: $cmd
$(tail -n 5 "$out/$tool.log")"
	fi
	read -r wall user sys <"$out/time"
	cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
	size=0
	[[ -n $output ]] && size=$(stat -c %s "$output")
	echo "$fs $tool $run $wall $cpu $size $load" >>"$out/results"
	printf '  run %d  %-4s %-22s wall %7.2f s  cpu %7.2f s  load %5s%s\n' "$run" "$fs" "$tool" "$wall" "$cpu" "$load" \
		"$([[ -n $output ]] && echo "  size $(gb "$size")")"
}

fresh_target() { rm -f "$1"; truncate -s "$img_bytes" "$1"; }

capture_cmd() {
	case $1 in
	partclone+zstd) echo "$PC -q -L $O/pc-c.plog -c -s $I -o - | zstd -T0 -3 -q > $O/out.pc.zst && sync $O/out.pc.zst" ;;
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
	partclone+zstd) echo "zstd -d -c -q $O/out.pc.zst | $PC -q -L $O/pc-r.plog -r -s - -O $O/target.pc && sync $O/target.pc" ;;
	diskcast) echo "$(q "$diskcast") restore ${DISKCAST_RESTORE_FLAGS:-} $O/out.dci $O/target.dc && sync $O/target.dc" ;;
	esac
}
restore_target() {
	case $1 in
	partclone+zstd) echo "$out/target.pc" ;;
	diskcast) echo "$out/target.dc" ;;
	esac
}

rotate() { # rotate N ITEMS...: print ITEMS rotated left by N
	local n=$1; shift
	local a=("$@") i k
	k=${#a[@]}
	for ((i = 0; i < k; i++)); do echo "${a[(i + n) % k]}"; done
}

# Header: what ran where.
echo "== diskcast capture/restore benchmark"
echo "date:     $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "machine:  $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/^MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r)"
echo "load:     $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min)$([[ -r /proc/pressure/cpu ]] && echo ", cpu pressure $(awk '/^some/ { print $2 }' /proc/pressure/cpu)")"
echo "tools:    $(partclone.ext4 --version 2>&1 | grep -o 'v[0-9.]*' | head -n 1 | sed 's/^/partclone /'), $(zstd --version | grep -o 'v[0-9.]*' | sed 's/^/zstd /'), $(pigz --version 2>&1), $(dd --version | head -n 1)"
if [[ $use_diskcast -eq 1 ]]; then
	echo "          $("$diskcast" version 2>/dev/null | head -n 1 || echo 'diskcast (no version subcommand)') at $diskcast, built $(date -u -r "$diskcast" '+%Y-%m-%d %H:%M UTC')"
else
	echo "          diskcast: not timed"
fi
echo "method:   $runs runs per filesystem, tools interleaved in rotating order; medians below."
echo "          Page cache warmed first (one untimed cat of the image): every tool reads from memory."
echo "          Outputs and targets are fsynced inside the timed command; sync before each."
echo "          Targets are fresh sparse files of the image's size on the same disk ($out)."
echo "          The load column is the 1-minute load average when each command started."

# bench_fs FS: all runs on one filesystem's image.
bench_fs() {
	local fs=$1 r t order avail
	PC=$(partclone_of "$fs")
	if [[ -n $image_arg ]]; then
		image=$image_arg
	elif [[ $fs == ext4 && $dirty -eq 1 ]]; then
		image=$BENCH_DIR/ext4-8g-dirty.img
		"$here/mkdata-ext4.sh" --dirty "$image"
	elif [[ $fs == ext4 ]]; then
		image=$BENCH_DIR/ext4-8g.img
		"$here/mkdata-ext4.sh" "$image"
	else
		image=$BENCH_DIR/$fs-3g.img
		"$here/mkdata-$fs.sh" "$image"
	fi
	[[ -f $image || -b $image ]] || die "--image $image: no such file"
	fs_check "$fs" "$image" >"$out/source.fsck" 2>&1 || die "$image: $(fs_checker_name "$fs") fails on the source image; rebuild it"
	img_bytes=$(stat -L -c %s "$image")
	[[ -b $image ]] && img_bytes=$(blockdev --getsize64 "$image")
	if [[ $fs == ext4 ]]; then
		used_bytes=$(ext4_used_bytes "$image")
		# Used block ranges of the source, adjacent ranges merged, in bytes.
		bs=$(ext4_field "$image" "Block size")
		ext4_used_ranges "$image" blocks | sort -n | awk -v bs="$bs" '
			NR > 1 && $1 == hi + 1 { hi = $2; next }
			NR > 1 { printf "%.0f %.0f\n", lo * bs, (hi - lo + 1) * bs }
			{ lo = $1; hi = $2 }
			END { if (NR) printf "%.0f %.0f\n", lo * bs, (hi - lo + 1) * bs }' >"$out/used.ranges"
		used_what="$(gib "$used_bytes") used (dumpe2fs), $(wc -l <"$out/used.ranges") used ranges"
	else
		used_bytes=$(sed -n 's/^used-bytes //p' "$image.stamp" 2>/dev/null || true)
		used_bytes=${used_bytes:-$img_bytes}
		used_what="$(gib "$used_bytes") used (df at build time)"
	fi
	# Room for the outputs (at most the image each) and two restore targets.
	avail=$(df -B1 --output=avail "$out" | tail -n 1)
	((avail > used_bytes * 5 + 1073741824)) ||
		note "warning: $out has $(gib "$avail") free; outputs and targets may need up to $(gib $((used_bytes * 5)))"
	I=$(q "$image")

	capture_tools=(partclone+zstd)
	[[ $fs == ext4 || $with_ddpigz -eq 1 ]] && capture_tools+=(dd+pigz)
	[[ $with_ddzst -eq 1 ]] && capture_tools+=(dd+zstd)
	[[ $use_diskcast -eq 1 ]] && capture_tools+=(diskcast)
	restore_tools=(partclone+zstd)
	[[ $use_diskcast -eq 1 ]] && restore_tools+=(diskcast)

	echo
	echo "== $fs: $image: $(gib "$img_bytes"), $used_what"
	[[ -f $image.stamp ]] && echo "   $(grep -E '^(variant|fs|image-sha256)' "$image.stamp" | tr '\n' ' ')"
	echo "   $($PC --version 2>&1 | head -n 1)"
	note "warming the page cache: cat $image > /dev/null"
	cat "$image" >/dev/null

	for ((r = 1; r <= runs; r++)); do
		echo "-- $fs run $r/$runs (load $(cut -d' ' -f1 /proc/loadavg))"
		mapfile -t order < <(rotate $((r - 1)) "${capture_tools[@]}")
		for t in "${order[@]}"; do
			rm -f "$(capture_out "$t")"
			timed "$fs" "capture:$t" "$r" "$(capture_out "$t")" "$(capture_cmd "$t")"
		done
		mapfile -t order < <(rotate $((r - 1)) "${restore_tools[@]}")
		for t in "${order[@]}"; do
			fresh_target "$(restore_target "$t")"
			timed "$fs" "restore:$t" "$r" "" "$(restore_cmd "$t")"
		done
		if [[ $verify == all || ($verify == last && $r -eq $runs) ]]; then
			for t in "${restore_tools[@]}"; do
				check_target "$fs" "restore:$t" "$(restore_target "$t")"
			done
		fi
	done
	if [[ $use_diskcast -eq 1 && $verify != none ]]; then
		if cmp -s "$out/target.pc" "$out/target.dc"; then
			echo "    partclone's and diskcast's targets are identical, free space included"
		else
			echo "    partclone's and diskcast's targets differ in $({ cmp -l "$out/target.pc" "$out/target.dc" || true; } | wc -l) bytes (see the checks above)"
		fi
	fi
	if [[ $keep -eq 0 ]]; then
		rm -f "$out"/target.* "$out"/out.*
	fi
}

image_arg=$image
for fs in "${filesystems[@]}"; do
	bench_fs "$fs"
done

# Summary table per filesystem: medians, spread ((max-min)/median), ratios
# to partclone+zstd (and to dd | pigz where it ran).
echo
echo "== medians of $runs runs (load now $(cut -d' ' -f1-3 /proc/loadavg))"
awk '
	function median(s,    n, v, i, j, t) {
		n = split(s, v, " ")
		for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
		lo = v[1]; hi = v[n]
		return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
	}
	function ratio(a, b) { return b > 0 ? sprintf("%.2f", a / b) : "-" }
	{
		k = $1 SUBSEP $2
		if (!(k in wall)) { order[++n] = k; if (!($1 in seenfs)) { seenfs[$1] = 1; fss[++nf] = $1 } }
		wall[k] = wall[k] " " $4; cpu[k] = cpu[k] " " $5; size[k] = $6
		load[k] = load[k] (load[k] == "" ? "" : ",") $7
	}
	END {
		for (i = 1; i <= n; i++) {
			k = order[i]
			W[k] = median(wall[k]); spread[k] = (W[k] > 0 ? (hi - lo) / W[k] * 100 : 0)
			C[k] = median(cpu[k])
		}
		printf "%-4s %-24s %8s %8s %7s %9s %8s %8s %9s %8s %8s  %s\n", "fs", "tool", "wall s", "cpu s", "spread", "size GB", "wall/pc", "cpu/pc", "size/pc", "wall/dd", "size/dd", "load1 per run"
		for (f = 1; f <= nf; f++) {
			fs = fss[f]
			pc = fs SUBSEP "capture:partclone+zstd"; dd = fs SUBSEP "capture:dd+pigz"; pr = fs SUBSEP "restore:partclone+zstd"
			for (i = 1; i <= n; i++) {
				k = order[i]; split(k, kk, SUBSEP)
				if (kk[1] != fs || kk[2] !~ /^capture:/) continue
				printf "%-4s %-24s %8.2f %8.2f %6.0f%% %9.3f %8s %8s %9s %8s %8s  %s\n", fs, kk[2], W[k], C[k], spread[k], size[k] / 1e9,
					ratio(W[k], W[pc]), ratio(C[k], C[pc]), (size[pc] > 0 ? sprintf("%.4f", size[k] / size[pc]) : "-"),
					ratio(W[k], W[dd]), ratio(size[k], size[dd]), load[k]
			}
			for (i = 1; i <= n; i++) {
				k = order[i]; split(k, kk, SUBSEP)
				if (kk[1] != fs || kk[2] !~ /^restore:/) continue
				printf "%-4s %-24s %8.2f %8.2f %6.0f%% %9s %8s %8s %9s %8s %8s  %s\n", fs, kk[2], W[k], C[k], spread[k], "-",
					ratio(W[k], W[pr]), ratio(C[k], C[pr]), "-", "-", "-", load[k]
			}
		}
		print "pc = partclone.<fs> | zstd -T0 -3 (restore rows: zstd -d | partclone.<fs> -r), dd = dd | pigz;"
		print "ratios < 1 beat the reference. spread = (max - min) / median of wall time over the runs."
	}' "$out/results"

if [[ $failures -gt 0 ]]; then
	die "$failures check(s) failed: see FAIL lines above"
fi
