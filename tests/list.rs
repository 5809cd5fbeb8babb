//! The list family through the `redis` crate and raw RESP, keys spread over 4 shards:
//! replies, error texts, WRONGTYPE, cross-shard forms, MULTI/EXEC, keyspace events,
//! persistence across restarts with other shard counts, and the blocking commands
//! (which live in `blocking.rs`) served by this family's pushes.

mod common;

use std::time::{Duration, Instant};

use common::{err_of, keys_on, q, shard_of, DataDir, Raw, Server};
use redis::Value;

const NOT_INT: &str = "ERR value is not an integer or out of range";
const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
const SYNTAX: &str = "ERR syntax error";

fn start() -> Server {
    Server::start(&["--shards", "4"])
}

fn all(c: &mut redis::Connection, key: &str) -> Vec<String> {
    q(c, &["LRANGE", key, "0", "-1"]).unwrap()
}

fn raw_reply(raw: &mut Raw, words: &[&str]) -> String {
    let args: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
    raw.cmd(&args);
    raw.reply_str()
}

#[test]
fn pushes_and_lengths() {
    let server = start();
    let c = &mut server.client();
    assert_eq!(q::<i64>(c, &["LPUSH", "l", "a", "b", "c"]).unwrap(), 3);
    assert_eq!(q::<i64>(c, &["RPUSH", "l", "d", "e"]).unwrap(), 5);
    assert_eq!(all(c, "l"), ["c", "b", "a", "d", "e"]);
    assert_eq!(q::<i64>(c, &["LPUSHX", "l", "x", "y"]).unwrap(), 7);
    assert_eq!(q::<i64>(c, &["RPUSHX", "l", "z"]).unwrap(), 8);
    assert_eq!(all(c, "l"), ["y", "x", "c", "b", "a", "d", "e", "z"]);
    assert_eq!(q::<i64>(c, &["LPUSHX", "none", "x"]).unwrap(), 0);
    assert_eq!(q::<i64>(c, &["RPUSHX", "none", "x"]).unwrap(), 0);
    assert_eq!(q::<i64>(c, &["EXISTS", "none"]).unwrap(), 0);
    assert_eq!(q::<i64>(c, &["LLEN", "l"]).unwrap(), 8);
    assert_eq!(q::<i64>(c, &["LLEN", "none"]).unwrap(), 0);
    assert_eq!(q::<String>(c, &["TYPE", "l"]).unwrap(), "list");
    assert_eq!(
        err_of(c, &["LPUSH", "l"]),
        "ERR wrong number of arguments for 'lpush' command"
    );
    // Empty and binary elements.
    assert_eq!(q::<i64>(c, &["RPUSH", "e", ""]).unwrap(), 1);
    assert_eq!(all(c, "e"), [""]);
    let bin: Vec<u8> = (0..=255u8).collect();
    redis::cmd("RPUSH")
        .arg("bin")
        .arg(&bin)
        .query::<i64>(c)
        .unwrap();
    let got: Vec<Vec<u8>> = redis::cmd("LRANGE")
        .arg("bin")
        .arg(0)
        .arg(-1)
        .query(c)
        .unwrap();
    assert_eq!(got, vec![bin]);
}

#[test]
fn pops_with_and_without_count() {
    let server = start();
    let c = &mut server.client();
    q::<i64>(c, &["RPUSH", "l", "1", "2", "3", "4", "5", "6", "7", "8"]).unwrap();
    assert_eq!(q::<String>(c, &["LPOP", "l"]).unwrap(), "1");
    assert_eq!(q::<String>(c, &["RPOP", "l"]).unwrap(), "8");
    assert_eq!(
        q::<Vec<String>>(c, &["LPOP", "l", "2"]).unwrap(),
        ["2", "3"]
    );
    assert_eq!(
        q::<Vec<String>>(c, &["RPOP", "l", "2"]).unwrap(),
        ["7", "6"],
        "RPOP with count answers from the tail"
    );
    assert_eq!(
        err_of(c, &["LPOP", "l", "-1"]),
        "ERR value is out of range, must be positive"
    );
    assert_eq!(
        err_of(c, &["LPOP", "l", "x"]),
        "ERR value is out of range, must be positive"
    );
    assert_eq!(
        err_of(c, &["RPOP", "l", "1", "2"]),
        "ERR wrong number of arguments for 'rpop' command"
    );
    assert_eq!(
        q::<Vec<String>>(c, &["LPOP", "l", "100"]).unwrap(),
        ["4", "5"]
    );
    assert_eq!(q::<i64>(c, &["EXISTS", "l"]).unwrap(), 0, "emptied → gone");

    // Nil shapes exactly as Redis 7.0 in RESP2: a missing key with a count is a null
    // array, without one a null bulk; count 0 on a list is an empty array.
    let mut raw = server.raw();
    assert_eq!(raw_reply(&mut raw, &["LPOP", "l"]), "$-1\r\n");
    assert_eq!(raw_reply(&mut raw, &["RPOP", "l"]), "$-1\r\n");
    assert_eq!(raw_reply(&mut raw, &["LPOP", "l", "1"]), "*-1\r\n");
    assert_eq!(raw_reply(&mut raw, &["RPOP", "l", "1"]), "*-1\r\n");
    assert_eq!(raw_reply(&mut raw, &["LPOP", "l", "0"]), "*-1\r\n");
    assert_eq!(raw_reply(&mut raw, &["RPUSH", "l", "x"]), ":1\r\n");
    assert_eq!(raw_reply(&mut raw, &["LPOP", "l", "0"]), "*0\r\n");
    assert_eq!(
        raw_reply(&mut raw, &["RPOP", "l", "1"]),
        "*1\r\n$1\r\nx\r\n"
    );
    assert_eq!(raw_reply(&mut raw, &["LMPOP", "1", "l", "LEFT"]), "*-1\r\n");
    assert_eq!(raw_reply(&mut raw, &["LINDEX", "l", "0"]), "$-1\r\n");
    assert_eq!(raw_reply(&mut raw, &["LPOS", "l", "x"]), "$-1\r\n");
    assert_eq!(
        raw_reply(&mut raw, &["LPOS", "l", "x", "COUNT", "0"]),
        "*0\r\n"
    );
    // RESP3: nulls are `_`.
    assert!(!raw_reply(&mut raw, &["HELLO", "3"]).is_empty());
    assert_eq!(raw_reply(&mut raw, &["LPOP", "l", "1"]), "_\r\n");
    assert_eq!(raw_reply(&mut raw, &["LPOP", "l"]), "_\r\n");
    assert_eq!(raw_reply(&mut raw, &["LMPOP", "1", "l", "LEFT"]), "_\r\n");
}

