"""Shared helpers for the comparison scripts: start coreshard or redis-server pinned to a
core, talk RESP over a raw socket, read RSS. Standard library only."""

import os
import shutil
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER_CPU = os.environ.get("SERVER_CPU", "1")


def ensure_redis():
    if shutil.which("redis-server") is None:
        print("installing redis-server from Debian's packages", file=sys.stderr)
        subprocess.run("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null",
                       shell=True, check=True)


def import_redis_py():
    """The `redis` module (redis-py), installed with pip for this interpreter if missing."""
    try:
        import redis
        return redis
    except ImportError:
        pass
    print("installing redis-py (pip) for " + sys.executable, file=sys.stderr)
    base = [sys.executable, "-m", "pip", "install", "--quiet", "redis"]
    for cmd in (base, base + ["--break-system-packages"]):
        if subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
            break
    try:
        import redis
        return redis
    except ImportError:
        sys.exit(f"this script needs redis-py: `{sys.executable} -m pip install redis` failed; install it and run again")


def coreshard_bin():
    """The coreshard binary to measure: $CORESHARD_BIN if set, else the release build in
    $CARGO_TARGET_DIR (or target/)."""
    given = os.environ.get("CORESHARD_BIN", "")
    if given:
        return given
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    if not os.path.isabs(target):
        target = os.path.join(ROOT, target)
    return os.path.join(target, "release", "coreshard")


def build():
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)


def start(kind, port, shards=1):
    if kind == "coreshard":
        cmd = [os.path.join(ROOT, "target/release/coreshard"), "--port", str(port), "--shards", str(shards),
               "--cores", SERVER_CPU, "--log-level", "warn", "--appendonly", "no"]
    else:
        cmd = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--loglevel", "warning"]
    proc = subprocess.Popen(["taskset", "-c", SERVER_CPU] + cmd, stdout=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            c = Conn(port)
            if c.call(b"PING") == b"+PONG":
                c.close()
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{kind} did not start on port {port}")


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, int):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    """A minimal blocking RESP client (enough for these scripts: one reply at a time)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        self.sock.close()

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        line = self._line()
        if line[:1] == b"$":
            n = int(line[1:])
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self.buf += self.sock.recv(1 << 16)
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if line[:1] == b"*":
            return [self.reply() for _ in range(int(line[1:]))]
        if line[:1] == b":":
            return int(line[1:])
        return line

    def call(self, *args):
        self.sock.sendall(encode(*args))
        return self.reply()

    def pipeline(self, commands):
        """Send encoded commands in one write and read as many replies."""
        self.sock.sendall(b"".join(commands))
        return [self.reply() for _ in commands]

    def info(self, section):
        text = self.call("INFO", section).decode()
        return dict(l.split(":", 1) for l in text.splitlines() if ":" in l and not l.startswith("#"))


def percentile(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p / 100.0))]


# --- Additions for scripts/bounded-work.py (generic; the helpers above are unchanged) ---

def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(proc, port, timeout=10.0):
    """Wait until `proc` accepts connections on `port` (for servers that do not speak RESP)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port}")


def load_against(server_cmd, port, load_cmd, client_cpu):
    """Start `server_cmd` under `taskset -c SERVER_CPU`, wait until it listens on `port`,
    run `load_cmd` under `taskset -c client_cpu`, and stop the server. The load prints
    `key=value` words; returns them as a dict, with the server's CPU seconds over the load."""
    proc = subprocess.Popen(["taskset", "-c", SERVER_CPU] + list(server_cmd), stdout=subprocess.DEVNULL)
    try:
        wait_listening(proc, port)
        cpu0 = proc_cpu_seconds(proc.pid)
        out = subprocess.run(["taskset", "-c", client_cpu] + list(load_cmd),
                             capture_output=True, text=True, check=True).stdout
        cpu1 = proc_cpu_seconds(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return dict(kv.split("=") for kv in out.split()), cpu1 - cpu0


def launch(cmd, port, cpu=SERVER_CPU, timeout=10.0, name=None):
    """Start `cmd` under `taskset -c cpu` and wait until it answers PING on `port`.
    Raises RuntimeError (with the tail of its stderr) if it exits or does not answer in time."""
    import tempfile
    name = name or os.path.basename(cmd[0])
    err = tempfile.TemporaryFile()
    proc = subprocess.Popen(["taskset", "-c", str(cpu)] + list(cmd), stdout=subprocess.DEVNULL, stderr=err)
    proc.stderr_file = err
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            break
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=1.0)
            try:
                s.sendall(b"*1\r\n$4\r\nPING\r\n")
                if s.recv(64).startswith(b"+PONG") and proc.poll() is None:
                    return proc
            finally:
                s.close()
        except OSError:
            time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    err.seek(0)
    tail = err.read()[-2000:].decode(errors="replace").strip()
    raise RuntimeError(f"{name} did not start on port {port} (exit code {proc.returncode}): {tail or 'no stderr'}")


def median(values):
    s = sorted(values)
    if not s:
        return float("nan")
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


# --- Additions for scripts/wal-bench.py (generic; the helpers above are unchanged) ---

