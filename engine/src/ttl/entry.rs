//! One key/value entry, 64 bytes: small pairs inline, large ones on the heap.

use bytes::Bytes;

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

pub(super) enum Payload {
    Inline {
        klen: u8,
        vlen: u8,
        buf: [u8; INLINE],
    },
    Heap {
        key: Box<[u8]>,
        value: Bytes,
    },
    /// A free arena slot: the next free slot, or `u32::MAX`.
    Free(u32),
}

pub(super) struct Entry {
    deadline: u64,
    payload: Payload,
}

impl Entry {
    pub fn new(key: &[u8], value: ValueRef<'_>, deadline: u64) -> Entry {
        let v = value.as_slice();
        let payload = if key.len() + v.len() <= INLINE {
            let mut buf = [0u8; INLINE];
            buf[..key.len()].copy_from_slice(key);
            buf[key.len()..key.len() + v.len()].copy_from_slice(v);
            Payload::Inline {
                klen: key.len() as u8,
                vlen: v.len() as u8,
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
            }
        };
        Entry { deadline, payload }
    }

    pub fn free(next: u32) -> Entry {
        Entry {
            deadline: 0,
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
            Payload::Inline { klen, buf, .. } => &buf[..usize::from(*klen)],
            Payload::Heap { key, .. } => key,
            Payload::Free(_) => &[],
        }
    }

    pub fn value(&self) -> ValueRef<'_> {
        match &self.payload {
            Payload::Inline { klen, vlen, buf } => {
                let k = usize::from(*klen);
                ValueRef::Inline(&buf[k..k + usize::from(*vlen)])
            }
            Payload::Heap { value, .. } => ValueRef::Shared(value),
            Payload::Free(_) => ValueRef::Inline(&[]),
        }
    }

    pub fn deadline(&self) -> u64 {
        self.deadline
    }

    pub fn set_deadline(&mut self, deadline: u64) {
        self.deadline = deadline;
    }

    pub fn is_expired(&self, now: u64) -> bool {
        self.deadline != 0 && self.deadline <= now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Entry>(), 64);
    }

    #[test]
    fn small_pairs_inline_large_on_heap() {
        let e = Entry::new(b"0123456789abcdef", ValueRef::Inline(&[7u8; 32]), 0);
        assert!(matches!(e.payload, Payload::Inline { .. }));
        assert_eq!(e.key(), b"0123456789abcdef");
        assert_eq!(e.value().as_slice(), &[7u8; 32]);
        let big = Bytes::from(vec![1u8; 1000]);
        let e = Entry::new(b"k", ValueRef::Shared(&big), 5);
        assert!(matches!(e.payload, Payload::Heap { .. }));
        assert_eq!(
            e.value().to_bytes().as_ptr(),
            big.as_ptr(),
            "no copy of large values"
        );
        assert_eq!(e.deadline(), 5);
    }
}
