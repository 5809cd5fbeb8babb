//! The command table: name, arity, flags and key positions as Redis reports them through
//! COMMAND, a summary for COMMAND DOCS, and the function that runs it.

pub mod admin;
pub mod blocking;
pub mod client;
pub mod configcmd;
pub mod connection;
pub mod hash;
pub mod keyspace;
pub mod latency;
pub mod list;
pub mod longdouble;
pub mod multi;
pub mod object;
pub mod persistence;
pub mod pubsub;
pub mod scan;
pub mod scripting;
pub mod set;
pub mod stream;
pub mod strings;
pub mod zset;
pub mod zset_agg;

use hashbrown::HashMap;
use std::borrow::Cow;
use std::sync::LazyLock;

use coreshard_engine::{ConnId, Ctx};

use crate::db::Db;
use crate::server::ops::OpResult;
use crate::server::{ArgList, Server};

/// A request's arguments, borrowed from the receive buffer where possible.
pub type Args<'a, 'b> = &'a [Cow<'b, [u8]>];

/// Runs a command (arity and authentication are already checked).
pub type Exec = fn(&mut Server, &mut Ctx<Server>, ConnId, Args<'_, '_>);

/// Runs a command on the shard that owns all its keys, at Unix time `now` (ms). The same
/// function serves local execution (borrowed arguments) and remote (owned ones).
pub type KeyedFn = fn(&mut Db, u64, &dyn ArgList) -> OpResult;

/// COMMAND DOCS fields: group, the Redis version that introduced it, a summary.
type Doc = (&'static str, &'static str, &'static str);

/// One command's description.
pub struct Spec {
    /// Lower-case name.
    pub name: &'static str,
    /// Redis arity: exact count if positive, minimum count if negative (name included).
    pub arity: i32,
    /// COMMAND flags.
    pub flags: &'static [&'static str],
    /// Position of the first key (0: none).
    pub first_key: i32,
    /// Position of the last key (-1: the last argument).
    pub last_key: i32,
    /// Step between keys.
    pub step: i32,
    /// COMMAND DOCS group.
    pub group: &'static str,
    /// Redis version that introduced it.
    pub since: &'static str,
    /// One-line description.
    pub summary: &'static str,
    /// Allowed before AUTH.
    pub no_auth: bool,
    /// The implementation, run on the shard that parsed the request (`None`: route by key
    /// to `keyed`).
    pub exec: Option<Exec>,
    /// For keyed commands: the part that runs on the owning shard.
    pub keyed: Option<KeyedFn>,
    /// For keyed commands whose keys may span shards: how to run it then.
    pub cross: Option<Exec>,
    /// Keys counted by an argument (`numkeys` at this position, keys right after it),
    /// besides any fixed key of first/last/step (ZUNIONSTORE's destination); 0: not so.
    pub numkeys_at: usize,
    /// Keys follow a `STREAMS` keyword searched from this position, as the first half of
    /// the arguments after it (XREAD, XREADGROUP); 0: not so.
    pub streams_from: usize,
    /// May run for long (a script): the shard answers its other connections meanwhile
    /// (`server/busy.rs`).
    pub long: bool,
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Spec({})", self.name)
    }
}

