//! How a reply is put together from the parts of a command that ran on several shards
//! (Redis-specific aggregation and encoding). Reply order is the engine's: each reply
//! that waits for shards holds an engine reply slot (`Ctx::reserve_slot`), filled once
//! its last part arrived.

use std::collections::VecDeque;

use bytes::Bytes;
use coreshard_protocol::{Encoder, Protocol};

use super::ops::{OpResult, ShardReport};

/// How the results of a command's parts combine into its reply.
#[derive(Debug)]
pub enum Agg {
    /// One part: its result is the reply.
    Single(Option<OpResult>),
    /// Integer sum (DEL, EXISTS, DBSIZE).
    Sum(i64),
    /// CLIENT KILL: the clients killed, answered as a count or, for the old form (`one`),
    /// `+OK` / "No such client". The caller's input waits for it (see `complete_part`).
    Killed { total: i64, one: bool },
    /// `+OK` once every part answered (MSET, FLUSHALL).
    AllOk,
    /// An `AllOk` command a part of which failed (an MSET part refused with -OOM by its
    /// shard): the first error is the reply.
    Failed(String),
    /// MGET: part `p`'s values go to `positions[p]`.
    MGet {
        values: Vec<Option<Bytes>>,
        positions: Vec<Vec<usize>>,
    },
    /// INFO: every shard's counters, formatted once all arrived.
    Info {
        sections: Vec<String>,
        reports: Vec<ShardReport>,
    },
    /// GET /metrics: every shard's counters, as Prometheus text in an HTTP response.
    Metrics { reports: Vec<ShardReport> },
    /// LATENCY HISTOGRAM: every shard's per-command histograms, for the named commands
    /// (all that ran if none is named).
    LatencyHistogram {
        names: Vec<Bytes>,
        reports: Vec<ShardReport>,
    },
    /// LATENCY LATEST / HISTORY / DOCTOR: every shard's events merged by name.
    Latency {
        ask: crate::commands::latency::Ask,
        events: Vec<(String, crate::latency::Series)>,
    },
    /// CLIENT LIST: every shard's lines.
    ClientList(String),
    /// KEYS: every shard's matches.
    Keys(Vec<Bytes>),
    /// SCAN: one shard's page; the reply cursor moves to the next shard when it is done.
    Scan {
        shard: usize,
        page: Option<(u64, Vec<Bytes>)>,
    },
    /// RANDOMKEY: one candidate per shard with the shard's key count, for a weighted pick.
    Random(Vec<(Bytes, u64)>),
    /// Bytes already encoded, released when every part answered (SUBSCRIBE confirmations
    /// waiting for their announcements).
    Raw(Vec<u8>),
    /// Names from every shard, without duplicates (PUBSUB CHANNELS), or their number
    /// (NUMPAT).
    Unique {
        names: Vec<Bytes>,
        /// `names` as a set (a linear check per name made 100k channels take 48 s).
        seen: hashbrown::HashSet<Bytes>,
        count_only: bool,
    },
    /// PUBSUB NUMSUB: counts summed by position.
    NumSub { names: Vec<Bytes>, counts: Vec<i64> },
    /// WATCH: part `p`'s keys are `keys[p]`; what each looked like is gathered in `got`.
    Watch {
        keys: Vec<Vec<(Bytes, usize)>>,
        got: Vec<crate::server::txn::WatchedKey>,
    },
    /// SLOWLOG GET (`get`: how many entries) or LEN (`get` is `None`): every shard's
    /// entries merged by id, at most `max_len` in all.
    Slowlog {
        get: Option<usize>,
        max_len: usize,
        entries: Vec<crate::stats::SlowEntry>,
        len: i64,
    },
    /// LCS across shards: both inputs gathered, then computed here.
    Lcs {
        opts: crate::commands::strings::LcsOpts,
        inputs: [Option<Bytes>; 2],
    },
}

