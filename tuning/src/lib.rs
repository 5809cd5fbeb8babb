//! coreshard-tune: reads a Linux host and says what to change so a thread-per-core
//! io_uring server runs well on it (`audit`), and proposes a core layout with the files
//! to deploy it (`plan`).
//!
//! Everything is read through a [`Root`], so the same checks run against a fake `/proc`
//! and `/sys` tree in tests. The server can call [`audit`] at start and log the worst
//! findings.

pub mod checks;
pub mod finding;
pub mod json;
pub mod nic;
pub mod plan;
pub mod report;
pub mod root;
pub mod topology;

use std::path::PathBuf;

pub use finding::{Finding, Severity};
pub use root::{ReadError, Root};
pub use topology::Topology;

/// The server's default `--maxclients`.
pub const DEFAULT_MAXCLIENTS: usize = 10_000;
/// File descriptors the server keeps beyond clients (`RESERVED_FDS` in `src/main.rs`).
pub const RESERVED_FDS: u64 = 32;
/// The engine's `listen(2)` backlog (`EngineConfig::backlog`).
pub const LISTEN_BACKLOG: u64 = 511;

/// What the audit is asked about: the server settings a host check depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `--shards` (`None`: one per allowed core, the server's default).
    pub shards: Option<usize>,
    /// `--cores` (empty: the allowed cores in order, the server's default).
    pub cores: Vec<usize>,
    /// `--dir`, where the log and snapshots go.
    pub dir: PathBuf,
    /// `--maxclients`.
    pub maxclients: usize,
    /// Measure fdatasync latency in `dir` (only ever done when the root is the real host).
    pub measure_fsync: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            shards: None,
            cores: Vec::new(),
            dir: PathBuf::from("./data"),
            maxclients: DEFAULT_MAXCLIENTS,
            measure_fsync: true,
        }
    }
}

/// What every check shares: the CPUs and where the shards would run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The CPU topology, when it could be read.
    pub topology: Option<Topology>,
    /// The CPUs the server may use by default.
    pub allowed: Vec<usize>,
    /// How many shards.
    pub shards: usize,
    /// The CPUs shards are pinned to (distinct; fewer than `shards` when shards share).
    pub shard_cores: Vec<usize>,
    /// The kernel release (`/proc/sys/kernel/osrelease`), when readable.
    pub kernel: Option<String>,
}

impl Context {
    /// Work out the topology and shard cores the way the server would.
    pub fn new(root: &Root, opts: &Options) -> Context {
        let topology = Topology::read(root).ok();
        let allowed = match &topology {
            Some(t) => topology::allowed_cpus(root, t),
            None => Vec::new(),
        };
        let pool: Vec<usize> = if opts.cores.is_empty() {
            allowed.clone()
        } else {
            opts.cores.clone()
        };
        let shards = opts.shards.filter(|n| *n > 0).unwrap_or(pool.len().max(1));
        // The engine pins shard i to cores[i % cores.len()].
        let mut shard_cores: Vec<usize> = (0..shards)
            .filter_map(|i| pool.get(i % pool.len().max(1)).copied())
            .collect();
        shard_cores.sort_unstable();
        shard_cores.dedup();
        let kernel = root.read_trim("/proc/sys/kernel/osrelease").ok();
        Context {
            topology,
            allowed,
            shards,
            shard_cores,
            kernel,
        }
    }
}

/// Audit the host under `root`: one finding per check, worst first.
pub fn audit(root: &Root, opts: &Options) -> Vec<Finding> {
    let ctx = Context::new(root, opts);
    audit_with(root, opts, &ctx)
}

/// [`audit`] with a context already worked out.
pub fn audit_with(root: &Root, opts: &Options, ctx: &Context) -> Vec<Finding> {
    let mut findings = checks::run_all(root, opts, ctx);
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    findings
}

/// The worst severity among `findings` (`Ok` when there are none).
pub fn worst(findings: &[Finding]) -> Severity {
    findings
        .iter()
        .map(|f| f.severity)
        .max()
        .unwrap_or(Severity::Ok)
}
