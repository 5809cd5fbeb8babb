//! Cross-shard all-or-nothing commands (MSETNX, RENAME, RENAMENX, COPY) and the key locks
//! they take. This is the seed of MULTI/EXEC.
//!
//! The coordinator (the shard that parsed the command) locks the involved keys on their
//! owning shards one shard at a time, in ascending shard order, each `Lock` answered by
//! `Locked` with the keys' current entries. Ordered acquisition means two transactions can
//! never wait for each other in a cycle, so there is no deadlock and no global lock. With
//! every key locked and read, the coordinator decides, sends each shard a `Commit` with its
//! writes (possibly none), and replies to the client.
//!
//! On a shard, an operation that touches a locked key waits in a FIFO of deferred work,
//! and while that FIFO is non-empty every new keyed operation queues behind it, so each
//! key still sees its operations in arrival order. A `Commit` applies its writes, releases
//! its locks and runs the deferred work until it meets a key that is still locked.

use std::collections::VecDeque;

use bytes::Bytes;
use coreshard_engine::{ConnId, Ctx, ShardId};

use super::ops::{unix_ms, Msg, Op, OpResult};
use super::Server;
use crate::db::Value;

/// A transaction: the coordinating shard and its sequence number there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TxnId {
    /// The coordinating shard.
    pub origin: ShardId,
    /// Unique per origin.
    pub id: u64,
}

/// A change a `Commit` applies.
#[derive(Debug)]
pub enum Write {
    /// Store a value with a deadline (Unix ms, 0 = none).
    Set {
        key: Bytes,
        value: Bytes,
        deadline: u64,
    },
    /// Remove a key.
    Del { key: Bytes },
}

/// Which all-or-nothing command a transaction runs.
#[derive(Debug)]
pub enum TxnKind {
    /// MSETNX: set every pair if none of the keys exists.
    MSetNx(Vec<(Bytes, Bytes)>),
    /// RENAME / RENAMENX (`nx`).
    Rename { src: Bytes, dst: Bytes, nx: bool },
    /// COPY (with REPLACE or not).
    Copy {
        src: Bytes,
        dst: Bytes,
        replace: bool,
    },
}

/// Coordinator-side state of a transaction.
#[derive(Debug)]
pub struct Txn {
    conn: ConnId,
    seq: u64,
    kind: TxnKind,
    /// Involved shards in ascending order, each with the keys it owns.
    shards: Vec<(ShardId, Vec<Bytes>)>,
    /// How many shards granted their locks so far.
    granted: usize,
    /// Entries read under lock, by key.
    entries: Vec<(Bytes, Option<(Bytes, u64)>)>,
}

/// Work that waits for locks to be released, in arrival order.
#[derive(Debug)]
pub enum Deferred {
    /// A request (from another shard or this one).
    Request {
        from: ShardId,
        conn: ConnId,
        seq: u64,
        part: u32,
        op: Op<Bytes>,
    },
    /// A lock request of another transaction.
    Lock {
        from: ShardId,
        txn: TxnId,
        keys: Vec<Bytes>,
    },
}

impl Deferred {
    fn keys(&self) -> Vec<&[u8]> {
        match self {
            Deferred::Request { op, .. } => op.keys(),
            Deferred::Lock { keys, .. } => keys.iter().map(|k| &k[..]).collect(),
        }
    }
}

/// A shard's lock table and deferred work.
#[derive(Debug, Default)]
pub struct Locks {
    held: hashbrown::HashMap<Bytes, TxnId>,
    deferred: VecDeque<Deferred>,
}

impl Locks {
    /// Whether work may run directly (nothing locked, nothing waiting).
    pub fn is_clear(&self) -> bool {
        self.held.is_empty() && self.deferred.is_empty()
    }

    fn blocks(&self, keys: &[&[u8]]) -> bool {
        keys.iter().any(|k| self.held.contains_key(*k))
    }
}

