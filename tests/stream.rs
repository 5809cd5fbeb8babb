//! Streams end to end on `--shards 4`: a message platform (producers, a consumer group, a
//! consumer that dies holding messages and a survivor taking them over with XAUTOCLAIM:
//! every message processed, each acknowledged exactly once), blocking XREAD/XREADGROUP
//! woken from other shards and connections, timeouts, disconnects of blocked consumers,
//! blocked consumers of one group sharing entries, the whole consumer-group state across a
//! kill -9, streams in cross-shard MULTI/EXEC and multi-key XREAD, streams under the
//! generic key commands, and large inputs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{err_of, eventually, keys_on, q, DataDir, Raw, Server, DEADLINE};
use redis::Value;

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

/// An entry as the `redis` crate reads it: its id and its flat `field value ...` list.
type Entry = (String, Vec<String>);
/// An XREAD / XREADGROUP reply: `(key, entries)` per stream that had something.
type Streams = Vec<(String, Vec<Entry>)>;
/// Entries with binary values, and an XREAD reply of them.
type BinEntry = (String, Vec<Vec<u8>>);
type BinStreams = Vec<(String, Vec<BinEntry>)>;

fn start() -> Server {
    Server::start(&["--shards", "4", "--appendonly", "no"])
}

fn info_field(c: &mut redis::Connection, name: &str) -> Option<i64> {
    let info: String = q(c, &["INFO", "clients"]).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
}

/// Wait until `clients` clients are blocked and, where the server reports it (coreshard's
/// `blocking_waits_registered`, one per shard of a client's keys), `waits` waits are
/// registered on the keys' shards: only then is a `$` resolved, so an XADD sent afterwards
/// is one the waiter must see.
fn wait_blocked(c: &mut redis::Connection, clients: i64, waits: Option<i64>, what: &str) {
    eventually(what, || {
        info_field(c, "blocked_clients") == Some(clients)
            && match (waits, info_field(c, "blocking_waits_registered")) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            }
    });
}

fn bulk(s: &str) -> String {
    format!("${}\r\n{s}\r\n", s.len())
}

/// One entry in RESP2: `*2 id *N field value ...`.
fn resp_entry(id: &str, fields: &[&str]) -> String {
    let mut out = format!("*2\r\n{}*{}\r\n", bulk(id), fields.len());
    for f in fields {
        out.push_str(&bulk(f));
    }
    out
}

/// A whole XREAD reply in RESP2 for one stream: `*1 *2 key *N entries`.
fn resp_read(key: &str, entries: &[String]) -> String {
    format!(
        "*1\r\n*2\r\n{}*{}\r\n{}",
        bulk(key),
        entries.len(),
        entries.concat()
    )
}

/// The text of a bulk-string reply read raw (`$N\r\ntext\r\n`).
fn bulk_text(raw: &mut Raw) -> String {
    let reply = raw.reply_str();
    let rest = reply
        .strip_prefix('$')
        .unwrap_or_else(|| panic!("not a bulk string: {reply:?}"));
    let (_, text) = rest.split_once("\r\n").unwrap();
    text.trim_end_matches("\r\n").to_string()
}

fn xadd(c: &mut redis::Connection, key: &str, id: &str, fields: &[&str]) -> String {
    let mut words = vec!["XADD", key, id];
    words.extend_from_slice(fields);
    q(c, &words).unwrap()
}

fn entry_ids(entries: &[Entry]) -> Vec<String> {
    entries.iter().map(|(id, _)| id.clone()).collect()
}

/// `ms-seq` as numbers, to compare ids.
fn id_parts(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').expect("an id is ms-seq");
    (ms.parse().unwrap(), seq.parse().unwrap())
}

/// A flat `name value name value ...` reply (XINFO) as a map.
fn flat_map(v: Value) -> BTreeMap<String, Value> {
    let Value::Array(items) = v else {
        panic!("not an array: {v:?}")
    };
    items
        .chunks(2)
        .map(|kv| {
            (
                redis::from_redis_value_ref::<String>(&kv[0]).unwrap(),
                kv[1].clone(),
            )
        })
        .collect()
}

fn xinfo_groups(c: &mut redis::Connection, key: &str) -> Vec<BTreeMap<String, Value>> {
    let groups: Vec<Value> = q(c, &["XINFO", "GROUPS", key]).unwrap();
    groups.into_iter().map(flat_map).collect()
}

fn text(v: &Value) -> String {
    redis::from_redis_value_ref(v).unwrap()
}

fn pending_count(c: &mut redis::Connection, key: &str, group: &str) -> i64 {
    let summary: Vec<Value> = q(c, &["XPENDING", key, group]).unwrap();
    redis::from_redis_value_ref(&summary[0]).unwrap()
}

/// XPENDING extended without the idle times: (id, consumer, deliveries).
fn pending_entries(
    c: &mut redis::Connection,
    key: &str,
    group: &str,
) -> Vec<(String, String, i64)> {
    let rows: Vec<(String, String, i64, i64)> =
        q(c, &["XPENDING", key, group, "-", "+", "1000"]).unwrap();
    rows.into_iter()
        .map(|(id, who, _idle, n)| (id, who, n))
        .collect()
}

#[derive(Default)]
struct Platform {
    /// Every message a consumer processed: (id, producer, seq).
    processed: Mutex<Vec<(String, usize, usize)>>,
    /// Sum of all XACK replies.
    acked: AtomicUsize,
    /// Entries handed out by `>` reads, to any consumer.
    delivered: AtomicUsize,
    /// The batch c2 read and never processed nor acknowledged.
    abandoned: Mutex<Vec<String>>,
    c2_dead: AtomicBool,
    stop: AtomicBool,
}

/// Process a batch (record each message) and acknowledge it with one XACK.
fn process(c: &mut redis::Connection, platform: &Platform, who: &str, entries: &[Entry]) {
    let mut batch = Vec::new();
    for (id, fields) in entries {
        assert_eq!(fields.len(), 4, "{who}: {id} {fields:?}");
        assert_eq!(
            (fields[0].as_str(), fields[2].as_str()),
            ("producer", "seq")
        );
        batch.push((
            id.clone(),
            fields[1].parse().unwrap(),
            fields[3].parse().unwrap(),
        ));
    }
    platform.processed.lock().unwrap().extend(batch);
    let acked: usize = redis::cmd("XACK")
        .arg("topic")
        .arg("g")
        .arg(entry_ids(entries))
        .query(c)
        .unwrap();
    assert_eq!(
        acked,
        entries.len(),
        "{who}: every id of the batch acknowledged once"
    );
    platform.acked.fetch_add(acked, Ordering::SeqCst);
}

