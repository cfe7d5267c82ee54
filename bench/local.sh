#!/bin/sh
# Local delivery benchmark: N messages of 1 KiB queued (held) for one local user,
# then released at once by restarting with the local clause not held. Prints
# deliveries/s into one mbox and into one Maildir.
#   bench/local.sh [MESSAGES]
set -eu
N=${1:-5000}
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$top/target/release/etrnd
command -v smtp-source >/dev/null || { echo "needs smtp-source: apt-get install postfix" >&2; exit 69; }
(cd "$top" && cargo build --release -q)
run() {
    mailbox=$1
    dir=$(mktemp -d /var/tmp/etrnd-local.XXXXXX)
    mkdir -p "$dir/db"
    cat > "$dir/etrnd.conf" <<CONF
MAILVAR=.
POSTOFFICE=spool
PIDFILE=etrnd.pid
LISTEN=127.0.0.1:0
HOSTNAME=bench.example
HOSTS_ORDER=files
MAILBOX=$mailbox
CONF
    : > "$dir/db/routes"
    echo "bench.example" > "$dir/db/localnames"
    echo "alice: root" > "$dir/db/aliases"
    printf '*/* expiry=1d\nlocal/* queueonly command=local\n' > "$dir/scheduler.conf"
    "$bin" -d -f "$dir/etrnd.conf" 2> "$dir/log" & pid=$!
    port=""
    while [ -z "$port" ]; do sleep 0.1; port=$(sed -n 's/.*smtp listening address=127.0.0.1:\([0-9]*\).*/\1/p' "$dir/log"); done
    smtp-source -s 10 -m "$N" -l 1024 -f s@far.example -t alice@bench.example 127.0.0.1:"$port"
    kill $pid; wait $pid 2>/dev/null || true
    printf '*/* expiry=1d\nlocal/* command=local\n' > "$dir/scheduler.conf"
    start=$(date +%s.%N)
    "$bin" -d -f "$dir/etrnd.conf" 2> "$dir/log2" & pid=$!
    while [ "$(find "$dir/spool/queue" -type f | wc -l)" -gt 0 ]; do sleep 0.02; done
    end=$(date +%s.%N)
    kill $pid; wait $pid 2>/dev/null || true
    echo "$start $end $N $mailbox" | awk '{printf "%s: %d local deliveries in %.2f s: %.0f/s\n", ($4 ~ /\/$/ ? "Maildir" : "mbox"), $3, $2-$1, $3/($2-$1)}'
    rm -rf "$dir"
}
run mbox
run mail/
