//! One shard's keyspace: the engine's TTL map behind the one choke point every read and
//! every mutation of a shard's data passes. Mutations (`write`, `write_owned`, `append`,
//! `setrange`, `remove`, `set_deadline`, `clear`, and `edit_hash` / `edit_list` /
//! `edit_set` for collections) are where WATCH invalidation, keyspace notifications and
//! journaling hook in; memory is accounted by the map. Nothing outside this module touches
//! the map directly.
//!
//! Values are typed: a key holds a string (bytes in the map entry) or an [`Obj`] (a hash,
//! list or set, boxed in the entry). Reads of the wrong type answer [`WrongType`].

use bytes::Bytes;
use coreshard_engine::ttl::{ExpireStep, ObjectEdit, Owned, Stored, TtlMap, ValueRef};

use crate::notify::{Events, Mutation};
use crate::persist::effect::Effect;
use crate::persist::Journal;
use crate::server::args::ArgList;
use crate::server::ops::OpResult;
use crate::types::{List, Obj, Set, Stream, Table, ZSet};
use crate::watch::WatchTable;

/// What a key holds, borrowed.
pub type Found<'a> = Stored<'a, Obj>;
/// A value of any type, owned (it moves between keys and shards, and to disk).
pub type OwnedValue = Owned<Obj>;

/// Redis's error for an operation on a key of another type.
pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

/// The key holds another type than the command works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrongType;

impl From<WrongType> for OpResult {
    fn from(_: WrongType) -> OpResult {
        OpResult::Error(WRONGTYPE.into())
    }
}

/// What a collection command did, returned from the closure given to `Db::edit_*`.
pub struct Edit<R> {
    /// The command's answer.
    pub reply: R,
    /// The keyspace event, if the value changed (nothing is journaled or notified
    /// otherwise).
    pub event: Option<&'static str>,
    /// The record to journal instead of the command's own arguments (a deterministic
    /// rewrite, e.g. SPOP as SREM of what it popped).
    pub log: Option<Vec<Bytes>>,
    /// Further commands replay runs after `log` (one all-or-nothing record with it):
    /// XREADGROUP as the claims and group position it made.
    pub also: Vec<Vec<Bytes>>,
    /// A second keyspace event the command raises (XADD that trimmed: `xtrim`).
    pub then: Option<&'static str>,
    /// Group bookkeeping Redis neither counts as a modification for WATCH nor signals to
    /// blocked readers (XGROUP SETID, CREATECONSUMER, DELCONSUMER).
    pub bookkeeping: bool,
}

impl<R> Edit<R> {
    /// Nothing changed.
    pub fn unchanged(reply: R) -> Edit<R> {
        Edit {
            reply,
            event: None,
            log: None,
            also: Vec::new(),
            then: None,
            bookkeeping: false,
        }
    }

    /// Changed; replay repeats the command as it was given.
    pub fn changed(reply: R, event: &'static str) -> Edit<R> {
        Edit {
            reply,
            event: Some(event),
            log: None,
            also: Vec::new(),
            then: None,
            bookkeeping: false,
        }
    }

    /// Changed; replay runs `log` (a command, name first) instead.
    pub fn logged(reply: R, event: &'static str, log: Vec<Bytes>) -> Edit<R> {
        Edit {
            reply,
            event: Some(event),
            log: Some(log),
            also: Vec::new(),
            then: None,
            bookkeeping: false,
        }
    }

    /// Changed; replay runs these commands (at least one) in order, all or nothing. An
    /// empty `event` journals without a keyspace notification, WATCH bump or wake-up
    /// (group bookkeeping: XACK, XCLAIM, XREADGROUP).
    pub fn logged_all(reply: R, event: &'static str, mut logs: Vec<Vec<Bytes>>) -> Edit<R> {
        let first = if logs.is_empty() {
            None
        } else {
            Some(logs.remove(0))
        };
        Edit {
            reply,
            event: Some(event),
            log: first,
            also: logs,
            then: None,
            bookkeeping: false,
        }
    }

    /// Notified, journaled, but no WATCH bump and no wake-up (see `bookkeeping`).
    pub fn bookkeeping(self) -> Edit<R> {
        Edit {
            bookkeeping: true,
            ..self
        }
    }

    /// With a second keyspace event after the first.
    pub fn and_event(self, event: &'static str) -> Edit<R> {
        Edit {
            then: Some(event),
            ..self
        }
    }
}

