#!/bin/sh
# Resolver figures against dnsmasq (Debian package dnsmasq-base): next-hop lookup
# latency cold and cached, and heap bytes per cached name.
#   bench/dns.sh [NAMES]
set -eu
N=${1:-1000}
top=$(cd "$(dirname "$0")/.." && pwd)
DNSMASQ=/usr/sbin/dnsmasq
[ -x "$DNSMASQ" ] || DNSMASQ=dnsmasq
dir=$(mktemp -d /var/tmp/etrnd-dns.XXXXXX)
i=0
while [ $i -lt "$N" ]; do
    echo "host-record=h$i.test,192.0.2.$((i % 250 + 1))" >> "$dir/zone.conf"
    i=$((i + 1))
done
port=53531
"$DNSMASQ" --keep-in-foreground --conf-file="$dir/zone.conf" --no-resolv --no-hosts \
    --bind-interfaces --listen-address=127.0.0.1 --port=$port --pid-file= --user=root \
    --local=/test/ --local-ttl=300 --cache-size=10000 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
sleep 0.5
cd "$top" && cargo run -q --release --example dns_bench -- 127.0.0.1:$port 'h{}.test' "$N"
