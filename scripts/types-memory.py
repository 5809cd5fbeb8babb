#!/usr/bin/env python3
"""Memory per element of hashes, sets, lists and streams: coreshard (--shards 1) against
redis-server, each freshly started and pinned, same data, RSS growth per element.

    scripts/types-memory.py                 # N=1000000 elements, SMALL=100000 small hashes
    N=200000 SMALL=20000 scripts/types-memory.py
    SCENARIOS="zset" scripts/types-memory.py
    SCENARIOS=stream N=200000 ONLY=redis scripts/types-memory.py     # one server only
    CORESHARD_BIN=/work/target-sb/release/coreshard scripts/types-memory.py   # no build

CORESHARD_BIN: the coreshard binary (default: target/release/coreshard, or
$CARGO_TARGET_DIR/release/coreshard, built first with `cargo build --release`; a binary
given here is used as it is, not built). ONLY=redis or ONLY=coreshard measures one server.

Scenarios (Redis 7.0 default encodings on the Redis side):
  hash   one hash of N fields  field:<i> -> value:<i>        (hashtable)
  set    one set of N members  member:<i>                    (hashtable)
  list   one list of N elements element:<i>                  (quicklist)
         (each server's default list-compress-depth: 0 in Redis, 1 in coreshard)
  list-d1  the same with list-compress-depth 1 on both (CONFIG SET before loading)
  zset   one sorted set of N members member:<i>, score i    (skiplist)
  small  SMALL hashes of 10 fields f<j> -> v<i>:<j>          (listpack)
  stream one stream of N entries, XADD big * user <i % 1000> payload <16 hex chars>
         (auto ids, pipelined like the others; Redis: listpack nodes of up to 100
         entries / 4096 bytes in a rax). "B/elem" is bytes per entry.
The goal in issue 10 is coreshard <= 0.7x Redis (zsets 0.8x, issue 11; streams 0.8x).
"""

import os
import sys
import time

from bench_common import ROOT, coreshard_bin, SERVER_CPU, Conn, build, encode, ensure_redis, free_port, launch, rss_bytes, start, stop

N = int(os.environ.get("N", "1000000"))
SMALL = int(os.environ.get("SMALL", "100000"))
BATCH = 1000
ONLY = os.environ.get("ONLY", "")
CORESHARD_BIN = os.environ.get("CORESHARD_BIN", "")
GOALS = {"zset": 0.8, "stream": 0.8}  # the rest: 0.7 (issue 10)
# Like-for-like rows, shown for reading the defaults' rows, not held to a goal.
NO_GOAL = {"list-d1"}


def stream_entry(i):
    """The fields of entry i of the stream scenario (scripts/stream-bench.py preloads the same):
    user <i % 1000>, payload <16 hex chars that look random>."""
    return [b"user", b"%d" % (i % 1000), b"payload", b"%016x" % ((i * 0x9E3779B97F4A7C15) & (2**64 - 1))]




