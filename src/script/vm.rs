//! One Lua 5.1 VM per shard thread, and the run of one script on it.
//!
//! The VM is made once per thread, with Redis's sandbox (`prelude.lua`): no file or OS
//! access, read-only globals and libraries, `redis`, `cjson` and `bit`. A run binds
//! `KEYS` and `ARGV`, makes `redis.call` reach the keyspace it was given (a shard's own,
//! or a cross-shard transaction's scratch copy of the locked keys) for the length of the
//! run only, and turns the result or the error into a reply. Every command a script runs
//! passes the keyspace's one mutation path, so its effects are journaled (as one record:
//! the caller wraps the run in `Db::atomically`), notified and seen by WATCH like any
//! other command's.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::time::Instant;

use bytes::Bytes;
use coreshard_protocol::format_double;
use hashbrown::HashMap;
use mlua::{Function, HookTriggers, Lua, LuaOptions, StdLib, Table, Value, Variadic, VmState};

use super::busy;
use super::convert;
use super::registry::{self, Sha};
use crate::commands::multi::{run_queued, Queued};
use crate::commands::{lookup, Spec};
use crate::db::Db;
use crate::server::ops::OpResult;

/// How long a library's top-level code may run (Redis stops it after 500 ms too).
const LOAD_LIMIT_MS: u64 = 500;

/// Run a library's top-level code under the load time limit.
pub(super) fn while_loading<T>(f: impl FnOnce() -> T) -> T {
    RUNNING.with(|r| {
        r.active.set(true);
        r.loading.set(true);
        r.killed.set(false);
        r.start.set(Some(Instant::now()));
    });
    let out = f();
    RUNNING.with(|r| {
        r.active.set(false);
        r.loading.set(false);
        r.killed.set(false);
        r.start.set(None);
    });
    out
}

/// Instructions between two looks at the clock (a few hundred microseconds).
const HOOK_EVERY: u32 = 100_000;
/// A script whose Lua heap passes this is stopped at the next hook. (Not an mlua memory
/// limit: with one set, mlua protects every API call with a pcall, which tripled the cost
/// of a small EVALSHA. A single huge allocation still gets through, as in Redis.)
const LUA_MEMORY_LIMIT: usize = 1 << 30;
/// Compiled functions kept per thread before the cache starts over.
const MAX_COMPILED: usize = 1000;

/// What runs: a script body (EVAL, EVALSHA) or a library function (FCALL).
pub enum Code<'a> {
    /// A script by its id, with its body when the request carried it (EVAL; EVALSHA
    /// looks it up in the cache when this VM has not compiled it yet).
    Script { body: Option<&'a [u8]>, sha: Sha },
    /// A function of a loaded library.
    Function { name: &'a str },
}

/// One run.
pub struct Call<'a> {
    /// What runs.
    pub code: Code<'a>,
    /// The command's arguments: KEYS are `nkeys` of them from position 3, ARGV the rest.
    pub args: &'a dyn crate::server::ArgList,
    /// How many keys.
    pub nkeys: usize,
    /// EVAL_RO, EVALSHA_RO, FCALL_RO, or a function flagged `no-writes`.
    pub read_only: bool,
}

impl Call<'_> {
    fn is_function(&self) -> bool {
        matches!(self.code, Code::Function { .. })
    }
}

/// The state of the run in progress on this thread, read by the instruction hook.
struct Running {
    active: Cell<bool>,
    /// Running a library's top-level code (FUNCTION LOAD): stopped past [`LOAD_LIMIT_MS`].
    loading: Cell<bool>,
    start: Cell<Option<Instant>>,
    wrote: Cell<bool>,
    function: Cell<bool>,
    killed: Cell<bool>,
    /// Stopped by SHUTDOWN NOSAVE: its effects are dropped, not journaled.
    aborted: Cell<bool>,
    busy: Cell<bool>,
    resp3: Cell<bool>,
}

