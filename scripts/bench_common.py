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


def build():
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)


def start(kind, port, shards=1):
    if kind == "coreshard":
        cmd = [os.path.join(ROOT, "target/release/coreshard"), "--port", str(port), "--shards", str(shards),
               "--cores", SERVER_CPU, "--log-level", "warn"]
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
