//! The WAL thread: takes the shards' chunks in ticket order, writes them in batches
//! through its own io_uring, syncs per policy, rotates segments, publishes durable LSNs
//! and retries after disk errors.
//!
//! # Pipelined syncs (`Always`)
//!
//! A batch is written (into the page cache) and its `fdatasync` started without waiting
//! for it; while it runs, the next batch is written and synced too, up to
//! [`MAX_ASYNC_SYNCS`] at once, so the disk's own parallelism is used and no batch waits a
//! whole sync for the one before. A sync covers everything written before it started.
//! Syncs are settled in the order they started: durable LSNs are published from a sync's
//! snapshot of the written LSNs only when it and every earlier one succeeded. If one
//! fails, nothing later is trusted either (the kernel reports a writeback error once):
//! when the syncs in flight have ended, everything not yet confirmed (kept for that) is
//! written again at the same offsets and synced, as after any disk error. Rotation and
//! policy changes settle every sync first, so what is unconfirmed always lies in the
//! current segment. And so that a torn tail can still be told from corruption in the
//! middle (see `recover`), a write waits for the syncs in flight at least every
//! [`FLAG_EVERY`], so it can carry `FLAG_DURABLE_BEFORE`.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rtrb::Consumer;

use super::producer::Chunk;
use super::record::{self, FLAG_DURABLE_BEFORE};
use super::segment::{self, Preparer};
use super::shared::{lock, Shared};
use super::{FsyncPolicy, LogPosition, WalError};
use crate::sys::{WalRing, WalWaker, MAX_ASYNC_SYNCS};

/// How long after a failed write or sync the WAL thread tries again.
pub(crate) const RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// `EverySec`: the interval between syncs.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// `Always`: at least this often a write waits until everything before it is durable, so
/// that it carries `FLAG_DURABLE_BEFORE` (pipelined writes do not).
const FLAG_EVERY: Duration = Duration::from_millis(10);

/// How long shutdown keeps retrying failed writes (or waits for a chunk whose ticket was
/// taken) before it gives up.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Closed segments kept open to be synced at shutdown (policy `No`); past this many the
/// oldest is synced early (by then the OS has long written it back).
const MAX_DIRTY_CLOSED: usize = 8;

/// The segment being written.
pub(crate) struct Segment {
    pub seq: u64,
    pub file: File,
    /// The file's size: where the segment is full.
    pub len: u64,
    /// Where the next record goes.
    pub pos: u64,
}

impl Segment {
    pub fn new(shared: &Shared, seq: u64, file: File, pos: u64) -> Result<Segment, WalError> {
        let len = file
            .metadata()
            .map_err(|e| WalError::io("stat", &segment::path(&shared.dir, seq), e))?
            .len();
        Ok(Segment {
            seq,
            file,
            len,
            pos,
        })
    }

    /// Whether a record of `size` bytes goes into this segment (an empty segment takes
    /// any record, growing past its size if the record is larger).
    fn fits(&self, size: usize) -> bool {
        self.pos == segment::HEADER || self.pos + size as u64 <= self.len
    }
}

/// What the WAL thread starts from.
pub(crate) struct Setup {
    pub shared: Arc<Shared>,
    pub consumers: Vec<Consumer<Chunk>>,
    pub segment: Segment,
    pub segment_size: u64,
    pub core: Option<usize>,
    pub waker: Arc<WalWaker>,
}

/// Start the WAL thread; returns once it pinned itself and set up its ring.
pub(crate) fn spawn(setup: Setup) -> Result<JoinHandle<Result<(), WalError>>, WalError> {
    let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), WalError>>(1);
    let handle = thread::Builder::new()
        .name("wal".into())
        .spawn(move || {
            let started = start(&setup);
            let (ring, preparer) = match started {
                Ok(x) => x,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return Ok(());
                }
            };
            let _ = ready_tx.send(Ok(()));
            let mut writer = Writer::new(setup, ring, preparer);
            let _guard = PanicGuard(writer.shared.clone());
            writer.run()
        })
        .map_err(|e| WalError::Start(format!("spawning the WAL thread: {e}")))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => {
            let _ = handle.join();
            Err(e)
        }
        Err(_) => {
            let _ = handle.join();
            Err(WalError::Start("the WAL thread died while starting".into()))
        }
    }
}