thread_local! {
    static VM: RefCell<Option<Vm>> = const { RefCell::new(None) };
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
    static RUNNING: Running = const {
        Running {
            active: Cell::new(false),
            loading: Cell::new(false),
            start: Cell::new(None),
            wrote: Cell::new(false),
            function: Cell::new(false),
            killed: Cell::new(false),
            aborted: Cell::new(false),
            busy: Cell::new(false),
            resp3: Cell::new(false),
        }
    };
}

/// Tell the scripting layer which shard this thread is (for BUSY and SCRIPT KILL).
pub fn set_shard(shard: usize) {
    SHARD.with(|s| s.set(shard));
}

pub(super) fn shard() -> usize {
    SHARD.with(|s| s.get())
}

pub(super) struct Vm {
    lua: Lua,
    runner: Function,
    /// Compiled scripts by id, with whether their shebang says `no-writes`.
    compiled: HashMap<Sha, (Function, bool)>,
    generation: u64,
    keys_table: Table,
    argv_table: Table,
    /// Library functions by name (FCALL), with the library generation they came from.
    pub(super) functions: HashMap<String, super::functions::Loaded>,
    pub(super) functions_generation: u64,
}

fn rt(msg: impl Into<String>) -> mlua::Error {
    mlua::Error::RuntimeError(msg.into())
}

/// The instruction hook: the time limit, BUSY and SCRIPT KILL.
fn hook() -> mlua::Result<VmState> {
    RUNNING.with(|r| {
        if !r.active.get() {
            return Ok(VmState::Continue);
        }
        // The clock starts at the first hook, 100k instructions in: a short script never
        // reads it.
        let Some(start) = r.start.get() else {
            r.start.set(Some(Instant::now()));
            return Ok(VmState::Continue);
        };
        let function = r.function.get();
        let what = if function { "FUNCTION" } else { "SCRIPT" };
        if r.killed.get() {
            return Err(rt(format!("Script killed by user with {what} KILL...")));
        }
        let elapsed = start.elapsed().as_millis() as u64;
        if r.loading.get() {
            if elapsed >= LOAD_LIMIT_MS {
                r.killed.set(true);
                return Err(rt(format!(
                    "FUNCTION LOAD timeout: the library's code ran longer than {LOAD_LIMIT_MS} ms"
                )));
            }
            return Ok(VmState::Continue);
        }
        if elapsed < busy::time_limit() {
            return Ok(VmState::Continue);
        }
        if !r.busy.get() || r.wrote.get() {
            if !r.busy.get() {
                tracing::warn!(
                    "a script has run for {elapsed} ms (lua-time-limit {} ms); shard {} answers BUSY until it ends",
                    busy::time_limit(),
                    shard()
                );
            }
            r.busy.set(true);
            busy::mark_busy(shard(), r.wrote.get(), function);
        }
        // Answer this shard's other connections meanwhile: -BUSY, and SCRIPT KILL or
        // SHUTDOWN NOSAVE, which are then seen just below.
        coreshard_engine::serve_while_busy();
        if busy::aborting() {
            r.killed.set(true);
            r.aborted.set(true);
            return Err(rt("Script killed by SHUTDOWN NOSAVE"));
        }
        if r.wrote.get() {
            return Ok(VmState::Continue);
        }
        if busy::kill_requested(shard()) {
            r.killed.set(true);
            return Err(rt(format!("Script killed by user with {what} KILL...")));
        }
        let limit = busy::kill_after();
        if limit > 0 && elapsed >= limit {
            r.killed.set(true);
            return Err(rt(format!(
                "Script killed: it ran for {elapsed} ms without writing (lua-kill-after is {limit} ms)"
            )));
        }
        Ok(VmState::Continue)
    })
}

