#!/bin/sh
# Drain benchmark: N queued 1 KiB messages for one host are released at once and
# delivered to Postfix's smtp-sink. The backlog builds while the host is down (the
# first attempt fails and the thread sleeps); then smtp-sink starts and the thread's
# next slot drains the queue. Prints the drain time (from the first delivery to an
# empty queue), messages/s and the number of connections used.
#   bench/drain.sh [MESSAGES]
set -eu
N=${1:-10000}
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
need_postfix_tools
build
sinkport=$(free_port)
etrnd_dir drain
echo ".sink.example smtp![127.0.0.1]:$sinkport" > "$dir/db/routes"
printf '*/* interval=5s retries="1" expiry=1d\nsmtp*/* command=smtp\nlocal/* command=local\n' > "$dir/scheduler.conf"
etrnd_start etrnd
sinkpid=""
trap 'etrnd_stop; kill $sinkpid 2>/dev/null; rm -rf "$dir"' EXIT
smtp-source -s 10 -m "$N" -l 1024 -f sender@bench.example -t user@sink.example 127.0.0.1:"$port"
echo "queued: $(queued)"
smtp-sink -u root 127.0.0.1:"$sinkport" 100 &
sinkpid=$!
until grep -q "status=sent" "$dir/log/etrnd"; do sleep 0.01; done
start=$(now)
wait_empty
end=$(now)
sent=$(grep -c "status=sent" "$dir/log/etrnd")
conns=$(grep -c "smtp connected" "$dir/log/etrnd" || true)
failed=$(grep -c "connect-failed" "$dir/log/etrnd" || true)
echo "$start $end $sent" | awk '{printf "drained %d messages in %.2f s: %.0f messages/s\n", $3, $2-$1, $3/($2-$1)}'
echo "connections used: $conns (plus $failed refused attempts while the sink was down)"
