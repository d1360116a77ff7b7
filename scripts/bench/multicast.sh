#!/usr/bin/env bash
# multicast.sh compares multicast imaging end to end, from the image on the
# server to a restored ext4 filesystem on every receiver's target, in one
# invocation on one topology: network namespaces on an isolated bridge
# (lib-net.sh), host 0 sending, hosts 1..N receiving.
#
#   udpcast   as Clonezilla and FOG run it: udp-sender --file IMG.pc.zst,
#             each receiver udp-receiver | zstd -d | partclone.ext4 -r
#   uftp      uftp delivers IMG.pc.zst to every receiver's disk (uftpd), then
#             each runs zstd -d | partclone.ext4 -r on it (uftpd's
#             post-receive hook, so each starts as soon as its file is in)
#   diskcast  diskcast send IMG.dci / diskcast receive --target
#
# Rows: every tool to R receivers (default 3) at 0% loss and with L% loss
# (default 1) on receiver 1 only; diskcast to 1 and to S (default 8)
# receivers at a fixed rate. All tools get the same rate cap. Each row runs
# N times (default 3), tools interleaved so machine noise spreads over all;
# the table shows medians.
#
# Times start when the sender starts (receivers are already waiting) and end
# when a receiver's restore has finished. A receiver counts as correct when
# its exit status is 0, e2fsck -fn passes on its target and the target
# equals the source image byte for byte (targets start as fresh zero-filled
# sparse files and the source image has zeros in its free space, so a
# correct restore reproduces it exactly). CPU is user+sys of everything a
# receiver ran (/usr/bin/time over the pipeline; for uftp, uftpd's own CPU
# from /proc plus the restore's). "rx" is the bytes each receiver's
# interface took in, as a multiple of the payload the tool sends (.pc.zst or
# .dci): 1.00 means no duplicate or extra data. "ctl" is what each receiver
# sent (requests, acknowledgements), in kbit/s over the run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
# shellcheck source=lib-net.sh
source "$here/lib-net.sh"

usage() {
	cat <<EOF
usage: ${0##*/} [--size SIZE | --image PATH] [--runs N] [--rate R]
                [--receivers N] [--loss PCT] [--scale N] [--scale-rate R]
                [--tools LIST] [--timeout SEC] [--targets DIR] [--keep]

End-to-end multicast imaging: udpcast and uftp (with zstd | partclone) and
diskcast, to receivers in network namespaces on an isolated bridge.
  --size SIZE      ext4 image size made by mkdata-ext4.sh (default 8G; 1G or
                   2G for a quick run); the image is \$BENCH_DIR/ext4-SIZE.img
  --image PATH     use this ext4 image instead (zeros in its free space)
  --runs N         runs per row, median shown (default 3)
  --rate R         rate cap of every tool, udpcast syntax (default 600m)
  --receivers N    receivers of the comparison rows (default 3)
  --loss PCT       loss on receiver 1 in the loss rows (default 1; 0: no rows)
  --scale N        receivers of diskcast's scaling row (default 8; 0: none)
  --scale-rate R   rate cap of the scaling rows (default 100m, below the CPU limit of 8 on 2 cores)
  --tools LIST     comma-separated: udpcast,uftp,diskcast (default all)
  --timeout SEC    give up on a run after SEC (default from size and rate)
  --targets DIR    where restore targets go (default /dev/shm when they fit
                   in memory, else \$BENCH_DIR/targets; decided separately
                   for the comparison rows and the scaling rows)
  --keep           keep the logs of every run (they are always kept on failure)
BENCH_DIR is $BENCH_DIR. DISKCAST names the diskcast binary (default
$root/bin/diskcast). UDPCAST_SENDER_OPTS adds udp-sender options.
EOF
}

size=8G image= runs=3 rate=600m nrecv=3 loss=1 scale=8 scale_rate=100m
tools=udpcast,uftp,diskcast timeout= targets= keep=0
while [[ $# -gt 0 ]]; do
	case $1 in
	--size) size=${2:?--size needs a size}; shift ;;
	--image) image=${2:?--image needs a path}; shift ;;
	--runs) runs=${2:?}; shift ;;
	--rate) rate=${2:?}; shift ;;
	--receivers) nrecv=${2:?}; shift ;;
	--loss) loss=${2:?}; shift ;;
	--scale) scale=${2:?}; shift ;;
	--scale-rate) scale_rate=${2:?}; shift ;;
	--tools) tools=${2:?}; shift ;;
	--timeout) timeout=${2:?}; shift ;;
	--targets) targets=${2:?}; shift ;;
	--keep) keep=1 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument $1" ;;
	esac
	shift
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "--runs $runs: want a positive number"
[[ $nrecv =~ ^[1-9][0-9]*$ ]] || die "--receivers $nrecv: want a positive number"
[[ $loss =~ ^[0-9]+$ ]] && ((loss <= 100)) || die "--loss $loss: want 0 to 100"
[[ $scale =~ ^[0-9]+$ ]] || die "--scale $scale: want a number"
((nrecv <= 200 && scale <= 200)) || die "at most 200 receivers"

