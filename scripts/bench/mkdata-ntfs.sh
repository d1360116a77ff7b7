#!/usr/bin/env bash
# mkdata-ntfs.sh builds the NTFS (mkntfs, 4 KiB clusters, mounted with ntfs-3g) benchmark image for capture.sh --fs ntfs:
# default $BENCH_DIR/ntfs-3g.img, 3 GiB, 45% used. See mkdata-mounted.sh.
MKDATA_FS=ntfs exec "$(cd "$(dirname "$0")" && pwd)/mkdata-mounted.sh" "$@"
