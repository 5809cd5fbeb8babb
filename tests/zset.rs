//! The sorted-set family through the `redis` crate on `--shards 4`: replies and error
//! texts, scores printed like Redis 7.0, encodings at Redis's thresholds, range queries on
//! a 10k-member set checked against a model (ranks, scores, lex, LIMIT offsets, range
//! removals), pops and random members, ZSCAN, ZRANGESTORE across shards (also inside
//! MULTI/EXEC), generic commands on sorted sets, keyspace events, persistence of every
//! kind of sorted-set write (also the blocking pops' journaled rewrites) across restarts
//! on other shard counts, and a leaderboard.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{err_of, keys_on, q, DataDir, Raw, Server};
use redis::Value;

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

fn start() -> Server {
    Server::start(&["--shards", "4"])
}

/// Keys on shards 0, 1, 2 and 3 of a 4-shard server, `n` of each, named `prefix:N`.
fn spread(prefix: &str, n: usize) -> Vec<Vec<String>> {
    (0..4).map(|s| keys_on(prefix, s, 4, n)).collect()
}

fn encoding(c: &mut redis::Connection, key: &str) -> String {
    q(c, &["OBJECT", "ENCODING", key]).unwrap()
}

/// A flat `member score member score ...` reply as pairs.
fn pairs(flat: Vec<String>) -> Vec<(String, String)> {
    flat.chunks(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect()
}

fn with_scores(c: &mut redis::Connection, words: &[&str]) -> Vec<(String, String)> {
    pairs(q::<Vec<String>>(c, words).unwrap())
}

/// `ZADD key` with many (score, member) pairs, sent in chunks.
fn zadd_many(c: &mut redis::Connection, key: &str, items: &[(f64, String)]) -> i64 {
    let mut added = 0;
    for chunk in items.chunks(1000) {
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(key);
        for (s, m) in chunk {
            cmd.arg(format!("{s}")).arg(m);
        }
        added += cmd.query::<i64>(c).unwrap();
    }
    added
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn replies_and_errors() {
    let server = start();
    let c = &mut server.client();
    assert_eq!(
        q::<i64>(c, &["ZADD", "z", "1", "a", "2", "b", "3", "c"]).unwrap(),
        3
    );
    assert_eq!(
        q::<i64>(c, &["ZADD", "z", "1", "a", "5", "b", "4", "d"]).unwrap(),
        1
    );
    assert_eq!(
        q::<i64>(c, &["ZADD", "z", "CH", "1", "a", "6", "b", "7", "e"]).unwrap(),
        2
    );
    assert_eq!(
        with_scores(c, &["ZRANGE", "z", "0", "-1", "WITHSCORES"]),
        [("a", "1"), ("c", "3"), ("d", "4"), ("b", "6"), ("e", "7")]
            .map(|(m, s)| (m.to_string(), s.to_string()))
    );
    // NX / XX / GT / LT, with CH.
    assert_eq!(
        q::<i64>(c, &["ZADD", "z", "NX", "100", "a", "8", "f"]).unwrap(),
        1
    );
    assert_eq!(q::<String>(c, &["ZSCORE", "z", "a"]).unwrap(), "1");
    assert_eq!(
        q::<i64>(c, &["ZADD", "z", "XX", "CH", "9", "f", "9", "g"]).unwrap(),
        1
    );
    assert_eq!(q::<Option<String>>(c, &["ZSCORE", "z", "g"]).unwrap(), None);
    assert_eq!(
        q::<i64>(
            c,
            &["ZADD", "z", "GT", "CH", "5", "a", "0.5", "c", "20", "h"]
        )
        .unwrap(),
        2,
        "a raised, c kept, h added"
    );
    assert_eq!(q::<String>(c, &["ZSCORE", "z", "c"]).unwrap(), "3");
    assert_eq!(
        q::<i64>(c, &["ZADD", "z", "LT", "CH", "0", "a", "30", "b"]).unwrap(),
        1
    );
    assert_eq!(q::<String>(c, &["ZSCORE", "z", "a"]).unwrap(), "0");
    assert_eq!(
        q::<i64>(c, &["ZADD", "z", "XX", "GT", "CH", "100", "a", "1", "new"]).unwrap(),
        1
    );
    // INCR: the new score, or nil when NX/XX/GT/LT skipped it.
    assert_eq!(
        q::<String>(c, &["ZADD", "z", "INCR", "2.5", "a"]).unwrap(),
        "102.5"
    );
    assert_eq!(
        q::<Option<String>>(c, &["ZADD", "z", "INCR", "NX", "1", "a"]).unwrap(),
        None
    );
    assert_eq!(
        q::<Option<String>>(c, &["ZADD", "z", "INCR", "LT", "1", "a"]).unwrap(),
        None
    );
    assert_eq!(
        q::<String>(c, &["ZADD", "z", "INCR", "GT", "1", "a"]).unwrap(),
        "103.5"
    );
    assert_eq!(
        q::<Option<String>>(c, &["ZADD", "nosuch", "XX", "INCR", "1", "a"]).unwrap(),
        None
    );
    assert_eq!(q::<i64>(c, &["ZADD", "nosuch", "XX", "1", "a"]).unwrap(), 0);
    assert_eq!(
        q::<i64>(c, &["EXISTS", "nosuch"]).unwrap(),
        0,
        "XX creates nothing"
    );
    for (words, want) in [
        (
            &["ZADD", "z", "1"][..],
            "ERR wrong number of arguments for 'zadd' command",
        ),
        (&["ZADD", "z", "1", "a", "2"], "ERR syntax error"),
        (&["ZADD", "z", "NX", "XX", "1"], "ERR syntax error"),
        (&["ZADD", "z", "FOO", "1", "a"], "ERR syntax error"),
        (
            &["ZADD", "z", "NX", "XX", "1", "a"],
            "ERR XX and NX options at the same time are not compatible",
        ),
        (
            &["ZADD", "z", "GT", "LT", "1", "a"],
            "ERR GT, LT, and/or NX options at the same time are not compatible",
        ),
        (
            &["ZADD", "z", "NX", "GT", "1", "a"],
            "ERR GT, LT, and/or NX options at the same time are not compatible",
        ),
        (
            &["ZADD", "z", "INCR", "1", "a", "2", "b"],
            "ERR INCR option supports a single increment-element pair",
        ),
        (&["ZADD", "z", "x", "a"], "ERR value is not a valid float"),
        (
            &["ZADD", "z", "1", "a", "nan", "b"],
            "ERR value is not a valid float",
        ),
        (
            &["ZADD", "z", "1e400", "a"],
            "ERR value is not a valid float",
        ),
        (&["ZADD", "z", " 1", "a"], "ERR value is not a valid float"),
        (
            &["ZINCRBY", "z", "abc", "a"],
            "ERR value is not a valid float",
        ),
        (&["ZINCRBY", "z", "XX", "a"], "ERR syntax error"),
        (
            &["ZRANK", "z", "a", "WITHSCORE"],
            "ERR wrong number of arguments for 'zrank' command",
        ),
        (&["ZCOUNT", "z", "x", "1"], "ERR min or max is not a float"),
        (
            &["ZCOUNT", "z", "(1", "[2"],
            "ERR min or max is not a float",
        ),
        (
            &["ZLEXCOUNT", "z", "a", "+"],
            "ERR min or max not valid string range item",
        ),
        (
            &["ZLEXCOUNT", "z", "-", "+x"],
            "ERR min or max not valid string range item",
        ),
        (
            &["ZPOPMIN", "z", "-1"],
            "ERR value is out of range, must be positive",
        ),
        (
            &["ZPOPMIN", "z", "x"],
            "ERR value is out of range, must be positive",
        ),
        (&["ZPOPMAX", "z", "1", "2"], "ERR syntax error"),
        (
            &["ZREMRANGEBYRANK", "z", "a", "1"],
            "ERR value is not an integer or out of range",
        ),
        (
            &["ZREMRANGEBYSCORE", "z", "a", "1"],
            "ERR min or max is not a float",
        ),
        (
            &["ZREMRANGEBYLEX", "z", "a", "1"],
            "ERR min or max not valid string range item",
        ),
    ] {
        assert_eq!(err_of(c, words), want, "{words:?}");
    }
    // A NaN sum fails and changes nothing.
    q::<i64>(c, &["ZADD", "inf", "inf", "m"]).unwrap();
    assert_eq!(
        err_of(c, &["ZINCRBY", "inf", "-inf", "m"]),
        "ERR resulting score is not a number (NaN)"
    );
    assert_eq!(q::<String>(c, &["ZSCORE", "inf", "m"]).unwrap(), "inf");
    // ZINCRBY creates.
    assert_eq!(
        q::<String>(c, &["ZINCRBY", "zi", "1.5", "a"]).unwrap(),
        "1.5"
    );
    assert_eq!(
        q::<String>(c, &["ZINCRBY", "zi", "0.1", "a"]).unwrap(),
        "1.6000000000000001"
    );
    // ZREM, ZCARD, ZSCORE, ZMSCORE.
    assert_eq!(
        q::<i64>(c, &["ZREM", "z", "a", "nosuch", "a", "b"]).unwrap(),
        2
    );
    assert_eq!(q::<i64>(c, &["ZREM", "nosuch", "a"]).unwrap(), 0);
    assert_eq!(q::<i64>(c, &["ZCARD", "z"]).unwrap(), 5);
    assert_eq!(q::<i64>(c, &["ZCARD", "nosuch"]).unwrap(), 0);
    assert_eq!(
        q::<Vec<Option<String>>>(c, &["ZMSCORE", "z", "c", "nosuch", "h"]).unwrap(),
        [Some("3".to_string()), None, Some("20".to_string())]
    );
    assert_eq!(
        q::<Vec<Option<String>>>(c, &["ZMSCORE", "nosuch", "a", "b"]).unwrap(),
        [None, None]
    );
    // ZRANK / ZREVRANK.
    q::<i64>(
        c,
        &[
            "ZADD", "r", "1", "a", "2", "b", "3", "c", "3", "d", "5", "e",
        ],
    )
    .unwrap();
    assert_eq!(q::<i64>(c, &["ZRANK", "r", "d"]).unwrap(), 3);
    assert_eq!(q::<i64>(c, &["ZREVRANK", "r", "d"]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["ZREVRANK", "r", "e"]).unwrap(), 0);
    assert_eq!(q::<Option<i64>>(c, &["ZRANK", "r", "x"]).unwrap(), None);
    assert_eq!(
        q::<Option<i64>>(c, &["ZREVRANK", "nosuch", "x"]).unwrap(),
        None
    );
    // ZCOUNT / ZLEXCOUNT.
    for (lo, hi, want) in [
        ("-inf", "+inf", 5),
        ("2", "3", 3),
        ("(2", "3", 2),
        ("(2", "(3", 0),
        ("3", "3", 2),
        ("(3", "3", 0),
        ("5", "1", 0),
        ("", "2", 2),
        (" 2", "1e400", 4),
    ] {
        assert_eq!(
            q::<i64>(c, &["ZCOUNT", "r", lo, hi]).unwrap(),
            want,
            "{lo} {hi}"
        );
    }
    q::<i64>(
        c,
        &[
            "ZADD", "lx", "0", "a", "0", "b", "0", "c", "0", "d", "0", "ab",
        ],
    )
    .unwrap();
    for (lo, hi, want) in [
        ("-", "+", 5),
        ("[a", "[c", 4),
        ("(a", "(c", 2),
        ("[ab", "+", 4),
        ("+", "-", 0),
        ("-", "-", 0),
        ("+", "+", 0),
        ("[c", "[a", 0),
    ] {
        assert_eq!(
            q::<i64>(c, &["ZLEXCOUNT", "lx", lo, hi]).unwrap(),
            want,
            "{lo} {hi}"
        );
    }
    assert_eq!(q::<i64>(c, &["ZLEXCOUNT", "nosuch", "-", "+"]).unwrap(), 0);
}

#[test]
fn range_replies_and_option_rules() {
    let server = start();
    let c = &mut server.client();
    q::<i64>(
        c,
        &[
            "ZADD", "rr", "1", "a", "2", "b", "3", "c", "4", "d", "5", "e", "6", "f",
        ],
    )
    .unwrap();
    let r = |c: &mut redis::Connection, words: &[&str]| q::<Vec<String>>(c, words).unwrap();
    assert_eq!(r(c, &["ZRANGE", "rr", "1", "3"]), ["b", "c", "d"]);
    assert_eq!(r(c, &["ZRANGE", "rr", "-2", "-1"]), ["e", "f"]);
    assert_eq!(r(c, &["ZRANGE", "rr", "4", "2"]), Vec::<String>::new());
    assert_eq!(r(c, &["ZRANGE", "rr", "0", "2", "REV"]), ["f", "e", "d"]);
    assert_eq!(r(c, &["ZREVRANGE", "rr", "-2", "-1"]), ["b", "a"]);
    assert_eq!(r(c, &["ZRANGE", "rr", "(2", "4", "BYSCORE"]), ["c", "d"]);
    assert_eq!(
        r(c, &["ZRANGE", "rr", "4", "(2", "BYSCORE", "REV"]),
        ["d", "c"]
    );
    assert_eq!(
        r(
            c,
            &["ZRANGE", "rr", "-inf", "+inf", "BYSCORE", "LIMIT", "1", "2"]
        ),
        ["b", "c"]
    );
    assert_eq!(
        r(
            c,
            &["ZRANGE", "rr", "-inf", "+inf", "BYSCORE", "LIMIT", "4", "-1"]
        ),
        ["e", "f"]
    );
    assert!(r(
        c,
        &["ZRANGE", "rr", "-inf", "+inf", "BYSCORE", "LIMIT", "-1", "2"]
    )
    .is_empty());
    assert!(r(
        c,
        &["ZRANGE", "rr", "-inf", "+inf", "BYSCORE", "LIMIT", "1", "0"]
    )
    .is_empty());
    assert!(r(
        c,
        &["ZRANGE", "rr", "-inf", "+inf", "BYSCORE", "LIMIT", "6", "1"]
    )
    .is_empty());
    assert_eq!(
        r(
            c,
            &["ZREVRANGEBYSCORE", "rr", "+inf", "-inf", "LIMIT", "1", "3"]
        ),
        ["e", "d", "c"]
    );
    assert_eq!(
        r(
            c,
            &[
                "ZRANGEBYSCORE",
                "rr",
                "2",
                "5",
                "WITHSCORES",
                "LIMIT",
                "1",
                "2"
            ]
        ),
        ["c", "3", "d", "4"]
    );
    // "LIMIT 0 -1" is no limit, which Redis lets through with a rank range.
    assert_eq!(
        r(c, &["ZRANGE", "rr", "0", "1", "LIMIT", "0", "-1"]),
        ["a", "b"]
    );
    q::<i64>(
        c,
        &[
            "ZADD", "lx", "0", "a", "0", "b", "0", "c", "0", "d", "0", "e",
        ],
    )
    .unwrap();
    assert_eq!(
        r(c, &["ZRANGE", "lx", "[b", "(e", "BYLEX"]),
        ["b", "c", "d"]
    );
    assert_eq!(
        r(
            c,
            &["ZRANGE", "lx", "+", "-", "BYLEX", "REV", "LIMIT", "1", "2"]
        ),
        ["d", "c"]
    );
    assert_eq!(
        r(c, &["ZRANGEBYLEX", "lx", "-", "+", "LIMIT", "3", "5"]),
        ["d", "e"]
    );
    assert_eq!(r(c, &["ZREVRANGEBYLEX", "lx", "[c", "-"]), ["c", "b", "a"]);
    assert!(r(c, &["ZRANGE", "nosuch", "0", "-1"]).is_empty());
    for (words, want) in [
        (
            &["ZRANGE", "rr", "0", "-1", "LIMIT", "0", "5"][..],
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ),
        (
            &["ZRANGE", "lx", "-", "+", "BYLEX", "WITHSCORES"],
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX",
        ),
        (
            &["ZRANGEBYLEX", "lx", "-", "+", "WITHSCORES"],
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX",
        ),
        (
            &["ZRANGE", "rr", "0", "-1", "REV", "REV"],
            "ERR syntax error",
        ),
        (
            &["ZRANGE", "rr", "0", "-1", "BYSCORE", "BYLEX"],
            "ERR syntax error",
        ),
        (
            &["ZRANGEBYSCORE", "rr", "0", "1", "REV"],
            "ERR syntax error",
        ),
        (
            &["ZREVRANGE", "rr", "0", "1", "BYSCORE"],
            "ERR syntax error",
        ),
        (
            &["ZRANGE", "rr", "0", "1", "LIMIT", "1"],
            "ERR syntax error",
        ),
        (
            &["ZRANGESTORE", "d", "rr", "0", "1", "WITHSCORES"],
            "ERR syntax error",
        ),
        (
            &["ZRANGE", "rr", "a", "1"],
            "ERR value is not an integer or out of range",
        ),
        (
            &["ZRANGE", "rr", "1", "2", "BYSCORE", "LIMIT", "x", "1"],
            "ERR value is not an integer or out of range",
        ),
        (
            &["ZRANGE", "rr", "a", "b", "BYSCORE"],
            "ERR min or max is not a float",
        ),
        (
            &["ZRANGE", "rr", "a", "b", "BYLEX"],
            "ERR min or max not valid string range item",
        ),
        (
            &["ZRANGE", "nosuch", "a", "b"],
            "ERR value is not an integer or out of range",
        ),
    ] {
        assert_eq!(err_of(c, words), want, "{words:?}");
    }
    // Removals by rank, score and lex.
    assert_eq!(
        q::<i64>(c, &["ZREMRANGEBYRANK", "rr", "-2", "-1"]).unwrap(),
        2
    );
    assert_eq!(
        q::<i64>(c, &["ZREMRANGEBYRANK", "rr", "3", "1"]).unwrap(),
        0
    );
    assert_eq!(
        q::<i64>(c, &["ZREMRANGEBYSCORE", "rr", "(1", "3"]).unwrap(),
        2
    );
    assert_eq!(r(c, &["ZRANGE", "rr", "0", "-1"]), ["a", "d"]);
    assert_eq!(
        q::<i64>(c, &["ZREMRANGEBYLEX", "lx", "[b", "(d"]).unwrap(),
        2
    );
    assert_eq!(r(c, &["ZRANGE", "lx", "0", "-1"]), ["a", "d", "e"]);
    assert_eq!(q::<i64>(c, &["ZREMRANGEBYLEX", "lx", "-", "+"]).unwrap(), 3);
    assert_eq!(
        q::<i64>(c, &["EXISTS", "lx"]).unwrap(),
        0,
        "emptied: removed"
    );
    assert_eq!(
        q::<i64>(c, &["ZREMRANGEBYSCORE", "nosuch", "-inf", "+inf"]).unwrap(),
        0
    );
}

/// Exact texts on the wire in both protocols: scores as `%.17g` (bulk in RESP2, `,` in
/// RESP3), WITHSCORES and counted pops as pairs in RESP3, nil ranks.
#[test]
fn raw_shapes_in_both_protocols() {
    let server = start();
    let mut raw: Raw = server.raw();
    fn send(raw: &mut Raw, words: &[&str]) -> String {
        let args: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
        raw.cmd(&args);
        raw.reply_str()
    }
    assert_eq!(
        send(&mut raw, &["ZADD", "z", "1.1", "a", "2", "b", "1e20", "c"]),
        ":3\r\n"
    );
    assert_eq!(
        send(&mut raw, &["ZSCORE", "z", "a"]),
        "$18\r\n1.1000000000000001\r\n"
    );
    assert_eq!(send(&mut raw, &["ZSCORE", "z", "c"]), "$5\r\n1e+20\r\n");
    assert_eq!(send(&mut raw, &["ZSCORE", "z", "x"]), "$-1\r\n");
    assert_eq!(send(&mut raw, &["ZRANK", "z", "x"]), "$-1\r\n");
    assert_eq!(
        send(&mut raw, &["ZRANGE", "z", "0", "1", "WITHSCORES"]),
        "*4\r\n$1\r\na\r\n$18\r\n1.1000000000000001\r\n$1\r\nb\r\n$1\r\n2\r\n"
    );
    assert_eq!(
        send(&mut raw, &["ZPOPMAX", "z"]),
        "*2\r\n$1\r\nc\r\n$5\r\n1e+20\r\n"
    );
    assert_eq!(send(&mut raw, &["ZPOPMAX", "nosuch"]), "*0\r\n");
    assert_eq!(
        send(&mut raw, &["ZADD", "z", "INCR", "NX", "1", "a"]),
        "$-1\r\n"
    );
    assert_eq!(
        send(&mut raw, &["ZSCAN", "z", "0"]),
        "*2\r\n$1\r\n0\r\n*4\r\n$1\r\na\r\n$18\r\n1.1000000000000001\r\n$1\r\nb\r\n$1\r\n2\r\n"
    );
    let _ = send(&mut raw, &["HELLO", "3"]);
    assert_eq!(
        send(&mut raw, &["ZSCORE", "z", "a"]),
        ",1.1000000000000001\r\n"
    );
    assert_eq!(send(&mut raw, &["ZSCORE", "z", "x"]), "_\r\n");
    assert_eq!(send(&mut raw, &["ZRANK", "z", "x"]), "_\r\n");
    assert_eq!(
        send(&mut raw, &["ZRANGE", "z", "0", "1", "WITHSCORES"]),
        "*2\r\n*2\r\n$1\r\na\r\n,1.1000000000000001\r\n*2\r\n$1\r\nb\r\n,2\r\n"
    );
    assert_eq!(
        send(&mut raw, &["ZMSCORE", "z", "b", "x"]),
        "*2\r\n,2\r\n_\r\n"
    );
    assert_eq!(
        send(&mut raw, &["ZSCAN", "z", "0", "MATCH", "b"]),
        "*2\r\n$1\r\n0\r\n*2\r\n$1\r\nb\r\n$1\r\n2\r\n"
    );
    assert_eq!(send(&mut raw, &["ZADD", "z", "3", "c", "4", "d"]), ":2\r\n");
    assert_eq!(
        send(&mut raw, &["ZPOPMIN", "z"]),
        "*2\r\n$1\r\na\r\n,1.1000000000000001\r\n"
    );
    assert_eq!(
        send(&mut raw, &["ZPOPMIN", "z", "1"]),
        "*1\r\n*2\r\n$1\r\nb\r\n,2\r\n"
    );
    assert_eq!(
        send(&mut raw, &["ZRANDMEMBER", "z", "5", "WITHSCORES"]),
        "*2\r\n*2\r\n$1\r\nd\r\n,4\r\n*2\r\n$1\r\nc\r\n,3\r\n"
    );
    assert_eq!(send(&mut raw, &["ZINCRBY", "z", "0.5", "c"]), ",3.5\r\n");
    assert_eq!(send(&mut raw, &["ZPOPMIN", "z", "0"]), "*0\r\n");
}

#[test]
fn wrong_types_both_ways() {
    let server = start();
    let c = &mut server.client();
    q::<()>(c, &["SET", "str", "v"]).unwrap();
    q::<i64>(c, &["ZADD", "z", "1", "a"]).unwrap();
    for words in [
        &["ZADD", "str", "1", "a"][..],
        &["ZADD", "str", "XX", "1", "a"],
        &["ZINCRBY", "str", "1", "a"],
        &["ZREM", "str", "a"],
        &["ZCARD", "str"],
        &["ZSCORE", "str", "a"],
        &["ZMSCORE", "str", "a"],
        &["ZRANK", "str", "a"],
        &["ZREVRANK", "str", "a"],
        &["ZCOUNT", "str", "0", "1"],
        &["ZLEXCOUNT", "str", "-", "+"],
        &["ZRANGE", "str", "0", "-1"],
        &["ZRANGE", "str", "0", "1", "BYSCORE"],
        &["ZREVRANGE", "str", "0", "-1"],
        &["ZRANGEBYSCORE", "str", "0", "1"],
        &["ZREVRANGEBYSCORE", "str", "1", "0"],
        &["ZRANGEBYLEX", "str", "-", "+"],
        &["ZREVRANGEBYLEX", "str", "+", "-"],
        &["ZRANGESTORE", "d", "str", "0", "-1"],
        &["ZREMRANGEBYRANK", "str", "0", "1"],
        &["ZREMRANGEBYSCORE", "str", "0", "1"],
        &["ZREMRANGEBYLEX", "str", "-", "+"],
        &["ZPOPMIN", "str"],
        &["ZPOPMAX", "str", "0"],
        &["ZRANDMEMBER", "str"],
        &["ZRANDMEMBER", "str", "2"],
        &["ZSCAN", "str", "0"],
        &["GET", "z"],
        &["INCR", "z"],
        &["APPEND", "z", "x"],
        &["SADD", "z", "x"],
        &["HSET", "z", "f", "v"],
        &["LPUSH", "z", "x"],
    ] {
        assert_eq!(err_of(c, words), WRONGTYPE, "{words:?}");
    }
    assert_eq!(q::<i64>(c, &["EXISTS", "d"]).unwrap(), 0);
    // Argument errors come before the type check, as in Redis.
    assert_eq!(
        err_of(c, &["ZADD", "str", "x", "a"]),
        "ERR value is not a valid float"
    );
    assert_eq!(
        err_of(c, &["ZCOUNT", "str", "x", "1"]),
        "ERR min or max is not a float"
    );
    // ZRANGESTORE overwrites a destination of any type; SET overwrites a sorted set.
    assert_eq!(
        q::<i64>(c, &["ZRANGESTORE", "str", "z", "0", "-1"]).unwrap(),
        1
    );
    assert_eq!(q::<String>(c, &["TYPE", "str"]).unwrap(), "zset");
    q::<()>(c, &["SET", "z", "plain"]).unwrap();
    assert_eq!(q::<String>(c, &["GET", "z"]).unwrap(), "plain");
}

#[test]
fn encodings_switch_at_redis_thresholds() {
    let server = start();
    let c = &mut server.client();
    let items =
        |n: usize| -> Vec<(f64, String)> { (0..n).map(|i| (i as f64, format!("m{i}"))).collect() };
    assert_eq!(zadd_many(c, "e128", &items(128)), 128);
    assert_eq!(encoding(c, "e128"), "listpack");
    assert_eq!(q::<String>(c, &["TYPE", "e128"]).unwrap(), "zset");
    // Updates and skipped adds never convert.
    q::<i64>(c, &["ZADD", "e128", "XX", "1", "new", "5", "m5"]).unwrap();
    q::<i64>(c, &["ZADD", "e128", "NX", "1", "m1"]).unwrap();
    assert_eq!(encoding(c, "e128"), "listpack");
    q::<i64>(c, &["ZADD", "e128", "128", "m128"]).unwrap();
    assert_eq!(encoding(c, "e128"), "skiplist");
    q::<i64>(c, &["ZREMRANGEBYRANK", "e128", "10", "-1"]).unwrap();
    assert_eq!(encoding(c, "e128"), "skiplist", "never back");
    assert_eq!(q::<i64>(c, &["ZCARD", "e128"]).unwrap(), 10);
    let m64 = "x".repeat(64);
    let m65 = "y".repeat(65);
    q::<i64>(c, &["ZADD", "e64", "1", &m64]).unwrap();
    assert_eq!(encoding(c, "e64"), "listpack");
    q::<i64>(c, &["ZADD", "e64", "2", &m65]).unwrap();
    assert_eq!(encoding(c, "e64"), "skiplist");
    q::<i64>(c, &["ZADD", "e65", "1", &m65]).unwrap();
    assert_eq!(encoding(c, "e65"), "skiplist");
    q::<String>(c, &["ZINCRBY", "e65i", "1", &m65]).unwrap();
    assert_eq!(encoding(c, "e65i"), "skiplist");
    // ZRANGESTORE builds its result the same way.
    zadd_many(c, "e129", &items(129));
    assert_eq!(encoding(c, "e129"), "skiplist");
    assert_eq!(
        q::<i64>(c, &["ZRANGESTORE", "st", "e129", "0", "127"]).unwrap(),
        128
    );
    assert_eq!(encoding(c, "st"), "listpack");
    assert_eq!(
        q::<i64>(c, &["ZRANGESTORE", "st", "e129", "0", "-1"]).unwrap(),
        129
    );
    assert_eq!(encoding(c, "st"), "skiplist");
    assert_eq!(
        q::<i64>(c, &["ZRANGESTORE", "st", "e65", "0", "-1"]).unwrap(),
        1
    );
    assert_eq!(encoding(c, "st"), "skiplist");
    // COPY keeps the encoding; pops from a skiplist keep it too.
    assert_eq!(q::<i64>(c, &["COPY", "e129", "copy"]).unwrap(), 1);
    assert_eq!(encoding(c, "copy"), "skiplist");
    q::<Vec<String>>(c, &["ZPOPMIN", "e129", "120"]).unwrap();
    assert_eq!(encoding(c, "e129"), "skiplist");
    assert_eq!(
        q::<Vec<String>>(c, &["ZRANGE", "e129", "0", "-1"]).unwrap(),
        (120..129).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
    assert_eq!(q::<i64>(c, &["ZCARD", "copy"]).unwrap(), 129);
}

/// A deterministic generator for the model tests.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The reference: entries sorted by (score, member bytes), as Redis orders them.
struct Model {
    entries: Vec<(f64, String)>,
}

impl Model {
    fn new(mut entries: Vec<(f64, String)>) -> Model {
        entries.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap().then(a.1.cmp(&b.1)));
        Model { entries }
    }

    fn ranks(&self, start: i64, stop: i64) -> Vec<usize> {
        let len = self.entries.len() as i64;
        let mut s = if start < 0 { start + len } else { start };
        let mut e = if stop < 0 { stop + len } else { stop };
        s = s.max(0);
        if s > e || s >= len {
            return vec![];
        }
        e = e.min(len - 1);
        (s as usize..=e as usize).collect()
    }

    fn in_score(x: f64, lo: (f64, bool), hi: (f64, bool)) -> bool {
        let above = if lo.1 { x > lo.0 } else { x >= lo.0 };
        let below = if hi.1 { x < hi.0 } else { x <= hi.0 };
        above && below
    }
}

fn bound_text(x: f64, excl: bool) -> String {
    let num = if x == f64::INFINITY {
        "+inf".to_string()
    } else if x == f64::NEG_INFINITY {
        "-inf".to_string()
    } else {
        format!("{x}")
    };
    if excl {
        format!("({num}")
    } else {
        num
    }
}

/// Offset/count: Redis's semantics (negative offset: nothing; negative count: all).
fn limited<T: Clone>(v: &[T], offset: i64, count: i64) -> Vec<T> {
    if offset < 0 || count == 0 {
        return vec![];
    }
    let it = v.iter().skip(offset as usize).cloned();
    if count < 0 {
        it.collect()
    } else {
        it.take(count as usize).collect()
    }
}

#[test]
fn range_queries_on_10k_members_match_a_model() {
    let server = start();
    let c = &mut server.client();
    let mut rng = Lcg(42);
    // Scores with many ties (quarters from 0 to 250), members of varied lengths.
    let items: Vec<(f64, String)> = (0..10_000)
        .map(|i| {
            let score = rng.below(1000) as f64 / 4.0;
            (score, format!("m{}:{}", rng.below(100_000), i))
        })
        .collect();
    assert_eq!(zadd_many(c, "big", &items), 10_000);
    assert_eq!(encoding(c, "big"), "skiplist");
    let model = Model::new(items);
    let n = model.entries.len() as i64;
    let names = |idx: &[usize], rev: bool| -> Vec<String> {
        let mut v: Vec<String> = idx.iter().map(|&i| model.entries[i].1.clone()).collect();
        if rev {
            v.reverse();
        }
        v
    };
    // By rank, both directions, with negative and out-of-range indexes.
    for _ in 0..60 {
        let start = rng.below(2 * n as u64 + 40) as i64 - n - 20;
        let stop = start + rng.below(300) as i64 - 20;
        let (s, e) = (start.to_string(), stop.to_string());
        let fwd: Vec<String> = q(c, &["ZRANGE", "big", &s, &e]).unwrap();
        assert_eq!(
            fwd,
            names(&model.ranks(start, stop), false),
            "ZRANGE {s} {e}"
        );
        let rev: Vec<String> = q(c, &["ZRANGE", "big", &s, &e, "REV"]).unwrap();
        let len = n as usize;
        let want: Vec<String> = model
            .ranks(start, stop)
            .iter()
            .map(|&r| model.entries[len - 1 - r].1.clone())
            .collect();
        assert_eq!(rev, want, "ZRANGE {s} {e} REV");
    }
    let got = with_scores(c, &["ZRANGE", "big", "5000", "5009", "WITHSCORES"]);
    for (i, (m, s)) in got.iter().enumerate() {
        assert_eq!(m, &model.entries[5000 + i].1);
        assert_eq!(s.parse::<f64>().unwrap(), model.entries[5000 + i].0);
    }
    // By score with LIMIT, both directions.
    for round in 0..80 {
        let a = rng.below(1100) as f64 / 4.0 - 10.0;
        let b = a + rng.below(120) as f64 / 4.0;
        let lo = if round % 7 == 0 { f64::NEG_INFINITY } else { a };
        let hi = if round % 11 == 0 { f64::INFINITY } else { b };
        let (lx, hx) = (rng.below(2) == 1, rng.below(2) == 1);
        let idx: Vec<usize> = (0..model.entries.len())
            .filter(|&i| Model::in_score(model.entries[i].0, (lo, lx), (hi, hx)))
            .collect();
        let (min, max) = (bound_text(lo, lx), bound_text(hi, hx));
        let count: i64 = q(c, &["ZCOUNT", "big", &min, &max]).unwrap();
        assert_eq!(count, idx.len() as i64, "ZCOUNT {min} {max}");
        let offset = rng.below(idx.len() as u64 + 20) as i64 - 3;
        let limit = rng.below(60) as i64 - 5;
        let (o, l) = (offset.to_string(), limit.to_string());
        let fwd: Vec<String> = q(
            c,
            &["ZRANGE", "big", &min, &max, "BYSCORE", "LIMIT", &o, &l],
        )
        .unwrap();
        assert_eq!(
            fwd,
            limited(&names(&idx, false), offset, limit),
            "{min} {max} LIMIT {o} {l}"
        );
        let rev: Vec<String> =
            q(c, &["ZREVRANGEBYSCORE", "big", &max, &min, "LIMIT", &o, &l]).unwrap();
        assert_eq!(
            rev,
            limited(&names(&idx, true), offset, limit),
            "REV {max} {min} LIMIT {o} {l}"
        );
        let all: Vec<String> = q(c, &["ZRANGEBYSCORE", "big", &min, &max]).unwrap();
        assert_eq!(all, names(&idx, false));
    }
    // Ranks of members.
    for _ in 0..100 {
        let r = rng.below(n as u64) as usize;
        let m = &model.entries[r].1;
        assert_eq!(q::<i64>(c, &["ZRANK", "big", m]).unwrap(), r as i64);
        assert_eq!(
            q::<i64>(c, &["ZREVRANK", "big", m]).unwrap(),
            n - 1 - r as i64
        );
    }
    // Lex ranges on a set with one score.
    let lex_items: Vec<(f64, String)> = (0..10_000)
        .map(|i| {
            (
                0.0,
                format!("{:x}", (i as u64).wrapping_mul(2654435761) % 1_000_003),
            )
        })
        .collect();
    let lex_added = zadd_many(c, "lex", &lex_items);
    let lex = Model::new(lex_items);
    let mut lex_members: Vec<String> = lex.entries.iter().map(|e| e.1.clone()).collect();
    lex_members.dedup();
    assert_eq!(lex_added as usize, lex_members.len());
    for _ in 0..80 {
        let pick = |rng: &mut Lcg| -> (String, Option<(String, bool)>) {
            match rng.below(12) {
                0 => ("-".to_string(), None),
                1 => ("+".to_string(), None),
                _ => {
                    let base = format!("{:x}", rng.below(1_000_003));
                    let excl = rng.below(2) == 1;
                    (
                        format!("{}{base}", if excl { "(" } else { "[" }),
                        Some((base, excl)),
                    )
                }
            }
        };
        let (min, lo) = pick(&mut rng);
        let (max, hi) = pick(&mut rng);
        let ok = |m: &String| -> bool {
            let above = match (&lo, min.as_str()) {
                (Some((b, true)), _) => m.as_bytes() > b.as_bytes(),
                (Some((b, false)), _) => m.as_bytes() >= b.as_bytes(),
                (None, "-") => true,
                _ => false,
            };
            let below = match (&hi, max.as_str()) {
                (Some((b, true)), _) => m.as_bytes() < b.as_bytes(),
                (Some((b, false)), _) => m.as_bytes() <= b.as_bytes(),
                (None, "+") => true,
                _ => false,
            };
            above && below
        };
        let want: Vec<String> = lex_members.iter().filter(|m| ok(m)).cloned().collect();
        assert_eq!(
            q::<i64>(c, &["ZLEXCOUNT", "lex", &min, &max]).unwrap(),
            want.len() as i64,
            "ZLEXCOUNT {min} {max}"
        );
        let offset = rng.below(want.len() as u64 + 5) as i64;
        let limit = rng.below(40) as i64 - 3;
        let (o, l) = (offset.to_string(), limit.to_string());
        let fwd: Vec<String> = q(c, &["ZRANGEBYLEX", "lex", &min, &max, "LIMIT", &o, &l]).unwrap();
        assert_eq!(
            fwd,
            limited(&want, offset, limit),
            "{min} {max} LIMIT {o} {l}"
        );
        let mut rev_want = want.clone();
        rev_want.reverse();
        let rev: Vec<String> = q(
            c,
            &["ZRANGE", "lex", &max, &min, "BYLEX", "REV", "LIMIT", &o, &l],
        )
        .unwrap();
        assert_eq!(
            rev,
            limited(&rev_want, offset, limit),
            "REV {max} {min} LIMIT {o} {l}"
        );
    }
    // Range removals, then the whole set against the model.
    let mut left: Vec<(f64, String)> = model.entries.clone();
    for round in 0..20 {
        match round % 3 {
            0 => {
                let start = rng.below(left.len() as u64) as i64;
                let stop = start + rng.below(50) as i64;
                let idx = Model {
                    entries: left.clone(),
                }
                .ranks(start, stop);
                let removed: i64 = q(
                    c,
                    &[
                        "ZREMRANGEBYRANK",
                        "big",
                        &start.to_string(),
                        &stop.to_string(),
                    ],
                )
                .unwrap();
                assert_eq!(removed as usize, idx.len());
                if let (Some(&f), Some(&l)) = (idx.first(), idx.last()) {
                    left.drain(f..=l);
                }
            }
            1 => {
                let a = rng.below(1000) as f64 / 4.0;
                let b = a + rng.below(8) as f64 / 4.0;
                let lx = rng.below(2) == 1;
                let before = left.len();
                left.retain(|e| !Model::in_score(e.0, (a, lx), (b, false)));
                let removed: i64 = q(
                    c,
                    &[
                        "ZREMRANGEBYSCORE",
                        "big",
                        &bound_text(a, lx),
                        &bound_text(b, false),
                    ],
                )
                .unwrap();
                assert_eq!(removed as usize, before - left.len());
            }
            _ => {
                // Pops from both ends.
                let k = rng.below(30) as usize;
                let min: Vec<String> = q(c, &["ZPOPMIN", "big", &k.to_string()]).unwrap();
                let want: Vec<String> = left.drain(..k.min(left.len())).map(|e| e.1).collect();
                assert_eq!(
                    pairs(min).into_iter().map(|p| p.0).collect::<Vec<_>>(),
                    want
                );
                let max: Vec<String> = q(c, &["ZPOPMAX", "big", "2"]).unwrap();
                let top: Vec<String> = (0..2.min(left.len()))
                    .filter_map(|_| left.pop())
                    .map(|e| e.1)
                    .collect();
                assert_eq!(pairs(max).into_iter().map(|p| p.0).collect::<Vec<_>>(), top);
            }
        }
    }
    let all = with_scores(c, &["ZRANGE", "big", "0", "-1", "WITHSCORES"]);
    assert_eq!(all.len(), left.len());
    for ((m, s), (ws, wm)) in all.iter().zip(&left) {
        assert_eq!(m, wm);
        assert_eq!(s.parse::<f64>().unwrap(), *ws);
    }
    let lex_removed: i64 = q(c, &["ZREMRANGEBYLEX", "lex", "[4", "(8"]).unwrap();
    let lex_left: Vec<String> = lex_members
        .iter()
        .filter(|m| !(m.as_str() >= "4" && m.as_str() < "8"))
        .cloned()
        .collect();
    assert_eq!(lex_removed as usize, lex_members.len() - lex_left.len());
    assert_eq!(
        q::<Vec<String>>(c, &["ZRANGE", "lex", "0", "-1"]).unwrap(),
        lex_left
    );
}

#[test]
fn pops_and_random_members() {
    let server = start();
    let c = &mut server.client();
    q::<i64>(
        c,
        &[
            "ZADD", "p", "1", "a", "2", "b", "3", "c", "4", "d", "5", "e",
        ],
    )
    .unwrap();
    assert_eq!(q::<Vec<String>>(c, &["ZPOPMIN", "p"]).unwrap(), ["a", "1"]);
    assert_eq!(q::<Vec<String>>(c, &["ZPOPMAX", "p"]).unwrap(), ["e", "5"]);
    assert_eq!(
        q::<Vec<String>>(c, &["ZPOPMIN", "p", "2"]).unwrap(),
        ["b", "2", "c", "3"]
    );
    assert!(q::<Vec<String>>(c, &["ZPOPMAX", "p", "0"])
        .unwrap()
        .is_empty());
    assert_eq!(
        q::<Vec<String>>(c, &["ZPOPMAX", "p", "10"]).unwrap(),
        ["d", "4"]
    );
    assert_eq!(q::<i64>(c, &["EXISTS", "p"]).unwrap(), 0);
    assert!(q::<Vec<String>>(c, &["ZPOPMIN", "p"]).unwrap().is_empty());

    let members: Vec<(f64, String)> = (0..1000).map(|i| (i as f64, format!("r{i}"))).collect();
    zadd_many(c, "rnd", &members);
    let all: BTreeSet<String> = members.iter().map(|m| m.1.clone()).collect();
    for count in [1, 10, 400, 999] {
        let got: Vec<String> = q(c, &["ZRANDMEMBER", "rnd", &count.to_string()]).unwrap();
        let distinct: BTreeSet<String> = got.iter().cloned().collect();
        assert_eq!(got.len(), count);
        assert_eq!(distinct.len(), count, "distinct for a positive count");
        assert!(distinct.is_subset(&all));
    }
    let whole: Vec<String> = q(c, &["ZRANDMEMBER", "rnd", "5000"]).unwrap();
    assert_eq!(whole.len(), 1000);
    assert_eq!(whole[0], "r999", "the whole set, from the highest");
    let picks: Vec<String> = q(c, &["ZRANDMEMBER", "rnd", "-3000"]).unwrap();
    assert_eq!(picks.len(), 3000);
    let seen: BTreeSet<String> = picks.into_iter().collect();
    assert!(
        seen.len() > 500,
        "repeats allowed, but spread: {}",
        seen.len()
    );
    let scored = with_scores(c, &["ZRANDMEMBER", "rnd", "-20", "WITHSCORES"]);
    assert_eq!(scored.len(), 20);
    for (m, s) in scored {
        assert_eq!(m[1..].parse::<f64>().unwrap(), s.parse::<f64>().unwrap());
    }
    let one: String = q(c, &["ZRANDMEMBER", "rnd"]).unwrap();
    assert!(all.contains(&one));
    assert_eq!(
        q::<Option<String>>(c, &["ZRANDMEMBER", "nosuch"]).unwrap(),
        None
    );
    assert!(q::<Vec<String>>(c, &["ZRANDMEMBER", "nosuch", "-5"])
        .unwrap()
        .is_empty());
    assert!(q::<Vec<String>>(c, &["ZRANDMEMBER", "rnd", "0"])
        .unwrap()
        .is_empty());
    assert_eq!(
        err_of(c, &["ZRANDMEMBER", "rnd", "-9223372036854775808"]),
        "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807"
    );
    assert_eq!(
        err_of(
            c,
            &["ZRANDMEMBER", "rnd", "-9223372036854775807", "WITHSCORES"]
        ),
        "ERR value is out of range"
    );
    assert_eq!(
        err_of(c, &["ZRANDMEMBER", "rnd", "5", "WITHSCORE"]),
        "ERR syntax error"
    );
    // A negative count is capped instead of building a reply without bound.
    let e = err_of(c, &["ZRANDMEMBER", "rnd", "-4611686018427387903"]);
    assert!(e.starts_with("ERR count is out of range"), "{e}");
    // A huge positive count is just the whole set.
    let huge: Vec<String> = q(c, &["ZRANDMEMBER", "rnd", "9223372036854775807"]).unwrap();
    assert_eq!(huge.len(), 1000);
}

#[test]
fn pops_from_a_big_set_are_bounded() {
    let server = start();
    let c = &mut server.client();
    let members: Vec<(f64, String)> = (0..20_000).map(|i| (i as f64, format!("b{i}"))).collect();
    zadd_many(c, "big", &members);
    let t = std::time::Instant::now();
    for _ in 0..500 {
        let got: Vec<String> = q(c, &["ZPOPMIN", "big", "10"]).unwrap();
        assert_eq!(got.len(), 20);
    }
    for _ in 0..500 {
        let got: Vec<String> = q(
            c,
            &[
                "ZRANGE", "big", "-inf", "+inf", "BYSCORE", "LIMIT", "9000", "3",
            ],
        )
        .unwrap();
        assert_eq!(got.len(), 3);
    }
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    assert_eq!(q::<i64>(c, &["ZCARD", "big"]).unwrap(), 15_000);
    assert_eq!(
        q::<Vec<String>>(c, &["ZRANGE", "big", "0", "0"]).unwrap(),
        ["b5000"]
    );
}

#[test]
fn zscan_walks_every_member() {
    let server = start();
    let c = &mut server.client();
    let members: Vec<(f64, String)> = (0..3000)
        .map(|i| (i as f64 / 2.0, format!("s{i}")))
        .collect();
    zadd_many(c, "big", &members);
    let mut seen = BTreeMap::new();
    let mut cursor = "0".to_string();
    let mut calls = 0;
    loop {
        let (next, items): (String, Vec<String>) =
            q(c, &["ZSCAN", "big", &cursor, "COUNT", "100"]).unwrap();
        for p in pairs(items) {
            seen.insert(p.0, p.1);
        }
        calls += 1;
        cursor = next;
        if cursor == "0" {
            break;
        }
        assert!(calls < 1000);
    }
    assert_eq!(seen.len(), 3000);
    assert_eq!(seen["s3"], "1.5");
    assert!(calls > 10, "paged: {calls}");
    // MATCH filters members (and their scores).
    let mut matched = BTreeSet::new();
    let mut cursor = "0".to_string();
    loop {
        let (next, items): (String, Vec<String>) = q(
            c,
            &["ZSCAN", "big", &cursor, "MATCH", "s1??", "COUNT", "500"],
        )
        .unwrap();
        matched.extend(pairs(items).into_iter().map(|p| p.0));
        cursor = next;
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(matched.len(), 100);
    // A listpack comes back whole.
    q::<i64>(c, &["ZADD", "small", "2", "b", "1", "a"]).unwrap();
    let (next, items): (String, Vec<String>) =
        q(c, &["ZSCAN", "small", "0", "COUNT", "1"]).unwrap();
    assert_eq!((next.as_str(), items), ("0", strs(&["a", "1", "b", "2"])));
    assert_eq!(err_of(c, &["ZSCAN", "small", "x"]), "ERR invalid cursor");
    assert_eq!(
        err_of(c, &["ZSCAN", "small", "0", "COUNT", "0"]),
        "ERR syntax error"
    );
    assert_eq!(
        err_of(c, &["ZSCAN", "small", "0", "COUNT", "x"]),
        "ERR value is not an integer or out of range"
    );
    let (next, items): (String, Vec<String>) =
        q(c, &["ZSCAN", "nosuch", "0", "COUNT", "0"]).unwrap();
    assert_eq!((next.as_str(), items.len()), ("0", 0));
}

#[test]
fn zrangestore_across_shards() {
    let server = start();
    let c = &mut server.client();
    let k = spread("rs", 2);
    let (src, d1, d2, d3) = (&k[0][0], &k[1][0], &k[2][0], &k[3][0]);
    let same = &k[0][1];
    q::<i64>(
        c,
        &[
            "ZADD", src, "1", "a", "2", "b", "3", "c", "4", "d", "5", "e",
        ],
    )
    .unwrap();
    assert_eq!(q::<i64>(c, &["ZRANGESTORE", d1, src, "1", "3"]).unwrap(), 3);
    assert_eq!(
        with_scores(c, &["ZRANGE", d1, "0", "-1", "WITHSCORES"]),
        [("b", "2"), ("c", "3"), ("d", "4")].map(|(m, s)| (m.to_string(), s.to_string()))
    );
    assert_eq!(
        q::<i64>(
            c,
            &[
                "ZRANGESTORE",
                d2,
                src,
                "5",
                "(1",
                "BYSCORE",
                "REV",
                "LIMIT",
                "1",
                "2"
            ]
        )
        .unwrap(),
        2
    );
    assert_eq!(
        q::<Vec<String>>(c, &["ZRANGE", d2, "0", "-1"]).unwrap(),
        ["c", "d"]
    );
    assert_eq!(
        q::<i64>(c, &["ZRANGESTORE", same, src, "0", "0"]).unwrap(),
        1,
        "one shard"
    );
    assert_eq!(
        q::<Vec<String>>(c, &["ZRANGE", same, "0", "-1"]).unwrap(),
        ["a"]
    );
    // Onto a string with a TTL: replaced, TTL gone.
    q::<()>(c, &["SET", d3, "string", "EX", "100"]).unwrap();
    assert_eq!(
        q::<i64>(c, &["ZRANGESTORE", d3, src, "-1", "-1"]).unwrap(),
        1
    );
    assert_eq!(q::<String>(c, &["TYPE", d3]).unwrap(), "zset");
    assert_eq!(q::<i64>(c, &["TTL", d3]).unwrap(), -1);
    // An empty range deletes the destination; so does an absent source.
    assert_eq!(
        q::<i64>(c, &["ZRANGESTORE", d1, src, "10", "20"]).unwrap(),
        0
    );
    assert_eq!(q::<i64>(c, &["EXISTS", d1]).unwrap(), 0);
    assert_eq!(
        q::<i64>(c, &["ZRANGESTORE", d2, "nosuch", "0", "-1"]).unwrap(),
        0
    );
    assert_eq!(q::<i64>(c, &["EXISTS", d2]).unwrap(), 0);
    // Onto its own source.
    assert_eq!(
        q::<i64>(c, &["ZRANGESTORE", src, src, "1", "2"]).unwrap(),
        2
    );
    assert_eq!(
        q::<Vec<String>>(c, &["ZRANGE", src, "0", "-1"]).unwrap(),
        ["b", "c"]
    );
    // A wrong-typed source fails and leaves the destination alone.
    q::<()>(c, &["SET", d1, "s"]).unwrap();
    assert_eq!(err_of(c, &["ZRANGESTORE", d3, d1, "0", "-1"]), WRONGTYPE);
    assert_eq!(
        q::<Vec<String>>(c, &["ZRANGE", d3, "0", "-1"]).unwrap(),
        ["e"]
    );
}

#[test]
fn multi_exec_across_shards() {
    let server = start();
    let c = &mut server.client();
    let k = spread("t", 1);
    let (a, b, d, e) = (&k[0][0], &k[1][0], &k[2][0], &k[3][0]);
    let (added, incr, stored, popped, range, card): (
        i64,
        String,
        i64,
        Vec<String>,
        Vec<String>,
        i64,
    ) = redis::pipe()
        .atomic()
        .cmd("ZADD")
        .arg(a)
        .arg("1")
        .arg("x")
        .arg("2")
        .arg("y")
        .arg("3")
        .arg("z")
        .cmd("ZINCRBY")
        .arg(b)
        .arg("5")
        .arg("w")
        .cmd("ZRANGESTORE")
        .arg(d)
        .arg(a)
        .arg("(1")
        .arg("+inf")
        .arg("BYSCORE")
        .cmd("ZPOPMIN")
        .arg(a)
        .arg("2")
        .cmd("ZRANGE")
        .arg(d)
        .arg("0")
        .arg("-1")
        .arg("WITHSCORES")
        .cmd("ZCARD")
        .arg(a)
        .query(c)
        .unwrap();
    assert_eq!((added, incr.as_str(), stored, card), (3, "5", 2, 1));
    assert_eq!(popped, ["x", "1", "y", "2"]);
    assert_eq!(range, ["y", "2", "z", "3"]);
    // A failing command inside does not stop the others (Redis semantics).
    q::<()>(c, &["SET", e, "s"]).unwrap();
    let mut raw = server.raw();
    for words in [
        &[&b"MULTI"[..]][..],
        &[b"ZADD", e.as_bytes(), b"1", b"m"],
        &[b"ZRANGESTORE", e.as_bytes(), d.as_bytes(), b"0", b"0"],
        &[b"ZSCORE", e.as_bytes(), b"y"],
        &[b"EXEC"],
    ] {
        raw.cmd(words);
    }
    for want in ["+OK\r\n", "+QUEUED\r\n", "+QUEUED\r\n", "+QUEUED\r\n"] {
        assert_eq!(raw.reply_str(), want);
    }
    assert_eq!(
        raw.reply_str(),
        format!("*3\r\n-{WRONGTYPE}\r\n:1\r\n$1\r\n2\r\n")
    );
    // WATCH sees ZADD's change.
    let mut w = server.raw();
    for words in [
        &[&b"WATCH"[..], a.as_bytes()][..],
        &[b"MULTI"],
        &[b"ZADD", b.as_bytes(), b"1", b"v"],
    ] {
        w.cmd(words);
        let _ = w.reply();
    }
    q::<i64>(c, &["ZADD", a, "9", "new"]).unwrap();
    w.cmd(&[b"EXEC"]);
    assert_eq!(w.reply_str(), "*-1\r\n");
    assert_eq!(q::<Option<String>>(c, &["ZSCORE", b, "v"]).unwrap(), None);
}

#[test]
fn generic_commands_on_sorted_sets() {
    let server = start();
    let c = &mut server.client();
    let k = spread("g", 1);
    let (a, b, d) = (&k[0][0], &k[1][0], &k[2][0]);
    q::<i64>(c, &["ZADD", a, "2", "b", "1", "a", "3", "c"]).unwrap();
    assert_eq!(q::<String>(c, &["TYPE", a]).unwrap(), "zset");
    assert_eq!(q::<i64>(c, &["EXPIRE", a, "100"]).unwrap(), 1);
    q::<()>(c, &["RENAME", a, b]).unwrap();
    assert_eq!(
        q::<Vec<String>>(c, &["ZRANGE", b, "0", "-1"]).unwrap(),
        ["a", "b", "c"]
    );
    assert!(
        q::<i64>(c, &["TTL", b]).unwrap() > 90,
        "RENAME keeps the TTL"
    );
    assert_eq!(q::<i64>(c, &["COPY", b, d]).unwrap(), 1);
    q::<i64>(c, &["ZADD", d, "9", "z"]).unwrap();
    assert_eq!(
        q::<i64>(c, &["ZCARD", b]).unwrap(),
        3,
        "a copy is independent"
    );
    assert_eq!(q::<i64>(c, &["ZCARD", d]).unwrap(), 4);
    assert_eq!(q::<i64>(c, &["DEL", b, d]).unwrap(), 2);
    assert_eq!(q::<i64>(c, &["EXISTS", b, d]).unwrap(), 0);
    q::<i64>(c, &["ZADD", "short", "1", "x"]).unwrap();
    q::<i64>(c, &["PEXPIRE", "short", "50"]).unwrap();
    std::thread::sleep(Duration::from_millis(120));
    assert_eq!(q::<i64>(c, &["ZCARD", "short"]).unwrap(), 0);
    assert_eq!(q::<i64>(c, &["ZADD", "short", "2", "y"]).unwrap(), 1);
    assert_eq!(
        q::<i64>(c, &["TTL", "short"]).unwrap(),
        -1,
        "a new set after expiry"
    );
    assert_eq!(
        q::<Vec<String>>(c, &["ZRANGE", "short", "0", "-1", "WITHSCORES"]).unwrap(),
        ["y", "2"]
    );
}

#[test]
fn keyspace_events_are_redis_names() {
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
    // One hash tag: the events of one shard arrive in order.
    for words in [
        &["ZADD", "{e}a", "1", "x", "2", "y", "3", "z"][..],
        &["ZADD", "{e}a", "1", "x"],
        &["ZADD", "{e}a", "INCR", "1", "x"],
        &["ZINCRBY", "{e}a", "0", "x"],
        &["ZINCRBY", "{e}a", "1", "x"],
        &["ZREM", "{e}a", "nosuch"],
        &["ZREM", "{e}a", "y"],
        &["ZRANGESTORE", "{e}d", "{e}a", "0", "-1"],
        &["ZRANGESTORE", "{e}d", "{e}a", "5", "6"],
        &["ZRANGESTORE", "{e}d", "{e}a", "5", "6"],
        &["ZADD", "{e}a", "4", "w", "5", "v", "6", "u"],
        &["ZREMRANGEBYRANK", "{e}a", "0", "0"],
        &["ZREMRANGEBYRANK", "{e}a", "9", "10"],
        &["ZREMRANGEBYSCORE", "{e}a", "4", "4"],
        &["ZADD", "{e}l", "0", "a", "0", "b"],
        &["ZREMRANGEBYLEX", "{e}l", "[a", "[a"],
        &["ZPOPMIN", "{e}a"],
        &["ZPOPMIN", "{e}a", "0"],
        &["ZPOPMAX", "{e}a", "5"],
    ] {
        q::<Value>(c, words).unwrap();
    }
    let want = [
        "zadd {e}a",
        "zincr {e}a",
        "zincr {e}a",
        "zrem {e}a",
        "zrangestore {e}d",
        "del {e}d",
        "zadd {e}a",
        "zremrangebyrank {e}a",
        "zremrangebyscore {e}a",
        "zadd {e}l",
        "zremrangebylex {e}l",
        "zpopmin {e}a",
        "zpopmax {e}a",
        "del {e}a",
    ];
    let mut got = Vec::new();
    for _ in 0..want.len() {
        let m = ev.reply_str().replace("\r\n", "\n");
        let parts: Vec<&str> = m.split('\n').collect();
        got.push(format!(
            "{} {}",
            parts[6].trim_start_matches("__keyevent@0__:"),
            parts[8]
        ));
    }
    assert_eq!(got, want);
    // Cross-shard ZRANGESTORE is notified under its own name too.
    let mut kev = server.raw();
    kev.cmd(&[b"SUBSCRIBE", b"__keyevent@0__:zrangestore"]);
    let _ = kev.reply();
    let k = spread("ev", 1);
    q::<i64>(c, &["ZADD", &k[0][0], "1", "m"]).unwrap();
    q::<i64>(c, &["ZRANGESTORE", &k[1][0], &k[0][0], "0", "-1"]).unwrap();
    let m = kev.reply_str();
    assert!(m.contains(&k[1][0]), "{m}");
}

fn start_on(dir: &DataDir, shards: usize) -> Server {
    let shards = shards.to_string();
    Server::start_raw(&["--dir", dir.path(), "--shards", &shards], None)
}

/// Every key's type, encoding and members with scores, for comparing across restarts.
fn snapshot(c: &mut redis::Connection, keys: &[String]) -> Vec<(String, String, Vec<String>, i64)> {
    keys.iter()
        .map(|k| {
            let ty: String = q(c, &["TYPE", k]).unwrap();
            let (enc, m) = if ty == "zset" {
                (
                    encoding(c, k),
                    q(c, &["ZRANGE", k, "0", "-1", "WITHSCORES"]).unwrap(),
                )
            } else {
                (String::new(), vec![])
            };
            let ttl: i64 = q(c, &["TTL", k]).unwrap();
            (format!("{k}:{ty}"), enc, m, ttl.min(0))
        })
        .collect()
}

#[test]
fn every_zset_write_survives_restarts() {
    let dir = DataDir::new("zsets");
    let k = spread("pz", 4);
    let keys: Vec<String> = k.iter().flatten().cloned().collect();
    let before = {
        let mut s = start_on(&dir, 4);
        let c = &mut s.client();
        let big: Vec<(f64, String)> = (0..700)
            .map(|i| ((i % 37) as f64 * 1.1, format!("m{i}")))
            .collect();
        zadd_many(c, &k[0][0], &big);
        q::<i64>(
            c,
            &["ZADD", &k[0][0], "XX", "CH", "GT", "100", "m1", "-1", "m2"],
        )
        .unwrap();
        q::<String>(c, &["ZINCRBY", &k[0][0], "0.1", "m3"]).unwrap();
        q::<String>(c, &["ZADD", &k[0][0], "INCR", "-inf", "m4"]).unwrap();
        q::<i64>(c, &["ZREM", &k[0][0], "m5", "m6", "nosuch"]).unwrap();
        q::<i64>(c, &["ZREMRANGEBYRANK", &k[0][0], "10", "19"]).unwrap();
        q::<i64>(c, &["ZREMRANGEBYSCORE", &k[0][0], "(3.3", "5.5"]).unwrap();
        q::<Vec<String>>(c, &["ZPOPMIN", &k[0][0], "7"]).unwrap();
        q::<Vec<String>>(c, &["ZPOPMAX", &k[0][0]]).unwrap();
        // A listpack, lex removals, and an emptied one.
        q::<i64>(
            c,
            &[
                "ZADD", &k[1][0], "0", "a", "0", "b", "0", "c", "0", "d", "inf", "top",
            ],
        )
        .unwrap();
        q::<i64>(c, &["ZREMRANGEBYLEX", &k[1][0], "[b", "[c"]).unwrap();
        q::<i64>(c, &["ZADD", &k[1][1], "1", "x"]).unwrap();
        q::<Vec<String>>(c, &["ZPOPMAX", &k[1][1], "3"]).unwrap();
        q::<i64>(c, &["ZADD", &k[1][2], "1", &"long".repeat(20)]).unwrap();
        // Stores across shards, onto a string, and an emptying one.
        q::<i64>(c, &["ZRANGESTORE", &k[2][0], &k[0][0], "0", "199"]).unwrap();
        q::<i64>(
            c,
            &[
                "ZRANGESTORE",
                &k[2][1],
                &k[0][0],
                "10",
                "20",
                "BYSCORE",
                "LIMIT",
                "5",
                "10",
            ],
        )
        .unwrap();
        q::<()>(c, &["SET", &k[2][2], "was a string", "EX", "1000"]).unwrap();
        q::<i64>(c, &["ZRANGESTORE", &k[2][2], &k[1][0], "0", "-1"]).unwrap();
        q::<i64>(c, &["ZADD", &k[2][3], "1", "y"]).unwrap();
        q::<i64>(c, &["ZRANGESTORE", &k[2][3], &k[1][0], "100", "200"]).unwrap();
        q::<i64>(c, &["ZADD", &k[3][3], "1", "ttl"]).unwrap();
        q::<i64>(c, &["EXPIRE", &k[3][3], "1000"]).unwrap();
        // Blocking pops on ready sets journal themselves as ZPOPMIN / ZPOPMAX key n.
        q::<i64>(
            c,
            &[
                "ZADD", &k[3][0], "1", "p", "2", "q", "3", "r", "4", "s", "5", "t",
            ],
        )
        .unwrap();
        q::<Value>(c, &["BZPOPMIN", &k[3][0], "0"]).unwrap();
        q::<Value>(c, &["BZPOPMAX", "nosuch", &k[3][0], "0"]).unwrap();
        q::<Value>(c, &["BZMPOP", "0", "1", &k[3][0], "MIN", "COUNT", "2"]).unwrap();
        // In a transaction across shards.
        let _: Value = redis::pipe()
            .atomic()
            .cmd("ZADD")
            .arg(&k[3][1])
            .arg("1")
            .arg("t1")
            .arg("2")
            .arg("t2")
            .cmd("ZRANGESTORE")
            .arg(&k[3][2])
            .arg(&k[0][0])
            .arg("-3")
            .arg("-1")
            .cmd("ZPOPMIN")
            .arg(&k[3][1])
            .cmd("ZINCRBY")
            .arg(&k[0][1])
            .arg("2.5")
            .arg("fresh")
            .query(c)
            .unwrap();
        let snap = snapshot(c, &keys);
        s.kill9();
        snap
    };
    assert!(before
        .iter()
        .any(|(_, enc, m, _)| enc == "skiplist" && !m.is_empty()));
    assert!(before
        .iter()
        .any(|(_, enc, m, _)| enc == "listpack" && !m.is_empty()));
    assert!(before.iter().any(|(_, _, _, ttl)| *ttl == 0), "a TTL kept");
    let s30 = &before
        .iter()
        .find(|(k2, ..)| k2.starts_with(&format!("{}:", k[3][0])))
        .unwrap()
        .2;
    assert_eq!(s30, &strs(&["s", "4"]), "three blocking pops applied");
    for (shards, graceful) in [(4, true), (2, false), (3, true), (1, true)] {
        let mut s = start_on(&dir, shards);
        let c = &mut s.client();
        assert_eq!(
            snapshot(c, &keys),
            before,
            "after restart on {shards} shards"
        );
        if graceful {
            assert!(s.terminate().success());
        } else {
            s.kill9();
        }
    }
}

/// Players gain points, the board ranks them (ties by name), pages through it, and
/// trims the tail.
#[test]
fn leaderboard() {
    let server = start();
    let c = &mut server.client();
    let board = "board";
    let mut rng = Lcg(7);
    let mut model: BTreeMap<String, i64> = BTreeMap::new();
    for _ in 0..3000 {
        let player = format!("player{:03}", rng.below(500));
        let pts = rng.below(100) as i64;
        let got: String = q(c, &["ZINCRBY", board, &pts.to_string(), &player]).unwrap();
        let total = model.entry(player).or_default();
        *total += pts;
        assert_eq!(got, total.to_string());
    }
    let mut ranked: Vec<(i64, String)> = model.iter().map(|(p, s)| (*s, p.clone())).collect();
    // Highest first; equal scores in reverse member order (ZREVRANGE reverses the order).
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    let top10 = with_scores(c, &["ZREVRANGE", board, "0", "9", "WITHSCORES"]);
    let want: Vec<(String, String)> = ranked[..10]
        .iter()
        .map(|(s, p)| (p.clone(), s.to_string()))
        .collect();
    assert_eq!(top10, want);
    // Each player's position.
    for (i, (_, p)) in ranked.iter().enumerate().step_by(37) {
        assert_eq!(q::<i64>(c, &["ZREVRANK", board, p]).unwrap(), i as i64);
    }
    // Paging by score: page 3 of 20, strictly below a cut-off.
    let cut = ranked[100].0;
    let page: Vec<String> = q(
        c,
        &[
            "ZRANGE",
            board,
            &format!("({cut}"),
            "-inf",
            "BYSCORE",
            "REV",
            "LIMIT",
            "40",
            "20",
        ],
    )
    .unwrap();
    let below: Vec<String> = ranked
        .iter()
        .filter(|e| e.0 < cut)
        .map(|e| e.1.clone())
        .collect();
    assert_eq!(page, limited(&below, 40, 20));
    // How many at or above a threshold, and a top-100 copy for display.
    let threshold = ranked[50].0;
    assert_eq!(
        q::<i64>(c, &["ZCOUNT", board, &threshold.to_string(), "+inf"]).unwrap(),
        ranked.iter().filter(|e| e.0 >= threshold).count() as i64
    );
    assert_eq!(
        q::<i64>(c, &["ZRANGESTORE", "top100", board, "0", "99", "REV"]).unwrap(),
        100
    );
    assert_eq!(
        q::<Vec<String>>(c, &["ZREVRANGE", "top100", "0", "2"]).unwrap(),
        ranked[..3].iter().map(|e| e.1.clone()).collect::<Vec<_>>()
    );
    // Trim everyone but the top 200; the winner leaves with ZPOPMAX.
    let n = ranked.len() as i64;
    assert_eq!(
        q::<i64>(c, &["ZREMRANGEBYRANK", board, "0", "-201"]).unwrap(),
        n - 200
    );
    assert_eq!(q::<i64>(c, &["ZCARD", board]).unwrap(), 200);
    let winner: Vec<String> = q(c, &["ZPOPMAX", board]).unwrap();
    assert_eq!(winner, [ranked[0].1.clone(), ranked[0].0.to_string()]);
    assert_eq!(q::<i64>(c, &["ZREVRANK", board, &ranked[1].1]).unwrap(), 0);
}
