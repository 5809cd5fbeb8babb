//! One shard's io_uring: set-up with feature probing, typed submission helpers, and the
//! ownership of every buffer the kernel may touch until its completion.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring, Probe};
use slab::Slab;

use super::probe::{kernel_at_least, kernel_release, Features};
use super::token::{Kind, Token};
use crate::EngineError;

/// A completion copied out of the completion queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cqe {
    pub user_data: u64,
    pub result: i32,
    pub flags: u32,
}

impl Cqe {
    pub fn more(&self) -> bool {
        cqueue::more(self.flags)
    }

    pub fn buffer_id(&self) -> Option<u16> {
        cqueue::buffer_select(self.flags)
    }
}

/// Bytes queued for sending: owned, or shared (a stored value sent without a copy).
#[derive(Debug)]
pub enum Chunk {
    /// Bytes the connection's encoder wrote.
    Owned(Vec<u8>),
    /// A refcounted value.
    Shared(bytes::Bytes),
}

impl Chunk {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Shared(b) => b,
        }
    }
}

/// Most iovecs one vectored send takes (Linux's IOV_MAX); the rest follows as a
/// continuation, like a partial send.
const IOV_MAX: usize = 1024;

/// Most bytes one send operation asks for. A send SQE's length field is a `u32`, so a
/// longer buffer would be truncated (4 GiB exactly would become 0: a send that never
/// progresses); and the kernel refuses a plain send longer than `i32::MAX` with `EINVAL`
/// (a completion's result is an `i32`), so that is the limit, for vectored sends too. The
/// rest follows as a continuation, like a partial send. (The kernel may take less still,
/// e.g. MAX_RW_COUNT, and reports what it took, which the continuation handles alike.)
const MAX_SEND: usize = i32::MAX as usize;

/// Most bytes one zero-copy operation asks for: its pages stay pinned (and, without
/// CAP_IPC_LOCK, counted against RLIMIT_MEMLOCK, 8 MiB by default) until its
/// notification, so a huge value goes as several operations rather than one.
const MAX_ZC_SEND: usize = 1 << 20;

/// How often [`Ring::push`] tries to make room in a full submission queue (by submitting)
/// before it holds the entry back for the next turn instead.
const PUSH_ATTEMPTS: usize = 3;

/// How long [`Ring::submit_and_wait`] sleeps at most while entries are held back, so they
/// are retried soon even if nothing completes.
const BACKLOG_RETRY: Duration = Duration::from_millis(1);

/// A send the ring owns until the kernel is done with its bytes: the chunks, and for
/// vectored sends the iovec array and msghdr that point into them.
struct SendSlot {
    fd: RawFd,
    owner: Token,
    chunks: Vec<Chunk>,
    total: usize,
    sent: usize,
    iov: Vec<libc::iovec>,
    msg: Box<libc::msghdr>,
    /// Sent with `IORING_OP_SEND_ZC`/`SENDMSG_ZC`: the kernel may read the chunks until
    /// each operation's notification completion, after the send's own result.
    zc: bool,
    /// Notifications still to come: +1 for each zero-copy operation whose result says one
    /// follows, -1 for each notification (signed, so the order they come in cannot
    /// matter).
    notifs: i32,
    /// The owner has had its result; the slot only waits for `notifs` to reach 0.
    done: bool,
}

/// Zero-copy sends ([`Ring::set_send_zc_min`]) and what the kernel did with them.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ZcStats {
    /// Zero-copy send operations submitted.
    pub sends: u64,
    /// Notifications saying the kernel copied the data anyway (e.g. over loopback).
    pub copied: u64,
    /// Zero-copy operations the kernel refused (sent again plainly).
    pub refused: u64,
}

/// What a send completion means for its owner.
pub(crate) enum SendDone {
    /// Part was sent; the rest was resubmitted and the owner must keep waiting.
    Continuing,
    /// Everything was sent; the (now empty) buffer comes back for reuse.
    Complete { owner: Token, buf: Vec<u8> },
    /// The socket failed; `errno` says why.
    Failed {
        owner: Token,
        buf: Vec<u8>,
        errno: i32,
    },
    /// The owner's sends should no longer go zero-copy: a notification said the kernel
    /// copied the data anyway (the route gains nothing from zero-copy, e.g. loopback), or
    /// the kernel refused a zero-copy operation (then the send goes on plainly and the
    /// owner keeps waiting for it).
    NoZeroCopy { owner: Token },
}

/// A receive straight into a caller's buffer, which the ring owns until the completion
/// (the kernel writes into its spare capacity meanwhile).
struct RecvSlot {
    owner: Token,
    buf: bytes::BytesMut,
}

/// A connect the ring owns until completion (the kernel reads the address).
struct ConnectSlot {
    owner: Token,
    addr: Box<socket2::SockAddr>,
}

/// A timer the ring owns until its completion.
struct TimerSlot {
    /// Boxed so it never moves: the kernel reads it when the entry is submitted (at the next
    /// `io_uring_enter`, later if the entry was held back), and inserting into the slab
    /// meanwhile may reallocate the slab's storage.
    spec: Box<types::Timespec>,
    cookie: u64,
}

pub(crate) struct Ring {
    ring: IoUring,
    features: Features,
    sends: Slab<SendSlot>,
    timers: Slab<TimerSlot>,
    connects: Slab<ConnectSlot>,
    recvs: Slab<RecvSlot>,
    /// Entries that found the submission queue full while the kernel would not take the
    /// queued ones; they go first at the next [`Ring::submit_and_wait`], in order.
    backlog: VecDeque<squeue::Entry>,
    skip_success: squeue::Flags,
    /// Sends carrying at least this many shared bytes go zero-copy (0: never).
    zc_min: usize,
    zc: ZcStats,
    /// [`REPORT_USAGE`] where the kernel takes it, else 0.
    zc_report: u16,
}