impl Agg {
    /// Fold in part `part`'s result.
    pub fn merge(&mut self, part: u32, result: OpResult) {
        match (self, result) {
            (Agg::Single(slot), r) => *slot = Some(r),
            (Agg::Sum(total) | Agg::Killed { total, .. }, OpResult::Int(n)) => *total += n,
            (agg @ Agg::AllOk, OpResult::Error(e)) => *agg = Agg::Failed(e),
            (Agg::AllOk | Agg::Failed(_), _) => {}
            (Agg::MGet { values, positions }, OpResult::Values(vs)) => {
                if let Some(pos) = positions.get(part as usize) {
                    for (&at, v) in pos.iter().zip(vs) {
                        values[at] = v;
                    }
                }
            }
            (Agg::Info { reports, .. }, OpResult::Report(r)) => reports.push(*r),
            (Agg::Metrics { reports }, OpResult::Report(r)) => reports.push(*r),
            (Agg::LatencyHistogram { reports, .. }, OpResult::Report(r)) => reports.push(*r),
            (Agg::Latency { events, .. }, OpResult::Latency(e)) => {
                crate::latency::merge_events(events, e)
            }
            (Agg::Slowlog { entries, .. }, OpResult::Slow(e)) => entries.extend(e),
            (Agg::Slowlog { len, .. }, OpResult::Int(n)) => *len += n,
            (Agg::ClientList(text), OpResult::Text(t)) => text.push_str(&t),
            (Agg::Keys(all), OpResult::Keys(ks)) => all.extend(ks),
            (Agg::Scan { page, .. }, OpResult::ScanPage { next, keys }) => {
                *page = Some((next, keys))
            }
            (Agg::Random(c), OpResult::Random(r)) => c.extend(r),
            (Agg::Raw(_), _) => {}
            (Agg::Unique { names, seen, .. }, OpResult::Keys(ks)) => {
                for k in ks {
                    if seen.insert(k.clone()) {
                        names.push(k);
                    }
                }
            }
            (Agg::NumSub { counts, .. }, OpResult::Counts(cs)) => {
                for (total, c) in counts.iter_mut().zip(cs) {
                    *total += c;
                }
            }
            (Agg::Watch { keys, got }, OpResult::Watched(vs)) => {
                if let Some(ks) = keys.get(part as usize) {
                    for ((key, shard), (version, deadline)) in ks.iter().zip(vs) {
                        got.push(crate::server::txn::WatchedKey {
                            key: key.clone(),
                            shard: *shard,
                            version,
                            deadline,
                        });
                    }
                }
            }
            (Agg::Lcs { inputs, .. }, OpResult::Value(v)) => {
                if let Some(slot) = inputs.get_mut(part as usize) {
                    *slot = v;
                }
            }
            (agg, r) => tracing::error!("mismatched part result {r:?} for {agg:?}"),
        }
    }
}

