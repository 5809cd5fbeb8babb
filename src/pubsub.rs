//! Pub/sub routing on one shard: its local subscribers, and its replica of which shards
//! have interest in which channel or pattern.
//!
//! A shard that gains its first local subscriber of a name *announces* it to every other
//! shard and confirms the SUBSCRIBE only once all of them acknowledged; so a PUBLISH that
//! starts after a client saw its confirmation, on any shard, finds the subscriber's shard
//! in its replica. A PUBLISH goes only to the shards with interest (patterns are matched
//! against the replica's patterns on the publishing shard). No locks: replicas change only
//! through messages, and mailboxes between two shards are FIFO, which also keeps every
//! publisher's messages in order.
//!
//! A PUBLISH inside MULTI/EXEC or a script must answer its count without a round trip (a
//! script cannot wait for other shards). For those, [`receivers`] reads a census of every
//! shard's subscribers: the one piece of pub/sub state shards share, behind a mutex that only
//! (un)subscribing and those PUBLISHes take (plain PUBLISH counts its actual deliveries and
//! never touches it). Each shard updates it before answering a SUBSCRIBE or UNSUBSCRIBE, so it
//! counts every confirmed subscription and none that was confirmed gone.

use bytes::Bytes;
use coreshard_engine::{ConnId, ReplySlot, ShardId};
use hashbrown::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

/// Which kind of subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ns {
    /// SUBSCRIBE / PUBLISH.
    Channel,
    /// PSUBSCRIBE (the name is a glob pattern).
    Pattern,
    /// SSUBSCRIBE / SPUBLISH.
    Shard,
}

/// Shards as a bit set (up to 64 shards; more fall back to "every shard").
pub type ShardMask = u64;

/// The shards of `mask`, out of `shards` (those past the mask's 64 bits always).
pub fn shards_in(mask: ShardMask, shards: usize) -> impl Iterator<Item = usize> {
    (0..shards).filter(move |&t| t >= 64 || mask & (1 << t) != 0)
}

fn bit(shard: ShardId) -> ShardMask {
    if shard < 64 {
        1 << shard
    } else {
        ShardMask::MAX
    }
}

/// An announcement of new interest waiting for every other shard's acknowledgement.
#[derive(Debug)]
pub struct Announcement {
    /// Acknowledgements still missing.
    pub remaining: usize,
    /// Replies to release when it completes (SUBSCRIBE confirmations).
    pub waiters: Vec<ReplySlot>,
    /// The name it announces.
    name: (Ns, Bytes),
}

/// One shard's pub/sub state.
#[derive(Debug, Default)]
pub struct PubSub {
    /// Local subscribers per (kind, name).
    local: HashMap<(Ns, Bytes), HashSet<ConnId>>,
    /// The patterns among `local` (a message looks for matching patterns here, not
    /// through every channel subscribed on this shard).
    local_patterns: HashSet<Bytes>,
    /// Which shards have interest in each channel / shard channel.
    interest: HashMap<(Ns, Bytes), ShardMask>,
    /// Which shards have interest in each pattern.
    patterns: HashMap<Bytes, ShardMask>,
    /// Announcements in flight, by id, and which name each announces.
    pub announcing: HashMap<u64, Announcement>,
    pending_name: HashMap<(Ns, Bytes), u64>,
    next_id: u64,
    /// Slow subscribers dropped for their output buffer limit.
    pub disconnections: u64,
}

/// What adding a local subscriber requires.
#[derive(Debug, PartialEq, Eq)]
pub enum Joined {
    /// Already subscribed, or other shards already know: confirm at once.
    Ready,
    /// Wait for announcement `id` (new, or already in flight).
    Wait { id: u64, new: bool },
}

impl PubSub {
    /// Add `conn` as a local subscriber of `name`. `others` is the number of other shards.
    pub fn join(
        &mut self,
        me: ShardId,
        ns: Ns,
        name: &Bytes,
        conn: ConnId,
        others: usize,
    ) -> Joined {
        let key = (ns, name.clone());
        let set = self.local.entry(key.clone()).or_default();
        let first = set.is_empty();
        if set.insert(conn) {
            census_add(ns, name, 1);
        }
        if first && ns == Ns::Pattern {
            self.local_patterns.insert(name.clone());
        }
        if first {
            self.set_interest(ns, name, me, true);
        }
        if let Some(&id) = self.pending_name.get(&key) {
            return Joined::Wait { id, new: false };
        }
        if !first || others == 0 {
            return Joined::Ready;
        }
        self.next_id += 1;
        let id = self.next_id;
        self.announcing.insert(
            id,
            Announcement {
                remaining: others,
                waiters: Vec::new(),
                name: key.clone(),
            },
        );
        self.pending_name.insert(key, id);
        Joined::Wait { id, new: true }
    }

