//! Fake `/proc` and `/sys` trees for tests, built in a temporary directory.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use coreshard_tune::{Finding, Options, Root, Severity};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("coreshard-tune-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fake host.
pub struct Fixture {
    pub dir: TempDir,
    /// The shard CPUs a well-tuned host runs on (what `good_options` passes as --cores).
    pub shard_cpus: Vec<usize>,
}

/// The CPUs of the same physical core as `cpu` when `smt`: siblings are `i` and
/// `i + n/2`, as Intel numbers them.
pub fn siblings(cpu: usize, n: usize, smt: bool) -> Vec<usize> {
    if smt {
        let half = n / 2;
        let c = cpu % half;
        vec![c, c + half]
    } else {
        vec![cpu]
    }
}

pub fn list(cpus: &[usize]) -> String {
    coreshard_tune::topology::format_cpu_list(cpus)
}

impl Fixture {
    /// Nothing at all.
    pub fn empty() -> Fixture {
        Fixture {
            dir: TempDir::new("fx"),
            shard_cpus: Vec::new(),
        }
    }

    pub fn write(&self, path: &str, content: &str) -> &Fixture {
        let p = self.dir.path().join(path.trim_start_matches('/'));
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, content).expect("write fixture file");
        self
    }

    pub fn mkdir(&self, path: &str) -> &Fixture {
        std::fs::create_dir_all(self.dir.path().join(path.trim_start_matches('/'))).expect("mkdir");
        self
    }

    pub fn remove(&self, path: &str) -> &Fixture {
        let p = self.dir.path().join(path.trim_start_matches('/'));
        let _ = std::fs::remove_file(&p);
        let _ = std::fs::remove_dir_all(&p);
        self
    }

    /// A symlink at `link` pointing to `target` (relative, as sysfs writes them).
    pub fn symlink(&self, link: &str, target: &str) -> &Fixture {
        let p = self.dir.path().join(link.trim_start_matches('/'));
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::os::unix::fs::symlink(target, p).expect("symlink");
        self
    }

    pub fn root(&self) -> Root {
        Root::new(self.dir.path())
    }

    /// CPU topology files only: `n` online CPUs, SMT pairs when `smt`.
    pub fn cpus(&self, n: usize, smt: bool) -> &Fixture {
        self.write("/sys/devices/system/cpu/online", &format!("0-{}\n", n - 1));
        for c in 0..n {
            self.write(
                &format!("/sys/devices/system/cpu/cpu{c}/topology/thread_siblings_list"),
                &format!("{}\n", list(&siblings(c, n, smt))),
            );
        }
        self
    }

    /// A well-tuned host with `n` CPUs: shards on one thread of every physical core but
    /// the first, NIC interrupts on CPU 0, everything else as it should be.
    pub fn healthy(n: usize, smt: bool) -> Fixture {
        let f = Fixture::empty();
        f.cpus(n, smt);
        let cores = if smt { n / 2 } else { n };
        let shard_cpus: Vec<usize> = (1..cores).collect();
        // Shards and their idle SMT siblings are isolated.
        let quiet: Vec<usize> = shard_cpus
            .iter()
            .flat_map(|c| siblings(*c, n, smt))
            .collect();
        let sl = list(&quiet);
        for c in 0..n {
            f.write(
                &format!("/sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor"),
                "performance\n",
            );
        }
        f.write("/sys/devices/system/cpu/isolated", &format!("{sl}\n"));
        f.write(
            "/proc/cmdline",
            &format!(
                "BOOT_IMAGE=/vmlinuz root=/dev/nvme0n1p2 ro isolcpus=managed_irq,domain,{sl} \
                 nohz_full={sl} rcu_nocbs={sl} irqaffinity=0\n"
            ),
        );
        f.write(
            "/proc/self/status",
            &format!(
                "Name:\tcoreshard-tune\nUid:\t0\t0\t0\t0\nCpus_allowed_list:\t0-{}\n",
                n - 1
            ),
        );
        f.write("/proc/sys/kernel/io_uring_disabled", "0\n");
        f.write("/proc/sys/kernel/osrelease", "6.8.0-45-generic\n");
        f.write("/proc/sys/vm/swappiness", "1\n");
        f.write("/proc/sys/vm/overcommit_memory", "0\n");
        f.write("/proc/sys/net/core/somaxconn", "4096\n");
        f.write("/proc/sys/net/ipv4/tcp_max_syn_backlog", "4096\n");
        f.write("/proc/sys/net/core/busy_poll", "0\n");
        f.write("/proc/sys/net/core/busy_read", "0\n");
        f.write(
            "/sys/kernel/mm/transparent_hugepage/enabled",
            "always [madvise] never\n",
        );
        f.write(
            "/proc/swaps",
            "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n",
        );
        f.write(
            "/proc/self/limits",
            &limits(1_048_576, 1_048_576, None, None),
        );
        f.write(
            "/proc/mounts",
            "/dev/nvme0n1p2 / ext4 rw,relatime 0 0\n\
             proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n\
             /dev/nvme1n1 /var/lib/coreshard xfs rw,noatime 0 0\n\
             tmpfs /run tmpfs rw,nosuid,nodev 0 0\n",
        );
        f.mkdir("/sys/block/nvme0n1/nvme0n1p2");
        f.write("/sys/block/nvme0n1/queue/write_cache", "write through\n");
        f.write("/sys/block/nvme0n1/queue/rotational", "0\n");
        f.write("/sys/block/nvme1n1/queue/write_cache", "write through\n");
        f.write("/sys/block/nvme1n1/queue/rotational", "0\n");
        // One NIC with a queue and an interrupt per CPU, all interrupts on CPU 0.
        f.mkdir("/sys/devices/pci0000:00/0000:3b:00.0");
        f.symlink(
            "/sys/class/net/eth0/device",
            "../../../devices/pci0000:00/0000:3b:00.0",
        );
        f.mkdir("/sys/class/net/lo");
        f.mkdir("/sys/class/net/docker0");
        let mut interrupts = String::from("           CPU0       CPU1\n");
        interrupts.push_str("  0:         45          0   IO-APIC   2-edge      timer\n");
        for q in 0..n {
            f.mkdir(&format!("/sys/class/net/eth0/queues/rx-{q}"));
            f.mkdir(&format!("/sys/class/net/eth0/queues/tx-{q}"));
            let irq = 100 + q;
            interrupts.push_str(&format!(
                " {irq}:        100          0  IR-PCI-MSI 1048576-edge      eth0-TxRx-{q}\n"
            ));
            f.write(&format!("/proc/irq/{irq}/smp_affinity_list"), "0\n");
        }
        interrupts.push_str("NMI:          0          0   Non-maskable interrupts\n");
        f.write("/proc/interrupts", &interrupts);
        Fixture {
            dir: f.dir,
            shard_cpus,
        }
    }

    /// The options that match the healthy layout.
    pub fn good_options(&self) -> Options {
        Options {
            shards: Some(self.shard_cpus.len()),
            cores: self.shard_cpus.clone(),
            dir: PathBuf::from("/var/lib/coreshard"),
            maxclients: 10_000,
            measure_fsync: false,
        }
    }
}

