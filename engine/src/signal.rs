//! SIGINT/SIGTERM handling for programs that run an engine until told to stop.

use nix::sys::signal::{SigSet, Signal};

use crate::EngineError;

fn shutdown_set() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set
}

/// Block SIGINT and SIGTERM in the calling thread (and threads it spawns later), so they
/// can be taken with [`wait_for_shutdown_signal`] instead of killing the process. Call it
/// first thing in `main`, before starting an engine.
pub fn block_shutdown_signals() {
    let _ = shutdown_set().thread_block();
}

/// Wait until SIGINT or SIGTERM arrives; returns its name.
pub fn wait_for_shutdown_signal() -> Result<&'static str, EngineError> {
    let sig = shutdown_set()
        .wait()
        .map_err(|e| EngineError::Setup("waiting for a signal", std::io::Error::from(e)))?;
    Ok(sig.as_str())
}
