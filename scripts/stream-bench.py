#!/usr/bin/env python3
"""Streams: requests per server-CPU-second, coreshard (--shards 1) against redis-server,
measured in the same run (goal: coreshard >= 1.2x Redis for XADD and for XREADGROUP+XACK).

    scripts/stream-bench.py                                   # defaults below
    CORESHARD_BIN=/work/target-sb/release/coreshard scripts/stream-bench.py   # no build
    ONLY=redis N_P1=30000 N_P16=200000 M=50000 ROUNDS=1 scripts/stream-bench.py
    WORKLOADS=xreadgroup COUNTS="1 10 100" CONSUMERS=16 scripts/stream-bench.py

Servers: `coreshard --port P --shards 1 --cores $SERVER_CPU --log-level warn --appendonly no`
and `redis-server --save '' --appendonly no`, both under `taskset -c $SERVER_CPU`; a fresh
server for every run (so every run starts from an empty keyspace and no run pays for the
previous one's data). CORESHARD_BIN: the binary (default target/release/coreshard, or
$CARGO_TARGET_DIR/release/coreshard, built first with `cargo build --release`; a binary given
here is used as it is). ONLY=redis or ONLY=coreshard runs one server (no ratios).

Workloads (WORKLOADS, default "xadd xreadgroup"; also "zrange"):
  xadd        `redis-benchmark -n N -c CLIENTS -P p XADD s * f v` for each p in PIPELINES
              (default "1 16"; N_P1 requests at -P 1, N_P16 at any other -P), under
              `taskset -c $CLIENT_CPU`; afterwards XLEN s must be N.
  xreadgroup  The stream s is preloaded with M entries `user <i % 1000> payload <16 hex>`
              (the entries of the `stream` scenario of scripts/types-memory.py) and group g
              is created at 0 (both outside the measurement). Then CONSUMERS connections,
              consumer c<i> each, loop `XREADGROUP GROUP g c<i> COUNT k STREAMS s >` then
              `XACK s g <the ids it got>` until XREADGROUP answers nil; for each k in COUNTS
              (default "10"). Requests = XREADGROUP calls (the final nil ones included) + XACK
              calls; entries/CPU-s = M / server CPU seconds is also shown (the fairer number
              across k). Afterwards the acks must add up to M and XPENDING s g must be 0.
              The client is this script: one thread pinned to $CLIENT_CPU, raw sockets and a
              selectors loop over the consumers (each has one request in flight; the
              consumers together have up to CONSUMERS in flight). Its reply framing relies on
              the entries holding no CR LF and all having the same number of fields (true of
              the preloaded data; anything else is reported as an error).

  zrange      a sorted set z of 1,000 members (member:<i>, score 1.5 i), then
              `redis-benchmark ... ZRANGE z 100 199 WITHSCORES` for each p in PIPELINES.

Measure: server CPU seconds = utime+stime from /proc/PID/stat before and after the run
(all threads); req/CPU-s = requests / server CPU seconds; req/s = requests / wall seconds
(redis-benchmark's own figure for xadd). The "busy" column is server CPU / wall: well under
100% means the client, not the server, limited the rate (the per-CPU-second figure still
counts, but a server that is idle between requests wakes up more often per request).
Each cell is the median of ROUNDS (3) runs; servers alternate within a round and swap
who goes first every round. SERVER_CPU (1), CLIENT_CPU (0), CLIENTS (50), N_P1 (300000),
N_P16 (2000000), M (500000), CONSUMERS (8), TIMEOUT per run in seconds (300).
Exits 1 if a server fails to start or a run fails its checks. Python 3 standard library.
"""

import os
import random
import re
import resource
import selectors
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common as bc  # noqa: E402
from bench_common import coreshard_bin  # noqa: E402

SERVER_CPU = bc.SERVER_CPU
CLIENT_CPU = os.environ.get("CLIENT_CPU", "0")
ROUNDS = int(os.environ.get("ROUNDS", "3"))
ONLY = os.environ.get("ONLY", "")
CORESHARD_BIN = os.environ.get("CORESHARD_BIN", "")
WORKLOADS = os.environ.get("WORKLOADS", "xadd xreadgroup").split()
PIPELINES = [int(p) for p in os.environ.get("PIPELINES", "1 16").split()]
CLIENTS = int(os.environ.get("CLIENTS", "50"))
N_P1 = int(os.environ.get("N_P1", "300000"))
N_P16 = int(os.environ.get("N_P16", "2000000"))
M = int(os.environ.get("M", "500000"))
CONSUMERS = int(os.environ.get("CONSUMERS", "8"))
COUNTS = [int(k) for k in os.environ.get("COUNTS", "10").split()]
TIMEOUT = float(os.environ.get("TIMEOUT", "300"))
GOAL = 1.2




