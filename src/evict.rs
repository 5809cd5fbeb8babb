//! `maxmemory`: each shard keeps its keyspace within its share of the limit by evicting
//! keys, with Redis 7's policies, sampling and error text.
//!
//! - **Limit.** `maxmemory / shards` per shard, compared with the shard's own estimate of
//!   its keyspace ([`TtlMap::used_bytes`]: entries, index, expiry buckets, and the heap
//!   blocks of keys and values as malloc rounds them), which the map keeps as entries
//!   change, so a check is O(1). Client buffers, rings and the allocator's own slack are
//!   not counted.
//! - **When.** Before a command flagged `denyoom` runs on the shard that owns its keys
//!   ([`run_keyed`], also MSET's per-shard part and commands queued in MULTI), and in
//!   the background between I/O while a shard is over its share ([`background_step`],
//!   stepped with active expiry).
//! - **How much.** At most [`EVICT_PER_CALL`] keys per command (bounded latency, as Redis
//!   bounds its eviction loop by time). If that was not enough but keys were evicted, the
//!   command runs and the shard keeps evicting between I/O, like Redis's `EVICT_RUNNING`.
//!   If nothing can be evicted (policy `noeviction`, or a `volatile-*` policy and no key
//!   with a TTL left) the command gets [`OOM`].
//! - **Whom.** `allkeys-*` / `volatile-*` sample `maxmemory-samples` random keys (all, or
//!   only those with a TTL) per eviction into a pool of the 16 best candidates kept across
//!   evictions (Redis's eviction pool): the longest idle (LRU) or least frequently used
//!   (LFU, logarithmic counter with decay); `*-random` take one random key; `volatile-ttl`
//!   takes the soonest-expiring keys straight from the expiry buckets (exact to their
//!   100 ms, where Redis samples). Evictions go through [`Db::remove`], so WATCH and the
//!   log see them, and count as `evicted_keys`.
//!
//! The settings are shared by every shard through atomics ([`MemoryConfig`]), so CONFIG
//! SET applies everywhere without messages; a shard picks up a policy change before its
//! next keyed command or within one active-expiry tick.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use coreshard_engine::ttl::{access, Access, Sampled, TtlMap};

use crate::commands::multi::Queued;
use crate::commands::{Args, KeyedFn, Spec};
use crate::db::Db;
use crate::server::ops::{unix_ms, OpResult};
use crate::server::{ArgList, Server};

/// Redis's refusal of a command that may grow memory while the limit is reached.
pub const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";

/// Keys one command may evict before it runs (its latency stays bounded).
pub const EVICT_PER_CALL: usize = 64;
/// Keys one background step may evict before yielding to I/O.
pub const EVICT_PER_STEP: usize = 256;
/// Candidates kept between evictions (Redis's `EVPOOL_SIZE`).
const POOL_SIZE: usize = 16;

/// A `maxmemory-policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Refuse commands that may grow memory (the default).
    #[default]
    NoEviction,
    /// Evict the least recently used key.
    AllkeysLru,
    /// Evict the least frequently used key.
    AllkeysLfu,
    /// Evict a random key.
    AllkeysRandom,
    /// Evict the least recently used key with a TTL.
    VolatileLru,
    /// Evict the least frequently used key with a TTL.
    VolatileLfu,
    /// Evict a random key with a TTL.
    VolatileRandom,
    /// Evict the key with the nearest expire time.
    VolatileTtl,
}

impl Policy {
    /// Every policy, in the order Redis lists them in its CONFIG SET error.
    pub const ALL: [Policy; 8] = [
        Policy::VolatileLru,
        Policy::VolatileLfu,
        Policy::VolatileRandom,
        Policy::VolatileTtl,
        Policy::AllkeysLru,
        Policy::AllkeysLfu,
        Policy::AllkeysRandom,
        Policy::NoEviction,
    ];

