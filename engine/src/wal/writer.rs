//! The WAL thread: takes the shards' chunks in ticket order, writes them in batches
//! through its own io_uring, syncs per policy, rotates segments, publishes durable LSNs
//! and retries after disk errors.

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
use crate::sys::WalRing;

/// How long after a failed write or sync the WAL thread tries again.
pub(crate) const RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// `EverySec`: the interval between syncs.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);

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
    let ring = WalRing::new().map_err(|e| WalError::Start(format!("io_uring setup: {e}")))?;
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
        };
        w.preparer.request(w.seg.seq + 1);
        w
    }

    fn run(&mut self) -> Result<(), WalError> {
        loop {
            self.collect();
            let now = Instant::now();
            let mut busy = false;
            let policy = self.shared.policy();
            if policy != self.policy {
                let result = self.change_policy(policy);
                self.after_io(result, now);
            }
            if self.unsynced_owed() && self.retry_at.is_none_or(|t| now >= t) {
                // Segments left unsynced by `No` whose sync failed: again, then publish
                // what waited for them.
                let result = self.sync_unsynced();
                let synced = result.is_ok();
                self.after_io(result, now);
                if synced {
                    self.publish();
                }
                busy = true;
            }
            if !self.pending.is_empty() && self.retry_at.is_none_or(|t| now >= t) {
                // Publishes durable LSNs after each write it completes.
                let result = self.write_pending();
                self.after_io(result, now);
                busy = true;
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
                thread::park_timeout(Duration::from_millis(1));
                continue;
            }
            self.sleep(now);
        }
    }

    /// Sleep until a producer wakes us, or until a retry or an `EverySec` sync is due.
    fn sleep(&mut self, now: Instant) {
        let deadline = if !self.pending.is_empty() || self.unsynced_owed() {
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
            match deadline {
                Some(t) => thread::park_timeout(t.saturating_duration_since(now)),
                None => thread::park(),
            }
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
                // (From now, not from the loop's start: the failed I/O may have been slow.)
                self.retry_at = Some(Instant::now().max(now) + RETRY_INTERVAL);
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
            // (Not while segments left by `No` still wait for their sync.)
            if self.policy == FsyncPolicy::No || (!self.dirty && !self.unsynced_owed()) {
                let head = self.head_off;
                if let Some(front) = self.pending.front_mut() {
                    record::set_flags(&mut front.data[head..], FLAG_DURABLE_BEFORE);
                }
            }
            let sync = self.policy == FsyncPolicy::Always;
            let started = Instant::now();
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
                    sync,
                )
                .map_err(|e| {
                    let op = if sync { "write+fdatasync" } else { "write" };
                    WalError::io(op, &segment::path(&self.shared.dir, self.seg.seq), e)
                })?;
            }
            if sync {
                self.record_sync(started);
            } else {
                self.dirty = true;
            }
            self.seg.pos += total;
            let stats = &self.shared.stats;
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
                    self.pending.pop_front();
                    self.head_off = 0;
                } else {
                    let (mut at, mut n, mut last) = (start, 0u32, 0u64);
                    while at < end {
                        let Some((size, lsn)) = record::peek(&chunk.data[at..]) else {
                            break;
                        };
                        at += size;
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
            }
            let max = self.written.iter().copied().max().unwrap_or(0);
            self.shared
                .max_written_lsn
                .fetch_max(max, Ordering::Relaxed);
            {
                let mut end = lock(&self.shared.position);
                end.0 = LogPosition {
                    segment: self.seg.seq,
                    offset: self.seg.pos,
                };
                end.1 += total;
            }
            // A write succeeded: the disk works again (before shards see durable move),
            // unless it is the periodic sync that keeps failing.
            self.retry_at = None;
            if !self.sync_failing {
                self.shared.clear_error();
            }
            self.publish();
        }
        Ok(())
    }

    /// Move to the next segment: sync the current one (unless the policy is `No`), then
    /// take the prepared one (waiting for it if need be) and ask for the one after.
    fn rotate(&mut self) -> Result<(), WalError> {
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
                        Err(e) => {
                            // Kept: a later policy change must still sync it.
                            tracing::warn!("WAL: syncing closed segment {seq}: {e}");
                            self.dirty_closed.push_front((seq, f));
                        }
                    }
                }
            }
        }
        self.dirty = false;
        self.preparer.request(self.seg.seq + 1);
        lock(&self.shared.position).0 = LogPosition {
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

    /// Under a policy that syncs, segments written under `No` are still unsynced (their
    /// sync failed at the change): nothing is published as durable until they are synced.
    fn unsynced_owed(&self) -> bool {
        self.policy != FsyncPolicy::No && !self.dirty_closed.is_empty()
    }

    /// Publish each shard's durable LSN and tell the server which shards advanced (not
    /// while [`Writer::unsynced_owed`]).
    fn publish(&mut self) {
        if self.unsynced_owed() {
            return;
        }
        let mut advanced = Vec::new();
        for (shard, (&written, published)) in self
            .written
            .iter()
            .zip(self.published.iter_mut())
            .enumerate()
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
    ///
    /// If that sync fails, the segments stay listed and are synced again every
    /// `RETRY_INTERVAL`, and nothing is published as durable meanwhile
    /// ([`Writer::unsynced_owed`]); writes go on under the new policy.
    fn change_policy(&mut self, policy: FsyncPolicy) -> Result<(), WalError> {
        let was = self.policy;
        self.policy = policy;
        if policy == FsyncPolicy::No {
            // `No` promises no sync: an error another policy's sync left no longer applies
            // (the caller's `after_io` clears it; a failing write sets it again).
            self.sync_failing = false;
        }
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
        // A segment whose sync failed stays listed, to be synced again.
        let mut failed = VecDeque::new();
        while let Some((seq, f)) = self.dirty_closed.pop_front() {
            let started = Instant::now();
            if let Err(e) = sync_io(&mut self.ring, &self.shared, &f) {
                result = Err(WalError::io(
                    "fdatasync",
                    &segment::path(&self.shared.dir, seq),
                    e,
                ));
                failed.push_back((seq, f));
            } else {
                self.record_sync(started);
            }
        }
        self.dirty_closed = failed;
        // (Only a complete pass clears the error; a write succeeding meanwhile does not.)
        self.sync_failing = result.is_err();
        result
    }

    /// Shutdown with everything written: sync what is not synced yet, whatever the policy.
    fn finish(&mut self) -> Result<(), WalError> {
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

/// An fdatasync, with test-only fault injection.
fn sync_io(ring: &mut WalRing, shared: &Shared, file: &File) -> io::Result<()> {
    #[cfg(test)]
    if shared.fault() != super::shared::Fault::None {
        return Err(io::Error::from_raw_os_error(libc::EIO));
    }
    let _ = shared;
    ring.datasync(file)
}
