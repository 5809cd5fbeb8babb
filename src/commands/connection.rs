//! PING, ECHO, QUIT, HELLO, SELECT, AUTH.

use coreshard_engine::{ConnId, Ctx};
use coreshard_protocol::Protocol;

use super::{parse_int, Args};
use crate::server::Server;

/// Version reported to clients that gate features on Redis's version.
pub const REDIS_COMPAT_VERSION: &str = "7.2.0";

pub fn ping(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    let subscribed = ctx
        .state(conn)
        .is_some_and(|st| st.subs.is_some() && st.proto == coreshard_protocol::Protocol::Resp2);
    if subscribed && args.len() <= 2 {
        // RESP2 subscribed mode answers PING as Redis does: ["pong", message or ""].
        let msg: &[u8] = args.get(1).map_or(b"", |a| &a[..]);
        return s.reply(ctx, conn, |e| {
            e.array(2);
            e.bulk(b"pong");
            e.bulk(msg);
        });
    }
    match args.len() {
        1 => s.reply(ctx, conn, |e| e.simple("PONG")),
        2 => s.reply(ctx, conn, |e| e.bulk(&args[1])),
        _ => s.error(
            ctx,
            conn,
            "ERR wrong number of arguments for 'ping' command",
        ),
    }
}

pub fn echo(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    s.reply(ctx, conn, |e| e.bulk(&args[1]));
}

pub fn quit(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, _args: Args) {
    s.reply(ctx, conn, |e| e.simple("OK"));
    if let Some(state) = ctx.state(conn) {
        state.closing = true;
    }
    ctx.close(conn);
}

pub fn select(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    match parse_int(&args[1]) {
        None => s.error(ctx, conn, "ERR value is not an integer or out of range"),
        Some(0) => s.reply(ctx, conn, |e| e.simple("OK")),
        Some(_) => s.error(ctx, conn, "ERR DB index is out of range"),
    }
}

/// Check a password the way Redis's default user does. `Err` holds the error to send.
fn check_password(s: &Server, user: Option<&[u8]>, pass: &[u8]) -> Result<(), &'static str> {
    match &s.config.runtime.requirepass() {
        None if user.is_none() => Err("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"),
        None => {
            // No password: the default user accepts any password, other users do not exist.
            if user == Some(&b"default"[..]) { Ok(()) } else { Err("WRONGPASS invalid username-password pair or user is disabled.") }
        }
        Some(p) => {
            let user_ok = user.is_none_or(|u| u == b"default");
            if user_ok && p.as_bytes() == pass {
                Ok(())
            } else {
                Err("WRONGPASS invalid username-password pair or user is disabled.")
            }
        }
    }
}

pub fn auth(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    let (user, pass) = match args.len() {
        2 => (None, &args[1][..]),
        3 => (Some(&args[1][..]), &args[2][..]),
        _ => return s.error(ctx, conn, "ERR syntax error"),
    };
    match check_password(s, user, pass) {
        Ok(()) => {
            if let Some(st) = ctx.state(conn) {
                st.authed = true;
            }
            s.reply(ctx, conn, |e| e.simple("OK"));
        }
        Err(msg) => s.error(ctx, conn, msg),
    }
}

pub fn hello(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    let mut proto = None;
    if args.len() >= 2 {
        match parse_int(&args[1]) {
            Some(2) => proto = Some(Protocol::Resp2),
            Some(3) => proto = Some(Protocol::Resp3),
            Some(_) => return s.error(ctx, conn, "NOPROTO unsupported protocol version"),
            None => {
                return s.error(
                    ctx,
                    conn,
                    "ERR Protocol version is not an integer or out of range",
                )
            }
        }
    }
    let mut i = 2;
    let mut name = None;
    let mut authed_now = false;
    while i < args.len() {
        let more = args.len() - i - 1;
        if args[i].eq_ignore_ascii_case(b"AUTH") && more >= 2 {
            if let Err(msg) = check_password(s, Some(&args[i + 1]), &args[i + 2]) {
                return s.error(ctx, conn, msg);
            }
            authed_now = true;
            i += 3;
        } else if args[i].eq_ignore_ascii_case(b"SETNAME") && more >= 1 {
            if !super::client::valid_client_name(&args[i + 1]) {
                return s.error(
                    ctx,
                    conn,
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                );
            }
            name = Some(bytes::Bytes::copy_from_slice(&args[i + 1]));
            i += 2;
        } else {
            let msg = format!(
                "ERR Syntax error in HELLO option '{}'",
                super::sanitize(&args[i], 128)
            );
            return s.error(ctx, conn, &msg);
        }
    }
    let Some(state) = ctx.state(conn) else { return };
    if authed_now {
        state.authed = true;
    }
    if !state.authed {
        return s.error(ctx, conn, "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
    }
    if let Some(p) = proto {
        state.proto = p;
    }
    if let Some(n) = name {
        state.name = if n.is_empty() { None } else { Some(n) };
    }
    let id = state.id;
    let proto_num = if state.proto == Protocol::Resp3 { 3 } else { 2 };
    s.reply(ctx, conn, |e| {
        e.map(7);
        e.bulk(b"server");
        e.bulk(b"redis");
        e.bulk(b"version");
        e.bulk(REDIS_COMPAT_VERSION.as_bytes());
        e.bulk(b"proto");
        e.int(proto_num);
        e.bulk(b"id");
        e.int(id as i64);
        e.bulk(b"mode");
        e.bulk(b"standalone");
        e.bulk(b"role");
        e.bulk(b"master");
        e.bulk(b"modules");
        e.array(0);
    });
}
