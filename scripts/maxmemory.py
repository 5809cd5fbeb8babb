#!/usr/bin/env python3
"""maxmemory evidence: coreshard (--shards 1 and 2) against redis-server, same limit.

Build the server first (this script does not build it):

    CARGO_TARGET_DIR=/work/target-h5 cargo build --release -p coreshard
    scripts/maxmemory.py --binary /work/target-h5/release/coreshard \\
        [--maxmemory 64mb] [--factor 4] [--reps 1] [--out docs/evidence/maxmemory.txt]

For every maxmemory-policy, each server is started fresh on a free port with the same
--maxmemory (coreshard: `--shards N --appendonly no`, its shards pinned to the cores
`taskset` allows; redis-server: `--save '' --appendonly no`), all under
`taskset -c SERVER_CPUS` (default 0,1). Then `factor` times the limit of 100-byte values
(`key:N`, 12-byte-ish keys) is written with pipelined SETs, --batch (1,000) per write, each with
`EX 86400` for the volatile-* policies (so they have keys to evict) and without a TTL
otherwise. Afterwards (1 s to let background eviction settle) it reports:

  stored    DBSIZE
  evicted   INFO stats evicted_keys
  refused   writes answered -OOM (noeviction refuses instead of evicting)
  used/max  INFO memory used_memory / maxmemory (coreshard: the shards' estimate)
  rss/max   VmRSS of the server / maxmemory
  grow/max  (VmRSS after - VmRSS before writing) / maxmemory: what the data added
  est/rss   coreshard only: used_memory / RSS growth, how close the estimate tracks RSS
  secs      time to write

With --reps > 1 every number is the median over the repetitions. Standard library plus
the `redis` package (for INFO and DBSIZE); the bulk writes go over a raw socket.
"""

import argparse
import datetime
import os
import platform
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import free_port, import_redis_py, launch, median, rss_bytes, stop  # noqa: E402

redis = import_redis_py()

POLICIES = ("noeviction", "allkeys-lru", "allkeys-lfu", "allkeys-random",
            "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl")
VALUE = b"x" * 100
BATCH = 1_000


def parse_size(s):
    s = s.strip().lower()
    units = {"gb": 1 << 30, "mb": 1 << 20, "kb": 1 << 10, "g": 10**9, "m": 10**6, "k": 10**3, "b": 1}
    for u, m in units.items():
        if s.endswith(u):
            return int(s[: -len(u)]) * m
    return int(s)


def write(port, total_bytes, ttl):
    """Pipelined SETs of 100-byte values until `total_bytes` of values went out.
    Returns (writes, refused, seconds). Any reply other than +OK or -OOM is an error."""
    n = total_bytes // len(VALUE)
    tail = b"$2\r\nEX\r\n$5\r\n86400\r\n" if ttl else b""
    head = b"*5\r\n$3\r\nSET\r\n" if ttl else b"*3\r\n$3\r\nSET\r\n"
    val = b"$%d\r\n%s\r\n" % (len(VALUE), VALUE)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(120)
    refused = 0
    t0 = time.time()
    buf = b""
    for base in range(0, n, BATCH):
        count = min(BATCH, n - base)
        parts = []
        for i in range(base, base + count):
            k = b"key:%d" % i
            parts.append(b"%s$%d\r\n%s\r\n%s%s" % (head, len(k), k, val, tail))
        sock.sendall(b"".join(parts))
        got = 0
        while got < count:
            lines = buf.split(b"\r\n")
            buf = lines.pop()
            for line in lines:
                if line == b"+OK":
                    pass
                elif line.startswith(b"-OOM"):
                    refused += 1
                else:
                    raise RuntimeError(f"unexpected reply {line[:100]!r}")
            got += len(lines)
            if got < count:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    raise RuntimeError("server closed the connection")
                buf += chunk
        if got != count:
            raise RuntimeError(f"{got} replies for {count} writes")
    sock.close()
    return n, refused, time.time() - t0


