//! Transactions: MULTI, EXEC, DISCARD, WATCH, UNWATCH (Redis 7 semantics).
//!
//! MULTI queues commands on the connection (each answered `+QUEUED`; a refused one makes
//! EXEC answer `EXECABORT`). EXEC runs them atomically on ordered key locks across shards
//! (`server/txn.rs`), or directly when every key is on this shard. WATCH records each
//! key's version on its owning shard; EXEC compares under the locks and answers a null
//! array if any watched key was modified (by anyone, including FLUSHALL) or expired.

use bytes::Bytes;
use coreshard_engine::{ConnId, Ctx};
use coreshard_protocol::Value as Reply;

use super::{Args, Spec};
use crate::db::{Db, Value};
use crate::pubsub::Ns;
use crate::server::conn::MultiState;
use crate::server::ops::{Op, OpResult};
use crate::server::reply::Agg;
use crate::server::txn::WatchedKey;
use crate::server::Server;

/// A command queued inside MULTI, with owned arguments.
#[derive(Debug)]
pub struct Queued {
    /// What it is.
    pub spec: &'static Spec,
    /// Its arguments, the name included.
    pub args: Vec<Bytes>,
}

impl Queued {
    /// The keys it touches.
    pub fn keys(&self) -> impl Iterator<Item = Bytes> + '_ {
        self.spec
            .key_positions(&self.args)
            .map(|i| self.args[i].clone())
    }

    /// Whether it empties the keyspace.
    pub fn is_flush(&self) -> bool {
        matches!(self.spec.name, "flushall" | "flushdb")
    }
}

/// Multi-key and keyless commands that can run inside a transaction (besides every
/// command with a keyed form).
const IN_MULTI: &[&str] = &[
    "del", "unlink", "exists", "touch", "mget", "mset", "ping", "echo", "flushall", "flushdb",
    "script", "function", "publish", "spublish",
];

/// Why `spec` cannot be queued inside MULTI, if it cannot.
pub fn refuse_in_multi(spec: &Spec) -> Option<String> {
    if spec.keyed.is_some() || IN_MULTI.contains(&spec.name) {
        return None;
    }
    if spec.flags.contains(&"no_multi") {
        return Some("ERR Command not allowed inside a transaction".into());
    }
    Some(format!(
        "ERR Command '{}' is not supported inside MULTI by this server",
        spec.name
    ))
}

/// Run one queued command against `db` (a shard's keyspace, or EXEC's scratch copy of
/// the locked keys).
pub fn run_queued(db: &mut Db, now: u64, q: &Queued) -> OpResult {
    db.events.cmd = q.spec.name;
    if let Some(keyed) = q.spec.keyed {
        return keyed(db, now, &q.args);
    }
    let a = &q.args;
    match q.spec.name {
        "del" | "unlink" => OpResult::Int(
            a[1..]
                .iter()
                .filter(|k| db.remove(k, now).is_some())
                .count() as i64,
        ),
        "exists" | "touch" => {
            OpResult::Int(a[1..].iter().filter(|k| db.exists(k, now)).count() as i64)
        }
        "mget" => OpResult::Values(
            a[1..]
                .iter()
                .map(|k| db.read_bytes_or_nil(k, now))
                .collect(),
        ),
        "mset" => {
            if a.len() % 2 == 0 {
                return OpResult::Error("ERR wrong number of arguments for 'mset' command".into());
            }
            for pair in a[1..].chunks(2) {
                db.write(&pair[0], &Value::Shared(pair[1].clone()), 0, now);
            }
            OpResult::Ok
        }
        "ping" => match a.len() {
            1 => OpResult::Reply(Reply::Simple("PONG".into())),
            2 => OpResult::Value(Some(a[1].clone())),
            _ => OpResult::Error("ERR wrong number of arguments for 'ping' command".into()),
        },
        "echo" => OpResult::Value(Some(a[1].clone())),
        // Delivered with the keyspace events once the transaction or script is applied;
        // counted now, from every shard's subscribers (see `pubsub::receivers`).
        "publish" | "spublish" => {
            let ns = if q.spec.name == "publish" {
                Ns::Channel
            } else {
                Ns::Shard
            };
            let n = crate::pubsub::receivers(ns, &a[1]);
            // Nobody confirmed as subscribed now: nobody is owed it (and a script that
            // publishes in a loop keeps nothing for nobody).
            if n > 0 {
                db.events.publish(ns, a[1].clone(), a[2].clone());
            }
            OpResult::Int(n)
        }
        // The script cache and the libraries are the server's, not a key's.
        "script" | "function" => {
            let args: Vec<std::borrow::Cow<'_, [u8]>> = a
                .iter()
                .map(|b| std::borrow::Cow::Borrowed(&b[..]))
                .collect();
            if q.spec.name == "script" {
                super::scripting::script_result(&args)
            } else {
                super::scripting::function_result(&args)
            }
        }
        "flushall" | "flushdb" => {
            let ok = match a.len() {
                1 => true,
                2 => a[1].eq_ignore_ascii_case(b"ASYNC") || a[1].eq_ignore_ascii_case(b"SYNC"),
                _ => false,
            };
            if !ok {
                return OpResult::Error("ERR syntax error".into());
            }
            db.clear(now);
            OpResult::Ok
        }
        other => OpResult::Error(format!("ERR internal: '{other}' cannot run in MULTI")),
    }
}

