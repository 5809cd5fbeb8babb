//! The string family through the `redis` crate, keys spread over 4 shards.

mod common;

use common::{err_of, q, Server};
use redis::Value;

const NOT_INT: &str = "ERR value is not an integer or out of range";

#[test]
fn set_options() {
    let server = Server::start(&["--shards", "4"]);
    let c = &mut server.client();
    assert_eq!(q::<String>(c, &["SET", "k", "v1"]).unwrap(), "OK");
    assert_eq!(
        q::<Option<String>>(c, &["SET", "k", "v2", "NX"]).unwrap(),
        None
    );
    assert_eq!(q::<String>(c, &["GET", "k"]).unwrap(), "v1");
    assert_eq!(q::<String>(c, &["SET", "k", "v2", "XX"]).unwrap(), "OK");
    assert_eq!(
        q::<Option<String>>(c, &["SET", "nokey", "v", "XX"]).unwrap(),
        None
    );
    assert_eq!(q::<i64>(c, &["EXISTS", "nokey"]).unwrap(), 0);
    assert_eq!(
        q::<Option<String>>(c, &["SET", "k", "v3", "GET"])
            .unwrap()
            .as_deref(),
        Some("v2")
    );
    assert_eq!(
        q::<Option<String>>(c, &["SET", "fresh", "v", "GET"]).unwrap(),
        None
    );
    assert_eq!(
        q::<Option<String>>(c, &["SET", "k", "ignored", "NX", "GET"])
            .unwrap()
            .as_deref(),
        Some("v3")
    );
    assert_eq!(q::<String>(c, &["GET", "k"]).unwrap(), "v3");

    assert_eq!(
        q::<String>(c, &["SET", "t", "v", "EX", "100"]).unwrap(),
        "OK"
    );
    let ttl: i64 = q(c, &["TTL", "t"]).unwrap();
    assert!((99..=100).contains(&ttl), "{ttl}");
    assert_eq!(
        q::<String>(c, &["SET", "t", "v2", "KEEPTTL"]).unwrap(),
        "OK"
    );
    assert!(q::<i64>(c, &["PTTL", "t"]).unwrap() > 98_000);
    assert_eq!(q::<String>(c, &["SET", "t", "v3"]).unwrap(), "OK");
    assert_eq!(
        q::<i64>(c, &["TTL", "t"]).unwrap(),
        -1,
        "plain SET clears the TTL"
    );
    assert_eq!(
        q::<String>(c, &["SET", "t", "v", "PX", "100000"]).unwrap(),
        "OK"
    );
    assert!(q::<i64>(c, &["PTTL", "t"]).unwrap() > 99_000);
    let future = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1000)
        .to_string();
    assert_eq!(
        q::<String>(c, &["SET", "t", "v", "EXAT", &future]).unwrap(),
        "OK"
    );
    assert_eq!(
        q::<i64>(c, &["EXPIRETIME", "t"]).unwrap().to_string(),
        future
    );
    let future_ms = format!("{future}000");
    assert_eq!(
        q::<String>(c, &["SET", "t", "v", "PXAT", &future_ms]).unwrap(),
        "OK"
    );
    assert_eq!(
        q::<i64>(c, &["PEXPIRETIME", "t"]).unwrap().to_string(),
        future_ms
    );
    // An absolute time in the past: accepted, and the key is gone at once.
    assert_eq!(
        q::<String>(c, &["SET", "t", "v", "PXAT", "1000"]).unwrap(),
        "OK"
    );
    assert_eq!(q::<i64>(c, &["EXISTS", "t"]).unwrap(), 0);

    for bad in [
        &["SET", "k", "v", "NX", "XX"][..],
        &["SET", "k", "v", "XX", "NX"],
        &["SET", "k", "v", "EX", "10", "PX", "100"],
        &["SET", "k", "v", "EX", "10", "KEEPTTL"],
        &["SET", "k", "v", "KEEPTTL", "EX", "10"],
        &["SET", "k", "v", "EX"],
        &["SET", "k", "v", "FOO"],
        &["SET", "k", "v", "IFEQ", "x", "NX"],
        &["SET", "k", "v", "NX", "IFEQ", "x"],
        // An expire option may repeat, not mix; the syntax is checked before the value.
        &["SET", "k", "v", "EX", "abc", "PX", "5"],
        &["SET", "k", "v", "EX", "5", "EX"],
        &["GETEX", "t", "EX", "5", "PERSIST"],
    ] {
        assert_eq!(err_of(c, bad), "ERR syntax error", "{bad:?}");
    }
    // As in Redis, the last of a repeated expire option counts (only its value is checked).
    q::<()>(c, &["SET", "rep", "v", "EX", "0", "EX", "100", "EX", "200"]).unwrap();
    assert_eq!(q::<i64>(c, &["TTL", "rep"]).unwrap(), 200);
    q::<Option<String>>(c, &["GETEX", "rep", "EX", "5", "EX", "300"]).unwrap();
    assert_eq!(q::<i64>(c, &["TTL", "rep"]).unwrap(), 300);
    // The value is checked after the key's lookup: a missing key answers nil.
    assert_eq!(
        q::<Option<String>>(c, &["GETEX", "nokey", "EX", "abc"]).unwrap(),
        None
    );
    q::<Option<String>>(c, &["GETEX", "rep", "PERSIST", "PERSIST"]).unwrap();
    assert_eq!(q::<i64>(c, &["TTL", "rep"]).unwrap(), -1);
    assert_eq!(
        err_of(c, &["SET", "k", "v", "EX", "0"]),
        "ERR invalid expire time in 'set' command"
    );
    assert_eq!(
        err_of(c, &["SET", "k", "v", "PX", "-5"]),
        "ERR invalid expire time in 'set' command"
    );
    assert_eq!(err_of(c, &["SET", "k", "v", "EX", "abc"]), NOT_INT);
    assert_eq!(
        err_of(c, &["SET", "k", "v", "EX", "9223372036854775807"]),
        "ERR invalid expire time in 'set' command"
    );
    assert_eq!(
        err_of(c, &["SET", "k", "v", "PX", "9223372036854775807"]),
        "ERR invalid expire time in 'set' command"
    );
}

