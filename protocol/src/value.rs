//! A structured RESP value and a parser for replies, for clients (the benchmark harness,
//! tests) and for round-trip checks of the encoder.

use bytes::Bytes;

use crate::encode::{Encoder, Protocol};
use crate::ProtocolError;

/// Nesting deeper than this is rejected, so a hostile peer cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

/// Any RESP2 or RESP3 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `+text`
    Simple(String),
    /// `-text` (also RESP3 blob errors `!`)
    Error(String),
    /// `:n`
    Integer(i64),
    /// `$n` bulk string
    Bulk(Bytes),
    /// `$-1`, `*-1` or `_`
    Null,
    /// `*n`
    Array(Vec<Value>),
    /// `%n`
    Map(Vec<(Value, Value)>),
    /// `~n`
    Set(Vec<Value>),
    /// `,x`
    Double(f64),
    /// `#t` / `#f`
    Boolean(bool),
    /// `(digits`
    BigNumber(String),
    /// `=n` with its three-letter format
    Verbatim([u8; 3], Bytes),
    /// `>n` out-of-band push
    Push(Vec<Value>),
    /// A reply already encoded, the same bytes in RESP2 and RESP3 (arrays of bulk
    /// strings): written as it is, one buffer instead of a value per element.
    Raw(Bytes),
}

impl Value {
    /// Encode this value in `proto`, degrading RESP3 types in RESP2 as Redis does.
    pub fn encode(&self, enc: &mut Encoder<'_>) {
        match self {
            Value::Simple(s) => enc.simple(s),
            Value::Error(s) => enc.error(s),
            Value::Integer(n) => enc.int(*n),
            Value::Bulk(b) => enc.bulk(b),
            Value::Null => enc.null(),
            Value::Array(items) => {
                enc.array(items.len());
                items.iter().for_each(|v| v.encode(enc));
            }
            Value::Map(pairs) => {
                enc.map(pairs.len());
                for (k, v) in pairs {
                    k.encode(enc);
                    v.encode(enc);
                }
            }
            Value::Set(items) => {
                enc.set(items.len());
                items.iter().for_each(|v| v.encode(enc));
            }
            Value::Double(x) => enc.double(*x),
            Value::Boolean(b) => enc.boolean(*b),
            Value::BigNumber(s) => enc.big_number(s),
            Value::Verbatim(fmt, text) => enc.verbatim(fmt, text),
            Value::Push(items) => {
                enc.push(items.len());
                items.iter().for_each(|v| v.encode(enc));
            }
            Value::Raw(frame) => enc.raw(frame),
        }
    }

    /// Encode into a fresh vector.
    pub fn to_bytes(&self, proto: Protocol) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut Encoder::new(&mut out, proto));
        out
    }
}

/// Parse one reply from the start of `buf`: `Ok(Some((value, consumed)))`, or `Ok(None)`
/// when more bytes are needed. RESP3 attributes (`|`) are parsed and dropped.
pub fn parse_value(buf: &[u8]) -> Result<Option<(Value, usize)>, ProtocolError> {
    let mut pos = 0;
    Ok(parse_at(buf, &mut pos, 0)?.map(|v| (v, pos)))
}

fn line<'a>(buf: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let start = *pos;
    let rel = memchr::memchr(b'\n', &buf[start..])?;
    let end = start + rel;
    *pos = end + 1;
    let l = &buf[start..end];
    Some(l.strip_suffix(b"\r").unwrap_or(l))
}

fn text(l: &[u8]) -> Result<String, ProtocolError> {
    String::from_utf8(l.to_vec()).map_err(|_| ProtocolError::InvalidReply("non-UTF-8 line"))
}

fn int(l: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(l)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(ProtocolError::InvalidReply("bad integer"))
}

fn blob(buf: &[u8], pos: &mut usize, len: i64) -> Result<Option<Bytes>, ProtocolError> {
    let len = usize::try_from(len).map_err(|_| ProtocolError::InvalidReply("bad length"))?;
    let end = pos
        .checked_add(len)
        .ok_or(ProtocolError::InvalidReply("bad length"))?;
    if buf.len() < end.saturating_add(2) {
        return Ok(None);
    }
    let b = Bytes::copy_from_slice(&buf[*pos..end]);
    *pos = end + 2;
    Ok(Some(b))
}

fn items(
    buf: &[u8],
    pos: &mut usize,
    n: i64,
    depth: usize,
) -> Result<Option<Vec<Value>>, ProtocolError> {
    let n = usize::try_from(n).map_err(|_| ProtocolError::InvalidReply("bad length"))?;
    let mut out = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        match parse_at(buf, pos, depth + 1)? {
            Some(v) => out.push(v),
            None => return Ok(None),
        }
    }
    Ok(Some(out))
}

