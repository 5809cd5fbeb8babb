//! Operations on a shard's data, and what crosses cores to run them elsewhere.
//!
//! A command runs in place when its shard owns the keys (arguments borrowed from the
//! receive buffer). Otherwise it travels to the owning shard as an `Op` with owned
//! arguments; values are `Bytes`, copied once out of the receive buffer and then shared.

use bytes::Bytes;
use coreshard_engine::{Ctx, ReplySlot};
use coreshard_protocol::Value;

use super::txn::{LockedEntry, TxnId, Write};
use super::Server;
use crate::commands::Spec;
use crate::db::Db;
use crate::glob::glob_match;

/// One shard's part of a command.
#[derive(Debug)]
pub enum Op<K> {
    /// A command whose keys all live on one shard, run by its keyed function.
    Cmd {
        spec: &'static Spec,
        args: Vec<Bytes>,
    },
    /// DEL / UNLINK: how many of these existed.
    Del(Vec<K>),
    /// EXISTS / TOUCH: how many of these exist (duplicates count).
    Exists(Vec<K>),
    /// MGET: these values, in order.
    MGet(Vec<K>),
    /// MSET: applied together on this shard.
    MSet(Vec<(K, Bytes)>),
    /// DBSIZE part.
    DbSize,
    /// FLUSHALL / FLUSHDB part.
    Flush,
    /// Counters for INFO.
    Report,
    /// `CLIENT LIST` lines for this shard's connections.
    ClientList(Box<crate::commands::client::Filter>),
    /// CLIENT KILL's part on one shard (runs in `run_part`: it closes connections).
    ClientKill(Box<crate::commands::client::Filter>),
    /// KEYS part: live keys matching the pattern.
    Keys(Bytes),
    /// SCAN part: one page of this shard's slots from `cursor`.
    Scan {
        cursor: u64,
        count: usize,
        pattern: Option<Bytes>,
        /// SCAN TYPE: only keys of this type (lower case).
        type_name: Option<Bytes>,
    },
    /// RANDOMKEY part: a random key of this shard and how many keys it has.
    RandomKey,
    /// Put back what a blocking pop took for a client that vanished meanwhile: `args` is
    /// the pushing command (LPUSH/RPUSH/ZADD, key at 1), run without the maxmemory check
    /// (the elements were there before).
    Restore { args: Vec<Bytes> },
    /// CLIENT UNBLOCK on the client's shard: end its blocking wait with a timeout reply
    /// (or an error); answers 1 if it was blocked.
    ClientUnblock { id: u64, error: bool },
    /// A plain value read (LCS gathers its two inputs this way).
    Read(K),
    /// WATCH part: register watchers of these keys; answers their versions and deadlines.
    Watch(Vec<K>),
    /// PUBLISH part: deliver to this shard's subscribers; answers how many got it.
    Publish {
        ns: crate::pubsub::Ns,
        channel: Bytes,
        message: Bytes,
    },
    /// PUBSUB CHANNELS / SHARDCHANNELS / NUMPAT part: this shard's names.
    PubsubNames {
        ns: crate::pubsub::Ns,
        pattern: Option<Bytes>,
    },
    /// PUBSUB NUMSUB / SHARDNUMSUB part: this shard's subscriber counts.
    PubsubCounts {
        ns: crate::pubsub::Ns,
        names: Vec<Bytes>,
    },
    /// CONFIG RESETSTAT part: zero this shard's statistics.
    ResetStat,
    /// SLOWLOG part: this shard's newest entries (GET), their number (LEN) or none left
    /// (RESET).
    Slowlog(SlowlogOp),
    /// LATENCY part: this shard's events (`None`), or forget the named ones (all if
    /// empty) and answer which existed.
    Latency(Option<Vec<String>>),
}

/// What SLOWLOG asks of each shard.
#[derive(Debug, Clone, Copy)]
pub enum SlowlogOp {
    /// The newest this many entries.
    Get(usize),
    /// How many entries.
    Len,
    /// Forget them.
    Reset,
}