#[test]
fn lease_primitives_ifeq_and_delifeq() {
    let server = Server::start(&["--shards", "4"]);
    let c = &mut server.client();
    // Acquire, renew only with the right token, release only with the right token.
    assert_eq!(
        q::<String>(c, &["SET", "lease", "owner-a", "NX", "PX", "10000"]).unwrap(),
        "OK"
    );
    assert_eq!(
        q::<Option<String>>(c, &["SET", "lease", "owner-b", "NX", "PX", "10000"]).unwrap(),
        None
    );
    assert_eq!(
        q::<Option<String>>(
            c,
            &["SET", "lease", "owner-b", "IFEQ", "owner-x", "PX", "20000"]
        )
        .unwrap(),
        None
    );
    assert_eq!(
        q::<String>(
            c,
            &["SET", "lease", "owner-a", "IFEQ", "owner-a", "PX", "20000"]
        )
        .unwrap(),
        "OK"
    );
    assert!(q::<i64>(c, &["PTTL", "lease"]).unwrap() > 10_000);
    assert_eq!(
        q::<Option<String>>(c, &["SET", "missing", "v", "IFEQ", "v"]).unwrap(),
        None
    );
    assert_eq!(
        q::<i64>(c, &["EXISTS", "missing"]).unwrap(),
        0,
        "IFEQ never creates a key"
    );
    assert_eq!(
        q::<Option<String>>(c, &["SET", "lease", "owner-a", "IFEQ", "owner-a", "GET"])
            .unwrap()
            .as_deref(),
        Some("owner-a")
    );
    assert_eq!(q::<i64>(c, &["DELIFEQ", "lease", "owner-b"]).unwrap(), 0);
    assert_eq!(q::<i64>(c, &["DELIFEQ", "lease", "owner-a"]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["DELIFEQ", "lease", "owner-a"]).unwrap(), 0);
    // Fencing token.
    assert_eq!(q::<i64>(c, &["INCR", "fence"]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["INCR", "fence"]).unwrap(), 2);
}

