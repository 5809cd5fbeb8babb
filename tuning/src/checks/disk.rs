//! The filesystem and device under `--dir`, and (on the real host only) how long an
//! fdatasync takes there.

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{Finding, Options, Root, Severity};

/// One line of `/proc/mounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Source (`/dev/nvme0n1p2`, `tmpfs`, ...).
    pub source: String,
    /// Mount point.
    pub point: String,
    /// Filesystem type.
    pub fstype: String,
    /// Options.
    pub options: String,
}

/// Undo `/proc/mounts` octal escapes (`\040` is a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = oct
                    .iter()
                    .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse `/proc/mounts`.
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some(Mount {
                source: unescape(f.next()?),
                point: unescape(f.next()?),
                fstype: f.next()?.to_string(),
                options: f.next().unwrap_or("").to_string(),
            })
        })
        .collect()
}

/// The mount holding `path` (absolute, normalized): the longest mount point that is a
/// prefix of it, the later one when a point is mounted over.
pub fn mount_for<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    let mut best: Option<&Mount> = None;
    for m in mounts {
        if path.starts_with(Path::new(&m.point))
            && best.is_none_or(|b| m.point.len() >= b.point.len())
        {
            best = Some(m);
        }
    }
    best
}

/// `--dir` as an absolute, normalized path: relative to the working directory on the real
/// host, to `/` under a fixture root; symlinks resolved where it exists on the real host.
pub fn resolve_dir(root: &Root, dir: &Path) -> PathBuf {
    let abs = if dir.is_absolute() {
        dir.to_path_buf()
    } else if root.is_host() {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(dir)
    } else {
        Path::new("/").join(dir)
    };
    let mut norm = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::ParentDir => {
                norm.pop();
            }
            Component::Normal(p) => norm.push(p),
            _ => {}
        }
    }
    if root.is_host() {
        // Resolve symlinks in the part that exists; keep the rest as written.
        let (existing, rest) = split_existing(&norm);
        if let Ok(canon) = existing.canonicalize() {
            return canon.join(rest);
        }
    }
    norm
}

/// The longest existing ancestor of `path` (on the real filesystem) and what follows it.
fn split_existing(path: &Path) -> (PathBuf, PathBuf) {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        match existing.file_name() {
            Some(n) => rest.push(n.to_owned()),
            None => break,
        }
        if !existing.pop() {
            break;
        }
    }
    let mut tail = PathBuf::new();
    for n in rest.iter().rev() {
        tail.push(n);
    }
    (existing, tail)
}

/// The `/sys/block` disk behind a mount source (`/dev/nvme0n1p2` -> `nvme0n1`).
pub fn block_device(root: &Root, source: &str) -> Option<String> {
    let name = if source.starts_with("/dev/mapper/") || source.starts_with("/dev/disk/") {
        root.link_name(source)?
    } else {
        source.strip_prefix("/dev/")?.to_string()
    };
    if root.exists(&format!("/sys/block/{name}")) {
        return Some(name);
    }
    // A partition: the disk that has it as a subdirectory.
    root.list("/sys/block")
        .ok()?
        .into_iter()
        .find(|disk| root.exists(&format!("/sys/block/{disk}/{name}")))
}

