#!/usr/bin/env python3
"""Bytes per key: 1M keys of 16 bytes with 32-byte values, without and with a TTL,
coreshard (--shards 1) against redis-server, each freshly started and pinned.

    scripts/memory-per-key.py            # KEYS=1000000 by default
"""

import os
import time

from bench_common import Conn, build, encode, ensure_redis, rss_bytes, start, stop

N = int(os.environ.get("KEYS", "1000000"))
BATCH = 10_000


def load(port, ttl):
    c = Conn(port)
    for base in range(0, N, BATCH):
        cmds = []
        for i in range(base, min(N, base + BATCH)):
            args = [b"key:%012d" % i, b"%032d" % i]
            if ttl:
                args += [b"EX", b"100000"]
            cmds.append(encode(b"SET", *args))
        replies = c.pipeline(cmds)
        assert all(r == b"+OK" for r in replies), replies[:3]
    assert c.call("DBSIZE") == N
    extra = c.info("memory")
    c.close()
    return extra


def measure(kind, ttl, port):
    proc = start(kind, port)
    time.sleep(0.2)  # let start-up allocations settle before the baseline
    base = rss_bytes(proc.pid)
    extra = load(port, ttl)
    used = rss_bytes(proc.pid) - base
    stop(proc)
    return used / N, extra


def main():
    ensure_redis()
    build()
    rows = []
    for ttl in (False, True):
        cs, cs_info = measure("coreshard", ttl, 16390)
        rd, rd_info = measure("redis", ttl, 16391)
        rows.append((ttl, cs, rd, cs_info, rd_info))
    print(f"{N} keys, 16-byte keys, 32-byte values (RSS growth per key)")
    print(f"{'TTL':<5} {'coreshard B/key':>16} {'redis B/key':>12} {'ratio':>7}   notes")
    for ttl, cs, rd, cs_info, rd_info in rows:
        notes = (f"coreshard keyspace structure {int(cs_info.get('used_memory_keyspace_structure', '0')) / N:.1f} B/key; "
                 f"redis used_memory {int(rd_info.get('used_memory', '0')) / N:.1f} B/key")
        print(f"{'yes' if ttl else 'no':<5} {cs:>16.1f} {rd:>12.1f} {cs / rd:>6.2f}x   {notes}")


if __name__ == "__main__":
    main()
