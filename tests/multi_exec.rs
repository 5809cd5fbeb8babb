//! MULTI/EXEC/WATCH and cross-shard transactions as pipelining clients use them: a
//! connection always reads its own writes, queued commands run atomically across shards,
//! WATCH aborts on any modification, and a contended key stalls nothing else.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{encode, keys_on, q, Server};

/// Two keys on different shards of a 4-shard server.
fn two_shards() -> (String, String) {
    (
        keys_on("a", 0, 4, 1)[0].clone(),
        keys_on("b", 3, 4, 1)[0].clone(),
    )
}

/// The next reply with line ends as `\n` and none at the end.
fn next(raw: &mut common::Raw) -> String {
    raw.reply_str().trim_end().replace("\r\n", "\n")
}

fn pipeline(cmds: &[&[&str]]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in cmds {
        let args: Vec<&[u8]> = c.iter().map(|a| a.as_bytes()).collect();
        out.extend(encode(&args));
    }
    out
}

/// Issue item: `DEL a b`, `MSETNX a 1 b 2`, `GET a`, `GET b` in one write answered nil for
/// one GET in 500 of 500 tries. Every command after a transaction must see its effect.
#[test]
fn pipelined_reads_see_a_cross_shard_transaction() {
    let server = Server::start(&["--shards", "4"]);
    let (a, b) = two_shards();
    let mut raw = server.raw();
    for i in 0..200 {
        let v1 = format!("x{i}");
        let v2 = format!("y{i}");
        raw.send(&pipeline(&[
            &["DEL", &a, &b],
            &["MSETNX", &a, &v1, &b, &v2],
            &["GET", &a],
            &["GET", &b],
            &["RENAME", &a, "{tmp}"],
            &["EXISTS", &a, "{tmp}"],
            &["RENAME", "{tmp}", &a],
            &["COPY", &a, &b, "REPLACE"],
            &["GET", &b],
            &["RENAMENX", &b, &a],
            &["APPEND", &b, "!"],
            &["GET", &b],
        ]));
        let existing = if i == 0 { ":0" } else { ":2" };
        assert_eq!(next(&mut raw), existing, "DEL (round {i})");
        assert_eq!(next(&mut raw), ":1", "MSETNX");
        assert_eq!(next(&mut raw), format!("${}\n{v1}", v1.len()));
        assert_eq!(next(&mut raw), format!("${}\n{v2}", v2.len()));
        assert_eq!(next(&mut raw), "+OK", "RENAME away");
        assert_eq!(next(&mut raw), ":1", "only the new name exists");
        assert_eq!(next(&mut raw), "+OK", "RENAME back");
        assert_eq!(next(&mut raw), ":1", "COPY");
        assert_eq!(next(&mut raw), format!("${}\n{v1}", v1.len()));
        assert_eq!(next(&mut raw), ":0", "RENAMENX onto an existing key");
        assert_eq!(next(&mut raw), format!(":{}", v1.len() + 1), "APPEND");
        let appended = format!("{v1}!");
        assert_eq!(
            next(&mut raw),
            format!("${}\n{appended}", appended.len()),
            "GET after APPEND"
        );
    }
}

/// redis-py's `pipeline()` and ioredis's `multi().exec()` send MULTI, the commands and
/// EXEC in one write; the `redis` crate's atomic pipeline does the same.
#[test]
fn atomic_pipelines_apply_once_across_shards() {
    let server = Server::start(&["--shards", "4"]);
    let (a, b) = two_shards();
    let c = &mut server.client();
    let (x, y, both): (i64, i64, Vec<Option<String>>) = redis::pipe()
        .atomic()
        .cmd("INCRBY")
        .arg(&a)
        .arg(5)
        .cmd("INCRBY")
        .arg(&b)
        .arg(7)
        .cmd("MGET")
        .arg(&a)
        .arg(&b)
        .query(c)
        .unwrap();
    assert_eq!((x, y), (5, 7));
    assert_eq!(both, vec![Some("5".into()), Some("7".into())]);
    // Nothing applied twice, nothing answered `unknown command`.
    assert_eq!(q::<i64>(c, &["GET", &a]).unwrap(), 5);
    assert_eq!(q::<i64>(c, &["GET", &b]).unwrap(), 7);
}

