//! Look-ahead over pipelined input: the first key of each of the next few complete
//! requests, so their map entries can be brought into the cache together
//! ([`crate::db::Db::prefetch`]) before the requests run one by one.
//!
//! It only reads: anything it does not recognise as a complete RESP array of bulk
//! strings ends the look-ahead, and a "key" that is not one (a command without keys) only
//! costs a lookup that finds nothing. Bounded: at most [`MAX_REQUESTS`] requests,
//! [`MAX_HEADERS`] length lines and [`MAX_BYTES`] bytes are looked at per input.

/// Requests looked ahead at most.
pub const MAX_REQUESTS: usize = 16;
/// Bytes looked ahead at most.
pub const MAX_BYTES: usize = 16 * 1024;
/// `*<n>` / `$<n>` lines parsed at most (a request of many tiny arguments ends it early).
pub const MAX_HEADERS: usize = 64;

/// The second element (the first key, for keyed commands) of each complete request at
/// the start of `data`, for up to [`MAX_REQUESTS`] requests; nothing for a single request
/// (there is nothing to overlap its lookup with).
pub fn first_keys(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut keys: [&[u8]; MAX_REQUESTS] = [&[]; MAX_REQUESTS];
    let (mut requests, mut n, mut pos) = (0, 0, 0);
    let mut headers = MAX_HEADERS;
    let data = &data[..data.len().min(MAX_BYTES)];
    while requests < MAX_REQUESTS {
        let Some((key, next)) = request(data, pos, &mut headers) else {
            break;
        };
        if let Some(key) = key {
            keys[n] = key;
            n += 1;
        }
        requests += 1;
        pos = next;
    }
    let n = if requests < 2 { 0 } else { n };
    keys.into_iter().take(n)
}

/// One complete request `*N\r\n` of bulk strings starting at `pos`: its second element
/// (if `N >= 2`) and where the next request starts.
/// Each length line parsed takes one of `headers`; none left ends the look-ahead.
fn request<'d>(
    data: &'d [u8],
    pos: usize,
    headers: &mut usize,
) -> Option<(Option<&'d [u8]>, usize)> {
    let (count, mut at) = header(data, pos, b'*', headers)?;
    let mut key = None;
    for i in 0..count {
        let (len, start) = header(data, at, b'$', headers)?;
        let end = start.checked_add(len)?;
        if data.get(end..end + 2)? != b"\r\n" {
            return None;
        }
        if i == 1 {
            key = Some(&data[start..end]);
        }
        at = end + 2;
    }
    Some((key, at))
}

/// `<prefix><digits>\r\n` at `pos`: the number and where what follows starts.
fn header(data: &[u8], pos: usize, prefix: u8, headers: &mut usize) -> Option<(usize, usize)> {
    *headers = headers.checked_sub(1)?;
    if *data.get(pos)? != prefix {
        return None;
    }
    let mut n: usize = 0;
    let mut at = pos + 1;
    loop {
        let c = *data.get(at)?;
        if c == b'\r' {
            break;
        }
        if !c.is_ascii_digit() || at - pos > 10 {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(usize::from(c - b'0'))?;
        at += 1;
    }
    if *data.get(at + 1)? != b'\n' {
        return None;
    }
    Some((n, at + 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(data: &[u8]) -> Vec<Vec<u8>> {
        first_keys(data).map(<[u8]>::to_vec).collect()
    }

    #[test]
    fn keys_of_complete_pipelined_requests() {
        let one = b"*3\r\n$3\r\nSET\r\n$2\r\nk1\r\n$1\r\nv\r\n";
        assert!(keys(one).is_empty(), "a single request is not looked ahead");
        let mut two = one.to_vec();
        two.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n*1\r\n$4\r\nPING\r\n");
        assert_eq!(keys(&two), vec![b"k1".to_vec(), b"key".to_vec()]);
        // Stops at a partial request, an inline command or garbage.
        let mut three = two.clone();
        three.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$2\r\nk3\r\n");
        assert_eq!(
            keys(&three),
            vec![b"k1".to_vec(), b"key".to_vec(), b"k3".to_vec()]
        );
        let partial = &three[..three.len() - 3];
        assert_eq!(keys(partial), vec![b"k1".to_vec(), b"key".to_vec()]);
        assert!(keys(b"GET a\r\nGET b\r\n").is_empty());
        assert!(keys(b"*2\r\n$99999999999999999999\r\n").is_empty());
    }

    #[test]
    fn bounded_by_length_lines() {
        // One request of many tiny arguments: the look-ahead gives up after MAX_HEADERS
        // length lines instead of walking all of them.
        let mut data = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*100000\r\n".to_vec();
        for _ in 0..1000 {
            data.extend_from_slice(b"$0\r\n\r\n");
        }
        assert_eq!(first_keys(&data).count(), 0);
        let mut headers = MAX_HEADERS;
        assert!(request(&data, 20, &mut headers).is_none());
        assert_eq!(headers, 0, "stopped by the line budget");
    }

    #[test]
    fn bounded_by_count() {
        let req = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
        let many: Vec<u8> = req.iter().copied().cycle().take(req.len() * 100).collect();
        assert_eq!(first_keys(&many).count(), MAX_REQUESTS);
    }
}