/// A shard's keys, its hit/miss counters and its watched keys. Times are Unix milliseconds.
#[derive(Default)]
pub struct Db {
    map: TtlMap<Obj>,
    /// Reads that found their key.
    pub hits: u64,
    /// Reads that did not.
    pub misses: u64,
    /// Keys some connection WATCHes, with the version of their last modification.
    pub watch: WatchTable,
    /// The shard's log, when persistence is on: every mutation appends its effect.
    pub journal: Option<Journal>,
    /// LSN of the last record appended (replies that observe this state wait for it).
    pub last_lsn: u64,
    /// Keyspace notifications collected for the shard to publish.
    pub events: Events,
    /// Eviction under `maxmemory` (see [`crate::evict`]).
    pub evict: crate::evict::Evictor,
    /// While running [`Db::atomically`]: the effects to journal as one record.
    group: Option<Vec<Effect>>,
    /// Keys some client waits on with a blocking pop.
    pub block_keys: hashbrown::HashSet<Bytes>,
    /// Of those, keys that were written since the shard last served its waiters.
    pub ready: Vec<Bytes>,
    /// Keys changed without a WATCH bump (group bookkeeping), collected only on a
    /// transaction's scratch copy (`Some`), where changes are found by WATCH versions.
    pub quiet_changes: Option<hashbrown::HashSet<Bytes>>,
    /// A key [`Db::announce_new`] announced as `new`, whose write must not announce it
    /// again.
    new_announced: Option<Bytes>,
}

impl Db {
    /// Collect a keyspace notification, when they are on.
    #[inline]
    fn note(&mut self, what: Mutation, key: &[u8]) {
        let flags = crate::notify::flags();
        if flags != 0 {
            self.expired_events(flags);
            self.events.note(flags, what, key);
        }
    }

    /// Keys that expired while this command looked them up are announced before its own
    /// events, as Redis's lookup announces them (the rest go at the end of the turn).
    fn expired_events(&mut self, flags: u32) {
        use crate::notify::{EXPIRED, KEYEVENT, KEYSPACE};
        if flags & EXPIRED != 0 && flags & (KEYSPACE | KEYEVENT) != 0 {
            for key in self.map.take_expired() {
                self.events.push_event("expired", key);
            }
        }
    }

    /// Before a write that may create `key`, with notifications on: if it expired, that is
    /// announced first, and if it does not exist it is announced as `new` (flag `n`), as
    /// Redis's lookup and `dbAdd` do before the command's own event.
    #[inline]
    fn before_write(&mut self, key: &[u8], now: u64) {
        use crate::notify::{EXPIRED, KEYEVENT, KEYSPACE, NEW};
        let flags = crate::notify::flags();
        if flags & (KEYSPACE | KEYEVENT) == 0 || flags & (EXPIRED | NEW) == 0 {
            return;
        }
        let live = self.map.contains(key, now);
        if self.new_announced.take().is_some_and(|k| k == key) {
            return;
        }
        if !live {
            self.note_new(key);
        }
    }

    /// RENAME and COPY: `key` is about to be made afresh, replacing any value it has, so
    /// it is announced `new` now, as Redis's `dbAdd` after `dbDelete` does (before the
    /// source's events); its write then announces no `new` of its own.
    pub fn announce_new(&mut self, key: &[u8], now: u64) {
        use crate::notify::{KEYEVENT, KEYSPACE, NEW};
        let flags = crate::notify::flags();
        if flags & (KEYSPACE | KEYEVENT) == 0 || flags & NEW == 0 {
            return;
        }
        // A lookup first, as Redis's: an expired destination is announced before.
        let _ = self.map.contains(key, now);
        self.note_new(key);
        self.new_announced = Some(Bytes::copy_from_slice(key));
    }

    /// `new`: a key is being created (flag `n`). (An `expired` found on the way goes out
    /// with the next event either way: [`Db::note`] announces those first.)
    fn note_new(&mut self, key: &[u8]) {
        if crate::notify::flags() & crate::notify::NEW != 0 {
            let new = Mutation::Typed {
                event: "new",
                class: crate::notify::NEW,
            };
            self.note(new, key);
        }
    }