impl Vm {
    fn new() -> mlua::Result<Vm> {
        let lua = Lua::new_with(
            StdLib::TABLE | StdLib::STRING | StdLib::MATH,
            LuaOptions::default(),
        )?;
        let g = lua.globals();
        g.raw_set("redis", redis_table(&lua)?)?;
        // KEYS and ARGV: two tables for the VM's life, refilled for each run. Set before the
        // prelude, they end up behind the read-only _G like every global: a script cannot
        // replace them (as in Redis), only change their contents, which the next run clears.
        let keys_table = lua.create_table()?;
        let argv_table = lua.create_table()?;
        g.raw_set("KEYS", &keys_table)?;
        g.raw_set("ARGV", &argv_table)?;
        super::libs::install(&lua)?;
        g.raw_set(
            "__killed",
            lua.create_function(|_, ()| Ok(RUNNING.with(|r| r.killed.get())))?,
        )?;
        g.raw_set("__where", lua.create_function(|lua, ()| Ok(where_(lua)))?)?;
        g.raw_set(
            "__errmsg",
            // errmsg(e[, caught]): the error's text with its code; under pcall
            // (`caught`), a library's error as the bare message a C library raises.
            lua.create_function(|_, (v, caught): (Value, Option<bool>)| {
                Ok(match v {
                    Value::Error(e) => match super::args::lib_message(&e) {
                        Some(m) if caught == Some(true) => m,
                        _ => with_code(&root_message(&e)),
                    },
                    other => with_code(&other.to_string().unwrap_or_default()),
                })
            })?,
        )?;
        let runner: Function = lua
            .load(include_str!("prelude.lua"))
            .set_name("=prelude")
            .eval()?;
        // A global hook: every coroutine a script makes runs under it too.
        lua.set_global_hook(
            HookTriggers::new().every_nth_instruction(HOOK_EVERY),
            |lua, _| {
                if lua.used_memory() > LUA_MEMORY_LIMIT {
                    lua.gc_collect()?;
                    if lua.used_memory() > LUA_MEMORY_LIMIT {
                        return Err(rt(format!(
                            "ERR script used more than {} MB of Lua memory",
                            LUA_MEMORY_LIMIT >> 20
                        )));
                    }
                }
                hook()
            },
        )?;
        Ok(Vm {
            keys_table,
            argv_table,
            lua,
            runner,
            compiled: HashMap::new(),
            generation: registry::generation(),
            functions: HashMap::new(),
            functions_generation: u64::MAX,
        })
    }

    /// Make sure script `sha` is compiled here (from `body`, or the cache's copy).
    fn script(&mut self, body: Option<&[u8]>, sha: Sha) -> Result<(), String> {
        let generation = registry::generation();
        if generation != self.generation || self.compiled.len() >= MAX_COMPILED {
            self.compiled.clear();
            self.generation = generation;
        }
        if self.compiled.contains_key(&sha) {
            return Ok(());
        }
        let cached;
        let body = match body {
            Some(b) => b,
            None => {
                cached =
                    registry::get(&sha).ok_or("NOSCRIPT No matching script. Please use EVAL.")?;
                &cached
            }
        };
        let no_writes = shebang_no_writes(body)?;
        let f = compile(&self.lua, without_shebang(body), "@user_script")?;
        // Only a script that compiles is cached (EVALSHA of a broken one is NOSCRIPT).
        registry::remember_as(sha, body, false);
        self.compiled.insert(sha, (f, no_writes));
        Ok(())
    }
}

/// Compile `body` as Redis does, or Redis's compile error text.
pub(super) fn compile(lua: &Lua, body: &[u8], name: &str) -> Result<Function, String> {
    // Text only: Lua 5.1's bytecode verifier can be bypassed, as Redis knows.
    lua.load(body)
        .set_name(name)
        .set_mode(mlua::chunk::ChunkMode::Text)
        .into_function()
        .map_err(|e| {
            let msg = match &e {
                mlua::Error::SyntaxError { message, .. } => message.clone(),
                other => other.to_string(),
            };
            format!(
                "ERR Error compiling script (new function): {}",
                one_line(&msg)
            )
        })
}