#[test]
fn ranges_indexes_and_edits() {
    let server = start();
    let c = &mut server.client();
    let ten: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    let mut args = vec!["RPUSH", "r"];
    args.extend(ten.iter().map(String::as_str));
    q::<i64>(c, &args).unwrap();
    let range = |c: &mut redis::Connection, s: &str, e: &str| -> Vec<String> {
        q(c, &["LRANGE", "r", s, e]).unwrap()
    };
    assert_eq!(range(c, "0", "-1"), ten);
    assert_eq!(range(c, "-3", "-1"), ["7", "8", "9"]);
    assert_eq!(range(c, "-100", "1"), ["0", "1"]);
    assert_eq!(range(c, "8", "100"), ["8", "9"]);
    assert!(range(c, "5", "4").is_empty());
    assert!(range(c, "10", "20").is_empty());
    assert_eq!(range(c, "-9223372036854775808", "9223372036854775807"), ten);
    assert_eq!(err_of(c, &["LRANGE", "r", "x", "1"]), NOT_INT);
    assert_eq!(err_of(c, &["LRANGE", "none", "1", "x"]), NOT_INT);
    assert!(q::<Vec<String>>(c, &["LRANGE", "none", "0", "-1"])
        .unwrap()
        .is_empty());

    let index = |c: &mut redis::Connection, i: &str| -> Option<String> {
        q(c, &["LINDEX", "r", i]).unwrap()
    };
    assert_eq!(index(c, "0").as_deref(), Some("0"));
    assert_eq!(index(c, "-1").as_deref(), Some("9"));
    assert_eq!(index(c, "-10").as_deref(), Some("0"));
    assert_eq!(index(c, "10"), None);
    assert_eq!(index(c, "-11"), None);
    assert_eq!(index(c, "-9223372036854775808"), None);
    assert_eq!(err_of(c, &["LINDEX", "r", "x"]), NOT_INT);
    assert_eq!(
        q::<Option<String>>(c, &["LINDEX", "none", "x"]).unwrap(),
        None,
        "a missing key answers nil before the index is parsed"
    );

    assert_eq!(q::<String>(c, &["LSET", "r", "0", "zero"]).unwrap(), "OK");
    assert_eq!(q::<String>(c, &["LSET", "r", "-1", "nine"]).unwrap(), "OK");
    assert_eq!(index(c, "0").as_deref(), Some("zero"));
    assert_eq!(index(c, "9").as_deref(), Some("nine"));
    assert_eq!(
        err_of(c, &["LSET", "r", "10", "x"]),
        "ERR index out of range"
    );
    assert_eq!(
        err_of(c, &["LSET", "r", "-11", "x"]),
        "ERR index out of range"
    );
    assert_eq!(err_of(c, &["LSET", "r", "x", "x"]), NOT_INT);
    assert_eq!(err_of(c, &["LSET", "none", "0", "x"]), "ERR no such key");
    assert_eq!(err_of(c, &["LSET", "none", "x", "x"]), "ERR no such key");

    // LINSERT
    q::<i64>(c, &["RPUSH", "i", "a", "b", "c", "b"]).unwrap();
    assert_eq!(
        q::<i64>(c, &["LINSERT", "i", "BEFORE", "b", "x"]).unwrap(),
        5
    );
    assert_eq!(
        q::<i64>(c, &["LINSERT", "i", "after", "b", "y"]).unwrap(),
        6
    );
    assert_eq!(
        q::<i64>(c, &["LINSERT", "i", "AFTER", "zz", "y"]).unwrap(),
        -1
    );
    assert_eq!(all(c, "i"), ["a", "x", "b", "y", "c", "b"]);
    assert_eq!(
        q::<i64>(c, &["LINSERT", "none", "AFTER", "a", "y"]).unwrap(),
        0
    );
    assert_eq!(err_of(c, &["LINSERT", "i", "MIDDLE", "a", "y"]), SYNTAX);
    assert_eq!(err_of(c, &["LINSERT", "none", "MIDDLE", "a", "y"]), SYNTAX);

    // LREM
    q::<i64>(c, &["RPUSH", "m", "a", "b", "a", "c", "a", "b", "a"]).unwrap();
    assert_eq!(q::<i64>(c, &["LREM", "m", "2", "a"]).unwrap(), 2);
    assert_eq!(all(c, "m"), ["b", "c", "a", "b", "a"]);
    assert_eq!(q::<i64>(c, &["LREM", "m", "-1", "a"]).unwrap(), 1);
    assert_eq!(all(c, "m"), ["b", "c", "a", "b"]);
    assert_eq!(q::<i64>(c, &["LREM", "m", "0", "b"]).unwrap(), 2);
    assert_eq!(q::<i64>(c, &["LREM", "m", "0", "zz"]).unwrap(), 0);
    assert_eq!(q::<i64>(c, &["LREM", "none", "0", "zz"]).unwrap(), 0);
    assert_eq!(err_of(c, &["LREM", "none", "x", "zz"]), NOT_INT);
    assert_eq!(q::<i64>(c, &["LREM", "m", "0", "c"]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["LREM", "m", "0", "a"]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["EXISTS", "m"]).unwrap(), 0);

    // LTRIM
    q::<i64>(c, &["RPUSH", "t", "0", "1", "2", "3", "4", "5"]).unwrap();
    assert_eq!(q::<String>(c, &["LTRIM", "t", "1", "-2"]).unwrap(), "OK");
    assert_eq!(all(c, "t"), ["1", "2", "3", "4"]);
    assert_eq!(q::<String>(c, &["LTRIM", "t", "-2", "100"]).unwrap(), "OK");
    assert_eq!(all(c, "t"), ["3", "4"]);
    assert_eq!(q::<String>(c, &["LTRIM", "t", "1", "0"]).unwrap(), "OK");
    assert_eq!(q::<i64>(c, &["EXISTS", "t"]).unwrap(), 0);
    assert_eq!(q::<String>(c, &["LTRIM", "none", "0", "1"]).unwrap(), "OK");
    assert_eq!(err_of(c, &["LTRIM", "none", "x", "1"]), NOT_INT);
}