    /// Whether `key` exists, counted as a read (a hit, or a miss with its `keymiss` event)
    /// but not as an access for LRU/LFU: Redis's EXISTS (`LOOKUP_NOTOUCH`).
    pub fn exists(&mut self, key: &[u8], now: u64) -> bool {
        let found = self.map.contains(key, now);
        self.count_lookup(key, found);
        found
    }

    /// Count a read lookup of `key` that did or did not find it: a hit, or a miss with
    /// its `keymiss` event (for reads that look a key up some other way: TYPE, TTL).
    pub fn count_lookup(&mut self, key: &[u8], found: bool) {
        if found {
            self.hits += 1;
        } else {
            self.misses += 1;
            if crate::notify::flags() & crate::notify::KEY_MISS != 0 {
                let miss = Mutation::Typed {
                    event: "keymiss",
                    class: crate::notify::KEY_MISS,
                };
                self.note(miss, key);
            }
        }
    }

    /// Read a value of any type, counting a hit or a miss.
    pub fn read(&mut self, key: &[u8], now: u64) -> Option<Found<'_>> {
        if crate::notify::flags() & crate::notify::KEY_MISS != 0 {
            // `keymiss` (flag `m`) asked for: a lookup that does not count as an access
            // first (so a hit is still touched once), only then.
            if !self.exists(key, now) {
                return None;
            }
            return self.map.get(key, now);
        }
        let v = self.map.get(key, now);
        if v.is_some() {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
        v
    }