/// A script's `#!lua flags=...` line: whether it says `no-writes`, or Redis's error.
pub(super) fn shebang_no_writes(body: &[u8]) -> Result<bool, String> {
    let Some(rest) = body.strip_prefix(b"#!") else {
        return Ok(false);
    };
    let Some(end) = rest.iter().position(|&c| c == b'\n') else {
        return Err("ERR Invalid script shebang".into());
    };
    let line = String::from_utf8_lossy(&rest[..end]).into_owned();
    let mut parts = line.split(' ').filter(|p| !p.is_empty());
    let engine = parts.next().unwrap_or("");
    if engine != "lua" {
        return Err(format!("ERR Unexpected engine in script shebang: {engine}"));
    }
    let mut no_writes = false;
    for part in parts {
        let Some(flags) = part.strip_prefix("flags=") else {
            return Err(format!("ERR Unknown lua shebang option: {part}"));
        };
        for flag in flags.split(',').filter(|f| !f.is_empty()) {
            match flag {
                "no-writes" => no_writes = true,
                "allow-oom" | "allow-stale" | "no-cluster" | "allow-cross-slot-keys" => {}
                other => return Err(format!("ERR Unexpected flag in script shebang: {other}")),
            }
        }
    }
    Ok(no_writes)
}

/// A script's code without its `#!lua ...` line, if any (the newline stays, so line
/// numbers are those of the code as written).
pub(super) fn without_shebang(body: &[u8]) -> &[u8] {
    if !body.starts_with(b"#!") {
        return body;
    }
    match body.iter().position(|&c| c == b'\n') {
        Some(i) => &body[i..],
        None => b"",
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// The innermost frame of the user's code: its source and current line.
fn where_(lua: &Lua) -> (Option<String>, Option<usize>) {
    for level in 1..256 {
        let frame = lua.inspect_stack(level, |d| {
            let s = d.source();
            (s.what, s.source.map(|x| x.into_owned()), d.current_line())
        });
        match frame {
            None => break,
            Some((what, source, line)) => {
                let ours = matches!(source.as_deref(), Some("=prelude") | Some("=(tail call)"));
                if what != "C" && what != "tail" && !ours {
                    return (source, line);
                }
            }
        }
    }
    (None, None)
}

fn redis_table(lua: &Lua) -> mlua::Result<Table> {
    let r = lua.create_table()?;
    r.raw_set(
        "call",
        lua.create_function(|lua, args: Variadic<Value>| dispatch(lua, args, true))?,
    )?;
    r.raw_set(
        "pcall",
        lua.create_function(|lua, args: Variadic<Value>| dispatch(lua, args, false))?,
    )?;
    r.raw_set(
        "error_reply",
        lua.create_function(|lua, msg: mlua::LuaString| {
            let t = lua.create_table()?;
            t.raw_set("err", msg)?;
            Ok(t)
        })?,
    )?;
    r.raw_set(
        "status_reply",
        lua.create_function(|lua, msg: mlua::LuaString| {
            let t = lua.create_table()?;
            t.raw_set("ok", msg)?;
            Ok(t)
        })?,
    )?;
    r.raw_set(
        "sha1hex",
        lua.create_function(|lua, s: mlua::LuaString| {
            lua.create_string(registry::sha1_hex(&s.as_bytes()))
        })?,
    )?;
    r.raw_set(
        "setresp",
        lua.create_function(|_, v: Value| {
            let n = match v {
                Value::Integer(n) => n as f64,
                Value::Number(n) => n,
                _ => f64::NAN,
            };
            if n != 2.0 && n != 3.0 {
                return Err(rt("ERR RESP version must be 2 or 3."));
            }
            RUNNING.with(|r| r.resp3.set(n == 3.0));
            Ok(())
        })?,
    )?;
    r.raw_set(
        "log",
        lua.create_function(|_, args: Variadic<Value>| {
            if args.len() < 2 {
                return Err(rt("redis.log() requires two arguments or more."));
            }
            let level = match &args[0] {
                Value::Integer(n) => *n,
                Value::Number(n) => *n as i64,
                _ => return Err(rt("First argument must be a number (log level).")),
            };
            let text: Vec<String> = args[1..]
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.to_string_lossy(),
                    Value::Integer(n) => n.to_string(),
                    Value::Number(n) => format_double(*n),
                    other => other.type_name().to_string(),
                })
                .collect();
            let text = text.join(" ");
            match level {
                0 => tracing::debug!(target: "script", "{text}"),
                1 | 2 => tracing::info!(target: "script", "{text}"),
                3 => tracing::warn!(target: "script", "{text}"),
                _ => return Err(rt("Invalid debug level.")),
            }
            Ok(())
        })?,
    )?;
    for (name, v) in [
        ("LOG_DEBUG", 0),
        ("LOG_VERBOSE", 1),
        ("LOG_NOTICE", 2),
        ("LOG_WARNING", 3),
        ("REPL_NONE", 0),
        ("REPL_AOF", 1),
        ("REPL_SLAVE", 2),
        ("REPL_REPLICA", 2),
        ("REPL_ALL", 3),
    ] {
        r.raw_set(name, v)?;
    }
    // Effects are what is journaled and replicated, always: these are no-ops, as in
    // Redis 7.
    r.raw_set("replicate_commands", lua.create_function(|_, ()| Ok(true))?)?;
    r.raw_set("set_repl", lua.create_function(|_, _: Value| Ok(()))?)?;
    r.raw_set("breakpoint", lua.create_function(|_, ()| Ok(false))?)?;
    r.raw_set(
        "debug",
        lua.create_function(|_, _: Variadic<Value>| Ok(()))?,
    )?;
    let version = crate::commands::connection::REDIS_COMPAT_VERSION;
    let num = version
        .split('.')
        .map(|p| p.parse::<i64>().unwrap_or(0))
        .fold(0, |acc, p| acc * 256 + p);
    r.raw_set("REDIS_VERSION", version)?;
    r.raw_set("REDIS_VERSION_NUM", num)?;
    Ok(r)
}