def load(port, scenario):
    c = Conn(port)
    cmds = []

    def flush():
        replies = c.pipeline(cmds)
        bad = [r for r in replies if isinstance(r, bytes) and r.startswith(b"-")]
        if bad:
            raise RuntimeError(f"{scenario}: server answered {bad[0]!r}")
        cmds.clear()

    if scenario == "list-d1":
        reply = c.call("CONFIG", "SET", "list-compress-depth", "1")
        if not isinstance(reply, bytes) or reply.startswith(b"-"):
            raise RuntimeError(f"CONFIG SET list-compress-depth 1: {reply!r}")
    if scenario == "small":
        for i in range(SMALL):
            args = [b"HSET", b"h:%d" % i]
            for j in range(10):
                args += [b"f%d" % j, b"v%d:%d" % (i, j)]
            cmds.append(encode(*args))
            if len(cmds) == BATCH:
                flush()
        flush()
        elements = SMALL * 10
        check = c.call("HLEN", "h:0") == 10 and c.call("DBSIZE") == SMALL
    elif scenario == "stream":
        for i in range(N):
            cmds.append(encode(b"XADD", b"big", b"*", *stream_entry(i)))
            if len(cmds) == BATCH:
                flush()
        flush()
        elements = N
        check = c.call("XLEN", "big") == N
    else:
        for base in range(0, N, BATCH * 10):
            hi = min(N, base + BATCH * 10)
            if scenario == "hash":
                args = [b"HSET", b"big"]
                for i in range(base, hi):
                    args += [b"field:%d" % i, b"value:%d" % i]
            elif scenario == "set":
                args = [b"SADD", b"big"] + [b"member:%d" % i for i in range(base, hi)]
            elif scenario == "zset":
                args = [b"ZADD", b"big"]
                for i in range(base, hi):
                    args += [b"%d" % i, b"member:%d" % i]
            else:  # list, list-d1
                args = [b"RPUSH", b"big"] + [b"element:%d" % i for i in range(base, hi)]
            cmds.append(encode(*args))
            if len(cmds) == 10:
                flush()
        flush()
        elements = N
        length = {"hash": "HLEN", "set": "SCARD", "list": "LLEN", "list-d1": "LLEN", "zset": "ZCARD"}[scenario]
        check = c.call(length, "big") == N
    if not check:
        raise RuntimeError(f"{scenario}: the data did not load completely")
    encoding = c.call("OBJECT", "ENCODING", "h:0" if scenario == "small" else "big")
    c.close()
    return elements, encoding


def measure(kind, scenario):
    port = free_port()
    if kind == "coreshard":
        proc = launch([coreshard_bin(), "--port", str(port), "--shards", "1", "--cores", SERVER_CPU,
                       "--log-level", "warn", "--appendonly", "no"], port)
    else:
        proc = start(kind, port)
    try:
        time.sleep(0.3)  # let start-up allocations settle before the baseline
        base = rss_bytes(proc.pid)
        elements, encoding = load(port, scenario)
        time.sleep(0.3)
        used = rss_bytes(proc.pid) - base
    finally:
        stop(proc)
    return used / elements, encoding


def main():
    if ONLY not in ("", "redis", "coreshard"):
        sys.exit(f"ONLY must be redis or coreshard, not {ONLY!r}")
    if ONLY != "coreshard":
        ensure_redis()
    if ONLY != "redis":
        if CORESHARD_BIN:
            if not os.access(CORESHARD_BIN, os.X_OK):
                sys.exit(f"CORESHARD_BIN={CORESHARD_BIN} is not an executable")
        elif os.environ.get("CARGO_TARGET_DIR"):
            import subprocess
            subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
        else:
            build()
    print(f"RSS growth per element (N={N}, SMALL={SMALL} hashes of 10 fields); goal <= 0.70x redis (zset, stream: 0.80x)")
    print(f"{'scenario':<8} {'coreshard B/elem':>17} {'redis B/elem':>13} {'ratio':>7}   encodings (coreshard / redis)")
    worst = 0.0
    missed = []
    scenarios = os.environ.get("SCENARIOS", "hash set list list-d1 zset small stream").split()
    for scenario in scenarios:
        cs, cs_enc = measure("coreshard", scenario) if ONLY != "redis" else (None, b"-")
        rd, rd_enc = measure("redis", scenario) if ONLY != "coreshard" else (None, b"-")
        if cs is not None and rd is not None:
            ratio = cs / rd
            if scenario not in NO_GOAL:
                worst = max(worst, ratio)
                if ratio > GOALS.get(scenario, 0.7):
                    missed.append(scenario)
            ratio_s = f"{ratio:>6.2f}x" + (" (no goal)" if scenario in NO_GOAL else "")
        else:
            ratio_s = f"{'-':>7}"
        cs_s = f"{cs:>17.1f}" if cs is not None else f"{'-':>17}"
        rd_s = f"{rd:>13.1f}" if rd is not None else f"{'-':>13}"
        print(f"{scenario:<8} {cs_s} {rd_s} {ratio_s}   {cs_enc.decode()} / {rd_enc.decode()}", flush=True)
    if not ONLY:
        print(f"worst ratio {worst:.2f}x; " + (f"misses its goal: {' '.join(missed)}" if missed else "every scenario meets its goal")
              + " (0.70x issue 10; zset 0.80x issue 11; stream 0.80x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
