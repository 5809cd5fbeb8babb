//! Expiry buckets: slot numbers grouped by 100 ms of deadline, drained oldest first.
//! Entries go stale when a deadline changes or a key is deleted; the drainer checks the
//! entry's real deadline, so stale ones cost one skipped check and no correctness.

use std::collections::BTreeMap;

const BUCKET_MS: u64 = 100;

#[derive(Default)]
pub(super) struct Buckets {
    buckets: BTreeMap<u64, Vec<u32>>,
}

impl Buckets {
    pub fn push(&mut self, deadline: u64, slot: u32) {
        self.buckets
            .entry(deadline / BUCKET_MS)
            .or_default()
            .push(slot);
    }

    /// A bucket is due once every deadline it can hold has passed, so an entry found in a
    /// due bucket with a later deadline is stale (its new deadline has its own bucket).
    fn due_key(&self, now: u64) -> Option<u64> {
        let (&k, _) = self.buckets.first_key_value()?;
        ((k + 1) * BUCKET_MS <= now).then_some(k)
    }

    pub fn pop_due(&mut self, now: u64) -> Option<u32> {
        let k = self.due_key(now)?;
        let bucket = self.buckets.get_mut(&k)?;
        let slot = bucket.pop();
        if bucket.is_empty() {
            self.buckets.remove(&k);
        }
        slot
    }

    pub fn has_due(&self, now: u64) -> bool {
        self.due_key(now).is_some()
    }

    pub fn next_due(&self) -> Option<u64> {
        self.buckets.first_key_value().map(|(&k, _)| k * BUCKET_MS)
    }

    pub fn bytes(&self) -> usize {
        self.buckets.values().map(|b| b.capacity() * 4 + 48).sum()
    }
}
