#!/bin/sh
# Before and after: the four figures of a change that must not cost speed or memory
# (acceptance at 10 sessions, drain of a backlog, ETRN to the first connection, idle
# RSS), each run alternating the two builds (new, old, new, old, ...) after one
# warm-up pair, every run on a fresh file system (bench/spoolfs.sh). Prints each
# benchmark's own figure and the whole run's wall time as median [min, max] per
# build, and the new/old wall-time ratio pair by pair.
#   bench/vs.sh OLD_BINARY NEW_BINARY [RUNS] [MESSAGES]
set -eu
old=$1
new=$2
runs=${3:-5}
n=${4:-10000}
top=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d /var/tmp/etrnd-vs.XXXXXX)
trap 'rm -rf "$out"' EXIT
now() { date +%s.%N; }
# one NAME SCRIPT ARGS...: warm-up pair, then RUNS pairs, new first; each build's
# output is kept in NAME.new / NAME.old, each run's wall seconds in NAME.wall.*.
one() {
    name=$1
    shift
    i=0
    while [ "$i" -le "$runs" ]; do
        for b in new old; do
            if [ "$b" = new ]; then bin=$new; else bin=$old; fi
            t0=$(now)
            env ETRND_BIN="$bin" sh "$top/bench/spoolfs.sh" "$@" >>"$out/$name.$b" 2>&1
            t1=$(now)
            # The warm-up pair is printed to the files but not counted.
            [ "$i" -eq 0 ] || echo "$t0 $t1" | awk '{ printf "%.3f\n", $2 - $1 }' >>"$out/$name.wall.$b"
        done
        i=$((i + 1))
    done
    paste "$out/$name.wall.new" "$out/$name.wall.old" | awk '{ printf "%.3f\n", $1 / $2 }' \
        >"$out/$name.ratio"
    echo "  wall (s): new $(stats "$out/$name.wall.new")   old $(stats "$out/$name.wall.old")   new/old $(stats "$out/$name.ratio")"
}
# stats FILE: median [min, max] of the numbers in FILE, one per line.
stats() {
    sort -n "$1" | awk '
        { v[NR] = $1 }
        END { if (NR == 0) { print "none"; exit }
              m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
              printf "%s [%s, %s] (%d runs)\n", m, v[1], v[NR], NR }'
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
one accept sh "$top/bench/accept.sh" 10 "$n"
report accept "messages/s" "s, "
report accept "RSS after load (KiB)" "RSS after load:"
echo "== drain of $n"
one drain sh "$top/bench/drain.sh" "$n"
report drain "messages/s" "s: "
echo "== ETRN to first connection ($n held)"
one etrn sh "$top/bench/etrn.sh" "$n"
report etrn "ms" "first outbound connection:"
report etrn "drain messages/s" "after one ETRN: "
echo "== idle RSS, 1,000 idle sessions"
one idle python3 "$top/bench/idle.py" 1000
report idle "idle RSS (KiB)" "idle RSS:"
report idle "1000 sessions RSS (KiB)" "idle sessions RSS:"