# bps RATE prints RATE (600m, 1g, 500k, 12345) in bit/s.
bps() {
	local r=${1,,} m=1
	case $r in
	*k) m=1000 r=${r%k} ;; *m) m=1000000 r=${r%m} ;; *g) m=1000000000 r=${r%g} ;;
	esac
	[[ $r =~ ^[0-9]+$ ]] || die "rate $1: want a number with k, m or g"
	echo $((r * m))
}
rate_bps=$(bps "$rate")
scale_bps=$(bps "$scale_rate")

want_udpcast=0 want_uftp=0 want_diskcast=0
IFS=, read -ra tool_list <<<"$tools"
for t in "${tool_list[@]}"; do
	case $t in
	udpcast) want_udpcast=1 ;; uftp) want_uftp=1 ;; diskcast) want_diskcast=1 ;;
	*) die "--tools: unknown tool $t (want udpcast, uftp, diskcast)" ;;
	esac
done

[[ $(id -u) -eq 0 ]] || die "run as root: the benchmark builds network namespaces"
need ip iproute2
need nft nftables
need partclone.ext4 partclone
need zstd zstd
need e2fsck e2fsprogs
need cmp diffutils
[[ -x /usr/bin/time ]] || need time time
((want_udpcast)) && { need udp-sender udpcast; need udp-receiver udpcast; }
((want_uftp)) && { need uftp uftp; need uftpd uftp; }

diskcast=${DISKCAST:-$root/bin/diskcast}
diskcast_ok=0 diskcast_why=
if ((want_diskcast)); then
	if [[ ! -x $diskcast ]]; then
		diskcast_why="$diskcast not found (make build)"
	else
		diskcast_ok=1
	fi
	((diskcast_ok)) || note "diskcast rows skipped: $diskcast_why"
fi

# The image and what the tools send.
if [[ -z $image ]]; then
	image=$BENCH_DIR/ext4-${size,,}.img
	"$here/mkdata-ext4.sh" "$image" "$size"
fi
[[ -f $image ]] || die "$image: no such image"
image=$(cd "$(dirname "$image")" && pwd)/$(basename "$image")
img_size=$(stat -c %s "$image")
used=$(ext4_used_bytes "$image")
[[ $used -gt 0 ]] || die "$image: not an ext4 filesystem (dumpe2fs found no blocks)"
pczst=${image%.img}.pc.zst
if [[ ! -s $pczst || $pczst -ot $image ]]; then
	note "making $pczst (partclone.ext4 -c | zstd -T0 -3, as Clonezilla stores it)"
	partclone.ext4 -c -s "$image" -o - 2>"$pczst.log" | zstd -T0 -3 -q >"$pczst.tmp" ||
		die "partclone.ext4 -c | zstd failed: $(tail -n 3 "$pczst.log")"
	mv "$pczst.tmp" "$pczst"