    /// Remove `conn` from `name`'s local subscribers; true when it was the last one (the
    /// other shards are then told this shard lost interest).
    pub fn leave(&mut self, me: ShardId, ns: Ns, name: &Bytes, conn: ConnId) -> bool {
        let key = (ns, name.clone());
        let Some(set) = self.local.get_mut(&key) else {
            return false;
        };
        if !set.remove(&conn) {
            return false;
        }
        census_add(ns, name, -1);
        if !set.is_empty() {
            return false;
        }
        self.local.remove(&key);
        if ns == Ns::Pattern {
            self.local_patterns.remove(name);
        }
        // An announcement still in flight keeps its waiters, but a later first subscriber
        // must announce afresh: its "on" then reaches every shard after this "off".
        self.pending_name.remove(&key);
        self.set_interest(ns, name, me, false);
        true
    }

    /// An acknowledgement of announcement `id` arrived; the waiters to release once all
    /// did.
    pub fn acked(&mut self, id: u64) -> Option<Vec<ReplySlot>> {
        let a = self.announcing.get_mut(&id)?;
        a.remaining = a.remaining.saturating_sub(1);
        if a.remaining > 0 {
            return None;
        }
        let a = self.announcing.remove(&id)?;
        // (Not a walk of every pending name per acknowledgement: a SUBSCRIBE of 100k
        // channels took 13-29 s.)
        if self.pending_name.get(&a.name) == Some(&id) {
            self.pending_name.remove(&a.name);
        }
        Some(a.waiters)
    }

    /// Record that shard `shard` gained or lost interest in `name`.
    pub fn set_interest(&mut self, ns: Ns, name: &Bytes, shard: ShardId, on: bool) {
        let mask = match ns {
            Ns::Pattern => self.patterns.entry(name.clone()).or_insert(0),
            _ => self.interest.entry((ns, name.clone())).or_insert(0),
        };
        if on {
            *mask |= bit(shard);
        } else if shard < 64 {
            *mask &= !bit(shard);
        }
        if *mask == 0 {
            match ns {
                Ns::Pattern => {
                    self.patterns.remove(name);
                }
                _ => {
                    self.interest.remove(&(ns, name.clone()));
                }
            }
        }
    }

    /// The shards a message to `channel` must reach (for `Ns::Pattern`: the shards with
    /// subscribers of that pattern, where its overflow mark goes).
    pub fn targets(&self, ns: Ns, channel: &[u8]) -> ShardMask {
        if ns == Ns::Pattern {
            return self.patterns.get(channel).copied().unwrap_or(0);
        }
        let mut mask = self
            .interest
            .get(&(ns, Bytes::copy_from_slice(channel)))
            .copied()
            .unwrap_or(0);
        if ns == Ns::Channel {
            for (pattern, m) in &self.patterns {
                if mask | m != mask && crate::glob::glob_match(pattern, channel, false) {
                    mask |= m;
                }
            }
        }
        mask
    }

    /// Local subscribers of a channel.
    pub fn subscribers(&self, ns: Ns, name: &[u8]) -> impl Iterator<Item = ConnId> + '_ {
        self.local
            .get(&(ns, Bytes::copy_from_slice(name)))
            .into_iter()
            .flat_map(|s| s.iter().copied())
    }

    /// Local patterns matching `channel`, with their subscribers.
    pub fn matching_patterns<'a>(
        &'a self,
        channel: &'a [u8],
    ) -> impl Iterator<Item = (&'a Bytes, &'a HashSet<ConnId>)> + 'a {
        self.local_patterns.iter().filter_map(move |p| {
            if !crate::glob::glob_match(p, channel, false) {
                return None;
            }
            let subs = self.local.get(&(Ns::Pattern, p.clone()))?;
            Some((p, subs))
        })
    }

    /// Local names of kind `ns` (PUBSUB CHANNELS / SHARDCHANNELS), matching `pattern`.
    pub fn names(&self, ns: Ns, pattern: Option<&[u8]>) -> Vec<Bytes> {
        self.local
            .keys()
            .filter(|(n, name)| {
                *n == ns && pattern.is_none_or(|p| crate::glob::glob_match(p, name, false))
            })
            .map(|(_, name)| name.clone())
            .collect()
    }

    /// Local subscribers of `name`.
    pub fn count(&self, ns: Ns, name: &[u8]) -> usize {
        self.local
            .get(&(ns, Bytes::copy_from_slice(name)))
            .map_or(0, |s| s.len())
    }
}

