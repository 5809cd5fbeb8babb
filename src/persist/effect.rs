//! What the server journals: the *effect* of a mutation, never the command, so replay is
//! deterministic (absolute deadlines instead of relative TTLs, INCRBYFLOAT as the stored
//! result, a cross-shard transaction as the final state of its keys). This file is the
//! payload format of WAL records and snapshot entries; the record framing (length, CRC,
//! LSN, shard) is the engine's (`coreshard_engine::wal`).

use bytes::Bytes;

/// Record kinds.
pub mod kind {
    pub const SET: u8 = 1;
    pub const DEL: u8 = 2;
    pub const DEADLINE: u8 = 3;
    pub const APPEND: u8 = 4;
    pub const SETRANGE: u8 = 5;
    pub const FLUSH: u8 = 6;
    pub const TXN: u8 = 7;
    pub const FENCE: u8 = 8;
    pub const OBJ: u8 = 9;
    pub const CMD: u8 = 10;
}

/// One mutation of one shard's keyspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Store `value` under `key` with `deadline` (Unix ms, 0 = none).
    Set {
        key: Bytes,
        value: Bytes,
        deadline: u64,
    },
    /// Remove `key`.
    Del { key: Bytes },
    /// Change the deadline of an existing key (0 = persist).
    Deadline { key: Bytes, deadline: u64 },
    /// Append to a key's value (creating it without a deadline).
    Append { key: Bytes, data: Bytes },
    /// Overwrite from `offset` (zero-padding), creating the key without a deadline.
    SetRange {
        key: Bytes,
        offset: u64,
        data: Bytes,
    },
    /// Remove every key (of every shard: replay applies it to all).
    Flush,
    /// A transaction's outcome, all or nothing: a flush first if `flush`, then each write
    /// (any effect but `Txn` and `Fence`).
    Txn { flush: bool, writes: Vec<Effect> },
    /// Store a collection (`ty`: [`crate::types::tag`], `data`: its serialized form) under
    /// `key` with `deadline`.
    Obj {
        key: Bytes,
        ty: u8,
        data: Bytes,
        deadline: u64,
    },
    /// A deterministic collection command (name first, key second), replayed through the
    /// command table on the key's shard: HSET, LPUSH, SREM...
    Cmd { args: Vec<Bytes> },
    /// Changes nothing: a shard that applied another shard's transaction record appends
    /// one, so its later replies wait until that record (earlier in the log) is durable.
    Fence,
}

/// A payload that does not decode (a bug or corruption that passed the CRC).
#[derive(Debug, thiserror::Error)]
#[error("undecodable {what} record payload")]
pub struct BadPayload {
    what: &'static str,
}

impl Effect {
    /// The record kind and payload.
    pub fn encode(&self) -> (u8, Vec<u8>) {
        let mut out = Vec::new();
        let kind = self.encode_into(&mut out);
        (kind, out)
    }

    fn encode_into(&self, out: &mut Vec<u8>) -> u8 {
        match self {
            Effect::Set {
                key,
                value,
                deadline,
            } => {
                set_payload(out, key, value, *deadline);
                kind::SET
            }
            Effect::Del { key } => {
                key_payload(out, key);
                kind::DEL
            }
            Effect::Deadline { key, deadline } => {
                deadline_payload(out, key, *deadline);
                kind::DEADLINE
            }
            Effect::Append { key, data } => {
                append_payload(out, key, data);
                kind::APPEND
            }
            Effect::SetRange { key, offset, data } => {
                setrange_payload(out, key, *offset, data);
                kind::SETRANGE
            }
            Effect::Flush => kind::FLUSH,
            Effect::Fence => kind::FENCE,
            Effect::Obj {
                key,
                ty,
                data,
                deadline,
            } => {
                put_bytes(out, key);
                put_u64(out, *deadline);
                out.push(*ty);
                put_bytes(out, data);
                kind::OBJ
            }
            Effect::Cmd { args } => {
                put_u64(out, args.len() as u64);
                for a in args {
                    put_bytes(out, a);
                }
                kind::CMD
            }
            Effect::Txn { flush, writes } => {
                out.push(u8::from(*flush));
                put_u64(out, writes.len() as u64);
                for w in writes {
                    let mut inner = Vec::new();
                    let k = w.encode_into(&mut inner);
                    out.push(k);
                    put_bytes(out, &inner);
                }
                kind::TXN
            }
        }
    }

