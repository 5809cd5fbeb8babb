//! The harness's client: one engine [`Handler`] per client thread, driving its share of
//! the connections with io_uring like any engine shard (multishot recv, batched sends).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coreshard_engine::{ConnId, Ctx, Handler, Input, ShardId, ShardInfo};
use hdrhistogram::Histogram;

use crate::reply::{delivery, message_prefix, next_frame, Delivery};
use crate::schedule::Schedule;
use crate::stats::{new_histogram, KindStats, RunStats};
use crate::workload::{Generator, Kind, Workload};

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// A fixed total rate (requests/s) on a fixed schedule, whatever the server does.
    /// A connection keeps at most `pipeline` requests in flight; requests that fall due
    /// meanwhile wait with their intended times, so a stall shows in the corrected latency
    /// but not in the service time (as in wrk2).
    Open {
        /// Total requests per second.
        rate: f64,
        /// Requests in flight per connection.
        pipeline: usize,
    },
    /// Each connection keeps `pipeline` requests outstanding.
    Closed {
        /// Requests in flight per connection.
        pipeline: usize,
    },
}

/// Pub/sub mode: subscribers on one channel, publishers at the open-loop rate.
#[derive(Debug, Clone)]
pub struct PubSub {
    /// Subscriber connections.
    pub subscribers: usize,
    /// Publisher connections.
    pub publishers: usize,
    /// The channel.
    pub channel: String,
    /// Payload size (at least the 16-byte timestamp).
    pub size: usize,
}

/// Everything a run needs; shared read-only by the client threads.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The server.
    pub target: SocketAddr,
    /// Request connections in total (pub/sub: ignored).
    pub connections: usize,
    /// Client threads.
    pub shards: usize,
    /// Pacing.
    pub mode: Mode,
    /// What to send.
    pub workload: Workload,
    /// When sending starts (the same instant for every thread).
    pub start: Instant,
    /// Requests before `start + warmup` are sent but not recorded.
    pub warmup: Duration,
    /// How long to measure.
    pub duration: Option<Duration>,
    /// How many requests to measure (over all threads).
    pub requests: Option<u64>,
    /// Pub/sub mode instead of the request workload.
    pub pubsub: Option<PubSub>,
    /// How long to wait for replies still outstanding at the end.
    pub drain: Duration,
}

/// Counters the main thread reads for the progress line, and the results at the end.
#[derive(Debug, Default)]
pub struct Shared {
    /// Replies received (all threads).
    pub completed: AtomicU64,
    /// Error replies and lost requests (all threads).
    pub errors: AtomicU64,
    /// Each thread's p99 over its last window, in ns.
    pub live_p99_ns: Vec<AtomicU64>,
    /// Threads that finished.
    pub done: AtomicUsize,
    /// Subscribers whose subscription is confirmed (pub/sub).
    pub subscribed: AtomicUsize,
    /// Messages published after every subscriber was ready (pub/sub).
    pub published: AtomicU64,
    /// Each thread's results.
    pub results: Mutex<Vec<RunStats>>,
}

