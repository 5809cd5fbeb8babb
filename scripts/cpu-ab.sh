#!/usr/bin/env bash
# A/B of two coreshard builds (or one build with two environments) by server CPU time per
# request: utime+stime from /proc/PID/stat around the same redis-benchmark run, server
# pinned to SERVER_CPU and the client to CLIENT_CPU, A and B alternating within each
# round; prints each round and the median of the per-round B/A ratios. Unlike
# scripts/perf-ab.sh this is right when a change moves kernel work too (e.g. how often
# the server sleeps), at the price of the tick granularity (keep runs >= 1 s of CPU).
#
#   scripts/cpu-ab.sh target-a/release/coreshard target-b/release/coreshard
#   TEST=get P=1 N=300000 ROUNDS=5 scripts/cpu-ab.sh A B
#   ENV_B="CS_FOO=1" scripts/cpu-ab.sh bin bin          # same binary, B with an env var
#   ARGS_B="--send-zc-min 64kb" DATA=262144 KEYS=1000 N=50000 scripts/cpu-ab.sh bin bin
#
# Needs redis-benchmark and redis-cli. The server runs `--shards 1 --appendonly no`
# (plus ARGS_A / ARGS_B) after KEYS SETs of DATA-byte values (default 3).
set -euo pipefail

A=${1:?usage: cpu-ab.sh BINARY_A BINARY_B}
B=${2:?usage: cpu-ab.sh BINARY_A BINARY_B}
TEST=${TEST:-get}
P=${P:-1}
N=${N:-300000}
CLIENTS=${CLIENTS:-50}
KEYS=${KEYS:-100000}
ROUNDS=${ROUNDS:-5}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
PORT=${PORT:-16398}
ENV_A=${ENV_A:-}
ENV_B=${ENV_B:-}
ARGS_A=${ARGS_A:-}
ARGS_B=${ARGS_B:-}
DATA=${DATA:-3}

for tool in redis-benchmark redis-cli; do
  command -v "$tool" >/dev/null || { echo "cpu-ab: $tool is not installed" >&2; exit 2; }
done
for bin in "$A" "$B"; do
  [ -x "$bin" ] || { echo "cpu-ab: $bin is not an executable" >&2; exit 2; }
done

pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; true; }
trap cleanup EXIT
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

run() { # binary env args -> prints "us_per_request req_per_s"
  local bin=$1 envs=$2 args=$3
  # shellcheck disable=SC2086 # ARGS_* are word lists
  env $envs taskset -c "$SERVER_CPU" "$bin" --port "$PORT" --shards 1 --cores "$SERVER_CPU" \
    --appendonly no --log-level warn $args >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 1 200); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
  redis-cli -p "$PORT" ping >/dev/null 2>&1 || { echo "cpu-ab: $bin did not start" >&2; exit 1; }
  taskset -c "$CLIENT_CPU" redis-benchmark -p "$PORT" -t set -n "$KEYS" -c 50 -P 16 -r "$KEYS" -d "$DATA" -q >/dev/null 2>&1
  local t0 t1 out rps
  t0=$(ticks "$pid")
  out=$(taskset -c "$CLIENT_CPU" redis-benchmark -p "$PORT" -t "$TEST" -n "$N" -c "$CLIENTS" -P "$P" -r "$KEYS" -d "$DATA" -q 2>/dev/null | tr '\r' '\n' | grep -E 'requests per second' | tail -1)
  t1=$(ticks "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  pid=""
  rps=$(echo "$out" | awk '{for (i = 1; i <= NF; i++) if ($i == "requests") print $(i-1)}')
  awk -v d=$((t1 - t0)) -v hz="$hz" -v n="$N" -v r="$rps" 'BEGIN { printf "%.3f %s\n", d / hz * 1e6 / n, r }'
}

ratios=()
for r in $(seq 1 "$ROUNDS"); do
  read -r ua ra < <(run "$A" "$ENV_A" "$ARGS_A")
  read -r ub rb < <(run "$B" "$ENV_B" "$ARGS_B")
  ratio=$(awk -v a="$ua" -v b="$ub" 'BEGIN { printf "%.3f", b / a }')
  ratios+=("$ratio")
  echo "round $r: A ${ua} us/req (${ra} req/s)  B ${ub} us/req (${rb} req/s)  B/A ${ratio}"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END { print a[int((NR+1)/2)] }')
echo "TEST=$TEST -P $P -c $CLIENTS -d $DATA N=$N: server CPU per request B/A per round: ${ratios[*]}; median $median"
