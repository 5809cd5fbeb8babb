#!/usr/bin/env bash
# A/B of two coreshard binaries by where the server's CPU goes, for a machine too noisy
# for req/s: perf samples the server during the same redis-benchmark run for A and B
# (alternated, ROUNDS times) and this prints the kernel's share of the samples and the
# top user-space symbols. The kernel's work per request (recv/send of the same bytes) does
# not change between two builds of the server, so
#
#     server CPU per request, B / A  ~=  kernel share of A / kernel share of B
#
# which is what the last line reports (median of the per-round ratios). Read the symbol
# lists to see where a change moved time.
#
#   scripts/perf-ab.sh target-a/release/coreshard target-b/release/coreshard
#   TEST=zpopmin P=16 N=3000000 KEYS=100000 ROUNDS=3 scripts/perf-ab.sh A B
#
# Needs perf (linux-perf) and redis-benchmark; the server runs on SERVER_CPU (1), the
# client on CLIENT_CPU (0), `--shards 1 --appendonly no`, after KEYS SETs of 3 bytes.
set -euo pipefail

A=${1:?usage: perf-ab.sh BINARY_A BINARY_B}
B=${2:?usage: perf-ab.sh BINARY_A BINARY_B}
TEST=${TEST:-get}
P=${P:-16}
N=${N:-3000000}
KEYS=${KEYS:-100000}
ROUNDS=${ROUNDS:-3}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
PORT=${PORT:-16399}
TOP=${TOP:-6}

for tool in perf redis-benchmark redis-cli; do
  command -v "$tool" >/dev/null || { echo "perf-ab: $tool is not installed" >&2; exit 2; }
done
for bin in "$A" "$B"; do
  [ -x "$bin" ] || { echo "perf-ab: $bin is not an executable" >&2; exit 2; }
done

tmp=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

run() { # label binary -> prints the kernel share
  local label=$1 bin=$2
  taskset -c "$SERVER_CPU" "$bin" --port "$PORT" --shards 1 --cores "$SERVER_CPU" \
    --appendonly no --log-level warn >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 1 200); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
  redis-cli -p "$PORT" ping >/dev/null 2>&1 || { echo "perf-ab: $bin did not start" >&2; exit 1; }
  taskset -c "$CLIENT_CPU" redis-benchmark -p "$PORT" -t set -n "$KEYS" -c 50 -P 16 -r "$KEYS" -d 3 -q >/dev/null 2>&1
  perf record -q -F 4000 -p "$pid" -o "$tmp/perf.data" >/dev/null 2>&1 &
  local rec=$!
  sleep 0.3
  taskset -c "$CLIENT_CPU" redis-benchmark -p "$PORT" -t "$TEST" -n "$N" -c 50 -P "$P" -r "$KEYS" -d 3 -q >/dev/null 2>&1
  kill -INT "$rec"; wait "$rec" 2>/dev/null || true
  kill "$pid"; wait "$pid" 2>/dev/null || true
  pid=""
  local kernel
  kernel=$(perf report -i "$tmp/perf.data" --no-children --sort dso 2>/dev/null \
    | awk '/\[kernel.kallsyms\]/ && !k {gsub("%","",$1); k = $1} END {print k}')
  echo "$kernel" > "$tmp/$label.k"
  echo "== $label ($bin): kernel ${kernel:-?} % of samples; top user symbols:" >&2
  perf report -i "$tmp/perf.data" --no-children --sort sym 2>/dev/null \
    | grep -E '^ +[0-9].*\[\.\]' | head -"$TOP" | sed 's/^/   /' >&2 || true  # (head closes the pipe)
}

ratios=()
for r in $(seq 1 "$ROUNDS"); do
  run "A$r" "$A"
  run "B$r" "$B"
  ka=$(cat "$tmp/A$r.k"); kb=$(cat "$tmp/B$r.k")
  ratios+=("$(awk -v a="$ka" -v b="$kb" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "nan" }')")
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END { print a[int((NR+1)/2)] }')
echo "TEST=$TEST -P $P, $KEYS keys: server CPU per request B/A (kernel share A / B) per round: ${ratios[*]}; median $median"