/// Filesystem, device and fdatasync latency for `--dir`.
pub fn check(root: &Root, opts: &Options) -> Vec<Finding> {
    let dir = resolve_dir(root, &opts.dir);
    let mut out = Vec::new();
    let id = "disk.filesystem";
    let why = "the write-ahead log lives in --dir; with appendfsync always every write's \
               reply waits for its fdatasync, so the filesystem decides durability and \
               write latency";
    let mounts = match root.read("/proc/mounts") {
        Ok(t) => parse_mounts(&t),
        Err(e) => return vec![Finding::unreadable(id, &e, why)],
    };
    let Some(mount) = mount_for(&mounts, &dir) else {
        return vec![Finding::new(
            id,
            Severity::Info,
            format!("no mount in /proc/mounts holds {}", dir.display()),
            why,
            None,
        )];
    };
    let saw = format!(
        "{} is on {} ({}, mounted at {}, options {})",
        dir.display(),
        mount.source,
        mount.fstype,
        mount.point,
        mount.options
    );
    let opt_set: Vec<&str> = mount.options.split(',').collect();
    let no_barrier = opt_set
        .iter()
        .any(|o| *o == "nobarrier" || *o == "barrier=0");
    let f = match mount.fstype.as_str() {
        "tmpfs" | "ramfs" => Finding::new(
            id,
            Severity::Bad,
            saw,
            format!("{why}; on a memory filesystem the log and snapshots vanish at reboot"),
            Some("point --dir at a disk-backed filesystem (ext4 or xfs)".to_string()),
        ),
        "nfs" | "nfs4" | "cifs" | "smb3" | "fuse" | "9p" | "virtiofs" => Finding::new(
            id,
            Severity::Warn,
            saw,
            format!("{why}; a network or FUSE filesystem adds a round trip to every fsync"),
            Some("point --dir at a local ext4 or xfs filesystem".to_string()),
        ),
        "overlay" => Finding::new(
            id,
            Severity::Info,
            saw,
            format!("{why}; an overlay (container layer) is slow to sync and lost with the container"),
            Some("mount a volume at --dir".to_string()),
        ),
        "btrfs" => Finding::new(
            id,
            Severity::Info,
            saw,
            format!("{why}; copy-on-write makes each fdatasync rewrite metadata"),
            Some(format!("chattr +C {} (before the first log file is written)", dir.display())),
        ),
        _ if no_barrier => Finding::new(
            id,
            Severity::Warn,
            saw,
            format!("{why}; without barriers fdatasync does not flush the drive's cache, so acknowledged writes can be lost on power failure"),
            Some(format!("mount -o remount,barrier {}", mount.point)),
        ),
        _ => Finding::ok(id, saw, why),
    };
    out.push(f);
    if mount.source.starts_with("/dev/") {
        out.extend(device(root, &mount.source));
    }
    out.extend(fsync_latency(root, opts, &dir));
    out
}

fn device(root: &Root, source: &str) -> Vec<Finding> {
    let id = "disk.device";
    let why = "with a volatile write-back cache every fdatasync also flushes the drive's \
               cache, which is most of its cost; a rotating disk adds a seek and a rotation";
    let Some(dev) = block_device(root, source) else {
        return vec![Finding::new(
            id,
            Severity::Info,
            format!("could not find the /sys/block device of {source}"),
            why,
            None,
        )];
    };
    let cache_path = format!("/sys/block/{dev}/queue/write_cache");
    let cache = root.read_trim(&cache_path);
    let rotational = root
        .read_trim(&format!("/sys/block/{dev}/queue/rotational"))
        .ok();
    let cache_text = match &cache {
        Ok(c) => format!("write cache '{c}'"),
        Err(e) => e.to_string(),
    };
    let saw = format!(
        "{dev}: {cache_text}, {}",
        match rotational.as_deref() {
            Some("1") => "rotational",
            Some("0") => "non-rotational",
            _ => "rotational unknown",
        }
    );
    // Virtual disks (virtio-blk, Xen) report rotational = 1 whatever backs them.
    let virtual_disk = dev.starts_with("vd") || dev.starts_with("xvd");
    if rotational.as_deref() == Some("1") && virtual_disk {
        return vec![Finding::new(
            id,
            Severity::Info,
            saw + " (a virtual disk: the flag says nothing about the storage behind it; see \
                   disk.fdatasync for what a sync costs)",
            why,
            None,
        )];
    }
    if rotational.as_deref() == Some("1") {
        return vec![Finding::new(
            id,
            Severity::Warn,
            saw,
            why,
            Some(
                "put --dir on an SSD or NVMe drive, or run with --appendfsync everysec \
                 (about a second of writes at risk on a crash)"
                    .to_string(),
            ),
        )];
    }
    match cache.as_deref() {
        Ok("write back") => vec![Finding::new(
            id,
            Severity::Info,
            saw,
            why,
            Some(
                "nothing to change for safety; for latency, prefer a drive with power-loss \
                 protection (it reports 'write through' or completes flushes at once). \
                 Never write 'write through' to write_cache on a drive that has a volatile \
                 cache: flushes stop and acknowledged writes can be lost"
                    .to_string(),
            ),
        )],
        Ok(_) => vec![Finding::ok(id, saw, why)],
        Err(_) => vec![Finding::new(id, Severity::Info, saw, why, None)],
    }
}

