# shellcheck shell=bash
# Helpers shared by the benchmark scripts in scripts/bench. Sourced, not run.

# BENCH_DIR holds the benchmark images and outputs (tens of GB). Put it on the
# disk you want to measure.
: "${BENCH_DIR:=${TMPDIR:-/var/tmp}/diskcast-bench}"

die() {
	printf '%s: %s\n' "${0##*/}" "$*" >&2
	exit 1
}

note() {
	printf '%s: [%s] %s\n' "${0##*/}" "$(date +%T)" "$*" >&2
}

# need CMD PACKAGE: install the Debian package when CMD is missing (root only).
need() {
	command -v "$1" >/dev/null 2>&1 && return 0
	[[ $(id -u) -eq 0 ]] || die "$1 not found: install the Debian package $2"
	note "$1 not found: installing package $2"
	local i
	for i in 1 2 3 4 5 6; do
		# Another apt-get may hold the dpkg lock: wait and retry.
		if DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null; then
			break
		fi
		note "apt-get install $2 failed (try $i of 6; dpkg lock held?): retrying in 10 s"
		sleep 10
	done
	command -v "$1" >/dev/null 2>&1 || die "$1 still missing after installing $2"
}

# ext4_used_ranges IMG KIND prints the in-use ranges of an ext2/3/4 image as
# "first last" lines (inclusive), in block numbers (KIND=blocks) or inode
# numbers (KIND=inodes), taken from the allocation bitmaps that dumpe2fs reads.
ext4_used_ranges() {
	local img=$1 kind=$2
	dumpe2fs "$img" 2>/dev/null | awk -v kind="$kind" '
	function flush() {
		if (g < 0) return
		# Complement the free list within the group range [lo, hi].
		n = split(free, parts, /, */)
		cur = lo
		# Block 0 precedes group 0 on 1 KiB-block filesystems: count it used.
		if (kind == "blocks" && g == 0 && lo > 0) cur = 0
		for (i = 1; i <= n; i++) {
			if (parts[i] == "") continue
			m = split(parts[i], ab, "-")
			a = ab[1] + 0; b = (m == 2 ? ab[2] : ab[1]) + 0
			if (a > cur) print cur, a - 1
			cur = b + 1
		}
		if (cur <= hi) print cur, hi
	}
	/^Inodes per group:/ { ipg = $4 + 0 }
	/^Group [0-9]+: \(Blocks / {
		flush()
		g = substr($2, 1, length($2) - 1) + 0
		free = ""
		if (kind == "blocks") {
			r = $4; sub(/\)$/, "", r); split(r, ab, "-")
			lo = ab[1] + 0; hi = ab[2] + 0
		} else {
			lo = g * ipg + 1; hi = (g + 1) * ipg
		}
		next
	}
	kind == "blocks" && /^  Free blocks: / { free = substr($0, 16) }
	kind == "inodes" && /^  Free inodes: / { free = substr($0, 16) }
	BEGIN { g = -1 }
	END { flush() }'
}

# ext4_field IMG NAME prints one superblock field as dumpe2fs -h shows it.
ext4_field() {
	dumpe2fs -h "$1" 2>/dev/null | awk -F': *' -v k="$2" '$1 == k { print $2; exit }'
}

# ext4_used_bytes IMG prints the bytes in use (all blocks minus free blocks).
ext4_used_bytes() {
	local bc fb bs
	bc=$(ext4_field "$1" "Block count")
	fb=$(ext4_field "$1" "Free blocks")
	bs=$(ext4_field "$1" "Block size")
	echo $(((bc - fb) * bs))
}

# keystream KEY N writes AES-128-CTR of zeros with IV N: a seeded, endless stream.
# The reader stops it early (SIGPIPE); the caller checks the length it got.
keystream() {
	openssl enc -aes-128-ctr -K "$1" -iv "$(printf '%032x' "$2")" -in /dev/zero 2>/dev/null || true
}

# write_blobs DIR BYTES KEY writes BYTES of incompressible data under
# DIR/data: files of a fixed cycle of sizes, each the keystream of KEY with
# the file number as IV, so every build writes the same files.
write_blobs() {
	local dir=$1 left=$2 key=$3 i=0 n f
	local -a sizes=(4096 12288 65536 200000 1048576 3000000 8388608 33554432 16777 524288 67108864 131072 150000000)
	while ((left > 0)); do
		n=${sizes[i % ${#sizes[@]}]}
		# Round to blocks so the accounting stays exact.
		n=$(((n + 4095) / 4096 * 4096))
		((n > left)) && n=$left
		f=$(printf '%s/data/%04d/blob-%05d.bin' "$dir" $((i / 64)) "$i")
		mkdir -p "${f%/*}"
		keystream "$key" "$i" | head -c "$n" >"$f"
		[[ $(stat -c %s "$f") -eq $n ]] || die "generating $f: short write"
		left=$((left - n)) i=$((i + 1))
	done
}

# gib BYTES prints BYTES in GiB with two decimals.
gib() {
	awk -v b="$1" 'BEGIN { printf "%.2f GiB", b / 1073741824 }'
}

# gb BYTES prints BYTES in GB (10^9) with two decimals.
gb() {
	awk -v b="$1" 'BEGIN { printf "%.2f GB", b / 1e9 }'
}