fn start(setup: &Setup) -> Result<(WalRing, Preparer), WalError> {
    if let Some(core) = setup.core {
        let mut set = nix::sched::CpuSet::new();
        set.set(core)
            .and_then(|()| nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set))
            .map_err(|e| {
                WalError::Start(format!("cannot pin the WAL thread to core {core}: {e}"))
            })?;
    }
    let ring = WalRing::new(setup.waker.clone())
        .map_err(|e| WalError::Start(format!("io_uring setup: {e}")))?;
    let preparer = Preparer::start(setup.shared.dir.clone(), setup.segment_size)?;
    Ok((ring, preparer))
}

/// Reports a panic of the WAL thread as the log's error, so shards see it.
struct PanicGuard(Arc<Shared>);

impl Drop for PanicGuard {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0
                .set_error("the WAL thread panicked; nothing more will be written".into());
        }
    }
}

/// `Always`: a sync in flight.
struct InFlight {
    id: u64,
    /// It covers the pieces written before it started: `Writer::pieces` then.
    covers: u64,
    /// `Writer::written` when it started: what it makes durable.
    written: Vec<u64>,
    started: Instant,
    /// Its result once completed (0 or a negated errno).
    result: Option<i32>,
}

/// `Always`: bytes written and not yet known durable, kept to be written again.
struct Piece {
    pos: u64,
    data: PieceData,
}

enum PieceData {
    /// A chunk written whole, from this offset on.
    Chunk(Chunk, usize),
    /// Part of a chunk that was cut at a segment's end.
    Copy(Vec<u8>),
}

impl Piece {
    fn bytes(&self) -> &[u8] {
        match &self.data {
            PieceData::Chunk(c, start) => &c.data[*start..],
            PieceData::Copy(v) => v,
        }
    }
}

struct Writer {
    shared: Arc<Shared>,
    policy: FsyncPolicy,
    consumers: Vec<Consumer<Chunk>>,
    /// Per producer: chunks taken from its ring whose turn (ticket) has not come yet.
    waiting: Vec<VecDeque<Chunk>>,
    /// The ticket of the next chunk to write.
    next_ticket: u64,
    /// Chunks whose turn came, in ticket order, not yet (fully) written.
    pending: VecDeque<Chunk>,
    /// Bytes of `pending[0]` already written.
    head_off: usize,
    ring: WalRing,
    preparer: Preparer,
    seg: Segment,
    next_seg: Option<Segment>,
    /// Something was written to `seg` since its last completed fdatasync. (Closed
    /// segments were synced when closed, except under `No`: see `dirty_closed`.)
    dirty: bool,
    /// The last fdatasync of `seg` on its own failed: only a successful one clears the
    /// error.
    sync_failing: bool,
    dirty_closed: VecDeque<(u64, File)>,
    last_sync: Instant,
    /// Per shard: the highest LSN written (and, under `Always`, synced).
    written: Vec<u64>,
    /// Per shard: the durable LSN last published.
    published: Vec<u64>,
    /// After a failure: no write or sync before this.
    retry_at: Option<Instant>,
    shutdown_deadline: Option<Instant>,
    /// `Always`: syncs in flight (and completed ones behind an unfinished one), oldest
    /// first.
    syncs: VecDeque<InFlight>,
    /// `Always`: what was written and is not yet confirmed durable, in log order, all in
    /// `seg`.
    unconfirmed: VecDeque<Piece>,
    /// `Always`: pieces ever written, ever covered by a started sync, ever confirmed.
    pieces: u64,
    covered: u64,
    confirmed: u64,
    next_sync_id: u64,
    /// `Always`: a sync failed; nothing more is written until everything unconfirmed was
    /// written again and synced.
    resync: bool,
    /// When a write last carried `FLAG_DURABLE_BEFORE`.
    last_flag: Instant,
}

