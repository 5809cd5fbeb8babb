//! Every audit check on a fake host: the good case and the bad ones.

mod common;

use common::{check, find, limits, sev, Fixture};
use coreshard_tune::{audit, Options, Severity};

#[test]
fn healthy_hosts_are_all_ok() {
    for (n, smt) in [(2, false), (8, true), (16, true), (16, false)] {
        let f = Fixture::healthy(n, smt);
        let findings = audit(&f.root(), &f.good_options());
        for x in &findings {
            if x.id == "disk.fdatasync" {
                // Never measured under a fixture root.
                assert_eq!(x.severity, Severity::Info, "{x:?}");
                assert!(x.saw.contains("not measured"), "{x:?}");
                continue;
            }
            assert_eq!(x.severity, Severity::Ok, "{n} CPUs, smt {smt}: {x:#?}");
            assert!(x.fix.is_none(), "{x:?}");
        }
        assert!(findings.len() >= 17, "{findings:#?}");
    }
}

#[test]
fn findings_come_worst_first() {
    let f = Fixture::healthy(8, true);
    f.write("/proc/sys/kernel/io_uring_disabled", "2\n");
    f.write(
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "[always] madvise never\n",
    );
    let all = audit(&f.root(), &f.good_options());
    assert_eq!(all[0].id, "kernel.io_uring_disabled");
    assert_eq!(all[0].severity, Severity::Bad);
    assert!(all.windows(2).all(|w| w[0].severity >= w[1].severity));
    assert_eq!(coreshard_tune::worst(&all), Severity::Bad);
}

#[test]
fn empty_root_reports_instead_of_panicking() {
    let f = Fixture::empty();
    let all = audit(&f.root(), &Options::default());
    assert!(!all.is_empty());
    let unreadable = all
        .iter()
        .filter(|x| x.saw.starts_with("could not read"))
        .count();
    assert!(unreadable >= 8, "{all:#?}");
    assert!(all.iter().all(|x| x.severity <= Severity::Info), "{all:#?}");
}

#[test]
fn io_uring_disabled() {
    let f = Fixture::healthy(2, false);
    let o = f.good_options();
    let id = "kernel.io_uring_disabled";
    assert_eq!(sev(&f, &o, id), Severity::Ok);
    f.write("/proc/sys/kernel/io_uring_disabled", "1\n");
    f.write("/proc/sys/kernel/io_uring_group", "989\n");
    let x = check(&f, &o, id);
    assert_eq!(x.severity, Severity::Warn);
    assert!(x.saw.contains("989"));
    f.write("/proc/sys/kernel/io_uring_disabled", "2\n");
    let x = check(&f, &o, id);
    assert_eq!(x.severity, Severity::Bad);
    assert!(x.fix.unwrap().contains("kernel.io_uring_disabled=0"));
    // Kernels before 6.6 have no switch: io_uring is on.
    f.remove("/proc/sys/kernel/io_uring_disabled");
    assert_eq!(sev(&f, &o, id), Severity::Ok);
}

#[test]
fn kernel_version() {
    let f = Fixture::healthy(2, false);
    let o = f.good_options();
    let id = "kernel.version";
    for (release, want) in [
        ("6.8.0-45-generic", Severity::Ok),
        ("6.1.0-18-amd64", Severity::Ok),
        ("6.0.19", Severity::Warn),
        ("5.19.0", Severity::Warn),
        ("5.18.3", Severity::Bad),
        ("5.15.0-91-generic", Severity::Bad),
        ("4.18.0-513.el8.x86_64", Severity::Bad),
        ("weird", Severity::Info),
    ] {
        f.write("/proc/sys/kernel/osrelease", release);
        let x = check(&f, &o, id);
        assert_eq!(x.severity, want, "{release}: {x:?}");
    }
    f.write("/proc/sys/kernel/osrelease", "6.0.19");
    assert!(check(&f, &o, id).saw.contains("DEFER_TASKRUN"));
    f.write("/proc/sys/kernel/osrelease", "5.15.0");
    assert!(check(&f, &o, id).saw.contains("provided buffer rings"));
    f.write("/proc/sys/kernel/osrelease", "6.6.0");
    assert!(check(&f, &o, id).saw.contains("recv bundles"));
    f.remove("/proc/sys/kernel/osrelease");
    assert!(check(&f, &o, id).saw.starts_with("could not read"));
}