impl Spec {
    pub(crate) const fn new(
        name: &'static str,
        arity: i32,
        flags: &'static [&'static str],
        keys: (i32, i32, i32),
        doc: Doc,
        exec: Exec,
    ) -> Spec {
        Spec {
            name,
            arity,
            flags,
            first_key: keys.0,
            last_key: keys.1,
            step: keys.2,
            group: doc.0,
            since: doc.1,
            summary: doc.2,
            no_auth: false,
            exec: Some(exec),
            keyed: None,
            cross: None,
            numkeys_at: 0,
            streams_from: 0,
            long: false,
        }
    }

    /// A command that runs on the shard owning its keys.
    pub(crate) const fn keyed(
        name: &'static str,
        arity: i32,
        flags: &'static [&'static str],
        keys: (i32, i32, i32),
        doc: Doc,
        keyed: KeyedFn,
    ) -> Spec {
        Spec {
            keyed: Some(keyed),
            exec: None,
            ..Spec::new(name, arity, flags, keys, doc, run_get)
        }
    }

    pub(crate) const fn cross(self, cross: Exec) -> Spec {
        Spec {
            cross: Some(cross),
            ..self
        }
    }

    /// Keys given as `numkeys key [key ...]` with `numkeys` at argument `at` (SINTERCARD,
    /// LMPOP, BLMPOP...), after the fixed keys if any (see [`Spec::key_positions`]).
    pub(crate) const fn numkeys(self, at: usize) -> Spec {
        Spec {
            numkeys_at: at,
            ..self
        }
    }

    /// Keys given as `STREAMS key [key ...] id [id ...]`, the keyword searched from
    /// argument `from` (see [`Spec::key_positions`]).
    pub(crate) const fn streams(self, from: usize) -> Spec {
        Spec {
            streams_from: from,
            ..self
        }
    }

    /// See [`Spec::long`].
    pub(crate) const fn long(self) -> Spec {
        Spec { long: true, ..self }
    }

    pub(crate) const fn no_auth(self) -> Spec {
        Spec {
            no_auth: true,
            ..self
        }
    }

    pub(crate) const fn exec(self, exec: Exec) -> Spec {
        Spec {
            exec: Some(exec),
            ..self
        }
    }

    /// Whether the command reads or writes keys (its reply may show data that must be
    /// durable first under `appendfsync always`).
    pub fn observes_data(&self) -> bool {
        self.first_key > 0
            || self.numkeys_at > 0
            || self.streams_from > 0
            || matches!(
                self.name,
                "dbsize" | "keys" | "scan" | "randomkey" | "exec" | "flushall" | "flushdb"
            )
    }

    /// Redis's error for a wrong argument count.
    pub fn arity_error(&self) -> String {
        format!("ERR wrong number of arguments for '{}' command", self.name)
    }

    /// Whether `argc` arguments (the name included) fit the arity.
    pub fn arity_ok(&self, argc: usize) -> bool {
        let n = argc as i64;
        let a = i64::from(self.arity);
        (a > 0 && n == a) || (a < 0 && n >= -a)
    }

    /// Argument positions that are keys in the request `args` (the name included): those
    /// of the fixed spec (first, last, step), then, for a `numkeys` command, the keys it
    /// counts. A `numkeys` command with a fixed key too (ZUNIONSTORE's destination at 1,
    /// `numkeys` at 2) declares both, as Redis's COMMAND reports it (1, 1, 1).
    pub fn key_positions<A: AsRef<[u8]>>(&self, args: &[A]) -> impl Iterator<Item = usize> {
        let argc = args.len();
        let (first, last, step, active) = self.fixed_keys(argc);
        let fixed = (first..=last).step_by(step).filter(move |_| active);
        let counted = if self.numkeys_at > 0 {
            let at = self.numkeys_at;
            let n = args
                .get(at)
                .and_then(|a| parse_int(a.as_ref()))
                .filter(|n| *n > 0)
                .map_or(0, |n| n as usize);
            let first = at + 1;
            first..first.saturating_add(n).min(argc).max(first)
        } else if self.streams_from > 0 {
            match (self.streams_from..argc)
                .find(|&i| args[i].as_ref().eq_ignore_ascii_case(b"STREAMS"))
            {
                Some(at) => at + 1..at + 1 + (argc - at - 1) / 2,
                None => 0..0,
            }
        } else {
            0..0
        };
        fixed.chain(counted)
    }

    /// First, last, step and whether any, for a fixed key spec.
    fn fixed_keys(&self, argc: usize) -> (usize, usize, usize, bool) {
        let first = self.first_key.max(0) as usize;
        let last = if self.last_key < 0 {
            (argc as i64 + i64::from(self.last_key)).max(0) as usize
        } else {
            (self.last_key as usize).min(argc.saturating_sub(1))
        };
        let step = self.step.max(1) as usize;
        let active = first > 0 && first < argc;
        (first, last, step, active)
    }
}

fn run_get(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args<'_, '_>) {
    s.run_get(ctx, conn, &COMMANDS[GET], args);
}

/// GET's index in [`COMMANDS`] (its fast path skips the lookup); `get_fast_path_index_is_right`
/// checks it.
const GET: usize = 14;
pub(crate) const CONN: &str = "connection";
pub(crate) const SRV: &str = "server";
pub(crate) const STR: &str = "string";
pub(crate) const GEN: &str = "generic";
pub(crate) const TXN: &str = "transactions";
pub(crate) const PS: &str = "pubsub";
pub(crate) const W: &[&str] = &["write", "denyoom"];
pub(crate) const WF: &[&str] = &["write", "fast"];
pub(crate) const WDF: &[&str] = &["write", "denyoom", "fast"];
pub(crate) const R: &[&str] = &["readonly"];
pub(crate) const RF: &[&str] = &["readonly", "fast"];
pub(crate) const NONE: (i32, i32, i32) = (0, 0, 0);
pub(crate) const K1: (i32, i32, i32) = (1, 1, 1);
pub(crate) const K12: (i32, i32, i32) = (1, 2, 1);
pub(crate) const K2: (i32, i32, i32) = (2, 2, 1);
pub(crate) const KALL: (i32, i32, i32) = (1, -1, 1);
pub(crate) const KPAIRS: (i32, i32, i32) = (1, -1, 2);