impl Writer {
    fn new(setup: Setup, ring: WalRing, preparer: Preparer) -> Writer {
        let shards = setup.shared.durable.len();
        let base = setup.shared.max_written_lsn.load(Ordering::Relaxed);
        let mut w = Writer {
            policy: setup.shared.policy(),
            shared: setup.shared,
            waiting: (0..setup.consumers.len())
                .map(|_| VecDeque::new())
                .collect(),
            consumers: setup.consumers,
            next_ticket: 0,
            pending: VecDeque::new(),
            head_off: 0,
            ring,
            preparer,
            seg: setup.segment,
            next_seg: None,
            dirty: false,
            sync_failing: false,
            dirty_closed: VecDeque::new(),
            last_sync: Instant::now(),
            written: vec![base; shards],
            published: vec![base; shards],
            retry_at: None,
            shutdown_deadline: None,
            syncs: VecDeque::new(),
            unconfirmed: VecDeque::new(),
            pieces: 0,
            covered: 0,
            confirmed: 0,
            next_sync_id: 0,
            resync: false,
            last_flag: Instant::now(),
        };
        w.preparer.request(w.seg.seq + 1);
        w
    }

    fn run(&mut self) -> Result<(), WalError> {
        loop {
            self.collect();
            let now = Instant::now();
            let mut busy = self.settle_completed(now);
            let policy = self.shared.policy();
            if policy != self.policy {
                let result = self.change_policy(policy);
                self.after_io(result, now);
            }
            let may_retry = self.retry_at.is_none_or(|t| now >= t);
            if !self.pending.is_empty() && may_retry && self.may_write(now) {
                // Publishes durable LSNs after each write it completes (not `Always`).
                let result = self.write_pending();
                self.after_io(result, now);
                busy = true;
            }
            if self.policy == FsyncPolicy::Always && may_retry {
                busy |= self.pump_syncs(now);
            }
            // Checked after every write too, so a never-idle thread still syncs.
            if self.policy == FsyncPolicy::EverySec
                && self.dirty
                && self.retry_at.is_none_or(|t| now >= t)
                && now >= self.last_sync + SYNC_INTERVAL
            {
                let result = self.sync_current();
                self.after_io(result, now);
                busy = true;
            }
            if busy {
                continue;
            }
            self.poll_preparer();
            if self.shared.shutdown.load(Ordering::SeqCst) {
                let deadline = *self.shutdown_deadline.get_or_insert(now + SHUTDOWN_GRACE);
                let issued = self.shared.tickets.0.load(Ordering::SeqCst);
                if self.pending.is_empty() && self.next_ticket >= issued {
                    return self.finish();
                }
                if now >= deadline {
                    let why = self
                        .shared
                        .error()
                        .unwrap_or_else(|| "a handed-over chunk never arrived".into());
                    return Err(WalError::Shutdown(format!(
                        "records still unwritten after {SHUTDOWN_GRACE:?}: {why}"
                    )));
                }
                self.ring.wait(Some(Duration::from_millis(1)));
                continue;
            }
            self.sleep(now);
        }
    }

    /// Sleep until a producer wakes us, a sync completes, or a retry or an `EverySec`
    /// sync is due.
    fn sleep(&mut self, now: Instant) {
        let deadline = if !self.pending.is_empty() || self.resync {
            self.retry_at
        } else if self.policy == FsyncPolicy::EverySec && self.dirty {
            Some((self.last_sync + SYNC_INTERVAL).max(self.retry_at.unwrap_or(now)))
        } else {
            None
        };
        self.shared.park_intent();
        let idle = self.consumers.iter().all(|c| c.is_empty())
            && !self.shared.shutdown.load(Ordering::SeqCst);
        if idle {
            self.ring
                .wait(deadline.map(|t| t.saturating_duration_since(now)));
        }
        self.shared.unparked();
    }

    fn after_io(&mut self, result: Result<(), WalError>, now: Instant) {
        match result {
            Ok(()) => {
                self.retry_at = None;
                if !self.sync_failing {
                    self.shared.clear_error();
                }
            }
            Err(e) => {
                self.shared.set_error(e.to_string());
                self.retry_at = Some(now + RETRY_INTERVAL);
            }
        }
    }

    /// Take every chunk the producers handed over, and move those whose turn came (a
    /// contiguous run of tickets) to `pending`. A missing ticket is a chunk still being
    /// pushed: everything after it waits.
    fn collect(&mut self) {
        for (c, q) in self.consumers.iter_mut().zip(self.waiting.iter_mut()) {
            while let Ok(chunk) = c.pop() {
                q.push_back(chunk);
            }
        }
        loop {
            let mut progressed = false;
            for q in self.waiting.iter_mut() {
                while q.front().is_some_and(|c| c.ticket == self.next_ticket) {
                    if let Some(chunk) = q.pop_front() {
                        self.pending.push_back(chunk);
                        self.next_ticket += 1;
                        progressed = true;
                    }
                }
            }
            if !progressed {
                break;
            }
        }
    }

