//! Blocking pops as queue consumers use them: first come first served per key, exactly
//! once under concurrent consumers on keys of several shards, CLIENT UNBLOCK, timeouts,
//! pipelining behind a blocked command, MULTI, errors, and no element lost or doubled
//! across a kill -9.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{eventually, keys_on, q, DataDir, Raw, Server};

fn blocked_clients(c: &mut redis::Connection) -> i64 {
    let info: String = q(c, &["INFO", "clients"]).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("blocked_clients:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1)
}

/// Waits registered on the keys' shards (a client's wait counts once per shard of its
/// keys): once it moved, a wait's place in its keys' queues is fixed.
fn registered_waits(c: &mut redis::Connection) -> i64 {
    let info: String = q(c, &["INFO", "clients"]).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("blocking_waits_registered:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1)
}

fn client_id(r: &mut Raw) -> String {
    r.cmd(&[b"CLIENT", b"ID"]);
    let id = r.reply_str();
    id.trim_start_matches(':').trim().to_string()
}

#[test]
fn waiters_of_a_key_are_served_first_come_first_served() {
    let s = Server::start(&["--shards", "4"]);
    let c = &mut s.client();
    let key = keys_on("fifo", 2, 4, 1)[0].clone();
    let mut waiters: Vec<Raw> = Vec::new();
    for i in 0..4 {
        // Connections land on any shard; each waits on a key of shard 2.
        let mut r = s.raw();
        r.cmd(&[b"BLPOP", key.as_bytes(), b"0"]);
        waiters.push(r);
        eventually("the waiter is queued", || registered_waits(c) == i + 1);
    }
    q::<i64>(c, &["RPUSH", &key, "e0", "e1", "e2"]).unwrap();
    for (i, w) in waiters.iter_mut().take(3).enumerate() {
        let want = format!("*2\r\n${}\r\n{key}\r\n$2\r\ne{i}\r\n", key.len());
        assert_eq!(w.reply_str(), want, "waiter {i} gets element {i}");
    }
    assert_eq!(blocked_clients(c), 1, "the fourth still waits");
    assert_eq!(q::<i64>(c, &["LLEN", &key]).unwrap(), 0);
    // CLIENT UNBLOCK: a timeout reply by default, an error with ERROR.
    let id = client_id(&mut s.raw());
    assert_eq!(
        q::<i64>(c, &["CLIENT", "UNBLOCK", &id]).unwrap(),
        0,
        "not blocked"
    );
    let mut last = waiters.pop().unwrap();
    let mut probe = s.raw();
    probe.cmd(&[b"CLIENT", b"LIST"]);
    let list = probe.reply_str();
    let blocked_id = list
        .lines()
        .find(|l| l.contains(" flags=b "))
        .and_then(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        .expect("the blocked client is listed")
        .to_string();
    assert_eq!(
        q::<i64>(c, &["CLIENT", "UNBLOCK", &blocked_id, "ERROR"]).unwrap(),
        1
    );
    assert_eq!(
        last.reply_str(),
        "-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n"
    );
    // It serves commands again.
    last.cmd(&[b"PING"]);
    assert_eq!(last.reply_str(), "+PONG\r\n");
    assert_eq!(blocked_clients(c), 0);
}

#[test]
fn a_blocked_client_answers_its_pipeline_in_order_and_multi_does_not_block() {
    let s = Server::start(&["--shards", "2"]);
    let c = &mut s.client();
    let mut r = s.raw();
    // Pipelined behind a blocking command: answered after it, in order.
    let mut wire = common::encode(&[b"BLPOP", b"pipe", b"0"]);
    wire.extend(common::encode(&[b"RPUSH", b"pipe", b"mine"]));
    wire.extend(common::encode(&[b"LLEN", b"pipe"]));
    r.send(&wire);
    eventually("blocked", || blocked_clients(c) == 1);
    q::<i64>(c, &["RPUSH", "pipe", "first"]).unwrap();
    assert_eq!(r.reply_str(), "*2\r\n$4\r\npipe\r\n$5\r\nfirst\r\n");
    assert_eq!(r.reply_str(), ":1\r\n");
    assert_eq!(r.reply_str(), ":1\r\n");
    // Inside MULTI a blocking pop answers at once, as Redis does.
    let (a, b): (Option<Vec<String>>, Option<String>) = redis::pipe()
        .atomic()
        .cmd("BLPOP")
        .arg("empty")
        .arg(0)
        .cmd("BRPOPLPUSH")
        .arg("empty")
        .arg("other")
        .arg(0)
        .query(c)
        .unwrap();
    assert_eq!((a, b), (None, None));
    // Timeouts, fractional ones too.
    let t = Instant::now();
    r.cmd(&[b"BRPOP", b"never", b"0.2"]);
    assert_eq!(r.reply_str(), "*-1\r\n");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(190) && took < Duration::from_secs(5),
        "{took:?}"
    );
    r.cmd(&[b"BLMOVE", b"never", b"x", b"LEFT", b"LEFT", b"0.05"]);
    assert_eq!(r.reply_str(), "$-1\r\n");
    // Errors, and WRONGTYPE at once instead of blocking.
    let err = |r: &mut Raw, args: &[&[u8]]| {
        r.cmd(args);
        r.reply_str()
    };
    assert_eq!(
        err(&mut r, &[b"BLPOP", b"k", b"-1"]),
        "-ERR timeout is negative\r\n"
    );
    assert_eq!(
        err(&mut r, &[b"BLPOP", b"k", b"soon"]),
        "-ERR timeout is not a float or out of range\r\n"
    );
    // Read as Redis 7.0 reads it (a long double): an infinity or an overflow is
    // "negative", and a tiny timeout is 1 ms, not forever.
    for t in [&b"inf"[..], b"1e16"] {
        assert_eq!(
            err(&mut r, &[b"BLPOP", b"k", t]),
            "-ERR timeout is negative\r\n"
        );
    }
    assert_eq!(err(&mut r, &[b"BLPOP", b"k", b"1e-400"]), "*-1\r\n");
    assert_eq!(
        err(&mut r, &[b"BLPOP", b"k", b"1\0"]),
        "-ERR timeout is not a float or out of range\r\n"
    );
    assert_eq!(
        err(&mut r, &[b"BLMPOP", b"0", b"0", b"k", b"LEFT"]),
        "-ERR numkeys should be greater than 0\r\n"
    );
    q::<()>(c, &["SET", "str", "v"]).unwrap();
    assert_eq!(
        err(&mut r, &[b"BLPOP", b"str", b"0"]),
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
    );
}

/// Consumers blocked on keys of all shards, producers pushing to them: every element is
/// popped exactly once, by BLPOP, BRPOP, BLMPOP and BLMOVE alike.
#[test]
fn concurrent_consumers_get_every_element_exactly_once() {
    let s = Server::start(&["--shards", "4"]);
    let keys: Vec<String> = (0..4).map(|sh| keys_on("q", sh, 4, 1)[0].clone()).collect();
    let done: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    const PER_PRODUCER: usize = 500;
    const PRODUCERS: usize = 3;
    let total = PER_PRODUCER * PRODUCERS;
    let mut consumers = Vec::new();
    for i in 0..8 {
        let (url, keys, done) = (s.url(), keys.clone(), Arc::clone(&done));
        consumers.push(thread::spawn(move || {
            let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
            let sink = keys_on(&format!("sink{i}"), i % 4, 4, 1)[0].clone();
            loop {
                // Each consumer watches two keys on different shards.
                let (a, b) = (&keys[i % 4], &keys[(i + 1) % 4]);
                let got: Option<String> = match i % 4 {
                    0 => q::<Option<(String, String)>>(&mut c, &["BLPOP", a, b, "2"])
                        .unwrap()
                        .map(|(_, v)| v),
                    1 => q::<Option<(String, String)>>(&mut c, &["BRPOP", a, b, "2"])
                        .unwrap()
                        .map(|(_, v)| v),
                    2 => q::<Option<(String, Vec<String>)>>(
                        &mut c,
                        &["BLMPOP", "2", "2", a, b, "LEFT", "COUNT", "3"],
                    )
                    .unwrap()
                    .map(|(_, vs)| vs.join(",")),
                    _ => {
                        let v: Option<String> =
                            q(&mut c, &["BLMOVE", a, &sink, "LEFT", "RIGHT", "2"]).unwrap();
                        if v.is_some() {
                            let back: Option<String> = q(&mut c, &["RPOP", &sink]).unwrap();
                            assert_eq!(back, v, "BLMOVE pushed what it returned");
                        }
                        v
                    }
                };
                match got {
                    Some(v) => done
                        .lock()
                        .unwrap()
                        .extend(v.split(',').map(str::to_string)),
                    None => {
                        if done.lock().unwrap().len() >= total {
                            return;
                        }
                    }
                }
            }
        }));
    }
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let (url, keys) = (s.url(), keys.clone());
        producers.push(thread::spawn(move || {
            let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
            for n in 0..PER_PRODUCER {
                let key = &keys[(n + p) % 4];
                q::<i64>(&mut c, &["RPUSH", key, &format!("p{p}:{n}")]).unwrap();
            }
        }));
    }
    for p in producers {
        p.join().unwrap();
    }
    for c in consumers {
        c.join().unwrap();
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for v in done.lock().unwrap().iter() {
        *seen.entry(v.clone()).or_default() += 1;
    }
    let doubled: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "popped twice: {doubled:?}");
    assert_eq!(seen.len(), total, "every element popped once");
    let c = &mut s.client();
    for k in &keys {
        assert_eq!(q::<i64>(c, &["LLEN", k]).unwrap(), 0);
    }
}

/// A consumer that disconnects while blocked takes nothing with it, and what consumers
/// popped stays popped across a kill -9 (the pops are journaled like LPOPs).
#[test]
fn disconnects_lose_nothing_and_pops_survive_a_crash() {
    let dir = DataDir::new("blocking");
    let mut s = Server::start_raw(&["--dir", dir.path(), "--shards", "3"], None);
    let c = &mut s.client();
    let key = keys_on("jobs", 1, 3, 1)[0].clone();
    let other = keys_on("jobs", 2, 3, 1)[0].clone();
    for (i, fresh) in keys_on("gone", 1, 3, 10).iter().enumerate() {
        let mut gone = s.raw();
        gone.cmd(&[b"BLPOP", other.as_bytes(), fresh.as_bytes(), b"0"]);
        eventually("blocked", || blocked_clients(c) == 1);
        drop(gone);
        eventually("unblocked by the disconnect", || blocked_clients(c) == 0);
        q::<i64>(c, &["RPUSH", fresh, "x"]).unwrap();
        // A waiter that is still registered would take it within this time.
        std::thread::sleep(Duration::from_millis(20 * (i as u64 % 3)));
        assert_eq!(q::<i64>(c, &["LLEN", fresh]).unwrap(), 1, "nothing taken");
    }
    for i in 0..20 {
        q::<i64>(c, &["RPUSH", &key, &format!("job{i}")]).unwrap();
    }
    let mut consumer = s.client();
    for i in 0..5 {
        let got: (String, String) = q(&mut consumer, &["BLPOP", &other, &key, "1"]).unwrap();
        assert_eq!(got, (key.clone(), format!("job{i}")));
    }
    s.kill9();
    let s = Server::start_raw(&["--dir", dir.path(), "--shards", "2"], None);
    let left: Vec<String> = q(&mut s.client(), &["LRANGE", &key, "0", "-1"]).unwrap();
    let want: Vec<String> = (5..20).map(|i| format!("job{i}")).collect();
    assert_eq!(left, want, "popped elements stay popped, the rest stays");
}

#[test]
fn sorted_set_pops_block_across_shards_too() {
    let s = Server::start(&["--shards", "4"]);
    let c = &mut s.client();
    let a = keys_on("za", 1, 4, 1)[0].clone();
    let b = keys_on("zb", 3, 4, 1)[0].clone();
    let mut r = s.raw();
    r.cmd(&[b"BZPOPMIN", a.as_bytes(), b.as_bytes(), b"0"]);
    eventually("blocked", || blocked_clients(c) == 1);
    q::<i64>(c, &["ZADD", &b, "2.5", "m2", "1.5", "m1"]).unwrap();
    let want = format!("*3\r\n${}\r\n{b}\r\n$2\r\nm1\r\n$3\r\n1.5\r\n", b.len());
    assert_eq!(r.reply_str(), want, "the lowest score, as a RESP2 bulk");
    r.cmd(&[
        b"BZMPOP",
        b"0",
        b"2",
        a.as_bytes(),
        b.as_bytes(),
        b"MAX",
        b"COUNT",
        b"5",
    ]);
    let want = format!(
        "*2\r\n${}\r\n{b}\r\n*1\r\n*2\r\n$2\r\nm2\r\n$3\r\n2.5\r\n",
        b.len()
    );
    assert_eq!(r.reply_str(), want);
    r.cmd(&[b"BZPOPMAX", a.as_bytes(), b"0.05"]);
    assert_eq!(r.reply_str(), "*-1\r\n");
    assert_eq!(
        q::<i64>(c, &["EXISTS", &b]).unwrap(),
        0,
        "emptied and removed"
    );
    // A list waiter on a sorted set answers WRONGTYPE rather than waiting forever.
    q::<i64>(c, &["ZADD", &a, "1", "x"]).unwrap();
    r.cmd(&[b"BLPOP", a.as_bytes(), b"0"]);
    assert_eq!(
        r.reply_str(),
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
    );
}

/// As in Redis, a push serves the clients blocked on the key before the next command runs:
/// an LPOP pipelined right behind the push finds nothing, whatever shards are involved.
#[test]
fn a_push_serves_waiters_before_the_next_command() {
    let s = Server::start(&["--shards", "3"]);
    let c = &mut s.client();
    for round in 0..6 {
        let key = keys_on("order", round % 3, 3, 1)[0].clone();
        let mut waiter = s.raw();
        waiter.cmd(&[b"BLPOP", key.as_bytes(), b"0"]);
        eventually("blocked", || blocked_clients(c) == 1);
        let mut pusher = s.raw();
        let mut wire = common::encode(&[b"RPUSH", key.as_bytes(), b"x"]);
        wire.extend(common::encode(&[b"LPOP", key.as_bytes()]));
        pusher.send(&wire);
        assert_eq!(pusher.reply_str(), ":1\r\n");
        assert_eq!(
            pusher.reply_str(),
            "$-1\r\n",
            "round {round}: the waiter got it first"
        );
        let want = format!("*2\r\n${}\r\n{key}\r\n$1\r\nx\r\n", key.len());
        assert_eq!(waiter.reply_str(), want);
    }
}

/// Many clients blocked on one key, then one push with an element for each: every one is
/// served, in order, exactly once (served iteratively; nothing recurses per waiter).
#[test]
fn one_push_serves_hundreds_of_waiters_in_order() {
    let s = Server::start(&["--shards", "2"]);
    let c = &mut s.client();
    const N: usize = 300;
    let key = keys_on("crowd", 1, 2, 1)[0].clone();
    let mut waiters = Vec::new();
    for i in 0..N {
        let mut r = s.raw();
        r.cmd(&[b"BLPOP", key.as_bytes(), b"0"]);
        waiters.push(r);
        // Queued in this order: each wait is registered before the next is sent.
        eventually("queued", || registered_waits(c) == i as i64 + 1);
    }
    assert_eq!(blocked_clients(c), N as i64);
    let elems: Vec<String> = (0..N).map(|i| format!("e{i}")).collect();
    let mut args = vec!["RPUSH", key.as_str()];
    args.extend(elems.iter().map(|e| e.as_str()));
    assert_eq!(q::<i64>(c, &args).unwrap(), N as i64);
    for (i, w) in waiters.iter_mut().enumerate() {
        let e = &elems[i];
        let want = format!("*2\r\n${}\r\n{key}\r\n${}\r\n{e}\r\n", key.len(), e.len());
        assert_eq!(w.reply_str(), want, "waiter {i}");
    }
    assert_eq!(q::<i64>(c, &["LLEN", &key]).unwrap(), 0);
    assert_eq!(blocked_clients(c), 0);
}

/// Consumers with tiny timeouts racing a producer: a pop served just as the wait times
/// out is delivered, never put back out of order or lost (FIFO holds end to end).
#[test]
fn timeouts_racing_pushes_keep_the_queue_in_order() {
    let s = Server::start(&["--shards", "2"]);
    let key = keys_on("race", 0, 2, 1)[0].clone();
    const N: usize = 1500;
    let producer = {
        let (url, key) = (s.url(), key.clone());
        thread::spawn(move || {
            let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
            for i in 0..N {
                q::<i64>(&mut c, &["RPUSH", &key, &i.to_string()]).unwrap();
            }
        })
    };
    let mut c = s.client();
    let mut got: Vec<usize> = Vec::new();
    let start = Instant::now();
    while got.len() < N && start.elapsed() < Duration::from_secs(60) {
        let r: Option<(String, String)> = q(&mut c, &["BLPOP", &key, "0.001"]).unwrap();
        if let Some((_, v)) = r {
            got.push(v.parse().unwrap());
        }
    }
    producer.join().unwrap();
    let first_wrong = got.iter().enumerate().find(|(i, v)| *i != **v);
    assert_eq!(
        (got.len(), first_wrong),
        (N, None),
        "every element once, in push order"
    );
}

/// A BLPOP over keys of two shards pops from the first key that has elements, as Redis
/// does, even while transactions hold that key's lock now and then: the first key's shard
/// refusing a claim under the lock must not let the later key's element go instead.
#[test]
fn a_locked_first_key_is_waited_for_not_skipped() {
    let server = Server::start(&["--shards", "4", "--appendonly", "no"]);
    let first = keys_on("first", 1, 4, 1).remove(0);
    let second = keys_on("second", 2, 4, 1).remove(0);
    let c = &mut server.client();
    const N: usize = 300;
    for key in [&first, &second] {
        let items: Vec<String> = (0..N + 10).map(|i| i.to_string()).collect();
        redis::cmd("RPUSH")
            .arg(key)
            .arg(items)
            .query::<i64>(c)
            .unwrap();
    }
    let stop = Arc::new(Mutex::new(false));
    let locker = {
        let (stop, first) = (Arc::clone(&stop), first.clone());
        let mut t = server.client();
        thread::spawn(move || {
            while !*stop.lock().unwrap() {
                let _: Vec<i64> = redis::pipe()
                    .atomic()
                    .cmd("LLEN")
                    .arg(&first)
                    .query(&mut t)
                    .unwrap();
            }
        })
    };
    let mut from_second = 0;
    for _ in 0..N {
        let (key, _): (String, String) = q(c, &["BLPOP", &first, &second, "0"]).unwrap();
        if key == second {
            from_second += 1;
        }
    }
    *stop.lock().unwrap() = true;
    locker.join().unwrap();
    assert_eq!(
        from_second, 0,
        "pops from the second key while the first had elements"
    );
    assert_eq!(q::<i64>(c, &["LLEN", &second]).unwrap(), (N + 10) as i64);
    assert_eq!(q::<i64>(c, &["LLEN", &first]).unwrap(), 10);
}

/// The other way out of that hold: a transaction that empties the first key while a
/// claim on it waits must let the blocked client go on to the later key (no hang, no
/// element lost or doubled). Races are not deterministic; many rounds cover them.
#[test]
fn a_first_key_emptied_under_the_lock_releases_the_waiter() {
    let server = Server::start(&["--shards", "4", "--appendonly", "no"]);
    let first = keys_on("efirst", 1, 4, 1).remove(0);
    let second = keys_on("esecond", 2, 4, 1).remove(0);
    let other = keys_on("eother", 3, 4, 1).remove(0);
    let c = &mut server.client();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut t = server.client();
    for round in 0..200 {
        q::<i64>(c, &["RPUSH", &first, "x"]).unwrap();
        q::<i64>(c, &["RPUSH", &second, "y"]).unwrap();
        let (first2, other2) = (first.clone(), other.clone());
        let emptier = thread::spawn(move || {
            // LPOP under a cross-shard transaction's locks.
            let (popped, _): (Option<String>, i64) = redis::pipe()
                .atomic()
                .cmd("LPOP")
                .arg(&first2)
                .cmd("INCR")
                .arg(&other2)
                .query(&mut t)
                .unwrap();
            (popped, t)
        });
        let (key, value): (String, String) = q(c, &["BLPOP", &first, &second, "0"])
            .unwrap_or_else(|e| panic!("round {round}: BLPOP did not come back: {e}"));
        let (popped, back) = emptier.join().unwrap();
        t = back;
        // Exactly one of the two took "x"; the other element is where it was.
        match (key == first, popped.is_some()) {
            (true, false) => assert_eq!(value, "x"),
            (false, true) => assert_eq!((key.as_str(), value.as_str()), (second.as_str(), "y")),
            other => panic!("round {round}: BLPOP got {key}={value}, LPOP {popped:?} ({other:?})"),
        }
        q::<()>(c, &["DEL", &first, &second]).unwrap();
    }
}

/// As Redis looks at a blocking command's keys in order: a key of another type before a
/// key with elements answers WRONGTYPE and pops nothing, also when the keys live on
/// another shard than the client (there the element was popped and answered).
#[test]
fn a_wrong_type_key_first_answers_wrongtype_and_pops_nothing() {
    let s = Server::start(&["--shards", "4"]);
    let c = &mut s.client();
    let home = common::shard_of("{t}", 4) as u64;
    let mut r = s.raw_on_shard((home + 1) % 4, 4);
    q::<()>(c, &["SET", "{t}str", "v"]).unwrap();
    q::<i64>(c, &["ZADD", "{t}z", "1", "x"]).unwrap();
    q::<i64>(c, &["RPUSH", "{t}l", "x"]).unwrap();
    let wrongtype = "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
    r.cmd(&[b"BZPOPMIN", b"{t}str", b"{t}z", b"0"]);
    assert_eq!(r.reply_str(), wrongtype);
    r.cmd(&[b"BLPOP", b"{t}str", b"{t}l", b"0"]);
    assert_eq!(r.reply_str(), wrongtype);
    assert_eq!(q::<i64>(c, &["ZCARD", "{t}z"]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["LLEN", "{t}l"]).unwrap(), 1);
    // A move whose destination is on another shard than its string source: WRONGTYPE at
    // once (it blocked forever).
    let src = keys_on("src", 1, 4, 1)[0].clone();
    let dst = keys_on("dst", 2, 4, 1)[0].clone();
    q::<()>(c, &["SET", &src, "v"]).unwrap();
    r.cmd(&[
        b"BLMOVE",
        src.as_bytes(),
        dst.as_bytes(),
        b"LEFT",
        b"RIGHT",
        b"0",
    ]);
    assert_eq!(r.reply_str(), wrongtype);
    r.cmd(&[b"BRPOPLPUSH", src.as_bytes(), dst.as_bytes(), b"0"]);
    assert_eq!(r.reply_str(), wrongtype);
    // After the key with elements, the element is popped as before.
    r.cmd(&[b"BLPOP", b"{t}l", b"{t}str", b"0"]);
    assert_eq!(r.reply_str(), "*2\r\n$4\r\n{t}l\r\n$1\r\nx\r\n");
}

/// A client blocked on two keys that one transaction fills is served from the key filled
/// first, as Redis serves ready keys in the order they became ready (it was served from
/// the key first in byte order); a blocked XREAD woken by one stream answers with that
/// stream alone (it answered every stream with news), and once for a stream it names
/// twice.
#[test]
fn a_waiter_is_served_from_the_key_filled_first() {
    let s = Server::start(&["--shards", "4"]);
    let c = &mut s.client();
    let mut fill = |cmds: &[&[&str]]| {
        let mut p = redis::pipe();
        p.atomic();
        for cmd in cmds {
            p.cmd(cmd[0]).arg(&cmd[1..]);
        }
        p.query::<()>(c).unwrap();
    };
    let mut w = s.raw();
    w.cmd(&[b"BLPOP", b"{a}k1", b"{a}k2", b"0"]);
    let mut x = s.raw();
    x.cmd(&[
        b"XREAD", b"BLOCK", b"0", b"STREAMS", b"{a}s1", b"{a}s2", b"{a}s1", b"$", b"$", b"$",
    ]);
    let mut probe = s.client();
    eventually("both wait", || blocked_clients(&mut probe) == 2);
    fill(&[&["RPUSH", "{a}k2", "first"], &["RPUSH", "{a}k1", "second"]]);
    assert_eq!(w.reply_str(), "*2\r\n$5\r\n{a}k2\r\n$5\r\nfirst\r\n");
    fill(&[
        &["XADD", "{a}s2", "1-0", "f", "v"],
        &["XADD", "{a}s1", "1-0", "f", "v"],
    ]);
    let got = x.reply_str();
    assert!(got.starts_with("*1\r\n*2\r\n$5\r\n{a}s2\r\n"), "{got}");
    x.cmd(&[
        b"XREAD", b"BLOCK", b"0", b"STREAMS", b"{a}s1", b"{a}s2", b"{a}s1", b"$", b"$", b"$",
    ]);
    eventually("it waits again", || blocked_clients(&mut probe) == 1);
    q::<String>(c, &["XADD", "{a}s1", "2-0", "f", "v"]).unwrap();
    let got = x.reply_str();
    assert!(got.starts_with("*1\r\n*2\r\n$5\r\n{a}s1\r\n"), "{got}");
    // Woken for a stream emptied again before it was claimed (it also waits on a stream
    // of another shard, so it is claimed a round trip later): its other stream, filled
    // with it, answers (it waited forever, the other stream never offered again).
    let far = (0..)
        .map(|i| format!("far{i}"))
        .find(|k| common::shard_of(k, 4) != common::shard_of("{a}", 4))
        .unwrap();
    x.cmd(&[
        b"XREAD",
        b"BLOCK",
        b"0",
        b"STREAMS",
        b"{a}s1",
        b"{a}s2",
        far.as_bytes(),
        b"$",
        b"$",
        b"$",
    ]);
    eventually("it waits again", || blocked_clients(&mut probe) == 1);
    let mut p = redis::pipe();
    p.cmd("MULTI").ignore();
    p.cmd("XADD").arg(&["{a}s1", "3-0", "f", "v"]).ignore();
    p.cmd("XADD").arg(&["{a}s2", "3-0", "f", "v"]).ignore();
    p.cmd("EXEC").ignore();
    p.cmd("XTRIM").arg(&["{a}s1", "MAXLEN", "0"]).ignore();
    p.query::<()>(c).unwrap();
    let got = x.reply_str();
    assert!(got.contains("\r\n*1\r\n*2\r\n$3\r\n3-0"), "{got}");
}

/// A key of the other collection type appearing where a client waits leaves it waiting,
/// as in Redis (a sorted set at a BLPOP's key answered WRONGTYPE), across shards too.
#[test]
fn a_key_of_another_type_appearing_leaves_the_waiter_waiting() {
    let s = Server::start(&["--shards", "4"]);
    let c = &mut s.client();
    let src = keys_on("src", 1, 4, 1)[0].clone();
    let dst = keys_on("dst", 2, 4, 1)[0].clone();
    let mut pop = s.raw();
    pop.cmd(&[b"BLPOP", b"k", b"0"]);
    let mut mv = s.raw();
    mv.cmd(&[
        b"BLMOVE",
        src.as_bytes(),
        dst.as_bytes(),
        b"LEFT",
        b"RIGHT",
        b"0",
    ]);
    let mut zpop = s.raw();
    zpop.cmd(&[b"BZPOPMIN", b"z", b"0"]);
    eventually("all three wait", || blocked_clients(c) == 3);
    q::<i64>(c, &["ZADD", "k", "1", "m"]).unwrap();
    q::<i64>(c, &["ZADD", &src, "1", "m"]).unwrap();
    q::<i64>(c, &["RPUSH", "z", "e"]).unwrap();
    q::<String>(c, &["PING"]).unwrap();
    assert_eq!(
        blocked_clients(c),
        3,
        "a key of the other type served somebody"
    );
    q::<i64>(c, &["DEL", "k", &src, "z"]).unwrap();
    q::<i64>(c, &["RPUSH", "k", "e"]).unwrap();
    q::<i64>(c, &["RPUSH", &src, "e"]).unwrap();
    q::<i64>(c, &["ZADD", "z", "1", "m"]).unwrap();
    assert_eq!(pop.reply_str(), "*2\r\n$1\r\nk\r\n$1\r\ne\r\n");
    assert_eq!(mv.reply_str(), "$1\r\ne\r\n");
    assert!(zpop.reply_str().starts_with("*3\r\n$1\r\nz\r\n$1\r\nm\r\n"));
}
