//! Core layouts on 2, 8 and 16-CPU hosts, with and without SMT, and the files a plan writes.

mod common;

use common::{siblings, Fixture, TempDir};
use coreshard_tune::plan::{self, layout, Applied, PlanOptions};
use coreshard_tune::Topology;

fn topo(n: usize, smt: bool) -> Topology {
    let cpus: Vec<usize> = (0..n).collect();
    Topology::from_siblings(&cpus, |c| siblings(c, n, smt))
}

#[test]
fn two_cpus() {
    let t = topo(2, false);
    let l = layout(&t, 1).unwrap();
    assert_eq!(l.shard_cpus, vec![1]);
    assert_eq!(l.wal_cpu, 0);
    assert_eq!(l.irq_cpus, vec![0]);
    assert_eq!(l.housekeeping_cpus, vec![0]);
    assert!(l.notes.is_empty());
    let l = layout(&t, 2).unwrap();
    assert_eq!(l.shard_cpus, vec![0, 1]);
    assert_eq!(l.wal_cpu, 1, "the server's own default: the last core");
    assert_eq!(l.irq_cpus, vec![0, 1]);
    assert!(l.housekeeping_cpus.is_empty());
    assert!(l.notes[0].contains("every CPU runs a shard"));
    assert!(layout(&t, 3).unwrap_err().contains("2 online"));
    assert!(layout(&t, 0).is_err());
    // Two hyper-threads of one core.
    let t = topo(2, true);
    let l = layout(&t, 1).unwrap();
    assert_eq!(l.shard_cpus, vec![1]);
    assert_eq!(l.wal_cpu, 0);
    assert!(l.notes[0].contains("shares a physical core with housekeeping"));
}

#[test]
fn eight_cpus_with_smt() {
    // Cores: {0,4} {1,5} {2,6} {3,7}.
    let t = topo(8, true);
    let l = layout(&t, 2).unwrap();
    assert_eq!(l.shard_cpus, vec![1, 2]);
    assert_eq!(l.wal_cpu, 3, "a physical core without shards");
    assert_eq!(l.irq_cpus, vec![7]);
    assert_eq!(l.housekeeping_cpus, vec![0, 4]);
    assert_eq!(l.idle_cpus, vec![5, 6]);
    assert!(l.notes.is_empty());

    let l = layout(&t, 3).unwrap();
    assert_eq!(l.shard_cpus, vec![1, 2, 3]);
    assert_eq!(l.wal_cpu, 4, "the housekeeping core's sibling");
    assert_eq!(l.irq_cpus, vec![0, 4]);
    assert_eq!(l.idle_cpus, vec![5, 6, 7]);
    assert!(l.notes.is_empty());

    // Four shards: one takes the housekeeping core's sibling before any shard doubles up.
    let l = layout(&t, 4).unwrap();
    assert_eq!(l.shard_cpus, vec![1, 2, 3, 4]);
    assert_eq!(l.wal_cpu, 0);
    assert!(l.notes.iter().any(|n| n.contains("housekeeping")));

    // Six: now shards share cores.
    let l = layout(&t, 6).unwrap();
    assert_eq!(l.shard_cpus, vec![1, 2, 3, 4, 5, 6]);
    assert!(l
        .notes
        .iter()
        .any(|n| n.contains("SMT siblings of other shards")));
    assert_eq!(l.wal_cpu, 0);

    let l = layout(&t, 8).unwrap();
    assert_eq!(l.shard_cpus, (0..8).collect::<Vec<_>>());
    assert_eq!(l.notes.len(), 2);
}

#[test]
fn sixteen_cpus_with_smt() {
    // Cores {i, i+8}.
    let t = topo(16, true);
    let l = layout(&t, 4).unwrap();
    assert_eq!(l.shard_cpus, vec![1, 2, 3, 4]);
    assert_eq!(l.wal_cpu, 5);
    assert_eq!(l.irq_cpus, vec![6, 7, 13, 14, 15]);
    assert_eq!(l.housekeeping_cpus, vec![0, 8]);
    assert_eq!(l.idle_cpus, vec![9, 10, 11, 12]);
    let l = layout(&t, 7).unwrap();
    assert_eq!(l.shard_cpus, (1..8).collect::<Vec<_>>());
    assert_eq!(l.wal_cpu, 8);
    assert_eq!(l.irq_cpus, vec![0, 8]);
    assert!(l.notes.is_empty());
    let l = layout(&t, 8).unwrap();
    assert_eq!(l.shard_cpus, (1..9).collect::<Vec<_>>());
    assert_eq!(l.wal_cpu, 0);
}

#[test]
fn no_two_shards_share_a_core_while_cores_remain() {
    for (n, smt) in [(8, true), (16, true), (16, false), (2, false)] {
        let t = topo(n, smt);
        let physical = t.cores.len();
        for shards in 1..physical {
            let l = layout(&t, shards).unwrap();
            assert_eq!(l.shard_cpus.len(), shards);
            for core in &t.cores {
                let on = core.iter().filter(|c| l.shard_cpus.contains(c)).count();
                assert!(on <= 1, "{n} cpus smt {smt}, {shards} shards: {l:?}");
            }
            assert!(!l.shard_cpus.contains(&l.wal_cpu), "{l:?}");
            assert!(
                l.irq_cpus.iter().all(|c| !l.shard_cpus.contains(c)),
                "{l:?}"
            );
            assert!(!l.housekeeping_cpus.is_empty());
        }
    }
}