    /// Write everything in `pending`: as much as fits the current segment per write,
    /// rotating between writes. On error, what was not written stays pending.
    fn write_pending(&mut self) -> Result<(), WalError> {
        while let Some(front) = self.pending.front() {
            let Some((first, _)) = record::peek(&front.data[self.head_off..]) else {
                // Cannot happen: chunks hold whole records. Drop the malformed rest.
                tracing::error!("WAL: malformed chunk from shard {}", front.shard);
                self.pending.pop_front();
                self.head_off = 0;
                continue;
            };
            if !self.seg.fits(first) {
                self.rotate()?;
            }
            let room = self.seg.len.saturating_sub(self.seg.pos);
            let limit = if self.seg.pos == segment::HEADER {
                room.max(first as u64)
            } else {
                room
            };
            // The records that fit, as (chunk index, start, end) byte ranges.
            let mut pieces: Vec<(usize, usize, usize)> = Vec::new();
            let mut total = 0u64;
            for (i, chunk) in self.pending.iter().enumerate() {
                let start = if i == 0 { self.head_off } else { 0 };
                let rest = (chunk.data.len() - start) as u64;
                if total + rest <= limit {
                    pieces.push((i, start, chunk.data.len()));
                    total += rest;
                    continue;
                }
                let mut end = start;
                while let Some((size, _)) = record::peek(&chunk.data[end..]) {
                    if total + (end - start + size) as u64 > limit {
                        break;
                    }
                    end += size;
                }
                if end > start {
                    pieces.push((i, start, end));
                    total += (end - start) as u64;
                }
                break;
            }
            if self.policy == FsyncPolicy::No || !self.dirty {
                let head = self.head_off;
                if let Some(front) = self.pending.front_mut() {
                    record::set_flags(&mut front.data[head..], FLAG_DURABLE_BEFORE);
                }
                self.last_flag = Instant::now();
            }
            // `Always` syncs separately, pipelined (see the module's comment).
            let always = self.policy == FsyncPolicy::Always;
            {
                let bufs: Vec<&[u8]> = pieces
                    .iter()
                    .map(|&(i, s, e)| &self.pending[i].data[s..e])
                    .collect();
                write_io(
                    &mut self.ring,
                    &self.shared,
                    &self.seg.file,
                    self.seg.pos,
                    &bufs,
                    false,
                )
                .map_err(|e| {
                    WalError::io("write", &segment::path(&self.shared.dir, self.seg.seq), e)
                })?;
            }
            self.dirty = true;
            let mut at = self.seg.pos;
            self.seg.pos += total;
            let shared = self.shared.clone();
            let stats = &shared.stats;
            stats.batches.fetch_add(1, Ordering::Relaxed);
            stats.bytes.fetch_add(total, Ordering::Relaxed);
            for (_, start, end) in pieces {
                let Some(chunk) = self.pending.front_mut() else {
                    break;
                };
                if end == chunk.data.len() {
                    self.written[chunk.shard] = chunk.last_lsn;
                    stats
                        .records
                        .fetch_add(u64::from(chunk.records), Ordering::Relaxed);
                    if let Some(chunk) = self.pending.pop_front() {
                        if always {
                            self.keep(at, PieceData::Chunk(chunk, start));
                        }
                    }
                    self.head_off = 0;
                } else {
                    if always {
                        let copy = chunk.data[start..end].to_vec();
                        self.keep(at, PieceData::Copy(copy));
                    }
                    let Some(chunk) = self.pending.front_mut() else {
                        break;
                    };
                    let (mut off, mut n, mut last) = (start, 0u32, 0u64);
                    while off < end {
                        let Some((size, lsn)) = record::peek(&chunk.data[off..]) else {
                            break;
                        };
                        off += size;
                        n += 1;
                        last = lsn;
                    }
                    let n = n.min(chunk.records);
                    chunk.records -= n;
                    stats.records.fetch_add(u64::from(n), Ordering::Relaxed);
                    if n > 0 {
                        self.written[chunk.shard] = last;
                    }
                    self.head_off = end;
                }
                at += (end - start) as u64;
            }
            let max = self.written.iter().copied().max().unwrap_or(0);
            self.shared
                .max_written_lsn
                .fetch_max(max, Ordering::Relaxed);
            *lock(&self.shared.position) = LogPosition {
                segment: self.seg.seq,
                offset: self.seg.pos,
            };
            // A write succeeded: the disk works again (before shards see durable move),
            // unless it is the periodic sync that keeps failing.
            self.retry_at = None;
            if !self.sync_failing {
                self.shared.clear_error();
            }
            if !always {
                self.publish();
            }
        }
        Ok(())
    }

