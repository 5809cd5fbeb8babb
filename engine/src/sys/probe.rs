//! Start-up probing of what this kernel's io_uring offers.

use std::fmt;

/// The io_uring features a shard found at start-up. The engine degrades where a feature is
/// missing (see each field) and fails with a clear error only where it cannot work at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// IORING_SETUP_SINGLE_ISSUER (6.0): no submission locking.
    pub single_issuer: bool,
    /// IORING_SETUP_DEFER_TASKRUN (6.1): completions run only when the shard asks.
    pub defer_taskrun: bool,
    /// IORING_SETUP_COOP_TASKRUN (5.19): no IPI to interrupt the shard for task work.
    pub coop_taskrun: bool,
    /// Multishot accept (5.19); otherwise accept is re-armed after each connection.
    pub multishot_accept: bool,
    /// Multishot recv (6.0); otherwise recv is re-armed after each completion. Decided on
    /// the first recv, because only the kernel's answer tells.
    pub multishot_recv: bool,
    /// IORING_OP_MSG_RING (5.18): cross-shard wake-ups.
    pub msg_ring: bool,
    /// IORING_OP_SEND_ZC (6.0) and IORING_OP_SENDMSG_ZC (6.1): zero-copy sends of large
    /// values ([`crate::EngineConfig::send_zc_min`]).
    pub send_zc: bool,
}

impl fmt::Display for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flags = [
            ("single_issuer", self.single_issuer),
            ("defer_taskrun", self.defer_taskrun),
            ("coop_taskrun", self.coop_taskrun),
            ("multishot_accept", self.multishot_accept),
            ("multishot_recv", self.multishot_recv),
            ("msg_ring", self.msg_ring),
            ("send_zc", self.send_zc),
        ];
        write!(f, "kernel {}:", self.kernel)?;
        for (name, on) in flags {
            write!(f, " {}{}", if on { "+" } else { "-" }, name)?;
        }
        Ok(())
    }
}

pub(crate) fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".to_string())
}

/// Whether `release` (as `uname -r` gives it, e.g. "6.1.0-13-amd64") is at least
/// `major.minor`; an unreadable release counts as older.
pub(crate) fn kernel_at_least(release: &str, major: u32, minor: u32) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::kernel_at_least;

    #[test]
    fn kernel_releases_compare_by_major_then_minor() {
        assert!(kernel_at_least("6.18.44-fc-v1272", 6, 2));
        assert!(kernel_at_least("6.2.0", 6, 2));
        assert!(kernel_at_least("7.0", 6, 2));
        assert!(!kernel_at_least("6.1.0-13-amd64", 6, 2));
        assert!(!kernel_at_least("5.19.17", 6, 2));
        assert!(!kernel_at_least("unknown", 6, 2));
    }
}
