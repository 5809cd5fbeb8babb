//! Large requests received straight into their reassembly buffer ("direct" receives):
//! once a handler announces a request with `Ctx::expect_input` and at least
//! `DIRECT_RECV_MIN` bytes of it are still missing, the engine stops the connection's
//! multishot receive and reads the rest with one-shot receives into that buffer.
//!
//! The handler here speaks a length-prefixed protocol: a frame is a `u32` (little-endian)
//! length and that many payload bytes; the reply to each frame is its length, a 64-bit
//! FNV-1a hash of its payload and the shard's count of direct receives so far (three
//! `u64`, little-endian). So every test checks every byte, in order, and can tell whether
//! the direct path was taken.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use coreshard_engine::{
    start, ConnId, Ctx, EngineConfig, EngineHandle, Handler, Input, ShardId, DIRECT_RECV_MIN,
};

const REPLY: usize = 24;
/// Long enough for the engine to have received (and handled) what was written before it.
const PAUSE: Duration = Duration::from_millis(60);

fn fnv(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

struct Frames {
    closed: Arc<AtomicU64>,
}

impl Handler for Frames {
    type Conn = ();
    type Msg = ();

    fn on_open(&mut self, _: &mut Ctx<Self>, _: ConnId, _: Option<SocketAddr>) {}

    fn on_data(&mut self, ctx: &mut Ctx<Self>, conn: ConnId, data: Input<'_>) -> usize {
        let mut pos = 0;
        while data.len() - pos >= 4 {
            let mut len = [0u8; 4];
            len.copy_from_slice(&data[pos..pos + 4]);
            let len = u32::from_le_bytes(len) as usize;
            let total = 4 + len;
            if data.len() - pos < total {
                ctx.expect_input(conn, total);
                break;
            }
            let payload = &data[pos + 4..pos + total];
            let mut reply = Vec::with_capacity(REPLY);
            reply.extend_from_slice(&(len as u64).to_le_bytes());
            reply.extend_from_slice(&fnv(payload).to_le_bytes());
            reply.extend_from_slice(&ctx.stats().direct_recvs.to_le_bytes());
            ctx.write(conn, &reply);
            pos += total;
        }
        pos
    }

    fn on_message(&mut self, _: &mut Ctx<Self>, _: ShardId, _: ()) {}

    fn on_close(&mut self, _: &mut Ctx<Self>, _: ConnId, _: ()) {
        self.closed.fetch_add(1, Ordering::AcqRel);
    }
}

struct Engine {
    handle: EngineHandle,
    addr: SocketAddr,
    closed: Arc<AtomicU64>,
}

impl Engine {
    fn start(shards: usize) -> Engine {
        let closed = Arc::new(AtomicU64::new(0));
        let config = EngineConfig {
            listen: Some("127.0.0.1:0".parse().expect("address")),
            shards,
            pin: false,
            ..EngineConfig::default()
        };
        let c = Arc::clone(&closed);
        let handle = start(config, move |_| Frames {
            closed: Arc::clone(&c),
        })
        .expect("engine starts");
        let addr = handle.local_addr().expect("listening");
        Engine {
            handle,
            addr,
            closed,
        }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        // A lost or misplaced byte shows as a wrong reply or as no reply: fail, not hang.
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        s
    }

    fn stop(self) {
        self.handle.shutdown();
        self.handle.join().expect("clean stop");
    }
}

/// Deterministic bytes that differ by seed and position.
fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

/// Read one reply, check it describes `payload`, and return the direct-receive count it
/// carries.
fn check_reply(s: &mut TcpStream, payload: &[u8], what: &str) -> u64 {
    let mut r = [0u8; REPLY];
    if let Err(e) = s.read_exact(&mut r) {
        panic!("{what}: no reply ({e})");
    }
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&r[i * 8..i * 8 + 8]);
        u64::from_le_bytes(w)
    };
    assert_eq!(word(0), payload.len() as u64, "{what}: length");
    assert_eq!(word(1), fnv(payload), "{what}: payload bytes differ");
    word(2)
}

#[test]
fn a_large_value_in_many_small_pieces_with_pauses() {
    let engine = Engine::start(1);
    let mut s = engine.connect();
    for (round, len) in [1 << 20, 300_001, DIRECT_RECV_MIN * 3 + 7]
        .into_iter()
        .enumerate()
    {
        let p = payload(len, round as u64);
        let f = frame(&p);
        // Pieces of varying size, a pause every few: each part arrives on its own.
        let mut at = 0;
        let mut i = 0;
        while at < f.len() {
            let n = [1, 7, 1000, 4096, 30_000, 65_536, 3][i % 7].min(f.len() - at);
            s.write_all(&f[at..at + n]).expect("write");
            at += n;
            i += 1;
            if i % 9 == 0 {
                thread::sleep(Duration::from_millis(5));
            }
        }
        let directs = check_reply(&mut s, &p, &format!("value {round} ({len} bytes)"));
        assert!(directs > 0, "value {round}: the direct path was not taken");
    }
    // Small ones afterwards still work (back on the multishot receive).
    for i in 0..50u64 {
        let p = payload(10 + i as usize, 100 + i);
        s.write_all(&frame(&p)).expect("write");
        check_reply(&mut s, &p, &format!("small value {i}"));
    }
    engine.stop();
}

