#!/usr/bin/env python3
"""WAL benchmark: coreshard's write-ahead log vs redis-server's AOF, measured in the same run.

Build first (this script does not build):

    cargo build --release --workspace
    scripts/wal-bench.py [--coreshard target/release/coreshard] [--bench target/release/coreshard-bench]
                         [--rounds 3] [--seconds 6] [--out docs/evidence/wal-bench.txt]

Servers are pinned with `taskset -c SERVER_CPU` (default 1); every client (this process,
redis-benchmark, coreshard-bench) is pinned to CLIENT_CPU (default 0). coreshard runs as
`--shards 1 --cores SERVER_CPU --wal-core CLIENT_CPU --save ''`: on a 2-core machine its WAL thread
(and the io_uring worker that runs its fdatasync) then shares the client's core. The
`cs always wal@1` configuration puts the WAL thread on the server core instead
(`--wal-core SERVER_CPU`), which is how redis-server runs (all its threads inherit the
taskset mask). Every server starts fresh, with a fresh data directory under --tmp
(default /work/wal-bench-tmp/run-PID: the same disk as the checkout, not tmpfs), deleted
when it stops. redis-server: `--appendonly yes --appendfsync always|everysec --save ''
--dir DIR` (its defaults otherwise, so an AOF rewrite may happen in a long -P 16 run:
the per-run lines show aof_rewrites).

 1. Disk: write+fdatasync latency of 4 KiB blocks, 2000 each, (a) overwriting a
    preallocated zero-filled file (what coreshard's preallocated WAL segments do) and
    (b) appending (what Redis' AOF does). Measured at the start and again at the end; the
    p99/disk ratios use the pass with the lower p99 (a slow pass must not flatter them), and
    coreshard's p99 is also set against its own INFO wal_fsync_p99_us from the same run.
 2. redis-benchmark -t set -c 50 -d 100 at -P 1 and -P 16 against: coreshard always
    (WAL on core CLIENT_CPU), coreshard always (WAL on SERVER_CPU), coreshard everysec,
    coreshard --appendonly no, redis always, redis everysec. N is set per (config, -P)
    from a warm-up run so a measured run takes about --seconds; every run is preceded by
    the same warm-up on its fresh server. --rounds rounds, the order reversed every other
    round. Records per fsync and bytes per SET come from INFO persistence deltas over the
    measured run (coreshard: wal_records / wal_fsyncs, wal_bytes / SETs; Redis:
    aof_current_size growth / SETs over the warm-up run, which is too short for an AOF
    rewrite). CPU use over each run (client, server shard/main thread, coreshard's WAL
    threads) comes from /proc and getrusage.
 3. coreshard-bench open loop, SET only (-c 50 -P 1 -d 100, 100k keys), at --ol-frac
    (default 0.8) of the slower of the two `always` -P 1 closed-loop medians from 2, against
    coreshard always (both WAL placements) and redis always. A run is FAILED, reported with
    its reason and without latency numbers, if the harness exits non-zero (3: the run failed
    its own checks, e.g. fewer than 95% of the offered rate answered in the window), its JSON
    is missing or its `status` is not "ok", or it saw errors, reconnects or lost requests.
 4. Recovery of 1,000,000 keys (16-byte keys, 32-byte values, pipelined SETs, loaded with
    appendfsync always): time from process start until DBSIZE answers 1000000 after
    (a) a restart that replays coreshard's log only, (b) SAVE then restart (snapshot),
    (c) redis-server AOF replay (`--aof-use-rdb-preamble no --auto-aof-rewrite-percentage 0`
    so the file is 1M SET commands, not an RDB). The page cache is warm (files just written).

Before every run of 2 and 3 the disk is probed (median of 50 4 KiB overwrite+fdatasync) and
the per-run line shows it with the load average and CPU pressure: the disk and the CPUs are
shared with other tenants, and a run whose probe is far above the others measured a
different disk.

Exits non-zero with a message if a server does not start or dies, a benchmark tool fails
or its output cannot be parsed, a reply or count is wrong, or a step passes its time limit.
Open-loop runs that fail are reported as FAILED in the report, which is still written, and
then the script exits 1. Performance goals (ratios) are reported, not enforced.
Python 3 standard library + `redis` (redis-py, installed with pip for this interpreter if missing).
"""

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import (ROOT, SERVER_CPU, dir_bytes, fdatasync_latencies, free_port, launch,  # noqa: E402
                          median, parse_redis_benchmark, percentile, thread_affinities, time_limit, fmt, sh,
                          import_redis_py)

redis = import_redis_py()

CLIENT_CPU = os.environ.get("CLIENT_CPU", "0")
mono = time.monotonic


class Fail(Exception):
    """A measurement could not be made honestly: report it and exit non-zero."""


# ---------------------------------------------------------------- configurations

def cs_args(fsync, wal_core):
    if fsync == "no-persist":
        return ["--appendonly", "no"]
    return ["--appendonly", "yes", "--appendfsync", fsync, "--wal-core", str(wal_core)]


CONFIGS = {
    # name: (kind, extra args, label)
    "cs-always": ("coreshard", cs_args("always", CLIENT_CPU), f"cs always (wal@{CLIENT_CPU})"),
    "redis-always": ("redis", ["--appendonly", "yes", "--appendfsync", "always"], "redis always"),
    "cs-everysec": ("coreshard", cs_args("everysec", CLIENT_CPU), f"cs everysec (wal@{CLIENT_CPU})"),
    "redis-everysec": ("redis", ["--appendonly", "yes", "--appendfsync", "everysec"], "redis everysec"),
    "cs-nopersist": ("coreshard", cs_args("no-persist", None), "cs appendonly no"),
    "cs-always-wc1": ("coreshard", cs_args("always", SERVER_CPU), f"cs always (wal@{SERVER_CPU})"),
}
ORDER = list(CONFIGS)
PIPELINES = (1, 16)
WARMUP_N = {1: 10_000, 16: 100_000}


