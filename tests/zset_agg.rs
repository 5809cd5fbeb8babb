//! The sorted-set aggregates through the `redis` crate on `--shards 4`: ZUNION, ZINTER,
//! ZDIFF (WITHSCORES), their STORE forms (WEIGHTS, AGGREGATE, plain sets as sorted sets
//! scored 1), ZINTERCARD (LIMIT) and ZMPOP (MIN|MAX, COUNT): replies and error texts,
//! WRONGTYPE, encodings at Redis's thresholds, keys on four shards, MULTI/EXEC across
//! shards, keyspace events, and persistence of what they write.
//!
//! Sorted sets are set up from plain sets with `ZUNIONSTORE ... WEIGHTS` (see `zset`) and
//! read back with `ZUNION 1 key WITHSCORES` (see `scores`), so the tests need nothing but
//! this family and SADD — except ZMPOP's persistence, which replays the ZPOPMIN/ZPOPMAX it
//! journals.

mod common;

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

/// Make `key` the sorted set `entries` (distinct members): one plain set per member, then
/// ZUNIONSTORE with the scores as weights.
fn zset(c: &mut redis::Connection, key: &str, entries: &[(&str, f64)]) {
    let tmps: Vec<String> = (0..entries.len())
        .map(|i| format!("tmp:{key}:{i}"))
        .collect();
    for ((m, _), t) in entries.iter().zip(&tmps) {
        q::<i64>(c, &["SADD", t, m]).unwrap();
    }
    let mut cmd = redis::cmd("ZUNIONSTORE");
    cmd.arg(key).arg(entries.len()).arg(&tmps).arg("WEIGHTS");
    for (_, s) in entries {
        cmd.arg(s.to_string());
    }
    assert_eq!(cmd.query::<i64>(c).unwrap(), entries.len() as i64);
    let mut del = redis::cmd("DEL");
    del.arg(&tmps);
    del.query::<i64>(c).unwrap();
}

/// `SADD key` with many members, built as one command.
fn sadd_many(c: &mut redis::Connection, key: &str, members: impl Iterator<Item = String>) -> i64 {
    let mut cmd = redis::cmd("SADD");
    cmd.arg(key);
    for m in members {
        cmd.arg(m);
    }
    cmd.query(c).unwrap()
}

/// A command's WITHSCORES reply (RESP2: flat) as (member, score text) pairs.
fn pairs(c: &mut redis::Connection, words: &[&str]) -> Vec<(String, String)> {
    let flat: Vec<String> = q(c, words).unwrap();
    flat.chunks(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect()
}

/// The sorted set at `key`, ascending, with its scores as Redis prints them.
fn scores(c: &mut redis::Connection, key: &str) -> Vec<(String, String)> {
    pairs(c, &["ZUNION", "1", key, "WITHSCORES"])
}

fn p(entries: &[(&str, &str)]) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|(m, s)| (m.to_string(), s.to_string()))
        .collect()
}

fn encoding(c: &mut redis::Connection, key: &str) -> String {
    q(c, &["OBJECT", "ENCODING", key]).unwrap()
}

fn card(c: &mut redis::Connection, key: &str) -> i64 {
    q(c, &["ZINTERCARD", "1", key]).unwrap()
}

#[test]
fn union_inter_diff_replies() {
    let server = start();
    let c = &mut server.client();
    zset(c, "z1", &[("a", 1.0), ("b", 2.0), ("c", 3.0)]);
    zset(c, "z2", &[("b", 10.0), ("c", -1.0), ("d", 4.0)]);
    q::<i64>(c, &["SADD", "s", "c", "d", "e"]).unwrap();
    assert_eq!(scores(c, "z1"), p(&[("a", "1"), ("b", "2"), ("c", "3")]));
    assert_eq!(q::<String>(c, &["TYPE", "z1"]).unwrap(), "zset");

    // Without scores: members in score order.
    assert_eq!(
        q::<Vec<String>>(c, &["ZUNION", "2", "z1", "z2"]).unwrap(),
        ["a", "c", "d", "b"]
    );
    assert_eq!(
        q::<Vec<String>>(c, &["ZINTER", "2", "z1", "z2"]).unwrap(),
        ["c", "b"]
    );
    assert_eq!(
        q::<Vec<String>>(c, &["ZDIFF", "2", "z1", "z2"]).unwrap(),
        ["a"]
    );

    // Sums, weights, aggregates, sets scored 1.
    assert_eq!(
        pairs(c, &["ZUNION", "3", "z1", "z2", "s", "WITHSCORES"]),
        p(&[("a", "1"), ("e", "1"), ("c", "3"), ("d", "5"), ("b", "12")])
    );
    assert_eq!(
        pairs(
            c,
            &[
                "ZUNION",
                "3",
                "z1",
                "z2",
                "s",
                "WEIGHTS",
                "2",
                "1",
                "5",
                "AGGREGATE",
                "MIN",
                "WITHSCORES"
            ]
        ),
        p(&[("c", "-1"), ("a", "2"), ("b", "4"), ("d", "4"), ("e", "5")])
    );
    assert_eq!(
        pairs(
            c,
            &[
                "ZUNION",
                "3",
                "z1",
                "z2",
                "s",
                "weights",
                "2",
                "1",
                "5",
                "aggregate",
                "max",
                "withscores"
            ]
        ),
        p(&[("a", "2"), ("d", "5"), ("e", "5"), ("c", "6"), ("b", "10")])
    );
    assert_eq!(
        pairs(c, &["ZINTER", "3", "z1", "z2", "s", "WITHSCORES"]),
        p(&[("c", "3")])
    );
    assert_eq!(
        pairs(
            c,
            &[
                "ZINTER",
                "2",
                "z2",
                "s",
                "WEIGHTS",
                "3",
                "2",
                "AGGREGATE",
                "MAX",
                "WITHSCORES"
            ]
        ),
        p(&[("c", "2"), ("d", "12")])
    );
    assert_eq!(
        pairs(
            c,
            &[
                "ZINTER",
                "2",
                "z2",
                "s",
                "WEIGHTS",
                "3",
                "2",
                "AGGREGATE",
                "MIN",
                "WITHSCORES"
            ]
        ),
        p(&[("c", "-3"), ("d", "2")])
    );
    assert_eq!(
        pairs(c, &["ZDIFF", "3", "z2", "s", "z1", "WITHSCORES"]),
        p(&[])
    );
    assert_eq!(
        pairs(c, &["ZDIFF", "2", "s", "z1", "WITHSCORES"]),
        p(&[("d", "1"), ("e", "1")])
    );
    // A key given twice, absent keys, a single key.
    assert_eq!(
        pairs(c, &["ZUNION", "2", "z1", "z1", "WITHSCORES"]),
        p(&[("a", "2"), ("b", "4"), ("c", "6")])
    );
    assert_eq!(
        pairs(
            c,
            &[
                "ZINTER",
                "2",
                "z1",
                "z1",
                "WEIGHTS",
                "1",
                "-1",
                "WITHSCORES"
            ]
        ),
        p(&[("a", "0"), ("b", "0"), ("c", "0")])
    );
    assert!(pairs(c, &["ZDIFF", "2", "z1", "z1", "WITHSCORES"]).is_empty());
    assert!(pairs(c, &["ZINTER", "2", "z1", "nosuch", "WITHSCORES"]).is_empty());
    assert!(pairs(c, &["ZDIFF", "2", "nosuch", "z1", "WITHSCORES"]).is_empty());
    assert!(q::<Vec<String>>(c, &["ZUNION", "1", "nosuch"])
        .unwrap()
        .is_empty());
    assert_eq!(
        pairs(c, &["ZUNION", "2", "z1", "nosuch", "WITHSCORES"]),
        scores(c, "z1")
    );
    assert_eq!(
        pairs(c, &["ZDIFF", "2", "z1", "nosuch", "WITHSCORES"]),
        scores(c, "z1")
    );
    // Options may repeat; the last one wins.
    assert_eq!(
        pairs(
            c,
            &[
                "ZUNION",
                "1",
                "z1",
                "WEIGHTS",
                "2",
                "WEIGHTS",
                "3",
                "AGGREGATE",
                "MIN",
                "AGGREGATE",
                "SUM",
                "WITHSCORES",
                "WITHSCORES"
            ]
        ),
        p(&[("a", "3"), ("b", "6"), ("c", "9")])
    );
}