/// Every command the server knows, in COMMAND order.
pub static COMMANDS: &[Spec] = &[
    Spec::new("ping", -1, &["fast", "stale"], NONE, (CONN, "1.0.0", "Returns the server's liveliness response."), connection::ping),
    Spec::new("echo", 2, &["fast", "stale"], NONE, (CONN, "1.0.0", "Returns the given string."), connection::echo),
    Spec::new("quit", -1, &["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"], NONE, (CONN, "1.0.0", "Closes the connection."), connection::quit).no_auth(),
    Spec::new("hello", -1, &["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"], NONE, (CONN, "6.0.0", "Handshakes with the server."), connection::hello).no_auth(),
    Spec::new("select", 2, &["loading", "stale", "fast"], NONE, (CONN, "1.0.0", "Changes the selected database."), connection::select),
    Spec::new("auth", -2, &["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"], NONE, (CONN, "1.0.0", "Authenticates the connection."), connection::auth).no_auth(),
    Spec::new("client", -2, &["loading", "stale"], NONE, (CONN, "2.4.0", "A container for client connection commands."), client::client),
    Spec::new("command", -1, &["loading", "stale"], NONE, (SRV, "2.8.13", "Returns detailed information about all commands."), admin::command),
    Spec::new("config", -2, &["admin", "noscript", "loading", "stale"], NONE, (SRV, "2.0.0", "A container for server configuration commands."), configcmd::config),
    Spec::new("info", -1, &["loading", "stale"], NONE, (SRV, "1.0.0", "Returns information and statistics about the server."), admin::info),
    Spec::new("dbsize", 1, RF, NONE, (SRV, "1.0.0", "Returns the number of keys in the database."), admin::dbsize),
    Spec::new("role", 1, &["noscript", "loading", "stale", "fast"], NONE, (SRV, "2.8.12", "Returns the replication role."), admin::role),
    Spec::new("flushall", -1, &["write"], NONE, (SRV, "1.0.0", "Removes all keys from all databases."), admin::flush),
    Spec::new("flushdb", -1, &["write"], NONE, (SRV, "1.0.0", "Remove all keys from the current database."), admin::flush),
    // Index GET (13): the GET fast path looks its own spec up by position.
    Spec::keyed("get", 2, RF, K1, (STR, "1.0.0", "Returns the string value of a key."), strings::get).exec(run_get),
    Spec::keyed("set", -3, W, K1, (STR, "1.0.0", "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist."), strings::set),
    Spec::keyed("setnx", 3, WDF, K1, (STR, "1.0.0", "Set the string value of a key only when the key doesn't exist."), strings::setnx),
    Spec::keyed("setex", 4, W, K1, (STR, "2.0.0", "Sets the string value and expiration time of a key. Creates the key if it doesn't exist."), strings::setex),
    Spec::keyed("psetex", 4, W, K1, (STR, "2.6.0", "Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist."), strings::psetex),
    Spec::keyed("getex", -2, WF, K1, (STR, "6.2.0", "Returns the string value of a key after setting its expiration time."), strings::getex),
    Spec::keyed("getdel", 2, WF, K1, (STR, "6.2.0", "Returns the string value of a key after deleting the key."), strings::getdel),
    Spec::keyed("getset", 3, WDF, K1, (STR, "1.0.0", "Returns the previous string value of a key after setting it to a new value."), strings::getset),
    Spec::new("mget", -2, RF, KALL, (STR, "1.0.0", "Atomically returns the string values of one or more keys."), strings::mget),
    Spec::new("mset", -3, W, KPAIRS, (STR, "1.0.1", "Atomically creates or modifies the string values of one or more keys."), strings::mset),
    Spec::keyed("msetnx", -3, W, KPAIRS, (STR, "1.0.1", "Atomically modifies the string values of one or more keys only when all keys don't exist."), strings::msetnx).cross(strings::msetnx_cross),
    Spec::keyed("append", 3, WDF, K1, (STR, "2.0.0", "Appends a string to the value of a key. Creates the key if it doesn't exist."), strings::append),
    Spec::keyed("strlen", 2, RF, K1, (STR, "2.2.0", "Returns the length of a string value."), strings::strlen),
    Spec::keyed("getrange", 4, R, K1, (STR, "2.4.0", "Returns a substring of the string stored at a key."), strings::getrange),
    Spec::keyed("setrange", 4, W, K1, (STR, "2.2.0", "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist."), strings::setrange),
    Spec::keyed("incr", 2, WDF, K1, (STR, "1.0.0", "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist."), strings::incr),
    Spec::keyed("decr", 2, WDF, K1, (STR, "1.0.0", "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist."), strings::decr),
    Spec::keyed("incrby", 3, WDF, K1, (STR, "1.0.0", "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist."), strings::incrby),
    Spec::keyed("decrby", 3, WDF, K1, (STR, "1.0.0", "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist."), strings::decrby),
    Spec::keyed("incrbyfloat", 3, WDF, K1, (STR, "2.6.0", "Increment the floating point value of a key by a number. Uses 0 as initial value if the key doesn't exist."), strings::incrbyfloat),
    Spec::keyed("lcs", -3, R, K12, (STR, "7.0.0", "Finds the longest common substring."), strings::lcs).cross(strings::lcs_cross),
    Spec::keyed("delifeq", 3, WF, K1, (STR, "9.0.0", "Deletes the key if its value equals the given value."), strings::delifeq),
    Spec::new("del", -2, &["write"], KALL, (GEN, "1.0.0", "Deletes one or more keys."), keyspace::del),
    Spec::new("unlink", -2, WF, KALL, (GEN, "4.0.0", "Asynchronously deletes one or more keys."), keyspace::del),
    Spec::new("exists", -2, RF, KALL, (GEN, "1.0.0", "Determines whether one or more keys exist."), keyspace::exists),
    Spec::new("touch", -2, RF, KALL, (GEN, "3.2.1", "Returns the number of existing keys out of those specified after updating the time they were last accessed."), keyspace::exists),
    Spec::keyed("type", 2, RF, K1, (GEN, "1.0.0", "Determines the type of value stored at a key."), keyspace::type_),
    Spec::keyed("expire", -3, WF, K1, (GEN, "1.0.0", "Sets the expiration time of a key in seconds."), keyspace::expire),
    Spec::keyed("pexpire", -3, WF, K1, (GEN, "2.6.0", "Sets the expiration time of a key in milliseconds."), keyspace::pexpire),
    Spec::keyed("expireat", -3, WF, K1, (GEN, "1.2.0", "Sets the expiration time of a key to a Unix timestamp."), keyspace::expireat),
    Spec::keyed("pexpireat", -3, WF, K1, (GEN, "2.6.0", "Sets the expiration time of a key to a Unix milliseconds timestamp."), keyspace::pexpireat),
    Spec::keyed("ttl", 2, RF, K1, (GEN, "1.0.0", "Returns the expiration time in seconds of a key."), keyspace::ttl),
    Spec::keyed("pttl", 2, RF, K1, (GEN, "2.6.0", "Returns the expiration time in milliseconds of a key."), keyspace::pttl),
    Spec::keyed("expiretime", 2, RF, K1, (GEN, "7.0.0", "Returns the expiration time of a key as a Unix timestamp."), keyspace::expiretime),
    Spec::keyed("pexpiretime", 2, RF, K1, (GEN, "7.0.0", "Returns the expiration time of a key as a Unix milliseconds timestamp."), keyspace::pexpiretime),
    Spec::keyed("persist", 2, WF, K1, (GEN, "2.2.0", "Removes the expiration time of a key."), keyspace::persist),
    Spec::new("keys", 2, R, NONE, (GEN, "1.0.0", "Returns all key names that match a pattern."), keyspace::keys),
    Spec::new("scan", -2, R, NONE, (GEN, "2.8.0", "Iterates over the key names in the database."), keyspace::scan),
    Spec::new("randomkey", 1, R, NONE, (GEN, "1.0.0", "Returns a random key name from the database."), keyspace::randomkey),
    Spec::keyed("rename", 3, &["write"], K12, (GEN, "1.0.0", "Renames a key and overwrites the destination."), keyspace::rename).cross(keyspace::rename_cross),
    Spec::keyed("renamenx", 3, WF, K12, (GEN, "1.0.0", "Renames a key only when the target key name doesn't exist."), keyspace::renamenx).cross(keyspace::renamenx_cross),
    Spec::new("save", 1, &["admin", "noscript", "no_async_loading", "no_multi"], NONE, (SRV, "1.0.0", "Synchronously saves the database(s) to disk."), persistence::save),
    Spec::new("bgsave", -1, &["admin", "noscript", "no_async_loading", "no_multi"], NONE, (SRV, "1.0.0", "Asynchronously saves the database(s) to disk."), persistence::bgsave),
    Spec::new("bgrewriteaof", 1, &["admin", "noscript", "no_async_loading", "no_multi"], NONE, (SRV, "1.0.0", "Asynchronously rewrites the append-only file to disk."), persistence::bgrewriteaof),
    Spec::new("shutdown", -1, &["admin", "noscript", "loading", "stale", "no_multi", "allow_busy"], NONE, (SRV, "1.0.0", "Synchronously saves the database(s) to disk and shuts down the Redis server."), persistence::shutdown),
    Spec::new("time", 1, &["loading", "stale", "fast"], NONE, (SRV, "2.6.0", "Returns the server time."), admin::time),
    Spec::new("lastsave", 1, &["loading", "stale", "fast"], NONE, (SRV, "1.0.0", "Returns the Unix timestamp of the last successful save to disk."), persistence::lastsave),
    Spec::new("subscribe", -2, &["pubsub", "noscript", "loading", "stale"], NONE, (PS, "2.0.0", "Listens for messages published to channels."), pubsub::subscribe),
    Spec::new("unsubscribe", -1, &["pubsub", "noscript", "loading", "stale"], NONE, (PS, "2.0.0", "Stops listening to messages posted to channels."), pubsub::unsubscribe),
    Spec::new("psubscribe", -2, &["pubsub", "noscript", "loading", "stale"], NONE, (PS, "2.0.0", "Listens for messages published to channels that match one or more patterns."), pubsub::psubscribe),
    Spec::new("punsubscribe", -1, &["pubsub", "noscript", "loading", "stale"], NONE, (PS, "2.0.0", "Stops listening to messages published to channels that match one or more patterns."), pubsub::punsubscribe),
    Spec::new("ssubscribe", -2, &["pubsub", "noscript", "loading", "stale"], NONE, (PS, "7.0.0", "Listens for messages published to shard channels."), pubsub::ssubscribe),
    Spec::new("sunsubscribe", -1, &["pubsub", "noscript", "loading", "stale"], NONE, (PS, "7.0.0", "Stops listening to messages posted to shard channels."), pubsub::sunsubscribe),
    Spec::new("publish", 3, &["pubsub", "loading", "stale", "fast"], NONE, (PS, "2.0.0", "Posts a message to a channel."), pubsub::publish),
    Spec::new("spublish", 3, &["pubsub", "loading", "stale", "fast"], NONE, (PS, "7.0.0", "Post a message to a shard channel"), pubsub::spublish),
    Spec::new("pubsub", -2, &[], NONE, (PS, "2.8.0", "A container for Pub/Sub commands."), pubsub::pubsub),
    Spec::new("reset", 1, &["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"], NONE, (CONN, "6.2.0", "Resets the connection."), pubsub::reset).no_auth(),
    Spec::new("multi", 1, &["noscript", "loading", "stale", "fast", "allow_busy"], NONE, (TXN, "1.2.0", "Starts a transaction."), multi::multi),
    Spec::new("exec", 1, &["noscript", "loading", "stale", "skip_slowlog"], NONE, (TXN, "1.2.0", "Executes all commands in a transaction."), multi::exec),
    Spec::new("discard", 1, &["noscript", "loading", "stale", "fast", "allow_busy"], NONE, (TXN, "2.0.0", "Discards a transaction."), multi::discard),
    Spec::new("watch", -2, &["noscript", "loading", "stale", "fast", "allow_busy"], KALL, (TXN, "2.2.0", "Monitors changes to keys to determine the execution of a transaction."), multi::watch),
    Spec::new("unwatch", 1, &["noscript", "loading", "stale", "fast", "allow_busy"], NONE, (TXN, "2.2.0", "Forgets about watched keys of a transaction."), multi::unwatch),
    Spec::keyed("copy", -3, W, K12, (GEN, "6.2.0", "Copies the value of a key to a new key."), keyspace::copy).cross(keyspace::copy_cross),
    // Containers whose subcommands name a key at position 2, routed to its shard.
    Spec::keyed("object", -2, R, K2, (GEN, "2.2.3", "A container for object introspection commands."), object::object),
    Spec::keyed("memory", -2, R, K2, (SRV, "4.0.0", "A container for memory diagnostics commands."), object::memory),
    Spec::new("slowlog", -2, &["admin", "loading", "stale"], NONE, (SRV, "2.2.12", "A container for slow log commands."), configcmd::slowlog),
    Spec::new("latency", -2, &["admin", "noscript", "loading", "stale"], NONE, (SRV, "2.8.13", "A container for latency diagnostics commands."), latency::latency),
];