#[test]
fn lpos_options_and_errors() {
    let server = start();
    let c = &mut server.client();
    q::<i64>(c, &["RPUSH", "p", "a", "b", "c", "1", "2", "3", "c", "c"]).unwrap();
    let pos = |c: &mut redis::Connection, extra: &[&str]| -> Option<i64> {
        let mut w = vec!["LPOS", "p", "c"];
        w.extend_from_slice(extra);
        q(c, &w).unwrap()
    };
    let many = |c: &mut redis::Connection, extra: &[&str]| -> Vec<i64> {
        let mut w = vec!["LPOS", "p", "c"];
        w.extend_from_slice(extra);
        q(c, &w).unwrap()
    };
    assert_eq!(pos(c, &[]), Some(2));
    assert_eq!(pos(c, &["RANK", "2"]), Some(6));
    assert_eq!(pos(c, &["RANK", "-1"]), Some(7));
    assert_eq!(pos(c, &["RANK", "-3"]), Some(2));
    assert_eq!(pos(c, &["RANK", "4"]), None);
    assert_eq!(many(c, &["COUNT", "0"]), [2, 6, 7]);
    assert_eq!(many(c, &["COUNT", "2"]), [2, 6]);
    assert_eq!(many(c, &["COUNT", "2", "RANK", "-1"]), [7, 6]);
    assert_eq!(many(c, &["COUNT", "0", "RANK", "2"]), [6, 7]);
    assert_eq!(pos(c, &["MAXLEN", "2"]), None);
    assert_eq!(pos(c, &["MAXLEN", "3"]), Some(2));
    assert_eq!(many(c, &["COUNT", "0", "MAXLEN", "1", "RANK", "-1"]), [7]);
    assert!(many(c, &["COUNT", "5", "MAXLEN", "1"]).is_empty());
    assert_eq!(
        err_of(c, &["LPOS", "p", "c", "RANK", "0"]),
        "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list"
    );
    assert_eq!(err_of(c, &["LPOS", "p", "c", "RANK", "x"]), NOT_INT);
    assert_eq!(
        err_of(c, &["LPOS", "p", "c", "COUNT", "-1"]),
        "ERR COUNT can't be negative"
    );
    assert_eq!(
        err_of(c, &["LPOS", "p", "c", "MAXLEN", "x"]),
        "ERR MAXLEN can't be negative"
    );
    assert_eq!(err_of(c, &["LPOS", "p", "c", "RANK"]), SYNTAX);
    assert_eq!(err_of(c, &["LPOS", "p", "c", "FOO", "1"]), SYNTAX);
    assert_eq!(err_of(c, &["LPOS", "none", "c", "RANK", "0"]), {
        "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list"
    });
    assert_eq!(q::<Option<i64>>(c, &["LPOS", "none", "c"]).unwrap(), None);
    assert!(q::<Vec<i64>>(c, &["LPOS", "none", "c", "COUNT", "1"])
        .unwrap()
        .is_empty());
}

/// A big list: ranges near the tail, trims and LPOS MAXLEN work across many chunks.
#[test]
fn big_lists_across_chunks() {
    let server = start();
    let c = &mut server.client();
    const N: usize = 100_000;
    for batch in 0..(N / 10_000) {
        let mut cmd = redis::cmd("RPUSH");
        cmd.arg("big");
        for i in batch * 10_000..(batch + 1) * 10_000 {
            cmd.arg(format!("e{i}"));
        }
        cmd.query::<i64>(c).unwrap();
    }
    assert_eq!(q::<i64>(c, &["LLEN", "big"]).unwrap(), N as i64);
    let tail: Vec<String> = q(c, &["LRANGE", "big", "99997", "100005"]).unwrap();
    assert_eq!(tail, ["e99997", "e99998", "e99999"]);
    let mid: Vec<String> = q(c, &["LRANGE", "big", "-50001", "-49999"]).unwrap();
    assert_eq!(mid, ["e49999", "e50000", "e50001"]);
    assert_eq!(
        q::<String>(c, &["LINDEX", "big", "77777"]).unwrap(),
        "e77777"
    );
    assert_eq!(
        q::<Option<i64>>(c, &["LPOS", "big", "e99999", "MAXLEN", "10"]).unwrap(),
        None
    );
    assert_eq!(
        q::<Option<i64>>(c, &["LPOS", "big", "e99999", "RANK", "-1", "MAXLEN", "10"]).unwrap(),
        Some(99_999)
    );
    q::<String>(c, &["LSET", "big", "50000", &"x".repeat(20_000)]).unwrap();
    assert_eq!(
        q::<i64>(c, &["LINSERT", "big", "AFTER", "e60000", "ins"]).unwrap(),
        N as i64 + 1
    );
    assert_eq!(q::<String>(c, &["LINDEX", "big", "60001"]).unwrap(), "ins");
    q::<String>(c, &["LTRIM", "big", "49999", "60001"]).unwrap();
    assert_eq!(q::<i64>(c, &["LLEN", "big"]).unwrap(), 10_003);
    assert_eq!(q::<String>(c, &["LINDEX", "big", "0"]).unwrap(), "e49999");
    assert_eq!(
        q::<String>(c, &["LINDEX", "big", "1"]).unwrap().len(),
        20_000
    );
    assert_eq!(q::<String>(c, &["LINDEX", "big", "-1"]).unwrap(), "ins");
    assert_eq!(
        q::<String>(c, &["OBJECT", "ENCODING", "big"]).unwrap(),
        "quicklist"
    );
    let popped: Vec<String> = q(c, &["LPOP", "big", "10003"]).unwrap();
    assert_eq!(popped.len(), 10_003);
    assert_eq!(q::<i64>(c, &["EXISTS", "big"]).unwrap(), 0);
}