#[test]
fn shards_beyond_cores() {
    let f = Fixture::healthy(2, false);
    let mut o = f.good_options();
    o.shards = Some(4);
    o.cores = vec![0, 1];
    let x = check(&f, &o, "cpu.shards");
    assert_eq!(x.severity, Severity::Bad);
    assert!(x.fix.unwrap().contains("--shards 2"));
    // A core that is not online.
    let mut o = f.good_options();
    o.cores = vec![1, 9];
    o.shards = Some(2);
    let x = check(&f, &o, "cpu.shards");
    assert_eq!(x.severity, Severity::Bad);
    assert!(x.saw.contains("shard cores 9 are not online"), "{x:?}");
    // Default: one shard per allowed CPU.
    let o = Options {
        measure_fsync: false,
        ..Options::default()
    };
    let x = check(&f, &o, "cpu.shards");
    assert_eq!(x.severity, Severity::Ok);
    assert!(x.saw.contains("2 shard(s) on cores 0-1"), "{x:?}");
}

#[test]
fn governor() {
    let f = Fixture::healthy(8, true);
    let o = f.good_options();
    let id = "cpu.governor";
    f.write(
        "/sys/devices/system/cpu/cpu2/cpufreq/scaling_governor",
        "powersave\n",
    );
    f.write(
        "/sys/devices/system/cpu/cpu3/cpufreq/scaling_governor",
        "schedutil\n",
    );
    let x = check(&f, &o, id);
    assert_eq!(x.severity, Severity::Warn);
    assert!(x.saw.contains("cpu2=powersave"));
    let fix = x.fix.unwrap();
    assert!(
        fix.contains("cpupower -c 2-3 frequency-set -g performance"),
        "{fix}"
    );
    // A governor on a non-shard CPU does not matter.
    let f = Fixture::healthy(8, true);
    f.write(
        "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor",
        "powersave\n",
    );
    assert_eq!(sev(&f, &o, id), Severity::Ok);
    // No cpufreq at all (a VM).
    for c in 0..8 {
        f.remove(&format!("/sys/devices/system/cpu/cpu{c}/cpufreq"));
    }
    assert_eq!(sev(&f, &o, id), Severity::Info);
}

#[test]
fn smt_siblings() {
    let f = Fixture::healthy(8, true);
    let id = "cpu.smt";
    // Shards on both threads of cores 1 and 2.
    let mut o = f.good_options();
    o.shards = Some(4);
    o.cores = vec![1, 2, 5, 6];
    let x = check(&f, &o, id);
    assert_eq!(x.severity, Severity::Warn);
    assert!(x.saw.contains("1+5") && x.saw.contains("2+6"), "{x:?}");
    assert!(x.fix.unwrap().contains("--cores 0,1,2,3"));
    // More shards than physical cores: the fix says so.
    o.shards = Some(6);
    o.cores = vec![0, 1, 2, 4, 5, 6];
    let x = check(&f, &o, id);
    assert!(x.fix.unwrap().contains("exceed 4 physical cores"));
    // One per core but siblings not isolated: info.
    f.write("/sys/devices/system/cpu/isolated", "");
    f.write("/proc/cmdline", "root=/dev/nvme0n1p2 ro\n");
    let o = f.good_options();
    let x = check(&f, &o, id);
    assert_eq!(x.severity, Severity::Info);
    assert!(x.saw.contains("1 (sibling 5)"));
    // No SMT.
    let f = Fixture::healthy(4, false);
    let x = check(&f, &f.good_options(), id);
    assert_eq!(x.severity, Severity::Ok);
    assert!(x.saw.contains("no SMT"));
}

#[test]
fn isolation() {
    let f = Fixture::healthy(8, false);
    let o = f.good_options(); // shards 1-7
    let id = "cpu.isolation";
    assert_eq!(sev(&f, &o, id), Severity::Ok);
    f.write("/sys/devices/system/cpu/isolated", "");
    f.write("/proc/cmdline", "root=/dev/sda1 ro quiet\n");
    let x = check(&f, &o, id);
    assert_eq!(x.severity, Severity::Info);
    let fix = x.fix.unwrap();
    assert!(
        fix.contains("isolcpus=managed_irq,domain,1-7 nohz_full=1-7 rcu_nocbs=1-7"),
        "{fix}"
    );
    assert!(fix.contains("--cores 1,2,3,4,5,6,7"), "{fix}");
    // Partly isolated.
    f.write(
        "/proc/cmdline",
        "root=/dev/sda1 isolcpus=1-3 nohz_full=1-3 rcu_nocbs=1-3\n",
    );
    assert_eq!(sev(&f, &o, id), Severity::Warn);
    // The wrong cores isolated.
    let mut o2 = o.clone();
    o2.shards = Some(2);
    o2.cores = vec![5, 6];
    assert_eq!(sev(&f, &o2, id), Severity::Warn);
    // Isolated but tick and RCU not offloaded.
    f.write("/proc/cmdline", "root=/dev/sda1 isolcpus=1-7\n");
    assert_eq!(sev(&f, &o, id), Severity::Info);
    // Text after `--` belongs to init, not the kernel.
    f.write(
        "/proc/cmdline",
        "root=/dev/sda1 -- isolcpus=1-7 nohz_full=1-7 rcu_nocbs=1-7\n",
    );
    assert_eq!(sev(&f, &o, id), Severity::Info);
    f.write(
        "/proc/cmdline",
        "root=/dev/sda1 isolcpus=1-7 nohz_full=1-7 rcu_nocbs=1-7\n",
    );
    assert_eq!(sev(&f, &o, id), Severity::Ok);
    f.remove("/proc/cmdline");
    assert!(check(&f, &o, id)
        .saw
        .starts_with("could not read /proc/cmdline"));
}

