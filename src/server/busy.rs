//! What a shard answers its own connections while a script holds it past
//! `lua-time-limit` (the engine's [`WhileBusy`], called from the script's instruction
//! hook through [`coreshard_engine::serve_while_busy`]).
//!
//! As in Redis: refusals that come before BUSY in Redis's order (unknown command, the
//! RESP2 subscribed context, NOAUTH, arity) are answered as usual; SCRIPT KILL and
//! FUNCTION KILL run; SHUTDOWN NOSAVE stops the script and the server; everything else is
//! answered `-BUSY ...`, which inside MULTI also makes EXEC fail (`EXECABORT`). The other
//! commands Redis lets through while busy (MULTI, EXEC's siblings, AUTH, HELLO, RESET,
//! QUIT, FUNCTION STATS, ...) need the whole server, so they and everything after them on
//! that connection simply wait for the script to end, in order.

use coreshard_engine::WhileBusy;
use coreshard_protocol::{parse_request_resume, Limits, Protocol};

use super::conn::ConnState;
use crate::commands;

/// The answerer, made for each script run (a copy of the parse limits).
pub struct BusyAnswer {
    pub limits: Limits,
}

/// What to do with one request while busy.
enum Verdict {
    /// Answer this error.
    Error(String),
    /// Answer this status line.
    Ok,
    /// Leave this request and everything after it for when the script is over.
    Wait,
}

impl WhileBusy<ConnState> for BusyAnswer {
    fn on_data(&mut self, state: &mut ConnState, data: &[u8], out: &mut Vec<u8>) -> usize {
        if state.http || state.closing || state.blocked.is_some() {
            return 0;
        }
        let mut used = 0;
        let mut args = Vec::new();
        while used < data.len() {
            if !state.authed && super::preauth::violation(&data[used..]).is_some() {
                // Dealt with (and the connection closed) once the script is over.
                break;
            }
            args.clear();
            let n = match parse_request_resume(
                &data[used..],
                &self.limits,
                &mut state.parse,
                &mut args,
            ) {
                Ok(Some(n)) => n,
                // Incomplete (kept, parsed on from here next time) or malformed (the
                // error and the close come after the script).
                Ok(None) | Err(_) => break,
            };
            if args.is_empty() {
                used += n;
                continue;
            }
            match verdict(state, &args) {
                Verdict::Wait => {
                    // Parsed again from its first byte later.
                    state.parse.reset();
                    break;
                }
                Verdict::Ok => out.extend_from_slice(b"+OK\r\n"),
                Verdict::Error(msg) => {
                    crate::stats::note_error(&msg);
                    if let Some(m) = state.multi.as_mut() {
                        m.dirty = true;
                    }
                    out.push(b'-');
                    out.extend_from_slice(msg.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
            }
            used += n;
        }
        used
    }
}

fn verdict(state: &ConnState, args: &[std::borrow::Cow<'_, [u8]>]) -> Verdict {
    let Some(spec) = commands::lookup(&args[0]) else {
        return Verdict::Error(commands::unknown_command_error(args));
    };
    if state.subs.is_some()
        && state.proto == Protocol::Resp2
        && !commands::pubsub::allowed_while_subscribed(spec.name)
    {
        return Verdict::Error(format!(
            "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
            spec.name
        ));
    }
    if !state.authed && !spec.no_auth {
        return Verdict::Error("NOAUTH Authentication required.".into());
    }
    if !spec.arity_ok(args.len()) {
        return Verdict::Error(format!(
            "ERR wrong number of arguments for '{}' command",
            spec.name
        ));
    }
    let sub = |s: &[u8]| args.len() == 2 && args[1].eq_ignore_ascii_case(s);
    match spec.name {
        "script" if sub(b"kill") => kill(false),
        "function" if sub(b"kill") => kill(true),
        "function" if sub(b"stats") => Verdict::Wait,
        "shutdown" if args[1..].iter().any(|a| a.eq_ignore_ascii_case(b"nosave")) => shutdown(),
        _ if spec.flags.contains(&"allow_busy") && spec.name != "shutdown" => Verdict::Wait,
        _ => Verdict::Error(crate::script::busy_error_here().into()),
    }
}

/// SHUTDOWN NOSAVE while busy: stop the script (see `script::abort_for_shutdown`) and the
/// server; the client sees its connection close, as with Redis.
fn shutdown() -> Verdict {
    crate::script::abort_for_shutdown();
    tracing::warn!(
        "SHUTDOWN NOSAVE while a script is busy: stopping it without journaling its writes"
    );
    if let Err(e) = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGTERM)
    {
        return Verdict::Error(format!("ERR could not shut down: {e}"));
    }
    Verdict::Wait
}

fn kill(function: bool) -> Verdict {
    match crate::script::kill(function) {
        Ok(()) => Verdict::Ok,
        Err(e) => Verdict::Error(e.into()),
    }
}
