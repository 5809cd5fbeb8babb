//! maxmemory and eviction, against the real binary: every policy keeps the keyspace within
//! the limit (or refuses with Redis's exact -OOM), evicts the keys its policy names, and
//! the server keeps answering. Each test fails if eviction is disabled.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{encode, keys_on, q, Raw, Server};

const OOM: &str = "-OOM command not allowed when used memory > 'maxmemory'.\r\n";
/// Values written by these tests.
const VALUE: [u8; 200] = [b'v'; 200];

fn start(policy: &str, maxmemory: &str, shards: usize) -> Server {
    Server::start(&[
        "--shards",
        &shards.to_string(),
        "--maxmemory",
        maxmemory,
        "--maxmemory-policy",
        policy,
        "--appendonly",
        "no",
    ])
}

/// `SET key VALUE [EX ex]` for every key in one pipelined write; the raw replies.
fn set_all(raw: &mut Raw, keys: &[String], ex: Option<u64>) -> Vec<String> {
    let mut out = Vec::new();
    let ex = ex.map(|s| s.to_string());
    for k in keys {
        let mut args: Vec<&[u8]> = vec![b"SET", k.as_bytes(), &VALUE];
        if let Some(ex) = &ex {
            args.extend_from_slice(&[b"EX", ex.as_bytes()]);
        }
        out.extend_from_slice(&encode(&args));
    }
    raw.send(&out);
    keys.iter().map(|_| raw.reply_str()).collect()
}

/// `GET` every key in one pipelined write (the replies are not needed).
fn get_all(raw: &mut Raw, keys: &[String]) {
    let mut out = Vec::new();
    for k in keys {
        out.extend_from_slice(&encode(&[b"GET", k.as_bytes()]));
    }
    raw.send(&out);
    for _ in keys {
        raw.reply();
    }
}

/// INFO fields as a map.
fn info(c: &mut redis::Connection, section: &str) -> HashMap<String, String> {
    let text: String = q(c, &["INFO", section]).unwrap();
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

fn info_u64(c: &mut redis::Connection, section: &str, field: &str) -> u64 {
    info(c, section)
        .get(field)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("INFO {section} has no {field}"))
}

fn dbsize(c: &mut redis::Connection) -> u64 {
    q(c, &["DBSIZE"]).unwrap()
}

fn exist(c: &mut redis::Connection, keys: &[String]) -> usize {
    keys.iter()
        .filter(|k| q::<i64>(c, &["EXISTS", k.as_str()]).unwrap() == 1)
        .count()
}

fn names(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}:{i}")).collect()
}

/// Write `total` bytes of 200-byte values under `prefix` in batches, asserting every
/// reply is +OK and that the server answers PING between batches.
fn write_all_ok(server: &Server, prefix: &str, total: usize, ex: Option<u64>) -> usize {
    let raw = &mut server.raw();
    let c = &mut server.client();
    let n = total / VALUE.len();
    for start in (0..n).step_by(1000) {
        let keys = names(prefix, start..(start + 1000).min(n));
        for (k, r) in keys.iter().zip(set_all(raw, &keys, ex)) {
            assert_eq!(r, "+OK\r\n", "SET {k}");
        }
        assert_eq!(q::<String>(c, &["PING"]).unwrap(), "PONG");
    }
    n
}