/// Percentile (0..=100) of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn fsync_latency(root: &Root, opts: &Options, dir: &Path) -> Vec<Finding> {
    let id = "disk.fdatasync";
    let why = "with appendfsync always a write's reply waits for the WAL's fdatasync (many \
               writes share one, but none returns sooner); p99 here is a floor for write \
               latency";
    if !root.is_host() {
        return vec![Finding::new(
            id,
            Severity::Info,
            format!(
                "not measured: the root is {}, not the running host",
                root.base().display()
            ),
            why,
            None,
        )];
    }
    if !opts.measure_fsync {
        return vec![Finding::new(
            id,
            Severity::Info,
            "not measured (--no-fsync)",
            why,
            None,
        )];
    }
    let (existing, rest) = split_existing(dir);
    let note = if rest.as_os_str().is_empty() {
        String::new()
    } else {
        format!(
            " ({} does not exist yet; measured in {})",
            dir.display(),
            existing.display()
        )
    };
    match measure(&existing, Duration::from_secs(2), 500) {
        Err(e) => vec![Finding::new(
            id,
            Severity::Info,
            format!("could not measure in {}: {e}", existing.display()),
            why,
            None,
        )],
        Ok(mut samples) => {
            samples.sort_unstable();
            let p50 = percentile(&samples, 50.0);
            let p99 = percentile(&samples, 99.0);
            let saw = format!(
                "{} fdatasyncs of 4 KB appends: p50 {:.3} ms, p99 {:.3} ms{note}",
                samples.len(),
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3
            );
            let (severity, fix) = if p99 <= Duration::from_millis(2) {
                (Severity::Ok, None)
            } else if p99 <= Duration::from_millis(10) {
                (Severity::Info, None)
            } else {
                (
                    Severity::Warn,
                    Some(
                        "put --dir on a faster device (NVMe with power-loss protection), or \
                         run with --appendfsync everysec if losing about a second of writes \
                         on a crash is acceptable"
                            .to_string(),
                    ),
                )
            };
            vec![Finding::new(id, severity, saw, why, fix)]
        }
    }
}

/// Append 4 KB and fdatasync, repeatedly, for at most `budget` or `max` rounds, in a
/// temporary file in `dir` that is removed afterwards.
pub fn measure(dir: &Path, budget: Duration, max: usize) -> std::io::Result<Vec<Duration>> {
    use std::io::Write;
    let path = dir.join(format!(".coreshard-tune-fsync-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    let block = [0x5au8; 4096];
    let mut samples = Vec::new();
    let start = Instant::now();
    let result = (|| {
        while samples.len() < max && start.elapsed() < budget {
            file.write_all(&block)?;
            let t = Instant::now();
            file.sync_data()?;
            samples.push(t.elapsed());
        }
        Ok(())
    })();
    drop(file);
    let _ = std::fs::remove_file(&path);
    result.map(|()| samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_longest_prefix() {
        let m = parse_mounts(
            "/dev/sda1 / ext4 rw 0 0\n/dev/sdb1 /var/lib xfs rw 0 0\ntmpfs /var/lib/my\\040dir tmpfs rw 0 0\n",
        );
        assert_eq!(m[2].point, "/var/lib/my dir");
        assert_eq!(
            mount_for(&m, Path::new("/var/lib/x")).unwrap().fstype,
            "xfs"
        );
        assert_eq!(
            mount_for(&m, Path::new("/var/libx")).unwrap().fstype,
            "ext4"
        );
        assert_eq!(
            mount_for(&m, Path::new("/var/lib/my dir/a"))
                .unwrap()
                .fstype,
            "tmpfs"
        );
        assert_eq!(mount_for(&m, Path::new("/")).unwrap().fstype, "ext4");
    }

    #[test]
    fn percentiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50.0), Duration::from_millis(51));
        assert_eq!(percentile(&v, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&[], 99.0), Duration::ZERO);
    }
}
