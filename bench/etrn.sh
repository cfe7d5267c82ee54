#!/bin/sh
# ETRN benchmark: N held 1 KiB messages for one client domain (the shipped hub
# scheduler.conf), released by one ETRN into Postfix's smtp-sink. Prints the latency
# from the ETRN request to the first outbound connection (from the daemon's log,
# millisecond stamps), the drain time and rate, and the connections used.
#   bench/etrn.sh [MESSAGES]
set -eu
N=${1:-10000}
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
need_postfix_tools
build
sinkport=$(free_port)
etrnd_dir etrn "SMTP_PORT=$sinkport"
echo "127.0.0.1 mail.client.dom" > "$dir/hosts"
echo ".client.dom smtp-etrn!mail.client.dom" > "$dir/db/routes"
cp "$top/etc/hub/scheduler.conf" "$dir/scheduler.conf"
smtp-sink -u root 127.0.0.1:"$sinkport" 100 &
sinkpid=$!
etrnd_start etrnd
trap 'etrnd_stop; kill $sinkpid 2>/dev/null; rm -rf "$dir"' EXIT
smtp-source -s 10 -m "$N" -l 1024 -f sender@far.example -t user@client.dom 127.0.0.1:"$port"
echo "held: $(queued)"
start=$(now)
"$bin" -f "$dir/etrnd.conf" etrn -p "$port" 127.0.0.1 client.dom
wait_empty
end=$(now)
ms() { sed -n "s/^[0-9-]* \([0-9:.]*\) .*$1.*/\1/p" "$dir/log/etrnd" | head -1 | awk -F: '{printf "%.3f", ($1*3600+$2*60+$3)*1000}'; }
t_etrn=$(ms "etrn request")
t_conn=$(ms "smtp connected")
echo "ETRN to first outbound connection: $(echo "$t_etrn $t_conn" | awk '{printf "%.0f ms", $2-$1}')"
echo "$start $end $N" | awk '{printf "drained %d messages in %.2f s after one ETRN: %.0f messages/s\n", $3, $2-$1, $3/($2-$1)}'
echo "connections used: $(grep -c 'smtp connected' "$dir/log/etrnd")"
