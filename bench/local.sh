#!/bin/sh
# Local delivery benchmark: N messages of 1 KiB queued (held) for one local user,
# then released at once by restarting with the local clause not held. Prints
# deliveries/s into one mbox and into one Maildir (the restart's verification of the
# queue is included).
#   bench/local.sh [MESSAGES]
set -eu
N=${1:-5000}
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
need_postfix_tools
build
run() {
    etrnd_dir local "MAILBOX=$1"
    echo "bench.example" > "$dir/db/localnames"
    echo "alice: root" > "$dir/db/aliases"
    printf '*/* expiry=1d\nlocal/* queueonly command=local\n' > "$dir/scheduler.conf"
    etrnd_start etrnd
    smtp-source -s 10 -m "$N" -l 1024 -f s@far.example -t alice@bench.example 127.0.0.1:"$port"
    etrnd_stop
    printf '*/* expiry=1d\nlocal/* command=local\n' > "$dir/scheduler.conf"
    start=$(now)
    etrnd_start etrnd2
    wait_empty
    end=$(now)
    etrnd_stop
    echo "$start $end $N $1" | awk '{printf "%s: %d local deliveries in %.2f s: %.0f/s\n", ($4 ~ /\/$/ ? "Maildir" : "mbox"), $3, $2-$1, $3/($2-$1)}'
    rm -rf "$dir"
}
run mbox
run mail/