/// Every command: the core table, then each type family's own table.
pub fn all_commands() -> impl Iterator<Item = &'static Spec> {
    COMMANDS
        .iter()
        .chain(hash::COMMANDS)
        .chain(list::COMMANDS)
        .chain(set::COMMANDS)
        .chain(zset::COMMANDS)
        .chain(zset_agg::COMMANDS)
        .chain(blocking::COMMANDS)
        .chain(stream::COMMANDS)
        .chain(scripting::COMMANDS)
}

/// Keyed by bytes, so a request's lower-cased name needs no UTF-8 check.
static BY_NAME: LazyLock<HashMap<&'static [u8], (&'static Spec, usize)>> = LazyLock::new(|| {
    all_commands()
        .enumerate()
        .map(|(i, s)| (s.name.as_bytes(), (s, i)))
        .collect()
});

static BY_INDEX: LazyLock<Vec<&'static Spec>> = LazyLock::new(|| all_commands().collect());

/// Find a command by name, ignoring case.
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    lookup_indexed(name).map(|(s, _)| s)
}

/// Find a command by name, ignoring case, with its index in [`all_commands`] (what the
/// per-command statistics are kept by).
pub fn lookup_indexed(name: &[u8]) -> Option<(&'static Spec, usize)> {
    let mut buf = [0u8; 32];
    let lower = buf.get_mut(..name.len())?;
    for (d, s) in lower.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    BY_NAME.get(&*lower).copied()
}

