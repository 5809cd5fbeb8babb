#!/usr/bin/env python3
"""Lua scripting: requests per server-CPU-second, coreshard (--shards 1) against
redis-server, measured in the same run (issue 16's goal: EVALSHA of a small INCR script
>= 1.0x Redis at -P 1).

    scripts/script-bench.py                                   # defaults below
    CORESHARD_BIN=/path/to/release/coreshard ROUNDS=5 scripts/script-bench.py
    WORKLOADS="evalsha eval" PIPELINES="1 16" N_P1=200000 scripts/script-bench.py

Servers: `coreshard --port P --shards 1 --cores $SERVER_CPU --log-level warn --appendonly no`
and `redis-server --save '' --appendonly no`, both under `taskset -c $SERVER_CPU`, a fresh
server per run. The script `return redis.call('incr', KEYS[1])` is loaded with SCRIPT LOAD
(outside the measurement); then, under `taskset -c $CLIENT_CPU`:

  evalsha   redis-benchmark -n N -c CLIENTS -P p EVALSHA <sha> 1 counter
  eval      redis-benchmark -n N -c CLIENTS -P p EVAL "<the script>" 1 counter

for each p in PIPELINES (default "1 16"; N_P1 requests at -P 1, N_P16 otherwise).
Afterwards GET counter must be N (every script ran, none failed).

Measure: server CPU seconds = utime+stime from /proc/PID/stat before and after (all
threads); req/CPU-s = requests / server CPU seconds. Each cell is the median of ROUNDS (3)
runs; servers alternate and swap who goes first every round. SERVER_CPU (1), CLIENT_CPU (0),
CLIENTS (50), N_P1 (200000), N_P16 (1000000), TIMEOUT per run (300 s). Exits 1 if a run fails.
"""

import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common as bc  # noqa: E402
from bench_common import coreshard_bin  # noqa: E402

SERVER_CPU = bc.SERVER_CPU
CLIENT_CPU = os.environ.get("CLIENT_CPU", "0")
ROUNDS = int(os.environ.get("ROUNDS", "3"))
CORESHARD_BIN = os.environ.get("CORESHARD_BIN", "")
WORKLOADS = os.environ.get("WORKLOADS", "evalsha eval").split()
PIPELINES = [int(p) for p in os.environ.get("PIPELINES", "1 16").split()]
CLIENTS = int(os.environ.get("CLIENTS", "50"))
N_P1 = int(os.environ.get("N_P1", "200000"))
N_P16 = int(os.environ.get("N_P16", "1000000"))
TIMEOUT = float(os.environ.get("TIMEOUT", "300"))
SCRIPT = "return redis.call('incr', KEYS[1])"
GOAL = 1.0




def start_server(kind):
    port = bc.free_port()
    if kind == "coreshard":
        cmd = [coreshard_bin(), "--port", str(port), "--shards", "1", "--cores", SERVER_CPU,
               "--log-level", "warn", "--appendonly", "no"]
    else:
        cmd = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
               "--daemonize", "no", "--loglevel", "warning"]
    proc = bc.launch(cmd, port, cpu=SERVER_CPU, name=kind)
    time.sleep(0.2)  # let start-up work settle before the CPU baseline
    return proc, port


def run(kind, workload, pipeline):
    n = N_P1 if pipeline == 1 else N_P16
    proc, port = start_server(kind)
    try:
        c = bc.Conn(port)
        sha = c.call("SCRIPT", "LOAD", SCRIPT)
        sha = sha.decode() if isinstance(sha, bytes) else sha
        c.close()
        args = ["EVALSHA", sha] if workload == "evalsha" else ["EVAL", SCRIPT]
        cpu0, t0 = bc.proc_cpu_seconds(proc.pid), time.time()
        out = subprocess.run(["taskset", "-c", CLIENT_CPU, "redis-benchmark", "-p", str(port), "-n", str(n),
                              "-c", str(CLIENTS), "-P", str(pipeline), "-q", *args, "1", "counter"],
                             capture_output=True, text=True, timeout=TIMEOUT)
        wall = time.time() - t0
        cpu = bc.proc_cpu_seconds(proc.pid) - cpu0
        text = (out.stdout + out.stderr).replace("\r", "\n")
        m = re.findall(r":\s*([\d.]+) requests per second", text)
        if out.returncode != 0 or not m:
            raise RuntimeError(f"redis-benchmark failed (exit {out.returncode}): {text.strip()[-500:]}")
        c = bc.Conn(port)
        got = c.call("GET", "counter")
        c.close()
        if int(got or 0) != n:
            raise RuntimeError(f"counter is {got!r} after {n} scripts ({text.strip()[-300:]})")
    finally:
        bc.stop(proc)
    return {"requests": n, "cpu": cpu, "rps": float(m[-1]), "wall": wall}


def main():
    bc.ensure_redis()
    if CORESHARD_BIN:
        if not os.access(CORESHARD_BIN, os.X_OK):
            sys.exit(f"CORESHARD_BIN={CORESHARD_BIN} is not an executable")
    else:
        subprocess.run(["cargo", "build", "--release", "-q"], cwd=bc.ROOT, check=True)
    servers = ["coreshard", "redis"]
    cases = [(w, p) for w in WORKLOADS for p in PIPELINES]
    results = {}
    failed = False
    for rnd in range(1, ROUNDS + 1):
        order = servers if rnd % 2 else servers[::-1]
        for case in cases:
            for kind in order:
                try:
                    r = run(kind, *case)
                except Exception as e:  # noqa: BLE001
                    print(f"round {rnd}: {kind} {case}: FAILED: {e}", file=sys.stderr, flush=True)
                    failed = True
                    continue
                results.setdefault((case, kind), []).append(r)
                print(f"round {rnd}: {kind} {case[0]} -P {case[1]}: {r['requests']} requests, {r['rps']:.0f} req/s, "
                      f"server CPU {r['cpu']:.2f}s of {r['wall']:.2f}s wall, {r['requests'] / r['cpu']:.0f} req per "
                      f"CPU-second", file=sys.stderr, flush=True)
    print()
    print(f"{'workload':<14} {'coreshard /CPU-s':>17} {'redis /CPU-s':>13} {'ratio':>7} {'coreshard req/s':>16} {'redis req/s':>12}")
    misses = []
    for case in cases:
        def med(kind, f):
            runs = results.get((case, kind), [])
            return bc.median([f(r) for r in runs]) if runs else None
        cs, rd = med("coreshard", lambda r: r["requests"] / r["cpu"]), med("redis", lambda r: r["requests"] / r["cpu"])
        csr, rdr = med("coreshard", lambda r: r["rps"]), med("redis", lambda r: r["rps"])
        ratio = cs / rd if cs and rd else None
        label = f"{case[0]} -P {case[1]}"
        if ratio is not None and ratio < GOAL:
            misses.append(label)
        fmt = lambda v, s="{:.0f}": "-" if v is None else s.format(v)  # noqa: E731
        print(f"{label:<14} {fmt(cs):>17} {fmt(rd):>13} {fmt(ratio, '{:.2f}x'):>7} {fmt(csr):>16} {fmt(rdr):>12}")
    print(f"(medians of {ROUNDS} rounds; server on cpu {SERVER_CPU}, client on cpu {CLIENT_CPU}; "
          f"redis-benchmark -c {CLIENTS}; {bc.load_note()})")
    print(f"goal >= {GOAL:.1f}x redis req/CPU-s: " + (f"missed by {', '.join(misses)}" if misses else "met by every workload"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
