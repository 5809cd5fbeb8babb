//! Output written behind an owed reply slot counts as the connection's unsent output: a
//! pipeline of local answers queued behind a slot that is not filled yet meets the output
//! backpressure threshold (`Ctx::output_full`, the engine's input pause) instead of
//! growing without bound, and everything leaves in order once the slot is filled.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use coreshard_engine::{start, ConnId, Ctx, EngineConfig, Handler, Input, ReplySlot, ShardId};

const PAUSE_BYTES: usize = 64 * 1024;
/// Each `p` request is answered with this many bytes.
const ANSWER: usize = 100;

/// `h`: reserve a slot and keep it unfilled; `r`: fill the kept slot with `H`; `p`: write
/// an `ANSWER`-byte line at once (behind the slot while it is owed). Counts the `p`s
/// handled and the most unsent output seen.
struct Holder {
    held: Option<ReplySlot>,
    pings: Arc<AtomicUsize>,
    most_unsent: Arc<AtomicUsize>,
}

impl Handler for Holder {
    type Conn = ();
    type Msg = ();

    fn on_data(&mut self, ctx: &mut Ctx<Self>, conn: ConnId, data: Input<'_>) -> usize {
        let mut used = 0;
        while let Some(end) = data[used..].iter().position(|&b| b == b'\n') {
            let line = data[used..used + end].to_vec();
            used += end + 1;
            match line.as_slice() {
                b"h" => self.held = ctx.reserve_slot(conn),
                b"r" => {
                    if let Some(slot) = self.held.take() {
                        ctx.fill_slot(slot, b"H\n".to_vec());
                    }
                    ctx.write(conn, b"R\n");
                }
                _ => {
                    let mut answer = vec![b'p'; ANSWER - 1];
                    answer.push(b'\n');
                    ctx.write(conn, &answer);
                    self.pings.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.most_unsent
                .fetch_max(ctx.unsent_output(conn), Ordering::Relaxed);
            if ctx.output_full(conn) {
                break;
            }
        }
        used
    }

    fn on_message(&mut self, _ctx: &mut Ctx<Self>, _from: ShardId, _msg: ()) {}
}

#[test]
fn output_queued_behind_an_unfilled_slot_is_bounded_by_backpressure() {
    let pings = Arc::new(AtomicUsize::new(0));
    let most_unsent = Arc::new(AtomicUsize::new(0));
    let config = EngineConfig {
        shards: 1,
        pin: false,
        output_pause_bytes: PAUSE_BYTES,
        ..EngineConfig::listen_on("127.0.0.1:0".parse().unwrap())
    };
    let (p, m) = (pings.clone(), most_unsent.clone());
    let engine = start(config, move |_| Holder {
        held: None,
        pings: p.clone(),
        most_unsent: m.clone(),
    })
    .expect("engine starts");
    let addr = engine.local_addr().expect("listening");

    // 40,000 answers of 100 bytes: 4 MB if nothing bounded them.
    let n = 40_000;
    let mut requests = String::from("h\n");
    requests.push_str(&"p\n".repeat(n));
    let mut client = TcpStream::connect(addr).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = client.try_clone().unwrap();
    let w = thread::spawn(move || writer.write_all(requests.as_bytes()).unwrap());

    // Let the pipeline run until it stops.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = usize::MAX;
    loop {
        thread::sleep(Duration::from_millis(200));
        let now = pings.load(Ordering::Relaxed);
        if now == last || now == n || Instant::now() > deadline {
            break;
        }
        last = now;
    }
    let handled = pings.load(Ordering::Relaxed);
    assert!(
        handled * ANSWER < 4 * PAUSE_BYTES,
        "{handled} answers ({} bytes) queued behind an unfilled slot: output behind a slot \
         must count toward the pause threshold ({PAUSE_BYTES} bytes)",
        handled * ANSWER
    );
    let seen = most_unsent.load(Ordering::Relaxed);
    assert!(
        seen >= PAUSE_BYTES,
        "unsent output must include what waits behind the slot (most seen: {seen})"
    );

    // Fill the slot from another connection: everything leaves, in order, and the paused
    // pipeline resumes to the end.
    let mut other = TcpStream::connect(addr).expect("connect");
    other.write_all(b"r\n").unwrap();
    let mut reply = String::new();
    BufReader::new(&mut other).read_line(&mut reply).unwrap();
    assert_eq!(reply, "R\n");

    let mut lines = BufReader::new(&mut client).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "H");
    let want = "p".repeat(ANSWER - 1);
    for i in 0..n {
        let got = lines.next().expect("an answer").expect("readable");
        assert_eq!(got, want, "answer {i}");
    }
    w.join().unwrap();
    assert_eq!(pings.load(Ordering::Relaxed), n);
    engine.shutdown();
    engine.join().expect("clean stop");
}
