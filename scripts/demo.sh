#!/usr/bin/env bash
# The diskcast demo: build a real GPT disk image (an EFI system partition
# and an ext4 root filesystem filled from this machine's Go tree), capture
# it, inspect and verify the image, restore it onto a fresh target, and
# compare checksums. Everything happens in a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
bin=${DISKCAST:-bin/diskcast}
for c in mkfs.ext4 mkfs.vfat mcopy sfdisk; do
  command -v "$c" >/dev/null || { echo "demo: $c is missing; run 'make deps' as root" >&2; exit 1; }
done
work=$(mktemp -d "${TMPDIR:-/tmp}/diskcast-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
src=${DEMO_SOURCE:-$(go env GOROOT 2>/dev/null || echo /usr/share)}

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
echo "diskcast demo boot entry" > "$work/loader.conf"
mcopy -i "$work/esp.img" "$work/loader.conf" ::/loader.conf
rootsize=$(( 1961984 * 512 ))  # exactly partition 2
truncate -s "$rootsize" "$work/root.img"
mkfs.ext4 -q -F -L demo-root -d "$src" "$work/root.img"
dd if="$work/esp.img" of="$disk" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$work/root.img" of="$disk" bs=1M seek=65 conv=notrunc,sparse status=none
rm -f "$work/esp.img" "$work/root.img"
du -h --apparent-size "$disk" | awk '{print "disk size:", $1}'

step "diskcast capture"
"$bin" capture "$disk" "$work/demo.dci"

step "diskcast info"
"$bin" info "$work/demo.dci"

step "diskcast verify"
"$bin" verify "$work/demo.dci"

step "diskcast restore onto a fresh target"
"$bin" restore "$work/demo.dci" "$work/restored.img"

step "comparing source and restored disk"
a=$(sha256sum "$disk" | cut -d' ' -f1)
b=$(sha256sum "$work/restored.img" | cut -d' ' -f1)
echo "source   $a"
echo "restored $b"
if [ "$a" != "$b" ]; then
  echo "demo: FAILED: the restored disk differs from the source" >&2
  exit 1
fi
printf 'source %s, image %s: restored disk is identical\n' \
  "$(du -h --apparent-size "$disk" | cut -f1)" "$(du -h --apparent-size "$work/demo.dci" | cut -f1)"