    /// Read a string, counting a hit or a miss.
    pub fn read_str(&mut self, key: &[u8], now: u64) -> Result<Option<ValueRef<'_>>, WrongType> {
        match self.read(key, now) {
            None => Ok(None),
            Some(Stored::Bytes(v)) => Ok(Some(v)),
            Some(Stored::Object(_)) => Err(WrongType),
        }
    }

    /// Read a string as owned `Bytes` (free for large values), counting a hit or a miss.
    pub fn read_bytes(&mut self, key: &[u8], now: u64) -> Result<Option<Bytes>, WrongType> {
        Ok(self.read_str(key, now)?.map(|v| v.to_bytes()))
    }

    /// A string for MGET: a key of another type reads as nil, as in Redis.
    pub fn read_bytes_or_nil(&mut self, key: &[u8], now: u64) -> Option<Bytes> {
        self.read_bytes(key, now).ok().flatten()
    }

    /// A live key's value, without counting a hit or miss.
    pub fn get(&mut self, key: &[u8], now: u64) -> Option<Found<'_>> {
        self.map.get(key, now)
    }

    /// A live string, without counting.
    pub fn get_str(&mut self, key: &[u8], now: u64) -> Result<Option<ValueRef<'_>>, WrongType> {
        match self.map.get(key, now) {
            None => Ok(None),
            Some(Stored::Bytes(v)) => Ok(Some(v)),
            Some(Stored::Object(_)) => Err(WrongType),
        }
    }

    /// A live key's value and deadline (0 = none), without counting.
    pub fn get_with_deadline(&mut self, key: &[u8], now: u64) -> Option<(Found<'_>, u64)> {
        self.map.get_with_deadline(key, now)
    }

    /// A live string and its deadline, without counting.
    pub fn get_str_with_deadline(
        &mut self,
        key: &[u8],
        now: u64,
    ) -> Result<Option<(ValueRef<'_>, u64)>, WrongType> {
        match self.map.get_with_deadline(key, now) {
            None => Ok(None),
            Some((Stored::Bytes(v), d)) => Ok(Some((v, d))),
            Some((Stored::Object(_), _)) => Err(WrongType),
        }
    }

    /// An owned copy of a live key's value (of any type) and its deadline.
    pub fn get_owned(&mut self, key: &[u8], now: u64) -> Option<(OwnedValue, u64)> {
        let (v, d) = self.map.get_with_deadline(key, now)?;
        Some((to_owned(v), d))
    }

    /// The type name TYPE answers for a live key (`none` if absent).
    pub fn type_of(&mut self, key: &[u8], now: u64) -> &'static str {
        match self.map.get(key, now) {
            None => "none",
            Some(Stored::Bytes(_)) => "string",
            Some(Stored::Object(o)) => o.type_name(),
        }
    }

    fn read_obj<T>(
        &mut self,
        key: &[u8],
        now: u64,
        pick: impl FnOnce(&Obj) -> Option<&T>,
    ) -> Result<Option<&T>, WrongType> {
        match self.read(key, now) {
            None => Ok(None),
            Some(Stored::Bytes(_)) => Err(WrongType),
            Some(Stored::Object(o)) => pick(o).map(Some).ok_or(WrongType),
        }
    }

    /// Read a hash, counting a hit or a miss.
    pub fn read_hash(&mut self, key: &[u8], now: u64) -> Result<Option<&Table>, WrongType> {
        self.read_obj(key, now, |o| match o {
            Obj::Hash(t) => Some(t),
            _ => None,
        })
    }

    /// Read a list, counting a hit or a miss.
    pub fn read_list(&mut self, key: &[u8], now: u64) -> Result<Option<&List>, WrongType> {
        self.read_obj(key, now, |o| match o {
            Obj::List(l) => Some(&**l),
            _ => None,
        })
    }

    /// Read a set, counting a hit or a miss.
    pub fn read_set(&mut self, key: &[u8], now: u64) -> Result<Option<&Set>, WrongType> {
        self.read_obj(key, now, |o| match o {
            Obj::Set(s) => Some(&**s),
            _ => None,
        })
    }

    /// Read a sorted set, counting a hit or a miss.
    pub fn read_zset(&mut self, key: &[u8], now: u64) -> Result<Option<&ZSet>, WrongType> {
        self.read_obj(key, now, |o| match o {
            Obj::ZSet(z) => Some(&**z),
            _ => None,
        })
    }

    /// Whether a live key exists.
    pub fn contains(&mut self, key: &[u8], now: u64) -> bool {
        self.map.contains(key, now)
    }

    /// A live key's deadline: `None` if absent, `Some(0)` if it has none.
    pub fn deadline(&mut self, key: &[u8], now: u64) -> Option<u64> {
        self.map.deadline(key, now)
    }

    /// Live keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Keys with a deadline.
    pub fn with_deadline(&self) -> usize {
        self.map.with_deadline()
    }

    /// Keys removed by expiry so far.
    pub fn expired_total(&self) -> u64 {
        self.map.expired_total()
    }

    /// Bytes the keyspace structure holds.
    pub fn structure_bytes(&self) -> usize {
        self.map.structure_bytes()
    }

    /// Read-only view of the map (memory estimate, sampling for eviction, OBJECT); every
    /// change still goes through `Db`.
    pub fn keyspace(&self) -> &TtlMap<Obj> {
        &self.map
    }

    /// How key accesses are recorded (LRU or LFU stamps, per the eviction policy).
    pub fn set_access(&mut self, access: coreshard_engine::ttl::Access) {
        self.map.set_access(access);
    }

    /// Visit up to `count` slots from `cursor` (see [`TtlMap::scan`]).
    pub fn scan(
        &self,
        cursor: u64,
        count: usize,
        now: u64,
        f: impl FnMut(&[u8], Found<'_>),
    ) -> u64 {
        self.map.scan(cursor, count, now, f)
    }

    /// Start a snapshot of the keyspace as it is now (see [`TtlMap::snapshot_begin`]).
    pub fn snapshot_begin(&mut self, now: u64) {
        self.map.snapshot_begin(now);
    }

    /// Hand up to `budget` entries of the snapshot to `f`; true once it is over (see
    /// [`TtlMap::snapshot_step`]).
    pub fn snapshot_step(&mut self, budget: usize, f: impl FnMut(&[u8], Found<'_>, u64)) -> bool {
        self.map.snapshot_step(budget, f)
    }

    /// Drop the snapshot in progress.
    pub fn snapshot_abort(&mut self) {
        self.map.snapshot_abort();
    }

    /// A random live key.
    pub fn random_key(&mut self, now: u64, rand: impl FnMut() -> u64) -> Option<Vec<u8>> {
        self.map.random_key(now, rand)
    }

    /// Bring the entries of `keys` into the cache (see [`TtlMap::prefetch`]).
    pub fn prefetch<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>) {
        self.map.prefetch(keys);
    }

    /// Whether [`Db::prefetch`] can pay (the keyspace does not fit in the cache).
    pub fn prefetch_pays(&self) -> bool {
        self.map.prefetch_pays()
    }

    /// Whether mutations are journaled now (commands skip building rewrites otherwise).
    pub fn journaling(&self) -> bool {
        self.journal.as_ref().is_some_and(|j| j.enabled)
    }

    /// Store a string with a deadline (0 = none).
    pub fn write(&mut self, key: &[u8], value: &Value, deadline: u64, now: u64) {
        self.write_announced(key, value, deadline, now, true);
    }

    /// [`Db::write`] of a value that keeps the deadline the key had (SET KEEPTTL, INCR,
    /// INCRBYFLOAT...): no `expire` event, as Redis raises none.
    pub fn write_keeping_deadline(&mut self, key: &[u8], value: &Value, deadline: u64, now: u64) {
        self.write_announced(key, value, deadline, now, false);
    }

    /// [`Db::write`], announcing the deadline as an `expire` event or not.
    fn write_announced(
        &mut self,
        key: &[u8],
        value: &Value,
        deadline: u64,
        now: u64,
        expire_event: bool,
    ) {
        self.before_write(key, now);
        self.watch.touch(key);
        self.note(Mutation::Write, key);
        if deadline != 0 && expire_event {
            self.note(Mutation::Expire, key);
        }
        self.note_ready(key);
        let v = value.as_ref().as_slice();
        self.log_with(
            |j| j.set(key, v, deadline),
            || Effect::Set {
                key: Bytes::copy_from_slice(key),
                value: Bytes::copy_from_slice(v),
                deadline,
            },
        );
        self.map.insert(key, value.as_ref(), deadline, now);
    }

    /// Store a value of any type with a deadline (0 = none): RENAME, COPY, a transaction's
    /// commit, replay. Notified as a write of the current command only: a deadline carried
    /// over is no `expire` event (Redis's RENAME and COPY raise none).
    pub fn write_owned(&mut self, key: &[u8], value: OwnedValue, deadline: u64, now: u64) {
        match value {
            Owned::Bytes(b) => self.write_announced(key, &Value::Shared(b), deadline, now, false),
            Owned::Object(o) => {
                self.before_write(key, now);
                self.watch.touch(key);
                self.note(Mutation::Write, key);
                if self.journaling() {
                    let (ty, data) = o.encode();
                    self.log(Effect::Obj {
                        key: Bytes::copy_from_slice(key),
                        ty,
                        data: Bytes::from(data),
                        deadline,
                    });
                }
                if o.is_empty() {
                    self.map.remove(key, now);
                } else {
                    self.map.insert_object(key, *o, deadline, now);
                    self.note_ready(key);
                }
            }
        }
    }

    /// Journal a mutation: straight from borrowed bytes with `direct`, or, inside
    /// [`Db::atomically`], as the owned effect `grouped` builds.
    fn log_with(
        &mut self,
        direct: impl FnOnce(&mut Journal) -> u64,
        grouped: impl FnOnce() -> Effect,
    ) {
        if !self.journaling() {
            return;
        }
        match self.group.as_mut() {
            Some(g) => g.push(grouped()),
            None => {
                if let Some(j) = self.journal.as_mut() {
                    self.last_lsn = direct(j);
                }
            }
        }
    }

    /// A key changed: if clients wait on it, it is due to be served.
    fn note_ready(&mut self, key: &[u8]) {
        if !self.block_keys.is_empty() && self.block_keys.contains(key) {
            self.ready.push(Bytes::copy_from_slice(key));
        }
    }

    /// Journal `e` (into the open group inside [`Db::atomically`]).
    fn log(&mut self, e: Effect) {
        if !self.journaling() {
            return;
        }
        match self.group.as_mut() {
            Some(g) => g.push(e),
            None => {
                if let Some(j) = self.journal.as_mut() {
                    self.last_lsn = j.effect(&e);
                }
            }
        }
    }

    /// Run `f`, journaling every mutation it makes as one all-or-nothing record (a
    /// command that changes several keys, e.g. SMOVE or LMOVE, so a crash or a replay
    /// with another shard count never sees half of it).
    pub fn atomically<T>(&mut self, f: impl FnOnce(&mut Db) -> T) -> T {
        if self.group.is_some() || !self.journaling() {
            return f(self);
        }
        self.group = Some(Vec::new());
        let out = f(self);
        if let Some(writes) = self.group.take() {
            match writes.len() {
                0 => {}
                1 => writes.into_iter().for_each(|e| self.log(e)),
                _ => self.log(Effect::Txn {
                    flush: false,
                    writes,
                }),
            }
        }
        out
    }

    /// Drop the effects collected so far by the enclosing [`Db::atomically`] (a script
    /// stopped half way by SHUTDOWN NOSAVE): they are never journaled.
    pub fn discard_group(&mut self) {
        if let Some(g) = self.group.as_mut() {
            g.clear();
        }
    }

    fn edit_obj<R>(
        &mut self,
        key: &[u8],
        now: u64,
        create: Option<fn() -> Obj>,
        class: u32,
        args: &dyn ArgList,
        f: impl FnOnce(&mut Obj) -> Result<Edit<R>, WrongType>,
    ) -> Result<Option<R>, WrongType> {
        let res = self.map.edit_or_create(
            key,
            now,
            create.as_ref().map(|c| c as &dyn Fn() -> Obj),
            |o| {
                let r = f(o);
                (r, o.is_empty())
            },
        );
        let (edit, empty, created) = match res {
            ObjectEdit::Absent => return Ok(None),
            ObjectEdit::Bytes => return Err(WrongType),
            ObjectEdit::Edited {
                out: (Ok(e), empty),
                created,
            } => (e, empty, created),
            ObjectEdit::Edited {
                out: (Err(w), _),
                created,
            } => {
                if created {
                    // Nothing of the right type was there; leave nothing behind.
                    self.map.remove(key, now);
                }
                return Err(w);
            }
        };
        if let Some(event) = edit.event {
            let quiet = event.is_empty();
            if quiet || edit.bookkeeping {
                if let Some(changed) = self.quiet_changes.as_mut() {
                    changed.insert(Bytes::copy_from_slice(key));
                }
            }
            if !quiet {
                if !edit.bookkeeping {
                    self.watch.touch(key);
                }
                if created {
                    self.note_new(key);
                }
                self.note(Mutation::Typed { event, class }, key);
                if let Some(event) = edit.then {
                    self.note(Mutation::Typed { event, class }, key);
                }
            }
            if self.journaling() {
                if created {
                    // Replay applies records without judging expiry, so a value this key
                    // held before it expired would still be there: start from nothing,
                    // as the command did (like APPEND's fresh start).
                    self.log(Effect::Del {
                        key: Bytes::copy_from_slice(key),
                    });
                }
                let args = match edit.log {
                    Some(log) => log,
                    None => (0..args.len()).map(|i| args.arg_bytes(i)).collect(),
                };
                if edit.also.is_empty() || self.group.is_some() {
                    self.log(Effect::Cmd { args });
                    for args in edit.also {
                        self.log(Effect::Cmd { args });
                    }
                } else {
                    let mut writes = vec![Effect::Cmd { args }];
                    writes.extend(edit.also.into_iter().map(|args| Effect::Cmd { args }));
                    self.log(Effect::Txn {
                        flush: false,
                        writes,
                    });
                }
            }
        }
        // A value created for a command that then changed nothing goes again (a stream,
        // which stays when empty, would otherwise be left behind).
        let empty = empty || (created && edit.event.is_none());
        if empty {
            self.map.remove(key, now);
            if edit.event.is_some() && !created {
                self.note(Mutation::Remove, key);
            }
        } else if edit.event.is_some_and(|e| !e.is_empty()) && !edit.bookkeeping {
            self.note_ready(key);
        }
        Ok(Some(edit.reply))
    }

    /// Change the hash at `key` with `f` (creating an empty one first if `create`).
    /// `Ok(None)`: absent and not created. The one place hash writes pass: WATCH,
    /// notifications (class `h`) and the journal hook in here; a hash left empty is
    /// removed. `args` are the command's, journaled as they are unless `f` rewrites them.
    pub fn edit_hash<R>(
        &mut self,
        key: &[u8],
        now: u64,
        create: bool,
        args: &dyn ArgList,
        f: impl FnOnce(&mut Table) -> Edit<R>,
    ) -> Result<Option<R>, WrongType> {
        let create = create.then_some(Obj::new_hash as fn() -> Obj);
        self.edit_obj(key, now, create, crate::notify::HASH, args, |o| match o {
            Obj::Hash(t) => {
                let (entries, len) = crate::types::limits::hash();
                t.set_limits(entries, len);
                Ok(f(t))
            }
            _ => Err(WrongType),
        })
    }

    /// Change the list at `key` (see [`Db::edit_hash`]; class `l`).
    pub fn edit_list<R>(
        &mut self,
        key: &[u8],
        now: u64,
        create: bool,
        args: &dyn ArgList,
        f: impl FnOnce(&mut List) -> Edit<R>,
    ) -> Result<Option<R>, WrongType> {
        let create = create.then_some(Obj::new_list as fn() -> Obj);
        self.edit_obj(key, now, create, crate::notify::LIST, args, |o| match o {
            Obj::List(l) => Ok(f(l)),
            _ => Err(WrongType),
        })
    }

    /// Change the sorted set at `key` (see [`Db::edit_hash`]; class `z`).
    pub fn edit_zset<R>(
        &mut self,
        key: &[u8],
        now: u64,
        create: bool,
        args: &dyn ArgList,
        f: impl FnOnce(&mut ZSet) -> Edit<R>,
    ) -> Result<Option<R>, WrongType> {
        let create = create.then_some(Obj::new_zset as fn() -> Obj);
        self.edit_obj(key, now, create, crate::notify::ZSET, args, |o| match o {
            Obj::ZSet(z) => {
                let (entries, len) = crate::types::limits::zset();
                z.set_limits(entries, len);
                Ok(f(z))
            }
            _ => Err(WrongType),
        })
    }

    /// Read a stream, counting a hit or a miss.
    pub fn read_stream(&mut self, key: &[u8], now: u64) -> Result<Option<&Stream>, WrongType> {
        self.read_obj(key, now, |o| match o {
            Obj::Stream(x) => Some(&**x),
            _ => None,
        })
    }

    /// The stream at `key`, looked up as a write does (no hit or miss counted: XGROUP).
    pub fn peek_stream(&mut self, key: &[u8], now: u64) -> Result<Option<&Stream>, WrongType> {
        match self.map.get(key, now) {
            None => Ok(None),
            Some(Stored::Object(Obj::Stream(x))) => Ok(Some(&**x)),
            Some(_) => Err(WrongType),
        }
    }

    /// Change the stream at `key` (see [`Db::edit_hash`]; class `t`). A stream stays when
    /// its last entry goes, as in Redis.
    pub fn edit_stream<R>(
        &mut self,
        key: &[u8],
        now: u64,
        create: bool,
        args: &dyn ArgList,
        f: impl FnOnce(&mut Stream) -> Edit<R>,
    ) -> Result<Option<R>, WrongType> {
        let create = create.then_some(Obj::new_stream as fn() -> Obj);
        self.edit_obj(key, now, create, crate::notify::STREAM, args, |o| match o {
            Obj::Stream(x) => Ok(f(x)),
            _ => Err(WrongType),
        })
    }

    /// Change the set at `key` (see [`Db::edit_hash`]; class `s`).
    pub fn edit_set<R>(
        &mut self,
        key: &[u8],
        now: u64,
        create: bool,
        args: &dyn ArgList,
        f: impl FnOnce(&mut Set) -> Edit<R>,
    ) -> Result<Option<R>, WrongType> {
        let create = create.then_some(Obj::new_set as fn() -> Obj);
        self.edit_obj(key, now, create, crate::notify::SET, args, |o| match o {
            Obj::Set(s) => Ok(f(s)),
            _ => Err(WrongType),
        })
    }

    /// Before an edit that builds on the current value (APPEND, SETRANGE): if the key does
    /// not exist now (absent, or expired a moment ago), journal a DEL first, so replay,
    /// which applies records without judging expiry, starts the edit from nothing too.
    fn journal_fresh_start(&mut self, key: &[u8], now: u64) {
        if self.journaling() && !self.map.contains(key, now) {
            self.log(Effect::Del {
                key: Bytes::copy_from_slice(key),
            });
        }
    }

    /// Journal an effect that is applied elsewhere or without the log (a cross-shard
    /// transaction's outcome, a fence).
    pub fn journal(&mut self, e: &Effect) {
        self.log(e.clone());
    }

    /// Run `f` with journaling off (its effects are covered by another record).
    pub fn unjournaled<T>(&mut self, f: impl FnOnce(&mut Db) -> T) -> T {
        let was = self.journal.as_ref().is_some_and(|j| j.enabled);
        if let Some(j) = self.journal.as_mut() {
            j.enabled = false;
        }
        let out = f(self);
        if let Some(j) = self.journal.as_mut() {
            j.enabled = was;
        }
        out
    }

    /// Append `data` to a key's value, creating the key (without a deadline) if absent; an
    /// existing deadline is kept. Returns the new length. Grows the value in place with
    /// spare capacity (see [`TtlMap::append`]); the caller enforces the length limit.
    pub fn append(&mut self, key: &[u8], data: &[u8], now: u64) -> usize {
        self.before_write(key, now);
        self.journal_fresh_start(key, now);
        self.watch.touch(key);
        self.note(Mutation::Append, key);
        self.log_with(
            |j| j.append_to(key, data),
            || Effect::Append {
                key: Bytes::copy_from_slice(key),
                data: Bytes::copy_from_slice(data),
            },
        );
        self.map.append(key, data, now)
    }

    /// Overwrite a key's value from `offset` with `data`, zero-padding it as needed, or
    /// create the key (without a deadline); an existing deadline is kept. Returns the new
    /// length. Edits in place (see [`TtlMap::setrange`]); the caller enforces the limit.
    pub fn setrange(&mut self, key: &[u8], offset: usize, data: &[u8], now: u64) -> usize {
        self.before_write(key, now);
        self.journal_fresh_start(key, now);
        self.watch.touch(key);
        self.note(Mutation::SetRange, key);
        self.log_with(
            |j| j.setrange(key, offset as u64, data),
            || Effect::SetRange {
                key: Bytes::copy_from_slice(key),
                offset: offset as u64,
                data: Bytes::copy_from_slice(data),
            },
        );
        self.map.setrange(key, offset, data, now)
    }

    /// Remove a live key, returning its value and deadline.
    pub fn remove(&mut self, key: &[u8], now: u64) -> Option<(OwnedValue, u64)> {
        let old = self.map.remove(key, now);
        if old.is_some() {
            self.watch.touch(key);
            self.note(Mutation::Remove, key);
            // A blocked group read learns its stream went (Redis's UNBLOCKED error).
            self.note_ready(key);
            self.log_with(
                |j| j.del(key),
                || Effect::Del {
                    key: Bytes::copy_from_slice(key),
                },
            );
        }
        old
    }

    /// Change a live key's deadline (0 removes it). Returns whether the key exists.
    pub fn set_deadline(&mut self, key: &[u8], deadline: u64, now: u64) -> bool {
        let found = self.map.set_deadline(key, deadline, now);
        if found {
            self.watch.touch(key);
            let what = if deadline == 0 {
                Mutation::Persist
            } else {
                Mutation::Expire
            };
            self.note(what, key);
            self.log_with(
                |j| j.deadline(key, deadline),
                || Effect::Deadline {
                    key: Bytes::copy_from_slice(key),
                    deadline,
                },
            );
        }
        found
    }

    /// Remove every key. Watched keys that existed count as modified (as in Redis, a
    /// watched key that did not exist is not).
    pub fn clear(&mut self, now: u64) {
        let map = &mut self.map;
        self.watch.touch_where(|k| map.contains(k, now));
        self.log(Effect::Flush);
        self.map.clear();
    }

    /// Whether keys removed by expiry are collected for `expired` notifications.
    pub fn collect_expired(&mut self, on: bool) {
        self.map.log_expired(on);
    }

    /// Keys expiry removed since the last call (when collecting).
    pub fn take_expired(&mut self) -> Vec<Bytes> {
        self.map.take_expired()
    }

    /// One bounded step of active expiry. Expired keys need no WATCH bump (a watcher
    /// checks the deadline it saw, see [`crate::watch`]) and no log record (records carry
    /// absolute deadlines, so replay drops them the same way).
    pub fn expire_step(&mut self, now: u64, budget: usize) -> ExpireStep {
        let mut step = self.map.expire_step(now, budget);
        // Over maxmemory, evict in bounded steps between I/O too (through `remove`).
        step.more |= crate::evict::background_step(self, now);
        step
    }
}

/// A value about to be stored: borrowed bytes (copied into the map) or shared `Bytes`
/// (kept without a copy when large).
pub enum Value<'a> {
    /// Bytes to copy.
    Slice(&'a [u8]),
    /// An owned, shareable value.
    Shared(Bytes),
}

impl Value<'_> {
    /// The map's view of this value.
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Slice(s) => ValueRef::Inline(s),
            Value::Shared(b) => ValueRef::Shared(b),
        }
    }
}

/// An owned copy of what a key holds (a clone of an object).
pub fn to_owned(v: Found<'_>) -> OwnedValue {
    match v {
        Stored::Bytes(b) => Owned::Bytes(b.to_bytes()),
        Stored::Object(o) => Owned::Object(Box::new(o.clone())),
    }
}
