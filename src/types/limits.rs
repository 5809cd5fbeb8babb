//! The compact-encoding thresholds, Redis's CONFIG parameters of the same names:
//! `hash-max-listpack-entries` / `-value`, `zset-max-listpack-entries` / `-value` (with
//! their `ziplist` aliases) and `set-max-intset-entries`. Shared by every shard (relaxed
//! atomics; CONFIG SET needs no messages).
//!
//! As in Redis, they apply to every later write, not only to values made afterwards: a
//! compact hash or sorted set takes the current limits whenever it is written
//! ([`crate::db::Db::edit_hash`], [`crate::db::Db::edit_zset`]) and converts when Redis
//! would: a hash holding more entries than the limit at its next field set (an update
//! too), a sorted set when a new member would take it past the limit, any of them on a
//! longer field, value or member; deletions never convert. An intset converts when a
//! member would take it past the limit. Nothing converts back.
//! Values loaded at start keep the limits they were saved with until their first write.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Redis 7.0's defaults as Debian's redis-server 7.0.15 reports them.
pub const HASH_MAX_LISTPACK_ENTRIES: usize = 512;
pub const HASH_MAX_LISTPACK_VALUE: usize = 64;
pub const ZSET_MAX_LISTPACK_ENTRIES: usize = 128;
pub const ZSET_MAX_LISTPACK_VALUE: usize = 64;
pub const SET_MAX_INTSET_ENTRIES: usize = 512;

static HASH_ENTRIES: AtomicUsize = AtomicUsize::new(HASH_MAX_LISTPACK_ENTRIES);
static HASH_VALUE: AtomicUsize = AtomicUsize::new(HASH_MAX_LISTPACK_VALUE);
static ZSET_ENTRIES: AtomicUsize = AtomicUsize::new(ZSET_MAX_LISTPACK_ENTRIES);
static ZSET_VALUE: AtomicUsize = AtomicUsize::new(ZSET_MAX_LISTPACK_VALUE);
static SET_INTSET: AtomicUsize = AtomicUsize::new(SET_MAX_INTSET_ENTRIES);

/// The parameters, each with its current value's cell and its Redis alias.
const PARAMS: [(&str, Option<&str>, &AtomicUsize); 5] = [
    (
        "hash-max-listpack-entries",
        Some("hash-max-ziplist-entries"),
        &HASH_ENTRIES,
    ),
    (
        "hash-max-listpack-value",
        Some("hash-max-ziplist-value"),
        &HASH_VALUE,
    ),
    (
        "zset-max-listpack-entries",
        Some("zset-max-ziplist-entries"),
        &ZSET_ENTRIES,
    ),
    (
        "zset-max-listpack-value",
        Some("zset-max-ziplist-value"),
        &ZSET_VALUE,
    ),
    ("set-max-intset-entries", None, &SET_INTSET),
];

/// `(max_entries, max_len)` for compact hashes.
#[inline]
pub fn hash() -> (usize, usize) {
    (HASH_ENTRIES.load(Relaxed), HASH_VALUE.load(Relaxed))
}

/// `(max_entries, max_len)` for compact sorted sets.
#[inline]
pub fn zset() -> (usize, usize) {
    (ZSET_ENTRIES.load(Relaxed), ZSET_VALUE.load(Relaxed))
}

/// The most members an intset holds.
#[inline]
pub fn intset() -> usize {
    SET_INTSET.load(Relaxed)
}

/// Every parameter name CONFIG knows (aliases included) with its current value.
pub fn config_params() -> Vec<(&'static str, String)> {
    PARAMS
        .iter()
        .flat_map(|(name, alias, cell)| {
            let v = cell.load(Relaxed).to_string();
            std::iter::once((*name, v.clone())).chain(alias.map(|a| (a, v)))
        })
        .collect()
}

/// Set a parameter (canonical name or alias; other names change nothing).
pub fn set(name: &str, value: usize) {
    if let Some((_, _, cell)) = PARAMS
        .iter()
        .find(|(n, alias, _)| *n == name || *alias == Some(name))
    {
        cell.store(value, Relaxed);
    }
}

/// Command-line defaults and values, applied at start.
pub fn apply_args(args: &crate::config::Args) {
    HASH_ENTRIES.store(args.hash_max_listpack_entries, Relaxed);
    HASH_VALUE.store(args.hash_max_listpack_value, Relaxed);
    ZSET_ENTRIES.store(args.zset_max_listpack_entries, Relaxed);
    ZSET_VALUE.store(args.zset_max_listpack_value, Relaxed);
    SET_INTSET.store(args.set_max_intset_entries, Relaxed);
}
