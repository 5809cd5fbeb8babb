#!/usr/bin/env python3
"""Mass expiry: KEYS keys (default 1M) set to expire at the same millisecond, while a
closed-loop GET/SET load runs on other keys. Reports how long after the deadline the
server held only the load's keys again (nobody reads the expiring keys, so only active
expiry can reclaim them), and the load's p50/p99/max latency before, during and after.
coreshard (--shards 1) and redis-server, each pinned to SERVER_CPU, load on CLIENT_CPU.

    scripts/mass-expiry.py
"""

import os
import threading
import time

from bench_common import Conn, build, encode, ensure_redis, percentile, start, stop

N = int(os.environ.get("KEYS", "1000000"))
LOAD_KEYS = 1000
CLIENT_CPU = int(os.environ.get("CLIENT_CPU", "0"))
WINDOW = 3.0


def run(kind, port):
    proc = start(kind, port)
    c = Conn(port)
    c.pipeline([encode(b"SET", b"load:%d" % i, b"x" * 32) for i in range(LOAD_KEYS)])
    deadline_ms = int(time.time() * 1000) + 20_000
    for base in range(0, N, 10_000):
        c.pipeline([encode(b"SET", b"exp:%012d" % i, b"%032d" % i, b"PXAT", deadline_ms)
                    for i in range(base, min(N, base + 10_000))])
    deadline = deadline_ms / 1000.0
    if time.time() > deadline - WINDOW - 1:
        raise RuntimeError("loading took too long for the chosen deadline")

    samples = []  # (send time, latency seconds)
    stop_at = [None]

    def load():
        os.sched_setaffinity(0, {CLIENT_CPU})
        lc = Conn(port)
        i = 0
        while stop_at[0] is None or time.time() < stop_at[0]:
            key = b"load:%d" % (i % LOAD_KEYS)
            cmd = encode(b"GET", key) if i % 2 else encode(b"SET", key, b"y" * 32)
            t0 = time.perf_counter()
            lc.sock.sendall(cmd)
            lc.reply()
            samples.append((time.time(), time.perf_counter() - t0))
            i += 1

    while time.time() < deadline - WINDOW:
        time.sleep(0.01)
    t = threading.Thread(target=load)
    t.start()
    while time.time() < deadline:
        time.sleep(0.005)
    done = None
    while done is None:
        if c.call("DBSIZE") == LOAD_KEYS:
            done = time.time()
        elif time.time() > deadline + 120:
            raise RuntimeError(f"{kind}: keys still present 120 s after the deadline")
        else:
            time.sleep(0.01)
    stop_at[0] = done + WINDOW
    t.join()
    c.close()
    stop(proc)

    def window(lo, hi):
        lat = [l * 1000 for (ts, l) in samples if lo <= ts < hi]
        return len(lat), percentile(lat, 50), percentile(lat, 99), max(lat) if lat else float("nan")

    return done - deadline, window(deadline - WINDOW, deadline), window(deadline, done), window(done, done + WINDOW)


def main():
    ensure_redis()
    build()
    print(f"{N} keys expiring at one deadline; closed-loop GET/SET load on {LOAD_KEYS} other keys")
    print(f"{'server':<10} {'reclaimed after':>15}   {'window':<7} {'requests':>8} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}")
    for kind, port in (("coreshard", 16392), ("redis", 16393)):
        took, before, during, after = run(kind, port)
        for name, w in (("before", before), ("during", during), ("after", after)):
            label = f"{took:>14.3f}s" if name == "before" else ""
            print(f"{kind if name == 'before' else '':<10} {label:>15}   {name:<7} {w[0]:>8} {w[1]:>7.3f} {w[2]:>7.3f} {w[3]:>7.3f}")


if __name__ == "__main__":
    main()
