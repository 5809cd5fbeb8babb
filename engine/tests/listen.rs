//! Listening: the shards of one engine share their port (SO_REUSEPORT), but a port that
//! another engine or process already listens on is refused with "Address already in use",
//! as Redis does, instead of being silently shared.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use coreshard_engine::{start, ConnId, Ctx, EngineConfig, EngineHandle, Handler, Input, ShardId};

/// Counts accepted connections per shard.
struct Count {
    shard: usize,
    opened: Arc<Vec<AtomicU64>>,
}

impl Handler for Count {
    type Conn = ();
    type Msg = ();

    fn on_open(&mut self, _: &mut Ctx<Self>, _: ConnId, _: Option<SocketAddr>) {
        self.opened[self.shard].fetch_add(1, Ordering::Relaxed);
    }

    /// Any input closes the connection from the server's side.
    fn on_data(&mut self, ctx: &mut Ctx<Self>, conn: ConnId, data: Input<'_>) -> usize {
        ctx.close(conn);
        data.len()
    }

    fn on_message(&mut self, _: &mut Ctx<Self>, _: ShardId, _: ()) {}
}

fn config(addr: SocketAddr, shards: usize) -> EngineConfig {
    EngineConfig {
        listen: Some(addr),
        shards,
        pin: false,
        ..EngineConfig::default()
    }
}

fn start_on(
    addr: SocketAddr,
    shards: usize,
) -> Result<(EngineHandle, Arc<Vec<AtomicU64>>), String> {
    let opened: Arc<Vec<AtomicU64>> = Arc::new((0..shards).map(|_| AtomicU64::new(0)).collect());
    let counts = Arc::clone(&opened);
    start(config(addr, shards), move |info| Count {
        shard: info.shard,
        opened: Arc::clone(&counts),
    })
    .map(|e| (e, opened))
    .map_err(|e| e.to_string())
}

fn stop(engine: EngineHandle) {
    engine.shutdown();
    engine.join().expect("clean stop");
}

#[test]
fn a_port_another_engine_listens_on_is_refused() {
    let (first, _) = start_on("127.0.0.1:0".parse().unwrap(), 2).expect("first engine starts");
    let addr = first.local_addr().expect("listening");
    for shards in [1, 2] {
        match start_on(addr, shards) {
            Ok((second, _)) => {
                stop(second);
                panic!("a second engine ({shards} shards) shared the port {addr}");
            }
            Err(e) => assert!(
                e.contains("Address already in use"),
                "unexpected error: {e}"
            ),
        }
    }
    stop(first);
    // Once the first engine is gone the port is free again.
    let (again, _) = start_on(addr, 2).expect("the port is free after the first engine stopped");
    stop(again);
}

#[test]
fn a_port_a_plain_listener_holds_is_refused() {
    let plain = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = plain.local_addr().unwrap();
    let err = start_on(addr, 2).err().expect("the engine must not start");
    assert!(
        err.contains("Address already in use"),
        "unexpected error: {err}"
    );
}

#[test]
fn engines_racing_for_one_port_do_not_share_it() {
    for round in 0..20 {
        // A port that was free a moment ago.
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let barrier = Arc::clone(&barrier);
                thread::spawn(move || {
                    barrier.wait();
                    start_on(addr, 2)
                })
            })
            .collect();
        let results: Vec<_> = racers.into_iter().map(|r| r.join().unwrap()).collect();
        let mut started = 0;
        for r in results {
            match r {
                Ok((engine, _)) => {
                    started += 1;
                    stop(engine);
                }
                Err(e) => assert!(e.contains("Address already in use"), "{e}"),
            }
        }
        assert!(
            started <= 1,
            "round {round}: {started} engines share {addr}"
        );
    }
}