#[test]
fn irq_affinity() {
    let f = Fixture::healthy(8, false);
    let o = f.good_options(); // shards 1-7, IRQs on 0
    let id = "net.irq_affinity.eth0";
    let x = check(&f, &o, id);
    assert_eq!(x.severity, Severity::Ok, "{x:?}");
    assert!(x.saw.contains("100 eth0-TxRx-0→0"), "{x:?}");
    // Default affinity: every CPU.
    f.write("/proc/irq/103/smp_affinity_list", "0-7\n");
    f.write("/proc/irq/105/smp_affinity_list", "5\n");
    let x = check(&f, &o, id);
    assert_eq!(x.severity, Severity::Warn);
    let fix = x.fix.unwrap();
    assert!(
        fix.contains("echo 0 > /proc/irq/103/smp_affinity_list"),
        "{fix}"
    );
    assert!(
        fix.contains("echo 0 > /proc/irq/105/smp_affinity_list"),
        "{fix}"
    );
    assert!(!fix.contains("/proc/irq/100/"), "{fix}");
    assert!(fix.contains("irqbalance"));
    // Every CPU runs a shard: nowhere else to put them.
    let mut all = o.clone();
    all.shards = Some(8);
    all.cores = (0..8).collect();
    assert_eq!(sev(&f, &all, id), Severity::Info);
    // A virtio NIC: interrupts are named after the device, not the interface.
    let f = Fixture::healthy(2, false);
    f.remove("/sys/class/net/eth0");
    f.mkdir("/sys/devices/pci0000:00/0000:00:03.0/virtio2");
    f.symlink(
        "/sys/class/net/ens3/device",
        "../../../devices/pci0000:00/0000:00:03.0/virtio2",
    );
    f.mkdir("/sys/class/net/ens3/queues/rx-0");
    f.write(
        "/proc/interrupts",
        "      CPU0 CPU1\n 38:  0  394  PCI-MSIX-0000:00:03.0  1-edge  virtio2-input.0\n 39: 375 0 PCI-MSIX-0000:00:03.0  2-edge  virtio2-output.0\n 41: 1 0 PCI-MSIX-0000:00:04.0 1-edge virtio3-rx\n",
    );
    f.write("/proc/irq/38/smp_affinity_list", "1\n");
    f.write("/proc/irq/39/smp_affinity_list", "0\n");
    let x = check(&f, &f.good_options(), "net.irq_affinity.ens3");
    assert_eq!(x.severity, Severity::Warn, "{x:?}");
    assert!(
        x.saw.contains("virtio2-input.0") && !x.saw.contains("virtio3"),
        "{x:?}"
    );
    // IRQs listed under the device's msi_irqs.
    f.mkdir("/sys/devices/pci0000:00/0000:00:03.0/virtio2/msi_irqs/41");
    let x = check(&f, &f.good_options(), "net.irq_affinity.ens3");
    assert!(x.saw.contains("virtio3-rx"), "{x:?}");
    // No NIC at all.
    let f = Fixture::healthy(2, false);
    f.remove("/sys/class/net/eth0");
    let all = audit(&f.root(), &f.good_options());
    assert_eq!(find(&all, "net.irq_affinity").severity, Severity::Info);
    assert_eq!(find(&all, "net.rss_queues").severity, Severity::Info);
}

#[test]
fn rss_queues() {
    let f = Fixture::healthy(16, false);
    let o = f.good_options(); // 15 shards, 16 queues
    let id = "net.rss_queues.eth0";
    assert_eq!(sev(&f, &o, id), Severity::Ok);
    for q in 1..16 {
        f.remove(&format!("/sys/class/net/eth0/queues/rx-{q}"));
    }
    let x = check(&f, &o, id);
    assert_eq!(x.severity, Severity::Warn);
    assert!(x.saw.contains("1 RX queue(s) for 15 shard(s)"));
    assert!(x.fix.unwrap().contains("ethtool -L eth0 combined 15"));
    f.mkdir("/sys/class/net/eth0/queues/rx-1");
    assert_eq!(sev(&f, &o, id), Severity::Info);
}

