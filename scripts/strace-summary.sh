#!/usr/bin/env bash
# Which syscalls a loaded coreshard makes: strace -f -c over a redis-benchmark run.
# Expect io_uring_enter and, per connection only, setsockopt/getpeername/shutdown.
#   scripts/strace-summary.sh [requests] [pipeline]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
P=${2:-1}
PORT=${PORT:-16381}
command -v strace >/dev/null || { apt-get update -qq && apt-get install -y -qq strace >/dev/null; }
command -v redis-benchmark >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-tools >/dev/null; }
cargo build --release -q
./target/release/coreshard --port "$PORT" --shards 1 --log-level warn --appendonly no >/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
out=$(mktemp)
strace -f -c -p "$pid" -o "$out" &
spid=$!
sleep 0.5
redis-benchmark -p "$PORT" -t set,get -n "$N" -c 50 -P "$P" -q | tr '\r' '\n' | grep "per second"
kill -INT $spid; wait $spid 2>/dev/null || true
echo "requests: $((2 * N)) (set + get), pipeline $P"
cat "$out"
rm -f "$out"
