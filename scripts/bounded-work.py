#!/usr/bin/env python3
"""Bounded work / bounded memory: coreshard vs redis-server, measured in the same run.

Build the server first (this script does not build it):

    cargo build --release
    scripts/bounded-work.py [--binary target/release/coreshard] [--out docs/evidence/bounded-work.txt]

Each server is started fresh for every (measurement, repetition) on a free port, pinned
with `taskset -c SERVER_CPU` (default 1): coreshard as `--shards 1 --port P --appendonly no`, redis-server
as `--port P --save '' --appendonly no`. The clients (this process, its threads and the
PING process) are pinned to CLIENT_CPU (default 0). Each measurement runs --reps times
(default 3), alternating which server goes first, and the table at the end gives medians
and the ratio coreshard / redis (below 1: coreshard is faster / smaller).

 1. MSET of 200,000 pairs (k0..k199999 = v) sent as one request in 1,500-byte pieces
    (one sendall per piece): time from the first piece until +OK (sent_ms in the
    per-run lines: until the last piece was written); meanwhile a second connection
    PINGs every ~1 ms and the p99 / max PING latency overlapping that window is reported.
 2. Hostile glob: one 60-byte key of 'a's, `KEYS *a*a*a*a*a*a*a*a*b` timed 5 times
    (median), 5 ms apart; p99 / max latency of PINGs from another connection over
    that window. (The gaps matter: a client looping flat out on the client core
    pushes PING p99 to ~3.5 ms for either server on a 2-core machine.)
 3. 20,000 APPENDs of 1 KB to one key, pipelined 1,000 at a time: total time (every
    reply and the final value are checked).
 4. 1,000,000 keys loaded with pipelined MSETs, then `KEYS nomatch*`: its time, and the
    p99 / max PING latency from another connection during it.
 5. Output backpressure: one connection pipelines up to 2,000,000 `GET big` (1 KB value)
    and never reads; writing stops after 10 s or when a write blocks for 2 s. The
    server's VmRSS is sampled every 250 ms (during the writes and 2 s after) and the
    start / max / end RSS, plus the RSS 1 s after the client closed, are reported.
 6. The same pipeline read back: 200,000 pipelined `GET big` whose replies are all read
    and compared byte for byte (count and content).

The script exits non-zero with a message if a server does not start or dies, a reply is
wrong, or a step passes its time limit. Python 3.11 standard library only.
"""

import argparse
import contextlib
import datetime
import multiprocessing as mp
import os
import platform
import shutil
import socket
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import (ROOT, SERVER_CPU, Conn, encode, free_port, launch, median,  # noqa: E402
                          percentile, rss_bytes, stop, fmt, sh)
from bench_common import time_limit as _time_limit  # noqa: E402

CLIENT_CPU = int(os.environ.get("CLIENT_CPU", "0"))
KINDS = ("coreshard", "redis")
SOCKET_TIMEOUT = 60.0   # any single blocking socket call
PING_PERIOD = 0.001
mono = time.monotonic   # CLOCK_MONOTONIC: comparable between this process and the PING process


class Fail(Exception):
    """A measurement could not be made honestly: report it and exit non-zero."""


# ---------------------------------------------------------------- plumbing

def time_limit(seconds, what):
    """Raise Fail in the main thread if the block runs longer than `seconds`."""
    return _time_limit(seconds, what, Fail)


class Client(Conn):
    """bench_common.Conn with a socket timeout and a reader that notices a closed socket."""

    def __init__(self, port, timeout=SOCKET_TIMEOUT):
        super().__init__(port)
        self.sock.settimeout(timeout)

    def _fill(self):
        try:
            chunk = self.sock.recv(1 << 16)
        except socket.timeout:
            raise Fail(f"no reply within {self.sock.gettimeout():.0f} s")
        if not chunk:
            raise Fail("the server closed the connection")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        line = self._line()
        kind = line[:1]
        if kind == b"$":
            n = int(line[1:])
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if kind == b"*":
            n = int(line[1:])
            return None if n < 0 else [self.reply() for _ in range(n)]
        if kind == b":":
            return int(line[1:])
        if kind in (b"+", b"-"):
            return line
        raise Fail(f"unparseable reply line {line[:80]!r}")


