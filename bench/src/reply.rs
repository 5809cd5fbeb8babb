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
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| from + p)
}

fn number(bytes: &[u8]) -> Result<i64, &'static str> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or("bad length in reply")
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
    }
}
