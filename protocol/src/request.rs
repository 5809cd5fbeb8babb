//! Request parsing: RESP multibulk (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) and inline commands
//! (`GET k\r\n`, as telnet and `redis-cli` in some modes send them).

use std::borrow::Cow;

use crate::ProtocolError;

/// Size limits applied while parsing requests. Defaults are Redis 7's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk argument in bytes (`proto-max-bulk-len`, default 512 MB).
    pub max_bulk_len: usize,
    /// Most arguments in one multibulk request (Redis: `INT_MAX`).
    pub max_multibulk_len: usize,
    /// Longest inline request, and longest `*`/`$` header line (64 KB).
    pub max_inline_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_multibulk_len: i32::MAX as usize,
            max_inline_len: 64 * 1024,
        }
    }
}

/// Parse one request from the start of `buf`.
///
/// On success `args` holds the arguments (slices of `buf` except for inline arguments with
/// escapes) and the return value is `Some(bytes consumed)`. An empty request (`*0`, a blank
/// inline line) consumes its bytes and leaves `args` empty; callers skip it, like Redis.
/// `Ok(None)` means more bytes are needed; nothing was consumed.
pub fn parse_request<'a>(
    buf: &'a [u8],
    limits: &Limits,
    args: &mut Vec<Cow<'a, [u8]>>,
) -> Result<Option<usize>, ProtocolError> {
    args.clear();
    match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_multibulk(buf, limits, args),
        Some(_) => parse_inline(buf, limits, args),
    }
}

/// How many bytes the (incomplete) multibulk request at the start of `buf` takes at least,
/// from the headers received so far: lets a server size its buffer once for a large value
/// instead of growing it chunk by chunk. `None` for inline or unparseable input.
pub fn request_size_hint(buf: &[u8]) -> Option<usize> {
    if buf.first() != Some(&b'*') {
        return None;
    }
    let cr = find_crlf(buf, 1)?;
    let count = parse_i64_strict(&buf[1..cr])?;
    let mut pos = cr + 2;
    for _ in 0..count.max(0) {
        if buf.get(pos) != Some(&b'$') {
            return Some(pos.max(buf.len()));
        }
        let Some(cr) = find_crlf(buf, pos + 1) else {
            return Some(buf.len());
        };
        let len = usize::try_from(parse_i64_strict(&buf[pos + 1..cr])?).ok()?;
        pos = cr + 2 + len.checked_add(2)?;
        if pos > buf.len() {
            return Some(pos);
        }
    }
    Some(pos)
}

/// Find `\r\n` starting at `from`; returns the index of `\r`.
#[inline]
fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(off) = memchr::memchr(b'\r', &buf[at..]) {
        let cr = at + off;
        match buf.get(cr + 1) {
            Some(b'\n') => return Some(cr),
            Some(_) => at = cr + 1,
            None => return None,
        }
    }
    None
}

/// Redis's `string2ll`: optional `-`, no `+`, no leading zeros, no spaces, fits in i64.
/// Use it for integer arguments so they are accepted and refused exactly as Redis does.
pub fn parse_i64_strict(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    match digits {
        [] => return None,
        [b'0'] => return if neg { None } else { Some(0) },
        [b'0', ..] => return None,
        _ => {}
    }
    let mut v: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    if neg {
        if v > i64::MAX as u64 + 1 {
            None
        } else {
            Some((v as i64).wrapping_neg())
        }
    } else {
        i64::try_from(v).ok()
    }
}

fn parse_multibulk<'a>(
    buf: &'a [u8],
    limits: &Limits,
    args: &mut Vec<Cow<'a, [u8]>>,
) -> Result<Option<usize>, ProtocolError> {
    let Some(cr) = find_crlf(buf, 1) else {
        if buf.len() > limits.max_inline_len {
            return Err(ProtocolError::MultibulkCountTooBig);
        }
        return Ok(None);
    };
    let count = parse_i64_strict(&buf[1..cr]).ok_or(ProtocolError::InvalidMultibulkLength)?;
    if count > limits.max_multibulk_len as i64 {
        return Err(ProtocolError::InvalidMultibulkLength);
    }
    let mut pos = cr + 2;
    if count <= 0 {
        return Ok(Some(pos));
    }
    // Never trust the announced count for allocation: it may be a lie.
    args.reserve((count as usize).min(1024));
    for _ in 0..count {
        let Some(&first) = buf.get(pos) else {
            return Ok(None);
        };
        if first != b'$' {
            return Err(ProtocolError::ExpectedBulk(first));
        }
        let Some(cr) = find_crlf(buf, pos + 1) else {
            if buf.len() - pos > limits.max_inline_len {
                return Err(ProtocolError::BulkCountTooBig);
            }
            return Ok(None);
        };
        let len = match parse_i64_strict(&buf[pos + 1..cr]) {
            Some(n) if n >= 0 && n as u64 <= limits.max_bulk_len as u64 => n as usize,
            _ => return Err(ProtocolError::InvalidBulkLength),
        };
        let start = cr + 2;
        // Like Redis, the two bytes after the payload are skipped, not checked.
        let end = start + len;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        args.push(Cow::Borrowed(&buf[start..end]));
        pos = end + 2;
    }
    Ok(Some(pos))
}

