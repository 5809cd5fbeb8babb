//! Long-running scripts: the time limit, SCRIPT KILL and BUSY.
//!
//! A script runs on its shard's thread. Past `lua-time-limit` (Redis's default 5 s) the
//! shard is marked *busy* here, where the other shards can see it: requests they would
//! route to it are answered `-BUSY` at once. The shard's own connections are answered from
//! the script's instruction hook (see `vm.rs` and `server/busy.rs`). SCRIPT KILL (or
//! FUNCTION KILL) from any connection asks the script to stop; the hook notices within a
//! few milliseconds. As in Redis, a script that already wrote cannot be killed
//! (`UNKILLABLE`): that would leave half its writes; SHUTDOWN NOSAVE stops it with the
//! server ([`abort_for_shutdown`]). A read-only script nobody kills is stopped on its own
//! once it has run `lua-kill-after` (default 60 s; 0: never).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

/// Shards tracked (shard ids beyond are never reported busy).
const MAX_SHARDS: usize = 1024;

const IDLE: u8 = 0;
/// Running past the time limit, no write yet.
const BUSY: u8 = 1;
/// Running past the time limit after a write.
const BUSY_WROTE: u8 = 2;

static STATE: [AtomicU8; MAX_SHARDS] = [const { AtomicU8::new(IDLE) }; MAX_SHARDS];
static KILL: [AtomicBool; MAX_SHARDS] = [const { AtomicBool::new(false) }; MAX_SHARDS];
/// Whether the busy script is a function (FUNCTION KILL) rather than EVAL (SCRIPT KILL).
static IS_FUNCTION: [AtomicBool; MAX_SHARDS] = [const { AtomicBool::new(false) }; MAX_SHARDS];

/// SHUTDOWN NOSAVE arrived while a script was busy: every script stops (even one that
/// wrote; its writes are not journaled) and no request is served any more.
static ABORT: AtomicBool = AtomicBool::new(false);

static TIME_LIMIT_MS: AtomicU64 = AtomicU64::new(5000);
static KILL_AFTER_MS: AtomicU64 = AtomicU64::new(60_000);

/// `lua-time-limit` / `busy-reply-threshold` in milliseconds.
pub fn set_time_limit(ms: u64) {
    TIME_LIMIT_MS.store(ms, Ordering::Relaxed);
}

/// The current `lua-time-limit`.
pub fn time_limit() -> u64 {
    TIME_LIMIT_MS.load(Ordering::Relaxed)
}

/// `lua-kill-after` in milliseconds (0: never).
pub fn set_kill_after(ms: u64) {
    KILL_AFTER_MS.store(ms, Ordering::Relaxed);
}

/// The current `lua-kill-after`.
pub fn kill_after() -> u64 {
    KILL_AFTER_MS.load(Ordering::Relaxed)
}

/// Whether `shard` is running a script past the time limit.
pub fn is_busy(shard: usize) -> bool {
    STATE
        .get(shard)
        .is_some_and(|s| s.load(Ordering::Acquire) != IDLE)
}

/// Redis's reply to requests for a busy shard.
pub fn busy_error(function: bool) -> &'static str {
    if function {
        "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE."
    } else {
        "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
    }
}

/// The BUSY error for `shard`, if it is busy.
pub fn busy_reply(shard: usize) -> Option<&'static str> {
    if !is_busy(shard) {
        return None;
    }
    let function = IS_FUNCTION[shard].load(Ordering::Relaxed);
    Some(busy_error(function))
}

/// The BUSY error for this thread's shard (the kind of script it runs).
pub fn busy_error_here() -> &'static str {
    busy_reply(super::vm::shard()).unwrap_or(busy_error(false))
}

/// The script on `shard` passed the time limit.
pub(crate) fn mark_busy(shard: usize, wrote: bool, function: bool) {
    if let (Some(s), Some(f)) = (STATE.get(shard), IS_FUNCTION.get(shard)) {
        f.store(function, Ordering::Relaxed);
        s.store(if wrote { BUSY_WROTE } else { BUSY }, Ordering::Release);
    }
}

/// The script on `shard` ended.
pub(crate) fn clear(shard: usize) {
    if let (Some(s), Some(k)) = (STATE.get(shard), KILL.get(shard)) {
        s.store(IDLE, Ordering::Release);
        k.store(false, Ordering::Release);
    }
}

/// Whether SCRIPT KILL asked the script on `shard` to stop.
pub(crate) fn kill_requested(shard: usize) -> bool {
    KILL.get(shard).is_some_and(|k| k.load(Ordering::Acquire))
}

/// SHUTDOWN NOSAVE: if a script is busy, stop it however far it got (as Redis, which
/// exits without its effects reaching the AOF) and stop serving, since the stopped
/// script's writes are in memory but never journaled. Whether a script was busy.
pub fn abort_for_shutdown() -> bool {
    let busy = STATE.iter().any(|s| s.load(Ordering::Acquire) != IDLE);
    if busy {
        ABORT.store(true, Ordering::Release);
    }
    busy
}

/// Whether SHUTDOWN NOSAVE stopped a busy script (the server serves nothing more).
#[inline]
pub fn aborting() -> bool {
    ABORT.load(Ordering::Relaxed)
}

/// SCRIPT KILL (`function`: false) or FUNCTION KILL (true): the reply.
pub fn kill(function: bool) -> Result<(), &'static str> {
    let mut found = None;
    for (shard, state) in STATE.iter().enumerate() {
        match state.load(Ordering::Acquire) {
            IDLE => {}
            s => {
                found = Some((shard, s));
                break;
            }
        }
    }
    let Some((shard, state)) = found else {
        return Err("NOTBUSY No scripts in execution right now.");
    };
    // Redis's order: a script that wrote is UNKILLABLE whichever KILL asks.
    if state == BUSY_WROTE {
        return Err("UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.");
    }
    if IS_FUNCTION[shard].load(Ordering::Relaxed) != function {
        return Err(if function {
            "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
        } else {
            "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE."
        });
    }
    KILL[shard].store(true, Ordering::Release);
    Ok(())
}