/// A queue-time error aborts the whole transaction; a runtime error is one reply of many.
#[test]
fn queue_errors_abort_and_runtime_errors_do_not() {
    let server = Server::start(&["--shards", "4"]);
    let (a, b) = two_shards();
    let mut raw = server.raw();
    raw.send(&pipeline(&[
        &["MULTI"],
        &["SET", &a, "1"],
        &["NOPE"],
        &["SET", &b, "1"],
        &["EXEC"],
        &["EXISTS", &a, &b],
    ]));
    assert_eq!(next(&mut raw), "+OK");
    assert_eq!(next(&mut raw), "+QUEUED");
    assert!(next(&mut raw).starts_with("-ERR unknown command 'NOPE'"));
    assert_eq!(next(&mut raw), "+QUEUED");
    assert_eq!(
        next(&mut raw),
        "-EXECABORT Transaction discarded because of previous errors."
    );
    assert_eq!(next(&mut raw), ":0", "nothing was applied");
    raw.send(&pipeline(&[
        &["SET", &a, "text"],
        &["MULTI"],
        &["INCR", &a],
        &["SET", &b, "2"],
        &["EXEC"],
    ]));
    assert_eq!(next(&mut raw), "+OK");
    assert_eq!(next(&mut raw), "+OK");
    assert_eq!(next(&mut raw), "+QUEUED");
    assert_eq!(next(&mut raw), "+QUEUED");
    assert_eq!(
        next(&mut raw),
        "*2\n-ERR value is not an integer or out of range\n+OK"
    );
    raw.send(&pipeline(&[
        &["EXEC"],
        &["DISCARD"],
        &["MULTI"],
        &["MULTI"],
    ]));
    assert_eq!(next(&mut raw), "-ERR EXEC without MULTI");
    assert_eq!(next(&mut raw), "-ERR DISCARD without MULTI");
    assert_eq!(next(&mut raw), "+OK");
    assert_eq!(next(&mut raw), "-ERR MULTI calls can not be nested");
    // A refused DISCARD (wrong arity) dooms the transaction like a refused queued
    // command; a refused EXEC ends it, as Redis's rejectCommand does.
    raw.send(&pipeline(&[
        &["SET", &a, "1"],
        &["DISCARD", "x"],
        &["EXEC"],
        &["MULTI"],
        &["SET", &a, "2"],
        &["EXEC", "x"],
        &["EXEC"],
        &["GET", &a],
    ]));
    assert_eq!(next(&mut raw), "+QUEUED");
    assert_eq!(
        next(&mut raw),
        "-ERR wrong number of arguments for 'discard' command"
    );
    assert_eq!(
        next(&mut raw),
        "-EXECABORT Transaction discarded because of previous errors."
    );
    assert_eq!(next(&mut raw), "+OK");
    assert_eq!(next(&mut raw), "+QUEUED");
    assert_eq!(
        next(&mut raw),
        "-EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' command"
    );
    assert_eq!(next(&mut raw), "-ERR EXEC without MULTI");
    assert_eq!(next(&mut raw), "$4\ntext", "neither transaction ran");
}

