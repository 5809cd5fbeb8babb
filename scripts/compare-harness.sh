#!/usr/bin/env bash
# coreshard vs redis-server through coreshard-bench's compare mode: an open-loop SET/GET
# mix at a fixed rate, rounds alternating between the servers, medians, ratios and one
# overlaid latency-by-percentile plot. Both servers on SERVER_CPU, the client on CLIENT_CPU.
#   scripts/compare-harness.sh [plot.svg]
set -euo pipefail
cd "$(dirname "$0")/.."
PLOT=${1:-docs/compare-coreshard-redis.svg}
RATE=${RATE:-40000}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
if ! command -v redis-server >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
fi
cargo build --release -q
taskset -c "$SERVER_CPU" ./target/release/coreshard --port 16386 --shards 1 --cores "$SERVER_CPU" --log-level warn >/dev/null &
cs=$!
taskset -c "$SERVER_CPU" redis-server --port 16387 --save "" --appendonly no --loglevel warning >/dev/null &
rd=$!
trap 'kill $cs $rd 2>/dev/null || true' EXIT
sleep 0.5
./target/release/coreshard-bench --no-progress \
  --target coreshard=127.0.0.1:16386 --target redis=127.0.0.1:16387 \
  --rounds "${ROUNDS:-3}" --rate "$RATE" -c 50 --duration "${DURATION:-10}" --warmup 2 \
  --ratio 1:4 --keyspace 100000 --prefill -d 32 --cpus "$CLIENT_CPU" \
  --plot "$PLOT" --json "${PLOT%.svg}.json"
