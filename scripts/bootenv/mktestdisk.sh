#!/usr/bin/env bash
# Builds a small bootable test disk: an MBR with syslinux's boot code, a FAT
# boot partition (syslinux for BIOS, syslinux.efi for UEFI) holding Debian's
# kernel and a tiny initramfs that prints "DISKCAST-TESTDISK-BOOTED ID" on
# the serial console and powers off, and an ext4 data partition with a few
# files (something for filesystem-aware capture). No mounting, no root.
#
# usage: scripts/bootenv/mktestdisk.sh OUT.img [SIZE_MiB] [ID]
#   SIZE_MiB  disk size, at least 48 (default 64)
#   ID        the marker id, [A-Za-z0-9._-]+ (default testdisk)
#
# Environment: BOOTENV_CACHE (downloaded .debs; default
# /var/cache/diskcast-bootenv), KERNEL_PKG, SOURCE_DATE_EPOCH.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

{ [ $# -ge 1 ] && [ $# -le 3 ]; } || die "usage: mktestdisk.sh OUT.img [SIZE_MiB] [ID]"
out=$1
size=${2:-64}
id=${3:-testdisk}
{ [[ $size =~ ^[0-9]+$ ]] && [ "$size" -ge 48 ]; } || die "mktestdisk: size $size: want a whole number of MiB, at least 48"
[[ $id =~ ^[A-Za-z0-9._-]+$ ]] || die "mktestdisk: id '$id': use only letters, digits, '.', '_' and '-'"
cache=${BOOTENV_CACHE:-/var/cache/diskcast-bootenv}
epoch=${SOURCE_DATE_EPOCH:-1700000000}
export PATH=$PATH:/usr/sbin:/sbin

need_tools apt-get=apt dpkg-deb=dpkg cpio=cpio sfdisk=fdisk mkfs.vfat=dosfstools mcopy=mtools \
  mmd=mtools mkfs.ext4=e2fsprogs syslinux=syslinux
for f in /usr/lib/syslinux/mbr/mbr.bin /usr/lib/SYSLINUX.EFI/efi64/syslinux.efi /usr/lib/syslinux/modules/efi64/ldlinux.e64; do
  [ -f "$f" ] || need_tools "x-missing-$(basename "$f")=syslinux-common" "x-efi=syslinux-efi"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/diskcast-testdisk.XXXXXX")
trap 'rm -rf "$work"' EXIT

kdeb=$(fetch_deb "$cache" "$(kernel_package)")
bbdeb=$(fetch_deb "$cache" busybox-static)
cp "$(cached_vmlinuz "$cache" "$kdeb")" "$work/vmlinuz"

# The initramfs: busybox and an /init that prints the marker.
root=$work/root
mkdir -p "$root"/{dev,proc,sys}
install_busybox "$bbdeb" "$root"
cat >"$root/init" <<INIT
#!/bin/sh
mount -t proc proc /proc
read -r up _ </proc/uptime
echo "DISKCAST-TESTDISK-BOOTED $id (uptime \$up s, \$(cat /proc/cmdline))"
poweroff -f
INIT
chmod 0755 "$root/init"
write_initramfs "$root" "$epoch" gzip "$work/initrd.img"

# Layout (MiB): 1 MiB gap for the MBR, 40 MiB FAT16 boot, the rest ext4.
boot_mib=40
data_mib=$((size - 1 - boot_mib))
cfg="DEFAULT testdisk
PROMPT 0
TIMEOUT 0
LABEL testdisk
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND console=ttyS0 quiet diskcast.testdisk=$id"

fat=$work/boot.fat
truncate -s "${boot_mib}M" "$fat"
mkfs.vfat -F 16 -n DCBOOT -i 0d15ca57 -h 2048 "$fat" >/dev/null
export MTOOLS_SKIP_CHECK=1
mcopy -i "$fat" "$work/vmlinuz" "$work/initrd.img" ::/
echo "$cfg" >"$work/syslinux.cfg"
mcopy -i "$fat" "$work/syslinux.cfg" ::/
mmd -i "$fat" ::/EFI ::/EFI/BOOT
mcopy -i "$fat" /usr/lib/SYSLINUX.EFI/efi64/syslinux.efi ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$fat" /usr/lib/syslinux/modules/efi64/ldlinux.e64 "$work/syslinux.cfg" ::/EFI/BOOT/
syslinux --install "$fat"

data=$work/data
mkdir -p "$data/dir"
echo "$id" >"$data/diskcast-testdisk-id"
echo "$cfg" >"$data/dir/syslinux.cfg"
seq 1 150000 >"$data/dir/numbers.txt"
E2FSPROGS_FAKE_TIME=$epoch mkfs.ext4 -q -F -L dcdata -U 5e5e5e5e-0000-4000-8000-000000000001 \
  -E root_owner=0:0 -d "$data" "$work/data.ext4" "${data_mib}M" >/dev/null

truncate -s 0 "$out.tmp"
truncate -s "${size}M" "$out.tmp"
sfdisk -q "$out.tmp" <<SF
label: dos
label-id: 0x0d15ca57
start=1MiB, size=${boot_mib}MiB, type=e, bootable
start=$((1 + boot_mib))MiB, type=83
SF
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$out.tmp" bs=440 count=1 conv=notrunc status=none
dd if="$fat" of="$out.tmp" bs=1M seek=1 conv=notrunc status=none
dd if="$work/data.ext4" of="$out.tmp" bs=1M seek=$((1 + boot_mib)) conv=notrunc status=none
mv "$out.tmp" "$out"
echo "mktestdisk: wrote $out (${size} MiB, id $id)" >&2
