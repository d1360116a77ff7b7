#!/usr/bin/env bash
# Installs the Debian packages diskcast's tests, demo and benchmarks use.
# As root it installs what is missing; otherwise it lists what is missing
# (the tests that need it then skip and say so).
set -euo pipefail

# command -> package
declare -A need=(
  [mkfs.ext4]=e2fsprogs [partclone.ext4]=partclone [zstd]=zstd [pigz]=pigz
  [mkfs.vfat]=dosfstools [mcopy]=mtools [mkntfs]=ntfs-3g [mkfs.xfs]=xfsprogs
  [mkfs.exfat]=exfatprogs [mount.exfat-fuse]=exfat-fuse [sfdisk]=fdisk [sgdisk]=gdisk [udp-sender]=udpcast
  [uftp]=uftp [nft]=nftables [ip]=iproute2 [openssl]=openssl [losetup]=mount [mksquashfs]=squashfs-tools
  [qemu-system-x86_64]=qemu-system-x86 [busybox]=busybox-static [cpio]=cpio [depmod]=kmod
  [syslinux]=syslinux [tftp]=tftp-hpa [dnsmasq]=dnsmasq-base
)
missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || [ -x "/sbin/$cmd" ] || missing+=("${need[$cmd]}")
done
[ -x /usr/bin/time ] || missing+=(time)
# Files, not commands: QEMU's iPXE NIC ROMs, UEFI firmware, syslinux's MBR
# and EFI loader, iPXE's own boot images.
declare -A needfile=(
  [/usr/lib/ipxe/qemu/efi-virtio.rom]=ipxe-qemu [/usr/share/OVMF/OVMF_CODE_4M.fd]=ovmf
  [/usr/lib/syslinux/mbr/mbr.bin]=syslinux-common [/usr/lib/SYSLINUX.EFI/efi64/syslinux.efi]=syslinux-efi
  [/usr/lib/ipxe/undionly.kpxe]=ipxe
)
for f in "${!needfile[@]}"; do
  [ -e "$f" ] || missing+=("${needfile[$f]}")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: not root; missing packages: ${missing[*]} (tests that need them will skip)" >&2
  exit 0
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
