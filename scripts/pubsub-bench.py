#!/usr/bin/env python3
"""Pub/sub benchmark: coreshard vs redis-server, measured in the same run (issue 9).

Build first (this script does not build):

    CARGO_TARGET_DIR=target cargo build --release --workspace
    scripts/pubsub-bench.py --coreshard target/release/coreshard --bench target/release/coreshard-bench
                            [--rounds 3] [--seconds 3] [--out docs/evidence/pubsub-bench.txt]

Servers (all started once, fresh, persisting nothing; each gets its own temporary --dir):
  coreshard    `coreshard --shards 1 --cores 1 --appendonly no`, under `taskset -c 1`
  redis        `redis-server --save '' --appendonly no`, under `taskset -c 1`
  coreshard-2  `coreshard --shards 2 --appendonly no` on every core (`taskset -c 0,1` on a
               2-core machine, i.e. unpinned; the server pins its own shards to cores 0
               and 1, so one shard shares core 0 with the harness): the "shards 2 vs 1" line,
               run only on the --shards2-workloads.
The harness, `coreshard-bench --pubsub`, always runs under `taskset -c 0` (one client
thread). SERVER_CPU / CLIENT_CPU in the environment change the cores.

1. Throughput and latency. Workloads: --subscribers (50) subscribers on one channel x
   --publishers (1 and 8) publishers x payload --sizes (16 and 1024 bytes) x offered publish
   --rates (2000 and 20000/s), --seconds measured after --warmup. Every round runs every
   workload against every server in turn (A B A B ...), --rounds times. Per run: the
   harness' achieved publish rate (PUBLISH replies in the window per second), deliveries/s
   in the window, server CPU seconds over the whole harness run (utime+stime from
   /proc/PID/stat before/after: warm-up, window and drain), deliveries (whole run) per
   server-CPU-second, the server's busy share of the loaded time (warm-up + window),
   harness CPU seconds (getrusage), other tenants' CPU seconds on the two cores over the
   run (/proc/stat busy minus server and harness), delivery latency p50/p99/p99.9 from
   the publish's intended send time (coordinated-omission corrected), lost deliveries, and
   the machine's load average and CPU pressure. A run is FAILED, reported with the
   harness' reason and without numbers, when the harness exits non-zero (3: it failed
   its own checks, e.g. under 95% of the offered rate achieved in the window, lost
   deliveries above 0.1%), its JSON is missing or its `status` is not "ok".
   Medians are per metric over the rounds that passed ("ok 2/3" says how many did);
   ratios are coreshard / redis of those medians.
2. Saturation: --sat-publishers (8) publishers at rising offered rates (--sat-rates-16 at
   16 B, --sat-rates-1k at 1024 B), one run per server per rate, alternating; a server
   that failed a rate is not run at higher ones. The highest rate each held, with its deliveries per
   server-CPU-second, and the ratio. (Section 1 shows why: from 20k/s on, both servers'
   event loops are busy ~100% of the time and batch more per write as the rate rises.)
   It also shows how far the harness reaches on one core.
3. Memory per idle connection: a fresh server per case, --conns (10,000) connections
   opened by this script; (a) idle, nothing sent, (b) each SUBSCRIBEd to its own channel
   (every confirmation checked, then PUBSUB NUMSUB/CHANNELS and INFO clients). RSS growth
   (VmRSS) over the server's RSS with one connection, divided by the connections: 1 s
   after the last reply, and settled (3 s more, past Redis's 2 s idle query-buffer shrink,
   then MEMORY PURGE to both and 0.5 s). Both servers get --maxclients --conns+100.
   Skipped with --no-memory.

Exits 1 if a server does not start or dies, or a check of this script fails; failed
harness runs are reported in the output, which is still written, and then it exits 1.
The whole script is bounded (--budget seconds, default 570). Python 3 standard library.
"""

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common as bc  # noqa: E402

