#!/bin/sh
# Acceptance benchmark: smtp-source (from Debian's postfix package) sends N messages of
# 1 KiB over S sessions into a held (queue-only) route; every 250 is durable (fsync).
# Prints messages/s, and the daemon's RSS idle and after the run.
#   bench/accept.sh [SESSIONS] [MESSAGES]
set -eu
S=${1:-10}
N=${2:-10000}
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$top/target/release/etrnd
command -v smtp-source >/dev/null || { echo "needs smtp-source: apt-get install postfix" >&2; exit 69; }
[ -x "$bin" ] || (cd "$top" && cargo build --release -q)
dir=$(mktemp -d /var/tmp/etrnd-bench.XXXXXX)
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
mkdir -p "$dir/db"
cat > "$dir/etrnd.conf" <<CONF
MAILVAR=.
POSTOFFICE=spool
PIDFILE=etrnd.pid
LISTEN=127.0.0.1:0
HOSTNAME=bench.example
HOSTS_ORDER=files
MAX_CONNECTIONS=2000
MAX_CONNECTIONS_PER_IP=2000
CONF
echo ".client.dom smtp-etrn!mail.client.dom" > "$dir/db/routes"
"$bin" -d -f "$dir/etrnd.conf" 2> "$dir/log" &
pid=$!
port=""
for _ in $(seq 50); do
    port=$(sed -n 's/.*smtp listening address=127.0.0.1:\([0-9]*\).*/\1/p' "$dir/log")
    [ -n "$port" ] && break
    sleep 0.1
done
rss() { awk '/VmRSS/ {print $2}' /proc/$pid/status; }
echo "idle RSS: $(rss) KiB"
start=$(date +%s.%N)
smtp-source -s "$S" -m "$N" -l 1024 -f sender@bench.example -t user@client.dom 127.0.0.1:"$port"
end=$(date +%s.%N)
queued=$(find "$dir/spool/queue" -type f | wc -l)
echo "sessions=$S messages=$N queued=$queued"
echo "$start $end $N" | awk '{printf "elapsed %.2f s, %.0f messages/s\n", $2-$1, $3/($2-$1)}'
echo "RSS after load: $(rss) KiB (peak $(awk '/VmHWM/ {print $2}' /proc/$pid/status) KiB)"
