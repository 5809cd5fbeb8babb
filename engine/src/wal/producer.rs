//! A shard's producer side: records are encoded into a local buffer as they are
//! appended, and handed to the WAL thread once per loop turn as one ticketed chunk.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::Thread;

use rtrb::Producer;

use super::record;
use super::shared::Shared;

/// Chunks a shard may have handed over and the WAL thread not yet taken.
pub(crate) const RING_CAPACITY: usize = 4096;

/// One loop turn's records of one shard, encoded back to back.
pub(crate) struct Chunk {
    /// The global order the WAL thread writes chunks in.
    pub ticket: u64,
    /// The producing shard (index into the durable LSNs).
    pub shard: usize,
    pub data: Vec<u8>,
    /// Records in `data` not yet written.
    pub records: u32,
    /// The LSN of the last record in `data`.
    pub last_lsn: u64,
}

/// One shard's producer side of the log. Moved into the shard's thread (`Send`); used
/// by that thread only (not `Sync`).
///
/// Per loop turn the shard calls [`ShardLog::append`] for each mutation and then
/// [`ShardLog::flush`] once, before the turn's replies and cross-shard messages leave
/// (so that anything that observed a record is ordered after it in the log).
pub struct ShardLog {
    index: usize,
    shard: u16,
    next_lsn: u64,
    buf: Vec<u8>,
    buf_records: u32,
    producer: Producer<Chunk>,
    shared: Arc<Shared>,
    wal_thread: Thread,
    _not_sync: PhantomData<Cell<()>>,
}

impl ShardLog {
    pub(crate) fn new(
        index: usize,
        first_lsn: u64,
        producer: Producer<Chunk>,
        shared: Arc<Shared>,
        wal_thread: Thread,
    ) -> ShardLog {
        ShardLog {
            index,
            // `open` refuses more shards than fit a u16.
            shard: index as u16,
            next_lsn: first_lsn,
            buf: Vec::new(),
            buf_records: 0,
            producer,
            shared,
            wal_thread,
            _not_sync: PhantomData,
        }
    }

    /// Buffer one record locally and return its LSN (strictly increasing for this shard,
    /// and above every LSN found in the log when it was opened). `kind` and `payload` are
    /// the server's; the record reaches the log at the next [`ShardLog::flush`].
    ///
    /// # Panics
    ///
    /// If `payload` is longer than [`MAX_PAYLOAD`](super::MAX_PAYLOAD) (4 GiB).
    pub fn append(&mut self, kind: u8, payload: &[u8]) -> u64 {
        let lsn = self.next_lsn;
        record::encode(&mut self.buf, lsn, self.shard, kind, 0, payload);
        self.next_lsn += 1;
        self.buf_records += 1;
        lsn
    }

    /// Hand this turn's records to the WAL thread (one lock-free push of one chunk) and
    /// wake it if it sleeps. Call once per loop turn, before the turn's replies and
    /// messages leave.
    ///
    /// Each chunk takes a global ticket when it is handed over, and the WAL thread writes
    /// chunks in ticket order, so a chunk handed over before another shard's chunk was
    /// produced precedes it in the log. If the WAL thread is so far behind that this
    /// shard's ring is full, the records stay here and go with the next `flush` (the only
    /// case where hand-over lags `flush`).
    pub fn flush(&mut self) {
        self.hand_over(|| {});
    }

    /// [`ShardLog::flush`], running `between` after the ticket was taken and before the
    /// push (tests use it to hold a ticket open).
    pub(crate) fn hand_over(&mut self, between: impl FnOnce()) {
        if self.buf.is_empty() {
            return;
        }
        let data = std::mem::take(&mut self.buf);
        // The ticket is taken now, at hand-over: everything this shard does after this
        // turn (the messages it sends) must come later in the log. A taken ticket must
        // arrive (the WAL thread waits for it), so if the ring is full, which means the
        // WAL thread is thousands of chunks behind, the shard waits for room: that is the
        // log's backpressure, and the only place a shard ever blocks on it.
        let mut chunk = Chunk {
            ticket: self.shared.tickets.0.fetch_add(1, Ordering::SeqCst),
            shard: self.index,
            data,
            records: self.buf_records,
            last_lsn: self.next_lsn - 1,
        };
        self.buf_records = 0;
        between();
        while let Err(rtrb::PushError::Full(back)) = self.producer.push(chunk) {
            chunk = back;
            self.wal_thread.unpark();
            std::thread::yield_now();
        }
        if self.shared.needs_wake() {
            self.wal_thread.unpark();
        }
    }

    /// The LSN of the last record appended (before any append: the highest LSN found in
    /// the log at open).
    pub fn last(&self) -> u64 {
        self.next_lsn - 1
    }

    /// The highest LSN of this shard that is durable under the fsync policy: synced for
    /// `Always`, written to the OS for `EverySec` and `No`.
    pub fn durable(&self) -> u64 {
        self.shared.durable[self.index].0.load(Ordering::Acquire)
    }

    /// Why the log cannot write right now (disk full, I/O error...), or `None`. Records
    /// already handed over are kept and retried; the error clears when a write succeeds.
    /// A server should refuse writes meanwhile (Redis answers `MISCONF`).
    pub fn error(&self) -> Option<String> {
        self.shared.error()
    }
}

impl std::fmt::Debug for ShardLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardLog")
            .field("shard", &self.shard)
            .field("last", &self.last())
            .field("durable", &self.durable())
            .finish_non_exhaustive()
    }
}