def pick_port():
    """A free TCP port in 20000-29999 (bind-tested)."""
    for _ in range(200):
        port = random.randint(20000, 29999)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port in 20000-29999")


def start_server(kind):
    port = pick_port()
    if kind == "coreshard":
        cmd = [coreshard_bin(), "--port", str(port), "--shards", "1", "--cores", SERVER_CPU,
               "--log-level", "warn", "--appendonly", "no"]
    else:
        cmd = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
               "--daemonize", "no", "--loglevel", "warning"]
    proc = bc.launch(cmd, port, cpu=SERVER_CPU, name=kind)
    time.sleep(0.2)  # let start-up work settle before the CPU baseline
    return proc, port


def self_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# --- workload (a): XADD through redis-benchmark ------------------------------------------

def run_xadd(kind, pipeline):
    n = N_P1 if pipeline == 1 else N_P16
    proc, port = start_server(kind)
    try:
        cpu0, ccpu0, t0 = bc.proc_cpu_seconds(proc.pid), bc.children_cpu_seconds(), time.time()
        out = subprocess.run(["taskset", "-c", CLIENT_CPU, "redis-benchmark", "-p", str(port), "-n", str(n),
                              "-c", str(CLIENTS), "-P", str(pipeline), "-q", "XADD", "s", "*", "f", "v"],
                             capture_output=True, text=True, timeout=TIMEOUT)
        wall = time.time() - t0
        cpu, ccpu = bc.proc_cpu_seconds(proc.pid) - cpu0, bc.children_cpu_seconds() - ccpu0
        text = (out.stdout + out.stderr).replace("\r", "\n")
        m = re.findall(r":\s*([\d.]+) requests per second", text)
        if out.returncode != 0 or not m:
            raise RuntimeError(f"redis-benchmark failed (exit {out.returncode}): {text.strip()[-500:]}")
        c = bc.Conn(port)
        xlen = c.call("XLEN", "s")
        c.close()
        if xlen != n:
            raise RuntimeError(f"XLEN s is {xlen!r} after {n} XADDs (errors? {text.strip()[-300:]})")
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} exited during the run")
    finally:
        bc.stop(proc)
    return {"requests": n, "cpu": cpu, "rps": float(m[-1]), "wall": wall, "client_cpu": ccpu}


# --- workload (c): ZRANGE of 100 members with scores through redis-benchmark ------------

def run_zrange(kind, pipeline):
    n = N_P1 if pipeline == 1 else N_P16
    proc, port = start_server(kind)
    try:
        c = bc.Conn(port)
        for base in range(0, 1000, 100):
            args = ["ZADD", "z"]
            for i in range(base, base + 100):
                args += [str(i * 1.5), f"member:{i}"]
            c.call(*args)
        c.close()
        cpu0, ccpu0, t0 = bc.proc_cpu_seconds(proc.pid), bc.children_cpu_seconds(), time.time()
        out = subprocess.run(["taskset", "-c", CLIENT_CPU, "redis-benchmark", "-p", str(port), "-n", str(n),
                              "-c", str(CLIENTS), "-P", str(pipeline), "-q", "ZRANGE", "z", "100", "199",
                              "WITHSCORES"], capture_output=True, text=True, timeout=TIMEOUT)
        wall = time.time() - t0
        cpu, ccpu = bc.proc_cpu_seconds(proc.pid) - cpu0, bc.children_cpu_seconds() - ccpu0
        text = (out.stdout + out.stderr).replace("\r", "\n")
        m = re.findall(r":\s*([\d.]+) requests per second", text)
        if out.returncode != 0 or not m:
            raise RuntimeError(f"redis-benchmark failed (exit {out.returncode}): {text.strip()[-500:]}")
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} exited during the run")
    finally:
        bc.stop(proc)
    return {"requests": n, "cpu": cpu, "rps": float(m[-1]), "wall": wall, "client_cpu": ccpu}


