#!/bin/sh
# Acceptance benchmark: smtp-source (from Debian's postfix package) sends N messages of
# 1 KiB over S sessions into a held (queue-only) route; every 250 is durable (fsync).
# Prints messages/s, and the daemon's RSS idle and after the run.
#   bench/accept.sh [SESSIONS] [MESSAGES]
set -eu
S=${1:-10}
N=${2:-10000}
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
need_postfix_tools
build
etrnd_dir accept "MAX_CONNECTIONS=2000
MAX_CONNECTIONS_PER_IP=2000"
echo ".client.dom smtp-etrn!mail.client.dom" > "$dir/db/routes"
etrnd_start etrnd
trap 'etrnd_stop; rm -rf "$dir"' EXIT
rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
echo "idle RSS: $(rss) KiB"
start=$(now)
smtp-source -s "$S" -m "$N" -l 1024 -f sender@bench.example -t user@client.dom 127.0.0.1:"$port"
end=$(now)
echo "sessions=$S messages=$N queued=$(queued)"
echo "$start $end $N" | awk '{printf "elapsed %.2f s, %.0f messages/s\n", $2-$1, $3/($2-$1)}'
echo "RSS after load: $(rss) KiB (peak $(awk '/VmHWM/ {print $2}' "/proc/$pid/status") KiB)"
