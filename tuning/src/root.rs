//! Every file the audit reads goes through a [`Root`], so a test can point it at a fake
//! `/proc` and `/sys` tree instead of the host's.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where the host's files are read from: `/` for the real host, a fixture directory in
/// tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    base: PathBuf,
}

/// A file or directory that could not be read: the host path (as the kernel names it,
/// not the fixture path) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError {
    /// The path under the root, e.g. `/proc/sys/vm/swappiness`.
    pub path: String,
    /// The operating system's reason.
    pub reason: String,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "could not read {}: {}", self.path, self.reason)
    }
}

impl std::error::Error for ReadError {}

impl Root {
    /// A root at `base` (`/` is the real host).
    pub fn new(base: impl Into<PathBuf>) -> Root {
        Root { base: base.into() }
    }

    /// The real host.
    pub fn host() -> Root {
        Root::new("/")
    }

    /// True when this root is the running host's own `/` (measurements that touch the
    /// real disk only run then).
    pub fn is_host(&self) -> bool {
        self.base == Path::new("/")
    }

    /// The directory this root reads from.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// Where the host path `abs` (e.g. `/proc/cmdline`) lives under this root.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.base.join(abs.trim_start_matches('/'))
    }

    fn error(abs: &str, e: std::io::Error) -> ReadError {
        let reason = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => e.to_string(),
        };
        ReadError {
            path: abs.to_string(),
            reason,
        }
    }

    /// The whole file.
    pub fn read(&self, abs: &str) -> Result<String, ReadError> {
        std::fs::read(self.path(abs))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| Root::error(abs, e))
    }

    /// The file without surrounding white space (most `/proc/sys` and `/sys` values).
    pub fn read_trim(&self, abs: &str) -> Result<String, ReadError> {
        self.read(abs).map(|s| s.trim().to_string())
    }

    /// A number file (`/proc/sys/...`).
    pub fn read_u64(&self, abs: &str) -> Result<u64, ReadError> {
        let s = self.read_trim(abs)?;
        s.parse().map_err(|_| ReadError {
            path: abs.to_string(),
            reason: format!("not a number: '{s}'"),
        })
    }

    /// The names in a directory, sorted.
    pub fn list(&self, abs: &str) -> Result<Vec<String>, ReadError> {
        let rd = std::fs::read_dir(self.path(abs)).map_err(|e| Root::error(abs, e))?;
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Whether the host path exists.
    pub fn exists(&self, abs: &str) -> bool {
        self.path(abs).exists()
    }

    /// The last component of a symlink's target (e.g. `/sys/class/net/eth0/device` ->
    /// `0000:03:00.0`), or `None` when it is not a link.
    pub fn link_name(&self, abs: &str) -> Option<String> {
        let target = std::fs::read_link(self.path(abs)).ok()?;
        target.file_name().map(|n| n.to_string_lossy().into_owned())
    }
}