# --- workload (b): XREADGROUP + XACK consumers -------------------------------------------

_preload_cache = {}


def preload_chunks():
    """M XADDs of the types-memory stream entries, pre-encoded in chunks of 1000."""
    if M not in _preload_cache:
        chunks, cmds = [], []
        mask = 2**64 - 1
        for i in range(M):
            u = b"%d" % (i % 1000)
            cmds.append(b"*7\r\n$4\r\nXADD\r\n$1\r\ns\r\n$1\r\n*\r\n$4\r\nuser\r\n$%d\r\n%s\r\n$7\r\npayload\r\n$16\r\n%016x\r\n"
                        % (len(u), u, (i * 0x9E3779B97F4A7C15) & mask))
            if len(cmds) == 1000:
                chunks.append((len(cmds), b"".join(cmds)))
                cmds = []
        if cmds:
            chunks.append((len(cmds), b"".join(cmds)))
        _preload_cache.clear()
        _preload_cache[M] = chunks
    return _preload_cache[M]


def preload(port):
    s = socket.create_connection(("127.0.0.1", port))
    try:
        for count, blob in preload_chunks():
            s.sendall(blob)
            buf = b""
            while buf.count(b"\r\n") < 2 * count:  # each reply: $len CRLF id CRLF
                if buf[:1] == b"-" or b"\r\n-" in buf:
                    break
                chunk = s.recv(1 << 20)
                if not chunk:
                    raise RuntimeError("connection closed during preload")
                buf += chunk
            if buf[:1] == b"-" or b"\r\n-" in buf:
                raise RuntimeError(f"preload: server answered {buf[:200]!r}")
    finally:
        s.close()
    c = bc.Conn(port)
    try:
        if c.call("XLEN", "s") != M:
            raise RuntimeError("preload: XLEN s is not M")
        r = c.call("XGROUP", "CREATE", "s", "g", "0")
        if r != b"+OK":
            raise RuntimeError(f"XGROUP CREATE answered {r!r}")
        first = c.call("XRANGE", "s", "-", "+", "COUNT", "1")
        fields = len(first[0][1])
    finally:
        c.close()
    return fields


class ProtocolError(RuntimeError):
    pass


def consume(port, k, fields):
    """Run the consumer loop; returns (xreadgroup calls, xack calls, entries acked)."""
    stride = 4 + 2 * fields  # lines per entry: *2, $len, id, *F, F x ($len, value)
    sel = selectors.DefaultSelector()
    consumers = []
    for i in range(CONSUMERS):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        name = b"c%d" % i
        kb = b"%d" % k
        req = (b"*9\r\n$10\r\nXREADGROUP\r\n$5\r\nGROUP\r\n$1\r\ng\r\n$%d\r\n%s\r\n$5\r\nCOUNT\r\n$%d\r\n%s\r\n"
               b"$7\r\nSTREAMS\r\n$1\r\ns\r\n$1\r\n>\r\n" % (len(name), name, len(kb), kb))
        st = {"sock": s, "req": req, "buf": b"", "reading": True}
        consumers.append(st)
        sel.register(s, selectors.EVENT_READ, st)
    reads = acks = acked = 0
    live = len(consumers)
    deadline = time.time() + TIMEOUT
    try:
        for st in consumers:
            st["sock"].sendall(st["req"])
        while live:
            if time.time() > deadline:
                raise RuntimeError(f"consumers not done after {TIMEOUT:g} s")
            for key, _ in sel.select(timeout=1.0):
                st = key.data
                chunk = st["sock"].recv(1 << 20)
                if not chunk:
                    raise ProtocolError("server closed a consumer connection")
                buf = st["buf"] + chunk
                if st["reading"]:
                    if buf[:1] == b"-":
                        if buf.endswith(b"\r\n"):
                            raise ProtocolError(f"XREADGROUP answered {buf[:200]!r}")
                        st["buf"] = buf
                        continue
                    if buf.startswith(b"*-1\r\n") or buf.startswith(b"*0\r\n"):
                        if len(buf) != (5 if buf[1:2] == b"-" else 4):
                            raise ProtocolError(f"unexpected bytes after a nil reply: {buf[:200]!r}")
                        reads += 1
                        live -= 1
                        sel.unregister(st["sock"])
                        st["buf"] = b""
                        continue
                    n = buf.count(b"\r\n")
                    if n < 5:
                        st["buf"] = buf
                        continue
                    head = buf.split(b"\r\n", 5)
                    if head[0] != b"*1" or head[1] != b"*2" or head[3] != b"s" or head[4][:1] != b"*":
                        raise ProtocolError(f"unexpected XREADGROUP reply {buf[:200]!r}")
                    cnt = int(head[4][1:])
                    want = 5 + cnt * stride
                    if n < want:
                        st["buf"] = buf
                        continue
                    if n > want or not buf.endswith(b"\r\n"):
                        raise ProtocolError(f"XREADGROUP reply does not frame as {cnt} entries of {fields} fields")
                    lines = buf.split(b"\r\n")
                    ids = lines[7:want:stride]
                    if len(ids) != cnt or lines[5] != b"*2" or lines[8] != b"*%d" % fields:
                        raise ProtocolError(f"unexpected XREADGROUP reply {buf[:200]!r}")
                    reads += 1
                    if cnt == 0:  # not what Redis answers to `>`, but means drained too
                        live -= 1
                        sel.unregister(st["sock"])
                        st["buf"] = b""
                        continue
                    parts = [b"*%d\r\n$4\r\nXACK\r\n$1\r\ns\r\n$1\r\ng\r\n" % (3 + cnt)]
                    parts += [b"$%d\r\n%s\r\n" % (len(i), i) for i in ids]
                    st["buf"] = b""
                    st["reading"] = False
                    st["sock"].sendall(b"".join(parts))
                else:
                    if not buf.endswith(b"\r\n"):
                        st["buf"] = buf
                        continue
                    if buf[:1] != b":" or buf.count(b"\r\n") != 1:
                        raise ProtocolError(f"XACK answered {buf[:200]!r}")
                    acked += int(buf[1:-2])
                    acks += 1
                    st["buf"] = b""
                    st["reading"] = True
                    st["sock"].sendall(st["req"])
    finally:
        sel.close()
        for st in consumers:
            st["sock"].close()
    return reads, acks, acked


