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
/// `Ok(None)` means more bytes are needed; nothing was consumed and `args` is empty.
///
/// Every call starts from the first byte. A server that calls it again as more bytes of
/// the same request arrive should use [`parse_request_resume`] instead, which does the
/// same work once in total instead of once per call.
pub fn parse_request<'a>(
    buf: &'a [u8],
    limits: &Limits,
    args: &mut Vec<Cow<'a, [u8]>>,
) -> Result<Option<usize>, ProtocolError> {
    args.clear();
    let mut progress = Progress::default();
    let result = match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_multibulk(buf, limits, &mut progress, |start, end| {
            args.push(Cow::Borrowed(&buf[start..end]));
        }),
        Some(_) => parse_inline(buf, limits, &mut progress, args),
    };
    if !matches!(result, Ok(Some(_))) {
        args.clear();
    }
    result
}

/// How far [`parse_request_resume`] got in an incomplete request: one per connection.
///
/// Offsets are relative to the start of the request, which stay valid because the caller
/// passes the same request start (its unconsumed input) again with new bytes appended.
/// Idle, it is a dozen words and owns no memory (`Default` does not allocate); while a
/// request is pending it holds two offsets per complete argument.
#[derive(Debug, Clone, Default)]
pub struct ParseState {
    progress: Progress,
    /// `(start, end)` of each complete argument of the pending multibulk request.
    offsets: Vec<(usize, usize)>,
    /// Length of the input at the last call; a shorter input means the caller broke the
    /// contract, and the state is dropped instead of trusting stale offsets.
    seen: usize,
}

/// The resumable part of a parse, shared by [`parse_request`] (fresh each call) and
/// [`parse_request_resume`] (kept in [`ParseState`]).
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    /// Announced argument count; 0 until the `*<count>` line is parsed (a count of 0 or
    /// less completes the request at once, so 0 never means "pending").
    count: usize,
    /// Arguments complete so far.
    done: usize,
    /// Start of the next element (its `$` line), once the count line is parsed.
    pos: usize,
    /// Where the search for the current line's end resumes: bytes before it were searched.
    scan: usize,
    /// Payload bounds of the current argument once its `$<len>` line is parsed.
    bulk: Option<(usize, usize)>,
    /// Bytes examined by line-end searches and number parsing (statistics; kept on reset).
    examined: usize,
}

impl ParseState {
    /// An idle state; the same as `ParseState::default()`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forget the pending request. [`parse_request_resume`] does this itself when a request
    /// completes or fails; call it when the input is discarded some other way (for example
    /// when the connection consumes everything because it is closing).
    pub fn reset(&mut self) {
        self.progress = Progress {
            examined: self.progress.examined,
            ..Progress::default()
        };
        self.seen = 0;
        // Keep a small buffer for the next request; give a big one back.
        if self.offsets.capacity() > 1024 {
            self.offsets = Vec::new();
        } else {
            self.offsets.clear();
        }
    }

    /// How many bytes the pending multibulk request takes at least, from the headers parsed
    /// so far: the end of the argument whose payload is awaited, or else the bytes already
    /// received. Lets a server size its buffer once for a large value. `None` when idle,
    /// for inline requests and before the `*<count>` line is complete. After an `Ok(None)`
    /// it equals [`request_size_hint`] on the same input, without rescanning it.
    pub fn size_hint(&self) -> Option<usize> {
        let p = &self.progress;
        if p.count == 0 {
            return None;
        }
        Some(match p.bulk {
            Some((_, end)) => end.saturating_add(2),
            None => self.seen,
        })
    }

    /// Whether a request is partly parsed (its start was seen, its end not yet).
    pub fn pending(&self) -> bool {
        self.seen != 0 || self.progress.count != 0
    }

    /// Total bytes examined (searched for line ends, parsed as numbers) by every
    /// [`parse_request_resume`] call with this state; not cleared by [`ParseState::reset`].
    /// Bulk payloads are skipped by length and not counted. Resuming keeps this linear in
    /// the input size however the input is split.
    pub fn examined(&self) -> usize {
        self.progress.examined
    }
}

