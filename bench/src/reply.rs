//! Finding reply boundaries without building values: the hot path of the harness only
//! needs where each reply ends and whether it is an error.

/// A reply's length and whether it was an error (`-` or `!`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Bytes the reply occupies.
    pub len: usize,
    /// Whether it is an error reply.
    pub error: bool,
}

fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    let rest = buf.get(from..)?;
    let mut at = 0;
    while let Some(p) = rest[at..].iter().position(|&b| b == b'\r') {
        let p = at + p;
        if rest.get(p + 1) == Some(&b'\n') {
            return Some(from + p);
        }
        at = p + 1;
    }
    None
}

/// A decimal integer, optionally negative, without going through `str`.
fn number(bytes: &[u8]) -> Result<i64, &'static str> {
    const BAD: &str = "bad length in reply";
    let (neg, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, bytes),
    };
    if digits.is_empty() || digits.len() > 18 {
        return Err(BAD);
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(BAD);
        }
        n = n * 10 + i64::from(d - b'0');
    }
    Ok(if neg { -n } else { n })
}

/// What [`delivery`] found at the start of a subscriber's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A complete `message` on the expected channel: the frame's length and where its
    /// payload is.
    Message {
        /// Bytes the whole frame occupies.
        len: usize,
        /// The payload's byte range within the input.
        payload: std::ops::Range<usize>,
    },
    /// The start of such a message; the rest has not arrived yet.
    Incomplete,
    /// Something else (a confirmation, an error, another channel, RESP3): parse it fully.
    Other,
}

/// The fixed start of a RESP2 `message` push on `channel`, up to the payload's `$`.
pub fn message_prefix(channel: &[u8]) -> Vec<u8> {
    let mut p = format!("*3\r\n$7\r\nmessage\r\n${}\r\n", channel.len()).into_bytes();
    p.extend_from_slice(channel);
    p.extend_from_slice(b"\r\n$");
    p
}

/// The subscriber's fast path: recognise a `message` push on the channel whose
/// [`message_prefix`] is `prefix` in place, without building values or allocating.
pub fn delivery(buf: &[u8], prefix: &[u8]) -> Delivery {
    if buf.len() < prefix.len() {
        return if prefix.starts_with(buf) {
            Delivery::Incomplete
        } else {
            Delivery::Other
        };
    }
    if &buf[..prefix.len()] != prefix {
        return Delivery::Other;
    }
    let mut pos = prefix.len();
    let mut n: usize = 0;
    let mut digits = 0;
    loop {
        match buf.get(pos) {
            None => return Delivery::Incomplete,
            Some(&d) if d.is_ascii_digit() && digits < 12 => {
                n = n * 10 + usize::from(d - b'0');
                digits += 1;
                pos += 1;
            }
            Some(b'\r') if digits > 0 => break,
            Some(_) => return Delivery::Other,
        }
    }
    // "\r\n", the payload, "\r\n".
    let start = pos + 2;
    let end = start + n;
    if buf.len() < end + 2 {
        return Delivery::Incomplete;
    }
    if buf[pos + 1] != b'\n' || &buf[end..end + 2] != b"\r\n" {
        return Delivery::Other;
    }
    Delivery::Message {
        len: end + 2,
        payload: start..end,
    }
}

