//! The WAL's error type.

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Why a WAL operation failed.
#[derive(Debug, Error)]
pub enum WalError {
    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done ("open", "write", "fsync", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// A log segment, snapshot part or manifest holds invalid data where valid data must
    /// be (for the log: corruption followed by records that were durable, or a bad segment
    /// header). Recovery with [`RecoverMode::Truncate`](super::RecoverMode::Truncate) cuts
    /// the log there instead.
    #[error("corrupt {} at offset {offset}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset of the first invalid data in the file.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// A segment is missing from the sequence the log needs.
    #[error("WAL segment {} is missing (segments must be consecutive from the snapshot's start)", path.display())]
    MissingSegment {
        /// Where the segment should be.
        path: PathBuf,
    },
    /// Another process (or another `open` in this one) uses the WAL directory.
    #[error("WAL directory {} is in use by another process", .0.display())]
    Locked(PathBuf),
    /// The configuration or an argument is invalid.
    #[error("invalid WAL configuration: {0}")]
    Config(String),
    /// The WAL thread could not be started (io_uring, pinning, thread creation).
    #[error("cannot start the WAL thread: {0}")]
    Start(String),
    /// A snapshot operation was refused (e.g. a part is missing).
    #[error("snapshot {id}: {reason}")]
    Snapshot {
        /// The snapshot id.
        id: u64,
        /// Why.
        reason: String,
    },
    /// Shutting down could not make everything handed over durable.
    #[error("WAL shutdown: {0}")]
    Shutdown(String),
}

impl WalError {
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> WalError {
        WalError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> WalError {
        WalError::Corrupt {
            path: path.to_path_buf(),
            offset,
            reason: reason.into(),
        }
    }
}