fi
dci=${image%.img}.dci
if ((diskcast_ok)) && [[ ! -s $dci || $dci -ot $image ]]; then
	note "making $dci (diskcast capture)"
	"$diskcast" capture --force "$image" "$dci" >/dev/null || die "diskcast capture of $image failed"
fi
pczst_size=$(stat -c %s "$pczst")
dci_size=0
((diskcast_ok)) && dci_size=$(stat -c %s "$dci")

# Targets hold the used bytes of the filesystem; uftp's received file sits
# next to its target until restored. They go on tmpfs when they fit in
# available memory with 2 GiB to spare, else on disk. The comparison rows
# and the scaling rows (1 and S receivers, one medium for both) decide
# separately; --targets forces one place for all.
avail=$(($(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo) * 1024))
spare=$((2 * 1024 * 1024 * 1024))
# place NAME BYTES prints where NAME's targets go.
place() {
	if [[ -n $targets ]]; then
		echo "$targets"
	elif (($2 + spare < avail)); then
		echo /dev/shm
	else
		note "$1 targets on disk ($BENCH_DIR/targets): $(gib $(($2 + spare))) needed, $(gib "$avail") of memory available"
		echo "$BENCH_DIR/targets"
	fi
}
per_target=$used
((want_uftp)) && per_target=$((used + pczst_size))
main_targets=$(place "the comparison rows'" $((nrecv * per_target)))
scale_targets=$main_targets
((diskcast_ok && scale > 0)) && scale_targets=$(place "the scaling rows'" $((scale * used)))
mkdir -p "$main_targets" "$scale_targets"
max_recv=$nrecv
((diskcast_ok && scale > max_recv)) && max_recv=$scale
# Default timeout: six times the time the payload takes at the rate cap,
# plus two minutes for start-up and restore.
if [[ -z $timeout ]]; then
	timeout=$((120 + 6 * pczst_size * 8 / (rate_bps < scale_bps ? rate_bps : scale_bps)))
fi

out=$BENCH_DIR/multicast-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
results=$out/results.tsv
printf 'tool\treceivers\tloss\trun\treceiver\trc\tseconds\tcpu\tcorrect\trx_bytes\ttx_bytes\n' >"$results"

tmp_prefix=
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	netlab_down
	if [[ -n $NETLAB_ID_SAVED ]]; then
		rm -rf "$main_targets/$NETLAB_ID_SAVED-"* "$scale_targets/$NETLAB_ID_SAVED-"*
	fi
	exit "$rc"
}
NETLAB_ID_SAVED=
trap cleanup EXIT
trap 'exit 130' INT TERM

hosts=$((1 + max_recv))
netlab_up "$hosts" || die "could not build the network lab"
NETLAB_ID_SAVED=$NETLAB_ID
note "lab $NETLAB_ID: $hosts hosts on 198.18.0.0/24; image $image ($(gib "$img_size"), $(gib "$used") used); .pc.zst $(gb "$pczst_size")$(((dci_size)) && echo ", .dci $(gb "$dci_size")"); targets in $main_targets$([[ $scale_targets != "$main_targets" ]] && echo " (scaling rows: $scale_targets)"); timeout ${timeout}s"

now() { date +%s.%N; }

# iface_bytes HOST prints the rx and tx bytes of HOST's veth.
iface_bytes() {
	local i
	i=$(netlab_iface "$1")
	echo "$(netlab_exec "$1" cat "/sys/class/net/$i/statistics/rx_bytes") $(netlab_exec "$1" cat "/sys/class/net/$i/statistics/tx_bytes")"
}