/// Subscribers per name over all shards (see the module comment).
#[derive(Default)]
struct Census {
    /// Channels and shard channels.
    names: HashMap<(Ns, Bytes), i64>,
    /// Patterns.
    patterns: HashMap<Bytes, i64>,
}

static CENSUS: Mutex<Option<Census>> = Mutex::new(None);

fn census() -> MutexGuard<'static, Option<Census>> {
    // A panic elsewhere cannot leave the counts half-changed: each change is one insert.
    CENSUS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Subscriptions that may hear a keyspace notification, over all shards: to a
/// `__keyspace@`/`__keyevent@` channel, or to any pattern.
static KEY_LISTENERS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Whether any client may hear a keyspace notification now. Writes collect none while
/// nobody does (a script's million writes kept a million events for nobody). Updated
/// before a SUBSCRIBE is confirmed, so a confirmed listener is always counted.
pub fn key_events_heard() -> bool {
    KEY_LISTENERS.load(std::sync::atomic::Ordering::Acquire) > 0
}

/// A listener for unit tests that collect events without subscribing.
#[cfg(test)]
pub fn listen_to_key_events_for_tests() {
    KEY_LISTENERS.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
}

fn census_add(ns: Ns, name: &Bytes, delta: i64) {
    let hears_keys = ns == Ns::Pattern
        || (ns == Ns::Channel
            && (name.starts_with(b"__keyspace@") || name.starts_with(b"__keyevent@")));
    if hears_keys {
        KEY_LISTENERS.fetch_add(delta, std::sync::atomic::Ordering::AcqRel);
    }
    let mut guard = census();
    let c = guard.get_or_insert_with(Census::default);
    let n = match ns {
        Ns::Pattern => c.patterns.entry(name.clone()).or_insert(0),
        _ => c.names.entry((ns, name.clone())).or_insert(0),
    };
    *n += delta;
    if *n <= 0 {
        match ns {
            Ns::Pattern => c.patterns.remove(name),
            _ => c.names.remove(&(ns, name.clone())),
        };
    }
}

/// How many clients, on every shard, a message to `channel` (of kind `ns`) reaches now:
/// its subscribers and, for a channel, one per matching pattern subscription (as Redis
/// counts). For PUBLISH inside MULTI/EXEC and scripts.
pub fn receivers(ns: Ns, channel: &[u8]) -> i64 {
    let guard = census();
    let Some(c) = guard.as_ref() else { return 0 };
    let direct = c
        .names
        .get(&(ns, Bytes::copy_from_slice(channel)))
        .copied()
        .unwrap_or(0);
    if ns != Ns::Channel {
        return direct;
    }
    direct
        + c.patterns
            .iter()
            .filter(|(p, _)| crate::glob::glob_match(p, channel, false))
            .map(|(_, n)| n)
            .sum::<i64>()
}

/// Who hears a message to a channel now, over all shards (from the census).
#[derive(Debug, Default, Clone)]
pub struct Hearers {
    /// The channel has subscribers of its own.
    pub direct: bool,
    /// Patterns with subscribers that match it.
    pub patterns: Vec<Bytes>,
}

/// The [`Hearers`] of each of `names` (for `notify::bound`), the lock taken once per
/// thousand names so that subscribers elsewhere never wait long.
pub fn hearers(names: &[(Ns, Bytes)]) -> Vec<Hearers> {
    let mut out = Vec::with_capacity(names.len());
    for chunk in names.chunks(1024) {
        let guard = census();
        let Some(c) = guard.as_ref() else {
            out.resize(names.len(), Hearers::default());
            return out;
        };
        out.extend(chunk.iter().map(|(ns, name)| {
            Hearers {
                direct: c.names.get(&(*ns, name.clone())).is_some_and(|&n| n > 0),
                patterns: match ns {
                    Ns::Channel => c
                        .patterns
                        .iter()
                        .filter(|(p, &n)| n > 0 && crate::glob::glob_match(p, name, false))
                        .map(|(p, _)| p.clone())
                        .collect(),
                    _ => Vec::new(),
                },
            }
        }));
    }
    out
}

/// How many distinct names of kind `ns` have a subscriber on some shard (INFO's
/// `pubsub_channels`, `pubsub_patterns`, `pubsubshard_channels`).
pub fn distinct(ns: Ns) -> usize {
    let guard = census();
    guard.as_ref().map_or(0, |c| match ns {
        Ns::Pattern => c.patterns.len(),
        _ => c.names.keys().filter(|(n, _)| *n == ns).count(),
    })
}