impl Ring {
    /// Create a ring with the best set-up flags this kernel accepts.
    pub fn new(entries: u32) -> Result<Ring, EngineError> {
        let mut features = Features {
            kernel: kernel_release(),
            ..Features::default()
        };
        let attempts: [(bool, bool, bool); 3] = [
            (true, true, true),
            (false, false, true),
            (false, false, false),
        ];
        let mut last_err = None;
        let mut ring = None;
        for (single, defer, coop) in attempts {
            let mut b = IoUring::<squeue::Entry, cqueue::Entry>::builder();
            b.setup_cqsize(entries * 4);
            if single {
                b.setup_single_issuer();
            }
            if defer {
                b.setup_defer_taskrun();
            }
            if coop {
                b.setup_coop_taskrun();
            }
            match b.build(entries) {
                Ok(r) => {
                    features.single_issuer = single;
                    features.defer_taskrun = defer;
                    features.coop_taskrun = coop;
                    ring = Some(r);
                    break;
                }
                Err(e) => {
                    let unavailable = matches!(
                        e.raw_os_error(),
                        Some(libc::ENOSYS) | Some(libc::EPERM) | Some(libc::EACCES)
                    );
                    if unavailable {
                        return Err(EngineError::IoUringUnavailable(e));
                    }
                    last_err = Some(e);
                }
            }
        }
        let ring = match ring {
            Some(r) => r,
            None => {
                let e = last_err.unwrap_or_else(|| io::Error::other("no set-up accepted"));
                return Err(EngineError::IoUringUnavailable(e));
            }
        };
        Ring::with_ring(ring, features)
    }

    /// Wrap a ring that was just set up: probe the opcodes the engine needs.
    fn with_ring(ring: IoUring, mut features: Features) -> Result<Ring, EngineError> {
        let mut probe = Probe::new();
        ring.submitter()
            .register_probe(&mut probe)
            .map_err(|e| EngineError::Setup("probing io_uring opcodes", e))?;
        features.msg_ring = probe.is_supported(opcode::MsgRingData::CODE);
        // Both forms: one chunk goes as SEND_ZC (6.0), several as SENDMSG_ZC (6.1).
        features.send_zc =
            probe.is_supported(opcode::SendZc::CODE) && probe.is_supported(opcode::SendMsgZc::CODE);
        features.multishot_accept = true;
        features.multishot_recv = true;
        if !features.msg_ring {
            return Err(EngineError::MissingFeature(
                "IORING_OP_MSG_RING (Linux 5.18+)",
            ));
        }
        let skip_success = if ring.params().is_feature_skip_cqe_on_success() {
            squeue::Flags::SKIP_SUCCESS
        } else {
            squeue::Flags::empty()
        };
        Ok(Ring {
            ring,
            sends: Slab::new(),
            timers: Slab::new(),
            connects: Slab::new(),
            recvs: Slab::new(),
            backlog: VecDeque::new(),
            skip_success,
            zc_min: 0,
            zc: ZcStats::default(),
            zc_report: if kernel_at_least(&features.kernel, 6, 2) {
                REPORT_USAGE
            } else {
                0
            },
            features,
        })
    }

    /// Send zero-copy when a send carries at least `min` bytes of shared chunks (0: never;
    /// ignored where the kernel lacks SEND_ZC/SENDMSG_ZC).
    pub fn set_send_zc_min(&mut self, min: usize) {
        self.zc_min = if self.features.send_zc { min } else { 0 };
    }

    pub fn zc_stats(&self) -> ZcStats {
        self.zc
    }

    pub fn features(&self) -> &Features {
        &self.features
    }

    pub fn features_mut(&mut self) -> &mut Features {
        &mut self.features
    }

