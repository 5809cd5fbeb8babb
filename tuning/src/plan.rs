//! A core layout for N shards and the files that deploy it: the coreshard command line, a
//! sysctl file and a systemd unit.

use std::path::{Path, PathBuf};

use crate::checks::memory::selected;
use crate::topology::format_cpu_list;
use crate::{nic, Root, Topology, RESERVED_FDS};

/// Which CPU does what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// One shard per CPU, ascending (`--cores`).
    pub shard_cpus: Vec<usize>,
    /// The WAL thread's CPU (`--wal-core`).
    pub wal_cpu: usize,
    /// Where NIC interrupts go.
    pub irq_cpus: Vec<usize>,
    /// CPUs left for the rest of the system (sshd, logging, kernel threads).
    pub housekeeping_cpus: Vec<usize>,
    /// SMT siblings of shard CPUs left idle so each shard has its core to itself.
    pub idle_cpus: Vec<usize>,
    /// Compromises the layout had to make.
    pub notes: Vec<String>,
}

/// Lay out `shards` shards on `topo`.
///
/// The first physical core is kept for housekeeping (the kernel, interrupts and daemons
/// favour CPU 0). Shards take one hyper-thread on each of the other physical cores; only
/// when there are more shards than that do they use the housekeeping core's sibling, then
/// the siblings of other shards. The WAL thread and the NIC interrupts get a physical core
/// without shards when one is left, else the housekeeping core.
pub fn layout(topo: &Topology, shards: usize) -> Result<Layout, String> {
    let total = topo.cpus.len();
    if shards == 0 {
        return Err("--shards must be at least 1".into());
    }
    if shards > total {
        return Err(format!(
            "{shards} shards need {shards} CPUs; this host has {total} online"
        ));
    }
    let mut notes = Vec::new();
    if shards == total {
        let wal = topo.cpus.last().copied().unwrap_or(0);
        notes.push(format!(
            "every CPU runs a shard: interrupts, the WAL thread (on {wal}) and the rest of \
             the system share shard cores; with {} shard(s) they would get a core of their \
             own",
            total.saturating_sub(1).max(1)
        ));
        if topo.has_smt() {
            notes.push("shards share physical cores with other shards (SMT siblings)".into());
        }
        return Ok(Layout {
            shard_cpus: topo.cpus.clone(),
            wal_cpu: wal,
            irq_cpus: topo.cpus.clone(),
            housekeeping_cpus: Vec::new(),
            idle_cpus: Vec::new(),
            notes,
        });
    }
    let hk_core = topo.cores.first().cloned().unwrap_or_default();
    let rest = topo.cores.get(1..).unwrap_or(&[]);
    // Shard candidates, best first.
    let tier0: Vec<usize> = rest.iter().filter_map(|c| c.first().copied()).collect();
    let tier1: Vec<usize> = hk_core.iter().skip(1).copied().collect();
    let tier2: Vec<usize> = rest
        .iter()
        .flat_map(|c| c.iter().skip(1).copied())
        .collect();
    let mut shard_cpus: Vec<usize> = tier0
        .iter()
        .chain(&tier1)
        .chain(&tier2)
        .copied()
        .take(shards)
        .collect();
    shard_cpus.sort_unstable();
    let used_tier1: Vec<usize> = tier1
        .iter()
        .copied()
        .filter(|c| shard_cpus.contains(c))
        .collect();
    let used_tier2: Vec<usize> = tier2
        .iter()
        .copied()
        .filter(|c| shard_cpus.contains(c))
        .collect();
    if !used_tier1.is_empty() {
        notes.push(format!(
            "shard CPU {} shares a physical core with housekeeping",
            format_cpu_list(&used_tier1)
        ));
    }
    if !used_tier2.is_empty() {
        notes.push(format!(
            "{shards} shards exceed the {} physical cores beside the housekeeping core: \
             shard CPUs {} are SMT siblings of other shards and get about half a core each",
            tier0.len() + usize::from(!tier1.is_empty()),
            format_cpu_list(&used_tier2)
        ));
    }
    let has_shard = |core: &Vec<usize>| core.iter().any(|c| shard_cpus.contains(c));
    let spare: Vec<&Vec<usize>> = rest.iter().filter(|c| !has_shard(c)).collect();
    let hk_free: Vec<usize> = hk_core
        .iter()
        .copied()
        .filter(|c| !shard_cpus.contains(c))
        .collect();
    let (wal_cpu, irq_cpus) = match spare.first() {
        Some(first) => {
            let wal = first.first().copied().unwrap_or(0);
            let irq: Vec<usize> = spare
                .iter()
                .flat_map(|c| c.iter().copied())
                .filter(|c| *c != wal)
                .collect();
            (wal, if irq.is_empty() { hk_free.clone() } else { irq })
        }
        None => {
            let wal = hk_free.get(1).or(hk_free.first()).copied().unwrap_or(0);
            (wal, hk_free.clone())
        }
    };
    let mut irq_cpus = irq_cpus;
    irq_cpus.sort_unstable();
    let idle_cpus: Vec<usize> = topo
        .cpus
        .iter()
        .copied()
        .filter(|c| {
            !shard_cpus.contains(c)
                && *c != wal_cpu
                && !irq_cpus.contains(c)
                && !hk_free.contains(c)
        })
        .collect();
    Ok(Layout {
        shard_cpus,
        wal_cpu,
        irq_cpus,
        housekeeping_cpus: hk_free,
        idle_cpus,
        notes,
    })
}