/// Counters as they stood at the last CONFIG RESETSTAT, subtracted from what INFO shows
/// (the engine's and the keyspace's own counters only grow).
#[derive(Debug, Clone, Copy, Default)]
pub struct StatsBase {
    /// The engine's counters then.
    pub engine: coreshard_engine::ShardStats,
    /// Keys expired until then.
    pub expired: u64,
}

impl<K: AsRef<[u8]>> Op<K> {
    /// The keys this part touches (for lock checks).
    pub fn keys(&self) -> Vec<&[u8]> {
        match self {
            Op::Cmd { spec, args } => spec.key_positions(args).map(|i| &args[i][..]).collect(),
            Op::Del(ks) | Op::Exists(ks) | Op::MGet(ks) => ks.iter().map(|k| k.as_ref()).collect(),
            Op::MSet(kvs) => kvs.iter().map(|(k, _)| k.as_ref()).collect(),
            Op::Read(k) => vec![k.as_ref()],
            Op::Restore { args } => args.get(1).map(|k| &k[..]).into_iter().collect(),
            _ => Vec::new(),
        }
    }

    /// Whether this part needs the whole shard (a flush), so it waits for every lock.
    pub fn is_barrier(&self) -> bool {
        matches!(self, Op::Flush)
    }
}

impl Op<&[u8]> {
    /// Copy the keys so the operation can travel to another shard.
    pub fn into_owned(self) -> Op<Bytes> {
        let own = |k: &[u8]| Bytes::copy_from_slice(k);
        match self {
            Op::Cmd { spec, args } => Op::Cmd { spec, args },
            Op::Del(ks) => Op::Del(ks.into_iter().map(own).collect()),
            Op::Exists(ks) => Op::Exists(ks.into_iter().map(own).collect()),
            Op::MGet(ks) => Op::MGet(ks.into_iter().map(own).collect()),
            Op::MSet(kvs) => Op::MSet(kvs.into_iter().map(|(k, v)| (own(k), v)).collect()),
            Op::DbSize => Op::DbSize,
            Op::Flush => Op::Flush,
            Op::Report => Op::Report,
            Op::ClientList(f) => Op::ClientList(f.clone()),
            Op::ClientKill(f) => Op::ClientKill(f.clone()),
            Op::Keys(p) => Op::Keys(p),
            Op::Scan {
                cursor,
                count,
                pattern,
                type_name,
            } => Op::Scan {
                cursor,
                count,
                pattern,
                type_name,
            },
            Op::RandomKey => Op::RandomKey,
            Op::ClientUnblock { id, error } => Op::ClientUnblock { id, error },
            Op::Restore { args } => Op::Restore { args },
            Op::Read(k) => Op::Read(own(k)),
            Op::Watch(ks) => Op::Watch(ks.into_iter().map(own).collect()),
            Op::Publish {
                ns,
                channel,
                message,
            } => Op::Publish {
                ns,
                channel,
                message,
            },
            Op::PubsubNames { ns, pattern } => Op::PubsubNames { ns, pattern },
            Op::PubsubCounts { ns, names } => Op::PubsubCounts { ns, names },
            Op::ResetStat => Op::ResetStat,
            Op::Slowlog(op) => Op::Slowlog(op),
            Op::Latency(op) => Op::Latency(op),
        }
    }
}