    pub fn fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }

    pub fn submitter(&self) -> io_uring::Submitter<'_> {
        self.ring.submitter()
    }

    /// Queue an entry, submitting first when the submission queue is full.
    ///
    /// Never blocks or spins: if the queue stays full because submitting fails (the kernel
    /// can refuse new work, e.g. `EBUSY` while completions are backed up, and reaping them
    /// is the caller's next loop turn, not something to wait for here), the entry is held
    /// back after a few attempts and submitted by the next [`Ring::submit_and_wait`].
    /// Returning an error instead would push the problem to every caller for a condition
    /// that the next turn clears on its own; entries are kept in order, so an entry never
    /// overtakes an earlier one (e.g. a cancel the operation it cancels).
    ///
    /// SAFETY contract (for the callers below): every pointer inside `entry` stays valid
    /// until the operation completes (which covers the time it may wait in the backlog).
    /// The helpers guarantee this by owning the memory in boxes or heap blocks that do not
    /// move (`sends`, `timers`, `connects`) or by passing no memory at all.
    fn push(&mut self, entry: squeue::Entry) {
        if self.backlog.is_empty() {
            for _ in 0..PUSH_ATTEMPTS {
                // SAFETY: see the contract above; each caller documents how it holds it.
                if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                    return;
                }
                // The queue is full: hand what we have to the kernel and try again.
                if let Err(e) = self.ring.submit() {
                    if e.raw_os_error() != Some(libc::EINTR) {
                        tracing::warn!(
                            "io_uring submit with a full queue failed ({e}); holding \
                             entries back until the next loop turn"
                        );
                        break;
                    }
                }
            }
        }
        self.backlog.push_back(entry);
    }

    /// Move held-back entries into the submission queue, submitting to make room, until
    /// none is left or the kernel takes no more.
    fn flush_backlog(&mut self) {
        while let Some(entry) = self.backlog.front() {
            // SAFETY: held-back entries obey `push`'s contract: the memory they point to is
            // owned here until their completion, which cannot come before submission.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                self.backlog.pop_front();
                continue;
            }
            match self.ring.submit() {
                Ok(n) if n > 0 => {}
                // Nothing taken (or an error): try again next turn.
                _ => return,
            }
        }
    }

    /// Multishot (or, after a kernel said no, one-shot) accept on `listener`.
    pub fn accept(&mut self, listener: RawFd, token: Token) {
        let e = if self.features.multishot_accept {
            opcode::AcceptMulti::new(types::Fd(listener))
                .flags(libc::SOCK_CLOEXEC)
                .build()
        } else {
            // No address out-pointer: the peer address is read with getpeername instead.
            opcode::Accept::new(
                types::Fd(listener),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
            .flags(libc::SOCK_CLOEXEC)
            .build()
        };
        self.push(e.user_data(token.encode()));
    }

    /// Receive into the provided-buffer ring `group` (no memory is passed here: the kernel
    /// picks a buffer that the ring owns).
    pub fn recv(&mut self, fd: RawFd, group: u16, token: Token) {
        let e = if self.features.multishot_recv {
            opcode::RecvMulti::new(types::Fd(fd), group).build()
        } else {
            opcode::Recv::new(types::Fd(fd), std::ptr::null_mut(), 0)
                .buf_group(group)
                .build()
                .flags(squeue::Flags::BUFFER_SELECT)
        };
        self.push(e.user_data(token.encode()));
    }

    /// Receive at most `max` bytes from `fd` straight into the spare capacity of `buf`
    /// (after its `len()` bytes), one-shot and without a provided buffer. The ring owns
    /// `buf` until [`Ring::complete_recv_into`] hands it back with the received bytes
    /// appended; returns the slot that names the operation (its completion carries
    /// `Kind::RecvInto` with the slot as index, e.g. for [`Ring::cancel_recv_into`]).
    /// `buf` must have spare capacity; `max` is clamped to it.
    pub fn recv_into(&mut self, fd: RawFd, owner: Token, buf: bytes::BytesMut, max: usize) -> u32 {
        let slot = self.recvs.insert(RecvSlot { owner, buf });
        let b = &mut self.recvs[slot].buf;
        let spare = b.spare_capacity_mut();
        // At most what a completion can report (an i32) and what the SQE can carry.
        let len = max.min(spare.len()).min(i32::MAX as usize) as u32;
        let ptr = spare.as_mut_ptr().cast::<u8>();
        // The kernel writes up to `len` bytes at `ptr`, inside `buf`'s allocation (its
        // spare capacity). `buf` stays in the slot, untouched, until the completion; the
        // slot only holds the `BytesMut` handle, whose heap block does not move when the
        // handle or the slab does.
        let e = opcode::Recv::new(types::Fd(fd), ptr, len)
            .build()
            .user_data(Self::recv_into_token(owner, slot as u32).encode());
        self.push(e);
        slot as u32
    }

    /// Account the completion of [`Ring::recv_into`] slot `slot`: the owner and its buffer
    /// back, with the `result` bytes the kernel wrote appended when `result > 0`.
    pub fn complete_recv_into(
        &mut self,
        slot: u32,
        result: i32,
    ) -> Option<(Token, bytes::BytesMut)> {
        let RecvSlot { owner, mut buf } = self.recvs.try_remove(slot as usize)?;
        if result > 0 {
            let n = (result as usize).min(buf.capacity() - buf.len());
            // SAFETY: the operation completed, so the kernel no longer touches `buf`; it
            // reported writing `result` bytes at the start of the spare capacity (it never
            // writes more than the length it was given, which was at most the spare
            // capacity; `min` only guards that bound), so those bytes are initialized.
            unsafe { buf.set_len(buf.len() + n) };
        }
        Some((owner, buf))
    }

    /// The user_data of a [`Ring::recv_into`] operation: its slot, and its owner's
    /// generation so that a cancel can never hit a later operation reusing the slot.
    fn recv_into_token(owner: Token, slot: u32) -> Token {
        Token::new(Kind::RecvInto, owner.generation, slot)
    }

    /// Cancel the [`Ring::recv_into`] operation in `slot` made for `owner` (its completion
    /// then reports `-ECANCELED`, or the bytes it received before the cancel).
    pub fn cancel_recv_into(&mut self, owner: Token, slot: u32) {
        self.cancel(Self::recv_into_token(owner, slot));
    }

    /// Send all of `chunks` on `fd`, in order, in one operation (a plain send for one
    /// chunk, a vectored one otherwise); the ring owns them until [`Ring::complete_send`].
    ///
    /// With enough shared bytes ([`Ring::set_send_zc_min`]) it goes zero-copy: the owner
    /// hears of the result as usual, and the ring keeps the chunks until the kernel's
    /// notification says it no longer reads them. Shared chunks are refcounted, so the
    /// owner may drop or replace the value meanwhile; owned bytes are not reused.
    /// `zc_ok: false` keeps this send out of zero-copy (the owner's route copies anyway).
    pub fn send(&mut self, fd: RawFd, owner: Token, chunks: Vec<Chunk>, zc_ok: bool) {
        let total = chunks.iter().map(|c| c.as_slice().len()).sum();
        let shared: usize = chunks
            .iter()
            .filter(|c| matches!(c, Chunk::Shared(_)))
            .map(|c| c.as_slice().len())
            .sum();
        let zc = zc_ok && self.zc_min > 0 && shared >= self.zc_min;
        // SAFETY: msghdr is plain old data; all zeroes is a valid empty header (null
        // pointers, zero lengths), filled in by `push_send` before use.
        let msg: libc::msghdr = unsafe { std::mem::zeroed() };
        let slot = self.sends.insert(SendSlot {
            fd,
            owner,
            chunks,
            total,
            sent: 0,
            iov: Vec::new(),
            msg: Box::new(msg),
            zc,
            notifs: 0,
            done: false,
        });
        self.push_send(slot);
    }

    fn push_send(&mut self, slot: usize) {
        let s = &mut self.sends[slot];
        let token = Token::new(Kind::Send, 0, slot as u32).encode();
        // The slot's chunks, iovecs and boxed msghdr are neither touched nor dropped until
        // this send completes, so every pointer below stays valid even if the slab itself
        // reallocates (their heap blocks do not move).
        // Zero-copy sends ask the notification to say whether the kernel copied anyway.
        let report = self.zc_report;
        // At most MAX_SEND bytes (MAX_ZC_SEND zero-copy); the rest is continued like a
        // partial send.
        let max = if s.zc { MAX_ZC_SEND } else { MAX_SEND };
        let e = if s.chunks.len() == 1 {
            let rest = &s.chunks[0].as_slice()[s.sent..];
            let len = rest.len().min(max) as u32;
            if s.zc {
                opcode::SendZc::new(types::Fd(s.fd), rest.as_ptr(), len)
                    .flags(libc::MSG_NOSIGNAL)
                    .zc_flags(report)
                    .build()
            } else {
                opcode::Send::new(types::Fd(s.fd), rest.as_ptr(), len)
                    .flags(libc::MSG_NOSIGNAL)
                    .build()
            }
        } else {
            fill_iov(&mut s.iov, &s.chunks, s.sent, max);
            s.msg.msg_iov = s.iov.as_mut_ptr();
            s.msg.msg_iovlen = s.iov.len() as _;
            let msg = &*s.msg as *const libc::msghdr;
            if s.zc {
                opcode::SendMsgZc::new(types::Fd(s.fd), msg)
                    .flags(libc::MSG_NOSIGNAL as u32)
                    .ioprio(report)
                    .build()
            } else {
                opcode::SendMsg::new(types::Fd(s.fd), msg)
                    .flags(libc::MSG_NOSIGNAL as u32)
                    .build()
            }
        };
        if s.zc {
            self.zc.sends += 1;
        }
        self.push(e.user_data(token));
    }

    /// The owned buffer of a finished send, emptied, for reuse (or a new empty one).
    fn reusable(chunks: Vec<Chunk>) -> Vec<u8> {
        match chunks.into_iter().next() {
            Some(Chunk::Owned(mut v)) => {
                v.clear();
                v
            }
            _ => Vec::new(),
        }
    }

    /// Account a send completion for slot `slot` (`flags` tell a zero-copy send's
    /// notification from its result).
    pub fn complete_send(&mut self, slot: u32, result: i32, flags: u32) -> SendDone {
        let slot = slot as usize;
        let Some(s) = self.sends.get_mut(slot) else {
            return SendDone::Continuing;
        };
        if cqueue::notif(flags) {
            // The kernel no longer reads this operation's bytes.
            s.notifs -= 1;
            let owner = s.owner;
            if s.done && s.notifs == 0 {
                self.sends.remove(slot);
            }
            if result as u32 & ZC_COPIED != 0 {
                self.zc.copied += 1;
                return SendDone::NoZeroCopy { owner };
            }
            return SendDone::Continuing;
        }
        if cqueue::more(flags) {
            // A zero-copy operation: its notification follows (even after an error).
            s.notifs += 1;
        }
        // Refusals of zero-copy itself: no support for this socket (EOPNOTSUPP, EINVAL),
        // or pinning the pages would pass RLIMIT_MEMLOCK (ENOMEM, for a process without
        // CAP_IPC_LOCK) or the socket's option memory (ENOBUFS). The data still goes.
        let refused =
            [libc::EOPNOTSUPP, libc::EINVAL, libc::ENOMEM, libc::ENOBUFS].contains(&-result);
        if s.zc && refused {
            s.zc = false;
            self.zc.refused += 1;
            if self.zc.refused == 1 {
                let e = io::Error::from_raw_os_error(-result);
                tracing::warn!(
                    "zero-copy send refused ({e}); sending that connection's output plainly"
                );
            }
            let owner = s.owner;
            self.push_send(slot);
            return SendDone::NoZeroCopy { owner };
        }
        if result == -libc::EINTR || result == -libc::EAGAIN {
            self.push_send(slot);
            return SendDone::Continuing;
        }
        let errno = if result < 0 {
            Some(-result)
        } else {
            s.sent += result as usize;
            if s.sent < s.total {
                self.push_send(slot);
                return SendDone::Continuing;
            }
            None
        };
        let owner = s.owner;
        let buf = if s.notifs > 0 {
            // The kernel may still read the chunks: they stay here until the last
            // notification, and the owner gets a fresh buffer instead of this one.
            s.done = true;
            Vec::new()
        } else {
            Self::reusable(self.sends.remove(slot).chunks)
        };
        match errno {
            Some(errno) => SendDone::Failed { owner, buf, errno },
            None => SendDone::Complete { owner, buf },
        }
    }

    /// Connect `fd` to `addr`; the ring keeps the address until [`Ring::complete_connect`].
    pub fn connect(&mut self, fd: RawFd, addr: socket2::SockAddr, owner: Token) {
        let slot = self.connects.insert(ConnectSlot {
            owner,
            addr: Box::new(addr),
        });
        let a = &self.connects[slot].addr;
        // The boxed address stays put until the completion, even if the slab reallocates.
        let e = opcode::Connect::new(types::Fd(fd), a.as_ptr().cast(), a.len())
            .build()
            .user_data(Token::new(Kind::Connect, 0, slot as u32).encode());
        self.push(e);
    }

    /// Release a connect slot after its completion; returns the owner it was made for.
    pub fn complete_connect(&mut self, slot: u32) -> Option<Token> {
        self.connects.try_remove(slot as usize).map(|c| c.owner)
    }

    /// Cancel every operation carrying `target`'s user_data (e.g. a multishot recv).
    pub fn cancel(&mut self, target: Token) {
        let e = opcode::AsyncCancel::new(target.encode())
            .build()
            .user_data(Token::simple(Kind::Ignore).encode())
            .flags(self.skip_success);
        self.push(e);
    }

    /// Close `fd` through the ring (no syscall of its own).
    pub fn close(&mut self, fd: OwnedFd) {
        let e = opcode::Close::new(types::Fd(fd.into_raw_fd()))
            .build()
            .user_data(Token::simple(Kind::Ignore).encode())
            .flags(self.skip_success);
        self.push(e);
    }

    /// Wake shard `target` (whose ring is `target_ring`): post a `Kind::Wake` completion
    /// (generation 0) into its ring. Success is silent; if the kernel could not post it, a
    /// completion comes back to *this* ring as `Kind::Wake` with generation
    /// [`WAKE_FAILED`] and `target` as index (see [`failed_wake`]), so the caller can try
    /// again instead of leaving the target asleep.
    pub fn wake(&mut self, target_ring: RawFd, target: usize) {
        let wake = Token::simple(Kind::Wake);
        let reply = Token::new(Kind::Wake, WAKE_FAILED, target as u32);
        let e = opcode::MsgRingData::new(types::Fd(target_ring), 0, wake.encode(), None)
            .build()
            .user_data(reply.encode())
            .flags(self.skip_success);
        self.push(e);
    }

    /// Arm a one-shot timer; its completion carries `kind` and `generation` with the timer
    /// slot as index. The ring owns the timespec (and keeps `cookie`) until
    /// [`Ring::complete_timer`].
    pub fn timer(&mut self, after: Duration, kind: Kind, generation: u32, cookie: u64) -> u32 {
        let spec = Box::new(
            types::Timespec::new()
                .sec(after.as_secs())
                .nsec(after.subsec_nanos()),
        );
        let slot = self.timers.insert(TimerSlot { spec, cookie });
        // The kernel reads the timespec when the entry is submitted, which is later than
        // this (the next io_uring_enter, or a later one if the entry is held back): it is
        // boxed, so it stays put until the completion even if the slab reallocates.
        let spec_ptr: *const types::Timespec = &*self.timers[slot].spec;
        let e = opcode::Timeout::new(spec_ptr)
            .build()
            .user_data(Token::new(kind, generation, slot as u32).encode());
        self.push(e);
        slot as u32
    }

    /// Release a timer slot after its completion; returns the cookie it was armed with.
    pub fn complete_timer(&mut self, slot: u32) -> Option<u64> {
        self.timers.try_remove(slot as usize).map(|t| t.cookie)
    }

    /// Remove a pending timer (its completion will then report `-ECANCELED`).
    pub fn cancel_timer(&mut self, kind: Kind, generation: u32, slot: u32) {
        let target = Token::new(kind, generation, slot).encode();
        let e = opcode::TimeoutRemove::new(target)
            .build()
            .user_data(Token::simple(Kind::Ignore).encode())
            .flags(self.skip_success);
        self.push(e);
    }

    /// Submit queued entries (held-back ones first) and wait for at least one completion
    /// or `timeout`. While entries are still held back, the wait is kept short so they are
    /// retried soon.
    pub fn submit_and_wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.flush_backlog();
        let timeout = if self.backlog.is_empty() {
            timeout
        } else {
            Some(timeout.map_or(BACKLOG_RETRY, |t| t.min(BACKLOG_RETRY)))
        };
        let res = match timeout {
            None => self.ring.submit_and_wait(1),
            Some(t) => {
                let ts = types::Timespec::new()
                    .sec(t.as_secs())
                    .nsec(t.subsec_nanos());
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
        };
        match res {
            Ok(_) => Ok(()),
            Err(e) => match e.raw_os_error() {
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN) => {
                    Ok(())
                }
                _ => Err(e),
            },
        }
    }

    /// Copy every available completion into `out`.
    pub fn drain(&mut self, out: &mut Vec<Cqe>) {
        out.extend(self.ring.completion().map(|c| Cqe {
            user_data: c.user_data(),
            result: c.result(),
            flags: c.flags(),
        }));
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // Closing the ring fd does not wait for the kernel to finish cancelled sends, so
        // buffers still owned by in-flight sends are leaked rather than freed under it.
        for slot in self.sends.drain() {
            std::mem::forget(slot.chunks);
            std::mem::forget(slot.iov);
            std::mem::forget(slot.msg);
        }
        for slot in self.connects.drain() {
            std::mem::forget(slot.addr);
        }
        // Receives still in flight may write into their buffers: leak those too.
        for slot in self.recvs.drain() {
            std::mem::forget(slot.buf);
        }
    }
}

