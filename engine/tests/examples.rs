//! The examples, run for real: each example's own `serve` on port 0, driven over TCP.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

#[allow(dead_code)]
#[path = "../examples/echo.rs"]
mod echo;

#[allow(dead_code)]
#[path = "../examples/counter.rs"]
mod counter;

#[allow(dead_code)]
#[path = "../examples/kv.rs"]
mod kv;

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Send `requests` (in one write, then half-close) and read every reply line.
fn exchange(addr: SocketAddr, requests: &str) -> Vec<String> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = s.try_clone().unwrap();
    let requests = requests.to_owned();
    let writer = thread::spawn(move || {
        w.write_all(requests.as_bytes()).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    let lines = BufReader::new(&mut s).lines().map(|l| l.expect("line"));
    let lines = lines.collect();
    writer.join().unwrap();
    lines
}

fn stop(engine: coreshard_engine::EngineHandle) {
    engine.shutdown();
    engine.join().expect("clean stop");
}

#[test]
fn echo_sends_every_byte_back() {
    let engine = echo::serve(any_port(), 2).expect("starts");
    let addr = engine.local_addr().expect("listening");
    let mut s = TcpStream::connect(addr).unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    let mut w = s.try_clone().unwrap();
    let sent = data.clone();
    let writer = thread::spawn(move || w.write_all(&sent).unwrap());
    let mut got = vec![0; data.len()];
    s.read_exact(&mut got).unwrap();
    writer.join().unwrap();
    assert!(got == data);
    stop(engine);
}

/// `name value` → (name, value).
fn parse(line: &str) -> (String, u64) {
    let (name, value) = line.split_once(' ').expect("`name value`");
    (name.to_owned(), value.parse().expect("a number"))
}

#[test]
fn counter_six_connections_get_one_to_six() {
    let engine = counter::serve(any_port(), 4).expect("starts");
    let addr = engine.local_addr().expect("listening");
    let barrier = Arc::new(Barrier::new(6));
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let b = Arc::clone(&barrier);
            thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                b.wait();
                s.write_all(b"INCR x\n").unwrap();
                let mut line = String::new();
                BufReader::new(s).read_line(&mut line).unwrap();
                parse(line.trim_end()).1
            })
        })
        .collect();
    let mut got: Vec<u64> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    got.sort_unstable();
    assert_eq!(
        got,
        [1, 2, 3, 4, 5, 6],
        "one counter, however connections land"
    );
    assert_eq!(exchange(addr, "GET x\n"), ["x 6"]);
    assert_eq!(exchange(addr, "NOPE\n")[0].split(' ').next(), Some("ERR"));
    stop(engine);
}

#[test]
fn counter_pipelined_replies_come_in_request_order() {
    const CONNS: usize = 16;
    const REQUESTS: usize = 3000;
    const SHARED: usize = 5;
    let engine = counter::serve(any_port(), 3).expect("starts");
    let addr = engine.local_addr().expect("listening");
    let clients: Vec<_> = (0..CONNS)
        .map(|c| {
            thread::spawn(move || {
                // Shared counters (every connection adds to them), private ones (only
                // this connection: exact values known) and reads, over every shard.
                let names: Vec<(String, bool)> = (0..REQUESTS)
                    .map(|i| match (i * 7 + c) % 4 {
                        0 | 1 => (format!("s{}", (i + c) % SHARED), true),
                        2 => (format!("p{c}-{}", i % 11), true),
                        _ => (format!("p{c}-{}", i % 11), false),
                    })
                    .collect();
                let requests: String = names
                    .iter()
                    .map(|(n, incr)| format!("{} {n}\n", if *incr { "INCR" } else { "GET" }))
                    .collect();
                let replies = exchange(addr, &requests);
                assert_eq!(replies.len(), REQUESTS, "conn {c}: every reply");
                let mut private: HashMap<String, u64> = HashMap::new();
                let mut shared_seen: HashMap<String, u64> = HashMap::new();
                let mut shared_values = Vec::new();
                for (i, ((name, incr), reply)) in names.iter().zip(&replies).enumerate() {
                    let (got_name, value) = parse(reply);
                    assert_eq!(&got_name, name, "conn {c}: reply {i} is another request's");
                    if name.starts_with('p') {
                        let n = private.entry(name.clone()).or_insert(0);
                        *n += u64::from(*incr);
                        assert_eq!(value, *n, "conn {c}: reply {i} for {name}");
                    } else {
                        let last = shared_seen.entry(name.clone()).or_insert(0);
                        assert!(value > *last, "conn {c}: {name} went back at reply {i}");
                        *last = value;
                        shared_values.push((name.clone(), value));
                    }
                }
                shared_values
            })
        })
        .collect();
    let mut all: HashMap<String, Vec<u64>> = HashMap::new();
    for c in clients {
        for (name, v) in c.join().expect("client saw its replies in order") {
            all.entry(name).or_default().push(v);
        }
    }
    for (name, mut values) in all {
        values.sort_unstable();
        let n = values.len() as u64;
        assert!(
            values.iter().copied().eq(1..=n),
            "{name}: each INCR got its own value"
        );
        assert_eq!(
            exchange(addr, &format!("GET {name}\n")),
            [format!("{name} {n}")]
        );
    }
    stop(engine);
}

#[test]
fn kv_sets_gets_deletes_and_expires_across_shards() {
    let engine = kv::serve(any_port(), 3).expect("starts");
    let addr = engine.local_addr().expect("listening");
    let mut requests = String::new();
    let mut expect = Vec::new();
    for i in 0..2000 {
        requests.push_str(&format!("SET k{i} v{i}\nGET k{i}\n"));
        expect.extend(["OK".to_owned(), format!("v{i}")]);
        if i % 3 == 0 {
            requests.push_str(&format!("DEL k{i}\nGET k{i}\nDEL k{i}\n"));
            expect.extend(["1", "(nil)", "0"].map(String::from));
        }
    }
    requests.push_str("SET short x 50\nGET short\nSET bad x -1\nGET\n");
    expect.extend(["OK", "x"].map(String::from));
    let replies = exchange(addr, &requests);
    assert_eq!(replies[..expect.len()], expect[..], "in request order");
    assert!(replies[expect.len()].starts_with("ERR"), "negative ttl");
    assert!(replies[expect.len() + 1].starts_with("ERR"), "no key");
    thread::sleep(Duration::from_millis(120));
    assert_eq!(exchange(addr, "GET short\nGET k1\n"), ["(nil)", "v1"]);
    stop(engine);
}