CLIENT_CPU = os.environ.get("CLIENT_CPU", "0")
SERVER_CPU = bc.SERVER_CPU


class Out:
    def __init__(self):
        self.lines = []

    def __call__(self, line=""):
        print(line, flush=True)
        self.lines.append(line)


class Server:
    def __init__(self, name, cmd, cpu, data_dir=None):
        self.name, self.cmd, self.cpu, self.data_dir = name, cmd, cpu, data_dir
        self.port = None
        self.proc = None

    def start(self):
        self.port = bc.free_port()
        cmd = [c.replace("{PORT}", str(self.port)) for c in self.cmd]
        self.proc = bc.launch(cmd, self.port, cpu=self.cpu, name=self.name)
        return self

    def alive(self, what):
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} died (exit code {self.proc.returncode}) {what}")

    def stop(self):
        if self.proc is not None:
            bc.stop(self.proc)
            self.proc = None
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def coreshard(opts, name, shards, cpu, extra=()):
    d = tempfile.mkdtemp(prefix=f"pubsub-bench-{name}-")
    cmd = [opts.coreshard, "--port", "{PORT}", "--shards", str(shards), "--appendonly", "no",
           "--dir", d, "--log-level", "warn"]
    if shards == 1:
        cmd += ["--cores", SERVER_CPU]
    return Server(name, cmd + list(extra), cpu, d)


def redis(name, extra=()):
    return Server(name, ["redis-server", "--port", "{PORT}", "--save", "", "--appendonly", "no",
                         "--loglevel", "warning", "--bind", "127.0.0.1"] + list(extra), SERVER_CPU)


def all_cpus():
    return ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))


def harness_run(opts, srv, pubs, size, rate, tag, tmp):
    """One coreshard-bench --pubsub run against `srv`; returns a dict (ok or failed)."""
    srv.alive("before a run")
    path = os.path.join(tmp, f"{tag}.json")
    if os.path.exists(path):
        os.unlink(path)
    cmd = ["taskset", "-c", CLIENT_CPU, opts.bench, "-p", str(srv.port), "--pubsub",
           "--subscribers", str(opts.subscribers), "--publishers", str(pubs), "--rate", str(rate),
           "--duration", str(opts.seconds), "--warmup", str(opts.warmup), "-d", str(size),
           "--channel", f"psb-{tag}", "--no-progress", "--json", path]
    pid = srv.proc.pid
    s0, h0, c0, w0, note = bc.proc_cpu_seconds(pid), bc.children_cpu_seconds(), bc.cpu_busy_seconds(), \
        time.time(), bc.load_note()
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=opts.seconds + opts.warmup + 60)
        rc, stderr = p.returncode, p.stderr
    except subprocess.TimeoutExpired:
        rc, stderr = None, "the harness did not finish in time"
    s1, h1, c1, w1 = bc.proc_cpu_seconds(pid), bc.children_cpu_seconds(), bc.cpu_busy_seconds(), time.time()
    srv.alive("during a run")
    res = {"rc": rc, "load": note, "server_cpu": s1 - s0, "harness_cpu": h1 - h0, "wall": w1 - w0}
    res["other_cpu"] = max(0.0, sum(c1[k] - c0[k] for k in c1) - res["server_cpu"] - res["harness_cpu"])
    res["server_busy"] = res["server_cpu"] / (opts.seconds + opts.warmup)
    doc = None
    if os.path.exists(path):
        try:
            with open(path) as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            stderr += f"\nunreadable JSON: {e}"
    if doc is not None:
        run = doc.get("run", {})
        rows = {r["command"]: r for r in run.get("commands", [])}
        d = rows.get("DELIVERY")
        ps = run.get("pubsub", {})
        res.update({
            "status": doc.get("status"), "problems": doc.get("problems", []),
            "achieved": doc.get("achieved_rate"), "offered": doc.get("offered_rate"),
            "delivered": ps.get("delivered"), "lost": ps.get("lost"),
            "disconnects": ps.get("subscriber_disconnects"),
            "reconnects": run.get("reconnects"),
        })
        if d:
            res.update({"deliv_s": d["ops_per_sec"], "p50": d["p50"], "p99": d["p99"], "p999": d["p999"]})
    ok = (rc == 0 and doc is not None and res.get("status") == "ok" and "deliv_s" in res
          and res.get("lost") == 0 and res.get("reconnects") == 0)
    res["ok"] = ok
    if not ok:
        why = res.get("problems") or []
        if not why:
            tail = [l for l in stderr.strip().splitlines() if l.strip()][-2:]
            why = tail or [f"exit code {rc}, status {res.get('status')}"]
        if res.get("lost"):
            why = why + [f"lost {res['lost']}"]
        if res.get("reconnects"):
            why = why + [f"{res['reconnects']} reconnects"]
        res["why"] = "; ".join(why)
    if ok and res["server_cpu"] > 0:
        res["per_cpu"] = res["delivered"] / res["server_cpu"]
    elif ok:
        res["per_cpu"] = float("nan")
    return res


