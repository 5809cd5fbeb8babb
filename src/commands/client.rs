//! CLIENT: the calling connection's own settings (ID, GETNAME, SETNAME, SETINFO, INFO) and
//! the server's clients, which live on every shard: LIST and KILL are broadcast with a
//! [`Filter`] and their parts merged; UNBLOCK goes to the shard its id names.

use std::borrow::Cow;

use bytes::Bytes;
use coreshard_engine::{ConnId, ConnMeta, Ctx};
use coreshard_protocol::Protocol;

use super::{sanitize, unknown_subcommand_error, Args};
use crate::server::ops::Op;
use crate::server::reply::Agg;
use crate::server::{ConnState, Server};

/// Which clients a CLIENT LIST or KILL names (Redis 7.0's filters); the default names all.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Client ids (LIST ID ..., KILL ID).
    ids: Option<Vec<u64>>,
    kind: Option<Kind>,
    /// The peer's `ip:port`, as CLIENT LIST shows it.
    addr: Option<String>,
    /// The connection's own `ip:port`.
    laddr: Option<String>,
    /// KILL: the caller's id, spared unless SKIPME no (or the old form names it).
    caller: u64,
    skip_caller: bool,
}

/// Redis's client types. Nothing here is a master or a replica (no replication), so those
/// name no client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Normal,
    Pubsub,
    Master,
    Replica,
}

fn kind_by_name(name: &[u8]) -> Result<Kind, String> {
    match name.to_ascii_lowercase().as_slice() {
        b"normal" => Ok(Kind::Normal),
        b"pubsub" => Ok(Kind::Pubsub),
        b"master" => Ok(Kind::Master),
        b"slave" | b"replica" => Ok(Kind::Replica),
        _ => Err(format!("ERR Unknown client type '{}'", sanitize(name, 128))),
    }
}

/// (channels, patterns, shard channels) a connection is subscribed to.
fn sub_counts(s: &ConnState) -> (usize, usize, usize) {
    s.subs.as_ref().map_or((0, 0, 0), |subs| {
        (subs.channels.len(), subs.patterns.len(), subs.shard.len())
    })
}

/// Redis's flag letters for CLIENT LIST: P subscribed, x in MULTI, b blocked; N none.
fn flags(s: &ConnState) -> String {
    let (c, p, sh) = sub_counts(s);
    let mut f = String::new();
    if c + p + sh > 0 {
        f.push('P');
    }
    if s.multi.is_some() {
        f.push('x');
    }
    if s.blocked.is_some() {
        f.push('b');
    }
    if f.is_empty() {
        f.push('N');
    }
    f
}

impl Filter {
    /// Whether the connection is one of the clients this filter names.
    pub fn matches(&self, s: &ConnState, meta: &ConnMeta) -> bool {
        if s.http {
            return false; // the metrics endpoint's connections are not clients
        }
        if self.ids.as_ref().is_some_and(|ids| !ids.contains(&s.id)) {
            return false;
        }
        if let Some(kind) = self.kind {
            let (c, p, sh) = sub_counts(s);
            let own = if c + p + sh > 0 {
                Kind::Pubsub
            } else {
                Kind::Normal
            };
            if own != kind {
                return false;
            }
        }
        let shown = |a: Option<std::net::SocketAddr>| a.map(|a| a.to_string());
        if self.addr.is_some() && shown(meta.peer) != self.addr {
            return false;
        }
        if self.laddr.is_some() && shown(meta.local) != self.laddr {
            return false;
        }
        !(self.skip_caller && s.id == self.caller)
    }
}

