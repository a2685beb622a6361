#!/bin/bash
# overhead.sh measures what mxgate costs on the hot path: wrk against a
# trivial upstream through plain Caddy reverse_proxy and through Caddy with
# the mxgate directive, both the same mxgate binary, one after the other in
# one run. It prints requests/s and latency percentiles and their ratio.
#
#   bench/overhead.sh                      # 3 rounds of 10 s per side, 32 connections
#   ROUNDS=5 DURATION=30s CONNECTIONS=64 bench/overhead.sh
#   MXGATE_BIN=/path/to/mxgate bench/overhead.sh
#
# The requested path is an incremental /sync (class sync: its own budget of
# 4096, no rate limit), so the gateway's caps never engage: only its
# per-request cost is measured. The two sides alternate for ROUNDS rounds and
# each figure is the median over rounds, so that drift on a shared machine
# hits both alike. Needs wrk (bench/install-peers.sh).
set -euo pipefail

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-32}
PORT_BASE=${PORT_BASE:-18480}
UPSTREAM=127.0.0.1:$PORT_BASE
PLAIN=127.0.0.1:$((PORT_BASE + 1))
GATED=127.0.0.1:$((PORT_BASE + 2))
REQ_PATH='/_matrix/client/v3/sync?since=s1&timeout=0'

if ! command -v wrk >/dev/null 2>&1; then
	echo "wrk is not installed: run bench/install-peers.sh" >&2
	exit 1
fi

root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
pids=()
cleanup() {
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

cd "$root"
bin=${MXGATE_BIN:-}
if [ -z "$bin" ]; then
	bin=$tmp/mxgate
	go build -o "$bin" ./cmd/mxgate
fi
go build -o "$tmp/simhs" ./bench/cmd/simhs

caddyfile() { # listen, extra directive
	cat <<CADDY
{
	admin off
	auto_https off
	persist_config off
}
http://$1 {
$2
	reverse_proxy $UPSTREAM
}
CADDY
}
caddyfile "$PLAIN" "" >"$tmp/plain.Caddyfile"
caddyfile "$GATED" "	mxgate" >"$tmp/gated.Caddyfile"

wait_port() {
	for _ in $(seq 1 200); do
		if (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	echo "nothing listens on $1; logs in $tmp" >&2
	cat "$tmp"/*.log >&2
	exit 1
}

"$tmp/simhs" -trivial -listen "$UPSTREAM" 2>"$tmp/upstream.log" &
pids+=($!)
"$bin" run --config "$tmp/plain.Caddyfile" --adapter caddyfile >"$tmp/plain.log" 2>&1 &
pids+=($!)
"$bin" run --config "$tmp/gated.Caddyfile" --adapter caddyfile >"$tmp/gated.log" 2>&1 &
pids+=($!)
wait_port "$UPSTREAM"
wait_port "$PLAIN"
wait_port "$GATED"

wrk -t1 -c"$CONNECTIONS" -d2s "http://$PLAIN$REQ_PATH" >/dev/null # warm-up
wrk -t1 -c"$CONNECTIONS" -d2s "http://$GATED$REQ_PATH" >/dev/null
for round in $(seq 1 "$ROUNDS"); do
	wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "http://$PLAIN$REQ_PATH" >"$tmp/plain.$round.txt"
	wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "http://$GATED$REQ_PATH" >"$tmp/gated.$round.txt"
done

# value FILE KEY: requests/s, or a latency percentile (50%, 99%) in µs.
value() {
	awk -v key="$2" '
	function us(v) {
		if (v ~ /us$/) return v + 0
		if (v ~ /ms$/) return v * 1000
		if (v ~ /s$/) return v * 1000000
		return v
	}
	key == "rps" && $1 == "Requests/sec:" { print $2 }
	key != "rps" && $1 == key && NF == 2 { print us($2) }
	' "$1"
}

# extract SIDE KEY: the median of value over the rounds.
extract() {
	for round in $(seq 1 "$ROUNDS"); do
		value "$tmp/$1.$round.txt" "$2"
	done | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo "wrk -t1 -c$CONNECTIONS -d$DURATION, GET $REQ_PATH against a trivial upstream; median of $ROUNDS alternating rounds"
echo
echo "| | plain Caddy | Caddy + mxgate | mxgate vs plain |"
echo "|---|---:|---:|---:|"
p=$(extract plain rps)
g=$(extract gated rps)
awk -v p="$p" -v g="$g" 'BEGIN { printf "| requests/s | %.0f | %.0f | %.3f× |\n", p, g, g / p }'
for q in 50% 75% 90% 99%; do
	p=$(extract plain "$q")
	g=$(extract gated "$q")
	awk -v q="$q" -v p="$p" -v g="$g" 'BEGIN { printf "| latency p%s | %.0f µs | %.0f µs | %+.0f µs |\n", substr(q, 1, length(q) - 1), p, g, g - p }'
done
