#!/usr/bin/env bash
# Efficiency of coreshard against redis-server on this machine, side by side:
# requests per server-CPU-second (utime+stime from /proc/PID/stat) for SET and GET at
# -P 1 and -P 16, server pinned to one core and redis-benchmark to another. Each cell is
# the median of ROUNDS runs; servers alternate within a round so drift hits both.
#
#   scripts/compare-redis.sh                 # defaults below
#   ROUNDS=5 SERVER_CPU=1 CLIENT_CPU=0 scripts/compare-redis.sh
#   DATA_SIZE=262144 KEYSPACE=1000 N_P1=20000 N_P16=20000 CLIENTS=20 scripts/compare-redis.sh
#   CS_BIN=/path/to/coreshard CS_PORT=27001 REDIS_PORT=27002 scripts/compare-redis.sh  # no build
#   TESTS="lpush rpush lpop rpop sadd hset spop lrange_100" scripts/compare-redis.sh   # types
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
TESTS=${TESTS:-set get}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
CLIENTS=${CLIENTS:-50}
N_P1=${N_P1:-300000}
N_P16=${N_P16:-2000000}
KEYSPACE=${KEYSPACE:-100000}
DATA_SIZE=${DATA_SIZE:-3}
CS_PORT=${CS_PORT:-16379}
REDIS_PORT=${REDIS_PORT:-16380}
# The server binary; when set, nothing is built (e.g. a binary from another target dir).
CS_BIN=${CS_BIN:-}

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  echo "installing redis-server and redis-tools from Debian's packages" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
fi
if [ -z "$CS_BIN" ]; then
  cargo build --release -q
  CS_BIN=./target/release/coreshard
fi

tick=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

start_server() { # name -> prints pid
  case $1 in
    coreshard)
      taskset -c "$SERVER_CPU" "$CS_BIN" --port "$CS_PORT" --shards 1 --cores "$SERVER_CPU" --log-level warn --appendonly no >/dev/null &
      echo $! ;;
    redis)
      taskset -c "$SERVER_CPU" redis-server --port "$REDIS_PORT" --save "" --appendonly no --daemonize no --loglevel warning >/dev/null &
      echo $! ;;
  esac
}
port_of() { [ "$1" = coreshard ] && echo "$CS_PORT" || echo "$REDIS_PORT"; }

wait_ready() {
  for _ in $(seq 1 200); do
    redis-cli -p "$1" ping >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "server on port $1 did not come up" >&2; return 1
}

declare -A PIDS
cleanup() { # and wait until they are gone, so a run right after this one can bind the ports
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done; done
}
trap cleanup EXIT
for s in coreshard redis; do
  PIDS[$s]=$(start_server $s)
  wait_ready "$(port_of $s)"
done

results=$(mktemp)
for round in $(seq 1 "$ROUNDS"); do
  for test in $TESTS; do
    for p in 1 16; do
      n=$([ "$p" = 1 ] && echo "$N_P1" || echo "$N_P16")
      for s in coreshard redis; do
        pid=${PIDS[$s]}
        before=$(cpu_ticks "$pid")
        out=$(taskset -c "$CLIENT_CPU" redis-benchmark -p "$(port_of $s)" -t "$test" -n "$n" -c "$CLIENTS" -P "$p" -r "$KEYSPACE" -d "$DATA_SIZE" -q 2>&1 | tr '\r' '\n' | grep -E "requests per second" | tail -1)
        after=$(cpu_ticks "$pid")
        rps=$(echo "$out" | sed -E 's/.*: ([0-9.]+) requests per second.*/\1/')
        cpu=$(awk -v a="$after" -v b="$before" -v t="$tick" 'BEGIN { printf "%.3f", (a - b) / t }')
        per_cpu=$(awk -v n="$n" -v c="$cpu" 'BEGIN { if (c > 0) printf "%.0f", n / c; else print "inf" }')
        echo "$round $test $p $s $rps $cpu $per_cpu" >> "$results"
        echo "round $round: $s ${test^^} -P $p: $rps req/s, server CPU ${cpu}s, $per_cpu req per CPU-second" >&2
      done
    done
  done
done

median() { sort -n | awk '{a[NR]=$1} END { if (NR % 2) print a[(NR+1)/2]; else printf "%.0f\n", (a[NR/2] + a[NR/2+1]) / 2 }'; }
echo
printf "%-10s %-4s %22s %22s %8s %16s %16s\n" test P "coreshard req/CPU-s" "redis req/CPU-s" ratio "coreshard req/s" "redis req/s"
for test in $TESTS; do
  for p in 1 16; do
    cs=$(awk -v t=$test -v p=$p '$2==t && $3==p && $4=="coreshard" {print $7}' "$results" | median)
    rd=$(awk -v t=$test -v p=$p '$2==t && $3==p && $4=="redis" {print $7}' "$results" | median)
    csr=$(awk -v t=$test -v p=$p '$2==t && $3==p && $4=="coreshard" {print $5}' "$results" | median)
    rdr=$(awk -v t=$test -v p=$p '$2==t && $3==p && $4=="redis" {print $5}' "$results" | median)
    ratio=$(awk -v a="$cs" -v b="$rd" 'BEGIN { printf "%.2fx", a / b }')
    printf "%-10s %-4s %22s %22s %8s %16s %16s\n" "${test^^}" "$p" "$cs" "$rd" "$ratio" "$csr" "$rdr"
  done
done
echo "(medians of $ROUNDS rounds; server on cpu $SERVER_CPU, client on cpu $CLIENT_CPU, -c $CLIENTS, -r $KEYSPACE, -d $DATA_SIZE; $(redis-server --version | awk '{print $3}'))"
rm -f "$results"