def expect(got, want, what):
    if got != want:
        g, w = repr(got), repr(want)
        raise Fail(f"{what}: got {g[:200]}, want {w[:200]}")


PROCS = []      # running servers: (kind, Popen)
PINGERS = []    # running PING processes


def start_server(kind, binary):
    port = free_port()
    if kind == "coreshard":
        cmd = [binary, "--shards", "1", "--port", str(port), "--log-level", "warn", "--appendonly", "no"]
    else:
        cmd = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
               "--loglevel", "warning"]
    try:
        proc = launch(cmd, port, cpu=SERVER_CPU, name=kind)
    except RuntimeError as e:
        raise Fail(str(e))
    PROCS.append((kind, proc))
    return proc, port


def stop_server(kind, proc, check=True):
    rc = proc.poll()
    with contextlib.suppress(ValueError):
        PROCS.remove((kind, proc))
    if rc is not None:
        if check:
            raise Fail(f"{kind} (pid {proc.pid}) exited with code {rc} during the measurement")
        return
    stop(proc)


def rss_mb(proc, kind):
    try:
        return rss_bytes(proc.pid) / (1 << 20)
    except OSError:
        raise Fail(f"{kind} (pid {proc.pid}) is gone (reading its VmRSS failed)")


def _ping_loop(port, cpu, stop_ev, ready_ev, out):
    """In a separate process: PING every ~1 ms on its own connection, recording
    (send time, latency); send the samples (or the error) back through `out`."""
    try:
        os.sched_setaffinity(0, {cpu})
        s = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        samples = []
        ready_ev.set()
        while not stop_ev.is_set():
            t0 = mono()
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            buf = b""
            while len(buf) < 7:
                chunk = s.recv(64)
                if not chunk:
                    raise ConnectionError("server closed the PING connection")
                buf += chunk
            t1 = mono()
            if buf != b"+PONG\r\n":
                raise ValueError(f"PING reply {buf!r}")
            samples.append((t0, t1 - t0))
            rest = PING_PERIOD - (t1 - t0)
            if rest > 0:
                time.sleep(rest)
        s.close()
        out.send(("ok", samples))
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        out.send(("error", repr(e)))


class Pinger:
    """PINGs from another process and connection (same shard: the server has one)."""

    def __init__(self, port):
        self.port = port

    def __enter__(self):
        self.stop_ev, self.ready_ev = mp.Event(), mp.Event()
        self.rx, tx = mp.Pipe(duplex=False)
        self.proc = mp.Process(target=_ping_loop, args=(self.port, CLIENT_CPU, self.stop_ev, self.ready_ev, tx),
                               daemon=True)
        self.proc.start()
        PINGERS.append(self.proc)
        if not self.ready_ev.wait(10):
            raise Fail("the PING connection did not start")
        time.sleep(0.05)   # let it settle into its loop before the measured operation
        return self

    def window(self, a, b):
        """Stop and return the latencies (ms) of the PINGs in flight at some point in [a, b]."""
        self.stop_ev.set()
        if not self.rx.poll(SOCKET_TIMEOUT + 5):
            raise Fail("the PING process did not report")
        status, data = self.rx.recv()
        if status != "ok":
            raise Fail(f"the PING connection failed: {data}")
        lat = [d * 1000 for (t0, d) in data if t0 < b and t0 + d > a]
        if not lat:
            raise Fail(f"no PING overlapped the measured window ({(b - a) * 1000:.1f} ms)")
        return lat

    def __exit__(self, *exc):
        self.stop_ev.set()
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
        with contextlib.suppress(ValueError):
            PINGERS.remove(self.proc)
        return False


def ping_stats(lat):
    return {"ping_p99_ms": percentile(lat, 99), "ping_max_ms": max(lat), "ping_n": len(lat)}


# ---------------------------------------------------------------- measurements