#[test]
fn weights_and_scores_print_like_redis() {
    let server = start();
    let c = &mut server.client();
    zset(c, "z", &[("a", 1.0), ("b", 2.0)]);
    let w = |c: &mut redis::Connection, weight: &str| {
        pairs(c, &["ZUNION", "1", "z", "WEIGHTS", weight, "WITHSCORES"])
    };
    assert_eq!(
        w(c, "1.1"),
        p(&[("a", "1.1000000000000001"), ("b", "2.2000000000000002")])
    );
    assert_eq!(w(c, "1e20"), p(&[("a", "1e+20"), ("b", "2e+20")]));
    assert_eq!(w(c, "0x10"), p(&[("a", "16"), ("b", "32")]));
    assert_eq!(w(c, "-1"), p(&[("b", "-2"), ("a", "-1")]));
    assert_eq!(w(c, "+inf"), p(&[("a", "inf"), ("b", "inf")]));
    assert_eq!(w(c, "-Infinity"), p(&[("a", "-inf"), ("b", "-inf")]));
    // +inf + -inf is 0, 0 × inf is 0; a NaN never wins a MIN or MAX.
    zset(c, "pinf", &[("x", f64::INFINITY)]);
    zset(c, "ninf", &[("x", f64::NEG_INFINITY)]);
    assert_eq!(
        pairs(c, &["ZUNION", "2", "pinf", "ninf", "WITHSCORES"]),
        p(&[("x", "0")])
    );
    assert_eq!(
        pairs(c, &["ZINTER", "2", "pinf", "ninf", "WITHSCORES"]),
        p(&[("x", "0")])
    );
    assert_eq!(
        pairs(c, &["ZUNION", "1", "pinf", "WEIGHTS", "0", "WITHSCORES"]),
        p(&[("x", "0")])
    );
    assert_eq!(
        pairs(
            c,
            &[
                "ZINTER",
                "2",
                "pinf",
                "ninf",
                "WEIGHTS",
                "1",
                "0",
                "AGGREGATE",
                "MIN",
                "WITHSCORES"
            ]
        ),
        p(&[("x", "inf")])
    );
    // Negative zero is printed as such in a reply.
    zset(c, "zero", &[("o", 0.0)]);
    assert_eq!(
        pairs(c, &["ZUNION", "1", "zero", "WEIGHTS", "-1", "WITHSCORES"]),
        p(&[("o", "-0")])
    );
}

#[test]
fn resp2_and_resp3_shapes() {
    let server = start();
    let mut raw: Raw = server.raw();
    for words in [
        &[&b"SADD"[..], b"a", b"x"][..],
        &[b"SADD", b"b", b"y"],
        &[
            b"ZUNIONSTORE",
            b"z",
            b"2",
            b"a",
            b"b",
            b"WEIGHTS",
            b"1.5",
            b"2",
        ],
    ] {
        raw.cmd(words);
        let _ = raw.reply();
    }
    raw.cmd(&[b"ZUNION", b"1", b"z", b"WITHSCORES"]);
    assert_eq!(
        raw.reply_str(),
        "*4\r\n$1\r\nx\r\n$3\r\n1.5\r\n$1\r\ny\r\n$1\r\n2\r\n"
    );
    raw.cmd(&[b"ZINTER", b"1", b"z"]);
    assert_eq!(raw.reply_str(), "*2\r\n$1\r\nx\r\n$1\r\ny\r\n");
    raw.cmd(&[b"ZDIFF", b"1", b"nosuch"]);
    assert_eq!(raw.reply_str(), "*0\r\n");
    raw.cmd(&[b"ZMPOP", b"1", b"nosuch", b"MIN"]);
    assert_eq!(raw.reply_str(), "*-1\r\n");
    raw.cmd(&[b"ZMPOP", b"1", b"z", b"MAX"]);
    assert_eq!(
        raw.reply_str(),
        "*2\r\n$1\r\nz\r\n*1\r\n*2\r\n$1\r\ny\r\n$1\r\n2\r\n"
    );
    raw.cmd(&[b"HELLO", b"3"]);
    let _ = raw.reply();
    raw.cmd(&[b"ZUNION", b"1", b"z", b"WITHSCORES"]);
    assert_eq!(raw.reply_str(), "*1\r\n*2\r\n$1\r\nx\r\n,1.5\r\n");
    raw.cmd(&[b"ZMPOP", b"1", b"nosuch", b"MIN"]);
    assert_eq!(raw.reply_str(), "_\r\n");
    raw.cmd(&[b"ZMPOP", b"1", b"z", b"MIN", b"COUNT", b"5"]);
    assert_eq!(
        raw.reply_str(),
        "*2\r\n$1\r\nz\r\n*1\r\n*2\r\n$1\r\nx\r\n,1.5\r\n"
    );

    let c = &mut server.client_resp3();
    zset(c, "r", &[("m", 2.5), ("n", 3.0)]);
    assert_eq!(
        q::<Value>(c, &["ZINTER", "1", "r", "WITHSCORES"]).unwrap(),
        Value::Array(vec![
            Value::Array(vec![Value::BulkString(b"m".to_vec()), Value::Double(2.5)]),
            Value::Array(vec![Value::BulkString(b"n".to_vec()), Value::Double(3.0)]),
        ])
    );
}