/// WATCH: a modification by another client, by the same client, by expiry or by
/// FLUSHALL makes EXEC answer a null array and apply nothing.
#[test]
fn watch_aborts_on_any_modification() {
    let server = Server::start(&["--shards", "4"]);
    let (a, b) = two_shards();
    let c = &mut server.client();
    let other = &mut server.client();
    let aborted = |c: &mut redis::Connection, watch: &str| -> Option<()> {
        let r: Option<(String,)> = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(format!("{watch}-done"))
            .arg(1)
            .query(c)
            .unwrap();
        r.map(|_| ())
    };
    // Untouched: EXEC runs.
    q::<()>(c, &["WATCH", &a, &b]).unwrap();
    assert!(aborted(c, &a).is_some());
    // Another client writes a watched key on another shard.
    q::<()>(c, &["WATCH", &a, &b]).unwrap();
    q::<()>(other, &["SET", &b, "x"]).unwrap();
    assert!(
        aborted(c, &b).is_none(),
        "EXEC after a write by another client"
    );
    // Expiry counts as a modification.
    q::<()>(other, &["SET", &a, "v", "PX", "50"]).unwrap();
    q::<()>(c, &["WATCH", &a]).unwrap();
    thread::sleep(Duration::from_millis(120));
    assert!(
        aborted(c, &a).is_none(),
        "EXEC after the watched key expired"
    );
    // FLUSHALL modifies every existing key.
    q::<()>(other, &["SET", &a, "v"]).unwrap();
    q::<()>(c, &["WATCH", &a]).unwrap();
    q::<()>(other, &["FLUSHALL"]).unwrap();
    assert!(aborted(c, &a).is_none(), "EXEC after FLUSHALL");
    // UNWATCH forgets.
    q::<()>(c, &["WATCH", &a]).unwrap();
    q::<()>(other, &["SET", &a, "again"]).unwrap();
    q::<()>(c, &["UNWATCH"]).unwrap();
    assert!(aborted(c, &a).is_some(), "EXEC after UNWATCH");
}

/// Many clients move units between accounts on different shards in transactions (read
/// with WATCH, write with MULTI/EXEC, retry on abort) while others read every account
/// in one transaction: every snapshot and the final state hold the same total.
#[test]
fn a_total_across_shards_stays_constant_under_concurrent_transactions() {
    let server = Server::start(&["--shards", "4"]);
    let accounts: Vec<String> = (0..4).flat_map(|s| keys_on("acct", s, 4, 2)).collect();
    let c = &mut server.client();
    for k in &accounts {
        q::<()>(c, &["SET", k, "100"]).unwrap();
    }
    let total = 100 * accounts.len() as i64;
    let url = server.url();
    let movers: Vec<_> = (0..4u64)
        .map(|w| {
            let (accounts, url) = (accounts.clone(), url.clone());
            thread::spawn(move || {
                let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                let mut x = (w + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let mut committed = 0;
                for _ in 0..150 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let from = &accounts[(x % accounts.len() as u64) as usize];
                    let to = &accounts[((x >> 17) % accounts.len() as u64) as usize];
                    if from == to {
                        continue;
                    }
                    q::<()>(&mut c, &["WATCH", from, to]).unwrap();
                    let balance: i64 = q(&mut c, &["GET", from]).unwrap();
                    let amount = (x >> 40) as i64 % 10;
                    if balance < amount {
                        q::<()>(&mut c, &["UNWATCH"]).unwrap();
                        continue;
                    }
                    let r: Option<(i64, i64)> = redis::pipe()
                        .atomic()
                        .cmd("DECRBY")
                        .arg(from)
                        .arg(amount)
                        .cmd("INCRBY")
                        .arg(to)
                        .arg(amount)
                        .query(&mut c)
                        .unwrap();
                    if let Some((left, _)) = r {
                        assert!(left >= 0, "WATCH kept the balance from going negative");
                        committed += 1;
                    }
                }
                committed
            })
        })
        .collect();
    let reader = {
        let (accounts, url) = (accounts.clone(), url.clone());
        thread::spawn(move || {
            let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
            for _ in 0..150 {
                let mut p = redis::pipe();
                p.atomic();
                for k in &accounts {
                    p.cmd("GET").arg(k);
                }
                let values: Vec<i64> = p.query(&mut c).unwrap();
                assert_eq!(values.iter().sum::<i64>(), total, "a consistent snapshot");
            }
        })
    };
    let committed: i32 = movers.into_iter().map(|m| m.join().unwrap()).sum();
    reader.join().unwrap();
    assert!(committed > 50, "most transfers committed ({committed})");
    let mut mget = vec!["MGET"];
    mget.extend(accounts.iter().map(|k| k.as_str()));
    let values: Vec<i64> = q(c, &mget).unwrap();
    assert_eq!(values.iter().sum::<i64>(), total);
}

