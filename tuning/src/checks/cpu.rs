//! Where shards run: enough cores, frequency governor, SMT siblings, isolation.

use crate::topology::{comma_list, format_cpu_list, parse_cpu_list};
use crate::{Context, Finding, ReadError, Root, Severity};

/// Shards against the cores they would be pinned to.
pub fn placement(ctx: &Context) -> Vec<Finding> {
    let id = "cpu.shards";
    let why = "each shard is one thread pinned to one core that runs its event loop without \
               yielding; two shards on one core take turns and each waits for the other";
    if ctx.topology.is_none() {
        let e = ReadError {
            path: "/sys/devices/system/cpu/online".into(),
            reason: "missing or unreadable".into(), // Context keeps only the outcome
        };
        return vec![Finding::unreadable(id, &e, why)];
    }
    let cores = format_cpu_list(&ctx.shard_cores);
    let offline: Vec<usize> = ctx
        .shard_cores
        .iter()
        .copied()
        .filter(|c| ctx.topology.as_ref().is_some_and(|t| !t.cpus.contains(c)))
        .collect();
    if !offline.is_empty() {
        let online = ctx
            .topology
            .as_ref()
            .map(|t| format_cpu_list(&t.cpus))
            .unwrap_or_default();
        return vec![Finding::new(
            id,
            Severity::Bad,
            format!(
                "shard cores {} are not online (online: {online}): pinning fails and the \
                 server does not start",
                format_cpu_list(&offline)
            ),
            why,
            Some(format!("pick --cores from the online CPUs {online}")),
        )];
    }
    if ctx.shards > ctx.shard_cores.len() {
        return vec![Finding::new(
            id,
            Severity::Bad,
            format!(
                "{} shards on {} core(s) ({cores}): some cores run two shard loops",
                ctx.shards,
                ctx.shard_cores.len()
            ),
            why,
            Some(format!(
                "run at most one shard per core: --shards {}",
                ctx.shard_cores.len()
            )),
        )];
    }
    vec![Finding::ok(
        id,
        format!("{} shard(s) on cores {cores}, one each", ctx.shards),
        why,
    )]
}

/// `scaling_governor` of each shard core.
pub fn governor(root: &Root, ctx: &Context) -> Vec<Finding> {
    let id = "cpu.governor";
    let why = "a shard sleeps in io_uring_enter between bursts; a power-saving governor \
               lowers the clock in those gaps, so the next burst runs slow and tail latency \
               grows";
    if ctx.shard_cores.is_empty() {
        return Vec::new(); // no topology: cpu.shards says so
    }
    let mut slow = Vec::new();
    let mut seen = Vec::new();
    let mut missing = 0;
    for &cpu in &ctx.shard_cores {
        let path = format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor");
        match root.read_trim(&path) {
            Ok(g) => {
                if g != "performance" {
                    slow.push(cpu);
                }
                seen.push(format!("cpu{cpu}={g}"));
            }
            Err(_) => missing += 1,
        }
    }
    if seen.is_empty() {
        return vec![Finding::new(
            id,
            Severity::Info,
            "no cpufreq on the shard cores (virtual machine, or no frequency driver): the \
             clock is not under this kernel's control",
            why,
            None,
        )];
    }
    let mut saw = seen.join(", ");
    if missing > 0 {
        saw.push_str(&format!(" ({missing} core(s) without cpufreq)"));
    }
    if slow.is_empty() {
        return vec![Finding::ok(id, saw, why)];
    }
    let list = format_cpu_list(&slow);
    vec![Finding::new(
        id,
        Severity::Warn,
        saw,
        why,
        Some(format!(
            "cpupower -c {list} frequency-set -g performance   (or: for c in {}; do echo \
             performance > /sys/devices/system/cpu/cpu$c/cpufreq/scaling_governor; done)",
            slow.iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        )),
    )]
}

/// CPUs isolated from the scheduler: `isolcpus=` on the kernel command line and
/// `/sys/devices/system/cpu/isolated`.
pub fn isolated_cpus(root: &Root) -> Vec<usize> {
    let mut isolated: Vec<usize> = root
        .read("/proc/cmdline")
        .ok()
        .and_then(|c| cmdline_value(&c, "isolcpus").and_then(|v| parse_cpu_list(v).ok()))
        .unwrap_or_default();
    if let Ok(s) = root.read_trim("/sys/devices/system/cpu/isolated") {
        isolated.extend(parse_cpu_list(&s).unwrap_or_default());
    }
    isolated.sort_unstable();
    isolated.dedup();
    isolated
}

