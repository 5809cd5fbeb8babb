//! Byte-level helpers the collection representations share: LEB128 varints (trusted
//! and untrusted reads), exact-size block splicing, bounded-slack growth, and malloc's
//! block sizes for memory accounting.

/// Bytes glibc malloc really uses for an `n`-byte allocation (the engine's accounting).
pub(super) use coreshard_engine::ttl::alloc_size;

/// Number of bytes `put_varint` writes for `v`.
#[inline]
pub(super) fn varint_len(v: usize) -> usize {
    let mut n = 1;
    let mut v = v >> 7;
    while v != 0 {
        n += 1;
        v >>= 7;
    }
    n
}

#[inline]
pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A varint encoded on the stack.
pub(super) struct Varint {
    bytes: [u8; 10],
    len: usize,
}

impl Varint {
    pub(super) fn new(mut v: usize) -> Varint {
        let mut bytes = [0; 10];
        let mut len = 0;
        while v >= 0x80 {
            bytes[len] = (v as u8) | 0x80;
            v >>= 7;
            len += 1;
        }
        bytes[len] = v as u8;
        Varint {
            bytes,
            len: len + 1,
        }
    }

    pub(super) fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Reads a varint the representation wrote itself (trusted; panics only on a broken
/// invariant).
#[inline]
pub(super) fn read_varint(buf: &[u8], pos: usize) -> (usize, usize) {
    let b = buf[pos];
    if b < 0x80 {
        return (b as usize, pos + 1);
    }
    let mut v = (b & 0x7f) as usize;
    let mut shift = 7;
    let mut p = pos + 1;
    loop {
        let b = buf[p];
        p += 1;
        v |= ((b & 0x7f) as usize) << shift;
        if b < 0x80 {
            return (v, p);
        }
        shift += 7;
    }
}

/// Reads a varint from untrusted input; `None` when truncated or longer than 64 bits.
pub(super) fn read_varint_checked(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    let mut shift = 0u32;
    loop {
        let b = *buf.get(*pos)?;
        *pos += 1;
        if shift == 63 && b > 1 {
            return None;
        }
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

/// Reads a length prefix followed by that many bytes from untrusted input.
pub(super) fn read_bytes<'a>(buf: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let len = usize::try_from(read_varint_checked(buf, pos)?).ok()?;
    let end = pos.checked_add(len)?;
    let s = buf.get(*pos..end)?;
    *pos = end;
    Some(s)
}

/// Replaces `buf[start..end]` by the concatenation of `parts`, leaving `buf` exactly sized.
pub(super) fn splice(buf: &mut Box<[u8]>, start: usize, end: usize, parts: &[&[u8]]) {
    let add: usize = parts.iter().map(|p| p.len()).sum();
    if add == end - start {
        let mut p = start;
        for part in parts {
            buf[p..p + part.len()].copy_from_slice(part);
            p += part.len();
        }
        return;
    }
    if end == buf.len() {
        // At the tail: let realloc resize the block (often in place).
        let mut v = std::mem::take(buf).into_vec();
        v.truncate(start);
        v.reserve_exact(add);
        for part in parts {
            v.extend_from_slice(part);
        }
        *buf = v.into_boxed_slice();
        return;
    }
    let mut v = Vec::with_capacity(buf.len() - (end - start) + add);
    v.extend_from_slice(&buf[..start]);
    for part in parts {
        v.extend_from_slice(part);
    }
    v.extend_from_slice(&buf[end..]);
    *buf = v.into_boxed_slice();
}

/// Grows `v` so that `additional` more elements fit: 1.5x while below 1 MiB, 1.125x above.
pub(super) fn grow<T>(v: &mut Vec<T>, additional: usize) {
    let len = v.len();
    let cap = v.capacity();
    let want = len.saturating_add(additional);
    if want <= cap {
        return;
    }
    let bytes = cap.saturating_mul(std::mem::size_of::<T>().max(1));
    let step = if bytes < (1 << 20) { cap / 2 } else { cap / 8 };
    let min = (16 / std::mem::size_of::<T>().max(1)).max(1);
    let target = want.max(cap.saturating_add(step)).max(min);
    v.reserve_exact(target - len);
}
