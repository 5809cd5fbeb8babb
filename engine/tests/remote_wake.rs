//! A thread outside the engine publishes a value and wakes shards with a `RemoteWaker`;
//! every shard sees every published value promptly, even when it was about to sleep.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use coreshard_engine::{start, ConnId, Ctx, EngineConfig, Handler, Input, ShardId};

/// Reports each newly seen value of `published` on `seen`.
struct Watcher {
    shard: usize,
    published: Arc<AtomicU64>,
    last: u64,
    seen: mpsc::Sender<(usize, u64)>,
}

impl Handler for Watcher {
    type Conn = ();
    type Msg = ();

    fn on_open(&mut self, _: &mut Ctx<Self>, _: ConnId, _: Option<SocketAddr>) {}

    fn on_data(&mut self, _: &mut Ctx<Self>, _: ConnId, data: Input<'_>) -> usize {
        data.len()
    }

    fn on_message(&mut self, _: &mut Ctx<Self>, _: ShardId, _: ()) {}

    fn needs_turn(&self) -> bool {
        self.published.load(Ordering::Acquire) != self.last
    }

    fn on_turn_end(&mut self, _: &mut Ctx<Self>) {
        let now = self.published.load(Ordering::Acquire);
        if now != self.last {
            self.last = now;
            let _ = self.seen.send((self.shard, now));
        }
    }
}

#[test]
fn published_values_always_reach_sleeping_shards() {
    let shards = 2;
    let published = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::channel();
    let p = Arc::clone(&published);
    let engine = start(
        EngineConfig {
            outgoing_only: true,
            shards,
            pin: false,
            ..EngineConfig::default()
        },
        move |info| Watcher {
            shard: info.shard,
            published: Arc::clone(&p),
            last: 0,
            seen: tx.clone(),
        },
    )
    .expect("engine starts");
    let waker = engine.remote_waker().expect("waker");
    let mut latest = vec![0u64; shards];
    for round in 1..=2000u64 {
        published.store(round, Ordering::Release);
        for s in 0..shards {
            waker.wake(s);
        }
        // Sometimes let the shards fall asleep before the next value.
        if round % 7 == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while latest.iter().any(|&v| v < round) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((s, v)) => latest[s] = latest[s].max(v),
                Err(_) => panic!("round {round}: shards saw only {latest:?}"),
            }
        }
    }
    engine.shutdown();
    engine.join().expect("clean stop");
}
