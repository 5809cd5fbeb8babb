//! State shared between the producers ([`super::ShardLog`]), the WAL thread and the
//! [`super::Wal`] handle: tickets, the parking flag, published durable LSNs, the error
//! state, statistics and the notify callback.

use std::path::PathBuf;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{FsyncPolicy, LogPosition};

/// Pads a value to its own cache lines so producers and the WAL thread do not
/// false-share it.
#[repr(align(128))]
#[derive(Debug, Default)]
pub(crate) struct Padded<T>(pub T);

/// The callback [`super::Wal::set_notify`] installs.
pub(crate) type Notify = Arc<dyn Fn(usize) + Send + Sync>;

/// Lock a mutex, ignoring poisoning (the data behind these mutexes stays consistent
/// whatever panicked: each is a plain value replaced whole).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Test-only fault injection on the WAL thread's file I/O.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Fault {
    /// Normal operation.
    None = 0,
    /// Every write fails with EIO before reaching the file.
    Write = 1,
    /// Writes reach the file but every fdatasync fails with EIO.
    Sync = 2,
}

pub(crate) struct Shared {
    pub dir: PathBuf,
    /// The fsync policy ([`FsyncPolicy`] as a number); `Wal::set_policy` changes it.
    policy: AtomicU8,
    /// The next chunk ticket; one `fetch_add` per chunk handed over.
    pub tickets: Padded<AtomicU64>,
    /// Set by the WAL thread when it is about to sleep (see [`Shared::park_intent`]).
    pub parked: Padded<AtomicBool>,
    /// Per shard: the highest LSN durable under the policy.
    pub durable: Vec<Padded<AtomicU64>>,
    /// The highest LSN written to the log so far, over all shards.
    pub max_written_lsn: AtomicU64,
    /// Whether `error` is set (read without locking on every `ShardLog::error`).
    pub has_error: AtomicBool,
    pub error: Mutex<Option<String>>,
    pub last_error: Mutex<Option<String>>,
    pub notify: Mutex<Option<Notify>>,
    /// The end of the written log.
    /// The end of the written log and the running log total ([`super::Wal::log_bytes`]),
    /// updated together so a reader gets both as of the same write.
    pub position: Mutex<(LogPosition, u64)>,
    pub shutdown: AtomicBool,
    pub stats: Counters,
    pub fsync_latency: Mutex<LatencyWindow>,
    #[cfg(test)]
    pub fault: AtomicU8,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub batches: AtomicU64,
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub fsyncs: AtomicU64,
}

impl Shared {
    /// The fsync policy in force.
    pub fn policy(&self) -> FsyncPolicy {
        FsyncPolicy::from_code(self.policy.load(Ordering::Acquire))
    }

    /// Change the fsync policy (the WAL thread applies it before its next write).
    pub fn set_policy(&self, policy: FsyncPolicy) {
        self.policy.store(policy.code(), Ordering::Release);
    }

    pub fn new(
        dir: PathBuf,
        policy: FsyncPolicy,
        shards: usize,
        max_lsn: u64,
        position: LogPosition,
        log_bytes: u64,
    ) -> Shared {
        Shared {
            dir,
            policy: AtomicU8::new(policy.code()),
            tickets: Padded(AtomicU64::new(0)),
            parked: Padded(AtomicBool::new(false)),
            durable: (0..shards)
                .map(|_| Padded(AtomicU64::new(max_lsn)))
                .collect(),
            max_written_lsn: AtomicU64::new(max_lsn),
            has_error: AtomicBool::new(false),
            error: Mutex::new(None),
            last_error: Mutex::new(None),
            notify: Mutex::new(None),
            position: Mutex::new((position, log_bytes)),
            shutdown: AtomicBool::new(false),
            stats: Counters::default(),
            fsync_latency: Mutex::new(LatencyWindow::default()),
            #[cfg(test)]
            fault: AtomicU8::new(Fault::None as u8),
        }
    }

    /// WAL thread: announce the intent to sleep. It must then re-check the producers'
    /// rings and sleep only if they are all empty. A producer pushes first and then calls
    /// [`Shared::needs_wake`]; with sequentially consistent fences on both sides one of
    /// the two always sees the other, so a chunk is never left unseen by a sleeping
    /// thread.
    pub fn park_intent(&self) {
        self.parked.0.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// WAL thread: awake again.
    pub fn unparked(&self) {
        self.parked.0.store(false, Ordering::SeqCst);
    }

    /// Producer, after pushing: whether the WAL thread must be woken (at most one
    /// producer gets `true` per sleep; a busy WAL thread is never sent a wake-up).
    pub fn needs_wake(&self) -> bool {
        fence(Ordering::SeqCst);
        self.parked.0.load(Ordering::SeqCst) && self.parked.0.swap(false, Ordering::SeqCst)
    }

    pub fn set_error(&self, message: String) {
        let mut e = lock(&self.error);
        if e.as_deref() != Some(message.as_str()) {
            tracing::error!("WAL: {message}");
        }
        *lock(&self.last_error) = Some(message.clone());
        *e = Some(message);
        self.has_error.store(true, Ordering::Release);
    }

    /// After shutdown: appends can no longer be written (not logged: it is expected).
    pub fn set_stopped(&self) {
        *lock(&self.error) = Some("the WAL is shut down".into());
        self.has_error.store(true, Ordering::Release);
    }

    pub fn clear_error(&self) {
        if self.has_error.load(Ordering::Acquire) {
            let mut e = lock(&self.error);
            if e.take().is_some() {
                tracing::info!("WAL: writes succeed again");
            }
            self.has_error.store(false, Ordering::Release);
        }
    }

    pub fn error(&self) -> Option<String> {
        if self.has_error.load(Ordering::Acquire) {
            lock(&self.error).clone()
        } else {
            None
        }
    }

    #[cfg(test)]
    pub fn fault(&self) -> Fault {
        match self.fault.load(Ordering::SeqCst) {
            1 => Fault::Write,
            2 => Fault::Sync,
            _ => Fault::None,
        }
    }

    #[cfg(test)]
    pub fn set_fault(&self, fault: Fault) {
        self.fault.store(fault as u8, Ordering::SeqCst);
    }
}

/// The most recent fsync latencies, for percentiles.
#[derive(Default)]
pub(crate) struct LatencyWindow {
    samples: Vec<u64>,
    next: usize,
}

const LATENCY_WINDOW: usize = 1024;

impl LatencyWindow {
    pub fn record(&mut self, micros: u64) {
        if self.samples.len() < LATENCY_WINDOW {
            self.samples.push(micros);
        } else {
            self.samples[self.next] = micros;
        }
        self.next = (self.next + 1) % LATENCY_WINDOW;
    }

    /// `(p50, p99)` in microseconds over the window (0 when empty).
    pub fn percentiles(&self) -> (u64, u64) {
        if self.samples.is_empty() {
            return (0, 0);
        }
        let mut s = self.samples.clone();
        s.sort_unstable();
        let at = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
        (at(0.50), at(0.99))
    }
}