/// Four producers, a group of three consumers; c2 dies holding a batch, c0 takes it over
/// with XAUTOCLAIM: every message processed, every id acknowledged exactly once.
#[test]
fn message_platform_scenario() {
    const PRODUCERS: usize = 4;
    const PER_PRODUCER: usize = 500;
    const TOTAL: usize = PRODUCERS * PER_PRODUCER;
    const C2_DIES_AFTER: usize = 50;
    let s = start();
    let c = &mut s.client();
    assert_eq!(
        q::<String>(c, &["XGROUP", "CREATE", "topic", "g", "$", "MKSTREAM"]).unwrap(),
        "OK"
    );
    let platform = Arc::new(Platform::default());
    let mut consumers = Vec::new();
    for i in 0..3 {
        let (url, platform) = (s.url(), Arc::clone(&platform));
        consumers.push(thread::spawn(move || {
            let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
            let name = format!("c{i}");
            let mut processed = 0;
            while !platform.stop.load(Ordering::SeqCst) {
                let got: Option<Streams> = q(
                    &mut conn,
                    &[
                        "XREADGROUP",
                        "GROUP",
                        "g",
                        &name,
                        "COUNT",
                        "10",
                        "BLOCK",
                        "100",
                        "STREAMS",
                        "topic",
                        ">",
                    ],
                )
                .unwrap();
                let Some(mut streams) = got else { continue };
                assert_eq!(streams.len(), 1, "{name}: one stream asked");
                let (key, entries) = streams.pop().unwrap();
                assert_eq!(key, "topic");
                assert!(
                    (1..=10).contains(&entries.len()),
                    "{name}: COUNT 10 gave {}",
                    entries.len()
                );
                if i == 2 && processed >= C2_DIES_AFTER {
                    // Crash: the batch is neither processed nor acknowledged, and the
                    // connection goes away.
                    platform
                        .abandoned
                        .lock()
                        .unwrap()
                        .extend(entry_ids(&entries));
                    platform
                        .delivered
                        .fetch_add(entries.len(), Ordering::SeqCst);
                    drop(conn);
                    platform.c2_dead.store(true, Ordering::SeqCst);
                    return;
                }
                process(&mut conn, &platform, &name, &entries);
                processed += entries.len();
                platform
                    .delivered
                    .fetch_add(entries.len(), Ordering::SeqCst);
            }
        }));
    }
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let (url, platform) = (s.url(), Arc::clone(&platform));
        producers.push(thread::spawn(move || {
            let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
            let mut sent = Vec::new();
            for n in 0..PER_PRODUCER {
                if n == PER_PRODUCER - 1 {
                    // c2 dies mid-stream: messages still arrive after its crash.
                    eventually("consumer c2 read its share and died", || {
                        platform.c2_dead.load(Ordering::SeqCst)
                    });
                }
                let id = xadd(
                    &mut conn,
                    "topic",
                    "*",
                    &["producer", &p.to_string(), "seq", &n.to_string()],
                );
                sent.push((id, p, n));
            }
            sent
        }));
    }
    let mut sent: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for p in producers {
        for (id, p, n) in p.join().unwrap() {
            assert!(sent.insert(id, (p, n)).is_none(), "XADD * ids are unique");
        }
    }
    eventually("every message handed out by a `>` read", || {
        platform.delivered.load(Ordering::SeqCst) == TOTAL
    });
    platform.stop.store(true, Ordering::SeqCst);
    for t in consumers {
        t.join().unwrap();
    }
    // c2's last batch is pending for c2, read once; nothing else is pending.
    let abandoned = platform.abandoned.lock().unwrap().clone();
    assert!(!abandoned.is_empty());
    let want: Vec<(String, String, i64)> = abandoned
        .iter()
        .map(|id| (id.clone(), "c2".to_string(), 1))
        .collect();
    assert_eq!(pending_entries(c, "topic", "g"), want);
    // c0 takes over what has been idle for 50 ms.
    let mut claimed: Vec<String> = Vec::new();
    eventually("c0 took over c2's pending entries", || {
        let (cursor, entries, deleted): (String, Vec<Entry>, Vec<String>) = q(
            c,
            &[
                "XAUTOCLAIM",
                "topic",
                "g",
                "c0",
                "50",
                "0-0",
                "COUNT",
                "100",
            ],
        )
        .unwrap();
        assert_eq!(cursor, "0-0", "the whole PEL scanned");
        assert!(deleted.is_empty(), "nothing deleted: {deleted:?}");
        if !entries.is_empty() {
            claimed.extend(entry_ids(&entries));
            process(c, &platform, "c0 (takeover)", &entries);
        }
        pending_count(c, "topic", "g") == 0
    });
    claimed.sort_by_key(|id| id_parts(id));
    assert_eq!(claimed, abandoned, "exactly c2's batch was claimed");

    let processed = platform.processed.lock().unwrap().clone();
    let pairs: BTreeSet<(usize, usize)> = processed.iter().map(|(_, p, n)| (*p, *n)).collect();
    let every: BTreeSet<(usize, usize)> = (0..PRODUCERS)
        .flat_map(|p| (0..PER_PRODUCER).map(move |n| (p, n)))
        .collect();
    assert_eq!(pairs, every, "every message processed at least once");
    assert_eq!(
        platform.acked.load(Ordering::SeqCst),
        TOTAL,
        "each id acknowledged exactly once"
    );
    for (id, p, n) in &processed {
        assert_eq!(sent.get(id), Some(&(*p, *n)), "{id} carries what was sent");
    }
    let summary: Value = q(c, &["XPENDING", "topic", "g"]).unwrap();
    assert_eq!(
        summary,
        Value::Array(vec![Value::Int(0), Value::Nil, Value::Nil, Value::Nil])
    );
    let all: Vec<Entry> = q(c, &["XRANGE", "topic", "-", "+"]).unwrap();
    let in_stream: BTreeSet<String> = entry_ids(&all).into_iter().collect();
    let seen: BTreeSet<String> = processed.iter().map(|(id, _, _)| id.clone()).collect();
    assert_eq!(all.len(), TOTAL);
    assert_eq!(seen, in_stream, "the processed ids are the stream's ids");
    assert_eq!(in_stream, sent.keys().cloned().collect::<BTreeSet<_>>());
    // A second acknowledgement of an id counts nothing.
    assert_eq!(q::<i64>(c, &["XACK", "topic", "g", &all[0].0]).unwrap(), 0);
    let groups = xinfo_groups(c, "topic");
    assert_eq!(groups.len(), 1);
    let g = &groups[0];
    assert_eq!(text(&g["name"]), "g");
    assert_eq!(g["consumers"], Value::Int(3));
    assert_eq!(g["pending"], Value::Int(0));
    assert_eq!(text(&g["last-delivered-id"]), all[TOTAL - 1].0);
    assert_eq!(g["entries-read"], Value::Int(TOTAL as i64));
    assert_eq!(g["lag"], Value::Int(0));
}

/// A blocked XREAD on `$` gets exactly the entry an XADD of another connection (on another
/// shard than the waiter's and the key's) appends; with keys on two shards, the XADD to
/// the second one wakes it with that stream only.
#[test]
fn blocking_xread_wakes_on_xadd_from_another_shard() {
    let s = start();
    let c = &mut s.client();
    let key = keys_on("wake", 1, 4, 1)[0].clone();
    xadd(c, &key, "1-1", &["old", "x"]);
    let mut waiter = s.raw_on_shard(2, 4);
    waiter.cmd(&[b"XREAD", b"BLOCK", b"0", b"STREAMS", key.as_bytes(), b"$"]);
    wait_blocked(c, 1, Some(1), "the XREAD waits");
    let mut producer = s.raw_on_shard(3, 4);
    producer.cmd(&[b"XADD", key.as_bytes(), b"*", b"f", b"v"]);
    let id = bulk_text(&mut producer);
    assert!(id_parts(&id) > (1, 1), "{id}");
    assert_eq!(
        waiter.reply_str(),
        resp_read(&key, &[resp_entry(&id, &["f", "v"])]),
        "only the new entry, not the one before `$`"
    );
    wait_blocked(c, 0, None, "the waiter was served");
    waiter.cmd(&[b"PING"]);
    assert_eq!(waiter.reply_str(), "+PONG\r\n");

    // Two streams on shards 1 and 2, one existing with an entry, one missing.
    let k1 = keys_on("multi", 1, 4, 1)[0].clone();
    let k2 = keys_on("multi", 2, 4, 1)[0].clone();
    xadd(c, &k1, "5-1", &["before", "1"]);
    waiter.cmd(&[
        b"XREAD",
        b"COUNT",
        b"5",
        b"BLOCK",
        b"0",
        b"STREAMS",
        k1.as_bytes(),
        k2.as_bytes(),
        b"$",
        b"$",
    ]);
    wait_blocked(c, 1, Some(2), "the XREAD waits on both shards");
    let id2 = xadd(c, &k2, "*", &["a", "1", "b", "2"]);
    assert_eq!(
        waiter.reply_str(),
        resp_read(&k2, &[resp_entry(&id2, &["a", "1", "b", "2"])])
    );
    wait_blocked(c, 0, Some(0), "nothing left waiting");
    // An XADD to k1 now wakes nobody and stays in the stream.
    xadd(c, &k1, "6-1", &["after", "1"]);
    assert_eq!(q::<i64>(c, &["XLEN", &k1]).unwrap(), 2);

    // A blocked XREAD with an explicit id is woken only by an entry past that id.
    waiter.cmd(&[b"XREAD", b"BLOCK", b"0", b"STREAMS", k1.as_bytes(), b"6-1"]);
    wait_blocked(c, 1, Some(1), "waits past 6-1");
    xadd(c, &k1, "7-0", &["n", "7"]);
    assert_eq!(
        waiter.reply_str(),
        resp_read(&k1, &[resp_entry("7-0", &["n", "7"])])
    );
}