#[test]
fn noeviction_refuses_writes_with_redis_error_and_still_serves_reads() {
    let server = start("noeviction", "1mb", 2);
    let raw = &mut server.raw();
    let c = &mut server.client();
    // Write 4 MB: every write past a shard's share is refused with the exact text.
    let keys = names("k", 0..20_000);
    let mut refused = Vec::new();
    for chunk in keys.chunks(1000) {
        for (k, r) in chunk.iter().zip(set_all(raw, chunk, None)) {
            match r.as_str() {
                "+OK\r\n" => {}
                OOM => refused.push(k.clone()),
                other => panic!("SET {k}: {other:?}"),
            }
        }
    }
    assert!(
        refused.len() > 10_000,
        "only {} of 20000 writes refused",
        refused.len()
    );
    let stored = dbsize(c);
    assert_eq!(stored as usize + refused.len(), 20_000);
    assert_eq!(info_u64(c, "stats", "evicted_keys"), 0);
    let mem = info(c, "memory");
    assert_eq!(mem["maxmemory"], "1048576");
    assert_eq!(mem["maxmemory_human"], "1.00M");
    assert_eq!(mem["maxmemory_policy"], "noeviction");
    assert!(mem["used_memory"].parse::<u64>().unwrap() > 1 << 20);
    // Reads and deletes still work; other denyoom commands are refused too.
    let kept = keys.iter().find(|k| !refused.contains(k)).unwrap();
    let v: Vec<u8> = q(c, &["GET", kept]).unwrap();
    assert_eq!(v, VALUE);
    let got: Vec<Option<Vec<u8>>> = q(c, &["MGET", kept, &refused[0]]).unwrap();
    assert_eq!(got, vec![Some(VALUE.to_vec()), None]);
    raw.cmd(&[b"APPEND", kept.as_bytes(), b"x"]);
    assert_eq!(raw.reply_str(), OOM);
    raw.cmd(&[b"MSET", b"a", b"1", b"b", b"2"]);
    assert_eq!(raw.reply_str(), OOM);
    assert_eq!(q::<i64>(c, &["EXPIRE", kept, "100"]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["DEL", kept]).unwrap(), 1);
    // After deleting most keys, writes succeed again.
    for chunk in keys.chunks(500) {
        let mut args: Vec<&[u8]> = vec![b"DEL"];
        args.extend(chunk.iter().map(|k| k.as_bytes()));
        raw.cmd(&args);
        raw.reply();
    }
    assert_eq!(q::<String>(c, &["SET", "again", "1"]).unwrap(), "OK");
}

#[test]
fn allkeys_policies_keep_the_keyspace_bounded_while_writing_ten_times_the_limit() {
    for policy in ["allkeys-lru", "allkeys-lfu", "allkeys-random"] {
        let server = start(policy, "2mb", 2);
        let c = &mut server.client();
        let written = write_all_ok(&server, "k", 20 << 20, None);
        // A background step may still evict after the last write: read the key count
        // between two equal eviction counts, so both describe the same moment.
        let (mut keys, mut evicted) = (0, 0);
        common::eventually("a quiet moment to count keys and evictions", || {
            let before = info_u64(c, "stats", "evicted_keys");
            keys = dbsize(c);
            evicted = info_u64(c, "stats", "evicted_keys");
            before == evicted
        });
        // The values alone could not fit more than 2 MB / 200 B keys.
        assert!(
            keys > 1000 && keys <= (2 << 20) / 200,
            "{policy}: {keys} keys after writing {written}"
        );
        assert_eq!(
            evicted + keys,
            written as u64,
            "{policy}: every key stored or evicted"
        );
        // Within the limit (give or take the last write before a background step).
        let used = info_u64(c, "memory", "used_memory");
        assert!(
            used <= (2 << 20) + (16 << 10),
            "{policy}: used_memory {used}"
        );
        assert_eq!(info(c, "memory")["maxmemory_policy"], policy);
    }
}