fn parse_at(buf: &[u8], pos: &mut usize, depth: usize) -> Result<Option<Value>, ProtocolError> {
    if depth > MAX_DEPTH {
        return Err(ProtocolError::InvalidReply("nesting too deep"));
    }
    let Some(&tag) = buf.get(*pos) else {
        return Ok(None);
    };
    *pos += 1;
    let Some(l) = line(buf, pos) else {
        return Ok(None);
    };
    let v = match tag {
        b'+' => Value::Simple(text(l)?),
        b'-' => Value::Error(text(l)?),
        b':' => Value::Integer(int(l)?),
        b'_' => Value::Null,
        b'#' => match l {
            b"t" => Value::Boolean(true),
            b"f" => Value::Boolean(false),
            _ => return Err(ProtocolError::InvalidReply("bad boolean")),
        },
        b',' => {
            let s = text(l)?;
            let x = match s.as_str() {
                "inf" => f64::INFINITY,
                "-inf" => f64::NEG_INFINITY,
                "nan" => f64::NAN,
                s => s
                    .parse()
                    .map_err(|_| ProtocolError::InvalidReply("bad double"))?,
            };
            Value::Double(x)
        }
        b'(' => Value::BigNumber(text(l)?),
        b'$' | b'!' | b'=' => {
            let n = int(l)?;
            if n < 0 {
                Value::Null
            } else {
                let Some(b) = blob(buf, pos, n)? else {
                    return Ok(None);
                };
                match tag {
                    b'$' => Value::Bulk(b),
                    b'!' => Value::Error(text(&b)?),
                    _ => {
                        if b.len() < 4 || b[3] != b':' {
                            return Err(ProtocolError::InvalidReply("bad verbatim string"));
                        }
                        Value::Verbatim([b[0], b[1], b[2]], b.slice(4..))
                    }
                }
            }
        }
        b'*' | b'~' | b'>' => {
            let n = int(l)?;
            if n < 0 {
                Value::Null
            } else {
                let Some(v) = items(buf, pos, n, depth)? else {
                    return Ok(None);
                };
                match tag {
                    b'*' => Value::Array(v),
                    b'~' => Value::Set(v),
                    _ => Value::Push(v),
                }
            }
        }
        b'%' | b'|' => {
            let n = int(l)?;
            let Some(flat) = items(buf, pos, n.saturating_mul(2), depth)? else {
                return Ok(None);
            };
            if tag == b'|' {
                // Attributes annotate the value that follows; return that value.
                return parse_at(buf, pos, depth + 1);
            }
            let mut it = flat.into_iter();
            let mut pairs = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            Value::Map(pairs)
        }
        _ => return Err(ProtocolError::InvalidReply("unknown type byte")),
    };
    Ok(Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_type_and_waits_for_more() {
        let frames: &[(&[u8], Value)] = &[
            (b"+OK\r\n", Value::Simple("OK".into())),
            (b"-ERR no\r\n", Value::Error("ERR no".into())),
            (b":42\r\n", Value::Integer(42)),
            (b"$3\r\nabc\r\n", Value::Bulk(Bytes::from_static(b"abc"))),
            (b"$-1\r\n", Value::Null),
            (b"*-1\r\n", Value::Null),
            (b"_\r\n", Value::Null),
            (b"#t\r\n", Value::Boolean(true)),
            (b",1.25\r\n", Value::Double(1.25)),
            (
                b"(12345678901234567890\r\n",
                Value::BigNumber("12345678901234567890".into()),
            ),
            (
                b"=7\r\ntxt:abc\r\n",
                Value::Verbatim(*b"txt", Bytes::from_static(b"abc")),
            ),
            (b"!5\r\nERR x\r\n", Value::Error("ERR x".into())),
            (
                b"*2\r\n:1\r\n$1\r\na\r\n",
                Value::Array(vec![Value::Integer(1), Value::Bulk("a".into())]),
            ),
            (
                b"%1\r\n+k\r\n:1\r\n",
                Value::Map(vec![(Value::Simple("k".into()), Value::Integer(1))]),
            ),
            (b"~1\r\n:1\r\n", Value::Set(vec![Value::Integer(1)])),
            (b">1\r\n:1\r\n", Value::Push(vec![Value::Integer(1)])),
            (b"|1\r\n+a\r\n+b\r\n:7\r\n", Value::Integer(7)),
        ];
        for (frame, want) in frames {
            assert_eq!(
                parse_value(frame).unwrap(),
                Some((want.clone(), frame.len()))
            );
            for cut in 0..frame.len() {
                assert_eq!(parse_value(&frame[..cut]).unwrap(), None);
            }
        }
    }

    #[test]
    fn deep_nesting_is_rejected_not_overflowed() {
        let frame = b"*1\r\n".repeat(10_000);
        assert!(parse_value(&frame).is_err());
    }
}