/// CLIENT LIST's options: nothing, `TYPE type`, or `ID id [id ...]` (Redis's errors).
fn parse_list(opts: &[Cow<'_, [u8]>]) -> Result<Filter, String> {
    let mut f = Filter::default();
    match opts {
        [] => {}
        [t, kind] if t.eq_ignore_ascii_case(b"TYPE") => f.kind = Some(kind_by_name(kind)?),
        [t, ids @ ..] if t.eq_ignore_ascii_case(b"ID") && !ids.is_empty() => {
            // An id no client can have (0, negative) names nobody, as in Redis.
            let ids = ids
                .iter()
                .map(|i| super::parse_int(i).map(|n| u64::try_from(n).unwrap_or(0)))
                .collect::<Option<Vec<u64>>>()
                .ok_or("ERR Invalid client ID")?;
            f.ids = Some(ids);
        }
        _ => return Err("ERR syntax error".into()),
    }
    Ok(f)
}

/// CLIENT KILL's arguments: the old form `ip:port` (true: reply +OK or "No such client",
/// the caller included) or option/value pairs (a count; the caller spared unless SKIPME
/// no), with Redis 7.0's errors.
fn parse_kill(opts: &[Cow<'_, [u8]>], caller: u64) -> Result<(Filter, bool), String> {
    let mut f = Filter {
        caller,
        ..Filter::default()
    };
    if let [addr] = opts {
        f.addr = Some(String::from_utf8_lossy(addr).into_owned());
        return Ok((f, true));
    }
    if opts.len() % 2 != 0 {
        return Err("ERR syntax error".into());
    }
    f.skip_caller = true;
    for pair in opts.chunks(2) {
        let (name, value) = (pair[0].to_ascii_lowercase(), &pair[1]);
        match name.as_slice() {
            b"id" => {
                let id = super::parse_int(value)
                    .filter(|&n| n > 0)
                    .ok_or("ERR client-id should be greater than 0")?;
                f.ids = Some(vec![id as u64]);
            }
            b"type" => f.kind = Some(kind_by_name(value)?),
            b"addr" => f.addr = Some(String::from_utf8_lossy(value).into_owned()),
            b"laddr" => f.laddr = Some(String::from_utf8_lossy(value).into_owned()),
            b"user" => {
                // The default user is the only one (AUTH's password is its password).
                if &value[..] != b"default" {
                    return Err(format!("ERR No such user '{}'", sanitize(value, 128)));
                }
            }
            b"skipme" => {
                f.skip_caller = match value.to_ascii_lowercase().as_slice() {
                    b"yes" => true,
                    b"no" => false,
                    _ => return Err("ERR syntax error".into()),
                }
            }
            _ => return Err("ERR syntax error".into()),
        }
    }
    Ok((f, false))
}

impl Server {
    /// CLIENT KILL's part on this shard: close the clients `filter` names and count them
    /// (not those already closing). The caller's own connection closes once its reply is
    /// sent (the reply slot it owes holds the close back); the others at once, dropping
    /// what they had pending, as Redis frees them. Either way the client is gone from
    /// blocking waits, channels and watches now, not when the engine frees the connection:
    /// a pop or a message that comes in between must not go to it.
    pub fn kill_clients(&mut self, ctx: &mut Ctx<Server>, filter: &Filter) -> i64 {
        let doomed: Vec<(ConnId, bool)> = ctx
            .connections()
            .filter(|(_, s, meta)| !s.closing && filter.matches(s, meta))
            .map(|(id, s, _)| (id, s.id == filter.caller))
            .collect();
        for &(id, is_caller) in &doomed {
            let Some(st) = ctx.state(id) else { continue };
            st.closing = true;
            let blocked = st.blocked.take();
            let subs = st.subs.take();
            let watched = std::mem::take(&mut st.watched);
            if let Some(b) = blocked {
                self.blocked_client_gone(ctx, b);
            }
            if let Some(subs) = &subs {
                self.forget_subs(ctx, id, subs);
            }
            self.forget_watches(ctx, &watched);
            if is_caller {
                ctx.close(id);
            } else {
                ctx.abort(id);
            }
        }
        doomed.len() as i64
    }
}

/// Redis's rule for client names and library info: printable ASCII without spaces.
pub fn valid_client_name(name: &[u8]) -> bool {
    name.iter().all(|&c| (b'!'..=b'~').contains(&c))
}

pub fn client(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    let sub = args[1].to_ascii_lowercase();
    let arity_err = |s: &mut Server, ctx: &mut Ctx<Server>| {
        let msg = format!(
            "ERR wrong number of arguments for 'client|{}' command",
            String::from_utf8_lossy(&sub)
        );
        s.error(ctx, conn, &msg);
    };
    match (sub.as_slice(), args.len()) {
        (b"id", 2) => {
            let id = ctx.state(conn).map_or(0, |st| st.id);
            s.reply(ctx, conn, |e| e.int(id as i64));
        }
        (b"getname", 2) => {
            let name = ctx.state(conn).and_then(|st| st.name.clone());
            s.reply(ctx, conn, |e| e.opt_bulk(name.as_deref()));
        }
        (b"setname", 3) => {
            if !valid_client_name(&args[2]) {
                return s.error(
                    ctx,
                    conn,
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                );
            }
            if let Some(st) = ctx.state(conn) {
                st.name = (!args[2].is_empty()).then(|| Bytes::copy_from_slice(&args[2]));
            }
            s.reply(ctx, conn, |e| e.simple("OK"));
        }
        (b"setinfo", 4) => {
            let attr = args[2].to_ascii_lowercase();
            let value = &args[3];
            let field = match attr.as_slice() {
                b"lib-name" => "lib-name",
                b"lib-ver" => "lib-ver",
                _ => {
                    let msg = format!("ERR Unrecognized option '{}'", sanitize(&args[2], 128));
                    return s.error(ctx, conn, &msg);
                }
            };
            if !valid_client_name(value) {
                let msg =
                    format!("ERR {field} cannot contain spaces, newlines or special characters.");
                return s.error(ctx, conn, &msg);
            }
            if let Some(st) = ctx.state(conn) {
                let v = (!value.is_empty()).then(|| Bytes::copy_from_slice(value));
                if field == "lib-name" {
                    st.lib_name = v;
                } else {
                    st.lib_ver = v;
                }
            }
            s.reply(ctx, conn, |e| e.simple("OK"));
        }
        (b"info", 2) => {
            let line = list_lines(ctx, Some(conn), &Filter::default());
            s.reply(ctx, conn, |e| e.verbatim(b"txt", line.as_bytes()));
        }
        (b"unblock", 3 | 4) => {
            let Some(id) = super::parse_int(&args[2]) else {
                return s.error(ctx, conn, "ERR value is not an integer or out of range");
            };
            let error = match args.get(3).map(|a| a.to_ascii_uppercase()) {
                None => false,
                Some(m) if m == b"TIMEOUT" => false,
                Some(m) if m == b"ERROR" => true,
                Some(_) => {
                    return s.error(
                        ctx,
                        conn,
                        "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR",
                    )
                }
            };
            // A client's id names its shard (see `on_open`).
            if id <= 0 {
                return s.reply(ctx, conn, |e| e.int(0));
            }
            let shard = ((id as u64 - 1) % s.shards as u64) as usize;
            let op = Op::ClientUnblock {
                id: id as u64,
                error,
            };
            s.run_parts(ctx, conn, vec![(shard, op)], Agg::Single(None));
        }
        (b"list", _) => match parse_list(&args[2..]) {
            Ok(filter) => {
                let filter = Box::new(filter);
                s.broadcast(
                    ctx,
                    conn,
                    || Op::ClientList(filter.clone()),
                    Agg::ClientList(String::new()),
                )
            }
            Err(msg) => s.error(ctx, conn, &msg),
        },
        (b"kill", 3..) => {
            let caller = ctx.state(conn).map_or(0, |st| st.id);
            match parse_kill(&args[2..], caller) {
                Ok((filter, one)) => {
                    let filter = Box::new(filter);
                    let agg = Agg::Killed { total: 0, one };
                    // As in Redis the kill is done before the caller's next command runs:
                    // a push it pipelines next must not reach a client being killed.
                    s.hold_until_answered(ctx, conn);
                    s.broadcast(ctx, conn, || Op::ClientKill(filter.clone()), agg)
                }
                Err(msg) => s.error(ctx, conn, &msg),
            }
        }
        (b"help", 2) => {
            let lines = [
                "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GETNAME",
                "    Return the name of the current connection.",
                "ID",
                "    Return the ID of the current connection.",
                "INFO",
                "    Return information about the current client connection.",
                "KILL <ip:port>",
                "    Kill connection made from <ip:port>.",
                "KILL <option> <value> [<option> <value> [...]]",
                "    Kill connections. Options are:",
                "    * ADDR (<ip:port>|<unixsocket>:0)",
                "      Kill connections made from the specified address",
                "    * LADDR (<ip:port>|<unixsocket>:0)",
                "      Kill connections made to specified local address",
                "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
                "      Kill connections by type.",
                "    * USER <username>",
                "      Kill connections authenticated by <username>.",
                "    * SKIPME (YES|NO)",
                "      Skip killing current connection (default: yes).",
                "    * ID <client-id>",
                "      Kill connections by client id.",
                "LIST [options ...]",
                "    Return information about client connections. Options:",
                "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
                "      Return clients of specified type.",
                "SETINFO <option> <value>",
                "    Set client meta attr. Options are: LIB-NAME, LIB-VER.",
                "SETNAME <name>",
                "    Assign the name <name> to the current connection.",
                "UNBLOCK <clientid> [TIMEOUT|ERROR]",
                "    Unblock the specified blocked client.",
            ];
            s.reply_result(ctx, conn, &super::help_reply(&lines));
        }
        (
            b"id" | b"getname" | b"setname" | b"setinfo" | b"info" | b"help" | b"unblock" | b"kill",
            _,
        ) => arity_err(s, ctx),
        _ => {
            let msg = unknown_subcommand_error(&args[1], "client");
            s.error(ctx, conn, &msg);
        }
    }
}

/// `CLIENT LIST` lines for this shard's connections that `filter` names (or only `only`).
pub fn list_lines(ctx: &Ctx<Server>, only: Option<ConnId>, filter: &Filter) -> String {
    let now = ctx.now();
    let mut text = String::new();
    for (id, s, meta) in ctx.connections() {
        if only.is_some_and(|o| o != id) || !filter.matches(s, &meta) {
            continue;
        }
        let show = |b: &Option<bytes::Bytes>| {
            b.as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        let subs = sub_counts(s);
        let addr = meta
            .peer
            .map(|a| a.to_string())
            .unwrap_or_else(|| "?".into());
        text.push_str(&format!(
            "id={} addr={} laddr={} name={} age={} idle={} flags={} db=0 sub={} psub={} ssub={} multi={} watch={} qbuf={} obl={} oll=0 omem={} cmd={} user=default resp={} lib-name={} lib-ver={}\n",
            s.id,
            addr,
            meta.local.map(|a| a.to_string()).unwrap_or_else(|| "?".into()),
            show(&s.name),
            now.saturating_duration_since(meta.created).as_secs(),
            now.saturating_duration_since(meta.last_active).as_secs(),
            flags(s),
            subs.0,
            subs.1,
            subs.2,
            s.multi.as_ref().map_or(-1, |m| m.queued.len() as i64),
            s.watched.len(),
            meta.input_buffered,
            meta.output_buffered,
            meta.output_buffered,
            s.last_cmd,
            if s.proto == Protocol::Resp3 { 3 } else { 2 },
            show(&s.lib_name),
            show(&s.lib_ver),
        ));
    }
    text
}