# ---------------------------------------------------------------- servers

PROCS = []          # running servers: (name, Popen)
DIRS = []           # data directories to delete


class Server:
    def __init__(self, name, kind, extra, opts, logfile=None, data_dir=None, quiet=True):
        self.name, self.kind = name, kind
        self.dir = data_dir or fresh_dir(opts.tmp, name)
        self.port = free_port()
        if kind == "coreshard":
            self.cmd = [opts.coreshard, "--port", str(self.port), "--shards", "1", "--cores", SERVER_CPU,
                        "--dir", self.dir, "--save", "", "--log-level", "warn"] + extra
        else:
            self.cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                        "--dir", self.dir, "--loglevel", "warning" if quiet else "notice"] + extra
        self.logfile = logfile
        self.proc = None

    def start(self):
        """Start and wait until it answers PING (bench_common.launch)."""
        try:
            self.proc = launch(self.cmd, self.port, cpu=SERVER_CPU, timeout=15, name=self.name)
        except RuntimeError as e:
            raise Fail(str(e))
        PROCS.append((self.name, self.proc))
        return self

    def spawn(self):
        """Start without waiting (stdout to self.logfile); returns the monotonic start time."""
        out = open(self.logfile, "w") if self.logfile else subprocess.DEVNULL
        t0 = mono()
        self.proc = subprocess.Popen(["taskset", "-c", SERVER_CPU] + self.cmd, stdout=out,
                                     stderr=subprocess.STDOUT)
        PROCS.append((self.name, self.proc))
        if self.logfile:
            out.close()
        return t0

    def client(self, timeout=60):
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=timeout, decode_responses=True)

    def alive(self, what):
        rc = self.proc.poll()
        if rc is not None:
            raise Fail(f"{self.name} (pid {self.proc.pid}) exited with code {rc} {what}")

    def stop(self, check=True):
        """SIGTERM and wait; with check, a non-zero exit code (or one before now) is a failure."""
        if self.proc is None:
            return
        rc = self.proc.poll()
        with contextlib.suppress(ValueError):
            PROCS.remove((self.name, self.proc))
        if rc is not None:
            if check:
                raise Fail(f"{self.name} (pid {self.proc.pid}) had exited with code {rc}")
            return
        self.proc.terminate()
        try:
            rc = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            if check:
                raise Fail(f"{self.name} did not exit within 60 s of SIGTERM")
        if check and rc != 0:
            raise Fail(f"{self.name} exited with code {rc} after SIGTERM")

    def remove_dir(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        with contextlib.suppress(ValueError):
            DIRS.remove(self.dir)


def fresh_dir(tmp, name):
    for i in range(1000):
        d = os.path.join(tmp, f"{name}-{i}")
        if not os.path.exists(d):
            os.makedirs(d)
            DIRS.append(d)
            return d
    raise Fail(f"no free directory name for {name} under {tmp}")


def cleanup(tmp):
    for name, proc in list(PROCS):
        with contextlib.suppress(Exception):
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
    PROCS.clear()
    if tmp and os.path.isdir(tmp):
        shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(tmp))   # only if empty


# ---------------------------------------------------------------- report helpers

class Report:
    def __init__(self):
        self.lines = []

    def __call__(self, line=""):
        print(line, flush=True)
        self.lines.append(line)




