//! Start-up: rebuild every shard's keyspace from the newest snapshot and the log records
//! after it, routing each key by slot, so the shard count may change between runs.

use bytes::Bytes;
use coreshard_engine::wal::Recovery;

use super::effect::Effect;
use super::snapshot;
use crate::db::{Db, Value};
use crate::routing::SlotTable;
use crate::types::Obj;
use coreshard_engine::ttl::Owned;

/// What recovery found.
#[derive(Debug, Default, Clone)]
pub struct Recovered {
    /// Keys loaded from the snapshot.
    pub snapshot_keys: u64,
    /// Log records replayed.
    pub records: u64,
    /// A torn tail that was cut off, if any.
    pub truncated: Option<String>,
}

/// Why start-up cannot recover.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The log or a snapshot could not be read.
    #[error("{0}")]
    Wal(#[from] coreshard_engine::wal::WalError),
    /// A record's payload does not decode.
    #[error("{0}")]
    Payload(#[from] super::effect::BadPayload),
    /// A snapshot entry does not decode.
    #[error("undecodable snapshot entry")]
    Snapshot,
    /// A collection in a record or snapshot does not decode.
    #[error("undecodable {0} value for key {1:?}")]
    Object(&'static str, String),
    /// A command record names a command this build cannot replay.
    #[error("log record names a command this server cannot replay: {0}")]
    Command(String),
}

/// Apply `recovery` to `dbs` (one per shard, journals off), then drop the keys whose
/// deadline passed before `now`.
///
/// Records are applied with expiry *off* (time 0): each record was valid when it was
/// written, and judging it by today's clock would be wrong (a PERSIST after a SET with a
/// short TTL would find the key gone). Keys that expired meanwhile go at the end.
pub fn replay(
    recovery: &mut Recovery,
    dbs: &mut [Db],
    slots: &SlotTable,
    now: u64,
) -> Result<Recovered, ReplayError> {
    let mut out = Recovered {
        truncated: recovery.truncated.clone(),
        ..Recovered::default()
    };
    // Per shard of the run that took the snapshot: its LSN at the copy. Its records up to
    // that LSN are in the snapshot already (the log may still hold some after the
    // snapshot's start position); LSNs of later runs are always higher.
    let mut covered: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    for entry in recovery.snapshot() {
        let entry = entry?;
        match snapshot::decode(&entry.payload) {
            Some(snapshot::Entry::Meta { shard }) => {
                covered.insert(shard, entry.lsn);
            }
            Some(snapshot::Entry::Key(kind, payload)) => {
                let e = Effect::decode(kind, &payload)?;
                apply(&e, dbs, slots, 0)?;
                out.snapshot_keys += 1;
            }
            None => return Err(ReplayError::Snapshot),
        }
    }
    let now_for_records = 0;
    let _ = now;
    for record in recovery.records() {
        let record = record?;
        if covered
            .get(&u64::from(record.shard))
            .is_some_and(|&upto| record.lsn <= upto)
        {
            continue;
        }
        let e = Effect::decode(record.kind, &record.payload)?;
        apply(&e, dbs, slots, now_for_records)?;
        out.records += 1;
    }
    for db in dbs.iter_mut() {
        while db.expire_step(now, 1 << 16).more {}
    }
    Ok(out)
}

fn owner<'a>(dbs: &'a mut [Db], slots: &SlotTable, key: &Bytes) -> Option<&'a mut Db> {
    let shard = slots.shard_of(key);
    dbs.get_mut(shard)
}

/// Apply one effect as of time `now` (0: nothing counts as expired).
pub fn apply(e: &Effect, dbs: &mut [Db], slots: &SlotTable, now: u64) -> Result<(), ReplayError> {
    match e {
        Effect::Obj {
            key,
            ty,
            data,
            deadline,
        } => {
            let obj = Obj::decode(*ty, data).ok_or_else(|| {
                ReplayError::Object("collection", String::from_utf8_lossy(key).into_owned())
            })?;
            if let Some(db) = owner(dbs, slots, key) {
                db.write_owned(key, Owned::Object(Box::new(obj)), *deadline, now);
            }
        }
        Effect::Cmd { args } => {
            let name = String::from_utf8_lossy(&args[0]).into_owned();
            let spec = crate::commands::lookup(&args[0]);
            let keyed = spec.and_then(|s| s.keyed);
            // The first key by the command's key spec (XGROUP's is its third argument).
            let key = spec
                .and_then(|s| s.key_positions(args).next())
                .and_then(|i| args.get(i));
            let (Some(f), Some(key)) = (keyed, key) else {
                return Err(ReplayError::Command(name));
            };
            if let Some(db) = owner(dbs, slots, key) {
                if let crate::server::ops::OpResult::Error(e) = f(db, now, args) {
                    // A command that changed something and then failed (a collection
                    // reaching its size limit half way) replays to the same failure;
                    // anything else means the log and this build disagree. Either way the
                    // rest of the log is still applied: refusing to start would lose it all.
                    tracing::warn!("replaying {name}: {e}");
                }
            }
        }
        Effect::Set {
            key,
            value,
            deadline,
        } => {
            if let Some(db) = owner(dbs, slots, key) {
                db.write(key, &Value::Shared(value.clone()), *deadline, now);
            }
        }
        Effect::Del { key } => {
            if let Some(db) = owner(dbs, slots, key) {
                db.remove(key, now);
            }
        }
        Effect::Deadline { key, deadline } => {
            if let Some(db) = owner(dbs, slots, key) {
                db.set_deadline(key, *deadline, now);
            }
        }
        Effect::Append { key, data } => {
            if let Some(db) = owner(dbs, slots, key) {
                db.append(key, data, now);
            }
        }
        Effect::SetRange { key, offset, data } => {
            if let (Some(db), Ok(offset)) = (owner(dbs, slots, key), usize::try_from(*offset)) {
                db.setrange(key, offset, data, now);
            }
        }
        Effect::Flush => dbs.iter_mut().for_each(|db| db.clear(now)),
        Effect::Fence => {}
        Effect::Txn { flush, writes } => {
            if *flush {
                dbs.iter_mut().for_each(|db| db.clear(now));
            }
            for w in writes {
                apply(w, dbs, slots, now)?;
            }
        }
    }
    Ok(())
}
