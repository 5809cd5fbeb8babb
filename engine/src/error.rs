use std::io;

use thiserror::Error;

/// Why the engine could not start or stopped abnormally.
#[derive(Debug, Error)]
pub enum EngineError {
    /// io_uring_setup failed outright: the kernel lacks io_uring, it is disabled
    /// (`/proc/sys/kernel/io_uring_disabled`), or a seccomp profile (e.g. a container's)
    /// blocks it.
    #[error(
        "io_uring is not available: {0}. coreshard needs Linux 5.19+ with io_uring enabled; \
         check /proc/sys/kernel/io_uring_disabled and, in a container, that the seccomp \
         profile allows io_uring_setup/io_uring_enter/io_uring_register"
    )]
    IoUringUnavailable(#[source] io::Error),
    /// The kernel's io_uring lacks something the engine cannot do without.
    #[error("io_uring lacks a required feature: {0}")]
    MissingFeature(&'static str),
    /// A set-up step failed.
    #[error("{0}: {1}")]
    Setup(&'static str, #[source] io::Error),
    /// Binding or configuring a listening socket failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Pinning a shard to its core failed.
    #[error("cannot pin shard {shard} to core {core}: {source}")]
    Pin {
        /// The shard.
        shard: usize,
        /// The core asked for.
        core: usize,
        /// What the OS said.
        #[source]
        source: nix::Error,
    },
    /// A shard thread panicked or failed while running.
    #[error("shard {0} failed: {1}")]
    Shard(usize, String),
}
