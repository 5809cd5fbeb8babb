//! Transparent huge pages, swap and overcommit.

use super::sysctl_fix;
use crate::{Finding, Root, Severity};

/// The bracketed choice in a sysfs selector (`always [madvise] never` -> `madvise`).
pub fn selected(s: &str) -> Option<&str> {
    let start = s.find('[')?;
    let end = s[start..].find(']')? + start;
    Some(&s[start + 1..end])
}

/// `/sys/kernel/mm/transparent_hugepage/enabled`.
pub fn thp(root: &Root) -> Vec<Finding> {
    let id = "memory.thp";
    let why = "with THP `always`, the kernel backs the heap with 2 MB pages: page faults \
               stall while a huge page is zeroed or compacted (latency spikes), and a sparse \
               keyspace holds far more memory than it uses (Redis gives the same advice)";
    let path = "/sys/kernel/mm/transparent_hugepage/enabled";
    let text = match root.read_trim(path) {
        Ok(t) => t,
        Err(e) => return vec![Finding::unreadable(id, &e, why)],
    };
    let mode = selected(&text).unwrap_or(text.as_str()).to_string();
    if mode == "always" {
        return vec![Finding::new(
            id,
            Severity::Warn,
            format!("transparent_hugepage = {mode}"),
            why,
            Some(format!(
                "echo madvise > {path}; and on the kernel command line: \
                 transparent_hugepage=madvise"
            )),
        )];
    }
    vec![Finding::ok(
        id,
        format!("transparent_hugepage = {mode}"),
        why,
    )]
}

/// Active swap areas and `vm.swappiness`.
pub fn swap(root: &Root) -> Vec<Finding> {
    let id = "memory.swap";
    let why = "a shard touching a swapped-out page blocks its whole event loop for a disk \
               read, stalling every client on that shard; an in-memory store should never \
               swap";
    let swaps = match root.read("/proc/swaps") {
        Ok(s) => s,
        Err(e) => return vec![Finding::unreadable(id, &e, why)],
    };
    let areas: Vec<&str> = swaps
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let swappiness = root.read_u64("/proc/sys/vm/swappiness");
    let sw = swappiness
        .as_ref()
        .map(|v| v.to_string())
        .unwrap_or_else(|_| "?".into());
    if areas.is_empty() {
        return vec![Finding::ok(
            id,
            format!("no swap active (vm.swappiness = {sw})"),
            why,
        )];
    }
    let saw = format!("swap on {} with vm.swappiness = {sw}", areas.join(", "));
    match swappiness {
        Ok(v) if v <= 10 => vec![Finding::new(id, Severity::Info, saw, why, None)],
        _ => vec![Finding::new(
            id,
            Severity::Warn,
            saw,
            why,
            Some(format!(
                "{} (or swapoff -a and remove swap from /etc/fstab)",
                sysctl_fix("vm.swappiness", "1")
            )),
        )],
    }
}

/// `vm.overcommit_memory`.
pub fn overcommit(root: &Root) -> Vec<Finding> {
    let id = "memory.overcommit";
    let why = "coreshard snapshots without fork(), so Redis's advice (overcommit_memory = 1 \
               for BGSAVE) does not apply; strict accounting (2) makes large allocations \
               (receive buffers, big values, table growth) fail while memory is still free";
    match root.read_u64("/proc/sys/vm/overcommit_memory") {
        Err(e) => vec![Finding::unreadable(id, &e, why)],
        Ok(v @ (0 | 1)) => vec![Finding::ok(id, format!("vm.overcommit_memory = {v}"), why)],
        Ok(v) => vec![Finding::new(
            id,
            Severity::Warn,
            format!("vm.overcommit_memory = {v} (strict accounting)"),
            why,
            Some(sysctl_fix("vm.overcommit_memory", "0")),
        )],
    }
}
