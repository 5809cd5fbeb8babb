//! Pre-flight checks, run before any load: a benchmark of a server that is not there, or
//! that refuses the workload, must fail in a second with the reason, not print a table of
//! nothing after the whole duration.
//!
//! Each target gets a fresh blocking connection (plain `std::net`, nothing shared with the
//! measuring engine): it must answer PING, then one real request of every command the
//! workload sends without an error reply; in pub/sub mode a SUBSCRIBE must be confirmed
//! and a PUBLISH on a second connection must be delivered to it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use coreshard_protocol::Value;

use crate::reply::next_frame;
use crate::workload::{Generator, Workload};

/// One blocking connection with a deadline per reply.
struct Probe {
    stream: TcpStream,
    buf: Vec<u8>,
    timeout: Duration,
    what: String,
}

impl Probe {
    fn connect(what: &str, addr: SocketAddr, timeout: Duration) -> Result<Self, String> {
        let stream = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| format!("{what}: cannot connect: {e}"))?;
        stream.set_nodelay(true).ok();
        Ok(Probe {
            stream,
            buf: Vec::new(),
            timeout,
            what: what.to_string(),
        })
    }

    fn send(&mut self, request: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(request)
            .map_err(|e| format!("{}: cannot send: {e}", self.what))
    }

    /// The next complete reply (its bytes) and whether it is an error.
    fn reply(&mut self, waiting_for: &str) -> Result<(Vec<u8>, bool), String> {
        let deadline = Instant::now() + self.timeout;
        let mut chunk = [0u8; 16384];
        loop {
            match next_frame(&self.buf) {
                Ok(Some(f)) => {
                    let frame: Vec<u8> = self.buf.drain(..f.len).collect();
                    return Ok((frame, f.error));
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(format!(
                        "{}: not a RESP reply to {waiting_for} ({e}): {:?}",
                        self.what,
                        String::from_utf8_lossy(&self.buf[..self.buf.len().min(80)])
                    ))
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "{}: no reply to {waiting_for} within {:.1} s",
                    self.what,
                    self.timeout.as_secs_f64()
                ));
            }
            self.stream.set_read_timeout(Some(left)).ok();
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(format!(
                        "{}: the server closed the connection instead of answering {waiting_for}",
                        self.what
                    ))
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(format!(
                        "{}: reading the reply to {waiting_for}: {e}",
                        self.what
                    ))
                }
            }
        }
    }

    /// Send `request` and require a reply that is not an error.
    fn ask(&mut self, request: &[u8], name: &str) -> Result<Vec<u8>, String> {
        self.send(request)?;
        let (reply, error) = self.reply(name)?;
        if error {
            return Err(format!(
                "{}: the server refused {name}: {}",
                self.what,
                first_line(&reply)
            ));
        }
        Ok(reply)
    }
}

/// `name (addr)`, or just the address when that is the name.
fn label(name: &str, addr: SocketAddr) -> String {
    if name == addr.to_string() {
        name.to_string()
    } else {
        format!("{name} ({addr})")
    }
}

/// A reply's first line, for messages.
fn first_line(frame: &[u8]) -> String {
    let text = String::from_utf8_lossy(frame);
    text.lines()
        .next()
        .unwrap_or_default()
        .trim_end()
        .to_string()
}

/// RESP-encode a command.
fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The target answers PING and one request of every command in `workload`.
pub fn requests(
    name: &str,
    addr: SocketAddr,
    workload: &Workload,
    timeout: Duration,
) -> Result<(), String> {
    let what = label(name, addr);
    let mut p = Probe::connect(&what, addr, timeout)?;
    p.ask(&command(&[b"PING"]), "PING")?;
    let mut gen = Generator::new(workload, 0xc4ec);
    for (kind, (cmd, _, _)) in workload.commands.iter().enumerate() {
        let mut req = Vec::new();
        gen.encode(workload, kind, &mut req);
        p.ask(&req, &format!("the workload's {cmd}"))?;
    }
    Ok(())
}

/// The target answers PING, confirms a SUBSCRIBE to `channel`, and delivers a PUBLISH on
/// it to the subscriber.
pub fn pubsub(
    name: &str,
    addr: SocketAddr,
    channel: &str,
    timeout: Duration,
) -> Result<(), String> {
    let what = label(name, addr);
    let mut sub = Probe::connect(&what, addr, timeout)?;
    sub.ask(&command(&[b"PING"]), "PING")?;
    let reply = sub.ask(
        &command(&[b"SUBSCRIBE", channel.as_bytes()]),
        &format!("SUBSCRIBE {channel} (pub/sub mode needs it)"),
    )?;
    if !is_push(&reply, b"subscribe") {
        return Err(format!(
            "{what}: SUBSCRIBE {channel} was not confirmed (pub/sub mode needs it): got {}",
            first_line(&reply)
        ));
    }
    let mut publisher = Probe::connect(&what, addr, timeout)?;
    let payload = b"coreshard-bench pre-flight check";
    publisher.ask(
        &command(&[b"PUBLISH", channel.as_bytes(), payload]),
        &format!("PUBLISH {channel} (pub/sub mode needs it)"),
    )?;
    loop {
        let (msg, _) = sub.reply(&format!("a message published on {channel}"))?;
        if is_push(&msg, b"message") {
            return Ok(());
        }
    }
}

/// Whether `frame` is a pub/sub array or push whose first element is `kind`.
fn is_push(frame: &[u8], kind: &[u8]) -> bool {
    match coreshard_protocol::parse_value(frame) {
        Ok(Some((Value::Array(items) | Value::Push(items), _))) => {
            matches!(items.first(), Some(Value::Bulk(b)) if b.eq_ignore_ascii_case(kind))
        }
        _ => false,
    }
}

/// An output file can be written: its directory exists and it is not a directory.
pub fn output(option: &str, path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return Err(format!("{option} {}: is a directory", path.display()));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!(
            "{option} {}: directory {} does not exist",
            path.display(),
            dir.display()
        ));
    }
    let meta = std::fs::metadata(dir).map_err(|e| format!("{option} {}: {e}", path.display()))?;
    if meta.permissions().readonly() {
        return Err(format!(
            "{option} {}: directory {} is read-only",
            path.display(),
            dir.display()
        ));
    }
    Ok(())
}