/// The command at `index` in [`all_commands`].
pub fn by_index(index: usize) -> Option<&'static Spec> {
    BY_INDEX.get(index).copied()
}

/// Redis's text for an unknown command, quoting up to 128 bytes of its arguments.
pub fn unknown_command_error(args: Args<'_, '_>) -> String {
    let name = sanitize(&args[0], 128);
    let mut rest = String::new();
    for a in &args[1..] {
        if rest.len() >= 128 {
            break;
        }
        let room = 128 - rest.len();
        rest.push_str(&format!("'{}' ", sanitize(a, room)));
    }
    format!("ERR unknown command '{name}', with args beginning with: {rest}")
}

/// Redis's error for a subcommand it does not know.
pub fn unknown_subcommand_error(sub: &[u8], command: &str) -> String {
    format!(
        "ERR unknown subcommand '{}'. Try {} HELP.",
        sanitize(sub, 128),
        command.to_ascii_uppercase()
    )
}

/// Redis's error for a subcommand it knows but whose arguments are wrong
/// (`addReplySubcommandSyntaxError`): the subcommand as typed.
pub fn subcommand_syntax_error(sub: &[u8], command: &str) -> String {
    format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try {} HELP.",
        String::from_utf8_lossy(sub),
        command.to_ascii_uppercase()
    )
}