/// An error table for `redis.call` / `redis.pcall` (`fatal`: raised even by pcall).
fn error_table(lua: &Lua, msg: &str, fatal: bool) -> mlua::Result<Value> {
    let t = lua.create_table()?;
    t.raw_set("err", msg)?;
    if fatal {
        t.raw_set("fatal", true)?;
    }
    Ok(Value::Table(t))
}

/// What a run's `redis.call` works on: the keyspace (moved here for the run), the time,
/// the declared keys and whether writes are refused.
struct Bound {
    db: Db,
    now: u64,
    /// The declared keys, end to end, and where each ends (kept, so no allocation).
    keys: Vec<u8>,
    key_ends: Vec<usize>,
    read_only: bool,
    active: bool,
}

/// The declared keys of a run, as `redis.call` checks them.
struct KeyCheck<'a> {
    keys: &'a [u8],
    ends: &'a [usize],
}

impl KeyCheck<'_> {
    fn declares(&self, key: &[u8]) -> bool {
        let mut start = 0;
        self.ends.iter().any(|&end| {
            let k = &self.keys[start..end];
            start = end;
            k == key
        })
    }
}

thread_local! {
    static BOUND: RefCell<Bound> = RefCell::new(Bound {
        db: Db::default(),
        now: 0,
        keys: Vec::new(),
        key_ends: Vec::new(),
        read_only: false,
        active: false,
    });
}

/// `redis.call` (`raise`) and `redis.pcall`: C functions, as in Redis, so a script's
/// `return redis.call(...)` keeps the script's frame (and line) on the stack.
fn dispatch(lua: &Lua, args: Variadic<Value>, raise: bool) -> mlua::Result<Value> {
    let reply = BOUND.with(|b| {
        let Ok(mut b) = b.try_borrow_mut() else {
            return Err(rt("ERR redis.call cannot be called from here"));
        };
        if !b.active {
            return Err(rt(
                "ERR redis.call and redis.pcall can only be used while a script runs",
            ));
        }
        let b = &mut *b;
        let (db, now, read_only) = (&mut b.db, b.now, b.read_only);
        let keys = KeyCheck {
            keys: &b.keys,
            ends: &b.key_ends,
        };
        command(lua, db, now, &keys, read_only, args)
    })?;
    if let Value::Table(t) = &reply {
        if let Value::String(e) = t.raw_get::<Value>("err")? {
            let fatal = t.raw_get::<bool>("fatal").unwrap_or(false);
            if raise || fatal {
                return Err(rt(e.to_string_lossy()));
            }
        }
    }
    Ok(reply)
}