/// XREAD / XREADGROUP with BLOCK time out with a null reply, not sooner than asked.
#[test]
fn blocking_xread_times_out() {
    let s = start();
    let c = &mut s.client();
    let mut r = s.raw();
    let timed = |r: &mut Raw, args: &[&[u8]], want: &str| {
        let t = Instant::now();
        r.cmd(args);
        assert_eq!(
            r.reply_str(),
            want,
            "{:?}",
            String::from_utf8_lossy(&args.concat())
        );
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(100) && took < Duration::from_secs(5),
            "{took:?}"
        );
    };
    timed(
        &mut r,
        &[b"XREAD", b"BLOCK", b"100", b"STREAMS", b"missing", b"$"],
        "*-1\r\n",
    );
    xadd(c, "st", "1-1", &["f", "v"]);
    timed(
        &mut r,
        &[b"XREAD", b"BLOCK", b"100", b"STREAMS", b"st", b"$"],
        "*-1\r\n",
    );
    timed(
        &mut r,
        &[
            b"XREAD", b"COUNT", b"3", b"BLOCK", b"100", b"STREAMS", b"missing", b"st", b"0", b"1-1",
        ],
        "*-1\r\n",
    );
    // Something to read: answered at once, BLOCK or not.
    r.cmd(&[b"XREAD", b"BLOCK", b"0", b"STREAMS", b"st", b"0"]);
    assert_eq!(
        r.reply_str(),
        resp_read("st", &[resp_entry("1-1", &["f", "v"])])
    );

    assert_eq!(
        q::<String>(c, &["XGROUP", "CREATE", "st", "g", "$"]).unwrap(),
        "OK"
    );
    timed(
        &mut r,
        &[
            b"XREADGROUP",
            b"GROUP",
            b"g",
            b"c1",
            b"BLOCK",
            b"100",
            b"STREAMS",
            b"st",
            b">",
        ],
        "*-1\r\n",
    );
    // Nothing delivered, nothing pending.
    assert_eq!(pending_count(c, "st", "g"), 0);

    // Through the `redis` crate: the null reply is Nil, None for an Option, an empty Vec.
    let v: Value = q(c, &["XREAD", "BLOCK", "100", "STREAMS", "st", "$"]).unwrap();
    assert_eq!(v, Value::Nil);
    let none: Option<Streams> = q(c, &["XREAD", "BLOCK", "100", "STREAMS", "st", "$"]).unwrap();
    assert_eq!(none, None);
    let empty: Streams = q(
        c,
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c1",
            "BLOCK",
            "100",
            "STREAMS",
            "st",
            ">",
        ],
    )
    .unwrap();
    assert!(empty.is_empty());

    // RESP3: the null is `_`.
    r.cmd(&[b"HELLO", b"3"]);
    let _ = r.reply();
    timed(
        &mut r,
        &[b"XREAD", b"BLOCK", b"100", b"STREAMS", b"st", b"$"],
        "_\r\n",
    );
    timed(
        &mut r,
        &[
            b"XREADGROUP",
            b"GROUP",
            b"g",
            b"c1",
            b"BLOCK",
            b"100",
            b"STREAMS",
            b"st",
            b">",
        ],
        "_\r\n",
    );

    // Errors come at once instead of a wait.
    assert_eq!(
        err_of(c, &["XREAD", "BLOCK", "-1", "STREAMS", "st", "$"]),
        "ERR timeout is negative"
    );
    assert_eq!(
        err_of(c, &["XREAD", "BLOCK", "soon", "STREAMS", "st", "$"]),
        "ERR timeout is not an integer or out of range"
    );
    assert_eq!(
        err_of(
            c,
            &[
                "XREADGROUP",
                "GROUP",
                "nogroup",
                "c1",
                "BLOCK",
                "0",
                "STREAMS",
                "st",
                ">"
            ]
        ),
        "NOGROUP No such key 'st' or consumer group 'nogroup' in XREADGROUP with GROUP option"
    );
    assert_eq!(
        err_of(
            c,
            &[
                "XREADGROUP",
                "GROUP",
                "g",
                "c1",
                "BLOCK",
                "0",
                "STREAMS",
                "missing",
                ">"
            ]
        ),
        "NOGROUP No such key 'missing' or consumer group 'g' in XREADGROUP with GROUP option"
    );
    assert_eq!(
        err_of(c, &["XREAD", "BLOCK", "0", "STREAMS", "st", ">"]),
        "ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option."
    );
    q::<()>(c, &["SET", "str", "v"]).unwrap();
    assert_eq!(
        err_of(c, &["XREAD", "BLOCK", "0", "STREAMS", "str", "$"]),
        WRONGTYPE
    );
    assert_eq!(info_field(c, "blocked_clients"), Some(0));
}

/// Two consumers blocked on one group; one disconnects: the next entry goes to the other
/// one and is pending for it alone.
#[test]
fn blocked_xreadgroup_disconnect_keeps_others_served() {
    let s = start();
    let c = &mut s.client();
    let key = keys_on("jobs", 3, 4, 1)[0].clone();
    assert_eq!(
        q::<String>(c, &["XGROUP", "CREATE", &key, "g", "$", "MKSTREAM"]).unwrap(),
        "OK"
    );
    let read = |who: &str| -> Vec<Vec<u8>> {
        [
            "XREADGROUP",
            "GROUP",
            "g",
            who,
            "BLOCK",
            "0",
            "STREAMS",
            &key,
            ">",
        ]
        .iter()
        .map(|w| w.as_bytes().to_vec())
        .collect()
    };
    let send = |r: &mut Raw, words: Vec<Vec<u8>>| {
        let refs: Vec<&[u8]> = words.iter().map(|w| w.as_slice()).collect();
        r.cmd(&refs);
    };
    let mut gone = s.raw_on_shard(1, 4);
    send(&mut gone, read("gone"));
    wait_blocked(c, 1, Some(1), "the first consumer waits");
    let mut stays = s.raw_on_shard(2, 4);
    send(&mut stays, read("stays"));
    wait_blocked(c, 2, Some(2), "both consumers wait");
    drop(gone);
    wait_blocked(c, 1, None, "the disconnected consumer no longer waits");
    let id = xadd(c, &key, "*", &["job", "1"]);
    assert_eq!(
        stays.reply_str(),
        resp_read(&key, &[resp_entry(&id, &["job", "1"])])
    );
    let summary: Value = q(c, &["XPENDING", &key, "g"]).unwrap();
    let b = |s: &str| Value::BulkString(s.as_bytes().to_vec());
    assert_eq!(
        summary,
        Value::Array(vec![
            Value::Int(1),
            b(&id),
            b(&id),
            Value::Array(vec![Value::Array(vec![b("stays"), b("1")])]),
        ])
    );
    assert_eq!(
        pending_entries(c, &key, "g"),
        vec![(id.clone(), "stays".to_string(), 1)]
    );
    // The consumer that disconnected before being served was never created.
    let consumers: Vec<Value> = q(c, &["XINFO", "CONSUMERS", &key, "g"]).unwrap();
    let names: Vec<String> = consumers
        .into_iter()
        .map(|v| text(&flat_map(v)["name"]))
        .collect();
    assert_eq!(names, vec!["stays"]);
    let g = &xinfo_groups(c, &key)[0];
    assert_eq!(g["consumers"], Value::Int(1));
    assert_eq!(text(&g["last-delivered-id"]), id);
    assert_eq!(g["entries-read"], Value::Int(1));
    assert_eq!(g["lag"], Value::Int(0));
    wait_blocked(c, 0, None, "nothing waits");
}

