//! Lua scripting: EVAL scripts and FUNCTION libraries on one Lua 5.1 VM per shard
//! thread, with Redis's sandbox and libraries. The commands are in
//! `commands/scripting.rs`; this module is the engine room:
//!
//! - `vm.rs`: the VM, the sandbox, `redis.call`, the run of one script;
//! - `convert.rs`: replies to Lua values and back, by Redis's rules;
//! - `registry.rs`: the script cache (SHA1 → body) every shard sees;
//! - `functions.rs`: FUNCTION libraries;
//! - `busy.rs`: the time limit, BUSY and SCRIPT KILL;
//! - `libs.rs`: `cjson` and `bit`, and installs the others:
//! - `msgpack.rs`: `cmsgpack`; `lstruct.rs`: `struct`;
//! - `args.rs`: lauxlib's argument checks and error texts for the libraries in Rust.
//!
//! Where a script runs: on the shard that owns all its declared keys, atomically, like
//! any keyed command; across shards, as a one-command transaction on ordered key locks,
//! against a scratch copy of the locked keys (`server/txn.rs`). Its effects, not the
//! script, are journaled.

mod args;
mod busy;
mod convert;
pub mod functions;
mod libs;
mod lstruct;
mod msgpack;
pub mod registry;
mod vm;

pub use busy::{
    abort_for_shutdown, aborting, busy_error_here, busy_reply, kill, kill_after, set_kill_after,
    set_time_limit, time_limit,
};
pub use vm::{check_compiles, run, set_shard, Call, Code};