def fmt_rate(v):
    if v is None or v != v:
        return "-"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e4:
        return f"{v / 1e3:.1f}k"
    return f"{v:.0f}"


def run_line(r):
    if not r["ok"]:
        return (f"FAILED (exit {r['rc']}, {r.get('status') or 'no JSON'}): {r['why']}  "
                f"[server cpu {r['server_cpu']:.2f}s, harness cpu {r['harness_cpu']:.2f}s, "
                f"other {r['other_cpu']:.2f}s, {r['load']}]")
    return (f"pub/s {fmt_rate(r['achieved']):>6}  deliv/s {fmt_rate(r['deliv_s']):>6}  "
            f"srv cpu {r['server_cpu']:5.2f}s ({100 * r['server_busy']:3.0f}% of loaded time)  "
            f"deliv/srv-cpu-s {fmt_rate(r['per_cpu']):>6}  p50 {r['p50']:.3f} p99 {r['p99']:.3f} "
            f"p99.9 {r['p999']:.3f} ms  lost {r['lost']}  harness cpu {r['harness_cpu']:.2f}s  "
            f"other {r['other_cpu']:.2f}s  {r['load']}")


METRICS = ("achieved", "deliv_s", "server_cpu", "per_cpu", "server_busy", "p50", "p99", "p999", "lost",
           "harness_cpu", "other_cpu")


def medians(runs):
    ok = [r for r in runs if r["ok"]]
    m = {"n_ok": len(ok), "n": len(runs)}
    if ok:
        for k in METRICS:
            m[k] = bc.median([r[k] for r in ok])
    else:
        m["why"] = runs[0]["why"] if runs else "not run"
    return m


def ratio(a, b):
    if not a or not b or a.get("n_ok", 0) == 0 or b.get("n_ok", 0) == 0:
        return None
    return lambda k: (a[k] / b[k]) if b[k] else float("nan")