impl Server {
    /// Start a cross-shard transaction for `conn`; its reply takes the next position.
    pub fn begin_txn(&mut self, ctx: &mut Ctx<Server>, conn: ConnId, kind: TxnKind) {
        let keys: Vec<Bytes> = match &kind {
            TxnKind::MSetNx(pairs) => pairs.iter().map(|(k, _)| k.clone()).collect(),
            TxnKind::Rename { src, dst, .. } | TxnKind::Copy { src, dst, .. } => {
                vec![src.clone(), dst.clone()]
            }
        };
        let mut shards: Vec<(ShardId, Vec<Bytes>)> = Vec::new();
        for k in keys {
            let s = self.slots.shard_of(&k);
            match shards.iter_mut().find(|(id, _)| *id == s) {
                Some((_, ks)) => {
                    if !ks.contains(&k) {
                        ks.push(k);
                    }
                }
                None => shards.push((s, vec![k])),
            }
        }
        shards.sort_by_key(|(s, _)| *s);
        let Some(state) = ctx.state(conn) else { return };
        let seq = state
            .replies
            .reserve(state.proto, 1, super::reply::Agg::Single(None));
        self.next_txn += 1;
        let id = TxnId {
            origin: self.shard,
            id: self.next_txn,
        };
        let (first, first_keys) = (shards[0].0, shards[0].1.clone());
        self.txns.insert(
            id.id,
            Txn {
                conn,
                seq,
                kind,
                shards,
                granted: 0,
                entries: Vec::new(),
            },
        );
        ctx.send(
            first,
            Msg::Lock {
                txn: id,
                keys: first_keys,
            },
        );
    }

    /// A `Lock` arrived: grant it now or queue it behind conflicting work.
    pub fn on_lock(&mut self, ctx: &mut Ctx<Server>, from: ShardId, txn: TxnId, keys: Vec<Bytes>) {
        let refs: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
        if !self.locks.deferred.is_empty() || self.locks.blocks(&refs) {
            self.locks
                .deferred
                .push_back(Deferred::Lock { from, txn, keys });
            return;
        }
        self.grant(ctx, from, txn, keys);
    }

    fn grant(&mut self, ctx: &mut Ctx<Server>, from: ShardId, txn: TxnId, keys: Vec<Bytes>) {
        let now = unix_ms();
        let entries = keys
            .iter()
            .map(|k| {
                self.db.get_with_deadline(k, now)
                    .map(|(v, d)| (v.to_bytes(), d))
            })
            .collect();
        for k in keys {
            self.locks.held.insert(k, txn);
        }
        ctx.send(from, Msg::Locked { txn, entries });
    }

    /// A shard granted its locks: lock the next shard, or decide and commit.
    pub fn on_locked(
        &mut self,
        ctx: &mut Ctx<Server>,
        txn: TxnId,
        entries: Vec<Option<(Bytes, u64)>>,
    ) {
        let Some(t) = self.txns.get_mut(&txn.id) else {
            return;
        };
        let keys = t.shards[t.granted].1.clone();
        t.entries.extend(keys.into_iter().zip(entries));
        t.granted += 1;
        if t.granted < t.shards.len() {
            let (next, keys) = (t.shards[t.granted].0, t.shards[t.granted].1.clone());
            ctx.send(next, Msg::Lock { txn, keys });
            return;
        }
        let Some(t) = self.txns.remove(&txn.id) else {
            return;
        };
        let (writes, result) = decide(&t);
        for (shard, keys) in &t.shards {
            let mine: Vec<Write> = writes
                .iter()
                .filter(|w| match w {
                    Write::Set { key, .. } | Write::Del { key } => keys.contains(key),
                })
                .map(|w| match w {
                    Write::Set {
                        key,
                        value,
                        deadline,
                    } => Write::Set {
                        key: key.clone(),
                        value: value.clone(),
                        deadline: *deadline,
                    },
                    Write::Del { key } => Write::Del { key: key.clone() },
                })
                .collect();
            ctx.send(*shard, Msg::Commit { txn, writes: mine });
        }
        self.complete_part(ctx, t.conn, t.seq, 0, result);
    }

