# bench/lib.sh: shared by the benchmark scripts (sourced, not run).
# shellcheck shell=sh

top=$(cd "$(dirname "$0")/.." && pwd)
# ETRND_BIN names another build (before/after comparisons); the default is this
# tree's release build, made first.
bin=${ETRND_BIN:-$top/target/release/etrnd}

# The Postfix tools (smtp-source, smtp-sink) come with Debian's postfix package.
need_postfix_tools() {
    command -v smtp-source >/dev/null || {
        echo "needs smtp-source/smtp-sink: apt-get install postfix" >&2
        exit 69
    }
}

build() { [ -n "${ETRND_BIN:-}" ] || (cd "$top" && cargo build --release -q); }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# bench_user: as root, the unprivileged account the daemon becomes (created if
# missing: etrnd refuses to serve as root); empty otherwise.
bench_user() {
    [ "$(id -u)" -eq 0 ] || return 0
    id etrnd-bench >/dev/null 2>&1 ||
        useradd -r -M -d /nonexistent -s /bin/false etrnd-bench
    echo "USER=etrnd-bench"
}

# etrnd_dir TAG [EXTRA-CONF]: a fresh configuration in $dir (loopback, port 0, no DNS).
etrnd_dir() {
    dir=$(mktemp -d "${BENCH_DIR:-/var/tmp}/etrnd-$1.XXXXXX")
    chmod 755 "$dir"
    mkdir -p "$dir/db" "$dir/log"
    printf 'MAILVAR=.\nPOSTOFFICE=spool\nPIDFILE=etrnd.pid\nLOGDIR=log\nLISTEN=127.0.0.1:0\nHOSTNAME=bench.example\nHOSTS_ORDER=files\nHOSTS_FILE=hosts\n%s\n%s\n' "${2:-}" "$(bench_user)" > "$dir/etrnd.conf"
    : > "$dir/hosts"
    : > "$dir/db/routes"
}

# etrnd_start LOGNAME: starts the daemon on $dir; sets $pid and $port.
etrnd_start() {
    "$bin" -d -f "$dir/etrnd.conf" 2> "$dir/log/$1" &
    pid=$!
    port=""
    while [ -z "$port" ]; do
        sleep 0.1
        port=$(sed -n 's/.*smtp listening address=127.0.0.1:\([0-9]*\).*/\1/p' "$dir/log/$1")
    done
}

etrnd_stop() { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; }

queued() { find "$dir/spool/queue" "$dir/spool/hold" -type f 2>/dev/null | wc -l; }

wait_empty() { while [ "$(queued)" -gt 0 ]; do sleep 0.02; done; }

now() { date +%s.%N; }
