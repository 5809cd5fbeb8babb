//! `coreshard-tune audit` and `coreshard-tune plan`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use coreshard_tune::plan::{self, PlanOptions};
use coreshard_tune::topology::parse_cpu_list;
use coreshard_tune::{report, Context, Options, Root};

/// Audit a Linux host for coreshard and plan its core layout.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Read the host and report what helps or hurts a thread-per-core io_uring server.
    Audit {
        /// Read /proc and /sys under this directory instead of / (for fixtures).
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// The server's --dir (where the log goes).
        #[arg(long, default_value = "./data")]
        dir: PathBuf,
        /// The server's --shards (default: one per allowed CPU).
        #[arg(long)]
        shards: Option<usize>,
        /// The server's --cores: a CPU list such as 1,2,3 or 1-3 (default: the allowed CPUs
        /// in order).
        #[arg(long, value_parser = parse_cores)]
        cores: Option<CpuList>,
        /// The server's --maxclients.
        #[arg(long, default_value_t = coreshard_tune::DEFAULT_MAXCLIENTS)]
        maxclients: usize,
        /// Do not measure fdatasync latency in --dir.
        #[arg(long)]
        no_fsync: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Propose a core layout, a coreshard command line, a sysctl file and a systemd unit.
    Plan {
        /// Number of shards.
        #[arg(long)]
        shards: usize,
        /// Read /proc and /sys under this directory instead of / (for fixtures).
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// The server's --dir in the unit.
        #[arg(long, default_value = "/var/lib/coreshard")]
        dir: PathBuf,
        /// The server's --maxclients.
        #[arg(long, default_value_t = coreshard_tune::DEFAULT_MAXCLIENTS)]
        maxclients: usize,
        /// The server's --bind.
        #[arg(long, default_value = "127.0.0.1")]
        bind: String,
        /// The server's --port.
        #[arg(long, default_value_t = 6379)]
        port: u16,
        /// Path of the coreshard binary in the unit.
        #[arg(long, default_value = "/usr/local/bin/coreshard")]
        binary: PathBuf,
        /// Write the sysctl file and the unit (a dry run unless --yes).
        #[arg(long)]
        apply: bool,
        /// With --apply: show what would be written, write nothing (the default).
        #[arg(long, conflicts_with = "yes")]
        dry_run: bool,
        /// With --apply: really write.
        #[arg(long, requires = "apply")]
        yes: bool,
        /// With --apply: write into this directory instead of /etc/sysctl.d and
        /// /etc/systemd/system.
        #[arg(long, requires = "apply")]
        out: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// A CPU list argument (`1,2,3` or `1-3`), one value for clap.
#[derive(Debug, Clone)]
struct CpuList(Vec<usize>);

fn parse_cores(s: &str) -> Result<CpuList, String> {
    parse_cpu_list(s).map(CpuList)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Audit {
            root,
            dir,
            shards,
            cores,
            maxclients,
            no_fsync,
            json,
        } => {
            let root = Root::new(root);
            let opts = Options {
                shards,
                cores: cores.map(|c| c.0).unwrap_or_default(),
                dir,
                maxclients,
                measure_fsync: !no_fsync,
            };
            let ctx = Context::new(&root, &opts);
            let findings = coreshard_tune::audit_with(&root, &opts, &ctx);
            let desc = root.base().display().to_string();
            if json {
                println!("{}", report::audit_json(&ctx, &desc, &findings).to_pretty());
            } else {
                print!("{}", report::audit_text(&ctx, &desc, &findings));
            }
            ExitCode::SUCCESS
        }
        Cmd::Plan {
            shards,
            root,
            dir,
            maxclients,
            bind,
            port,
            binary,
            apply,
            dry_run,
            yes,
            out,
            json,
        } => {
            let root = Root::new(root);
            let opts = PlanOptions {
                shards,
                dir,
                maxclients,
                bind,
                port,
                binary,
            };
            let plan = match plan::plan(&root, &opts) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("coreshard-tune: {e}");
                    return ExitCode::from(2);
                }
            };
            let applied = if apply {
                match plan::apply(
                    &plan,
                    out.as_deref(),
                    yes && !dry_run,
                    plan::running_as_root(),
                ) {
                    Ok(a) => Some(a),
                    Err(e) => {
                        eprintln!("coreshard-tune: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                None
            };
            if json {
                println!("{}", report::plan_json(&plan, applied.as_ref()).to_pretty());
            } else {
                print!("{}", report::plan_text(&plan, applied.as_ref()));
            }
            ExitCode::SUCCESS
        }
    }
}