impl Agg {
    /// Encode a completed aggregate (INFO and RANDOMKEY need the server and are encoded
    /// there).
    pub fn encode(self, e: &mut Encoder<'_>, shards: usize) {
        match self {
            Agg::Single(Some(r)) => encode_result(e, &r),
            Agg::Single(None) => e.error("ERR internal: missing result"),
            Agg::Sum(n) => e.int(n),
            Agg::Killed { total, one: false } => e.int(total),
            Agg::Killed {
                total: 0,
                one: true,
            } => {
                crate::stats::note_error("ERR No such client");
                e.error("ERR No such client")
            }
            Agg::Killed { one: true, .. } => e.simple("OK"),
            Agg::AllOk => e.simple("OK"),
            Agg::Failed(msg) => {
                crate::stats::note_error(&msg);
                e.error(&msg)
            }
            Agg::MGet { values, .. } => {
                e.array(values.len());
                for v in &values {
                    e.opt_bulk(v.as_deref());
                }
            }
            Agg::ClientList(text) => e.verbatim(b"txt", text.as_bytes()),
            Agg::Keys(keys) => {
                e.array(keys.len());
                keys.iter().for_each(|k| e.bulk(k));
            }
            Agg::Scan { shard, page } => {
                let (next, keys) = page.unwrap_or_default();
                let cursor = crate::commands::keyspace::scan_cursor(shard, next, shards);
                e.array(2);
                e.bulk(cursor.to_string().as_bytes());
                e.array(keys.len());
                keys.iter().for_each(|k| e.bulk(k));
            }
            Agg::Lcs {
                opts,
                inputs: [a, b],
            } => {
                let a = a.unwrap_or_default();
                let b = b.unwrap_or_default();
                crate::commands::strings::lcs_reply(&opts, &a, &b).encode(e);
            }
            Agg::Watch { .. } => e.simple("OK"),
            Agg::Slowlog {
                get: None,
                max_len,
                len,
                ..
            } => e.int(len.min(max_len as i64)),
            Agg::Slowlog {
                get: Some(n),
                max_len,
                entries,
                ..
            } => {
                let entries = crate::stats::merge_slow(entries, n.min(max_len));
                e.array(entries.len());
                for s in &entries {
                    e.array(6);
                    e.int(s.id as i64);
                    e.int(s.time as i64);
                    e.int(s.micros as i64);
                    e.array(s.args.len());
                    s.args.iter().for_each(|a| e.bulk(a));
                    e.bulk(s.addr.as_bytes());
                    e.bulk(s.name.as_bytes());
                }
            }
            Agg::Raw(bytes) => e.raw(&bytes),
            Agg::Unique {
                names, count_only, ..
            } => {
                if count_only {
                    e.int(names.len() as i64);
                } else {
                    e.array(names.len());
                    names.iter().for_each(|n| e.bulk(n));
                }
            }
            Agg::NumSub { names, counts } => {
                e.array(names.len() * 2);
                for (n, c) in names.iter().zip(counts) {
                    e.bulk(n);
                    e.int(c);
                }
            }
            Agg::Info { .. }
            | Agg::Random(_)
            | Agg::Metrics { .. }
            | Agg::LatencyHistogram { .. }
            | Agg::Latency { .. } => e.error("ERR internal: aggregate encoded out of place"),
        }
    }
}

/// Encode a single result.
pub fn encode_result(enc: &mut Encoder<'_>, result: &OpResult) {
    match result {
        OpResult::Ok => enc.simple("OK"),
        OpResult::Int(n) => enc.int(*n),
        OpResult::Value(v) => enc.opt_bulk(v.as_deref()),
        OpResult::Values(vs) => {
            enc.array(vs.len());
            for v in vs {
                enc.opt_bulk(v.as_deref());
            }
        }
        OpResult::Text(t) => enc.verbatim(b"txt", t.as_bytes()),
        OpResult::Reply(v) => {
            if let coreshard_protocol::Value::Error(msg) = v {
                crate::stats::note_error(msg);
            }
            v.encode(enc)
        }
        OpResult::Error(msg) => {
            crate::stats::note_error(msg);
            enc.error(msg)
        }
        OpResult::Multi(results) => {
            enc.array(results.len());
            for r in results {
                encode_result(enc, r);
            }
        }
        OpResult::NullArray => enc.null_array(),
        OpResult::Bulks(frame) => enc.raw(frame),
        OpResult::Pairs(flat) => {
            if enc.protocol() == coreshard_protocol::Protocol::Resp3 {
                enc.array(flat.len() / 2);
                for pair in flat.chunks(2) {
                    enc.array(pair.len());
                    pair.iter().for_each(|v| v.encode(enc));
                }
            } else {
                enc.array(flat.len());
                flat.iter().for_each(|v| v.encode(enc));
            }
        }
        OpResult::KeyMap(pairs) => {
            if enc.protocol() == coreshard_protocol::Protocol::Resp3 {
                enc.map(pairs.len());
            } else {
                enc.array(pairs.len());
            }
            for (k, v) in pairs {
                if enc.protocol() != coreshard_protocol::Protocol::Resp3 {
                    enc.array(2);
                }
                k.encode(enc);
                v.encode(enc);
            }
        }
        OpResult::Keys(_)
        | OpResult::Watched(_)
        | OpResult::Counts(_)
        | OpResult::ScanPage { .. }
        | OpResult::Random(_)
        | OpResult::Slow(_)
        | OpResult::Latency(_)
        | OpResult::Report(_) => enc.error("ERR internal: unexpected part result"),
    }
}

