//! The WAL thread's file I/O: its own small io_uring for positioned vectored writes linked
//! with `fdatasync`, and the advisory lock that keeps two processes out of one WAL
//! directory.
//!
//! Every call here is synchronous from the caller's point of view: it pushes its entries,
//! waits until the kernel has completed every one of them, and only then returns, on
//! success and on error alike. The buffers and iovecs a call hands to the kernel are
//! therefore borrowed for exactly as long as the kernel may use them.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use io_uring::{opcode, squeue, types, IoUring};

/// Most iovecs one write takes (Linux's IOV_MAX); the rest follows in another write.
const IOV_MAX: usize = 1024;

/// Most bytes one write asks for (Linux's MAX_RW_COUNT: the kernel caps a single read or
/// write there anyway); the rest follows in another write.
const MAX_WRITE: usize = 0x7fff_f000;

const WRITE_TAG: u64 = 1;
const SYNC_TAG: u64 = 2;

/// A dedicated io_uring for the WAL thread's writes and syncs.
pub(crate) struct WalRing {
    ring: IoUring,
}

impl WalRing {
    /// A small ring: at most two entries (a write linked with a sync) are ever in flight.
    pub fn new() -> io::Result<WalRing> {
        Ok(WalRing {
            ring: IoUring::new(8)?,
        })
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
        // Nothing of ours is ever left in the queue between calls (each call waits for all
        // of its completions), so a full queue can only mean a broken ring; if it happens,
        // nothing was queued and returning is safe.
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
            for cqe in self.ring.completion() {
                match cqe.user_data() {
                    WRITE_TAG => results[0] = Some(cqe.result()),
                    SYNC_TAG => results[1] = Some(cqe.result()),
                    _ => continue,
                }
                pending = pending.saturating_sub(1);
            }
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