    /// `Always`: keep a written piece until a sync confirms it.
    fn keep(&mut self, pos: u64, data: PieceData) {
        self.unconfirmed.push_back(Piece { pos, data });
        self.pieces += 1;
    }

    /// Whether pending chunks may be written now. Under `Always` not while a failed
    /// sync is being repaired, nor with every sync slot taken (the batch grows
    /// meanwhile: group commit), nor, once `FLAG_EVERY` passed since the last flagged
    /// write, before everything written is durable.
    fn may_write(&self, now: Instant) -> bool {
        if self.policy != FsyncPolicy::Always {
            return true;
        }
        !self.resync
            && self.syncs.len() < MAX_ASYNC_SYNCS
            && !(self.dirty && now >= self.last_flag + FLAG_EVERY)
    }

    /// `Always`: start a sync for what was written since the last one started, or, after
    /// a failed sync (once none is in flight), write everything unconfirmed again and
    /// sync it. Returns whether it did anything.
    fn pump_syncs(&mut self, now: Instant) -> bool {
        if self.resync {
            if !self.syncs.is_empty() {
                return false;
            }
            let result = self.rewrite_unconfirmed();
            self.after_io(result, now);
            return true;
        }
        if self.pieces == self.covered || self.syncs.len() >= MAX_ASYNC_SYNCS {
            return false;
        }
        let result = self.start_sync(now);
        self.after_io(result, now);
        true
    }

    fn start_sync(&mut self, now: Instant) -> Result<(), WalError> {
        let id = self.next_sync_id;
        start_sync_io(&mut self.ring, &self.shared, &self.seg.file, id).map_err(|e| {
            WalError::io(
                "fdatasync",
                &segment::path(&self.shared.dir, self.seg.seq),
                e,
            )
        })?;
        self.next_sync_id += 1;
        self.covered = self.pieces;
        self.syncs.push_back(InFlight {
            id,
            covers: self.pieces,
            written: self.written.clone(),
            started: now,
            result: None,
        });
        Ok(())
    }

    /// `Always`: take the completed syncs and settle, in start order, those with every
    /// earlier one settled: publish what a success covers; on a failure, start the repair
    /// (see the module's comment). Returns whether any was settled.
    fn settle_completed(&mut self, now: Instant) -> bool {
        if self.syncs.is_empty() {
            return false;
        }
        for (id, result) in self.ring.take_done() {
            if let Some(s) = self.syncs.iter_mut().find(|s| s.id == id) {
                s.result = Some(result);
            }
        }
        let mut settled = false;
        while let Some(result) = self.syncs.front().and_then(|s| s.result) {
            let Some(sync) = self.syncs.pop_front() else {
                break;
            };
            settled = true;
            if result < 0 {
                let e = io::Error::from_raw_os_error(-result);
                let path = segment::path(&self.shared.dir, self.seg.seq);
                self.sync_failing = true;
                self.resync = true;
                self.after_io(Err(WalError::io("fdatasync", &path, e)), now);
            } else if !self.resync {
                self.record_sync(sync.started);
                let n = sync.covers.saturating_sub(self.confirmed);
                for _ in 0..n {
                    self.unconfirmed.pop_front();
                }
                self.confirmed = self.confirmed.max(sync.covers);
                if self.unconfirmed.is_empty() {
                    self.dirty = false;
                }
                self.publish_lsns(&sync.written);
            }
        }
        settled
    }

    /// `Always`: wait for every sync in flight, then make everything written durable
    /// (writing it again if a sync failed) and publish it.
    fn settle(&mut self) -> Result<(), WalError> {
        while !self.syncs.is_empty() {
            if !self.settle_completed(Instant::now()) {
                self.ring.wait(None);
            }
        }
        if self.resync {
            return self.rewrite_unconfirmed();
        }
        if self.dirty {
            self.sync_current()?;
            self.confirm_all();
        }
        Ok(())
    }