/// Commands a script may call besides those with a keyed form.
const KEYLESS: &[&str] = &[
    "del", "unlink", "exists", "touch", "mget", "mset", "ping", "echo", "time", "publish",
    "spublish",
];

fn allowed(spec: &Spec) -> bool {
    // XREAD and XREADGROUP may run without BLOCK (checked by the caller), as in Redis;
    // the other blocking commands not at all.
    let stream_read = matches!(spec.name, "xread" | "xreadgroup");
    let publish = matches!(spec.name, "publish" | "spublish");
    let refused = spec.flags.iter().any(|f| match *f {
        "pubsub" => !publish,
        "noscript" | "admin" => true,
        "blocking" => !stream_read,
        _ => false,
    });
    !refused && (spec.keyed.is_some() || KEYLESS.contains(&spec.name))
}

/// XREAD / XREADGROUP with a BLOCK option (before STREAMS), refused from scripts.
fn blocks(spec: &Spec, argv: &[Cow<'_, [u8]>]) -> bool {
    matches!(spec.name, "xread" | "xreadgroup")
        && argv
            .iter()
            .skip(1)
            .take_while(|a| !a.eq_ignore_ascii_case(b"STREAMS"))
            .any(|a| a.eq_ignore_ascii_case(b"BLOCK"))
}

/// `redis.call` / `redis.pcall`: run one command against `db`.
fn command(
    lua: &Lua,
    db: &mut Db,
    now: u64,
    keys: &KeyCheck<'_>,
    read_only: bool,
    args: Variadic<Value>,
) -> mlua::Result<Value> {
    if args.is_empty() {
        return error_table(
            lua,
            "ERR Please specify at least one argument for this redis lib call",
            true,
        );
    }
    // Borrowed from the Lua strings where possible: no copy per argument.
    let strings: Vec<Option<mlua::BorrowedBytes>> = args
        .iter()
        .map(|a| match a {
            Value::String(s) => Some(s.as_bytes()),
            _ => None,
        })
        .collect();
    let mut argv: Vec<Cow<'_, [u8]>> = Vec::with_capacity(args.len());
    for (a, borrowed) in args.iter().zip(&strings) {
        match (a, borrowed) {
            (_, Some(b)) => argv.push(Cow::Borrowed(&b[..])),
            (Value::Integer(n), _) => argv.push(Cow::Owned(n.to_string().into_bytes())),
            (Value::Number(n), _) => argv.push(Cow::Owned(format_double(*n).into_bytes())),
            _ => {
                return error_table(
                    lua,
                    "ERR Lua redis lib command arguments must be strings or integers",
                    true,
                )
            }
        }
    }
    let Some(spec) = lookup(&argv[0]) else {
        return error_table(lua, "ERR Unknown Redis command called from script", false);
    };
    if !allowed(spec) {
        return error_table(
            lua,
            "ERR This Redis command is not allowed from script",
            false,
        );
    }
    if blocks(spec, &argv) {
        let msg = format!(
            "ERR {} command is not allowed with BLOCK option from scripts",
            spec.name
        );
        return error_table(lua, &msg, false);
    }
    if !spec.arity_ok(argv.len()) {
        return error_table(
            lua,
            "ERR Wrong number of args calling Redis command from script",
            false,
        );
    }
    let write = spec.flags.contains(&"write");
    // PUBLISH is not a write, but Redis refuses it in read-only scripts too (it is
    // replicated: "may_replicate").
    let replicated = write || matches!(spec.name, "publish" | "spublish");
    if replicated && read_only {
        return error_table(
            lua,
            "ERR Write commands are not allowed from read-only scripts.",
            false,
        );
    }
    for i in spec.key_positions(&argv) {
        if !keys.declares(&argv[i]) {
            let msg = format!(
                "ERR Script attempted to access key '{}' which is not in KEYS: a script may touch only the keys it declares (they decide which shards it runs on)",
                String::from_utf8_lossy(&argv[i]).replace(['\r', '\n'], " ")
            );
            return error_table(lua, &msg, false);
        }
    }
    if write {
        RUNNING.with(|r| r.wrote.set(true));
    }
    let result = execute(db, now, spec, &argv);
    let resp3 = RUNNING.with(|r| r.resp3.get());
    convert::result_to_lua(lua, &result, resp3)
}

fn execute(db: &mut Db, now: u64, spec: &'static Spec, argv: &[Cow<'_, [u8]>]) -> OpResult {
    db.events.cmd = spec.name;
    if spec.name == "time" {
        return crate::commands::admin::time_reply();
    }
    match spec.keyed {
        Some(keyed) => crate::evict::run_keyed(db, spec, keyed, now, &argv),
        None => run_queued(
            db,
            now,
            &Queued {
                spec,
                args: argv.iter().map(|a| Bytes::copy_from_slice(a)).collect(),
            },
        ),
    }
}

