//! Long work on a shard (`Ctx::long_work`): the shard's other connections are answered
//! by the `WhileBusy` answerer meanwhile, in order, and input left for later is served
//! in order once the work is over.
//!
//! The protocol is lines: `LONG <ms>` works for that long (calling `serve_while_busy`
//! every millisecond) and answers `DONE`; any other line is answered `OK <line>`. While
//! busy, the answerer replies `BUSY <line>` and stops at a line `WAIT`, which (with all
//! that follows) waits for the work to end.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use coreshard_engine::{
    serve_while_busy, start, ConnId, Ctx, EngineConfig, EngineHandle, Handler, Input, WhileBusy,
};

#[derive(Default)]
struct Lines {
    /// `LATER <ms>`: long work to run at the end of the turn, for this connection.
    later: Option<(ConnId, u64)>,
}

fn work_for(ms: u64) -> bool {
    let until = Instant::now() + Duration::from_millis(ms);
    let mut served = false;
    while Instant::now() < until {
        served |= serve_while_busy();
        std::thread::sleep(Duration::from_millis(1));
    }
    served
}

struct Answer;

impl WhileBusy<()> for Answer {
    fn on_data(&mut self, _state: &mut (), data: &[u8], out: &mut Vec<u8>) -> usize {
        let mut used = 0;
        while let Some(end) = data[used..].iter().position(|&b| b == b'\n') {
            let line = &data[used..used + end];
            if line == b"WAIT" {
                break;
            }
            out.extend_from_slice(b"BUSY ");
            out.extend_from_slice(line);
            out.push(b'\n');
            used += end + 1;
        }
        used
    }
}

impl Handler for Lines {
    type Conn = ();
    type Msg = ();

    fn on_data(&mut self, ctx: &mut Ctx<Self>, conn: ConnId, data: Input<'_>) -> usize {
        let mut used = 0;
        while let Some(end) = data[used..].iter().position(|&b| b == b'\n') {
            let line = data[used..used + end].to_vec();
            used += end + 1;
            if let Some(ms) = line.strip_prefix(b"LONG ") {
                let ms: u64 = std::str::from_utf8(ms)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let served = ctx.long_work(&mut Answer, || work_for(ms));
                assert!(served, "serve_while_busy inside long_work serves");
                ctx.write(conn, b"DONE\n");
            } else if let Some(ms) = line.strip_prefix(b"LATER ") {
                let ms: u64 = std::str::from_utf8(ms)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                self.later = Some((conn, ms));
            } else {
                ctx.write(conn, b"OK ");
                ctx.write(conn, &line);
                ctx.write(conn, b"\n");
            }
        }
        used
    }

    /// Long work outside `on_data`, after this turn's completions were dispatched.
    fn on_turn_end(&mut self, ctx: &mut Ctx<Self>) {
        if let Some((conn, ms)) = self.later.take() {
            assert!(ctx.long_work(&mut Answer, || work_for(ms)));
            ctx.write(conn, b"DONE LATER\n");
        }
    }
}

fn engine() -> (EngineHandle, SocketAddr) {
    let config = EngineConfig {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        shards: 1,
        pin: false,
        ..EngineConfig::default()
    };
    let engine = start(config, |_| Lines::default()).expect("engine starts");
    let addr = engine.local_addr().expect("listening");
    (engine, addr)
}

struct Client {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let w = TcpStream::connect(addr).unwrap();
        w.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let r = BufReader::new(w.try_clone().unwrap());
        Client { w, r }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).unwrap();
    }

    fn line(&mut self) -> String {
        let mut s = String::new();
        self.r.read_line(&mut s).expect("a reply line");
        s.trim_end().to_string()
    }

    /// Send PING until the answer is BUSY (the work has started).
    fn wait_busy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            self.send(b"PING\n");
            match self.line().as_str() {
                "BUSY PING" => return,
                "OK PING" => {}
                other => panic!("unexpected reply {other:?}"),
            }
            assert!(Instant::now() < deadline, "the long work never started");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[test]