/// Two consumers of a group blocked at once, two entries added (in one MULTI/EXEC, then
/// pipelined): each entry goes to exactly one consumer, none is lost or doubled, and what
/// each consumer got is exactly what XPENDING says it holds.
#[test]
fn xreadgroup_blocked_consumers_share_entries() {
    let s = start();
    let c = &mut s.client();
    for (round, atomic) in [(0, true), (1, false)] {
        let key = keys_on(&format!("share{round}"), 2, 4, 1)[0].clone();
        assert_eq!(
            q::<String>(c, &["XGROUP", "CREATE", &key, "g", "$", "MKSTREAM"]).unwrap(),
            "OK"
        );
        let (tx, rx) = mpsc::channel::<(String, Vec<String>)>();
        let mut consumers = Vec::new();
        for i in 0..2 {
            let (url, key, tx) = (s.url(), key.clone(), tx.clone());
            let name = format!("c{i}");
            consumers.push(thread::spawn(move || {
                let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
                let got: Option<Streams> = q(
                    &mut conn,
                    &[
                        "XREADGROUP",
                        "GROUP",
                        "g",
                        &name,
                        "BLOCK",
                        "0",
                        "STREAMS",
                        &key,
                        ">",
                    ],
                )
                .unwrap();
                let mut streams = got.expect("BLOCK 0 never times out");
                assert_eq!(streams.len(), 1);
                let (k, entries) = streams.pop().unwrap();
                assert_eq!(k, key);
                tx.send((name, entry_ids(&entries))).unwrap();
            }));
            // Blocked in this order.
            wait_blocked(
                c,
                (i + 1) as i64,
                Some((i + 1) as i64),
                "the consumer waits",
            );
        }
        let mut added: Vec<String> = if atomic {
            redis::pipe()
                .atomic()
                .cmd("XADD")
                .arg(&key)
                .arg("*")
                .arg("n")
                .arg(1)
                .cmd("XADD")
                .arg(&key)
                .arg("*")
                .arg("n")
                .arg(2)
                .query(c)
                .unwrap()
        } else {
            redis::pipe()
                .cmd("XADD")
                .arg(&key)
                .arg("*")
                .arg("n")
                .arg(1)
                .cmd("XADD")
                .arg(&key)
                .arg("*")
                .arg("n")
                .arg(2)
                .query(c)
                .unwrap()
        };
        assert_eq!(added.len(), 2);
        let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
        loop {
            eventually("every entry added was delivered", || {
                pending_count(c, &key, "g") == added.len() as i64
            });
            let owners = pending_entries(c, &key, "g");
            let holders: BTreeSet<String> = owners.iter().map(|(_, who, _)| who.clone()).collect();
            while got.len() < holders.len() {
                let (name, ids) = rx
                    .recv_timeout(DEADLINE)
                    .expect("a served consumer replies");
                assert!(
                    got.insert(name.clone(), ids).is_none(),
                    "{name} served twice"
                );
            }
            for (who, ids) in &got {
                let held: Vec<String> = owners
                    .iter()
                    .filter(|(_, w, _)| w == who)
                    .map(|(id, _, n)| {
                        assert_eq!(*n, 1, "{id} delivered once");
                        id.clone()
                    })
                    .collect();
                assert_eq!(ids, &held, "round {round}: {who} got what it holds");
            }
            if got.len() == 2 {
                break;
            }
            // A consumer that got nothing still waits; one more entry is for it.
            assert!(added.len() < 4, "round {round}: a consumer is never served");
            wait_blocked(c, 1, None, "the consumer that got nothing still waits");
            added.push(xadd(c, &key, "*", &["n", &(added.len() + 1).to_string()]));
        }
        for t in consumers {
            t.join().unwrap();
        }
        let delivered: Vec<String> = got.values().flatten().cloned().collect();
        let unique: BTreeSet<&String> = delivered.iter().collect();
        assert_eq!(
            delivered.len(),
            added.len(),
            "round {round}: nothing doubled"
        );
        assert_eq!(
            unique,
            added.iter().collect::<BTreeSet<_>>(),
            "round {round}: nothing lost"
        );
        wait_blocked(c, 0, None, "nobody waits");
    }
}

/// Everything about a stream that must survive a restart (not idle times).
#[derive(Debug, PartialEq)]
struct StreamState {
    len: i64,
    entries: Vec<Entry>,
    info: Vec<(String, Value)>,
    groups: Vec<BTreeMap<String, Value>>,
    consumers: Vec<(String, Value)>,
    pending: Vec<(String, String, i64)>,
    summary: Value,
}

fn stream_state(c: &mut redis::Connection, key: &str) -> StreamState {
    let info = flat_map(q(c, &["XINFO", "STREAM", key]).unwrap());
    let info = [
        "length",
        "last-generated-id",
        "max-deleted-entry-id",
        "entries-added",
        "recorded-first-entry-id",
        "groups",
        "first-entry",
        "last-entry",
    ]
    .iter()
    .map(|f| {
        (
            f.to_string(),
            info.get(*f)
                .unwrap_or_else(|| panic!("XINFO STREAM {f}"))
                .clone(),
        )
    })
    .collect();
    let consumers: Vec<Value> = q(c, &["XINFO", "CONSUMERS", key, "g"]).unwrap();
    StreamState {
        len: q(c, &["XLEN", key]).unwrap(),
        entries: q(c, &["XRANGE", key, "-", "+"]).unwrap(),
        info,
        groups: xinfo_groups(c, key),
        consumers: consumers
            .into_iter()
            .map(|v| {
                let m = flat_map(v);
                (text(&m["name"]), m["pending"].clone())
            })
            .collect(),
        pending: pending_entries(c, key, "g"),
        summary: q(c, &["XPENDING", key, "g"]).unwrap(),
    }
}

/// The consumer-group state after deliveries, acks, a claim, a deletion, a trim and an
/// XSETID is exactly the same after a kill -9 (appendfsync always, the default).
#[test]
fn consumer_group_state_survives_kill9() {
    let dir = DataDir::new("stream-kill9");
    let args = ["--dir", dir.path(), "--shards", "4"];
    let key = keys_on("events", 2, 4, 1)[0].clone();
    let k = key.as_str();
    let mut s = Server::start_raw(&args, None);
    let c = &mut s.client();
    let ids: Vec<String> = (0..10)
        .map(|i| xadd(c, k, "*", &["n", &i.to_string()]))
        .collect();
    let explicit = xadd(c, "{x}side", "1000-7", &["f", "v"]);
    assert_eq!(explicit, "1000-7");
    assert_eq!(
        q::<String>(c, &["XGROUP", "CREATE", k, "g", "0"]).unwrap(),
        "OK"
    );
    assert_eq!(
        q::<String>(c, &["XGROUP", "CREATE", k, "late", "$"]).unwrap(),
        "OK"
    );
    let read: Streams = q(
        c,
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c1",
            "COUNT",
            "4",
            "STREAMS",
            k,
            ">",
        ],
    )
    .unwrap();
    assert_eq!(entry_ids(&read[0].1), ids[..4].to_vec());
    assert_eq!(q::<i64>(c, &["XACK", k, "g", &ids[0], &ids[1]]).unwrap(), 2);
    let claimed: Vec<Entry> = q(c, &["XCLAIM", k, "g", "c2", "0", &ids[2]]).unwrap();
    assert_eq!(entry_ids(&claimed), vec![ids[2].clone()]);
    assert_eq!(
        q::<i64>(c, &["XGROUP", "CREATECONSUMER", k, "g", "c3"]).unwrap(),
        1
    );
    assert_eq!(q::<i64>(c, &["XDEL", k, &ids[5]]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["XTRIM", k, "MAXLEN", "=", "8"]).unwrap(), 1);
    let (last_ms, _) = id_parts(&ids[9]);
    let set_id = format!("{}-5", last_ms + 1000);
    assert_eq!(
        q::<String>(
            c,
            &[
                "XSETID",
                k,
                &set_id,
                "ENTRIESADDED",
                "25",
                "MAXDELETEDID",
                &ids[7]
            ]
        )
        .unwrap(),
        "OK"
    );
    let before = stream_state(c, k);
    // The state is what the commands made it.
    assert_eq!(before.len, 8);
    assert_eq!(
        entry_ids(&before.entries),
        [&ids[1..5], &ids[6..]].concat(),
        "ids[0] trimmed, ids[5] deleted"
    );
    assert_eq!(
        before.pending,
        vec![
            (ids[2].clone(), "c2".to_string(), 2),
            (ids[3].clone(), "c1".to_string(), 1)
        ]
    );
    let info: BTreeMap<String, Value> = before.info.iter().cloned().collect();
    assert_eq!(text(&info["last-generated-id"]), set_id);
    assert_eq!(text(&info["max-deleted-entry-id"]), ids[7]);
    assert_eq!(info["entries-added"], Value::Int(25));
    assert_eq!(info["groups"], Value::Int(2));
    let g = before
        .groups
        .iter()
        .find(|g| text(&g["name"]) == "g")
        .unwrap();
    assert_eq!(text(&g["last-delivered-id"]), ids[3]);
    assert_eq!(g["pending"], Value::Int(2));
    assert_eq!(g["consumers"], Value::Int(3));
    assert_eq!(
        before.consumers,
        vec![
            ("c1".to_string(), Value::Int(1)),
            ("c2".to_string(), Value::Int(1)),
            ("c3".to_string(), Value::Int(0))
        ]
    );
    let side_before: Vec<Entry> = q(c, &["XRANGE", "{x}side", "-", "+"]).unwrap();

    s.kill9();
    let s = Server::start_raw(&args, None);
    let c = &mut s.client();
    // Stricter than redis-server 7.0.15, whose AOF replays XREADGROUP as XCLAIM ... LASTID
    // and so loses the group's entries-read (nil after a restart): here nothing changes.
    assert_eq!(stream_state(c, k), before, "the same after kill -9");
    assert_eq!(
        q::<Vec<Entry>>(c, &["XRANGE", "{x}side", "-", "+"]).unwrap(),
        side_before
    );
    // The ids `*` made are kept, and the next `*` id is past the one XSETID set.
    let next = xadd(c, k, "*", &["n", "10"]);
    assert!(id_parts(&next) > id_parts(&set_id), "{next} after {set_id}");
    assert_eq!(
        err_of(c, &["XADD", k, &set_id, "f", "v"]),
        "ERR The ID specified in XADD is equal or smaller than the target stream top item"
    );
    // The group goes on where it was: c1's history, then the next new entries.
    let history: Streams = q(c, &["XREADGROUP", "GROUP", "g", "c1", "STREAMS", k, "0"]).unwrap();
    assert_eq!(entry_ids(&history[0].1), vec![ids[3].clone()]);
    let fresh: Streams = q(c, &["XREADGROUP", "GROUP", "g", "c3", "STREAMS", k, ">"]).unwrap();
    assert_eq!(
        entry_ids(&fresh[0].1),
        [&ids[4..5], &ids[6..], std::slice::from_ref(&next)].concat()
    );
    let late: Streams = q(c, &["XREADGROUP", "GROUP", "late", "c9", "STREAMS", k, ">"]).unwrap();
    assert_eq!(entry_ids(&late[0].1), vec![next]);
}