#[test]
fn store_forms() {
    let server = start();
    let c = &mut server.client();
    zset(c, "z1", &[("a", 1.0), ("b", 2.0), ("c", 3.0)]);
    zset(c, "z2", &[("b", 10.0), ("c", -1.0), ("d", 4.0)]);
    q::<i64>(c, &["SADD", "s", "c", "d", "e"]).unwrap();

    assert_eq!(
        q::<i64>(c, &["ZUNIONSTORE", "u", "2", "z1", "z2"]).unwrap(),
        4
    );
    assert_eq!(
        scores(c, "u"),
        p(&[("a", "1"), ("c", "2"), ("d", "4"), ("b", "12")])
    );
    assert_eq!(encoding(c, "u"), "listpack");
    assert_eq!(
        q::<i64>(
            c,
            &[
                "ZINTERSTORE",
                "i",
                "2",
                "z2",
                "s",
                "WEIGHTS",
                "2",
                "3",
                "AGGREGATE",
                "MAX"
            ]
        )
        .unwrap(),
        2
    );
    assert_eq!(scores(c, "i"), p(&[("c", "3"), ("d", "8")]));
    assert_eq!(
        q::<i64>(c, &["ZDIFFSTORE", "d", "2", "z2", "s"]).unwrap(),
        1
    );
    assert_eq!(scores(c, "d"), p(&[("b", "10")]));

    // An empty result deletes the destination (and creates nothing).
    assert_eq!(
        q::<i64>(c, &["ZDIFFSTORE", "d", "2", "z1", "z1"]).unwrap(),
        0
    );
    assert_eq!(q::<i64>(c, &["EXISTS", "d"]).unwrap(), 0);
    assert_eq!(
        q::<i64>(c, &["ZINTERSTORE", "i", "2", "z1", "nosuch"]).unwrap(),
        0
    );
    assert_eq!(q::<i64>(c, &["EXISTS", "i"]).unwrap(), 0);
    assert_eq!(
        q::<i64>(c, &["ZUNIONSTORE", "new", "1", "nosuch"]).unwrap(),
        0
    );
    assert_eq!(q::<i64>(c, &["EXISTS", "new"]).unwrap(), 0);

    // The destination may hold another type, or be a source; it loses its TTL.
    q::<()>(c, &["SET", "str", "v"]).unwrap();
    assert_eq!(q::<i64>(c, &["ZUNIONSTORE", "str", "1", "s"]).unwrap(), 3);
    assert_eq!(q::<String>(c, &["TYPE", "str"]).unwrap(), "zset");
    assert_eq!(q::<i64>(c, &["EXPIRE", "u", "100"]).unwrap(), 1);
    assert_eq!(
        q::<i64>(
            c,
            &["ZUNIONSTORE", "u", "2", "u", "z1", "WEIGHTS", "1", "100"]
        )
        .unwrap(),
        4
    );
    assert_eq!(q::<i64>(c, &["TTL", "u"]).unwrap(), -1);
    assert_eq!(
        scores(c, "u"),
        p(&[("d", "4"), ("a", "101"), ("b", "212"), ("c", "302")])
    );
    assert_eq!(
        q::<i64>(c, &["ZINTERSTORE", "u", "2", "u", "s"]).unwrap(),
        2
    );
    assert_eq!(scores(c, "u"), p(&[("d", "5"), ("c", "303")]));
    assert_eq!(q::<i64>(c, &["ZDIFFSTORE", "u", "1", "s"]).unwrap(), 3);
    assert_eq!(scores(c, "u"), p(&[("c", "1"), ("d", "1"), ("e", "1")]));
}

#[test]
fn encodings_follow_redis_thresholds() {
    let server = start();
    let c = &mut server.client();
    let m64 = "x".repeat(64);
    let m65 = "x".repeat(65);
    q::<i64>(c, &["SADD", "long", &m64]).unwrap();
    q::<i64>(c, &["SADD", "longer", &m65]).unwrap();
    q::<i64>(c, &["ZUNIONSTORE", "e64", "1", "long"]).unwrap();
    assert_eq!(encoding(c, "e64"), "listpack");
    q::<i64>(c, &["ZUNIONSTORE", "e65", "1", "longer"]).unwrap();
    assert_eq!(encoding(c, "e65"), "skiplist");
    sadd_many(c, "big", (0..128).map(|i| format!("m{i}")));
    q::<i64>(c, &["ZUNIONSTORE", "e128", "1", "big"]).unwrap();
    assert_eq!(encoding(c, "e128"), "listpack");
    q::<i64>(c, &["SADD", "more", "m128"]).unwrap();
    assert_eq!(
        q::<i64>(c, &["ZUNIONSTORE", "e129", "2", "big", "more"]).unwrap(),
        129
    );
    assert_eq!(encoding(c, "e129"), "skiplist");
    // A result is encoded by what it holds, not by its inputs.
    assert_eq!(
        q::<i64>(c, &["ZDIFFSTORE", "back", "2", "e129", "more"]).unwrap(),
        128
    );
    assert_eq!(encoding(c, "back"), "listpack");
    assert_eq!(
        q::<i64>(c, &["ZINTERSTORE", "one", "2", "e129", "more"]).unwrap(),
        1
    );
    assert_eq!(encoding(c, "one"), "listpack");
    assert_eq!(
        q::<i64>(
            c,
            &[
                "ZINTERSTORE",
                "e65b",
                "2",
                "e65",
                "longer",
                "WEIGHTS",
                "1",
                "2"
            ]
        )
        .unwrap(),
        1
    );
    assert_eq!(encoding(c, "e65b"), "skiplist");
    assert_eq!(scores(c, "e65b"), p(&[(&m65, "3")]));
    // Big inputs both ways give the same answers.
    assert_eq!(card(c, "e129"), 129);
    assert_eq!(
        q::<Vec<String>>(c, &["ZDIFF", "2", "e129", "big"]).unwrap(),
        ["m128"]
    );
    assert_eq!(
        q::<i64>(c, &["ZINTERCARD", "2", "e129", "big", "LIMIT", "7"]).unwrap(),
        7
    );
}

