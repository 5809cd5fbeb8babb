//! One key/value entry, 64 bytes: small pairs inline, large ones on the heap.

use bytes::Bytes;

use super::expiry::NO_POS;
use super::Object;

/// Bytes of key + value stored inside the entry.
pub(super) const INLINE: usize = 48;

/// A stored value, borrowed from the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueRef<'a> {
    /// Bytes inside the entry (short values).
    Inline(&'a [u8]),
    /// A refcounted value: cloning it is free, so it can be sent without a copy.
    Shared(&'a Bytes),
}

impl<'a> ValueRef<'a> {
    /// The value's bytes.
    pub fn as_slice(&self) -> &'a [u8] {
        match self {
            ValueRef::Inline(b) => b,
            ValueRef::Shared(b) => b,
        }
    }

    /// An owned handle: a refcount increment for shared values, a copy for inline ones.
    pub fn to_bytes(&self) -> Bytes {
        match self {
            ValueRef::Inline(b) => Bytes::copy_from_slice(b),
            ValueRef::Shared(b) => (*b).clone(),
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a key holds, borrowed from the map: bytes, or an object of the owner's type.
#[derive(Debug)]
pub enum Stored<'a, O> {
    /// A byte-string value.
    Bytes(ValueRef<'a>),
    /// An object stored by [`super::TtlMap::insert_object`].
    Object(&'a O),
}

impl<O> Clone for Stored<'_, O> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<O> Copy for Stored<'_, O> {}

impl<'a, O> Stored<'a, O> {
    /// The byte-string value, if that is what the key holds.
    pub fn bytes(self) -> Option<ValueRef<'a>> {
        match self {
            Stored::Bytes(v) => Some(v),
            Stored::Object(_) => None,
        }
    }
}

/// A value taken out of the map.
#[derive(Debug, Clone)]
pub enum Owned<O> {
    /// A byte-string value.
    Bytes(Bytes),
    /// An object.
    Object(Box<O>),
}

/// Values being grown by edits (APPEND, SETRANGE past the end) get spare capacity: doubled
/// up to this size, so the bytes copied per appended byte stay bounded (amortised O(1)), and
/// a quarter more beyond it, so a huge value does not carry up to 100% slack.
const DOUBLING_LIMIT: usize = 64 << 20;

/// The capacity to give a value growing from `len` to `needed` bytes.
fn grown_capacity(len: usize, needed: usize) -> usize {
    let geometric = if len < DOUBLING_LIMIT {
        len.saturating_mul(2)
    } else {
        len.saturating_add(len / 4)
    };
    needed.max(geometric)
}

/// Write `data` into `v` at `at`, zero-filling a gap and extending `v` as needed (within
/// its capacity when the caller reserved enough).
fn write_into(v: &mut Vec<u8>, at: usize, data: &[u8]) {
    if at >= v.len() {
        v.resize(at, 0);
        v.extend_from_slice(data);
    } else {
        let overlap = (v.len() - at).min(data.len());
        v[at..at + overlap].copy_from_slice(&data[..overlap]);
        v.extend_from_slice(&data[overlap..]);
    }
}

// `bucket_pos` (the entry's position in its expiry bucket, see `expiry.rs`) and the low
// byte of the access stamp live in each variant rather than in `Entry` so that they fill
// the variants' padding: the entry stays 64 bytes. The stamp's other 16 bits share the
// first word with the deadline (see `Entry`).
pub(super) enum Payload<O> {
    Inline {
        /// Key length, plus `EDITED` when the value was changed in place.
        klen: u8,
        vlen: u8,
        stamp_lo: u8,
        bucket_pos: u32,
        buf: [u8; INLINE],
    },
    Heap {
        key: Box<[u8]>,
        /// Refcounted, and possibly with spare capacity if it was grown by edits. A handle
        /// given to a reader is never written to: an edit writes in place only while the
        /// map holds the only handle, and copies otherwise.
        value: Bytes,
        bucket_pos: u32,
        stamp_lo: u8,
        edited: bool,
    },
    /// An object stored in the entry itself, with a short key beside it (no heap block
    /// for either): most collections.
    ObjectInline {
        klen: u8,
        stamp_lo: u8,
        bucket_pos: u32,
        kbuf: [u8; OBJ_INLINE_KEY],
        obj: O,
    },
    /// An object of the owner's type (its size is the owner's to report, see [`Object`]).
    Object {
        key: ObjKey,
        obj: Box<O>,
        bucket_pos: u32,
        stamp_lo: u8,
    },
    /// A free arena slot: the next free slot, or `u32::MAX`.
    Free(u32),
}

/// Flag in an inline entry's `klen`: the value was changed in place (APPEND, SETRANGE).
const EDITED: u8 = 0x80;

/// Bits of an entry's first word that hold its deadline; the 16 above hold the high bits
/// of its access stamp.
const DEADLINE_BITS: u32 = 48;

/// Stored in place of a deadline at or beyond 2^48 - 1 ms (the year 10889); the map keeps
/// such deadlines exactly in a side table (see `TtlMap::far`).
pub(super) const FAR: u64 = (1 << DEADLINE_BITS) - 1;

/// Bytes the system allocator (glibc malloc) holds for a request of `n` bytes: 8 bytes of
/// header rounded up to 16, at least 32; from 128 KiB up, whole mmapped pages.
pub fn alloc_size(n: usize) -> usize {
    if n == 0 {
        0
    } else if n >= 128 << 10 {
        n.saturating_add(16 + 4095) & !4095
    } else {
        ((n + 8 + 15) & !15).max(32)
    }
}

/// The block `bytes` allocates the first time a value is shared (a GET or the store
/// itself clones it): its 24-byte refcount header, as malloc rounds it.
const BYTES_SHARED_HEADER: usize = 32;

/// Longest key an object entry keeps inline (no heap block for the key).
const OBJ_KEY_INLINE: usize = 38;

/// Longest key kept beside an object stored in the entry itself.
const OBJ_INLINE_KEY: usize = 22;

/// Largest object the entry stores in place (larger ones are boxed: see
/// [`super::TtlMap::with_objects`]).
pub(super) const OBJ_INLINE_SIZE: usize = 24;

/// An object entry's key: inline when short (most keys), else boxed.
pub(super) enum ObjKey {
    Inline { len: u8, buf: [u8; OBJ_KEY_INLINE] },
    Heap(Box<[u8]>),
}

impl ObjKey {
    fn new(key: &[u8]) -> ObjKey {
        if key.len() <= OBJ_KEY_INLINE {
            let mut buf = [0u8; OBJ_KEY_INLINE];
            buf[..key.len()].copy_from_slice(key);
            ObjKey::Inline {
                len: key.len() as u8,
                buf,
            }
        } else {
            ObjKey::Heap(key.into())
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            ObjKey::Inline { len, buf } => &buf[..usize::from(*len)],
            ObjKey::Heap(b) => b,
        }
    }

    /// Heap bytes the key holds.
    fn heap_size(&self) -> usize {
        match self {
            ObjKey::Inline { .. } => 0,
            ObjKey::Heap(b) => alloc_size(b.len()),
        }
    }
}

pub(super) struct Entry<O> {
    /// The deadline in Unix ms (low 48 bits, 0 = none, `FAR` = see the map's side table)
    /// and the high 16 bits of the access stamp.
    word: u64,
    payload: Payload<O>,
}

impl<O: Object> Entry<O> {
    /// One plain load from the entry, with nothing depending on it but the caller's
    /// result: brings the entry into the cache (see `TtlMap::prefetch`).
    #[inline]
    pub fn warm(&self) -> u64 {
        self.word
    }

    pub fn new(key: &[u8], value: ValueRef<'_>, deadline: u64) -> Entry<O> {
        let v = value.as_slice();
        let payload = if key.len() + v.len() <= INLINE {
            let mut buf = [0u8; INLINE];
            buf[..key.len()].copy_from_slice(key);
            buf[key.len()..key.len() + v.len()].copy_from_slice(v);
            Payload::Inline {
                klen: key.len() as u8,
                vlen: v.len() as u8,
                stamp_lo: 0,
                bucket_pos: NO_POS,
                buf,
            }
        } else {
            let value = match value {
                ValueRef::Shared(b) => b.clone(),
                ValueRef::Inline(b) => Bytes::copy_from_slice(b),
            };
            Payload::Heap {
                key: key.into(),
                value,
                bucket_pos: NO_POS,
                stamp_lo: 0,
                edited: false,
            }
        };
        let mut e = Entry { word: 0, payload };
        e.set_deadline(deadline);
        e
    }

    pub fn new_object(key: &[u8], obj: O, deadline: u64) -> Entry<O> {
        let mut e = Entry {
            word: 0,
            payload: if key.len() <= OBJ_INLINE_KEY {
                let mut kbuf = [0u8; OBJ_INLINE_KEY];
                kbuf[..key.len()].copy_from_slice(key);
                Payload::ObjectInline {
                    klen: key.len() as u8,
                    stamp_lo: 0,
                    bucket_pos: NO_POS,
                    kbuf,
                    obj,
                }
            } else {
                Payload::Object {
                    key: ObjKey::new(key),
                    obj: Box::new(obj),
                    bucket_pos: NO_POS,
                    stamp_lo: 0,
                }
            },
        };
        e.set_deadline(deadline);
        e
    }

    pub fn free(next: u32) -> Entry<O> {
        Entry {
            word: 0,
            payload: Payload::Free(next),
        }
    }

    pub fn next_free(&self) -> Option<u32> {
        match self.payload {
            Payload::Free(n) => Some(n),
            _ => None,
        }
    }

    pub fn is_free(&self) -> bool {
        matches!(self.payload, Payload::Free(_))
    }

    pub fn key(&self) -> &[u8] {
        match &self.payload {
            Payload::Inline { klen, buf, .. } => &buf[..usize::from(*klen & !EDITED)],
            Payload::Heap { key, .. } => key,
            Payload::Object { key, .. } => key.bytes(),
            Payload::ObjectInline { klen, kbuf, .. } => &kbuf[..usize::from(*klen)],
            Payload::Free(_) => &[],
        }
    }

    pub fn value(&self) -> Stored<'_, O> {
        match &self.payload {
            Payload::Inline {
                klen, vlen, buf, ..
            } => {
                let k = usize::from(*klen & !EDITED);
                Stored::Bytes(ValueRef::Inline(&buf[k..k + usize::from(*vlen)]))
            }
            Payload::Heap { value, .. } => Stored::Bytes(ValueRef::Shared(value)),
            Payload::Object { obj, .. } => Stored::Object(obj),
            Payload::ObjectInline { obj, .. } => Stored::Object(obj),
            Payload::Free(_) => Stored::Bytes(ValueRef::Inline(&[])),
        }
    }

    /// The object, if the entry holds one.
    pub fn object_mut(&mut self) -> Option<&mut O> {
        match &mut self.payload {
            Payload::Object { obj, .. } => Some(obj),
            Payload::ObjectInline { obj, .. } => Some(obj),
            _ => None,
        }
    }

    /// The entry's value, taken out.
    pub fn into_owned(self) -> Owned<O> {
        match self.payload {
            Payload::Object { obj, .. } => Owned::Object(obj),
            Payload::ObjectInline { obj, .. } => Owned::Object(Box::new(obj)),
            Payload::Heap { value, .. } => Owned::Bytes(value),
            Payload::Inline { .. } | Payload::Free(_) => match self.value() {
                Stored::Bytes(v) => Owned::Bytes(v.to_bytes()),
                Stored::Object(_) => Owned::Bytes(Bytes::new()),
            },
        }
    }

    /// The stored deadline: exact below `FAR`, `FAR` for any later one.
    pub fn deadline(&self) -> u64 {
        self.word & FAR
    }

    /// Store `deadline` (one at or beyond `FAR` is stored as `FAR`; the map keeps it).
    pub fn set_deadline(&mut self, deadline: u64) {
        self.word = (self.word & !FAR) | deadline.min(FAR);
    }

    /// Whether a deadline below `FAR` has passed (the map checks `FAR` ones itself).
    pub fn is_expired(&self, now: u64) -> bool {
        let d = self.deadline();
        d != 0 && d != FAR && d <= now
    }

    /// The 24-bit access stamp (see `access.rs`).
    pub fn stamp(&self) -> u32 {
        let lo = match self.payload {
            Payload::Inline { stamp_lo, .. }
            | Payload::Heap { stamp_lo, .. }
            | Payload::Object { stamp_lo, .. }
            | Payload::ObjectInline { stamp_lo, .. } => stamp_lo,
            Payload::Free(_) => 0,
        };
        (((self.word >> DEADLINE_BITS) as u32) << 8) | u32::from(lo)
    }

    pub fn set_stamp(&mut self, stamp: u32) {
        self.word = (self.word & FAR) | (u64::from((stamp >> 8) & 0xFFFF) << DEADLINE_BITS);
        match &mut self.payload {
            Payload::Inline { stamp_lo, .. }
            | Payload::Heap { stamp_lo, .. }
            | Payload::Object { stamp_lo, .. }
            | Payload::ObjectInline { stamp_lo, .. } => {
                *stamp_lo = stamp as u8;
            }
            Payload::Free(_) => {}
        }
    }

    /// Whether the value was changed in place since it was stored (Redis then reports the
    /// string as `raw`).
    pub fn edited(&self) -> bool {
        match self.payload {
            Payload::Inline { klen, .. } => klen & EDITED != 0,
            Payload::Heap { edited, .. } => edited,
            Payload::Object { .. } | Payload::ObjectInline { .. } | Payload::Free(_) => false,
        }
    }

    /// Mark the value as changed in place (see [`Entry::edited`]).
    pub fn mark_edited(&mut self) {
        match &mut self.payload {
            Payload::Inline { klen, .. } => *klen |= EDITED,
            Payload::Heap { edited, .. } => *edited = true,
            Payload::Object { .. } | Payload::ObjectInline { .. } | Payload::Free(_) => {}
        }
    }

    /// Heap bytes this entry owns beyond its 64 bytes (key and value blocks as malloc
    /// rounds them, and the value's refcount header); 0 when stored inline.
    pub fn heap_size(&self) -> usize {
        match &self.payload {
            Payload::Heap { key, value, .. } => {
                alloc_size(key.len()) + alloc_size(value.len()) + BYTES_SHARED_HEADER
            }
            Payload::ObjectInline { obj, .. } => obj.heap_bytes(),
            Payload::Object { key, obj, .. } => {
                key.heap_size() + alloc_size(std::mem::size_of::<O>()) + obj.heap_bytes()
            }
            Payload::Inline { .. } | Payload::Free(_) => 0,
        }
    }

    /// The entry's position in its expiry bucket (`NO_POS` if it has no deadline).
    pub fn bucket_pos(&self) -> u32 {
        match self.payload {
            Payload::Inline { bucket_pos, .. }
            | Payload::Heap { bucket_pos, .. }
            | Payload::Object { bucket_pos, .. }
            | Payload::ObjectInline { bucket_pos, .. } => bucket_pos,
            Payload::Free(_) => NO_POS,
        }
    }

    pub fn set_bucket_pos(&mut self, pos: u32) {
        match &mut self.payload {
            Payload::Inline { bucket_pos, .. }
            | Payload::Heap { bucket_pos, .. }
            | Payload::Object { bucket_pos, .. }
            | Payload::ObjectInline { bucket_pos, .. } => {
                *bucket_pos = pos;
            }
            Payload::Free(_) => {}
        }
    }

    /// Write `data` into the value at `offset` (`None` = at the end), zero-filling any gap
    /// and growing the value as needed; returns the new length. The caller bounds
    /// `offset + data.len()`.
    ///
    /// The value is edited in place when the map holds the only handle to it; a value a
    /// reader still holds is copied first (copy-on-write). A value that grows gets spare
    /// capacity (see [`grown_capacity`]), so a run of appends copies each byte a bounded
    /// number of times instead of copying the whole value every time.
    pub fn write_at(&mut self, offset: Option<usize>, data: &[u8]) -> usize {
        let len = match self.value() {
            Stored::Bytes(v) => v.len(),
            // The owner checks the type before editing bytes; an object is left alone.
            Stored::Object(_) => return 0,
        };
        let at = offset.unwrap_or(len);
        let end = at.saturating_add(data.len());
        let new_len = len.max(end);
        let promoted = match &mut self.payload {
            Payload::Inline {
                klen, vlen, buf, ..
            } if usize::from(*klen & !EDITED) + new_len <= INLINE => {
                let k = usize::from(*klen & !EDITED);
                buf[k + len..k + new_len].fill(0);
                buf[k + at..k + end].copy_from_slice(data);
                *vlen = new_len as u8;
                *klen |= EDITED;
                return new_len;
            }
            Payload::Inline {
                klen,
                buf,
                bucket_pos,
                stamp_lo,
                ..
            } => {
                // Outgrows the entry: move to the heap, with room to grow further.
                let k = usize::from(*klen & !EDITED);
                let mut v = Vec::with_capacity(grown_capacity(len, new_len));
                v.extend_from_slice(&buf[k..k + len]);
                write_into(&mut v, at, data);
                Payload::Heap {
                    key: buf[..k].into(),
                    value: Bytes::from(v),
                    bucket_pos: *bucket_pos,
                    stamp_lo: *stamp_lo,
                    edited: true,
                }
            }
            Payload::Heap { value, edited, .. } => {
                *edited = true;
                let mut v = if value.is_unique() {
                    // Nobody else holds it, so nobody can clone it either: take the buffer
                    // back, with its spare capacity, without copying.
                    Vec::from(std::mem::take(value))
                } else {
                    let cap = if new_len > len {
                        grown_capacity(len, new_len)
                    } else {
                        len
                    };
                    let mut v = Vec::with_capacity(cap);
                    v.extend_from_slice(value);
                    v
                };
                if v.capacity() < new_len {
                    v.reserve_exact(grown_capacity(len, new_len) - v.len());
                }
                write_into(&mut v, at, data);
                *value = Bytes::from(v);
                return new_len;
            }
            Payload::Object { .. } | Payload::ObjectInline { .. } | Payload::Free(_) => return 0,
        };
        self.payload = promoted;
        new_len
    }
}

#[cfg(test)]
mod tests {
    use super::super::NoObject;
    use super::*;

    type E = Entry<NoObject>;

    impl E {
        fn bytes(&self) -> ValueRef<'_> {
            self.value().bytes().unwrap_or(ValueRef::Inline(&[]))
        }
    }

    #[test]
    fn entry_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<E>(), 64);
        struct Small(#[allow(dead_code)] [u64; 3]);
        impl Object for Small {
            fn heap_bytes(&self) -> usize {
                0
            }
        }
        assert_eq!(
            std::mem::size_of::<Entry<Small>>(),
            64,
            "objects of up to {OBJ_INLINE_SIZE} bytes live in the entry"
        );
    }

    #[test]
    fn stamp_deadline_and_flags_share_the_entry_without_growing_it() {
        for mut e in [
            E::new(b"0123456789abcdef", ValueRef::Inline(&[7u8; 32]), 0),
            E::new(b"k", ValueRef::Shared(&Bytes::from(vec![1u8; 100])), 0),
        ] {
            e.set_bucket_pos(77);
            e.set_deadline(1_700_000_000_123);
            e.set_stamp(0xABCDEF);
            assert_eq!(e.stamp(), 0xABCDEF);
            assert_eq!(e.deadline(), 1_700_000_000_123);
            e.set_deadline(0);
            assert_eq!((e.stamp(), e.deadline()), (0xABCDEF, 0));
            e.set_stamp(0x000102);
            e.set_deadline(i64::MAX as u64);
            assert_eq!(e.deadline(), FAR, "far deadlines are kept by the map");
            assert!(!e.is_expired(u64::MAX), "the map decides for far deadlines");
            assert_eq!(e.stamp(), 0x000102);
            assert_eq!(e.bucket_pos(), 77);
            assert!(!e.edited());
            let key = e.key().to_vec();
            let len = e.bytes().len();
            e.write_at(None, b"!");
            assert!(e.edited(), "an in-place edit marks the value");
            assert_eq!(e.key(), &key[..], "the flag does not disturb the key");
            assert_eq!(e.bytes().len(), len + 1);
            assert_eq!(e.stamp(), 0x000102, "edits keep the stamp");
        }
    }

    #[test]
    fn heap_size_follows_malloc_rounding() {
        assert_eq!(alloc_size(0), 0);
        assert_eq!(alloc_size(1), 32);
        assert_eq!(alloc_size(24), 32);
        assert_eq!(alloc_size(25), 48);
        assert_eq!(alloc_size(100), 112);
        assert_eq!(alloc_size(200_000), 200_704);
        let inline = E::new(b"key", ValueRef::Inline(b"value"), 0);
        assert_eq!(inline.heap_size(), 0);
        let v = Bytes::from(vec![0u8; 100]);
        let heap = E::new(&[b'k'; 16], ValueRef::Shared(&v), 0);
        assert_eq!(heap.heap_size(), 32 + 112 + 32);
    }

    #[test]
    fn small_pairs_inline_large_on_heap() {
        let e = E::new(b"0123456789abcdef", ValueRef::Inline(&[7u8; 32]), 0);
        assert!(matches!(e.payload, Payload::Inline { .. }));
        assert_eq!(e.key(), b"0123456789abcdef");
        assert_eq!(e.bytes().as_slice(), &[7u8; 32]);
        let big = Bytes::from(vec![1u8; 1000]);
        let e = E::new(b"k", ValueRef::Shared(&big), 5);
        assert!(matches!(e.payload, Payload::Heap { .. }));
        assert_eq!(
            e.bytes().to_bytes().as_ptr(),
            big.as_ptr(),
            "no copy of large values"
        );
        assert_eq!(e.deadline(), 5);
    }

    #[test]
    fn edits_stay_inline_then_move_to_the_heap() {
        let mut e = E::new(b"key", ValueRef::Inline(b"ab"), 7);
        e.set_bucket_pos(3);
        assert_eq!(e.write_at(None, b"cd"), 4);
        assert_eq!(e.write_at(Some(6), b"x"), 7);
        assert_eq!(e.bytes().as_slice(), b"abcd\0\0x");
        assert!(matches!(e.payload, Payload::Inline { .. }));
        assert_eq!(e.write_at(None, &[b'y'; 60]), 67);
        assert!(matches!(e.payload, Payload::Heap { .. }));
        assert_eq!(e.key(), b"key");
        assert_eq!(&e.bytes().as_slice()[..7], b"abcd\0\0x");
        assert_eq!(&e.bytes().as_slice()[7..], &[b'y'; 60][..]);
        assert_eq!(
            (e.deadline(), e.bucket_pos()),
            (7, 3),
            "edits keep expiry state"
        );
    }

    #[test]
    fn appends_grow_in_place_with_amortised_doubling() {
        let mut e = E::new(b"k", ValueRef::Inline(&[0u8; 100]), 0);
        let mut moves = 0;
        let mut last = e.bytes().as_slice().as_ptr();
        for i in 0..10_000usize {
            assert_eq!(e.write_at(None, &[i as u8; 100]), 200 + i * 100);
            let p = e.bytes().as_slice().as_ptr();
            if p != last {
                moves += 1;
                last = p;
            }
        }
        // 1 MB in 100-byte appends: a move per doubling, not one per append.
        assert!(moves <= 20, "value moved {moves} times");
        assert_eq!(e.bytes().as_slice()[100 + 9_999 * 100], (9_999usize as u8));
    }

    #[test]
    fn a_value_handed_out_never_changes() {
        let mut e = E::new(b"k", ValueRef::Inline(&[1u8; 100]), 0);
        e.write_at(None, &[2u8; 100]); // now with spare capacity
        let held = e.bytes().to_bytes();
        let before = held.to_vec();
        e.write_at(None, &[3u8; 10]);
        e.write_at(Some(0), &[4u8; 10]);
        assert_eq!(
            held.to_vec(),
            before,
            "a reader's handle is copied, not written"
        );
        assert_eq!(e.bytes().len(), 210);
        assert_eq!(&e.bytes().as_slice()[..10], &[4u8; 10]);
        assert_eq!(&e.bytes().as_slice()[200..], &[3u8; 10]);
        drop(held);
        // Once the reader let go, edits are in place again.
        let p = e.bytes().as_slice().as_ptr();
        e.write_at(Some(5), b"z");
        assert_eq!(e.bytes().as_slice().as_ptr(), p);
    }

    #[test]
    fn a_shared_value_stored_by_set_is_never_written() {
        let stored = Bytes::from(vec![9u8; 1000]);
        let mut e = E::new(b"k", ValueRef::Shared(&stored), 0);
        e.write_at(Some(0), b"abc");
        assert_eq!(stored, vec![9u8; 1000], "the caller's handle is untouched");
        assert_eq!(&e.bytes().as_slice()[..4], b"abc\x09");
    }
}