# proc_cpu PID prints the user+sys seconds a running process has used.
proc_cpu() {
	awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# start_receiver DIR R CMD... runs CMD in receiver R's namespace under
# /usr/bin/time, and writes "rc end-time" to DIR/rR.end when it is done.
start_receiver() {
	local dir=$1 r=$2
	shift 2
	(
		rc=0
		netlab_exec "$r" /usr/bin/time -f '%e %U %S' -o "$dir/r$r.time" "$@" >"$dir/r$r.log" 2>&1 || rc=$?
		echo "$rc $(now)" >"$dir/r$r.end"
	) 2>/dev/null &
}

# wait_ends DIR N DEADLINE [STARTS] waits until DIR/r1.end .. rN.end and
# DIR/s.end exist, or the deadline passes (returns 1). With STARTS=1 (uftp,
# whose receivers restore from a post-receive hook), a receiver whose hook
# has not started (no rR.start) 15 s after the sender ended never got the
# file: the sender gave up on it. It is marked "aborted".
wait_ends() {
	local dir=$1 n=$2 deadline=$3 starts=${4:-0} r missing sent_end
	while :; do
		missing=0
		[[ -f $dir/s.end ]] || missing=1
		for ((r = 1; r <= n; r++)); do
			[[ -f $dir/r$r.end ]] && continue
			missing=1
			if ((starts)) && [[ -f $dir/s.end && ! -f $dir/r$r.start ]]; then
				sent_end=$(cut -d' ' -f2 "$dir/s.end")
				if (($(date +%s) > ${sent_end%.*} + 15)); then
					echo "aborted $(now)" >"$dir/r$r.end"
				fi
			fi
		done
		((missing)) || return 0
		if (($(date +%s) > deadline)); then return 1; fi
		sleep 0.2
	done
}

# run_case TOOL N LOSS RUN RATE TARGETDIR: one run of one tool to receivers
# 1..N.
run_case() {
	local tool=$1 n=$2 lp=$3 run=$4 rate=$5 r dir t0 deadline group port key rbps
	rbps=$(bps "$rate")
	tmp_prefix=$6/$NETLAB_ID-
	dir=$out/$tool-n$n-loss$lp-run$run
	mkdir -p "$dir"
	note "$tool to $n receiver(s), ${lp}% loss on receiver 1, rate $rate, run $run"
	for ((r = 1; r <= n; r++)); do
		rm -f "$tmp_prefix"r$r.img
		truncate -s "$img_size" "$tmp_prefix"r$r.img
		rm -rf "$tmp_prefix"recv$r
		mkdir -p "$tmp_prefix"recv$r
	done
	netlab_loss 1 "$lp" || die "setting ${lp}% loss on receiver 1 failed"
	local -a before=()
	for ((r = 1; r <= n; r++)); do before[r]=$(iface_bytes "$r"); done
	group=239.77.$((RANDOM % 250)).$((1 + RANDOM % 250)) port=$((20000 + RANDOM % 20000 * 2))
	deadline=$(($(date +%s) + timeout))

	case $tool in
	udpcast)
		for ((r = 1; r <= n; r++)); do
			# partclone writes a regular-file target with -O (-o insists on
			# creating it); Clonezilla's block devices take -o.
			start_receiver "$dir" "$r" bash -o pipefail -c '
				udp-receiver --nokbd --interface "$1" --portbase "$2" --mcast-rdv-address "$3" --ttl 1 2>"$4.udp" |
					zstd -d -q | partclone.ext4 -r -s - -O "$5" 2>"$4.partclone" >/dev/null' \
				_ "$(netlab_iface "$r")" "$port" "$group" "$dir/r$r" "$tmp_prefix"r$r.img
		done
		sleep 1
		t0=$(now)
		(
			rc=0
			# shellcheck disable=SC2086
			netlab_exec 0 /usr/bin/time -f '%e %U %S' -o "$dir/s.time" \
				udp-sender --nokbd --file "$pczst" --interface "$(netlab_iface 0)" --portbase "$port" \
				--mcast-rdv-address "$group" --mcast-data-address "${group%.*}.$((${group##*.} + 1))" --ttl 1 \
				--min-receivers "$n" --max-wait 60 --max-bitrate "$rate" ${UDPCAST_SENDER_OPTS:-} \
				>"$dir/s.log" 2>&1 </dev/null || rc=$?
			echo "$rc $(now)" >"$dir/s.end"
		) 2>/dev/null &
		;;
	uftp)
		local ids=
		cat >"$dir/post.sh" <<-'EOF'
			#!/bin/bash
			# uftpd calls this as: post.sh -I SESSION FILE when FILE is in.
			# uftpd ignores SIGCHLD, which would keep time from waiting for
			# its child: restore the default first.
			f=$3 rc=0
			: >"$RES.start"
			env --default-signal=CHLD /usr/bin/time -f '%e %U %S' -o "$RES.time" bash -o pipefail -c \
				'zstd -d -q -c "$1" | partclone.ext4 -r -s - -O "$2" >/dev/null' _ "$f" "$TARGET" >"$RES.log" 2>&1 || rc=$?
			echo "$rc $(date +%s.%N)" >"$RES.end"
			rm -f "$f"
		EOF
		chmod +x "$dir/post.sh"
		for ((r = 1; r <= n; r++)); do
			(RES=$dir/r$r TARGET=$tmp_prefix"r$r.img" netlab_exec "$r" uftpd -d -I "$(netlab_iface "$r")" \
				-M "$group" -p "$port" -D "$tmp_prefix"recv$r -s "$dir/post.sh" \
				>"$dir/r$r.uftpd" 2>&1) 2>/dev/null &
			# uftpd's client ID is its IPv4 address; -H makes the group closed
			# (the sender waits for exactly these receivers).
			ids+=$(printf '0x%02X%02X%02X%02X,' $(netlab_ip "$r" | tr . ' '))
		done
		sleep 1
		t0=$(now)
		(
			rc=0
			netlab_exec 0 /usr/bin/time -f '%e %U %S' -o "$dir/s.time" \
				uftp -I "$(netlab_iface 0)" -M "$group" -P "${group%.*}.$((${group##*.} + 1))" -p "$port" \
				-R $((rbps / 1000)) -C none -Y none -t 1 -H "${ids%,}" "$pczst" \
				>"$dir/s.log" 2>&1 </dev/null || rc=$?
			echo "$rc $(now)" >"$dir/s.end"
		) 2>/dev/null &
		;;
	diskcast)
		key=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
		for ((r = 1; r <= n; r++)); do
			start_receiver "$dir" "$r" "$diskcast" receive --target "$tmp_prefix"r$r.img \
				--group "$group:$port" --interface "$(netlab_iface "$r")" --session-key "$key"
		done
		sleep 1
		t0=$(now)
		(
			rc=0
			netlab_exec 0 /usr/bin/time -f '%e %U %S' -o "$dir/s.time" \
				"$diskcast" send "$dci" --group "$group:$port" --interface "$(netlab_iface 0)" --rate "$rate" \
				--min-receivers "$n" --max-wait 60s --session-key "$key" >"$dir/s.log" 2>&1 </dev/null || rc=$?
			echo "$rc $(now)" >"$dir/s.end"
		) 2>/dev/null &
		;;
	esac

	local timed_out=0
	wait_ends "$dir" "$n" "$deadline" "$([[ $tool == uftp ]] && echo 1 || echo 0)" || timed_out=1
	if ((timed_out)); then
		note "$tool run $run: timeout after ${timeout}s; killing what still runs"
		touch "$dir/TIMEOUT"
	fi
	# uftpd never exits on its own: take its CPU, then end it (everything
	# left in the lab is this run's).
	local -a daemon_cpu=()
	local p
	if [[ $tool == uftp ]]; then
		for ((r = 1; r <= n; r++)); do
			daemon_cpu[r]=0
			for p in $(ip netns pids "$(netlab_ns "$r")"); do
				[[ $(cat "/proc/$p/comm" 2>/dev/null) == uftpd ]] &&
					daemon_cpu[r]=$(awk -v a="${daemon_cpu[r]}" -v b="$(proc_cpu "$p")" 'BEGIN { print a + b }')
			done
		done
	fi
	netlab_kill_all
	wait 2>/dev/null || true
	netlab_loss 1 0 || die "removing the loss rule of receiver 1 failed"

	local end rc secs cpu ok after rx tx bad=0
	for ((r = 1; r <= n; r++)); do
		after=$(iface_bytes "$r")
		rx=$((${after% *} - ${before[r]% *})) tx=$((${after#* } - ${before[r]#* }))
		rc=timeout secs=NA cpu=NA ok=0
		if [[ -f $dir/r$r.end ]]; then
			read -r rc end <"$dir/r$r.end"
			secs=$(awk -v a="$end" -v b="$t0" 'BEGIN { printf "%.2f", a - b }')
			[[ -f $dir/r$r.time ]] && cpu=$(awk -v d="${daemon_cpu[r]:-0}" 'END { printf "%.2f", $2 + $3 + d }' "$dir/r$r.time")
		fi
		if [[ $rc == 0 ]]; then
			if ! e2fsck -fn "$tmp_prefix"r$r.img >"$dir/r$r.fsck" 2>&1; then
				note "$tool run $run receiver $r: e2fsck -fn failed (see $dir/r$r.fsck)"
			elif ! cmp -s "$image" "$tmp_prefix"r$r.img; then
				note "$tool run $run receiver $r: target differs from the source image"
			else
				ok=1
			fi
		elif [[ $rc == aborted ]]; then
			note "$tool run $run receiver $r: the sender gave up on it, it never got the file (logs in $dir)"
		else
			note "$tool run $run receiver $r: exit $rc (logs in $dir)"
		fi
		((ok)) || bad=1
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$n" "$lp" "$run" "$r" "$rc" "$secs" "$cpu" "$ok" "$rx" "$tx" >>"$results"
		rm -f "$tmp_prefix"r$r.img
		rm -rf "$tmp_prefix"recv$r
	done
	if ((!keep && !bad && !timed_out)); then
		rm -rf "$dir"
	fi
}

for ((run = 1; run <= runs; run++)); do
	for t in udpcast uftp diskcast; do
		case $t in
		udpcast) ((want_udpcast)) || continue ;;
		uftp) ((want_uftp)) || continue ;;
		diskcast) ((diskcast_ok)) || continue ;;
		esac
		run_case "$t" "$nrecv" 0 "$run" "$rate" "$main_targets"
		((loss > 0)) && run_case "$t" "$nrecv" "$loss" "$run" "$rate" "$main_targets"
	done
	if ((diskcast_ok && scale > 0)); then
		run_case diskcast 1 0 "$run" "$scale_rate" "$scale_targets"
		run_case diskcast "$scale" 0 "$run" "$scale_rate" "$scale_targets"
	fi
