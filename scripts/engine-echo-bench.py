#!/usr/bin/env python3
"""The engine's echo example against echo servers on tokio and monoio (issue 13).

    scripts/engine-echo-bench.py [--rounds 3] [--seconds 5] [--conns 50] [--pipelines 1,16]
                                 [--size 16] [--shards 1] [--out FILE]

Builds (release) `engine/examples/echo.rs` and, in throwaway crates under the cargo target
directory (`$CARGO_TARGET_DIR` or `target/`, `engine-echo-bench/` and
`engine-echo-bench-monoio/`, not workspace members), `scripts/engine-echo-bench/`'s
`tokio_echo.rs` (one current-thread tokio runtime per shard thread, SO_REUSEPORT
listeners, epoll), `monoio_echo.rs` (monoio's io_uring driver, the same shape; left out
with a note if it does not build here) and `echo_load.rs` (one client thread, closed
loop: every connection writes --pipeline messages of --size bytes at once, then reads
them back and checks them).

Each run starts one server under `taskset -c $SERVER_CPU` (default 1), runs the load under
`taskset -c $CLIENT_CPU` (default 0) for --seconds, and reads the server's CPU time
(utime+stime, /proc/PID/stat) just before and after. Reported: messages/s and messages per
server-CPU-second, medians over --rounds rounds (servers rotate within a round), and the
engine's ratio to each peer. The machine is shared and noisy: `load=` is the 1-minute
load average when the table was printed.
"""

import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import ROOT, SERVER_CPU, free_port, median, load_against, load_note, fmt  # noqa: E402

CLIENT_CPU = os.environ.get("CLIENT_CPU", "0")
TARGET = os.path.abspath(os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"))
SRC = os.path.join(ROOT, "scripts", "engine-echo-bench")

PROFILE = """
# The same release profile as the coreshard workspace.
[profile.release]
debug = 1
lto = "thin"
codegen-units = 4

# Not part of any workspace.
[workspace]
"""

TOKIO_TOML = """[package]
name = "engine-echo-bench"
version = "0.0.0"
edition = "2021"
publish = false

[[bin]]
name = "tokio_echo"
path = "src/tokio_echo.rs"

[[bin]]
name = "echo_load"
path = "src/echo_load.rs"

[dependencies]
tokio = { version = "1", features = ["rt", "net", "io-util"] }
socket2 = { version = "0.6", features = ["all"] }
""" + PROFILE

MONOIO_TOML = """[package]
name = "engine-echo-bench-monoio"
version = "0.0.0"
edition = "2021"
publish = false

[[bin]]
name = "monoio_echo"
path = "src/monoio_echo.rs"

[dependencies]
monoio = { version = "0.2", default-features = false, features = ["iouring", "bytes", "macros"] }
""" + PROFILE


def throwaway(name, toml, sources):
    """Write and build a crate under TARGET/name; the path of its release dir, or None."""
    root = os.path.join(TARGET, name)
    os.makedirs(os.path.join(root, "src"), exist_ok=True)
    with open(os.path.join(root, "Cargo.toml"), "w") as f:
        f.write(toml)
    for src in sources:
        with open(os.path.join(SRC, src)) as a, open(os.path.join(root, "src", src), "w") as b:
            b.write(a.read())
    env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(root, "target"))
    r = subprocess.run(["nice", "-n", "10", "cargo", "build", "--release", "-q"], cwd=root, env=env,
                       capture_output=True, text=True)
    if r.returncode != 0:
        return None, r.stderr.strip().splitlines()[-1:] or ["build failed"]
    return os.path.join(root, "target", "release"), None