/// What the plan is for: the server flags that end up in the unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    /// `--shards`.
    pub shards: usize,
    /// `--dir`.
    pub dir: PathBuf,
    /// `--maxclients`.
    pub maxclients: usize,
    /// `--bind`.
    pub bind: String,
    /// `--port`.
    pub port: u16,
    /// Path of the coreshard binary in the unit.
    pub binary: PathBuf,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            shards: 1,
            dir: PathBuf::from("/var/lib/coreshard"),
            maxclients: crate::DEFAULT_MAXCLIENTS,
            bind: "127.0.0.1".into(),
            port: 6379,
            binary: PathBuf::from("/usr/local/bin/coreshard"),
        }
    }
}

/// One file the plan would write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanFile {
    /// Where it goes.
    pub path: PathBuf,
    /// What it holds.
    pub content: String,
}

/// A full plan: the layout, the command line, the files and the manual steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The core layout.
    pub layout: Layout,
    /// The coreshard command line.
    pub command: String,
    /// `/etc/sysctl.d/60-coreshard.conf`.
    pub sysctl: PlanFile,
    /// `/etc/systemd/system/coreshard.service`.
    pub unit: PlanFile,
    /// Steps `--apply` does not do (IRQ affinity, governor, kernel command line).
    pub steps: Vec<String>,
}

/// The default place of the sysctl file.
pub const SYSCTL_PATH: &str = "/etc/sysctl.d/60-coreshard.conf";
/// The default place of the unit.
pub const UNIT_PATH: &str = "/etc/systemd/system/coreshard.service";

/// `LimitNOFILE` for a maxclients: what the server needs, rounded up to a multiple of 1024.
pub fn nofile_for(maxclients: usize) -> u64 {
    let need = maxclients as u64 + RESERVED_FDS;
    need.div_ceil(1024) * 1024
}

/// Build the plan for the host under `root` (its topology, sysctls and NICs).
pub fn plan(root: &Root, opts: &PlanOptions) -> Result<Plan, String> {
    let topo = Topology::read(root).map_err(|e| e.to_string())?;
    let layout = layout(&topo, opts.shards)?;
    let command = format!(
        "{} --shards {} --cores {} --wal-core {} --dir {} --maxclients {} --bind {} --port {}",
        opts.binary.display(),
        opts.shards,
        layout
            .shard_cpus
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(","),
        layout.wal_cpu,
        opts.dir.display(),
        opts.maxclients,
        opts.bind,
        opts.port
    );
    let sysctl = PlanFile {
        path: PathBuf::from(SYSCTL_PATH),
        content: sysctl_file(root),
    };
    let unit = PlanFile {
        path: PathBuf::from(UNIT_PATH),
        content: unit_file(&layout, opts, &command),
    };
    let steps = steps(root, &layout);
    Ok(Plan {
        layout,
        command,
        sysctl,
        unit,
        steps,
    })
}

fn sysctl_file(root: &Root) -> String {
    let cur = |p: &str| root.read_u64(p).ok();
    let mut s = String::from(
        "# Written by coreshard-tune plan: host settings for coreshard.\n\
         # Load with: sysctl --system\n\n",
    );
    let at_least = |v: Option<u64>, want: u64| v.map_or(want, |v| v.max(want));
    s.push_str("# Each shard listens with a backlog of 511; room for connection bursts.\n");
    s.push_str(&format!(
        "net.core.somaxconn = {}\n",
        at_least(cur("/proc/sys/net/core/somaxconn"), 4096)
    ));
    s.push_str(&format!(
        "net.ipv4.tcp_max_syn_backlog = {}\n\n",
        at_least(cur("/proc/sys/net/ipv4/tcp_max_syn_backlog"), 4096)
    ));
    s.push_str("# An in-memory store must not be swapped out.\nvm.swappiness = 1\n");
    if cur("/proc/sys/vm/overcommit_memory") == Some(2) {
        s.push_str(
            "\n# Strict accounting fails large allocations while memory is free.\n\
             vm.overcommit_memory = 0\n",
        );
    }
    if let Some(v) = cur("/proc/sys/kernel/io_uring_disabled") {
        if v != 0 {
            s.push_str(
                "\n# coreshard runs on io_uring (or add its user to kernel.io_uring_group).\n\
                 kernel.io_uring_disabled = 0\n",
            );
        }
    }
    s
}

