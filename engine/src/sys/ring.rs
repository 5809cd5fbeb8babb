//! One shard's io_uring: set-up with feature probing, typed submission helpers, and the
//! ownership of every buffer the kernel may touch until its completion.

use std::io;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring, Probe};
use slab::Slab;

use super::probe::{kernel_release, Features};
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
}

/// A connect the ring owns until completion (the kernel reads the address).
struct ConnectSlot {
    owner: Token,
    addr: Box<socket2::SockAddr>,
}

struct TimerSlot {
    spec: types::Timespec,
    cookie: u64,
}

pub(crate) struct Ring {
    ring: IoUring,
    features: Features,
    sends: Slab<SendSlot>,
    timers: Slab<TimerSlot>,
    connects: Slab<ConnectSlot>,
    skip_success: squeue::Flags,
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
        let mut probe = Probe::new();
        ring.submitter()
            .register_probe(&mut probe)
            .map_err(|e| EngineError::Setup("probing io_uring opcodes", e))?;
        features.msg_ring = probe.is_supported(opcode::MsgRingData::CODE);
        features.send_zc = probe.is_supported(opcode::SendZc::CODE);
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
            features,
            sends: Slab::new(),
            timers: Slab::new(),
            connects: Slab::new(),
            skip_success,
        })
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
    /// SAFETY contract (for the callers below): every pointer inside `entry` stays valid
    /// until the operation completes. The helpers guarantee this by owning the memory
    /// (`sends`, `timers`) or by passing no memory at all.
    fn push(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: see the contract above; each caller documents how it holds it.
            let pushed = unsafe { self.ring.submission().push(&entry) }.is_ok();
            if pushed {
                return;
            }
            // The queue is full: hand what we have to the kernel and try again.
            if let Err(e) = self.ring.submit() {
                tracing::warn!("io_uring submit while the queue was full failed: {e}");
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

    /// Send all of `chunks` on `fd`, in order, in one operation (a plain send for one
    /// chunk, a vectored one otherwise); the ring owns them until [`Ring::complete_send`].
    pub fn send(&mut self, fd: RawFd, owner: Token, chunks: Vec<Chunk>) {
        let total = chunks.iter().map(|c| c.as_slice().len()).sum();
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
        });
        self.push_send(slot);
    }

    fn push_send(&mut self, slot: usize) {
        let s = &mut self.sends[slot];
        let token = Token::new(Kind::Send, 0, slot as u32).encode();
        // The slot's chunks, iovecs and boxed msghdr are neither touched nor dropped until
        // this send completes, so every pointer below stays valid even if the slab itself
        // reallocates (their heap blocks do not move).
        let e = if s.chunks.len() == 1 {
            let rest = &s.chunks[0].as_slice()[s.sent..];
            opcode::Send::new(types::Fd(s.fd), rest.as_ptr(), rest.len() as u32)
                .flags(libc::MSG_NOSIGNAL)
                .build()
        } else {
            s.iov.clear();
            let mut skip = s.sent;
            for c in &s.chunks {
                let b = c.as_slice();
                if skip >= b.len() {
                    skip -= b.len();
                    continue;
                }
                let part = &b[skip..];
                skip = 0;
                s.iov.push(libc::iovec {
                    iov_base: part.as_ptr() as *mut libc::c_void,
                    iov_len: part.len(),
                });
                if s.iov.len() == IOV_MAX {
                    break;
                }
            }
            s.msg.msg_iov = s.iov.as_mut_ptr();
            s.msg.msg_iovlen = s.iov.len() as _;
            opcode::SendMsg::new(types::Fd(s.fd), &*s.msg as *const libc::msghdr)
                .flags(libc::MSG_NOSIGNAL as u32)
                .build()
        };
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

    /// Account a send completion for slot `slot`.
    pub fn complete_send(&mut self, slot: u32, result: i32) -> SendDone {
        let slot = slot as usize;
        let Some(s) = self.sends.get_mut(slot) else {
            return SendDone::Continuing;
        };
        if result == -libc::EINTR || result == -libc::EAGAIN {
            self.push_send(slot);
            return SendDone::Continuing;
        }
        if result < 0 {
            let s = self.sends.remove(slot);
            return SendDone::Failed {
                owner: s.owner,
                buf: Self::reusable(s.chunks),
                errno: -result,
            };
        }
        s.sent += result as usize;
        if s.sent < s.total {
            self.push_send(slot);
            return SendDone::Continuing;
        }
        let s = self.sends.remove(slot);
        SendDone::Complete {
            owner: s.owner,
            buf: Self::reusable(s.chunks),
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

    /// Post a completion with `token` into another ring (a cross-shard wake-up).
    pub fn msg_ring(&mut self, target_ring: RawFd, token: Token) {
        let e = opcode::MsgRingData::new(types::Fd(target_ring), 0, token.encode(), None)
            .build()
            .user_data(Token::simple(Kind::Ignore).encode())
            .flags(self.skip_success);
        self.push(e);
    }

    /// Arm a one-shot timer; its completion carries `kind` and `generation` with the timer
    /// slot as index. The ring owns the timespec (and keeps `cookie`) until
    /// [`Ring::complete_timer`].
    pub fn timer(&mut self, after: Duration, kind: Kind, generation: u32, cookie: u64) -> u32 {
        let spec = types::Timespec::new()
            .sec(after.as_secs())
            .nsec(after.subsec_nanos());
        let slot = self.timers.insert(TimerSlot { spec, cookie });
        let spec_ptr: *const types::Timespec = &self.timers[slot].spec;
        // The timespec lives in the slab until the completion; the kernel copies it at
        // submission in any case, so slab reallocation cannot invalidate it mid-flight.
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

    /// Submit queued entries and wait for at least one completion or `timeout`.
    pub fn submit_and_wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
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
    }
}

/// Post a wake-up completion carrying `token` into each ring in `targets`, from a thread
/// that has no ring of its own (shutdown requests, signal handling).
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