def med(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return median(vals) if vals else None


def ratio(a, b):
    return a / b if (a is not None and b) else None


def pressure():
    """'load=L cpu_psi=P%': 1-minute load average and /proc/pressure/cpu 'some' avg10 (share of
    the last 10 s in which a runnable task waited for a CPU): other processes on this shared
    machine, shown next to each run. (IO pressure is not shown: io_uring waits count as
    iowait, so it reads ~99% whenever any io_uring server is idle.)"""
    try:
        with open("/proc/pressure/cpu") as f:
            psi = f"{float(f.readline().split('avg10=')[1].split()[0]):.0f}%"
    except (OSError, IndexError, ValueError):
        psi = "?"
    return f"load={os.getloadavg()[0]:.1f} cpu_psi={psi}"


# ---------------------------------------------------------------- 1. disk

def disk_test(tmp, count):
    d = os.path.join(tmp, "disk")
    os.makedirs(d, exist_ok=True)
    res = {}
    for mode, append in (("overwrite", False), ("append", True)):
        lat = fdatasync_latencies(os.path.join(d, mode), count=count, append=append)
        us = [x * 1e6 for x in lat]
        res[mode] = {"p50_us": percentile(us, 50), "p99_us": percentile(us, 99),
                     "p999_us": percentile(us, 99.9), "max_us": max(us), "samples": us}
    shutil.rmtree(d, ignore_errors=True)
    return res


class CpuMeter:
    """CPU use over a window, as % of one core: the client (children of this process that
    were waited for: redis-benchmark / coreshard-bench), the whole server process, its
    shard thread, and its WAL side (wal + wal-prepare + io_uring workers alive at the end;
    a worker that exited in between counts only in the process total)."""

    def __init__(self, pid):
        self.pid = pid
        self.hz = os.sysconf("SC_CLK_TCK")
        self.t0, self.c0, self.p0 = mono(), self._children(), self._proc()

    @staticmethod
    def _children():
        import resource
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    def _proc(self):
        def ticks(path):
            with open(path) as f:
                parts = f.read().rsplit(")", 1)[1].split()
            return int(parts[11]) + int(parts[12])
        out = {"total": ticks(f"/proc/{self.pid}/stat")}
        for tid in os.listdir(f"/proc/{self.pid}/task"):
            try:
                with open(f"/proc/{self.pid}/task/{tid}/comm") as f:
                    comm = f.read().strip()
                key = "shard" if comm.startswith("shard") else \
                    "walside" if comm.startswith(("wal", "iou-wrk")) else "other"
                out[key] = out.get(key, 0) + ticks(f"/proc/{self.pid}/task/{tid}/stat")
            except (OSError, IndexError):
                pass
        return out

    def stop(self):
        dt = mono() - self.t0
        c1, p1 = self._children(), self._proc()
        pct = lambda k: 100.0 * (p1.get(k, 0) - self.p0.get(k, 0)) / self.hz / dt
        return {"client_cpu": 100.0 * (c1 - self.c0) / dt, "server_cpu": pct("total"),
                "shard_cpu": pct("shard"), "walside_cpu": pct("walside")}


def cpu_str(c):
    return (f"cpu% client={c['client_cpu']:.0f} server={c['server_cpu']:.0f} "
            f"(shard={c['shard_cpu']:.0f} wal+iou-wrk={c['walside_cpu']:.0f})")


def disk_probe(tmp, n=50):
    """Median of n 4 KiB overwrite+fdatasync (ms), taken just before a run: the disk's state then."""
    path = os.path.join(tmp, "probe")
    lat = fdatasync_latencies(path, count=n)
    os.remove(path)
    return median(lat) * 1000


# ---------------------------------------------------------------- 2. redis-benchmark

def redis_benchmark(port, n, pipeline, timeout):
    cmd = ["taskset", "-c", CLIENT_CPU, "redis-benchmark", "-h", "127.0.0.1", "-p", str(port),
           "-t", "set", "-n", str(n), "-c", "50", "-d", "100", "-P", str(pipeline)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Fail(f"redis-benchmark -n {n} -P {pipeline} did not finish within {timeout:.0f} s")
    text = r.stdout + r.stderr
    if r.returncode != 0:
        raise Fail(f"redis-benchmark exited with code {r.returncode}: {text[-500:].strip()}")
    bad = [l for l in text.replace("\r", "\n").splitlines() if "rror" in l]
    if bad:
        raise Fail(f"redis-benchmark reported errors: {bad[:3]}")
    try:
        res = parse_redis_benchmark(text)
    except ValueError as e:
        raise Fail(f"cannot parse redis-benchmark output ({e}): {text[-800:]!r}")
    if res["requests"] != n:
        raise Fail(f"redis-benchmark completed {res['requests']} requests, asked for {n}")
    return res


def info_persistence(srv):
    try:
        return srv.client().info("persistence")
    except redis.RedisError as e:
        raise Fail(f"{srv.name}: INFO persistence failed: {e}")


def closed_loop_run(name, pipeline, opts, nsets):
    kind, extra, _ = CONFIGS[name]
    srv = Server(name, kind, extra, opts).start()
    try:
        if kind == "coreshard" and "--wal-core" in extra:
            want = extra[extra.index("--wal-core") + 1]
            aff = dict(thread_affinities(srv.proc.pid))
            if aff.get("wal") != want or aff.get("shard-0") != SERVER_CPU:
                raise Fail(f"{name}: thread affinities are {aff}, expected wal={want} shard-0={SERVER_CPU}")
        pre = info_persistence(srv)
        warm = redis_benchmark(srv.port, WARMUP_N[pipeline], pipeline, timeout=120)
        srv.alive("during the warm-up")
        post = info_persistence(srv)
        if nsets.get((name, pipeline)) is None:
            n = int(round(warm["rps"] * opts.seconds, -4))
            nsets[(name, pipeline)] = max(20_000, min(n, 20_000_000))
        n = nsets[(name, pipeline)]
        before = info_persistence(srv)
        meter = CpuMeter(srv.proc.pid)
        res = redis_benchmark(srv.port, n, pipeline, timeout=max(120, 12 * opts.seconds))
        cpu = meter.stop()
        srv.alive("during the run")
        after = info_persistence(srv)
        val = srv.client().get("key:__rand_int__")
        if val is None or len(val) != 100:
            raise Fail(f"{name}: after the run GET key:__rand_int__ gave {val!r:.60}, want a 100-byte value")
        out = {"n": n, "secs": res["seconds"], "rps": res["rps"], "p50": res["p50"], "p99": res["p99"],
               "p999": res["p999"], "max": res["max"], **cpu}
        if kind == "coreshard" and "wal_records" in after and int(after.get("aof_enabled", 0)):
            d = {k: int(after[k]) - int(before[k]) for k in ("wal_records", "wal_bytes", "wal_fsyncs", "wal_batches")}
            if d["wal_records"] < n:
                raise Fail(f"{name}: wal_records grew by {d['wal_records']} over a run of {n} SETs")
            out["rec_per_fsync"] = d["wal_records"] / d["wal_fsyncs"] if d["wal_fsyncs"] else None
            out["rec_per_batch"] = d["wal_records"] / d["wal_batches"] if d["wal_batches"] else None
            out["bytes_per_set"] = d["wal_bytes"] / n
            out["fsyncs"] = d["wal_fsyncs"]
            out["fsync_p50_us"] = int(after["wal_fsync_p50_us"])
            out["fsync_p99_us"] = int(after["wal_fsync_p99_us"])
        elif kind == "redis":
            out["aof_rewrites"] = int(after["aof_rewrites"]) - int(before["aof_rewrites"])
            # From the warm-up (10k or 100k SETs, < 64 MB: no AOF rewrite can have run in it).
            if int(post["aof_rewrites"]) == int(pre["aof_rewrites"]) == 0:
                out["bytes_per_set"] = (int(post["aof_current_size"]) - int(pre["aof_current_size"])) / WARMUP_N[pipeline]
        srv.stop()
        return out
    finally:
        srv.stop(check=False)
        srv.remove_dir()


# ---------------------------------------------------------------- 3. open loop

def open_loop_run(name, rate, opts):
    kind, extra, _ = CONFIGS[name]
    srv = Server(name, kind, extra, opts).start()
    jpath = os.path.join(opts.tmp, f"ol-{name}-{srv.port}.json")
    cmd = ["taskset", "-c", CLIENT_CPU, opts.bench, "--host", "127.0.0.1", "-p", str(srv.port),
           "--cpus", CLIENT_CPU, "-c", "50", "-P", "1", "--ratio", "1:0", "-d", "100", "--keyspace", "100000",
           "--rate", str(int(rate)), "--duration", str(opts.ol_seconds), "--warmup", "1",
           "--json", jpath, "--no-progress"]
    try:
        try:
            meter = CpuMeter(srv.proc.pid)
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=opts.ol_seconds + 60)
            cpu = meter.stop()
        except subprocess.TimeoutExpired:
            return {"status": "FAILED", "why": "coreshard-bench timed out"}
        srv.alive("during the open-loop run")
        # coreshard-bench exit codes: 0 measured what was asked, 3 a run happened but failed its
        # checks (the JSON says why), anything else: nothing measured.
        if r.returncode not in (0, 3):
            tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
            return {"status": "FAILED", "why": f"exit code {r.returncode}: {tail[0][:200]}", "cpu": cpu}
        try:
            with open(jpath) as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            return {"status": "FAILED", "why": f"exit code {r.returncode}, no JSON: {e}", "cpu": cpu}
        run = doc.get("run", {})
        status = doc.get("status", run.get("status"))
        achieved, offered = doc.get("achieved_rate"), doc.get("offered_rate")
        rate_txt = f"achieved {achieved:.0f}/s of {offered:.0f}/s" if achieved is not None and offered else ""
        if r.returncode != 0 or status != "ok":
            why = "; ".join(str(x) for x in (doc.get("problems") or [])) or f"JSON status {status!r}"
            return {"status": "FAILED", "why": f"exit code {r.returncode}, status {status!r}: {why}"
                                              + (f" ({rate_txt})" if rate_txt and rate_txt not in why else ""),
                    "cpu": cpu}
        cmds = run.get("commands") or []
        if len(cmds) != 1 or cmds[0].get("command") != "SET":
            return {"status": "FAILED", "why": f"status ok but commands in JSON are {[c.get('command') for c in cmds]}",
                    "cpu": cpu}
        c = cmds[0]
        svc = (run.get("service_time") or [{}])[0]
        out = {"achieved": c["ops_per_sec"], "p50": c["p50"], "p99": c["p99"], "p999": c["p999"],
               "max": c["max"], "svc_p99": svc.get("p99"), "count": c["count"], "cpu": cpu}
        problems = []
        if c.get("errors"):
            problems.append(f"{c['errors']} errors ({run.get('error_samples', [])[:2]})")
        if run.get("reconnects"):
            problems.append(f"{run['reconnects']} reconnects")
        if run.get("lost_in_flight"):
            problems.append(f"{run['lost_in_flight']} requests lost")
        if c["ops_per_sec"] < 0.95 * rate:
            problems.append(f"achieved {c['ops_per_sec']:.0f}/s of {rate:.0f}/s")
        if problems:
            return {"status": "FAILED", "why": "harness said ok, but: " + "; ".join(problems), "cpu": cpu}
        srv.stop()
        return {"status": "ok", **out}
    finally:
        srv.stop(check=False)
        srv.remove_dir()
        with contextlib.suppress(OSError):
            os.remove(jpath)


# ---------------------------------------------------------------- 4. recovery

KEYS = 1_000_000
LOAD_BATCH = 10_000


def load_batches():
    pre = b"*3\r\n$3\r\nSET\r\n$16\r\n"
    batches = []
    for start in range(0, KEYS, LOAD_BATCH):
        batches.append(b"".join(pre + b"k:%014d\r\n$32\r\n%032d\r\n" % (i, i)
                                for i in range(start, min(KEYS, start + LOAD_BATCH))))
    return batches


def load_keys(port, batches):
    """Pipelined SETs, LOAD_BATCH at a time; every reply must be +OK. Returns seconds."""
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t0 = mono()
    try:
        for b in batches:
            n = b.count(b"*3\r\n$3\r\nSET")
            s.sendall(b)
            want = b"+OK\r\n" * n
            got = bytearray()
            while len(got) < len(want):
                chunk = s.recv(1 << 20)
                if not chunk:
                    raise Fail("the server closed the connection while loading")
                got += chunk
            if got != want:
                bad = bytes(got).replace(b"+OK\r\n", b"")[:120]
                raise Fail(f"loading: a reply was not +OK: {bad!r}")
    except socket.timeout:
        raise Fail("loading: no reply within 60 s")
    finally:
        s.close()
    return mono() - t0


def wait_dbsize(srv, want, t0, limit=120):
    """Poll (connect, DBSIZE) every ~2 ms until DBSIZE == want; returns seconds since t0.
    -LOADING replies are retried; any other count is a failure."""
    deadline = t0 + limit
    while mono() < deadline:
        srv.alive("while starting up")
        try:
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=1)
        except OSError:
            time.sleep(0.002)
            continue
        try:
            s.settimeout(30)
            while mono() < deadline:
                s.sendall(b"*1\r\n$6\r\nDBSIZE\r\n")
                buf = b""
                while not buf.endswith(b"\r\n"):
                    chunk = s.recv(4096)
                    if not chunk:
                        raise ConnectionError("closed")
                    buf += chunk
                if buf.startswith(b":"):
                    n = int(buf[1:].split(b"\r\n")[0])
                    if n == want:
                        return mono() - t0
                    raise Fail(f"{srv.name}: DBSIZE answered {n} after the restart, want {want}")
                if buf.startswith(b"-LOADING"):
                    time.sleep(0.002)
                    continue
                raise Fail(f"{srv.name}: DBSIZE answered {buf[:100]!r}")
        except (OSError, ConnectionError):
            time.sleep(0.002)
        finally:
            s.close()
    raise Fail(f"{srv.name}: DBSIZE did not reach {want} within {limit} s of the start")