#[test]
fn zintercard_counts_and_stops_at_the_limit() {
    let server = start();
    let c = &mut server.client();
    sadd_many(c, "a", (0..20_000).map(|i| i.to_string()));
    sadd_many(c, "b", (10_000..30_000).map(|i| i.to_string()));
    q::<i64>(c, &["ZUNIONSTORE", "za", "1", "a"]).unwrap();
    q::<i64>(c, &["ZUNIONSTORE", "zb", "1", "b", "WEIGHTS", "2"]).unwrap();
    for (words, want) in [
        (&["ZINTERCARD", "2", "za", "zb"][..], 10_000),
        (&["ZINTERCARD", "2", "za", "b"], 10_000),
        (&["ZINTERCARD", "2", "za", "zb", "LIMIT", "0"], 10_000),
        (&["ZINTERCARD", "2", "za", "zb", "LIMIT", "1"], 1),
        (&["ZINTERCARD", "2", "za", "zb", "LIMIT", "123"], 123),
        (&["ZINTERCARD", "2", "za", "zb", "LIMIT", "99999"], 10_000),
        (
            &["ZINTERCARD", "2", "za", "zb", "LIMIT", "5", "LIMIT", "2"],
            2,
        ),
        (&["ZINTERCARD", "3", "za", "zb", "nosuch"], 0),
        (&["ZINTERCARD", "1", "zb"], 20_000),
        (&["ZUNIONSTORE", "u", "2", "za", "zb"], 30_000),
        (&["ZINTERSTORE", "i", "2", "za", "zb"], 10_000),
        (&["ZDIFFSTORE", "d", "2", "za", "zb"], 10_000),
        (&["ZDIFFSTORE", "d2", "2", "zb", "d"], 20_000),
    ] {
        assert_eq!(q::<i64>(c, words).unwrap(), want, "{words:?}");
    }
    assert_eq!(
        pairs(c, &["ZUNION", "1", "i", "WITHSCORES"])[..2],
        p(&[("10000", "3"), ("10001", "3")])
    );
    assert_eq!(encoding(c, "u"), "skiplist");
}

#[test]
fn zmpop_pops_from_the_first_non_empty_key() {
    let server = start();
    let c = &mut server.client();
    zset(c, "p", &[("a", 1.0), ("b", 2.0), ("c", 3.0)]);
    let pop = |c: &mut redis::Connection,
               words: &[&str]|
     -> Option<(String, Vec<(String, String)>)> { q(c, words).unwrap() };
    assert_eq!(
        pop(c, &["ZMPOP", "1", "p", "MIN"]),
        Some(("p".into(), p(&[("a", "1")])))
    );
    assert_eq!(
        pop(c, &["ZMPOP", "2", "nosuch", "p", "max"]),
        Some(("p".into(), p(&[("c", "3")])))
    );
    assert_eq!(
        pop(c, &["ZMPOP", "1", "p", "MAX", "COUNT", "10"]),
        Some(("p".into(), p(&[("b", "2")])))
    );
    assert_eq!(
        q::<i64>(c, &["EXISTS", "p"]).unwrap(),
        0,
        "emptied key removed"
    );
    assert_eq!(pop(c, &["ZMPOP", "1", "p", "MIN"]), None);
    assert_eq!(
        pop(c, &["ZMPOP", "2", "p", "nosuch", "MIN", "COUNT", "3"]),
        None
    );

    // Big sets: COUNT walks only what it pops.
    sadd_many(c, "big", (0..1000).map(|i| format!("m{i:04}")));
    q::<i64>(c, &["ZUNIONSTORE", "zbig", "1", "big"]).unwrap();
    assert_eq!(encoding(c, "zbig"), "skiplist");
    let (k, got) = pop(c, &["ZMPOP", "2", "nosuch", "zbig", "MAX", "COUNT", "3"]).unwrap();
    assert_eq!(k, "zbig");
    assert_eq!(got, p(&[("m0999", "1"), ("m0998", "1"), ("m0997", "1")]));
    let (_, got) = pop(c, &["ZMPOP", "1", "zbig", "MIN", "COUNT", "2"]).unwrap();
    assert_eq!(got, p(&[("m0000", "1"), ("m0001", "1")]));
    assert_eq!(card(c, "zbig"), 995);
    let (_, got) = pop(
        c,
        &["ZMPOP", "1", "zbig", "MIN", "COUNT", "9223372036854775807"],
    )
    .unwrap();
    assert_eq!(got.len(), 995);
    assert_eq!(q::<i64>(c, &["EXISTS", "zbig"]).unwrap(), 0);

    // Only the first existing key's type matters.
    q::<()>(c, &["SET", "str", "v"]).unwrap();
    zset(c, "q", &[("x", 1.0)]);
    assert_eq!(
        err_of(c, &["ZMPOP", "2", "nosuch", "str", "MIN"]),
        WRONGTYPE
    );
    assert_eq!(err_of(c, &["ZMPOP", "2", "str", "q", "MIN"]), WRONGTYPE);
    q::<i64>(c, &["SADD", "set", "x"]).unwrap();
    assert_eq!(
        err_of(c, &["ZMPOP", "1", "set", "MIN"]),
        WRONGTYPE,
        "a set does not pop"
    );
    assert_eq!(
        pop(c, &["ZMPOP", "2", "q", "str", "MIN"]),
        Some(("q".into(), p(&[("x", "1")])))
    );
}