/// Redis's reply to an EXEC refused before it runs (`execCommandAbort`), `why` as given.
pub fn execabort(why: &str) -> String {
    format!("EXECABORT Transaction discarded because of: {why}")
}

pub fn multi(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, _args: Args) {
    let Some(state) = ctx.state(conn) else { return };
    if state.multi.is_some() {
        return s.error(ctx, conn, "ERR MULTI calls can not be nested");
    }
    state.multi = Some(MultiState::default());
    s.reply(ctx, conn, |e| e.simple("OK"));
}

pub fn discard(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, _args: Args) {
    let Some(state) = ctx.state(conn) else { return };
    if state.multi.take().is_none() {
        return s.error(ctx, conn, "ERR DISCARD without MULTI");
    }
    s.unwatch_all(ctx, conn);
    s.reply(ctx, conn, |e| e.simple("OK"));
}

pub fn exec(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, _args: Args) {
    let Some(state) = ctx.state(conn) else { return };
    let Some(multi) = state.multi.take() else {
        return s.error(ctx, conn, "ERR EXEC without MULTI");
    };
    let watched = std::mem::take(&mut state.watched);
    if multi.dirty {
        s.forget_watches(ctx, &watched);
        return s.error(
            ctx,
            conn,
            "EXECABORT Transaction discarded because of previous errors.",
        );
    }
    if let Some(msg) = crate::evict::refuse_exec(s, &multi.queued) {
        s.forget_watches(ctx, &watched);
        return s.error(ctx, conn, &msg);
    }
    s.exec_transaction(ctx, conn, multi.queued, watched);
}

pub fn watch(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    if ctx.state(conn).is_some_and(|st| st.multi.is_some()) {
        return s.error(ctx, conn, "ERR WATCH inside MULTI is not allowed");
    }
    let groups = s.group_by_shard(args[1..].iter().map(|a| &a[..]));
    let mut parts = Vec::with_capacity(groups.len());
    let mut keys = Vec::with_capacity(groups.len());
    for g in groups {
        keys.push(
            g.keys
                .iter()
                .map(|k| (Bytes::copy_from_slice(k), g.shard))
                .collect(),
        );
        parts.push((g.shard, Op::Watch(g.keys)));
    }
    s.run_parts(
        ctx,
        conn,
        parts,
        Agg::Watch {
            keys,
            got: Vec::new(),
        },
    );
    // EXEC must not run before the versions are back: unless every part answered at
    // once (all local, nothing in flight), hold later input until they are.
    if ctx.replies_owed(conn) > 0 {
        s.hold_until_answered(ctx, conn);
    }
}

pub fn unwatch(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, _args: Args) {
    s.unwatch_all(ctx, conn);
    s.reply(ctx, conn, |e| e.simple("OK"));
}

impl Server {
    /// Drop every WATCH of `conn`.
    pub fn unwatch_all(&mut self, ctx: &mut Ctx<Server>, conn: ConnId) {
        let watched = ctx
            .state(conn)
            .map(|st| std::mem::take(&mut st.watched))
            .unwrap_or_default();
        self.forget_watches(ctx, &watched);
    }

    /// Tell each owning shard these watchers are gone.
    pub fn forget_watches(&mut self, ctx: &mut Ctx<Server>, watched: &[WatchedKey]) {
        let mut remote: Vec<(usize, Vec<Bytes>)> = Vec::new();
        for w in watched {
            if w.shard == self.shard {
                self.db.watch.unwatch(&w.key);
            } else {
                match remote.iter_mut().find(|(s, _)| *s == w.shard) {
                    Some((_, keys)) => keys.push(w.key.clone()),
                    None => remote.push((w.shard, vec![w.key.clone()])),
                }
            }
        }
        for (shard, keys) in remote {
            ctx.send(shard, crate::server::ops::Msg::Unwatch { keys });
        }
    }
}

/// Queue a command inside MULTI, or refuse it (which dooms the EXEC). Returns whether it
/// was handled here (i.e. the connection is inside MULTI and `spec` is not one of the
/// commands that act on the transaction itself).
pub fn queue_if_in_multi(
    s: &mut Server,
    ctx: &mut Ctx<Server>,
    conn: ConnId,
    spec: Option<&'static Spec>,
    args: Args,
) -> bool {
    let Some(state) = ctx.state(conn) else {
        return false;
    };
    let Some(multi) = state.multi.as_mut() else {
        return false;
    };
    let spec = match spec {
        Some(sp) if matches!(sp.name, "exec" | "discard" | "multi" | "watch" | "quit") => {
            return false
        }
        Some(sp) => sp,
        None => {
            multi.dirty = true;
            let msg = super::unknown_command_error(args);
            s.error(ctx, conn, &msg);
            return true;
        }
    };
    let authed = state.authed;
    let refusal = if let Some(r) = super::early_refusal(spec, super::full_name(spec, args), args) {
        Some(r.message)
    } else if !authed && !spec.no_auth {
        Some("NOAUTH Authentication required.".to_string())
    } else {
        refuse_in_multi(spec)
    };
    let refusal = refusal.or_else(|| crate::evict::refuse_queued(s, spec, args));
    if let Some(msg) = refusal {
        multi.dirty = true;
        s.error(ctx, conn, &msg);
        return true;
    }
    multi.queued.push(Queued {
        spec,
        args: args.iter().map(|a| s.arg_bytes(a)).collect(),
    });
    s.reply(ctx, conn, |e| e.simple("QUEUED"));
    true
}