#[test]
fn plan_files() {
    let f = Fixture::healthy(8, true);
    f.write("/proc/sys/kernel/io_uring_disabled", "1\n");
    f.write("/proc/sys/net/core/somaxconn", "65535\n");
    f.write("/proc/sys/vm/overcommit_memory", "2\n");
    f.write(
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "[always] madvise never\n",
    );
    let opts = PlanOptions {
        shards: 3,
        maxclients: 50_000,
        ..PlanOptions::default()
    };
    let p = plan::plan(&f.root(), &opts).unwrap();
    assert_eq!(
        p.command,
        "/usr/local/bin/coreshard --shards 3 --cores 1,2,3 --wal-core 4 --dir /var/lib/coreshard \
         --maxclients 50000 --bind 127.0.0.1 --port 6379"
    );
    let s = &p.sysctl.content;
    assert!(
        s.contains("net.core.somaxconn = 65535"),
        "keeps a higher value: {s}"
    );
    assert!(s.contains("net.ipv4.tcp_max_syn_backlog = 4096"));
    assert!(s.contains("vm.swappiness = 1"));
    assert!(s.contains("vm.overcommit_memory = 0"));
    assert!(s.contains("kernel.io_uring_disabled = 0"));
    let u = &p.unit.content;
    assert!(u.contains(&format!("ExecStart={}\n", p.command)));
    assert!(u.contains("CPUAffinity=1 2 3 4\n"), "{u}");
    assert!(u.contains("LimitNOFILE=50176\n"), "{u}");
    assert!(u.contains("LimitMEMLOCK=infinity\n"));
    assert!(u.contains("StateDirectory=coreshard\n"));
    assert_eq!(
        p.unit.path.to_str(),
        Some("/etc/systemd/system/coreshard.service")
    );
    assert_eq!(
        p.sysctl.path.to_str(),
        Some("/etc/sysctl.d/60-coreshard.conf")
    );
    let steps = p.steps.join("\n");
    // IRQs are on CPU 0 in the fixture; the plan moves them to 0,4.
    assert!(
        steps.contains("echo 0,4 > /proc/irq/100/smp_affinity_list"),
        "{steps}"
    );
    assert!(
        steps.contains("cpupower -c 1-3 frequency-set -g performance"),
        "{steps}"
    );
    assert!(steps.contains("transparent_hugepage=madvise"), "{steps}");
    assert!(
        steps.contains("isolcpus=managed_irq,domain,1-3,5-7"),
        "{steps}"
    );

    // A healthy host gets no io_uring or overcommit lines, and a dir outside /var/lib.
    let f = Fixture::healthy(2, false);
    let opts = PlanOptions {
        shards: 1,
        dir: "/data/coreshard".into(),
        ..PlanOptions::default()
    };
    let p = plan::plan(&f.root(), &opts).unwrap();
    assert!(!p.sysctl.content.contains("io_uring"));
    assert!(!p.sysctl.content.contains("overcommit"));
    assert!(p.unit.content.contains("ReadWritePaths=/data/coreshard\n"));
    assert!(p.unit.content.contains("CPUAffinity=0 1\n"));

    // Too many shards, or no topology: an error, not a panic.
    let opts = PlanOptions {
        shards: 3,
        ..PlanOptions::default()
    };
    assert!(plan::plan(&f.root(), &opts).is_err());
    let empty = Fixture::empty();
    let e = plan::plan(&empty.root(), &opts).unwrap_err();
    assert!(
        e.contains("could not read /sys/devices/system/cpu/online"),
        "{e}"
    );
}

#[test]
fn apply_dry_run_write_and_refuse() {
    let f = Fixture::healthy(8, false);
    let opts = PlanOptions {
        shards: 4,
        ..PlanOptions::default()
    };
    let p = plan::plan(&f.root(), &opts).unwrap();
    // Dry run: nothing written, the system paths named.
    match plan::apply(&p, None, false, false).unwrap() {
        Applied::WouldWrite(paths) => {
            assert_eq!(paths[0].to_str(), Some("/etc/sysctl.d/60-coreshard.conf"));
            assert_eq!(
                paths[1].to_str(),
                Some("/etc/systemd/system/coreshard.service")
            );
        }
        other => panic!("{other:?}"),
    }
    // Writing the system files needs root.
    let e = plan::apply(&p, None, true, false).unwrap_err();
    assert!(e.contains("must run as root"), "{e}");
    // --out writes elsewhere.
    let out = TempDir::new("out");
    let dir = out.path().join("etc");
    match plan::apply(&p, Some(&dir), true, false).unwrap() {
        Applied::Wrote(paths) => assert_eq!(paths.len(), 2),
        other => panic!("{other:?}"),
    }
    let unit = std::fs::read_to_string(dir.join("coreshard.service")).unwrap();
    assert_eq!(unit, p.unit.content);
    let sysctl = std::fs::read_to_string(dir.join("60-coreshard.conf")).unwrap();
    assert_eq!(sysctl, p.sysctl.content);
}