/// Counters one shard contributes to INFO.
#[derive(Debug, Clone, Default)]
pub struct ShardReport {
    /// Which shard.
    pub shard: usize,
    /// Commands this shard ran, by command index, with their latency.
    pub cmdstats: Vec<(usize, crate::stats::CmdStat)>,
    /// Error replies this shard sent, by code.
    pub errors: Vec<(String, u64)>,
    /// Error replies this shard sent.
    pub error_replies: u64,
    /// This shard thread's CPU time, user and system, in microseconds.
    pub cpu_user_us: u64,
    /// See `cpu_user_us`.
    pub cpu_sys_us: u64,
    /// `io_uring_enter` calls.
    pub enters: u64,
    /// Completions handled.
    pub completions: u64,
    /// Messages received from shards.
    pub messages_in: u64,
    /// Message batches waiting in overflow queues.
    pub mail_backlog: u64,
    /// Due keys remain after the last expiry step (1) or not (0).
    pub expiry_backlog: u64,
    /// Keys held.
    pub keys: u64,
    /// Keys with a deadline.
    pub expires: u64,
    /// Keys removed by expiry.
    pub expired: u64,
    /// Connections open on the shard.
    pub clients: u64,
    /// Commands executed by the shard's connections.
    pub commands: u64,
    /// Connections accepted.
    pub accepted: u64,
    /// Connections refused over `maxclients`.
    pub rejected: u64,
    /// Reads that found their key.
    pub hits: u64,
    /// Reads that did not.
    pub misses: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Receives re-armed after the buffer ring ran dry.
    pub recv_buffer_exhausted: u64,
    /// Zero-copy send operations (`--send-zc-min`), and those the kernel copied anyway.
    pub zc_sends: u64,
    pub zc_copied: u64,
    /// Bytes the shard's keyspace structure holds (entries, index, expiry buckets).
    pub keyspace_bytes: u64,
    /// The shard's memory estimate, compared with its share of maxmemory.
    pub used_memory: u64,
    /// Keys evicted under maxmemory.
    pub evicted: u64,
    /// Clients dropped for their output buffer limit.
    pub output_limit_disconnections: u64,
    /// Clients of this shard blocked in a blocking pop.
    pub blocked_clients: u64,
    /// Keys of this shard that blocked clients wait on.
    pub blocking_keys: u64,
    /// Waits registered on this shard's keys (a client waiting on keys of three shards
    /// counts on each).
    pub waiters: u64,
}

/// The answer of one part.
#[derive(Debug)]
pub enum OpResult {
    /// `+OK`
    Ok,
    /// An integer.
    Int(i64),
    /// A value or nil.
    Value(Option<Bytes>),
    /// Values or nils, in request order.
    Values(Vec<Option<Bytes>>),
    /// Any other reply shape.
    Reply(Value),
    /// An error reply (text includes the code).
    Error(String),
    /// INFO counters.
    Report(Box<ShardReport>),
    /// SLOWLOG GET part: this shard's newest entries.
    Slow(Vec<crate::stats::SlowEntry>),
    /// LATENCY part: this shard's events.
    Latency(Vec<(String, crate::latency::Series)>),
    /// Text lines (CLIENT LIST).
    Text(String),
    /// KEYS part.
    Keys(Vec<Bytes>),
    /// SCAN part: the next cursor within the shard (0 = shard done) and the keys.
    ScanPage { next: u64, keys: Vec<Bytes> },
    /// RANDOMKEY part: a key and how many keys the shard holds.
    Random(Option<(Bytes, u64)>),
    /// Replies of several commands, as one array (EXEC).
    Multi(Vec<OpResult>),
    /// A null array (EXEC aborted by WATCH).
    NullArray,
    /// An array of bulk strings already encoded (the same bytes in RESP2 and RESP3): one
    /// buffer instead of an allocation per element (LRANGE, HKEYS...).
    Bulks(Vec<u8>),
    /// Field/value pairs, given flat: a flat array in RESP2, an array of two-element
    /// arrays in RESP3 (HRANDFIELD ... WITHVALUES, as Redis replies).
    Pairs(Vec<coreshard_protocol::Value>),
    /// WATCH part: each key's version and deadline (0: none or absent).
    Watched(Vec<(u64, u64)>),
    /// Counts by position (PUBSUB NUMSUB).
    Counts(Vec<i64>),
    /// Key → reply pairs: an array of two-element arrays in RESP2, a map in RESP3 (XREAD).
    KeyMap(Vec<(Value, Value)>),
}