impl Shared {
    /// Counters for `shards` threads.
    pub fn new(shards: usize) -> Arc<Self> {
        Arc::new(Shared {
            live_p99_ns: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            ..Shared::default()
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Requests,
    Publisher,
    Subscriber,
}

/// One connection's client state.
pub struct Conn {
    index: usize,
    role: Role,
    gen: Generator,
    schedule: Option<Schedule>,
    inflight: VecDeque<(Instant, Instant, Kind)>,
    backlog: VecDeque<Instant>,
    connected: bool,
    subscribed: bool,
}

/// A client thread.
pub struct Client {
    shard: ShardId,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    stats: RunStats,
    window: Histogram<u64>,
    window_start: Instant,
    ids: Vec<ConnId>,
    quota: Option<u64>,
    sent: u64,
    stop_at: Option<Instant>,
    finished: bool,
    measure_from: Instant,
    measured_until: Option<Instant>,
    reconnect: Vec<(Instant, usize, Role)>,
    completed_local: u64,
    timer_at: Option<Instant>,
    kinds: usize,
    /// Pub/sub: `PUBLISH channel $N\r\n` up to the payload, encoded once.
    publish_prefix: Vec<u8>,
    /// Pub/sub: what follows the timestamp in each payload (padding and the final CRLF).
    publish_suffix: Vec<u8>,
    /// Pub/sub: the start of a `message` push on the channel, for the in-place fast path.
    message_prefix: Vec<u8>,
}

/// A pub/sub payload starts with two little-endian u64s: the publish's intended and
/// actual send times in ns since the run's start.
pub const STAMP_LEN: usize = 16;

/// Write the timestamp of a PUBLISH.
fn stamp(intended_ns: u64, sent_ns: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(&intended_ns.to_le_bytes());
    out.extend_from_slice(&sent_ns.to_le_bytes());
}

/// Read a payload's timestamp: (intended, sent) in ns since the start. `None` for a
/// payload this run did not publish (too short, or times that cannot be: sent before it
/// was due, or after `now_ns`).
fn read_stamp(payload: &[u8], now_ns: u64) -> Option<(u64, u64)> {
    let intended = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    let sent = u64::from_le_bytes(payload.get(8..STAMP_LEN)?.try_into().ok()?);
    (intended <= sent && sent <= now_ns).then_some((intended, sent))
}

const TICK_COOKIE: u64 = 1;
const LIVE_WINDOW: Duration = Duration::from_millis(500);
/// A send due sooner than this is waited for by running another turn at once (spinning)
/// rather than by a timer (10 µs was tried: no CPU saved at 20k/s, and a higher p50).
const SPIN_BELOW: Duration = Duration::from_micros(50);

impl Client {
    /// The client for thread `info.shard`.
    pub fn new(info: ShardInfo, plan: Arc<Plan>, shared: Arc<Shared>) -> Self {
        let names = if plan.pubsub.is_some() {
            vec!["PUBLISH".to_string(), "DELIVERY".to_string()]
        } else {
            plan.workload.kind_names()
        };
        let quota = plan.requests.map(|n| {
            n / plan.shards as u64 + u64::from((info.shard as u64) < n % plan.shards as u64)
        });
        let measure_from = plan.start + plan.warmup;
        let (publish_prefix, publish_suffix, msg_prefix) = match &plan.pubsub {
            Some(p) => {
                let size = p.size.max(STAMP_LEN);
                let mut pre = Vec::new();
                let mut e =
                    coreshard_protocol::Encoder::new(&mut pre, coreshard_protocol::Protocol::Resp2);
                e.array(3);
                e.bulk(b"PUBLISH");
                e.bulk(p.channel.as_bytes());
                pre.extend_from_slice(format!("${size}\r\n").as_bytes());
                let mut suffix = vec![b'x'; size - STAMP_LEN];
                suffix.extend_from_slice(b"\r\n");
                (pre, suffix, message_prefix(p.channel.as_bytes()))
            }
            None => (Vec::new(), Vec::new(), Vec::new()),
        };
        Client {
            publish_prefix,
            publish_suffix,
            message_prefix: msg_prefix,
            shard: info.shard,
            kinds: names.len(),
            stats: RunStats {
                kinds: names.iter().map(|n| KindStats::new(n)).collect(),
                ..RunStats::default()
            },
            window: new_histogram(),
            window_start: Instant::now(),
            ids: Vec::new(),
            quota,
            sent: 0,
            stop_at: None,
            finished: false,
            measure_from,
            measured_until: None,
            reconnect: Vec::new(),
            completed_local: 0,
            timer_at: None,
            plan,
            shared,
        }
    }

    /// Whether `t` falls inside the measured window (so far).
    fn in_window(&self, t: Instant) -> bool {
        t >= self.measure_from && self.measured_until.is_none_or(|u| t <= u)
    }

    fn end_time(&self) -> Option<Instant> {
        self.plan.duration.map(|d| self.measure_from + d)
    }

    fn open(&mut self, ctx: &mut Ctx<Self>, index: usize, role: Role) {
        let plan = &self.plan;
        let schedule = match (plan.mode, role) {
            (Mode::Open { rate, .. }, Role::Requests) => {
                Some(Schedule::new(plan.start, rate, plan.connections, index))
            }
            (Mode::Open { rate, .. }, Role::Publisher) => {
                let publishers = plan.pubsub.as_ref().map_or(1, |p| p.publishers);
                let subs = plan.pubsub.as_ref().map_or(0, |p| p.subscribers);
                Some(Schedule::new(plan.start, rate, publishers, index - subs))
            }
            _ => None,
        };
        let conn = Conn {
            index,
            role,
            gen: Generator::new(
                &plan.workload,
                0x5eed ^ (index as u64).wrapping_mul(0x9e37_79b9),
            ),
            schedule,
            inflight: VecDeque::new(),
            backlog: VecDeque::new(),
            connected: false,
            subscribed: false,
        };
        match ctx.connect(plan.target, conn) {
            Ok(id) => self.ids.push(id),
            Err(_) => {
                self.reconnect
                    .push((Instant::now() + Duration::from_millis(100), index, role))
            }
        }
    }

    /// Send one request on `id` if the run still sends; returns whether it did.
    fn send_one(
        &mut self,
        ctx: &mut Ctx<Self>,
        id: ConnId,
        intended: Instant,
        now: Instant,
    ) -> bool {
        if self.stop_at.is_some() {
            return false;
        }
        let measured = intended >= self.measure_from;
        let plan = Arc::clone(&self.plan);
        let Some((conn, out)) = ctx.state_and_output(id) else {
            return false;
        };
        let kind = match conn.role {
            Role::Publisher => {
                if self.shared.subscribed.load(Ordering::Acquire)
                    < plan.pubsub.as_ref().map_or(0, |p| p.subscribers)
                {
                    return false;
                }
                // Encoded straight into the output: prefix, timestamp, padding.
                out.extend_from_slice(&self.publish_prefix);
                stamp(
                    intended.saturating_duration_since(plan.start).as_nanos() as u64,
                    now.saturating_duration_since(plan.start).as_nanos() as u64,
                    out,
                );
                out.extend_from_slice(&self.publish_suffix);
                self.shared.published.fetch_add(1, Ordering::Relaxed);
                0
            }
            _ => conn.gen.next(&plan.workload, out),
        };
        conn.inflight.push_back((intended, now, kind));
        if measured {
            self.sent += 1;
        }
        true
    }

    /// Open loop: send due requests while the connection has room in flight.
    fn pump(&mut self, ctx: &mut Ctx<Self>, id: ConnId, now: Instant) {
        let Mode::Open { pipeline, .. } = self.plan.mode else {
            return;
        };
        loop {
            let Some(conn) = ctx.state(id) else { return };
            if conn.inflight.len() >= pipeline.max(1) {
                return;
            }
            let Some(intended) = conn.backlog.pop_front() else {
                return;
            };
            if !self.send_one(ctx, id, intended, now) {
                return;
            }
        }
    }

    fn tick(&mut self, ctx: &mut Ctx<Self>) {
        let now = Instant::now();
        if self.finished {
            return;
        }
        // Reopen connections that closed or failed to connect.
        let due: Vec<(Instant, usize, Role)> = self
            .reconnect
            .iter()
            .copied()
            .filter(|r| r.0 <= now)
            .collect();
        self.reconnect.retain(|r| r.0 > now);
        for (_, index, role) in due {
            self.open(ctx, index, role);
        }
        let mut next_wake = now + LIVE_WINDOW;
        if self.stop_at.is_none() {
            if let Mode::Open { .. } = self.plan.mode {
                for i in 0..self.ids.len() {
                    let id = self.ids[i];
                    let Some(conn) = ctx.state(id) else { continue };
                    if !conn.connected {
                        continue;
                    }
                    if let Some(s) = conn.schedule.as_mut() {
                        let backlog = &mut conn.backlog;
                        s.due(now, |t| backlog.push_back(t));
                        next_wake = next_wake.min(s.peek());
                    }
                    self.pump(ctx, id, now);
                }
            }
            let out_of_time = self.end_time().is_some_and(|e| now >= e);
            let out_of_quota = self.quota.is_some_and(|q| self.sent >= q);
            if out_of_time || out_of_quota {
                self.stop_at = Some(now);
                self.measured_until = Some(now);
                // Requests that fell due in the window but never left (the connection
                // was still busy): an open loop that could not keep up.
                let from = self.measure_from;
                for &id in &self.ids {
                    if let Some(c) = ctx.state(id) {
                        self.stats.unsent +=
                            c.backlog.iter().filter(|&&t| t >= from && t <= now).count() as u64;
                    }
                }
            }
        }
        if let Some(stopped) = self.stop_at {
            let idle = self
                .ids
                .iter()
                .all(|&id| ctx.state(id).is_none_or(|c| c.inflight.is_empty()));
            let grace = if self.plan.pubsub.is_some() {
                self.plan.drain
            } else {
                Duration::ZERO
            };
            if (idle && now >= stopped + grace) || now >= stopped + self.plan.drain {
                self.finish(ctx, now);
                return;
            }
            next_wake = next_wake.min(stopped + self.plan.drain);
        }
        // Until the window ends; after it (the drain) there is nothing to send, and waking
        // "now" on every turn would spin the thread for the whole drain.
        if let Some(e) = self.end_time().filter(|_| self.stop_at.is_none()) {
            next_wake = next_wake.min(e.max(now));
        }
        if now.duration_since(self.window_start) >= LIVE_WINDOW {
            // 0 means "no replies in the last window" (a recorded latency is >= 1 µs).
            let p99 = if self.window.is_empty() {
                0
            } else {
                self.window.value_at_quantile(0.99)
            };
            self.shared.live_p99_ns[self.shard].store(p99, Ordering::Relaxed);
            self.window.reset();
            self.window_start = now;
        }
        if self.completed_local > 0 {
            self.shared
                .completed
                .fetch_add(self.completed_local, Ordering::Relaxed);
            self.completed_local = 0;
        }
        let wait = next_wake.saturating_duration_since(Instant::now());
        if wait < SPIN_BELOW {
            ctx.run_again();
        } else if self.timer_at.is_none_or(|t| t > next_wake) {
            ctx.set_timer(wait, TICK_COOKIE);
            self.timer_at = Some(next_wake);
        }
    }

    fn finish(&mut self, ctx: &mut Ctx<Self>, now: Instant) {
        self.finished = true;
        let until = self.measured_until.unwrap_or(now);
        self.stats.seconds = until
            .saturating_duration_since(self.measure_from)
            .as_secs_f64();
        for id in std::mem::take(&mut self.ids) {
            if let Some(c) = ctx.state(id) {
                // Unanswered at the end of the drain: lost, and counted.
                let lost = c
                    .inflight
                    .iter()
                    .filter(|r| r.0 >= self.measure_from)
                    .count();
                self.stats.lost_in_flight += lost as u64;
            }
            ctx.close(id);
        }
        self.shared
            .completed
            .fetch_add(self.completed_local, Ordering::Relaxed);
        self.completed_local = 0;
        if let Ok(mut r) = self.shared.results.lock() {
            r.push(std::mem::take(&mut self.stats));
        }
        self.shared.done.fetch_add(1, Ordering::AcqRel);
    }

    fn on_reply(
        &mut self,
        ctx: &mut Ctx<Self>,
        id: ConnId,
        frame: &[u8],
        error: bool,
        now: Instant,
    ) {
        let Some(conn) = ctx.state(id) else { return };
        if conn.role == Role::Subscriber {
            self.on_push(ctx, id, frame, now);
            return;
        }
        let Some((intended, sent, kind)) = conn.inflight.pop_front() else {
            return;
        };
        let closed_loop = matches!(self.plan.mode, Mode::Closed { .. });
        self.completed_local += 1;
        let corrected = now.saturating_duration_since(intended).as_nanos() as u64;
        if self.in_window(intended) {
            let service = now.saturating_duration_since(sent).as_nanos() as u64;
            if let Some(k) = self.stats.kinds.get_mut(kind.min(self.kinds - 1)) {
                k.record(corrected, service, error);
            }
        }
        if self.in_window(now) {
            // The achieved rate counts replies that arrived inside the window, whenever
            // their requests were meant to leave.
            self.stats.received_in_window += 1;
            if let Some(k) = self.stats.kinds.get_mut(kind.min(self.kinds - 1)) {
                k.received += 1;
            }
        }
        // The live p99 covers every reply (warm-up included), so the progress line shows
        // what the server is doing now.
        let _ = self.window.record(corrected.clamp(1_000, 100_000_000_000));
        if error {
            self.shared.errors.fetch_add(1, Ordering::Relaxed);
            let text = String::from_utf8_lossy(frame).trim_end().to_string();
            if self.stats.error_samples.len() < 5 && !self.stats.error_samples.contains(&text) {
                self.stats.error_samples.push(text);
            }
        }
        if closed_loop {
            self.send_one(ctx, id, now, now);
        } else {
            self.pump(ctx, id, now);
        }
    }

    fn on_push(&mut self, ctx: &mut Ctx<Self>, id: ConnId, frame: &[u8], now: Instant) {
        let Ok(Some((value, _))) = coreshard_protocol::parse_value(frame) else {
            return;
        };
        let items = match value {
            coreshard_protocol::Value::Array(v) | coreshard_protocol::Value::Push(v) => v,
            coreshard_protocol::Value::Error(e) => {
                // E.g. a server without pub/sub refusing SUBSCRIBE: never hidden.
                self.shared.errors.fetch_add(1, Ordering::Relaxed);
                if let Some(k) = self.stats.kinds.get_mut(1) {
                    k.errors += 1;
                }
                let text = format!("subscriber: -{e}");
                if self.stats.error_samples.len() < 5 && !self.stats.error_samples.contains(&text) {
                    self.stats.error_samples.push(text);
                }
                return;
            }
            _ => return,
        };
        let kind = match items.first() {
            Some(coreshard_protocol::Value::Bulk(b)) => b.clone(),
            _ => return,
        };
        if kind.eq_ignore_ascii_case(b"subscribe") {
            if let Some(c) = ctx.state(id) {
                if !c.subscribed {
                    c.subscribed = true;
                    self.shared.subscribed.fetch_add(1, Ordering::AcqRel);
                }
            }
        } else if kind.eq_ignore_ascii_case(b"message") {
            let Some(coreshard_protocol::Value::Bulk(payload)) = items.get(2) else {
                return;
            };
            let now_ns = now.saturating_duration_since(self.plan.start).as_nanos() as u64;
            self.on_delivery(payload, now, now_ns);
        }
    }

    /// One message reached a subscriber at `now` (`now_ns` since the start).
    fn on_delivery(&mut self, payload: &[u8], now: Instant, now_ns: u64) {
        let Some((intended, sent)) = read_stamp(payload, now_ns) else {
            return;
        };
        self.stats.delivered += 1;
        self.completed_local += 1;
        let in_window = self.in_window(now);
        let measured = intended >= self.warmup_ns();
        let corrected = now_ns - intended;
        if let Some(k) = self.stats.kinds.get_mut(1) {
            if in_window {
                k.received += 1;
            }
            if measured {
                k.record(corrected, now_ns - sent, false);
            }
        }
        let _ = self.window.record(corrected.clamp(1_000, 100_000_000_000));
    }

    /// The measured window's start, in ns since the run's start.
    fn warmup_ns(&self) -> u64 {
        self.plan.warmup.as_nanos() as u64
    }

    /// A subscriber's input: messages on the channel are taken in place; anything else
    /// (confirmations, errors, other shapes) goes through the full parser. Returns the
    /// bytes consumed.
    fn subscriber_data(
        &mut self,
        ctx: &mut Ctx<Self>,
        id: ConnId,
        data: &[u8],
        now: Instant,
    ) -> usize {
        let now_ns = now.saturating_duration_since(self.plan.start).as_nanos() as u64;
        let prefix = std::mem::take(&mut self.message_prefix);
        let mut pos = 0;
        while pos < data.len() {
            match delivery(&data[pos..], &prefix) {
                Delivery::Message { len, payload } => {
                    self.on_delivery(&data[pos + payload.start..pos + payload.end], now, now_ns);
                    pos += len;
                }
                Delivery::Incomplete => break,
                Delivery::Other => match next_frame(&data[pos..]) {
                    Ok(Some(f)) => {
                        self.on_push(ctx, id, &data[pos..pos + f.len], now);
                        pos += f.len;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        self.protocol_error(ctx, id, e);
                        pos = data.len();
                    }
                },
            }
        }
        self.message_prefix = prefix;
        pos
    }

    fn protocol_error(&mut self, ctx: &mut Ctx<Self>, id: ConnId, e: &str) {
        if self.stats.error_samples.len() < 5 {
            self.stats
                .error_samples
                .push(format!("protocol error from server: {e}"));
        }
        ctx.close(id);
    }
}

/// RESP-encode one command.
fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = coreshard_protocol::Encoder::new(&mut out, coreshard_protocol::Protocol::Resp2);
    e.array(args.len());
    args.iter().for_each(|a| e.bulk(a));
    out
}

impl Handler for Client {
    type Conn = Conn;
    type Msg = ();

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        let (total, subs) = match &self.plan.pubsub {
            Some(p) => (p.subscribers + p.publishers, p.subscribers),
            None => (self.plan.connections, 0),
        };
        for index in (self.shard..total).step_by(self.plan.shards) {
            let role = match &self.plan.pubsub {
                Some(_) if index < subs => Role::Subscriber,
                Some(_) => Role::Publisher,
                None => Role::Requests,
            };
            self.open(ctx, index, role);
        }
        self.tick(ctx);
    }

    fn on_open(&mut self, _ctx: &mut Ctx<Self>, _conn: ConnId, _peer: Option<SocketAddr>) -> Conn {
        unreachable_conn()
    }

    fn on_connected(&mut self, ctx: &mut Ctx<Self>, id: ConnId, result: std::io::Result<()>) {
        if result.is_err() {
            return; // on_close follows and schedules the retry
        }
        let plan = Arc::clone(&self.plan);
        let Some(conn) = ctx.state(id) else { return };
        conn.connected = true;
        match conn.role {
            Role::Subscriber => {
                let channel = plan.pubsub.as_ref().map_or("", |p| p.channel.as_str());
                ctx.write(id, &encode(&[b"SUBSCRIBE", channel.as_bytes()]));
            }
            _ => {
                if let Mode::Closed { pipeline } = plan.mode {
                    let now = Instant::now();
                    for _ in 0..pipeline {
                        self.send_one(ctx, id, now.max(plan.start), now);
                    }
                }
            }
        }
    }

    fn on_data(&mut self, ctx: &mut Ctx<Self>, id: ConnId, data: Input<'_>) -> usize {
        let now = Instant::now();
        let subscriber = match ctx.state(id) {
            Some(c) => c.role == Role::Subscriber,
            None => return data.len(),
        };
        if subscriber {
            return self.subscriber_data(ctx, id, &data, now);
        }
        let mut pos = 0;
        while pos < data.len() {
            match next_frame(&data[pos..]) {
                Ok(Some(f)) => {
                    self.on_reply(ctx, id, &data[pos..pos + f.len], f.error, now);
                    pos += f.len;
                }
                Ok(None) => break,
                Err(e) => {
                    self.protocol_error(ctx, id, e);
                    return data.len();
                }
            }
        }
        pos
    }

    fn on_message(&mut self, _ctx: &mut Ctx<Self>, _from: ShardId, _msg: ()) {}

    fn on_close(&mut self, _ctx: &mut Ctx<Self>, id: ConnId, state: Conn) {
        self.ids.retain(|&i| i != id);
        if self.finished {
            return;
        }
        // A connection lost mid-run: its outstanding requests are errors, and it is
        // reopened so the offered load stays what was asked for.
        let lost = state
            .inflight
            .iter()
            .filter(|r| self.in_window(r.0))
            .count() as u64;
        self.stats.lost_in_flight += lost;
        self.shared
            .errors
            .fetch_add(state.inflight.len() as u64, Ordering::Relaxed);
        if state.connected {
            self.stats.reconnects += 1;
            if state.role == Role::Subscriber {
                self.stats.subscriber_disconnects += 1;
                if state.subscribed {
                    self.shared.subscribed.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
        self.reconnect.push((
            Instant::now() + Duration::from_millis(100),
            state.index,
            state.role,
        ));
    }

    fn on_timer(&mut self, _ctx: &mut Ctx<Self>, cookie: u64) {
        if cookie == TICK_COOKIE {
            self.timer_at = None;
        }
    }

    fn on_turn_end(&mut self, ctx: &mut Ctx<Self>) {
        self.tick(ctx);
    }
}

/// The engine requires a default connection state; the harness never uses it.
impl Default for Conn {
    fn default() -> Self {
        unreachable_conn()
    }
}

/// The harness listens on nothing, so no connection is ever accepted.
fn unreachable_conn() -> Conn {
    Conn {
        index: usize::MAX,
        role: Role::Requests,
        gen: Generator::new(
            &Workload::set_get(0, 1, 1, crate::dist::KeyDist::Uniform, (1, 1), None),
            0,
        ),
        schedule: None,
        inflight: VecDeque::new(),
        backlog: VecDeque::new(),
        connected: false,
        subscribed: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_foreign_payloads_are_refused() {
        let mut p = Vec::new();
        stamp(1_000, 1_500, &mut p);
        assert_eq!(p.len(), STAMP_LEN);
        p.extend_from_slice(b"xxxx");
        assert_eq!(read_stamp(&p, 2_000), Some((1_000, 1_500)));
        // Sent after "now", sent before it was due, too short: not this run's.
        assert_eq!(read_stamp(&p, 1_400), None);
        let mut q = Vec::new();
        stamp(2_000, 1_000, &mut q);
        assert_eq!(read_stamp(&q, 5_000), None);
        assert_eq!(read_stamp(&p[..15], 5_000), None);
        assert_eq!(read_stamp(b"coreshard-bench pre-flight check", 5_000), None);
    }
}