/// Streams of different shards in one MULTI/EXEC, and a multi-key XREAD across shards
/// answering in argument order.
#[test]
fn streams_across_shards_in_transactions() {
    let s = start();
    let c = &mut s.client();
    let ka = keys_on("txa", 0, 4, 1)[0].clone();
    let kb = keys_on("txb", 3, 4, 1)[0].clone();
    let (a, b, ra, rb, la, lb): (String, String, Vec<Entry>, Vec<Entry>, i64, i64) = redis::pipe()
        .atomic()
        .cmd("XADD")
        .arg(&ka)
        .arg("1-1")
        .arg("f")
        .arg("a")
        .cmd("XADD")
        .arg(&kb)
        .arg("*")
        .arg("f")
        .arg("b")
        .cmd("XRANGE")
        .arg(&ka)
        .arg("-")
        .arg("+")
        .cmd("XRANGE")
        .arg(&kb)
        .arg("-")
        .arg("+")
        .cmd("XLEN")
        .arg(&ka)
        .cmd("XLEN")
        .arg(&kb)
        .query(c)
        .unwrap();
    assert_eq!(a, "1-1");
    assert_eq!(
        ra,
        vec![("1-1".to_string(), vec!["f".to_string(), "a".to_string()])]
    );
    assert_eq!(
        rb,
        vec![(b.clone(), vec!["f".to_string(), "b".to_string()])]
    );
    assert_eq!((la, lb), (1, 1));
    // An error inside EXEC fails that command only.
    let mut r = s.raw();
    let mut wire = common::encode(&[b"MULTI"]);
    wire.extend(common::encode(&[
        b"XADD",
        ka.as_bytes(),
        b"1-1",
        b"f",
        b"dup",
    ]));
    wire.extend(common::encode(&[
        b"XADD",
        kb.as_bytes(),
        b"9999999999999-0",
        b"f",
        b"c",
    ]));
    wire.extend(common::encode(&[b"EXEC"]));
    r.send(&wire);
    for _ in 0..3 {
        let _ = r.reply();
    }
    assert_eq!(
        r.reply_str(),
        "*2\r\n-ERR The ID specified in XADD is equal or smaller than the target stream top item\r\n$15\r\n9999999999999-0\r\n"
    );
    assert_eq!(q::<i64>(c, &["XLEN", &ka]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["XLEN", &kb]).unwrap(), 2);
    // A blocking read inside MULTI answers at once.
    let v: Vec<Value> = redis::pipe()
        .atomic()
        .cmd("XREAD")
        .arg("BLOCK")
        .arg(0)
        .arg("STREAMS")
        .arg(&ka)
        .arg(&kb)
        .arg("$")
        .arg("$")
        .query(c)
        .unwrap();
    assert_eq!(v, vec![Value::Nil]);
    // WATCH on a stream: an XADD of another client aborts the transaction.
    q::<()>(c, &["WATCH", &ka]).unwrap();
    xadd(&mut s.client(), &ka, "2-2", &["f", "other"]);
    let aborted: Option<(i64,)> = redis::pipe()
        .atomic()
        .cmd("XLEN")
        .arg(&ka)
        .query(c)
        .unwrap();
    assert_eq!(aborted, None);

    // XREAD over keys of three shards (and a missing one): in argument order.
    let k2 = keys_on("rd", 2, 4, 1)[0].clone();
    let k0 = keys_on("rd", 0, 4, 1)[0].clone();
    let k1 = keys_on("rd", 1, 4, 1)[0].clone();
    let missing = keys_on("rd-missing", 3, 4, 1)[0].clone();
    for (i, k) in [&k0, &k1, &k2].iter().enumerate() {
        for n in 1..=3 {
            xadd(
                c,
                k,
                &format!("{n}-{i}"),
                &["k", &i.to_string(), "n", &n.to_string()],
            );
        }
    }
    let got: Streams = q(
        c,
        &[
            "XREAD", "COUNT", "2", "STREAMS", &k2, &k0, &missing, &k1, "0", "1-0", "0", "2-1",
        ],
    )
    .unwrap();
    let want = |k: &str, i: usize, ns: &[u64]| {
        (
            k.to_string(),
            ns.iter()
                .map(|n| {
                    (
                        format!("{n}-{i}"),
                        vec![
                            "k".to_string(),
                            i.to_string(),
                            "n".to_string(),
                            n.to_string(),
                        ],
                    )
                })
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        got,
        vec![
            want(&k2, 2, &[1, 2]),
            want(&k0, 0, &[2, 3]),
            want(&k1, 1, &[3])
        ]
    );
    // In MULTI too, and with `$` (nothing new) the reply is nil.
    let (inside, nothing): (Streams, Option<Streams>) = redis::pipe()
        .atomic()
        .cmd("XREAD")
        .arg("STREAMS")
        .arg(&k1)
        .arg(&k0)
        .arg("0")
        .arg("3-0")
        .cmd("XREAD")
        .arg("STREAMS")
        .arg(&k0)
        .arg(&k1)
        .arg(&k2)
        .arg("$")
        .arg("$")
        .arg("$")
        .query(c)
        .unwrap();
    assert_eq!(inside, vec![want(&k1, 1, &[1, 2, 3])]);
    assert_eq!(nothing, None);
}

/// Streams under the generic key commands; other types' commands on a stream and stream
/// commands on other types answer WRONGTYPE.
#[test]
fn streams_and_wrongtype() {
    let s = start();
    let c = &mut s.client();
    let st = keys_on("st", 0, 4, 1)[0].clone();
    let moved = keys_on("moved", 3, 4, 1)[0].clone();
    let copy = keys_on("copy", 1, 4, 1)[0].clone();
    q::<()>(c, &["SET", "str", "v"]).unwrap();
    q::<i64>(c, &["RPUSH", "list", "a"]).unwrap();
    for words in [
        &["XADD", "str", "*", "f", "v"][..],
        &["XADD", "list", "*", "f", "v"],
        &["XLEN", "str"],
        &["XRANGE", "str", "-", "+"],
        &["XREVRANGE", "str", "+", "-"],
        &["XREAD", "STREAMS", "str", "0"],
        &["XGROUP", "CREATE", "str", "g", "$"],
        &["XINFO", "STREAM", "str"],
        &["XTRIM", "str", "MAXLEN", "0"],
        &["XDEL", "str", "1-1"],
    ] {
        assert_eq!(err_of(c, words), WRONGTYPE, "{words:?}");
    }
    xadd(c, &st, "1-1", &["f", "v"]);
    xadd(c, &st, "2-1", &["g", "w"]);
    for words in [
        &["GET", &st][..],
        &["LPUSH", &st, "x"],
        &["SADD", &st, "x"],
        &["HSET", &st, "f", "v"],
        &["ZADD", &st, "1", "m"],
        &["INCR", &st],
        &["APPEND", &st, "x"],
    ] {
        assert_eq!(err_of(c, words), WRONGTYPE, "{words:?}");
    }
    assert_eq!(q::<String>(c, &["TYPE", &st]).unwrap(), "stream");
    assert_eq!(
        q::<String>(c, &["OBJECT", "ENCODING", &st]).unwrap(),
        "stream"
    );
    assert_eq!(q::<i64>(c, &["EXISTS", &st]).unwrap(), 1);
    assert_eq!(
        q::<String>(c, &["XGROUP", "CREATE", &st, "g", "0"]).unwrap(),
        "OK"
    );
    let read: Streams = q(c, &["XREADGROUP", "GROUP", "g", "c1", "STREAMS", &st, ">"]).unwrap();
    assert_eq!(read[0].1.len(), 2);
    assert_eq!(q::<i64>(c, &["EXPIRE", &st, "100"]).unwrap(), 1);
    // RENAME to another shard: entries, groups and TTL move.
    assert_eq!(q::<String>(c, &["RENAME", &st, &moved]).unwrap(), "OK");
    assert_eq!(q::<i64>(c, &["EXISTS", &st]).unwrap(), 0);
    assert_eq!(q::<String>(c, &["TYPE", &moved]).unwrap(), "stream");
    let ttl: i64 = q(c, &["TTL", &moved]).unwrap();
    assert!((90..=100).contains(&ttl), "{ttl}");
    let entries: Vec<Entry> = q(c, &["XRANGE", &moved, "-", "+"]).unwrap();
    assert_eq!(entry_ids(&entries), vec!["1-1", "2-1"]);
    assert_eq!(pending_count(c, &moved, "g"), 2);
    // COPY to a third shard: a deep copy, groups and pending entries included.
    assert_eq!(q::<i64>(c, &["COPY", &moved, &copy]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["COPY", &moved, &copy]).unwrap(), 0, "exists");
    assert_eq!(
        q::<Vec<Entry>>(c, &["XRANGE", &copy, "-", "+"]).unwrap(),
        entries
    );
    assert_eq!(
        pending_entries(c, &copy, "g"),
        pending_entries(c, &moved, "g")
    );
    let ttl: i64 = q(c, &["TTL", &copy]).unwrap();
    assert!((90..=100).contains(&ttl), "COPY keeps the TTL: {ttl}");
    assert_eq!(q::<i64>(c, &["XACK", &copy, "g", "1-1", "2-1"]).unwrap(), 2);
    xadd(c, &copy, "3-1", &["h", "x"]);
    assert_eq!(q::<i64>(c, &["XDEL", &copy, "1-1"]).unwrap(), 1);
    assert_eq!(
        pending_count(c, &moved, "g"),
        2,
        "the original keeps its PEL"
    );
    assert_eq!(
        q::<Vec<Entry>>(c, &["XRANGE", &moved, "-", "+"]).unwrap(),
        entries,
        "the original keeps its entries"
    );
    assert_eq!(
        entry_ids(&q::<Vec<Entry>>(c, &["XRANGE", &copy, "-", "+"]).unwrap()),
        vec!["2-1", "3-1"]
    );
    assert_eq!(q::<i64>(c, &["COPY", &moved, &copy, "REPLACE"]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["XLEN", &copy]).unwrap(), 2);
    // Overwritten by SET, deleted by DEL.
    q::<()>(c, &["SET", &copy, "now a string"]).unwrap();
    assert_eq!(err_of(c, &["XLEN", &copy]), WRONGTYPE);
    assert_eq!(q::<i64>(c, &["DEL", &moved, &copy]).unwrap(), 2);
    assert_eq!(q::<i64>(c, &["EXISTS", &moved]).unwrap(), 0);
    assert_eq!(q::<i64>(c, &["XLEN", &moved]).unwrap(), 0);
    // An expired stream is gone.
    xadd(c, &st, "1-1", &["f", "v"]);
    assert_eq!(q::<i64>(c, &["PEXPIRE", &st, "1"]).unwrap(), 1);
    eventually("the stream expired", || {
        q::<i64>(c, &["EXISTS", &st]).unwrap() == 0
    });
    assert_eq!(q::<String>(c, &["TYPE", &st]).unwrap(), "none");
}

/// A 1 MB field value round-trips; a 100k-entry stream answers COUNT-bounded ranges and
/// trims in bulk.
#[test]
fn large_inputs() {
    let s = start();
    let c = &mut s.client();
    let big: Vec<u8> = (0..1 << 20).map(|i| b'a' + (i % 26) as u8).collect();
    let id: String = redis::cmd("XADD")
        .arg("big")
        .arg("*")
        .arg("small")
        .arg("x")
        .arg("blob")
        .arg(&big)
        .query(c)
        .unwrap();
    let got: Vec<BinEntry> = q(c, &["XRANGE", "big", "-", "+"]).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, id);
    assert_eq!(got[0].1.len(), 4);
    assert_eq!(got[0].1[1], b"x");
    assert!(got[0].1[3] == big, "the 1 MB value comes back intact");
    let read: BinStreams = q(c, &["XREAD", "STREAMS", "big", "0"]).unwrap();
    assert!(read[0].1[0].1[3] == big);

    const N: u64 = 100_000;
    let key = keys_on("long", 1, 4, 1)[0].clone();
    for chunk in (1..=N).collect::<Vec<_>>().chunks(2000) {
        let mut p = redis::pipe();
        for i in chunk {
            p.cmd("XADD")
                .arg(&key)
                .arg(format!("{i}-0"))
                .arg("i")
                .arg(*i)
                .ignore();
        }
        p.query::<()>(c).unwrap();
    }
    assert_eq!(q::<u64>(c, &["XLEN", &key]).unwrap(), N);
    let entry = |i: u64| (format!("{i}-0"), vec!["i".to_string(), i.to_string()]);
    let first: Vec<Entry> = q(c, &["XRANGE", &key, "-", "+", "COUNT", "10"]).unwrap();
    assert_eq!(first, (1..=10).map(entry).collect::<Vec<_>>());
    let last: Vec<Entry> = q(c, &["XREVRANGE", &key, "+", "-", "COUNT", "10"]).unwrap();
    assert_eq!(last, (N - 9..=N).rev().map(entry).collect::<Vec<_>>());
    let mid: Vec<Entry> = q(c, &["XRANGE", &key, "(50000-0", "+", "COUNT", "10"]).unwrap();
    assert_eq!(mid, (50_001..=50_010).map(entry).collect::<Vec<_>>());
    let read: Streams = q(c, &["XREAD", "COUNT", "10", "STREAMS", &key, "99995-0"]).unwrap();
    assert_eq!(read, vec![(key.clone(), (99_996..=N).map(entry).collect())]);
    assert_eq!(
        q::<u64>(c, &["XTRIM", &key, "MINID", "60001"]).unwrap(),
        60_000
    );
    assert_eq!(
        q::<u64>(c, &["XTRIM", &key, "MAXLEN", "=", "30000"]).unwrap(),
        10_000
    );
    assert_eq!(q::<u64>(c, &["XLEN", &key]).unwrap(), 30_000);
    let first: Vec<Entry> = q(c, &["XRANGE", &key, "-", "+", "COUNT", "10"]).unwrap();
    assert_eq!(first, (70_001..=70_010).map(entry).collect::<Vec<_>>());
}

