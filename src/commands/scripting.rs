//! Scripting commands: EVAL, EVALSHA, EVAL_RO, EVALSHA_RO, SCRIPT, FCALL, FCALL_RO,
//! FUNCTION (Redis 7 semantics). The scripts themselves run in `crate::script`.
//!
//! EVAL and FCALL are keyed commands whose keys are counted by `numkeys`: a script whose
//! declared keys live on one shard runs there, atomically; one whose keys span shards runs
//! as a one-command transaction on ordered key locks (`server/txn.rs`), against a scratch
//! copy of its keys. A script without keys runs on the connection's shard.

use bytes::Bytes;
use coreshard_engine::{ConnId, Ctx};
use coreshard_protocol::Value as Reply;

use super::{parse_int, Args, Spec, NONE};
use crate::db::Db;
use crate::script::{self, functions, registry, Call, Code};
use crate::server::ops::OpResult;
use crate::server::txn::run_across_shards;
use crate::server::{ArgList, Server};

const SCRIPTING: &str = "scripting";
const EVAL_FLAGS: &[&str] = &[
    "noscript",
    "stale",
    "skip_monitor",
    "may_replicate",
    "no_mandatory_keys",
];
const EVAL_RO_FLAGS: &[&str] = &[
    "noscript",
    "stale",
    "skip_monitor",
    "no_mandatory_keys",
    "readonly",
];

/// The scripting family's commands.
pub static COMMANDS: &[Spec] = &[
    Spec::keyed(
        "eval",
        -3,
        EVAL_FLAGS,
        NONE,
        (SCRIPTING, "2.6.0", "Executes a server-side Lua script."),
        eval,
    )
    .numkeys(2)
    .cross(run_across_shards)
    .long(),
    Spec::keyed(
        "evalsha",
        -3,
        EVAL_FLAGS,
        NONE,
        (
            SCRIPTING,
            "2.6.0",
            "Executes a server-side Lua script by SHA1 digest.",
        ),
        evalsha,
    )
    .numkeys(2)
    .cross(run_across_shards)
    .long(),
    Spec::keyed(
        "eval_ro",
        -3,
        EVAL_RO_FLAGS,
        NONE,
        (
            SCRIPTING,
            "7.0.0",
            "Executes a read-only server-side Lua script.",
        ),
        eval_ro,
    )
    .numkeys(2)
    .cross(run_across_shards)
    .long(),
    Spec::keyed(
        "evalsha_ro",
        -3,
        EVAL_RO_FLAGS,
        NONE,
        (
            SCRIPTING,
            "7.0.0",
            "Executes a read-only server-side Lua script by SHA1 digest.",
        ),
        evalsha_ro,
    )
    .numkeys(2)
    .cross(run_across_shards)
    .long(),
    Spec::keyed(
        "fcall",
        -3,
        EVAL_FLAGS,
        NONE,
        (SCRIPTING, "7.0.0", "Invokes a function."),
        fcall,
    )
    .numkeys(2)
    .cross(run_across_shards)
    .long(),
    Spec::keyed(
        "fcall_ro",
        -3,
        EVAL_RO_FLAGS,
        NONE,
        (SCRIPTING, "7.0.0", "Invokes a read-only function."),
        fcall_ro,
    )
    .numkeys(2)
    .cross(run_across_shards)
    .long(),
    Spec::new(
        "script",
        -2,
        &["noscript"],
        NONE,
        (
            SCRIPTING,
            "2.6.0",
            "A container for Lua scripts management commands.",
        ),
        script_cmd,
    ),
    Spec::new(
        "function",
        -2,
        &["noscript"],
        NONE,
        (SCRIPTING, "7.0.0", "A container for function commands."),
        function_cmd,
    ),
];

/// How many of `name body-or-sha numkeys key... arg...` are keys, or Redis's error.
fn split_keys(a: &dyn ArgList) -> Result<usize, OpResult> {
    let Some(n) = parse_int(a.arg(2)) else {
        return Err(OpResult::Error(
            "ERR value is not an integer or out of range".into(),
        ));
    };
    if n < 0 {
        return Err(OpResult::Error(
            "ERR Number of keys can't be negative".into(),
        ));
    }
    let n = n as usize;
    if n > a.len() - 3 {
        return Err(OpResult::Error(
            "ERR Number of keys can't be greater than number of args".into(),
        ));
    }
    Ok(n)
}

fn run_script(db: &mut Db, now: u64, a: &dyn ArgList, by_sha: bool, read_only: bool) -> OpResult {
    let nkeys = match split_keys(a) {
        Ok(x) => x,
        Err(e) => return e,
    };
    // EVALSHA: the VM finds the compiled script by its id, and only asks the cache for the
    // body the first time; EVAL: the body is here (and remembered for later EVALSHAs).
    let code = if by_sha {
        match registry::parse_sha(a.arg(1)) {
            Some(sha) => Code::Script { body: None, sha },
            None => return OpResult::Error("NOSCRIPT No matching script. Please use EVAL.".into()),
        }
    } else {
        let body = a.arg(1);
        let sha = registry::sha1_hex(body);
        Code::Script {
            body: Some(body),
            sha,
        }
    };
    script::run(
        db,
        now,
        Call {
            code,
            args: a,
            nkeys,
            read_only,
        },
    )
}