#[test]
fn setnx_setex_psetex_getset_getdel_getex() {
    let server = Server::start(&["--shards", "4"]);
    let c = &mut server.client();
    assert_eq!(q::<i64>(c, &["SETNX", "a", "1"]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["SETNX", "a", "2"]).unwrap(), 0);
    assert_eq!(q::<String>(c, &["SETEX", "b", "100", "v"]).unwrap(), "OK");
    assert!(q::<i64>(c, &["TTL", "b"]).unwrap() >= 99);
    assert_eq!(
        err_of(c, &["SETEX", "b", "0", "v"]),
        "ERR invalid expire time in 'setex' command"
    );
    assert_eq!(err_of(c, &["SETEX", "b", "x", "v"]), NOT_INT);
    assert_eq!(
        q::<String>(c, &["PSETEX", "p", "100000", "v"]).unwrap(),
        "OK"
    );
    assert!(q::<i64>(c, &["PTTL", "p"]).unwrap() > 99_000);
    assert_eq!(
        err_of(c, &["PSETEX", "p", "-1", "v"]),
        "ERR invalid expire time in 'psetex' command"
    );

    assert_eq!(
        q::<Option<String>>(c, &["GETSET", "b", "new"])
            .unwrap()
            .as_deref(),
        Some("v")
    );
    assert_eq!(
        q::<i64>(c, &["TTL", "b"]).unwrap(),
        -1,
        "GETSET drops the TTL"
    );
    assert_eq!(
        q::<Option<String>>(c, &["GETSET", "nob", "x"]).unwrap(),
        None
    );
    assert_eq!(
        q::<Option<String>>(c, &["GETDEL", "nob"])
            .unwrap()
            .as_deref(),
        Some("x")
    );
    assert_eq!(q::<Option<String>>(c, &["GETDEL", "nob"]).unwrap(), None);

    assert_eq!(
        q::<Option<String>>(c, &["GETEX", "a", "EX", "50"])
            .unwrap()
            .as_deref(),
        Some("1")
    );
    assert!(q::<i64>(c, &["TTL", "a"]).unwrap() >= 49);
    assert_eq!(
        q::<Option<String>>(c, &["GETEX", "a", "PERSIST"])
            .unwrap()
            .as_deref(),
        Some("1")
    );
    assert_eq!(q::<i64>(c, &["TTL", "a"]).unwrap(), -1);
    assert_eq!(
        q::<Option<String>>(c, &["GETEX", "a", "PX", "50000"])
            .unwrap()
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        q::<Option<String>>(c, &["GETEX", "a"]).unwrap().as_deref(),
        Some("1")
    );
    assert!(
        q::<i64>(c, &["PTTL", "a"]).unwrap() > 40_000,
        "plain GETEX keeps the TTL"
    );
    assert_eq!(
        q::<Option<String>>(c, &["GETEX", "a", "EXAT", "1"])
            .unwrap()
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        q::<i64>(c, &["EXISTS", "a"]).unwrap(),
        0,
        "a past EXAT deletes after reading"
    );
    assert_eq!(
        q::<Option<String>>(c, &["GETEX", "none", "EX", "5"]).unwrap(),
        None
    );
    assert_eq!(
        err_of(c, &["GETEX", "a", "EX", "5", "PX", "5"]),
        "ERR syntax error"
    );
    assert_eq!(
        err_of(c, &["GETEX", "a", "PERSIST", "EX", "5"]),
        "ERR syntax error"
    );
    // The value is checked once the key is found (a missing key answers nil first).
    assert_eq!(
        q::<Option<String>>(c, &["GETEX", "a", "EX", "0"]).unwrap(),
        None
    );
    q::<()>(c, &["SET", "a", "1"]).unwrap();
    assert_eq!(
        err_of(c, &["GETEX", "a", "EX", "0"]),
        "ERR invalid expire time in 'getex' command"
    );
}