/// Run `call` against `db` at Unix time `now` (ms), its writes journaled as one record.
pub fn run(db: &mut Db, now: u64, call: Call<'_>) -> OpResult {
    VM.with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return OpResult::Error("ERR scripts cannot call scripts".into());
        };
        if slot.is_none() {
            match Vm::new() {
                Ok(vm) => *slot = Some(vm),
                Err(e) => return OpResult::Error(format!("ERR cannot start Lua: {e}")),
            }
        }
        let Some(vm) = slot.as_mut() else {
            return OpResult::Error("ERR cannot start Lua".into());
        };
        // What it publishes and notifies is kept until it ends: bounded meanwhile.
        db.events.begin_bounded_run();
        let out = db.atomically(|db| {
            let out = vm.run(db, now, call);
            if RUNNING.with(|r| r.aborted.get()) {
                // Stopped half way by SHUTDOWN NOSAVE: none of it is journaled, so the
                // log never holds half a script.
                db.discard_group();
            }
            out
        });
        db.events.end_bounded_run();
        out
    })
}

/// Compile `body` on this thread's VM (SCRIPT LOAD checks before it caches).
pub fn check_compiles(body: &Bytes) -> Result<(), String> {
    with_vm(|vm| {
        let sha = registry::sha1_hex(body);
        vm.script(Some(body), sha)
    })
}

/// Run `f` on this thread's VM (made on first use).
pub(super) fn with_vm<R>(f: impl FnOnce(&mut Vm) -> Result<R, String>) -> Result<R, String> {
    VM.with(|cell| {
        let mut slot = cell
            .try_borrow_mut()
            .map_err(|_| "ERR scripts cannot call scripts".to_string())?;
        if slot.is_none() {
            *slot = Some(Vm::new().map_err(|e| format!("ERR cannot start Lua: {e}"))?);
        }
        match slot.as_mut() {
            Some(vm) => f(vm),
            None => Err("ERR cannot start Lua".into()),
        }
    })
}

impl Vm {
    pub(super) fn lua(&self) -> &Lua {
        &self.lua
    }

    fn run(&mut self, db: &mut Db, now: u64, call: Call<'_>) -> OpResult {
        let function;
        let (f, read_only) = match &call.code {
            Code::Script { body, sha } => {
                if let Err(e) = self.script(*body, *sha) {
                    return OpResult::Error(e);
                }
                match self.compiled.get(sha) {
                    Some((f, no_writes)) => (f, call.read_only || *no_writes),
                    None => return OpResult::Error("ERR script not compiled".into()),
                }
            }
            Code::Function { name } => match self.function(name) {
                Ok(l) if call.read_only && !l.no_writes => {
                    return OpResult::Error(
                        "ERR Can not execute a script with write flag using *_ro command.".into(),
                    )
                }
                Ok(l) => {
                    function = l.f;
                    (&function, l.no_writes || call.read_only)
                }
                Err(e) => return OpResult::Error(e),
            },
        };
        RUNNING.with(|r| {
            r.active.set(true);
            r.start.set(None);
            r.wrote.set(false);
            r.killed.set(false);
            r.aborted.set(false);
            r.busy.set(false);
            r.resp3.set(false);
            r.function.set(call.is_function());
        });
        let out = self.run_bound(db, now, call, f, read_only);
        RUNNING.with(|r| {
            r.active.set(false);
            if r.busy.get() {
                busy::clear(shard());
            }
        });
        out
    }

