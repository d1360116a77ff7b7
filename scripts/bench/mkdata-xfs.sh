#!/usr/bin/env bash
# mkdata-xfs.sh builds the XFS (mkfs.xfs defaults) benchmark image for capture.sh --fs xfs:
# default $BENCH_DIR/xfs-3g.img, 3 GiB, 45% used. See mkdata-mounted.sh.
MKDATA_FS=xfs exec "$(cd "$(dirname "$0")" && pwd)/mkdata-mounted.sh" "$@"