    /// Apply a transaction's writes here, release its locks and run what waited.
    pub fn on_commit(&mut self, ctx: &mut Ctx<Server>, txn: TxnId, writes: Vec<Write>) {
        let now = unix_ms();
        for w in writes {
            match w {
                Write::Set {
                    key,
                    value,
                    deadline,
                } => self.db.write(&key, &Value::Shared(value), deadline, now),
                Write::Del { key } => {
                    self.db.remove(&key, now);
                }
            }
        }
        self.locks.held.retain(|_, owner| *owner != txn);
        self.run_deferred(ctx);
    }

    /// Queue a request if locks say so; returns it back when it may run now.
    pub fn defer_if_locked(
        &mut self,
        from: ShardId,
        conn: ConnId,
        seq: u64,
        part: u32,
        op: Op<Bytes>,
    ) -> Option<Op<Bytes>> {
        if self.locks.is_clear() {
            return Some(op);
        }
        if self.locks.deferred.is_empty() && !self.locks.blocks(&op.keys()) {
            return Some(op);
        }
        self.locks.deferred.push_back(Deferred::Request {
            from,
            conn,
            seq,
            part,
            op,
        });
        None
    }

    fn run_deferred(&mut self, ctx: &mut Ctx<Server>) {
        while let Some(front) = self.locks.deferred.front() {
            if self.locks.blocks(&front.keys()) {
                return;
            }
            let Some(work) = self.locks.deferred.pop_front() else {
                return;
            };
            match work {
                Deferred::Request {
                    from,
                    conn,
                    seq,
                    part,
                    op,
                } => {
                    let result = self.apply(ctx, op);
                    self.answer(ctx, from, conn, seq, part, result);
                }
                Deferred::Lock { from, txn, keys } => self.grant(ctx, from, txn, keys),
            }
        }
    }
}

/// The outcome of a transaction from what it read under lock.
fn decide(t: &Txn) -> (Vec<Write>, OpResult) {
    let entry = |k: &Bytes| {
        t.entries
            .iter()
            .find(|(key, _)| key == k)
            .and_then(|(_, e)| e.clone())
    };
    match &t.kind {
        TxnKind::MSetNx(pairs) => {
            if pairs.iter().any(|(k, _)| entry(k).is_some()) {
                return (Vec::new(), OpResult::Int(0));
            }
            let writes = pairs
                .iter()
                .map(|(k, v)| Write::Set {
                    key: k.clone(),
                    value: v.clone(),
                    deadline: 0,
                })
                .collect();
            (writes, OpResult::Int(1))
        }
        TxnKind::Rename { src, dst, nx } => {
            let Some((value, deadline)) = entry(src) else {
                return (Vec::new(), OpResult::Error("ERR no such key".into()));
            };
            if *nx && entry(dst).is_some() {
                return (Vec::new(), OpResult::Int(0));
            }
            let writes = vec![
                Write::Del { key: src.clone() },
                Write::Set {
                    key: dst.clone(),
                    value,
                    deadline,
                },
            ];
            (writes, if *nx { OpResult::Int(1) } else { OpResult::Ok })
        }
        TxnKind::Copy { src, dst, replace } => {
            let Some((value, deadline)) = entry(src) else {
                return (Vec::new(), OpResult::Int(0));
            };
            if !*replace && entry(dst).is_some() {
                return (Vec::new(), OpResult::Int(0));
            }
            (
                vec![Write::Set {
                    key: dst.clone(),
                    value,
                    deadline,
                }],
                OpResult::Int(1),
            )
        }
    }
}

/// Used by tests of the ordering rule.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_block_only_their_keys_until_work_is_deferred() {
        let mut l = Locks::default();
        assert!(l.is_clear());
        l.held
            .insert(Bytes::from_static(b"a"), TxnId { origin: 0, id: 1 });
        assert!(l.blocks(&[b"a"]));
        assert!(!l.blocks(&[b"b"]));
    }
}