#[test]
fn socket_sysctls() {
    let f = Fixture::healthy(2, false);
    let o = f.good_options();
    f.write("/proc/sys/net/core/somaxconn", "128\n");
    let x = check(&f, &o, "net.somaxconn");
    assert_eq!(x.severity, Severity::Warn);
    assert!(x.fix.unwrap().contains("net.core.somaxconn=4096"));
    f.write("/proc/sys/net/core/somaxconn", "511\n");
    assert_eq!(sev(&f, &o, "net.somaxconn"), Severity::Ok);
    f.write("/proc/sys/net/ipv4/tcp_max_syn_backlog", "256\n");
    assert_eq!(sev(&f, &o, "net.tcp_max_syn_backlog"), Severity::Warn);
    f.write("/proc/sys/net/core/busy_poll", "50\n");
    let x = check(&f, &o, "net.busy_poll");
    assert_eq!(x.severity, Severity::Info);
    assert!(x.saw.contains("busy_poll = 50"));
    f.write("/proc/sys/net/core/somaxconn", "lots\n");
    assert!(check(&f, &o, "net.somaxconn").saw.contains("not a number"));
}

#[test]
fn memory() {
    let f = Fixture::healthy(2, false);
    let o = f.good_options();
    f.write(
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "[always] madvise never\n",
    );
    let x = check(&f, &o, "memory.thp");
    assert_eq!(x.severity, Severity::Warn);
    assert!(x.fix.unwrap().contains("transparent_hugepage=madvise"));
    f.write(
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "always madvise [never]\n",
    );
    assert_eq!(sev(&f, &o, "memory.thp"), Severity::Ok);

    f.write(
        "/proc/swaps",
        "Filename\tType\tSize\tUsed\tPriority\n/swap.img  file  4194300  0  -2\n",
    );
    f.write("/proc/sys/vm/swappiness", "60\n");
    let x = check(&f, &o, "memory.swap");
    assert_eq!(x.severity, Severity::Warn);
    assert!(x.saw.contains("/swap.img"));
    assert!(x.fix.unwrap().contains("vm.swappiness=1"));
    f.write("/proc/sys/vm/swappiness", "1\n");
    assert_eq!(sev(&f, &o, "memory.swap"), Severity::Info);

    f.write("/proc/sys/vm/overcommit_memory", "2\n");
    assert_eq!(sev(&f, &o, "memory.overcommit"), Severity::Warn);
    f.write("/proc/sys/vm/overcommit_memory", "1\n");
    assert_eq!(sev(&f, &o, "memory.overcommit"), Severity::Ok);
}

#[test]
fn open_files() {
    let f = Fixture::healthy(2, false);
    let mut o = f.good_options();
    let id = "limits.nofile";
    f.write("/proc/self/limits", &limits(1024, 1_048_576, None, None));
    let x = check(&f, &o, id);
    assert_eq!(x.severity, Severity::Info, "{x:?}");
    assert!(x.fix.unwrap().contains("LimitNOFILE=10032"));
    f.write("/proc/self/limits", &limits(1024, 4096, None, None));
    let x = check(&f, &o, id);
    assert_eq!(x.severity, Severity::Bad);
    assert!(x.saw.contains("cut maxclients to 4064"), "{x:?}");
    o.maxclients = 992; // + 32 = 1024, the soft limit
    assert_eq!(sev(&f, &o, id), Severity::Ok);
    f.write("/proc/self/limits", "Limit Soft Hard Units\n");
    assert!(check(&f, &o, id).saw.contains("no 'Max open files' line"));
}

#[test]
fn locked_memory() {
    let f = Fixture::healthy(8, false);
    let o = f.good_options(); // 7 shards
    let id = "limits.memlock";
    f.write(
        "/proc/self/limits",
        &limits(65536, 65536, Some(4096), Some(4096)),
    );
    let x = check(&f, &o, id);
    assert_eq!(x.severity, Severity::Bad);
    assert!(x.fix.unwrap().contains("LimitMEMLOCK=infinity"));
    // Enough for today's pinning, not for registered buffers.
    f.write(
        "/proc/self/limits",
        &limits(65536, 65536, Some(8 << 20), Some(8 << 20)),
    );
    assert_eq!(sev(&f, &o, id), Severity::Info);
    // Before 5.12 the rings themselves count.
    f.write("/proc/sys/kernel/osrelease", "5.10.0");
    f.write(
        "/proc/self/limits",
        &limits(65536, 65536, Some(65536), Some(65536)),
    );
    assert_eq!(sev(&f, &o, id), Severity::Bad);
}