/// The generation that marks a `Kind::Wake` completion as the outcome of a wake this ring
/// posted (see [`Ring::wake`]); wakes received from others carry generation 0.
const WAKE_FAILED: u32 = 1;

/// If this completion reports that a wake we posted with [`Ring::wake`] failed, the shard
/// it was meant for.
pub(crate) fn failed_wake(token: Token, result: i32) -> Option<usize> {
    (token.kind == Kind::Wake && token.generation == WAKE_FAILED && result < 0)
        .then_some(token.index as usize)
}

/// `IORING_NOTIF_USAGE_ZC_COPIED`: a zero-copy notification's result bit saying the kernel
/// copied the data after all (asked for with [`REPORT_USAGE`]).
const ZC_COPIED: u32 = 1 << 31;

/// `IORING_SEND_ZC_REPORT_USAGE` (Linux 6.2; older kernels refuse it with `EINVAL`, and
/// the opcode probe cannot tell, so it is used only on 6.2 and later).
const REPORT_USAGE: u16 = 1 << 3;

/// Fill `iov` with the unsent part of `chunks` (skipping the first `sent` bytes): at most
/// IOV_MAX iovecs and `max` bytes, the last one shortened if need be. The rest follows as
/// a continuation.
fn fill_iov(iov: &mut Vec<libc::iovec>, chunks: &[Chunk], sent: usize, max: usize) {
    iov.clear();
    let mut skip = sent;
    let mut room = max;
    for c in chunks {
        let b = c.as_slice();
        if skip >= b.len() {
            skip -= b.len();
            continue;
        }
        let part = &b[skip..];
        skip = 0;
        let len = part.len().min(room);
        iov.push(libc::iovec {
            iov_base: part.as_ptr() as *mut libc::c_void,
            iov_len: len,
        });
        room -= len;
        if room == 0 || iov.len() == IOV_MAX {
            break;
        }
    }
}

