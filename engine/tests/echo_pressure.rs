//! The engine on its own, through its public API: an echo handler with a deliberately tiny
//! provided-buffer ring, so receives run out of buffers (ENOBUFS) all the time and must be
//! re-armed without losing or reordering a byte.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use coreshard_engine::{start, ConnId, Ctx, EngineConfig, Handler, Input, ShardId};

struct Echo {
    exhausted: Arc<AtomicU64>,
}

impl Handler for Echo {
    type Conn = ();
    type Msg = ();

    fn on_open(&mut self, _: &mut Ctx<Self>, _: ConnId, _: Option<SocketAddr>) {}

    fn on_data(&mut self, ctx: &mut Ctx<Self>, conn: ConnId, data: Input<'_>) -> usize {
        ctx.write(conn, &data);
        data.len()
    }

    fn on_message(&mut self, _: &mut Ctx<Self>, _: ShardId, _: ()) {}

    fn on_stop(&mut self, ctx: &mut Ctx<Self>) {
        self.exhausted
            .fetch_add(ctx.stats().recv_buffer_exhausted, Ordering::Relaxed);
    }
}

#[test]
fn receives_survive_buffer_ring_exhaustion() {
    let exhausted = Arc::new(AtomicU64::new(0));
    let config = EngineConfig {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        shards: 2,
        pin: false,
        recv_buffers: 2,
        recv_buffer_size: 64,
        ..EngineConfig::default()
    };
    let counter = Arc::clone(&exhausted);
    let engine = start(config, move |_| Echo {
        exhausted: Arc::clone(&counter),
    })
    .expect("engine starts");
    let addr = engine.local_addr().expect("listening");
    let clients: Vec<_> = (0..16u8)
        .map(|c| {
            thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                let data: Vec<u8> = (0..200_000u32).map(|i| (i as u8) ^ c).collect();
                let mut writer = s.try_clone().unwrap();
                let sent = data.clone();
                let w = thread::spawn(move || writer.write_all(&sent).unwrap());
                let mut got = vec![0u8; data.len()];
                s.read_exact(&mut got).unwrap();
                w.join().unwrap();
                assert!(got == data, "client {c}: echoed bytes differ");
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    engine.shutdown();
    engine.join().expect("clean stop");
    assert!(
        exhausted.load(Ordering::Relaxed) > 0,
        "the tiny ring must have run dry at least once"
    );
}

#[test]
fn an_engine_without_listener_connects_out() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf).unwrap();
        // Stay open until the client has read the echo.
        let _ = s.read(&mut buf);
    });

    struct Dialer {
        target: SocketAddr,
        done: Arc<AtomicU64>,
    }
    impl Handler for Dialer {
        type Conn = ();
        type Msg = ();
        fn on_start(&mut self, ctx: &mut Ctx<Self>) {
            let id = ctx.connect(self.target, ()).expect("socket");
            // Written before the connect completes: sent once it does.
            ctx.write(id, b"hello");
        }
        fn on_open(&mut self, _: &mut Ctx<Self>, _: ConnId, _: Option<SocketAddr>) {}
        fn on_connected(&mut self, _: &mut Ctx<Self>, _: ConnId, r: std::io::Result<()>) {
            r.expect("connects");
        }
        fn on_data(&mut self, ctx: &mut Ctx<Self>, conn: ConnId, data: Input<'_>) -> usize {
            if data.len() < 5 {
                return 0;
            }
            assert_eq!(&data[..5], b"hello");
            self.done.store(1, Ordering::Release);
            ctx.close(conn);
            data.len()
        }
        fn on_message(&mut self, _: &mut Ctx<Self>, _: ShardId, _: ()) {}
    }

    let done = Arc::new(AtomicU64::new(0));
    let d = Arc::clone(&done);
    let config = EngineConfig {
        outgoing_only: true,
        shards: 1,
        pin: false,
        ..EngineConfig::default()
    };
    let engine = start(config, move |_| Dialer {
        target,
        done: Arc::clone(&d),
    })
    .expect("engine starts");
    assert!(engine.local_addr().is_none());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while done.load(Ordering::Acquire) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no echo within the deadline"
        );
        thread::sleep(std::time::Duration::from_millis(5));
    }
    engine.shutdown();
    engine.join().expect("clean stop");
    server.join().unwrap();
}
