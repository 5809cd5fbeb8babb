//! Expiry buckets: slot numbers grouped by 100 ms of deadline, drained oldest first.
//!
//! The buckets are exact: every key with a deadline is listed exactly once, in the bucket of
//! its current deadline, and nothing else is listed. That keeps their memory proportional to
//! the keys with a deadline, whatever the write rate (a key whose TTL slides forward on every
//! request costs one listing, not one per request).
//!
//! To move or drop a listing in O(1) within its bucket, each entry remembers its position in
//! its bucket's `Vec` (a `u32` that fits in the entry's padding, so it costs no memory).
//! Removal is a `swap_remove`: the last slot of the bucket moves into the hole, and the
//! caller updates that moved entry's position. Finding the bucket is one `BTreeMap` lookup,
//! O(log buckets). A deadline change within the same bucket needs no work at all.

use std::collections::BTreeMap;

/// Width of one bucket in milliseconds of deadline.
pub(super) const BUCKET_MS: u64 = 100;

/// Position of an entry that is in no bucket.
pub(super) const NO_POS: u32 = u32::MAX;

/// The bucket a deadline belongs to.
pub(super) fn bucket_of(deadline: u64) -> u64 {
    deadline / BUCKET_MS
}

/// Bytes a `BTreeMap` spends per bucket besides the bucket's `Vec` buffer (its share of a
/// node: key, `Vec` header, edges), an estimate for memory reports.
const PER_BUCKET: usize = 48;

#[derive(Default)]
pub(super) struct Buckets {
    buckets: BTreeMap<u64, Vec<u32>>,
    entries: usize,
    /// Sum of the buckets' `Vec` capacities in bytes, kept as they change so that memory
    /// reports cost O(1).
    vec_bytes: usize,
}

/// Bytes of `cap` listings of a bucket's buffer.
fn cap_bytes(cap: usize) -> usize {
    cap * std::mem::size_of::<u32>()
}

impl Buckets {
    /// List `slot` under `deadline`; returns its position in the bucket.
    pub fn insert(&mut self, deadline: u64, slot: u32) -> u32 {
        let bucket = self.buckets.entry(bucket_of(deadline)).or_default();
        let pos = bucket.len() as u32;
        let before = bucket.capacity();
        bucket.push(slot);
        self.vec_bytes += cap_bytes(bucket.capacity() - before);
        self.entries += 1;
        pos
    }

    /// Unlist `slot`, listed under `deadline` at `pos`. Returns the slot that moved into
    /// `pos` to fill the hole (its entry's position must become `pos`), if any.
    pub fn remove(&mut self, deadline: u64, slot: u32, pos: u32) -> Option<u32> {
        let k = bucket_of(deadline);
        let bucket = self.buckets.get_mut(&k)?;
        let mut pos = pos as usize;
        if bucket.get(pos) != Some(&slot) {
            // Not where the entry says (an invariant violation): look for it rather than
            // unlisting the wrong slot.
            debug_assert!(false, "slot {slot} not at position {pos} of bucket {k}");
            pos = bucket.iter().position(|&s| s == slot)?;
        }
        bucket.swap_remove(pos);
        self.entries -= 1;
        let moved = bucket.get(pos).copied();
        if bucket.is_empty() {
            self.vec_bytes -= cap_bytes(bucket.capacity());
            self.buckets.remove(&k);
        } else if bucket.capacity() > 16 && bucket.len() * 4 < bucket.capacity() {
            // Give back memory of buckets that shrank (keys moved out or were deleted), so
            // bucket memory follows the keys still listed.
            let before = bucket.capacity();
            bucket.shrink_to(bucket.len() * 2);
            self.vec_bytes -= cap_bytes(before - bucket.capacity());
        }
        moved
    }

    /// A bucket is due once every deadline it can hold has passed, so every slot in a due
    /// bucket has expired.
    fn due_key(&self, now: u64) -> Option<u64> {
        let (&k, _) = self.buckets.first_key_value()?;
        ((k + 1).saturating_mul(BUCKET_MS) <= now).then_some(k)
    }

    /// A slot listed in a due bucket (its last one, so unlisting it is a plain pop).
    pub fn peek_due(&self, now: u64) -> Option<u32> {
        let k = self.due_key(now)?;
        self.buckets.get(&k)?.last().copied()
    }

    /// Unlist and return one slot from a due bucket.
    pub fn pop_due(&mut self, now: u64) -> Option<u32> {
        let k = self.due_key(now)?;
        let bucket = self.buckets.get_mut(&k)?;
        let slot = bucket.pop();
        if bucket.is_empty() {
            self.vec_bytes -= cap_bytes(bucket.capacity());
            self.buckets.remove(&k);
        }
        if slot.is_some() {
            self.entries -= 1;
        }
        slot
    }

    pub fn has_due(&self, now: u64) -> bool {
        self.due_key(now).is_some()
    }

    pub fn next_due(&self) -> Option<u64> {
        self.buckets.first_key_value().map(|(&k, _)| k * BUCKET_MS)
    }

    /// Slots listed (one per key with a deadline).
    #[cfg(test)]
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Every listing as (bucket, position, slot), for invariant checks in tests.
    #[cfg(test)]
    pub fn listings(&self) -> impl Iterator<Item = (u64, u32, u32)> + '_ {
        self.buckets.iter().flat_map(|(&k, b)| {
            b.iter()
                .enumerate()
                .map(move |(pos, &slot)| (k, pos as u32, slot))
        })
    }

    /// Up to `n` slots of the earliest bucket (the keys that expire soonest, or already
    /// expired and not yet reclaimed), most recently listed first.
    pub fn soonest(&self, n: usize) -> impl Iterator<Item = u32> + '_ {
        self.buckets
            .first_key_value()
            .into_iter()
            .flat_map(move |(_, b)| b.iter().rev().take(n).copied())
    }

    /// Memory held by the buckets (an estimate of the tree's nodes plus the exact bucket
    /// buffers), in O(1).
    pub fn bytes(&self) -> usize {
        self.vec_bytes + self.buckets.len() * PER_BUCKET
    }

    /// [`Buckets::bytes`] recomputed from scratch, to check the running sum in tests.
    #[cfg(test)]
    pub fn bytes_recounted(&self) -> usize {
        self.buckets
            .values()
            .map(|b| b.capacity() * std::mem::size_of::<u32>() + PER_BUCKET)
            .sum()
    }
}