pub fn eval(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    run_script(db, now, a, false, false)
}

pub fn evalsha(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    run_script(db, now, a, true, false)
}

pub fn eval_ro(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    run_script(db, now, a, false, true)
}

pub fn evalsha_ro(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    run_script(db, now, a, true, true)
}

fn run_function(db: &mut Db, now: u64, a: &dyn ArgList, read_only: bool) -> OpResult {
    let name = String::from_utf8_lossy(a.arg(1)).into_owned();
    let nkeys = match split_keys(a) {
        Ok(x) => x,
        // Redis looks the function up first.
        Err(_) if !functions::exists(&name) => {
            return OpResult::Error("ERR Function not found".into())
        }
        Err(e) => return e,
    };
    script::run(
        db,
        now,
        Call {
            code: Code::Function { name: &name },
            args: a,
            nkeys,
            read_only,
        },
    )
}

pub fn fcall(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    run_function(db, now, a, false)
}

pub fn fcall_ro(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    run_function(db, now, a, true)
}

const SCRIPT_HELP: &[&str] = &[
    "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DEBUG (YES|SYNC|NO)",
    "    Set the debug mode for subsequent scripts executed.",
    "EXISTS <sha1> [<sha1> ...]",
    "    Return information about the existence of the scripts in the script cache.",
    "FLUSH [ASYNC|SYNC]",
    "    Flush the Lua scripts cache. Very dangerous on replicas.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the scripts cache.",
    "    * SYNC: Synchronously flush the scripts cache.",
    "KILL",
    "    Kill the currently executing Lua script.",
    "LOAD <script>",
    "    Load a script into the scripts cache without executing it.",
    "HELP",
    "    Prints this help.",
];

fn flush_mode_ok(args: Args) -> bool {
    match args.len() {
        2 => true,
        3 => args[2].eq_ignore_ascii_case(b"ASYNC") || args[2].eq_ignore_ascii_case(b"SYNC"),
        _ => false,
    }
}

fn kill_reply(function: bool) -> OpResult {
    match script::kill(function) {
        Ok(()) => OpResult::Ok,
        Err(e) => OpResult::Error(e.into()),
    }
}

pub fn script_cmd(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    let result = script_result(args);
    s.reply_result(ctx, conn, &result);
}

/// SCRIPT's reply (also run inside MULTI/EXEC).
pub fn script_result(args: Args) -> OpResult {
    let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
    let n = args.len();
    match (sub.as_str(), n) {
        ("load", 3) => {
            let body = Bytes::copy_from_slice(&args[2]);
            match script::check_compiles(&body) {
                Ok(()) => {
                    let sha = registry::remember(&body, true);
                    OpResult::Value(Some(Bytes::copy_from_slice(&sha)))
                }
                Err(e) => OpResult::Error(e),
            }
        }
        ("exists", 3..) => OpResult::Reply(Reply::Array(
            args[2..]
                .iter()
                .map(|a| {
                    let found =
                        registry::parse_sha(a).is_some_and(|sha| registry::get(&sha).is_some());
                    Reply::Integer(i64::from(found))
                })
                .collect(),
        )),
        ("flush", _) => {
            if flush_mode_ok(args) {
                registry::flush();
                OpResult::Ok
            } else {
                OpResult::Error("ERR SCRIPT FLUSH only support SYNC|ASYNC option".into())
            }
        }
        ("kill", 2) => kill_reply(false),
        ("debug", 3) => {
            if args[2].eq_ignore_ascii_case(b"NO") {
                OpResult::Ok
            } else if args[2].eq_ignore_ascii_case(b"YES") || args[2].eq_ignore_ascii_case(b"SYNC")
            {
                OpResult::Error("ERR coreshard has no Lua debugger (SCRIPT DEBUG YES|SYNC)".into())
            } else {
                OpResult::Error("ERR Use SCRIPT DEBUG YES/SYNC/NO".into())
            }
        }
        ("help", 2) => super::help_reply(SCRIPT_HELP),
        ("load" | "exists" | "kill" | "help" | "debug", _) => {
            super::subcommand_arity_error("script", &sub)
        }
        _ => OpResult::Error(super::unknown_subcommand_error(&args[1], "SCRIPT")),
    }
}

