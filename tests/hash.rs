//! The hash family through the `redis` crate, keys spread over 4 shards: replies and error
//! texts, encodings at Redis's conversion points, keyspace commands, transactions across
//! shards, notifications, and persistence (HINCRBYFLOAT is journaled as an HSET).

mod common;

use std::collections::{HashMap, HashSet};

use common::{err_of, keys_on, q, DataDir, Raw, Server};
use redis::Value;

const NOT_INT: &str = "ERR value is not an integer or out of range";
const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

fn strings(c: &mut redis::Connection, words: &[&str]) -> Vec<String> {
    q(c, words).unwrap()
}

fn int(c: &mut redis::Connection, words: &[&str]) -> i64 {
    q(c, words).unwrap()
}

fn bulk(c: &mut redis::Connection, words: &[&str]) -> Option<String> {
    q(c, words).unwrap()
}

fn encoding(c: &mut redis::Connection, key: &str) -> String {
    q(c, &["OBJECT", "ENCODING", key]).unwrap()
}

/// `[f1, v1, f2, v2, ...]` as pairs.
fn pairs(flat: Vec<String>) -> Vec<(String, String)> {
    flat.chunks(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect()
}

fn as_map(flat: Vec<String>) -> HashMap<String, String> {
    pairs(flat).into_iter().collect()
}

/// `n` fields `f1..fn` with values `1..n`, as HSET arguments after the key.
fn fields(n: usize) -> Vec<String> {
    (1..=n)
        .flat_map(|i| [format!("f{i}"), i.to_string()])
        .collect()
}

fn hset_many(c: &mut redis::Connection, key: &str, args: &[String]) -> i64 {
    let mut words = vec!["HSET", key];
    words.extend(args.iter().map(|s| s.as_str()));
    int(c, &words)
}

#[test]
fn set_get_delete_and_listpack_order() {
    let server = Server::start(&["--shards", "4"]);
    let c = &mut server.client();
    assert_eq!(int(c, &["HSET", "h", "a", "1", "b", "2", "c", "3"]), 3);
    assert_eq!(
        int(c, &["HSET", "h", "a", "10", "d", "4"]),
        1,
        "only d is new"
    );
    assert_eq!(
        err_of(c, &["HSET", "h", "a", "1", "b"]),
        "ERR wrong number of arguments for 'hset' command"
    );
    assert_eq!(
        err_of(c, &["HMSET", "h", "a", "1", "b"]),
        "ERR wrong number of arguments for 'hmset' command"
    );
    assert_eq!(
        err_of(c, &["HSET", "h", "a"]),
        "ERR wrong number of arguments for 'hset' command"
    );
    assert_eq!(
        q::<String>(c, &["HMSET", "h", "e", "5", "f", "6"]).unwrap(),
        "OK"
    );
    assert_eq!(int(c, &["HSETNX", "h", "a", "100"]), 0);
    assert_eq!(int(c, &["HSETNX", "h", "z", "26"]), 1);
    assert_eq!(int(c, &["HSETNX", "fresh", "f", "v"]), 1);
    assert_eq!(bulk(c, &["HGET", "fresh", "f"]).as_deref(), Some("v"));
    assert_eq!(bulk(c, &["HGET", "h", "a"]).as_deref(), Some("10"));
    assert_eq!(bulk(c, &["HGET", "h", "nofield"]), None);
    assert_eq!(bulk(c, &["HGET", "nokey", "a"]), None);
    assert_eq!(
        q::<Vec<Option<String>>>(c, &["HMGET", "h", "a", "nofield", "z"]).unwrap(),
        vec![Some("10".into()), None, Some("26".into())]
    );
    assert_eq!(
        q::<Vec<Option<String>>>(c, &["HMGET", "nokey", "a", "b"]).unwrap(),
        vec![None, None]
    );
    assert_eq!(int(c, &["HLEN", "h"]), 7);
    assert_eq!(int(c, &["HLEN", "nokey"]), 0);
    assert_eq!(int(c, &["HSTRLEN", "h", "a"]), 2);
    assert_eq!(int(c, &["HSTRLEN", "h", "nofield"]), 0);
    assert_eq!(int(c, &["HSTRLEN", "nokey", "a"]), 0);
    assert_eq!(int(c, &["HEXISTS", "h", "z"]), 1);
    assert_eq!(int(c, &["HEXISTS", "h", "nofield"]), 0);
    assert_eq!(int(c, &["HEXISTS", "nokey", "a"]), 0);
    // A listpack answers in insertion order (updates keep the position), as Redis does.
    assert_eq!(
        strings(c, &["HKEYS", "h"]),
        ["a", "b", "c", "d", "e", "f", "z"]
    );
    assert_eq!(
        strings(c, &["HVALS", "h"]),
        ["10", "2", "3", "4", "5", "6", "26"]
    );
    assert_eq!(
        pairs(strings(c, &["HGETALL", "h"]))[..2],
        [("a".into(), "10".into()), ("b".into(), "2".into())]
    );
    assert!(strings(c, &["HKEYS", "nokey"]).is_empty());
    assert!(strings(c, &["HVALS", "nokey"]).is_empty());
    assert!(strings(c, &["HGETALL", "nokey"]).is_empty());
    assert_eq!(q::<String>(c, &["TYPE", "h"]).unwrap(), "hash");
    assert_eq!(encoding(c, "h"), "listpack");

    assert_eq!(int(c, &["HDEL", "h", "a", "nofield", "b", "a"]), 2);
    assert_eq!(int(c, &["HDEL", "h", "nofield"]), 0);
    assert_eq!(int(c, &["HDEL", "nokey", "a"]), 0);
    assert_eq!(int(c, &["HSET", "h", "a", "again"]), 1);
    assert_eq!(
        strings(c, &["HKEYS", "h"]),
        ["c", "d", "e", "f", "z", "a"],
        "removal keeps the order, a re-added field goes last"
    );
    assert_eq!(int(c, &["HDEL", "h", "c", "d", "e", "f", "z", "a"]), 6);
    assert_eq!(int(c, &["EXISTS", "h"]), 0, "the last HDEL removes the key");
    assert_eq!(q::<String>(c, &["TYPE", "h"]).unwrap(), "none");
    // Duplicate fields in one HSET: the last value wins, counted once.
    assert_eq!(int(c, &["HSET", "d", "x", "1", "x", "2", "x", "3"]), 1);
    assert_eq!(strings(c, &["HGETALL", "d"]), ["x", "3"]);
    // Binary-safe fields and values.
    assert_eq!(int(c, &["HSET", "bin", "", "", "a\0b", "\r\n"]), 2);
    assert_eq!(bulk(c, &["HGET", "bin", ""]).as_deref(), Some(""));
    assert_eq!(bulk(c, &["HGET", "bin", "a\0b"]).as_deref(), Some("\r\n"));
}

#[test]
fn hincrby_and_hincrbyfloat() {
    let server = Server::start(&["--shards", "4"]);
    let c = &mut server.client();
    assert_eq!(int(c, &["HINCRBY", "n", "i", "5"]), 5);
    assert_eq!(int(c, &["HINCRBY", "n", "i", "-7"]), -2);
    assert_eq!(err_of(c, &["HINCRBY", "n", "i", "x"]), NOT_INT);
    assert_eq!(err_of(c, &["HINCRBY", "n", "i", "1.5"]), NOT_INT);
    q::<i64>(
        c,
        &[
            "HSET",
            "n",
            "s",
            "abc",
            "max",
            "9223372036854775807",
            "min",
            "-9223372036854775808",
            "lead",
            "007",
            "sp",
            " 1",
        ],
    )
    .unwrap();
    for f in ["s", "lead", "sp"] {
        assert_eq!(
            err_of(c, &["HINCRBY", "n", f, "1"]),
            "ERR hash value is not an integer",
            "{f}"
        );
    }
    let overflow = "ERR increment or decrement would overflow";
    assert_eq!(err_of(c, &["HINCRBY", "n", "max", "1"]), overflow);
    assert_eq!(err_of(c, &["HINCRBY", "n", "min", "-1"]), overflow);
    assert_eq!(int(c, &["HINCRBY", "n", "max", "-1"]), i64::MAX - 1);
    assert_eq!(int(c, &["HINCRBY", "n", "min", "1"]), i64::MIN + 1);
    assert_eq!(
        err_of(c, &["HINCRBY", "new", "f", "9223372036854775808"]),
        NOT_INT
    );
    assert_eq!(int(c, &["EXISTS", "new"]), 0);

    // Redis adds in long double and prints with %.17Lf, trailing zeros removed.
    let f = |c: &mut redis::Connection, field: &str, by: &str| -> String {
        q(c, &["HINCRBYFLOAT", "fl", field, by]).unwrap()
    };
    assert_eq!(f(c, "x", "0.1"), "0.1");
    assert_eq!(f(c, "x", "0.2"), "0.3");
    assert_eq!(f(c, "y", "1000.1"), "1000.09999999999999998");
    assert_eq!(f(c, "z", "2.5e-18"), "0");
    assert_eq!(f(c, "w", "0x10"), "16");
    assert_eq!(f(c, "v", "10.50"), "10.5");
    assert_eq!(f(c, "v", "0.1"), "10.6");
    assert_eq!(f(c, "v", "-5"), "5.6");
    assert_eq!(f(c, "e", "5.0e3"), "5000");
    assert_eq!(f(c, "e", "2.0e2"), "5200");
    assert_eq!(f(c, "neg", "-1e-30"), "0");
    assert_eq!(f(c, "t", "0.000003814697265625"), "0.00000381469726562");
    assert_eq!(bulk(c, &["HGET", "fl", "x"]).as_deref(), Some("0.3"));
    let not_float = "ERR value is not a valid float";
    for bad in ["abc", "nan", " 1", "1e5000", "1e-5000", ""] {
        assert_eq!(
            err_of(c, &["HINCRBYFLOAT", "fl", "x", bad]),
            not_float,
            "{bad:?}"
        );
    }
    for inf in ["inf", "-Infinity"] {
        assert_eq!(
            err_of(c, &["HINCRBYFLOAT", "fl", "x", inf]),
            "ERR value is NaN or Infinity"
        );
    }
    q::<i64>(
        c,
        &[
            "HSET", "fl", "s", "hello", "i", "7", "inf", "inf", "huge", "1e4932",
        ],
    )
    .unwrap();
    assert_eq!(
        err_of(c, &["HINCRBYFLOAT", "fl", "s", "1"]),
        "ERR hash value is not a float"
    );
    assert_eq!(f(c, "i", "0.5"), "7.5");
    let nan_inf = "ERR increment would produce NaN or Infinity";
    assert_eq!(err_of(c, &["HINCRBYFLOAT", "fl", "inf", "1"]), nan_inf);
    assert_eq!(
        err_of(c, &["HINCRBYFLOAT", "fl", "huge", "1e4932"]),
        nan_inf
    );
    assert_eq!(err_of(c, &["HINCRBYFLOAT", "newf", "x", "abc"]), not_float);
    assert_eq!(int(c, &["EXISTS", "newf"]), 0);
    // Arguments are checked before the key's type, as in Redis.
    q::<()>(c, &["SET", "str", "x"]).unwrap();
    assert_eq!(err_of(c, &["HINCRBY", "str", "f", "x"]), NOT_INT);
    assert_eq!(err_of(c, &["HINCRBYFLOAT", "str", "f", "x"]), not_float);
    assert_eq!(err_of(c, &["HINCRBY", "str", "f", "1"]), WRONGTYPE);
    assert_eq!(err_of(c, &["HINCRBYFLOAT", "str", "f", "1"]), WRONGTYPE);
}

#[test]
fn hrandfield_counts_and_values() {
    let server = Server::start(&["--shards", "4"]);
    let c = &mut server.client();
    // A listpack and a hashtable.
    for (key, n) in [("small", 20), ("large", 600)] {
        assert_eq!(hset_many(c, key, &fields(n)), n as i64);
        let all: HashSet<String> = (1..=n).map(|i| format!("f{i}")).collect();
        let one = bulk(c, &["HRANDFIELD", key]).unwrap();
        assert!(all.contains(&one));
        for count in [1, 2, 5, n / 3, n / 2, n - 1] {
            let got = strings(c, &["HRANDFIELD", key, &count.to_string()]);
            let distinct: HashSet<String> = got.iter().cloned().collect();
            assert_eq!(got.len(), count, "{key} {count}");
            assert_eq!(distinct.len(), count, "{key} {count}: distinct");
            assert!(distinct.is_subset(&all));
        }
        for count in [n, n + 1, 10 * n] {
            let got: HashSet<String> = strings(c, &["HRANDFIELD", key, &count.to_string()])
                .into_iter()
                .collect();
            assert_eq!(got, all, "{key} {count}: the whole hash");
        }
        let got = strings(c, &["HRANDFIELD", key, "-2000"]);
        assert_eq!(got.len(), 2000);
        assert!(got.iter().all(|f| all.contains(f)));
        let distinct: HashSet<&String> = got.iter().collect();
        assert!(distinct.len() > n / 2, "{key}: picks spread over the hash");
        for count in ["7", "-7", "1", "-1", "100000"] {
            let got = pairs(strings(c, &["HRANDFIELD", key, count, "WITHVALUES"]));
            let want =
                count
                    .parse::<i64>()
                    .unwrap()
                    .unsigned_abs()
                    .min(if count.starts_with('-') {
                        u64::MAX
                    } else {
                        n as u64
                    });
            assert_eq!(got.len() as u64, want, "{key} {count}");
            for (f, v) in got {
                assert_eq!(
                    f,
                    format!("f{v}"),
                    "WITHVALUES pairs a field with its value"
                );
            }
        }
        assert!(strings(c, &["HRANDFIELD", key, "0"]).is_empty());
        assert!(strings(c, &["HRANDFIELD", key, "0", "WITHVALUES"]).is_empty());
    }
    // A small listpack's unique sample comes in listpack order, like Redis.
    let got = strings(c, &["HRANDFIELD", "small", "10"]);
    let mut sorted = got.clone();
    sorted.sort_by_key(|f| f[1..].parse::<u32>().unwrap());
    assert_eq!(got, sorted);
    assert_eq!(bulk(c, &["HRANDFIELD", "nokey"]), None);
    assert!(strings(c, &["HRANDFIELD", "nokey", "3"]).is_empty());
    assert!(strings(c, &["HRANDFIELD", "nokey", "-3", "WITHVALUES"]).is_empty());
    assert_eq!(err_of(c, &["HRANDFIELD", "small", "x"]), NOT_INT);
    assert_eq!(err_of(c, &["HRANDFIELD", "small", "x", "foo"]), NOT_INT);
    assert_eq!(
        err_of(c, &["HRANDFIELD", "small", "1", "foo"]),
        "ERR syntax error"
    );
    assert_eq!(
        err_of(c, &["HRANDFIELD", "small", "1", "WITHVALUES", "x"]),
        "ERR syntax error"
    );
    assert_eq!(
        err_of(c, &["HRANDFIELD", "small", "-9223372036854775808"]),
        "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807"
    );
    for big in ["4611686018427387904", "-4611686018427387904"] {
        assert_eq!(
            err_of(c, &["HRANDFIELD", "small", big, "WITHVALUES"]),
            "ERR value is out of range"
        );
    }
    q::<()>(c, &["SET", "str", "x"]).unwrap();
    assert_eq!(err_of(c, &["HRANDFIELD", "str"]), WRONGTYPE);
    assert_eq!(err_of(c, &["HRANDFIELD", "str", "0"]), WRONGTYPE);
    assert_eq!(err_of(c, &["HRANDFIELD", "str", "x"]), NOT_INT);
}

/// All of an HSCAN, following cursors; returns (field, value) pairs and the call count.
fn hscan_all(
    c: &mut redis::Connection,
    key: &str,
    opts: &[&str],
) -> (Vec<(String, String)>, usize) {
    let mut cursor = "0".to_string();
    let mut out = Vec::new();
    let mut calls = 0;
    loop {
        let mut words = vec!["HSCAN", key, &cursor];
        words.extend_from_slice(opts);
        let (next, items): (String, Vec<String>) = q(c, &words).unwrap();
        out.extend(pairs(items));
        calls += 1;
        if next == "0" {
            return (out, calls);
        }
        cursor = next;
        assert!(calls < 100_000, "HSCAN does not end");
    }
}

#[test]
fn hscan_visits_everything() {
    let server = Server::start(&["--shards", "4"]);
    let c = &mut server.client();
    hset_many(c, "big", &fields(2000));
    assert_eq!(encoding(c, "big"), "hashtable");
    let (got, calls) = hscan_all(c, "big", &["COUNT", "7"]);
    let map: HashMap<String, String> = got.iter().cloned().collect();
    assert_eq!(map.len(), 2000);
    assert!(map.iter().all(|(f, v)| *f == format!("f{v}")));
    assert!(calls > 100, "{calls} calls");
    let (got, _) = hscan_all(c, "big", &["MATCH", "f1??", "COUNT", "50"]);
    let fields: HashSet<String> = got.into_iter().map(|(f, _)| f).collect();
    assert_eq!(fields.len(), 100, "f100..f199");
    assert!(fields.iter().all(|f| f.len() == 4 && f.starts_with("f1")));

    // Fields present for the whole scan are seen even while others come and go.
    let mut cursor = "0".to_string();
    let mut seen = HashSet::new();
    let mut round = 0;
    loop {
        let (next, items): (String, Vec<String>) =
            q(c, &["HSCAN", "big", &cursor, "COUNT", "20"]).unwrap();
        seen.extend(pairs(items).into_iter().map(|(f, _)| f));
        round += 1;
        let extra = format!("extra{round}");
        q::<i64>(c, &["HSET", "big", &extra, "x"]).unwrap();
        if round % 2 == 0 {
            q::<i64>(c, &["HDEL", "big", &format!("extra{}", round - 1)]).unwrap();
        }
        if next == "0" {
            break;
        }
        cursor = next;
    }
    assert!((1..=2000).all(|i| seen.contains(&format!("f{i}"))));

    // A listpack comes back whole, with cursor 0, whatever the cursor and COUNT.
    q::<i64>(c, &["HSET", "small", "a", "1", "b", "2", "c", "3"]).unwrap();
    let (cur, items): (String, Vec<String>) = q(c, &["HSCAN", "small", "5", "COUNT", "1"]).unwrap();
    assert_eq!(
        (cur.as_str(), items),
        (
            "0",
            vec!["a", "1", "b", "2", "c", "3"]
                .into_iter()
                .map(String::from)
                .collect()
        )
    );
    let (_, items): (String, Vec<String>) =
        q(c, &["HSCAN", "small", "0", "MATCH", "[ab]"]).unwrap();
    assert_eq!(items, ["a", "1", "b", "2"]);
    let (cur, items): (String, Vec<String>) = q(c, &["HSCAN", "nokey", "0"]).unwrap();
    assert_eq!((cur.as_str(), items.len()), ("0", 0));
    // Errors, in Redis's order: the cursor, then the key, then the options.
    assert_eq!(err_of(c, &["HSCAN", "small", "x"]), "ERR invalid cursor");
    assert_eq!(err_of(c, &["HSCAN", "nokey", "x"]), "ERR invalid cursor");
    assert_eq!(err_of(c, &["HSCAN", "small", " 0"]), "ERR invalid cursor");
    assert_eq!(
        err_of(c, &["HSCAN", "small", "0", "COUNT", "0"]),
        "ERR syntax error"
    );
    assert_eq!(err_of(c, &["HSCAN", "small", "0", "COUNT", "x"]), NOT_INT);
    assert_eq!(
        err_of(c, &["HSCAN", "small", "0", "COUNT"]),
        "ERR syntax error"
    );
    assert_eq!(
        err_of(c, &["HSCAN", "small", "0", "TYPE", "hash"]),
        "ERR syntax error"
    );
    let (cur, _): (String, Vec<String>) = q(c, &["HSCAN", "nokey", "0", "BAD"]).unwrap();
    assert_eq!(cur, "0", "options of a missing key are not looked at");
    q::<()>(c, &["SET", "str", "x"]).unwrap();
    assert_eq!(err_of(c, &["HSCAN", "str", "0", "BAD"]), WRONGTYPE);
}

#[test]
fn wrongtype_both_ways() {
    let server = Server::start(&["--shards", "4"]);
    let c = &mut server.client();
    q::<()>(c, &["SET", "str", "x"]).unwrap();
    q::<i64>(c, &["HSET", "h", "a", "1"]).unwrap();
    for words in [
        &["HSET", "str", "a", "1"][..],
        &["HSETNX", "str", "a", "1"],
        &["HMSET", "str", "a", "1"],
        &["HGET", "str", "a"],
        &["HMGET", "str", "a"],
        &["HDEL", "str", "a"],
        &["HLEN", "str"],
        &["HSTRLEN", "str", "a"],
        &["HEXISTS", "str", "a"],
        &["HINCRBY", "str", "a", "1"],
        &["HINCRBYFLOAT", "str", "a", "1"],
        &["HKEYS", "str"],
        &["HVALS", "str"],
        &["HGETALL", "str"],
        &["HRANDFIELD", "str"],
        &["HRANDFIELD", "str", "2", "WITHVALUES"],
        &["HSCAN", "str", "0"],
        &["GET", "h"],
        &["APPEND", "h", "x"],
        &["INCR", "h"],
        &["STRLEN", "h"],
        &["GETRANGE", "h", "0", "1"],
        &["SETRANGE", "h", "0", "x"],
        &["GETDEL", "h"],
    ] {
        assert_eq!(err_of(c, words), WRONGTYPE, "{words:?}");
    }
    assert_eq!(q::<Vec<Option<String>>>(c, &["MGET", "h"]).unwrap(), [None]);
    assert_eq!(q::<String>(c, &["SET", "h", "now a string"]).unwrap(), "OK");
    assert_eq!(q::<String>(c, &["TYPE", "h"]).unwrap(), "string");
    assert_eq!(q::<String>(c, &["TYPE", "str"]).unwrap(), "string");
}

#[test]
fn listpack_converts_on_a_long_field_or_value() {
    let server = Server::start(&["--shards", "4"]);
    let c = &mut server.client();
    let l64 = "y".repeat(64);
    let l65 = "x".repeat(65);
    q::<i64>(c, &["HSET", "v", "a", &l64]).unwrap();
    q::<i64>(c, &["HSET", "v", &l64, "b"]).unwrap();
    assert_eq!(encoding(c, "v"), "listpack", "64 bytes fit");
    q::<i64>(c, &["HSET", "v", "b", &l65]).unwrap();
    assert_eq!(encoding(c, "v"), "hashtable", "a 65-byte value converts");
    q::<i64>(c, &["HDEL", "v", "b"]).unwrap();
    assert_eq!(encoding(c, "v"), "hashtable", "never back");

    q::<i64>(c, &["HSET", "f", &l65, "1"]).unwrap();
    assert_eq!(encoding(c, "f"), "hashtable", "a 65-byte field converts");

    // HSETNX on an existing field leaves the encoding (Redis 7.0 checks the field first).
    q::<i64>(c, &["HSET", "nx", "a", "1"]).unwrap();
    assert_eq!(int(c, &["HSETNX", "nx", "a", &l65]), 0);
    assert_eq!(encoding(c, "nx"), "listpack");
    assert_eq!(int(c, &["HSETNX", "nx", "b", &l65]), 1);
    assert_eq!(encoding(c, "nx"), "hashtable");

    q::<i64>(c, &["HSET", "i", "a", "1"]).unwrap();
    q::<i64>(c, &["HINCRBY", "i", &l65, "1"]).unwrap();
    assert_eq!(encoding(c, "i"), "hashtable", "HINCRBY with a long field");
    q::<i64>(c, &["HSET", "fl", "a", "1"]).unwrap();
    let v: String = q(c, &["HINCRBYFLOAT", "fl", "a", "1e70"]).unwrap();
    assert_eq!(v.len(), 71);
    assert_eq!(
        encoding(c, "fl"),
        "hashtable",
        "HINCRBYFLOAT with a long result"
    );
    // Many arguments for one field do not convert ahead (Redis 7.0 has no pre-sizing).
    let mut same = Vec::new();
    for i in 0..600 {
        same.push("a".to_string());
        same.push(i.to_string());
    }
    assert_eq!(hset_many(c, "same", &same), 1);
    assert_eq!(encoding(c, "same"), "listpack");
}

/// Redis 7.0's default `hash-max-listpack-entries` is 512 (`hash-max-listpack-value` 64).
#[test]
fn listpack_converts_after_512_entries() {
    let server = Server::start(&["--shards", "4"]);
    let c = &mut server.client();
    assert_eq!(hset_many(c, "h", &fields(512)), 512);
    assert_eq!(encoding(c, "h"), "listpack");
    assert_eq!(int(c, &["HSET", "h", "f1", "again"]), 0);
    assert_eq!(encoding(c, "h"), "listpack");
    assert_eq!(int(c, &["HSET", "h", "f513", "513"]), 1);
    assert_eq!(encoding(c, "h"), "hashtable");
    assert_eq!(int(c, &["HDEL", "h", "f513", "f1", "f2"]), 3);
    assert_eq!(encoding(c, "h"), "hashtable");
    assert_eq!(hset_many(c, "h2", &fields(513)), 513);
    assert_eq!(encoding(c, "h2"), "hashtable");
}

#[test]
fn keyspace_commands_on_hashes() {
    let server = Server::start(&["--shards", "4"]);
    let c = &mut server.client();
    let a = keys_on("ka", 0, 4, 2);
    let b = keys_on("kb", 3, 4, 2);
    q::<i64>(c, &["HSET", &a[0], "x", "1", "y", "2"]).unwrap();
    assert_eq!(int(c, &["EXPIRE", &a[0], "100"]), 1);
    q::<i64>(c, &["HSET", &a[0], "z", "3"]).unwrap();
    let ttl = int(c, &["TTL", &a[0]]);
    assert!((99..=100).contains(&ttl), "HSET keeps the TTL: {ttl}");
    assert_eq!(int(c, &["PERSIST", &a[0]]), 1);
    assert_eq!(int(c, &["TTL", &a[0]]), -1);
    // COPY and RENAME to another shard, and on the same shard.
    assert_eq!(int(c, &["COPY", &a[0], &b[0]]), 1);
    assert_eq!(
        as_map(strings(c, &["HGETALL", &b[0]])),
        as_map(strings(c, &["HGETALL", &a[0]]))
    );
    q::<i64>(c, &["HSET", &b[0], "only-in-copy", "1"]).unwrap();
    assert_eq!(
        int(c, &["HEXISTS", &a[0], "only-in-copy"]),
        0,
        "a copy is independent"
    );
    q::<()>(c, &["RENAME", &a[0], &b[1]]).unwrap();
    assert_eq!(int(c, &["EXISTS", &a[0]]), 0);
    assert_eq!(strings(c, &["HKEYS", &b[1]]), ["x", "y", "z"], "order kept");
    assert_eq!(encoding(c, &b[1]), "listpack");
    q::<()>(c, &["RENAME", &b[1], &b[0]]).unwrap();
    assert_eq!(int(c, &["HLEN", &b[0]]), 3);
    // A hashtable stays a hashtable through COPY and RENAME.
    hset_many(c, &a[1], &fields(600));
    assert_eq!(int(c, &["COPY", &a[1], &b[1]]), 1);
    assert_eq!(encoding(c, &b[1]), "hashtable");
    assert_eq!(int(c, &["HLEN", &b[1]]), 600);
    assert_eq!(q::<String>(c, &["TYPE", &b[1]]).unwrap(), "hash");
    assert_eq!(int(c, &["DEL", &a[1], &b[1], &b[0]]), 3);
    assert_eq!(int(c, &["EXISTS", &a[1], &b[1], &b[0]]), 0);
    // A hash that expires is gone for hash commands too.
    q::<i64>(c, &["HSET", "brief", "f", "v"]).unwrap();
    assert_eq!(int(c, &["PEXPIRE", "brief", "30"]), 1);
    std::thread::sleep(std::time::Duration::from_millis(80));
    assert_eq!(bulk(c, &["HGET", "brief", "f"]), None);
    assert_eq!(int(c, &["HLEN", "brief"]), 0);
    assert_eq!(
        int(c, &["HINCRBY", "brief", "n", "1"]),
        1,
        "starts a new hash"
    );
}

#[test]
fn multi_exec_across_shards_and_watch() {
    let server = Server::start(&["--shards", "4"]);
    let c = &mut server.client();
    let a = keys_on("ta", 0, 4, 1)[0].clone();
    let b = keys_on("tb", 3, 4, 1)[0].clone();
    q::<i64>(c, &["HSET", &b, "n", "10"]).unwrap();
    let (set, incr, fl, all, del): (i64, i64, String, Vec<String>, i64) = redis::pipe()
        .atomic()
        .cmd("HSET")
        .arg(&a)
        .arg("f")
        .arg("v")
        .arg("g")
        .arg("w")
        .cmd("HINCRBY")
        .arg(&b)
        .arg("n")
        .arg(5)
        .cmd("HINCRBYFLOAT")
        .arg(&b)
        .arg("x")
        .arg("0.1")
        .cmd("HGETALL")
        .arg(&a)
        .cmd("HDEL")
        .arg(&b)
        .arg("n")
        .arg("x")
        .query(c)
        .unwrap();
    assert_eq!((set, incr, fl.as_str(), del), (2, 15, "0.1", 2));
    assert_eq!(all, ["f", "v", "g", "w"]);
    assert_eq!(int(c, &["EXISTS", &b]), 0, "emptied inside the transaction");
    // An error inside EXEC does not roll back the others.
    q::<()>(c, &["SET", "str", "x"]).unwrap();
    let mut raw = server.raw();
    for words in [
        &["MULTI"][..],
        &["HSET", &b, "k", "1"],
        &["HSET", "str", "k", "1"],
        &["HINCRBY", &a, "f", "1"],
        &["EXEC"],
    ] {
        let args: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
        raw.cmd(&args);
    }
    for want in ["+OK", "+QUEUED", "+QUEUED", "+QUEUED"] {
        assert_eq!(next(&mut raw), want);
    }
    assert_eq!(
        next(&mut raw),
        format!("*3\n:1\n-{WRONGTYPE}\n-ERR hash value is not an integer")
    );
    assert_eq!(bulk(c, &["HGET", &b, "k"]).as_deref(), Some("1"));

    // WATCH on a hash: a field change by another client aborts EXEC.
    let other = &mut server.client();
    q::<()>(c, &["WATCH", &a, &b]).unwrap();
    q::<i64>(other, &["HSET", &a, "f", "changed"]).unwrap();
    q::<()>(c, &["MULTI"]).unwrap();
    q::<()>(c, &["HSET", &b, "k", "2"]).unwrap();
    assert_eq!(q::<Value>(c, &["EXEC"]).unwrap(), Value::Nil);
    assert_eq!(bulk(c, &["HGET", &b, "k"]).as_deref(), Some("1"));
    // A no-op (HSETNX of an existing field, HDEL of a missing one) does not.
    q::<()>(c, &["WATCH", &a]).unwrap();
    assert_eq!(int(other, &["HSETNX", &a, "f", "x"]), 0);
    assert_eq!(int(other, &["HDEL", &a, "nofield"]), 0);
    q::<()>(c, &["MULTI"]).unwrap();
    q::<()>(c, &["HSET", &b, "k", "3"]).unwrap();
    assert_eq!(q::<Vec<i64>>(c, &["EXEC"]).unwrap(), [0]);
    assert_eq!(bulk(c, &["HGET", &b, "k"]).as_deref(), Some("3"));
}

#[test]
fn resp3_hgetall_is_a_map() {
    let server = Server::start(&["--shards", "4"]);
    let c = &mut server.client_resp3();
    q::<i64>(c, &["HSET", "h", "a", "1", "b", "2"]).unwrap();
    match q::<Value>(c, &["HGETALL", "h"]).unwrap() {
        Value::Map(kv) => assert_eq!(kv.len(), 2),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        q::<Value>(c, &["HGETALL", "nokey"]).unwrap(),
        Value::Map(vec![])
    );
    assert_eq!(q::<Value>(c, &["HRANDFIELD", "nokey"]).unwrap(), Value::Nil);
}

fn next(raw: &mut Raw) -> String {
    raw.reply_str().trim_end().replace("\r\n", "\n")
}

#[test]
fn keyspace_notifications() {
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
    q::<i64>(c, &["HSET", "h", "a", "1", "b", "2"]).unwrap();
    q::<i64>(c, &["HSETNX", "h", "a", "x"]).unwrap(); // no change, no event
    q::<i64>(c, &["HSETNX", "h", "c", "3"]).unwrap();
    q::<()>(c, &["HMSET", "h", "d", "4"]).unwrap();
    q::<i64>(c, &["HINCRBY", "h", "n", "1"]).unwrap();
    q::<String>(c, &["HINCRBYFLOAT", "h", "x", "1.5"]).unwrap();
    q::<i64>(c, &["HDEL", "h", "nofield"]).unwrap(); // no event
    q::<i64>(c, &["HDEL", "h", "a", "b", "c", "d"]).unwrap();
    q::<i64>(c, &["HDEL", "h", "n", "x"]).unwrap();
    let mut got = Vec::new();
    for _ in 0..8 {
        let m = next(&mut ev);
        let parts: Vec<&str> = m.split('\n').collect();
        got.push((parts[6].to_string(), parts[8].to_string()));
    }
    let want = [
        "hset",
        "hset",
        "hset",
        "hincrby",
        "hincrbyfloat",
        "hdel",
        "hdel",
        "del",
    ];
    for (i, (chan, key)) in got.iter().enumerate() {
        assert_eq!(chan, &format!("__keyevent@0__:{}", want[i]), "{got:?}");
        assert_eq!(key, "h");
    }
}

fn start_on(dir: &DataDir, shards: usize) -> Server {
    let shards = shards.to_string();
    Server::start_raw(&["--dir", dir.path(), "--shards", &shards], None)
}

fn write_hashes(c: &mut redis::Connection) {
    let a = keys_on("pa", 0, 4, 1)[0].clone();
    let b = keys_on("pb", 3, 4, 1)[0].clone();
    q::<i64>(c, &["HSET", "h", "a", "1", "b", "2", "c", "3"]).unwrap();
    q::<()>(c, &["HMSET", "h", "d", "4"]).unwrap();
    q::<i64>(c, &["HSETNX", "h", "e", "5"]).unwrap();
    q::<i64>(c, &["HSETNX", "h", "a", "ignored"]).unwrap();
    q::<i64>(c, &["HDEL", "h", "b"]).unwrap();
    q::<i64>(c, &["HSET", "h", "b", "again"]).unwrap();
    q::<i64>(c, &["HINCRBY", "h", "n", "41"]).unwrap();
    q::<i64>(c, &["HINCRBY", "h", "n", "1"]).unwrap();
    // Journaled as HSET of the result: replay does not redo the arithmetic.
    q::<String>(c, &["HINCRBYFLOAT", "h", "fl", "0.1"]).unwrap();
    q::<String>(c, &["HINCRBYFLOAT", "h", "fl", "0.2"]).unwrap();
    q::<String>(c, &["HINCRBYFLOAT", "h", "y", "1000.1"]).unwrap();
    hset_many(c, "big", &fields(700));
    q::<i64>(c, &["HDEL", "big", "f1", "f2"]).unwrap();
    q::<i64>(c, &["HSET", "long", "f", &"v".repeat(100)]).unwrap();
    q::<i64>(c, &["HSET", "gone", "a", "1"]).unwrap();
    q::<i64>(c, &["HDEL", "gone", "a"]).unwrap();
    q::<i64>(c, &["HSET", "ttl", "a", "1"]).unwrap();
    q::<i64>(c, &["EXPIRE", "ttl", "1000"]).unwrap();
    q::<i64>(c, &["HSET", &a, "moved", "yes"]).unwrap();
    q::<()>(c, &["RENAME", &a, &b]).unwrap();
    q::<i64>(c, &["COPY", &b, "copied"]).unwrap();
    let _: (i64, String) = redis::pipe()
        .atomic()
        .cmd("HSET")
        .arg(&a)
        .arg("tx")
        .arg("1")
        .cmd("HINCRBYFLOAT")
        .arg(&b)
        .arg("tf")
        .arg("2.5")
        .query(c)
        .unwrap();
}

fn check_hashes(c: &mut redis::Connection, when: &str) {
    let a = keys_on("pa", 0, 4, 1)[0].clone();
    let b = keys_on("pb", 3, 4, 1)[0].clone();
    assert_eq!(
        pairs(strings(c, &["HGETALL", "h"])),
        [
            ("a", "1"),
            ("c", "3"),
            ("d", "4"),
            ("e", "5"),
            ("b", "again"),
            ("n", "42"),
            ("fl", "0.3"),
            ("y", "1000.09999999999999998"),
        ]
        .map(|(f, v)| (f.to_string(), v.to_string())),
        "{when}: contents and listpack order"
    );
    assert_eq!(encoding(c, "h"), "listpack", "{when}");
    assert_eq!(int(c, &["HLEN", "big"]), 698, "{when}");
    assert_eq!(encoding(c, "big"), "hashtable", "{when}");
    assert_eq!(
        bulk(c, &["HGET", "big", "f700"]).as_deref(),
        Some("700"),
        "{when}"
    );
    assert_eq!(bulk(c, &["HGET", "big", "f1"]), None, "{when}");
    assert_eq!(encoding(c, "long"), "hashtable", "{when}");
    assert_eq!(int(c, &["EXISTS", "gone"]), 0, "{when}");
    let ttl = int(c, &["TTL", "ttl"]);
    assert!((990..=1000).contains(&ttl), "{when}: ttl {ttl}");
    assert_eq!(strings(c, &["HGETALL", &a]), ["tx", "1"], "{when}");
    assert_eq!(
        strings(c, &["HGETALL", &b]),
        ["moved", "yes", "tf", "2.5"],
        "{when}"
    );
    assert_eq!(
        strings(c, &["HGETALL", "copied"]),
        ["moved", "yes"],
        "{when}"
    );
}

#[test]
fn hashes_survive_restarts() {
    let dir = DataDir::new("hash");
    {
        let mut s = start_on(&dir, 4);
        write_hashes(&mut s.client());
        check_hashes(&mut s.client(), "before restart");
        assert!(s.terminate().success());
    }
    for (shards, how) in [(4, "kill"), (2, "term"), (1, "kill")] {
        let mut s = start_on(&dir, shards);
        check_hashes(
            &mut s.client(),
            &format!("after restart on {shards} shards"),
        );
        q::<String>(&mut s.client(), &["HINCRBYFLOAT", "runs", "n", "0.1"]).unwrap();
        if how == "kill" {
            s.kill9();
        } else {
            assert!(s.terminate().success());
        }
    }
    let s = start_on(&dir, 3);
    assert_eq!(
        bulk(&mut s.client(), &["HGET", "runs", "n"]).as_deref(),
        Some("0.3")
    );
}