#[test]
fn error_texts_match_redis() {
    let server = start();
    let c = &mut server.client();
    zset(c, "z1", &[("a", 1.0)]);
    zset(c, "z2", &[("b", 1.0)]);
    q::<()>(c, &["SET", "str", "v"]).unwrap();
    let need = |name: &str| format!("ERR at least 1 input key is needed for '{name}' command");
    let arity = |name: &str| format!("ERR wrong number of arguments for '{name}' command");
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["ZUNION", "0", "z1"], need("zunion")),
        (vec!["ZUNION", "-1", "z1"], need("zunion")),
        (
            vec!["ZUNION", "x", "z1"],
            "ERR value is not an integer or out of range".into(),
        ),
        (vec!["ZUNION", "3", "z1", "z2"], "ERR syntax error".into()),
        (
            vec!["ZUNION", "9223372036854775807", "z1"],
            "ERR syntax error".into(),
        ),
        (
            vec!["ZUNION", "2", "z1", "z2", "WEIGHTS", "1"],
            "ERR syntax error".into(),
        ),
        (
            vec!["ZUNION", "2", "z1", "z2", "WEIGHTS", "1", "x"],
            "ERR weight value is not a float".into(),
        ),
        (
            vec!["ZUNION", "2", "z1", "z2", "WEIGHTS", "1", "nan"],
            "ERR weight value is not a float".into(),
        ),
        (
            vec!["ZUNION", "2", "z1", "z2", "WEIGHTS", "1", " 1"],
            "ERR weight value is not a float".into(),
        ),
        (
            vec!["ZUNION", "2", "z1", "z2", "WEIGHTS", "1", "1e400"],
            "ERR weight value is not a float".into(),
        ),
        (
            vec!["ZUNION", "2", "z1", "z2", "WEIGHTS", "1", ""],
            "ERR weight value is not a float".into(),
        ),
        (
            vec!["ZUNION", "1", "z1", "AGGREGATE"],
            "ERR syntax error".into(),
        ),
        (
            vec!["ZUNION", "1", "z1", "AGGREGATE", "avg"],
            "ERR syntax error".into(),
        ),
        (
            vec!["ZUNION", "1", "z1", "LIMIT", "1"],
            "ERR syntax error".into(),
        ),
        (vec!["ZUNION", "1", "z1", "foo"], "ERR syntax error".into()),
        (vec!["ZINTER", "0", "z1"], need("zinter")),
        (
            vec!["ZINTER", "1", "z1", "WEIGHTS", "1", "2"],
            "ERR syntax error".into(),
        ),
        (vec!["ZDIFF", "0", "z1"], need("zdiff")),
        (
            vec!["ZDIFF", "2", "z1", "z2", "WEIGHTS", "1", "1"],
            "ERR syntax error".into(),
        ),
        (
            vec!["ZDIFF", "1", "z1", "AGGREGATE", "SUM"],
            "ERR syntax error".into(),
        ),
        (vec!["ZUNIONSTORE", "d", "0", "z1"], need("zunionstore")),
        (
            vec!["ZUNIONSTORE", "d", "x", "z1"],
            "ERR value is not an integer or out of range".into(),
        ),
        (
            vec!["ZUNIONSTORE", "d", "2", "z1"],
            "ERR syntax error".into(),
        ),
        (
            vec!["ZUNIONSTORE", "d", "1", "z1", "WITHSCORES"],
            "ERR syntax error".into(),
        ),
        (vec!["ZINTERSTORE", "d", "0", "z1"], need("zinterstore")),
        (
            vec!["ZINTERSTORE", "d", "1", "z1", "AGGREGATE", "foo"],
            "ERR syntax error".into(),
        ),
        (vec!["ZDIFFSTORE", "d", "0", "z1"], need("zdiffstore")),
        (
            vec!["ZDIFFSTORE", "d", "1", "z1", "WEIGHTS", "2"],
            "ERR syntax error".into(),
        ),
        (vec!["ZINTERCARD", "0", "z1"], need("zintercard")),
        (
            vec!["ZINTERCARD", "x", "z1"],
            "ERR value is not an integer or out of range".into(),
        ),
        (vec!["ZINTERCARD", "3", "z1"], "ERR syntax error".into()),
        (
            vec!["ZINTERCARD", "1", "z1", "LIMIT", "-1"],
            "ERR LIMIT can't be negative".into(),
        ),
        (
            vec!["ZINTERCARD", "1", "z1", "LIMIT", "x"],
            "ERR LIMIT can't be negative".into(),
        ),
        (
            vec!["ZINTERCARD", "1", "z1", "LIMIT"],
            "ERR syntax error".into(),
        ),
        (
            vec!["ZINTERCARD", "1", "z1", "WITHSCORES"],
            "ERR syntax error".into(),
        ),
        (
            vec!["ZINTERCARD", "1", "z1", "WEIGHTS", "1"],
            "ERR syntax error".into(),
        ),
        (
            vec!["ZMPOP", "0", "z1", "MIN"],
            "ERR numkeys should be greater than 0".into(),
        ),
        (
            vec!["ZMPOP", "x", "z1", "MIN"],
            "ERR numkeys should be greater than 0".into(),
        ),
        (vec!["ZMPOP", "2", "z1", "MIN"], "ERR syntax error".into()),
        (vec!["ZMPOP", "1", "z1", "foo"], "ERR syntax error".into()),
        (
            vec!["ZMPOP", "1", "z1", "MIN", "COUNT"],
            "ERR syntax error".into(),
        ),
        (
            vec!["ZMPOP", "1", "z1", "MIN", "COUNT", "0"],
            "ERR count should be greater than 0".into(),
        ),
        (
            vec!["ZMPOP", "1", "z1", "MIN", "COUNT", "x"],
            "ERR count should be greater than 0".into(),
        ),
        (
            vec!["ZMPOP", "1", "z1", "MIN", "COUNT", "1", "COUNT", "1"],
            "ERR syntax error".into(),
        ),
        (
            vec!["ZMPOP", "1", "nosuch", "MIN", "COUNT", "0"],
            "ERR count should be greater than 0".into(),
        ),
        (vec!["ZUNION", "1"], arity("zunion")),
        (vec!["ZINTER", "1"], arity("zinter")),
        (vec!["ZDIFF", "1"], arity("zdiff")),
        (vec!["ZUNIONSTORE", "d", "1"], arity("zunionstore")),
        (vec!["ZINTERSTORE", "d", "1"], arity("zinterstore")),
        (vec!["ZDIFFSTORE", "d", "1"], arity("zdiffstore")),
        (vec!["ZINTERCARD", "1"], arity("zintercard")),
        (vec!["ZMPOP", "1", "z1"], arity("zmpop")),
        // WRONGTYPE, judged before the options.
        (vec!["ZUNION", "2", "z1", "str"], WRONGTYPE.into()),
        (vec!["ZUNION", "2", "z1", "str", "foo"], WRONGTYPE.into()),
        (vec!["ZINTER", "2", "nosuch", "str"], WRONGTYPE.into()),
        (vec!["ZDIFF", "2", "nosuch", "str"], WRONGTYPE.into()),
        (vec!["ZUNIONSTORE", "d", "2", "z1", "str"], WRONGTYPE.into()),
        (vec!["ZINTERSTORE", "d", "1", "str"], WRONGTYPE.into()),
        (
            vec!["ZDIFFSTORE", "d", "1", "str", "WEIGHTS"],
            WRONGTYPE.into(),
        ),
        (vec!["ZINTERCARD", "2", "z1", "str"], WRONGTYPE.into()),
        (
            vec!["ZINTERCARD", "2", "str", "z1", "LIMIT", "-1"],
            WRONGTYPE.into(),
        ),
    ];
    for (words, want) in &cases {
        assert_eq!(&err_of(c, words), want, "{words:?}");
    }
    assert_eq!(q::<i64>(c, &["EXISTS", "d"]).unwrap(), 0, "no error wrote");
    // Lists and hashes are no sorted sets either; a string command on a sorted set fails.
    q::<i64>(c, &["RPUSH", "list", "a"]).unwrap();
    q::<i64>(c, &["HSET", "hash", "f", "v"]).unwrap();
    assert_eq!(err_of(c, &["ZUNION", "1", "list"]), WRONGTYPE);
    assert_eq!(
        err_of(c, &["ZINTERSTORE", "d", "2", "z1", "hash"]),
        WRONGTYPE
    );
    assert_eq!(err_of(c, &["GET", "z1"]), WRONGTYPE);
    assert_eq!(err_of(c, &["APPEND", "z1", "x"]), WRONGTYPE);
    assert_eq!(err_of(c, &["SADD", "z1", "x"]), WRONGTYPE);
    // A destination holding another type is left as it was when the command fails.
    assert_eq!(
        err_of(c, &["ZUNIONSTORE", "str", "2", "z1", "list"]),
        WRONGTYPE
    );
    assert_eq!(q::<String>(c, &["GET", "str"]).unwrap(), "v");
}