def memory_case(opts, make, subscribe, conns):
    """RSS growth per connection of a fresh server from make(), with `conns` idle
    connections that sent nothing, or that each SUBSCRIBEd to their own channel. RSS is
    read 1 s after the last reply, and again once settled: 3 s later (past Redis's 2 s
    idle query-buffer shrink) and after MEMORY PURGE (sent to both servers)."""
    srv = make().start()
    socks = []
    try:
        ctl = bc.Conn(srv.port)
        assert ctl.call("PING") == b"+PONG"
        time.sleep(0.5)
        rss0 = bc.rss_bytes(srv.proc.pid)
        t0 = time.time()
        for i in range(conns):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            socks.append(s)
            if len(socks) % 1000 == 0:
                srv.alive(f"after {len(socks)} connections")
        if subscribe:
            expect = []
            for i, s in enumerate(socks):
                ch = f"idle-sub:{i}".encode()
                s.sendall(bc.encode("SUBSCRIBE", ch))
                expect.append(b"*3\r\n$9\r\nsubscribe\r\n$%d\r\n%s\r\n:1\r\n" % (len(ch), ch))
            for s, want in zip(socks, expect):
                got = b""
                while len(got) < len(want):
                    chunk = s.recv(len(want) - len(got))
                    if not chunk:
                        raise RuntimeError(f"{srv.name}: a connection closed before its reply (got {got!r})")
                    got += chunk
                if got != want:
                    raise RuntimeError(f"{srv.name}: expected {want!r}, got {got!r}")
            n = ctl.call("PUBSUB", "NUMSUB", "idle-sub:0", f"idle-sub:{conns - 1}")
            if n != [b"idle-sub:0", 1, f"idle-sub:{conns - 1}".encode(), 1]:
                raise RuntimeError(f"{srv.name}: PUBSUB NUMSUB says {n!r}")
            chans = ctl.call("PUBSUB", "CHANNELS", "idle-sub:*")
            if len(chans) != conns:
                raise RuntimeError(f"{srv.name}: PUBSUB CHANNELS lists {len(chans)} of {conns}")
        deadline = time.time() + 10
        while int(ctl.info("clients").get("connected_clients", "0")) != conns + 1:
            if time.time() > deadline:
                raise RuntimeError(f"{srv.name}: INFO clients says {ctl.info('clients').get('connected_clients')} "
                                   f"connected, expected {conns + 1}")
            time.sleep(0.1)
        took = time.time() - t0
        time.sleep(1.0)
        rss1 = bc.rss_bytes(srv.proc.pid)
        time.sleep(3.0)
        purge = ctl.call("MEMORY", "PURGE")
        time.sleep(0.5)
        rss2 = bc.rss_bytes(srv.proc.pid)
        srv.alive("with the connections open")
        return {"rss0": rss0, "rss1": rss1, "rss2": rss2, "at1": (rss1 - rss0) / conns,
                "settled": (rss2 - rss0) / conns, "setup_s": took, "purge": purge}
    finally:
        for s in socks:
            s.close()
        srv.stop()


