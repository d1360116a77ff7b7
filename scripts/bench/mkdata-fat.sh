#!/usr/bin/env bash
# mkdata-fat.sh builds the FAT32 (mkfs.vfat -F 32) benchmark image for capture.sh --fs fat:
# default $BENCH_DIR/fat-3g.img, 3 GiB, 45% used. See mkdata-mounted.sh.
MKDATA_FS=fat exec "$(cd "$(dirname "$0")" && pwd)/mkdata-mounted.sh" "$@"