#[test]
fn volatile_policies_evict_only_keys_with_a_ttl_then_refuse() {
    for policy in [
        "volatile-lru",
        "volatile-lfu",
        "volatile-random",
        "volatile-ttl",
    ] {
        let server = start(policy, "2mb", 2);
        let raw = &mut server.raw();
        let c = &mut server.client();
        // 400 KB of keys without a TTL, then 10x the limit of keys with one.
        let keep = names("keep", 0..2000);
        assert!(set_all(raw, &keep, None).iter().all(|r| r == "+OK\r\n"));
        let written = write_all_ok(&server, "vol", 20 << 20, Some(3600));
        assert!(info_u64(c, "stats", "evicted_keys") >= (written as u64) / 2);
        assert_eq!(
            exist(c, &keep),
            keep.len(),
            "{policy}: a key without TTL went"
        );
        // Keys without a TTL now: once a shard has no key with a TTL left, it refuses.
        for shard in 0..2 {
            let mut refused = false;
            for chunk in keys_on(&format!("fill{shard}"), shard, 2, 20_000).chunks(500) {
                let replies = set_all(raw, chunk, None);
                assert!(
                    replies.iter().all(|r| r == "+OK\r\n" || r == OOM),
                    "{policy}: {replies:?}"
                );
                if replies.iter().any(|r| r == OOM) {
                    refused = true;
                    break;
                }
            }
            assert!(refused, "{policy}: shard {shard} never refused");
        }
        let expires = info(c, "keyspace")
            .get("db0")
            .and_then(|v| v.split(',').find_map(|f| f.strip_prefix("expires=")))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        assert_eq!(expires, 0, "{policy}: keys with a TTL remain");
        assert_eq!(
            exist(c, &keep),
            keep.len(),
            "{policy}: a key without TTL went"
        );
        raw.cmd(&[b"SET", b"fill0:0", b"x"]);
        let r = raw.reply_str();
        assert!(r == OOM || r == "+OK\r\n", "{r}");
    }
}

#[test]
fn allkeys_lru_keeps_a_hot_set_over_cold_keys() {
    let server = start("allkeys-lru", "4mb", 1);
    let raw = &mut server.raw();
    let c = &mut server.client();
    let hot = names("hot", 0..500);
    assert!(set_all(raw, &hot, None).iter().all(|r| r == "+OK\r\n"));
    // Cold keys to most of the limit (about 340 bytes each with their key and entry),
    // which then age while the hot keys are read.
    let first_cold = write_all_ok(&server, "cold0", 1_500_000, None);
    // The LRU clock ticks in seconds (as Redis's): each round, the keys of earlier rounds
    // are older than the hot keys, which are read before the round writes about a third
    // of the limit in new cold keys.
    for round in 1..=4 {
        std::thread::sleep(Duration::from_millis(1100));
        get_all(raw, &hot);
        write_all_ok(&server, &format!("cold{round}"), 800_000, None);
    }
    let hot_left = exist(c, &hot);
    let cold_sample: Vec<String> = (0..first_cold)
        .step_by(10)
        .map(|i| format!("cold0:{i}"))
        .collect();
    let cold_left = exist(c, &cold_sample);
    eprintln!(
        "allkeys-lru: {hot_left}/500 hot kept, {cold_left}/{} early cold kept",
        cold_sample.len()
    );
    assert!(info_u64(c, "stats", "evicted_keys") > 8_000);
    assert!(
        hot_left >= 475,
        "only {hot_left} of 500 hot keys kept ({cold_left} of {} early cold keys)",
        cold_sample.len()
    );
    assert!(
        cold_left * 4 < cold_sample.len(),
        "{cold_left} of {} early cold keys kept",
        cold_sample.len()
    );
}

#[test]
fn allkeys_lfu_keeps_frequently_read_keys() {
    let server = start("allkeys-lfu", "4mb", 1);
    let raw = &mut server.raw();
    let c = &mut server.client();
    let frequent = names("freq", 0..500);
    assert!(set_all(raw, &frequent, None).iter().all(|r| r == "+OK\r\n"));
    for _ in 0..50 {
        get_all(raw, &frequent);
    }
    let f: i64 = q(c, &["OBJECT", "FREQ", "freq:0"]).unwrap();
    assert!(f > 6, "OBJECT FREQ of a key read 50 times: {f}");
    // Four times the limit of keys written once and never read.
    write_all_ok(&server, "once", 16 << 20, None);
    let left = exist(c, &frequent);
    eprintln!("allkeys-lfu: {left}/500 frequently read kept (freq {f})");
    assert!(info_u64(c, "stats", "evicted_keys") > 20_000);
    assert!(left >= 475, "only {left} of 500 frequently read keys kept");
}