/// The next pub/sub message's text, as the raw connection reads it.
fn next_event(ev: &mut Raw) -> (String, String) {
    let m = ev.reply_str();
    let parts: Vec<&str> = m.split("\r\n").collect();
    (parts[6].to_string(), parts[8].to_string())
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
    q::<String>(c, &["XADD", "s", "1-1", "f", "v"]).unwrap();
    q::<String>(c, &["XADD", "s", "MAXLEN", "1", "1-2", "f", "v"]).unwrap();
    q::<i64>(c, &["XDEL", "s", "9-9"]).unwrap(); // nothing deleted, no event
    q::<()>(c, &["XGROUP", "CREATE", "s", "g", "0"]).unwrap();
    let _: Value = q(c, &["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">"]).unwrap();
    q::<i64>(c, &["XACK", "s", "g", "1-2"]).unwrap(); // no event, as in Redis
    q::<i64>(c, &["XDEL", "s", "1-2"]).unwrap();
    let want = [
        "xadd",
        "xadd",
        "xtrim",
        "xgroup-create",
        "xgroup-createconsumer",
        "xdel",
    ];
    for w in want {
        let (chan, key) = next_event(&mut ev);
        assert_eq!(chan, format!("__keyevent@0__:{w}"));
        assert_eq!(key, "s");
    }
}

#[test]
fn blocking_xread_over_shards_answers_every_stream_with_entries_at_once() {
    let server = start();
    let c = &mut server.client();
    let a = keys_on("early-a", 1, 4, 1)[0].clone();
    let b = keys_on("early-b", 2, 4, 1)[0].clone();
    let none = keys_on("early-none", 3, 4, 1)[0].clone();
    q::<String>(c, &["XADD", &b, "1-1", "f", "b1"]).unwrap();
    q::<String>(c, &["XADD", &a, "1-1", "f", "a1"]).unwrap();
    q::<String>(c, &["XADD", &a, "1-2", "f", "a2"]).unwrap();
    // Waiting on three shards, two of which have entries: both come back, in key order,
    // as one XREAD without BLOCK would answer.
    let got: Streams = q(
        c,
        &[
            "XREAD", "BLOCK", "0", "STREAMS", &none, &b, &a, "0", "0", "1-1",
        ],
    )
    .unwrap();
    let want: Streams = vec![
        (
            b.clone(),
            vec![("1-1".into(), vec!["f".into(), "b1".into()])],
        ),
        (
            a.clone(),
            vec![("1-2".into(), vec!["f".into(), "a2".into()])],
        ),
    ];
    assert_eq!(got, want);
}

fn raw_cmd(r: &mut Raw, words: &[&str]) {
    let refs: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
    r.cmd(&refs);
}

#[test]
fn groups_made_with_mkstream_and_delivery_times_survive_kill9() {
    let dir = DataDir::new("stream-mkstream");
    let args = ["--dir", dir.path(), "--shards", "4"];
    let mut s = Server::start_raw(&args, None);
    let c = &mut s.client();
    q::<()>(c, &["XGROUP", "CREATE", "jobs", "g", "$", "MKSTREAM"]).unwrap();
    xadd(c, "jobs", "1-1", &["task", "a"]);
    let _: Value = q(
        c,
        &["XREADGROUP", "GROUP", "g", "w1", "STREAMS", "jobs", ">"],
    )
    .unwrap();
    q::<Value>(
        c,
        &["XCLAIM", "jobs", "g", "w2", "0", "1-1", "RETRYCOUNT", "-1"],
    )
    .unwrap();
    s.kill9();
    let s = Server::start_raw(&args, None);
    let c = &mut s.client();
    let groups = xinfo_groups(c, "jobs");
    assert_eq!(groups.len(), 1, "the group made with MKSTREAM is back");
    let pending: Vec<(String, String, i64, i64)> =
        q(c, &["XPENDING", "jobs", "g", "-", "+", "10"]).unwrap();
    assert_eq!(pending.len(), 1);
    let (id, owner, idle, count) = pending[0].clone();
    assert_eq!((id.as_str(), owner.as_str()), ("1-1", "w2"));
    // RETRYCOUNT -1 counts as not given: one more delivery.
    assert_eq!(count, 2);
    // Delivered moments ago, not in 1970.
    assert!(idle < 60_000, "idle {idle} ms after a restart");
    let claimed: (String, Vec<Value>, Vec<Value>) = q(
        c,
        &["XAUTOCLAIM", "jobs", "g", "w3", "60000", "0", "JUSTID"],
    )
    .unwrap();
    assert!(claimed.1.is_empty(), "nothing has been idle for a minute");
}

#[test]
fn blocking_group_reads_over_shards_check_every_key_first() {
    let server = start();
    let c = &mut server.client();
    let a = keys_on("gr-a", 1, 4, 1)[0].clone();
    let b = keys_on("gr-b", 2, 4, 1)[0].clone();
    xadd(c, &a, "1-1", &["f", "a1"]);
    xadd(c, &b, "1-1", &["f", "b1"]);
    q::<()>(c, &["XGROUP", "CREATE", &a, "g", "0"]).unwrap();
    // b has no group g: an error, and nothing delivered from a.
    let e = err_of(
        c,
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "BLOCK",
            "100",
            "STREAMS",
            &a,
            &b,
            ">",
            ">",
        ],
    );
    assert!(e.starts_with("NOGROUP"), "{e}");
    assert_eq!(pending_count(c, &a, "g"), 0);
    let e = err_of(
        c,
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "BLOCK",
            "100",
            "STREAMS",
            &a,
            &b,
            "$",
            ">",
        ],
    );
    assert!(e.contains("The $ ID is meaningless"), "{e}");
    // With both groups there, both streams are served at once.
    q::<()>(c, &["XGROUP", "CREATE", &b, "g", "0"]).unwrap();
    let got: Streams = q(
        c,
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "BLOCK",
            "0",
            "STREAMS",
            &a,
            &b,
            ">",
            ">",
        ],
    )
    .unwrap();
    assert_eq!(
        got.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        vec![a.clone(), b.clone()]
    );
    // Nothing new anywhere: it blocks, and an XADD on either shard serves it.
    let mut r = server.raw_on_shard(3, 4);
    raw_cmd(
        &mut r,
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "BLOCK",
            "0",
            "STREAMS",
            &a,
            &b,
            ">",
            ">",
        ],
    );
    wait_blocked(c, 1, None, "the group read waits");
    xadd(c, &b, "2-1", &["f", "b2"]);
    let reply = r.reply_str();
    assert!(reply.contains("2-1") && reply.contains(&b), "{reply}");
}

