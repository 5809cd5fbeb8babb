//! Core discovery and thread pinning.

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

use crate::EngineError;

/// The cores this process may run on, in ascending order.
pub fn allowed_cores() -> Vec<usize> {
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(_) => (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect(),
    }
}

/// Pin the calling thread to `core`.
pub(crate) fn pin_current_thread(shard: usize, core: usize) -> Result<(), EngineError> {
    let mut set = CpuSet::new();
    set.set(core).map_err(|source| EngineError::Pin {
        shard,
        core,
        source,
    })?;
    sched_setaffinity(Pid::from_raw(0), &set).map_err(|source| EngineError::Pin {
        shard,
        core,
        source,
    })
}