fn unit_file(layout: &Layout, opts: &PlanOptions, command: &str) -> String {
    let mut affinity = layout.shard_cpus.clone();
    affinity.push(layout.wal_cpu);
    affinity.sort_unstable();
    affinity.dedup();
    let state = opts
        .dir
        .strip_prefix("/var/lib/")
        .ok()
        .filter(|p| p.components().count() == 1)
        .map(|p| format!("StateDirectory={}\n", p.display()))
        .unwrap_or_else(|| format!("ReadWritePaths={}\n", opts.dir.display()));
    format!(
        "# Written by coreshard-tune plan.\n\
         # Create the user first: useradd --system --no-create-home coreshard\n\
         [Unit]\n\
         Description=coreshard, a Redis-compatible thread-per-core io_uring server\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         Type=simple\n\
         User=coreshard\n\
         Group=coreshard\n\
         {state}\
         ExecStart={command}\n\
         # Shard CPUs {shards} and the WAL CPU {wal}; each thread pins itself inside this set.\n\
         CPUAffinity={aff}\n\
         # maxclients {maxclients} + {RESERVED_FDS} reserved descriptors.\n\
         LimitNOFILE={nofile}\n\
         # io_uring pins buffer-ring memory (and registered buffers, if used) against this.\n\
         LimitMEMLOCK=infinity\n\
         Restart=on-failure\n\
         TimeoutStopSec=30\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        shards = format_cpu_list(&layout.shard_cpus),
        wal = layout.wal_cpu,
        aff = affinity
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(" "),
        maxclients = opts.maxclients,
        nofile = nofile_for(opts.maxclients),
    )
}

fn steps(root: &Root, layout: &Layout) -> Vec<String> {
    let mut steps = Vec::new();
    let irq_list = format_cpu_list(&layout.irq_cpus);
    let shard_list = format_cpu_list(&layout.shard_cpus);
    let moved: Vec<String> = nic::discover(root)
        .into_iter()
        .flat_map(|n| n.irqs)
        .filter(|i| i.affinity.as_deref() != Some(&layout.irq_cpus[..]))
        .map(|i| format!("echo {irq_list} > /proc/irq/{}/smp_affinity_list", i.number))
        .collect();
    if !moved.is_empty() && !layout.housekeeping_cpus.is_empty() {
        steps.push(format!(
            "NIC interrupts to CPUs {irq_list} (after every boot; stop irqbalance or set \
             IRQBALANCE_BANNED_CPULIST={shard_list}): {}",
            moved.join("; ")
        ));
    }
    let has_cpufreq = layout.shard_cpus.iter().any(|c| {
        root.exists(&format!(
            "/sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor"
        ))
    });
    if has_cpufreq {
        steps.push(format!(
            "performance governor on the shard CPUs: cpupower -c {shard_list} frequency-set \
             -g performance"
        ));
    }
    if let Ok(thp) = root.read_trim("/sys/kernel/mm/transparent_hugepage/enabled") {
        if selected(&thp) == Some("always") {
            steps.push(
                "transparent huge pages to madvise: echo madvise > \
                 /sys/kernel/mm/transparent_hugepage/enabled (kernel cmdline: \
                 transparent_hugepage=madvise)"
                    .into(),
            );
        }
    }
    if !layout.housekeeping_cpus.is_empty() {
        // The idle SMT siblings are isolated too, so nothing gets scheduled beside a shard.
        let mut quiet = layout.shard_cpus.clone();
        quiet.extend(&layout.idle_cpus);
        let quiet = format_cpu_list(&quiet);
        steps.push(format!(
            "optional, needs a reboot: kernel command line isolcpus=managed_irq,domain,{quiet} \
             nohz_full={quiet} rcu_nocbs={quiet} irqaffinity={irq_list}"
        ));
    }
    steps.push(
        "after writing the files: sysctl --system; systemctl daemon-reload; systemctl \
         enable --now coreshard"
            .into(),
    );
    steps
}

/// Where `--apply` writes each file: the default system paths, or `out` when given.
pub fn targets(plan: &Plan, out: Option<&Path>) -> Vec<PlanFile> {
    [&plan.sysctl, &plan.unit]
        .into_iter()
        .map(|f| PlanFile {
            path: match out {
                Some(dir) => dir.join(f.path.file_name().unwrap_or_default()),
                None => f.path.clone(),
            },
            content: f.content.clone(),
        })
        .collect()
}

/// What `--apply` did or would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Dry run: these files would be written.
    WouldWrite(Vec<PathBuf>),
    /// These files were written.
    Wrote(Vec<PathBuf>),
}

/// Write the plan's files (`yes`) or say where they would go. Writing to the system paths
/// needs root; `out` writes them to a directory of your choosing instead.
pub fn apply(plan: &Plan, out: Option<&Path>, yes: bool, is_root: bool) -> Result<Applied, String> {
    let files = targets(plan, out);
    let paths: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
    if !yes {
        return Ok(Applied::WouldWrite(paths));
    }
    if out.is_none() && !is_root {
        return Err(format!(
            "refusing to write {} and {}: --apply --yes writes system files and must run as \
             root (sudo), or pass --out DIR to write them elsewhere",
            SYSCTL_PATH, UNIT_PATH
        ));
    }
    if let Some(dir) = out {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    for f in &files {
        std::fs::write(&f.path, &f.content)
            .map_err(|e| format!("cannot write {}: {e}", f.path.display()))?;
    }
    Ok(Applied::Wrote(paths))
}

/// Whether this process runs as root (effective uid 0, from `/proc/self/status`).
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}