    /// `Always`, after a failed sync: write everything unconfirmed again, at the same
    /// offsets, and sync it.
    fn rewrite_unconfirmed(&mut self) -> Result<(), WalError> {
        if let Some(first) = self.unconfirmed.front() {
            let started = Instant::now();
            let pos = first.pos;
            let bufs: Vec<&[u8]> = self.unconfirmed.iter().map(Piece::bytes).collect();
            let result = write_io(
                &mut self.ring,
                &self.shared,
                &self.seg.file,
                pos,
                &bufs,
                true,
            );
            result.map_err(|e| {
                let path = segment::path(&self.shared.dir, self.seg.seq);
                WalError::io("write+fdatasync", &path, e)
            })?;
            self.record_sync(started);
        } else {
            self.sync_current()?;
        }
        self.sync_failing = false;
        self.resync = false;
        self.confirm_all();
        Ok(())
    }

    /// `Always`: everything written is durable.
    fn confirm_all(&mut self) {
        self.unconfirmed.clear();
        self.confirmed = self.pieces;
        self.covered = self.pieces;
        self.dirty = false;
        let written = self.written.clone();
        self.publish_lsns(&written);
    }

    /// Move to the next segment: sync the current one (unless the policy is `No`), then
    /// take the prepared one (waiting for it if need be) and ask for the one after.
    fn rotate(&mut self) -> Result<(), WalError> {
        if self.policy == FsyncPolicy::Always {
            self.settle()?;
        }
        if self.dirty && self.policy != FsyncPolicy::No {
            self.sync_current()?;
        }
        let next = match self.next_seg.take() {
            Some(s) => s,
            None => self.wait_prepared()?,
        };
        let old = std::mem::replace(&mut self.seg, next);
        if self.dirty {
            self.dirty_closed.push_back((old.seq, old.file));
            if self.dirty_closed.len() > MAX_DIRTY_CLOSED {
                if let Some((seq, f)) = self.dirty_closed.pop_front() {
                    let started = Instant::now();
                    match self.ring.datasync(&f) {
                        Ok(()) => self.record_sync(started),
                        Err(e) => tracing::warn!("WAL: syncing closed segment {seq}: {e}"),
                    }
                }
            }
        }
        self.dirty = false;
        self.preparer.request(self.seg.seq + 1);
        *lock(&self.shared.position) = LogPosition {
            segment: self.seg.seq,
            offset: self.seg.pos,
        };
        Ok(())
    }

    fn wait_prepared(&mut self) -> Result<Segment, WalError> {
        let want = self.seg.seq + 1;
        if !self.preparer.is_pending() {
            self.preparer.request(want);
        }
        match self.preparer.take(true) {
            Some((seq, Ok(file))) if seq == want => {
                Segment::new(&self.shared, seq, file, segment::HEADER)
            }
            Some((seq, Ok(_))) => Err(WalError::Start(format!(
                "segment preparer made segment {seq}, expected {want}"
            ))),
            Some((_, Err(e))) => Err(e),
            None => Err(WalError::Start("segment preparer not asked".into())),
        }
    }

    /// Pick up a prepared segment without waiting.
    fn poll_preparer(&mut self) {
        if self.next_seg.is_some() || !self.preparer.is_pending() {
            return;
        }
        match self.preparer.take(false) {
            Some((seq, Ok(file))) if seq == self.seg.seq + 1 => {
                match Segment::new(&self.shared, seq, file, segment::HEADER) {
                    Ok(s) => self.next_seg = Some(s),
                    Err(e) => tracing::warn!("WAL: {e}"),
                }
            }
            Some((_, Ok(_))) | None => {}
            // Asked again (and then waited for) at the rotation that needs it.
            Some((_, Err(e))) => tracing::warn!("WAL: preparing the next segment: {e}"),
        }
    }

    fn sync_current(&mut self) -> Result<(), WalError> {
        let started = Instant::now();
        let result = sync_io(&mut self.ring, &self.shared, &self.seg.file);
        self.sync_failing = result.is_err();
        result.map_err(|e| {
            WalError::io(
                "fdatasync",
                &segment::path(&self.shared.dir, self.seg.seq),
                e,
            )
        })?;
        self.record_sync(started);
        self.dirty = false;
        Ok(())
    }

