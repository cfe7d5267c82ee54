#!/bin/sh
# Startup with a big held queue (reference/bad-input.md goal G5): N held 1 KiB
# messages are queued through SMTP, the daemon is stopped and started again, and the
# time from start to "daemon started" (every queue file read and verified, the
# scheduler rebuilt) is printed with the daemon's RSS holding that queue.
#   bench/recovery.sh [MESSAGES]
set -eu
N=${1:-100000}
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
need_postfix_tools
build
etrnd_dir recovery "MAX_CONNECTIONS=200
MAX_CONNECTIONS_PER_IP=200"
echo ".client.dom smtp-etrn!mail.client.dom" > "$dir/db/routes"
etrnd_start filling
trap 'etrnd_stop; rm -rf "$dir"' EXIT
smtp-source -s 50 -m "$N" -l 1024 -f sender@bench.example -t user@client.dom 127.0.0.1:"$port"
etrnd_stop
echo "queued: $(queued) messages in $(du -sk "$dir/spool/queue" | cut -f1) KiB"
sync
start=$(now)
etrnd_start restart
until grep -q "daemon started" "$dir/log/restart"; do sleep 0.01; done
end=$(now)
echo "$start $end" | awk '{printf "startup with the queue: %.2f s\n", $2-$1}'
grep -o "spool recovered.*" "$dir/log/restart"
echo "RSS holding the queue: $(awk '/VmRSS/ {print $2}' "/proc/$pid/status") KiB"
