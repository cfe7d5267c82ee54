#!/bin/sh
# ETRN benchmark: N held 1 KiB messages for one client domain, released by one ETRN
# into Postfix's smtp-sink. Prints the latency from the ETRN request to the first
# outbound connection (from the daemon's log, millisecond stamps), the drain time
# and rate, and the connections used.
#   bench/etrn.sh [MESSAGES]
set -eu
N=${1:-10000}
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$top/target/release/etrnd
command -v smtp-source >/dev/null || { echo "needs smtp-source/smtp-sink: apt-get install postfix" >&2; exit 69; }
(cd "$top" && cargo build --release -q)
dir=$(mktemp -d /var/tmp/etrnd-etrn.XXXXXX)
sinkport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$dir/db"
cat > "$dir/etrnd.conf" <<CONF
MAILVAR=.
POSTOFFICE=spool
PIDFILE=etrnd.pid
LISTEN=127.0.0.1:0
HOSTNAME=hub.bench
HOSTS_ORDER=files
HOSTS_FILE=hosts
SMTP_PORT=$sinkport
CONF
echo "127.0.0.1 mail.client.dom" > "$dir/hosts"
echo ".client.dom smtp-etrn!mail.client.dom" > "$dir/db/routes"
cp "$top/etc/hub/scheduler.conf" "$dir/scheduler.conf"
mkdir -p "$dir/log"; sed -i "s|\${LOGDIR}/smtp-etrn|$dir/log/smtp-etrn|" "$dir/scheduler.conf"
smtp-sink -u root 127.0.0.1:"$sinkport" 100 & sinkpid=$!
"$bin" -d -f "$dir/etrnd.conf" 2> "$dir/log/etrnd" & pid=$!
trap 'kill $pid $sinkpid 2>/dev/null; rm -rf "$dir"' EXIT
port=""
while [ -z "$port" ]; do sleep 0.1; port=$(sed -n 's/.*smtp listening address=127.0.0.1:\([0-9]*\).*/\1/p' "$dir/log/etrnd"); done
smtp-source -s 10 -m "$N" -l 1024 -f sender@far.example -t user@client.dom 127.0.0.1:"$port"
echo "held: $(find "$dir/spool/queue" -type f | wc -l)"
start=$(date +%s.%N)
"$bin" -f "$dir/etrnd.conf" etrn -p "$port" 127.0.0.1 client.dom
while [ "$(find "$dir/spool/queue" -type f | wc -l)" -gt 0 ]; do sleep 0.02; done
end=$(date +%s.%N)
ms() { sed -n "s/^[0-9-]* \([0-9:.]*\) .*$1.*/\1/p" "$dir/log/etrnd" | head -1 | awk -F: '{printf "%.3f", ($1*3600+$2*60+$3)*1000}'; }
t_etrn=$(ms "etrn request")
t_conn=$(ms "smtp connected")
echo "ETRN to first outbound connection: $(echo "$t_etrn $t_conn" | awk '{printf "%.0f ms", $2-$1}')"
echo "$start $end $N" | awk '{printf "drained %d messages in %.2f s after one ETRN: %.0f messages/s\n", $3, $2-$1, $3/($2-$1)}'
echo "connections used: $(grep -c 'smtp connected' "$dir/log/etrnd")"