#[test]
fn every_shard_accepts_on_the_shared_port() {
    let shards = 4;
    let (engine, opened) = start_on("127.0.0.1:0".parse().unwrap(), shards).expect("starts");
    let addr = engine.local_addr().expect("listening");
    let clients: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let total = || {
        opened
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    while total() < clients.len() as u64 {
        assert!(
            Instant::now() < deadline,
            "only {} connections accepted",
            total()
        );
        thread::sleep(Duration::from_millis(5));
    }
    let per_shard: Vec<u64> = opened.iter().map(|n| n.load(Ordering::Relaxed)).collect();
    assert!(
        per_shard.iter().all(|&n| n > 0),
        "connections per shard: {per_shard:?}"
    );
    drop(clients);
    stop(engine);
}

#[test]
fn a_restart_is_not_held_up_by_connections_in_time_wait() {
    let (engine, _) = start_on("127.0.0.1:0".parse().unwrap(), 2).expect("starts");
    let addr = engine.local_addr().expect("listening");
    for _ in 0..8 {
        // The server closes first, so its side of the connection lingers in TIME_WAIT.
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"x").unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(c.read(&mut buf).unwrap(), 0, "closed by the server");
    }
    stop(engine);
    let (again, _) = start_on(addr, 2).expect("restarts on the same port");
    stop(again);
}

/// Answers every input with the index of the listener that accepted the connection, as
/// seen in `on_open` (meta) and in `on_data` (`listener_of`).
struct WhichListener;

impl Handler for WhichListener {
    type Conn = Option<usize>;
    type Msg = ();

    fn on_open(
        &mut self,
        ctx: &mut Ctx<Self>,
        conn: ConnId,
        _: Option<SocketAddr>,
    ) -> Option<usize> {
        ctx.meta(conn).and_then(|m| m.listener)
    }

    fn on_data(&mut self, ctx: &mut Ctx<Self>, conn: ConnId, data: Input<'_>) -> usize {
        let at_open = ctx.state(conn).copied().flatten();
        let now = ctx.listener_of(conn);
        assert_eq!(at_open, now);
        let line = format!("{}\n", now.map_or(-1, |l| l as i64));
        ctx.write(conn, line.as_bytes());
        data.len()
    }
}

#[test]
fn extra_listeners_accept_on_every_shard_and_connections_know_which() {
    let plain = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = plain.local_addr().unwrap();
    // A port already in use is refused for an extra address too.
    let refused = start(
        EngineConfig {
            extra_listen: vec![taken],
            ..config("127.0.0.1:0".parse().unwrap(), 2)
        },
        |_| WhichListener,
    );
    let err = refused.err().expect("must not start").to_string();
    assert!(err.contains("Address already in use"), "{err}");
    drop(plain);

    let engine = start(
        EngineConfig {
            extra_listen: vec![
                "127.0.0.1:0".parse().unwrap(),
                "127.0.0.1:0".parse().unwrap(),
            ],
            ..config("127.0.0.1:0".parse().unwrap(), 2)
        },
        |_| WhichListener,
    )
    .expect("starts");
    let main = engine.local_addr().expect("main address");
    let extra = engine.extra_addrs().to_vec();
    assert_eq!(extra.len(), 2);
    assert!(extra
        .iter()
        .all(|a| a.port() != 0 && a.port() != main.port()));
    assert_ne!(extra[0].port(), extra[1].port());
    for (want, addr) in [(0, main), (1, extra[0]), (2, extra[1])] {
        for _ in 0..8 {
            let mut c = TcpStream::connect(addr).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c.write_all(b"?").unwrap();
            let mut buf = [0u8; 8];
            let n = c.read(&mut buf).unwrap();
            assert_eq!(&buf[..n], format!("{want}\n").as_bytes(), "via {addr}");
        }
    }
    stop(engine);
    // Every listener was closed at shutdown: the ports are free again.
    for addr in extra {
        TcpListener::bind(addr).expect("extra port released");
    }
}

#[test]
fn extra_listeners_need_a_main_address() {
    let err = start(
        EngineConfig {
            extra_listen: vec!["127.0.0.1:0".parse().unwrap()],
            ..EngineConfig::outgoing_only()
        },
        |_| WhichListener,
    )
    .err()
    .expect("refused")
    .to_string();
    assert!(err.contains("extra_listen"), "{err}");
}