/// [`parse_request`] for input that arrives in pieces: the same results, errors and limits,
/// but an incomplete request is resumed from `state` instead of parsed again from its first
/// byte, so the total work is linear in the request's size however it is split.
///
/// Contract: `buf` always starts at the start of the request `state` describes (the
/// unconsumed input), with any new bytes appended. After `Ok(Some(_))` or `Err(_)` the
/// state is reset, ready for the next request. `args` is filled only on `Ok(Some(_))`.
/// Input shorter than at the previous call breaks the contract and restarts the parse.
pub fn parse_request_resume<'a>(
    buf: &'a [u8],
    limits: &Limits,
    state: &mut ParseState,
    args: &mut Vec<Cow<'a, [u8]>>,
) -> Result<Option<usize>, ProtocolError> {
    args.clear();
    if buf.len() < state.seen {
        state.reset();
    }
    let ParseState {
        progress, offsets, ..
    } = state;
    let result = match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_multibulk(buf, limits, progress, |start, end| {
            offsets.push((start, end));
        }),
        Some(_) => parse_inline(buf, limits, progress, args),
    };
    match result {
        Ok(None) => state.seen = buf.len(),
        Ok(Some(_)) => {
            args.extend(
                state
                    .offsets
                    .iter()
                    .map(|&(start, end)| Cow::Borrowed(&buf[start..end])),
            );
            state.reset();
        }
        Err(_) => {
            args.clear();
            state.reset();
        }
    }
    result
}

/// How many bytes the (incomplete) multibulk request at the start of `buf` takes at least,
/// from the headers received so far: lets a server size its buffer once for a large value
/// instead of growing it chunk by chunk. `None` for inline or unparseable input.
///
/// This scans every header in `buf`; a caller that parses with [`parse_request_resume`]
/// gets the same number from [`ParseState::size_hint`] without a scan.
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
    // Header lines are short (`*3`, `$5`): the first bytes are looked at directly, which
    // is cheaper than a vector search for a line of a few bytes; `memchr` beyond.
    let mut at = from;
    let direct = buf.len().min(from.saturating_add(8));
    while at < direct {
        if buf[at] == b'\r' {
            match buf.get(at + 1) {
                Some(b'\n') => return Some(at),
                Some(_) => {}
                None => return None,
            }
        }
        at += 1;
    }
    if at >= buf.len() {
        return None;
    }
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

impl Progress {
    /// [`find_crlf`] from `from`, resuming where the previous search of this line stopped.
    fn line_end(&mut self, buf: &[u8], from: usize) -> Option<usize> {
        let from = from.max(self.scan);
        match find_crlf(buf, from) {
            Some(cr) => {
                self.examined += cr + 2 - from;
                self.scan = 0;
                Some(cr)
            }
            None => {
                self.examined += buf.len() - from;
                // No CRLF starts before the last byte, which may be a `\r`.
                self.scan = from.max(buf.len().saturating_sub(1));
                None
            }
        }
    }

    /// [`parse_i64_strict`], counted.
    fn number(&mut self, digits: &[u8]) -> Option<i64> {
        self.examined += digits.len();
        parse_i64_strict(digits)
    }
}