/// Redis 7's full names of the subcommands of the containers this server has, as
/// `CLIENT LIST` shows the last command (`cmd=client|list`): Redis 7.0's, and Redis 7.2's
/// `client|setinfo`, which client libraries send on connect. A subcommand missing here is
/// refused as unknown before its handler runs (`early_refusal`).
const SUBCOMMANDS: &[&str] = &[
    "client|caching",
    "client|getname",
    "client|getredir",
    "client|help",
    "client|id",
    "client|info",
    "client|kill",
    "client|list",
    "client|no-evict",
    "client|pause",
    "client|reply",
    "client|setname",
    "client|setinfo",
    "client|tracking",
    "client|trackinginfo",
    "client|unblock",
    "client|unpause",
    "command|count",
    "command|docs",
    "command|getkeys",
    "command|getkeysandflags",
    "command|help",
    "command|info",
    "command|list",
    "config|get",
    "config|help",
    "config|resetstat",
    "config|rewrite",
    "config|set",
    "function|delete",
    "function|dump",
    "function|flush",
    "function|help",
    "function|kill",
    "function|list",
    "function|load",
    "function|restore",
    "function|stats",
    "latency|doctor",
    "latency|graph",
    "latency|help",
    "latency|histogram",
    "latency|history",
    "latency|latest",
    "latency|reset",
    "memory|doctor",
    "memory|help",
    "memory|malloc-stats",
    "memory|purge",
    "memory|stats",
    "memory|usage",
    "object|encoding",
    "object|freq",
    "object|help",
    "object|idletime",
    "object|refcount",
    "pubsub|channels",
    "pubsub|help",
    "pubsub|numpat",
    "pubsub|numsub",
    "pubsub|shardchannels",
    "pubsub|shardnumsub",
    "script|debug",
    "script|exists",
    "script|flush",
    "script|help",
    "script|kill",
    "script|load",
    "slowlog|get",
    "slowlog|help",
    "slowlog|len",
    "slowlog|reset",
    "xgroup|create",
    "xgroup|createconsumer",
    "xgroup|delconsumer",
    "xgroup|destroy",
    "xgroup|help",
    "xgroup|setid",
    "xinfo|consumers",
    "xinfo|groups",
    "xinfo|help",
    "xinfo|stream",
];

/// Redis 7.0's (7.2's for `client|setinfo`) arity of each of [`SUBCOMMANDS`] (as `COMMAND INFO` reports it: the
/// argument count with the container's name, negative for "at least").
const SUBCOMMAND_ARITY: &[i32] = &[
    3, 2, 2, 2, 2, 2, -3, -2, 3, -3, 3, 3, 4, -3, 2, -3, 2, 2, -2, -4, -4, 2, -2, -2, -3, 2, 2, 2,
    -4, 3, 2, -2, 2, 2, -2, -3, -3, 2, 2, 3, 2, -2, 3, 2, -2, 2, 2, 2, 2, 2, -3, 3, 3, 2, 3, 3, -2,
    2, 2, -2, -2, -2, 3, -3, -2, 2, 2, 3, -2, 2, 2, 2, -5, 5, 5, 4, 2, -5, 4, 3, 2, -3,
];

/// The containers of [`SUBCOMMANDS`] (what [`is_container`] matches; checked by a test).
#[cfg(test)]
const CONTAINERS: &[&str] = &[
    "client", "command", "config", "function", "latency", "memory", "object", "pubsub", "script",
    "slowlog", "xgroup", "xinfo",
];