/// FLUSHALL does not interleave with a transaction: the transaction's writes are either
/// all before the flush (all gone) or all after it (all present).
#[test]
fn flushall_never_splits_a_transaction() {
    let server = Server::start(&["--shards", "4"]);
    let keys: Vec<String> = (0..4).flat_map(|s| keys_on("fl", s, 4, 1)).collect();
    let url = server.url();
    let writer = {
        let (keys, url) = (keys.clone(), url.clone());
        thread::spawn(move || {
            let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
            for i in 0..300 {
                let mut p = redis::pipe();
                p.atomic();
                for k in &keys {
                    p.cmd("SET").arg(k).arg(i).ignore();
                }
                let () = p.query(&mut c).unwrap();
                // Read all keys atomically too (a plain MGET across shards is not).
                let mut read = redis::pipe();
                read.atomic().cmd("MGET");
                for k in &keys {
                    read.arg(k);
                }
                let (values,): (Vec<Option<i64>>,) = read.query(&mut c).unwrap();
                let present = values.iter().filter(|v| v.is_some()).count();
                assert!(
                    present == 0 || present == keys.len(),
                    "a flush split the transaction: {values:?}"
                );
            }
        })
    };
    let flusher = thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        for _ in 0..300 {
            q::<()>(&mut c, &["FLUSHALL"]).unwrap();
        }
    });
    writer.join().unwrap();
    flusher.join().unwrap();
}

/// A transaction waiting on a contended key holds back only work on that key: other keys
/// on the same shard keep answering.
#[test]
fn a_contended_key_does_not_stall_its_shard() {
    let server = Server::start(&["--shards", "4"]);
    let hot = keys_on("hot", 1, 4, 1)[0].clone();
    let far = keys_on("far", 2, 4, 1)[0].clone();
    let cold = keys_on("cold", 1, 4, 1)[0].clone();
    let url = server.url();
    let stop = Instant::now() + Duration::from_millis(1500);
    let hammer: Vec<_> = (0..4)
        .map(|_| {
            let (hot, far, url) = (hot.clone(), far.clone(), url.clone());
            thread::spawn(move || {
                let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                while Instant::now() < stop {
                    let _: () = redis::pipe()
                        .atomic()
                        .cmd("INCR")
                        .arg(&hot)
                        .ignore()
                        .cmd("INCR")
                        .arg(&far)
                        .ignore()
                        .query(&mut c)
                        .unwrap();
                }
            })
        })
        .collect();
    let c = &mut server.client();
    let mut worst = Duration::ZERO;
    while Instant::now() < stop {
        let t = Instant::now();
        q::<()>(c, &["SET", &cold, "1"]).unwrap();
        worst = worst.max(t.elapsed());
    }
    for h in hammer {
        h.join().unwrap();
    }
    assert!(worst < Duration::from_secs(1), "cold key waited {worst:?}");
    let hot_n: i64 = q(c, &["GET", &hot]).unwrap();
    let far_n: i64 = q(c, &["GET", &far]).unwrap();
    assert_eq!(hot_n, far_n, "each transaction applied both increments");
}