def timed_restart(srv):
    t0 = srv.spawn()
    secs = wait_dbsize(srv, KEYS, t0)
    srv.stop()
    with open(srv.logfile) as f:
        log = f.read()
    res = {"secs": secs}
    if srv.kind == "coreshard":
        import re
        m = re.search(r"recovered (\d+) keys from the snapshot and (\d+) log records in ([\d.]+)s", log)
        if not m:
            raise Fail(f"{srv.name}: no 'recovered ...' line in its stdout: {log[:300]!r}")
        res.update(snap_keys=int(m.group(1)), log_records=int(m.group(2)), reported_s=float(m.group(3)))
    else:
        import re
        m = re.search(r"DB loaded from (?:append only file|incr file \S+|base file \S+): ([\d.]+) seconds", log)
        res["reported_s"] = float(m.group(1)) if m else None
    return res


def recovery(opts, out):
    batches = load_batches()
    logs = os.path.join(opts.tmp, "logs")
    os.makedirs(logs, exist_ok=True)
    cs = Server("rec-coreshard", "coreshard", cs_args("always", CLIENT_CPU), opts,
                logfile=os.path.join(logs, "cs.out"))
    rd = Server("rec-redis", "redis", ["--appendonly", "yes", "--appendfsync", "always",
                                       "--aof-use-rdb-preamble", "no", "--auto-aof-rewrite-percentage", "0"],
                opts, logfile=os.path.join(logs, "redis.out"), quiet=False)
    runs = {"cs-log": [], "redis-aof": [], "cs-snapshot": []}
    for srv in (cs, rd):
        t0 = srv.spawn()
        wait_dbsize(srv, 0, t0, limit=30)
        secs = load_keys(srv.port, batches)
        if srv.client().dbsize() != KEYS:
            raise Fail(f"{srv.name}: DBSIZE after loading is not {KEYS}")
        srv.stop()
        out(f"  load {srv.name:14} 1M SETs pipelined {LOAD_BATCH} deep, appendfsync always: {secs:.2f} s "
            f"({KEYS / secs:,.0f} SET/s); files on disk {dir_bytes(srv.dir) / 1e6:.1f} MB")
    for r in range(opts.rounds):
        pair = [("cs-log", cs), ("redis-aof", rd)]
        for key, srv in (pair if r % 2 == 0 else pair[::-1]):
            res = timed_restart(srv)
            if key == "cs-log" and (res["log_records"] < KEYS or res["snap_keys"] != 0):
                raise Fail(f"cs log replay recovered {res['snap_keys']} snapshot keys + {res['log_records']} records")
            runs[key].append(res)
            out(f"  run {r + 1} {key:12} until DBSIZE=1M {res['secs']:.3f} s (server-reported load "
                f"{fmt(res['reported_s'])} s{', log records ' + str(res['log_records']) if key == 'cs-log' else ''})")
    # SAVE, no more writes, restart from the snapshot.
    t0 = cs.spawn()
    wait_dbsize(cs, KEYS, t0)
    c = cs.client(timeout=120)
    t1 = mono()
    if c.save() is not True:
        raise Fail("coreshard SAVE did not answer OK")
    save_s = mono() - t1
    cs.stop()
    out(f"  SAVE on coreshard: {save_s:.2f} s; files on disk after it {dir_bytes(cs.dir) / 1e6:.1f} MB")
    for r in range(opts.rounds):
        res = timed_restart(cs)
        if res["snap_keys"] != KEYS:
            raise Fail(f"cs snapshot restart recovered {res['snap_keys']} snapshot keys, want {KEYS}")
        runs["cs-snapshot"].append(res)
        out(f"  run {r + 1} cs-snapshot  until DBSIZE=1M {res['secs']:.3f} s (server-reported "
            f"{res['reported_s']:.3f} s, snapshot keys {res['snap_keys']}, log records {res['log_records']})")
    cs.remove_dir()
    rd.remove_dir()
    return runs, save_s


