#!/bin/bash
# herd-caps.sh measures how the room_state and sync_initial caps decide a
# herd's outcome: the herd scenario through mxgate-inprocess once per
# setting, everything else at its defaults, in one run. It writes
# bench/results/herd-caps.md: per setting, the herd clients resynced against
# the ideal of that run (a perfect gate, bench/README.md), and what the
# background met.
#
#   bench/herd-caps.sh               # model time 2x faster than real time
#   SCALE=1 bench/herd-caps.sh       # real time: about 3 minutes per setting
set -euo pipefail
cd "$(dirname "$0")/.."

SCALE=${SCALE:-2}
OUT=${OUT:-bench/results/herd-caps.md}

# label|-classes JSON ("" = the defaults)
settings=(
	'room_state 16, sync_initial 8 (the defaults before)|{"room_state":{"max_inflight":16},"sync_initial":{"max_inflight":8}}'
	'room_state 4, sync_initial 4|{"room_state":{"max_inflight":4},"sync_initial":{"max_inflight":4}}'
	'room_state 2, sync_initial 2|{"room_state":{"max_inflight":2},"sync_initial":{"max_inflight":2}}'
	'room_state 2, sync_initial 4|{"room_state":{"max_inflight":2},"sync_initial":{"max_inflight":4}}'
	'room_state 1, sync_initial 4|{"room_state":{"max_inflight":1},"sync_initial":{"max_inflight":4}}'
	'room_state 2, sync_initial 6 (the defaults)|'
	'the defaults with share_state|{"room_state":{"share_state":true}}'
)

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/mxbench" ./bench/cmd/mxbench

{
	echo "# Herd caps: mxgate-inprocess under the herd scenario, one run per setting"
	echo
	echo '```'
	echo "SCALE=$SCALE bench/herd-caps.sh"
	echo '```'
	echo
	echo "| setting | herd resynced | ideal | vs ideal | goodput (ok/s) | worst background p99 vs baseline | upstream peak (non-sync) | recovery |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|"
} >"$OUT.tmp"
for s in "${settings[@]}"; do
	label=${s%%|*}
	classes=${s#*|}
	echo "herd-caps: $label" >&2
	args=(-scenario herd -peer mxgate-inprocess -scale "$SCALE")
	if [ -n "$classes" ]; then
		args+=(-classes "$classes")
	fi
	# The summary row: | herd | mxgate-inprocess | goodput | ok % | resynced | ideal | vs | worst | peak | fds | wasted | errors | recovery |
	row=$("$bin/mxbench" "${args[@]}" 2>/dev/null | grep -m1 '^| herd | mxgate-inprocess | [0-9]')
	IFS='|' read -r _ _ _ goodput _ resynced ideal vs worst peak _ _ _ recovery _ <<<"$row"
	echo "| $label |$resynced|${ideal%% (*} |$vs|$goodput|$worst|$peak|$recovery|" >>"$OUT.tmp"
done
mv "$OUT.tmp" "$OUT"
cat "$OUT"
