//! The Prometheus endpoint's side of a connection: connections accepted on the metrics
//! listener (`--metrics-port`) speak HTTP/1.1, never RESP. One bounded request per
//! connection: `GET /metrics` is answered with every shard's figures (gathered with the
//! same broadcast INFO uses) and the connection closes; anything else gets an error
//! status and closes too.

use coreshard_engine::{ConnId, Ctx};

use super::ops::Op;
use super::reply::Agg;
use super::Server;

/// The engine's index of the metrics listener (the first extra address).
pub const LISTENER: usize = 1;
/// Most bytes of request line and headers read before answering 431.
pub const MAX_HEAD: usize = 8 * 1024;
/// A metrics connection that has not sent a whole request by then is dropped.
pub const READ_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);
/// Timer cookies of metrics connections' read deadlines: this bit plus the connection.
pub const TIMER_BIT: u64 = 1 << 63;

/// An HTTP response with a plain-text body, closing the connection.
pub fn response(status: &str, extra_headers: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n{extra_headers}\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn error(status: &str, extra_headers: &str) -> Vec<u8> {
    let body = format!("{status}\n");
    response(
        status,
        extra_headers,
        "text/plain; charset=utf-8",
        body.as_bytes(),
    )
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// Not complete yet: read more.
    Incomplete,
    /// `GET /metrics` (a query string is ignored).
    Metrics,
    /// Answer this (an error status) and close.
    Refuse(Vec<u8>),
}

/// Read a request head from `data` (everything received so far).
pub fn parse(data: &[u8]) -> Request {
    let window = &data[..data.len().min(MAX_HEAD)];
    let end = window
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| window.windows(2).position(|w| w == b"\n\n"));
    let Some(end) = end else {
        if data.len() >= MAX_HEAD {
            return Request::Refuse(error("431 Request Header Fields Too Large", ""));
        }
        return Request::Incomplete;
    };
    let head = &window[..end];
    let line = head.split(|&b| b == b'\n').next().unwrap_or(b"");
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let [method, target, version] = parts[..] else {
        return Request::Refuse(error("400 Bad Request", ""));
    };
    if !version.starts_with(b"HTTP/1.") {
        return Request::Refuse(error("400 Bad Request", ""));
    }
    let path = target.split(|&b| b == b'?').next().unwrap_or(b"");
    if path != b"/metrics" {
        return Request::Refuse(error("404 Not Found", ""));
    }
    if method != b"GET" {
        return Request::Refuse(error("405 Method Not Allowed", "Allow: GET\r\n"));
    }
    Request::Metrics
}

impl Server {
    /// Input on a metrics connection: answer once a whole request head arrived.
    pub(super) fn on_http_data(
        &mut self,
        ctx: &mut Ctx<Server>,
        conn: ConnId,
        data: &[u8],
    ) -> usize {
        if ctx.state(conn).is_none_or(|s| s.closing) {
            return data.len();
        }
        match parse(data) {
            Request::Incomplete => return 0,
            Request::Refuse(bytes) => {
                ctx.write(conn, &bytes);
            }
            Request::Metrics => {
                // A shard stuck in a long script cannot report: say so instead of waiting.
                let busy = (0..self.shards)
                    .filter(|&s| s != self.shard)
                    .any(|s| crate::script::busy_reply(s).is_some());
                if busy {
                    ctx.write(
                        conn,
                        &error("503 Service Unavailable", "Retry-After: 1\r\n"),
                    );
                } else {
                    self.broadcast(
                        ctx,
                        conn,
                        || Op::Report,
                        Agg::Metrics {
                            reports: Vec::new(),
                        },
                    );
                }
            }
        }
        if let Some(s) = ctx.state(conn) {
            s.closing = true;
        }
        // Graceful: the reply still owed by the other shards goes out first.
        ctx.close(conn);
        data.len()
    }

    /// A metrics connection refused by protected mode.
    pub(super) fn http_forbidden(ctx: &mut Ctx<Server>, conn: ConnId) {
        ctx.write(conn, &error("403 Forbidden", ""));
    }

    /// A metrics connection's read deadline passed: drop it unless it is being answered.
    pub(super) fn http_deadline(&mut self, ctx: &mut Ctx<Server>, cookie: u64) {
        let conn = ConnId::from_u64(cookie & !TIMER_BIT);
        if ctx.state(conn).is_some_and(|s| s.http && !s.closing) {
            ctx.abort(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(r: Request) -> String {
        match r {
            Request::Refuse(b) => String::from_utf8_lossy(&b)
                .lines()
                .next()
                .unwrap_or("")
                .to_string(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn requests_and_refusals() {
        assert_eq!(
            parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Request::Metrics
        );
        assert_eq!(parse(b"GET /metrics?x=1 HTTP/1.0\n\n"), Request::Metrics);
        assert_eq!(parse(b"GET /metrics HTTP/1.1\r\nHost"), Request::Incomplete);
        assert_eq!(
            status(parse(b"GET / HTTP/1.1\r\n\r\n")),
            "HTTP/1.1 404 Not Found"
        );
        assert_eq!(
            status(parse(b"POST /metrics HTTP/1.1\r\n\r\n")),
            "HTTP/1.1 405 Method Not Allowed"
        );
        assert_eq!(status(parse(b"PING\r\n\r\n")), "HTTP/1.1 400 Bad Request");
        assert_eq!(
            status(parse(b"*1\r\n$4\r\nPING\r\n\r\n")),
            "HTTP/1.1 400 Bad Request"
        );
        let big = [
            b"GET /metrics HTTP/1.1\r\nX: ".as_slice(),
            &[b'a'; MAX_HEAD],
        ]
        .concat();
        assert_eq!(
            status(parse(&big)),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
        let r = response("200 OK", "", "text/plain", b"abc");
        assert!(String::from_utf8_lossy(&r).contains("Content-Length: 3\r\n"));
        assert!(r.ends_with(b"\r\n\r\nabc"));
    }
}
