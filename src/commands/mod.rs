//! The command table: name, arity, flags and key positions as Redis reports them through
//! COMMAND, a summary for COMMAND DOCS, and the function that runs it.

pub mod admin;
pub mod connection;
pub mod keys;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::LazyLock;

use coreshard_engine::{ConnId, Ctx};

use crate::server::Server;

/// A request's arguments, borrowed from the receive buffer where possible.
pub type Args<'a, 'b> = &'a [Cow<'b, [u8]>];

/// Runs a command (arity and authentication are already checked).
pub type Exec = fn(&mut Server, &mut Ctx<Server>, ConnId, Args<'_, '_>);

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
    /// The implementation.
    pub exec: Exec,
}

macro_rules! spec {
    ($name:literal, $arity:expr, [$($flag:literal),*], $first:expr, $last:expr, $step:expr, $group:literal, $since:literal, $summary:literal, $exec:path) => {
        spec!(@ $name, $arity, [$($flag),*], $first, $last, $step, $group, $since, $summary, $exec, false)
    };
    (noauth $name:literal, $arity:expr, [$($flag:literal),*], $first:expr, $last:expr, $step:expr, $group:literal, $since:literal, $summary:literal, $exec:path) => {
        spec!(@ $name, $arity, [$($flag),*], $first, $last, $step, $group, $since, $summary, $exec, true)
    };
    (@ $name:literal, $arity:expr, [$($flag:literal),*], $first:expr, $last:expr, $step:expr, $group:literal, $since:literal, $summary:literal, $exec:path, $noauth:expr) => {
        Spec { name: $name, arity: $arity, flags: &[$($flag),*], first_key: $first, last_key: $last, step: $step,
               group: $group, since: $since, summary: $summary, no_auth: $noauth, exec: $exec }
    };
}

/// Every command the server knows, in COMMAND order.
pub static COMMANDS: &[Spec] = &[
    spec!(noauth "ping", -1, ["fast", "stale"], 0, 0, 0, "connection", "1.0.0", "Returns the server's liveliness response.", connection::ping),
    spec!(
        "echo",
        2,
        ["fast", "stale"],
        0,
        0,
        0,
        "connection",
        "1.0.0",
        "Returns the given string.",
        connection::echo
    ),
    spec!(noauth "quit", -1, ["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"], 0, 0, 0, "connection", "1.0.0", "Closes the connection.", connection::quit),
    spec!(noauth "hello", -1, ["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"], 0, 0, 0, "connection", "6.0.0", "Handshakes with the server.", connection::hello),
    spec!(
        "select",
        2,
        ["loading", "stale", "fast"],
        0,
        0,
        0,
        "connection",
        "1.0.0",
        "Changes the selected database.",
        connection::select
    ),
    spec!(noauth "auth", -2, ["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"], 0, 0, 0, "connection", "1.0.0", "Authenticates the connection.", connection::auth),
    spec!(
        "client",
        -2,
        ["loading", "stale"],
        0,
        0,
        0,
        "connection",
        "2.4.0",
        "A container for client connection commands.",
        admin::client
    ),
    spec!(
        "command",
        -1,
        ["loading", "stale"],
        0,
        0,
        0,
        "server",
        "2.8.13",
        "Returns detailed information about all commands.",
        admin::command
    ),
    spec!(
        "config",
        -2,
        ["admin", "noscript", "loading", "stale"],
        0,
        0,
        0,
        "server",
        "2.0.0",
        "A container for server configuration commands.",
        admin::config
    ),
    spec!(
        "info",
        -1,
        ["loading", "stale"],
        0,
        0,
        0,
        "server",
        "1.0.0",
        "Returns information and statistics about the server.",
        admin::info
    ),
    spec!(
        "dbsize",
        1,
        ["readonly", "fast"],
        0,
        0,
        0,
        "server",
        "1.0.0",
        "Returns the number of keys in the database.",
        admin::dbsize
    ),
    spec!(
        "flushall",
        -1,
        ["write"],
        0,
        0,
        0,
        "server",
        "1.0.0",
        "Removes all keys from all databases.",
        admin::flush
    ),
    spec!(
        "flushdb",
        -1,
        ["write"],
        0,
        0,
        0,
        "server",
        "1.0.0",
        "Remove all keys from the current database.",
        admin::flush
    ),
    spec!(
        "get",
        2,
        ["readonly", "fast"],
        1,
        1,
        1,
        "string",
        "1.0.0",
        "Returns the string value of a key.",
        keys::get
    ),
    spec!(
        "set",
        -3,
        ["write", "denyoom"],
        1,
        1,
        1,
        "string",
        "1.0.0",
        "Sets the string value of a key.",
        keys::set
    ),
    spec!(
        "del",
        -2,
        ["write"],
        1,
        -1,
        1,
        "generic",
        "1.0.0",
        "Deletes one or more keys.",
        keys::del
    ),
    spec!(
        "exists",
        -2,
        ["readonly", "fast"],
        1,
        -1,
        1,
        "generic",
        "1.0.0",
        "Determines whether one or more keys exist.",
        keys::exists
    ),
    spec!(
        "mget",
        -2,
        ["readonly", "fast"],
        1,
        -1,
        1,
        "string",
        "1.0.0",
        "Atomically returns the string values of one or more keys.",
        keys::mget
    ),
    spec!(
        "mset",
        -3,
        ["write", "denyoom"],
        1,
        -1,
        2,
        "string",
        "1.0.1",
        "Atomically creates or modifies the string values of one or more keys.",
        keys::mset
    ),
];

static BY_NAME: LazyLock<HashMap<&'static str, &'static Spec>> =
    LazyLock::new(|| COMMANDS.iter().map(|s| (s.name, s)).collect());

/// Find a command by name, ignoring case.
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    let mut buf = [0u8; 32];
    let lower = buf.get_mut(..name.len())?;
    for (d, s) in lower.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    std::str::from_utf8(lower)
        .ok()
        .and_then(|n| BY_NAME.get(n).copied())
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

/// At most `max` bytes, lossily as text, with line breaks made spaces (errors are one line).
pub fn sanitize(b: &[u8], max: usize) -> String {
    let b = &b[..b.len().min(max)];
    String::from_utf8_lossy(b).replace(['\r', '\n'], " ")
}

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
    fn arities_match_redis() {
        let a = |n: &str| lookup(n.as_bytes()).map(|s| s.arity);
        assert_eq!(a("get"), Some(2));
        assert_eq!(a("set"), Some(-3));
        assert_eq!(a("mset"), Some(-3));
        assert_eq!(a("dbsize"), Some(1));
    }
}