    fn record_sync(&mut self, started: Instant) {
        let now = Instant::now();
        self.last_sync = now;
        self.shared.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(now.duration_since(started).as_micros()).unwrap_or(u64::MAX);
        lock(&self.shared.fsync_latency).record(micros);
    }

    /// Publish each shard's written LSN as durable.
    fn publish(&mut self) {
        let written = std::mem::take(&mut self.written);
        self.publish_lsns(&written);
        self.written = written;
    }

    /// Publish each shard's durable LSN and tell the server which shards advanced.
    fn publish_lsns(&mut self, lsns: &[u64]) {
        let mut advanced = Vec::new();
        for (shard, (&written, published)) in lsns.iter().zip(self.published.iter_mut()).enumerate()
        {
            if written > *published {
                *published = written;
                self.shared.durable[shard]
                    .0
                    .store(written, Ordering::Release);
                advanced.push(shard);
            }
        }
        if advanced.is_empty() {
            return;
        }
        let notify = lock(&self.shared.notify).clone();
        if let Some(f) = notify {
            for shard in advanced {
                f(shard);
            }
        }
    }

    /// `CONFIG SET appendfsync`: from `No`, first sync what `No` left unsynced (the
    /// closed segments and the current one), so that under the new policy "durable" and the
    /// records' durable-before flag keep their meaning.
    fn change_policy(&mut self, policy: FsyncPolicy) -> Result<(), WalError> {
        let was = self.policy;
        if was == FsyncPolicy::Always {
            self.settle()?;
        }
        self.policy = policy;
        if was != FsyncPolicy::No {
            return Ok(());
        }
        self.sync_unsynced()
    }

    /// Sync the current segment if dirty and every closed segment left unsynced.
    fn sync_unsynced(&mut self) -> Result<(), WalError> {
        let mut result = Ok(());
        if self.dirty {
            if let Err(e) = self.sync_current() {
                result = Err(e);
            }
        }
        while let Some((seq, f)) = self.dirty_closed.pop_front() {
            let started = Instant::now();
            if let Err(e) = sync_io(&mut self.ring, &self.shared, &f) {
                result = Err(WalError::io(
                    "fdatasync",
                    &segment::path(&self.shared.dir, seq),
                    e,
                ));
            } else {
                self.record_sync(started);
            }
        }
        result
    }

    /// Shutdown with everything written: sync what is not synced yet, whatever the policy.
    fn finish(&mut self) -> Result<(), WalError> {
        if self.policy == FsyncPolicy::Always {
            self.settle()?;
        }
        let result = self.sync_unsynced();
        self.publish();
        result
    }
}

/// A write (and sync), with test-only fault injection.
fn write_io(
    ring: &mut WalRing,
    shared: &Shared,
    file: &File,
    offset: u64,
    bufs: &[&[u8]],
    sync: bool,
) -> io::Result<()> {
    #[cfg(test)]
    match shared.fault() {
        super::shared::Fault::Write => return Err(io::Error::from_raw_os_error(libc::EIO)),
        super::shared::Fault::Sync => {
            ring.write_at(file, offset, bufs, false)?;
            if sync {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            return Ok(());
        }
        super::shared::Fault::None => {}
    }
    let _ = shared;
    ring.write_at(file, offset, bufs, sync)
}

/// Start an asynchronous fdatasync, with test-only fault injection (it then completes
/// at once with EIO).
fn start_sync_io(ring: &mut WalRing, shared: &Shared, file: &File, id: u64) -> io::Result<()> {
    #[cfg(test)]
    if shared.fault() != super::shared::Fault::None {
        ring.fake_done(id, -libc::EIO);
        return Ok(());
    }
    let _ = shared;
    ring.start_datasync(file, id)
}

/// An fdatasync, with test-only fault injection.
fn sync_io(ring: &mut WalRing, shared: &Shared, file: &File) -> io::Result<()> {
    #[cfg(test)]
    if shared.fault() != super::shared::Fault::None {
        return Err(io::Error::from_raw_os_error(libc::EIO));
    }
    let _ = shared;
    ring.datasync(file)
}