#[test]
fn wrong_types_both_ways() {
    let server = start();
    let c = &mut server.client();
    q::<()>(c, &["SET", "s", "v"]).unwrap();
    q::<i64>(c, &["RPUSH", "l", "a"]).unwrap();
    for cmd in [
        vec!["LPUSH", "s", "a"],
        vec!["RPUSH", "s", "a"],
        vec!["LPUSHX", "s", "a"],
        vec!["RPUSHX", "s", "a"],
        vec!["LPOP", "s"],
        vec!["RPOP", "s", "1"],
        vec!["LLEN", "s"],
        vec!["LRANGE", "s", "0", "-1"],
        vec!["LINDEX", "s", "0"],
        vec!["LINDEX", "s", "x"],
        vec!["LSET", "s", "0", "x"],
        vec!["LSET", "s", "x", "x"],
        vec!["LINSERT", "s", "BEFORE", "a", "b"],
        vec!["LREM", "s", "0", "a"],
        vec!["LTRIM", "s", "0", "1"],
        vec!["LPOS", "s", "a"],
        vec!["LMOVE", "s", "l", "LEFT", "LEFT"],
        vec!["LMOVE", "l", "s", "LEFT", "LEFT"],
        vec!["RPOPLPUSH", "s", "l"],
        vec!["RPOPLPUSH", "l", "s"],
        vec!["LMPOP", "2", "none", "s", "LEFT"],
        vec!["GET", "l"],
        vec!["APPEND", "l", "x"],
        vec!["INCR", "l"],
        vec!["STRLEN", "l"],
        vec!["SETRANGE", "l", "0", "x"],
        vec!["GETRANGE", "l", "0", "1"],
    ] {
        assert_eq!(err_of(c, &cmd), WRONGTYPE, "{cmd:?}");
    }
    assert_eq!(all(c, "l"), ["a"], "nothing moved");
    assert_eq!(q::<String>(c, &["GET", "s"]).unwrap(), "v");
    // LMOVE from a missing source answers nil even towards a string; LMPOP stops at the
    // first non-empty list before reaching the string.
    assert_eq!(
        q::<Option<String>>(c, &["LMOVE", "none", "s", "LEFT", "LEFT"]).unwrap(),
        None
    );
    let v: Value = q(c, &["LMPOP", "2", "l", "s", "LEFT"]).unwrap();
    assert_eq!(
        v,
        Value::Array(vec![
            Value::BulkString(b"l".to_vec()),
            Value::Array(vec![Value::BulkString(b"a".to_vec())])
        ])
    );
    // SET over a list replaces it.
    q::<i64>(c, &["RPUSH", "l2", "a"]).unwrap();
    q::<()>(c, &["SET", "l2", "v"]).unwrap();
    assert_eq!(q::<String>(c, &["TYPE", "l2"]).unwrap(), "string");
}

#[test]
fn encoding_type_and_keyspace_commands() {
    let server = start();
    let c = &mut server.client();
    q::<i64>(c, &["RPUSH", "l", "a"]).unwrap();
    assert_eq!(
        q::<String>(c, &["OBJECT", "ENCODING", "l"]).unwrap(),
        "quicklist"
    );
    let big = "x".repeat(10_000);
    for _ in 0..200 {
        q::<i64>(c, &["RPUSH", "l", &big]).unwrap();
    }
    assert_eq!(
        q::<String>(c, &["OBJECT", "ENCODING", "l"]).unwrap(),
        "quicklist"
    );
    assert_eq!(q::<String>(c, &["TYPE", "l"]).unwrap(), "list");

    // EXPIRE / TTL / PERSIST keep the list; it expires as a whole.
    assert_eq!(q::<i64>(c, &["EXPIRE", "l", "100"]).unwrap(), 1);
    assert!(q::<i64>(c, &["TTL", "l"]).unwrap() > 90);
    q::<i64>(c, &["RPUSH", "l", "more"]).unwrap();
    assert!(
        q::<i64>(c, &["TTL", "l"]).unwrap() > 90,
        "a push keeps the TTL"
    );
    q::<i64>(c, &["RPUSH", "short", "a", "b"]).unwrap();
    q::<i64>(c, &["PEXPIRE", "short", "50"]).unwrap();
    std::thread::sleep(Duration::from_millis(120));
    assert_eq!(q::<i64>(c, &["LLEN", "short"]).unwrap(), 0);
    assert_eq!(q::<i64>(c, &["LPUSHX", "short", "x"]).unwrap(), 0);

    // RENAME and COPY of lists, to keys on other shards.
    let src = keys_on("ren", 0, 4, 1).remove(0);
    let dst = keys_on("ren", 3, 4, 1).remove(0);
    let cpy = keys_on("cpy", 2, 4, 1).remove(0);
    q::<i64>(c, &["RPUSH", &src, "1", "2", "3"]).unwrap();
    q::<()>(c, &["RENAME", &src, &dst]).unwrap();
    assert_eq!(q::<i64>(c, &["EXISTS", &src]).unwrap(), 0);
    assert_eq!(all(c, &dst), ["1", "2", "3"]);
    assert_eq!(q::<i64>(c, &["COPY", &dst, &cpy]).unwrap(), 1);
    q::<i64>(c, &["RPUSH", &cpy, "4"]).unwrap();
    assert_eq!(all(c, &dst), ["1", "2", "3"], "the copy is independent");
    assert_eq!(all(c, &cpy), ["1", "2", "3", "4"]);
    assert_eq!(q::<i64>(c, &["DEL", &dst, &cpy, "l"]).unwrap(), 3);
    assert_eq!(q::<i64>(c, &["EXISTS", &dst, &cpy, "l"]).unwrap(), 0);
}

