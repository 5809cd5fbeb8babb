//! Shard-to-shard mailboxes: one bounded single-producer/single-consumer ring per ordered
//! pair of shards, carrying batches. A full ring never blocks and never drops: the batch
//! waits in a local overflow queue and is retried on the next turn, in order.
//!
//! Each batch carries the time its turn handed it over. A shard takes what all its
//! inboxes hold and delivers those batches oldest first (per sender they stay in order),
//! so mail keeps the order a client can observe: shard A's batch is handed over before A
//! sends the reply that makes the client ask shard B for something, whose batch comes
//! later. Taken inbox by inbox instead, B's batch (in a lower-numbered inbox) was delivered
//! first: a subscriber heard the keyspace event of a client's second write before that of
//! its first, in about 1 % of writes to keys of different shards.

use std::collections::VecDeque;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::time::Instant;

use rtrb::{Consumer, Producer, RingBuffer};

/// Pads a value to its own cache lines so shards do not false-share it.
#[repr(align(128))]
#[derive(Debug, Default)]
pub(crate) struct Padded<T>(pub T);

/// Failed wakes in a row to one shard after which we stop retrying (the target is then
/// most likely gone, e.g. its thread exited during shutdown) rather than loop on it.
const MAX_WAKE_RETRIES: u32 = 100;

/// One shard's ends of all mailboxes.
/// A batch and when its turn handed it over.
type Stamped<M> = (Instant, Vec<M>);

pub(crate) struct Mailboxes<M> {
    me: usize,
    outboxes: Vec<Option<Producer<Stamped<M>>>>,
    inboxes: Vec<Option<Consumer<Stamped<M>>>>,
    building: Vec<Vec<M>>,
    overflow: Vec<VecDeque<Stamped<M>>>,
    /// Batches taken this turn, before they are put in order (kept for its capacity).
    taken: Vec<(Instant, usize, Vec<M>)>,
    local: Vec<M>,
    /// Shards to wake again next turn: our wake failed after we had cleared their
    /// `parked` flag, so nobody else will wake them although mail waits.
    rewake: Vec<bool>,
    /// Failed wakes in a row per shard (reset by a wake posted through `flush`).
    wake_failures: Vec<u32>,
}

/// Build the N×N mesh; element `i` holds shard `i`'s ends.
pub(crate) fn mesh<M>(n: usize, capacity: usize) -> Vec<Mailboxes<M>> {
    let mut boxes: Vec<Mailboxes<M>> = (0..n)
        .map(|me| Mailboxes {
            me,
            outboxes: (0..n).map(|_| None).collect(),
            inboxes: (0..n).map(|_| None).collect(),
            building: (0..n).map(|_| Vec::new()).collect(),
            overflow: (0..n).map(|_| VecDeque::new()).collect(),
            taken: Vec::new(),
            local: Vec::new(),
            rewake: vec![false; n],
            wake_failures: vec![0; n],
        })
        .collect();
    for from in 0..n {
        for to in 0..n {
            if from != to {
                let (p, c) = RingBuffer::new(capacity.max(1));
                boxes[from].outboxes[to] = Some(p);
                boxes[to].inboxes[from] = Some(c);
            }
        }
    }
    boxes
}

impl<M> Mailboxes<M> {
    /// Queue `msg` for shard `to`; it leaves with this turn's batch.
    pub fn send(&mut self, to: usize, msg: M) {
        if to == self.me {
            self.local.push(msg);
        } else {
            self.building[to].push(msg);
        }
    }

