//! The WAL thread's file I/O: its own small io_uring for positioned vectored writes linked
//! with `fdatasync`, and the advisory lock that keeps two processes out of one WAL
//! directory.
//!
//! Writes are synchronous from the caller's point of view: a call pushes its entries,
//! waits until the kernel has completed every one of them, and only then returns, on
//! success and on error alike. The buffers and iovecs a call hands to the kernel are
//! therefore borrowed for exactly as long as the kernel may use them.
//!
//! Two kinds of entry stay in flight between calls, and neither refers to memory of
//! ours: asynchronous `fdatasync`s ([`WalRing::start_datasync`], so that the next batch
//! is written while the previous one syncs), each holding its own handle on the file
//! until it completes; and a poll on the [`WalWaker`]'s eventfd, which is how producers
//! wake a WAL thread waiting in [`WalRing::wait`].

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use io_uring::{opcode, squeue, types, IoUring};

/// Most iovecs one write takes (Linux's IOV_MAX); the rest follows in another write.
const IOV_MAX: usize = 1024;

/// Most bytes one write asks for (Linux's MAX_RW_COUNT: the kernel caps a single read or
/// write there anyway); the rest follows in another write.
const MAX_WRITE: usize = 0x7fff_f000;

const WRITE_TAG: u64 = 1;
const SYNC_TAG: u64 = 2;
const WAKE_TAG: u64 = 3;
/// Tag bit of an asynchronous sync; the low bits are its id.
const ASYNC_SYNC: u64 = 1 << 63;

/// Most asynchronous syncs in flight at once (the ring is sized for them, a wake-up poll
/// and a linked write + sync).
pub(crate) const MAX_ASYNC_SYNCS: usize = 2;

/// How producers wake the WAL thread: an eventfd the thread polls through its ring while
/// it waits, so one wait covers both new records and completed syncs.
pub(crate) struct WalWaker {
    fd: OwnedFd,
}

impl WalWaker {
    pub fn new() -> io::Result<Arc<WalWaker>> {
        // SAFETY: `eventfd` takes no pointers; a non-negative result is a new descriptor
        // that nothing else owns.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Arc::new(WalWaker { fd }))
    }

    /// Wake the WAL thread (or make its next wait return at once).
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to a descriptor we own. It can fail
        // only if the counter is about to overflow, and then a wake-up is pending anyway.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Reset the counter (after the poll saw it set).
    fn drain(&self) {
        let mut n: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live local; the descriptor is non-blocking.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut n as *mut u64).cast(), 8) };
    }
}

/// A dedicated io_uring for the WAL thread's writes and syncs.
pub(crate) struct WalRing {
    ring: IoUring,
    waker: Arc<WalWaker>,
    /// A poll on the waker's eventfd is in flight.
    wake_armed: bool,
    /// Asynchronous syncs in flight, by id, each with its own handle on the file so the
    /// descriptor it names stays open until the kernel is done with it.
    syncing: Vec<(u64, File)>,
    /// Asynchronous syncs completed and not yet taken: (id, result).
    done: Vec<(u64, i32)>,
}

impl WalRing {
    /// A small ring: besides the asynchronous syncs and the wake-up poll, at most two
    /// entries (a write linked with a sync) are in flight.
    pub fn new(waker: Arc<WalWaker>) -> io::Result<WalRing> {
        Ok(WalRing {
            ring: IoUring::new(16)?,
            waker,
            wake_armed: false,
            syncing: Vec::new(),
            done: Vec::new(),
        })
    }

    /// Start `fdatasync(file)` without waiting for it; its result comes out of
    /// [`WalRing::take_done`] under `id`. At most [`MAX_ASYNC_SYNCS`] at once.
    pub fn start_datasync(&mut self, file: &File, id: u64) -> io::Result<()> {
        if self.syncing.len() >= MAX_ASYNC_SYNCS {
            return Err(io::Error::other("too many WAL syncs in flight"));
        }
        let file = file.try_clone()?;
        let entry = opcode::Fsync::new(types::Fd(file.as_raw_fd()))
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .user_data(ASYNC_SYNC | id);
        // SAFETY: a sync entry refers to no memory of ours, only to the descriptor, which
        // the clone kept in `syncing` holds open until the completion is reaped.
        unsafe { self.ring.submission().push(&entry) }
            .map_err(|_| io::Error::other("WAL io_uring submission queue is full"))?;
        self.syncing.push((id, file));
        self.submit()
    }