def time_limit(seconds, what, exc=RuntimeError):
    """Context manager: raise `exc` in the main thread if the block runs longer than
    `seconds` (SIGALRM; main thread only; does not nest)."""
    import contextlib
    import signal

    @contextlib.contextmanager
    def _cm():
        def on_alarm(signum, frame):
            raise exc(f"timed out after {seconds:g} s: {what}")
        old = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    return _cm()


def fdatasync_latencies(path, count=2000, size=4096, append=False):
    """Latency (seconds) of `count` write+fdatasync pairs of `size` bytes on `path`.
    append=False: the file is first filled with zeros (count*size bytes) and fsync'ed, then
    each block is overwritten in place with os.pwrite (no size or allocation change);
    append=True: the file starts empty and each os.write extends it (new blocks + new size)."""
    block = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (os.O_APPEND if append else 0)
    fd = os.open(path, flags, 0o644)
    out = []
    try:
        if not append:
            zeros = bytes(1 << 20)
            left = count * size
            while left > 0:
                left -= os.write(fd, zeros[:min(left, len(zeros))])
            os.fsync(fd)
        for i in range(count):
            t0 = time.perf_counter()
            if append:
                os.write(fd, block)
            else:
                os.pwrite(fd, block, i * size)
            os.fdatasync(fd)
            out.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
    return out


def parse_redis_benchmark(text):
    """Parse the default (non --csv, non -q) output of redis-benchmark 7 for one test:
    {'requests', 'seconds', 'rps', 'avg', 'min', 'p50', 'p95', 'p99', 'max', 'p999'}
    (latencies in ms; p999 is the first 'Latency by percentile distribution' step at or
    above 99.9%). Raises ValueError if a part is missing."""
    import re
    text = text.replace("\r", "\n")
    m = re.search(r"(\d+) requests completed in ([\d.]+) seconds", text)
    if not m:
        raise ValueError("no 'requests completed' line")
    res = {"requests": int(m.group(1)), "seconds": float(m.group(2))}
    m = re.search(r"throughput summary: ([\d.]+) requests per second", text)
    if not m:
        raise ValueError("no throughput summary")
    res["rps"] = float(m.group(1))
    m = re.search(r"avg\s+min\s+p50\s+p95\s+p99\s+max\s*\n\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", text)
    if not m:
        raise ValueError("no latency summary")
    for k, v in zip(("avg", "min", "p50", "p95", "p99", "max"), m.groups()):
        res[k] = float(v)
    steps = [(float(p), float(v)) for p, v in
             re.findall(r"^([\d.]+)% <= ([\d.]+) milliseconds", text.split("Cumulative distribution")[0], re.M)]
    if not steps:
        raise ValueError("no latency-by-percentile lines")
    res["p999"] = next((v for p, v in steps if p >= 99.9), steps[-1][1])
    return res


def thread_affinities(pid):
    """[(thread name, Cpus_allowed_list)] for every thread of `pid`."""
    out = []
    for tid in sorted(os.listdir(f"/proc/{pid}/task"), key=int):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                cpus = next((l.split(":", 1)[1].strip() for l in f if l.startswith("Cpus_allowed_list:")), "?")
        except OSError:
            continue
        out.append((name, cpus))
    return out


def dir_bytes(path):
    """Total size of the regular files under `path`."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


# --- Additions for scripts/pubsub-bench.py (generic; the helpers above are unchanged) ---

def proc_cpu_seconds(pid):
    """utime + stime of process `pid` (all its threads), in seconds, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds():
    """User + system CPU seconds of this process' waited-for children so far."""
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cpu_busy_seconds():
    """{cpu index: busy seconds since boot} from /proc/stat (everything but idle and iowait)."""
    out = {}
    tck = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *vals = line.split()
                v = [int(x) for x in vals]
                out[int(name[3:])] = (sum(v[:8]) - v[3] - v[4]) / tck
    return out


def load_note():
    """'load=L cpu_psi=P%': the 1-minute load average and /proc/pressure/cpu 'some' avg10."""
    try:
        with open("/proc/loadavg") as f:
            load = f.read().split()[0]
    except OSError:
        load = "?"
    psi = "?"
    try:
        with open("/proc/pressure/cpu") as f:
            for line in f:
                if line.startswith("some"):
                    psi = line.split()[1].split("=")[1] + "%"
    except OSError:
        pass
    return f"load={load} cpu_psi={psi}"


def raise_fd_limit(want):
    """Raise this process' soft RLIMIT_NOFILE towards `want` (at most the hard limit);
    children started afterwards inherit it. Returns the new soft limit."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = max(soft, want if hard == resource.RLIM_INFINITY else min(want, hard))
    if new != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return new


def fmt(v):
    """A number for a report table: about three significant digits; None as "-"."""
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return str(v)
    if v != v:
        return "nan"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}" if abs(v) >= 0.1 else f"{v:.3f}"


def sh(cmd):
    """The first line a command prints (run from the repository root), or "?"."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=10).stdout.strip()
        return out.splitlines()[0] if out else ""
    except Exception:  # noqa: BLE001
        return "?"
