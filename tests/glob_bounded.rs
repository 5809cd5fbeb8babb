//! KEYS and SCAN MATCH with a backtracking-hostile glob (the CVE-2022-36021 shape) answer
//! promptly on the real server and leave the shards responsive.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{encode, Server};
use coreshard_protocol::{parse_value, Value};

/// A recursive matcher needs minutes for this pattern against 60 `a`s; Redis needs well
/// under a millisecond. Anything slower than this counts as a frozen shard.
const REPLY_DEADLINE: Duration = Duration::from_secs(5);

/// Needs eight `a`s before a final `b`: none of the keys below match it.
const HOSTILE: &str = "*a*a*a*a*a*a*a*a*b";

/// A client connection whose every reply must arrive within [`REPLY_DEADLINE`].
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, args: &[&str]) {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.stream.write_all(&encode(&args)).expect("write");
    }

    /// Read one reply, panicking with `what` if it takes longer than [`REPLY_DEADLINE`].
    fn reply(&mut self, what: &str) -> Value {
        let start = Instant::now();
        loop {
            if let Some((value, n)) = parse_value(&self.buf).expect("well-formed reply") {
                self.buf.drain(..n);
                return value;
            }
            assert!(
                start.elapsed() < REPLY_DEADLINE,
                "no reply to {what} within {REPLY_DEADLINE:?}: the shard is stuck matching"
            );
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("connection closed while waiting for {what}"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("reading the reply to {what}: {e}"),
            }
        }
    }

    fn call(&mut self, args: &[&str]) -> Value {
        self.send(args);
        self.reply(&args.join(" "))
    }
}

fn bulk_strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
                other => panic!("expected a bulk string, got {other:?}"),
            })
            .collect(),
        other => panic!("expected an array, got {other:?}"),
    }
}

/// Load the keys: a 60-byte run of `a`s (the worst case) plus near misses and one
/// key that matches, spread over both shards.
fn load(c: &mut Conn) -> String {
    let a60 = "a".repeat(60);
    let near = format!("{}b", "a".repeat(7));
    let long_c = format!("{}c", "a".repeat(59));
    for key in [a60.as_str(), near.as_str(), long_c.as_str(), "b", "ab", "x"] {
        assert_eq!(c.call(&["SET", key, "v"]), Value::Simple("OK".into()));
    }
    assert_eq!(c.call(&["DBSIZE"]), Value::Integer(6));
    long_c
}

#[test]
fn hostile_keys_pattern_answers_promptly() {
    let server = Server::start(&["--shards", "2"]);
    let mut c = Conn::connect(server.addr);
    let long_c = load(&mut c);

    let start = Instant::now();
    c.send(&["KEYS", HOSTILE]);
    // While KEYS runs (or is stuck), a fresh connection must still be served.
    let mut other = Conn::connect(server.addr);
    assert_eq!(
        other.call(&["PING"]),
        Value::Simple("PONG".into()),
        "PING on a new connection during KEYS"
    );
    let keys = c.reply("KEYS with the hostile pattern");
    let took = start.elapsed();
    assert_eq!(keys, Value::Array(Vec::new()), "nothing matches {HOSTILE}");
    eprintln!("KEYS {HOSTILE} answered in {took:?}");

    // Same shape with a final byte that one key has: exactly that key matches.
    let found = c.call(&["KEYS", "*a*a*a*a*a*a*a*a*c"]);
    assert_eq!(bulk_strings(&found), vec![long_c]);
    // The server is still healthy on the original connection too.
    assert_eq!(c.call(&["PING"]), Value::Simple("PONG".into()));
}

#[test]
fn hostile_scan_match_answers_promptly() {
    let server = Server::start(&["--shards", "2"]);
    let mut c = Conn::connect(server.addr);
    load(&mut c);

    let start = Instant::now();
    let mut cursor = "0".to_string();
    let mut pages = 0;
    let mut matched = Vec::new();
    loop {
        c.send(&["SCAN", &cursor, "MATCH", HOSTILE, "COUNT", "100"]);
        if pages == 0 {
            let mut other = Conn::connect(server.addr);
            assert_eq!(
                other.call(&["PING"]),
                Value::Simple("PONG".into()),
                "PING on a new connection during SCAN"
            );
        }
        let page = c.reply("SCAN MATCH with the hostile pattern");
        let Value::Array(parts) = &page else {
            panic!("SCAN reply is not an array: {page:?}")
        };
        let [Value::Bulk(next), keys] = parts.as_slice() else {
            panic!("SCAN reply is not [cursor, keys]: {page:?}")
        };
        matched.extend(bulk_strings(keys));
        cursor = String::from_utf8_lossy(next).into_owned();
        pages += 1;
        assert!(pages < 1000, "SCAN never returned cursor 0");
        if cursor == "0" {
            break;
        }
    }
    eprintln!(
        "SCAN MATCH {HOSTILE} finished in {:?} over {pages} page(s)",
        start.elapsed()
    );
    assert!(matched.is_empty(), "nothing matches {HOSTILE}: {matched:?}");
    assert_eq!(c.call(&["PING"]), Value::Simple("PONG".into()));
}
