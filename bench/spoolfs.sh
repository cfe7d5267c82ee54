#!/bin/sh
# Runs a command with BENCH_DIR on a fresh file system: a sparse 4 GiB file made into
# an ext4 with mkfs.ext4's defaults (journal on) and loop-mounted, when run as root on
# a machine with loop devices; otherwise BENCH_DIR=/var/tmp. Removed afterwards.
#   bench/spoolfs.sh COMMAND [ARG...]
# A fresh file system keeps the figures from depending on what the machine did lately
# (on an ext4 without a journal, every file creation scans past the inodes freed in
# the last minutes).
set -u
img=""
mnt=""
cleanup() {
    if [ -n "$mnt" ]; then
        umount "$mnt" 2>/dev/null
        rmdir "$mnt"
    fi
    if [ -n "$img" ]; then
        rm -f "$img"
    fi
}
trap cleanup EXIT INT TERM
BENCH_DIR=/var/tmp
if [ "$(id -u)" = 0 ] && [ -e /dev/loop-control ] && command -v mkfs.ext4 >/dev/null 2>&1; then
    img=$(mktemp /var/tmp/etrnd-bench-fs.XXXXXX)
    mnt=$(mktemp -d /var/tmp/etrnd-bench-mnt.XXXXXX)
    if truncate -s 4G "$img" && mkfs.ext4 -q -F "$img" && mount -o loop "$img" "$mnt"; then
        chmod 755 "$mnt"
        BENCH_DIR=$mnt
    else
        rmdir "$mnt"
        mnt=""
    fi
fi
echo "spool file system for the benchmark: $BENCH_DIR" >&2
export BENCH_DIR
"$@"