# ---------------------------------------------------------------- main

def main(opts, out):
    t_start = mono()
    dirty = " (dirty tree)" if sh(["git", "status", "--porcelain", "--untracked-files=no"]) else ""
    out("WAL benchmark: coreshard write-ahead log vs redis-server AOF")
    out(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S} UTC; "
        f"host: {os.cpu_count()} cpus, Linux {platform.release()}, Python {platform.python_version()}")
    out(f"coreshard: {opts.coreshard} ({sh([opts.coreshard, '--version'])}, git "
        f"{sh(['git', 'rev-parse', '--short', 'HEAD'])}{dirty}); harness: {opts.bench}")
    out(f"redis: {sh(['redis-server', '--version'])}; {sh(['redis-benchmark', '--version'])}")
    fs = subprocess.run(["df", "-T", opts.tmp], capture_output=True, text=True).stdout.strip().splitlines()[-1]
    out(f"data dirs under {opts.tmp} ({' '.join(fs.split()[:2])}, mounted on {fs.split()[-1]})")
    out(f"servers pinned to cpu {SERVER_CPU} (coreshard --shards 1 --cores {SERVER_CPU}); clients to cpu {CLIENT_CPU}; "
        f"'wal@{CLIENT_CPU}' = --wal-core {CLIENT_CPU}: the WAL thread and its io_uring worker share the client's core")
    out(f"{opts.rounds} rounds, alternating order, fresh server + data dir per run; medians")
    out(f"command: {' '.join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])}")
    out(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (other processes on this shared box add noise)")
    out()

    # 1. disk
    out(f"1. Disk: 4 KiB write + fdatasync, {opts.disk_n} each (us)")
    disk_runs = []
    for when in ("start",):
        d = disk_test(opts.tmp, opts.disk_n)
        disk_runs.append(d)
        for mode in ("overwrite", "append"):
            x = d[mode]
            out(f"  {when:5} {mode:9} p50={x['p50_us']:.0f} p99={x['p99_us']:.0f} p99.9={x['p999_us']:.0f} max={x['max_us']:.0f} {pressure()}")
    out()

    # 2. closed loop
    out("2. redis-benchmark -t set -c 50 -d 100 (N per config and -P chosen for ~%g s; latencies ms)" % opts.seconds)
    nsets, closed = {}, {}
    for r in range(opts.rounds):
        order = ORDER if r % 2 == 0 else ORDER[::-1]
        for p in PIPELINES:
            for name in order:
                probe = disk_probe(opts.tmp)
                res = closed_loop_run(name, p, opts, nsets)
                res["disk_probe_ms"] = probe
                closed.setdefault((name, p), []).append(res)
                extra = " ".join(f"{k}={fmt(res[k])}" for k in ("rec_per_fsync", "rec_per_batch", "bytes_per_set",
                                                                   "fsyncs", "fsync_p50_us", "fsync_p99_us",
                                                                   "aof_rewrites") if k in res)
                out(f"  r{r + 1} -P {p:<2} {CONFIGS[name][2]:22} n={res['n']:<8} {res['secs']:5.2f}s "
                    f"rps={res['rps']:<9.0f} p50={fmt(res['p50'])} p99={fmt(res['p99'])} p99.9={fmt(res['p999'])} "
                    f"max={fmt(res['max'])} {extra} {cpu_str(res)} disk_probe_p50={probe:.2f}ms {pressure()}")
                if mono() - t_start > opts.budget:
                    raise Fail(f"over the time budget ({opts.budget} s) in section 2")
    out()

    # 3. open loop
    base = min(med(closed[("cs-always", 1)], "rps"), med(closed[("redis-always", 1)], "rps"))
    rate = opts.ol_rate or opts.ol_frac * base
    out(f"3. coreshard-bench open loop, SET only, -c 50 -P 1 -d 100, {rate:.0f} req/s "
        f"({'given' if opts.ol_rate else f'{opts.ol_frac:g} x the slower always -P 1 median {base:.0f}'}), "
        f"{opts.ol_seconds} s + 1 s warm-up; latency from intended send time (ms)")
    ol_names = ["cs-always", "redis-always", "cs-always-wc1"]
    opened, failures = {}, []
    for r in range(opts.rounds):
        for name in (ol_names if r % 2 == 0 else ol_names[::-1]):
            probe = disk_probe(opts.tmp)
            res = open_loop_run(name, rate, opts)
            opened.setdefault(name, []).append(res)
            nums = (f"achieved={res['achieved']:.0f} p50={fmt(res['p50'])} p99={fmt(res['p99'])} "
                    f"p99.9={fmt(res['p999'])} max={fmt(res['max'])} service_p99={fmt(res['svc_p99'])}"
                    if res["status"] == "ok" else f"FAILED: {res['why']}")
            out(f"  r{r + 1} {CONFIGS[name][2]:22} {nums} "
                f"{cpu_str(res['cpu']) if 'cpu' in res else ''} disk_probe_p50={probe:.2f}ms {pressure()}")
            if res["status"] == "FAILED":
                failures.append(f"open loop {name} round {r + 1}: {res['why']}")
    out()

    # 4. recovery
    out(f"4. Recovery of {KEYS:,} keys (16-byte keys, 32-byte values); time from process start until DBSIZE = {KEYS}")
    rec, save_s = recovery(opts, out)
    out()

    # 1b. disk again, at the end
    d = disk_test(opts.tmp, opts.disk_n)
    disk_runs.append(d)
    out(f"1b. Disk again at the end ({opts.disk_n} each, us)")
    for mode in ("overwrite", "append"):
        x = d[mode]
        out(f"  end   {mode:9} p50={x['p50_us']:.0f} p99={x['p99_us']:.0f} p99.9={x['p999_us']:.0f} max={x['max_us']:.0f} {pressure()}")
    out()

    # ------------------------------------------------------------ summary
    # Reference disk latency: the quieter of the two passes (lower p99), so a pass taken while
    # the shared disk was slow cannot flatter the p99/disk ratios.
    disk = {}
    for m in ("overwrite", "append"):
        best = min(disk_runs, key=lambda x: x[m]["p99_us"])
        disk[m] = {"p50": best[m]["p50_us"] / 1000, "p99": best[m]["p99_us"] / 1000,
                   "which": "start" if best is disk_runs[0] else "end"}
    out("=" * 100)
    out("SUMMARY (medians)")
    out(f"disk 4 KiB write+fdatasync, the pass with the lower p99: overwrite p50 {disk['overwrite']['p50']:.3f} ms "
        f"p99 {disk['overwrite']['p99']:.3f} ms ({disk['overwrite']['which']}); append p50 {disk['append']['p50']:.3f} ms "
        f"p99 {disk['append']['p99']:.3f} ms ({disk['append']['which']})")
    for m in ("overwrite", "append"):
        a, b = disk_runs[0][m]["p99_us"], disk_runs[1][m]["p99_us"]
        if max(a, b) > 2 * min(a, b):
            out(f"WARNING: disk {m} p99 was {a / 1000:.3f} ms at the start and {b / 1000:.3f} ms at the end: "
                f"the shared disk changed during the run; compare the per-run disk probes")
    out()
    hdr = (f"{'config':22} {'-P':>3} {'N':>9} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'p99.9ms':>7} "
           f"{'rec/fsync':>9} {'rec/batch':>9} {'B/SET':>6} {'p99/disk':>8} {'wal fsync p50/p99 us':>20} "
           f"{'cpu% cli/shard/wal':>18}")
    out(hdr)
    out("-" * len(hdr))
    for p in PIPELINES:
        for name in ORDER:
            runs = closed[(name, p)]
            kind = CONFIGS[name][0]
            p99 = med(runs, "p99")
            dp99 = disk["append" if kind == "redis" else "overwrite"]["p99"]
            persist = name not in ("cs-nopersist",)
            out(f"{CONFIGS[name][2]:22} {p:>3} {nsets[(name, p)]:>9} {med(runs, 'rps'):>9.0f} {fmt(med(runs, 'p50')):>7} "
                f"{fmt(p99):>7} {fmt(med(runs, 'p999')):>7} "
                f"{fmt(med(runs, 'rec_per_fsync')) if 'always' in name else '-':>9} {fmt(med(runs, 'rec_per_batch')):>9} "
                f"{fmt(med(runs, 'bytes_per_set')):>6} {fmt(ratio(p99, dp99)) if persist else '-':>8} "
                f"{(fmt(med(runs, 'fsync_p50_us')) + '/' + fmt(med(runs, 'fsync_p99_us'))) if 'always' in name and kind == 'coreshard' else '-':>20} "
                f"{fmt(med(runs, 'client_cpu')) + '/' + fmt(med(runs, 'shard_cpu' if kind == 'coreshard' else 'server_cpu')) + '/' + (fmt(med(runs, 'walside_cpu')) if kind == 'coreshard' else '-'):>18}")
    probes = [r["disk_probe_ms"] for runs in closed.values() for r in runs]
    out(f"(disk probe before each run, 50 x 4 KiB overwrite+fdatasync, p50: median {median(probes):.2f} ms, "
        f"min {min(probes):.2f}, max {max(probes):.2f}: a max far above the median means the disk changed during the run)")
    out("(p99/disk: p99 / disk fdatasync p99, overwrite for coreshard (preallocated segments), append for redis;"
        " redis rec/fsync not measured; redis B/SET = AOF growth over the warm-up run (no rewrite in it);"
        " rec/fsync shown for always only: everysec syncs on a timer; wal fsync p50/p99 = INFO"
        " wal_fsync_p50_us/p99_us at the end of the run, i.e. the WAL's own write+fdatasync of whole batches;"
        " cpu% = % of one core over the measured run: redis-benchmark, the server's shard thread (redis: its"
        " main thread + bio threads, i.e. the whole process), coreshard's wal + wal-prepare + io_uring worker threads)")
    out()
    out("ratios (req/s)                                  -P 1     -P 16   goal")
    for label, a, b, goal in (
            ("cs always (wal@%s) / redis always" % CLIENT_CPU, "cs-always", "redis-always", ""),
            ("cs always (wal@%s) / redis always" % SERVER_CPU, "cs-always-wc1", "redis-always", ""),
            ("cs everysec / redis everysec", "cs-everysec", "redis-everysec", ""),
            ("cs always (wal@%s) / cs appendonly no" % CLIENT_CPU, "cs-always", "cs-nopersist", ">= 0.9 at -P 16"),
            ("cs always (wal@%s) / cs appendonly no" % SERVER_CPU, "cs-always-wc1", "cs-nopersist", ">= 0.9 at -P 16"),
            ("cs everysec / cs appendonly no", "cs-everysec", "cs-nopersist", "")):
        v = [ratio(med(closed[(a, p)], "rps"), med(closed[(b, p)], "rps")) for p in PIPELINES]
        verdict = ""
        if goal:
            verdict = " -> met" if v[1] is not None and v[1] >= 0.9 else " -> NOT met"
        out(f"  {label:44} {fmt(v[0]):>6} {fmt(v[1]):>8}   {goal}{verdict}")
    out("p99 / disk fdatasync p99 (goal <= 2 for coreshard always)")
    for name in ("cs-always", "cs-always-wc1", "redis-always"):
        dp99 = disk["append" if CONFIGS[name][0] == "redis" else "overwrite"]["p99"]
        v = [ratio(med(closed[(name, p)], "p99"), dp99) for p in PIPELINES]
        verdict = "" if name.startswith("redis") else \
            ("  -> met" if all(x is not None and x <= 2 for x in v) else "  -> NOT met")
        out(f"  {CONFIGS[name][2]:44} {fmt(v[0]):>6} {fmt(v[1]):>8}{verdict}")
    out("p99 / the WAL's own fdatasync p99 in the same run (INFO wal_fsync_p99_us; median of the per-run ratios)")
    for name in ("cs-always", "cs-always-wc1"):
        v = [med([{"r": r["p99"] / (r["fsync_p99_us"] / 1000)} for r in closed[(name, p)] if r.get("fsync_p99_us")], "r")
             for p in PIPELINES]
        out(f"  {CONFIGS[name][2]:44} {fmt(v[0]):>6} {fmt(v[1]):>8}")
    out()
    out(f"open loop at {rate:.0f} SET/s (-c 50 -P 1)   status      achieved  p50 ms  p99 ms  p99.9ms")
    for name in ol_names:
        runs = opened[name]
        ok = [x for x in runs if x["status"] == "ok"]
        st = f"{len(runs) - len(ok)}/{len(runs)} FAILED" if len(ok) < len(runs) else "ok"
        if ok:
            out(f"  {CONFIGS[name][2]:38} {st:12} {med(ok, 'achieved'):>8.0f} {fmt(med(ok, 'p50')):>7} "
                f"{fmt(med(ok, 'p99')):>7} {fmt(med(ok, 'p999')):>7}" + ("  (medians of the ok runs only)" if len(ok) < len(runs) else ""))
        else:
            out(f"  {CONFIGS[name][2]:38} {st:12} (no ok run: no numbers)")
    out()
    out(f"recovery of {KEYS:,} keys (loaded with appendfsync always), until DBSIZE = {KEYS}:")
    out(f"  coreshard, log replay only        {med(rec['cs-log'], 'secs'):.3f} s (server-reported replay {fmt(med(rec['cs-log'], 'reported_s'))} s)")
    out(f"  coreshard, snapshot (after SAVE)  {med(rec['cs-snapshot'], 'secs'):.3f} s (server-reported {fmt(med(rec['cs-snapshot'], 'reported_s'))} s; SAVE took {save_s:.2f} s)")
    out(f"  redis, AOF replay (no preamble)   {med(rec['redis-aof'], 'secs'):.3f} s (server-reported load {fmt(med(rec['redis-aof'], 'reported_s'))} s)")
    out()
    out(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; total wall time: {mono() - t_start:.0f} s")
    return failures


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--coreshard", default=os.path.join(ROOT, "target/release/coreshard"),
                    help="coreshard binary (default target/release/coreshard; run `cargo build --release --workspace` first)")
    ap.add_argument("--bench", default=os.path.join(ROOT, "target/release/coreshard-bench"),
                    help="coreshard-bench binary (default target/release/coreshard-bench)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per measurement (default 3)")
    ap.add_argument("--seconds", type=float, default=6, help="target length of a redis-benchmark run (default 6)")
    ap.add_argument("--ol-seconds", type=int, default=5, help="open-loop measured seconds (default 5)")
    ap.add_argument("--ol-frac", type=float, default=0.8, help="open-loop rate as a fraction of the slower always -P 1 rate")
    ap.add_argument("--ol-rate", type=float, help="open-loop rate in SET/s (overrides --ol-frac)")
    ap.add_argument("--disk-n", type=int, default=2000, help="fdatasyncs per disk test (default 2000)")
    ap.add_argument("--tmp", default=f"/work/wal-bench-tmp/run-{os.getpid()}",
                    help="data directories go here, deleted at the end (default /work/wal-bench-tmp/run-PID)")
    ap.add_argument("--budget", type=float, default=600, help="fail if section 2 is still running after this many s")
    ap.add_argument("--limit", type=float, default=900, help="hard limit on the whole run in s (default 900)")
    ap.add_argument("--out", help="also write the report to this file")
    o = ap.parse_args()
    o.coreshard, o.bench, o.tmp = os.path.abspath(o.coreshard), os.path.abspath(o.bench), os.path.abspath(o.tmp)
    return o


if __name__ == "__main__":
    opts = parse_args()
    out = Report()
    code = 0
    made_tmp = False
    try:
        for b in (opts.coreshard, opts.bench):
            if not (os.path.isfile(b) and os.access(b, os.X_OK)):
                raise Fail(f"no binary at {b}: run `cargo build --release --workspace` first (or pass --coreshard/--bench)")
        for tool in ("redis-server", "redis-benchmark", "taskset"):
            if shutil.which(tool) is None:
                raise Fail(f"{tool} is not on PATH")
        if os.path.exists(opts.tmp):
            raise Fail(f"{opts.tmp} already exists: pass a fresh --tmp")
        os.makedirs(opts.tmp)
        made_tmp = True
        os.sched_setaffinity(0, {int(CLIENT_CPU)})
        with time_limit(opts.limit, "the whole benchmark", exc=Fail):
            failures = main(opts, out)
        if failures:
            out()
            out("FAILED RUNS: " + "; ".join(failures))
        if opts.out:
            os.makedirs(os.path.dirname(os.path.abspath(opts.out)), exist_ok=True)
            with open(opts.out, "w") as f:
                f.write("\n".join(out.lines) + "\n")
            print(f"(report written to {opts.out})", file=sys.stderr)
        if failures:
            raise Fail(f"{len(failures)} benchmark run(s) failed (see FAILED RUNS above)")
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
        cleanup(opts.tmp if made_tmp else None)
    sys.exit(code)
