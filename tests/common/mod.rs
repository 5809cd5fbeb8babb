//! Start the real `coreshard` binary on a free port and talk to it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long anything in a test may take before it counts as hung.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// The data directory; removed when the server is dropped, unless `keep_dir`.
    pub dir: Option<DataDir>,
    /// Lines the server printed after its startup line (persistence report...).
    pub stdout: mpsc::Receiver<String>,
}

/// A fresh data directory under the system temp dir, removed on drop.
pub struct DataDir(pub std::path::PathBuf);

impl DataDir {
    pub fn new(tag: &str) -> DataDir {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("coreshard-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create data dir");
        DataDir(dir)
    }

    pub fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Server {
    /// Start with `--port 0` plus `args`, with its data in a fresh temporary directory
    /// (unless `args` choose one); returns once the startup line names the port.
    pub fn start(args: &[&str]) -> Server {
        if args.contains(&"--dir") {
            return Server::start_raw(args, None);
        }
        let dir = DataDir::new("srv");
        let mut all = vec!["--dir", dir.path()];
        all.extend_from_slice(args);
        let all: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        let refs: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
        Server::start_raw(&refs, Some(dir))
    }

    /// Start with exactly these arguments (plus port and log level).
    pub fn start_raw(args: &[&str], dir: Option<DataDir>) -> Server {
        Server::start_wrapped(&[], args, dir)
    }

    /// Start as `start_raw` does, but through `wrapper` (a command that runs the program
    /// given after its own arguments, e.g. `setpriv ... --`).
    pub fn start_wrapped(wrapper: &[&str], args: &[&str], dir: Option<DataDir>) -> Server {
        let binary = env!("CARGO_BIN_EXE_coreshard");
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        let mut child = command
            .args(["--port", "0", "--log-level", "warn"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn coreshard");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let line = rx
            .recv_timeout(DEADLINE)
            .expect("coreshard printed its startup line");
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in startup line: {line}"));
        Server {
            child,
            addr,
            dir,
            stdout: rx,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    pub fn client_resp3(&self) -> redis::Connection {
        let url = format!("redis://{}/?protocol=resp3", self.addr);
        redis::Client::open(url).unwrap().get_connection().unwrap()
    }

    pub fn raw(&self) -> Raw {
        Raw::connect(self.addr)
    }

    /// A raw connection that landed on `shard` of `shards` (CLIENT ID tells: ids go round
    /// the shards).
    pub fn raw_on_shard(&self, shard: u64, shards: u64) -> Raw {
        loop {
            let mut raw = self.raw();
            raw.cmd(&[b"CLIENT", b"ID"]);
            let id: u64 = raw
                .reply_str()
                .trim_start_matches(':')
                .trim()
                .parse()
                .expect("CLIENT ID is an integer");
            if (id - 1) % shards == shard {
                return raw;
            }
        }
    }

    /// SIGKILL (a crash: nothing is flushed or closed) and reap the process.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Send SIGTERM and wait for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        self.wait_exit().expect("coreshard exited after SIGTERM")
    }

    pub fn wait_exit(&mut self) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A raw TCP client that reads whole RESP replies.
pub struct Raw {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Encode and send one command.
    pub fn cmd(&mut self, args: &[&[u8]]) {
        self.send(&encode(args));
    }

    /// Read one reply (any RESP type), as its raw bytes.
    pub fn reply(&mut self) -> Vec<u8> {
        loop {
            if let Ok(Some((_, n))) = coreshard_protocol::parse_value(&self.buf) {
                return self.buf.drain(..n).collect();
            }
            let mut chunk = [0u8; 65536];
            let n = self.stream.read(&mut chunk).expect("read reply");
            assert!(
                n > 0,
                "connection closed while waiting for a reply; have {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub fn reply_str(&mut self) -> String {
        String::from_utf8(self.reply()).unwrap()
    }

    /// Whether the server closed the connection (reads EOF, with a deadline).
    pub fn closed(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Poll `cond` until it holds or the deadline passes.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting for: {what}");
}

/// Run a command given as words; panics on transport errors, returns server errors.
pub fn q<T: redis::FromRedisValue>(
    c: &mut redis::Connection,
    words: &[&str],
) -> redis::RedisResult<T> {
    let mut cmd = redis::cmd(words[0]);
    for w in &words[1..] {
        cmd.arg(*w);
    }
    cmd.query(c)
}

/// A command's error text with its code, e.g. "ERR syntax error".
pub fn err_of(c: &mut redis::Connection, words: &[&str]) -> String {
    match q::<redis::Value>(c, words) {
        Ok(v) => panic!("{words:?} should fail, got {v:?}"),
        Err(e) => error_text(&e),
    }
}

/// The crate splits "CODE rest"; put the code back for exact comparisons.
pub fn error_text(e: &redis::RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_string(),
        _ => e.to_string(),
    }
}

/// The shard a key lives on in a server with `shards` shards (Redis Cluster slots spread
/// evenly), so tests can place keys on the same or on different shards on purpose.
pub fn shard_of(key: &str, shards: usize) -> usize {
    let bytes = key.as_bytes();
    let tagged = match bytes.iter().position(|&c| c == b'{') {
        Some(open) => match bytes[open + 1..].iter().position(|&c| c == b'}') {
            Some(len) if len > 0 => &bytes[open + 1..open + 1 + len],
            _ => bytes,
        },
        None => bytes,
    };
    let mut crc: u16 = 0;
    for &b in tagged {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    (usize::from(crc % 16384)) * shards / 16384
}

/// Keys named `prefix:N` that live on `shard`, `n` of them.
pub fn keys_on(prefix: &str, shard: usize, shards: usize, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("{prefix}:{i}"))
        .filter(|k| shard_of(k, shards) == shard)
        .take(n)
        .collect()
}
