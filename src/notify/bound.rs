//! A running script's messages and keyspace events stay bounded.
//!
//! What a script publishes (and the keyspace events its writes raise) is collected until it
//! ends (`publish_order`, durability), because its messages must leave in the connection's
//! order. A script that publishes in a loop to a channel somebody listens to would then
//! hold everything it published: 1 GB for a million 1 KB messages. Redis holds at most the
//! pubsub class's hard `client-output-buffer-limit` (32 MB) per subscriber: past it the
//! subscriber is dropped, and nothing more is kept for it.
//!
//! The same bound here. While a script runs, once the collection has grown by the limit
//! since the last look, a pass works out, from the census (`pubsub::hearers`), how many
//! bytes of frames each *receiver* would get: a channel's direct subscribers, and each
//! pattern's subscribers. A receiver over the limit (plus the 16 KB reply buffer the output
//! limit forgives) is *doomed*: delivered in one go, as a script's output is, it would pass
//! the limit and be dropped. For each newly doomed receiver an overflow mark
//! ([`super::Message::overflow`]) is queued, which drops that receiver's subscribers when it
//! is delivered (counted like any output-limit drop), and every collected item whose every
//! receiver is doomed (or that nobody hears) is let go. A channel's mark also drops the
//! patterns' subscribers that match it: they were sent everything the channel was.
//!
//! The bound is per receiver *name*: a connection subscribed to many channels, each
//! sent just under the limit, is not doomed (the census does not know who subscribes).
//!
//! Each pass costs the size of what is held; the next one comes only after the collection
//! has grown by as much again (and at least the limit), so the work per collected byte is
//! constant and what is held stays within about twice what the live receivers may still
//! get. Outside scripts nothing is bounded here: a transaction's and a pipeline's
//! collections are as large as the commands the client sent.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

use super::{Events, Message, KEYEVENT, KEYSPACE};
use crate::pubsub::Ns;

/// The pubsub class's hard output-buffer limit in bytes (0: none).
static PUBSUB_HARD_LIMIT: AtomicUsize = AtomicUsize::new(32 << 20);

/// What `client-output-buffer-limit` forgives: Redis's static 16 KB reply buffer.
const FORGIVEN: usize = 16 * 1024;

/// Least bytes of RESP framing around a message frame's channel and payload
/// (`*3\r\n$7\r\nmessage\r\n$N\r\n` ... `\r\n$M\r\n` ... `\r\n`; a push frame is as long).
const FRAMING: usize = 29;

/// Note the pubsub class's hard output limit (CONFIG SET and start-up).
pub fn set_pubsub_hard_limit(bytes: usize) {
    PUBSUB_HARD_LIMIT.store(bytes, Ordering::Relaxed);
}

/// A script's collection bound (see the module documentation).
#[derive(Debug, Default)]
pub struct Bound {
    /// A script is running.
    on: bool,
    /// The limit it runs under (bytes).
    limit: usize,
    /// Bytes collected (roughly) since the run began, as of the last pass.
    held: usize,
    /// `held` at which the next pass runs.
    next_pass: usize,
    /// Receivers doomed in this run: a channel (its direct subscribers and the patterns
    /// matching it) or, as `Ns::Pattern`, a pattern's subscribers.
    doomed: HashSet<(Ns, Bytes)>,
}

impl Events {
    /// A script starts: bound what it collects (a script cannot start another).
    pub fn begin_bounded_run(&mut self) {
        self.begin_bounded_run_at(PUBSUB_HARD_LIMIT.load(Ordering::Relaxed));
    }

    fn begin_bounded_run_at(&mut self, limit: usize) {
        self.bound = Bound {
            on: limit > 0,
            limit,
            held: 0,
            next_pass: limit,
            doomed: HashSet::new(),
        };
    }

    /// The script ended.
    pub fn end_bounded_run(&mut self) {
        self.bound = Bound::default();
    }

    pub(super) fn held_more(&mut self, bytes: usize) {
        if self.bound.on {
            self.bound.held = self.bound.held.saturating_add(bytes + FRAMING);
        }
    }

    pub(super) fn bound_if_due(&mut self) {
        if self.bound.on && self.bound.held > self.bound.next_pass {
            self.bound_pass(self.bound.limit);
        }
    }