#[test]
fn generic_commands_on_results() {
    let server = start();
    let c = &mut server.client();
    let k = spread("g", 1);
    let (a, b, d) = (&k[0][0], &k[1][0], &k[2][0]);
    zset(c, a, &[("x", 1.0), ("y", 2.0)]);
    assert_eq!(q::<i64>(c, &["EXPIRE", a, "100"]).unwrap(), 1);
    q::<()>(c, &["RENAME", a, b]).unwrap();
    assert!(
        q::<i64>(c, &["TTL", b]).unwrap() > 90,
        "RENAME keeps the TTL"
    );
    assert_eq!(scores(c, b), p(&[("x", "1"), ("y", "2")]));
    assert_eq!(q::<i64>(c, &["COPY", b, d]).unwrap(), 1);
    q::<i64>(c, &["ZUNIONSTORE", d, "1", d, "WEIGHTS", "10"]).unwrap();
    assert_eq!(
        scores(c, b),
        p(&[("x", "1"), ("y", "2")]),
        "a copy is independent"
    );
    assert_eq!(scores(c, d), p(&[("x", "10"), ("y", "20")]));
    assert_eq!(q::<String>(c, &["TYPE", d]).unwrap(), "zset");
    assert_eq!(q::<i64>(c, &["DEL", b, d]).unwrap(), 2);
    assert_eq!(q::<i64>(c, &["EXISTS", b, d]).unwrap(), 0);
    zset(c, "short", &[("x", 1.0)]);
    q::<i64>(c, &["PEXPIRE", "short", "50"]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(120));
    assert!(scores(c, "short").is_empty(), "expired keys read as absent");
    assert_eq!(q::<i64>(c, &["ZINTERCARD", "1", "short"]).unwrap(), 0);
    assert_eq!(
        q::<Value>(c, &["ZMPOP", "1", "short", "MIN"]).unwrap(),
        Value::Nil
    );
}