/// The first complete reply in `buf`, `Ok(None)` if it is incomplete.
pub fn next_frame(buf: &[u8]) -> Result<Option<Frame>, &'static str> {
    let mut pos = 0;
    let mut pending: i64 = 1;
    let mut error = None;
    while pending > 0 {
        let Some(&tag) = buf.get(pos) else {
            return Ok(None);
        };
        let Some(end) = line_end(buf, pos + 1) else {
            return Ok(None);
        };
        let header = &buf[pos + 1..end];
        if error.is_none() {
            error = Some(tag == b'-' || tag == b'!');
        }
        pos = end + 2;
        pending -= 1;
        match tag {
            b'+' | b'-' | b':' | b'_' | b'#' | b',' | b'(' => {}
            b'$' | b'!' | b'=' => {
                let n = number(header)?;
                if n >= 0 {
                    pos += n as usize + 2;
                    if pos > buf.len() {
                        return Ok(None);
                    }
                }
            }
            b'*' | b'~' | b'>' => {
                let n = number(header)?;
                pending += n.max(0);
            }
            b'%' => pending += 2 * number(header)?.max(0),
            // An attribute map precedes the value it annotates.
            b'|' => pending += 2 * number(header)?.max(0) + 1,
            _ => return Err("unknown reply type"),
        }
    }
    Ok(Some(Frame {
        len: pos,
        error: error.unwrap_or(false),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_of_every_shape() {
        let cases: &[(&[u8], bool)] = &[
            (b"+OK\r\n", false),
            (b"-ERR x\r\n", true),
            (b"$3\r\nabc\r\n", false),
            (b"$-1\r\n", false),
            (b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", false),
            (b"%1\r\n+k\r\n:1\r\n", false),
            (b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n", false),
            (b"|1\r\n+a\r\n+b\r\n:7\r\n", false),
            (b"!3\r\nERR\r\n", true),
        ];
        for (wire, error) in cases {
            let mut buf = wire.to_vec();
            buf.extend_from_slice(b"+NEXT\r\n");
            assert_eq!(
                next_frame(&buf).unwrap(),
                Some(Frame {
                    len: wire.len(),
                    error: *error
                }),
                "{wire:?}"
            );
            for cut in 0..wire.len() {
                assert_eq!(next_frame(&wire[..cut]).unwrap(), None);
            }
        }
        assert!(next_frame(b"?\r\n").is_err());
        assert!(next_frame(b"$x\r\n").is_err());
        assert!(next_frame(b"*1x\r\n").is_err());
        // A lone '\r' inside a simple string is not a line end.
        assert_eq!(
            next_frame(b"+a\rb\r\n").unwrap(),
            Some(Frame {
                len: 6,
                error: false
            })
        );
    }

    #[test]
    fn numbers_without_str() {
        assert_eq!(number(b"0"), Ok(0));
        assert_eq!(number(b"-1"), Ok(-1));
        assert_eq!(number(b"1234567"), Ok(1_234_567));
        assert!(number(b"").is_err());
        assert!(number(b"-").is_err());
        assert!(number(b"1 2").is_err());
        assert!(number(b"9999999999999999999").is_err());
    }

    #[test]
    fn deliveries_are_recognised_in_place() {
        let prefix = message_prefix(b"ch");
        let mut wire = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhe\r\no\r\n".to_vec();
        let len = wire.len();
        let start = len - 7;
        assert_eq!(
            delivery(&wire, &prefix),
            Delivery::Message {
                len,
                payload: start..start + 5
            }
        );
        assert_eq!(&wire[start..start + 5], b"he\r\no");
        // Cut anywhere: incomplete, never a wrong message.
        for cut in 0..len {
            assert_eq!(
                delivery(&wire[..cut], &prefix),
                Delivery::Incomplete,
                "{cut}"
            );
        }
        // Another message behind it does not matter.
        wire.extend_from_slice(b"*3\r\n");
        assert!(matches!(delivery(&wire, &prefix), Delivery::Message { len: l, .. } if l == len));
        // Not the fast path's business: confirmations, other channels, RESP3, errors, junk.
        for other in [
            &b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"[..],
            b"*3\r\n$7\r\nmessage\r\n$2\r\ncx\r\n$1\r\na\r\n",
            b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\na\r\n",
            b"-ERR no\r\n",
            b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$-1\r\n",
            b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nab\r\n",
            b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1x\r\na\r\n",
        ] {
            assert_eq!(delivery(other, &prefix), Delivery::Other, "{other:?}");
        }
    }
}
