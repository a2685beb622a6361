#!/bin/bash
# overhead.sh measures what mxgate costs on the hot path: wrk against a
# trivial upstream through plain Caddy reverse_proxy (A) and through Caddy
# with the mxgate directive at its defaults (B), the same mxgate binary, side
# by side in one run. It prints, per endpoint, the median over PAIRS of the
# B/A throughput ratio and of the added median latency, with their spread.
#
#   bench/overhead.sh                      # 9 pairs of 5 s per side, 32 connections
#   PAIRS=15 DURATION=10s CONNECTIONS=64 bench/overhead.sh
#   MXGATE_BIN=/path/to/mxgate bench/overhead.sh
#   MODE=concurrent bench/overhead.sh      # both sides at once, see below
#
# Endpoints:
#   profile   GET /_matrix/client/v3/profile/@u:x — class other, not coalesced;
#   messages  GET /rooms/{id}/messages — class history, coalesced, with the
#             upstream answering Cache-Control: no-cache, no-store,
#             must-revalidate as Synapse does, so every request is proxied.
# Neither class's caps engage at 32 connections, so only mxgate's
# per-request cost is measured.
#
# A pair is one run of each side, back to back; pairs alternate which side
# goes first (ABBA...), so that drift on a shared machine hits both alike,
# and each pair gives one ratio. With MODE=concurrent the two runs of a pair
# go at the same time instead, one wrk per side, so that whatever else the
# shared machine does in those seconds falls on both sides alike; the two
# servers then share its CPU, and a side that costs more per request serves
# fewer. Needs wrk (bench/install-peers.sh).
set -euo pipefail

DURATION=${DURATION:-5s}
PAIRS=${PAIRS:-9}
MODE=${MODE:-sequential}
case $MODE in
sequential | concurrent) ;;
*)
	echo "MODE must be sequential or concurrent, not $MODE" >&2
	exit 2
	;;
esac
CONNECTIONS=${CONNECTIONS:-32}
PORT_BASE=${PORT_BASE:-18480}
UPSTREAM=127.0.0.1:$PORT_BASE
PLAIN=127.0.0.1:$((PORT_BASE + 1))
GATED=127.0.0.1:$((PORT_BASE + 2))
declare -A PATHS=(
	[profile]='/_matrix/client/v3/profile/@u:x'
	[messages]='/_matrix/client/v3/rooms/%21abc%3Aexample.org/messages?dir=b&limit=20'
)
ENDPOINTS=${ENDPOINTS:-profile messages}

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

# Each server gets its own data directory (mxgate's toggle state file).
"$tmp/simhs" -trivial -listen "$UPSTREAM" 2>"$tmp/upstream.log" &
pids+=($!)
declare -A server_pid
XDG_DATA_HOME=$tmp/plain.data "$bin" run --config "$tmp/plain.Caddyfile" --adapter caddyfile >"$tmp/plain.log" 2>&1 &
server_pid[plain]=$!
pids+=($!)
XDG_DATA_HOME=$tmp/gated.data "$bin" run --config "$tmp/gated.Caddyfile" --adapter caddyfile >"$tmp/gated.log" 2>&1 &
server_pid[gated]=$!
pids+=($!)
wait_port "$UPSTREAM"
wait_port "$PLAIN"
wait_port "$GATED"

# value FILE KEY: requests/s (rps), the server's CPU time per request in µs
# (cpu), or a latency percentile (50%, 99%) in µs.
value() {
	awk -v key="$2" -v ticks="$(getconf CLK_TCK)" '
	function us(v) {
		if (v ~ /us$/) return v + 0
		if (v ~ /ms$/) return v * 1000
		if (v ~ /s$/) return v * 1000000
		return v
	}
	key == "rps" && $1 == "Requests/sec:" { print $2 }
	$2 == "requests" && $3 == "in" { requests = $1 }
	key == "cpu" && $1 == "cputicks:" { print $2 * 1000000 / ticks / requests }
	key != "rps" && $1 == key && NF == 2 { print us($2) }
	' "$1"
}

# stats: "median min max" of the numbers on stdin.
stats() {
	sort -g | awk '{ v[NR] = $1 } END {
		m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		print m, v[1], v[NR]
	}'
}