#[test]
fn keys_on_four_shards() {
    let server = start();
    let c = &mut server.client();
    let k = spread("x", 2);
    let (a, b, d, e) = (&k[0][0], &k[1][0], &k[2][0], &k[3][0]);
    let same = &k[0][1]; // on a's shard
    zset(c, a, &[("1", 1.0), ("2", 2.0), ("3", 3.0), ("x", 4.0)]);
    zset(c, b, &[("3", 30.0), ("4", 40.0), ("x", 50.0)]);
    q::<i64>(c, &["SADD", d, "3", "x", "9"]).unwrap();
    zset(c, same, &[("1", -1.0), ("x", -4.0)]);

    assert_eq!(
        pairs(c, &["ZUNION", "3", a, b, d, "WITHSCORES"]),
        p(&[
            ("1", "1"),
            ("9", "1"),
            ("2", "2"),
            ("3", "34"),
            ("4", "40"),
            ("x", "55")
        ])
    );
    assert_eq!(
        pairs(
            c,
            &[
                "ZINTER",
                "3",
                a,
                b,
                d,
                "WEIGHTS",
                "1",
                "1",
                "100",
                "WITHSCORES"
            ]
        ),
        p(&[("3", "133"), ("x", "154")])
    );
    assert_eq!(
        pairs(
            c,
            &["ZINTER", "2", a, same, "AGGREGATE", "MIN", "WITHSCORES"]
        ),
        p(&[("x", "-4"), ("1", "-1")]),
        "one shard"
    );
    assert_eq!(
        pairs(c, &["ZDIFF", "3", a, b, same, "WITHSCORES"]),
        p(&[("2", "2")])
    );
    assert!(pairs(c, &["ZINTER", "4", a, b, d, e, "WITHSCORES"]).is_empty());
    assert_eq!(q::<i64>(c, &["ZINTERCARD", "3", a, b, d]).unwrap(), 2);
    assert_eq!(
        q::<i64>(c, &["ZINTERCARD", "3", a, b, d, "LIMIT", "1"]).unwrap(),
        1
    );
    assert_eq!(q::<i64>(c, &["ZINTERCARD", "4", a, b, d, e]).unwrap(), 0);

    // STORE forms with the destination on the fourth shard, and onto a source.
    assert_eq!(q::<i64>(c, &["ZUNIONSTORE", e, "3", a, b, d]).unwrap(), 6);
    assert_eq!(scores(c, e)[5], ("x".to_string(), "55".to_string()));
    assert_eq!(
        q::<i64>(c, &["ZINTERSTORE", e, "3", e, b, d, "AGGREGATE", "MAX"]).unwrap(),
        2
    );
    assert_eq!(scores(c, e), p(&[("3", "34"), ("x", "55")]));
    assert_eq!(q::<i64>(c, &["ZDIFFSTORE", e, "2", a, e]).unwrap(), 2);
    assert_eq!(scores(c, e), p(&[("1", "1"), ("2", "2")]));
    assert_eq!(q::<i64>(c, &["ZDIFFSTORE", e, "2", e, a]).unwrap(), 0);
    assert_eq!(
        q::<i64>(c, &["EXISTS", e]).unwrap(),
        0,
        "empty result deletes"
    );
    q::<()>(c, &["SET", e, "string"]).unwrap();
    assert_eq!(err_of(c, &["ZINTERSTORE", d, "2", a, e]), WRONGTYPE);
    assert_eq!(
        q::<String>(c, &["TYPE", d]).unwrap(),
        "set",
        "untouched on error"
    );
    assert_eq!(q::<i64>(c, &["ZUNIONSTORE", e, "1", d]).unwrap(), 3);
    assert_eq!(q::<String>(c, &["TYPE", e]).unwrap(), "zset");

    // ZMPOP across shards: the first non-empty key, wherever it lives.
    let popped: (String, Vec<(String, String)>) = q(
        c,
        &["ZMPOP", "3", &k[1][1], &k[2][1], b, "MAX", "COUNT", "2"],
    )
    .unwrap();
    assert_eq!(popped, (b.clone(), p(&[("x", "50"), ("4", "40")])));
    assert_eq!(err_of(c, &["ZMPOP", "2", &k[3][1], d, "MIN"]), WRONGTYPE);
    assert_eq!(scores(c, b), p(&[("3", "30")]));
}