#[test]
fn lmove_and_rpoplpush_on_one_and_across_shards() {
    let server = start();
    let c = &mut server.client();
    // Same shard.
    q::<i64>(c, &["RPUSH", "{t}s", "1", "2", "3"]).unwrap();
    assert_eq!(
        q::<String>(c, &["LMOVE", "{t}s", "{t}d", "LEFT", "RIGHT"]).unwrap(),
        "1"
    );
    assert_eq!(
        q::<String>(c, &["LMOVE", "{t}s", "{t}d", "right", "left"]).unwrap(),
        "3"
    );
    assert_eq!(q::<String>(c, &["RPOPLPUSH", "{t}s", "{t}d"]).unwrap(), "2");
    assert_eq!(q::<i64>(c, &["EXISTS", "{t}s"]).unwrap(), 0);
    assert_eq!(all(c, "{t}d"), ["2", "3", "1"]);
    // Onto itself: rotation, and a one-element list stays.
    assert_eq!(
        q::<String>(c, &["LMOVE", "{t}d", "{t}d", "LEFT", "RIGHT"]).unwrap(),
        "2"
    );
    assert_eq!(all(c, "{t}d"), ["3", "1", "2"]);
    assert_eq!(q::<String>(c, &["RPOPLPUSH", "{t}d", "{t}d"]).unwrap(), "2");
    assert_eq!(all(c, "{t}d"), ["2", "3", "1"]);
    q::<i64>(c, &["RPUSH", "one", "x"]).unwrap();
    assert_eq!(
        q::<String>(c, &["LMOVE", "one", "one", "LEFT", "RIGHT"]).unwrap(),
        "x"
    );
    assert_eq!(all(c, "one"), ["x"]);
    assert_eq!(err_of(c, &["LMOVE", "{t}d", "{t}x", "UP", "LEFT"]), SYNTAX);
    assert_eq!(
        err_of(c, &["LMOVE", "none", "{t}x", "LEFT", "DOWN"]),
        SYNTAX
    );
    assert_eq!(
        q::<Option<String>>(c, &["RPOPLPUSH", "none", "{t}d"]).unwrap(),
        None
    );

    // Across shards, every combination of ends.
    let a = keys_on("mv", 0, 4, 1).remove(0);
    let b = keys_on("mv", 1, 4, 1).remove(0);
    let d = keys_on("mv", 3, 4, 1).remove(0);
    q::<i64>(c, &["RPUSH", &a, "1", "2", "3", "4"]).unwrap();
    assert_eq!(
        q::<String>(c, &["LMOVE", &a, &b, "LEFT", "LEFT"]).unwrap(),
        "1"
    );
    assert_eq!(
        q::<String>(c, &["LMOVE", &a, &b, "RIGHT", "RIGHT"]).unwrap(),
        "4"
    );
    assert_eq!(
        q::<String>(c, &["LMOVE", &a, &b, "LEFT", "RIGHT"]).unwrap(),
        "2"
    );
    assert_eq!(q::<String>(c, &["RPOPLPUSH", &a, &d]).unwrap(), "3");
    assert_eq!(q::<i64>(c, &["EXISTS", &a]).unwrap(), 0);
    assert_eq!(all(c, &b), ["1", "4", "2"]);
    assert_eq!(all(c, &d), ["3"]);
    assert_eq!(
        q::<Option<String>>(c, &["LMOVE", &a, &b, "LEFT", "LEFT"]).unwrap(),
        None
    );
    q::<()>(c, &["SET", &a, "str"]).unwrap();
    assert_eq!(err_of(c, &["LMOVE", &b, &a, "LEFT", "LEFT"]), WRONGTYPE);
    assert_eq!(err_of(c, &["RPOPLPUSH", &a, &b]), WRONGTYPE);
    assert_eq!(all(c, &b), ["1", "4", "2"]);

    // LMPOP over keys of several shards: the first non-empty one in order.
    let e = keys_on("mp", 2, 4, 1).remove(0);
    let v: Value = q(c, &["LMPOP", "3", &e, &d, &b, "RIGHT", "COUNT", "5"]).unwrap();
    assert_eq!(
        v,
        Value::Array(vec![
            Value::BulkString(d.clone().into_bytes()),
            Value::Array(vec![Value::BulkString(b"3".to_vec())])
        ])
    );
    let v: Value = q(c, &["LMPOP", "3", &e, &d, &b, "LEFT", "COUNT", "2"]).unwrap();
    assert_eq!(
        v,
        Value::Array(vec![
            Value::BulkString(b.clone().into_bytes()),
            Value::Array(vec![
                Value::BulkString(b"1".to_vec()),
                Value::BulkString(b"4".to_vec())
            ])
        ])
    );
    assert_eq!(
        err_of(c, &["LMPOP", "0", &e, "LEFT"]),
        "ERR numkeys should be greater than 0"
    );
    assert_eq!(err_of(c, &["LMPOP", "2", &e, "LEFT"]), SYNTAX);
    assert_eq!(
        err_of(c, &["LMPOP", "2", &e, &d, "LEFT", "COUNT", "0"]),
        "ERR count should be greater than 0"
    );
    assert_eq!(
        err_of(
            c,
            &["LMPOP", "2", &e, &d, "LEFT", "COUNT", "1", "COUNT", "1"]
        ),
        SYNTAX
    );
    assert_eq!(err_of(c, &["LMPOP", "2", &e, &a, "LEFT"]), WRONGTYPE);
}

#[test]
fn multi_exec_across_shards() {
    let server = start();
    let c = &mut server.client();
    let a = keys_on("tx", 0, 4, 1).remove(0);
    let b = keys_on("tx", 2, 4, 1).remove(0);
    let r: (i64, i64, String, Vec<String>, Option<String>, Value, i64) = redis::pipe()
        .atomic()
        .cmd("RPUSH")
        .arg(&a)
        .arg(&["1", "2", "3"])
        .cmd("LPUSH")
        .arg(&b)
        .arg("x")
        .cmd("LMOVE")
        .arg(&a)
        .arg(&b)
        .arg("RIGHT")
        .arg("LEFT")
        .cmd("LPOP")
        .arg(&a)
        .arg(5)
        .cmd("RPOP")
        .arg("none")
        .cmd("LMPOP")
        .arg(2)
        .arg("none")
        .arg(&b)
        .arg("LEFT")
        .cmd("LLEN")
        .arg(&b)
        .query(c)
        .unwrap();
    assert_eq!(r.0, 3);
    assert_eq!(r.1, 1);
    assert_eq!(r.2, "3");
    assert_eq!(r.3, ["1", "2"]);
    assert_eq!(r.4, None);
    assert_eq!(
        r.5,
        Value::Array(vec![
            Value::BulkString(b.clone().into_bytes()),
            Value::Array(vec![Value::BulkString(b"3".to_vec())])
        ])
    );
    assert_eq!(r.6, 1);
    assert_eq!(all(c, &b), ["x"]);
    assert_eq!(q::<i64>(c, &["EXISTS", &a]).unwrap(), 0);

    // A null array inside EXEC keeps its shape.
    let mut raw = server.raw();
    raw_reply(&mut raw, &["MULTI"]);
    raw_reply(&mut raw, &["LPOP", &a, "1"]);
    raw_reply(&mut raw, &["LPOP", &a]);
    raw_reply(&mut raw, &["LPOP", &b, "0"]);
    assert_eq!(raw_reply(&mut raw, &["EXEC"]), "*3\r\n*-1\r\n$-1\r\n*0\r\n");

    // WATCH sees list writes.
    raw_reply(&mut raw, &["WATCH", &b]);
    q::<i64>(c, &["RPUSH", &b, "y"]).unwrap();
    raw_reply(&mut raw, &["MULTI"]);
    raw_reply(&mut raw, &["LLEN", &b]);
    assert_eq!(raw_reply(&mut raw, &["EXEC"]), "*-1\r\n");
}

fn next_event(raw: &mut Raw) -> (String, String) {
    let m = raw.reply_str().replace("\r\n", "\n");
    let parts: Vec<&str> = m.split('\n').collect();
    (parts[6].to_string(), parts[8].to_string())
}

