//! The WAL record format: how one record is laid out on disk, encoded and decoded.
//!
//! ```text
//! offset size field
//!      0    4 len      bytes after the CRC field (12 + payload length), little-endian;
//!                      0 marks the end of the written data in a segment
//!      4    4 crc      CRC32C (Castagnoli) of the `len` bytes that follow
//!      8    8 lsn      the record's log sequence number (per shard)
//!     16    2 shard    the shard that wrote it
//!     18    1 kind     chosen by the embedding server
//!     19    1 flags    FLAG_DURABLE_BEFORE, other bits zero
//!     20    n payload  opaque bytes chosen by the embedding server
//! ```
//!
//! All integers are little-endian. Records follow each other without padding; a record
//! never spans two segments. Because `len` counts the fixed fields too, a record with an
//! empty payload still has a non-zero length, so zero can mark the end.

/// Bytes before the payload.
pub(crate) const HEADER: usize = 20;

/// Bytes covered by `len` besides the payload (lsn, shard, kind, flags).
pub(crate) const FIXED: usize = HEADER - 8;

/// The largest payload one record can carry (its length must fit the `len` field).
pub const MAX_PAYLOAD: usize = u32::MAX as usize - FIXED;

/// Set on the first record of a write when, at the time of that write, every byte of the
/// log before the record had reached the durability the policy promises (fdatasync
/// completed; for `FsyncPolicy::No`, written to the OS). Recovery uses it to tell
/// corruption of data that was durable (an error) from a torn, never-acknowledged tail.
pub(crate) const FLAG_DURABLE_BEFORE: u8 = 1;

/// A record read from a buffer; `payload` borrows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordRef<'a> {
    pub lsn: u64,
    pub shard: u16,
    pub kind: u8,
    pub flags: u8,
    pub payload: &'a [u8],
}

/// What starts at some position of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decoded<'a> {
    /// A valid record of `size` bytes.
    Record { record: RecordRef<'a>, size: usize },
    /// A zero length, or fewer than four bytes left that are all zero: no more records.
    End,
    /// Not a valid record, and why.
    Bad(&'static str),
}

/// Append one record to `out`.
///
/// # Panics
///
/// If `payload` is longer than [`MAX_PAYLOAD`].
pub(crate) fn encode(out: &mut Vec<u8>, lsn: u64, shard: u16, kind: u8, flags: u8, payload: &[u8]) {
    assert!(
        payload.len() <= MAX_PAYLOAD,
        "WAL record payload of {} bytes exceeds the maximum of {MAX_PAYLOAD}",
        payload.len()
    );
    let start = out.len();
    let len = (FIXED + payload.len()) as u32;
    out.reserve(HEADER + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&shard.to_le_bytes());
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Decode the record at the start of `buf`.
pub(crate) fn decode(buf: &[u8]) -> Decoded<'_> {
    if buf.len() < 4 {
        return if buf.iter().all(|&b| b == 0) {
            Decoded::End
        } else {
            Decoded::Bad("truncated record length")
        };
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len == 0 {
        return Decoded::End;
    }
    if len < FIXED {
        return Decoded::Bad("record length too small");
    }
    let Some(size) = len.checked_add(8) else {
        return Decoded::Bad("record length overflows");
    };
    if size > buf.len() {
        return Decoded::Bad("record runs past the end of the segment");
    }
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let body = &buf[8..size];
    if crc32c::crc32c(body) != crc {
        return Decoded::Bad("record checksum mismatch");
    }
    let mut lsn = [0u8; 8];
    lsn.copy_from_slice(&body[..8]);
    Decoded::Record {
        record: RecordRef {
            lsn: u64::from_le_bytes(lsn),
            shard: u16::from_le_bytes([body[8], body[9]]),
            kind: body[10],
            flags: body[11],
            payload: &body[FIXED..],
        },
        size,
    }
}

/// Length, LSN and flags of the already valid record at the start of `buf`, without
/// checking the CRC (for records this process encoded itself).
pub(crate) fn peek(buf: &[u8]) -> Option<(usize, u64)> {
    let head = buf.get(..HEADER)?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let mut lsn = [0u8; 8];
    lsn.copy_from_slice(&head[8..16]);
    Some((len + 8, u64::from_le_bytes(lsn)))
}

/// Set `flags` on the encoded record at the start of `record` and update its CRC.
pub(crate) fn set_flags(record: &mut [u8], flags: u8) {
    let Some((size, _)) = peek(record) else {
        return;
    };
    if size > record.len() || record[19] == flags {
        return;
    }
    record[19] = flags;
    let crc = crc32c::crc32c(&record[8..size]);
    record[4..8].copy_from_slice(&crc.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        encode(&mut buf, 7, 3, 9, 0, b"hello");
        encode(&mut buf, 8, 3, 1, 0, b"");
        assert_eq!(buf.len(), HEADER + 5 + HEADER);
        let Decoded::Record { record, size } = decode(&buf) else {
            panic!("first record")
        };
        assert_eq!(size, 25);
        assert_eq!(
            record,
            RecordRef {
                lsn: 7,
                shard: 3,
                kind: 9,
                flags: 0,
                payload: b"hello"
            }
        );
        let Decoded::Record { record, size } = decode(&buf[25..]) else {
            panic!("second record")
        };
        assert_eq!((record.lsn, record.payload, size), (8, &b""[..], 20));
        assert_eq!(decode(&buf[45..]), Decoded::End);
        assert_eq!(decode(&[0; 64]), Decoded::End);
    }

    #[test]
    fn flags_patch_keeps_the_record_valid() {
        let mut buf = Vec::new();
        encode(&mut buf, 1, 0, 0, 0, b"abc");
        set_flags(&mut buf, FLAG_DURABLE_BEFORE);
        let Decoded::Record { record, .. } = decode(&buf) else {
            panic!("valid after patch")
        };
        assert_eq!(record.flags, FLAG_DURABLE_BEFORE);
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let mut buf = Vec::new();
        encode(&mut buf, 42, 1, 2, 0, b"some payload bytes");
        for bit in 0..buf.len() * 8 {
            let mut b = buf.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !matches!(decode(&b), Decoded::Record { .. }),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut pos = 0;
            while pos < bytes.len() {
                match decode(&bytes[pos..]) {
                    Decoded::Record { size, record } => {
                        prop_assert!(size >= HEADER && pos + size <= bytes.len());
                        prop_assert_eq!(record.payload.len(), size - HEADER);
                        pos += size;
                    }
                    Decoded::End | Decoded::Bad(_) => pos += 1,
                }
            }
        }

        #[test]
        fn encode_decode_round_trip(
            lsn in any::<u64>(), shard in any::<u16>(), kind in any::<u8>(),
            payload in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut buf = vec![0xAA];
            encode(&mut buf, lsn, shard, kind, 0, &payload);
            match decode(&buf[1..]) {
                Decoded::Record { record, size } => {
                    prop_assert_eq!(size, buf.len() - 1);
                    prop_assert_eq!(record, RecordRef { lsn, shard, kind, flags: 0, payload: &payload });
                }
                other => prop_assert!(false, "decoded {:?}", other),
            }
        }
    }
}