/// Messages between shards.
#[derive(Debug)]
pub enum Msg {
    /// Run `op` and answer with a `Reply` carrying the same `slot` and `part` (no answer
    /// without a slot: nobody waits for it).
    Request {
        slot: Option<ReplySlot>,
        part: u32,
        op: Op<Bytes>,
    },
    /// The result of a `Request`, for the connection's shard to fold into the reply.
    Reply {
        slot: ReplySlot,
        part: u32,
        result: OpResult,
        /// What the part published (a script's or transaction's messages), for the
        /// connection's shard to send in the connection's order (`publish_order`).
        messages: Vec<crate::notify::Message>,
    },
    /// Lock `keys` (with `all`: the whole shard) for a cross-shard transaction, then
    /// answer `Locked` with their entries.
    Lock {
        txn: TxnId,
        keys: Vec<Bytes>,
        all: bool,
    },
    /// The keys are locked; what each one holds.
    Locked {
        txn: TxnId,
        entries: Vec<LockedEntry>,
    },
    /// Flush first if `flush`, apply `writes` and release the transaction's locks here;
    /// with `snapshot`, first copy this shard's keys for that snapshot.
    Commit {
        txn: TxnId,
        writes: Vec<Write>,
        flush: bool,
        snapshot: Option<u64>,
        /// The command its writes are notified as.
        event: &'static str,
        /// The events to publish instead, when the commands' own are known.
        events: Option<Vec<(&'static str, Bytes)>>,
    },
    /// A shard finished (or failed) writing its part of a snapshot.
    SnapshotPart { id: u64, error: Option<String> },
    /// A connection stopped watching these keys (no answer).
    Unwatch { keys: Vec<Bytes> },
    /// The sending shard gained (`on`) or lost interest in a channel or pattern; with
    /// `announce`, answer `InterestAck` once applied.
    Interest {
        ns: crate::pubsub::Ns,
        name: Bytes,
        on: bool,
        announce: Option<u64>,
    },
    /// A shard applied announcement `id`.
    InterestAck { id: u64 },
    /// Blocking pops (see [`super::blocking`]).
    Block(super::blocking::BlockMsg),
    /// A keyspace notification, or a message a transaction or script published, for this
    /// shard's subscribers (no answer).
    Notify {
        ns: crate::pubsub::Ns,
        channel: Bytes,
        message: Bytes,
        /// An overflow mark (`notify::Message::overflow`).
        overflow: bool,
    },
}

/// Encode `n` byte strings as one RESP array of bulk strings ([`OpResult::Bulks`]).
pub fn bulk_array<T: AsRef<[u8]>>(n: usize, items: impl Iterator<Item = T>) -> OpResult {
    let mut w = BulkArray::new(n);
    for item in items.take(n) {
        w.push(item.as_ref());
    }
    w.finish()
}

/// A RESP array of `n` bulk strings being encoded, item by item ([`bulk_array`] for an
/// iterator; `push` directly from a loop that lends its items).
pub struct BulkArray {
    out: Vec<u8>,
    n: usize,
    written: usize,
}

impl BulkArray {
    /// An array that will hold `n` items.
    pub fn new(n: usize) -> BulkArray {
        let mut out = Vec::with_capacity(16 + n * 16);
        out.push(b'*');
        out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        out.extend_from_slice(b"\r\n");
        BulkArray { out, n, written: 0 }
    }

    /// The next item (items beyond `n` are ignored).
    #[inline]
    pub fn push(&mut self, item: &[u8]) {
        if self.written == self.n {
            return;
        }
        self.written += 1;
        let len = item.len();
        // Short lengths (most elements) without the general integer formatting.
        if len < 10 {
            self.out
                .extend_from_slice(&[b'$', b'0' + len as u8, b'\r', b'\n']);
        } else if len < 100 {
            let (t, u) = ((len / 10) as u8, (len % 10) as u8);
            self.out
                .extend_from_slice(&[b'$', b'0' + t, b'0' + u, b'\r', b'\n']);
        } else {
            self.out.push(b'$');
            self.out
                .extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
            self.out.extend_from_slice(b"\r\n");
        }
        self.out.extend_from_slice(item);
        self.out.extend_from_slice(b"\r\n");
    }