/// Hyper-thread siblings of shard cores. A sibling that is isolated (and runs no shard)
/// counts as kept idle.
pub fn smt(root: &Root, ctx: &Context) -> Vec<Finding> {
    let id = "cpu.smt";
    let why = "two hyper-threads share one core's execution units and caches; a shard whose \
               sibling is busy (another shard, IRQs, other work) gets roughly half a core";
    let Some(topo) = &ctx.topology else {
        return Vec::new();
    };
    if !topo.has_smt() {
        return vec![Finding::ok(
            id,
            "no SMT: each CPU is a physical core of its own",
            why,
        )];
    }
    let isolated = isolated_cpus(root);
    let mut paired = Vec::new(); // shard cores whose sibling is also a shard core
    let mut shared = Vec::new(); // shard cores whose sibling runs other work
    for &cpu in &ctx.shard_cores {
        for s in topo.siblings_of(cpu) {
            if ctx.shard_cores.contains(&s) {
                if cpu < s {
                    paired.push(format!("{cpu}+{s}"));
                }
            } else if !isolated.contains(&s) {
                shared.push(format!("{cpu} (sibling {s})"));
            }
        }
    }
    let one_per_core: Vec<usize> = topo
        .cores
        .iter()
        .filter_map(|c| c.first().copied())
        .collect();
    if !paired.is_empty() {
        let fits = ctx.shards <= one_per_core.len();
        let fix = if fits {
            format!(
                "use one thread per physical core: --cores {}",
                comma_list(&one_per_core[..ctx.shards.min(one_per_core.len())])
            )
        } else {
            format!(
                "{} shards exceed {} physical cores: run --shards {} on --cores {}, or turn \
                 SMT off (echo off > /sys/devices/system/cpu/smt/control; kernel cmdline \
                 nosmt)",
                ctx.shards,
                one_per_core.len(),
                one_per_core.len(),
                comma_list(&one_per_core)
            )
        };
        return vec![Finding::new(
            id,
            Severity::Warn,
            format!(
                "shards share physical cores: {} (SMT sibling pairs)",
                paired.join(", ")
            ),
            why,
            Some(fix),
        )];
    }
    if !shared.is_empty() {
        return vec![Finding::new(
            id,
            Severity::Info,
            format!(
                "one shard per physical core, but the siblings of {} may run other work",
                shared.join(", ")
            ),
            why,
            Some(
                "keep the siblings idle (leave them out of every CPUAffinity and isolate them \
                 with the shard cores), or turn SMT off: echo off > \
                 /sys/devices/system/cpu/smt/control"
                    .to_string(),
            ),
        )];
    }
    vec![Finding::ok(
        id,
        "one shard per physical core; the siblings of shard cores are isolated (kept idle)",
        why,
    )]
}

/// A `key=value` on the kernel command line.
pub fn cmdline_value<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_whitespace()
        .take_while(|w| *w != "--")
        .filter_map(|w| w.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .last()
}

/// isolcpus / nohz_full / rcu_nocbs against the shard cores.
pub fn isolation(root: &Root, ctx: &Context) -> Vec<Finding> {
    let id = "cpu.isolation";
    let why = "on a shared core the scheduler, timer ticks and RCU callbacks preempt the \
               shard loop; isolated cores (isolcpus, nohz_full, rcu_nocbs) leave it alone, \
               which shows in p99 latency";
    let cmdline = match root.read("/proc/cmdline") {
        Ok(c) => c,
        Err(e) => return vec![Finding::unreadable(id, &e, why)],
    };
    let list = |key: &str| -> Vec<usize> {
        cmdline_value(&cmdline, key)
            .and_then(|v| parse_cpu_list(v).ok())
            .unwrap_or_default()
    };
    let isolated = isolated_cpus(root);
    let nohz = list("nohz_full");
    let rcu = list("rcu_nocbs");
    let shards = &ctx.shard_cores;
    if shards.is_empty() {
        return Vec::new();
    }
    let all = |v: &[usize]| shards.iter().all(|c| v.contains(c));
    let none = |v: &[usize]| !shards.iter().any(|c| v.contains(c));
    let saw = format!(
        "isolated: [{}], nohz_full: [{}], rcu_nocbs: [{}]; shard cores: {}",
        format_cpu_list(&isolated),
        format_cpu_list(&nohz),
        format_cpu_list(&rcu),
        format_cpu_list(shards)
    );
    let sl = format_cpu_list(shards);
    let every_cpu = ctx
        .topology
        .as_ref()
        .is_some_and(|t| t.cpus.iter().all(|c| shards.contains(c)));
    let fix = if every_cpu {
        "isolation needs a housekeeping CPU that runs no shard: run fewer shards (see \
         `coreshard-tune plan`), then isolate the shard CPUs on the kernel command line"
            .to_string()
    } else {
        format!(
            "kernel command line (e.g. GRUB_CMDLINE_LINUX in /etc/default/grub, then \
             update-grub and reboot): isolcpus=managed_irq,domain,{sl} nohz_full={sl} \
             rcu_nocbs={sl}; then start coreshard with an explicit --cores {} (isolated CPUs \
             are not in the default affinity)",
            comma_list(shards)
        )
    };
    if all(&isolated) && all(&nohz) && all(&rcu) {
        return vec![Finding::ok(id, saw, why)];
    }
    if none(&isolated) && none(&nohz) && none(&rcu) {
        let severity = if isolated.is_empty() {
            Severity::Info
        } else {
            // Cores were isolated, but not the ones the shards run on.
            Severity::Warn
        };
        return vec![Finding::new(id, severity, saw, why, Some(fix))];
    }
    if all(&isolated) {
        // Isolated from the scheduler, but the tick and RCU callbacks still run there.
        return vec![Finding::new(
            id,
            Severity::Info,
            saw + " (isolated, tick and RCU callbacks not offloaded)",
            why,
            Some(fix),
        )];
    }
    vec![Finding::new(
        id,
        Severity::Warn,
        saw + " (partly isolated)",
        why,
        Some(fix),
    )]
}
