#!/bin/sh
# Drain benchmark: N queued 1 KiB messages for one host are released at once and
# delivered to Postfix's smtp-sink. The backlog builds while the host is down (the
# first attempt fails and the thread sleeps); then smtp-sink starts and the thread's
# next slot drains the queue. Prints the drain time (from the first connection to an
# empty queue), messages/s and the number of connections used.
#   bench/drain.sh [MESSAGES]
set -eu
N=${1:-10000}
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$top/target/release/etrnd
command -v smtp-source >/dev/null || { echo "needs smtp-source/smtp-sink: apt-get install postfix" >&2; exit 69; }
(cd "$top" && cargo build --release -q)
dir=$(mktemp -d /var/tmp/etrnd-drain.XXXXXX)
sinkport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$dir/db"
cat > "$dir/etrnd.conf" <<CONF
MAILVAR=.
POSTOFFICE=spool
PIDFILE=etrnd.pid
LISTEN=127.0.0.1:0
HOSTNAME=bench.example
HOSTS_ORDER=files
CONF
echo ".sink.example smtp![127.0.0.1]:$sinkport" > "$dir/db/routes"
printf '*/* interval=5s retries="1" expiry=1d\nsmtp*/* command=smtp\n' > "$dir/scheduler.conf"
"$bin" -d -f "$dir/etrnd.conf" 2> "$dir/log" &
pid=$!
sinkpid=""
trap 'kill $pid $sinkpid 2>/dev/null; rm -rf "$dir"' EXIT
port=""
for _ in $(seq 50); do
    port=$(sed -n 's/.*smtp listening address=127.0.0.1:\([0-9]*\).*/\1/p' "$dir/log")
    [ -n "$port" ] && break
    sleep 0.1
done
smtp-source -s 10 -m "$N" -l 1024 -f sender@bench.example -t user@sink.example 127.0.0.1:"$port"
echo "queued: $(find "$dir/spool/queue" -type f | wc -l)"
smtp-sink -u root 127.0.0.1:"$sinkport" 100 &
sinkpid=$!
# Wait for the first delivery, then time until the queue is empty.
until grep -q "status=sent" "$dir/log"; do sleep 0.01; done
start=$(date +%s.%N)
while [ "$(find "$dir/spool/queue" -type f | wc -l)" -gt 0 ]; do sleep 0.02; done
end=$(date +%s.%N)
sent=$(grep -c "status=sent" "$dir/log")
conns=$(grep -c "smtp connected" "$dir/log" || true)
failed=$(grep -c "connect-failed" "$dir/log" || true)
echo "$start $end $sent" | awk '{printf "drained %d messages in %.2f s: %.0f messages/s\n", $3, $2-$1, $3/($2-$1)}'
echo "connections used: $conns (plus $failed refused attempts while the sink was down)"