#[test]
fn large_values_pipelined_with_small_ones_keep_their_order() {
    let engine = Engine::start(1);
    let mut s = engine.connect();
    let sizes = [
        5,
        400_000,
        0,
        17,
        DIRECT_RECV_MIN + 1,
        1 << 20,
        3,
        250_000,
        250_000,
        16 * 1024,
        70_000,
        1,
    ];
    let payloads: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| payload(n, 1000 + i as u64))
        .collect();
    for round in 0..4 {
        let mut wire = Vec::new();
        for p in &payloads {
            wire.extend_from_slice(&frame(p));
        }
        let mut w = s.try_clone().expect("clone");
        let writer = thread::spawn(move || {
            if round % 2 == 0 {
                // All at once: later frames wait in the socket behind the large ones.
                w.write_all(&wire).expect("write");
            } else {
                // In odd pieces with pauses: frame boundaries fall anywhere.
                for (i, piece) in wire.chunks(90_001).enumerate() {
                    w.write_all(piece).expect("write");
                    if i % 2 == 0 {
                        thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        });
        let mut last = 0;
        for (i, p) in payloads.iter().enumerate() {
            last = check_reply(&mut s, p, &format!("round {round}, frame {i}"));
        }
        writer.join().expect("writer");
        assert!(last > 0, "round {round}: the direct path was not taken");
    }
    engine.stop();
}

#[test]
fn a_client_that_closes_mid_value() {
    let engine = Engine::start(1);
    for (i, how) in ["close", "reset", "half"].into_iter().enumerate() {
        let before = engine.closed.load(Ordering::Acquire);
        let mut s = engine.connect();
        let p = payload(1 << 20, i as u64);
        let f = frame(&p);
        s.write_all(&f[..40_000]).expect("write");
        thread::sleep(PAUSE);
        // Another 100 KB: a direct receive is now waiting for the rest.
        s.write_all(&f[40_000..140_000]).expect("write");
        thread::sleep(PAUSE);
        match how {
            "close" => drop(s),
            "reset" => {
                // Unread data never exists here, so force a reset with linger 0.
                let sock = socket2::SockRef::from(&s);
                sock.set_linger(Some(Duration::ZERO)).expect("linger");
                drop(s);
            }
            _ => {
                s.shutdown(Shutdown::Write).expect("shutdown");
                // The server closes its side: we read EOF, not a reply.
                let mut buf = [0u8; 1];
                match s.read(&mut buf) {
                    Ok(0) => {}
                    Ok(_) => panic!("a reply to a request cut short"),
                    Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
                    Err(e) => panic!("no close after a half-close mid-value: {e}"),
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while engine.closed.load(Ordering::Acquire) == before {
            assert!(
                Instant::now() < deadline,
                "{how}: the connection was not closed"
            );
            thread::sleep(Duration::from_millis(5));
        }
    }
    // The engine is fine afterwards.
    let mut s = engine.connect();
    let p = payload(500_000, 7);
    s.write_all(&frame(&p)).expect("write");
    check_reply(&mut s, &p, "after the closes");
    drop(s);
    engine.stop();
}

/// Send one frame whose first `first` bytes arrive alone, so that exactly
/// `frame length - first` bytes are missing when the handler announces it; return how
/// many direct receives it took.
fn directs_for_missing(engine: &Engine, missing: usize, seed: u64) -> u64 {
    let mut s = engine.connect();
    // A fresh connection's first request starts on the multishot receive.
    let first = 1000;
    let p = payload(first - 4 + missing, seed);
    let f = frame(&p);
    assert_eq!(f.len() - first, missing);
    let probe = payload(3, seed);
    s.write_all(&frame(&probe)).expect("write");
    let before = check_reply(&mut s, &probe, "probe");
    s.write_all(&f[..first]).expect("write");
    thread::sleep(PAUSE);
    s.write_all(&f[first..]).expect("write");
    let after = check_reply(&mut s, &p, &format!("{missing} bytes missing"));
    after - before
}

#[test]
fn values_at_and_around_the_threshold() {
    let engine = Engine::start(1);
    assert_eq!(
        directs_for_missing(&engine, DIRECT_RECV_MIN - 1, 1),
        0,
        "one byte under the threshold stays on the multishot receive"
    );
    assert!(
        directs_for_missing(&engine, DIRECT_RECV_MIN, 2) > 0,
        "exactly at the threshold goes direct"
    );
    assert!(
        directs_for_missing(&engine, DIRECT_RECV_MIN + 1, 3) > 0,
        "one byte over the threshold goes direct"
    );
    engine.stop();
}

#[test]
fn many_connections_with_large_values_at_once() {
    let engine = Engine::start(2);
    let addr = engine.addr;
    let clients: Vec<_> = (0..24u64)
        .map(|c| {
            thread::spawn(move || {
                let mut s = TcpStream::connect(addr).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(30)))
                    .expect("timeout");
                let payloads: Vec<Vec<u8>> = (0..6u64)
                    .map(|i| {
                        payload(
                            100_000 + (c as usize * 7_919 + i as usize * 31_337) % 300_000,
                            c * 100 + i,
                        )
                    })
                    .collect();
                let mut wire = Vec::new();
                for p in &payloads {
                    wire.extend_from_slice(&frame(p));
                }
                let mut w = s.try_clone().expect("clone");
                let writer = thread::spawn(move || w.write_all(&wire).expect("write"));
                let mut directs = 0;
                for (i, p) in payloads.iter().enumerate() {
                    directs = check_reply(&mut s, p, &format!("client {c}, value {i}"));
                }
                writer.join().expect("writer");
                directs
            })
        })
        .collect();
    let directs: u64 = clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .max()
        .unwrap_or(0);
    assert!(directs > 0, "the direct path was not taken");
    engine.stop();
}
