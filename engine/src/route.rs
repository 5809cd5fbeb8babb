//! Key → shard routing: give every key one owning shard, so state keyed by it lives in one
//! place and every request for it runs there.
//!
//! A [`Router`] maps a key's 64-bit hash onto `0..shards` by multiply-shift (Lemire's fast
//! range: `hash * shards >> 64`), which keeps the high bits, needs no division and spreads
//! a uniform hash evenly. The hash is pluggable ([`KeyHash`]); the default,
//! [`DefaultKeyHash`], is fixed (the same key maps to the same shard in every process and
//! run) and fast, but not keyed: a client choosing keys on purpose can load one shard.
//!
//! ```
//! use coreshard_engine::{KeyHash, Router};
//!
//! let router = Router::new(4);
//! let shard = router.shard_of(b"user:1000");
//! assert!(shard < 4);
//! assert_eq!(shard, router.shard_of(b"user:1000"));
//!
//! // Any `Fn(&[u8]) -> u64` is a hash. A hash of the top 14 bits only (a 16384-slot
//! // space like Redis Cluster's) gives contiguous slot ranges per shard.
//! let by_slot = Router::with_hash(4, |k: &[u8]| u64::from(k.first().copied().unwrap_or(0)) << 50);
//! assert_eq!(by_slot.shard_of(b"\x00"), 0);
//! ```

use crate::handler::ShardId;

/// A hash from keys to 64 bits, for [`Router`]. Shards are chosen from the high bits.
pub trait KeyHash {
    /// The key's hash.
    fn hash_key(&self, key: &[u8]) -> u64;
}

impl<F: Fn(&[u8]) -> u64> KeyHash for F {
    fn hash_key(&self, key: &[u8]) -> u64 {
        self(key)
    }
}

/// The default key hash: fixed (no per-process seed), word-at-a-time, with a final
/// avalanche so that keys differing in one byte land on unrelated shards.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultKeyHash;

const K1: u64 = 0x9e37_79b9_7f4a_7c15;
const K2: u64 = 0xff51_afd7_ed55_8ccd;
const K3: u64 = 0xc4ce_b9fe_1a85_ec53;

/// MurmurHash3's 64-bit finaliser.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(K2);
    h ^= h >> 33;
    h = h.wrapping_mul(K3);
    h ^ (h >> 33)
}

impl KeyHash for DefaultKeyHash {
    fn hash_key(&self, key: &[u8]) -> u64 {
        let mut h = K1 ^ (key.len() as u64).wrapping_mul(K2);
        let mut words = key.chunks_exact(8);
        for w in &mut words {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            h = (h ^ u64::from_le_bytes(b)).wrapping_mul(K1).rotate_left(29);
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            h = (h ^ u64::from_le_bytes(b)).wrapping_mul(K1).rotate_left(29);
        }
        fmix64(h)
    }
}

/// Which shard owns a key. Cheap to copy around; build one per shard (from
/// [`crate::ShardInfo::shards`]) or use [`crate::Ctx::shard_for`], which routes with
/// [`DefaultKeyHash`].
#[derive(Debug, Clone, Copy)]
pub struct Router<K = DefaultKeyHash> {
    shards: usize,
    hash: K,
}

impl Router {
    /// Route over `shards` shards with [`DefaultKeyHash`] (0 counts as 1).
    pub fn new(shards: usize) -> Self {
        Router::with_hash(shards, DefaultKeyHash)
    }
}

impl<K: KeyHash> Router<K> {
    /// Route over `shards` shards with `hash` (0 counts as 1).
    pub fn with_hash(shards: usize, hash: K) -> Self {
        Router {
            shards: shards.max(1),
            hash,
        }
    }

    /// How many shards keys are spread over.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// The shard that owns `key`.
    pub fn shard_of(&self, key: &[u8]) -> ShardId {
        shard_of_hash(self.hash.hash_key(key), self.shards)
    }
}

/// `hash * shards >> 64`: the shard for a hash, from its high bits.
pub(crate) fn shard_of_hash(hash: u64, shards: usize) -> ShardId {
    ((u128::from(hash) * shards as u128) >> 64) as ShardId
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_spread_evenly_and_stay_put() {
        for shards in [1, 2, 3, 4, 7, 16] {
            let r = Router::new(shards);
            let mut counts = vec![0usize; shards];
            for i in 0..70_000 {
                counts[r.shard_of(format!("key:{i}").as_bytes())] += 1;
            }
            let expect = 70_000 / shards;
            for c in counts {
                assert!(
                    c.abs_diff(expect) < expect / 20 + 50,
                    "{shards}: {c} vs {expect}"
                );
            }
        }
        // Fixed across processes and releases: routing decides where state lives (a
        // persisted per-shard store must find its keys on the same shard next time).
        assert_eq!(DefaultKeyHash.hash_key(b""), 0x9ca0_66f1_a4ab_2eea);
        assert_eq!(DefaultKeyHash.hash_key(b"user:1000"), 0x0aea_cf77_46d9_9e0f);
        assert_eq!(
            DefaultKeyHash.hash_key(b"a longer key of 23 bytes"),
            0x65c7_3184_cb68_3afd
        );
        assert_ne!(DefaultKeyHash.hash_key(b"a"), DefaultKeyHash.hash_key(b"b"));
        assert_ne!(
            DefaultKeyHash.hash_key(b"abcdefgh1"),
            DefaultKeyHash.hash_key(b"abcdefgh2")
        );
    }

    #[test]
    fn a_slot_hash_gives_contiguous_ranges() {
        // slot << 50 routes slot s to s * shards / 16384, as a contiguous slot table does.
        let r = Router::with_hash(3, |k: &[u8]| {
            u64::from(u16::from_le_bytes([k[0], k[1]])) << 50
        });
        for slot in 0u16..16384 {
            let want = usize::from(slot) * 3 / 16384;
            assert_eq!(r.shard_of(&slot.to_le_bytes()), want);
        }
        assert_eq!(Router::with_hash(0, DefaultKeyHash).shards(), 1);
    }
}