/// A `/proc/self/limits` text.
pub fn limits(
    nofile_soft: u64,
    nofile_hard: u64,
    memlock: Option<u64>,
    memlock_hard: Option<u64>,
) -> String {
    let show = |v: Option<u64>| v.map_or("unlimited".to_string(), |v| v.to_string());
    format!(
        "Limit                     Soft Limit           Hard Limit           Units     \n\
         Max cpu time              unlimited            unlimited            seconds   \n\
         Max open files            {nofile_soft:<20} {nofile_hard:<20} files     \n\
         Max locked memory         {:<20} {:<20} bytes     \n\
         Max address space         unlimited            unlimited            bytes     \n",
        show(memlock),
        show(memlock_hard)
    )
}

/// The finding with this id (panics with the list when absent: this is a test helper).
pub fn find<'a>(findings: &'a [Finding], id: &str) -> &'a Finding {
    findings
        .iter()
        .find(|f| f.id == id)
        .unwrap_or_else(|| panic!("no finding {id} in {findings:#?}"))
}

/// Audit the fixture with `opts` and return the finding `id`.
pub fn check(f: &Fixture, opts: &Options, id: &str) -> Finding {
    let all = coreshard_tune::audit(&f.root(), opts);
    find(&all, id).clone()
}

pub fn sev(f: &Fixture, opts: &Options, id: &str) -> Severity {
    check(f, opts, id).severity
}
