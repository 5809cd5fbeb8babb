//! Connections over time: many at once, idle timeout, maxclients, clean shutdown.

mod common;

use std::thread;

use common::{encode, Server};

#[test]
fn many_concurrent_connections_on_four_shards() {
    let server = Server::start(&["--shards", "4"]);
    let addr = server.addr;
    let workers: Vec<_> = (0..64)
        .map(|w| {
            thread::spawn(move || {
                let mut raw = common::Raw::connect(addr);
                for i in 0..100 {
                    let key = format!("w{w}:k{i}");
                    let val = format!("{w}-{i}");
                    let mut wire = encode(&[b"SET", key.as_bytes(), val.as_bytes()]);
                    wire.extend(encode(&[b"GET", key.as_bytes()]));
                    raw.send(&wire);
                    assert_eq!(raw.reply_str(), "+OK\r\n");
                    assert_eq!(raw.reply_str(), format!("${}\r\n{val}\r\n", val.len()));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    let mut c = server.client();
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 6400);
    let info: String = redis::cmd("INFO").arg("stats").query(&mut c).unwrap();
    let received: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(received >= 65, "{info}");
}

#[test]
fn idle_connections_are_closed_after_the_timeout() {
    let server = Server::start(&["--timeout", "1"]);
    let mut idle = server.raw();
    idle.cmd(&[b"PING"]);
    assert_eq!(idle.reply_str(), "+PONG\r\n");
    let started = std::time::Instant::now();
    assert!(idle.closed(), "idle connection is closed by the server");
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    let mut fresh = server.raw();
    fresh.cmd(&[b"PING"]);
    assert_eq!(fresh.reply_str(), "+PONG\r\n");
}

#[test]
fn maxclients_refuses_with_redis_error() {
    let server = Server::start(&["--maxclients", "2", "--shards", "2"]);
    let mut a = server.raw();
    let mut b = server.raw();
    a.cmd(&[b"PING"]);
    b.cmd(&[b"PING"]);
    assert_eq!(a.reply_str(), "+PONG\r\n");
    assert_eq!(b.reply_str(), "+PONG\r\n");
    let mut c = server.raw();
    assert_eq!(c.reply_str(), "-ERR max number of clients reached\r\n");
    assert!(c.closed());
    drop(a);
    // Once a slot frees up, new clients are served again.
    common::eventually("a new client is accepted after one left", || {
        let mut d = server.raw();
        d.cmd(&[b"PING"]);
        d.reply_str() == "+PONG\r\n"
    });
}

fn shutdown_is_clean(shards: &str) {
    let mut server = Server::start(&["--shards", shards]);
    let mut raw = server.raw();
    // Leave a pipeline whose replies involve other shards, then stop the server.
    let mut wire = Vec::new();
    for i in 0..200 {
        wire.extend(encode(&[b"SET", format!("s{i}").as_bytes(), b"v"]));
    }
    raw.send(&wire);
    for _ in 0..200 {
        assert_eq!(raw.reply_str(), "+OK\r\n");
    }
    let status = server.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert!(raw.closed(), "clients are disconnected on shutdown");
}

#[test]
fn sigterm_shuts_down_cleanly_one_shard() {
    shutdown_is_clean("1");
}

#[test]
fn sigterm_shuts_down_cleanly_four_shards() {
    shutdown_is_clean("4");
}

#[test]
fn a_second_server_on_a_port_in_use_fails_to_start() {
    let first = Server::start(&["--shards", "2"]);
    let port = first.addr.port().to_string();
    let mut second = std::process::Command::new(env!("CARGO_BIN_EXE_coreshard"))
        .args([
            "--port",
            &port,
            "--shards",
            "2",
            "--log-level",
            "warn",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn coreshard");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = second.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > common::DEADLINE {
            let _ = second.kill();
            let _ = second.wait();
            panic!("a second coreshard kept running on port {port}, which is in use");
        }
        thread::sleep(std::time::Duration::from_millis(10));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert!(!status.success(), "exit status {status:?}");
    assert!(
        stderr.contains("Address already in use"),
        "stderr: {stderr}"
    );
    // The first server is unaffected.
    let mut raw = first.raw();
    raw.cmd(&[b"PING"]);
    assert_eq!(raw.reply_str(), "+PONG\r\n");
}