/// Parse (or continue) the multibulk request in `buf`, reporting each complete argument's
/// payload bounds to `push` once, in order.
fn parse_multibulk(
    buf: &[u8],
    limits: &Limits,
    p: &mut Progress,
    mut push: impl FnMut(usize, usize),
) -> Result<Option<usize>, ProtocolError> {
    if p.count == 0 {
        let Some(cr) = p.line_end(buf, 1) else {
            if buf.len() > limits.max_inline_len {
                return Err(ProtocolError::MultibulkCountTooBig);
            }
            return Ok(None);
        };
        let count = p
            .number(&buf[1..cr])
            .ok_or(ProtocolError::InvalidMultibulkLength)?;
        if count > limits.max_multibulk_len as i64 {
            return Err(ProtocolError::InvalidMultibulkLength);
        }
        p.pos = cr + 2;
        if count <= 0 {
            return Ok(Some(p.pos));
        }
        // Never trust the announced count for allocation: it may be a lie. Nothing is
        // reserved from it; storage grows with the arguments that actually arrive.
        p.count = count as usize;
    }
    while p.done < p.count {
        let (start, end) = match p.bulk {
            Some(bounds) => bounds,
            None => {
                let Some(&first) = buf.get(p.pos) else {
                    return Ok(None);
                };
                if first != b'$' {
                    return Err(ProtocolError::ExpectedBulk(first));
                }
                let Some(cr) = p.line_end(buf, p.pos + 1) else {
                    if buf.len() - p.pos > limits.max_inline_len {
                        return Err(ProtocolError::BulkCountTooBig);
                    }
                    return Ok(None);
                };
                let len = match p.number(&buf[p.pos + 1..cr]) {
                    Some(n) if n >= 0 && n as u64 <= limits.max_bulk_len as u64 => n as usize,
                    _ => return Err(ProtocolError::InvalidBulkLength),
                };
                let start = cr + 2;
                let bounds = (start, start.saturating_add(len));
                p.bulk = Some(bounds);
                bounds
            }
        };
        // Like Redis, the two bytes after the payload are skipped, not checked.
        if buf.len() < end.saturating_add(2) {
            return Ok(None);
        }
        push(start, end);
        p.done += 1;
        p.pos = end + 2;
        p.bulk = None;
    }
    Ok(Some(p.pos))
}

fn parse_inline<'a>(
    buf: &'a [u8],
    limits: &Limits,
    p: &mut Progress,
    args: &mut Vec<Cow<'a, [u8]>>,
) -> Result<Option<usize>, ProtocolError> {
    // Bytes before `p.scan` were searched for `\n` by an earlier call.
    let from = p.scan.min(buf.len());
    let Some(nl) = memchr::memchr(b'\n', &buf[from..]).map(|off| from + off) else {
        p.examined += buf.len() - from;
        p.scan = buf.len();
        if buf.len() > limits.max_inline_len {
            return Err(ProtocolError::InlineTooBig);
        }
        return Ok(None);
    };
    p.examined += nl + 1 - from;
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
    fn resume_state_is_dropped_when_a_request_ends() {
        let mut state = ParseState::new();
        let mut wire = b"*3000\r\n".to_vec();
        for _ in 0..2000 {
            wire.extend_from_slice(b"$1\r\nx\r\n");
        }
        let r = parse_request_resume(&wire, &Limits::default(), &mut state, &mut Vec::new());
        assert_eq!(r, Ok(None));
        assert_eq!((state.progress.done, state.offsets.len()), (2000, 2000));
        assert_eq!(state.size_hint(), Some(wire.len()));
        // The request fails: nothing of it is kept, and a big offset buffer is given back.
        wire.extend_from_slice(b"$-5\r\n");
        let mut args = Vec::new();
        let r = parse_request_resume(&wire, &Limits::default(), &mut state, &mut args);
        assert_eq!(r, Err(ProtocolError::InvalidBulkLength));
        assert!(args.is_empty());
        assert_eq!(state.offsets.capacity(), 0);
        assert_eq!(
            (state.progress.count, state.progress.done, state.seen),
            (0, 0, 0)
        );
        assert!(state.examined() >= 2000 * 4, "statistics survive a reset");
        // A complete request leaves the state idle too.
        let r = parse_request_resume(
            b"*1\r\n$4\r\nPING\r\n",
            &Limits::default(),
            &mut state,
            &mut args,
        );
        assert_eq!(r, Ok(Some(14)));
        assert_eq!(
            (state.progress.count, state.offsets.len(), state.seen),
            (0, 0, 0)
        );
        assert_eq!(state.size_hint(), None);
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