#[test]
fn append_strlen_ranges() {
    let server = Server::start(&["--shards", "4"]);
    let c = &mut server.client();
    assert_eq!(q::<i64>(c, &["APPEND", "s", "Hello"]).unwrap(), 5);
    assert_eq!(q::<i64>(c, &["APPEND", "s", " World"]).unwrap(), 11);
    assert_eq!(q::<i64>(c, &["STRLEN", "s"]).unwrap(), 11);
    assert_eq!(q::<i64>(c, &["STRLEN", "none"]).unwrap(), 0);
    let r = |c: &mut redis::Connection, a: &str, b: &str| {
        q::<String>(c, &["GETRANGE", "s", a, b]).unwrap()
    };
    assert_eq!(r(c, "0", "4"), "Hello");
    assert_eq!(r(c, "-5", "-1"), "World");
    assert_eq!(r(c, "-1", "-5"), "");
    assert_eq!(r(c, "5", "3"), "");
    assert_eq!(r(c, "0", "100"), "Hello World");
    assert_eq!(r(c, "-100", "2"), "Hel");
    assert_eq!(q::<String>(c, &["GETRANGE", "none", "0", "5"]).unwrap(), "");
    assert_eq!(err_of(c, &["GETRANGE", "s", "a", "1"]), NOT_INT);

    assert_eq!(q::<i64>(c, &["SETRANGE", "s", "6", "Redis"]).unwrap(), 11);
    assert_eq!(q::<String>(c, &["GET", "s"]).unwrap(), "Hello Redis");
    assert_eq!(q::<i64>(c, &["SETRANGE", "pad", "3", "x"]).unwrap(), 4);
    assert_eq!(q::<Vec<u8>>(c, &["GET", "pad"]).unwrap(), b"\0\0\0x");
    assert_eq!(q::<i64>(c, &["SETRANGE", "empty", "5", ""]).unwrap(), 0);
    assert_eq!(q::<i64>(c, &["EXISTS", "empty"]).unwrap(), 0);
    assert_eq!(
        err_of(c, &["SETRANGE", "s", "-1", "x"]),
        "ERR offset is out of range"
    );
    assert_eq!(
        err_of(c, &["SETRANGE", "s", "536870911", "xx"]),
        "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
    );
    // APPEND and SETRANGE keep an existing TTL.
    assert_eq!(
        q::<String>(c, &["SET", "ttl", "a", "EX", "100"]).unwrap(),
        "OK"
    );
    q::<i64>(c, &["APPEND", "ttl", "b"]).unwrap();
    q::<i64>(c, &["SETRANGE", "ttl", "0", "z"]).unwrap();
    assert!(q::<i64>(c, &["TTL", "ttl"]).unwrap() > 90);
    assert_eq!(q::<String>(c, &["GET", "ttl"]).unwrap(), "zb");
    // Values that outgrow the inline size keep working.
    let long = "x".repeat(100);
    assert_eq!(q::<i64>(c, &["APPEND", "s", &long]).unwrap(), 111);
    assert_eq!(q::<i64>(c, &["STRLEN", "s"]).unwrap(), 111);
}

#[test]
fn counters() {
    let server = Server::start(&["--shards", "4"]);
    let c = &mut server.client();
    assert_eq!(q::<i64>(c, &["INCR", "n"]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["INCRBY", "n", "41"]).unwrap(), 42);
    assert_eq!(q::<i64>(c, &["DECR", "n"]).unwrap(), 41);
    assert_eq!(q::<i64>(c, &["DECRBY", "n", "-9"]).unwrap(), 50);
    assert_eq!(q::<String>(c, &["GET", "n"]).unwrap(), "50");
    q::<String>(c, &["SET", "max", "9223372036854775807"]).unwrap();
    assert_eq!(
        err_of(c, &["INCR", "max"]),
        "ERR increment or decrement would overflow"
    );
    q::<String>(c, &["SET", "min", "-9223372036854775808"]).unwrap();
    assert_eq!(
        err_of(c, &["DECR", "min"]),
        "ERR increment or decrement would overflow"
    );
    assert_eq!(
        err_of(c, &["DECRBY", "n", "-9223372036854775808"]),
        "ERR decrement would overflow"
    );
    q::<String>(c, &["SET", "text", "abc"]).unwrap();
    assert_eq!(err_of(c, &["INCR", "text"]), NOT_INT);
    q::<String>(c, &["SET", "spaced", " 1"]).unwrap();
    assert_eq!(err_of(c, &["INCR", "spaced"]), NOT_INT);
    assert_eq!(err_of(c, &["INCRBY", "n", "1.5"]), NOT_INT);
    // INCR keeps the TTL.
    q::<String>(c, &["SET", "ttl", "1", "EX", "100"]).unwrap();
    q::<i64>(c, &["INCR", "ttl"]).unwrap();
    assert!(q::<i64>(c, &["TTL", "ttl"]).unwrap() > 90);

    assert_eq!(
        q::<String>(c, &["INCRBYFLOAT", "f", "10.5"]).unwrap(),
        "10.5"
    );
    assert_eq!(
        q::<String>(c, &["INCRBYFLOAT", "f", "0.1"]).unwrap(),
        "10.6"
    );
    assert_eq!(q::<String>(c, &["INCRBYFLOAT", "f", "-5.6"]).unwrap(), "5");
    assert_eq!(
        q::<String>(c, &["INCRBYFLOAT", "f", "5.0e3"]).unwrap(),
        "5005"
    );
    assert_eq!(q::<String>(c, &["GET", "f"]).unwrap(), "5005");
    assert_eq!(
        err_of(c, &["INCRBYFLOAT", "f", "abc"]),
        "ERR value is not a valid float"
    );
    assert_eq!(
        err_of(c, &["INCRBYFLOAT", "text", "1"]),
        "ERR value is not a valid float"
    );
    assert_eq!(
        err_of(c, &["INCRBYFLOAT", "f", "inf"]),
        "ERR increment would produce NaN or Infinity"
    );
    // Redis adds in x87 `long double`, whose range goes far past f64's: this sum is
    // finite there, and printed in full (the exact text redis-server 7.0.15 answers).
    q::<String>(c, &["SET", "big", "1.7e308"]).unwrap();
    let sum: String = q(c, &["INCRBYFLOAT", "big", "1.7e308"]).unwrap();
    assert_eq!(sum.len(), 309);
    assert!(sum.starts_with("3400000000000000000062735560503951935905404277793882674660871715"));
    assert!(sum.ends_with("4023358619554802565120"));
    q::<String>(c, &["INCRBYFLOAT", "g", "0.1"]).unwrap();
    assert_eq!(
        q::<String>(c, &["INCRBYFLOAT", "g", "0.2"]).unwrap(),
        "0.3",
        "exactly like Redis for everyday sums (f64 would say 0.30000000000000004)"
    );
}

