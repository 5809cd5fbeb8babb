//! NIC interrupts and queues against the shard cores, and the socket sysctls.

use super::sysctl_fix;
use crate::nic::{self, Nic};
use crate::topology::format_cpu_list;
use crate::{Context, Finding, Root, Severity, LISTEN_BACKLOG};

/// The CPUs that run no shard, where NIC interrupts belong.
pub fn spare_cpus(ctx: &Context) -> Vec<usize> {
    match &ctx.topology {
        Some(t) => t
            .cpus
            .iter()
            .copied()
            .filter(|c| !ctx.shard_cores.contains(c))
            .collect(),
        None => Vec::new(),
    }
}

fn nics_or_finding(root: &Root, id: &str, why: &str) -> Result<Vec<Nic>, Vec<Finding>> {
    let nics = nic::discover(root);
    if nics.is_empty() {
        return Err(vec![Finding::new(
            id,
            Severity::Info,
            "no network interface with a device under /sys/class/net (only loopback or \
             virtual ones)",
            why,
            None,
        )]);
    }
    Ok(nics)
}

/// Where each NIC queue's interrupt is delivered.
pub fn irq_affinity(root: &Root, ctx: &Context) -> Vec<Finding> {
    let id = "net.irq_affinity";
    let why = "a NIC interrupt and its softirq (TCP receive processing) run on the core it \
               is delivered to, in the middle of whatever that core runs; on a shard core \
               that stalls the shard loop. With SO_REUSEPORT a connection's shard does not \
               follow its RX queue, so nothing is gained by sharing; keep them on spare \
               cores";
    let nics = match nics_or_finding(root, id, why) {
        Ok(n) => n,
        Err(f) => return f,
    };
    let spare = spare_cpus(ctx);
    let mut out = Vec::new();
    for nic in nics {
        let fid = format!("{id}.{}", nic.name);
        if nic.irqs.is_empty() {
            out.push(Finding::new(
                &fid,
                Severity::Info,
                format!(
                    "{}: no interrupt lines found in /proc/interrupts for it{}",
                    nic.name,
                    nic.device
                        .as_ref()
                        .map(|d| format!(" or its device {d}"))
                        .unwrap_or_default()
                ),
                why,
                None,
            ));
            continue;
        }
        let on_shards: Vec<&nic::Irq> = nic
            .irqs
            .iter()
            .filter(|i| {
                i.affinity
                    .as_ref()
                    .is_some_and(|a| a.iter().any(|c| ctx.shard_cores.contains(c)))
            })
            .collect();
        let describe = nic
            .irqs
            .iter()
            .map(|i| {
                format!(
                    "{} {}→{}",
                    i.number,
                    i.name,
                    i.affinity
                        .as_ref()
                        .map(|a| format_cpu_list(a))
                        .unwrap_or_else(|| "?".into())
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let saw = format!(
            "{}: IRQs {describe}; shard cores {}",
            nic.name,
            format_cpu_list(&ctx.shard_cores)
        );
        if on_shards.is_empty() {
            out.push(Finding::ok(&fid, saw, why));
        } else if spare.is_empty() {
            out.push(Finding::new(
                &fid,
                Severity::Info,
                saw + " (every core runs a shard, so interrupts must share them)",
                why,
                Some(
                    "leave a core without a shard (--shards one less) for interrupts and \
                     housekeeping; `coreshard-tune plan` lays it out"
                        .to_string(),
                ),
            ));
        } else {
            let target = format_cpu_list(&spare);
            let cmds = on_shards
                .iter()
                .map(|i| format!("echo {target} > /proc/irq/{}/smp_affinity_list", i.number))
                .collect::<Vec<_>>()
                .join("; ");
            out.push(Finding::new(
                &fid,
                Severity::Warn,
                saw,
                why,
                Some(format!(
                    "{cmds}; and stop irqbalance from moving them back (systemctl disable \
                     --now irqbalance, or IRQBALANCE_BANNED_CPULIST={} in \
                     /etc/default/irqbalance)",
                    format_cpu_list(&ctx.shard_cores)
                )),
            ));
        }
    }
    out
}

/// Receive queues (RSS) against shards.
pub fn rss_queues(root: &Root, ctx: &Context) -> Vec<Finding> {
    let id = "net.rss_queues";
    let why = "each RX queue's packets are processed on the core its interrupt lands on; \
               with fewer queues than shards, the receive work of every shard funnels \
               through those few cores";
    let nics = match nics_or_finding(root, id, why) {
        Ok(n) => n,
        Err(f) => return f,
    };
    let shards = ctx.shards;
    nics.into_iter()
        .map(|nic| {
            let fid = format!("{id}.{}", nic.name);
            let saw = format!(
                "{}: {} RX queue(s) for {shards} shard(s)",
                nic.name, nic.rx_queues
            );
            if nic.rx_queues >= shards || shards <= 1 {
                return Finding::ok(&fid, saw, why);
            }
            let severity = if nic.rx_queues <= 1 && shards >= 4 {
                Severity::Warn
            } else {
                Severity::Info
            };
            Finding::new(
                &fid,
                severity,
                saw,
                why,
                Some(format!(
                    "ethtool -L {n} combined {shards} (see `ethtool -l {n}` for the hardware \
                     maximum); if the NIC has no more queues, spread receive work with RPS: \
                     echo <hex cpu mask> > /sys/class/net/{n}/queues/rx-0/rps_cpus",
                    n = nic.name
                )),
            )
        })
        .collect()
}

fn sysctl_at_least(
    root: &Root,
    id: &str,
    path: &str,
    key: &str,
    min: u64,
    want: u64,
    why: &str,
) -> Vec<Finding> {
    match root.read_u64(path) {
        Err(e) => vec![Finding::unreadable(id, &e, why)],
        Ok(v) if v >= min => vec![Finding::ok(id, format!("{key} = {v}"), why)],
        Ok(v) => vec![Finding::new(
            id,
            Severity::Warn,
            format!("{key} = {v} (below {min})"),
            why,
            Some(sysctl_fix(key, &want.to_string())),
        )],
    }
}

/// `net.core.somaxconn` against the engine's listen backlog.
pub fn somaxconn(root: &Root) -> Vec<Finding> {
    sysctl_at_least(
        root,
        "net.somaxconn",
        "/proc/sys/net/core/somaxconn",
        "net.core.somaxconn",
        LISTEN_BACKLOG,
        4096,
        "each shard listens with a backlog of 511, which the kernel cuts to somaxconn; a \
         burst of connects beyond it is dropped and clients retry after 1 s, 3 s, ...",
    )
}

/// `net.ipv4.tcp_max_syn_backlog`.
pub fn syn_backlog(root: &Root) -> Vec<Finding> {
    sysctl_at_least(
        root,
        "net.tcp_max_syn_backlog",
        "/proc/sys/net/ipv4/tcp_max_syn_backlog",
        "net.ipv4.tcp_max_syn_backlog",
        LISTEN_BACKLOG,
        4096,
        "half-open connections wait in the SYN queue before accept sees them; a small \
         queue drops SYNs during connection storms (or falls back to SYN cookies)",
    )
}

/// `net.core.busy_poll` / `busy_read`.
pub fn busy_poll(root: &Root) -> Vec<Finding> {
    let id = "net.busy_poll";
    let why = "busy polling spins on the NIC queue in poll/epoll and blocking reads; the \
               engine waits in io_uring_enter and does not register NAPI busy polling, so \
               these settings do not speed it up, and other processes spinning steal CPU";
    let poll = root.read_u64("/proc/sys/net/core/busy_poll");
    let read = root.read_u64("/proc/sys/net/core/busy_read");
    match (poll, read) {
        (Err(e), _) | (_, Err(e)) => vec![Finding::unreadable(id, &e, why)],
        (Ok(0), Ok(0)) => vec![Finding::ok(id, "busy_poll = 0, busy_read = 0 (off)", why)],
        (Ok(p), Ok(r)) => vec![Finding::new(
            id,
            Severity::Info,
            format!("busy_poll = {p}, busy_read = {r} (µs of spinning)"),
            why,
            Some(
                "sysctl -w net.core.busy_poll=0 net.core.busy_read=0 (unless another \
                 service on this host relies on it)"
                    .to_string(),
            ),
        )],
    }
}
