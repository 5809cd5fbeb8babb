//! What the collection SCANs (HSCAN, SSCAN, ZSCAN) share: the cursor as Redis reads it,
//! the MATCH and COUNT options, and the reply. Like Redis, a command checks the cursor
//! first, then the key, then the options ([`parse_opts`] keeps its error for that).

use bytes::Bytes;
use coreshard_protocol::Value as Resp;

use super::longdouble::is_space;
use super::parse_int;
use super::strings::{err, NOT_INT, SYNTAX};
use crate::glob::glob_match;
use crate::server::ops::OpResult;
use crate::server::ArgList;

/// A SCAN cursor as Redis reads it (`strtoul`, base 10): no leading space, the whole
/// argument (up to a NUL byte), no overflow; `-n` wraps, an empty argument is 0.
pub(crate) fn parse_cursor(b: &[u8]) -> Option<u64> {
    let b = match b.iter().position(|&c| c == 0) {
        Some(end) => &b[..end],
        None => b,
    };
    if b.is_empty() {
        return Some(0);
    }
    if is_space(b[0]) {
        return None;
    }
    let (neg, digits) = match b[0] {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(if neg { v.wrapping_neg() } else { v })
}

/// MATCH and COUNT.
pub(crate) struct Opts<'a> {
    /// The pattern (`*`, matching everything, is dropped).
    pattern: Option<&'a [u8]>,
    /// About how many elements one call visits.
    pub count: usize,
}

impl Opts<'_> {
    /// Whether an element passes MATCH.
    pub fn matches(&self, item: &[u8]) -> bool {
        self.pattern.is_none_or(|p| glob_match(p, item, false))
    }
}

/// The options from argument `from` on, or the error to answer (after the key's check).
pub(crate) fn parse_opts(a: &dyn ArgList, from: usize) -> Result<Opts<'_>, OpResult> {
    let mut opts = Opts {
        pattern: None,
        count: 10,
    };
    let mut i = from;
    while i < a.len() {
        let more = i + 1 < a.len();
        if a.is(i, "COUNT") && more {
            match parse_int(a.arg(i + 1)) {
                None => return Err(err(NOT_INT)),
                Some(c) if c < 1 => return Err(err(SYNTAX)),
                Some(c) => opts.count = usize::try_from(c).unwrap_or(usize::MAX),
            }
        } else if a.is(i, "MATCH") && more {
            let p = a.arg(i + 1);
            opts.pattern = (p != b"*").then_some(p);
        } else {
            return Err(err(SYNTAX));
        }
        i += 2;
    }
    Ok(opts)
}

/// `[next cursor, [items]]`.
pub(crate) fn reply(next: u64, items: Vec<Resp>) -> OpResult {
    OpResult::Reply(Resp::Array(vec![
        Resp::Bulk(Bytes::from(next.to_string())),
        Resp::Array(items),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_parse_like_strtoul() {
        assert_eq!(parse_cursor(b"0"), Some(0));
        assert_eq!(parse_cursor(b""), Some(0));
        assert_eq!(parse_cursor(b"+7"), Some(7));
        assert_eq!(parse_cursor(b"-1"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"12\x00junk"), Some(12));
        assert_eq!(parse_cursor(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"18446744073709551616"), None);
        for bad in [&b" 1"[..], b"1 ", b"x", b"-", b"1.5"] {
            assert_eq!(parse_cursor(bad), None, "{bad:?}");
        }
    }
}