MSET_PAIRS = 200_000
MSET_PIECE = 1500
_mset_pieces = None


def m_mset_pieces(port, proc, kind):
    global _mset_pieces
    if _mset_pieces is None:
        args = ["MSET"]
        for i in range(MSET_PAIRS):
            args += [b"k%d" % i, b"v"]
        req = encode(*args)
        _mset_pieces = [req[i:i + MSET_PIECE] for i in range(0, len(req), MSET_PIECE)]
    c = Client(port)
    with Pinger(port) as p:
        t0 = mono()
        for piece in _mset_pieces:
            c.sock.sendall(piece)
        t_sent = mono()
        r = c.reply()
        t1 = mono()
        lat = p.window(t0, t1)
    expect(r, b"+OK", "MSET reply")
    expect(c.call("DBSIZE"), MSET_PAIRS, "DBSIZE after MSET")
    expect(c.call("GET", "k199999"), b"v", "GET k199999 after MSET")
    expect(c.call("GET", "k0"), b"v", "GET k0 after MSET")
    c.close()
    return {"mset_ms": (t1 - t0) * 1000, "sent_ms": (t_sent - t0) * 1000, **ping_stats(lat),
            "pieces": len(_mset_pieces)}


GLOB_KEY = "a" * 60
GLOB_PATTERN = "*a*a*a*a*a*a*a*a*b"


GLOB_CALLS = 5
GLOB_GAP_S = 0.005


def m_glob(port, proc, kind):
    c = Client(port)
    expect(c.call("SET", GLOB_KEY, "x"), b"+OK", "SET of the 60-byte key")
    cmd = encode("KEYS", GLOB_PATTERN)
    times = []
    with Pinger(port) as p:
        a = mono()
        for i in range(GLOB_CALLS):
            if i:
                # Idle gaps keep the (shared) client core free, so a PING stall shows the
                # server's glob cost, not this loop competing with the PING process.
                time.sleep(GLOB_GAP_S)
            t0 = mono()
            c.sock.sendall(cmd)
            r = c.reply()
            t1 = mono()
            expect(r, [], f"KEYS {GLOB_PATTERN}")
            times.append((t1 - t0) * 1000)
        b = mono()
        lat = p.window(a, b)
    c.close()
    return {"keys_glob_ms": median(times), "keys_glob_max_ms": max(times), **ping_stats(lat)}


APPENDS = 20_000
APPEND_BATCH = 1000
APPEND_SIZE = 1024
_append_batches = None


def append_chunk(i):
    """Chunk i: its number then a letter, 1 KB, so a misplaced byte shows."""
    c = b"%07d:" % i
    return c + bytes([ord("a") + i % 26]) * (APPEND_SIZE - len(c))