#[test]
fn multi_key_strings_across_shards() {
    let server = Server::start(&["--shards", "4"]);
    let c = &mut server.client();
    let keys: Vec<String> = (0..4)
        .flat_map(|s| common::keys_on("mk", s, 4, 2))
        .collect();
    let mut mset = vec!["MSET"];
    for k in &keys {
        mset.push(k);
        mset.push(k);
    }
    assert_eq!(q::<String>(c, &mset).unwrap(), "OK");
    let mut mget = vec!["MGET"];
    mget.extend(keys.iter().map(|k| k.as_str()));
    let got: Vec<String> = q(c, &mget).unwrap();
    assert_eq!(got, keys);

    let fresh: Vec<String> = (0..4)
        .flat_map(|s| common::keys_on("nx", s, 4, 1))
        .collect();
    let mut msetnx = vec!["MSETNX"];
    for k in &fresh {
        msetnx.push(k);
        msetnx.push("v");
    }
    assert_eq!(q::<i64>(c, &msetnx).unwrap(), 1);
    assert_eq!(q::<i64>(c, &msetnx).unwrap(), 0);
    let mut partial = vec!["MSETNX", "nx:brand-new", "v"];
    partial.extend([fresh[2].as_str(), "other"]);
    assert_eq!(q::<i64>(c, &partial).unwrap(), 0);
    assert_eq!(
        q::<i64>(c, &["EXISTS", "nx:brand-new"]).unwrap(),
        0,
        "MSETNX is all-or-nothing"
    );
    assert_eq!(q::<String>(c, &["GET", &fresh[2]]).unwrap(), "v");
    assert_eq!(
        err_of(c, &["MSETNX", "a", "1", "b"]),
        "ERR wrong number of arguments for 'msetnx' command"
    );
}

#[test]
fn lcs_on_one_and_two_shards() {
    let server = Server::start(&["--shards", "4"]);
    let c = &mut server.client();
    q::<String>(c, &["MSET", "{l}1", "ohmytext", "{l}2", "mynewtext"]).unwrap();
    assert_eq!(q::<String>(c, &["LCS", "{l}1", "{l}2"]).unwrap(), "mytext");
    assert_eq!(q::<i64>(c, &["LCS", "{l}1", "{l}2", "LEN"]).unwrap(), 6);
    let idx: Value = q(
        c,
        &[
            "LCS",
            "{l}1",
            "{l}2",
            "IDX",
            "MINMATCHLEN",
            "4",
            "WITHMATCHLEN",
        ],
    )
    .unwrap();
    assert_eq!(
        format!("{idx:?}"),
        format!(
            "{:?}",
            Value::Array(vec![
                Value::BulkString(b"matches".to_vec()),
                Value::Array(vec![Value::Array(vec![
                    Value::Array(vec![Value::Int(4), Value::Int(7)]),
                    Value::Array(vec![Value::Int(5), Value::Int(8)]),
                    Value::Int(4),
                ])]),
                Value::BulkString(b"len".to_vec()),
                Value::Int(6),
            ])
        )
    );
    assert_eq!(
        err_of(c, &["LCS", "{l}1", "{l}2", "LEN", "IDX"]),
        "ERR If you want both the length and indexes, please just use IDX."
    );
    let (a, b) = (
        common::keys_on("lcs", 0, 4, 1).remove(0),
        common::keys_on("lcs", 3, 4, 1).remove(0),
    );
    q::<String>(c, &["MSET", &a, "ohmytext", &b, "mynewtext"]).unwrap();
    assert_eq!(q::<String>(c, &["LCS", &a, &b]).unwrap(), "mytext");
    assert_eq!(q::<i64>(c, &["LCS", &a, "missing", "LEN"]).unwrap(), 0);
}
