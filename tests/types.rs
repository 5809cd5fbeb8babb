//! The typed store as a whole: TYPE, WRONGTYPE both ways, SCAN TYPE, generic key commands
//! on collections across shards, collections in transactions, keyspace notifications,
//! and every collection write surviving kill -9, snapshots and a change of shard count.

mod common;

use common::{err_of, keys_on, q, DataDir, Server};

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

fn start(dir: &DataDir, shards: usize) -> Server {
    let shards = shards.to_string();
    Server::start_raw(&["--dir", dir.path(), "--shards", &shards], None)
}

#[test]
fn types_are_reported_and_enforced_both_ways() {
    let s = Server::start(&["--shards", "4"]);
    let c = &mut s.client();
    q::<()>(c, &["SET", "s", "v"]).unwrap();
    q::<i64>(c, &["HSET", "h", "f", "v"]).unwrap();
    q::<i64>(c, &["RPUSH", "l", "a"]).unwrap();
    q::<i64>(c, &["SADD", "z", "m"]).unwrap();
    for (k, t) in [
        ("s", "string"),
        ("h", "hash"),
        ("l", "list"),
        ("z", "set"),
        ("nope", "none"),
    ] {
        assert_eq!(q::<String>(c, &["TYPE", k]).unwrap(), t, "{k}");
    }
    for cmd in [
        vec!["GET", "h"],
        vec!["APPEND", "l", "x"],
        vec!["INCR", "z"],
        vec!["STRLEN", "h"],
        vec!["GETSET", "l", "x"],
        vec!["GETRANGE", "z", "0", "1"],
        vec!["SETRANGE", "h", "0", "x"],
        vec!["INCRBYFLOAT", "h", "1"],
        vec!["GETDEL", "l"],
        vec!["SET", "h", "x", "GET"],
        vec!["HGET", "s", "f"],
        vec!["LPUSH", "h", "x"],
        vec!["SADD", "l", "x"],
        vec!["LLEN", "z"],
        vec!["SCARD", "h"],
        vec!["HLEN", "l"],
    ] {
        assert_eq!(err_of(c, &cmd), WRONGTYPE, "{cmd:?}");
    }
    // MGET answers nil for other types, as Redis does; SET overwrites any type.
    let got: Vec<Option<String>> = q(c, &["MGET", "s", "h", "l"]).unwrap();
    assert_eq!(got, vec![Some("v".to_string()), None, None]);
    q::<()>(c, &["SET", "h", "now a string"]).unwrap();
    assert_eq!(q::<String>(c, &["TYPE", "h"]).unwrap(), "string");
    assert_eq!(q::<i64>(c, &["EXISTS", "s", "l", "z", "nope"]).unwrap(), 3);
    assert_eq!(q::<i64>(c, &["DEL", "l", "z"]).unwrap(), 2);
    assert_eq!(q::<String>(c, &["TYPE", "l"]).unwrap(), "none");
}