    fn run_bound(
        &self,
        db: &mut Db,
        now: u64,
        call: Call<'_>,
        f: &Function,
        read_only: bool,
    ) -> OpResult {
        let lua = &self.lua;
        // KEYS and ARGV are two tables kept for the VM's life, emptied (whatever the last
        // script did to them) and filled for each run: no table to allocate or collect.
        let bind = |t: &Table, items: std::ops::Range<usize>| -> mlua::Result<Table> {
            t.clear()?;
            t.set_metatable(None)?;
            for (i, at) in items.enumerate() {
                t.raw_set(i + 1, lua.create_string(call.args.arg(at))?)?;
            }
            Ok(t.clone())
        };
        let (first_key, nkeys, argc) = (3, call.nkeys, call.args.len());
        // The keyspace moves into this thread's run slot for the length of the run
        // (a swap with the slot's empty placeholder: no copy, no allocation), where
        // `redis.call` finds it.
        BOUND.with(|b| {
            let mut b = b.borrow_mut();
            std::mem::swap(&mut b.db, db);
            b.now = now;
            b.read_only = read_only;
            b.keys.clear();
            b.key_ends.clear();
            for at in first_key..first_key + nkeys {
                b.keys.extend_from_slice(call.args.arg(at));
                let end = b.keys.len();
                b.key_ends.push(end);
            }
            b.active = true;
        });
        let is_function = matches!(call.code, Code::Function { .. });
        let result = (|| -> mlua::Result<OpResult> {
            let keys = bind(&self.keys_table, first_key..first_key + nkeys)?;
            let argv = bind(&self.argv_table, first_key + nkeys..argc)?;
            let (ok, res): (bool, Value) = self.runner.call((f, is_function, keys, argv))?;
            let resp3 = RUNNING.with(|r| r.resp3.get());
            Ok(if ok {
                OpResult::Reply(convert::lua_to_value(&res, resp3))
            } else {
                OpResult::Error(error_text(&res, &call.code))
            })
        })();
        BOUND.with(|b| {
            let mut b = b.borrow_mut();
            std::mem::swap(&mut b.db, db);
            b.active = false;
        });
        match result {
            Ok(r) => r,
            Err(e) => OpResult::Error(format!("ERR {}", one_line(&e.to_string()))),
        }
    }
}

/// The reply text of an error raised by a script: its message, then where (as Redis
/// 7: `... script: <sha>, on @user_script:<line>.`).
fn error_text(e: &Value, code: &Code<'_>) -> String {
    let label = match code {
        Code::Script { sha, .. } => String::from_utf8_lossy(sha).into_owned(),
        Code::Function { name } => (*name).to_string(),
    };
    let Value::Table(t) = e else {
        return "ERR unknown error".into();
    };
    let msg = match t.raw_get::<Value>("err") {
        Ok(Value::String(s)) => s.to_string_lossy(),
        _ => "ERR unknown error".into(),
    };
    let msg = one_line(&msg);
    let source = t.raw_get::<Option<String>>("source").ok().flatten();
    let line = t.raw_get::<Option<i64>>("line").ok().flatten();
    match (source, line) {
        (Some(source), Some(line)) => format!("{msg} script: {label}, on {source}:{line}."),
        _ => msg,
    }
}

/// The message of an error raised by a Rust callback, without mlua's wrapping.
fn root_message(e: &mlua::Error) -> String {
    if let Some(m) = super::args::lib_message(e) {
        return m;
    }
    match e {
        mlua::Error::CallbackError { cause, .. } => root_message(cause),
        mlua::Error::RuntimeError(m) => m.clone(),
        mlua::Error::MemoryError(_) => "not enough memory".into(),
        other => other.to_string(),
    }
}

/// An error text starts with its code (`ERR`, `WRONGTYPE`...): add `ERR` when it has none.
fn with_code(msg: &str) -> String {
    let word = msg.split(' ').next().unwrap_or("");
    if word.len() >= 2 && word.bytes().all(|c| c.is_ascii_uppercase()) {
        msg.to_string()
    } else {
        format!("ERR {msg}")
    }
}