def m_append(port, proc, kind):
    global _append_batches
    if _append_batches is None:
        _append_batches = [b"".join(encode("APPEND", "big", append_chunk(i)) for i in range(s, s + APPEND_BATCH))
                           for s in range(0, APPENDS, APPEND_BATCH)]
    c = Client(port)
    t0 = mono()
    n = 0
    for batch in _append_batches:
        c.sock.sendall(batch)
        for _ in range(APPEND_BATCH):
            n += 1
            r = c.reply()
            if r != n * APPEND_SIZE:
                expect(r, n * APPEND_SIZE, f"reply to APPEND #{n}")
    t1 = mono()
    expect(c.call("STRLEN", "big"), APPENDS * APPEND_SIZE, "STRLEN after the APPENDs")
    for i in (0, 1, APPENDS // 2, APPENDS - 1):
        got = c.call("GETRANGE", "big", i * APPEND_SIZE, (i + 1) * APPEND_SIZE - 1)
        expect(got, append_chunk(i), f"GETRANGE of chunk {i}")
    c.close()
    return {"append_total_ms": (t1 - t0) * 1000}


KEYS_N = 1_000_000
LOAD_PAIRS = 1000       # pairs per MSET
LOAD_GROUP = 10         # MSETs per write
_load_groups = None


def m_keys(port, proc, kind):
    global _load_groups
    if _load_groups is None:
        msets = []
        for s in range(0, KEYS_N, LOAD_PAIRS):
            args = ["MSET"]
            for i in range(s, s + LOAD_PAIRS):
                args += [b"key:%d" % i, b"v"]
            msets.append(encode(*args))
        _load_groups = [b"".join(msets[i:i + LOAD_GROUP]) for i in range(0, len(msets), LOAD_GROUP)]
    c = Client(port)
    t0 = mono()
    for group in _load_groups:
        c.sock.sendall(group)
        for _ in range(LOAD_GROUP):
            r = c.reply()
            if r != b"+OK":
                expect(r, b"+OK", "reply to a loading MSET")
    load_s = mono() - t0
    expect(c.call("DBSIZE"), KEYS_N, "DBSIZE after loading")
    cmd = encode("KEYS", "nomatch*")
    with Pinger(port) as p:
        a = mono()
        c.sock.sendall(cmd)
        r = c.reply()
        b = mono()
        lat = p.window(a, b)
    expect(r, [], "KEYS nomatch*")
    c.close()
    return {"keys_nomatch_ms": (b - a) * 1000, **ping_stats(lat), "load_s": load_s}


BIG = bytes(ord("A") + (i * 7) % 26 for i in range(1024))   # 1 KB, not periodic in a short step
GET_BIG = encode("GET", "big")
BP_COMMANDS = 2_000_000
BP_CHUNK = 1000          # commands per write
BP_MAX_WRITE_S = 10.0
BP_BLOCKED_S = 2.0
BP_SAMPLE_S = 0.25
BP_HOLD_S = 2.0


def m_backpressure(port, proc, kind):
    c = Client(port)
    expect(c.call("SET", "big", BIG), b"+OK", "SET big")
    w = socket.create_connection(("127.0.0.1", port))
    w.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    w.settimeout(BP_BLOCKED_S)   # sendall raises after this long without completing
    chunk = GET_BIG * BP_CHUNK
    st = {"sent": 0, "why": None, "write_s": None}

    def writer():
        t0 = mono()
        try:
            while st["sent"] < BP_COMMANDS:
                if mono() - t0 > BP_MAX_WRITE_S:
                    st["why"] = f"{BP_MAX_WRITE_S:.0f} s cap"
                    break
                try:
                    w.sendall(chunk)
                except socket.timeout:
                    st["why"] = f"a write blocked {BP_BLOCKED_S:.0f} s"
                    break
                st["sent"] += BP_CHUNK
            else:
                st["why"] = "all sent"
        except OSError as e:
            st["why"] = f"server closed it ({e.__class__.__name__})"
        st["write_s"] = mono() - t0

    start = rss_mb(proc, kind)
    curve = [(0.0, start)]
    th = threading.Thread(target=writer, daemon=True)
    t0 = mono()
    th.start()
    while th.is_alive():
        time.sleep(BP_SAMPLE_S)
        curve.append((mono() - t0, rss_mb(proc, kind)))
    hold_until = mono() + BP_HOLD_S
    while mono() < hold_until:
        time.sleep(BP_SAMPLE_S)
        curve.append((mono() - t0, rss_mb(proc, kind)))
    end = curve[-1][1]
    w.close()
    time.sleep(1.0)
    after_close = rss_mb(proc, kind)
    expect(c.call("PING"), b"+PONG", "PING after closing the flooding client")
    expect(c.call("GET", "big"), BIG, "GET big after closing the flooding client")
    c.close()
    peak_t = max(curve, key=lambda x: x[1])[0]
    return {"rss_start_mb": start, "rss_max_mb": max(v for _, v in curve), "rss_end_mb": end,
            "rss_after_close_mb": after_close, "gets_written_k": st["sent"] / 1000,
            "write_s": st["write_s"], "peak_at_s": peak_t, "stopped": st["why"]}


READ_N = 200_000


def m_readall(port, proc, kind):
    c = Client(port)
    expect(c.call("SET", "big", BIG), b"+OK", "SET big")
    one = b"$%d\r\n%s\r\n" % (len(BIG), BIG)
    total = READ_N * len(one)
    pattern = one * ((1 << 20) // len(one) + 2)     # any 1 MB window of the expected stream
    payload = GET_BIG * READ_N
    s = c.sock
    err = []

    def writer():
        try:
            s.sendall(payload)
        except OSError as e:
            err.append(repr(e))

    th = threading.Thread(target=writer, daemon=True)
    t0 = mono()
    th.start()
    got = 0
    L = len(one)
    while got < total:
        try:
            data = s.recv(min(1 << 20, total - got))
        except socket.timeout:
            raise Fail(f"stalled after {got // L} of {READ_N} replies"
                       f"{' (writer: ' + err[0] + ')' if err else ''}")
        if not data:
            raise Fail(f"connection closed after {got // L} of {READ_N} replies")
        off = got % L
        if data != pattern[off:off + len(data)]:
            bad = next(i for i in range(len(data)) if data[i] != pattern[off + i])
            raise Fail(f"reply {(got + bad) // L} differs at byte {(got + bad) % L}: "
                       f"{data[max(0, bad - 20):bad + 20]!r}")
        got += len(data)
    t1 = mono()
    th.join(SOCKET_TIMEOUT)
    if err:
        raise Fail(f"writing the GETs failed: {err[0]}")
    expect(c.call("PING"), b"+PONG", "PING after the 200k replies (no extra bytes)")
    c.close()
    return {"read_all_ms": (t1 - t0) * 1000, "replies_ok": READ_N}


# (title, function, time limit per run in s, metrics for the median table)
MEASUREMENTS = [
    ("1. MSET of 200k pairs in 1,500-byte pieces + PINGs every 1 ms", m_mset_pieces, 90,
     [("mset_ms", "MSET 200k pairs, time to +OK (ms)"),
      ("ping_p99_ms", "  PING p99 during it (ms)"),
      ("ping_max_ms", "  PING max during it (ms)")]),
    ("2. Hostile glob KEYS *a*a*a*a*a*a*a*a*b on a 60-byte key", m_glob, 90,
     [("keys_glob_ms", "KEYS hostile glob, median of 5 (ms)"),
      ("ping_p99_ms", "  PING p99 during the 5 KEYS (ms)"),
      ("ping_max_ms", "  PING max during the 5 KEYS (ms)")]),
    ("3. 20,000 APPENDs of 1 KB, pipelined 1,000 at a time", m_append, 90,
     [("append_total_ms", "20k x 1 KB APPEND, total (ms)")]),
    ("4. KEYS nomatch* over 1,000,000 keys + PINGs every 1 ms", m_keys, 240,
     [("keys_nomatch_ms", "KEYS nomatch* over 1M keys (ms)"),
      ("ping_p99_ms", "  PING p99 during it (ms)"),
      ("ping_max_ms", "  PING max during it (ms)"),
      ("load_s", "  (loading 1M keys by MSET, s)")]),
    ("5. Unread pipeline of up to 2,000,000 GET big (1 KB): server RSS", m_backpressure, 60,
     [("rss_start_mb", "RSS at start (MB)"),
      ("rss_max_mb", "RSS max (MB)"),
      ("rss_end_mb", "RSS at end, client still open (MB)"),
      ("rss_after_close_mb", "RSS 1 s after client closed (MB)"),
      ("gets_written_k", "GETs the client could write (thousands)")]),
    ("6. 200,000 pipelined GET big, all replies read and checked", m_readall, 120,
     [("read_all_ms", "200k GET big read back, total (ms)")]),
]


# ---------------------------------------------------------------- report

class Report:
    def __init__(self):
        self.lines = []

    def __call__(self, line=""):
        print(line, flush=True)
        self.lines.append(line)




def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/coreshard"),
                    help="coreshard binary (default target/release/coreshard; run `cargo build --release` first)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions per measurement and server (default 3)")
    ap.add_argument("--out", help="also write the report to this file (only if the run succeeds)")
    args = ap.parse_args()

    binary = os.path.abspath(args.binary)
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        raise Fail(f"no coreshard binary at {binary}: run `cargo build --release` first (or pass --binary)")
    if shutil.which("redis-server") is None:
        raise Fail("redis-server is not on PATH")
    if shutil.which("taskset") is None:
        raise Fail("taskset is not on PATH")
    os.sched_setaffinity(0, {CLIENT_CPU})

    out = Report()
    dirty = " (dirty tree)" if sh(["git", "status", "--porcelain", "--untracked-files=no"]) else ""
    out("bounded work / bounded memory: coreshard vs redis-server")
    out(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S} UTC; "
        f"host: {os.cpu_count()} cpus, Linux {platform.release()}, Python {platform.python_version()}")
    out(f"coreshard: {binary} ({sh([binary, '--version'])}, git {sh(['git', 'rev-parse', '--short', 'HEAD'])}{dirty}), "
        f"--shards 1")
    out(f"redis: {sh(['redis-server', '--version'])}")
    out(f"servers pinned to cpu {SERVER_CPU}, clients to cpu {CLIENT_CPU}; {args.reps} runs each, "
        f"alternating order, fresh server per run; medians below")
    out(f"command: {' '.join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])}")
    out()

    results = {}   # (measurement index, metric) -> kind -> [values]
    t_start = mono()
    for mi, (title, fn, limit, metrics) in enumerate(MEASUREMENTS):
        out(title)
        for rep in range(args.reps):
            order = KINDS if rep % 2 == 0 else tuple(reversed(KINDS))
            for kind in order:
                proc, port = start_server(kind, binary)
                try:
                    with time_limit(limit, f"measurement {title.split('.')[0]} on {kind} (run {rep + 1})"):
                        res = fn(port, proc, kind)
                except BaseException as e:
                    rc = proc.poll()
                    stop_server(kind, proc, check=False)
                    if isinstance(e, Fail):
                        where = f"measurement {title.split('.')[0]}, {kind}, run {rep + 1}"
                        died = f"; {kind} had exited with code {rc}" if rc is not None else ""
                        raise Fail(f"{where}: {e}{died}") from None
                    raise
                stop_server(kind, proc)
                out(f"  run {rep + 1} {kind:9} " + " ".join(f"{k}={fmt(v)}" for k, v in res.items()))
                for key, _ in metrics:
                    results.setdefault((mi, key), {}).setdefault(kind, []).append(res[key])
        out()

    out("medians (ratio = coreshard / redis; below 1 means coreshard took less time or memory)")
    w = max(len(label) for m in MEASUREMENTS for _, label in m[3]) + 2
    out(f"{'measurement':{w}}{'coreshard':>12}{'redis':>12}{'ratio':>10}")
    out("-" * (w + 34))
    for mi, (title, _, _, metrics) in enumerate(MEASUREMENTS):
        out(f"[{title.split('.')[0]}]")
        for key, label in metrics:
            cs = median(results[(mi, key)]["coreshard"])
            rd = median(results[(mi, key)]["redis"])
            ratio = cs / rd if rd else float("nan")
            out(f"{label:{w}}{fmt(cs):>12}{fmt(rd):>12}{ratio:>10.2f}")
    out()
    out(f"total wall time: {mono() - t_start:.0f} s")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write("\n".join(out.lines) + "\n")
        print(f"(report written to {args.out})", file=sys.stderr)


def cleanup():
    for p in list(PINGERS):
        with contextlib.suppress(Exception):
            p.terminate()
            p.join(5)
    for kind, proc in list(PROCS):
        with contextlib.suppress(Exception):
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
    PROCS.clear()


if __name__ == "__main__":
    mp.set_start_method("fork")
    code = 0
    try:
        main()
    except Fail as e:
        print(f"\nFAIL: {e}", file=sys.stderr, flush=True)
        code = 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        code = 130
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        print("\nFAIL: unexpected error (above)", file=sys.stderr)
        code = 2
    finally:
        cleanup()
    sys.exit(code)
