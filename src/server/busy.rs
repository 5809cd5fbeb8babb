//! What a shard answers its own connections while a script holds it past
//! `lua-time-limit` (the engine's [`WhileBusy`], called from the script's instruction
//! hook through [`coreshard_engine::serve_while_busy`]).
//!
//! As in Redis: refusals that come before BUSY in Redis's order (unknown command, the
//! RESP2 subscribed context, NOAUTH, arity) are answered as usual; SCRIPT KILL and
//! FUNCTION KILL run; SHUTDOWN NOSAVE stops the script and the server; MULTI and DISCARD
//! run, and SCRIPT / FUNCTION are queued inside MULTI; everything else is answered
//! `-BUSY ...`, which inside MULTI also dooms the transaction, and EXEC is refused with
//! `EXECABORT ... because of: BUSY ...`, dropping it. The other commands Redis lets
//! through while busy (WATCH, UNWATCH, AUTH, HELLO, RESET, QUIT, FUNCTION STATS, and
//! EXEC or DISCARD with keys watched) need the whole server, so they and everything after
//! them on that connection wait for the script to end, in order.

use std::borrow::Cow;

use bytes::Bytes;
use coreshard_engine::{Ctx, WhileBusy};
use coreshard_protocol::{parse_request_resume, Limits, Protocol};

use super::conn::{ConnState, MultiState};
use super::ops::OpResult;
use super::{ArgList, Server};
use crate::commands::multi::Queued;
use crate::commands::{self, KeyedFn, Spec};
use crate::db::Db;

/// The answerer, made for each script run (a copy of the parse limits).
pub struct BusyAnswer {
    pub limits: Limits,
}

/// Run a keyed command on this shard's data (`db`); a script, which may run for long, runs
/// as long work so that the shard answers its other connections meanwhile.
pub fn run_keyed(
    ctx: &mut Ctx<Server>,
    db: &mut Db,
    limits: Limits,
    spec: &'static Spec,
    f: KeyedFn,
    now: u64,
    args: &dyn ArgList,
) -> OpResult {
    db.events.cmd = spec.name;
    if !spec.long {
        return crate::evict::run_keyed(db, spec, f, now, args);
    }
    ctx.long_work(&mut BusyAnswer { limits }, || {
        crate::evict::run_keyed(db, spec, f, now, args)
    })
}

/// What to do with one request while busy.
enum Verdict {
    /// Answer this error (which dooms an open transaction, as Redis's `rejectCommand`).
    Error(String),
    /// Answer this simple string.
    Simple(&'static str),
    /// Answer this error and leave the transaction state as it is.
    Plain(String),
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
                Verdict::Simple(s) => {
                    out.push(b'+');
                    out.extend_from_slice(s.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
                Verdict::Error(msg) | Verdict::Plain(msg) => {
                    crate::stats::note_error(&msg);
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

fn verdict(state: &mut ConnState, args: &[Cow<'_, [u8]>]) -> Verdict {
    let v = refusal_or_action(state, args);
    if let (Verdict::Error(_), Some(m)) = (&v, state.multi.as_mut()) {
        m.dirty = true;
    }
    v
}

fn refusal_or_action(state: &mut ConnState, args: &[Cow<'_, [u8]>]) -> Verdict {
    let Some(spec) = commands::lookup(&args[0]) else {
        return Verdict::Error(commands::unknown_command_error(args));
    };
    let in_multi = state.multi.is_some();
    // Redis's order of refusals: arity, NOAUTH, a no-multi command inside MULTI, the RESP2
    // subscribed context, then BUSY.
    let full = commands::full_name(spec, args);
    let refusal = if let Some(r) = commands::early_refusal(spec, full, args) {
        Some(r.message)
    } else if !state.authed && !spec.no_auth {
        Some("NOAUTH Authentication required.".into())
    } else if in_multi && spec.flags.contains(&"no_multi") {
        Some("ERR Command not allowed inside a transaction".into())
    } else if state.subs.is_some()
        && state.proto == Protocol::Resp2
        && !commands::pubsub::allowed_while_subscribed(spec.name)
    {
        Some(commands::pubsub::subscribed_context_error(full))
    } else {
        None
    };
    if spec.name == "exec" {
        // EXEC is not let through while busy; a refused EXEC drops the transaction (and
        // its WATCHes, which need the shard: with any, EXEC waits for the script instead).
        if !state.watched.is_empty() {
            return Verdict::Wait;
        }
        state.multi = None;
        let why = refusal.unwrap_or_else(|| crate::script::busy_error_here().into());
        return Verdict::Plain(commands::multi::execabort(&why));
    }
    if let Some(msg) = refusal {
        return Verdict::Error(msg);
    }
    let sub = |s: &[u8]| args.len() == 2 && args[1].eq_ignore_ascii_case(s);
    match spec.name {
        // Inside MULTI, the commands Redis lets through while busy are queued as usual.
        "script" | "function" if in_multi => queue(state, spec, args),
        "script" if sub(b"kill") => kill(false),
        "function" if sub(b"kill") => kill(true),
        "shutdown" if args[1..].iter().any(|a| a.eq_ignore_ascii_case(b"nosave")) => shutdown(),
        "multi" if in_multi => Verdict::Plain("ERR MULTI calls can not be nested".into()),
        "multi" => {
            state.multi = Some(MultiState::default());
            Verdict::Simple("OK")
        }
        "discard" if !in_multi => Verdict::Plain("ERR DISCARD without MULTI".into()),
        "discard" if state.watched.is_empty() => {
            state.multi = None;
            Verdict::Simple("OK")
        }
        // FUNCTION STATS, WATCH, UNWATCH, AUTH, HELLO, RESET, QUIT, DISCARD with keys
        // watched: they need the server.
        "function" if sub(b"stats") => Verdict::Wait,
        _ if spec.flags.contains(&"allow_busy") && spec.name != "shutdown" => Verdict::Wait,
        _ => Verdict::Error(crate::script::busy_error_here().into()),
    }
}

/// Queue a command inside MULTI (only SCRIPT and FUNCTION get here, which MULTI takes).
fn queue(state: &mut ConnState, spec: &'static Spec, args: &[Cow<'_, [u8]>]) -> Verdict {
    if let Some(msg) = commands::multi::refuse_in_multi(spec) {
        return Verdict::Error(msg);
    }
    if let Some(m) = state.multi.as_mut() {
        m.queued.push(Queued {
            spec,
            args: args.iter().map(|a| Bytes::copy_from_slice(a)).collect(),
        });
    }
    Verdict::Simple("QUEUED")
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
        Ok(()) => Verdict::Simple("OK"),
        Err(e) => Verdict::Error(e.into()),
    }
}