#[test]
fn data_dir_filesystem() {
    let f = Fixture::healthy(2, false);
    let mut o = f.good_options();
    let id = "disk.filesystem";
    let x = check(&f, &o, id);
    assert_eq!(x.severity, Severity::Ok);
    assert!(
        x.saw
            .contains("/dev/nvme1n1 (xfs, mounted at /var/lib/coreshard"),
        "{x:?}"
    );
    // Relative paths are taken from / under a fixture root, and .. is folded.
    o.dir = "var/lib/../lib/coreshard/x".into();
    assert!(check(&f, &o, id).saw.contains("xfs"));
    o.dir = "/run/coreshard".into();
    let x = check(&f, &o, id);
    assert_eq!(x.severity, Severity::Bad);
    assert!(x.why.contains("vanish"));
    o.dir = "/srv/data".into();
    assert_eq!(sev(&f, &o, id), Severity::Ok); // on / (ext4)
    f.write(
        "/proc/mounts",
        "/dev/nvme0n1p2 / ext4 rw,nobarrier 0 0\nserver:/export /mnt/nfs nfs4 rw 0 0\n",
    );
    assert_eq!(sev(&f, &o, id), Severity::Warn);
    o.dir = "/mnt/nfs/coreshard".into();
    assert_eq!(sev(&f, &o, id), Severity::Warn);
    f.remove("/proc/mounts");
    assert!(check(&f, &o, id)
        .saw
        .starts_with("could not read /proc/mounts"));
}

#[test]
fn data_dir_device() {
    let f = Fixture::healthy(2, false);
    let mut o = f.good_options();
    let id = "disk.device";
    let x = check(&f, &o, id);
    assert_eq!(x.severity, Severity::Ok);
    assert!(x
        .saw
        .contains("nvme1n1: write cache 'write through', non-rotational"));
    // A partition on a disk with a volatile cache.
    o.dir = "/srv".into();
    f.write("/sys/block/nvme0n1/queue/write_cache", "write back\n");
    let x = check(&f, &o, id);
    assert_eq!(x.severity, Severity::Info);
    assert!(x.saw.starts_with("nvme0n1:"), "{x:?}");
    assert!(x.fix.unwrap().contains("Never write 'write through'"));
    // A spinning disk.
    f.write("/sys/block/nvme0n1/queue/rotational", "1\n");
    assert_eq!(sev(&f, &o, id), Severity::Warn);
    // A virtual disk says rotational whatever backs it.
    f.write("/proc/mounts", "/dev/vda / ext4 rw 0 0\n");
    f.write("/sys/block/vda/queue/write_cache", "write back\n");
    f.write("/sys/block/vda/queue/rotational", "1\n");
    assert_eq!(sev(&f, &o, id), Severity::Info);
    // Device mapper: follow /dev/mapper/NAME to dm-N.
    f.mkdir("/dev");
    f.symlink("/dev/mapper/vg-data", "../dm-3");
    f.write("/dev/dm-3", "");
    f.write("/proc/mounts", "/dev/mapper/vg-data / xfs rw 0 0\n");
    f.write("/sys/block/dm-3/queue/write_cache", "write through\n");
    f.write("/sys/block/dm-3/queue/rotational", "0\n");
    let x = check(&f, &o, id);
    assert!(x.saw.starts_with("dm-3:"), "{x:?}");
    // An unknown device.
    f.write("/proc/mounts", "/dev/sdz9 / ext4 rw 0 0\n");
    let x = check(&f, &o, id);
    assert_eq!(x.severity, Severity::Info);
    assert!(x.saw.contains("could not find"));
}

#[test]
fn fdatasync_is_only_measured_on_the_real_host() {
    let f = Fixture::healthy(2, false);
    let mut o = f.good_options();
    o.measure_fsync = true;
    let x = check(&f, &o, "disk.fdatasync");
    assert_eq!(x.severity, Severity::Info);
    assert!(x.saw.starts_with("not measured: the root is"), "{x:?}");
}

#[test]
fn fdatasync_measurement_cleans_up() {
    let dir = common::TempDir::new("fsync");
    let samples =
        coreshard_tune::checks::disk::measure(dir.path(), std::time::Duration::from_millis(200), 5)
            .expect("measure");
    assert!(!samples.is_empty() && samples.len() <= 5);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
