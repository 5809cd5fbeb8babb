//! What the audit reports: one [`Finding`] per thing it looked at.

use std::fmt;

use crate::root::ReadError;

/// How much a finding matters, from fine to must-fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// As it should be.
    Ok,
    /// Worth knowing; no change needed for most deployments.
    Info,
    /// Costs throughput or latency, or risks it under load.
    Warn,
    /// The server will fail, lose data or run far below what the host can do.
    Bad,
}

impl Severity {
    /// The lower-case name used in text and JSON (`ok`, `info`, `warn`, `bad`).
    pub fn name(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Info => "info",
            Severity::Warn => "warn",
            Severity::Bad => "bad",
        }
    }

    /// Parse a name written by [`Severity::name`].
    pub fn from_name(s: &str) -> Option<Severity> {
        match s {
            "ok" => Some(Severity::Ok),
            "info" => Some(Severity::Info),
            "warn" => Some(Severity::Warn),
            "bad" => Some(Severity::Bad),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One thing the audit looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Stable identifier, e.g. `kernel.io_uring_disabled`, for scripts and tests.
    pub id: String,
    /// How much it matters.
    pub severity: Severity,
    /// What was seen on the host.
    pub saw: String,
    /// Why it matters for a thread-per-core io_uring server.
    pub why: String,
    /// The exact fix (command, sysctl line or kernel command line); `None` when nothing
    /// needs doing.
    pub fix: Option<String>,
}

impl Finding {
    /// A finding.
    pub fn new(
        id: &str,
        severity: Severity,
        saw: impl Into<String>,
        why: impl Into<String>,
        fix: Option<String>,
    ) -> Finding {
        Finding {
            id: id.to_string(),
            severity,
            saw: saw.into(),
            why: why.into(),
            fix,
        }
    }

    /// A finding that needs nothing done.
    pub fn ok(id: &str, saw: impl Into<String>, why: impl Into<String>) -> Finding {
        Finding::new(id, Severity::Ok, saw, why, None)
    }

    /// A file the check needs could not be read: reported, never a panic.
    pub fn unreadable(id: &str, err: &ReadError, why: impl Into<String>) -> Finding {
        Finding::new(id, Severity::Info, err.to_string(), why, None)
    }
}
