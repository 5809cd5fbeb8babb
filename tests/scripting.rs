//! Lua scripting end to end on `--shards 4`: scripts on one shard and across shards,
//! atomicity under concurrent transfers, the script cache seen by every connection at
//! once, undeclared keys, effects surviving kill -9 and replaying to the same values on
//! another shard count, WATCH and MULTI, BUSY / SCRIPT KILL / UNKILLABLE and the
//! read-only kill-after, redis-py's Lock scripts under contention, FUNCTION libraries,
//! and pipelined scripts byte at a time.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{encode, err_of, eventually, keys_on, q, DataDir, Server};
use redis::Value;

/// Redis's reply to a request refused while a script is busy.
const BUSY: &str =
    "-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n";
/// EXEC's reply to a transaction discarded because a script was busy.
const EXECABORT_BUSY: &str = "-EXECABORT Transaction discarded because of: BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n";

fn connect(url: &str) -> redis::Connection {
    redis::Client::open(url).unwrap().get_connection().unwrap()
}

fn start() -> Server {
    Server::start(&["--shards", "4", "--appendonly", "no"])
}

/// A key on each of the four shards.
fn one_per_shard(prefix: &str) -> Vec<String> {
    (0..4)
        .map(|s| keys_on(prefix, s, 4, 1)[0].clone())
        .collect()
}

fn eval<T: redis::FromRedisValue>(
    c: &mut redis::Connection,
    script: &str,
    keys: &[&str],
    args: &[&str],
) -> redis::RedisResult<T> {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(script).arg(keys.len());
    for k in keys {
        cmd.arg(*k);
    }
    for a in args {
        cmd.arg(*a);
    }
    cmd.query(c)
}

const TRANSFER: &str = "local from = tonumber(redis.call('get', KEYS[1]) or '0') \
    local amount = tonumber(ARGV[1]) \
    if from < amount then return 0 end \
    redis.call('decrby', KEYS[1], amount) \
    redis.call('incrby', KEYS[2], amount) \
    return 1";

const SUM: &str = "local s = 0 for i, k in ipairs(KEYS) do \
    s = s + tonumber(redis.call('get', k) or '0') end return s";

#[test]
fn scripts_run_on_their_keys_shard_and_across_shards() {
    let s = start();
    let c = &mut s.client();
    let keys = one_per_shard("acct");
    for (i, k) in keys.iter().enumerate() {
        let r: String = eval(
            c,
            "return redis.call('set', KEYS[1], ARGV[1])",
            &[k],
            &[&format!("{}", 100 + i)],
        )
        .unwrap();
        assert_eq!(r, "OK");
        let v: i64 = eval(
            c,
            "return tonumber(redis.call('get', KEYS[1])) + 1",
            &[k],
            &[],
        )
        .unwrap();
        assert_eq!(v, 101 + i as i64);
    }
    // A transfer between two shards, then a sum over all four.
    let moved: i64 = eval(c, TRANSFER, &[&keys[0], &keys[3]], &["40"]).unwrap();
    assert_eq!(moved, 1);
    let refused: i64 = eval(c, TRANSFER, &[&keys[0], &keys[3]], &["1000"]).unwrap();
    assert_eq!(refused, 0);
    let all: Vec<&str> = keys.iter().map(|k| k.as_str()).collect();
    let sum: i64 = eval(c, SUM, &all, &[]).unwrap();
    assert_eq!(sum, 100 + 101 + 102 + 103);
    assert_eq!(q::<i64>(c, &["GET", &keys[0]]).unwrap(), 60);
    assert_eq!(q::<i64>(c, &["GET", &keys[3]]).unwrap(), 143);
    // Keyless scripts run where the connection is.
    let pong: String = eval(c, "return redis.call('ping')", &[], &[]).unwrap();
    assert_eq!(pong, "PONG");
    // A script error after a write keeps the write, as in Redis (no rollback).
    let e = eval::<Value>(
        c,
        "redis.call('set', KEYS[1], 'partial') return redis.call('incr', KEYS[1])",
        &[&keys[1]],
        &[],
    )
    .unwrap_err();
    assert!(
        common::error_text(&e).starts_with("ERR value is not an integer or out of range script: "),
        "{e:?}"
    );
    assert_eq!(q::<String>(c, &["GET", &keys[1]]).unwrap(), "partial");
}