    /// Doom the receivers over `limit` and let go of what only they would get.
    fn bound_pass(&mut self, limit: usize) {
        let flags = super::flags();
        // Every frame each collected item sends: (channel index, bytes).
        let mut channels: HashMap<(Ns, Bytes), usize> = HashMap::new();
        let mut sends: Vec<(usize, usize, usize)> = Vec::new(); // (item, channel, bytes)
        let index = |ns: Ns, ch: Bytes, channels: &mut HashMap<(Ns, Bytes), usize>| {
            let n = channels.len();
            *channels.entry((ns, ch)).or_insert(n)
        };
        for (i, (event, key)) in self.pending.iter().enumerate() {
            if flags & KEYSPACE != 0 {
                let mut ch = b"__keyspace@0__:".to_vec();
                ch.extend_from_slice(key);
                let bytes = ch.len() + event.len() + FRAMING;
                sends.push((i, index(Ns::Channel, Bytes::from(ch), &mut channels), bytes));
            }
            if flags & KEYEVENT != 0 {
                let ch = Bytes::from(format!("__keyevent@0__:{event}"));
                let bytes = ch.len() + key.len() + FRAMING;
                sends.push((i, index(Ns::Channel, ch, &mut channels), bytes));
            }
        }
        let events = self.pending.len();
        for (j, m) in self.messages.iter().enumerate() {
            if !m.overflow {
                let bytes = m.channel.len() + m.message.len() + FRAMING;
                let c = index(m.ns, m.channel.clone(), &mut channels);
                sends.push((events + j, c, bytes));
            }
        }
        let mut names: Vec<(Ns, Bytes)> = vec![(Ns::Channel, Bytes::new()); channels.len()];
        for (name, i) in channels {
            names[i] = name;
        }
        let hearers = crate::pubsub::hearers(&names);

        // What each receiver would be sent.
        let mut volume: HashMap<(Ns, Bytes), usize> = HashMap::new();
        for &(_, c, bytes) in &sends {
            let h = &hearers[c];
            if h.direct {
                *volume.entry(names[c].clone()).or_insert(0) += bytes;
            }
            for p in &h.patterns {
                *volume.entry((Ns::Pattern, p.clone())).or_insert(0) += bytes + p.len();
            }
        }
        let mut marks = Vec::new();
        for (receiver, v) in volume {
            if v > limit.saturating_add(FORGIVEN) && !self.bound.doomed.contains(&receiver) {
                self.bound.doomed.insert(receiver.clone());
                marks.push(receiver);
            }
        }

        // Let go of the items every receiver of which is doomed (or that nobody hears).
        let doomed = &self.bound.doomed;
        let lost = |c: usize| {
            let h = &hearers[c];
            doomed.contains(&names[c])
                || (!h.direct
                    && h.patterns
                        .iter()
                        .all(|p| doomed.contains(&(Ns::Pattern, p.clone()))))
        };
        let items = events + self.messages.len();
        let mut heard = vec![false; items];
        let mut kept_bytes = 0;
        for &(item, c, bytes) in &sends {
            if !lost(c) {
                heard[item] = true;
                kept_bytes += bytes;
            }
        }
        // Overflow marks (messages that send no frame) always stay.
        let keep: Vec<bool> = (0..items)
            .map(|item| heard[item] || (item >= events && self.messages[item - events].overflow))
            .collect();
        let mut kept_before = Vec::with_capacity(events + 1);
        let mut n = 0;
        for &k in &keep[..events] {
            kept_before.push(n);
            n += usize::from(k);
        }
        kept_before.push(n);
        let mut i = 0;
        self.pending.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        let mut j = events;
        self.messages.retain_mut(|m| {
            j += 1;
            m.at = kept_before[m.at.min(events)];
            keep[j - 1]
        });
        let at = self.pending.len();
        self.messages
            .extend(marks.into_iter().map(|(ns, channel)| Message {
                at,
                ns,
                channel,
                message: Bytes::new(),
                overflow: true,
            }));
        self.bound.held = kept_bytes;
        self.bound.next_pass = kept_bytes + kept_bytes.max(limit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(limit: usize, f: impl FnOnce(&mut Events)) -> Events {
        let mut e = Events::default();
        e.begin_bounded_run_at(limit);
        f(&mut e);
        e.end_bounded_run();
        e
    }

    #[test]
    fn what_nobody_hears_is_not_kept() {
        // Nobody subscribes to these names in the census (unit tests share it, so the
        // names are this test's own).
        let e = run(1 << 20, |e| {
            for _ in 0..3000 {
                e.publish(
                    Ns::Channel,
                    Bytes::from_static(b"bound:nobody"),
                    Bytes::from(vec![b'x'; 1000]),
                );
            }
        });
        assert!(
            e.messages.len() < 1100,
            "{} kept for nobody",
            e.messages.len()
        );
        assert!(e.messages.iter().all(|m| !m.overflow), "nobody to drop");
    }

    #[test]
    fn a_receiver_past_the_limit_is_dropped_and_what_only_it_hears_goes() {
        let mut subs = crate::pubsub::PubSub::default();
        let flood = Bytes::from_static(b"bound:flood");
        let calm = Bytes::from_static(b"bound:calm");
        let conn = coreshard_engine::ConnId::from_u64(7);
        subs.join(0, Ns::Channel, &flood, conn, 0);
        subs.join(0, Ns::Channel, &calm, conn, 0);
        let e = run(1 << 20, |e| {
            e.publish(Ns::Channel, calm.clone(), Bytes::from_static(b"first"));
            for _ in 0..5000 {
                e.publish(Ns::Channel, flood.clone(), Bytes::from(vec![b'x'; 1000]));
            }
            e.publish(Ns::Channel, calm.clone(), Bytes::from_static(b"last"));
        });
        subs.leave(0, Ns::Channel, &flood, conn);
        subs.leave(0, Ns::Channel, &calm, conn);
        let to_calm: Vec<&[u8]> = (e.messages.iter())
            .filter(|m| m.channel == calm)
            .map(|m| &m.message[..])
            .collect();
        assert_eq!(to_calm, [&b"first"[..], &b"last"[..]]);
        let marks: Vec<&Bytes> = (e.messages.iter())
            .filter(|m| m.overflow)
            .map(|m| &m.channel)
            .collect();
        assert_eq!(marks, [&flood]);
        // Kept for the flooded channel: at most what came after the last pass (~1 MB).
        let flood_kept = (e.messages.iter())
            .filter(|m| m.channel == flood && !m.overflow)
            .count();
        assert!(flood_kept < 1100, "{flood_kept} kept");
    }
}