/// A WATCH that answers through the shard's own mailbox (a reply was still owed) holds the
/// pipeline too: the EXEC behind it sees the watch, and the pipeline reads its own writes.
#[test]
fn a_watch_behind_an_owed_reply_is_held_like_a_remote_one() {
    let server = Server::start(&["--shards", "2"]);
    // A connection on shard 0 (client ids go round the shards).
    let mut raw = server.raw_on_shard(0, 2);
    let remote = keys_on("r", 1, 2, 2);
    let local = keys_on("l", 0, 2, 2);
    raw.send(&pipeline(&[
        &["GET", &remote[0]],
        &["WATCH", &local[0]],
        &["MULTI"],
        &["SET", &remote[1], "new"],
        &["SET", &local[1], "new"],
        &["EXEC"],
        &["GET", &remote[1]],
        &["CLIENT", "INFO"],
    ]));
    assert_eq!(next(&mut raw), "$-1");
    assert_eq!(next(&mut raw), "+OK");
    assert_eq!(next(&mut raw), "+OK");
    assert_eq!(next(&mut raw), "+QUEUED");
    assert_eq!(next(&mut raw), "+QUEUED");
    assert_eq!(next(&mut raw), "*2\n+OK\n+OK");
    assert_eq!(
        next(&mut raw),
        "$3\nnew",
        "the pipeline reads its own write"
    );
    let info = next(&mut raw);
    assert!(info.contains(" watch=0 "), "no stale watch: {info}");
}

/// Commands pipelined behind a transaction still run when the client half-closes right
/// after sending them (`cat cmds | nc -N`).
#[test]
fn commands_behind_a_transaction_run_after_the_client_half_closes() {
    let server = Server::start(&["--shards", "4"]);
    let (a, b) = two_shards();
    let mut raw = server.raw();
    raw.send(&pipeline(&[
        &["MULTI"],
        &["SET", &a, "1"],
        &["SET", &b, "1"],
        &["EXEC"],
        &["SET", "after1", "x"],
        &["INCR", "after2"],
    ]));
    raw.stream.shutdown(std::net::Shutdown::Write).unwrap();
    for want in ["+OK", "+QUEUED", "+QUEUED", "*2\n+OK\n+OK", "+OK", ":1"] {
        assert_eq!(next(&mut raw), want);
    }
    assert!(raw.closed());
}

/// Reads that run across shards (EXEC on key locks, STORE forms, COPY) count keyspace
/// hits and misses as on one shard and as Redis 7.0 counts them (RENAME's lookup is a
/// write: neither).
#[test]
fn cross_shard_reads_count_hits_and_misses() {
    let server = Server::start(&["--shards", "4", "--appendonly", "no"]);
    let c = &mut server.client();
    let on = |prefix: &str, shard: usize| common::keys_on(prefix, shard, 4, 1).remove(0);
    let (a, b, d, x, y, z, none) = (
        on("a", 0),
        on("b", 1),
        on("d", 2),
        on("x", 3),
        on("y", 0),
        on("z", 1),
        on("none", 2),
    );
    q::<()>(c, &["SET", &a, "1"]).unwrap();
    q::<()>(c, &["SET", &b, "1"]).unwrap();
    q::<i64>(c, &["SADD", &x, "1"]).unwrap();
    q::<i64>(c, &["SADD", &y, "1"]).unwrap();
    q::<()>(c, &["CONFIG", "RESETSTAT"]).unwrap();
    q::<i64>(c, &["COPY", &a, &d]).unwrap(); // hit
    q::<i64>(c, &["COPY", &none, &z]).unwrap(); // miss
    q::<i64>(c, &["SUNIONSTORE", &z, &x, &y, &none]).unwrap(); // 2 hits, 1 miss
    let _: (Option<String>, Option<String>, Option<String>) = redis::pipe()
        .atomic()
        .cmd("GET")
        .arg(&a)
        .cmd("GET")
        .arg(&b)
        .cmd("GET")
        .arg(&none)
        .query(c)
        .unwrap(); // 2 hits, 1 miss
    q::<()>(c, &["RENAME", &b, &z]).unwrap(); // neither
    let info: String = q(c, &["INFO", "stats"]).unwrap();
    assert!(info.contains("keyspace_hits:5\r\n"), "{info}");
    assert!(info.contains("keyspace_misses:3\r\n"), "{info}");
}
