#!/usr/bin/env bash
# Builds the imaging environment twice from the same inputs, the second time
# with another umask and temporary directory, and compares the outputs byte
# for byte. One diskcast binary is built first and packed both times, so
# edits to the sources during the check do not count as a difference.
#
# usage: scripts/bootenv/check-reproducible.sh   (BOOTENV_CACHE reuses .debs)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export PATH=$PATH:/usr/local/go/bin
work=$(mktemp -d "${TMPDIR:-/tmp}/diskcast-repro.XXXXXX")
trap 'rm -rf "$work"' EXIT
export BOOTENV_CACHE=${BOOTENV_CACHE:-$work/cache}

(cd "$repo" && CGO_ENABLED=0 "${GO:-go}" build -trimpath -buildvcs=false \
  -ldflags '-s -w -buildid=' -o "$work/diskcast" ./core/cmd/diskcast)
DISKCAST_BIN=$work/diskcast "$here/build.sh" "$work/a" >/dev/null
mkdir -p "$work/tmp"
(umask 077 && TMPDIR=$work/tmp DISKCAST_BIN=$work/diskcast "$here/build.sh" "$work/b" >/dev/null)
if cmp "$work/a/SHA256SUMS" "$work/b/SHA256SUMS" && cmp "$work/a/initrd.img" "$work/b/initrd.img" &&
  cmp "$work/a/vmlinuz" "$work/b/vmlinuz"; then
  echo "reproducible:"
  cat "$work/a/SHA256SUMS"
else
  echo "NOT reproducible:" >&2
  paste "$work/a/SHA256SUMS" "$work/b/SHA256SUMS" >&2
  exit 1
fi