def run_xreadgroup(kind, k):
    proc, port = start_server(kind)
    try:
        fields = preload(port)
        time.sleep(0.2)
        cpu0, mine0, t0 = bc.proc_cpu_seconds(proc.pid), self_cpu(), time.time()
        reads, acks, acked = consume(port, k, fields)
        wall = time.time() - t0
        cpu, mine = bc.proc_cpu_seconds(proc.pid) - cpu0, self_cpu() - mine0
        c = bc.Conn(port)
        pending = c.call("XPENDING", "s", "g")
        c.close()
        if acked != M or not isinstance(pending, list) or pending[0] != 0:
            raise RuntimeError(f"after the run: {acked} of {M} entries acked, XPENDING s g = {pending!r}")
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} exited during the run")
    finally:
        bc.stop(proc)
    requests = reads + acks
    return {"requests": requests, "cpu": cpu, "rps": requests / wall, "wall": wall, "client_cpu": mine,
            "entries": M, "reads": reads, "acks": acks}


# --- driver ------------------------------------------------------------------------------

def main():
    if ONLY not in ("", "redis", "coreshard"):
        sys.exit(f"ONLY must be redis or coreshard, not {ONLY!r}")
    bad = [w for w in WORKLOADS if w not in ("xadd", "xreadgroup", "zrange")]
    if bad:
        sys.exit(f"unknown workload(s) {bad}: use xadd, xreadgroup, zrange")
    servers = ["coreshard", "redis"] if not ONLY else [ONLY]
    if "redis" in servers:
        bc.ensure_redis()
    if "coreshard" in servers:
        if CORESHARD_BIN:
            if not os.access(CORESHARD_BIN, os.X_OK):
                sys.exit(f"CORESHARD_BIN={CORESHARD_BIN} is not an executable")
        else:
            subprocess.run(["cargo", "build", "--release", "-q"], cwd=bc.ROOT, check=True)
    try:
        os.sched_setaffinity(0, {int(CLIENT_CPU)})  # the xreadgroup client is this process
    except (OSError, ValueError) as e:
        print(f"warning: could not pin this script to cpu {CLIENT_CPU}: {e}", file=sys.stderr)

    cases = []
    if "xadd" in WORKLOADS:
        cases += [("XADD", f"-P {p}", run_xadd, p) for p in PIPELINES]
    if "xreadgroup" in WORKLOADS:
        cases += [("XREADGROUP+XACK", f"COUNT {k}", run_xreadgroup, k) for k in COUNTS]
    if "zrange" in WORKLOADS:
        cases += [("ZRANGE 100 WS", f"-P {p}", run_zrange, p) for p in PIPELINES]
    results = {}  # (case index, server) -> [run dicts]
    failed = False
    for rnd in range(1, ROUNDS + 1):
        order = servers if rnd % 2 else servers[::-1]
        for ci, (name, label, fn, arg) in enumerate(cases):
            for kind in order:
                try:
                    r = fn(kind, arg)
                except Exception as e:  # noqa: BLE001
                    print(f"round {rnd}: {kind} {name} {label}: FAILED: {e}", file=sys.stderr, flush=True)
                    failed = True
                    continue
                results.setdefault((ci, kind), []).append(r)
                extra = f", {r['entries'] / r['cpu']:.0f} entries per CPU-second" if "entries" in r else ""
                print(f"round {rnd}: {kind} {name} {label}: {r['requests']} requests, {r['rps']:.0f} req/s, "
                      f"server CPU {r['cpu']:.2f}s of {r['wall']:.2f}s wall, {r['requests'] / r['cpu']:.0f} req per "
                      f"CPU-second{extra}, client CPU {r['client_cpu']:.2f}s", file=sys.stderr, flush=True)

    def med(ci, kind, f):
        runs = results.get((ci, kind), [])
        return bc.median([f(r) for r in runs]) if runs else None

    def cell(v, width, fmt="{:.0f}"):
        return f"{'-' if v is None else fmt.format(v):>{width}}"

    print()
    print(f"{'workload':<16} {'':<9} {'coreshard /CPU-s':>17} {'redis /CPU-s':>13} {'ratio':>7} "
          f"{'coreshard req/s':>16} {'redis req/s':>12} {'busy cs':>8} {'busy rd':>8}")
    verdicts = []
    for ci, (name, label, fn, arg) in enumerate(cases):
        rows = [("req", lambda r: r["requests"] / r["cpu"])]
        if name.startswith("XREADGROUP"):
            rows.append(("entries", lambda r: r["entries"] / r["cpu"]))
        for unit, f in rows:
            cs, rd = med(ci, "coreshard", f), med(ci, "redis", f)
            ratio = cs / rd if cs and rd else None
            if unit == "req":
                csr, rdr = med(ci, "coreshard", lambda r: r["rps"]), med(ci, "redis", lambda r: r["rps"])
                csb, rdb = med(ci, "coreshard", lambda r: r["cpu"] / r["wall"] * 100), med(ci, "redis", lambda r: r["cpu"] / r["wall"] * 100)
                if ratio is not None:
                    verdicts.append((f"{name} {label}", ratio))
                print(f"{name:<16} {label:<9} {cell(cs, 17)} {cell(rd, 13)} {cell(ratio, 7, '{:.2f}x')} "
                      f"{cell(csr, 16)} {cell(rdr, 12)} {cell(csb, 8, '{:.0f}%')} {cell(rdb, 8, '{:.0f}%')}")
            else:
                print(f"{'  (entries)':<16} {label:<9} {cell(cs, 17)} {cell(rd, 13)} {cell(ratio, 7, '{:.2f}x')}")
    n_ok = {k: len(v) for k, v in results.items()}
    print(f"(medians of {ROUNDS} rounds{'' if all(v == ROUNDS for v in n_ok.values()) else ', some runs FAILED'}; "
          f"server on cpu {SERVER_CPU}, client on cpu {CLIENT_CPU}; xadd: redis-benchmark -c {CLIENTS}, "
          f"N_P1={N_P1}, N_P16={N_P16}; xreadgroup: M={M} entries, {CONSUMERS} consumers; "
          f"busy = server CPU / wall; {bc.load_note()}; redis {bc.sh(['redis-server', '--version']).split()[2][2:]}"
          + (f"; coreshard {coreshard_bin()}" if "coreshard" in servers else "") + ")")
    if verdicts:
        miss = [w for w, r in verdicts if r < GOAL]
        print(f"goal >= {GOAL:.1f}x redis req/CPU-s: " + (f"missed by {', '.join(miss)}" if miss else "met by every workload"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