/// The name a request runs under, as Redis 7 reports it: `client|list` for a known
/// subcommand of a container (`NULL` for an unknown one), else the command's own name.
#[inline]
pub fn full_name(spec: &'static Spec, args: &[impl AsRef<[u8]>]) -> &'static str {
    // Every container takes a variable number of arguments; most commands are out here.
    if spec.arity >= 0 || !is_container(spec.name) {
        return spec.name;
    }
    let Some(sub) = args.get(1).map(|a| a.as_ref()) else {
        return spec.name;
    };
    SUBCOMMANDS
        .iter()
        .find(|full| {
            full.split_once('|')
                .is_some_and(|(c, s)| c == spec.name && s.as_bytes().eq_ignore_ascii_case(sub))
        })
        .copied()
        .unwrap_or("NULL")
}

/// Whether `name` is one of [`CONTAINERS`] (a `match`: this runs for every request).
#[inline]
fn is_container(name: &str) -> bool {
    matches!(
        name,
        "client"
            | "command"
            | "config"
            | "function"
            | "latency"
            | "memory"
            | "object"
            | "pubsub"
            | "script"
            | "slowlog"
            | "xgroup"
            | "xinfo"
    )
}

/// Redis's first refusal of a request to a known command, before NOAUTH and every other
/// check (Redis 7.0's `processCommand`): an unknown subcommand of a container (`unknown:
/// true`, for no command's statistics, as Redis has no command to count it under), then the
/// command's or the subcommand's arity (`config|get`). `full` is [`full_name`]'s answer
/// for the request (the caller has it already: this runs for every request).
#[inline]
pub fn early_refusal(
    spec: &'static Spec,
    full: &'static str,
    args: &[impl AsRef<[u8]>],
) -> Option<Refusal> {
    if !spec.arity_ok(args.len()) {
        return Some(Refusal {
            message: spec.arity_error(),
            unknown: false,
        });
    }
    if full.len() == spec.name.len() {
        return None; // not a container's subcommand (those are longer, with a `|`)
    }
    container_refusal(spec, full, args)
}

#[cold]
fn container_refusal(
    spec: &'static Spec,
    full: &'static str,
    args: &[impl AsRef<[u8]>],
) -> Option<Refusal> {
    if full == "NULL" {
        let sub = args.get(1).map_or(&[][..], |a| a.as_ref());
        return Some(Refusal {
            message: unknown_subcommand_error(sub, spec.name),
            unknown: true,
        });
    }
    wrong_subcommand_arity(full, args).map(|message| Refusal {
        message,
        unknown: false,
    })
}

/// What [`early_refusal`] answers.
pub struct Refusal {
    /// The error text.
    pub message: String,
    /// The subcommand does not exist (no statistics are kept for it).
    pub unknown: bool,
}

/// Redis's arity error for a known subcommand called with the wrong number of arguments
/// (`config|get`).
fn wrong_subcommand_arity(full: &str, args: &[impl AsRef<[u8]>]) -> Option<String> {
    let i = SUBCOMMANDS.iter().position(|n| *n == full)?;
    let arity = *SUBCOMMAND_ARITY.get(i)?;
    let n = args.len() as i64;
    let ok = if arity >= 0 {
        n == i64::from(arity)
    } else {
        n >= -i64::from(arity)
    };
    (!ok).then(|| format!("ERR wrong number of arguments for '{full}' command"))
}

/// Redis's arity error for a command.
pub(crate) fn arity_error(name: &str) -> server_ops::OpResult {
    server_ops::OpResult::Error(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

/// Redis's arity error for a container's subcommand (`object|encoding`).
pub(crate) fn subcommand_arity_error(command: &str, sub: &str) -> server_ops::OpResult {
    arity_error(&format!("{command}|{sub}"))
}

/// A HELP reply: one simple string per line.
pub(crate) fn help_reply(lines: &[&str]) -> server_ops::OpResult {
    server_ops::OpResult::Reply(coreshard_protocol::Value::Array(
        lines
            .iter()
            .map(|l| coreshard_protocol::Value::Simple((*l).into()))
            .collect(),
    ))
}

/// The reply of a `Db::edit_*` call: WRONGTYPE, or the closure's reply (`absent` when
/// the key does not exist and was not created).
pub(crate) fn edited(
    r: Result<Option<server_ops::OpResult>, crate::db::WrongType>,
    absent: server_ops::OpResult,
) -> server_ops::OpResult {
    match r {
        Ok(Some(reply)) => reply,
        Ok(None) => absent,
        Err(w) => w.into(),
    }
}

/// At most `max` bytes, lossily as text, with line breaks made spaces (errors are one line).
pub fn sanitize(b: &[u8], max: usize) -> String {
    let b = &b[..b.len().min(max)];
    String::from_utf8_lossy(b).replace(['\r', '\n'], " ")
}

/// Most elements a random-pick reply with repetitions (SRANDMEMBER / HRANDFIELD with a
/// negative count) may hold: the reply is built in memory, so a client cannot make one
/// shard allocate without bound (Redis would build it too, and run out of memory).
pub(crate) const MAX_RANDOM_REPLY: u64 = 1 << 24;

/// The error for a negative count past [`MAX_RANDOM_REPLY`].
pub(crate) fn random_reply_too_long() -> server_ops::OpResult {
    server_ops::OpResult::Error(format!(
        "ERR count is out of range: at most {MAX_RANDOM_REPLY} random elements per reply"
    ))
}

use crate::server::ops as server_ops;

/// Parse an integer argument exactly as Redis does (`string2ll`).
pub fn parse_int(b: &[u8]) -> Option<i64> {
    coreshard_protocol::parse_i64_strict(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_ignores_case_and_rejects_long_names() {
        assert_eq!(lookup(b"GeT").map(|s| s.name), Some("get"));
        assert!(lookup(b"nope").is_none());
        assert!(lookup(&[b'a'; 100]).is_none());
    }

    #[test]
    fn unknown_command_text_matches_redis() {
        let args: Vec<Cow<[u8]>> = vec![
            Cow::Borrowed(b"foo"),
            Cow::Borrowed(b"a"),
            Cow::Borrowed(b"b c"),
        ];
        assert_eq!(
            unknown_command_error(&args),
            "ERR unknown command 'foo', with args beginning with: 'a' 'b c' "
        );
    }

    #[test]
    fn containers_are_exactly_the_subcommands_prefixes() {
        let mut from_subs: Vec<&str> = SUBCOMMANDS
            .iter()
            .filter_map(|full| full.split_once('|').map(|(c, _)| c))
            .collect();
        from_subs.dedup();
        assert_eq!(from_subs, CONTAINERS);
        assert_eq!(SUBCOMMAND_ARITY.len(), SUBCOMMANDS.len());
        for c in CONTAINERS {
            let spec = lookup(c.as_bytes()).expect("a container is a command");
            assert!(spec.arity < 0, "{c}: full_name skips fixed-arity commands");
        }
        for spec in all_commands() {
            assert_eq!(
                is_container(spec.name),
                CONTAINERS.contains(&spec.name),
                "{}",
                spec.name
            );
        }
    }

    #[test]
    fn get_fast_path_index_is_right() {
        assert_eq!(COMMANDS[GET].name, "get");
    }

    #[test]
    fn key_positions_follow_first_last_step() {
        let mset = lookup(b"mset").unwrap();
        assert_eq!(
            mset.key_positions(&["mset", "a", "1", "b", "2"])
                .collect::<Vec<_>>(),
            vec![1, 3]
        );
        let lcs = lookup(b"lcs").unwrap();
        assert_eq!(
            lcs.key_positions(&["lcs", "a", "b", "LEN"])
                .collect::<Vec<_>>(),
            vec![1, 2]
        );
        let ping = lookup(b"ping").unwrap();
        assert_eq!(ping.key_positions(&["ping", "x"]).count(), 0);
        let blmpop = lookup(b"blmpop").unwrap();
        let args = ["blmpop", "0", "2", "a", "b", "LEFT"];
        assert_eq!(blmpop.key_positions(&args).collect::<Vec<_>>(), vec![3, 4]);
        let bad = ["blmpop", "0", "9", "a"];
        assert_eq!(
            blmpop.key_positions(&bad).collect::<Vec<_>>(),
            vec![3],
            "clamped to the request"
        );
    }

    #[test]
    fn key_positions_of_a_fixed_key_plus_counted_keys() {
        // ZUNIONSTORE-like: destination at 1, `numkeys` at 2, then its keys.
        let store =
            Spec::keyed("t", -4, W, K1, ("t", "7.0.0", "t"), |_, _, _| OpResult::Ok).numkeys(2);
        let keys = |args: &[&str]| store.key_positions(args).collect::<Vec<_>>();
        assert_eq!(
            keys(&["t", "d", "2", "a", "b", "WEIGHTS", "1", "2"]),
            [1, 3, 4]
        );
        assert_eq!(
            keys(&["t", "d", "3", "a"]),
            [1, 3],
            "clamped to the request"
        );
        assert_eq!(keys(&["t", "d", "0", "a"]), [1]);
        assert_eq!(keys(&["t", "d", "x", "a"]), [1]);
        assert_eq!(keys(&["t", "d"]), [1]);
        assert!(store.observes_data());
        // Counted keys only (ZUNION-like, LMPOP...).
        let read = Spec::keyed("t", -3, R, NONE, ("t", "7.0.0", "t"), |_, _, _| {
            OpResult::Ok
        })
        .numkeys(1);
        assert_eq!(
            read.key_positions(&["t", "2", "a", "b", "MIN"])
                .collect::<Vec<_>>(),
            [2, 3]
        );
        assert_eq!(read.key_positions(&["t", "-1", "a"]).count(), 0);
        assert!(read.observes_data());
    }

    #[test]
    fn arities_match_redis() {
        let a = |n: &str| lookup(n.as_bytes()).map(|s| s.arity);
        assert_eq!(a("get"), Some(2));
        assert_eq!(a("set"), Some(-3));
        assert_eq!(a("mset"), Some(-3));
        assert_eq!(a("dbsize"), Some(1));
    }
}
