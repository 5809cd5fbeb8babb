//! Per-connection reply order across shards: answers computed on other shards
//! (`Ctx::call`, `Ctx::reserve_slot` + a message + `Ctx::fill_slot`), answers delayed by a
//! timer, local writes and shared chunks all leave in request order, from many pipelined
//! connections, with a tiny owed-reply limit (so input pauses and resumes), and a client
//! that half-closes still gets every answer it is owed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use coreshard_engine::{start, ConnId, Ctx, EngineConfig, Handler, Input, ReplySlot, ShardId};

/// Requests are lines `<how> <shard> <token>`; every answer is `<token>\n`.
/// `c`: `Ctx::call` on `shard`; `m`: slot + message, filled on `shard`; `t`: like `m` but
/// filled after a 2 ms timer there; `l`: written locally at once; `s`: a 5000-byte shared
/// chunk (`x` repeated) then the token, locally; `f`: a slot filled at once, in place
/// (`Ctx::fill_slot_with`). `m` answers are filled with `fill_slot_with` too (in place on
/// the connection's shard, sent back from others).
#[derive(Default)]
struct Orderly {
    delayed: HashMap<u64, (ReplySlot, Vec<u8>)>,
    next_cookie: u64,
}

enum Msg {
    Fill { slot: ReplySlot, answer: Vec<u8> },
    FillLater { slot: ReplySlot, answer: Vec<u8> },
}

impl Handler for Orderly {
    type Conn = ();
    type Msg = Msg;

    fn on_data(&mut self, ctx: &mut Ctx<Self>, conn: ConnId, data: Input<'_>) -> usize {
        let mut used = 0;
        while let Some(end) = data[used..].iter().position(|&b| b == b'\n') {
            let line = &data[used..used + end];
            used += end + 1;
            let mut parts = line.split(|&b| b == b' ');
            let how = parts.next().unwrap_or_default().to_vec();
            let shard: ShardId = std::str::from_utf8(parts.next().unwrap_or_default())
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0)
                % ctx.shard_count();
            let mut answer = parts.next().unwrap_or_default().to_vec();
            answer.push(b'\n');
            match how.as_slice() {
                b"c" => {
                    ctx.call(self, conn, shard, move |_, _| answer);
                }
                b"m" | b"t" => {
                    if let Some(slot) = ctx.reserve_slot(conn) {
                        let msg = if how == b"m" {
                            Msg::Fill { slot, answer }
                        } else {
                            Msg::FillLater { slot, answer }
                        };
                        ctx.send(shard, msg);
                    }
                }
                b"f" => {
                    if let Some(slot) = ctx.reserve_slot(conn) {
                        ctx.fill_slot_with(slot, |out| out.extend_from_slice(&answer));
                    }
                }
                b"s" => {
                    ctx.write_shared(conn, Bytes::from(vec![b'x'; 5000]));
                    ctx.write(conn, &answer);
                }
                _ => {
                    ctx.write(conn, &answer);
                }
            }
            if ctx.output_full(conn) {
                break;
            }
        }
        used
    }

    fn on_message(&mut self, ctx: &mut Ctx<Self>, _from: ShardId, msg: Msg) {
        match msg {
            Msg::Fill { slot, answer } => {
                ctx.fill_slot_with(slot, |out| out.extend_from_slice(&answer));
            }
            Msg::FillLater { slot, answer } => {
                self.next_cookie += 1;
                self.delayed.insert(self.next_cookie, (slot, answer));
                ctx.set_timer(Duration::from_millis(2), self.next_cookie);
            }
        }
    }

    fn on_timer(&mut self, ctx: &mut Ctx<Self>, cookie: u64) {
        if let Some((slot, answer)) = self.delayed.remove(&cookie) {
            ctx.fill_slot(slot, answer);
        }
    }
}

fn engine(max_owed_replies: usize) -> coreshard_engine::EngineHandle {
    let config = EngineConfig {
        shards: 3,
        pin: false,
        max_owed_replies,
        ..EngineConfig::listen_on("127.0.0.1:0".parse().unwrap())
    };
    start(config, |_| Orderly::default()).expect("engine starts")
}

/// One client's pipeline: `n` requests of every kind, to every shard, as one write.
fn run_client(addr: std::net::SocketAddr, client: usize, n: usize) {
    let kinds = ["c", "m", "t", "l", "s", "c", "m", "f"];
    let mut requests = String::new();
    let mut expect = Vec::new();
    for i in 0..n {
        let how = kinds[(i * 7 + client) % kinds.len()];
        let token = format!("{client}-{i}");
        requests.push_str(&format!("{how} {} {token}\n", (i + client) % 3));
        if how == "s" {
            expect.push(format!("{}{token}", "x".repeat(5000)));
        } else {
            expect.push(token);
        }
    }
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut writer = s.try_clone().unwrap();
    let w = thread::spawn(move || {
        writer.write_all(requests.as_bytes()).unwrap();
        // Half-close: every answer owed must still arrive.
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut lines = BufReader::new(&mut s).lines();
    for (i, want) in expect.iter().enumerate() {
        let got = lines.next().expect("an answer").expect("readable");
        assert_eq!(&got, want, "client {client}, reply {i} out of order");
    }
    assert!(
        lines.next().is_none(),
        "client {client}: nothing after its answers"
    );
    w.join().unwrap();
}

#[test]
fn answers_from_every_shard_leave_in_request_order() {
    for max_owed in [16 * 1024, 4] {
        let engine = engine(max_owed);
        let addr = engine.local_addr().expect("listening");
        let clients: Vec<_> = (0..12)
            .map(|c| thread::spawn(move || run_client(addr, c, 700)))
            .collect();
        for c in clients {
            c.join().expect("client in order");
        }
        engine.shutdown();
        engine.join().expect("clean stop");
    }
}

#[test]
fn a_config_without_listen_address_is_refused_clearly() {
    let err = start(EngineConfig::default(), |_| Orderly::default())
        .err()
        .expect("no address, no engine")
        .to_string();
    assert!(err.contains("no listen address"), "{err}");
    let both = EngineConfig {
        outgoing_only: true,
        ..EngineConfig::listen_on("127.0.0.1:0".parse().unwrap())
    };
    assert!(start(both, |_| Orderly::default()).is_err());
    let engine = start(EngineConfig::outgoing_only(), |_| Orderly::default()).expect("starts");
    assert_eq!(engine.local_addr(), None);
    engine.shutdown();
    engine.join().expect("clean stop");
}