    /// The asynchronous syncs that completed since the last call: (id, result), where a
    /// result is 0 or a negated errno.
    pub fn take_done(&mut self) -> Vec<(u64, i32)> {
        self.reap();
        std::mem::take(&mut self.done)
    }

    /// Test-only: make an asynchronous sync complete with `result` without doing it.
    #[cfg(test)]
    pub fn fake_done(&mut self, id: u64, result: i32) {
        self.done.push((id, result));
    }

    /// Wait until a sync completes, a producer wakes us ([`WalWaker::wake`]) or
    /// `timeout` passes (`None`: no limit).
    pub fn wait(&mut self, timeout: Option<Duration>) {
        if !self.wake_armed {
            let entry =
                opcode::PollAdd::new(types::Fd(self.waker.fd.as_raw_fd()), libc::POLLIN as u32)
                    .build()
                    .user_data(WAKE_TAG);
            // SAFETY: a poll entry refers to no memory of ours; the eventfd is owned by
            // `self.waker`, which lives as long as the ring.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                self.wake_armed = true;
            }
        }
        let result = match timeout {
            None => self.ring.submit_and_wait(1),
            Some(t) => {
                let ts = types::Timespec::from(t);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
        };
        if let Err(e) = result {
            match e.raw_os_error() {
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) => {}
                _ => tracing::warn!("WAL io_uring wait failed: {e}"),
            }
        }
        self.reap();
    }

    fn submit(&mut self) -> io::Result<()> {
        loop {
            match self.ring.submit() {
                Ok(_) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Take the completions that arrived (between synchronous calls there are only the
    /// asynchronous syncs' and the wake-up poll's).
    fn reap(&mut self) {
        self.reap_into(&mut [None, None]);
    }

    /// Take every completion that arrived: a synchronous call's own go into `own` (index
    /// 0: write, 1: sync) and are counted in the result; the asynchronous syncs' are
    /// filed for [`WalRing::take_done`]; the wake-up poll's re-arms the poll.
    fn reap_into(&mut self, own: &mut [Option<i32>; 2]) -> usize {
        let mut n = 0;
        let mut woken = false;
        let cqes: Vec<(u64, i32)> = self
            .ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        for (tag, result) in cqes {
            match tag {
                WRITE_TAG | SYNC_TAG => {
                    own[usize::from(tag == SYNC_TAG)] = Some(result);
                    n += 1;
                }
                WAKE_TAG => {
                    self.wake_armed = false;
                    woken = true;
                }
                _ if tag & ASYNC_SYNC != 0 => {
                    let id = tag & !ASYNC_SYNC;
                    if let Some(i) = self.syncing.iter().position(|(s, _)| *s == id) {
                        self.syncing.swap_remove(i);
                    }
                    self.done.push((id, result));
                }
                _ => {}
            }
        }
        if woken {
            self.waker.drain();
        }
        n
    }

    /// Write every byte of `bufs`, in order, to `file` at `offset`; then, if `sync`,
    /// `fdatasync` the file (linked to the last write, so it starts only after the write
    /// completed in full). Short writes are continued. Returns the first error; the file
    /// may then hold any prefix of the data, and the caller is expected to write it again.
    pub fn write_at(
        &mut self,
        file: &File,
        mut offset: u64,
        bufs: &[&[u8]],
        sync: bool,
    ) -> io::Result<()> {
        let fd = types::Fd(file.as_raw_fd());
        // Cursor over `bufs`: the buffer and the byte within it where the rest starts.
        let (mut idx, mut skip) = (0usize, 0usize);
        loop {
            while idx < bufs.len() && skip >= bufs[idx].len() {
                idx += 1;
                skip = 0;
            }
            if idx == bufs.len() {
                return if sync { self.datasync(file) } else { Ok(()) };
            }
            let mut iov: Vec<libc::iovec> = Vec::new();
            let mut len = 0usize;
            let mut last = true;
            for (i, buf) in bufs[idx..].iter().enumerate() {
                let part = if i == 0 { &buf[skip..] } else { &buf[..] };
                if part.is_empty() {
                    continue;
                }
                if iov.len() == IOV_MAX || len == MAX_WRITE {
                    last = false;
                    break;
                }
                let take = part.len().min(MAX_WRITE - len);
                if take < part.len() {
                    last = false;
                }
                iov.push(libc::iovec {
                    iov_base: part.as_ptr() as *mut libc::c_void,
                    iov_len: take,
                });
                len += take;
                if !last {
                    break;
                }
            }
            // `iov.len() <= IOV_MAX`, so it fits the entry's u32 length field.
            let write = opcode::Writev::new(fd, iov.as_ptr(), iov.len() as u32)
                .offset(offset)
                .build()
                .user_data(WRITE_TAG);
            let results = if sync && last {
                let datasync = opcode::Fsync::new(fd)
                    .flags(types::FsyncFlags::DATASYNC)
                    .build()
                    .user_data(SYNC_TAG);
                // SAFETY: the write entry points to `iov` and, through it, into `bufs`;
                // both live until `run` returns, and `run` returns only after the kernel
                // completed both entries. The sync entry refers to no memory.
                unsafe { self.run(&[write.flags(squeue::Flags::IO_LINK), datasync])? }
            } else {
                // SAFETY: as above: `iov` and `bufs` outlive the entry's completion.
                unsafe { self.run(&[write])? }
            };
            drop(iov);
            let written = match results[0] {
                Some(n) if n > 0 => (n as usize).min(len),
                Some(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Some(e) if -e == libc::EINTR || -e == libc::EAGAIN => 0,
                Some(e) => return Err(io::Error::from_raw_os_error(-e)),
                None => return Err(io::Error::other("write completion missing")),
            };
            if written == len && sync && last {
                return match results[1] {
                    Some(0) => Ok(()),
                    Some(e) if e < 0 => Err(io::Error::from_raw_os_error(-e)),
                    _ => Err(io::Error::other("fdatasync completion missing")),
                };
            }
            // A short write (the linked sync, if any, was cancelled): continue after it.
            offset += written as u64;
            let mut advance = written;
            while advance > 0 {
                let left = bufs[idx].len() - skip;
                if advance < left {
                    skip += advance;
                    advance = 0;
                } else {
                    advance -= left;
                    idx += 1;
                    skip = 0;
                }
            }
        }
    }

    /// `fdatasync(file)`, through the ring.
    pub fn datasync(&mut self, file: &File) -> io::Result<()> {
        let entry = opcode::Fsync::new(types::Fd(file.as_raw_fd()))
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .user_data(SYNC_TAG);
        // SAFETY: a sync entry refers to no memory of ours, only to the descriptor, which
        // `file` keeps open until `run` returned (after the completion).
        let results = unsafe { self.run(&[entry])? };
        match results[1] {
            Some(0) => Ok(()),
            Some(e) if e < 0 => Err(io::Error::from_raw_os_error(-e)),
            _ => Err(io::Error::other("fdatasync completion missing")),
        }
    }

    /// Submit `entries` (at most two, tagged `WRITE_TAG` / `SYNC_TAG`) and wait until all
    /// of them completed; returns their results by tag (index 0: write, 1: sync).
    ///
    /// # Safety
    ///
    /// Every buffer an entry refers to must stay valid until this returns. It returns an
    /// error without waiting only if the entries could not be queued at all.
    unsafe fn run(&mut self, entries: &[squeue::Entry]) -> io::Result<[Option<i32>; 2]> {
        // Every push is submitted at once, so the queue is empty between calls and a full
        // queue can only mean a broken ring; if it happens, nothing was queued and
        // returning is safe.
        // SAFETY: the caller keeps the memory the entries refer to valid until we return,
        // and we return only after their completions (below).
        unsafe { self.ring.submission().push_multiple(entries) }
            .map_err(|_| io::Error::other("WAL io_uring submission queue is full"))?;
        let mut results = [None, None];
        let mut pending = entries.len();
        let mut failures = 0u32;
        while pending > 0 {
            if let Err(e) = self.ring.submit_and_wait(pending) {
                match e.raw_os_error() {
                    Some(libc::EINTR) => {}
                    Some(libc::EAGAIN) | Some(libc::EBUSY) => {
                        std::thread::sleep(Duration::from_micros(100))
                    }
                    _ => {
                        // Entries may be in flight or still queued: returning now could
                        // let the kernel read freed memory later. Keep waiting.
                        if failures % 1000 == 0 {
                            tracing::error!("WAL io_uring wait failed ({e}); retrying");
                        }
                        failures = failures.wrapping_add(1);
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
            pending = pending.saturating_sub(self.reap_into(&mut results));
        }
        Ok(results)
    }
}

/// Take an exclusive advisory lock (`flock(LOCK_EX | LOCK_NB)`) on `file`; `Ok(false)`
/// if another open file description holds it. Released when the file is closed.
pub(crate) fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    // SAFETY: `flock` only acts on the descriptor, which `file` keeps open for the call;
    // it touches no memory of ours.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(err)
    }
}
