#!/usr/bin/env bash
# Is coreshard-bench ever the bottleneck? Drive the same redis-server with redis-benchmark
# and with coreshard-bench in closed loop with the same connections and pipeline
# (-c 50 -P 16, GET, 100k random keys), client pinned to CLIENT_CPU, server to SERVER_CPU.
# Rounds alternate the two clients; medians and the ratio are printed. A coreshard-bench
# run that fails its checks (errors, no replies) stops the script with its reason.
#   scripts/harness-vs-redis-benchmark.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
N=${N:-2000000}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
PORT=${PORT:-16385}
T=${CARGO_TARGET_DIR:-target}/release
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
fi
cargo build --release -q -p coreshard-bench
taskset -c "$SERVER_CPU" redis-server --port "$PORT" --save "" --appendonly no --loglevel warning >/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
# Both clients read existing keys.
taskset -c "$CLIENT_CPU" redis-benchmark -p "$PORT" -t set -n 200000 -r 100000 -c 50 -P 16 -q >/dev/null
rb=(); cb=()
for round in $(seq 1 "$ROUNDS"); do
  r=$(taskset -c "$CLIENT_CPU" redis-benchmark -p "$PORT" -t get -n "$N" -r 100000 -c 50 -P 16 -q | tr '\r' '\n' | grep "per second" | tail -1 | sed -E 's/.*: ([0-9.]+) requests per second.*/\1/')
  c=$("$T/coreshard-bench" -p "$PORT" -c 50 -P 16 --ratio 0:1 --keyspace 100000 -n "$N" --warmup 0 --cpus "$CLIENT_CPU" --no-progress | awk '$1 == "GET" {print $2}')
  echo "round $round: redis-benchmark $r req/s, coreshard-bench $c req/s" >&2
  rb+=("$r"); cb+=("$c")
done
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END { print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2 }'; }
mr=$(med "${rb[@]}"); mc=$(med "${cb[@]}")
echo "GET -c 50 -P 16 against redis-server $(redis-server --version | awk '{print $3}'), medians of $ROUNDS rounds:"
echo "  redis-benchmark  $mr req/s"
echo "  coreshard-bench  $mc req/s   ($(awk -v a="$mc" -v b="$mr" 'BEGIN { printf "%.2f", a / b }')x redis-benchmark)"