# cputicks PID: user+system CPU time the process has used, in clock ticks.
cputicks() {
	awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# Every request carries its own access token, as many users' requests do:
# requests of one token may share an in-flight answer, and this measures
# requests that are proxied, not coalesced. Each wrk run has its own token
# prefix (its first argument), so that no token is ever sent twice: tokens
# the homeserver accepted in an earlier run would count as thousands of
# users reading one room, a herd, which the gate handles (and costs)
# differently from the everyday path measured here.
cat >"$tmp/tokens.lua" <<'LUA'
local prefix, n = "", 0
init = function(args)
	prefix = args[1] or ""
end
request = function()
	n = n + 1
	return wrk.format(nil, nil, { ["Authorization"] = "Bearer syt_overhead_" .. prefix .. "_" .. n })
end
LUA

run() { # side address endpoint pair
	local pid=${server_pid[$1]} before
	before=$(cputicks "$pid")
	wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$tmp/tokens.lua" "http://$2${PATHS[$3]}" -- "$3.$1.$4" >"$tmp/$3.$1.$4.txt"
	echo "cputicks: $(($(cputicks "$pid") - before))" >>"$tmp/$3.$1.$4.txt"
	check "$1" "$3" "$4"
}

check() { # side endpoint pair
	if grep -q "Non-2xx" "$tmp/$2.$1.$3.txt"; then
		echo "$1 answered non-2xx on $2:" >&2
		cat "$tmp/$2.$1.$3.txt" >&2
		exit 1
	fi
}

# run_pair endpoint pair: one run of each side, back to back (ABBA...) or,
# with MODE=concurrent, both at once.
run_pair() {
	if [ "$MODE" = sequential ]; then
		if [ $(($2 % 2)) -eq 1 ]; then
			run plain "$PLAIN" "$1" "$2"
			run gated "$GATED" "$1" "$2"
		else
			run gated "$GATED" "$1" "$2"
			run plain "$PLAIN" "$1" "$2"
		fi
		return
	fi
	local side addr wrks=()
	declare -A before
	for side in plain gated; do
		before[$side]=$(cputicks "${server_pid[$side]}")
	done
	for side in plain gated; do
		addr=$PLAIN
		[ "$side" = gated ] && addr=$GATED
		wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$tmp/tokens.lua" "http://$addr${PATHS[$1]}" -- "$1.$side.$2" >"$tmp/$1.$side.$2.txt" &
		wrks+=($!)
	done
	wait "${wrks[@]}"
	for side in plain gated; do
		echo "cputicks: $(($(cputicks "${server_pid[$side]}") - before[$side]))" >>"$tmp/$1.$side.$2.txt"
		check "$side" "$1" "$2"
	done
}

if [ "$MODE" = sequential ]; then
	echo "wrk -t1 -c$CONNECTIONS -d$DURATION against a trivial upstream, $PAIRS alternating pairs per endpoint;"
else
	echo "wrk -t1 -c$CONNECTIONS -d$DURATION against a trivial upstream, $PAIRS pairs per endpoint, both sides of a pair at once;"
fi
echo "plain = Caddy reverse_proxy, mxgate = the same Caddy binary with \`mxgate\` (defaults) before it."
echo "Machine: $(nproc) cores; load average at start $(cut -d' ' -f1-3 /proc/loadavg)."
echo
echo "| endpoint (class) | plain req/s | mxgate req/s | throughput ratio: median (min–max) | p50 plain | p50 added: median (min–max) | p99 plain | p99 mxgate | server CPU/request plain | mxgate | CPU ratio: median (min–max) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for ep in $ENDPOINTS; do
	wrk -t1 -c"$CONNECTIONS" -d2s -s "$tmp/tokens.lua" "http://$PLAIN${PATHS[$ep]}" -- "$ep.plain.warm-up" >/dev/null
	wrk -t1 -c"$CONNECTIONS" -d2s -s "$tmp/tokens.lua" "http://$GATED${PATHS[$ep]}" -- "$ep.gated.warm-up" >/dev/null
	for pair in $(seq 1 "$PAIRS"); do
		run_pair "$ep" "$pair"
	done
	per_pair() { # key, expression over p (plain) and g (gated)
		for pair in $(seq 1 "$PAIRS"); do
			awk -v p="$(value "$tmp/$ep.plain.$pair.txt" "$1")" -v g="$(value "$tmp/$ep.gated.$pair.txt" "$1")" "BEGIN { print $2 }"
		done | stats
	}
	side() { # side key
		for pair in $(seq 1 "$PAIRS"); do value "$tmp/$ep.$1.$pair.txt" "$2"; done | stats | cut -d' ' -f1
	}
	class=other
	[ "$ep" = messages ] && class=history
	read -r rm rlo rhi < <(per_pair rps 'g / p')
	read -r lm llo lhi < <(per_pair 50% 'g - p')
	read -r cm clo chi < <(per_pair cpu 'g / p')
	awk -v ep="$ep ($class)" -v pr="$(side plain rps)" -v gr="$(side gated rps)" \
		-v rm="$rm" -v rlo="$rlo" -v rhi="$rhi" -v pl="$(side plain 50%)" \
		-v lm="$lm" -v llo="$llo" -v lhi="$lhi" -v p99="$(side plain 99%)" -v g99="$(side gated 99%)" \
		-v pc="$(side plain cpu)" -v gc="$(side gated cpu)" -v cm="$cm" -v clo="$clo" -v chi="$chi" \
		'BEGIN { printf "| %s | %.0f | %.0f | %.3f× (%.3f–%.3f) | %.0f µs | %+.0f µs (%+.0f to %+.0f) | %.0f µs | %.0f µs | %.1f µs | %.1f µs | %.3f× (%.3f–%.3f) |\n", ep, pr, gr, rm, rlo, rhi, pl, lm, llo, lhi, p99, g99, pc, gc, cm, clo, chi }'
done
echo
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
if grep -q "thundering herd detected" "$tmp/gated.log"; then
	echo "the gate declared a herd during the run: it measured the herd's path, not the everyday one" >&2
	exit 1
fi