    /// Decode a record of `kind` (payload shared, so values are not copied).
    pub fn decode(kind: u8, payload: &Bytes) -> Result<Effect, BadPayload> {
        let mut r = Reader {
            buf: payload,
            pos: 0,
        };
        let bad = |what| BadPayload { what };
        let e = match kind {
            kind::SET => {
                let key = r.bytes().ok_or(bad("SET"))?;
                let deadline = r.u64().ok_or(bad("SET"))?;
                let value = r.bytes().ok_or(bad("SET"))?;
                Effect::Set {
                    key,
                    value,
                    deadline,
                }
            }
            kind::DEL => Effect::Del {
                key: r.bytes().ok_or(bad("DEL"))?,
            },
            kind::DEADLINE => Effect::Deadline {
                key: r.bytes().ok_or(bad("DEADLINE"))?,
                deadline: r.u64().ok_or(bad("DEADLINE"))?,
            },
            kind::APPEND => Effect::Append {
                key: r.bytes().ok_or(bad("APPEND"))?,
                data: r.bytes().ok_or(bad("APPEND"))?,
            },
            kind::SETRANGE => Effect::SetRange {
                key: r.bytes().ok_or(bad("SETRANGE"))?,
                offset: r.u64().ok_or(bad("SETRANGE"))?,
                data: r.bytes().ok_or(bad("SETRANGE"))?,
            },
            kind::FLUSH => Effect::Flush,
            kind::FENCE => Effect::Fence,
            kind::OBJ => Effect::Obj {
                key: r.bytes().ok_or(bad("OBJ"))?,
                deadline: r.u64().ok_or(bad("OBJ"))?,
                ty: r.byte().ok_or(bad("OBJ"))?,
                data: r.bytes().ok_or(bad("OBJ"))?,
            },
            kind::CMD => {
                let n = r.u64().ok_or(bad("CMD"))?;
                if n < 2 || n > (payload.len() as u64) {
                    return Err(bad("CMD"));
                }
                let mut args = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    args.push(r.bytes().ok_or(bad("CMD"))?);
                }
                Effect::Cmd { args }
            }
            kind::TXN => {
                let flush = r.byte().ok_or(bad("TXN"))? != 0;
                let n = r.u64().ok_or(bad("TXN"))?;
                let mut writes = Vec::new();
                for _ in 0..n {
                    let k = r.byte().ok_or(bad("TXN"))?;
                    let inner = r.bytes().ok_or(bad("TXN"))?;
                    let w = Effect::decode(k, &inner)?;
                    // A FLUSHALL inside a one-shard EXEC is grouped like any write.
                    if matches!(w, Effect::Txn { .. } | Effect::Fence) {
                        return Err(bad("TXN"));
                    }
                    writes.push(w);
                }
                Effect::Txn { flush, writes }
            }
            _ => return Err(bad("unknown")),
        };
        if r.pos != payload.len() {
            return Err(bad("trailing bytes in"));
        }
        Ok(e)
    }
}

/// Payload of a SET record, written straight from borrowed key and value.
pub fn set_payload(out: &mut Vec<u8>, key: &[u8], value: &[u8], deadline: u64) {
    put_bytes(out, key);
    put_u64(out, deadline);
    put_bytes(out, value);
}

/// Payload of a DEL record.
pub fn key_payload(out: &mut Vec<u8>, key: &[u8]) {
    put_bytes(out, key);
}

/// Payload of a DEADLINE record.
pub fn deadline_payload(out: &mut Vec<u8>, key: &[u8], deadline: u64) {
    put_bytes(out, key);
    put_u64(out, deadline);
}

/// Payload of an APPEND record.
pub fn append_payload(out: &mut Vec<u8>, key: &[u8], data: &[u8]) {
    put_bytes(out, key);
    put_bytes(out, data);
}

/// Payload of a SETRANGE record.
pub fn setrange_payload(out: &mut Vec<u8>, key: &[u8], offset: u64, data: &[u8]) {
    put_bytes(out, key);
    put_u64(out, offset);
    put_bytes(out, data);
}

fn put_u64(out: &mut Vec<u8>, n: u64) {
    // LEB128: small numbers (lengths, most deadlines' absence) take one byte.
    let mut n = n;
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u64(out, b.len() as u64);
    out.extend_from_slice(b);
}

struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn u64(&mut self) -> Option<u64> {
        let mut n: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f).checked_shl(shift)?;
            if b & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    }

    fn bytes(&mut self) -> Option<Bytes> {
        let len = usize::try_from(self.u64()?).ok()?;
        let end = self.pos.checked_add(len)?;
        if end > self.buf.len() {
            return None;
        }
        let b = self.buf.slice(self.pos..end);
        self.pos = end;
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn every_effect_round_trips() {
        let all = vec![
            Effect::Set {
                key: b("k"),
                value: b("v"),
                deadline: 1_700_000_000_000,
            },
            Effect::Del { key: b("") },
            Effect::Deadline {
                key: b("k"),
                deadline: u64::MAX,
            },
            Effect::Append {
                key: b("k"),
                data: b("more"),
            },
            Effect::SetRange {
                key: b("k"),
                offset: 1 << 40,
                data: b("x"),
            },
            Effect::Flush,
            Effect::Fence,
            Effect::Obj {
                key: b("h"),
                ty: 1,
                data: b("\x01\x02"),
                deadline: 7,
            },
            Effect::Cmd {
                args: vec![b("HSET"), b("h"), b("f"), b("")],
            },
            Effect::Txn {
                flush: true,
                writes: vec![
                    Effect::Del { key: b("a") },
                    Effect::Set {
                        key: b("b"),
                        value: b("1"),
                        deadline: 0,
                    },
                    Effect::Cmd {
                        args: vec![b("SREM"), b("s"), b("m")],
                    },
                ],
            },
        ];
        for e in all {
            let (k, p) = e.encode();
            assert_eq!(Effect::decode(k, &Bytes::from(p)).unwrap(), e);
        }
    }

    #[test]
    fn any_bytes_decode_or_fail_without_panicking() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..2000usize {
            let mut buf = Vec::with_capacity(len % 64);
            for _ in 0..len % 64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(x as u8);
            }
            let _ = Effect::decode((x % 11) as u8, &Bytes::from(buf));
        }
    }
}
