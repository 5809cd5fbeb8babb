#!/usr/bin/env python3
"""How long a client stalls while a snapshot runs (BGSAVE), per server binary.

Loads KEYS strings and KEYS/100 hashes of 10 fields into a one-shard server pinned to
cpu 1 (`--appendfsync everysec`, a fresh data dir), then GETs one key in a loop on one
connection (this script pinned to cpu 0) from BGSAVE until LASTSAVE moves, and reports
the BGSAVE time and the longest, p99.9 and median round trip. With --verify it then
kills the server with SIGKILL, restarts it on 2 shards and checks that every key came
back (DBSIZE).

    scripts/snapshot-pause.py --bin target/release/coreshard [--bin OTHER] \\
        [--keys 1000000] [--rounds 3] [--verify]

Binaries alternate within a round, so drift on a shared machine hits each alike.
"""
import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def enc(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


class Conn:
    def __init__(self, port):
        deadline = time.time() + 20
        while True:
            try:
                self.s = socket.create_connection(("127.0.0.1", port))
                break
            except OSError:
                if time.time() > deadline:
                    sys.exit(f"snapshot-pause: no server on port {port}")
                time.sleep(0.05)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def reply(self):
        """The next reply's first line (a bulk's body is read and dropped)."""
        while b"\r\n" not in self.buf:
            self.buf += self.s.recv(1 << 20)
        line, self.buf = self.buf.split(b"\r\n", 1)
        if line[:1] == b"$" and int(line[1:]) >= 0:
            n = int(line[1:])
            while len(self.buf) < n + 2:
                self.buf += self.s.recv(1 << 20)
            self.buf = self.buf[n + 2:]
        if line[:1] == b"-":
            sys.exit(f"snapshot-pause: server error {line!r}")
        return line


def start(binary, port, data, shards, cpus):
    return subprocess.Popen(
        ["taskset", "-c", cpus, binary, "--port", str(port), "--shards", str(shards),
         "--dir", data, "--appendfsync", "everysec", "--log-level", "error"],
        stdout=subprocess.DEVNULL)


def run(binary, port, keys, verify):
    data = tempfile.mkdtemp(prefix="snapshot-pause-")
    server = start(binary, port, data, 1, "1")
    try:
        c = Conn(port)
        batch = 1000
        for b in range(keys // batch):
            args = ["MSET"]
            for i in range(batch):
                args += [f"key:{b}:{i}", f"value-{i}"]
            c.send(enc(*args))
        for _ in range(keys // batch):
            c.reply()
        hashes = keys // 100
        for h in range(hashes):
            fields = []
            for j in range(10):
                fields += [f"f{j}", f"v{j}"]
            c.send(enc("HSET", f"h:{h}", *fields))
        for _ in range(hashes):
            c.reply()
        t0 = time.perf_counter()
        c.send(enc("BGSAVE"))
        c.reply()
        lat = []
        while True:
            a = time.perf_counter()
            c.send(enc("GET", "key:0:1"))
            c.reply()
            lat.append(time.perf_counter() - a)
            if len(lat) % 50 == 0:
                c.send(enc("LASTSAVE"))
                if c.reply() != b":0":
                    break
        took = time.perf_counter() - t0
        lat.sort()
        line = (f"BGSAVE {1000 * took:6.0f} ms  GETs {len(lat):5d}  max {1000 * lat[-1]:7.1f} ms  "
                f"p99.9 {1000 * lat[int(len(lat) * 0.999)]:7.2f} ms  p50 {1000 * lat[len(lat) // 2]:6.3f} ms")
        if verify:
            server.kill()
            server.wait()
            server = start(binary, port, data, 2, "0,1")
            # A killed server's listener lingers a few ms while the kernel tears down its
            # io_uring (connections then are reset): retry until the new one answers.
            deadline = time.time() + 30
            while True:
                try:
                    c = Conn(port)
                    c.send(enc("DBSIZE"))
                    n = int(c.reply()[1:])
                    break
                except (ConnectionResetError, BrokenPipeError):
                    if time.time() > deadline:
                        raise
                    time.sleep(0.05)
            want = keys // batch * batch + hashes
            line += f"  after kill -9 + restart on 2 shards: DBSIZE {n} ({'ok' if n == want else f'WANT {want}'})"
        return line
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(data, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", action="append", required=True, help="server binary (repeat to compare)")
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--port", type=int, default=27400)
    ap.add_argument("--verify", action="store_true")
    opts = ap.parse_args()
    os.sched_setaffinity(0, {0})
    print(f"# scripts/snapshot-pause.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{opts.keys} strings + {opts.keys // 100} hashes, server --shards 1 on cpu 1, client cpu 0")
    for r in range(1, opts.rounds + 1):
        for i, b in enumerate(opts.bin):
            print(f"round {r}  {b}: {run(b, opts.port + i, opts.keys, opts.verify)}", flush=True)


if __name__ == "__main__":
    main()