#[test]
fn multi_exec_across_shards() {
    let server = start();
    let c = &mut server.client();
    let k = spread("t", 1);
    let (a, b, d, e) = (&k[0][0], &k[1][0], &k[2][0], &k[3][0]);
    zset(c, a, &[("1", 1.0), ("2", 2.0), ("3", 3.0)]);
    q::<i64>(c, &["SADD", b, "3", "4"]).unwrap();
    #[allow(clippy::type_complexity)]
    let (stored, inter, card, popped, diffed, union): (
        i64,
        Vec<String>,
        i64,
        (String, Vec<(String, String)>),
        i64,
        Vec<String>,
    ) = redis::pipe()
        .atomic()
        .cmd("ZUNIONSTORE")
        .arg(d)
        .arg(2)
        .arg(a)
        .arg(b)
        .cmd("ZINTER")
        .arg(2)
        .arg(d)
        .arg(b)
        .arg("WITHSCORES")
        .cmd("ZINTERCARD")
        .arg(2)
        .arg(a)
        .arg(d)
        .cmd("ZMPOP")
        .arg(2)
        .arg(e)
        .arg(d)
        .arg("MAX")
        .arg("COUNT")
        .arg(2)
        .cmd("ZDIFFSTORE")
        .arg(e)
        .arg(2)
        .arg(a)
        .arg(d)
        .cmd("ZUNION")
        .arg(2)
        .arg(d)
        .arg(e)
        .query(c)
        .unwrap();
    assert_eq!(stored, 4);
    assert_eq!(inter, ["4", "2", "3", "5"]);
    assert_eq!(card, 3);
    assert_eq!(popped, (d.clone(), p(&[("3", "4"), ("2", "2")])));
    assert_eq!(diffed, 2);
    assert_eq!(union, ["1", "4", "2", "3"]);
    assert_eq!(scores(c, d), p(&[("1", "1"), ("4", "1")]));
    assert_eq!(scores(c, e), p(&[("2", "2"), ("3", "3")]));
    // A failing command inside does not stop the others (Redis semantics).
    q::<()>(c, &["SET", b, "s"]).unwrap();
    let mut raw = server.raw();
    for words in [
        &[&b"MULTI"[..]][..],
        &[
            b"ZUNIONSTORE",
            e.as_bytes(),
            b"2",
            a.as_bytes(),
            b.as_bytes(),
        ],
        &[b"ZINTERCARD", b"2", a.as_bytes(), e.as_bytes()],
        &[b"EXEC"],
    ] {
        raw.cmd(words);
    }
    for want in ["+OK\r\n", "+QUEUED\r\n", "+QUEUED\r\n"] {
        assert_eq!(raw.reply_str(), want);
    }
    assert_eq!(raw.reply_str(), format!("*2\r\n-{WRONGTYPE}\r\n:2\r\n"));
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
    let c = &mut server.client();
    // One hash tag: the events of one shard arrive in order.
    q::<i64>(c, &["SADD", "{e}s", "a", "b", "c"]).unwrap();
    let mut ev = server.raw();
    ev.cmd(&[b"PSUBSCRIBE", b"__keyevent@0__:*"]);
    let _ = ev.reply();
    for words in [
        &["ZUNIONSTORE", "{e}z", "1", "{e}s"][..],
        &["ZINTERSTORE", "{e}i", "2", "{e}s", "{e}z"],
        &["ZDIFFSTORE", "{e}d", "1", "{e}z"],
        &["ZDIFFSTORE", "{e}d", "2", "{e}z", "{e}s"],
        &["ZDIFFSTORE", "{e}d", "2", "{e}z", "{e}s"],
        &["ZMPOP", "1", "{e}z", "MIN"],
        &["ZMPOP", "1", "{e}z", "MAX", "COUNT", "5"],
        &["ZUNION", "1", "{e}i"],
        &["ZINTERCARD", "1", "{e}i"],
    ] {
        q::<Value>(c, words).unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..7 {
        let m = ev.reply_str().replace("\r\n", "\n");
        let parts: Vec<&str> = m.split('\n').collect();
        got.push(format!(
            "{} {}",
            parts[6].trim_start_matches("__keyevent@0__:"),
            parts[8]
        ));
    }
    assert_eq!(
        got,
        [
            "zunionstore {e}z",
            "zinterstore {e}i",
            "zdiffstore {e}d",
            "del {e}d",
            "zpopmin {e}z",
            "zpopmax {e}z",
            "del {e}z",
        ]
    );
}

fn start_on(dir: &DataDir, shards: usize) -> Server {
    let shards = shards.to_string();
    Server::start_raw(&["--dir", dir.path(), "--shards", &shards], None)
}

/// A key's "name:type", encoding and entries.
type Entry = (String, String, Vec<(String, String)>);

/// What the persistence tests expect, read from the server that wrote it.
fn snapshot(c: &mut redis::Connection, keys: &[String]) -> Vec<Entry> {
    keys.iter()
        .map(|k| {
            let ty: String = q(c, &["TYPE", k]).unwrap();
            let (enc, m) = if ty == "zset" {
                (encoding(c, k), scores(c, k))
            } else {
                (String::new(), vec![])
            };
            (format!("{k}:{ty}"), enc, m)
        })
        .collect()
}

/// Restart on the same data with 4, 2 and 3 shards (killed or terminated between), and
/// compare every key with what the first server held.
fn check_restarts(dir: &DataDir, keys: &[String], before: &[Entry]) {
    for (shards, graceful) in [(4, true), (2, false), (3, true)] {
        let mut s = start_on(dir, shards);
        let c = &mut s.client();
        assert_eq!(
            snapshot(c, keys),
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

#[test]
fn stored_results_survive_restarts() {
    let dir = DataDir::new("zagg");
    let k = spread("ps", 3);
    let keys: Vec<String> = k.iter().flatten().cloned().collect();
    let (a, b, d, e) = (&k[0][0], &k[1][0], &k[2][0], &k[3][0]);
    let (a2, b2, d2, e2) = (&k[0][1], &k[1][1], &k[2][1], &k[3][1]);
    let before = {
        let mut s = start_on(&dir, 4);
        let c = &mut s.client();
        sadd_many(c, a, (0..300).map(|i| format!("m{i}")));
        q::<i64>(c, &["SADD", b, "m1", "m2", "x"]).unwrap();
        // Across shards, onto a string, onto a source, an emptying one, one shard.
        q::<i64>(c, &["ZUNIONSTORE", d, "2", a, b, "WEIGHTS", "1.5", "2"]).unwrap();
        q::<()>(c, &["SET", e, "was a string"]).unwrap();
        q::<i64>(c, &["ZINTERSTORE", e, "2", d, b, "AGGREGATE", "MAX"]).unwrap();
        q::<i64>(c, &["ZDIFFSTORE", d2, "2", d, a]).unwrap();
        q::<i64>(c, &["ZUNIONSTORE", d, "2", d, e, "WEIGHTS", "1", "-1"]).unwrap();
        q::<i64>(c, &["ZUNIONSTORE", b2, "1", b]).unwrap();
        q::<i64>(c, &["ZINTERSTORE", b2, "2", b2, "nosuch"]).unwrap();
        q::<i64>(c, &["ZUNIONSTORE", a2, "1", b]).unwrap();
        q::<i64>(c, &["ZINTERSTORE", &k[0][2], "2", a, a2]).unwrap();
        // In a transaction across shards.
        let _: Value = redis::pipe()
            .atomic()
            .cmd("ZUNIONSTORE")
            .arg(e2)
            .arg(2)
            .arg(a2)
            .arg(b)
            .cmd("ZDIFFSTORE")
            .arg(&k[1][2])
            .arg(2)
            .arg(e2)
            .arg(&k[0][2])
            .query(c)
            .unwrap();
        let snap = snapshot(c, &keys);
        s.kill9();
        snap
    };
    assert!(before.iter().any(|(_, enc, _)| enc == "skiplist"));
    assert!(before.iter().any(|(_, enc, _)| enc == "listpack"));
    assert!(before.iter().any(|(k, _, _)| k.ends_with(":none")));
    check_restarts(&dir, &keys, &before);
}

/// ZMPOP is journaled as ZPOPMIN / ZPOPMAX of what it popped (replayed by the sorted-set
/// family's own commands).
#[test]
fn zmpop_survives_restarts() {
    let dir = DataDir::new("zmpop");
    let k = spread("pz", 2);
    let keys: Vec<String> = k.iter().flatten().cloned().collect();
    let (a, b, d, e) = (&k[0][0], &k[1][0], &k[2][0], &k[3][0]);
    let before = {
        let mut s = start_on(&dir, 4);
        let c = &mut s.client();
        sadd_many(c, "src", (0..200).map(|i| format!("m{i}")));
        q::<i64>(c, &["ZUNIONSTORE", a, "1", "src"]).unwrap();
        zset(c, b, &[("x", 1.0), ("y", 2.0), ("z", 3.0)]);
        zset(c, d, &[("p", 1.0)]);
        q::<Value>(c, &["ZMPOP", "1", a, "MIN", "COUNT", "10"]).unwrap();
        q::<Value>(c, &["ZMPOP", "1", a, "MAX", "COUNT", "7"]).unwrap();
        q::<Value>(c, &["ZMPOP", "1", a, "MAX"]).unwrap();
        q::<Value>(c, &["ZMPOP", "2", e, b, "MAX"]).unwrap(); // across shards
        q::<Value>(c, &["ZMPOP", "1", d, "MIN", "COUNT", "9"]).unwrap(); // emptied
        let _: Value = redis::pipe()
            .atomic()
            .cmd("ZMPOP")
            .arg(1)
            .arg(b)
            .arg("MIN")
            .cmd("ZUNIONSTORE")
            .arg(e)
            .arg(2)
            .arg(b)
            .arg(&k[0][1])
            .cmd("ZMPOP")
            .arg(2)
            .arg(&k[1][1])
            .arg(a)
            .arg("MIN")
            .arg("COUNT")
            .arg(3)
            .query(c)
            .unwrap();
        let snap = snapshot(c, &keys);
        s.kill9();
        snap
    };
    assert_eq!(before[0].2.len(), 200 - 10 - 7 - 1 - 3);
    check_restarts(&dir, &keys, &before);
}