const FUNCTION_HELP: &[&str] = &[
    "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "LOAD [REPLACE] <FUNCTION CODE>",
    "    Create a new library with the given library name and code.",
    "DELETE <LIBRARY NAME>",
    "    Delete the given library.",
    "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
    "    Return general information on all the libraries:",
    "    * Library name",
    "    * The engine used to run the Library",
    "    * Library description",
    "    * Functions list",
    "    * Library code (if WITHCODE is given)",
    "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
    "STATS",
    "    Return information about the current function running:",
    "    * Function name",
    "    * Command used to run the function",
    "    * Duration in MS that the function is running",
    "    If no function is running, return nil",
    "    In addition, returns a list of available engines.",
    "KILL",
    "    Kill the current running function.",
    "FLUSH [ASYNC|SYNC]",
    "    Delete all the libraries.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the libraries.",
    "    * SYNC: Synchronously flush the libraries.",
    "HELP",
    "    Print this help.",
];

fn bulk(s: &str) -> Reply {
    Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

fn function_list(args: Args) -> OpResult {
    let mut with_code = false;
    let mut pattern: Option<Vec<u8>> = None;
    let mut i = 2;
    while i < args.len() {
        if args[i].eq_ignore_ascii_case(b"WITHCODE") && !with_code {
            with_code = true;
            i += 1;
        } else if args[i].eq_ignore_ascii_case(b"LIBRARYNAME") && pattern.is_none() {
            let Some(p) = args.get(i + 1) else {
                return OpResult::Error("ERR library name argument was not given".into());
            };
            pattern = Some(p.to_vec());
            i += 2;
        } else {
            return OpResult::Error(format!(
                "ERR Unknown argument {}",
                String::from_utf8_lossy(&args[i])
            ));
        }
    }
    let libs = functions::list()
        .into_iter()
        .filter(|l| {
            pattern
                .as_ref()
                .is_none_or(|p| crate::glob::glob_match(p, l.name.as_bytes(), false))
        })
        .map(|l| {
            let fns = l
                .functions
                .iter()
                .map(|f| {
                    Reply::Map(vec![
                        (bulk("name"), bulk(&f.name)),
                        (
                            bulk("description"),
                            f.description.as_deref().map_or(Reply::Null, bulk),
                        ),
                        (
                            bulk("flags"),
                            Reply::Set(f.flags.iter().map(|x| bulk(x)).collect()),
                        ),
                    ])
                })
                .collect();
            let mut fields = vec![
                (bulk("library_name"), bulk(&l.name)),
                (bulk("engine"), bulk("LUA")),
                (bulk("functions"), Reply::Array(fns)),
            ];
            if with_code {
                fields.push((bulk("library_code"), Reply::Bulk(l.code.clone())));
            }
            Reply::Map(fields)
        })
        .collect();
    OpResult::Reply(Reply::Array(libs))
}

pub fn function_cmd(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    let result = function_result(args);
    s.reply_result(ctx, conn, &result);
}

/// FUNCTION's reply (also run inside MULTI/EXEC).
pub fn function_result(args: Args) -> OpResult {
    let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
    let n = args.len();
    match (sub.as_str(), n) {
        ("load", 3 | 4) => {
            let replace = n == 4 && args[2].eq_ignore_ascii_case(b"REPLACE");
            if n == 4 && !replace {
                OpResult::Error(format!(
                    "ERR Unknown option given: {}",
                    String::from_utf8_lossy(&args[2])
                ))
            } else {
                let code = Bytes::copy_from_slice(&args[n - 1]);
                match functions::load(code, replace) {
                    Ok(name) => OpResult::Value(Some(Bytes::from(name))),
                    Err(e) => OpResult::Error(e),
                }
            }
        }
        ("delete", 3) => match functions::delete(&String::from_utf8_lossy(&args[2])) {
            Ok(()) => OpResult::Ok,
            Err(e) => OpResult::Error(e),
        },
        ("flush", _) => {
            if flush_mode_ok(args) {
                match functions::flush() {
                    Ok(()) => OpResult::Ok,
                    Err(e) => OpResult::Error(e),
                }
            } else {
                OpResult::Error("ERR FUNCTION FLUSH only supports SYNC|ASYNC option".into())
            }
        }
        ("list", _) => function_list(args),
        ("kill", 2) => kill_reply(true),
        ("stats", 2) => {
            let libs = functions::list();
            let count: usize = libs.iter().map(|l| l.functions.len()).sum();
            OpResult::Reply(Reply::Map(vec![
                (bulk("running_script"), Reply::Null),
                (
                    bulk("engines"),
                    Reply::Map(vec![(
                        bulk("LUA"),
                        Reply::Map(vec![
                            (bulk("libraries_count"), Reply::Integer(libs.len() as i64)),
                            (bulk("functions_count"), Reply::Integer(count as i64)),
                        ]),
                    )]),
                ),
            ]))
        }
        ("help", 2) => super::help_reply(FUNCTION_HELP),
        ("load" | "delete" | "kill" | "stats" | "help", _) => {
            super::subcommand_arity_error("function", &sub)
        }
        _ => OpResult::Error(super::unknown_subcommand_error(&args[1], "FUNCTION")),
    }
}
