//! io_uring availability and the kernel version against what the engine uses.

use super::sysctl_fix;
use crate::{Context, Finding, Root, Severity};

const DISABLED: &str = "/proc/sys/kernel/io_uring_disabled";

/// `kernel.io_uring_disabled`: 0 all may create rings, 1 only `kernel.io_uring_group`
/// (and CAP_SYS_ADMIN), 2 nobody.
pub fn io_uring_enabled(root: &Root) -> Vec<Finding> {
    let id = "kernel.io_uring_disabled";
    let why = "every shard and the WAL thread run on an io_uring; without one the server \
               cannot start (\"io_uring is not available\")";
    let value = match root.read_trim(DISABLED) {
        Ok(v) => v,
        Err(e) if e.reason == "no such file or directory" => {
            return vec![Finding::ok(
                id,
                format!("{DISABLED} absent (kernel before 6.6 has no switch): io_uring is on"),
                why,
            )]
        }
        Err(e) => return vec![Finding::unreadable(id, &e, why)],
    };
    let f = match value.as_str() {
        "0" => Finding::ok(
            id,
            "io_uring_disabled = 0: any process may create rings",
            why,
        ),
        "1" => {
            let group = root
                .read_trim("/proc/sys/kernel/io_uring_group")
                .unwrap_or_else(|_| "?".into());
            Finding::new(
                id,
                Severity::Warn,
                format!(
                    "io_uring_disabled = 1: only root and members of group id {group} \
                     (kernel.io_uring_group) may create rings"
                ),
                format!("{why}; a service user outside that group gets EPERM at start"),
                Some(format!(
                    "add the service user to group {group} (usermod -aG <group> coreshard), or \
                     {}",
                    sysctl_fix("kernel.io_uring_disabled", "0")
                )),
            )
        }
        other => Finding::new(
            id,
            Severity::Bad,
            format!("io_uring_disabled = {other}: io_uring is off for every process"),
            why,
            Some(sysctl_fix("kernel.io_uring_disabled", "0")),
        ),
    };
    vec![f]
}

/// How much the engine depends on a kernel feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// The engine refuses to start without it.
    Required,
    /// The engine works without it, slower.
    Fallback,
    /// Probed or known, not used yet.
    Unused,
}

/// What the engine uses (engine/src/sys: ring.rs, bufring.rs, probe.rs) and since when.
const FEATURES: &[(u32, u32, &str, Need, &str)] = &[
    (
        5,
        18,
        "IORING_OP_MSG_RING",
        Need::Required,
        "cross-shard wake-ups",
    ),
    (
        5,
        19,
        "provided buffer rings",
        Need::Required,
        "receives into a per-shard buffer pool",
    ),
    (
        5,
        19,
        "multishot accept",
        Need::Fallback,
        "else accept is re-armed per connection",
    ),
    (
        5,
        19,
        "IORING_SETUP_COOP_TASKRUN",
        Need::Fallback,
        "else IPIs interrupt busy shards",
    ),
    (
        6,
        0,
        "multishot recv",
        Need::Fallback,
        "else one recv submission per completion",
    ),
    (
        6,
        0,
        "IORING_SETUP_SINGLE_ISSUER",
        Need::Fallback,
        "else submissions take a lock",
    ),
    (
        6,
        1,
        "IORING_SETUP_DEFER_TASKRUN",
        Need::Fallback,
        "else completions run at any syscall",
    ),
    (
        6,
        0,
        "IORING_OP_SEND_ZC",
        Need::Unused,
        "probed at start, not used yet",
    ),
    (
        6,
        10,
        "recv bundles",
        Need::Unused,
        "not used by the engine",
    ),
];

/// `major.minor.patch` from a release string like `6.8.0-45-generic`.
pub fn parse_release(release: &str) -> Option<(u32, u32, u32)> {
    let mut nums = release.split(|c: char| !c.is_ascii_digit());
    let major = nums.next()?.parse().ok()?;
    let minor = nums.next()?.parse().ok()?;
    let patch = nums.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    Some((major, minor, patch))
}

/// The kernel release against the features above.
pub fn version(ctx: &Context) -> Vec<Finding> {
    let id = "kernel.version";
    let why = "the engine needs MSG_RING (5.18) and provided buffer rings (5.19) and uses \
               multishot accept/recv, COOP/DEFER_TASKRUN and SINGLE_ISSUER when present";
    let Some(release) = ctx.kernel.as_deref() else {
        let e = crate::ReadError {
            path: "/proc/sys/kernel/osrelease".into(),
            reason: "missing".into(),
        };
        return vec![Finding::unreadable(id, &e, why)];
    };
    let Some((major, minor, _)) = parse_release(release) else {
        return vec![Finding::new(
            id,
            Severity::Info,
            format!("kernel release '{release}' is not a version number"),
            why,
            None,
        )];
    };
    let have = |m: u32, n: u32| (major, minor) >= (m, n);
    let mut missing_required = Vec::new();
    let mut missing_fallback = Vec::new();
    let mut missing_unused = Vec::new();
    for (m, n, name, need, what) in FEATURES {
        if have(*m, *n) {
            continue;
        }
        let item = format!("{name} ({m}.{n}: {what})");
        match need {
            Need::Required => missing_required.push(item),
            Need::Fallback => missing_fallback.push(item),
            Need::Unused => missing_unused.push(item),
        }
    }
    let fix = Some(
        "upgrade to Linux 6.1 or later (6.1 LTS has every feature the engine uses); \
         distribution kernels may backport features, and the server logs what it probed at \
         start"
            .to_string(),
    );
    let f = if !missing_required.is_empty() {
        Finding::new(
            id,
            Severity::Bad,
            format!(
                "Linux {release}: lacks {}; the server refuses to start",
                missing_required.join(", ")
            ),
            why,
            fix,
        )
    } else if !missing_fallback.is_empty() {
        Finding::new(
            id,
            Severity::Warn,
            format!(
                "Linux {release}: runs, without {}",
                missing_fallback.join(", ")
            ),
            why,
            fix,
        )
    } else {
        let mut saw = format!("Linux {release}: every feature the engine uses is there");
        if !missing_unused.is_empty() {
            saw.push_str(&format!(
                " (not here, but unused: {})",
                missing_unused.join(", ")
            ));
        }
        Finding::ok(id, saw, why)
    };
    vec![f]
}
