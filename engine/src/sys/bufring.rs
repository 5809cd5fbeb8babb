//! A provided-buffer ring: a fixed set of equal buffers the kernel picks from for
//! multishot receives. A buffer is read once after its completion and handed straight
//! back, so the ring stays full unless a shard falls behind (then recv ends with ENOBUFS
//! and is re-armed at the end of the turn).

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

use super::Ring;
use crate::EngineError;

pub(crate) struct BufRing {
    entries: *mut BufRingEntry,
    entries_layout: Layout,
    bufs: *mut u8,
    bufs_layout: Layout,
    count: u16,
    buf_size: usize,
    group: u16,
    /// Ours to advance; a `Cell` so that the shard loop and a busy handler re-entering it
    /// (which share the ring through an `Rc`) can both hand buffers back.
    tail: Cell<u16>,
    /// Set when the kernel may still write into our memory at drop time.
    leak_on_drop: Cell<bool>,
}

impl BufRing {
    /// Allocate `count` buffers of `buf_size` bytes and register them as group `group`.
    /// `count` must be a power of two no larger than 32768.
    pub fn new(
        ring: &Ring,
        group: u16,
        count: u16,
        buf_size: usize,
    ) -> Result<BufRing, EngineError> {
        if !count.is_power_of_two() || count > 32768 || buf_size == 0 {
            return Err(EngineError::Config(format!(
                "buffer ring needs a power-of-two count up to 32768 and a non-zero size (got {count} x {buf_size})"
            )));
        }
        let page = 4096;
        let entries_layout = Layout::from_size_align(usize::from(count) * 16, page)
            .map_err(|e| EngineError::Config(e.to_string()))?;
        let bufs_layout = Layout::from_size_align(usize::from(count) * buf_size, page)
            .map_err(|e| EngineError::Config(e.to_string()))?;
        // SAFETY: both layouts have non-zero size (count >= 1, buf_size >= 1).
        let entries = unsafe { alloc_zeroed(entries_layout) } as *mut BufRingEntry;
        // SAFETY: as above.
        let bufs = unsafe { alloc_zeroed(bufs_layout) };
        if entries.is_null() || bufs.is_null() {
            return Err(EngineError::Config(
                "out of memory allocating the buffer ring".into(),
            ));
        }
        let br = BufRing {
            entries,
            entries_layout,
            bufs,
            bufs_layout,
            count,
            buf_size,
            group,
            tail: Cell::new(0),
            leak_on_drop: Cell::new(false),
        };
        // SAFETY: `entries` is page-aligned, `count` entries long, and stays allocated until
        // drop, which unregisters (or leaks) it first.
        let reg = unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(entries as u64, count, group, 0)
        };
        if let Err(e) = reg {
            // Nothing was registered, so the memory is ours to free.
            drop(br);
            return Err(EngineError::Setup(
                "registering the provided-buffer ring (needs Linux 5.19+)",
                e,
            ));
        }
        // Registered: from now on the kernel may write into the buffers until unregistered.
        br.leak_on_drop.set(true);
        for bid in 0..count {
            br.push(bid);
        }
        br.publish();
        Ok(br)
    }

    pub fn group(&self) -> u16 {
        self.group
    }

    /// The bytes the kernel wrote into buffer `bid` for a completion of `len` bytes.
    pub fn data(&self, bid: u16, len: usize) -> &[u8] {
        assert!(
            bid < self.count && len <= self.buf_size,
            "buffer id or length out of range"
        );
        // SAFETY: `bid` came from a completion, so the kernel has finished writing `len`
        // bytes into it and will not touch it again until we recycle it; the range is
        // inside the allocation (checked above).
        unsafe { std::slice::from_raw_parts(self.bufs.add(usize::from(bid) * self.buf_size), len) }
    }

    /// Give buffer `bid` back to the kernel. Call it once per completion that named
    /// `bid`, after the last use of its [`BufRing::data`] (the kernel may refill it at
    /// once); completions are dispatched exactly once (see `shard/busy.rs`), which is what
    /// makes that hold.
    pub fn recycle(&self, bid: u16) {
        self.push(bid);
        self.publish();
    }

    fn push(&self, bid: u16) {
        let mask = self.count - 1;
        let idx = usize::from(self.tail.get() & mask);
        // SAFETY: idx < count, so the entry is inside the ring; the kernel reads entries
        // only between its head and the published tail, and this one is past the tail.
        let entry = unsafe { &mut *self.entries.add(idx) };
        // SAFETY: bid < count, so the address is inside the buffer allocation.
        let addr = unsafe { self.bufs.add(usize::from(bid) * self.buf_size) };
        entry.set_addr(addr as u64);
        entry.set_len(self.buf_size as u32);
        entry.set_bid(bid);
        self.tail.set(self.tail.get().wrapping_add(1));
    }

    fn publish(&self) {
        // SAFETY: the tail field lives inside the first entry, which is allocated and
        // 2-byte aligned; the kernel only reads it, so an atomic release store is the
        // required publication of the entries written before it.
        unsafe {
            let tail = BufRingEntry::tail(self.entries) as *const AtomicU16;
            (*tail).store(self.tail.get(), Ordering::Release);
        }
    }

    /// Unregister from `ring` when no receive can still be using a buffer (`idle`), so the
    /// memory can be freed; otherwise it is leaked at drop rather than freed under the kernel.
    pub fn release(&self, ring: &Ring, idle: bool) {
        if idle && ring.submitter().unregister_buf_ring(self.group).is_ok() {
            self.leak_on_drop.set(false);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.leak_on_drop.get() {
            return;
        }
        // SAFETY: both blocks were allocated with these layouts and the kernel no longer
        // uses them (unregistered, never registered, or the ring is idle).
        unsafe {
            dealloc(self.entries as *mut u8, self.entries_layout);
            dealloc(self.bufs, self.bufs_layout);
        }
    }
}