    /// The name as redis.conf spells it.
    pub fn name(self) -> &'static str {
        match self {
            Policy::NoEviction => "noeviction",
            Policy::AllkeysLru => "allkeys-lru",
            Policy::AllkeysLfu => "allkeys-lfu",
            Policy::AllkeysRandom => "allkeys-random",
            Policy::VolatileLru => "volatile-lru",
            Policy::VolatileLfu => "volatile-lfu",
            Policy::VolatileRandom => "volatile-random",
            Policy::VolatileTtl => "volatile-ttl",
        }
    }

    /// A policy by name, ignoring case.
    pub fn parse(s: &str) -> Option<Policy> {
        Policy::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
    }

    /// Whether only keys with a TTL may be evicted.
    pub fn volatile(self) -> bool {
        matches!(
            self,
            Policy::VolatileLru
                | Policy::VolatileLfu
                | Policy::VolatileRandom
                | Policy::VolatileTtl
        )
    }

    /// Whether keys record access frequency (LFU) rather than recency.
    pub fn is_lfu(self) -> bool {
        matches!(self, Policy::AllkeysLfu | Policy::VolatileLfu)
    }

    /// Whether keys record access recency or frequency for eviction (LRU or LFU), which
    /// also stops Redis from sharing small integers.
    pub fn tracks_access(self) -> bool {
        matches!(
            self,
            Policy::AllkeysLru | Policy::VolatileLru | Policy::AllkeysLfu | Policy::VolatileLfu
        )
    }

    fn index(self) -> u8 {
        Policy::ALL.iter().position(|&p| p == self).unwrap_or(0) as u8
    }

    fn from_index(i: u8) -> Policy {
        Policy::ALL
            .get(usize::from(i))
            .copied()
            .unwrap_or(Policy::NoEviction)
    }
}

/// `clap` parser for `--maxmemory-policy`.
pub fn parse_policy(s: &str) -> Result<Policy, String> {
    Policy::parse(s).ok_or_else(|| {
        let names: Vec<&str> = Policy::ALL.iter().map(|p| p.name()).collect();
        format!("must be one of: {}", names.join(", "))
    })
}

/// Shards whose out-of-memory state is published (more shards are never reported out of
/// memory to the others; each still refuses its own commands).
const MAX_FLAGGED_SHARDS: usize = 1024;

/// The memory settings, shared by every shard; CONFIG SET changes them in place. Also
/// where each shard publishes whether it is out of memory (over its share with nothing to
/// evict), so a shard can refuse MULTI work bound for another one without asking it.
#[derive(Debug)]
pub struct MemoryConfig {
    maxmemory: AtomicUsize,
    policy: AtomicU8,
    samples: AtomicUsize,
    lfu_log_factor: AtomicU32,
    lfu_decay_time: AtomicU32,
    /// One bit per shard: out of memory at its last check. Written only on change.
    oom: [AtomicU64; MAX_FLAGGED_SHARDS / 64],
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig::new(0, Policy::NoEviction, 5, 10, 1)
    }
}