/// Post a wake-up completion carrying `token` into each ring in `targets`, from a thread
/// that has no ring of its own (shutdown requests, signal handling).
/// A small persistent ring for threads that are not shards (e.g. a log writer) to wake
/// shard rings with MSG_RING, without making a ring per wake.
pub(crate) struct WakeRing {
    ring: IoUring,
}

impl WakeRing {
    pub(crate) fn new() -> io::Result<Self> {
        Ok(WakeRing {
            ring: IoUring::new(4)?,
        })
    }

    /// Post one wake-up completion carrying `token` to the ring `target` and wait until the
    /// kernel delivered it.
    pub(crate) fn wake(&mut self, target: RawFd, token: Token) -> io::Result<()> {
        let e = opcode::MsgRingData::new(types::Fd(target), 0, token.encode(), None).build();
        // SAFETY: a message-ring entry carries no pointers into our memory.
        if unsafe { self.ring.submission().push(&e) }.is_err() {
            return Err(io::Error::other("wake ring full"));
        }
        self.ring.submit_and_wait(1)?;
        let mut result = 0;
        for cqe in self.ring.completion() {
            result = cqe.result();
        }
        if result < 0 {
            return Err(io::Error::from_raw_os_error(-result));
        }
        Ok(())
    }
}

pub(crate) fn wake_rings(targets: &[RawFd], token: Token) -> io::Result<()> {
    let mut ring = IoUring::new((targets.len() as u32).next_power_of_two().max(2))?;
    for &fd in targets {
        let e = opcode::MsgRingData::new(types::Fd(fd), 0, token.encode(), None).build();
        // SAFETY: a message-ring entry carries no pointers into our memory.
        if unsafe { ring.submission().push(&e) }.is_err() {
            ring.submit()?;
            // SAFETY: as above.
            let _ = unsafe { ring.submission().push(&e) };
        }
    }
    ring.submit_and_wait(targets.len())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::mpsc;
    use std::time::Instant;

    /// Submit and collect completions until `done` says so or `limit` passes.
    fn run_until(ring: &mut Ring, limit: Duration, mut done: impl FnMut(&mut Ring, Cqe) -> bool) {
        let deadline = Instant::now() + limit;
        let mut cqes = Vec::new();
        loop {
            assert!(Instant::now() < deadline, "timed out after {limit:?}");
            ring.submit_and_wait(Some(Duration::from_millis(100)))
                .expect("io_uring_enter");
            cqes.clear();
            ring.drain(&mut cqes);
            for &c in &cqes {
                if done(ring, c) {
                    return;
                }
            }
        }
    }

    #[test]
    fn timer_spec_survives_slab_growth_before_submission() {
        for _ in 0..20 {
            let mut ring = Ring::new(64).expect("ring");
            let first = ring.timer(Duration::from_millis(1), Kind::Timer, 0, 7);
            // An allocation behind the timer slab, so the slab cannot grow in place...
            let fence = vec![0u8; 128];
            // ...then more timers before anything is submitted: the slab moves while the
            // first entry still waits in the submission queue...
            for i in 0..4 {
                ring.timer(Duration::from_secs(3600), Kind::Timer, 0, i);
            }
            // ...and the block it left is likely handed out again and overwritten (the
            // allocator reuses a freed block of the same size first).
            let junk = vec![0xffu8; 128];
            run_until(&mut ring, Duration::from_secs(5), |ring, c| {
                let Some(t) = Token::decode(c.user_data) else {
                    return false;
                };
                if t.index != first {
                    return false;
                }
                assert_eq!(
                    c.result,
                    -libc::ETIME,
                    "first timer completed with {}",
                    c.result
                );
                assert_eq!(ring.complete_timer(t.index), Some(7));
                true
            });
            drop((fence, junk));
        }
    }

    /// Send `chunks` on a loopback connection; returns how many bytes the peer read.
    fn send_all(chunks: Vec<Chunk>) -> u64 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 20];
            let mut total = 0u64;
            loop {
                match server.read(&mut buf) {
                    Ok(0) => return total,
                    Ok(n) => total += n as u64,
                    Err(e) => panic!("read: {e}"),
                }
            }
        });
        let mut ring = Ring::new(8).expect("ring");
        ring.send(client.as_raw_fd(), Token::simple(Kind::Send), chunks, false);
        run_until(&mut ring, Duration::from_secs(60), |ring, c| {
            let Some(t) = Token::decode(c.user_data) else {
                return false;
            };
            if t.kind != Kind::Send {
                return false;
            }
            match ring.complete_send(t.index, c.result, c.flags) {
                SendDone::Continuing => {
                    assert!(c.result != 0, "a send made no progress");
                    false
                }
                SendDone::Complete { .. } => true,
                SendDone::Failed { errno, .. } => panic!("send failed: errno {errno}"),
                SendDone::NoZeroCopy { .. } => panic!("not a zero-copy send"),
            }
        });
        client.shutdown(Shutdown::Write).expect("shutdown");
        reader.join().expect("reader")
    }

    #[test]
    fn zero_copy_sends_keep_their_bytes_until_the_notification() {
        let mut ring = Ring::new(8).expect("ring");
        ring.set_send_zc_min(64 * 1024);
        if !ring.features().send_zc {
            eprintln!("skipped: this kernel has no SEND_ZC/SENDMSG_ZC");
            return;
        }
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            server.read_to_end(&mut got).expect("read");
            got
        });
        // A value larger than the socket buffers (so the send is continued, each part its
        // own zero-copy operation and notification), behind an owned header (vectored:
        // SENDMSG_ZC), then one alone (SEND_ZC). The caller drops its references at once,
        // as a server does when the key is overwritten or deleted meanwhile.
        let pattern = |seed: u8| -> Vec<u8> {
            (0..8usize << 20)
                .map(|i| (i as u8).wrapping_mul(31) ^ seed)
                .collect()
        };
        let (first, second) = (pattern(1), pattern(2));
        let mut expected = b"$header\r\n".to_vec();
        expected.extend_from_slice(&first);
        expected.extend_from_slice(&second);
        let chunks = vec![
            Chunk::Owned(b"$header\r\n".to_vec()),
            Chunk::Shared(bytes::Bytes::from(first)),
        ];
        let fd = client.as_raw_fd();
        let first_owner = Token::new(Kind::Send, 1, 0);
        let second_owner = Token::new(Kind::Send, 2, 0);
        let slot_of = |ring: &Ring, owner: Token| {
            ring.sends
                .iter()
                .find(|(_, s)| s.owner == owner)
                .map(|(i, _)| i)
        };
        ring.send(fd, first_owner, chunks, true);
        let first_slot = slot_of(&ring, first_owner);
        let mut second_slot = None;
        let mut second = Some(bytes::Bytes::from(second));
        let mut completed = 0;
        let mut copied = 0;
        let mut notifs = 0;
        run_until(&mut ring, Duration::from_secs(60), |ring, c| {
            let Some(t) = Token::decode(c.user_data) else {
                return false;
            };
            if cqueue::notif(c.flags) {
                // The chunks must still be held when the kernel lets go of them.
                let held = ring.sends.contains(t.index as usize);
                assert!(held, "a notification came for a send already released");
                notifs += 1;
            }
            match ring.complete_send(t.index, c.result, c.flags) {
                SendDone::Continuing => {}
                SendDone::NoZeroCopy { .. } => copied += 1,
                SendDone::Complete { buf, .. } => {
                    // The kernel may still read the owned header: not handed back.
                    assert_eq!(buf.capacity(), 0, "a zero-copy send's buffer was reused");
                    completed += 1;
                    if let Some(b) = second.take() {
                        let chunks = vec![Chunk::Shared(b)];
                        ring.send(fd, second_owner, chunks, true);
                        second_slot = slot_of(ring, second_owner);
                    }
                }
                SendDone::Failed { errno, .. } => panic!("send failed: errno {errno}"),
            }
            // Done once both sends completed and every notification came back.
            completed == 2 && ring.sends.is_empty()
        });
        // The first send's slot was still held when the second started (its last
        // notification comes after its result), so the second could not take it.
        assert!(first_slot.is_some() && second_slot.is_some());
        assert_ne!(
            first_slot, second_slot,
            "a slot was reused before its notification"
        );
        let zc = ring.zc_stats();
        assert!(
            zc.sends > 2,
            "8 MB values take several operations: {}",
            zc.sends
        );
        assert_eq!(notifs, zc.sends, "one notification per zero-copy operation");
        assert_eq!(zc.copied, copied);
        if ring.zc_report != 0 {
            // Loopback delivers by copying: the kernel says so.
            assert!(
                copied >= 1,
                "loopback zero-copy sends are reported as copied"
            );
        }
        client.shutdown(Shutdown::Write).expect("shutdown");
        let got = reader.join().expect("reader");
        assert!(got == expected, "bytes differ (got {} bytes)", got.len());
    }

    #[test]
    fn sends_longer_than_one_operation_takes_are_continued() {
        // Zeroed allocations this large are mapped lazily: sending them reads the shared
        // zero page, so the test costs time (GBs through loopback), not memory.
        let big = MAX_SEND + 2;
        assert_eq!(send_all(vec![Chunk::Owned(vec![0u8; big])]), big as u64);
        let vectored = vec![
            Chunk::Owned(vec![0u8; big]),
            Chunk::Shared(bytes::Bytes::from_static(b"end")),
        ];
        assert_eq!(send_all(vectored), big as u64 + 3);
    }

    #[test]
    fn recv_into_appends_in_place_and_survives_slab_growth() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut ring = Ring::new(64).expect("ring");
        let mut pairs = Vec::new();
        let mut expected = Vec::new();
        // Several receives queued before anything is submitted: the slot slab grows (and
        // may move) while the first entries still point into their buffers.
        for i in 0..9u8 {
            let mut client = TcpStream::connect(addr).expect("connect");
            let (server, _) = listener.accept().expect("accept");
            let msg = vec![b'a' + i; 100 + usize::from(i)];
            client.write_all(&msg).expect("write");
            let mut buf = bytes::BytesMut::with_capacity(4096);
            buf.extend_from_slice(b"kept:");
            let owner = Token::new(Kind::RecvInto, 7, u32::from(i));
            let slot = ring.recv_into(server.as_raw_fd(), owner, buf, 1000);
            let mut want = b"kept:".to_vec();
            want.extend_from_slice(&msg);
            expected.push((slot, want));
            pairs.push((client, server));
        }
        let mut done = 0;
        run_until(&mut ring, Duration::from_secs(5), |ring, c| {
            let t = Token::decode(c.user_data).expect("token");
            assert_eq!((t.kind, t.generation), (Kind::RecvInto, 7));
            assert!(c.result > 0, "recv failed: {}", c.result);
            let (owner, buf) = ring.complete_recv_into(t.index, c.result).expect("slot");
            let (_, want) = &expected[owner.index as usize];
            assert_eq!(&buf[..], &want[..], "receive {}", owner.index);
            done += 1;
            done == expected.len()
        });
        assert!(ring.recvs.is_empty());
    }

    #[test]
    fn push_gives_up_when_submission_keeps_failing() {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // A disabled ring refuses every io_uring_enter (EBADFD) until it is enabled.
            let mut b = IoUring::<squeue::Entry, cqueue::Entry>::builder();
            b.setup_r_disabled();
            let io = b.build(4).expect("ring");
            let mut ring = Ring::with_ring(io, Features::default()).expect("ring");
            for i in 0..10 {
                ring.timer(Duration::from_millis(1), Kind::Timer, 0, i);
            }
            let _ = tx.send(());
            ring.submitter().register_enable_rings().expect("enable");
            let mut cookies = Vec::new();
            run_until(&mut ring, Duration::from_secs(5), |ring, c| {
                let t = Token::decode(c.user_data).expect("token");
                assert_eq!(c.result, -libc::ETIME);
                cookies.extend(ring.complete_timer(t.index));
                cookies.len() == 10
            });
            cookies.sort_unstable();
            assert_eq!(cookies, (0..10).collect::<Vec<u64>>());
            let _ = tx.send(());
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("pushing into a full queue that cannot be submitted returns");
        rx.recv_timeout(Duration::from_secs(10))
            .expect("entries held back are submitted once the kernel takes them");
    }

    #[test]
    fn iovecs_stop_at_the_byte_and_count_limits() {
        let chunks: Vec<Chunk> = (0..3u8).map(|i| Chunk::Owned(vec![i; 10])).collect();
        let lens = |sent, max| {
            let mut iov = Vec::new();
            fill_iov(&mut iov, &chunks, sent, max);
            iov.iter().map(|v| v.iov_len).collect::<Vec<_>>()
        };
        assert_eq!(lens(0, MAX_SEND), vec![10, 10, 10]);
        assert_eq!(lens(5, 12), vec![5, 7]);
        assert_eq!(lens(17, 12), vec![3, 9]);
        assert_eq!(lens(25, 12), vec![5]);
        assert_eq!(lens(10, 10), vec![10]);
        let mut iov = Vec::new();
        fill_iov(&mut iov, &chunks, 13, 12);
        assert_eq!(
            iov[0].iov_base as *const u8,
            chunks[1].as_slice()[3..].as_ptr()
        );
        let many: Vec<Chunk> = (0..IOV_MAX + 5).map(|_| Chunk::Owned(vec![0; 1])).collect();
        fill_iov(&mut iov, &many, 0, MAX_SEND);
        assert_eq!(iov.len(), IOV_MAX);
    }

    #[test]
    fn a_failed_wake_comes_back_naming_its_target() {
        let mut ring = Ring::new(8).expect("ring");
        let mut other = Ring::new(8).expect("ring");
        // Not an io_uring: the kernel cannot post into it.
        let not_a_ring = std::net::UdpSocket::bind("127.0.0.1:0").expect("socket");
        ring.wake(other.fd(), 2);
        ring.wake(not_a_ring.as_raw_fd(), 3);
        let mut failed = Vec::new();
        run_until(&mut ring, Duration::from_secs(5), |_, c| {
            let t = Token::decode(c.user_data).expect("token");
            assert_eq!(t.kind, Kind::Wake);
            failed.extend(failed_wake(t, c.result));
            !failed.is_empty()
        });
        assert_eq!(failed, vec![3]);
        // The wake that worked arrived as a plain wake, which is not a failure.
        run_until(&mut other, Duration::from_secs(5), |_, c| {
            let t = Token::decode(c.user_data).expect("token");
            assert_eq!(t, Token::simple(Kind::Wake));
            assert_eq!(failed_wake(t, c.result), None);
            true
        });
    }
}