#[test]
fn keyspace_events_match_redis() {
    let server = Server::start(&[
        "--shards",
        "4",
        "--appendonly",
        "no",
        "--notify-keyspace-events",
        "KEA",
    ]);
    let mut ev = server.raw();
    ev.cmd(&[b"PSUBSCRIBE", b"__keyevent@0__:*"]);
    let _ = ev.reply();
    let c = &mut server.client();
    q::<i64>(c, &["RPUSH", "{e}s", "a", "b"]).unwrap();
    q::<i64>(c, &["LPUSH", "{e}s", "z"]).unwrap();
    q::<i64>(c, &["LPUSHX", "{e}none", "z"]).unwrap();
    q::<String>(c, &["LMOVE", "{e}s", "{e}d", "LEFT", "RIGHT"]).unwrap();
    q::<()>(c, &["LSET", "{e}s", "0", "q"]).unwrap();
    q::<i64>(c, &["LINSERT", "{e}s", "BEFORE", "q", "p"]).unwrap();
    q::<i64>(c, &["LINSERT", "{e}s", "BEFORE", "nothere", "p"]).unwrap();
    q::<i64>(c, &["LREM", "{e}s", "1", "p"]).unwrap();
    q::<i64>(c, &["LREM", "{e}s", "1", "nothere"]).unwrap();
    q::<()>(c, &["LTRIM", "{e}s", "0", "-1"]).unwrap();
    q::<Vec<String>>(c, &["LPOP", "{e}s", "0"]).unwrap();
    q::<Vec<String>>(c, &["RPOP", "{e}s", "5"]).unwrap();
    q::<Value>(c, &["LMPOP", "1", "{e}d", "LEFT"]).unwrap();
    q::<i64>(c, &["RPUSH", "{e}s", "x"]).unwrap();
    q::<String>(c, &["RPOPLPUSH", "{e}s", "{e}s"]).unwrap();
    q::<String>(c, &["RPOPLPUSH", "{e}s", "{e}d"]).unwrap();
    let want = [
        ("rpush", "{e}s"),
        ("lpush", "{e}s"),
        ("rpush", "{e}d"),
        ("lpop", "{e}s"),
        ("lset", "{e}s"),
        ("linsert", "{e}s"),
        ("lrem", "{e}s"),
        ("ltrim", "{e}s"),
        ("rpop", "{e}s"),
        ("del", "{e}s"),
        ("lpop", "{e}d"),
        ("del", "{e}d"),
        ("rpush", "{e}s"),
        ("lpush", "{e}s"),
        ("rpop", "{e}s"),
        ("lpush", "{e}d"),
        ("rpop", "{e}s"),
        ("del", "{e}s"),
    ];
    for (event, key) in want {
        assert_eq!(
            next_event(&mut ev),
            (format!("__keyevent@0__:{event}"), key.to_string())
        );
    }
}

/// Two keys on the same shard with 4 shards but on different shards with 3.
fn pair_split_by_three() -> (String, String) {
    let same4: Vec<String> = keys_on("pair", 1, 4, 200);
    let x = same4
        .iter()
        .find(|k| shard_of(k, 3) == 0)
        .expect("a key of shard 1/4 on shard 0/3")
        .clone();
    let y = same4
        .iter()
        .find(|k| shard_of(k, 3) == 1)
        .expect("a key of shard 1/4 on shard 1/3")
        .clone();
    (x, y)
}

fn write_lists(c: &mut redis::Connection) {
    let (x, y) = pair_split_by_three();
    let a = keys_on("pa", 0, 4, 1).remove(0);
    let b = keys_on("pb", 3, 4, 1).remove(0);
    q::<i64>(c, &["RPUSH", "pl", "1", "2", "3", "4", "5", "6", "7", "8"]).unwrap();
    q::<i64>(c, &["LPUSH", "pl", "0"]).unwrap();
    q::<i64>(c, &["LPUSHX", "pl", "-1"]).unwrap();
    q::<i64>(c, &["RPUSHX", "pl", "9"]).unwrap();
    q::<String>(c, &["LPOP", "pl"]).unwrap();
    q::<Vec<String>>(c, &["RPOP", "pl", "2"]).unwrap();
    q::<()>(c, &["LSET", "pl", "1", "one"]).unwrap();
    q::<i64>(c, &["LINSERT", "pl", "AFTER", "one", "1.5"]).unwrap();
    q::<i64>(c, &["RPUSH", "pl", "dup", "dup", "dup"]).unwrap();
    q::<i64>(c, &["LREM", "pl", "-2", "dup"]).unwrap();
    q::<()>(c, &["LTRIM", "pl", "1", "-1"]).unwrap();
    q::<i64>(c, &["RPUSH", "pl", &"big".repeat(5000)]).unwrap();
    // Same-shard LMOVE whose keys part with another shard count.
    q::<i64>(c, &["RPUSH", &x, "x1", "x2", "x3"]).unwrap();
    q::<String>(c, &["LMOVE", &x, &y, "LEFT", "RIGHT"]).unwrap();
    q::<String>(c, &["RPOPLPUSH", &x, &y]).unwrap();
    q::<String>(c, &["LMOVE", &y, &y, "LEFT", "RIGHT"]).unwrap();
    // Across shards.
    q::<i64>(c, &["RPUSH", &a, "a1", "a2"]).unwrap();
    q::<String>(c, &["LMOVE", &a, &b, "RIGHT", "LEFT"]).unwrap();
    // LMPOP journals as LPOP/RPOP with the count it popped.
    q::<i64>(c, &["RPUSH", "mp", "m1", "m2", "m3"]).unwrap();
    q::<Value>(c, &["LMPOP", "2", "nothere", "mp", "RIGHT", "COUNT", "2"]).unwrap();
    // Emptied lists.
    q::<i64>(c, &["RPUSH", "gone", "g"]).unwrap();
    q::<String>(c, &["RPOP", "gone"]).unwrap();
    q::<i64>(c, &["RPUSH", "gone2", "g", "h"]).unwrap();
    q::<Value>(c, &["LMPOP", "1", "gone2", "LEFT", "COUNT", "9"]).unwrap();
    // A MULTI across shards.
    let _: Value = redis::pipe()
        .atomic()
        .cmd("RPUSH")
        .arg(&a)
        .arg("t1")
        .cmd("LMOVE")
        .arg(&a)
        .arg(&b)
        .arg("LEFT")
        .arg("RIGHT")
        .cmd("RPUSH")
        .arg("ttl")
        .arg("t")
        .cmd("EXPIRE")
        .arg("ttl")
        .arg(1000)
        .query(c)
        .unwrap();
}