def main(opts):
    out = Out()
    t_start = time.time()
    tmp = tempfile.mkdtemp(prefix="pubsub-bench-")
    for path in (opts.coreshard, opts.bench):
        if not os.access(path, os.X_OK):
            sys.exit(f"pubsub-bench: {path} is not an executable (build first: see --help)")
    bc.ensure_redis()
    bc.raise_fd_limit(opts.conns + 2000)
    rev = subprocess.run(["git", "-C", bc.ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", bc.ROOT, "status", "--porcelain", "--", "src", "engine", "bench", "protocol"],
                           capture_output=True, text=True).stdout.strip()
    redis_ver = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.strip()
    out(f"pub/sub benchmark: scripts/pubsub-bench.py, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    out(f"machine: {os.cpu_count()} cores, kernel {platform.release()}; {redis_ver}")
    built = lambda path: time.strftime("%Y-%m-%d %H:%M", time.gmtime(os.path.getmtime(path)))  # noqa: E731
    out(f"coreshard: {opts.coreshard} (built {built(opts.coreshard)} UTC), harness: {opts.bench} "
        f"(built {built(opts.bench)} UTC); work tree now at {rev}"
        f"{' with uncommitted changes in src/engine/bench/protocol' if dirty else ''}")
    out(f"servers on core {SERVER_CPU} (taskset), harness on core {CLIENT_CPU} (taskset, one client thread); "
        f"coreshard-2 = --shards 2 on cores {all_cpus()} (unpinned)")
    out(f"rounds {opts.rounds}, {opts.seconds:g} s measured after {opts.warmup:g} s warm-up per run; "
        f"{opts.subscribers} subscribers; harness checks: >= 95% of offered rate achieved, <= 0.1% lost")
    out(f"at start: {bc.load_note()} (the machine is shared: other tenants' CPU per run is in 'other')")
    out()

    n_runs = opts.rounds * (2 * len(opts.publishers) * len(opts.sizes) * len(opts.rates)
                            + len(opts.shards2_workloads)) + 2 * len(opts.sat_publishers) * (len(opts.sat_rates_16) + len(opts.sat_rates_1k))
    estimate = n_runs * (opts.seconds + opts.warmup + 3.0) + (0 if opts.no_memory else 4 * (7 + opts.conns / 2000))
    if estimate > opts.budget:
        sys.exit(f"pubsub-bench: {n_runs} runs would take about {estimate:.0f} s, over --budget {opts.budget:g} s: "
                 "lower --seconds, --rounds or the workload lists")

    servers = {}
    try:
        servers["coreshard"] = coreshard(opts, "coreshard", 1, SERVER_CPU).start()
        servers["redis"] = redis("redis").start()
        if opts.shards2_workloads:
            servers["coreshard-2"] = coreshard(opts, "coreshard-2", 2, all_cpus()).start()
        workloads = [(p, s, r) for p in opts.publishers for s in opts.sizes for r in opts.rates]
        s2 = set()
        for w in opts.shards2_workloads:
            p, s, r = (int(x) for x in w.split("x"))
            s2.add((p, s, r))
        runs = {}
        out("1. per run (latency: delivery, from the publish's intended send time)")
        for rnd in range(1, opts.rounds + 1):
            for (p, s, r) in workloads:
                names = ["coreshard", "redis"] + (["coreshard-2"] if (p, s, r) in s2 and "coreshard-2" in servers else [])
                if rnd % 2 == 0:
                    names = names[1:] + names[:1]
                for name in names:
                    tag = f"r{rnd}-{name}-{p}p-{s}b-{r}"
                    res = harness_run(opts, servers[name], p, s, r, tag, tmp)
                    runs.setdefault((p, s, r, name), []).append(res)
                    out(f"  [r{rnd}] {p}p x {s:>4} B @ {r:>5}/s  {name:<11} {run_line(res)}")
        out()

        out(f"2. medians over the rounds that passed (per metric); latency in ms; "
            f"srv busy = server CPU / loaded time (warm-up + window)")
        hdr = (f"  {'pubs':>4} {'payload':>7} {'offered':>7}  {'server':<11} {'ok':>4}  {'pub/s':>6} {'deliv/s':>7} "
               f"{'srv cpu s':>9} {'srv busy':>8} {'deliv/cpu-s':>11} {'p50':>7} {'p99':>7} {'p99.9':>7} {'lost':>4} "
               f"{'harn cpu':>8} {'other':>5}")
        out(hdr)
        meds = {}
        for (p, s, r) in workloads:
            for name in ["coreshard", "redis", "coreshard-2"]:
                if (p, s, r, name) not in runs:
                    continue
                m = medians(runs[(p, s, r, name)])
                meds[(p, s, r, name)] = m
                lead = f"  {p:>4} {s:>5} B {r:>7}  {name:<11} {m['n_ok']}/{m['n']:<2}"
                if m["n_ok"] == 0:
                    out(f"{lead}  FAILED: {m['why']}")
                    continue
                out(f"{lead}  {fmt_rate(m['achieved']):>6} {fmt_rate(m['deliv_s']):>7} {m['server_cpu']:>9.2f} "
                    f"{100 * m['server_busy']:>7.0f}% {fmt_rate(m['per_cpu']):>11} {m['p50']:>7.3f} {m['p99']:>7.3f} "
                    f"{m['p999']:>7.3f} {m['lost']:>4.0f} {m['harness_cpu']:>8.2f} {m['other_cpu']:>5.2f}")
        out()
        out("   ratios coreshard / redis (deliveries per server-CPU-second: higher is better; latency: lower is better)")
        out(f"  {'pubs':>4} {'payload':>7} {'offered':>7}  {'deliv/cpu-s':>11} {'p50':>6} {'p99':>6} {'p99.9':>6}")
        for (p, s, r) in workloads:
            f = ratio(meds.get((p, s, r, "coreshard")), meds.get((p, s, r, "redis")))
            lead = f"  {p:>4} {s:>5} B {r:>7}"
            if f is None:
                out(f"{lead}  - (a side has no passing round)")
            else:
                out(f"{lead}  {f('per_cpu'):>10.2f}x {f('p50'):>5.2f}x {f('p99'):>5.2f}x {f('p999'):>5.2f}x")
        if s2:
            out()
            out("   shards 2 vs 1: coreshard --shards 2 (both cores, one shared with the harness) / --shards 1 (core 1)")
            for (p, s, r) in sorted(s2):
                f = ratio(meds.get((p, s, r, "coreshard-2")), meds.get((p, s, r, "coreshard")))
                lead = f"  {p:>4} {s:>5} B {r:>7}"
                if f is None:
                    out(f"{lead}  - (a side has no passing round)")
                else:
                    out(f"{lead}  deliv/cpu-s {f('per_cpu'):.2f}x  server cpu {f('server_cpu'):.2f}x  "
                        f"p50 {f('p50'):.2f}x  p99 {f('p99'):.2f}x  p99.9 {f('p999'):.2f}x")
        out()

        if opts.sat_rates_16 or opts.sat_rates_1k:
            out(f"3. saturation: {'/'.join(map(str, opts.sat_publishers))} publishers, rising offered rates, one run per server per rate (alternating);")
            out("   a server is not run at higher rates once it failed. srv busy ~100% from 20k/s on: an event loop")
            out("   that is never idle sends each subscriber more messages per write as the rate rises, so")
            out("   deliveries per server-CPU-second at a fixed rate mostly follow the rate; the highest rate a")
            out("   server held at 100% of its core is its per-core capacity (as far as the harness reaches)")
            best = {}
            for pubs in opts.sat_publishers:
                for size, rates in ((16, opts.sat_rates_16), (1024, opts.sat_rates_1k)):
                    failed_at = {}
                    for r in rates:
                        for name in ("coreshard", "redis"):
                            if name in failed_at:
                                out(f"  {pubs}p x {size:>4} B @ {r:>6}/s  {name:<9} skipped (failed at {failed_at[name]}/s)")
                                continue
                            res = harness_run(opts, servers[name], pubs, size, r, f"sat-{name}-{pubs}-{size}-{r}", tmp)
                            out(f"  {pubs}p x {size:>4} B @ {r:>6}/s  {name:<9} {run_line(res)}")
                            if res["ok"]:
                                best[(name, pubs, size)] = (r, res)
                            else:
                                failed_at[name] = r
            out("   highest offered rate held (status ok, lost 0):")
            for pubs in opts.sat_publishers:
                for size in (16, 1024):
                    for name in ("coreshard", "redis"):
                        if (name, pubs, size) in best:
                            r, res = best[(name, pubs, size)]
                            out(f"  {pubs}p {size:>4} B  {name:<9} {r:>6}/s: {fmt_rate(res['deliv_s'])} deliveries/s, "
                                f"{fmt_rate(res['per_cpu'])} deliveries per server-CPU-second "
                                f"(server busy {100 * res['server_busy']:.0f}%), p99 {res['p99']:.3f} ms")
                        else:
                            out(f"  {pubs}p {size:>4} B  {name:<9} none held")
                    c, rd = best.get(("coreshard", pubs, size)), best.get(("redis", pubs, size))
                    if c and rd:
                        top = max(opts.sat_rates_16 if size == 16 else opts.sat_rates_1k)
                        out(f"  {pubs}p {size:>4} B  coreshard / redis at each one's highest held rate: deliveries per "
                            f"server-CPU-second {c[1]['per_cpu'] / rd[1]['per_cpu']:.2f}x"
                            f"{' (coreshard held every rate tried: a lower bound)' if c[0] == top else ''}")
            out()
    finally:
        for srv in servers.values():
            srv.stop()

    if not opts.no_memory:
        out(f"4. memory per idle connection: {opts.conns} connections to a fresh server, RSS growth / connections")
        extra = ["--maxclients", str(opts.conns + 100)]
        mem = {}
        for subscribe in (False, True):
            for name, make in (("coreshard", lambda: coreshard(opts, "coreshard-mem", 1, SERVER_CPU, extra)),
                               ("redis", lambda: redis("redis-mem", extra))):
                m = memory_case(opts, make, subscribe, opts.conns)
                mem[(name, subscribe)] = m
                what = "each SUBSCRIBEd to its own channel" if subscribe else "idle (nothing sent)"
                out(f"  {name:<9} {what:<35} RSS {m['rss0'] / 2**20:6.1f} -> {m['rss1'] / 2**20:6.1f} MiB at 1 s "
                    f"({m['at1']:5.0f} B/conn) -> {m['rss2'] / 2**20:6.1f} MiB settled = {m['settled']:5.0f} B per "
                    f"connection  (MEMORY PURGE: {m['purge']!r}; set up in {m['setup_s']:.1f} s)")
        for subscribe in (False, True):
            c, r = mem[("coreshard", subscribe)]["settled"], mem[("redis", subscribe)]["settled"]
            out(f"  {'subscribed' if subscribe else 'idle':<10} settled: coreshard / redis = {c / r:.2f}x"
                if r > 0 else "  -")
        out()
    out(f"at end: {bc.load_note()}; took {time.time() - t_start:.0f} s")
    failed = sum(1 for v in runs.values() for r in v if not r["ok"])
    if failed:
        out(f"{failed} harness run(s) FAILED (reported above without numbers)")
    if opts.out:
        os.makedirs(os.path.dirname(os.path.abspath(opts.out)), exist_ok=True)
        with open(opts.out, "w") as f:
            f.write("\n".join(out.lines) + "\n")
            f.write("\nre-run: " + " ".join(sys.argv) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


def parse_args():
    ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--coreshard", default=os.path.join(bc.ROOT, "target/release/coreshard"))
    ap.add_argument("--bench", default=os.path.join(bc.ROOT, "target/release/coreshard-bench"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--subscribers", type=int, default=50)
    ap.add_argument("--publishers", type=ints, default=[1, 8])
    ap.add_argument("--sizes", type=ints, default=[16, 1024])
    ap.add_argument("--rates", type=ints, default=[2000, 20000], help="offered publishes/s")
    ap.add_argument("--shards2-workloads", type=lambda s: [x for x in s.split(",") if x],
                    default=["8x16x20000", "8x1024x20000"],
                    help="PUBSxSIZExRATE workloads also run against coreshard --shards 2 ('' for none)")
    ap.add_argument("--sat-rates-16", type=ints, default=[80000, 160000, 240000, 320000],
                    help="saturation section: offered rates at 16 B ('' for none)")
    ap.add_argument("--sat-rates-1k", type=ints, default=[40000, 80000],
                    help="saturation section: offered rates at 1024 B ('' for none)")
    ap.add_argument("--sat-publishers", type=ints, default=[8], help="publisher counts for the saturation runs")
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--no-memory", action="store_true", help="skip the memory-per-connection section")
    ap.add_argument("--budget", type=float, default=570, help="seconds the whole script may take")
    ap.add_argument("--out", default=os.path.join(bc.ROOT, "docs/evidence/pubsub-bench.txt"))
    return ap.parse_args()


if __name__ == "__main__":
    o = parse_args()
    try:
        with bc.time_limit(o.budget, "the whole benchmark"):
            sys.exit(main(o))
    except RuntimeError as e:
        sys.exit(f"pubsub-bench: {e}")
