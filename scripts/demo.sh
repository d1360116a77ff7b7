#!/usr/bin/env bash
# The diskcast demo (make demo): build a real GPT disk (an EFI system
# partition with FAT32 and an ext4 root filled from this machine's Go
# tree), capture it, and image three nodes with it at once by multicast,
# driven by the orchestrator:
#
#   diskcast serve -config configs/demo.hcl   the daemon; the session
#                                             "demo" starts by itself
#   diskcast agent                            three node agents, each
#                                             writing its own disk file
#   diskcast session watch demo               the per-node table
#
# As root the server and each agent run in their own network namespace on
# an isolated bridge (198.18.0.0/24, no route out); otherwise everything
# runs on loopback with multicast TTL 0. Each node's disk is then compared
# with the source disk.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export PATH="$PATH:/usr/sbin:/sbin"
bin=${DISKCAST:-bin/diskcast}
[[ $bin == /* ]] || bin=$root/$bin
for c in mkfs.ext4 mkfs.vfat mcopy sfdisk; do
	command -v "$c" >/dev/null || { echo "demo: $c is missing; run 'make deps' as root" >&2; exit 1; }
done
work=$(mktemp -d "${TMPDIR:-/tmp}/diskcast-demo.XXXXXX")
src=${DEMO_SOURCE:-$(go env GOROOT 2>/dev/null || echo /usr/share)}
server_pid= agent_pids=() NETLAB_ID=
cleanup() {
	# End what this script started, by PID, then the lab.
	for p in "${agent_pids[@]}" $server_pid; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [[ -n $NETLAB_ID ]]; then netlab_down; fi
	[[ -n ${DEMO_KEEP:-} ]] || rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }

step "building a 1 GiB GPT disk: 64 MiB EFI system partition + ext4 root filled from $src"
disk=$work/disk.img
truncate -s 1G "$disk"
sfdisk -q "$disk" <<'PT'
label: gpt
start=2048, size=131072, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI system"
start=133120, size=1961984, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="root"
PT
truncate -s 64M "$work/esp.img"
mkfs.vfat -F 32 -n DEMOESP "$work/esp.img" >/dev/null
echo "diskcast demo boot entry" >"$work/loader.conf"
mcopy -i "$work/esp.img" "$work/loader.conf" ::/loader.conf
truncate -s $((1961984 * 512)) "$work/root.img" # exactly partition 2
mkfs.ext4 -q -F -L demo-root -d "$src" "$work/root.img"
dd if="$work/esp.img" of="$disk" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$work/root.img" of="$disk" bs=1M seek=65 conv=notrunc,sparse status=none
rm -f "$work/esp.img" "$work/root.img"

step "diskcast capture"
"$bin" capture "$disk" "$work/demo.dci"
"$bin" info "$work/demo.dci"

export DISKCAST_VAR_demo_dir=$work
macs=(52:54:00:d0:00:01 52:54:00:d0:00:02 52:54:00:d0:00:03)
if [[ $(id -u) -eq 0 ]] && command -v ip >/dev/null && [[ ${DEMO_NETNS:-1} == 1 ]]; then
	# shellcheck source=bench/lib-net.sh
	source "$root/scripts/bench/lib-net.sh"
	netlab_up 4
	mode="network namespaces $(netlab_ns 0) .. $(netlab_ns 3) on an isolated bridge"
	export DISKCAST_VAR_listen=$(netlab_ip 0):7480 DISKCAST_VAR_interface=$(netlab_iface 0)
	on() { local h=$1; shift; netlab_exec "$h" "$@"; }
	# For "spawn HOST CMD &": the background subshell becomes CMD, so $!
	# is CMD's PID.
	spawn() { local h=$1; shift; exec ip netns exec "$(netlab_ns "$h")" "$@"; }
	iface() { netlab_iface "$1"; }
else
	mode="loopback (multicast TTL 0; run as root for network namespaces)"
	export DISKCAST_VAR_listen=127.0.0.1:7480 DISKCAST_VAR_interface=lo
	on() { shift; "$@"; }
	spawn() { shift; exec "$@"; }
	iface() { echo lo; }
fi
server=http://$DISKCAST_VAR_listen

step "diskcast validate configs/demo.hcl"
"$bin" validate configs/demo.hcl

step "diskcast serve -config configs/demo.hcl, in $mode"
spawn 0 "$bin" serve -config configs/demo.hcl >"$work/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
	on 0 "$bin" session list -config configs/demo.hcl >/dev/null 2>&1 && break
	kill -0 "$server_pid" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
	sleep 0.1
done

step "three agents (diskcast agent), one per node"
for i in 1 2 3; do
	spawn "$i" "$bin" agent --server "$server" --mac "${macs[i - 1]}" --interface "$(iface "$i")" --retry 1s \
		>"$work/agent$i.log" 2>&1 &
	agent_pids+=($!)
done

step "diskcast session watch demo"
on 0 "$bin" session watch demo -config configs/demo.hcl
for i in 0 1 2; do
	wait "${agent_pids[i]}" || { echo "demo: agent $((i + 1)) failed:" >&2; cat "$work/agent$((i + 1)).log" >&2; exit 1; }
	tail -n 1 "$work/agent$((i + 1)).log"
done
agent_pids=()

step "comparing each node's disk with the source"
want=$(sha256sum "$disk" | cut -d' ' -f1)
echo "source  $want"
for i in 1 2 3; do
	got=$(sha256sum "$work/node$i.img" | cut -d' ' -f1)
	echo "node$i   $got"
	[[ $got == "$want" ]] || { echo "demo: FAILED: node$i's disk differs from the source" >&2; exit 1; }
done
printf '\nsource disk %s, image %s: three nodes imaged at once, each disk identical to the source\n' \
	"$(du -h --apparent-size "$disk" | cut -f1)" "$(du -h --apparent-size "$work/demo.dci" | cut -f1)"