/// A reply that waits for parts from shards: how they combine, in which protocol.
#[derive(Debug)]
struct Waiting {
    proto: Protocol,
    remaining: u32,
    agg: Agg,
}

/// A connection's replies still waiting for parts, by the sequence of their engine reply
/// slot (the engine keeps the order; this keeps only how each reply is put together).
#[derive(Debug, Default)]
pub struct Pending {
    /// Slot sequence of `waiting[0]`.
    first: u64,
    /// `None`: completed (or never waited), kept until the ones before it complete.
    waiting: VecDeque<Option<Waiting>>,
}

impl Pending {
    /// Remember that the reply in slot `seq` waits on `parts` parts combined by `agg`.
    /// Slots are reserved in increasing order.
    pub fn insert(&mut self, seq: u64, proto: Protocol, parts: u32, agg: Agg) {
        if self.waiting.is_empty() {
            self.first = seq;
        }
        let Some(idx) = seq
            .checked_sub(self.first)
            .and_then(|i| usize::try_from(i).ok())
            .filter(|&i| i >= self.waiting.len())
        else {
            debug_assert!(false, "reply slot {seq} reserved out of order");
            return;
        };
        self.waiting.resize_with(idx, || None);
        self.waiting.push_back(Some(Waiting {
            proto,
            remaining: parts,
            agg,
        }));
    }

    /// Account one part's result. Returns the aggregate when it was the last part, for the
    /// caller to encode (with server-wide context) into the slot.
    pub fn complete_part(
        &mut self,
        seq: u64,
        part: u32,
        result: OpResult,
    ) -> Option<(Protocol, Agg)> {
        let idx = usize::try_from(seq.checked_sub(self.first)?).ok()?;
        let w = self.waiting.get_mut(idx)?.as_mut()?;
        w.agg.merge(part, result);
        w.remaining = w.remaining.saturating_sub(1);
        if w.remaining > 0 {
            return None;
        }
        let done = self.waiting[idx].take()?;
        while let Some(None) = self.waiting.front() {
            self.waiting.pop_front();
            self.first += 1;
        }
        Some((done.proto, done.agg))
    }

    /// The reply in slot `seq` waits on `parts` parts after all (none arrived yet).
    pub fn set_parts(&mut self, seq: u64, parts: u32) {
        let idx = seq
            .checked_sub(self.first)
            .and_then(|i| usize::try_from(i).ok());
        if let Some(Some(w)) = idx.and_then(|i| self.waiting.get_mut(i)) {
            w.remaining = parts;
        }
    }

    /// Keys of WATCH replies still in flight (their shards registered watchers that a
    /// closing connection must release).
    pub fn pending_watch_keys(&self) -> Vec<(Bytes, usize)> {
        let mut out = Vec::new();
        for w in self.waiting.iter().flatten() {
            if let Agg::Watch { keys, .. } = &w.agg {
                out.extend(keys.iter().flatten().cloned());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_combine_in_any_order_and_completed_replies_are_forgotten() {
        let mut p = Pending::default();
        p.insert(7, Protocol::Resp2, 1, Agg::Single(None));
        p.insert(9, Protocol::Resp3, 2, Agg::Sum(0));
        assert!(p.complete_part(9, 0, OpResult::Int(2)).is_none());
        let (proto, agg) = p.complete_part(9, 1, OpResult::Int(3)).unwrap();
        assert_eq!(proto, Protocol::Resp3);
        assert!(matches!(agg, Agg::Sum(5)));
        assert!(p.complete_part(9, 1, OpResult::Int(3)).is_none(), "once");
        let (_, agg) = p.complete_part(7, 0, OpResult::Ok).unwrap();
        assert!(matches!(agg, Agg::Single(Some(OpResult::Ok))));
        assert!(p.waiting.is_empty());
        // Unknown (already completed or never reserved) slots are ignored.
        assert!(p.complete_part(7, 0, OpResult::Ok).is_none());
        assert!(p.complete_part(3, 0, OpResult::Ok).is_none());
        p.insert(10, Protocol::Resp2, 1, Agg::Single(None));
        assert!(p.complete_part(10, 0, OpResult::Ok).is_some());
    }
}