fn other_connections_are_answered_while_the_shard_works() {
    let (engine, addr) = engine();
    let mut other = Client::connect(addr);
    let mut worker = Client::connect(addr);
    // Make sure both are accepted before the shard gets busy.
    other.send(b"hello\n");
    assert_eq!(other.line(), "OK hello");
    worker.send(b"LONG 1500\nAFTER\n");
    other.wait_busy();
    // Byte at a time, pipelined, many: all answered busy, in order.
    for b in b"A\nB" {
        other.send(&[*b]);
        std::thread::sleep(Duration::from_millis(3));
    }
    other.send(b"C\nD\n");
    assert_eq!(other.line(), "BUSY A");
    assert_eq!(other.line(), "BUSY BC");
    assert_eq!(other.line(), "BUSY D");
    // Left for later: WAIT and what follows it answer only after the work, in order.
    other.send(b"E\nWAIT\nF\n");
    assert_eq!(other.line(), "BUSY E");
    assert_eq!(worker.line(), "DONE");
    assert_eq!(worker.line(), "OK AFTER");
    assert_eq!(other.line(), "OK WAIT");
    assert_eq!(other.line(), "OK F");
    // Normal service afterwards.
    other.send(b"G\n");
    assert_eq!(other.line(), "OK G");
    engine.shutdown();
    engine.join().expect("clean stop");
}

#[test]
fn many_connections_are_answered_and_new_ones_wait() {
    let (engine, addr) = engine();
    let mut clients: Vec<Client> = (0..20).map(|_| Client::connect(addr)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(format!("hi{i}\n").as_bytes());
        assert_eq!(c.line(), format!("OK hi{i}"));
    }
    let mut worker = Client::connect(addr);
    worker.send(b"LONG 1500\n");
    clients[0].wait_busy();
    // A connection accepted during the work is served once it is over.
    let mut late = Client::connect(addr);
    late.send(b"late\n");
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(format!("x{i}\ny{i}\n").as_bytes());
    }
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.line(), format!("BUSY x{i}"));
        assert_eq!(c.line(), format!("BUSY y{i}"));
    }
    assert_eq!(worker.line(), "DONE");
    assert_eq!(late.line(), "OK late");
    engine.shutdown();
    engine.join().expect("clean stop");
}

#[test]
fn long_work_at_the_end_of_a_turn_sees_only_new_input() {
    let (engine, addr) = engine();
    let mut other = Client::connect(addr);
    let mut worker = Client::connect(addr);
    other.send(b"hello\n");
    assert_eq!(other.line(), "OK hello");
    // The worker's own request is dispatched before the work starts: never seen again.
    worker.send(b"LATER 1000\n");
    other.wait_busy();
    other.send(b"X\n");
    assert_eq!(other.line(), "BUSY X");
    assert_eq!(worker.line(), "DONE LATER");
    worker.send(b"Y\n");
    assert_eq!(worker.line(), "OK Y");
    other.send(b"Z\n");
    assert_eq!(other.line(), "OK Z");
    engine.shutdown();
    engine.join().expect("clean stop");
}

#[test]
fn a_client_that_does_not_read_is_answered_up_to_the_pause_then_waits() {
    let config = EngineConfig {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        shards: 1,
        pin: false,
        output_pause_bytes: 4096,
        ..EngineConfig::default()
    };
    let engine = start(config, |_| Lines::default()).expect("engine starts");
    let addr = engine.local_addr().expect("listening");
    let mut other = Client::connect(addr);
    let mut worker = Client::connect(addr);
    other.send(b"hello\n");
    assert_eq!(other.line(), "OK hello");
    worker.send(b"LONG 1500\n");
    other.wait_busy();
    let n = 5000;
    let mut burst = Vec::new();
    for i in 0..n {
        burst.extend_from_slice(format!("L{i}\n").as_bytes());
    }
    other.send(&burst);
    assert_eq!(worker.line(), "DONE");
    // Every line answered once, in order: BUSY until the output reached the pause, then
    // (after the work) OK.
    let mut busy = 0;
    for i in 0..n {
        let line = other.line();
        if line == format!("BUSY L{i}") && busy == i {
            busy += 1;
        } else {
            assert_eq!(line, format!("OK L{i}"), "after {busy} BUSY answers");
        }
    }
    assert!(busy > 0 && busy < n, "{busy} of {n} answered BUSY");
    engine.shutdown();
    engine.join().expect("clean stop");
}
