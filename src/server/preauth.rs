//! Limits on what a client that has not authenticated may make the server buffer, as
//! Redis applies them: at most 10 arguments of at most 16 KB each. Checked before a
//! request is parsed or buffered, so a stranger cannot make the server hold a 400 MB value
//! just to answer `-NOAUTH`.

/// Most arguments in one request before AUTH.
const MAX_MULTIBULK: i64 = 10;
/// Largest argument before AUTH.
const MAX_BULK: i64 = 16 * 1024;

/// Redis's error for the first header of the request at the start of `buf` that breaks the
/// limits. Scans only headers already received; the request is at most
/// 10 × 16 KB while within limits, so a scan is bounded.
pub fn violation(buf: &[u8]) -> Option<&'static str> {
    if buf.first() != Some(&b'*') {
        return None; // inline requests are bounded by the inline-length limit
    }
    let (count, mut pos) = header(buf, 0)?;
    if count > MAX_MULTIBULK {
        return Some("ERR Protocol error: unauthenticated multibulk length");
    }
    for _ in 0..count.max(0) {
        if buf.get(pos) != Some(&b'$') {
            return None; // malformed or incomplete: the parser reports it
        }
        let (len, next) = header(buf, pos)?;
        if len > MAX_BULK {
            return Some("ERR Protocol error: unauthenticated bulk length");
        }
        pos = next.checked_add(len.max(0) as usize + 2)?;
        if pos > buf.len() {
            return None;
        }
    }
    None
}

/// The number in the `*N\r\n` or `$N\r\n` header at `at`, and where the line ends.
fn header(buf: &[u8], at: usize) -> Option<(i64, usize)> {
    let line = buf.get(at + 1..)?;
    let end = line.iter().take(32).position(|&b| b == b'\r')?;
    let n = std::str::from_utf8(&line[..end]).ok()?.parse().ok()?;
    Some((n, at + 1 + end + 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_match_redis() {
        assert_eq!(
            violation(b"*11\r\n"),
            Some("ERR Protocol error: unauthenticated multibulk length")
        );
        assert_eq!(violation(b"*10\r\n"), None);
        assert_eq!(
            violation(b"*2\r\n$4\r\nPING\r\n$16385\r\n"),
            Some("ERR Protocol error: unauthenticated bulk length")
        );
        assert_eq!(violation(b"*2\r\n$4\r\nPING\r\n$16384\r\n"), None);
        assert_eq!(violation(b"*2\r\n$4\r\nPI"), None);
        assert_eq!(violation(b"PING\r\n"), None);
    }
}
