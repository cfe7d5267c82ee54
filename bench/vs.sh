#!/bin/sh
# Before and after: the four figures of a change that must not cost speed or memory
# (acceptance at 10 sessions, drain of a backlog, ETRN to the first connection, idle
# RSS), each run alternating two builds with farm-bench --vs, every run on a fresh
# file system (bench/spoolfs.sh). Prints farm-bench's wall-time report and each
# benchmark's own figure as median [min, max] per build.
#   bench/vs.sh OLD_BINARY NEW_BINARY [RUNS] [MESSAGES]
set -eu
old=$1
new=$2
runs=${3:-5}
n=${4:-10000}
top=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d /var/tmp/etrnd-vs.XXXXXX)
trap 'rm -rf "$out"' EXIT
one() { # NAME SCRIPT ARGS...: farm-bench A=new B=old, outputs kept per build
    name=$1
    shift
    farm-bench -n "$runs" --warmup 1 --timeout 3600 \
        --vs "sh -c 'exec env ETRND_BIN=$old sh $top/bench/spoolfs.sh $* >>$out/$name.old 2>&1'" \
        -- sh -c "exec env ETRND_BIN=$new sh $top/bench/spoolfs.sh $* >>$out/$name.new 2>&1"
}
# fig FILE REGEX: the first number after REGEX on each matching line; median [min, max].
fig() {
    sed -n "s/.*$2 *\([0-9.]*\).*/\1/p" "$1" | tail -n +2 | sort -n | awk '
        { v[NR] = $1 }
        END { if (NR == 0) { print "none"; exit }
              m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
              printf "%s [%s, %s] (%d runs)\n", m, v[1], v[NR], NR }'
}
report() { # NAME LABEL REGEX
    echo "  $2: new $(fig "$out/$1.new" "$3")   old $(fig "$out/$1.old" "$3")"
}
echo "== acceptance, 10 sessions, $n messages"
one accept "sh $top/bench/accept.sh 10 $n"
report accept "messages/s" "s, "
report accept "RSS after load (KiB)" "RSS after load:"
echo "== drain of $n"
one drain "sh $top/bench/drain.sh $n"
report drain "messages/s" "s: "
echo "== ETRN to first connection ($n held)"
one etrn "sh $top/bench/etrn.sh $n"
report etrn "ms" "first outbound connection:"
report etrn "drain messages/s" "after one ETRN: "
echo "== idle RSS, 1,000 idle sessions"
one idle "python3 $top/bench/idle.py 1000"
report idle "idle RSS (KiB)" "idle RSS:"
report idle "1000 sessions RSS (KiB)" "idle sessions RSS:"