fn check_lists(c: &mut redis::Connection, when: &str) {
    let (x, y) = pair_split_by_three();
    let a = keys_on("pa", 0, 4, 1).remove(0);
    let b = keys_on("pb", 3, 4, 1).remove(0);
    let mut want_pl: Vec<String> = ["one", "1.5", "2", "3", "4", "5", "6", "7", "dup"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    want_pl.push("big".repeat(5000));
    assert_eq!(all(c, "pl"), want_pl, "{when}");
    assert_eq!(all(c, &x), ["x2"], "{when}");
    assert_eq!(all(c, &y), ["x1", "x3"], "{when}");
    assert_eq!(all(c, &a), ["t1"], "{when}");
    assert_eq!(all(c, &b), ["a2", "a1"], "{when}");
    assert_eq!(all(c, "mp"), ["m1"], "{when}");
    assert_eq!(
        q::<i64>(c, &["EXISTS", "gone", "gone2"]).unwrap(),
        0,
        "{when}"
    );
    let ttl: i64 = q(c, &["TTL", "ttl"]).unwrap();
    assert!((900..=1000).contains(&ttl), "{when}: ttl {ttl}");
    assert_eq!(q::<String>(c, &["TYPE", "pl"]).unwrap(), "list", "{when}");
}

#[test]
fn lists_survive_restarts_with_any_shard_count() {
    let dir = DataDir::new("lists");
    let start = |shards: usize| {
        let shards = shards.to_string();
        Server::start_raw(&["--dir", dir.path(), "--shards", &shards], None)
    };
    {
        let mut s = start(4);
        write_lists(&mut s.client());
        check_lists(&mut s.client(), "before restart");
        s.kill9();
    }
    for (shards, kill) in [(3, false), (4, true), (1, false), (3, true)] {
        let mut s = start(shards);
        check_lists(
            &mut s.client(),
            &format!("after restart on {shards} shards"),
        );
        if kill {
            s.kill9();
        } else {
            assert!(s.terminate().success());
        }
    }
}

// ---- Blocking commands (implemented in blocking.rs) served by this family's pushes ----

fn wait_blocked() {
    std::thread::sleep(Duration::from_millis(300));
}

#[test]
fn blpop_is_served_by_a_push_from_another_shard() {
    let server = start();
    let key = keys_on("bq", 2, 4, 1).remove(0);
    let mut blocked = server.raw_on_shard(0, 4);
    blocked.cmd(&[b"BLPOP", key.as_bytes(), b"0"]);
    wait_blocked();
    let mut pusher = server.raw_on_shard(1, 4);
    assert_eq!(raw_reply(&mut pusher, &["LPUSH", &key, "v"]), ":1\r\n");
    assert_eq!(
        blocked.reply_str(),
        format!("*2\r\n${}\r\n{key}\r\n$1\r\nv\r\n", key.len())
    );
    let c = &mut server.client();
    common::eventually("the element was taken", || {
        q::<i64>(c, &["LLEN", &key]).unwrap() == 0
    });
    // The blocked connection works normally afterwards.
    assert_eq!(raw_reply(&mut blocked, &["LLEN", &key]), ":0\r\n");
}

#[test]
fn blpop_on_two_shards_is_served_once() {
    let server = start();
    for round in 0..5 {
        let k1 = keys_on(&format!("two{round}"), 1, 4, 1).remove(0);
        let k2 = keys_on(&format!("two{round}"), 3, 4, 1).remove(0);
        let mut blocked = server.raw_on_shard(0, 4);
        blocked.cmd(&[b"BLPOP", k1.as_bytes(), k2.as_bytes(), b"0"]);
        wait_blocked();
        // Both keys get an element at once (one transaction across the two shards).
        let c = &mut server.client();
        let _: Value = redis::pipe()
            .atomic()
            .cmd("RPUSH")
            .arg(&k1)
            .arg("one")
            .cmd("RPUSH")
            .arg(&k2)
            .arg("two")
            .query(c)
            .unwrap();
        let got = blocked.reply_str();
        assert!(
            got.ends_with("$3\r\none\r\n") || got.ends_with("$3\r\ntwo\r\n"),
            "{got}"
        );
        // Exactly one element is gone, and no second reply arrives.
        common::eventually("one element taken", || {
            let n1: i64 = q(c, &["LLEN", &k1]).unwrap();
            let n2: i64 = q(c, &["LLEN", &k2]).unwrap();
            n1 + n2 == 1
        });
        std::thread::sleep(Duration::from_millis(100));
        let n1: i64 = q(c, &["LLEN", &k1]).unwrap();
        let n2: i64 = q(c, &["LLEN", &k2]).unwrap();
        assert_eq!(n1 + n2, 1, "round {round}: served once");
        assert_eq!(raw_reply(&mut blocked, &["PING"]), "+PONG\r\n");
    }
}

#[test]
fn blpop_times_out_with_nil() {
    let server = start();
    let k1 = keys_on("to", 0, 4, 1).remove(0);
    let k2 = keys_on("to", 2, 4, 1).remove(0);
    let mut raw = server.raw();
    let t = Instant::now();
    assert_eq!(raw_reply(&mut raw, &["BLPOP", &k1, &k2, "0.5"]), "*-1\r\n");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let t = Instant::now();
    assert_eq!(raw_reply(&mut raw, &["BRPOP", &k1, "0.2"]), "*-1\r\n");
    assert!(t.elapsed() >= Duration::from_millis(150));
}

#[test]
fn blmove_across_shards() {
    let server = start();
    let src = keys_on("bm", 1, 4, 1).remove(0);
    let dst = keys_on("bm", 3, 4, 1).remove(0);
    let mut blocked = server.raw_on_shard(0, 4);
    blocked.cmd(&[
        b"BLMOVE",
        src.as_bytes(),
        dst.as_bytes(),
        b"LEFT",
        b"RIGHT",
        b"0",
    ]);
    wait_blocked();
    let c = &mut server.client();
    q::<i64>(c, &["RPUSH", &dst, "first"]).unwrap();
    q::<i64>(c, &["RPUSH", &src, "moved"]).unwrap();
    assert_eq!(blocked.reply_str(), "$5\r\nmoved\r\n");
    common::eventually("moved to the destination", || {
        all(c, &dst) == ["first", "moved"]
    });
    assert_eq!(q::<i64>(c, &["EXISTS", &src]).unwrap(), 0);
    // Immediately served when the source has elements.
    q::<i64>(c, &["RPUSH", &src, "again"]).unwrap();
    assert_eq!(
        raw_reply(&mut blocked, &["BLMOVE", &src, &dst, "RIGHT", "LEFT", "0"]),
        "$5\r\nagain\r\n"
    );
    assert_eq!(all(c, &dst), ["again", "first", "moved"]);
}

#[test]
fn a_disconnected_waiter_loses_no_element() {
    let server = start();
    let c = &mut server.client();
    for (i, shard) in [0u64, 1, 2, 3].into_iter().enumerate() {
        let key = keys_on(&format!("dc{i}"), (shard as usize + 1) % 4, 4, 1).remove(0);
        {
            let mut blocked = server.raw_on_shard(shard, 4);
            blocked.cmd(&[b"BLPOP", key.as_bytes(), b"0"]);
            wait_blocked();
        } // dropped: the connection closes while blocked
        if i % 2 == 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(q::<i64>(c, &["LPUSH", &key, "kept"]).unwrap(), 1);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(q::<i64>(c, &["LLEN", &key]).unwrap(), 1, "round {i}");
        assert_eq!(all(c, &key), ["kept"]);
    }
}

// ---- list-compress-depth: chunks away from the ends are kept compressed ----

/// Runs `words` on the server and on `model` (a plain vector), for the list commands that
/// change a list in the middle, and checks both answer alike.
fn edit_both(c: &mut redis::Connection, key: &str, model: &mut Vec<String>, words: &[&str]) {
    let mut cmd = redis::cmd(words[0]);
    cmd.arg(key).arg(&words[1..]);
    let got: Value = cmd.query(c).unwrap();
    match words[0] {
        "LSET" => {
            let i: usize = words[1].parse().unwrap();
            model[i] = words[2].to_string();
        }
        "LINSERT" => {
            let p = model.iter().position(|e| e == words[2]).unwrap();
            let at = if words[1] == "BEFORE" { p } else { p + 1 };
            model.insert(at, words[3].to_string());
            assert_eq!(got, Value::Int(model.len() as i64));
        }
        "LREM" => {
            let before = model.len();
            model.retain(|e| e != words[2]);
            assert_eq!(got, Value::Int((before - model.len()) as i64));
        }
        "LTRIM" => {
            let (s, e): (usize, usize) = (words[1].parse().unwrap(), words[2].parse().unwrap());
            *model = model[s..=e].to_vec();
        }
        other => panic!("no model for {other}"),
    }
}

#[test]
fn compressed_lists_answer_like_plain_ones_and_survive_restarts() {
    let dir = DataDir::new("list-compress");
    let mut server = Server::start_raw(&["--dir", dir.path(), "--shards", "2"], None);
    let c = &mut server.client();
    let depth: Vec<String> = q(c, &["CONFIG", "GET", "list-compress-depth"]).unwrap();
    assert_eq!(depth, ["list-compress-depth", "1"]);
    assert_eq!(
        err_of(c, &["CONFIG", "SET", "list-compress-depth", "-1"]),
        "ERR CONFIG SET failed (possibly related to argument 'list-compress-depth') - \
         argument must be between 0 and 2147483647 inclusive"
    );
    assert_eq!(
        err_of(c, &["CONFIG", "SET", "list-compress-depth", "x"]),
        "ERR CONFIG SET failed (possibly related to argument 'list-compress-depth') - \
         argument couldn't be parsed into an integer"
    );
    const N: usize = 60_000;
    let mut models = Vec::new();
    let mut usage = Vec::new();
    for depth in ["0", "1", "3"] {
        q::<()>(c, &["CONFIG", "SET", "list-compress-depth", depth]).unwrap();
        let key = format!("list:{depth}");
        let model: Vec<String> = (0..N).map(|i| format!("element:{i}")).collect();
        for part in model.chunks(10_000) {
            redis::cmd("RPUSH")
                .arg(&key)
                .arg(part)
                .query::<i64>(c)
                .unwrap();
        }
        usage.push(q::<i64>(c, &["MEMORY", "USAGE", &key]).unwrap());
        models.push((key, model));
    }
    assert!(
        usage[1] * 2 < usage[0] && usage[2] * 2 < usage[0],
        "MEMORY USAGE at depths 0, 1, 3: {usage:?}"
    );
    // A list keeps the depth it was made with, as in Redis: with the default now 0, the
    // depth-1 list still packs what it grows by, and the depth-0 list still does not.
    q::<()>(c, &["CONFIG", "SET", "list-compress-depth", "0"]).unwrap();
    let more: Vec<String> = (N..2 * N).map(|i| format!("element:{i}")).collect();
    let mut grown = Vec::new();
    for (key, model) in models.iter_mut().take(2) {
        for part in more.chunks(10_000) {
            redis::cmd("RPUSH")
                .arg(&*key)
                .arg(part)
                .query::<i64>(c)
                .unwrap();
        }
        model.extend(more.iter().cloned());
        grown.push(q::<i64>(c, &["MEMORY", "USAGE", key]).unwrap());
    }
    assert!(
        (grown[1] - usage[1]) * 2 < grown[0] - usage[0],
        "growth by {N} elements at depth 1 vs 0: {} vs {} bytes",
        grown[1] - usage[1],
        grown[0] - usage[0]
    );
    q::<()>(c, &["CONFIG", "SET", "list-compress-depth", "1"]).unwrap();
    for (key, model) in &mut models {
        // Reads from the middle.
        let got: Vec<String> = q(c, &["LRANGE", key, "29990", "30010"]).unwrap();
        assert_eq!(got, model[29990..=30010]);
        let got: String = q(c, &["LINDEX", key, "-30000"]).unwrap();
        assert_eq!(got, model[model.len() - 30000]);
        let got: Option<i64> = q(c, &["LPOS", key, "element:45678"]).unwrap();
        assert_eq!(got, Some(45678));
        // Edits in the middle: same length, longer, inserted, removed, trimmed.
        edit_both(c, key, model, &["LSET", "20000", "element:xxxxx"]);
        edit_both(c, key, model, &["LSET", "20001", &"y".repeat(3000)]);
        edit_both(
            c,
            key,
            model,
            &["LINSERT", "BEFORE", "element:33333", "new"],
        );
        edit_both(c, key, model, &["LINSERT", "AFTER", "element:44444", "new"]);
        edit_both(c, key, model, &["LREM", "0", "new"]);
        edit_both(c, key, model, &["LREM", "0", "element:12345"]);
        edit_both(c, key, model, &["LTRIM", "1000", "58000"]);
        // Both ends, across a packed chunk.
        let front: Vec<String> = q(c, &["LPOP", key, "5000"]).unwrap();
        assert_eq!(front, model.drain(..5000).collect::<Vec<_>>());
        let back: Vec<String> = q(c, &["RPOP", key, "5000"]).unwrap();
        let want: Vec<String> = model.drain(model.len() - 5000..).rev().collect();
        assert_eq!(back, want);
        q::<i64>(c, &["LPUSH", key, "head"]).unwrap();
        model.insert(0, "head".into());
        assert_eq!(all(c, key), *model, "{key}");
    }
    // The snapshot and the log written from packed lists load back.
    q::<()>(c, &["SAVE"]).unwrap();
    for (key, model) in &mut models {
        q::<i64>(c, &["RPUSH", key, "after-save"]).unwrap();
        model.push("after-save".into());
    }
    server.kill9();
    let server = Server::start_raw(&["--dir", dir.path(), "--shards", "3"], None);
    let c = &mut server.client();
    for (key, model) in &models {
        assert_eq!(all(c, key), *model, "{key} after restart");
    }
}
