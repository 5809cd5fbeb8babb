//! Resource limits: open files against maxclients, locked memory against what io_uring
//! pins.

use crate::checks::kernel::parse_release;
use crate::{Context, Finding, Options, Root, Severity, RESERVED_FDS};

/// Soft and hard values of one line of `/proc/self/limits` (`unlimited` is `u64::MAX`).
pub fn parse_limit(text: &str, name: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let mut vals = line[name.len()..].split_whitespace();
    let num = |s: &str| {
        if s == "unlimited" {
            Some(u64::MAX)
        } else {
            s.parse().ok()
        }
    };
    let soft = num(vals.next()?)?;
    let hard = num(vals.next()?)?;
    Some((soft, hard))
}

fn show(v: u64) -> String {
    if v == u64::MAX {
        "unlimited".into()
    } else {
        v.to_string()
    }
}

fn read_limit(root: &Root, id: &str, name: &str, why: &str) -> Result<(u64, u64), Finding> {
    let text = root
        .read("/proc/self/limits")
        .map_err(|e| Finding::unreadable(id, &e, why))?;
    parse_limit(&text, name).ok_or_else(|| {
        Finding::new(
            id,
            Severity::Info,
            format!("no '{name}' line in /proc/self/limits"),
            why,
            None,
        )
    })
}

/// RLIMIT_NOFILE against `--maxclients` (+ the server's 32 reserved descriptors).
pub fn nofile(root: &Root, opts: &Options) -> Vec<Finding> {
    let id = "limits.nofile";
    let why = "every client is a file descriptor; at start the server raises its soft limit \
               to the hard one and, if maxclients + 32 still does not fit, lowers maxclients";
    let (soft, hard) = match read_limit(root, id, "Max open files", why) {
        Ok(v) => v,
        Err(f) => return vec![f],
    };
    let need = opts.maxclients as u64 + RESERVED_FDS;
    let saw = format!(
        "open files soft {} / hard {}; maxclients {} needs {need}",
        show(soft),
        show(hard),
        opts.maxclients
    );
    let fix = Some(format!(
        "systemd unit: LimitNOFILE={need}; shell: ulimit -n {need}; or \
         /etc/security/limits.conf: coreshard - nofile {need}"
    ));
    if soft >= need {
        vec![Finding::ok(id, saw, why)]
    } else if hard >= need {
        vec![Finding::new(
            id,
            Severity::Info,
            saw + " (the server raises the soft limit itself)",
            why,
            fix,
        )]
    } else {
        let fitted = hard.saturating_sub(RESERVED_FDS).max(1);
        vec![Finding::new(
            id,
            Severity::Bad,
            saw + &format!(" (the server would cut maxclients to {fitted})"),
            why,
            fix,
        )]
    }
}

/// Bytes io_uring pins per shard as the engine is configured today (EngineConfig
/// defaults): one page of provided-buffer descriptors (256 x 16 B), and, before Linux 5.12,
/// the rings themselves (1024 SQEs x 64 B, 4096 CQEs x 16 B, the SQ index array).
pub fn memlock_per_shard(before_5_12: bool) -> u64 {
    let bufring = 4096;
    if before_5_12 {
        bufring + 1024 * 64 + 4096 * 16 + 1024 * 4 + 4096
    } else {
        bufring
    }
}

/// RLIMIT_MEMLOCK against what the shards' rings pin.
pub fn memlock(root: &Root, ctx: &Context) -> Vec<Finding> {
    let id = "limits.memlock";
    let why = "io_uring charges pinned memory to RLIMIT_MEMLOCK (the buffer-ring descriptors \
               today; the rings themselves before 5.12; registered fixed buffers if the \
               engine adopts them: 256 x 16 KB = 4 MB per shard); over the limit, ring set-up \
               fails with ENOMEM";
    let (soft, hard) = match read_limit(root, id, "Max locked memory", why) {
        Ok(v) => v,
        Err(f) => return vec![f],
    };
    let old = ctx
        .kernel
        .as_deref()
        .and_then(parse_release)
        .is_some_and(|(a, b, _)| (a, b) < (5, 12));
    let shards = ctx.shards as u64;
    let need = shards * memlock_per_shard(old) + if old { 64 * 1024 } else { 0 };
    let future = shards * (256 * 16 * 1024);
    let saw = format!(
        "locked memory soft {} / hard {}; {shards} shard(s) pin about {need} bytes now, \
         {future} with registered buffers",
        show(soft),
        show(hard)
    );
    let fix = Some(format!(
        "systemd unit: LimitMEMLOCK=infinity (or at least {future}); shell: ulimit -l \
         unlimited"
    ));
    if soft < need {
        vec![Finding::new(id, Severity::Bad, saw, why, fix)]
    } else if soft < future {
        vec![Finding::new(id, Severity::Info, saw, why, fix)]
    } else {
        vec![Finding::ok(id, saw, why)]
    }
}
