#!/usr/bin/env bash
# coreshard vs redis-server through coreshard-bench's compare mode: an open-loop SET/GET
# mix at a fixed rate, rounds alternating between the servers, each target's median round
# (by p99) and ratios, and one overlaid latency-by-percentile plot. Both servers on
# SERVER_CPU, the client on CLIENT_CPU; neither server persists anything.
#   scripts/compare-harness.sh [plot.svg]
# Exits non-zero when a round failed (exit 3: an open loop below 95% of RATE, errors, no
# replies); the table, JSON and plot are still written and say why.
set -euo pipefail
cd "$(dirname "$0")/.."
PLOT=${1:-docs/compare-coreshard-redis.svg}
RATE=${RATE:-40000}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
CS_PORT=${CS_PORT:-16386}
RD_PORT=${RD_PORT:-16387}
T=${CARGO_TARGET_DIR:-target}/release
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
fi
# Both binaries: a bare `cargo build` builds only the root package.
cargo build --release -q -p coreshard -p coreshard-bench
taskset -c "$SERVER_CPU" "$T/coreshard" --port "$CS_PORT" --shards 1 --cores "$SERVER_CPU" \
  --appendonly no --log-level warn >/dev/null &
cs=$!
taskset -c "$SERVER_CPU" redis-server --port "$RD_PORT" --save "" --appendonly no --loglevel warning >/dev/null &
rd=$!
trap 'kill $cs $rd 2>/dev/null || true' EXIT
for port in "$CS_PORT" "$RD_PORT"; do
  for _ in $(seq 1 200); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
done
"$T/coreshard-bench" --no-progress \
  --target coreshard=127.0.0.1:"$CS_PORT" --target redis=127.0.0.1:"$RD_PORT" \
  --rounds "${ROUNDS:-3}" --rate "$RATE" -c 50 --duration "${DURATION:-10}" --warmup 2 \
  --ratio 1:4 --keyspace 100000 --prefill -d 32 --cpus "$CLIENT_CPU" \
  --plot "$PLOT" --json "${PLOT%.svg}.json"
