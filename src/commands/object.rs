//! OBJECT and MEMORY: what the server knows about one key's value, its access record and
//! its memory, with Redis 7's replies and error texts. Both run on the shard that owns
//! the key and inspect it without counting as an access (Redis's `LOOKUP_NOTOUCH`).

use coreshard_engine::ttl::{access, Peek, Stored};

use super::parse_int;
use super::strings::{err, SYNTAX};
use crate::db::Db;
use crate::server::ops::OpResult;
use crate::server::ArgList;
use crate::types::Obj;

/// Longest string Redis stores as `embstr` (`OBJ_ENCODING_EMBSTR_SIZE_LIMIT`).
const EMBSTR_MAX: usize = 44;
/// Integers Redis shares between keys (`OBJ_SHARED_INTEGERS`): OBJECT REFCOUNT reports
/// them as referenced `INT_MAX` times.
const SHARED_INTEGERS: i64 = 10_000;

const OBJECT_HELP: &[&str] = &[
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
];

const MEMORY_HELP: &[&str] = &[
    "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DOCTOR",
    "    Return memory problems reports.",
    "MALLOC-STATS",
    "    Return internal statistics report from the memory allocator.",
    "PURGE",
    "    Attempt to purge dirty pages for reclamation by the allocator.",
    "STATS",
    "    Return information about the memory usage of the server.",
    "USAGE <key> [SAMPLES <count>]",
    "    Return memory in bytes used by <key> and its value. Nested values are",
    "    sampled up to <count> times (default: 5, 0 means sample all).",
    "HELP",
    "    Prints this help.",
];

/// How Redis would say a string value is stored: `int` for an integer of at most 20
/// characters, `embstr` up to 44 bytes, else `raw`; a value edited in place (APPEND,
/// SETRANGE) is `raw` whatever its size, as Redis unshares it.
pub fn encoding(p: &Peek<'_, Obj>) -> &'static str {
    let v = match p.value {
        Stored::Bytes(v) => v.as_slice(),
        Stored::Object(o) => return o.encoding(),
    };
    if p.edited {
        "raw"
    } else if v.len() <= 20 && parse_int(v).is_some() {
        "int"
    } else if v.len() <= EMBSTR_MAX {
        "embstr"
    } else {
        "raw"
    }
}

/// OBJECT ENCODING | FREQ | IDLETIME | REFCOUNT | HELP.
pub fn object(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let sub = String::from_utf8_lossy(a.arg(1)).to_ascii_lowercase();
    let known = ["encoding", "freq", "idletime", "refcount", "help"];
    if !known.contains(&sub.as_str()) {
        return OpResult::Error(super::unknown_subcommand_error(a.arg(1), "object"));
    }
    let want = if sub == "help" { 2 } else { 3 };
    if a.len() != want {
        return super::subcommand_arity_error("object", &sub);
    }
    if sub == "help" {
        return super::help_reply(OBJECT_HELP);
    }
    let config = db.evict.config();
    let policy = config.policy();
    let decay = config.lfu_decay_time();
    let shared_ok = config.maxmemory() == 0 || !policy.tracks_access();
    let Some(p) = db.keyspace().peek(a.arg(2), now) else {
        return OpResult::Value(None);
    };
    match sub.as_str() {
        "encoding" => OpResult::Value(Some(bytes::Bytes::from_static(encoding(&p).as_bytes()))),
        "freq" if !policy.is_lfu() => err(
            "ERR An LFU maxmemory policy is not selected, access frequency not tracked. \
             Please note that when switching between policies at runtime LRU and LFU data \
             will take some time to adjust.",
        ),
        "freq" => OpResult::Int(i64::from(access::lfu_counter(p.stamp, now, decay))),
        "idletime" if policy.is_lfu() => err(
            "ERR An LFU maxmemory policy is selected, idle time not tracked. Please note \
             that when switching between policies at runtime LRU and LFU data will take \
             some time to adjust.",
        ),
        "idletime" => OpResult::Int((access::idle_ms(p.stamp, now) / 1000) as i64),
        _ => {
            let small_int = encoding(&p) == "int"
                && p.value
                    .bytes()
                    .and_then(|v| parse_int(v.as_slice()))
                    .is_some_and(|n| (0..SHARED_INTEGERS).contains(&n));
            OpResult::Int(if small_int && shared_ok {
                i64::from(i32::MAX)
            } else {
                1
            })
        }
    }
}

/// MEMORY USAGE | PURGE | MALLOC-STATS | HELP (DOCTOR and STATS are not offered).
pub fn memory(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let sub = String::from_utf8_lossy(a.arg(1)).to_ascii_lowercase();
    match sub.as_str() {
        "usage" if a.len() >= 3 => {
            let mut i = 3;
            while i < a.len() {
                if !(a.is(i, "SAMPLES") && i + 1 < a.len()) {
                    return err(SYNTAX);
                }
                match parse_int(a.arg(i + 1)) {
                    None => return err(super::strings::NOT_INT),
                    Some(n) if n < 0 => return err(SYNTAX),
                    Some(_) => {}
                }
                i += 2;
            }
            // Strings have no nested values: SAMPLES changes nothing.
            match db.keyspace().peek(a.arg(2), now) {
                Some(p) => OpResult::Int(p.bytes as i64),
                None => OpResult::Value(None),
            }
        }
        "usage" => super::subcommand_arity_error("memory", "usage"),
        "help" | "purge" | "malloc-stats" if a.len() != 2 => {
            super::subcommand_arity_error("memory", &sub)
        }
        "help" => super::help_reply(MEMORY_HELP),
        "purge" => OpResult::Ok,
        "malloc-stats" => OpResult::Value(Some(bytes::Bytes::from_static(
            b"Stats not supported for the current allocator",
        ))),
        _ => OpResult::Error(super::unknown_subcommand_error(a.arg(1), "memory")),
    }
}
