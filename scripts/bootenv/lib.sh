# shellcheck shell=bash
# Shared by build.sh and mktestdisk.sh (sourced, not run): fetching Debian
# packages into a cache without installing them, and writing reproducible
# initramfs archives.

# die prints its arguments to stderr and exits.
die() {
  echo "bootenv: $*" >&2
  exit 1
}

# need_tools installs (as root) or names the Debian packages that provide
# missing build tools. Arguments are command=package pairs.
need_tools() {
  local missing=() pair cmd
  for pair in "$@"; do
    cmd=${pair%%=*}
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || [ -x "/sbin/$cmd" ] || missing+=("${pair#*=}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    die "missing tools; install the Debian packages: ${missing[*]} (or run 'make deps' as root)"
  fi
  echo "bootenv: installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    die "apt-get install ${missing[*]} failed"
}

# apt_ready runs apt-get update once (as root) on a machine whose package
# lists do not know linux-image-amd64 yet, e.g. a fresh container.
apt_ready() {
  [ -n "${apt_checked:-}" ] && return 0
  apt_checked=1
  apt-cache show linux-image-amd64 >/dev/null 2>&1 && return 0
  [ "$(id -u)" -eq 0 ] || return 0
  echo "bootenv: apt-get update (the package lists do not know linux-image-amd64)" >&2
  apt-get update -qq >/dev/null || die "apt-get update failed"
}

# kernel_package prints the versioned kernel package that the
# linux-image-amd64 metapackage depends on (linux-image-6.1.0-NN-amd64), or
# $KERNEL_PKG when set.
kernel_package() {
  if [ -n "${KERNEL_PKG:-}" ]; then
    echo "$KERNEL_PKG"
    return
  fi
  local p
  apt_ready
  p=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }')
  [ -n "$p" ] || die "cannot resolve linux-image-amd64 to a kernel package (apt-cache depends found none; run apt-get update)"
  echo "$p"
}

# fetch_deb CACHE PKG prints the path of PKG's candidate .deb in CACHE,
# downloading it first when it is not there. apt's own index supplies the
# file name and SHA-256, so a cached file is checked, not trusted.
fetch_deb() {
  local cache=$1 pkg=$2 file hash
  apt_ready
  read -r _ file _ hash < <(apt-get download --print-uris "$pkg" 2>/dev/null | head -n1) ||
    die "apt-get download --print-uris $pkg: no such package (run apt-get update)"
  [ -n "${file:-}" ] || die "apt-get download --print-uris $pkg printed nothing"
  hash=${hash#SHA256:}
  if [ -f "$cache/$file" ] && echo "$hash  $cache/$file" | sha256sum -c --status 2>/dev/null; then
    echo "$cache/$file"
    return
  fi
  mkdir -p "$cache"
  (cd "$cache" && apt-get download -o APT::Sandbox::User=root -qq "$pkg" >/dev/null) ||
    die "apt-get download $pkg failed"
  echo "$hash  $cache/$file" | sha256sum -c --status ||
    die "$cache/$file: SHA-256 does not match apt's index (want $hash)"
  echo "$cache/$file"
}

# cached_vmlinuz CACHE DEB prints the path of DEB's kernel image, kept in
# CACHE next to the .deb (unpacking the whole .deb takes seconds).
cached_vmlinuz() {
  local cache=$1 deb=$2 out tmp
  out=$cache/$(basename "$deb" .deb).vmlinuz
  if [ ! -f "$out" ]; then
    tmp=$(mktemp -d)
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" --wildcards './boot/vmlinuz-*'
    mv "$tmp"/boot/vmlinuz-* "$out.tmp"
    rm -rf "$tmp"
    mv "$out.tmp" "$out"
  fi
  echo "$out"
}

# install_busybox DEB ROOT unpacks the static busybox from DEB into
# ROOT/bin and links every applet to it.
install_busybox() {
  local deb=$1 root=$2 tmp a
  tmp=$(mktemp -d)
  dpkg-deb -x "$deb" "$tmp"
  mkdir -p "$root/bin"
  install -m 0755 "$tmp/bin/busybox" "$root/bin/busybox"
  rm -rf "$tmp"
  for a in $("$root/bin/busybox" --list); do
    [ "$a" = busybox ] || [ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"
  done
  ln -s bin "$root/sbin"
  mkdir -p "$root/usr"
  ln -s ../bin "$root/usr/bin"
  ln -s ../bin "$root/usr/sbin"
}

# cpio_char_node NAME MAJOR MINOR MTIME writes a newc archive holding one
# character device node (mode 0600, root:root) and its trailer. The kernel
# reads concatenated archives, so this lets an unprivileged build ship
# /dev/console, which the kernel opens before it runs /init.
cpio_char_node() {
  local name=$1 major=$2 minor=$3 mtime=$4
  cpio_entry "$name" $((8192 | 0600)) "$major" "$minor" "$mtime" 1
  cpio_entry 'TRAILER!!!' 0 0 0 0 0
}

cpio_entry() {
  local name=$1 mode=$2 major=$3 minor=$4 mtime=$5 nlink=$6
  local namesize=$((${#name} + 1)) pad
  printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
    0 "$mode" 0 0 "$nlink" "$mtime" 0 0 0 "$major" "$minor" "$namesize" 0
  printf '%s\0' "$name"
  pad=$(((4 - (110 + namesize) % 4) % 4))
  head -c "$pad" /dev/zero
}

# write_initramfs ROOT MTIME COMPRESSOR OUT packs ROOT into a newc cpio with
# sorted names, owner root:root, every mtime set to MTIME and renumbered
# inodes, adds /dev/console, and compresses it with COMPRESSOR (zstd or
# gzip). Equal trees give byte-identical output.
write_initramfs() {
  local root=$1 mtime=$2 comp=$3 out=$4
  # Modes must not depend on the builder's umask.
  find "$root" -type d -exec chmod 0755 {} +
  find "$root" -type f -perm /111 -exec chmod 0755 {} +
  find "$root" -type f ! -perm /111 -exec chmod 0644 {} +
  find "$root" -exec touch -h -d "@$mtime" {} +
  {
    (cd "$root" && find . -mindepth 1 -printf '%P\0' | LC_ALL=C sort -z |
      cpio --null --create --format=newc --reproducible --owner=0:0 --quiet)
    cpio_char_node dev/console 5 1 "$mtime"
  } | case $comp in
    zstd) zstd -q "-${BOOTENV_ZSTD_LEVEL:-19}" -T1 --no-progress -c ;;
    gzip) gzip -n -9 -c ;;
    *) die "unknown compressor $comp (want zstd or gzip)" ;;
  esac >"$out.tmp"
  mv "$out.tmp" "$out"
}