#[test]
fn blocked_group_reads_end_when_their_key_or_group_goes() {
    let server = start();
    let c = &mut server.client();
    q::<()>(c, &["XGROUP", "CREATE", "s1", "g", "$", "MKSTREAM"]).unwrap();
    q::<()>(c, &["XGROUP", "CREATE", "s2", "g", "$", "MKSTREAM"]).unwrap();
    let read = |key: &str| -> Vec<String> {
        [
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "BLOCK",
            "0",
            "STREAMS",
            key,
            ">",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let mut r1 = server.raw();
    let w1 = read("s1");
    let w1: Vec<&str> = w1.iter().map(|s| s.as_str()).collect();
    raw_cmd(&mut r1, &w1);
    wait_blocked(c, 1, None, "s1's reader waits");
    // SETID and CREATECONSUMER do not wake it (as in Redis).
    q::<()>(c, &["XGROUP", "SETID", "s1", "g", "0"]).unwrap();
    q::<i64>(c, &["XGROUP", "CREATECONSUMER", "s1", "g", "other"]).unwrap();
    wait_blocked(c, 1, None, "still waiting");
    q::<i64>(c, &["DEL", "s1"]).unwrap();
    assert_eq!(
        r1.reply_str(),
        "-UNBLOCKED the stream key no longer exists\r\n"
    );
    let mut r2 = server.raw();
    let w2 = read("s2");
    let w2: Vec<&str> = w2.iter().map(|s| s.as_str()).collect();
    raw_cmd(&mut r2, &w2);
    wait_blocked(c, 1, None, "s2's reader waits");
    q::<i64>(c, &["XGROUP", "DESTROY", "s2", "g"]).unwrap();
    assert_eq!(
        r2.reply_str(),
        "-NOGROUP the consumer group this client was blocked on no longer exists\r\n"
    );
}

#[test]
fn group_bookkeeping_does_not_abort_watchers() {
    let server = start();
    let c = &mut server.client();
    let other = &mut server.client();
    q::<()>(c, &["XGROUP", "CREATE", "w", "g", "0", "MKSTREAM"]).unwrap();
    xadd(c, "w", "1-1", &["f", "v"]);
    q::<()>(c, &["WATCH", "w"]).unwrap();
    q::<i64>(other, &["XGROUP", "CREATECONSUMER", "w", "g", "x"]).unwrap();
    q::<()>(other, &["XGROUP", "SETID", "w", "g", "0"]).unwrap();
    let _: Value = q(
        other,
        &["XREADGROUP", "GROUP", "g", "y", "STREAMS", "w", ">"],
    )
    .unwrap();
    q::<()>(c, &["MULTI"]).unwrap();
    q::<String>(c, &["XLEN", "w"]).unwrap();
    let done: Value = q(c, &["EXEC"]).unwrap();
    assert_eq!(done, Value::Array(vec![Value::Int(1)]));
}

#[test]
fn group_bookkeeping_inside_cross_shard_transactions_is_kept() {
    let server = start();
    let c = &mut server.client();
    let k = keys_on("txn-s", 1, 4, 1)[0].clone();
    let other = keys_on("txn-o", 2, 4, 1)[0].clone();
    q::<()>(c, &["XGROUP", "CREATE", &k, "g", "0", "MKSTREAM"]).unwrap();
    xadd(c, &k, "1-1", &["f", "v"]);
    xadd(c, &k, "1-2", &["f", "v"]);
    let _: Value = q(c, &["XREADGROUP", "GROUP", "g", "c", "STREAMS", &k, ">"]).unwrap();
    // Keys on two shards: EXEC runs on a copy of both and commits what changed. Acks,
    // claims and group reads change no WATCH version, yet they must be committed.
    q::<()>(c, &["MULTI"]).unwrap();
    q::<()>(c, &["XACK", &k, "g", "1-1"]).unwrap();
    q::<()>(c, &["XCLAIM", &k, "g", "d", "0", "1-2", "JUSTID"]).unwrap();
    q::<()>(c, &["SET", &other, "x"]).unwrap();
    let _: Value = q(c, &["EXEC"]).unwrap();
    let pending: Vec<(String, String, i64, i64)> =
        q(c, &["XPENDING", &k, "g", "-", "+", "10"]).unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!((pending[0].0.as_str(), pending[0].1.as_str()), ("1-2", "d"));
}

/// An XREADGROUP over streams on several shards runs on copies of them (like a
/// cross-shard EXEC): what it delivers must be committed even by a consumer that already
/// exists, so the same entries are not handed out again and can be acknowledged.
#[test]
fn group_reads_across_shards_keep_their_deliveries() {
    let server = start();
    let c = &mut server.client();
    let a = keys_on("gra", 0, 4, 1)[0].clone();
    let b = keys_on("grb", 1, 4, 1)[0].clone();
    let other = keys_on("gro", 2, 4, 1)[0].clone();
    for k in [&a, &b] {
        xadd(c, k, "1-1", &["f", "v"]);
        q::<()>(c, &["XGROUP", "CREATE", k, "g", "0"]).unwrap();
        q::<i64>(c, &["XGROUP", "CREATECONSUMER", k, "g", "c"]).unwrap();
    }
    let pending_count = |c: &mut redis::Connection, k: &str| -> i64 {
        let summary: Value = q(c, &["XPENDING", k, "g"]).unwrap();
        match summary {
            Value::Array(v) => match v.first() {
                Some(Value::Int(n)) => *n,
                other => panic!("XPENDING count: {other:?}"),
            },
            other => panic!("XPENDING: {other:?}"),
        }
    };
    let read: Streams = q(
        c,
        &["XREADGROUP", "GROUP", "g", "c", "STREAMS", &a, &b, ">", ">"],
    )
    .unwrap();
    assert_eq!(read.len(), 2, "{read:?}");
    assert_eq!((pending_count(c, &a), pending_count(c, &b)), (1, 1));
    let again: Value = q(
        c,
        &["XREADGROUP", "GROUP", "g", "c", "STREAMS", &a, &b, ">", ">"],
    )
    .unwrap();
    assert_eq!(again, Value::Nil, "delivered entries are not new any more");
    // The same with BLOCK when an entry is already there.
    xadd(c, &a, "1-2", &["f", "v"]);
    let read: Streams = q(
        c,
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "BLOCK",
            "100",
            "STREAMS",
            &a,
            &b,
            ">",
            ">",
        ],
    )
    .unwrap();
    assert_eq!(read.len(), 1, "{read:?}");
    assert_eq!(pending_count(c, &a), 2);
    // A history read inside a cross-shard transaction counts its deliveries.
    q::<()>(c, &["MULTI"]).unwrap();
    q::<()>(c, &["XREADGROUP", "GROUP", "g", "c", "STREAMS", &a, "0"]).unwrap();
    q::<()>(c, &["SET", &other, "x"]).unwrap();
    let _: Value = q(c, &["EXEC"]).unwrap();
    let pending: Vec<(String, String, i64, i64)> =
        q(c, &["XPENDING", &a, "g", "-", "+", "10"]).unwrap();
    let counts: Vec<i64> = pending.iter().map(|p| p.3).collect();
    assert_eq!(counts, vec![2, 2], "{pending:?}");
    let acked: i64 = q(c, &["XACK", &a, "g", "1-1", "1-2"]).unwrap();
    assert_eq!(acked, 2);
}

#[test]
fn a_wait_on_many_keys_costs_in_proportion_to_its_keys() {
    // One XREAD BLOCK naming 30,000 keys of one shard: registering it and waking it
    // must cost O(keys). Checking every key by re-reading the whole command (the
    // shape this guards against) takes minutes here and freezes the shard meanwhile.
    let server = start();
    let c = &mut server.client();
    let n = 30_000;
    let keys: Vec<String> = (0..n).map(|i| format!("{{wide}}k{i}")).collect();
    let mut words = vec!["XREAD", "BLOCK", "0", "STREAMS"];
    words.extend(keys.iter().map(|k| k.as_str()));
    words.extend(std::iter::repeat_n("$", n));
    let started = Instant::now();
    let mut r = server.raw();
    raw_cmd(&mut r, &words);
    wait_blocked(c, 1, None, "the wide reader waits");
    xadd(c, &keys[n - 1], "1-1", &["f", "v"]);
    let reply = r.reply_str();
    assert!(reply.contains("1-1"), "{reply}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn pipelined_stream_writes_across_shards_read_back_in_order_byte_at_a_time() {
    let server = start();
    let keys: Vec<String> = (0..4)
        .map(|s| keys_on("pipe", s, 4, 1)[0].clone())
        .collect();
    let mut wire = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let id = format!("{}-1", i + 1);
        wire.extend(common::encode(&[
            b"XADD",
            k.as_bytes(),
            id.as_bytes(),
            b"f",
            b"v",
        ]));
        wire.extend(common::encode(&[b"XLEN", k.as_bytes()]));
    }
    // A group read on the first shard's key right behind writes to the others.
    wire.extend(common::encode(&[
        b"XGROUP",
        b"CREATE",
        keys[0].as_bytes(),
        b"g",
        b"0",
    ]));
    wire.extend(common::encode(&[
        b"XREADGROUP",
        b"GROUP",
        b"g",
        b"c",
        b"STREAMS",
        keys[0].as_bytes(),
        b">",
    ]));
    let mut r = server.raw();
    for b in &wire {
        r.send(std::slice::from_ref(b));
    }
    for i in 0..4 {
        assert_eq!(r.reply_str(), bulk(&format!("{}-1", i + 1)));
        assert_eq!(r.reply_str(), ":1\r\n");
    }
    assert_eq!(r.reply_str(), "+OK\r\n");
    assert_eq!(
        r.reply_str(),
        resp_read(&keys[0], &[resp_entry("1-1", &["f", "v"])])
    );
}
