#!/usr/bin/env python3
"""The engine's counter example against the same protocol on tokio (issue 15).

    scripts/engine-counter-bench.py [--rounds 3] [--seconds 5] [--conns 50] [--pipeline 32]
                                    [--keys 10000] [--shards 1,2] [--out FILE]

Builds (release) `engine/examples/counter.rs`, and, in a throwaway crate under the cargo
target directory (`$CARGO_TARGET_DIR` or `target/`, `engine-counter-bench/`, not a
workspace member), `scripts/engine-counter-bench/tokio_counter.rs` (one current-thread
tokio runtime per shard thread, SO_REUSEPORT listeners, names owned by shard with the
engine's default hash, cross-shard requests over mpsc + oneshot, answers in request
order) and `load.rs` (one client thread, closed loop: every connection writes --pipeline
`INCR k<n>` requests at once, then reads as many replies).

Each run starts one server under `taskset -c $SERVER_CPU` (default 1) with --shards shards
(so several shards share that core: per-CPU-second numbers include the cross-shard hops),
runs the load under `taskset -c $CLIENT_CPU` (default 0) for --seconds, and reads the
server's CPU time (utime+stime, /proc/PID/stat) just before and after the load. Reported:
requests/s and requests per server-CPU-second, medians over --rounds rounds (servers
alternate within a round), and engine / tokio ratios. The machine is shared and noisy:
`load=` is the 1-minute load average when the table was printed.
"""

import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import ROOT, SERVER_CPU, free_port, median, load_against, load_note, fmt  # noqa: E402

CLIENT_CPU = os.environ.get("CLIENT_CPU", "0")
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
TARGET = os.path.abspath(TARGET)
THROWAWAY = os.path.join(TARGET, "engine-counter-bench")

CARGO_TOML = """[package]
name = "engine-counter-bench"
version = "0.0.0"
edition = "2021"
publish = false

[[bin]]
name = "tokio_counter"
path = "src/tokio_counter.rs"

[[bin]]
name = "load"
path = "src/load.rs"

[dependencies]
tokio = { version = "1", features = ["rt", "net", "io-util", "sync"] }
socket2 = { version = "0.6", features = ["all"] }

# The same release profile as the coreshard workspace.
[profile.release]
debug = 1
lto = "thin"
codegen-units = 4

# Not part of any workspace.
[workspace]
"""


def build():
    nice = ["nice", "-n", "10"]
    subprocess.run(nice + ["cargo", "build", "--release", "-q", "-p", "coreshard-engine", "--example", "counter"],
                   cwd=ROOT, check=True)
    os.makedirs(os.path.join(THROWAWAY, "src"), exist_ok=True)
    with open(os.path.join(THROWAWAY, "Cargo.toml"), "w") as f:
        f.write(CARGO_TOML)
    for name in ("tokio_counter.rs", "load.rs"):
        with open(os.path.join(ROOT, "scripts", "engine-counter-bench", name)) as src:
            text = src.read()
        with open(os.path.join(THROWAWAY, "src", name), "w") as dst:
            dst.write(text)
    env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(THROWAWAY, "target"))
    subprocess.run(nice + ["cargo", "build", "--release", "-q"], cwd=THROWAWAY, env=env, check=True)
    return {
        "engine": os.path.join(TARGET, "release", "examples", "counter"),
        "tokio": os.path.join(THROWAWAY, "target", "release", "tokio_counter"),
        "load": os.path.join(THROWAWAY, "target", "release", "load"),
    }


def run_one(bins, kind, shards, args):
    port = free_port()
    fields, cpu = load_against([bins[kind], f"127.0.0.1:{port}", str(shards)], port,
                               [bins["load"], f"127.0.0.1:{port}", str(args.conns), str(args.pipeline),
                                str(args.keys), str(args.seconds)], CLIENT_CPU)
    requests, seconds, errors = int(fields["requests"]), float(fields["seconds"]), int(fields["errors"])
    if errors:
        raise RuntimeError(f"{kind}: {errors} error replies")
    return {"rps": requests / seconds, "per_cpu": requests / cpu if cpu > 0 else float("nan"),
            "busy": cpu / seconds}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--conns", type=int, default=50)
    p.add_argument("--pipeline", type=int, default=32)
    p.add_argument("--keys", type=int, default=10000)
    p.add_argument("--shards", default="1,2")
    p.add_argument("--out")
    args = p.parse_args()
    bins = build()
    shard_counts = [int(s) for s in args.shards.split(",")]
    results = {}
    for r in range(args.rounds):
        for shards in shard_counts:
            kinds = ["engine", "tokio"] if r % 2 == 0 else ["tokio", "engine"]
            for kind in kinds:
                res = run_one(bins, kind, shards, args)
                results.setdefault((kind, shards), []).append(res)
                print(f"round {r + 1} {kind:6} shards={shards}: {fmt(res['rps'])} req/s, "
                      f"{fmt(res['per_cpu'])} req/server-CPU-s, server busy {fmt(res['busy'])}", file=sys.stderr)
    lines = [
        f"engine counter example vs tokio thread-per-core, same protocol ({load_note()})",
        f"server on cpu {SERVER_CPU}, load on cpu {CLIENT_CPU}; {args.conns} connections x pipeline "
        f"{args.pipeline}, INCR over {args.keys} names, {args.seconds} s per run; medians of {args.rounds} rounds",
        "",
        f"{'server':8} {'shards':>6} {'req/s':>10} {'req/CPU-s':>10} {'busy':>5}",
    ]
    for shards in shard_counts:
        for kind in ("engine", "tokio"):
            rs = results[(kind, shards)]
            lines.append(f"{kind:8} {shards:>6} {fmt(median([x['rps'] for x in rs])):>10} "
                         f"{fmt(median([x['per_cpu'] for x in rs])):>10} {fmt(median([x['busy'] for x in rs])):>5}")
        e = median([x["per_cpu"] for x in results[("engine", shards)]])
        t = median([x["per_cpu"] for x in results[("tokio", shards)]])
        er = median([x["rps"] for x in results[("engine", shards)]])
        tr = median([x["rps"] for x in results[("tokio", shards)]])
        lines.append(f"{'ratio':8} {shards:>6} {fmt(er / tr):>10} {fmt(e / t):>10}   (engine / tokio)")
    lines.append("")
    lines.append("runs (req/s, req/CPU-s): " + "; ".join(
        f"{k}/{s}: " + ", ".join(f"{fmt(x['rps'])} {fmt(x['per_cpu'])}" for x in v)
        for (k, s), v in sorted(results.items())))
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