/// A connection's subscriptions (kept only while it has any).
#[derive(Debug, Default)]
pub struct Subs {
    /// Channels.
    pub channels: HashSet<Bytes>,
    /// Patterns.
    pub patterns: HashSet<Bytes>,
    /// Shard channels.
    pub shard: HashSet<Bytes>,
}

impl Subs {
    /// The set for `ns`.
    pub fn of(&mut self, ns: Ns) -> &mut HashSet<Bytes> {
        match ns {
            Ns::Channel => &mut self.channels,
            Ns::Pattern => &mut self.patterns,
            Ns::Shard => &mut self.shard,
        }
    }

    /// The count Redis reports in (un)subscribe replies: channels + patterns, or shard
    /// channels for the S* commands.
    pub fn count(&self, ns: Ns) -> usize {
        match ns {
            Ns::Shard => self.shard.len(),
            _ => self.channels.len() + self.patterns.len(),
        }
    }

    /// Whether nothing is subscribed.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty() && self.patterns.is_empty() && self.shard.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(i: u32) -> ConnId {
        ConnId::from_u64(u64::from(i))
    }

    #[test]
    fn the_first_local_subscriber_announces_and_later_ones_wait_for_it() {
        let mut p = PubSub::default();
        let ch = Bytes::from_static(b"news");
        let first = p.join(0, Ns::Channel, &ch, conn(1), 3);
        let Joined::Wait { id, new: true } = first else {
            panic!("{first:?}")
        };
        assert_eq!(
            p.join(0, Ns::Channel, &ch, conn(2), 3),
            Joined::Wait { id, new: false }
        );
        assert!(p.acked(id).is_none());
        assert!(p.acked(id).is_none());
        assert!(p.acked(id).is_some(), "all three other shards acknowledged");
        assert_eq!(p.join(0, Ns::Channel, &ch, conn(3), 3), Joined::Ready);
        assert_eq!(p.targets(Ns::Channel, b"news"), 1);
    }

    #[test]
    fn the_census_counts_subscribers_of_every_shard_and_matching_patterns() {
        // Names of its own: the census is process-wide and tests run in parallel.
        let (mut a, mut b) = (PubSub::default(), PubSub::default());
        let ch = Bytes::from_static(b"census:news");
        let pat = Bytes::from_static(b"census:*");
        a.join(0, Ns::Channel, &ch, conn(1), 1);
        a.join(0, Ns::Channel, &ch, conn(1), 1);
        b.join(1, Ns::Channel, &ch, conn(2), 1);
        b.join(1, Ns::Pattern, &pat, conn(2), 1);
        a.join(0, Ns::Shard, &ch, conn(3), 1);
        assert_eq!(
            receivers(Ns::Channel, b"census:news"),
            3,
            "twice joined counts once"
        );
        assert_eq!(receivers(Ns::Channel, b"census:other"), 1);
        assert_eq!(receivers(Ns::Shard, b"census:news"), 1);
        assert!(b.leave(1, Ns::Channel, &ch, conn(2)));
        assert!(!b.leave(1, Ns::Channel, &ch, conn(2)), "already gone");
        assert_eq!(receivers(Ns::Channel, b"census:news"), 2);
        b.leave(1, Ns::Pattern, &pat, conn(2));
        a.leave(0, Ns::Channel, &ch, conn(1));
        a.leave(0, Ns::Shard, &ch, conn(3));
        assert_eq!(receivers(Ns::Channel, b"census:news"), 0);
        assert_eq!(receivers(Ns::Shard, b"census:news"), 0);
    }

    #[test]
    fn targets_include_pattern_interest_and_leaving_drops_interest() {
        let mut p = PubSub::default();
        p.set_interest(Ns::Pattern, &Bytes::from_static(b"n*"), 2, true);
        p.set_interest(Ns::Channel, &Bytes::from_static(b"news"), 1, true);
        assert_eq!(p.targets(Ns::Channel, b"news"), 0b110);
        assert_eq!(p.targets(Ns::Channel, b"other"), 0);
        assert_eq!(
            p.targets(Ns::Shard, b"news"),
            0,
            "shard channels are separate"
        );
        let ch = Bytes::from_static(b"x");
        p.join(0, Ns::Channel, &ch, conn(1), 0);
        assert!(p.leave(0, Ns::Channel, &ch, conn(1)));
        assert_eq!(p.targets(Ns::Channel, b"x"), 0);
    }
}