    /// Hand this turn's batches (and any overflow) to the rings. Calls `delivered(to)` for
    /// each shard that received something, so the caller can wake it; `delivered` returns
    /// whether it posted a wake.
    pub fn flush(&mut self, mut delivered: impl FnMut(usize) -> bool) {
        let mut now = None;
        for to in 0..self.outboxes.len() {
            let Some(producer) = self.outboxes[to].as_mut() else {
                continue;
            };
            let batch = std::mem::take(&mut self.building[to]);
            if batch.is_empty() && self.overflow[to].is_empty() {
                continue;
            }
            if !batch.is_empty() {
                let at = *now.get_or_insert_with(Instant::now);
                self.overflow[to].push_back((at, batch));
            }
            let mut sent = false;
            while let Some(b) = self.overflow[to].pop_front() {
                match producer.push(b) {
                    Ok(()) => sent = true,
                    Err(rtrb::PushError::Full(b)) => {
                        self.overflow[to].push_front(b);
                        break;
                    }
                }
            }
            if sent && delivered(to) {
                self.wake_failures[to] = 0;
            }
        }
    }

    /// A wake posted to shard `to` failed: wake it again next turn (see
    /// [`Mailboxes::take_rewakes`]), unless that already failed too often in a row.
    pub fn wake_failed(&mut self, to: usize) {
        let Some(failures) = self.wake_failures.get_mut(to) else {
            return;
        };
        *failures = failures.saturating_add(1);
        if *failures <= MAX_WAKE_RETRIES {
            self.rewake[to] = true;
        } else if *failures == MAX_WAKE_RETRIES + 1 {
            tracing::warn!(
                shard = self.me,
                "waking shard {to} failed {MAX_WAKE_RETRIES} times in a row; giving up"
            );
        }
    }

    /// Calls `wake(to)` for every shard whose wake must be posted again, unconditionally:
    /// its `parked` flag was already cleared by the wake that failed. A wake that arrives
    /// after the shard woke up anyway costs it one empty loop turn.
    pub fn take_rewakes(&mut self, mut wake: impl FnMut(usize)) {
        for (to, pending) in self.rewake.iter_mut().enumerate() {
            if std::mem::take(pending) {
                wake(to);
            }
        }
    }

    /// Whether some batch is still waiting for room in a full mailbox.
    pub fn has_overflow(&self) -> bool {
        self.overflow.iter().any(|q| !q.is_empty())
    }

    /// Batches waiting in overflow queues, over all destinations.
    pub fn overflow_len(&self) -> usize {
        self.overflow.iter().map(|q| q.len()).sum()
    }

    /// Move waiting inbound messages to `out` as `(from, message)`, at most `max_batches`
    /// batches per sender so one busy peer cannot starve the shard's own connections.
    /// Batches of several senders go oldest first (see the module documentation).
    pub fn take_inbound(&mut self, out: &mut Vec<(usize, M)>, max_batches: usize) {
        let me = self.me;
        out.extend(self.local.drain(..).map(|m| (me, m)));
        let mut taken = std::mem::take(&mut self.taken);
        for (from, inbox) in self.inboxes.iter_mut().enumerate() {
            let Some(c) = inbox.as_mut() else { continue };
            for _ in 0..max_batches {
                match c.pop() {
                    Ok((at, batch)) => taken.push((at, from, batch)),
                    Err(_) => break,
                }
            }
        }
        // Stable: one sender's batches keep their order even with equal stamps.
        taken.sort_by_key(|(at, _, _)| *at);
        for (_, from, batch) in taken.drain(..) {
            out.extend(batch.into_iter().map(|m| (from, m)));
        }
        self.taken = taken;
    }

    /// Whether anything waits to be taken (checked before the shard sleeps).
    pub fn inbound_pending(&self) -> bool {
        !self.local.is_empty() || self.inboxes.iter().flatten().any(|c| !c.is_empty())
    }
}

/// The sleep/wake handshake: a shard announces it is about to sleep, then re-checks its
/// inboxes; a producer publishes, then checks the flag. With sequentially consistent
/// fences on both sides one of them always sees the other, so no wake-up is lost, and a
/// busy shard is never sent one.
#[derive(Debug, Default)]
pub(crate) struct Parking {
    parked: Padded<AtomicBool>,
}

