//! SAVE, BGSAVE, BGREWRITEAOF, LASTSAVE: snapshots of every shard without fork
//! (`persist::snapshot`), which also compact the log (the segments they replace go).

use coreshard_engine::{ConnId, Ctx};

use super::Args;
use crate::persist::snapshot;
use crate::server::txn::TxnKind;
use crate::server::Server;

fn start(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, save: bool, busy: &str) {
    if s.wal.is_none() {
        return s.error(ctx, conn, "ERR persistence is off (--appendonly no)");
    }
    if let Some(err) = s.log_error() {
        // A snapshot would fail on the same disk, and its files would take space the log
        // needs: refused like the writes until the log writes again.
        let msg = format!("MISCONF Errors writing to the AOF file: {err}");
        return s.error(ctx, conn, &msg);
    }
    if !snapshot::begin() {
        return s.error(ctx, conn, busy);
    }
    let id = crate::server::ops::unix_ms();
    s.begin_txn(ctx, conn, TxnKind::Snapshot { id, save });
}

pub fn save(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, _args: Args) {
    start(
        s,
        ctx,
        conn,
        true,
        "ERR Background save already in progress",
    );
}

pub fn bgsave(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, _args: Args) {
    start(
        s,
        ctx,
        conn,
        false,
        "ERR Background save already in progress",
    );
}

/// Compaction is a snapshot: the log before it is deleted.
pub fn bgrewriteaof(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, _args: Args) {
    start(
        s,
        ctx,
        conn,
        false,
        "ERR Background append only file rewriting already in progress",
    );
}

impl Server {
    /// Shard 0, once a second: start a snapshot when the `--save` schedule says so, or when
    /// the log has grown enough to compact (`auto-aof-rewrite-percentage` / `-min-size`).
    pub fn save_tick(&mut self, ctx: &mut Ctx<Server>) {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(wal) = self.wal.as_ref() else {
            return;
        };
        if self.log_error().is_some() {
            // The log cannot write (a full disk): a snapshot would fail too, and its files
            // would take space the log needs. Wait until writes succeed again.
            return;
        }
        let last = snapshot::LAST_SAVE.load(Relaxed);
        let since = if last == 0 {
            self.config.started.elapsed().as_secs()
        } else {
            (crate::server::ops::unix_ms() / 1000).saturating_sub(last)
        };
        let (percent, min_size) = self.config.runtime.auto_rewrite();
        let due = snapshot::due(&self.config.runtime.save().0, since)
            || snapshot::rewrite_due(percent, min_size, wal.log_bytes());
        if due && snapshot::begin() {
            let id = crate::server::ops::unix_ms();
            // No client waits for this one: the transaction has no reply position.
            let nobody = ConnId::from_u64(u64::MAX);
            self.begin_txn(ctx, nobody, TxnKind::Snapshot { id, save: false });
        }
    }

    /// Add this turn's journaled records to the server-wide change count.
    pub fn count_changes(&mut self) {
        if let Some(j) = self.db.journal.as_ref() {
            let delta = j.appended - self.changes_counted;
            if delta > 0 {
                self.changes_counted = j.appended;
                snapshot::CHANGES.fetch_add(delta, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

pub fn lastsave(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, _args: Args) {
    let t = snapshot::LAST_SAVE.load(std::sync::atomic::Ordering::Relaxed);
    s.reply(ctx, conn, |e| e.int(t as i64));
}

/// SHUTDOWN [NOSAVE|SAVE|NOW|FORCE|ABORT]: stop the server as SIGTERM does (the log is
/// synced on the way out, so nothing acknowledged is lost either way). No reply: the
/// connection closes, as with Redis.
pub fn shutdown(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    for a in &args[1..] {
        let ok = [&b"NOSAVE"[..], b"SAVE", b"NOW", b"FORCE"]
            .iter()
            .any(|w| a.eq_ignore_ascii_case(w));
        if !ok {
            return s.error(ctx, conn, "ERR syntax error");
        }
    }
    let nosave = args[1..].iter().any(|a| a.eq_ignore_ascii_case(b"NOSAVE"));
    if !nosave {
        // As Redis: while a script is busy only SHUTDOWN NOSAVE goes through.
        if let Some(busy) = (0..s.shards).find_map(crate::script::busy_reply) {
            return s.error(ctx, conn, busy);
        }
    } else if crate::script::abort_for_shutdown() {
        tracing::warn!(
            "SHUTDOWN NOSAVE while a script is busy: stopping it without journaling its writes"
        );
    }
    tracing::info!("SHUTDOWN requested by a client");
    if let Err(e) = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGTERM)
    {
        s.error(ctx, conn, &format!("ERR could not shut down: {e}"));
    }
}
