//! WATCH on one shard: the keys some connection watches, each with the version of its
//! last modification.
//!
//! A watcher reads a key's version (and deadline) when it WATCHes, and EXEC compares them
//! under the transaction's key locks: a different version means someone modified the key;
//! a deadline that has passed means it expired (expiry needs no bump, so active and lazy
//! expiry cost nothing here). Versions come from one shard-wide counter, so a key that
//! is unwatched and watched again can never repeat an old version. Only watched keys are
//! tracked: with no watchers, a mutation costs one `is_empty` check.

use bytes::Bytes;

/// One shard's watched keys.
#[derive(Debug, Default)]
pub struct WatchTable {
    keys: hashbrown::HashMap<Bytes, Watched>,
    epoch: u64,
}

#[derive(Debug)]
struct Watched {
    version: u64,
    watchers: u32,
}

impl WatchTable {
    /// A mutation of `key`: watchers of it will see a new version.
    #[inline]
    pub fn touch(&mut self, key: &[u8]) {
        if self.keys.is_empty() {
            return;
        }
        if let Some(w) = self.keys.get_mut(key) {
            self.epoch += 1;
            w.version = self.epoch;
        }
    }

    /// Every watched key for which `changed` says so was modified (FLUSHALL / FLUSHDB).
    pub fn touch_where(&mut self, mut changed: impl FnMut(&[u8]) -> bool) {
        for (k, w) in self.keys.iter_mut() {
            if changed(k) {
                self.epoch += 1;
                w.version = self.epoch;
            }
        }
    }

    /// Start watching `key`; returns the version to compare at EXEC.
    pub fn watch(&mut self, key: &[u8]) -> u64 {
        if let Some(w) = self.keys.get_mut(key) {
            w.watchers += 1;
            return w.version;
        }
        let version = self.epoch;
        self.keys.insert(
            Bytes::copy_from_slice(key),
            Watched {
                version,
                watchers: 1,
            },
        );
        version
    }

    /// The current version of a watched key (`None` when nobody watches it any more).
    pub fn version(&self, key: &[u8]) -> Option<u64> {
        self.keys.get(key).map(|w| w.version)
    }

    /// One watcher of `key` is gone.
    pub fn unwatch(&mut self, key: &[u8]) {
        if let Some(w) = self.keys.get_mut(key) {
            w.watchers = w.watchers.saturating_sub(1);
            if w.watchers == 0 {
                self.keys.remove(key);
            }
        }
    }

    /// Keys watched on this shard.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether nothing is watched.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_touch_changes_the_version_only_of_watched_keys() {
        let mut t = WatchTable::default();
        t.touch(b"a");
        let v = t.watch(b"a");
        assert_eq!(t.version(b"a"), Some(v));
        t.touch(b"b");
        assert_eq!(t.version(b"a"), Some(v));
        t.touch(b"a");
        assert_ne!(t.version(b"a"), Some(v));
    }

    #[test]
    fn rewatching_never_repeats_an_old_version() {
        let mut t = WatchTable::default();
        let v1 = t.watch(b"a");
        t.touch(b"a");
        t.unwatch(b"a");
        assert!(t.is_empty());
        let v2 = t.watch(b"a");
        assert_ne!(v1, v2);
        t.touch_where(|_| true);
        assert_ne!(t.version(b"a"), Some(v2));
    }

    #[test]
    fn the_last_unwatch_forgets_the_key() {
        let mut t = WatchTable::default();
        t.watch(b"a");
        t.watch(b"a");
        t.unwatch(b"a");
        assert_eq!(t.len(), 1);
        t.unwatch(b"a");
        assert_eq!(t.len(), 0);
    }
}