impl Parking {
    /// Consumer side: announce the intent to sleep.
    pub fn park(&self) {
        self.parked.0.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Consumer side: awake again.
    pub fn unpark(&self) {
        self.parked.0.store(false, Ordering::Relaxed);
    }

    /// Producer side, after publishing: whether the consumer must be woken (at most one
    /// producer gets `true` per sleep).
    pub fn needs_wake(&self) -> bool {
        fence(Ordering::SeqCst);
        self.parked.0.load(Ordering::SeqCst) && self.parked.0.swap(false, Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_arrive_in_order_and_overflow_is_retried() {
        let mut m = mesh::<u32>(2, 2);
        let (mut a, mut b) = {
            let mut it = m.drain(..);
            (it.next().unwrap(), it.next().unwrap())
        };
        let mut woken = Vec::new();
        for turn in 0..5u32 {
            a.send(1, turn * 10);
            a.send(1, turn * 10 + 1);
            a.flush(|to| {
                woken.push(to);
                true
            });
        }
        // Capacity 2: three batches wait in overflow, none dropped.
        assert!(a.has_overflow());
        assert_eq!(woken, vec![1, 1]);
        let mut got = Vec::new();
        b.take_inbound(&mut got, 64);
        a.flush(|_| false);
        b.take_inbound(&mut got, 64);
        a.flush(|_| false);
        b.take_inbound(&mut got, 64);
        assert!(!a.has_overflow());
        let values: Vec<u32> = got
            .iter()
            .map(|&(from, v)| {
                assert_eq!(from, 0);
                v
            })
            .collect();
        assert_eq!(values, vec![0, 1, 10, 11, 20, 21, 30, 31, 40, 41]);
    }

    #[test]
    fn batches_of_several_senders_arrive_oldest_first() {
        let mut m = mesh::<&str>(3, 4);
        m[2].send(1, "first, from shard 2");
        m[2].flush(|_| false);
        let stamp = Instant::now();
        while Instant::now() == stamp {}
        m[0].send(1, "then, from shard 0");
        m[0].flush(|_| false);
        m[2].send(1, "last, from shard 2");
        m[2].flush(|_| false);
        let mut got = Vec::new();
        m[1].take_inbound(&mut got, 64);
        assert_eq!(
            got,
            vec![
                (2, "first, from shard 2"),
                (0, "then, from shard 0"),
                (2, "last, from shard 2")
            ]
        );
    }

    #[test]
    fn local_messages_short_circuit() {
        let mut m = mesh::<u8>(1, 4);
        let mut a = m.pop().unwrap();
        a.send(0, 7);
        assert!(a.inbound_pending());
        let mut got = Vec::new();
        a.take_inbound(&mut got, 1);
        assert_eq!(got, vec![(0, 7)]);
    }

    #[test]
    fn parking_wakes_exactly_once() {
        let p = Parking::default();
        assert!(!p.needs_wake());
        p.park();
        assert!(p.needs_wake());
        assert!(!p.needs_wake());
    }

    #[test]
    fn a_failed_wake_is_posted_again_once() {
        let mut m = mesh::<u8>(3, 4);
        let a = &mut m[0];
        let mut again = Vec::new();
        a.take_rewakes(|to| again.push(to));
        assert!(again.is_empty());
        a.wake_failed(2);
        a.wake_failed(2);
        a.take_rewakes(|to| again.push(to));
        assert_eq!(again, vec![2]);
        a.take_rewakes(|to| again.push(to));
        assert_eq!(again, vec![2], "posted again once, not every turn");
    }

    #[test]
    fn wakes_that_keep_failing_are_given_up_until_one_is_posted() {
        let mut m = mesh::<u8>(2, 4);
        let a = &mut m[0];
        let mut again = 0;
        for _ in 0..MAX_WAKE_RETRIES + 5 {
            a.wake_failed(1);
            a.take_rewakes(|_| again += 1);
        }
        assert_eq!(again, MAX_WAKE_RETRIES);
        // A wake posted through `flush` starts the count again.
        a.send(1, 1);
        a.flush(|_| true);
        a.wake_failed(1);
        a.take_rewakes(|_| again += 1);
        assert_eq!(again, MAX_WAKE_RETRIES + 1);
    }
}