#[test]
fn volatile_ttl_evicts_the_soonest_expiring_first() {
    let server = start("volatile-ttl", "2mb", 1);
    let raw = &mut server.raw();
    let c = &mut server.client();
    let keep = names("keep", 0..500);
    assert!(set_all(raw, &keep, None).iter().all(|r| r == "+OK\r\n"));
    // Key i expires in 10000 + i seconds: later keys expire later. Written in random
    // order, so what is evicted depends on the TTL alone, not on when a key was written.
    let n = 30_000usize;
    let mut order: Vec<usize> = (0..n).collect();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    for chunk in order.chunks(1000) {
        let mut out = Vec::new();
        for &i in chunk {
            let key = format!("ttl:{i}");
            let ex = (10_000 + i).to_string();
            out.extend_from_slice(&encode(&[
                b"SET",
                key.as_bytes(),
                &VALUE,
                b"EX",
                ex.as_bytes(),
            ]));
        }
        raw.send(&out);
        for _ in chunk {
            assert_eq!(raw.reply_str(), "+OK\r\n");
        }
    }
    let alive: Vec<usize> = (0..n)
        .filter(|i| q::<i64>(c, &["EXISTS", &format!("ttl:{i}")]).unwrap() == 1)
        .collect();
    assert!(
        alive.len() > 1000 && alive.len() < n / 2,
        "{} of {n} keys with a TTL kept",
        alive.len()
    );
    // The survivors are the keys that expire last: (almost) exactly the top indices.
    let cutoff = n - alive.len();
    let early = alive.iter().filter(|&&i| i < cutoff).count();
    eprintln!(
        "volatile-ttl: {} kept, {early} of them not among the latest",
        alive.len()
    );
    assert!(
        early * 100 <= alive.len(),
        "{early} of {} survivors expire before the latest {} keys",
        alive.len(),
        alive.len()
    );
    assert_eq!(exist(c, &keep), keep.len());
}

#[test]
fn object_memory_and_config_follow_the_policy() {
    let server = start("allkeys-lru", "64mb", 2);
    let c = &mut server.client();
    let cfg: Vec<String> = q(c, &["CONFIG", "GET", "maxmemory"]).unwrap();
    assert_eq!(cfg, vec!["maxmemory", "67108864"]);
    q::<String>(c, &["SET", "k", "hello"]).unwrap();
    let enc: String = q(c, &["OBJECT", "ENCODING", "k"]).unwrap();
    assert_eq!(enc, "embstr");
    let idle: i64 = q(c, &["OBJECT", "IDLETIME", "k"]).unwrap();
    assert!((0..=1).contains(&idle));
    assert!(q::<i64>(c, &["MEMORY", "USAGE", "k"]).unwrap() >= 64);
    assert_eq!(
        common::err_of(c, &["OBJECT", "FREQ", "k"]),
        "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust."
    );
    q::<String>(
        c,
        &[
            "CONFIG",
            "SET",
            "maxmemory-policy",
            "allkeys-lfu",
            "maxmemory",
            "1gb",
        ],
    )
    .unwrap();
    let cfg: Vec<String> = q(c, &["CONFIG", "GET", "maxmemory-policy"]).unwrap();
    assert_eq!(cfg, vec!["maxmemory-policy", "allkeys-lfu"]);
    q::<String>(c, &["SET", "n", "v"]).unwrap();
    assert_eq!(q::<i64>(c, &["OBJECT", "FREQ", "n"]).unwrap(), 5);
    let mem = info(c, "memory");
    assert_eq!(mem["maxmemory"], "1073741824");
    assert_eq!(mem["maxmemory_human"], "1.00G");
    assert_eq!(mem["maxmemory_policy"], "allkeys-lfu");
    // Lowering the limit below the data evicts in the background, without any command.
    let raw = &mut server.raw();
    assert!(set_all(raw, &names("x", 0..20_000), None)
        .iter()
        .all(|r| r == "+OK\r\n"));
    q::<String>(c, &["CONFIG", "SET", "maxmemory", "2mb"]).unwrap();
    common::eventually("background eviction to the new limit", || {
        info_u64(c, "memory", "used_memory") <= 2 << 20
    });
    assert!(dbsize(c) < 20_000);
}