    /// The encoded array. Fewer items than announced (a caller's bug) are padded with nils
    /// so the frame stays valid.
    pub fn finish(mut self) -> OpResult {
        for _ in self.written..self.n {
            self.out.extend_from_slice(b"$-1\r\n");
        }
        OpResult::Bulks(self.out)
    }
}

/// The calling thread's CPU time, user and system, in microseconds.
pub fn thread_cpu_us() -> (u64, u64) {
    use nix::sys::resource::{getrusage, UsageWho};
    let us = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
    getrusage(UsageWho::RUSAGE_THREAD).map_or((0, 0), |u| (us(u.user_time()), us(u.system_time())))
}

/// The process's CPU time (all threads), user and system, in microseconds.
pub fn process_cpu_us() -> (u64, u64) {
    use nix::sys::resource::{getrusage, UsageWho};
    let us = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
    getrusage(UsageWho::RUSAGE_SELF).map_or((0, 0), |u| (us(u.user_time()), us(u.system_time())))
}

/// Unix time in milliseconds.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Server {
    /// Run one part on this shard's data.
    pub fn apply<K: AsRef<[u8]>>(&mut self, ctx: &mut Ctx<Server>, op: Op<K>) -> OpResult {
        self.clock_at_least(ctx.now());
        let now = self.now_ms();
        let limits = self.config.limits;
        if matches!(&op, Op::Cmd { spec, .. } if spec.long) {
            // Before a script, whose run may send this turn's replies: events first.
            self.send_events(ctx);
        }
        let db: &mut Db = &mut self.db;
        match op {
            Op::Cmd { spec, args } => match spec.keyed {
                Some(f) => super::busy::run_keyed(ctx, db, limits, spec, f, now, &args),
                None => OpResult::Error("ERR internal: command has no keyed form".into()),
            },
            Op::Del(ks) => {
                db.events.cmd = "del";
                OpResult::Int(
                    ks.iter()
                        .filter(|k| db.remove(k.as_ref(), now).is_some())
                        .count() as i64,
                )
            }
            Op::Exists(ks) => {
                // Counted as Redis counts it (hits, misses, `keymiss`), without an access.
                OpResult::Int(ks.iter().filter(|k| db.exists(k.as_ref(), now)).count() as i64)
            }
            Op::MGet(ks) => OpResult::Values(
                ks.iter()
                    .map(|k| db.read_bytes_or_nil(k.as_ref(), now))
                    .collect(),
            ),
            Op::Read(k) => match db.read_bytes(k.as_ref(), now) {
                Ok(v) => OpResult::Value(v),
                Err(w) => w.into(),
            },
            Op::Publish { .. } => OpResult::Error("ERR internal: PUBLISH runs in run_part".into()),
            Op::PubsubNames { ns, pattern } => {
                OpResult::Keys(self.pubsub.names(ns, pattern.as_deref()))
            }
            Op::PubsubCounts { ns, names } => OpResult::Counts(
                names
                    .iter()
                    .map(|n| self.pubsub.count(ns, n) as i64)
                    .collect(),
            ),
            Op::Watch(ks) => OpResult::Watched(
                ks.iter()
                    .map(|k| {
                        let k = k.as_ref();
                        (db.watch.watch(k), db.deadline(k, now).unwrap_or(0))
                    })
                    .collect(),
            ),
            Op::MSet(kvs) => {
                db.events.cmd = "mset";
                if let Err(oom) = crate::evict::make_room(db, now) {
                    return oom.into();
                }
                for (k, v) in kvs {
                    db.write(k.as_ref(), &crate::db::Value::Shared(v), 0, now);
                }
                OpResult::Ok
            }
            Op::DbSize => OpResult::Int(db.len() as i64),
            Op::Flush => {
                db.clear(now);
                OpResult::Ok
            }
            // KEYS walks in bounded steps through `Server::run_part`, never here.
            Op::Keys(_) => OpResult::Error("ERR internal: KEYS runs in steps".into()),
            Op::Scan {
                cursor,
                count,
                pattern,
                type_name,
            } => {
                let mut keys = Vec::new();
                let next = db.scan(cursor, count, now, |k, v| {
                    let type_ok = type_name.as_ref().is_none_or(|t| {
                        let actual = match v {
                            coreshard_engine::ttl::Stored::Bytes(_) => "string",
                            coreshard_engine::ttl::Stored::Object(o) => o.type_name(),
                        };
                        t[..] == *actual.as_bytes()
                    });
                    let pat_ok = pattern.as_ref().is_none_or(|p| glob_match(p, k, false));
                    if type_ok && pat_ok {
                        keys.push(Bytes::copy_from_slice(k));
                    }
                });
                OpResult::ScanPage { next, keys }
            }
            Op::RandomKey => {
                let n = db.len() as u64;
                let key = db.random_key(now, || self.rng.next());
                OpResult::Random(key.map(|k| (Bytes::from(k), n)))
            }
            Op::Report => {
                let s = ctx.stats();
                let base = self.stats_base;
                let (errors, error_replies) = crate::stats::error_stats();
                let (cpu_user_us, cpu_sys_us) = thread_cpu_us();
                OpResult::Report(Box::new(ShardReport {
                    shard: self.shard,
                    cmdstats: self.cmd_stats.used(),
                    errors,
                    error_replies,
                    cpu_user_us,
                    cpu_sys_us,
                    enters: s.enters - base.engine.enters,
                    completions: s.completions - base.engine.completions,
                    messages_in: s.messages_in - base.engine.messages_in,
                    mail_backlog: ctx.mail_backlog() as u64,
                    expiry_backlog: u64::from(self.expire_backlog),
                    keys: db.len() as u64,
                    expires: db.with_deadline() as u64,
                    expired: db.expired_total() - base.expired,
                    clients: (ctx.local_connections() as u64).saturating_sub(self.http_conns),
                    commands: self.commands_processed,
                    accepted: s.accepted - base.engine.accepted,
                    rejected: s.rejected - base.engine.rejected,
                    hits: db.hits,
                    misses: db.misses,
                    bytes_in: s.bytes_in - base.engine.bytes_in,
                    bytes_out: s.bytes_out - base.engine.bytes_out,
                    recv_buffer_exhausted: s.recv_buffer_exhausted
                        - base.engine.recv_buffer_exhausted,
                    zc_sends: s.zc_sends - base.engine.zc_sends,
                    zc_copied: s.zc_copied - base.engine.zc_copied,
                    keyspace_bytes: db.structure_bytes() as u64,
                    used_memory: crate::evict::used(db) as u64,
                    evicted: db.evict.evicted,
                    output_limit_disconnections: self.pubsub.disconnections,
                    blocked_clients: self.blocked_clients() as u64,
                    blocking_keys: self.blocking_counts().0 as u64,
                    waiters: self.blocking_counts().1 as u64,
                }))
            }
            Op::ClientList(f) => OpResult::Text(crate::commands::client::list_lines(ctx, None, &f)),
            Op::ResetStat => {
                self.stats_base = StatsBase {
                    engine: ctx.stats(),
                    expired: db.expired_total(),
                };
                db.hits = 0;
                db.misses = 0;
                db.evict.evicted = 0;
                self.commands_processed = 0;
                self.pubsub.disconnections = 0;
                self.cmd_stats.reset();
                crate::stats::reset_errors();
                OpResult::Ok
            }
            Op::Latency(None) => OpResult::Latency(self.latency.events()),
            Op::Latency(Some(names)) => OpResult::Keys(
                self.latency
                    .reset(&names)
                    .into_iter()
                    .map(Bytes::from)
                    .collect(),
            ),
            Op::Slowlog(SlowlogOp::Get(n)) => OpResult::Slow(self.slowlog.newest(n)),
            Op::Slowlog(SlowlogOp::Len) => OpResult::Int(self.slowlog.len() as i64),
            Op::Slowlog(SlowlogOp::Reset) => {
                self.slowlog.clear();
                OpResult::Ok
            }
            Op::Restore { args } => {
                match crate::commands::lookup(&args[0]).and_then(|s| s.keyed.map(|f| (s, f))) {
                    Some((spec, f)) => {
                        db.events.cmd = spec.name;
                        f(db, now, &args)
                    }
                    None => OpResult::Error("ERR internal: nothing restores this".into()),
                }
            }
            Op::ClientUnblock { .. } | Op::ClientKill(_) => {
                OpResult::Error("ERR internal: CLIENT UNBLOCK and KILL run in run_part".into())
            }
        }
    }
}
