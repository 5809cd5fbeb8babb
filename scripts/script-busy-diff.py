#!/usr/bin/env python3
"""A busy script's effect on its shard's own connections, coreshard against redis-server.

    scripts/script-busy-diff.py          # builds nothing: uses $CORESHARD_BIN or target/release

Both servers run with lua-time-limit / busy-reply-threshold 100 ms (coreshard --shards 1,
so every connection is on the busy shard). The same scenario runs against each: a
read-only script spins while another connection sends PING, SET, an unknown command, an
arity error, FUNCTION KILL, SHUTDOWN and SCRIPT KILL; then a script that wrote runs while a
connection inside MULTI sends SET, SCRIPT KILL, FUNCTION KILL and EXEC, then MULTI,
SHUTDOWN NOSAVE (refused inside MULTI), DISCARD, DISCARD and GET; then a RESP2 subscriber
sends GET and PING. Every reply is printed; lines starting `!!` differ from Redis. Exits
1 if any differ.
"""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import coreshard_bin, ensure_redis, free_port, launch, stop  # noqa: E402


def enc(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else a.encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


class Client:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.settimeout(15)
        self.buf = b""

    def send(self, *args):
        self.s.sendall(enc(*args))

    def line(self):
        while b"\r\n" not in self.buf:
            data = self.s.recv(65536)
            if not data:
                return "<closed>"
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode(errors="replace")

    def reply(self):
        line = self.line()
        if line.startswith("*") and not line.startswith("*-"):
            return line + " " + " ".join(self.reply() for _ in range(int(line[1:])))
        if line.startswith("$") and line != "$-1":
            return line + " " + self.line()
        return line


BUSY = "-BUSY Redis is busy running a script."


def wait_busy(probe):
    deadline = time.time() + 10
    while time.time() < deadline:
        probe.send("PING")
        if probe.reply().startswith(BUSY):
            return
        time.sleep(0.01)
    raise RuntimeError("the script never became busy")


def scenario(port):
    out = []
    runner, other, probe = Client(port), Client(port), Client(port)
    other.send("PING")
    out.append("PING -> " + other.reply())
    runner.send("EVAL", "local i = 0 while true do i = i + 1 end", "0")
    wait_busy(probe)
    for cmd in [("PING",), ("SET", "k", "v"), ("NOSUCH", "x"), ("GET",), ("FUNCTION", "KILL"),
                ("SHUTDOWN",), ("SCRIPT", "KILL")]:
        other.send(*cmd)
        out.append(" ".join(cmd) + " -> " + other.reply())
    out.append("runner -> " + runner.reply())
    other.send("MULTI")
    out.append("MULTI -> " + other.reply())
    runner.send("EVAL", "redis.call('set', KEYS[1], 'wrote') local t0 = tonumber(redis.call('time')[1]) "
                "while tonumber(redis.call('time')[1]) - t0 < 2 do end return 'done'", "1", "w")
    wait_busy(probe)
    for cmd in [("SET", "k", "in-multi"), ("SCRIPT", "KILL"), ("FUNCTION", "KILL"), ("EXEC",),
                ("MULTI",), ("SHUTDOWN", "NOSAVE"), ("DISCARD",), ("DISCARD",), ("GET", "w")]:
        other.send(*cmd)
        out.append(" ".join(cmd) + " -> " + other.reply())
    out.append("runner -> " + runner.reply())
    sub = Client(port)
    sub.send("SUBSCRIBE", "ch")
    out.append("SUBSCRIBE -> " + sub.reply())
    runner.send("EVAL", "local i = 0 while true do i = i + 1 end", "0")
    wait_busy(probe)
    for cmd in [("GET", "x"), ("PING",)]:
        sub.send(*cmd)
        out.append("subscriber " + " ".join(cmd) + " -> " + sub.reply())
    other.send("SCRIPT", "KILL")
    out.append("SCRIPT KILL -> " + other.reply())
    out.append("runner -> " + runner.reply())
    return out


def main():
    ensure_redis()
    cs_port, redis_port = free_port(), free_port()
    cs = launch([coreshard_bin(), "--port", str(cs_port), "--shards", "1", "--appendonly", "no",
                "--log-level", "error", "--lua-time-limit", "100"], cs_port)
    redis = launch(["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no",
                   "--busy-reply-threshold", "100"], redis_port)
    try:
        ours, theirs = scenario(cs_port), scenario(redis_port)
    finally:
        for p in (cs, redis):
            stop(p)
    differ = 0
    for a, b in zip(ours, theirs):
        if a == b:
            print("   " + a)
        else:
            differ += 1
            print("!! " + a + "\n   redis: " + b)
    print(f"{len(ours)} replies, {differ} differ from redis-server")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