/// Transfers between accounts on different shards, run concurrently from many
/// connections, never let a reader see money appear or vanish: each script is atomic
/// across the shards it touches.
#[test]
fn cross_shard_scripts_are_atomic_under_concurrency() {
    let s = start();
    let url = s.url();
    let keys: Vec<String> = (0..4)
        .flat_map(|shard| keys_on("bank", shard, 4, 2))
        .collect();
    let c = &mut s.client();
    for k in &keys {
        q::<()>(c, &["SET", k, "1000"]).unwrap();
    }
    let total = 1000 * keys.len() as i64;
    let sha: String = q(c, &["SCRIPT", "LOAD", TRANSFER]).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for t in 0..4 {
        let (url, keys, sha) = (url.clone(), keys.clone(), sha.clone());
        writers.push(thread::spawn(move || {
            let c = &mut connect(&url);
            let mut done = 0;
            for i in 0..300 {
                let from = &keys[(t * 3 + i) % keys.len()];
                let to = &keys[(t * 5 + i * 7 + 1) % keys.len()];
                if from == to {
                    continue;
                }
                let r: i64 = redis::cmd("EVALSHA")
                    .arg(&sha)
                    .arg(2)
                    .arg(from)
                    .arg(to)
                    .arg(1 + (i % 17))
                    .query(c)
                    .unwrap();
                done += r;
            }
            done
        }));
    }
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (url, keys, stop) = (url.clone(), keys.clone(), stop.clone());
            thread::spawn(move || {
                let c = &mut connect(&url);
                let all: Vec<&str> = keys.iter().map(|k| k.as_str()).collect();
                let mut reads = 0;
                while !stop.load(Ordering::Relaxed) || reads == 0 {
                    let mut cmd = redis::cmd("EVAL_RO");
                    cmd.arg(SUM).arg(all.len());
                    for k in &all {
                        cmd.arg(*k);
                    }
                    let sum: i64 = cmd.query(c).unwrap();
                    assert_eq!(sum, total, "a reader saw a half-done transfer");
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let moved: i64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    assert!(moved > 500, "most transfers went through ({moved})");
    let mut sum = 0;
    for k in &keys {
        sum += q::<i64>(c, &["GET", k]).unwrap();
    }
    assert_eq!(sum, total);
}

/// Once SCRIPT LOAD (or EVAL) has answered, EVALSHA works from every connection, whatever
/// shard it is on and wherever its keys live; SCRIPT FLUSH is seen everywhere at once.
#[test]
fn the_script_cache_is_seen_by_every_connection_at_once() {
    let s = start();
    let keys = one_per_shard("cache");
    for round in 0..20 {
        let body = format!("return 'r{round}:' .. KEYS[1]");
        let mut loader = s.raw_on_shard(round % 4, 4);
        loader.cmd(&[b"SCRIPT", b"LOAD", body.as_bytes()]);
        let sha = loader.reply_str();
        let sha = sha.lines().nth(1).unwrap_or("").to_string();
        assert_eq!(sha.len(), 40, "{sha}");
        for shard in 0..4u64 {
            let mut other = s.raw_on_shard(shard, 4);
            let key = &keys[(shard as usize + round as usize) % 4];
            other.cmd(&[b"EVALSHA", sha.as_bytes(), b"1", key.as_bytes()]);
            let reply = other.reply_str();
            assert!(reply.contains(&format!("r{round}:{key}")), "{reply}");
        }
    }
    // EVAL caches too.
    let mut a = s.raw_on_shard(1, 4);
    a.cmd(&[b"EVAL", b"return 'from eval'", b"0"]);
    assert!(a.reply_str().contains("from eval"));
    let c = &mut s.client();
    let sha: String = eval(
        c,
        "return redis.sha1hex(ARGV[1])",
        &[],
        &["return 'from eval'"],
    )
    .unwrap();
    let mut b = s.raw_on_shard(2, 4);
    b.cmd(&[b"EVALSHA", sha.as_bytes(), b"0"]);
    assert!(b.reply_str().contains("from eval"));
    q::<()>(c, &["SCRIPT", "FLUSH"]).unwrap();
    for shard in 0..4 {
        let mut other = s.raw_on_shard(shard, 4);
        other.cmd(&[b"EVALSHA", sha.as_bytes(), b"0"]);
        assert_eq!(
            other.reply_str(),
            "-NOSCRIPT No matching script. Please use EVAL.\r\n"
        );
    }
}

#[test]
fn keys_a_script_did_not_declare_are_refused() {
    let s = start();
    let c = &mut s.client();
    let e = err_of(
        c,
        &["EVAL", "return redis.call('set', 'undeclared', 'x')", "0"],
    );
    assert!(
        e.starts_with("ERR Script attempted to access key 'undeclared' which is not in KEYS"),
        "{e}"
    );
    assert_eq!(
        q::<Option<String>>(c, &["GET", "undeclared"]).unwrap(),
        None
    );
    let e = err_of(
        c,
        &[
            "EVAL",
            "return redis.call('mget', KEYS[1], 'other')",
            "1",
            "declared",
        ],
    );
    assert!(e.contains("'other' which is not in KEYS"), "{e}");
    // redis.pcall returns the refusal as an error reply the script may inspect.
    let r: String = eval(c, "return redis.pcall('get', 'other')['err']", &[], &[]).unwrap();
    assert!(r.contains("'other' which is not in KEYS"), "{r}");
}

/// What scripts write is journaled as effects: after kill -9 the values are back,
/// including ones a script computed from the clock and from random numbers, and the
/// same on another shard count.
#[test]
fn script_effects_survive_kill9_and_replay_on_other_shard_counts() {
    let dir = DataDir::new("script-kill9");
    let keys = one_per_shard("dur");
    let k: Vec<&str> = keys.iter().map(|k| k.as_str()).collect();
    let args4 = ["--dir", dir.path(), "--shards", "4"];
    let mut s = Server::start_raw(&args4, None);
    let c = &mut s.client();
    let stamp: String = eval(
        c,
        "local t = redis.call('time') \
         local v = t[1] .. '.' .. t[2] .. ':' .. math.random(1000000) \
         redis.call('set', KEYS[1], v) \
         redis.call('hset', KEYS[2], 'stamp', v, 'n', 1) \
         redis.call('rpush', KEYS[3], v, 'x', 'y') \
         redis.call('zadd', KEYS[4], 3, v) \
         return v",
        &k,
        &[],
    )
    .unwrap();
    let accounts: Vec<String> = (0..2)
        .map(|s| keys_on("dur-acct", s + 1, 4, 1)[0].clone())
        .collect();
    q::<()>(c, &["SET", &accounts[0], "100"]).unwrap();
    for _ in 0..50 {
        let r: i64 = eval(c, TRANSFER, &[&accounts[0], &accounts[1]], &["1"]).unwrap();
        assert_eq!(r, 1);
        let _: i64 = eval(
            c,
            "return redis.call('incrby', KEYS[1], ARGV[1])",
            &[k[2]],
            &["2"],
        )
        .unwrap_or(0);
    }
    let _: Value = eval(
        c,
        "redis.call('lpop', KEYS[1]) redis.call('expire', KEYS[1], 1000) return 1",
        &[k[2]],
        &[],
    )
    .unwrap();
    let snapshot = |c: &mut redis::Connection| {
        (
            q::<Vec<Option<i64>>>(c, &["MGET", &accounts[0]]).unwrap()[0].unwrap_or(0)
                + 1000
                    * q::<Option<i64>>(c, &["GET", &accounts[1]])
                        .unwrap()
                        .unwrap_or(0),
            q::<Option<String>>(c, &["GET", k[0]]).unwrap(),
            q::<Vec<String>>(c, &["HGETALL", k[1]]).unwrap(),
            q::<Vec<String>>(c, &["LRANGE", k[2], "0", "-1"]).unwrap(),
            q::<Vec<String>>(c, &["ZRANGE", k[3], "0", "-1", "WITHSCORES"]).unwrap(),
            q::<i64>(c, &["TTL", k[2]]).unwrap() > 900,
        )
    };
    let before = snapshot(c);
    assert_eq!(before.0, 50 + 1000 * 50);
    assert_eq!(before.1.as_deref(), Some(stamp.as_str()));
    s.kill9();
    let s = Server::start_raw(&args4, None);
    let c = &mut s.client();
    assert_eq!(snapshot(c), before);
    drop(s);
    let s = Server::start_raw(&["--dir", dir.path(), "--shards", "3"], None);
    let c = &mut s.client();
    assert_eq!(snapshot(c), before);
}

#[test]
fn watch_multi_and_scripts() {
    let s = start();
    let keys = one_per_shard("w");
    let (a, b) = (&mut s.client(), &mut s.client());
    q::<()>(a, &["WATCH", &keys[0]]).unwrap();
    let _: String = eval(
        b,
        "return redis.call('set', KEYS[1], 'by script')",
        &[&keys[0]],
        &[],
    )
    .unwrap();
    q::<()>(a, &["MULTI"]).unwrap();
    q::<()>(a, &["SET", &keys[0], "by exec"]).unwrap();
    let r: Value = q(a, &["EXEC"]).unwrap();
    assert_eq!(r, Value::Nil, "the script's write aborts the EXEC");
    assert_eq!(q::<String>(a, &["GET", &keys[0]]).unwrap(), "by script");
    // A cross-shard script inside MULTI runs with the rest, atomically.
    q::<()>(a, &["SET", &keys[1], "10"]).unwrap();
    q::<()>(a, &["MULTI"]).unwrap();
    q::<()>(a, &["INCR", &keys[1]]).unwrap();
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(TRANSFER).arg(2).arg(&keys[1]).arg(&keys[2]).arg(11);
    let queued: String = cmd.query(a).unwrap();
    assert_eq!(queued, "QUEUED");
    let r: Vec<i64> = q(a, &["EXEC"]).unwrap();
    assert_eq!(r, vec![11, 1]);
    assert_eq!(q::<i64>(a, &["GET", &keys[2]]).unwrap(), 11);
}

/// A script past lua-time-limit makes its shard answer BUSY to requests from other
/// shards; SCRIPT KILL from another shard stops a read-only one; one that wrote is
/// UNKILLABLE; and the shard serves again afterwards.
#[test]
fn busy_scripts_answer_busy_and_script_kill_stops_them() {
    let s = Server::start(&[
        "--shards",
        "2",
        "--appendonly",
        "no",
        "--lua-time-limit",
        "100",
    ]);
    let key = keys_on("spin", 0, 2, 1)[0].clone();
    // Both connections on shard 1 (made before shard 0 gets busy), the key on shard 0.
    let mut runner = s.raw_on_shard(1, 2);
    let mut other = s.raw_on_shard(1, 2);
    runner.cmd(&[
        b"EVAL",
        b"local i = 0 while true do i = i + 1 end",
        b"1",
        key.as_bytes(),
    ]);
    // (A request sent to shard 0 before the limit would wait for the script: ask
    // FUNCTION KILL, answered here, until it says a script, not a function, is busy.)
    eventually("the script passes lua-time-limit", || {
        other.cmd(&[b"FUNCTION", b"KILL"]);
        let r = other.reply_str();
        assert!(r.starts_with("-NOTBUSY") || r.starts_with("-BUSY"), "{r}");
        r.starts_with("-BUSY Redis is busy running a script. You can only call SCRIPT KILL")
    });
    other.cmd(&[b"GET", key.as_bytes()]);
    assert_eq!(other.reply_str(), BUSY);
    // Transactions that need the busy shard's locks are refused at once too.
    let here = keys_on("spin-here", 1, 2, 1)[0].clone();
    other.cmd(&[b"MSETNX", key.as_bytes(), b"x", here.as_bytes(), b"y"]);
    assert_eq!(other.reply_str(), BUSY);
    let mut txn = common::encode(&[b"MULTI"]);
    txn.extend(common::encode(&[b"SET", key.as_bytes(), b"x"]));
    txn.extend(common::encode(&[b"SET", here.as_bytes(), b"y"]));
    txn.extend(common::encode(&[b"EXEC"]));
    other.send(&txn);
    assert_eq!(other.reply_str(), "+OK\r\n");
    assert_eq!(other.reply_str(), "+QUEUED\r\n");
    assert_eq!(other.reply_str(), "+QUEUED\r\n");
    assert_eq!(other.reply_str(), EXECABORT_BUSY);
    other.cmd(&[b"GET", here.as_bytes()]);
    assert_eq!(other.reply_str(), "$-1\r\n");
    other.cmd(&[b"SCRIPT", b"KILL"]);
    assert_eq!(other.reply_str(), "+OK\r\n");
    let killed = runner.reply_str();
    assert!(
        killed.starts_with("-ERR Script killed by user with SCRIPT KILL..."),
        "{killed}"
    );
    eventually("the shard serves again", || {
        other.cmd(&[b"SET", key.as_bytes(), b"after"]);
        other.reply_str() == "+OK\r\n"
    });
    other.cmd(&[b"SCRIPT", b"KILL"]);
    assert_eq!(
        other.reply_str(),
        "-NOTBUSY No scripts in execution right now.\r\n"
    );

    // A script that wrote cannot be killed; it finishes on its own.
    runner.cmd(&[
        b"EVAL",
        b"redis.call('set', KEYS[1], 'wrote') local t0 = tonumber(redis.call('time')[1]) \
          while tonumber(redis.call('time')[1]) - t0 < 2 do end return 'done'",
        b"1",
        key.as_bytes(),
    ]);
    eventually("busy again", || {
        other.cmd(&[b"FUNCTION", b"KILL"]);
        // (Redis's order: UNKILLABLE comes before the wrong-kind BUSY.)
        other.reply_str().starts_with("-UNKILLABLE")
    });
    other.cmd(&[b"SCRIPT", b"KILL"]);
    assert!(other
        .reply_str()
        .starts_with("-UNKILLABLE Sorry the script already executed write commands"));
    assert_eq!(runner.reply_str(), "$4\r\ndone\r\n");
    other.cmd(&[b"GET", key.as_bytes()]);
    assert_eq!(other.reply_str(), "$5\r\nwrote\r\n");
}

/// The busy shard's own connections: answered as Redis answers while a script is busy
/// (BUSY, the refusals that come first, SCRIPT KILL and UNKILLABLE), with MULTI and the
/// other commands Redis lets through waiting for the script, in order.
#[test]
fn the_busy_shards_own_connections_get_busy_and_reach_script_kill() {
    let s = Server::start(&[
        "--shards",
        "1",
        "--appendonly",
        "no",
        "--lua-time-limit",
        "100",
        "--lua-kill-after",
        "0",
    ]);
    let mut runner = s.raw();
    let mut other = s.raw();
    other.cmd(&[b"PING"]);
    assert_eq!(other.reply_str(), "+PONG\r\n");
    let mut probe = s.raw();
    let wait_busy = |probe: &mut common::Raw| {
        eventually("the script passes lua-time-limit", || {
            probe.cmd(&[b"PING"]);
            probe.reply_str() == BUSY
        })
    };
    runner.cmd(&[b"EVAL", b"local i = 0 while true do i = i + 1 end", b"0"]);
    wait_busy(&mut probe);
    other.cmd(&[b"PING"]);
    assert_eq!(other.reply_str(), BUSY);
    // Pipelined, byte at a time: every request answered, in order.
    let mut pipeline = common::encode(&[b"SET", b"k", b"v"]);
    pipeline.extend(common::encode(&[b"NOSUCH", b"x"]));
    pipeline.extend(common::encode(&[b"GET"]));
    pipeline.extend(common::encode(&[b"FUNCTION", b"KILL"]));
    for b in &pipeline {
        other.send(&[*b]);
    }
    assert_eq!(other.reply_str(), BUSY);
    assert!(other
        .reply_str()
        .starts_with("-ERR unknown command 'NOSUCH', with args beginning with: 'x'"));
    assert_eq!(
        other.reply_str(),
        "-ERR wrong number of arguments for 'get' command\r\n"
    );
    assert_eq!(other.reply_str(), BUSY);
    other.cmd(&[b"SCRIPT", b"KILL"]);
    assert_eq!(other.reply_str(), "+OK\r\n");
    let killed = runner.reply_str();
    assert!(
        killed.starts_with("-ERR Script killed by user with SCRIPT KILL..."),
        "{killed}"
    );
    other.cmd(&[b"PING"]);
    assert_eq!(other.reply_str(), "+PONG\r\n");

    // A script that wrote: UNKILLABLE. A transaction open meanwhile is doomed by its BUSY
    // command and EXEC drops it; MULTI and DISCARD run; SCRIPT is queued inside MULTI.
    other.cmd(&[b"MULTI"]);
    assert_eq!(other.reply_str(), "+OK\r\n");
    runner.cmd(&[
        b"EVAL",
        b"redis.call('set', KEYS[1], 'wrote') local t0 = tonumber(redis.call('time')[1]) \
          while tonumber(redis.call('time')[1]) - t0 < 4 do end return 'done'",
        b"1",
        b"w",
    ]);
    wait_busy(&mut probe);
    let mut pipeline = common::encode(&[b"SET", b"k", b"in-multi"]);
    pipeline.extend(common::encode(&[b"SCRIPT", b"KILL"]));
    pipeline.extend(common::encode(&[b"EXEC"]));
    pipeline.extend(common::encode(&[b"MULTI"]));
    pipeline.extend(common::encode(&[b"SHUTDOWN", b"NOSAVE"]));
    pipeline.extend(common::encode(&[b"DISCARD"]));
    pipeline.extend(common::encode(&[b"DISCARD"]));
    pipeline.extend(common::encode(&[b"GET", b"w"]));
    other.send(&pipeline);
    assert_eq!(other.reply_str(), BUSY);
    assert_eq!(other.reply_str(), "+QUEUED\r\n");
    assert_eq!(other.reply_str(), EXECABORT_BUSY);
    assert_eq!(other.reply_str(), "+OK\r\n");
    assert_eq!(
        other.reply_str(),
        "-ERR Command not allowed inside a transaction\r\n"
    );
    assert_eq!(other.reply_str(), "+OK\r\n");
    assert_eq!(other.reply_str(), "-ERR DISCARD without MULTI\r\n");
    assert_eq!(other.reply_str(), BUSY);
    probe.cmd(&[b"SCRIPT", b"KILL"]);
    assert!(probe
        .reply_str()
        .starts_with("-UNKILLABLE Sorry the script already executed write commands"));
    // WATCH needs the shard: it and what follows wait for the script, in order.
    other.cmd(&[b"WATCH", b"w"]);
    other.cmd(&[b"GET", b"w"]);
    assert_eq!(runner.reply_str(), "$4\r\ndone\r\n");
    assert_eq!(other.reply_str(), "+OK\r\n");
    assert_eq!(other.reply_str(), "$5\r\nwrote\r\n");
    other.cmd(&[b"GET", b"k"]);
    assert_eq!(other.reply_str(), "$-1\r\n");
}

/// Scripts that run under key locks across shards, or inside EXEC, also let their shard
/// answer its own connections while busy.
#[test]
fn cross_shard_and_queued_scripts_answer_busy_too() {
    let s = Server::start(&[
        "--shards",
        "2",
        "--appendonly",
        "no",
        "--lua-time-limit",
        "100",
    ]);
    let busy = BUSY;
    let a = keys_on("xs", 0, 2, 1)[0].clone();
    let b = keys_on("xs", 1, 2, 1)[0].clone();
    let mut runner = s.raw_on_shard(0, 2);
    let mut other = s.raw_on_shard(0, 2);
    // Across shards: the script runs on the connection's shard under the locks.
    runner.cmd(&[
        b"EVAL",
        b"while true do end",
        b"2",
        a.as_bytes(),
        b.as_bytes(),
    ]);
    eventually("busy", || {
        other.cmd(&[b"PING"]);
        other.reply_str() == busy
    });
    other.cmd(&[b"SCRIPT", b"KILL"]);
    assert_eq!(other.reply_str(), "+OK\r\n");
    assert!(runner.reply_str().starts_with("-ERR Script killed by user"));
    // Inside EXEC, every key on this shard.
    runner.cmd(&[b"MULTI"]);
    assert_eq!(runner.reply_str(), "+OK\r\n");
    runner.cmd(&[b"EVAL", b"while true do end", b"1", a.as_bytes()]);
    assert_eq!(runner.reply_str(), "+QUEUED\r\n");
    runner.cmd(&[b"EXEC"]);
    eventually("busy", || {
        other.cmd(&[b"PING"]);
        other.reply_str() == busy
    });
    other.cmd(&[b"SCRIPT", b"KILL"]);
    assert_eq!(other.reply_str(), "+OK\r\n");
    let r = runner.reply_str();
    assert!(r.starts_with("*1\r\n-ERR Script killed by user"), "{r}");
    other.cmd(&[b"PING"]);
    assert_eq!(other.reply_str(), "+PONG\r\n");
}

/// A runaway script that wrote cannot be killed, but SHUTDOWN NOSAVE stops it and the
/// server, from the busy shard's own connections or another shard's, as in Redis: plain
/// SHUTDOWN is refused with BUSY, and after a restart the log holds everything
/// acknowledged and nothing of the stopped script.
#[test]
fn shutdown_nosave_stops_a_runaway_script_that_wrote() {
    for from_own_shard in [true, false] {
        let dir = DataDir::new("nosave");
        let args = [
            "--dir",
            dir.path(),
            "--shards",
            "2",
            "--lua-time-limit",
            "100",
        ];
        let mut s = Server::start_raw(&args, None);
        let key = keys_on("runaway", 0, 2, 1)[0].clone();
        let mut own = s.raw_on_shard(0, 2);
        let mut remote = s.raw_on_shard(1, 2);
        let mut runner = s.raw_on_shard(1, 2);
        own.cmd(&[b"SET", b"acked", b"1"]);
        assert_eq!(own.reply_str(), "+OK\r\n");
        runner.cmd(&[
            b"EVAL",
            b"redis.call('set', KEYS[1], 'half') while true do end",
            b"1",
            key.as_bytes(),
        ]);
        eventually("the script passes lua-time-limit", || {
            remote.cmd(&[b"SCRIPT", b"KILL"]);
            let r = remote.reply_str();
            r.starts_with("-UNKILLABLE")
        });
        for c in [&mut own, &mut remote] {
            c.cmd(&[b"SHUTDOWN"]);
            assert_eq!(c.reply_str(), BUSY);
        }
        let by = if from_own_shard {
            &mut own
        } else {
            &mut remote
        };
        by.cmd(&[b"SHUTDOWN", b"NOSAVE"]);
        assert!(by.closed(), "the connection closes");
        let status = s.wait_exit().expect("the server exits");
        assert!(status.success(), "{status:?}");
        drop(s);
        let s = Server::start_raw(&args, None);
        let c = &mut s.client();
        assert_eq!(
            q::<Option<String>>(c, &["GET", "acked"])
                .unwrap()
                .as_deref(),
            Some("1")
        );
        assert_eq!(q::<Option<String>>(c, &["GET", &key]).unwrap(), None);
    }
}

/// On a single shard nobody can reach SCRIPT KILL while a script spins, so a read-only
/// script is stopped on its own after lua-kill-after; the shard then serves again.
#[test]
fn a_runaway_read_only_script_cannot_wedge_a_shard() {
    let s = Server::start(&[
        "--shards",
        "1",
        "--appendonly",
        "no",
        "--lua-time-limit",
        "50",
        "--lua-kill-after",
        "300",
    ]);
    let c = &mut s.client();
    let started = Instant::now();
    let e = err_of(c, &["EVAL", "while true do end", "0"]);
    assert!(e.starts_with("ERR Script killed: it ran for"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Nor can a coroutine run outside the hook.
    let e = err_of(
        c,
        &[
            "EVAL",
            "coroutine.wrap(function() while true do end end)()",
            "0",
        ],
    );
    assert!(e.contains("Script killed"), "{e}");
    // pcall cannot swallow the kill.
    let e = err_of(
        c,
        &[
            "EVAL",
            "while true do pcall(function() while true do end end) end",
            "0",
        ],
    );
    assert!(e.starts_with("ERR Script killed"), "{e}");
    assert_eq!(q::<String>(c, &["PING"]).unwrap(), "PONG");
}

// redis-py's Lock (redis/lock.py), its scripts as it sends them.
const LUA_RELEASE: &str = "local token = redis.call('get', KEYS[1])
if not token or token ~= ARGV[1] then
    return 0
end
redis.call('del', KEYS[1])
return 1";
const LUA_EXTEND: &str = "local token = redis.call('get', KEYS[1])
if not token or token ~= ARGV[1] then
    return 0
end
local expiration = redis.call('pttl', KEYS[1])
if not expiration then
    expiration = 0
end
if expiration < 0 then
    return 0
end

local newttl = ARGV[2]
if ARGV[3] == '0' then
    newttl = ARGV[2] + expiration
end
redis.call('pexpire', KEYS[1], newttl)
return 1";
const LUA_REACQUIRE: &str = "local token = redis.call('get', KEYS[1])
if not token or token ~= ARGV[1] then
    return 0
end
redis.call('pexpire', KEYS[1], ARGV[2])
return 1";

/// Threads contend for one lock with redis-py's protocol (SET NX PX, then EVALSHA of
/// its scripts, registered the way it registers them); the non-atomic read-modify-write
/// each holder does is never lost.
#[test]
fn redis_py_lock_scripts_under_contention() {
    let s = start();
    let url = s.url();
    let c = &mut s.client();
    let shas: Vec<String> = [LUA_RELEASE, LUA_EXTEND, LUA_REACQUIRE]
        .iter()
        .map(|body| q(c, &["SCRIPT", "LOAD", body]).unwrap())
        .collect();
    let workers: Vec<_> = (0..6)
        .map(|t| {
            let (url, shas) = (url.clone(), shas.clone());
            thread::spawn(move || {
                let c = &mut connect(&url);
                for i in 0..30 {
                    let token = format!("tok-{t}-{i}");
                    loop {
                        let got: Option<String> =
                            q(c, &["SET", "job-lock", &token, "NX", "PX", "5000"]).unwrap();
                        if got.is_some() {
                            break;
                        }
                        thread::yield_now();
                    }
                    let extended: i64 = redis::cmd("EVALSHA")
                        .arg(&shas[1])
                        .arg(1)
                        .arg("job-lock")
                        .arg(&token)
                        .arg(5000)
                        .arg("0")
                        .query(c)
                        .unwrap();
                    assert_eq!(extended, 1);
                    let reacquired: i64 = redis::cmd("EVALSHA")
                        .arg(&shas[2])
                        .arg(1)
                        .arg("job-lock")
                        .arg(&token)
                        .arg(5000)
                        .query(c)
                        .unwrap();
                    assert_eq!(reacquired, 1);
                    let n: i64 = q::<Option<i64>>(c, &["GET", "{job-lock}counter"])
                        .unwrap()
                        .unwrap_or(0);
                    q::<()>(c, &["SET", "{job-lock}counter", &(n + 1).to_string()]).unwrap();
                    let released: i64 = redis::cmd("EVALSHA")
                        .arg(&shas[0])
                        .arg(1)
                        .arg("job-lock")
                        .arg(&token)
                        .query(c)
                        .unwrap();
                    assert_eq!(released, 1);
                    // Releasing again, or with a wrong token, does nothing.
                    let again: i64 = redis::cmd("EVALSHA")
                        .arg(&shas[0])
                        .arg(1)
                        .arg("job-lock")
                        .arg(&token)
                        .query(c)
                        .unwrap();
                    assert_eq!(again, 0);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(q::<i64>(c, &["GET", "{job-lock}counter"]).unwrap(), 180);
    assert_eq!(q::<i64>(c, &["EXISTS", "job-lock"]).unwrap(), 0);
}

#[test]
fn function_libraries_load_everywhere_and_run_on_their_keys_shards() {
    let s = start();
    let keys = one_per_shard("fn");
    let c = &mut s.client();
    let lib = "#!lua name=counters\n\
        local function bump(keys, args)\n\
          return redis.call('incrby', keys[1], args[1])\n\
        end\n\
        redis.register_function('bump', bump)\n\
        redis.register_function{function_name='peek', callback=function(keys) return redis.call('get', keys[1]) end, flags={'no-writes'}, description='read one'}\n\
        redis.register_function('fail', function(keys) return redis.call('lpush', keys[1], 'x') end)\n";
    assert_eq!(
        q::<String>(c, &["FUNCTION", "LOAD", lib]).unwrap(),
        "counters"
    );
    let e = err_of(c, &["FUNCTION", "LOAD", lib]);
    assert_eq!(e, "ERR Library 'counters' already exists");
    for shard in 0..4u64 {
        let mut raw = s.raw_on_shard(shard, 4);
        for k in &keys {
            raw.cmd(&[b"FCALL", b"bump", b"1", k.as_bytes(), b"5"]);
            assert!(raw.reply_str().starts_with(':'));
            raw.cmd(&[b"FCALL_RO", b"peek", b"1", k.as_bytes()]);
            assert!(raw.reply_str().starts_with('$'));
        }
    }
    for k in &keys {
        assert_eq!(q::<i64>(c, &["GET", k]).unwrap(), 20);
    }
    let e = err_of(c, &["FCALL_RO", "bump", "1", &keys[0], "1"]);
    assert_eq!(
        e,
        "ERR Can not execute a script with write flag using *_ro command."
    );
    let e = err_of(c, &["FCALL", "fail", "1", &keys[0]]);
    assert!(e.starts_with("WRONGTYPE Operation against a key holding the wrong kind of value script: fail, on @user_function:"), "{e}");
    let list: Value = q(c, &["FUNCTION", "LIST", "WITHCODE"]).unwrap();
    let text = format!("{list:?}");
    assert!(
        text.contains("counters")
            && text.contains("peek")
            && text.contains("no-writes")
            && text.contains("read one"),
        "{text}"
    );
    // Replacing and deleting are seen by every shard at once.
    let lib2 =
        "#!lua name=counters\nredis.register_function('bump', function(keys) return 'v2' end)\n";
    q::<String>(c, &["FUNCTION", "LOAD", "REPLACE", lib2]).unwrap();
    for shard in 0..4u64 {
        let mut raw = s.raw_on_shard(shard, 4);
        raw.cmd(&[b"FCALL", b"bump", b"1", keys[3 - shard as usize].as_bytes()]);
        assert_eq!(raw.reply_str(), "$2\r\nv2\r\n");
    }
    q::<()>(c, &["FUNCTION", "DELETE", "counters"]).unwrap();
    for shard in 0..4u64 {
        let mut raw = s.raw_on_shard(shard, 4);
        raw.cmd(&[b"FCALL", b"bump", b"1", keys[shard as usize].as_bytes()]);
        assert_eq!(raw.reply_str(), "-ERR Function not found\r\n");
    }
}

/// Scripts pipelined on one connection, their keys on every shard, sent a byte at a
/// time, are answered in order and each sees the writes before it.
#[test]
fn pipelined_scripts_across_shards_keep_order_byte_at_a_time() {
    let s = start();
    let keys = one_per_shard("pipe");
    let mut raw = s.raw();
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    for i in 0..40 {
        let a = &keys[i % 4];
        let b = &keys[(i + 1) % 4];
        let n = i.to_string();
        wire.extend(encode(&[b"SET", a.as_bytes(), n.as_bytes()]));
        expected.push("+OK\r\n".to_string());
        wire.extend(encode(&[
            b"EVAL",
            b"redis.call('set', KEYS[2], redis.call('get', KEYS[1]) .. '!') return redis.call('get', KEYS[2])",
            b"2",
            a.as_bytes(),
            b.as_bytes(),
        ]));
        let v = format!("{i}!");
        expected.push(format!("${}\r\n{v}\r\n", v.len()));
        wire.extend(encode(&[b"GET", b.as_bytes()]));
        expected.push(format!("${}\r\n{v}\r\n", v.len()));
    }
    for byte in wire {
        raw.send(&[byte]);
    }
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(&raw.reply_str(), want, "reply {i}");
    }
}

/// Conversions both ways under RESP3: a script that chose RESP3 sees maps, doubles and
/// nulls as Redis 7 gives them, and returns RESP3 types to a RESP3 client.
#[test]
fn resp3_conversions() {
    let s = start();
    let c = &mut s.client_resp3();
    q::<()>(c, &["HSET", "h", "a", "1"]).unwrap();
    q::<()>(c, &["ZADD", "z", "1.5", "m"]).unwrap();
    let v: Value = eval(
        c,
        "redis.setresp(3) \
         local m = redis.call('hgetall', KEYS[1]) \
         local d = redis.call('zscore', KEYS[2], 'm') \
         local n = redis.call('get', KEYS[3]) \
         return {m.map.a, d.double * 2, n == nil, {map={x=1}}, {double=0.25}, true}",
        &["h", "z", "missing"],
        &[],
    )
    .unwrap();
    let Value::Array(items) = v else {
        panic!("{v:?}")
    };
    assert_eq!(items[0], Value::BulkString(b"1".to_vec()));
    assert_eq!(items[1], Value::Int(3));
    // A RESP3 null is nil in Lua; and the script chose RESP3, so `true` stays a boolean.
    assert_eq!(items[2], Value::Boolean(true));
    assert!(
        matches!(&items[3], Value::Map(m) if m.len() == 1),
        "{:?}",
        items[3]
    );
    assert_eq!(items[4], Value::Double(0.25));
    assert_eq!(items[5], Value::Boolean(true));
    // Without setresp(3), the same script sees RESP2 shapes.
    let flat: Vec<String> = eval(c, "return redis.call('hgetall', KEYS[1])", &["h"], &[]).unwrap();
    assert_eq!(flat, vec!["a", "1"]);
}

/// FUNCTION libraries are part of the data, as in Redis 7: a load that was acknowledged
/// is there after kill -9, a delete too; a damaged library file stops the start with a
/// message saying so.
#[test]
fn function_libraries_survive_restarts() {
    let dir = DataDir::new("script-functions");
    let args = ["--dir", dir.path(), "--shards", "2"];
    let mut s = Server::start_raw(&args, None);
    let c = &mut s.client();
    let lib = |name: &str, f: &str| {
        format!("#!lua name={name}\nredis.register_function('{f}', function(keys, args) return '{f}:' .. args[1] end)\n")
    };
    q::<String>(c, &["FUNCTION", "LOAD", &lib("keep", "hello")]).unwrap();
    q::<String>(c, &["FUNCTION", "LOAD", &lib("gone", "bye")]).unwrap();
    q::<()>(c, &["FUNCTION", "DELETE", "gone"]).unwrap();
    s.kill9();
    let mut s = Server::start_raw(&args, None);
    let c = &mut s.client();
    assert_eq!(
        q::<String>(c, &["FCALL", "hello", "0", "x"]).unwrap(),
        "hello:x"
    );
    assert_eq!(
        err_of(c, &["FCALL", "bye", "0", "x"]),
        "ERR Function not found"
    );
    q::<()>(c, &["FUNCTION", "FLUSH"]).unwrap();
    s.kill9();
    let mut s = Server::start_raw(&args, None);
    let c = &mut s.client();
    assert_eq!(
        err_of(c, &["FCALL", "hello", "0", "x"]),
        "ERR Function not found"
    );
    q::<String>(c, &["FUNCTION", "LOAD", &lib("keep", "hello")]).unwrap();
    s.kill9();
    let path = std::path::Path::new(dir.path()).join("functions.lib");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(bytes.len() - 5);
    std::fs::write(&path, bytes).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coreshard"))
        .args(["--port", "0", "--dir", dir.path()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("functions.lib is damaged"), "{err}");
}

/// KEYS and ARGV are the run's own: what one script does to them is gone in the next.
#[test]
fn keys_and_argv_do_not_leak_between_runs() {
    let s = start();
    let c = &mut s.client();
    let _: Value = eval(
        c,
        "KEYS[10] = 'stale' ARGV.x = 'stale' table.insert(ARGV, 'more') return 1",
        &["a"],
        &["b"],
    )
    .unwrap();
    let seen: Vec<String> = eval(
        c,
        "return {tostring(KEYS[10]), tostring(ARGV.x), tostring(#KEYS), tostring(#ARGV), tostring(ARGV[2])}",
        &["a"],
        &["b"],
    )
    .unwrap();
    assert_eq!(seen, vec!["nil", "nil", "1", "1", "nil"]);
    // The tables themselves can be returned.
    let keys: Vec<String> = eval(c, "return KEYS", &["k1", "k2"], &["a"]).unwrap();
    assert_eq!(keys, vec!["k1", "k2"]);
    let argv: Vec<String> = eval(c, "return ARGV", &[], &["x", "y"]).unwrap();
    assert_eq!(argv, vec!["x", "y"]);
}

/// What one script does to the sandbox does not reach the next one (nor another
/// client's): string methods, KEYS/ARGV metatables, environments, finalizers, bytecode,
/// the collector; broken scripts are not cached; FUNCTION LOAD input cannot panic a shard.
#[test]
fn the_sandbox_holds_between_scripts() {
    let s = Server::start(&["--shards", "1", "--appendonly", "no"]);
    let c = &mut s.client();
    // The string metatable is sealed, its methods read-only.
    let e = err_of(
        c,
        &[
            "EVAL",
            "getmetatable('').__index.upper = function() return 'pwned' end",
            "0",
        ],
    );
    assert!(e.starts_with("ERR user_script:1: attempt to index"), "{e}");
    let e = err_of(
        c,
        &["EVAL", "string.upper = function() return 'pwned' end", "0"],
    );
    assert!(e.contains("Attempt to modify a readonly table"), "{e}");
    assert_eq!(
        eval::<String>(c, "return ('abc'):upper()", &[], &[]).unwrap(),
        "ABC"
    );
    // KEYS/ARGV metatables do not outlive the run.
    let _: Value = eval(
        c,
        "setmetatable(ARGV, {__index = function() return 'evil' end}) return 1",
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(
        eval::<String>(c, "return ARGV[1] or 'nil'", &[], &[]).unwrap(),
        "nil"
    );
    // No environments to replace, no finalizers, no bytecode, no GC switch.
    for (code, missing) in [
        ("setfenv(0, {}) return 1", "setfenv"),
        ("return getfenv(0)", "getfenv"),
        ("return newproxy(true)", "newproxy"),
    ] {
        let e = err_of(c, &["EVAL", code, "0"]);
        assert!(
            e.contains(&format!(
                "Script attempted to access nonexistent global variable '{missing}'"
            )),
            "{e}"
        );
    }
    // string.dump is there (as in Redis), but what it makes cannot be loaded back.
    let e = err_of(
        c,
        &[
            "EVAL",
            "return loadstring(string.dump(function() return 1 end))()",
            "0",
        ],
    );
    assert!(e.contains("attempt to call a nil value"), "{e}");
    let e = err_of(c, &["EVAL", "\x1bLuaQ\x00\x01\x04\x08\x04\x08\x00", "0"]);
    assert!(e.starts_with("ERR Error compiling script"), "{e}");
    assert!(err_of(c, &["EVAL", "collectgarbage('stop')", "0"]).contains("not allowed"));
    assert_eq!(
        eval::<i64>(c, "return collectgarbage('count') > 0 and 1 or 0", &[], &[]).unwrap(),
        1
    );
    // Globals are still there for rawget and pairs.
    assert_eq!(
        eval::<String>(c, "return type(rawget(_G, 'redis'))", &[], &[]).unwrap(),
        "table"
    );
    assert_eq!(
        eval::<i64>(
            c,
            "for k in pairs(_G) do if k == 'cjson' then return 1 end end return 0",
            &[],
            &[]
        )
        .unwrap(),
        1
    );
    // A script that does not compile is not cached.
    let e = err_of(c, &["EVAL", "return 1 +", "0"]);
    assert!(e.starts_with("ERR Error compiling script"), "{e}");
    let sha: String = eval(c, "return redis.sha1hex(ARGV[1])", &[], &["return 1 +"]).unwrap();
    assert_eq!(
        q::<Vec<i64>>(c, &["SCRIPT", "EXISTS", &sha]).unwrap(),
        vec![0]
    );
    assert!(err_of(c, &["EVALSHA", &sha, "0"]).starts_with("NOSCRIPT"));
    // FUNCTION LOAD: a non-ASCII shebang is an error, not a panic; a library whose code
    // never ends is stopped.
    let e = err_of(
        c,
        &[
            "FUNCTION",
            "LOAD",
            "#!lua nam\u{e9}=x\nredis.register_function('f', function() return 1 end)",
        ],
    );
    assert!(e.starts_with("ERR Invalid metadata value given"), "{e}");
    let started = Instant::now();
    let e = err_of(
        c,
        &["FUNCTION", "LOAD", "#!lua name=spin\nwhile true do end"],
    );
    assert!(e.contains("FUNCTION LOAD timeout"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(q::<String>(c, &["PING"]).unwrap(), "PONG");
}

/// SCRIPT and FUNCTION may be queued in MULTI, as in Redis: a script loaded there is
/// usable by the EVALSHA after it in the same transaction.
#[test]
fn script_and_function_inside_multi() {
    let s = start();
    let c = &mut s.client();
    let key = &one_per_shard("m")[2];
    let sha: String = eval(
        c,
        "return redis.sha1hex(ARGV[1])",
        &[],
        &["return redis.call('incr', KEYS[1])"],
    )
    .unwrap();
    q::<()>(c, &["MULTI"]).unwrap();
    assert_eq!(
        q::<String>(c, &["SCRIPT", "LOAD", "return redis.call('incr', KEYS[1])"]).unwrap(),
        "QUEUED"
    );
    assert_eq!(
        q::<String>(c, &["EVALSHA", &sha, "1", key]).unwrap(),
        "QUEUED"
    );
    assert_eq!(
        q::<String>(
            c,
            &[
                "FUNCTION",
                "LOAD",
                "#!lua name=inmulti\nredis.register_function('f', function() return 'f' end)"
            ]
        )
        .unwrap(),
        "QUEUED"
    );
    let r: Vec<Value> = q(c, &["EXEC"]).unwrap();
    assert_eq!(r[0], Value::BulkString(sha.clone().into_bytes()));
    assert_eq!(r[1], Value::Int(1));
    assert_eq!(r[2], Value::BulkString(b"inmulti".to_vec()));
    assert_eq!(q::<String>(c, &["FCALL", "f", "0"]).unwrap(), "f");
}
