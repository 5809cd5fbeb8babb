//! The set family through the `redis` crate on `--shards 4`: replies and error texts,
//! encodings at Redis's thresholds, random members, multi-key forms across shards (also
//! inside MULTI/EXEC), generic commands on sets, keyspace events, and persistence of
//! every kind of set write (also the journaled rewrites of SPOP and SMOVE).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

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

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn members(c: &mut redis::Connection, key: &str) -> BTreeSet<String> {
    q::<Vec<String>>(c, &["SMEMBERS", key])
        .unwrap()
        .into_iter()
        .collect()
}

fn set_of(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn encoding(c: &mut redis::Connection, key: &str) -> String {
    q(c, &["OBJECT", "ENCODING", key]).unwrap()
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

#[test]
fn single_key_replies_and_errors() {
    let server = start();
    let c = &mut server.client();
    assert_eq!(q::<i64>(c, &["SADD", "s", "3", "1", "2", "1"]).unwrap(), 3);
    assert_eq!(q::<i64>(c, &["SADD", "s", "2", "4"]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["SCARD", "s"]).unwrap(), 4);
    assert_eq!(
        q::<Vec<String>>(c, &["SMEMBERS", "s"]).unwrap(),
        ["1", "2", "3", "4"],
        "an intset answers in numeric order"
    );
    assert_eq!(q::<i64>(c, &["SISMEMBER", "s", "2"]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["SISMEMBER", "s", "02"]).unwrap(), 0);
    assert_eq!(q::<i64>(c, &["SISMEMBER", "nosuch", "2"]).unwrap(), 0);
    assert_eq!(
        q::<Vec<i64>>(c, &["SMISMEMBER", "s", "1", "9", "4", "x"]).unwrap(),
        [1, 0, 1, 0]
    );
    assert_eq!(
        q::<Vec<i64>>(c, &["SMISMEMBER", "nosuch", "a", "b"]).unwrap(),
        [0, 0]
    );
    assert_eq!(q::<i64>(c, &["SREM", "s", "1", "9", "1"]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["SREM", "nosuch", "1"]).unwrap(), 0);
    assert_eq!(q::<i64>(c, &["SCARD", "nosuch"]).unwrap(), 0);
    assert!(q::<Vec<String>>(c, &["SMEMBERS", "nosuch"])
        .unwrap()
        .is_empty());
    assert_eq!(q::<i64>(c, &["SREM", "s", "2", "3", "4"]).unwrap(), 3);
    assert_eq!(
        q::<i64>(c, &["EXISTS", "s"]).unwrap(),
        0,
        "emptied sets vanish"
    );
    assert_eq!(q::<i64>(c, &["SADD", "e", ""]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["SISMEMBER", "e", ""]).unwrap(), 1);

    // Arity and option errors, as Redis words them.
    for (words, want) in [
        (&["SADD", "s"][..], "ERR wrong number of arguments for 'sadd' command"),
        (&["SMEMBERS", "a", "b"], "ERR wrong number of arguments for 'smembers' command"),
        (&["SMOVE", "a", "b"], "ERR wrong number of arguments for 'smove' command"),
        (&["SINTERSTORE", "d"], "ERR wrong number of arguments for 'sinterstore' command"),
        (&["SPOP", "e", "1", "2"], "ERR syntax error"),
        (&["SPOP", "e", "-1"], "ERR value is out of range, must be positive"),
        (&["SPOP", "e", "x"], "ERR value is out of range, must be positive"),
        (&["SRANDMEMBER", "e", "1", "2"], "ERR syntax error"),
        (&["SRANDMEMBER", "e", "x"], "ERR value is not an integer or out of range"),
        (
            &["SRANDMEMBER", "e", "-9223372036854775808"],
            "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
        ),
        (&["SINTERCARD", "0", "e"], "ERR numkeys should be greater than 0"),
        (&["SINTERCARD", "x", "e"], "ERR numkeys should be greater than 0"),
        (&["SINTERCARD", "3", "e", "f"], "ERR Number of keys can't be greater than number of args"),
        (&["SINTERCARD", "1", "e", "LIMIT", "-1"], "ERR LIMIT can't be negative"),
        (&["SINTERCARD", "1", "e", "LIMIT"], "ERR syntax error"),
        (&["SINTERCARD", "1", "e", "f"], "ERR syntax error"),
        (&["SSCAN", "e", "x"], "ERR invalid cursor"),
        (&["SSCAN", "e", "0", "COUNT", "0"], "ERR syntax error"),
        (&["SSCAN", "e", "0", "COUNT", "x"], "ERR value is not an integer or out of range"),
        (&["SSCAN", "e", "0", "MATCH"], "ERR syntax error"),
        (&["SSCAN", "e", "0", "TYPE", "set"], "ERR syntax error"),
    ] {
        assert_eq!(err_of(c, words), want, "{words:?}");
    }
}

#[test]
fn wrong_types_both_ways() {
    let server = start();
    let c = &mut server.client();
    q::<()>(c, &["SET", "str", "v"]).unwrap();
    q::<i64>(c, &["SADD", "set", "a"]).unwrap();
    for words in [
        &["SADD", "str", "a"][..],
        &["SREM", "str", "a"],
        &["SMEMBERS", "str"],
        &["SISMEMBER", "str", "a"],
        &["SMISMEMBER", "str", "a"],
        &["SCARD", "str"],
        &["SPOP", "str"],
        &["SPOP", "str", "0"],
        &["SRANDMEMBER", "str"],
        &["SRANDMEMBER", "str", "2"],
        &["SSCAN", "str", "0"],
        &["SMOVE", "str", "set", "a"],
        &["SMOVE", "set", "str", "a"],
        &["SINTER", "nosuch", "str"],
        &["SUNION", "set", "str"],
        &["SDIFF", "nosuch", "str"],
        &["SINTERCARD", "2", "set", "str"],
        &["SINTERSTORE", "d", "set", "str"],
        &["SUNIONSTORE", "d", "str"],
        &["SDIFFSTORE", "d", "nosuch", "str"],
        &["GET", "set"],
        &["APPEND", "set", "x"],
        &["INCR", "set"],
    ] {
        assert_eq!(err_of(c, words), WRONGTYPE, "{words:?}");
    }
    assert_eq!(q::<i64>(c, &["EXISTS", "d"]).unwrap(), 0);
    assert_eq!(q::<i64>(c, &["SMOVE", "nosuch", "str", "a"]).unwrap(), 0);
    // The STORE forms overwrite a destination of any type; SET overwrites a set.
    assert_eq!(q::<i64>(c, &["SUNIONSTORE", "str", "set"]).unwrap(), 1);
    assert_eq!(q::<String>(c, &["TYPE", "str"]).unwrap(), "set");
    q::<()>(c, &["SET", "set", "plain"]).unwrap();
    assert_eq!(q::<String>(c, &["GET", "set"]).unwrap(), "plain");
}

#[test]
fn encodings_switch_at_redis_thresholds() {
    let server = start();
    let c = &mut server.client();
    assert_eq!(sadd_many(c, "ints", (0..512).map(|i| i.to_string())), 512);
    assert_eq!(encoding(c, "ints"), "intset");
    assert_eq!(q::<String>(c, &["TYPE", "ints"]).unwrap(), "set");
    assert_eq!(q::<i64>(c, &["SADD", "ints", "511"]).unwrap(), 0);
    assert_eq!(encoding(c, "ints"), "intset");
    assert_eq!(q::<i64>(c, &["SADD", "ints", "512"]).unwrap(), 1);
    assert_eq!(encoding(c, "ints"), "hashtable");
    q::<i64>(c, &["SREM", "ints", "512"]).unwrap();
    assert_eq!(encoding(c, "ints"), "hashtable", "conversion is one way");
    for (member, want) in [
        ("-9223372036854775808", "intset"),
        ("9223372036854775807", "intset"),
        ("9223372036854775808", "hashtable"),
        ("-0", "hashtable"),
        ("007", "hashtable"),
        ("+1", "hashtable"),
        (" 1", "hashtable"),
        ("a", "hashtable"),
    ] {
        let key = format!("enc:{member}");
        q::<i64>(c, &["SADD", &key, "1", member]).unwrap();
        assert_eq!(encoding(c, &key), want, "{member:?}");
    }
    // Results are built like Redis's: an intset while they can be one.
    q::<i64>(c, &["SADD", "mixed", "a", "1", "2"]).unwrap();
    assert_eq!(
        q::<i64>(c, &["SINTERSTORE", "r1", "mixed", "ints"]).unwrap(),
        2
    );
    assert_eq!(encoding(c, "r1"), "intset");
    assert_eq!(
        q::<i64>(c, &["SUNIONSTORE", "r2", "mixed", "ints"]).unwrap(),
        513
    );
    assert_eq!(encoding(c, "r2"), "hashtable");
    assert_eq!(
        q::<i64>(c, &["SDIFFSTORE", "r3", "mixed", "ints"]).unwrap(),
        1
    );
    assert_eq!(encoding(c, "r3"), "hashtable");
    assert_eq!(q::<i64>(c, &["SMOVE", "mixed", "r4", "1"]).unwrap(), 1);
    assert_eq!(encoding(c, "r4"), "intset");
    assert_eq!(q::<i64>(c, &["SMOVE", "mixed", "r4", "a"]).unwrap(), 1);
    assert_eq!(encoding(c, "r4"), "hashtable");
}

#[test]
fn spop_and_srandmember() {
    let server = start();
    let c = &mut server.client();
    let all: BTreeSet<String> = (1..=10).map(|i| i.to_string()).collect();
    sadd_many(c, "p", all.iter().cloned());
    let one: String = q(c, &["SPOP", "p"]).unwrap();
    assert!(all.contains(&one));
    let three: Vec<String> = q(c, &["SPOP", "p", "3"]).unwrap();
    assert_eq!(three.iter().collect::<BTreeSet<_>>().len(), 3);
    assert!(!three.contains(&one));
    assert_eq!(q::<i64>(c, &["SCARD", "p"]).unwrap(), 6);
    assert!(q::<Vec<String>>(c, &["SPOP", "p", "0"]).unwrap().is_empty());
    let rest: Vec<String> = q(c, &["SPOP", "p", "100"]).unwrap();
    assert_eq!(rest.len(), 6);
    let mut seen: BTreeSet<String> = rest.into_iter().chain(three).collect();
    seen.insert(one);
    assert_eq!(seen, all, "every member popped exactly once");
    assert_eq!(q::<i64>(c, &["EXISTS", "p"]).unwrap(), 0);
    assert_eq!(q::<Option<String>>(c, &["SPOP", "p"]).unwrap(), None);
    assert!(q::<Vec<String>>(c, &["SPOP", "p", "3"]).unwrap().is_empty());
    q::<i64>(c, &["SADD", "p", "5", "1", "3"]).unwrap();
    assert_eq!(
        q::<Vec<String>>(c, &["SPOP", "p", "3"]).unwrap(),
        ["1", "3", "5"],
        "popping a whole intset answers it in order"
    );

    sadd_many(c, "r", all.iter().cloned());
    let m: String = q(c, &["SRANDMEMBER", "r"]).unwrap();
    assert!(all.contains(&m));
    for n in [1, 3, 9, 10, 50] {
        let got: Vec<String> = q(c, &["SRANDMEMBER", "r", &n.to_string()]).unwrap();
        let distinct: BTreeSet<String> = got.iter().cloned().collect();
        assert_eq!(got.len(), n.min(10), "count {n}");
        assert_eq!(distinct.len(), got.len(), "distinct for count {n}");
        assert!(distinct.is_subset(&all));
    }
    let got: Vec<String> = q(c, &["SRANDMEMBER", "r", "-25"]).unwrap();
    assert_eq!(got.len(), 25, "a negative count may repeat");
    assert!(got.iter().all(|m| all.contains(m)));
    assert!(q::<Vec<String>>(c, &["SRANDMEMBER", "r", "0"])
        .unwrap()
        .is_empty());
    assert_eq!(
        q::<i64>(c, &["SCARD", "r"]).unwrap(),
        10,
        "SRANDMEMBER keeps them"
    );
    assert_eq!(
        q::<Option<String>>(c, &["SRANDMEMBER", "nosuch"]).unwrap(),
        None
    );
    assert!(q::<Vec<String>>(c, &["SRANDMEMBER", "nosuch", "-5"])
        .unwrap()
        .is_empty());
    q::<i64>(c, &["SADD", "only", "x"]).unwrap();
    assert_eq!(
        q::<Vec<String>>(c, &["SRANDMEMBER", "only", "-3"]).unwrap(),
        ["x", "x", "x"]
    );

    // Both are roughly uniform: every member shows up over many draws.
    let mut hits = BTreeSet::new();
    for _ in 0..200 {
        hits.insert(q::<String>(c, &["SRANDMEMBER", "r"]).unwrap());
    }
    assert_eq!(hits, all);
}

/// SPOP and SRANDMEMBER cost per member returned, not per member held (no quadratic
/// paths): popping half of a big hashtable set one random position at a time.
#[test]
fn spop_with_a_big_count_is_bounded() {
    let server = start();
    let c = &mut server.client();
    let n = 200_000;
    for chunk in 0..4 {
        let lo = chunk * n / 4;
        sadd_many(c, "big", (lo..lo + n / 4).map(|i| format!("m{i}")));
    }
    assert_eq!(q::<i64>(c, &["SCARD", "big"]).unwrap(), n as i64);
    let t = Instant::now();
    let popped: Vec<String> = q(c, &["SPOP", "big", &(n / 2).to_string()]).unwrap();
    assert_eq!(popped.len(), n / 2);
    assert_eq!(popped.iter().collect::<BTreeSet<_>>().len(), n / 2);
    let sample: Vec<String> = q(c, &["SRANDMEMBER", "big", &(n / 4).to_string()]).unwrap();
    assert_eq!(sample.iter().collect::<BTreeSet<_>>().len(), n / 4);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(q::<i64>(c, &["SCARD", "big"]).unwrap(), (n / 2) as i64);
    assert_eq!(
        q::<Vec<i64>>(c, &["SMISMEMBER", "big", &popped[0], &sample[0]]).unwrap(),
        [0, 1]
    );
}

#[test]
fn sscan_walks_every_member() {
    let server = start();
    let c = &mut server.client();
    sadd_many(c, "h", (0..1000).map(|i| format!("m{i}")));
    let mut seen = BTreeSet::new();
    let mut cursor = "0".to_string();
    let mut rounds = 0;
    loop {
        let (next, items): (String, Vec<String>) =
            q(c, &["SSCAN", "h", &cursor, "COUNT", "25"]).unwrap();
        assert!(items.len() <= 25);
        seen.extend(items);
        rounds += 1;
        cursor = next;
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen.len(), 1000);
    assert!(rounds >= 40, "{rounds} rounds");
    let (next, items): (String, Vec<String>) =
        q(c, &["SSCAN", "h", "0", "MATCH", "m99*", "COUNT", "2000"]).unwrap();
    assert_eq!(next, "0");
    assert_eq!(
        sorted(items),
        ["m99", "m990", "m991", "m992", "m993", "m994", "m995", "m996", "m997", "m998", "m999"]
    );
    // An intset comes back whole, in order, with cursor 0.
    q::<i64>(c, &["SADD", "i", "3", "1", "2"]).unwrap();
    let page: (String, Vec<String>) = q(c, &["SSCAN", "i", "0", "COUNT", "1"]).unwrap();
    assert_eq!(
        page,
        ("0".to_string(), vec!["1".into(), "2".into(), "3".into()])
    );
    let page: (String, Vec<String>) = q(c, &["SSCAN", "nosuch", "0"]).unwrap();
    assert_eq!(page, ("0".to_string(), vec![]));
}

#[test]
fn resp3_replies_are_sets_where_redis_sends_sets() {
    let server = start();
    let c = &mut server.client_resp3();
    q::<i64>(c, &["SADD", "a", "1", "2", "3"]).unwrap();
    q::<i64>(c, &["SADD", "b", "2", "3", "4"]).unwrap();
    let bulks = |v: &[&str]| {
        v.iter()
            .map(|s| Value::BulkString(s.as_bytes().to_vec()))
            .collect::<Vec<_>>()
    };
    for (words, want) in [
        (&["SMEMBERS", "a"][..], bulks(&["1", "2", "3"])),
        (&["SINTER", "a", "b"], bulks(&["2", "3"])),
        (&["SUNION", "a", "b"], bulks(&["1", "2", "3", "4"])),
        (&["SDIFF", "a", "b"], bulks(&["1"])),
        (&["SMEMBERS", "nosuch"], vec![]),
        (&["SPOP", "nosuch", "2"], vec![]),
    ] {
        assert_eq!(q::<Value>(c, words).unwrap(), Value::Set(want), "{words:?}");
    }
    assert_eq!(
        q::<Value>(c, &["SRANDMEMBER", "a", "3"]).unwrap(),
        Value::Array(bulks(&["1", "2", "3"]))
    );
    assert_eq!(
        q::<Value>(c, &["SMISMEMBER", "a", "1", "9"]).unwrap(),
        Value::Array(vec![Value::Int(1), Value::Int(0)])
    );
    assert_eq!(
        q::<Value>(c, &["SPOP", "a", "5"]).unwrap(),
        Value::Set(bulks(&["1", "2", "3"]))
    );
    assert_eq!(q::<Value>(c, &["SPOP", "a"]).unwrap(), Value::Nil);
}

#[test]
fn multi_key_forms_across_shards() {
    let server = start();
    let c = &mut server.client();
    let k = spread("x", 2);
    let (a, b, d, e) = (&k[0][0], &k[1][0], &k[2][0], &k[3][0]);
    let same = &k[0][1]; // on a's shard
    q::<i64>(c, &["SADD", a, "1", "2", "3", "4", "x"]).unwrap();
    q::<i64>(c, &["SADD", b, "3", "4", "5", "x"]).unwrap();
    q::<i64>(c, &["SADD", d, "4", "x", "9"]).unwrap();
    q::<i64>(c, &["SADD", same, "1", "4"]).unwrap();

    let smembers =
        |c: &mut redis::Connection, words: &[&str]| sorted(q::<Vec<String>>(c, words).unwrap());
    assert_eq!(smembers(c, &["SINTER", a, b, d]), ["4", "x"]);
    assert_eq!(smembers(c, &["SINTER", a, same]), ["1", "4"], "one shard");
    assert!(
        smembers(c, &["SINTER", a, b, e]).is_empty(),
        "absent = empty"
    );
    assert_eq!(
        smembers(c, &["SUNION", a, b, d, e]),
        ["1", "2", "3", "4", "5", "9", "x"]
    );
    assert_eq!(smembers(c, &["SDIFF", a, b, d]), ["1", "2"]);
    assert_eq!(smembers(c, &["SDIFF", a, same, e]), ["2", "3", "x"]);
    assert_eq!(q::<i64>(c, &["SINTERCARD", "2", a, b]).unwrap(), 3);
    assert_eq!(q::<i64>(c, &["SINTERCARD", "3", a, b, d]).unwrap(), 2);
    assert_eq!(
        q::<i64>(c, &["SINTERCARD", "2", a, b, "LIMIT", "1"]).unwrap(),
        1
    );
    assert_eq!(
        q::<i64>(c, &["SINTERCARD", "2", a, same, "LIMIT", "0"]).unwrap(),
        2
    );
    assert_eq!(q::<i64>(c, &["SINTERCARD", "2", a, e]).unwrap(), 0);

    // STORE forms with the destination on yet another shard, and onto a source.
    assert_eq!(q::<i64>(c, &["SINTERSTORE", e, a, b]).unwrap(), 3);
    assert_eq!(members(c, e), set_of(&["3", "4", "x"]));
    assert_eq!(q::<i64>(c, &["SUNIONSTORE", e, b, d]).unwrap(), 5);
    assert_eq!(members(c, e), set_of(&["3", "4", "5", "9", "x"]));
    assert_eq!(q::<i64>(c, &["SDIFFSTORE", e, e, a]).unwrap(), 2);
    assert_eq!(members(c, e), set_of(&["5", "9"]));
    assert_eq!(q::<i64>(c, &["SINTERSTORE", e, a, "nosuch"]).unwrap(), 0);
    assert_eq!(
        q::<i64>(c, &["EXISTS", e]).unwrap(),
        0,
        "empty result deletes"
    );
    q::<()>(c, &["SET", e, "string"]).unwrap();
    assert_eq!(q::<i64>(c, &["SUNIONSTORE", e, d]).unwrap(), 3);
    assert_eq!(q::<String>(c, &["TYPE", e]).unwrap(), "set");
    q::<()>(c, &["SET", e, "string"]).unwrap();
    assert_eq!(err_of(c, &["SINTERSTORE", d, a, e]), WRONGTYPE);
    assert_eq!(
        members(c, d),
        set_of(&["4", "x", "9"]),
        "untouched on error"
    );
    assert_eq!(err_of(c, &["SINTER", "nosuch", e]), WRONGTYPE);

    // SMOVE between shards, to a new key, and its no-op forms.
    assert_eq!(q::<i64>(c, &["SMOVE", a, b, "1"]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["SMOVE", a, b, "1"]).unwrap(), 0);
    assert_eq!(q::<i64>(c, &["SMOVE", a, b, "x"]).unwrap(), 1, "dst had it");
    assert_eq!(members(c, a), set_of(&["2", "3", "4"]));
    assert_eq!(members(c, b), set_of(&["1", "3", "4", "5", "x"]));
    let fresh = &k[3][1];
    assert_eq!(q::<i64>(c, &["SMOVE", d, fresh, "9"]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["SMOVE", d, fresh, "4"]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["SMOVE", d, fresh, "x"]).unwrap(), 1);
    assert_eq!(
        q::<i64>(c, &["EXISTS", d]).unwrap(),
        0,
        "emptied source removed"
    );
    assert_eq!(members(c, fresh), set_of(&["4", "9", "x"]));
    assert_eq!(encoding(c, fresh), "hashtable");
    assert_eq!(q::<i64>(c, &["SMOVE", a, a, "2"]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["SMOVE", a, a, "7"]).unwrap(), 0);
    assert_eq!(err_of(c, &["SMOVE", a, e, "2"]), WRONGTYPE);
    assert_eq!(
        members(c, a),
        set_of(&["2", "3", "4"]),
        "untouched on error"
    );
    assert_eq!(q::<i64>(c, &["SMOVE", "nosuch", e, "2"]).unwrap(), 0);
}

#[test]
fn multi_exec_across_shards() {
    let server = start();
    let c = &mut server.client();
    let k = spread("t", 1);
    let (a, b, d, e) = (&k[0][0], &k[1][0], &k[2][0], &k[3][0]);
    q::<i64>(c, &["SADD", a, "1", "2", "3"]).unwrap();
    let (added, moved, stored, card, popped, inter): (
        i64,
        i64,
        i64,
        i64,
        Vec<String>,
        Vec<String>,
    ) = redis::pipe()
        .atomic()
        .cmd("SADD")
        .arg(b)
        .arg("3")
        .arg("4")
        .cmd("SMOVE")
        .arg(a)
        .arg(b)
        .arg("1")
        .cmd("SUNIONSTORE")
        .arg(d)
        .arg(a)
        .arg(b)
        .cmd("SINTERCARD")
        .arg(2)
        .arg(a)
        .arg(d)
        .cmd("SPOP")
        .arg(a)
        .arg(10)
        .cmd("SINTER")
        .arg(b)
        .arg(d)
        .query(c)
        .unwrap();
    assert_eq!((added, moved, stored, card), (2, 1, 4, 2));
    assert_eq!(sorted(popped), ["2", "3"]);
    assert_eq!(sorted(inter), ["1", "3", "4"]);
    assert_eq!(q::<i64>(c, &["EXISTS", a]).unwrap(), 0);
    assert_eq!(members(c, d), set_of(&["1", "2", "3", "4"]));
    // A failing command inside does not stop the others (Redis semantics).
    q::<()>(c, &["SET", e, "s"]).unwrap();
    let mut raw = server.raw();
    for words in [
        &[&b"MULTI"[..]][..],
        &[b"SMOVE", b.as_bytes(), e.as_bytes(), b"1"],
        &[b"SREM", b.as_bytes(), b"1"],
        &[b"EXEC"],
    ] {
        raw.cmd(words);
    }
    for want in ["+OK\r\n", "+QUEUED\r\n", "+QUEUED\r\n"] {
        assert_eq!(raw.reply_str(), want);
    }
    assert_eq!(raw.reply_str(), format!("*2\r\n-{WRONGTYPE}\r\n:1\r\n"));
}

#[test]
fn generic_commands_on_sets() {
    let server = start();
    let c = &mut server.client();
    let k = spread("g", 1);
    let (a, b, d) = (&k[0][0], &k[1][0], &k[2][0]);
    q::<i64>(c, &["SADD", a, "b", "a", "c"]).unwrap();
    assert_eq!(q::<String>(c, &["TYPE", a]).unwrap(), "set");
    assert_eq!(q::<i64>(c, &["EXPIRE", a, "100"]).unwrap(), 1);
    q::<()>(c, &["RENAME", a, b]).unwrap();
    assert_eq!(members(c, b), set_of(&["a", "b", "c"]));
    assert!(
        q::<i64>(c, &["TTL", b]).unwrap() > 90,
        "RENAME keeps the TTL"
    );
    assert_eq!(q::<i64>(c, &["COPY", b, d]).unwrap(), 1);
    q::<i64>(c, &["SADD", d, "z"]).unwrap();
    assert_eq!(
        q::<i64>(c, &["SCARD", b]).unwrap(),
        3,
        "a copy is independent"
    );
    assert_eq!(q::<i64>(c, &["SCARD", d]).unwrap(), 4);
    q::<i64>(c, &["SADD", "ints", "3", "1", "2"]).unwrap();
    assert_eq!(q::<i64>(c, &["COPY", "ints", d, "REPLACE"]).unwrap(), 1);
    assert_eq!(encoding(c, d), "intset");
    assert_eq!(
        q::<Vec<String>>(c, &["SMEMBERS", d]).unwrap(),
        ["1", "2", "3"]
    );
    assert_eq!(q::<i64>(c, &["DEL", b, d, "ints"]).unwrap(), 3);
    assert_eq!(q::<i64>(c, &["EXISTS", b, d]).unwrap(), 0);
    q::<i64>(c, &["SADD", "short", "x"]).unwrap();
    q::<i64>(c, &["PEXPIRE", "short", "50"]).unwrap();
    std::thread::sleep(Duration::from_millis(120));
    assert_eq!(q::<i64>(c, &["SCARD", "short"]).unwrap(), 0);
    assert_eq!(q::<i64>(c, &["SADD", "short", "y"]).unwrap(), 1);
    assert_eq!(
        q::<i64>(c, &["TTL", "short"]).unwrap(),
        -1,
        "a new set after expiry"
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
        &["SADD", "{e}a", "1", "2", "3"][..],
        &["SADD", "{e}a", "1"],
        &["SREM", "{e}a", "3", "9"],
        &["SPOP", "{e}a"],
        &["SADD", "{e}a", "5"],
        &["SMOVE", "{e}a", "{e}b", "5"],
        &["SPOP", "{e}a", "5"],
        &["SADD", "{e}b", "x"],
        &["SINTERSTORE", "{e}d", "{e}b", "{e}b"],
        &["SUNIONSTORE", "{e}d", "{e}b"],
        &["SDIFFSTORE", "{e}d", "{e}b"],
        &["SDIFFSTORE", "{e}d", "{e}b", "{e}b"],
        &["SREM", "{e}b", "5", "x"],
    ] {
        q::<Value>(c, words).unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..15 {
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
            "sadd {e}a",
            "srem {e}a",
            "spop {e}a",
            "sadd {e}a",
            "srem {e}a",
            "sadd {e}b",
            "spop {e}a",
            "del {e}a",
            "sadd {e}b",
            "sinterstore {e}d",
            "sunionstore {e}d",
            "sdiffstore {e}d",
            "del {e}d",
            "srem {e}b",
            "del {e}b",
        ]
    );
}

fn start_on(dir: &DataDir, shards: usize) -> Server {
    let shards = shards.to_string();
    Server::start_raw(&["--dir", dir.path(), "--shards", &shards], None)
}

/// What the persistence test expects, read from the server that wrote it.
fn snapshot(c: &mut redis::Connection, keys: &[String]) -> Vec<(String, String, Vec<String>)> {
    keys.iter()
        .map(|k| {
            let ty: String = q(c, &["TYPE", k]).unwrap();
            let enc = if ty == "set" {
                encoding(c, k)
            } else {
                String::new()
            };
            let m = if ty == "set" {
                sorted(q(c, &["SMEMBERS", k]).unwrap())
            } else {
                vec![]
            };
            (format!("{k}:{ty}"), enc, m)
        })
        .collect()
}

#[test]
fn every_set_write_survives_restarts() {
    let dir = DataDir::new("sets");
    let k = spread("ps", 3);
    let keys: Vec<String> = k.iter().flatten().cloned().collect();
    let (a, b, d, e) = (&k[0][0], &k[1][0], &k[2][0], &k[3][0]);
    let (a2, b2, d2, e2) = (&k[0][1], &k[1][1], &k[2][1], &k[3][1]);
    let (a3, b3) = (&k[0][2], &k[1][2]);
    let before = {
        let mut s = start_on(&dir, 4);
        let c = &mut s.client();
        sadd_many(c, a, (0..600).map(|i| i.to_string()));
        q::<i64>(c, &["SREM", a, "5", "6", "7"]).unwrap();
        sadd_many(c, b, (0..300).map(|i| format!("m{i}")));
        q::<i64>(c, &["SADD", d, "1", "2", "3", "4", "5"]).unwrap();
        // Random choices, journaled as what they chose.
        q::<String>(c, &["SPOP", a]).unwrap();
        q::<Vec<String>>(c, &["SPOP", a, "50"]).unwrap();
        q::<Vec<String>>(c, &["SPOP", b, "120"]).unwrap();
        q::<Vec<String>>(c, &["SPOP", d, "2"]).unwrap();
        q::<i64>(c, &["SADD", e, "x"]).unwrap();
        q::<Vec<String>>(c, &["SPOP", e, "5"]).unwrap(); // emptied
                                                         // Moves across shards and within one.
        q::<i64>(c, &["SADD", a2, "p", "q"]).unwrap();
        q::<i64>(c, &["SMOVE", a2, b2, "p"]).unwrap();
        q::<i64>(c, &["SMOVE", a2, a3, "q"]).unwrap(); // same shard, source emptied
        q::<i64>(c, &["SADD", b3, "10", "20"]).unwrap();
        q::<i64>(c, &["SMOVE", b3, d2, "10"]).unwrap();
        // Stores across shards, onto a string, and an emptying one.
        q::<()>(c, &["SET", e2, "was a string"]).unwrap();
        q::<i64>(c, &["SUNIONSTORE", e2, d, b3]).unwrap();
        q::<i64>(c, &["SINTERSTORE", e, a, d]).unwrap();
        q::<i64>(c, &["SDIFFSTORE", b3, b3, d2]).unwrap();
        q::<i64>(c, &["SINTERSTORE", d2, d2, "nosuch"]).unwrap();
        // In a transaction across shards.
        let _: Value = redis::pipe()
            .atomic()
            .cmd("SADD")
            .arg(&k[2][2])
            .arg("t1")
            .arg("t2")
            .cmd("SMOVE")
            .arg(&k[2][2])
            .arg(&k[3][2])
            .arg("t1")
            .cmd("SPOP")
            .arg(&k[3][2])
            .cmd("SADD")
            .arg(&k[3][2])
            .arg("t3")
            .query(c)
            .unwrap();
        let snap = snapshot(c, &keys);
        s.kill9();
        snap
    };
    assert!(before
        .iter()
        .any(|(k, enc, m)| k.ends_with(":set") && enc == "intset" && !m.is_empty()));
    assert!(before.iter().any(|(_, enc, _)| enc == "hashtable"));
    for (shards, graceful) in [(4, true), (2, false), (3, true)] {
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

/// The raw wire: RESP2 answers SPOP with a count as an array; nil for a missing key.
#[test]
fn raw_resp2_shapes() {
    let server = start();
    let mut raw: Raw = server.raw();
    raw.cmd(&[b"SADD", b"s", b"2", b"1"]);
    assert_eq!(raw.reply_str(), ":2\r\n");
    raw.cmd(&[b"SMEMBERS", b"s"]);
    assert_eq!(raw.reply_str(), "*2\r\n$1\r\n1\r\n$1\r\n2\r\n");
    raw.cmd(&[b"SPOP", b"nosuch"]);
    assert_eq!(raw.reply_str(), "$-1\r\n");
    raw.cmd(&[b"SPOP", b"s", b"9"]);
    assert_eq!(raw.reply_str(), "*2\r\n$1\r\n1\r\n$1\r\n2\r\n");
}
