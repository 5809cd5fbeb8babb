//! The host checks, one module per area. Each returns findings and never panics on what
//! the host holds: a file it cannot read becomes a "could not read" finding.

pub mod cpu;
pub mod disk;
pub mod kernel;
pub mod limits;
pub mod memory;
pub mod net;

use crate::{Context, Finding, Options, Root};

/// Run every check.
pub fn run_all(root: &Root, opts: &Options, ctx: &Context) -> Vec<Finding> {
    let mut out = Vec::new();
    out.extend(kernel::io_uring_enabled(root));
    out.extend(kernel::version(ctx));
    out.extend(cpu::placement(ctx));
    out.extend(cpu::governor(root, ctx));
    out.extend(cpu::smt(root, ctx));
    out.extend(cpu::isolation(root, ctx));
    out.extend(net::irq_affinity(root, ctx));
    out.extend(net::rss_queues(root, ctx));
    out.extend(net::somaxconn(root));
    out.extend(net::syn_backlog(root));
    out.extend(net::busy_poll(root));
    out.extend(memory::thp(root));
    out.extend(memory::swap(root));
    out.extend(memory::overcommit(root));
    out.extend(limits::nofile(root, opts));
    out.extend(limits::memlock(root, ctx));
    out.extend(disk::check(root, opts));
    out
}

/// A sysctl fix: the runtime command and the line that keeps it across reboots.
pub fn sysctl_fix(key: &str, value: &str) -> String {
    format!("sysctl -w {key}={value}; echo '{key} = {value}' >> /etc/sysctl.d/60-coreshard.conf")
}
