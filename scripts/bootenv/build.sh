#!/usr/bin/env bash
# Builds diskcast's imaging environment: a Debian kernel (vmlinuz) and an
# initramfs (initrd.img) holding the static diskcast binary, busybox, the
# modules for common NICs and disk controllers, and /init. The output is
# reproducible: the same inputs (kernel and busybox .debs, diskcast sources,
# SOURCE_DATE_EPOCH) give byte-identical files, whose SHA-256 go to
# SHA256SUMS.
#
# usage: scripts/bootenv/build.sh [OUTDIR]   (default $BOOTENV_DIR or bin/bootenv)
#
# Environment: BOOTENV_DIR, BOOTENV_CACHE (downloaded .debs, default
# OUTDIR/cache), KERNEL_PKG (default: what linux-image-amd64 depends on),
# DISKCAST_BIN (use this binary instead of building one), VERSION (stamped
# into the binary), SOURCE_DATE_EPOCH (mtime of every archive member),
# BOOTENV_COMPRESS (zstd or gzip), BOOTENV_ZSTD_LEVEL (default 19), GO.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$here/lib.sh"

out=${1:-${BOOTENV_DIR:-$repo/bin/bootenv}}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cache=${BOOTENV_CACHE:-$out/cache}
epoch=${SOURCE_DATE_EPOCH:-1700000000}
comp=${BOOTENV_COMPRESS:-zstd}
export PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin
GO=${GO:-go}

# Top-level modules; modules.dep pulls in what they need. NICs first, then
# disk controllers. Drivers that also need firmware files (bnx2, bnx2x, ice,
# some r8169 and tg3 chips) are listed but get no firmware.
modules=(
  virtio_net e1000 e1000e igb igc ixgbe ixgbevf i40e iavf ice bnxt_en bnx2
  bnx2x tg3 r8169 mlx4_en mlx5_core be2net qede vmxnet3 atlantic
  virtio_pci virtio_blk virtio_scsi ahci ata_piix nvme sd_mod megaraid_sas
  mpt3sas hpsa smartpqi aacraid mptsas vmw_pvscsi af_packet
)

need_tools apt-get=apt dpkg-deb=dpkg depmod=kmod cpio=cpio zstd=zstd sha256sum=coreutils

work=$(mktemp -d "${TMPDIR:-/tmp}/diskcast-bootenv.XXXXXX")
trap 'rm -rf "$work"' EXIT
t0=$(date +%s)

kpkg=$(kernel_package)
kdeb=$(fetch_deb "$cache" "$kpkg")
bbdeb=$(fetch_deb "$cache" busybox-static)
echo "bootenv: kernel $(basename "$kdeb"), busybox $(basename "$bbdeb")" >&2

kx=$work/kernel
dpkg-deb -x "$kdeb" "$kx"
kver=$(ls "$kx/lib/modules")
[ "$(echo "$kver" | wc -l)" -eq 1 ] || die "$kdeb: expected one directory under lib/modules, found: $kver"
kmods=$kx/lib/modules/$kver
# The .deb carries no modules.dep (postinst makes it): make one to resolve
# dependencies from.
depmod -b "$kx" "$kver"

root=$work/root
mkdir -p "$root"/{dev,proc,sys,run,tmp,etc,lib/modules/"$kver",root,var}
ln -s ../run "$root/var/run"

# Module closure, as paths relative to the module directory.
declare -A want=()
for m in "${modules[@]}"; do
  if grep -qE "/${m//_/[_-]}\.ko$" "$kmods/modules.builtin"; then
    continue # built into the kernel
  fi
  line=$(grep -E "/${m//_/[_-]}\.ko:" "$kmods/modules.dep") || die "module $m is neither in $kpkg's modules.dep nor built in"
  for p in ${line/:/}; do want[$p]=1; done
done
for p in "${!want[@]}"; do
  mkdir -p "$root/lib/modules/$kver/$(dirname "$p")"
  cp "$kmods/$p" "$root/lib/modules/$kver/$p"
done
cp "$kmods/modules.order" "$kmods/modules.builtin" "$kmods/modules.builtin.modinfo" "$root/lib/modules/$kver/"
depmod -b "$root" "$kver"

install_busybox "$bbdeb" "$root"

if [ -n "${DISKCAST_BIN:-}" ]; then
  install -m 0755 "$DISKCAST_BIN" "$root/bin/diskcast"
else
  version=${VERSION:-$(git -C "$repo" describe --tags --always --dirty 2>/dev/null || echo 0.1.0-dev)}
  (cd "$repo" && CGO_ENABLED=0 "$GO" build -trimpath -buildvcs=false \
    -ldflags "-s -w -buildid= -X github.com/diskcast/diskcast/core/cli.Version=$version" \
    -o "$root/bin/diskcast" ./core/cmd/diskcast) || die "go build ./core/cmd/diskcast failed"
fi

install -m 0755 "$here/init" "$root/init"
mkdir -p "$root/etc/udhcpc"
install -m 0755 "$here/udhcpc.script" "$root/etc/udhcpc/default.script"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
echo "$kver" >"$root/etc/diskcast-kernel"

install -m 0644 "$kx/boot/vmlinuz-$kver" "$out/vmlinuz.tmp"
touch -d "@$epoch" "$out/vmlinuz.tmp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
write_initramfs "$root" "$epoch" "$comp" "$out/initrd.img"
touch -d "@$epoch" "$out/initrd.img"
(cd "$out" && sha256sum vmlinuz initrd.img >SHA256SUMS)
chmod 0644 "$out/initrd.img" "$out/SHA256SUMS" # served to nodes whatever the umask

echo "bootenv: wrote $out/vmlinuz ($(stat -c %s "$out/vmlinuz") bytes), $out/initrd.img ($(stat -c %s "$out/initrd.img") bytes, ${#want[@]} modules) in $(($(date +%s) - t0)) s" >&2
cat "$out/SHA256SUMS"
