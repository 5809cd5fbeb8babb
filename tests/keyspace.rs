//! Keyspace commands and expiry, on 4 shards.

mod common;

use std::collections::HashSet;

use common::{err_of, eventually, q, Server};

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn del_unlink_exists_touch_type() {
    let server = Server::start(&["--shards", "4"]);
    let c = &mut server.client();
    q::<String>(c, &["MSET", "a", "1", "b", "2", "c", "3"]).unwrap();
    assert_eq!(q::<i64>(c, &["TOUCH", "a", "b", "zz", "a"]).unwrap(), 3);
    assert_eq!(q::<String>(c, &["TYPE", "a"]).unwrap(), "string");
    assert_eq!(q::<String>(c, &["TYPE", "zz"]).unwrap(), "none");
    assert_eq!(q::<i64>(c, &["UNLINK", "a", "zz"]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["DEL", "b", "c", "b"]).unwrap(), 2);
    assert_eq!(q::<i64>(c, &["EXISTS", "a", "b", "c"]).unwrap(), 0);
}

#[test]
fn expire_family_with_conditions() {
    let server = Server::start(&["--shards", "4"]);
    let c = &mut server.client();
    q::<String>(c, &["SET", "k", "v"]).unwrap();
    assert_eq!(q::<i64>(c, &["TTL", "k"]).unwrap(), -1);
    assert_eq!(q::<i64>(c, &["TTL", "missing"]).unwrap(), -2);
    assert_eq!(q::<i64>(c, &["PTTL", "missing"]).unwrap(), -2);
    assert_eq!(q::<i64>(c, &["EXPIRETIME", "k"]).unwrap(), -1);
    assert_eq!(q::<i64>(c, &["PEXPIRETIME", "missing"]).unwrap(), -2);
    assert_eq!(q::<i64>(c, &["EXPIRE", "missing", "100"]).unwrap(), 0);

    assert_eq!(
        q::<i64>(c, &["EXPIRE", "k", "100", "XX"]).unwrap(),
        0,
        "XX needs an existing TTL"
    );
    assert_eq!(
        q::<i64>(c, &["EXPIRE", "k", "100", "GT"]).unwrap(),
        0,
        "no TTL counts as infinite for GT"
    );
    assert_eq!(q::<i64>(c, &["EXPIRE", "k", "100", "NX"]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["EXPIRE", "k", "200", "NX"]).unwrap(), 0);
    assert_eq!(q::<i64>(c, &["EXPIRE", "k", "50", "GT"]).unwrap(), 0);
    assert_eq!(q::<i64>(c, &["EXPIRE", "k", "200", "GT"]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["EXPIRE", "k", "300", "LT"]).unwrap(), 0);
    assert_eq!(q::<i64>(c, &["PEXPIRE", "k", "150000", "LT"]).unwrap(), 1);
    let pttl: i64 = q(c, &["PTTL", "k"]).unwrap();
    assert!((149_000..=150_000).contains(&pttl), "{pttl}");
    assert_eq!(q::<i64>(c, &["TTL", "k"]).unwrap(), 150);
    let at = now_secs() + 1000;
    assert_eq!(q::<i64>(c, &["EXPIREAT", "k", &at.to_string()]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["EXPIRETIME", "k"]).unwrap(), at);
    assert_eq!(
        q::<i64>(c, &["PEXPIREAT", "k", &format!("{at}500")]).unwrap(),
        1
    );
    assert_eq!(
        q::<i64>(c, &["PEXPIRETIME", "k"]).unwrap().to_string(),
        format!("{at}500")
    );
    assert_eq!(q::<i64>(c, &["PERSIST", "k"]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["PERSIST", "k"]).unwrap(), 0);
    assert_eq!(q::<i64>(c, &["PERSIST", "missing"]).unwrap(), 0);
    q::<String>(c, &["SET", "nottl", "v"]).unwrap();
    assert_eq!(
        q::<i64>(c, &["EXPIRE", "nottl", "10", "LT"]).unwrap(),
        1,
        "no TTL counts as infinite for LT"
    );

    assert_eq!(
        err_of(c, &["EXPIRE", "k", "10", "NX", "XX"]),
        "ERR NX and XX, GT or LT options at the same time are not compatible"
    );
    assert_eq!(
        err_of(c, &["EXPIRE", "k", "10", "GT", "LT"]),
        "ERR GT and LT options at the same time are not compatible"
    );
    assert_eq!(
        err_of(c, &["EXPIRE", "k", "10", "SOON"]),
        "ERR Unsupported option SOON"
    );
    assert_eq!(
        err_of(c, &["EXPIRE", "k", "ten"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        err_of(c, &["EXPIRE", "k", "9223372036854775807"]),
        "ERR invalid expire time in 'expire' command"
    );
    assert_eq!(
        err_of(c, &["PEXPIRE", "k", "9223372036854775807"]),
        "ERR invalid expire time in 'pexpire' command"
    );
    // The far end of the accepted range is stored exactly.
    assert_eq!(
        q::<i64>(c, &["PEXPIREAT", "k", "9223372036854775807"]).unwrap(),
        1
    );
    assert_eq!(q::<i64>(c, &["PEXPIRETIME", "k"]).unwrap(), i64::MAX);
}

#[test]
fn zero_negative_and_past_deadlines_delete() {
    let server = Server::start(&["--shards", "4"]);
    let c = &mut server.client();
    for (i, words) in [
        vec!["EXPIRE", "K", "0"],
        vec!["EXPIRE", "K", "-10"],
        vec!["PEXPIRE", "K", "-1"],
        vec!["EXPIREAT", "K", "1"],
        vec!["PEXPIREAT", "K", "0"],
    ]
    .into_iter()
    .enumerate()
    {
        let key = format!("gone{i}");
        q::<String>(c, &["SET", &key, "v"]).unwrap();
        let words: Vec<&str> = words
            .iter()
            .map(|w| if *w == "K" { key.as_str() } else { w })
            .collect();
        assert_eq!(q::<i64>(c, &words).unwrap(), 1, "{words:?}");
        assert_eq!(
            q::<i64>(c, &["EXISTS", &key]).unwrap(),
            0,
            "{words:?} deletes the key"
        );
    }
    assert_eq!(
        q::<String>(c, &["SET", "past", "v", "EXAT", "1"]).unwrap(),
        "OK"
    );
    assert_eq!(q::<Option<String>>(c, &["GET", "past"]).unwrap(), None);
}

#[test]
fn keys_expire_while_being_read() {
    let server = Server::start(&["--shards", "4"]);
    let c = &mut server.client();
    // (1 s: a loaded CI machine must still read it before the deadline at least once.)
    q::<String>(c, &["SET", "short", "value", "PX", "1000"]).unwrap();
    let mut seen_value = false;
    eventually("the key expires under a reader", || {
        match q::<Option<String>>(c, &["GET", "short"]).unwrap() {
            Some(v) => {
                assert_eq!(
                    v, "value",
                    "a read before the deadline sees the whole value"
                );
                seen_value = true;
                false
            }
            None => true,
        }
    });
    assert!(seen_value);
    assert_eq!(q::<i64>(c, &["TTL", "short"]).unwrap(), -2);
    assert_eq!(q::<i64>(c, &["EXISTS", "short"]).unwrap(), 0);
    assert_eq!(q::<Option<String>>(c, &["GETDEL", "short"]).unwrap(), None);
}

#[test]
fn active_expiry_reclaims_untouched_keys_and_info_counts_them() {
    let server = Server::start(&["--shards", "4"]);
    let c = &mut server.client();
    let mut pipe = redis::pipe();
    for i in 0..2000 {
        pipe.cmd("SET")
            .arg(format!("tmp:{i}"))
            .arg("v")
            .arg("PX")
            .arg(200)
            .ignore();
    }
    for i in 0..100 {
        pipe.cmd("SET").arg(format!("keep:{i}")).arg("v").ignore();
    }
    pipe.query::<()>(c).unwrap();
    let info: String = q(c, &["INFO", "keyspace"]).unwrap();
    assert!(info.contains("db0:keys=2100,expires=2000"), "{info}");
    // Nobody reads the keys: only active expiry can remove them.
    eventually("DBSIZE drops to the keys without TTL", || {
        q::<i64>(c, &["DBSIZE"]).unwrap() == 100
    });
    let stats: String = q(c, &["INFO", "stats"]).unwrap();
    assert!(stats.contains("expired_keys:2000"), "{stats}");
    let info: String = q(c, &["INFO", "keyspace"]).unwrap();
    assert!(info.contains("db0:keys=100,expires=0"), "{info}");
}

#[test]
fn keys_scan_randomkey_across_shards() {
    let server = Server::start(&["--shards", "4"]);
    let c = &mut server.client();
    assert_eq!(q::<Option<String>>(c, &["RANDOMKEY"]).unwrap(), None);
    let mut pipe = redis::pipe();
    for i in 0..500 {
        pipe.cmd("SET").arg(format!("user:{i}")).arg(i).ignore();
    }
    pipe.cmd("SET").arg("other").arg("x").ignore();
    pipe.query::<()>(c).unwrap();

    let mut all: Vec<String> = q(c, &["KEYS", "user:*"]).unwrap();
    all.sort();
    assert_eq!(all.len(), 500);
    let mut tens: Vec<String> = q(c, &["KEYS", "user:1?"]).unwrap();
    tens.sort();
    assert_eq!(
        tens,
        (10..20).map(|i| format!("user:{i}")).collect::<Vec<_>>()
    );
    assert_eq!(
        q::<Vec<String>>(c, &["KEYS", "o[st]her"]).unwrap(),
        vec!["other"]
    );

    let mut seen = HashSet::new();
    let mut cursor = "0".to_string();
    let mut calls = 0;
    loop {
        let (next, keys): (String, Vec<String>) =
            q(c, &["SCAN", &cursor, "MATCH", "user:*", "COUNT", "25"]).unwrap();
        seen.extend(keys);
        calls += 1;
        cursor = next;
        if cursor == "0" {
            break;
        }
        assert!(calls < 1000, "SCAN terminates");
    }
    assert_eq!(
        seen.len(),
        500,
        "every key present for the whole scan is returned"
    );
    assert!(calls > 4, "SCAN pages through every shard");
    let (_, typed): (String, Vec<String>) =
        q(c, &["SCAN", "0", "TYPE", "list", "COUNT", "1000"]).unwrap();
    assert!(typed.is_empty());
    assert_eq!(err_of(c, &["SCAN", "abc"]), "ERR invalid cursor");
    assert_eq!(err_of(c, &["SCAN", "0", "COUNT", "0"]), "ERR syntax error");
    assert_eq!(err_of(c, &["SCAN", "0", "BOGUS", "1"]), "ERR syntax error");

    for _ in 0..20 {
        let k: String = q(c, &["RANDOMKEY"]).unwrap();
        assert_eq!(q::<i64>(c, &["EXISTS", &k]).unwrap(), 1);
    }
}

#[test]
fn rename_renamenx_copy_on_one_and_two_shards() {
    let server = Server::start(&["--shards", "4"]);
    let c = &mut server.client();
    let same = ("{t}src", "{t}dst");
    let a = common::keys_on("src", 0, 4, 1).remove(0);
    let b = common::keys_on("dst", 2, 4, 1).remove(0);
    for (src, dst) in [(same.0.to_string(), same.1.to_string()), (a, b)] {
        let (src, dst) = (src.as_str(), dst.as_str());
        q::<String>(c, &["SET", src, "v", "EX", "100"]).unwrap();
        assert_eq!(q::<String>(c, &["RENAME", src, dst]).unwrap(), "OK");
        assert_eq!(q::<i64>(c, &["EXISTS", src]).unwrap(), 0);
        assert_eq!(q::<String>(c, &["GET", dst]).unwrap(), "v");
        assert!(
            q::<i64>(c, &["TTL", dst]).unwrap() > 90,
            "RENAME carries the TTL"
        );
        assert_eq!(err_of(c, &["RENAME", src, dst]), "ERR no such key");
        q::<String>(c, &["SET", src, "w"]).unwrap();
        assert_eq!(q::<i64>(c, &["RENAMENX", src, dst]).unwrap(), 0);
        assert_eq!(q::<String>(c, &["GET", src]).unwrap(), "w");
        assert_eq!(q::<i64>(c, &["COPY", src, dst]).unwrap(), 0);
        assert_eq!(q::<i64>(c, &["COPY", src, dst, "REPLACE"]).unwrap(), 1);
        assert_eq!(q::<String>(c, &["GET", dst]).unwrap(), "w");
        assert_eq!(
            q::<i64>(c, &["TTL", dst]).unwrap(),
            -1,
            "COPY copies the (absent) TTL"
        );
        q::<i64>(c, &["DEL", dst]).unwrap();
        assert_eq!(q::<i64>(c, &["RENAMENX", src, dst]).unwrap(), 1);
        assert_eq!(q::<i64>(c, &["COPY", "nothing", dst]).unwrap(), 0);
        assert_eq!(q::<i64>(c, &["COPY", dst, src, "DB", "0"]).unwrap(), 1);
        assert_eq!(
            err_of(c, &["COPY", dst, src, "DB", "1"]),
            "ERR DB index is out of range"
        );
        assert_eq!(
            err_of(c, &["COPY", dst, dst]),
            "ERR source and destination objects are the same"
        );
        assert_eq!(err_of(c, &["COPY", dst, src, "NOW"]), "ERR syntax error");
        q::<i64>(c, &["DEL", src, dst]).unwrap();
    }
    q::<String>(c, &["SET", "self", "v"]).unwrap();
    assert_eq!(q::<String>(c, &["RENAME", "self", "self"]).unwrap(), "OK");
    assert_eq!(q::<i64>(c, &["RENAMENX", "self", "self"]).unwrap(), 0);
}

#[test]
fn flush_variants_clear_ttls_too() {
    let server = Server::start(&["--shards", "4"]);
    let c = &mut server.client();
    q::<String>(c, &["SET", "a", "1", "EX", "100"]).unwrap();
    q::<String>(c, &["SET", "b", "1"]).unwrap();
    assert_eq!(q::<String>(c, &["FLUSHALL", "ASYNC"]).unwrap(), "OK");
    assert_eq!(q::<i64>(c, &["DBSIZE"]).unwrap(), 0);
    let info: String = q(c, &["INFO", "keyspace"]).unwrap();
    assert!(!info.contains("db0:"), "{info}");
}

/// Commands take their time from the shard's current turn, however long the shard was
/// idle before (relative expiry, both on the connection's shard and sent to another).
#[test]
fn relative_expiry_after_an_idle_spell_counts_from_now() {
    let server = Server::start(&["--shards", "2"]);
    let c = &mut server.client();
    let keys: Vec<String> = (0..2)
        .map(|s| common::keys_on("idle", s, 2, 1)[0].clone())
        .collect();
    for k in &keys {
        q::<()>(c, &["SET", k, "v"]).unwrap();
    }
    // Both shards sit idle for a while (the point of the test, not a wait).
    std::thread::sleep(std::time::Duration::from_millis(600));
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    for k in &keys {
        let before = now_ms();
        q::<()>(c, &["SET", k, "v", "PX", "1000"]).unwrap();
        let at: i64 = q(c, &["PEXPIRETIME", k]).unwrap();
        assert!(
            at >= before + 990,
            "{k}: SET PX 1000 at {before} expires at {at}"
        );
        let before = now_ms();
        q::<i64>(c, &["PEXPIRE", k, "1000"]).unwrap();
        let at: i64 = q(c, &["PEXPIRETIME", k]).unwrap();
        assert!(
            at >= before + 990,
            "{k}: PEXPIRE 1000 at {before} expires at {at}"
        );
    }
}

/// EXISTS counts as a read (hit or miss) but not as an access: Redis's EXISTS does not
/// touch the key, so it does not change what LFU eviction keeps.
#[test]
fn exists_does_not_touch_the_key() {
    let server = Server::start(&[
        "--shards",
        "1",
        "--maxmemory-policy",
        "allkeys-lfu",
        "--lfu-log-factor",
        "0",
    ]);
    let c = &mut server.client();
    q::<()>(c, &["SET", "k", "v"]).unwrap();
    let before: i64 = q(c, &["OBJECT", "FREQ", "k"]).unwrap();
    for _ in 0..3 {
        assert_eq!(q::<i64>(c, &["EXISTS", "k"]).unwrap(), 1);
    }
    assert_eq!(q::<i64>(c, &["OBJECT", "FREQ", "k"]).unwrap(), before);
    q::<Option<String>>(c, &["GET", "k"]).unwrap();
    assert_eq!(q::<i64>(c, &["OBJECT", "FREQ", "k"]).unwrap(), before + 1);
}
