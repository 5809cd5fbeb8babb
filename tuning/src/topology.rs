//! CPUs, SMT siblings and the core lists the kernel writes (`0-3,8-11`).

use crate::root::{ReadError, Root};

/// Parse a kernel CPU list (`0-3,8,10-11`; empty means none). Flags some kernels allow
/// in `isolcpus=` (`domain,managed_irq,`) are skipped.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in s.trim().split(',') {
        let part = part.trim();
        if part.is_empty() || part.chars().all(|c| c.is_ascii_alphabetic() || c == '_') {
            continue;
        }
        // `0-7:2/4` (group syntax) is rare; take the plain range before ':'.
        let part = part.split(':').next().unwrap_or(part);
        let bad = || format!("invalid CPU list '{s}'");
        match part.split_once('-') {
            Some((a, b)) => {
                let a: usize = a.trim().parse().map_err(|_| bad())?;
                let b: usize = b.trim().parse().map_err(|_| bad())?;
                if b < a || b - a > 65_536 {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Write CPUs as the kernel does: `0-3,8,10-11` (sorted, ranges folded).
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut v = cpus.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < v.len() {
        let start = v[i];
        let mut end = start;
        while i + 1 < v.len() && v[i + 1] == end + 1 {
            i += 1;
            end = v[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if end == start {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}-{end}"));
        }
        i += 1;
    }
    out
}

/// CPUs as coreshard's `--cores` takes them: `0,1,2,8` (no ranges).
pub fn comma_list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The online CPUs and which of them share a physical core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Online logical CPUs, ascending.
    pub cpus: Vec<usize>,
    /// Physical cores: each is the online hyper-threads of one core, ascending, and the
    /// list is ordered by each core's first CPU.
    pub cores: Vec<Vec<usize>>,
}

impl Topology {
    /// Read `/sys/devices/system/cpu/online` and each CPU's `thread_siblings_list`. A CPU
    /// whose siblings cannot be read counts as a core of its own.
    pub fn read(root: &Root) -> Result<Topology, ReadError> {
        let online = root.read_trim("/sys/devices/system/cpu/online")?;
        let cpus = parse_cpu_list(&online).map_err(|reason| ReadError {
            path: "/sys/devices/system/cpu/online".into(),
            reason,
        })?;
        let siblings = |cpu: usize| -> Vec<usize> {
            let path = format!("/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list");
            root.read_trim(&path)
                .ok()
                .and_then(|s| parse_cpu_list(&s).ok())
                .unwrap_or_default()
        };
        Ok(Topology::from_siblings(&cpus, siblings))
    }

    /// Build from a CPU list and a function giving each CPU's siblings (including itself).
    pub fn from_siblings(cpus: &[usize], siblings: impl Fn(usize) -> Vec<usize>) -> Topology {
        let mut cpus = cpus.to_vec();
        cpus.sort_unstable();
        cpus.dedup();
        let mut cores: Vec<Vec<usize>> = Vec::new();
        for &cpu in &cpus {
            if cores.iter().any(|c| c.contains(&cpu)) {
                continue;
            }
            let mut core: Vec<usize> = siblings(cpu)
                .into_iter()
                .filter(|s| cpus.contains(s))
                .collect();
            if !core.contains(&cpu) {
                core.push(cpu);
            }
            core.sort_unstable();
            core.dedup();
            // A sibling already placed in another core (inconsistent files): keep it there.
            core.retain(|s| *s == cpu || !cores.iter().any(|c| c.contains(s)));
            cores.push(core);
        }
        cores.sort_by_key(|c| c.first().copied().unwrap_or(usize::MAX));
        Topology { cpus, cores }
    }

    /// The other hyper-threads on `cpu`'s physical core.
    pub fn siblings_of(&self, cpu: usize) -> Vec<usize> {
        self.cores
            .iter()
            .find(|c| c.contains(&cpu))
            .map(|c| c.iter().copied().filter(|s| *s != cpu).collect())
            .unwrap_or_default()
    }

    /// True when some physical core has more than one online thread.
    pub fn has_smt(&self) -> bool {
        self.cores.iter().any(|c| c.len() > 1)
    }
}

/// The CPUs a process started from this shell may run on (`Cpus_allowed_list` in
/// `/proc/self/status`), else the online CPUs. This is what coreshard pins shards to by
/// default.
pub fn allowed_cpus(root: &Root, topo: &Topology) -> Vec<usize> {
    let from_status = root.read("/proc/self/status").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .and_then(|v| parse_cpu_list(v).ok())
    });
    match from_status {
        Some(list) if !list.is_empty() => list,
        _ => topo.cpus.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_round_trip() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11").unwrap(),
            vec![0, 1, 2, 3, 8, 10, 11]
        );
        assert_eq!(parse_cpu_list("").unwrap(), Vec::<usize>::new());
        assert_eq!(
            parse_cpu_list("domain,managed_irq,2-3").unwrap(),
            vec![2, 3]
        );
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("x1").is_err());
        assert_eq!(format_cpu_list(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
        assert_eq!(format_cpu_list(&[5]), "5");
        assert_eq!(format_cpu_list(&[]), "");
    }

    #[test]
    fn siblings_group_into_cores() {
        let t = Topology::from_siblings(&[0, 1, 2, 3], |c| vec![c % 2, c % 2 + 2]);
        assert_eq!(t.cores, vec![vec![0, 2], vec![1, 3]]);
        assert_eq!(t.siblings_of(2), vec![0]);
        assert!(t.has_smt());
    }
}