impl MemoryConfig {
    /// Settings with these values.
    pub fn new(
        maxmemory: usize,
        policy: Policy,
        samples: usize,
        lfu_log_factor: u32,
        lfu_decay_time: u32,
    ) -> Self {
        MemoryConfig {
            maxmemory: AtomicUsize::new(maxmemory),
            policy: AtomicU8::new(policy.index()),
            samples: AtomicUsize::new(samples.max(1)),
            lfu_log_factor: AtomicU32::new(lfu_log_factor),
            lfu_decay_time: AtomicU32::new(lfu_decay_time),
            oom: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Whether `shard` was out of memory at its last check (at most one active-expiry
    /// tick old).
    pub fn is_oom(&self, shard: usize) -> bool {
        self.oom
            .get(shard / 64)
            .is_some_and(|w| w.load(Relaxed) & (1 << (shard % 64)) != 0)
    }

    fn publish_oom(&self, shard: usize, oom: bool) {
        if let Some(w) = self.oom.get(shard / 64) {
            let bit = 1u64 << (shard % 64);
            if oom {
                w.fetch_or(bit, Relaxed);
            } else {
                w.fetch_and(!bit, Relaxed);
            }
        }
    }

    /// The limit in bytes for the whole server (0 = none).
    pub fn maxmemory(&self) -> usize {
        self.maxmemory.load(Relaxed)
    }

    /// The eviction policy.
    pub fn policy(&self) -> Policy {
        Policy::from_index(self.policy.load(Relaxed))
    }

    /// Keys sampled per eviction.
    pub fn samples(&self) -> usize {
        self.samples.load(Relaxed)
    }

    /// `lfu-log-factor`.
    pub fn lfu_log_factor(&self) -> u32 {
        self.lfu_log_factor.load(Relaxed)
    }

    /// `lfu-decay-time` in minutes.
    pub fn lfu_decay_time(&self) -> u32 {
        self.lfu_decay_time.load(Relaxed)
    }

    /// Set the limit (0 = none).
    pub fn set_maxmemory(&self, bytes: usize) {
        self.maxmemory.store(bytes, Relaxed);
    }

    /// Set the policy.
    pub fn set_policy(&self, policy: Policy) {
        self.policy.store(policy.index(), Relaxed);
    }

    /// Set the sample count (at least 1).
    pub fn set_samples(&self, n: usize) {
        self.samples.store(n.max(1), Relaxed);
    }

    /// Set `lfu-log-factor`.
    pub fn set_lfu_log_factor(&self, f: u32) {
        self.lfu_log_factor.store(f, Relaxed);
    }

    /// Set `lfu-decay-time`.
    pub fn set_lfu_decay_time(&self, minutes: u32) {
        self.lfu_decay_time.store(minutes, Relaxed);
    }

    /// How keys record accesses under the current policy.
    pub fn access(&self) -> Access {
        if self.policy().is_lfu() {
            Access::Lfu {
                log_factor: self.lfu_log_factor(),
                decay_minutes: self.lfu_decay_time(),
            }
        } else {
            Access::Lru
        }
    }
}

/// An eviction candidate: the higher the score, the better to evict.
#[derive(Debug)]
struct Candidate {
    score: u64,
    key: Box<[u8]>,
}

/// A shard's eviction state: the shared settings, the candidate pool and counters.
#[derive(Debug)]
pub struct Evictor {
    config: Arc<MemoryConfig>,
    shard: usize,
    shards: usize,
    /// What this shard last published as its out-of-memory state.
    oom: bool,
    /// Ascending by score: the best candidate is last.
    pool: Vec<Candidate>,
    /// The policy the pool's scores were computed under.
    pool_policy: Policy,
    rng: u64,
    /// Keys evicted so far.
    pub evicted: u64,
}

/// The settings of a `Db` that no server configured (EXEC's scratch keyspace, tests): no
/// limit. Shared, so such a `Db` costs no allocation for it.
static UNLIMITED: std::sync::LazyLock<Arc<MemoryConfig>> = std::sync::LazyLock::new(Arc::default);

impl Default for Evictor {
    fn default() -> Self {
        Evictor::new(Arc::clone(&UNLIMITED), 0, 1)
    }
}

impl Evictor {
    /// Shard `shard`'s evictor under the shared `config`, one of `shards` shards.
    pub fn new(config: Arc<MemoryConfig>, shard: usize, shards: usize) -> Self {
        Evictor {
            config,
            shard,
            oom: false,
            shards: shards.max(1),
            pool: Vec::new(),
            pool_policy: Policy::NoEviction,
            rng: 0x2545_F491_4F6C_DD1D ^ (shard as u64 + 1).wrapping_mul(0x9E37_79B9),
            evicted: 0,
        }
    }

    /// The shared settings.
    pub fn config(&self) -> &MemoryConfig {
        &self.config
    }

    /// This shard's share of `maxmemory` in bytes (0 = no limit).
    pub fn limit(&self) -> usize {
        match self.config.maxmemory() {
            0 => 0,
            m => (m / self.shards).max(1),
        }
    }

    /// Publish this shard's out-of-memory state if it changed.
    fn note_oom(&mut self, oom: bool) {
        if self.oom != oom {
            self.oom = oom;
            self.config.publish_oom(self.shard, oom);
        }
    }
}

/// `db` with the evictor of shard `shard` of `shards` under the shared `config`.
pub fn attach(mut db: Db, config: &Arc<MemoryConfig>, shard: usize, shards: usize) -> Db {
    db.evict = Evictor::new(Arc::clone(config), shard, shards);
    sync_access(&mut db);
    db
}

/// Make the map record accesses the way the current policy reads them.
pub fn sync_access(db: &mut Db) {
    let want = db.evict.config.access();
    if db.keyspace().access() != want {
        db.set_access(want);
    }
}

/// Why a command was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oom;

impl From<Oom> for OpResult {
    fn from(_: Oom) -> OpResult {
        OpResult::Error(OOM.to_string())
    }
}

/// Run a keyed command on the shard owning its keys: first, if it is flagged `denyoom`
/// and the shard is over its share, make room (or refuse it with [`OOM`]).
pub fn run_keyed(db: &mut Db, spec: &Spec, f: KeyedFn, now: u64, args: &dyn ArgList) -> OpResult {
    sync_access(db);
    if db.evict.limit() > 0 && spec.flags.contains(&"denyoom") {
        if let Err(oom) = make_room(db, now) {
            return oom.into();
        }
    }
    f(db, now, args)
}

/// The shard's memory estimate (see [`TtlMap::used_bytes`]).
pub fn used(db: &Db) -> usize {
    db.keyspace().used_bytes()
}

/// Before a command that may grow memory: if the shard is over its share, evict (at most
/// [`EVICT_PER_CALL`] keys). `Err` when over and nothing can be evicted.
pub fn make_room(db: &mut Db, now: u64) -> Result<(), Oom> {
    let limit = db.evict.limit();
    if limit == 0 || used(db) <= limit {
        db.evict.note_oom(false);
        return Ok(());
    }
    sync_access(db);
    let failed = evict(db, now, limit, EVICT_PER_CALL) == Outcome::Failed;
    db.evict.note_oom(failed);
    if failed {
        Err(Oom)
    } else {
        Ok(())
    }
}

/// One bounded background step while the shard is over its share (run between I/O with
/// active expiry, at least every 50 ms). Returns whether to step again soon.
pub fn background_step(db: &mut Db, now: u64) -> bool {
    // Also how a shard without keyed traffic picks up a policy change.
    sync_access(db);
    let limit = db.evict.limit();
    if limit == 0 || used(db) <= limit {
        db.evict.note_oom(false);
        return false;
    }
    let outcome = evict(db, now, limit, EVICT_PER_STEP);
    db.evict.note_oom(outcome == Outcome::Failed);
    outcome == Outcome::Running
}

/// How an eviction run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Within the limit.
    Under,
    /// Still over, but keys can still be evicted (the budget ran out).
    Running,
    /// Still over and nothing can be evicted.
    Failed,
}

/// What the policy picked.
enum Pick {
    /// Evict this key.
    Key(Vec<u8>),
    /// No key qualifies (none at all, or none with a TTL for `volatile-*`).
    Nothing,
    /// Keys qualify but sampling found none this time (a very sparse arena).
    Missed,
}

/// Evict keys until the shard is within `limit` or `budget` keys were tried.
fn evict(db: &mut Db, now: u64, limit: usize, budget: usize) -> Outcome {
    let policy = db.evict.config.policy();
    if policy == Policy::NoEviction {
        return Outcome::Failed;
    }
    for _ in 0..budget {
        if used(db) <= limit {
            return Outcome::Under;
        }
        match pick(db, policy, now) {
            Pick::Key(key) => {
                // A key already expired is reclaimed as expired, not counted as evicted.
                // Announced as `evicted`, whatever command made room.
                let cmd = std::mem::replace(&mut db.events.cmd, "evicted");
                if db.remove(&key, now).is_some() {
                    db.evict.evicted += 1;
                }
                db.events.cmd = cmd;
            }
            Pick::Nothing => return Outcome::Failed,
            Pick::Missed => return Outcome::Running,
        }
    }
    if used(db) <= limit {
        Outcome::Under
    } else {
        Outcome::Running
    }
}

/// The next key to evict under `policy`.
fn pick(db: &mut Db, policy: Policy, now: u64) -> Pick {
    let volatile = policy.volatile();
    let qualifying = if volatile {
        db.with_deadline()
    } else {
        db.len()
    };
    if qualifying == 0 {
        return Pick::Nothing;
    }
    let samples = db.evict.config.samples();
    let mut rng = db.evict.rng;
    let mut rand = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let map = db.keyspace();
    let picked = match policy {
        Policy::AllkeysRandom | Policy::VolatileRandom => {
            let mut key = None;
            map.sample(1, volatile, now, &mut rand, |s| key = Some(s.key.to_vec()));
            key
        }
        Policy::VolatileTtl => {
            let mut best: Option<(u64, Vec<u8>)> = None;
            map.soonest(samples, |s| {
                if best.as_ref().is_none_or(|(d, _)| s.deadline < *d) {
                    best = Some((s.deadline, s.key.to_vec()));
                }
            });
            best.map(|(_, k)| k)
        }
        _ => {
            let decay = db.evict.config.lfu_decay_time();
            let mut pool = std::mem::take(&mut db.evict.pool);
            if db.evict.pool_policy != policy {
                pool.clear();
            }
            let map = db.keyspace();
            map.sample(samples, volatile, now, &mut rand, |s| {
                offer(&mut pool, score(policy, s, now, decay), s.key)
            });
            let key = best_in_pool(&mut pool, map, volatile, now);
            db.evict.pool = pool;
            db.evict.pool_policy = policy;
            key
        }
    };
    db.evict.rng = rand();
    match picked {
        Some(key) => Pick::Key(key),
        None => Pick::Missed,
    }
}

/// How good a candidate `s` is to evict under `policy` (higher is better).
fn score(policy: Policy, s: Sampled<'_>, now: u64, decay: u32) -> u64 {
    if policy.is_lfu() {
        255 - u64::from(access::lfu_counter(s.stamp, now, decay))
    } else {
        access::idle_ms(s.stamp, now)
    }
}

/// Put a sampled key into the pool if it beats the worst candidate (or there is room),
/// keeping the pool sorted and at most [`POOL_SIZE`] long (Redis's
/// `evictionPoolPopulate`).
fn offer(pool: &mut Vec<Candidate>, score: u64, key: &[u8]) {
    if pool.iter().any(|c| &c.key[..] == key) {
        return;
    }
    let mut at = pool.partition_point(|c| c.score < score);
    if pool.len() == POOL_SIZE {
        if at == 0 {
            return;
        }
        pool.remove(0);
        at -= 1;
    }
    pool.insert(
        at,
        Candidate {
            score,
            key: key.into(),
        },
    );
}

/// Take the best candidate that still exists (and still has a TTL, for `volatile`).
fn best_in_pool(
    pool: &mut Vec<Candidate>,
    map: &TtlMap<crate::types::Obj>,
    volatile: bool,
    now: u64,
) -> Option<Vec<u8>> {
    while let Some(c) = pool.pop() {
        let alive = map
            .peek(&c.key, now)
            .is_some_and(|p| !volatile || p.deadline != 0);
        if alive {
            return Some(c.key.into_vec());
        }
    }
    None
}

/// Whether any shard owning one of `keys` (this one when there are none) is out of
/// memory: this shard is checked (and evicts) now; others by the state they published
/// at their last check.
fn out_of_memory<'a>(s: &mut Server, keys: impl Iterator<Item = &'a [u8]>) -> bool {
    let mut owners: Vec<usize> = keys.map(|k| s.slots.shard_of(k)).collect();
    if owners.is_empty() {
        owners.push(s.shard);
    }
    owners.sort_unstable();
    owners.dedup();
    owners.into_iter().any(|owner| {
        if owner == s.shard {
            make_room(&mut s.db, unix_ms()).is_err()
        } else {
            s.db.evict.config.is_oom(owner)
        }
    })
}

/// A command about to be queued in MULTI: like Redis, refuse any command (which dooms
/// the EXEC) while the shard owning its keys is over its share with nothing to evict.
pub fn refuse_queued(s: &mut Server, spec: &Spec, args: Args<'_, '_>) -> Option<String> {
    if s.db.evict.limit() == 0 {
        return None;
    }
    let keys = spec.key_positions(args).map(|i| &args[i][..]);
    out_of_memory(s, keys).then(|| OOM.to_string())
}

/// EXEC of commands some of which are flagged `denyoom`: refused as a whole, as Redis
/// does, while a shard owning one of its keys is out of memory (see
/// [`refuse_queued`]).
pub fn refuse_exec(s: &mut Server, queued: &[Queued]) -> Option<String> {
    if s.db.evict.limit() == 0 || !queued.iter().any(|q| q.spec.flags.contains(&"denyoom")) {
        return None;
    }
    let keys: Vec<bytes::Bytes> = queued.iter().flat_map(|q| q.keys()).collect();
    out_of_memory(s, keys.iter().map(|k| &k[..])).then(|| crate::commands::multi::execabort(OOM))
}

/// CONFIG SET of the memory settings: `args` are name/value pairs. All are checked before
/// any is applied (Redis's all-or-nothing), with Redis's error texts; a name this server
/// cannot change gets Redis's "Unknown option" error.
pub fn config_set(memory: &MemoryConfig, args: &[impl AsRef<[u8]>]) -> Result<(), String> {
    if args.len() % 2 != 0 {
        return Err("ERR syntax error".into());
    }
    let mut names: Vec<String> = Vec::new();
    for pair in args.chunks(2) {
        let name = String::from_utf8_lossy(pair[0].as_ref()).to_ascii_lowercase();
        if !SETTABLE.contains(&name.as_str()) {
            return Err(format!(
                "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                crate::commands::sanitize(pair[0].as_ref(), 128)
            ));
        }
        if names.contains(&name) {
            return Err(failed(&name, "duplicate parameter"));
        }
        names.push(name);
    }
    let mut apply: Vec<Setting> = Vec::new();
    for (name, pair) in names.iter().zip(args.chunks(2)) {
        let value = String::from_utf8_lossy(pair[1].as_ref()).into_owned();
        let int = |lo: i64| -> Result<u32, String> {
            let n: i64 = value
                .trim()
                .parse()
                .map_err(|_| failed(name, "argument couldn't be parsed into an integer"))?;
            if !(lo..=i64::from(i32::MAX)).contains(&n) {
                return Err(failed(
                    name,
                    &format!("argument must be between {lo} and 2147483647 inclusive"),
                ));
            }
            Ok(n as u32)
        };
        match name.as_str() {
            "maxmemory" => {
                let bytes = crate::config::parse_memory(&value)
                    .map_err(|_| failed(name, "argument must be a memory value"))?;
                apply.push(Setting::Maxmemory(bytes));
            }
            "maxmemory-policy" => {
                let policy = Policy::parse(&value).ok_or_else(|| {
                    let names: Vec<&str> = Policy::ALL.iter().map(|p| p.name()).collect();
                    failed(
                        name,
                        &format!(
                            "argument(s) must be one of the following: {}",
                            names.join(", ")
                        ),
                    )
                })?;
                apply.push(Setting::Policy(policy));
            }
            "maxmemory-samples" => {
                apply.push(Setting::Samples(int(1)? as usize));
            }
            "lfu-log-factor" => {
                apply.push(Setting::LfuLogFactor(int(0)?));
            }
            _ => {
                apply.push(Setting::LfuDecayTime(int(0)?));
            }
        }
    }
    for setting in apply {
        match setting {
            Setting::Maxmemory(bytes) => memory.set_maxmemory(bytes),
            Setting::Policy(p) => memory.set_policy(p),
            Setting::Samples(n) => memory.set_samples(n),
            Setting::LfuLogFactor(f) => memory.set_lfu_log_factor(f),
            Setting::LfuDecayTime(m) => memory.set_lfu_decay_time(m),
        }
    }
    Ok(())
}

/// A checked CONFIG SET value, applied once every pair passed.
enum Setting {
    Maxmemory(usize),
    Policy(Policy),
    Samples(usize),
    LfuLogFactor(u32),
    LfuDecayTime(u32),
}

/// Settings CONFIG SET may change here.
const SETTABLE: [&str; 5] = [
    "maxmemory",
    "maxmemory-policy",
    "maxmemory-samples",
    "lfu-log-factor",
    "lfu-decay-time",
];

fn failed(name: &str, why: &str) -> String {
    format!("ERR CONFIG SET failed (possibly related to argument '{name}') - {why}")
}

/// CONFIG GET's view of the memory settings.
pub fn config_params(m: &MemoryConfig) -> [(&'static str, String); 5] {
    [
        ("maxmemory", m.maxmemory().to_string()),
        ("maxmemory-policy", m.policy().name().to_string()),
        ("maxmemory-samples", m.samples().to_string()),
        ("lfu-log-factor", m.lfu_log_factor().to_string()),
        ("lfu-decay-time", m.lfu_decay_time().to_string()),
    ]
}

/// A byte count as Redis's INFO writes it (`bytesToHuman`): `512B`, `1.16M`, `2.00G`.
pub fn human(n: u64) -> String {
    const UNITS: [(u64, &str); 5] = [
        (1 << 10, "K"),
        (1 << 20, "M"),
        (1 << 30, "G"),
        (1 << 40, "T"),
        (1 << 50, "P"),
    ];
    if n < 1024 {
        return format!("{n}B");
    }
    for (i, (unit, suffix)) in UNITS.iter().enumerate() {
        let next = UNITS.get(i + 1).map_or(u64::MAX, |u| u.0);
        if n < next {
            return format!("{:.2}{suffix}", n as f64 / *unit as f64);
        }
    }
    format!("{n}B")
}

/// INFO's memory section: the shards' estimates summed (`used_memory`), the process's
/// RSS, the keyspace structure, the limit and policy, and RSS over the estimate.
pub fn info_memory(m: &MemoryConfig, used: u64, rss: u64, structure: u64) -> String {
    let ratio = if used > 0 {
        rss as f64 / used as f64
    } else {
        0.0
    };
    format!(
        "used_memory:{used}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\n\
         used_memory_rss_human:{}\r\nused_memory_keyspace_structure:{structure}\r\n\
         maxmemory:{}\r\nmaxmemory_human:{}\r\nmaxmemory_policy:{}\r\n\
         maxmemory_samples:{}\r\nmem_fragmentation_ratio:{ratio:.2}\r\n",
        human(used),
        human(rss),
        m.maxmemory(),
        human(m.maxmemory() as u64),
        m.policy().name(),
        m.samples(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Value;

    fn db_with(policy: Policy, maxmemory: usize) -> Db {
        let config = Arc::new(MemoryConfig::new(maxmemory, policy, 5, 10, 1));
        attach(Db::default(), &config, 0, 1)
    }

    fn fill(db: &mut Db, n: usize, ttl: bool, now: u64) {
        for i in 0..n {
            let key = format!("key:{i}");
            let deadline = if ttl { now + 1_000_000 + i as u64 } else { 0 };
            db.write(key.as_bytes(), &Value::Slice(&[b'v'; 100]), deadline, now);
        }
    }

    #[test]
    fn policies_parse_and_print_as_redis_spells_them() {
        for p in Policy::ALL {
            assert_eq!(Policy::parse(p.name()), Some(p));
            assert_eq!(Policy::from_index(p.index()), p);
        }
        assert_eq!(Policy::parse("ALLKEYS-LRU"), Some(Policy::AllkeysLru));
        assert!(parse_policy("lru").is_err());
    }

    #[test]
    fn noeviction_refuses_and_keeps_everything() {
        let now = 1_700_000_000_000;
        let mut db = db_with(Policy::NoEviction, 1 << 20);
        assert_eq!(make_room(&mut db, now), Ok(()));
        fill(&mut db, 10_000, false, now);
        assert!(used(&db) > 1 << 20);
        assert_eq!(make_room(&mut db, now), Err(Oom));
        assert_eq!(db.len(), 10_000);
    }

    #[test]
    fn allkeys_policies_get_back_under_the_limit_in_bounded_steps() {
        let now = 1_700_000_000_000;
        for policy in [
            Policy::AllkeysLru,
            Policy::AllkeysLfu,
            Policy::AllkeysRandom,
        ] {
            // 20k keys of ~250 bytes (1.5 MB of them structure): about 5 MB.
            let mut db = db_with(policy, 3 << 20);
            fill(&mut db, 20_000, false, now);
            let before = db.len();
            assert_eq!(make_room(&mut db, now), Ok(()), "{policy:?}");
            assert_eq!(
                db.len(),
                before - EVICT_PER_CALL,
                "{policy:?}: one call evicts at most its budget"
            );
            while background_step(&mut db, now) {}
            assert!(used(&db) <= 3 << 20, "{policy:?}");
            assert!(db.len() > 8_000, "{policy:?}: only {} left", db.len());
            assert_eq!(db.evict.evicted as usize, 20_000 - db.len());
        }
    }

    #[test]
    fn volatile_policies_spare_keys_without_ttl_then_refuse() {
        let now = 1_700_000_000_000;
        for policy in [
            Policy::VolatileLru,
            Policy::VolatileLfu,
            Policy::VolatileRandom,
            Policy::VolatileTtl,
        ] {
            let mut db = db_with(policy, 1 << 20);
            fill(&mut db, 8_000, false, now);
            for i in 0..8_000 {
                let key = format!("ttl:{i}");
                db.write(
                    key.as_bytes(),
                    &Value::Slice(&[b'v'; 100]),
                    now + 1_000_000,
                    now,
                );
            }
            while make_room(&mut db, now).is_ok() && used(&db) > 1 << 20 {}
            assert_eq!(
                db.with_deadline(),
                0,
                "{policy:?}: every key with a TTL went"
            );
            assert_eq!(db.len(), 8_000, "{policy:?}: no key without a TTL went");
            assert_eq!(make_room(&mut db, now), Err(Oom), "{policy:?}");
        }
    }

    #[test]
    fn volatile_ttl_evicts_the_soonest_expiring_first() {
        let now = 1_700_000_000_000;
        let mut db = db_with(Policy::VolatileTtl, 2 << 20);
        fill(&mut db, 12_000, true, now);
        while background_step(&mut db, now) {}
        let evicted = 12_000 - db.len();
        assert!((2_000..10_000).contains(&evicted), "{evicted}");
        // Deadlines grow with the key number: the evicted keys are the first ones, give or
        // take one 100 ms bucket.
        for i in evicted + 100..12_000 {
            assert!(db.contains(format!("key:{i}").as_bytes(), now), "key:{i}");
        }
    }

    #[test]
    fn lru_prefers_idle_keys_and_lfu_rarely_read_keys() {
        let t = 1_700_000_000_000;
        for policy in [Policy::AllkeysLru, Policy::AllkeysLfu] {
            let mut db = db_with(policy, 2 << 20);
            fill(&mut db, 12_000, false, t);
            // The first 1000 keys are read (often, for LFU) a minute later.
            for _ in 0..20 {
                for i in 0..1000 {
                    db.read(format!("key:{i}").as_bytes(), t + 60_000);
                }
            }
            while background_step(&mut db, t + 61_000) {}
            let hot = (0..1000)
                .filter(|i| db.contains(format!("key:{i}").as_bytes(), t))
                .count();
            let evicted = 12_000 - db.len();
            assert!(evicted > 2000, "{policy:?}: {evicted}");
            assert!(hot > 950, "{policy:?}: only {hot} of 1000 hot keys kept");
        }
    }

    #[test]
    fn config_set_checks_everything_before_applying_anything() {
        let m = MemoryConfig::default();
        assert_eq!(config_set(&m, &["maxmemory", "10mb"]), Ok(()));
        assert_eq!(m.maxmemory(), 10 << 20);
        assert_eq!(config_set(&m, &["MAXMEMORY-POLICY", "ALLKEYS-LFU"]), Ok(()));
        assert_eq!(m.policy(), Policy::AllkeysLfu);
        let e = config_set(&m, &["maxmemory-samples", "7", "maxmemory-policy", "bad"]);
        assert!(e.is_err_and(|e| e.ends_with(
            "volatile-random, volatile-ttl, allkeys-lru, allkeys-lfu, allkeys-random, noeviction"
        )));
        assert_eq!(m.samples(), 5, "nothing applied");
        assert_eq!(
            config_set(&m, &["maxmemory", "1", "maxmemory", "2"]),
            Err("ERR CONFIG SET failed (possibly related to argument 'maxmemory') - duplicate parameter".into())
        );
        assert_eq!(
            config_set(&m, &["maxmemory", "1", "x"]),
            Err("ERR syntax error".into())
        );
        assert_eq!(
            config_set(&m, &["maxmemory-samples", "0"]),
            Err("ERR CONFIG SET failed (possibly related to argument 'maxmemory-samples') - argument must be between 1 and 2147483647 inclusive".into())
        );
        assert!(config_set(&m, &["save", ""]).is_err_and(|e| e.starts_with("ERR Unknown option")));
    }

    #[test]
    fn sizes_print_as_redis_prints_them() {
        assert_eq!(human(0), "0B");
        assert_eq!(human(1023), "1023B");
        assert_eq!(human(1_211_440), "1.16M");
        assert_eq!(human(64 << 20), "64.00M");
        assert_eq!(human(3 << 30), "3.00G");
    }

    #[test]
    fn the_pool_keeps_the_best_candidates_sorted() {
        let mut pool = Vec::new();
        for (i, s) in [5u64, 1, 9, 3, 7].into_iter().enumerate() {
            offer(&mut pool, s, format!("k{i}").as_bytes());
        }
        offer(&mut pool, 9, b"k2");
        let scores: Vec<u64> = pool.iter().map(|c| c.score).collect();
        assert_eq!(scores, vec![1, 3, 5, 7, 9], "sorted, no duplicate keys");
        for i in 0..20u64 {
            offer(&mut pool, 100 + i, format!("x{i}").as_bytes());
        }
        assert_eq!(pool.len(), POOL_SIZE);
        assert_eq!(pool[0].score, 104, "the worst candidates left");
        offer(&mut pool, 0, b"bad");
        assert_eq!(pool[0].score, 104, "a full pool refuses a worse candidate");
    }
}