#[test]
fn scan_type_and_generic_commands_work_on_collections_across_shards() {
    let s = Server::start(&["--shards", "4"]);
    let c = &mut s.client();
    let on0 = keys_on("a", 0, 4, 3);
    let on3 = keys_on("b", 3, 4, 3);
    q::<i64>(c, &["HSET", &on0[0], "f", "v", "g", "w"]).unwrap();
    q::<i64>(c, &["RPUSH", &on0[1], "x", "y", "z"]).unwrap();
    q::<i64>(c, &["SADD", &on0[2], "1", "2", "3"]).unwrap();
    q::<()>(c, &["SET", &on3[0], "str"]).unwrap();
    let mut cursor = 0u64;
    let mut hashes = Vec::new();
    loop {
        let (next, keys): (u64, Vec<String>) = q(
            c,
            &["SCAN", &cursor.to_string(), "TYPE", "hash", "COUNT", "100"],
        )
        .unwrap();
        hashes.extend(keys);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(hashes, vec![on0[0].clone()]);
    // RENAME and COPY move collections between shards, with their TTL.
    q::<i64>(c, &["EXPIRE", &on0[0], "1000"]).unwrap();
    q::<()>(c, &["RENAME", &on0[0], &on3[1]]).unwrap();
    assert_eq!(q::<i64>(c, &["EXISTS", &on0[0]]).unwrap(), 0);
    assert_eq!(q::<String>(c, &["HGET", &on3[1], "g"]).unwrap(), "w");
    let ttl: i64 = q(c, &["TTL", &on3[1]]).unwrap();
    assert!((990..=1000).contains(&ttl), "TTL kept: {ttl}");
    assert_eq!(q::<i64>(c, &["COPY", &on0[1], &on3[2]]).unwrap(), 1);
    q::<i64>(c, &["RPUSH", &on0[1], "only-in-source"]).unwrap();
    let copy: Vec<String> = q(c, &["LRANGE", &on3[2], "0", "-1"]).unwrap();
    assert_eq!(copy, vec!["x", "y", "z"], "a copy is independent");
    // Same-shard RENAME of a set, then EXPIRE makes it go.
    q::<()>(c, &["RENAME", &on0[2], &on0[0]]).unwrap();
    assert_eq!(q::<i64>(c, &["SCARD", &on0[0]]).unwrap(), 3);
    q::<i64>(c, &["PEXPIRE", &on0[0], "50"]).unwrap();
    common::eventually("the set expires", || {
        q::<i64>(c, &["EXISTS", &on0[0]]).unwrap() == 0
    });
    assert_eq!(
        q::<String>(c, &["OBJECT", "ENCODING", &on0[1]]).unwrap(),
        "quicklist"
    );
}

#[test]
fn collection_writes_in_one_transaction_across_shards_are_atomic() {
    let s = Server::start(&["--shards", "4"]);
    let c = &mut s.client();
    let a = keys_on("ta", 0, 4, 1)[0].clone();
    let b = keys_on("tb", 1, 4, 1)[0].clone();
    let d = keys_on("td", 2, 4, 1)[0].clone();
    q::<i64>(c, &["RPUSH", &b, "1", "2"]).unwrap();
    let (x, y, z, w): (i64, Option<String>, i64, Vec<String>) = redis::pipe()
        .atomic()
        .cmd("HSET")
        .arg(&a)
        .arg("f")
        .arg("1")
        .cmd("LPOP")
        .arg(&b)
        .cmd("SADD")
        .arg(&d)
        .arg("m")
        .cmd("LRANGE")
        .arg(&b)
        .arg(0)
        .arg(-1)
        .query(c)
        .unwrap();
    assert_eq!(
        (x, y.as_deref(), z, w),
        (1, Some("1"), 1, vec!["2".to_string()])
    );
    // WATCH of a hash: an HSET from another client aborts the EXEC.
    let mut other = s.client();
    redis::cmd("WATCH").arg(&a).query::<()>(c).unwrap();
    q::<i64>(&mut other, &["HSET", &a, "f", "2"]).unwrap();
    redis::cmd("MULTI").query::<()>(c).unwrap();
    redis::cmd("SADD").arg(&d).arg("n").query::<()>(c).unwrap();
    let r: Option<Vec<i64>> = redis::cmd("EXEC").query(c).unwrap();
    assert_eq!(r, None, "watched hash changed");
    assert_eq!(q::<i64>(c, &["SCARD", &d]).unwrap(), 1);
}

#[test]
fn collection_events_are_notified() {
    let s = Server::start(&["--shards", "2", "--notify-keyspace-events", "KEA"]);
    let mut sub = s.client();
    let mut pubsub = sub.as_pubsub();
    pubsub.psubscribe("__keyevent@0__:*").unwrap();
    let c = &mut s.client();
    q::<i64>(c, &["HSET", "h", "f", "v"]).unwrap();
    q::<i64>(c, &["RPUSH", "l", "a"]).unwrap();
    q::<Option<String>>(c, &["LPOP", "l"]).unwrap();
    q::<i64>(c, &["SADD", "z", "m"]).unwrap();
    let mut events = Vec::new();
    pubsub
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    while events.len() < 5 {
        let Ok(m) = pubsub.get_message() else { break };
        let key: String = m.get_payload().unwrap();
        events.push(format!("{} {key}", m.get_channel_name()));
    }
    assert_eq!(
        events,
        vec![
            "__keyevent@0__:hset h",
            "__keyevent@0__:rpush l",
            "__keyevent@0__:lpop l",
            "__keyevent@0__:del l",
            "__keyevent@0__:sadd z",
        ]
    );
    // Across shards, each command's own events (not generic writes), from both shards.
    let a = keys_on("ev", 0, 2, 1)[0].clone();
    let b = keys_on("ev", 1, 2, 1)[0].clone();
    q::<i64>(c, &["RPUSH", &a, "x"]).unwrap();
    q::<Option<String>>(c, &["LMOVE", &a, &b, "LEFT", "RIGHT"]).unwrap();
    let mut got = Vec::new();
    while got.len() < 4 {
        let Ok(m) = pubsub.get_message() else { break };
        let key: String = m.get_payload().unwrap();
        got.push(format!("{} {key}", m.get_channel_name()));
    }
    let mut want = vec![
        format!("__keyevent@0__:rpush {a}"),
        format!("__keyevent@0__:lpop {a}"),
        format!("__keyevent@0__:del {a}"),
        format!("__keyevent@0__:rpush {b}"),
    ];
    got.sort();
    want.sort();
    assert_eq!(
        got, want,
        "cross-shard LMOVE raises lpop/del on the source, rpush on the destination"
    );
}

/// One of every collection write, on keys of several shards.
fn write_collections(c: &mut redis::Connection) {
    let far = keys_on("far", 3, 4, 2);
    q::<i64>(c, &["HSET", "h", "a", "1", "b", "2", "c", "3"]).unwrap();
    q::<i64>(c, &["HDEL", "h", "b"]).unwrap();
    q::<i64>(c, &["HINCRBY", "h", "a", "10"]).unwrap();
    q::<String>(c, &["HINCRBYFLOAT", "h", "f", "0.5"]).unwrap();
    let big: Vec<String> = (0..300).map(|i| format!("field{i}")).collect();
    let mut args = vec!["HSET".to_string(), "bighash".to_string()];
    for f in &big {
        args.push(f.clone());
        args.push("v".into());
    }
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    q::<i64>(c, &args).unwrap();
    q::<i64>(c, &["RPUSH", "l", "a", "b", "c", "d", "e"]).unwrap();
    q::<i64>(c, &["LPUSH", "l", "z"]).unwrap();
    q::<Option<String>>(c, &["RPOP", "l"]).unwrap();
    q::<()>(c, &["LSET", "l", "1", "A"]).unwrap();
    q::<()>(c, &["LTRIM", "l", "0", "3"]).unwrap();
    q::<i64>(c, &["SADD", "s", "1", "2", "3", "x"]).unwrap();
    q::<i64>(c, &["SREM", "s", "2"]).unwrap();
    // Random choices are journaled as what they did.
    q::<i64>(c, &["SADD", "popped", "p1", "p2", "p3", "p4"]).unwrap();
    let gone: Vec<String> = q(c, &["SPOP", "popped", "2"]).unwrap();
    assert_eq!(gone.len(), 2);
    // Multi-key, on one shard and across shards.
    q::<i64>(c, &["SMOVE", "s", &far[0], "x"]).unwrap();
    q::<Option<String>>(c, &["LMOVE", "l", &far[1], "LEFT", "RIGHT"]).unwrap();
    q::<i64>(c, &["SUNIONSTORE", "union", "s", &far[0]]).unwrap();
    q::<()>(c, &["RENAME", "bighash", "bighash2"]).unwrap();
}

fn snapshot_of(c: &mut redis::Connection) -> Vec<String> {
    let far = keys_on("far", 3, 4, 2);
    let mut out = Vec::new();
    let mut h: Vec<(String, String)> = q(c, &["HGETALL", "h"]).unwrap();
    h.sort();
    out.push(format!("h={h:?}"));
    out.push(format!(
        "bighash2={}",
        q::<i64>(c, &["HLEN", "bighash2"]).unwrap()
    ));
    out.push(format!(
        "bighash={}",
        q::<i64>(c, &["EXISTS", "bighash"]).unwrap()
    ));
    out.push(format!(
        "l={:?}",
        q::<Vec<String>>(c, &["LRANGE", "l", "0", "-1"]).unwrap()
    ));
    for k in ["s", "popped", "union", far[0].as_str()] {
        let mut m: Vec<String> = q(c, &["SMEMBERS", k]).unwrap();
        m.sort();
        out.push(format!("{k}={m:?}"));
    }
    out.push(format!(
        "far1={:?}",
        q::<Vec<String>>(c, &["LRANGE", &far[1], "0", "-1"]).unwrap()
    ));
    out
}

#[test]
fn collections_survive_kill_snapshot_and_a_new_shard_count() {
    let dir = DataDir::new("types");
    let expected = {
        let mut s = start(&dir, 4);
        let c = &mut s.client();
        write_collections(c);
        let snap = snapshot_of(c);
        assert!(snap.iter().any(|l| l == "bighash2=300"), "{snap:?}");
        s.kill9();
        snap
    };
    {
        let mut s = start(&dir, 2);
        let c = &mut s.client();
        assert_eq!(snapshot_of(c), expected, "after kill -9, on 2 shards");
        // A snapshot, then more writes on top of it, then kill again.
        q::<String>(c, &["SAVE"]).unwrap();
        q::<i64>(c, &["HSET", "h", "after", "snap"]).unwrap();
        q::<i64>(c, &["HDEL", "h", "after"]).unwrap();
        s.kill9();
    }
    let s = start(&dir, 3);
    assert_eq!(
        snapshot_of(&mut s.client()),
        expected,
        "after snapshot + log, on 3 shards"
    );
}

/// A key that expired and was created again as a collection replays as it happened: the
/// old value (still alive at record time) does not leak into the new one, whatever its
/// type, and the server starts.
#[test]
fn collections_created_on_expired_keys_replay_as_they_happened() {
    let dir = DataDir::new("reborn");
    {
        let mut s = start(&dir, 2);
        let c = &mut s.client();
        q::<()>(c, &["SET", "was_string", "v", "PX", "100"]).unwrap();
        q::<i64>(c, &["HSET", "was_hash", "old", "1"]).unwrap();
        q::<i64>(c, &["PEXPIRE", "was_hash", "100"]).unwrap();
        q::<i64>(c, &["SADD", "was_set", "old"]).unwrap();
        q::<i64>(c, &["PEXPIRE", "was_set", "100"]).unwrap();
        common::eventually("the keys expire", || {
            q::<i64>(c, &["EXISTS", "was_string", "was_hash", "was_set"]).unwrap() == 0
        });
        q::<i64>(c, &["RPUSH", "was_string", "x"]).unwrap();
        q::<i64>(c, &["HSET", "was_hash", "new", "2"]).unwrap();
        q::<i64>(c, &["SADD", "was_set", "new"]).unwrap();
        s.kill9();
    }
    let s = start(&dir, 3);
    let c = &mut s.client();
    assert_eq!(
        q::<Vec<String>>(c, &["LRANGE", "was_string", "0", "-1"]).unwrap(),
        vec!["x"]
    );
    let h: Vec<(String, String)> = q(c, &["HGETALL", "was_hash"]).unwrap();
    assert_eq!(h, vec![("new".to_string(), "2".to_string())]);
    assert_eq!(q::<i64>(c, &["TTL", "was_hash"]).unwrap(), -1);
    assert_eq!(
        q::<Vec<String>>(c, &["SMEMBERS", "was_set"]).unwrap(),
        vec!["new"]
    );
}

fn encoding(c: &mut redis::Connection, key: &str) -> String {
    q(c, &["OBJECT", "ENCODING", key]).unwrap()
}

/// HSET `key` f0 v0 ... f<n-1> v<n-1> in one command.
fn hset_fields(c: &mut redis::Connection, key: &str, n: usize) {
    let mut args = vec!["HSET".to_string(), key.to_string()];
    for i in 0..n {
        args.push(format!("f{i}"));
        args.push(format!("v{i}"));
    }
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    q::<i64>(c, &words).unwrap();
}

/// The compact-encoding thresholds are Redis's CONFIG parameters, under both names, and
/// apply to every later write as in Redis: a compact hash or sorted set made under the old
/// limits converts at its next write past the new ones; sets of integers stop being
/// intsets past `set-max-intset-entries`. The values survive a restart with the flags, and
/// a hash kept compact by a raised limit comes back with all its fields.
#[test]
fn encoding_thresholds_are_config_parameters() {
    let dir = DataDir::new("thresholds");
    let mut s = Server::start_raw(
        &[
            "--dir",
            dir.path(),
            "--shards",
            "2",
            "--hash-max-listpack-entries",
            "4",
        ],
        None,
    );
    let c = &mut s.client();
    let get = |c: &mut redis::Connection, p: &str| -> String {
        q::<Vec<String>>(c, &["CONFIG", "GET", p]).unwrap()[1].clone()
    };
    assert_eq!(get(c, "hash-max-ziplist-entries"), "4");
    q::<i64>(c, &["HSET", "h", "a", "1", "b", "2", "c", "3", "d", "4"]).unwrap();
    assert_eq!(encoding(c, "h"), "listpack");
    q::<i64>(c, &["HSET", "h", "e", "5"]).unwrap();
    assert_eq!(encoding(c, "h"), "hashtable");

    // Raised: a bigger hash stays compact. Lowered again: that hash keeps its encoding
    // through reads and deletions and converts at its next field set, even an update.
    q::<()>(c, &["CONFIG", "SET", "hash-max-ziplist-entries", "100"]).unwrap();
    hset_fields(c, "big", 50);
    assert_eq!(encoding(c, "big"), "listpack");
    q::<()>(c, &["CONFIG", "SET", "hash-max-listpack-entries", "10"]).unwrap();
    assert_eq!(encoding(c, "big"), "listpack", "reads do not convert");
    q::<i64>(c, &["HDEL", "big", "f0", "nope"]).unwrap();
    assert_eq!(encoding(c, "big"), "listpack", "deletions do not convert");
    let keys: Vec<String> = q(c, &["HKEYS", "big"]).unwrap();
    assert_eq!(keys[..2], ["f1", "f2"], "listpack order kept");
    q::<i64>(c, &["HSET", "big", "f1", "again"]).unwrap();
    assert_eq!(
        encoding(c, "big"),
        "hashtable",
        "a set over the limit converts"
    );
    q::<()>(c, &["CONFIG", "SET", "hash-max-listpack-value", "3"]).unwrap();
    q::<i64>(c, &["HSET", "h2", "f", "1234"]).unwrap();
    assert_eq!(encoding(c, "h2"), "hashtable");

    q::<()>(c, &["CONFIG", "SET", "zset-max-listpack-entries", "2"]).unwrap();
    q::<i64>(c, &["ZADD", "z", "1", "a", "2", "b"]).unwrap();
    assert_eq!(encoding(c, "z"), "listpack");
    q::<i64>(c, &["ZADD", "z", "3", "c"]).unwrap();
    assert_eq!(encoding(c, "z"), "skiplist");
    q::<()>(c, &["CONFIG", "SET", "zset-max-ziplist-value", "2"]).unwrap();
    q::<i64>(c, &["ZADD", "z2", "1", "abc"]).unwrap();
    assert_eq!(encoding(c, "z2"), "skiplist");

    q::<()>(c, &["CONFIG", "SET", "set-max-intset-entries", "2"]).unwrap();
    q::<i64>(c, &["SADD", "s", "1", "2"]).unwrap();
    assert_eq!(encoding(c, "s"), "intset");
    q::<i64>(c, &["SADD", "s", "3"]).unwrap();
    assert_eq!(encoding(c, "s"), "hashtable");

    // Errors as Redis gives them.
    assert_eq!(
        err_of(c, &["CONFIG", "SET", "hash-max-listpack-entries", "-1"]),
        "ERR CONFIG SET failed (possibly related to argument 'hash-max-listpack-entries') - argument must be between 0 and 9223372036854775807 inclusive"
    );
    assert_eq!(
        err_of(c, &["CONFIG", "SET", "zset-max-listpack-value", "abc"]),
        "ERR CONFIG SET failed (possibly related to argument 'zset-max-listpack-value') - argument must be a memory value"
    );

    // A compact hash of 60 fields under a raised limit, restarted with the flag: all there,
    // still compact.
    q::<()>(c, &["CONFIG", "SET", "hash-max-listpack-entries", "100"]).unwrap();
    q::<()>(c, &["CONFIG", "SET", "hash-max-listpack-value", "64"]).unwrap();
    hset_fields(c, "kept", 60);
    assert_eq!(encoding(c, "kept"), "listpack");
    s.kill9();
    let s = Server::start_raw(
        &[
            "--dir",
            dir.path(),
            "--shards",
            "3",
            "--hash-max-ziplist-entries",
            "100",
        ],
        None,
    );
    let c = &mut s.client();
    assert_eq!(q::<i64>(c, &["HLEN", "kept"]).unwrap(), 60);
    assert_eq!(encoding(c, "kept"), "listpack");
    assert_eq!(get(c, "hash-max-listpack-entries"), "100");
}