def run(kind, shards, policy, args):
    port = free_port()
    mm = str(args.maxmemory_bytes)
    if kind == "coreshard":
        cmd = [args.binary, "--port", str(port), "--shards", str(shards), "--appendonly", "no",
               "--maxmemory", mm, "--maxmemory-policy", policy, "--log-level", "warn"]
    else:
        cmd = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
               "--maxmemory", mm, "--maxmemory-policy", policy, "--loglevel", "warning"]
    proc = launch(cmd, port, cpu=args.server_cpus, name=kind)
    try:
        time.sleep(0.3)
        before = rss_bytes(proc.pid)
        writes, refused, secs = write(port, args.factor * args.maxmemory_bytes, policy.startswith("volatile"))
        time.sleep(1.0)
        after = rss_bytes(proc.pid)
        c = redis.Redis(port=port)
        stats, memory = c.info("stats"), c.info("memory")
        row = {
            "writes": writes,
            "stored": c.dbsize(),
            "evicted": int(stats["evicted_keys"]),
            "refused": refused,
            "used": int(memory["used_memory"]),
            "rss": after,
            "grow": after - before,
            "secs": secs,
        }
        c.close()
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} exited with {proc.returncode}")
        return row
    finally:
        stop(proc)


def main():
    global BATCH
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                    "target/release/coreshard"))
    ap.add_argument("--maxmemory", default="64mb")
    ap.add_argument("--factor", type=int, default=4, help="write this many times the limit")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--batch", type=int, default=BATCH, help="SETs per pipelined write")
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--server-cpus", default=os.environ.get("SERVER_CPUS", "0,1"))
    ap.add_argument("--out", help="also write the report here")
    args = ap.parse_args()
    args.maxmemory_bytes = parse_size(args.maxmemory)
    BATCH = args.batch
    if not os.access(args.binary, os.X_OK):
        sys.exit(f"no coreshard binary at {args.binary}: build it first")
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is not installed")
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.strip()

    servers = [("coreshard", 1), ("coreshard", 2), ("redis", 1)]
    lines = []

    def out(s=""):
        print(s, flush=True)
        lines.append(s)

    out(f"# maxmemory evidence, {datetime.datetime.now().isoformat(timespec='seconds')}")
    out(f"# {platform.node()} {platform.machine()} {os.cpu_count()} cpus, {platform.platform()}")
    out(f"# coreshard: {args.binary}; {redis_version}")
    out(f"# command: {' '.join(sys.argv)}")
    out(f"# maxmemory {args.maxmemory} ({args.maxmemory_bytes} bytes); wrote {args.factor}x the limit "
        f"in 100-byte values ({args.factor * args.maxmemory_bytes // len(VALUE)} SETs, EX 86400 for volatile-*); "
        f"pipelines of {BATCH}; servers under taskset -c {args.server_cpus}; reps={args.reps} (medians)")
    out()
    hdr = (f"{'policy':<16} {'server':<13} {'stored':>9} {'evicted':>9} {'refused':>9} "
           f"{'used/max':>8} {'rss/max':>8} {'grow/max':>8} {'est/rss':>7} {'secs':>6}")
    out(hdr)
    out("-" * len(hdr))
    for policy in args.policies.split(","):
        for kind, shards in servers:
            rows = [run(kind, shards, policy, args) for _ in range(args.reps)]
            m = {k: median([r[k] for r in rows]) for k in rows[0]}
            mx = args.maxmemory_bytes
            name = f"{kind} x{shards}" if kind == "coreshard" else "redis"
            est = f"{m['used'] / m['grow']:.2f}" if kind == "coreshard" and m["grow"] > 0 else "-"
            out(f"{policy:<16} {name:<13} {int(m['stored']):>9} {int(m['evicted']):>9} {int(m['refused']):>9} "
                f"{m['used'] / mx:>8.2f} {m['rss'] / mx:>8.2f} {m['grow'] / mx:>8.2f} {est:>7} {m['secs']:>6.1f}")
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