done

# The table: per row, medians over the runs of: the time until every
# correct receiver finished, the same for the receivers other than the lossy
# one, the CPU per correct receiver and per restored GB, rx and ctl; and the
# count of correct targets over all runs.
report() {
	awk -F '\t' -v used="$used" -v pcz="$pczst_size" -v dci="$dci_size" -v loss="$loss" '
	function median(list,    a, n, i, j, t) {
		n = split(list, a, " ")
		if (n == 0) return "NA"
		for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	function num(v, fmt) { return v == "NA" ? v : sprintf(fmt, v) }
	NR == 1 { next }
	{
		key = $1 SUBSEP $2 SUBSEP $3
		if (!(key in seen)) { seen[key] = 1; order[++nk] = key }
		run = key SUBSEP $4
		runs[key] = runs[key] " " $4
		total[key]++; correct[key] += $9
		# Times and CPU of the receivers that ended correct.
		if ($9 == 1) {
			if (!(run in all) || $7 > all[run]) all[run] = $7
			if ($5 != 1 && (!(run in others) || $7 > others[run])) others[run] = $7
			cpu[key] = cpu[key] " " $8
		}
		payload = ($1 == "diskcast" ? dci : pcz)
		if (payload > 0) rxs[key] = rxs[key] " " $10 / payload
		if ($7 != "NA" && $7 > 0) ctl[key] = ctl[key] " " $11 * 8 / $7 / 1000
	}
	END {
		printf "%-9s %4s %5s %9s %10s %8s %8s %6s %8s %8s\n", "tool", "rcv", "loss", "all (s)", "others (s)", "correct", "cpu/rcv", "cpu/GB", "rx", "ctl kb/s"
		for (k = 1; k <= nk; k++) {
			key = order[k]; split(key, f, SUBSEP)
			la = ""; lo = ""; delete done
			n = split(runs[key], rl, " ")
			for (i = 1; i <= n; i++) {
				run = key SUBSEP rl[i]
				if (run in done) continue
				done[run] = 1
				if (run in all) la = la " " all[run]
				if (run in others) lo = lo " " others[run]
			}
			c = median(cpu[key])
			printf "%-9s %4d %4d%% %9s %10s %8s %8s %6s %8s %8s\n", f[1], f[2], f[3],
				num(median(la), "%.1f"), (f[3] > 0 ? num(median(lo), "%.1f") : "-"), correct[key] "/" total[key],
				num(c, "%.2f"), (c == "NA" ? "NA" : sprintf("%.2f", c / (used / 1e9))),
				num(median(rxs[key]), "%.3f"), num(median(ctl[key]), "%.0f")
		}
	}' "$results"
}

echo
echo "multicast imaging, end to end: $(basename "$image") ($(gib "$img_size"), $(gib "$used") used), .pc.zst $(gb "$pczst_size")$(((dci_size)) && echo ", .dci $(gb "$dci_size")")"
echo "rate cap $rate (scaling rows $scale_rate), loss on receiver 1 only, medians of $runs run(s); $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "all: until every correct receiver's restore finished; others: the same without the lossy receiver;"
echo "correct: exit 0, e2fsck -fn passes and target == source; cpu: user+sys per receiver, and per GB restored;"
echo "rx: bytes into each receiver / payload sent; ctl: what each receiver sent, kbit/s"
report | tee "$out/table.txt"
((want_diskcast && !diskcast_ok)) && echo "diskcast: not run: $diskcast_why"

# Ratios against the targets of the design, where the rows exist.
awk -F '\t' -v n="$nrecv" -v loss="$loss" -v scale="$scale" '
	function median(list,    a, k, i, j, t) {
		k = split(list, a, " "); if (k == 0) return ""
		for (i = 2; i <= k; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
		return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
	}
	NR == 1 || $9 != 1 { next }
	{
		r = $1 SUBSEP $2 SUBSEP $3 SUBSEP $4
		if ($7 > all[r]) all[r] = $7
		if ($5 != 1 && $7 > oth[r]) oth[r] = $7
		keys[r] = 1
		# CPU compares the comparison rows only: the scaling rows run at
		# another rate, and at a lower rate a receiver idles longer.
		if ($2 == n) cpu[$1] = cpu[$1] " " $8
	}
	END {
		for (r in keys) {
			split(r, f, SUBSEP); row = f[1] SUBSEP f[2] SUBSEP f[3]
			A[row] = A[row] " " all[r]; O[row] = O[row] " " oth[r]
		}
		d0 = median(A["diskcast", n, 0]); u0 = median(A["udpcast", n, 0])
		if (d0 != "" && u0 != "") printf "diskcast / udpcast end to end at 0%% loss: %.2f (target <= 0.67)\n", d0 / u0
		split("udpcast uftp diskcast", tools, " ")
		for (i = 1; i <= 3; i++) {
			a = median(O[tools[i], n, 0]); b = median(O[tools[i], n, loss])
			if (loss > 0 && a != "" && b != "") printf "%s: receivers without loss, with %d%% loss on one / lossless: %.2f%s\n", tools[i], loss, b / a, (tools[i] == "diskcast" ? " (target <= 1.1)" : "")
		}
		s1 = median(A["diskcast", 1, 0]); s8 = median(A["diskcast", scale, 0])
		if (s1 != "" && s8 != "") printf "diskcast: %d receivers / 1 receiver: %.2f (target <= 1.1)\n", scale, s8 / s1
		dc = median(cpu["diskcast"]); uc = median(cpu["udpcast"])
		if (dc != "" && uc != "" && uc > 0) printf "diskcast / udpcast CPU per receiver: %.2f (target <= 1)\n", dc / uc
	}' "$results" | tee -a "$out/table.txt"
echo "results: $results"
