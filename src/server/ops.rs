//! Operations on a shard's data, and what crosses cores to run them elsewhere.
//!
//! An operation is built on the shard that parsed the request. It runs in place when that
//! shard owns the keys (keys borrowed from the receive buffer, `Op<&[u8]>`), or travels to
//! the owning shard with owned keys (`Op<Bytes>`). Values are `Bytes` either way: copied
//! once out of the receive buffer, then shared.

use bytes::Bytes;
use coreshard_engine::{ConnId, Ctx};

use super::Server;
use crate::store::Store;

/// One shard's part of a command.
#[derive(Debug)]
pub enum Op<K> {
    /// GET
    Get(K),
    /// SET (plain)
    Set(K, Bytes),
    /// DEL: how many of these existed.
    Del(Vec<K>),
    /// EXISTS: how many of these exist (duplicates count).
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
    ClientList,
}

impl Op<&[u8]> {
    /// Copy the keys so the operation can travel to another shard.
    pub fn into_owned(self) -> Op<Bytes> {
        let own = |k: &[u8]| Bytes::copy_from_slice(k);
        match self {
            Op::Get(k) => Op::Get(own(k)),
            Op::Set(k, v) => Op::Set(own(k), v),
            Op::Del(ks) => Op::Del(ks.into_iter().map(own).collect()),
            Op::Exists(ks) => Op::Exists(ks.into_iter().map(own).collect()),
            Op::MGet(ks) => Op::MGet(ks.into_iter().map(own).collect()),
            Op::MSet(kvs) => Op::MSet(kvs.into_iter().map(|(k, v)| (own(k), v)).collect()),
            Op::DbSize => Op::DbSize,
            Op::Flush => Op::Flush,
            Op::Report => Op::Report,
            Op::ClientList => Op::ClientList,
        }
    }
}

/// Counters one shard contributes to INFO.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShardReport {
    /// Keys held.
    pub keys: u64,
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
    /// INFO counters.
    Report(ShardReport),
    /// Text lines (CLIENT LIST).
    Text(String),
}

/// Messages between shards.
#[derive(Debug)]
pub enum Msg {
    /// Run `op` and answer with a `Reply` carrying the same `conn`, `seq` and `part`.
    Request {
        conn: ConnId,
        seq: u64,
        part: u32,
        op: Op<Bytes>,
    },
    /// The result of a `Request`.
    Reply {
        conn: ConnId,
        seq: u64,
        part: u32,
        result: OpResult,
    },
}

impl Server {
    /// Run one part on this shard's data.
    pub fn apply<K: AsRef<[u8]>>(&mut self, ctx: &Ctx<Server>, op: Op<K>) -> OpResult {
        let store: &mut Store = &mut self.store;
        match op {
            Op::Get(k) => OpResult::Value(store.get(k.as_ref())),
            Op::Set(k, v) => {
                store.set(k.as_ref(), v);
                OpResult::Ok
            }
            Op::Del(ks) => {
                OpResult::Int(ks.iter().filter(|k| store.del(k.as_ref())).count() as i64)
            }
            Op::Exists(ks) => {
                OpResult::Int(ks.iter().filter(|k| store.exists(k.as_ref())).count() as i64)
            }
            Op::MGet(ks) => OpResult::Values(ks.iter().map(|k| store.get(k.as_ref())).collect()),
            Op::MSet(kvs) => {
                for (k, v) in kvs {
                    store.set(k.as_ref(), v);
                }
                OpResult::Ok
            }
            Op::DbSize => OpResult::Int(store.len() as i64),
            Op::Flush => {
                store.clear();
                OpResult::Ok
            }
            Op::Report => {
                let s = ctx.stats();
                OpResult::Report(ShardReport {
                    keys: store.len() as u64,
                    clients: ctx.local_connections() as u64,
                    commands: self.commands_processed,
                    accepted: s.accepted,
                    rejected: s.rejected,
                    hits: store.hits,
                    misses: store.misses,
                    bytes_in: s.bytes_in,
                    bytes_out: s.bytes_out,
                    recv_buffer_exhausted: s.recv_buffer_exhausted,
                })
            }
            Op::ClientList => OpResult::Text(super::client_list_lines(ctx, None)),
        }
    }
}
