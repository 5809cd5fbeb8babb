#!/usr/bin/env bash
# Cost of per-command statistics (one clock read, counters and a latency histogram per
# command): redis-benchmark GET/SET -P 16 against two coreshard binaries, server pinned to
# one core and the client to another, alternating runs. Prints requests/s and requests per
# server CPU-second (from /proc/PID/stat, less sensitive to other load on the machine).
#
#   scripts/stats-overhead.sh BEFORE_BIN AFTER_BIN [ROUNDS] [PORT]
set -euo pipefail
before=$1 after=$2 rounds=${3:-3} port=${4:-26710}
n=${N:-2000000}
tck=$(getconf CLK_TCK)
run() {
    local bin=$1 label=$2
    taskset -c 0 "$bin" --port "$port" --shards 1 --cores 0 --appendonly no --log-level error >/dev/null 2>&1 &
    local pid=$!
    for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    for t in set get; do
        local c0; c0=$(awk '{print $14+$15}' /proc/$pid/stat)
        local out; out=$(taskset -c 1 redis-benchmark -p "$port" -t "$t" -P 16 -n "$n" -c 50 -r 100000 -q 2>/dev/null | tr '\r' '\n' | grep -i "requests per second" | tail -1)
        local c1; c1=$(awk '{print $14+$15}' /proc/$pid/stat)
        local rps; rps=$(echo "$out" | sed -E 's/.*: ([0-9.]+) requests per second.*/\1/')
        local cpu; cpu=$(echo "scale=3; ($c1-$c0)/$tck" | bc)
        local per; per=$(echo "scale=0; $n/$cpu" | bc)
        echo "$label $t rps=$rps server_cpu_s=$cpu req_per_cpu_s=$per"
    done
    kill "$pid"; wait "$pid" 2>/dev/null || true
}
for r in $(seq "$rounds"); do
    run "$before" before
    run "$after" after
done