fn parse_inline<'a>(
    buf: &'a [u8],
    limits: &Limits,
    args: &mut Vec<Cow<'a, [u8]>>,
) -> Result<Option<usize>, ProtocolError> {
    let Some(nl) = memchr::memchr(b'\n', buf) else {
        if buf.len() > limits.max_inline_len {
            return Err(ProtocolError::InlineTooBig);
        }
        return Ok(None);
    };
    if nl > limits.max_inline_len {
        return Err(ProtocolError::InlineTooBig);
    }
    let line = match buf[..nl].last() {
        Some(b'\r') => &buf[..nl - 1],
        _ => &buf[..nl],
    };
    split_inline_args(line, args)?;
    Ok(Some(nl + 1))
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hex_val(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Split an inline command line into arguments with Redis's `sdssplitargs` rules:
/// whitespace separates, `"..."` understands `\n \r \t \b \a \\ \" \xHH`, `'...'`
/// understands `\'`, and a closing quote must be followed by whitespace or the end.
pub fn split_inline_args<'a>(
    line: &'a [u8],
    args: &mut Vec<Cow<'a, [u8]>>,
) -> Result<(), ProtocolError> {
    let mut i = 0;
    loop {
        while i < line.len() && is_space(line[i]) {
            i += 1;
        }
        if i >= line.len() {
            return Ok(());
        }
        let start = i;
        // Fast path: a bare token with no quotes stays a borrowed slice.
        while i < line.len() && !is_space(line[i]) && line[i] != b'"' && line[i] != b'\'' {
            i += 1;
        }
        if i >= line.len() || is_space(line[i]) {
            args.push(Cow::Borrowed(&line[start..i]));
            continue;
        }
        let mut owned = line[start..i].to_vec();
        i = split_quoted(line, i, &mut owned)?;
        args.push(Cow::Owned(owned));
    }
}

/// Continue a token at `i` (which may open a quote) until its end; returns the new index.
fn split_quoted(line: &[u8], mut i: usize, out: &mut Vec<u8>) -> Result<usize, ProtocolError> {
    let mut in_dq = false;
    let mut in_sq = false;
    loop {
        let Some(&c) = line.get(i) else {
            return if in_dq || in_sq {
                Err(ProtocolError::UnbalancedQuotes)
            } else {
                Ok(i)
            };
        };
        if in_dq {
            if c == b'\\' && i + 3 < line.len() && line[i + 1] == b'x' {
                if let (Some(h), Some(l)) = (hex_val(line[i + 2]), hex_val(line[i + 3])) {
                    out.push(h * 16 + l);
                    i += 4;
                    continue;
                }
            }
            if c == b'\\' && i + 1 < line.len() {
                out.push(match line[i + 1] {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => 0x08,
                    b'a' => 0x07,
                    other => other,
                });
                i += 2;
            } else if c == b'"' {
                if i + 1 < line.len() && !is_space(line[i + 1]) {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
                return Ok(i + 1);
            } else {
                out.push(c);
                i += 1;
            }
        } else if in_sq {
            if c == b'\\' && i + 1 < line.len() && line[i + 1] == b'\'' {
                out.push(b'\'');
                i += 2;
            } else if c == b'\'' {
                if i + 1 < line.len() && !is_space(line[i + 1]) {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
                return Ok(i + 1);
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            match c {
                c if is_space(c) => return Ok(i),
                b'"' => in_dq = true,
                b'\'' => in_sq = true,
                _ => out.push(c),
            }
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Parsed = Option<(Vec<Vec<u8>>, usize)>;

    fn parse(buf: &[u8]) -> Result<Parsed, ProtocolError> {
        let mut args = Vec::new();
        let r = parse_request(buf, &Limits::default(), &mut args)?;
        Ok(r.map(|n| (args.iter().map(|a| a.to_vec()).collect(), n)))
    }

    fn v(items: &[&str]) -> Vec<Vec<u8>> {
        items.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn multibulk_complete_and_incremental() {
        let req = b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
        assert_eq!(parse(req).unwrap(), Some((v(&["GET", "key"]), req.len())));
        for cut in 0..req.len() {
            assert_eq!(parse(&req[..cut]).unwrap(), None, "cut at {cut}");
        }
        let mut two = req.to_vec();
        two.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(parse(&two).unwrap().unwrap().1, req.len());
    }

    #[test]
    fn binary_payload_with_crlf_inside() {
        let req = b"*2\r\n$3\r\nSET\r\n$4\r\na\r\nb\r\n";
        assert_eq!(parse(req).unwrap().unwrap().0[1], b"a\r\nb".to_vec());
    }

    #[test]
    fn empty_multibulk_is_skipped() {
        assert_eq!(parse(b"*0\r\n").unwrap(), Some((vec![], 4)));
        assert_eq!(parse(b"*-1\r\n").unwrap(), Some((vec![], 5)));
    }

    #[test]
    fn redis_error_texts() {
        let e = |b: &[u8]| parse(b).unwrap_err().to_string();
        assert_eq!(e(b"*x\r\n"), "Protocol error: invalid multibulk length");
        assert_eq!(e(b"*1\r\n$-1\r\n"), "Protocol error: invalid bulk length");
        assert_eq!(e(b"*1\r\n$abc\r\n"), "Protocol error: invalid bulk length");
        assert_eq!(
            e(b"*1\r\n$536870913\r\n"),
            "Protocol error: invalid bulk length"
        );
        assert_eq!(e(b"*1\r\n:1\r\n"), "Protocol error: expected '$', got ':'");
        assert_eq!(
            e(b"*3000000000\r\n"),
            "Protocol error: invalid multibulk length"
        );
        assert_eq!(
            e(b"\"abc\r\n"),
            "Protocol error: unbalanced quotes in request"
        );
        let long = vec![b'a'; 64 * 1024 + 1];
        assert_eq!(e(&long), "Protocol error: too big inline request");
        let mut star = b"*".to_vec();
        star.extend(vec![b'1'; 64 * 1024 + 1]);
        assert_eq!(e(&star), "Protocol error: too big mbulk count string");
    }

    #[test]
    fn limits_are_configurable() {
        let limits = Limits {
            max_bulk_len: 4,
            max_multibulk_len: 2,
            max_inline_len: 8,
        };
        let mut args = Vec::new();
        let r = parse_request(b"*1\r\n$5\r\nhello\r\n", &limits, &mut args);
        assert_eq!(r, Err(ProtocolError::InvalidBulkLength));
        let r = parse_request(b"*3\r\n", &limits, &mut args);
        assert_eq!(r, Err(ProtocolError::InvalidMultibulkLength));
        let r = parse_request(b"PING PING PING", &limits, &mut args);
        assert_eq!(r, Err(ProtocolError::InlineTooBig));
    }

    #[test]
    fn inline_commands() {
        assert_eq!(parse(b"PING\r\n").unwrap(), Some((v(&["PING"]), 6)));
        assert_eq!(
            parse(b"set  a   b\n").unwrap(),
            Some((v(&["set", "a", "b"]), 11))
        );
        assert_eq!(parse(b"\r\n").unwrap(), Some((vec![], 2)));
        assert_eq!(parse(b"PING").unwrap(), None);
        let (args, _) = parse(b"set \"a b\" 'c\\'d' \"\\x41\\n\"\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            args,
            vec![
                b"set".to_vec(),
                b"a b".to_vec(),
                b"c'd".to_vec(),
                b"A\n".to_vec()
            ]
        );
        let (args, _) = parse(b"foo\"bar\"\r\n").unwrap().unwrap();
        assert_eq!(args, vec![b"foobar".to_vec()]);
        assert!(parse(b"\"a\"b\r\n").is_err());
    }

    #[test]
    fn size_hint_knows_a_big_value_from_its_header() {
        let mut req = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n".to_vec();
        let header = req.len();
        req.extend_from_slice(&[b'x'; 10]);
        assert_eq!(request_size_hint(&req), Some(header + 100_002));
        assert_eq!(request_size_hint(b"*2\r\n$3\r\nGET"), Some(13));
        assert_eq!(request_size_hint(b"PING\r\n"), None);
    }

    #[test]
    fn strict_integers() {
        assert_eq!(parse_i64_strict(b"0"), Some(0));
        assert_eq!(parse_i64_strict(b"-12"), Some(-12));
        assert_eq!(parse_i64_strict(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64_strict(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b"01",
            b"-0",
            b" 1",
            b"1 ",
            b"9223372036854775808",
        ] {
            assert_eq!(parse_i64_strict(bad), None, "{:?}", bad);
        }
    }
}