def build():
    subprocess.run(["nice", "-n", "10", "cargo", "build", "--release", "-q", "-p", "coreshard-engine",
                    "--example", "echo"], cwd=ROOT, check=True)
    bins = {"engine": os.path.join(TARGET, "release", "examples", "echo")}
    tokio_dir, err = throwaway("engine-echo-bench", TOKIO_TOML, ["tokio_echo.rs", "echo_load.rs"])
    if tokio_dir is None:
        raise RuntimeError(f"the tokio echo and the load do not build: {err}")
    bins["tokio"] = os.path.join(tokio_dir, "tokio_echo")
    bins["load"] = os.path.join(tokio_dir, "echo_load")
    monoio_dir, err = throwaway("engine-echo-bench-monoio", MONOIO_TOML, ["monoio_echo.rs"])
    notes = []
    if monoio_dir is None:
        notes.append(f"monoio left out: it does not build here ({' '.join(err)})")
    else:
        bins["monoio"] = os.path.join(monoio_dir, "monoio_echo")
    return bins, notes


def run_one(bins, kind, pipeline, args):
    port = free_port()
    fields, cpu = load_against([bins[kind], f"127.0.0.1:{port}", str(args.shards)], port,
                               [bins["load"], f"127.0.0.1:{port}", str(args.conns), str(pipeline),
                                str(args.size), str(args.seconds)], CLIENT_CPU)
    requests, seconds, errors = int(fields["requests"]), float(fields["seconds"]), int(fields["errors"])
    if errors:
        raise RuntimeError(f"{kind}: {errors} batches echoed wrong")
    if requests == 0:
        raise RuntimeError(f"{kind}: nothing was echoed")
    return {"rps": requests / seconds, "per_cpu": requests / cpu if cpu > 0 else float("nan"),
            "busy": cpu / seconds}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--conns", type=int, default=50)
    p.add_argument("--pipelines", default="1,16")
    p.add_argument("--size", type=int, default=16)
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--out")
    args = p.parse_args()
    bins, notes = build()
    kinds = [k for k in ("engine", "tokio", "monoio") if k in bins]
    pipelines = [int(x) for x in args.pipelines.split(",")]
    results = {}
    for r in range(args.rounds):
        order = kinds[r % len(kinds):] + kinds[:r % len(kinds)]
        for pipeline in pipelines:
            for kind in order:
                res = run_one(bins, kind, pipeline, args)
                results.setdefault((kind, pipeline), []).append(res)
                print(f"round {r + 1} {kind:6} -P {pipeline}: {fmt(res['rps'])} msg/s, "
                      f"{fmt(res['per_cpu'])} msg/server-CPU-s, server busy {fmt(res['busy'])}", file=sys.stderr)
    lines = [
        f"engine echo example vs {' and '.join(kinds[1:])} echo servers ({load_note()})",
        f"server on cpu {SERVER_CPU} ({args.shards} shard), load on cpu {CLIENT_CPU}; {args.conns} connections, "
        f"{args.size}-byte messages, {args.seconds} s per run; medians of {args.rounds} rounds",
        *notes,
        "",
        f"{'server':8} {'-P':>4} {'msg/s':>10} {'msg/CPU-s':>10} {'busy':>5}",
    ]
    for pipeline in pipelines:
        per = {}
        for kind in kinds:
            rs = results[(kind, pipeline)]
            per[kind] = median([x["per_cpu"] for x in rs])
            lines.append(f"{kind:8} {pipeline:>4} {fmt(median([x['rps'] for x in rs])):>10} "
                         f"{fmt(per[kind]):>10} {fmt(median([x['busy'] for x in rs])):>5}")
        for peer in kinds[1:]:
            lines.append(f"{'ratio':8} {pipeline:>4} {'':>10} {fmt(per['engine'] / per[peer]):>10}   "
                         f"(engine / {peer}, per server-CPU-second)")
    lines.append("")
    lines.append("runs (msg/s, msg/CPU-s): " + "; ".join(
        f"{k}/-P{s}: " + ", ".join(f"{fmt(x['rps'])} {fmt(x['per_cpu'])}" for x in v)
        for (k, s), v in sorted(results.items())))
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
