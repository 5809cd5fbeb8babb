//! Pub/sub on `--shards 4`: confirmation guarantee, patterns, per-publisher order, counts,
//! RESP3 pushes, slow-subscriber disconnect, subscriptions dropped on close and RESET.

mod common;

use std::time::Duration;

use common::{q, Raw, Server};

fn start() -> Server {
    Server::start(&["--shards", "4", "--appendonly", "no"])
}

/// A reply as text with `\n` line ends and none at the end.
fn next(raw: &mut Raw) -> String {
    raw.reply_str().trim_end().replace("\r\n", "\n")
}

fn message(channel: &str, payload: &str) -> String {
    format!(
        "*3\n$7\nmessage\n${}\n{channel}\n${}\n{payload}",
        channel.len(),
        payload.len()
    )
}

/// A server started with `args` (persistence off) and a connection subscribed to every
/// `__keyevent@0__` channel.
fn with_keyevents(args: &[&str]) -> (Server, Raw) {
    let mut all = vec!["--appendonly", "no"];
    all.extend_from_slice(args);
    let server = Server::start(&all);
    let mut ev = server.raw();
    ev.cmd(&[b"PSUBSCRIBE", b"__keyevent@0__:*"]);
    let _ = ev.reply();
    (server, ev)
}

/// The next keyevent message as (channel, key).
fn keyevent(ev: &mut Raw) -> (String, String) {
    let m = next(ev);
    let parts: Vec<&str> = m.split('\n').collect();
    (parts[6].to_string(), parts[8].to_string())
}

/// The next keyevents are exactly `want`, (event, key) pairs, in order.
fn expect_keyevents(ev: &mut Raw, want: &[(&str, &str)]) {
    for (event, key) in want {
        let want = (format!("__keyevent@0__:{event}"), key.to_string());
        assert_eq!(keyevent(ev), want);
    }
}

/// Once SUBSCRIBE is confirmed, a PUBLISH from a connection on any shard reaches the
/// subscriber — even for a channel nobody had subscribed to a moment before.
#[test]
fn a_confirmed_subscription_gets_every_later_publish_from_any_shard() {
    let server = start();
    let mut publishers: Vec<Raw> = (0..8).map(|_| server.raw()).collect();
    for round in 0..40 {
        let mut sub = server.raw();
        let ch = format!("fresh:{round}");
        sub.cmd(&[b"SUBSCRIBE", ch.as_bytes()]);
        assert_eq!(
            next(&mut sub),
            format!("*3\n$9\nsubscribe\n${}\n{ch}\n:1", ch.len())
        );
        for (i, p) in publishers.iter_mut().enumerate() {
            let payload = format!("m{i}");
            p.cmd(&[b"PUBLISH", ch.as_bytes(), payload.as_bytes()]);
            assert_eq!(next(p), ":1", "round {round}, publisher {i}");
        }
        for i in 0..publishers.len() {
            assert_eq!(next(&mut sub), message(&ch, &format!("m{i}")));
        }
    }
}

/// Subscribe, unsubscribe and subscribe again in one pipeline, for channels, patterns
/// and shard channels: the last subscription's announcement must reach every shard after
/// the unsubscription's, or the other shards stay deaf to it.
#[test]
fn resubscribing_while_the_first_announcement_is_in_flight_keeps_interest() {
    let server = start();
    let mut publishers: Vec<Raw> = (0..12).map(|_| server.raw()).collect();
    // (subscribe, unsubscribe, publish, message kind)
    type Case = (&'static [u8], &'static [u8], &'static [u8], &'static [u8]);
    let cases: [Case; 3] = [
        (b"SUBSCRIBE", b"UNSUBSCRIBE", b"PUBLISH", b"message"),
        (b"PSUBSCRIBE", b"PUNSUBSCRIBE", b"PUBLISH", b"pmessage"),
        (b"SSUBSCRIBE", b"SUNSUBSCRIBE", b"SPUBLISH", b"smessage"),
    ];
    for round in 0..10 {
        for (sub_cmd, unsub_cmd, publish, kind) in cases {
            let name = format!("re:{round}:{}", String::from_utf8_lossy(sub_cmd));
            let mut sub = server.raw();
            let mut pipeline = common::encode(&[sub_cmd, name.as_bytes()]);
            pipeline.extend(common::encode(&[unsub_cmd, name.as_bytes()]));
            pipeline.extend(common::encode(&[sub_cmd, name.as_bytes()]));
            sub.send(&pipeline);
            for _ in 0..3 {
                sub.reply();
            }
            for (i, p) in publishers.iter_mut().enumerate() {
                // Shard channels are published on the channel's own name; patterns match it.
                p.cmd(&[publish, name.as_bytes(), format!("m{i}").as_bytes()]);
                assert_eq!(
                    next(p),
                    ":1",
                    "{} {name}: publisher {i} found no subscriber",
                    String::from_utf8_lossy(publish)
                );
                let got = next(&mut sub);
                let kind = String::from_utf8_lossy(kind);
                assert!(got.starts_with('*') && got.contains(&*kind), "{got}");
                assert!(got.ends_with(&format!("m{i}")), "{got}");
            }
        }
    }
}

#[test]
fn patterns_shard_channels_and_counts_across_shards() {
    let server = start();
    let mut a = server.raw();
    let mut b = server.raw();
    a.cmd(&[b"PSUBSCRIBE", b"news.*"]);
    assert_eq!(next(&mut a), "*3\n$10\npsubscribe\n$6\nnews.*\n:1");
    b.cmd(&[b"SUBSCRIBE", b"news.tech", b"other"]);
    assert_eq!(next(&mut b), "*3\n$9\nsubscribe\n$9\nnews.tech\n:1");
    assert_eq!(next(&mut b), "*3\n$9\nsubscribe\n$5\nother\n:2");
    let mut c = server.raw();
    c.cmd(&[b"SSUBSCRIBE", b"orders"]);
    assert_eq!(next(&mut c), "*3\n$10\nssubscribe\n$6\norders\n:1");
    let p = &mut server.client();
    assert_eq!(q::<i64>(p, &["PUBLISH", "news.tech", "hi"]).unwrap(), 2);
    assert_eq!(
        next(&mut a),
        "*4\n$8\npmessage\n$6\nnews.*\n$9\nnews.tech\n$2\nhi"
    );
    assert_eq!(next(&mut b), message("news.tech", "hi"));
    assert_eq!(q::<i64>(p, &["PUBLISH", "orders", "x"]).unwrap(), 0);
    assert_eq!(q::<i64>(p, &["SPUBLISH", "orders", "x"]).unwrap(), 1);
    assert_eq!(next(&mut c), "*3\n$8\nsmessage\n$6\norders\n$1\nx");
    let numsub: Vec<redis::Value> =
        q(p, &["PUBSUB", "NUMSUB", "news.tech", "other", "none"]).unwrap();
    assert_eq!(numsub.len(), 6);
    assert_eq!(q::<i64>(p, &["PUBSUB", "NUMPAT"]).unwrap(), 1);
    let mut chans: Vec<String> = q(p, &["PUBSUB", "CHANNELS"]).unwrap();
    chans.sort();
    assert_eq!(chans, vec!["news.tech", "other"]);
    let shard: Vec<String> = q(p, &["PUBSUB", "SHARDCHANNELS"]).unwrap();
    assert_eq!(shard, vec!["orders"]);
    // RESP2 subscribed mode refuses other commands with Redis's text.
    b.cmd(&[b"GET", b"k"]);
    assert!(next(&mut b).starts_with(
        "-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET"
    ));
    // Close and RESET drop subscriptions everywhere.
    drop(a);
    b.cmd(&[b"RESET"]);
    assert_eq!(next(&mut b), "+RESET");
    common::eventually("subscriptions dropped", || {
        q::<i64>(p, &["PUBSUB", "NUMPAT"]).unwrap() == 0
            && q::<Vec<String>>(p, &["PUBSUB", "CHANNELS"])
                .unwrap()
                .is_empty()
    });
    assert_eq!(q::<i64>(p, &["PUBLISH", "news.tech", "x"]).unwrap(), 0);
}

/// Two publishers on different connections, three subscribers: every subscriber gets every
/// message, and each publisher's messages in the order published.
#[test]
fn each_publishers_messages_arrive_in_order_at_every_subscriber() {
    let server = start();
    let mut subs: Vec<Raw> = (0..3).map(|_| server.raw()).collect();
    for s in subs.iter_mut() {
        s.cmd(&[b"SUBSCRIBE", b"feed"]);
        assert!(next(s).starts_with("*3\n$9\nsubscribe"));
    }
    let n = 2000;
    let handles: Vec<_> = (0..2)
        .map(|p| {
            let addr = server.addr;
            std::thread::spawn(move || {
                let mut raw = Raw::connect(addr);
                let mut batch = Vec::new();
                for i in 0..n {
                    let payload = format!("{p}:{i}");
                    batch.extend(common::encode(&[b"PUBLISH", b"feed", payload.as_bytes()]));
                }
                raw.send(&batch);
                for _ in 0..n {
                    assert_eq!(next(&mut raw), ":3");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for s in subs.iter_mut() {
        let mut last = [-1i64, -1];
        for _ in 0..2 * n {
            let m = next(s);
            let payload = m.rsplit('\n').next().unwrap();
            let (p, i) = payload.split_once(':').unwrap();
            let (p, i): (usize, i64) = (p.parse().unwrap(), i.parse().unwrap());
            assert_eq!(i, last[p] + 1, "publisher {p} out of order");
            last[p] = i;
        }
    }
}

/// RESP3 subscribers get `>` pushes and may run other commands meanwhile.
#[test]
fn resp3_clients_get_pushes_and_keep_running_commands() {
    let server = start();
    let mut s = server.raw();
    s.cmd(&[b"HELLO", b"3"]);
    let _ = s.reply();
    s.cmd(&[b"SUBSCRIBE", b"r3"]);
    assert_eq!(next(&mut s), ">3\n$9\nsubscribe\n$2\nr3\n:1");
    s.cmd(&[b"SET", b"k", b"v"]);
    assert_eq!(next(&mut s), "+OK");
    let p = &mut server.client();
    assert_eq!(q::<i64>(p, &["PUBLISH", "r3", "hey"]).unwrap(), 1);
    assert_eq!(next(&mut s), ">3\n$7\nmessage\n$2\nr3\n$3\nhey");
    s.cmd(&[b"PING"]);
    assert_eq!(next(&mut s), "+PONG");
}

/// A subscriber that does not read is dropped at the pubsub output limit; others go on.
#[test]
fn a_slow_subscriber_is_disconnected_at_its_output_limit() {
    let server = start();
    let p = &mut server.client();
    // Set at run time, as operators do (the flag is tested in tests/limits.rs).
    let _: () = q(
        p,
        &[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "pubsub 1mb 256kb 60",
        ],
    )
    .unwrap();
    let got: Vec<String> = q(p, &["CONFIG", "GET", "client-output-buffer-limit"]).unwrap();
    assert_eq!(
        got[1],
        "normal 0 0 0 slave 268435456 67108864 60 pubsub 1048576 262144 60"
    );
    let mut slow = server.raw();
    slow.cmd(&[b"SUBSCRIBE", b"firehose"]);
    let _ = slow.reply();
    let payload = "x".repeat(64 * 1024);
    // 1 MB in the server plus what the kernel's socket buffers hold (a few MB), far from
    // the 32 MB (512 messages) of the default.
    for sent in 0.. {
        let n: i64 = q(p, &["PUBLISH", "firehose", &payload]).unwrap();
        if n == 0 {
            break; // the subscriber is gone
        }
        assert!(sent < 400, "slow subscriber not dropped at the limit set");
    }
    assert!(slow.closed(), "the slow subscriber's connection was closed");
    let info: String = q(p, &["INFO", "stats"]).unwrap();
    assert!(
        info.contains("client_output_buffer_limit_disconnections:1"),
        "{info}"
    );
    assert_eq!(q::<String>(p, &["PING"]).unwrap(), "PONG");
}

/// Keyspace notifications: what lease and TTL users subscribe to.
#[test]
fn keyspace_notifications_for_set_del_expire_and_rename() {
    let (server, mut ev) = with_keyevents(&["--shards", "4", "--notify-keyspace-events", "KEA"]);
    let mut ks = server.raw();
    ks.cmd(&[b"SUBSCRIBE", b"__keyspace@0__:lease"]);
    let _ = ks.reply();
    let c = &mut server.client();
    q::<()>(c, &["SET", "lease", "me", "EX", "30"]).unwrap();
    q::<i64>(c, &["PERSIST", "lease"]).unwrap();
    q::<i64>(c, &["INCRBY", "n", "2"]).unwrap();
    q::<()>(c, &["RENAME", "n", "m"]).unwrap();
    q::<i64>(c, &["DEL", "lease"]).unwrap();
    let got: Vec<_> = (0..7).map(|_| keyevent(&mut ev)).collect();
    let want = [
        ("__keyevent@0__:set", "lease"),
        ("__keyevent@0__:expire", "lease"),
        ("__keyevent@0__:persist", "lease"),
        ("__keyevent@0__:incrby", "n"),
        ("__keyevent@0__:rename_from", "n"),
        ("__keyevent@0__:rename_to", "m"),
        ("__keyevent@0__:del", "lease"),
    ];
    for w in want {
        assert!(
            got.contains(&(w.0.to_string(), w.1.to_string())),
            "{w:?} missing from {got:?}"
        );
    }
    for e in ["set", "expire", "persist", "del"] {
        assert_eq!(next(&mut ks), message("__keyspace@0__:lease", e));
    }
    let cfg: Vec<String> = q(c, &["CONFIG", "GET", "notify-keyspace-events"]).unwrap();
    assert_eq!(cfg[1], "AKE");
    q::<()>(c, &["CONFIG", "SET", "notify-keyspace-events", ""]).unwrap();
    q::<()>(c, &["SET", "lease", "x"]).unwrap();
    q::<String>(c, &["PING"]).unwrap();
    ks.stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        std::io::Read::read(&mut ks.stream, &mut buf).is_err(),
        "no events once turned off"
    );
}

/// `expired` events come from active expiry (nobody touches the key) and lazy expiry.
#[test]
fn expired_events_from_active_and_lazy_expiry() {
    let server = Server::start(&[
        "--shards",
        "2",
        "--appendonly",
        "no",
        "--notify-keyspace-events",
        "Ex",
    ]);
    let mut ev = server.raw();
    ev.cmd(&[b"SUBSCRIBE", b"__keyevent@0__:expired"]);
    let _ = ev.reply();
    let c = &mut server.client();
    q::<()>(c, &["SET", "lease:a", "1", "PX", "50"]).unwrap();
    q::<()>(c, &["SET", "lease:b", "1", "PX", "50"]).unwrap();
    std::thread::sleep(Duration::from_millis(80));
    // lease:b expires lazily on this read (if active expiry did not get it first).
    assert_eq!(q::<Option<String>>(c, &["GET", "lease:b"]).unwrap(), None);
    let mut got = vec![next(&mut ev), next(&mut ev)];
    got.sort();
    assert_eq!(
        got,
        vec![
            message("__keyevent@0__:expired", "lease:a"),
            message("__keyevent@0__:expired", "lease:b")
        ]
    );
}

/// The events Redis 7.0.15 gives for this sequence (checked against redis-server): `new`
/// (flag n) before a key's first event, `keymiss` (flag m) for reads of missing keys,
/// EXISTS included, and a key that expired announced as `expired` before the write that
/// finds it gone.
#[test]
fn new_keymiss_and_expired_before_the_write_in_redis_order() {
    let (server, mut ev) = with_keyevents(&["--shards", "1", "--notify-keyspace-events", "KEAnm"]);
    let c = &mut server.client();
    q::<()>(c, &["SET", "a", "1"]).unwrap();
    q::<Option<String>>(c, &["GET", "nokey"]).unwrap();
    q::<i64>(c, &["EXISTS", "nokey2"]).unwrap();
    q::<i64>(c, &["LPUSH", "l", "x"]).unwrap();
    q::<()>(c, &["SET", "d", "1", "PX", "20"]).unwrap();
    // Let d's deadline pass (the condition is time itself).
    std::thread::sleep(Duration::from_millis(60));
    q::<()>(c, &["SET", "d", "2"]).unwrap();
    let want = [
        ("new", "a"),
        ("set", "a"),
        ("keymiss", "nokey"),
        ("keymiss", "nokey2"),
        ("new", "l"),
        ("lpush", "l"),
        ("new", "d"),
        ("set", "d"),
        ("expire", "d"),
        ("expired", "d"),
        ("new", "d"),
        ("set", "d"),
    ];
    expect_keyevents(&mut ev, &want);
}

/// Keys evicted under maxmemory are announced as `evicted` (flag e), not as `del`.
#[test]
fn evictions_are_announced_as_evicted() {
    let (server, mut ev) = with_keyevents(&[
        "--shards",
        "1",
        "--maxmemory",
        "2mb",
        "--maxmemory-policy",
        "allkeys-lru",
        "--notify-keyspace-events",
        "KEA",
    ]);
    let mut w = server.raw();
    let value = vec![b'v'; 200];
    let mut pipeline = Vec::new();
    for i in 0..20_000 {
        pipeline.extend(common::encode(&[
            b"SET",
            format!("k{i}").as_bytes(),
            &value,
        ]));
    }
    w.send(&pipeline);
    for _ in 0..20_000 {
        w.reply();
    }
    w.cmd(&[b"INFO", b"stats"]);
    let info = w.reply_str();
    let evicted: usize = info
        .lines()
        .find_map(|l| l.strip_prefix("evicted_keys:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("evicted_keys");
    assert!(evicted > 1000, "maxmemory evicted keys: {evicted}");
    let (mut seen, mut dels) = (0, 0);
    while seen < evicted {
        match keyevent(&mut ev).0.as_str() {
            "__keyevent@0__:evicted" => seen += 1,
            "__keyevent@0__:del" => dels += 1,
            _ => {}
        }
    }
    assert_eq!(dels, 0, "evictions are not deletions");
}

/// A RESP3 client pipelines SUBSCRIBE, a PUBLISH to that channel and UNSUBSCRIBE (or
/// RESET): the PUBLISH runs in between, as sent, so it reaches the subscription.
#[test]
fn resp3_commands_pipelined_behind_a_subscribe_run_in_order() {
    let server = start();
    for round in 0..20 {
        let mut c = server.raw();
        c.cmd(&[b"HELLO", b"3"]);
        let _ = c.reply();
        let ch = format!("p3:{round}");
        let last: &[u8] = if round % 2 == 0 {
            b"UNSUBSCRIBE"
        } else {
            b"RESET"
        };
        let mut pipeline = common::encode(&[b"SUBSCRIBE", ch.as_bytes()]);
        pipeline.extend(common::encode(&[b"PUBLISH", ch.as_bytes(), b"m"]));
        pipeline.extend(common::encode(&[last]));
        c.send(&pipeline);
        let replies: Vec<String> = (0..4).map(|_| next(&mut c)).collect();
        assert!(replies[0].starts_with(">3\n$9\nsubscribe"), "{replies:?}");
        // The message push and PUBLISH's count, then the last command's answer.
        let mut middle = replies[1..3].to_vec();
        middle.sort();
        assert_eq!(middle[0], ":1", "{replies:?}");
        assert!(middle[1].starts_with(">3\n$7\nmessage"), "{replies:?}");
        let end = if round % 2 == 0 {
            ">3\n$11\nunsubscribe"
        } else {
            "+RESET"
        };
        assert!(replies[3].starts_with(end), "{replies:?}");
    }
}

/// RESP2 subscribed mode refuses other commands as Redis 7.0 does: after the name and
/// arity checks, naming subcommands in full (checked against redis-server).
#[test]
fn subscribed_mode_refusals_in_redis_order() {
    let server = start();
    let mut c = server.raw();
    c.cmd(&[b"SUBSCRIBE", b"x"]);
    let _ = c.reply();
    let only =
        "only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context";
    for (cmd, want) in [
        (
            &[&b"CLIENT"[..], b"ID"][..],
            format!("-ERR Can't execute 'client|id': {only}"),
        ),
        (
            &[b"CLIENT", b"NOSUCH"],
            "-ERR unknown subcommand 'NOSUCH'. Try CLIENT HELP.".into(),
        ),
        (
            &[b"GET"],
            "-ERR wrong number of arguments for 'get' command".into(),
        ),
        (&[b"GET", b"k"], format!("-ERR Can't execute 'get': {only}")),
        // A refused EXEC says so as EXECABORT, as Redis's rejectCommand does.
        (
            &[b"EXEC"],
            format!("-EXECABORT Transaction discarded because of: Can't execute 'exec': {only}"),
        ),
        // A subcommand's arity comes first too, named as Redis names it.
        (
            &[b"CONFIG", b"GET"],
            "-ERR wrong number of arguments for 'config|get' command".into(),
        ),
        (
            &[b"CLIENT", b"ID", b"x"],
            "-ERR wrong number of arguments for 'client|id' command".into(),
        ),
        (
            &[b"XINFO", b"STREAM"],
            "-ERR wrong number of arguments for 'xinfo|stream' command".into(),
        ),
    ] {
        c.cmd(cmd);
        assert_eq!(next(&mut c), want);
    }
    let mut other = server.raw();
    other.cmd(&[b"PUBSUB", b"HELP", b"x"]);
    assert_eq!(
        next(&mut other),
        "-ERR wrong number of arguments for 'pubsub|help' command"
    );
}

/// A RESP2 SUBSCRIBE still waiting for its confirmation, then RESET, WATCH, a write to the
/// watched key and MULTI/EXEC: the confirmation must not release the input WATCH holds
/// until its versions are back, or EXEC runs as if nothing was watched.
#[test]
fn a_subscribe_confirmation_does_not_release_a_watch_hold() {
    let server = start();
    let mut c = server.raw();
    // The race is narrow (about 1 round in 20-200 without the fix): many rounds.
    for i in 0..1500 {
        let ch = format!("wh:{i}");
        let mut first = common::encode(&[b"SUBSCRIBE", ch.as_bytes()]);
        first.extend(common::encode(&[b"RESET"]));
        c.send(&first);
        let mut second = common::encode(&[b"WATCH", b"k"]);
        second.extend(common::encode(&[b"SET", b"k", b"x"]));
        second.extend(common::encode(&[b"MULTI"]));
        second.extend(common::encode(&[b"PING"]));
        second.extend(common::encode(&[b"EXEC"]));
        c.send(&second);
        let replies: Vec<String> = (0..7).map(|_| next(&mut c)).collect();
        assert_eq!(
            replies[6], "*-1",
            "round {i}: EXEC after a write to a watched key: {replies:?}"
        );
    }
}

/// RENAME and COPY of a key with a TTL raise only their own events: the deadline they
/// carry over is no `expire` event (checked against redis-server).
#[test]
fn rename_and_copy_carry_a_ttl_without_an_expire_event() {
    let (server, mut ev) = with_keyevents(&["--shards", "1", "--notify-keyspace-events", "KEA"]);
    let c = &mut server.client();
    q::<()>(c, &["SET", "src", "v", "EX", "100"]).unwrap();
    q::<()>(c, &["RENAME", "src", "dst"]).unwrap();
    q::<i64>(c, &["COPY", "dst", "cp"]).unwrap();
    q::<()>(c, &["SET", "end", "1"]).unwrap();
    let want = [
        ("set", "src"),
        ("expire", "src"),
        ("rename_from", "src"),
        ("rename_to", "dst"),
        ("copy_to", "cp"),
        ("set", "end"),
    ];
    expect_keyevents(&mut ev, &want);
}

/// `keymiss` (flag `m`) and the miss counter for the reads Redis 7.0 counts: TYPE, the TTL
/// family, GETSET, COPY's source and the STORE forms' sources; not XGROUP's write lookup.
#[test]
fn keymiss_for_every_read_lookup_redis_counts() {
    let (server, mut ev) = with_keyevents(&["--shards", "1", "--notify-keyspace-events", "Em"]);
    let c = &mut server.client();
    for cmd in [
        &["TYPE", "m1"][..],
        &["TTL", "m2"],
        &["PEXPIRETIME", "m3"],
        &["GETSET", "m4", "v"],
        &["COPY", "m5", "d"],
        &["SINTERSTORE", "d", "m6"],
        &["ZUNIONSTORE", "d", "1", "m7"],
        &["XGROUP", "CREATE", "m8", "g", "$", "MKSTREAM"],
        &["GET", "end"],
    ] {
        q::<redis::Value>(c, cmd).unwrap();
    }
    let want = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "end"].map(|k| ("keymiss", k));
    expect_keyevents(&mut ev, &want);
    let info: String = q(c, &["INFO", "stats"]).unwrap();
    assert!(info.contains("keyspace_misses:8\r\n"), "{info}");
}

/// RENAME and COPY announce their destination `new` (flag `n`) even when it replaces a key,
/// first, as Redis 7.0 does.
#[test]
fn rename_and_copy_announce_the_destination_as_new_first() {
    let (server, mut ev) = with_keyevents(&["--shards", "1", "--notify-keyspace-events", "KEAn"]);
    let c = &mut server.client();
    q::<()>(c, &["SET", "a", "1"]).unwrap();
    q::<()>(c, &["RENAME", "a", "b"]).unwrap();
    q::<()>(c, &["SET", "c", "1"]).unwrap();
    q::<()>(c, &["RENAME", "b", "c"]).unwrap();
    q::<i64>(c, &["COPY", "c", "d"]).unwrap();
    q::<i64>(c, &["COPY", "c", "d", "REPLACE"]).unwrap();
    q::<()>(c, &["SET", "end", "1"]).unwrap();
    let want = [
        ("new", "a"),
        ("set", "a"),
        ("new", "b"),
        ("rename_from", "a"),
        ("rename_to", "b"),
        ("new", "c"),
        ("set", "c"),
        ("new", "c"),
        ("rename_from", "b"),
        ("rename_to", "c"),
        ("new", "d"),
        ("copy_to", "d"),
        ("new", "d"),
        ("copy_to", "d"),
        ("new", "end"),
        ("set", "end"),
    ];
    expect_keyevents(&mut ev, &want);
}

/// XCLAIM and XAUTOCLAIM raise `xgroup-createconsumer` when a claim makes the consumer,
/// as Redis 7.0 does (and make none when nothing is claimed).
#[test]
fn claims_that_create_a_consumer_announce_it() {
    let (server, mut ev) = with_keyevents(&["--shards", "1", "--notify-keyspace-events", "KEA"]);
    let c = &mut server.client();
    q::<String>(c, &["XADD", "s", "1-1", "f", "v"]).unwrap();
    q::<()>(c, &["XGROUP", "CREATE", "s", "g", "0"]).unwrap();
    q::<redis::Value>(c, &["XREADGROUP", "GROUP", "g", "c1", "STREAMS", "s", ">"]).unwrap();
    q::<redis::Value>(c, &["XCLAIM", "s", "g", "none", "0", "9-9"]).unwrap();
    q::<redis::Value>(c, &["XAUTOCLAIM", "s", "g", "none2", "0", "9-9"]).unwrap();
    q::<redis::Value>(c, &["XCLAIM", "s", "g", "c2", "0", "1-1"]).unwrap();
    q::<redis::Value>(c, &["XAUTOCLAIM", "s", "g", "c3", "0", "0"]).unwrap();
    q::<redis::Value>(c, &["XAUTOCLAIM", "s", "g", "c3", "0", "0"]).unwrap();
    q::<()>(c, &["SET", "end", "1"]).unwrap();
    let want = [
        ("xadd", "s"),
        ("xgroup-create", "s"),
        ("xgroup-createconsumer", "s"),
        ("xgroup-createconsumer", "s"),
        ("xgroup-createconsumer", "s"),
        ("set", "end"),
    ];
    expect_keyevents(&mut ev, &want);
    let consumers: Vec<redis::Value> = q(c, &["XINFO", "CONSUMERS", "s", "g"]).unwrap();
    assert_eq!(consumers.len(), 3, "c1, c2 and c3 only");
}

/// GETEX PERSIST changes only a key with a TTL, as PERSIST does: no `persist` event, and
/// a WATCH on the key holds, when it had none.
#[test]
fn getex_persist_of_a_key_without_ttl_changes_nothing() {
    let (server, mut ev) = with_keyevents(&["--shards", "1", "--notify-keyspace-events", "KEA"]);
    let c = &mut server.client();
    q::<()>(c, &["SET", "plain", "v"]).unwrap();
    q::<()>(c, &["WATCH", "plain"]).unwrap();
    q::<String>(c, &["GETEX", "plain", "PERSIST"]).unwrap();
    let exec: Option<Vec<String>> = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("plain")
        .arg("w")
        .query(c)
        .unwrap();
    assert_eq!(exec, Some(vec!["OK".to_string()]), "the WATCH held");
    q::<()>(c, &["SET", "leased", "v", "EX", "100"]).unwrap();
    q::<String>(c, &["GETEX", "leased", "PERSIST"]).unwrap();
    q::<()>(c, &["SET", "end", "1"]).unwrap();
    let want = [
        ("set", "plain"),
        ("set", "plain"),
        ("set", "leased"),
        ("expire", "leased"),
        ("persist", "leased"),
        ("set", "end"),
    ];
    expect_keyevents(&mut ev, &want);
}

/// PUBLISH and SPUBLISH inside MULTI/EXEC and scripts (what redis-py's default
/// transactional pipeline and queue libraries' Lua scripts send): each answers how many
/// clients, on every shard, receive it; the messages arrive, and only if EXEC ran.
#[test]
fn publish_inside_multi_and_scripts_counts_every_shards_subscribers() {
    let server = start();
    // One subscriber per shard, a pattern subscriber and a shard-channel subscriber.
    let mut subs: Vec<Raw> = (0..4).map(|s| server.raw_on_shard(s, 4)).collect();
    for s in subs.iter_mut() {
        s.cmd(&[b"SUBSCRIBE", b"jobs"]);
        assert!(next(s).starts_with("*3\n$9\nsubscribe"));
    }
    let mut psub = server.raw_on_shard(2, 4);
    psub.cmd(&[b"PSUBSCRIBE", b"jo*"]);
    assert!(next(&mut psub).starts_with("*3\n$10\npsubscribe"));
    let mut ssub = server.raw_on_shard(3, 4);
    ssub.cmd(&[b"SSUBSCRIBE", b"jobs"]);
    assert!(next(&mut ssub).starts_with("*3\n$10\nssubscribe"));

    let mut c = server.raw_on_shard(0, 4);
    // INFO counts distinct names, though "jobs" has subscribers on every shard.
    c.cmd(&[b"INFO", b"stats"]);
    let info = c.reply_str();
    for line in [
        "pubsub_channels:1\r\n",
        "pubsub_patterns:1\r\n",
        "pubsubshard_channels:1\r\n",
    ] {
        assert!(info.contains(line), "{line}: {info}");
    }
    let keys = common::keys_on("k", 1, 4, 1);
    let other = common::keys_on("k", 3, 4, 1);
    // A transaction over keys of two shards, and one all on another shard.
    for (n, key) in [&keys[0], &other[0]].iter().enumerate() {
        let payload = format!("tx{n}");
        c.cmd(&[b"MULTI"]);
        c.cmd(&[b"SET", key.as_bytes(), b"v"]);
        c.cmd(&[b"SET", other[0].as_bytes(), b"w"]);
        c.cmd(&[b"PUBLISH", b"jobs", payload.as_bytes()]);
        c.cmd(&[b"SPUBLISH", b"jobs", payload.as_bytes()]);
        c.cmd(&[b"EXEC"]);
        for _ in 0..5 {
            let _ = next(&mut c);
        }
        assert_eq!(next(&mut c), "*4\n+OK\n+OK\n:5\n:1", "transaction {n}");
    }
    // Scripts: keyless, on a local key, on keys of two shards.
    let script = b"redis.call('SET', KEYS[1] or 'x', 'v') return {redis.call('PUBLISH', 'jobs', ARGV[1]), redis.call('SPUBLISH', 'jobs', ARGV[1])}";
    let script_keyless =
        b"return {redis.call('PUBLISH', 'jobs', ARGV[1]), redis.call('SPUBLISH', 'jobs', ARGV[1])}";
    c.cmd(&[b"EVAL", script_keyless, b"0", b"s0"]);
    assert_eq!(next(&mut c), "*2\n:5\n:1");
    c.cmd(&[b"EVAL", script, b"1", keys[0].as_bytes(), b"s1"]);
    assert_eq!(next(&mut c), "*2\n:5\n:1");
    let two = b"redis.call('SET', KEYS[1], 'v') redis.call('SET', KEYS[2], 'v') return redis.call('PUBLISH', 'jobs', ARGV[1])";
    c.cmd(&[
        b"EVAL",
        two,
        b"2",
        keys[0].as_bytes(),
        other[0].as_bytes(),
        b"s2",
    ]);
    assert_eq!(next(&mut c), ":5");
    // A discarded transaction and a failed WATCH publish nothing.
    c.cmd(&[b"MULTI"]);
    c.cmd(&[b"PUBLISH", b"jobs", b"discarded"]);
    c.cmd(&[b"DISCARD"]);
    assert_eq!(
        [next(&mut c), next(&mut c), next(&mut c)],
        ["+OK", "+QUEUED", "+OK"]
    );
    let mut w = server.raw();
    c.cmd(&[b"WATCH", keys[0].as_bytes()]);
    let _ = next(&mut c);
    w.cmd(&[b"SET", keys[0].as_bytes(), b"changed"]);
    assert_eq!(next(&mut w), "+OK");
    c.cmd(&[b"MULTI"]);
    c.cmd(&[b"PUBLISH", b"jobs", b"unwatched"]);
    c.cmd(&[b"EXEC"]);
    assert_eq!(
        [next(&mut c), next(&mut c), next(&mut c)],
        ["+OK", "+QUEUED", "*-1"]
    );
    c.cmd(&[b"PUBLISH", b"jobs", b"last"]);
    assert_eq!(next(&mut c), ":5");

    let want = ["tx0", "tx1", "s0", "s1", "s2", "last"];
    for s in subs.iter_mut() {
        for p in want {
            assert_eq!(next(s), message("jobs", p));
        }
    }
    for p in want {
        assert_eq!(
            next(&mut psub),
            format!("*4\n$8\npmessage\n$3\njo*\n$4\njobs\n${}\n{p}", p.len())
        );
    }
    for p in ["tx0", "tx1", "s0", "s1"] {
        assert_eq!(
            next(&mut ssub),
            format!("*3\n$8\nsmessage\n$4\njobs\n${}\n{p}", p.len())
        );
    }
    // Gone subscribers are not counted.
    for s in subs.iter_mut() {
        s.cmd(&[b"UNSUBSCRIBE"]);
        let _ = next(s);
    }
    c.cmd(&[b"EVAL", script_keyless, b"0", b"after"]);
    assert_eq!(next(&mut c), "*2\n:1\n:1");
    drop(psub);
    drop(ssub);
    common::eventually("closed subscribers leave the count", || {
        c.cmd(&[b"EVAL", script_keyless, b"0", b"after"]);
        next(&mut c) == "*2\n:0\n:0"
    });
}

/// A connection's messages keep their order at every subscriber whether it publishes
/// them plainly, inside MULTI (on its shard or across shards) or from a script, pipelined;
/// and a transaction run on its shard sends its keyspace events before the messages it
/// published after them.
#[test]
fn messages_from_transactions_scripts_and_plain_publish_keep_their_order() {
    let args = ["--shards", "4", "--notify-keyspace-events", "K$"];
    publish_order(&Server::start(
        &[&args[..], &["--appendonly", "no"]].concat(),
    ));
    // Under `appendfsync always` a transaction's events and messages wait for its log
    // record; a plain PUBLISH after them must wait behind them.
    publish_order(&Server::start(
        &[&args[..], &["--appendfsync", "always"]].concat(),
    ));
}

fn publish_order(server: &Server) {
    let key = common::keys_on("o", 0, 4, 1).remove(0);
    let (k1, k2) = (
        common::keys_on("p", 1, 4, 1).remove(0),
        common::keys_on("p", 2, 4, 1).remove(0),
    );
    let mut subs: Vec<Raw> = (0..4).map(|s| server.raw_on_shard(s, 4)).collect();
    let events = format!("__keyspace@0__:{key}");
    for s in subs.iter_mut() {
        s.cmd(&[b"SUBSCRIBE", b"feed", events.as_bytes()]);
        assert!(next(s).starts_with("*3\n$9\nsubscribe"));
        assert!(next(s).starts_with("*3\n$9\nsubscribe"));
    }
    let mut publisher = server.raw_on_shard(0, 4);
    let rounds = 200;
    let mut batch = Vec::new();
    let mut replies = 0;
    let publish = |n: usize| common::encode(&[b"PUBLISH", b"feed", n.to_string().as_bytes()]);
    for r in 0..rounds {
        let n = 4 * r;
        batch.extend(common::encode(&[b"MULTI"]));
        batch.extend(common::encode(&[b"INCR", key.as_bytes()]));
        batch.extend(publish(n));
        batch.extend(common::encode(&[b"EXEC"]));
        batch.extend(publish(n + 1));
        batch.extend(common::encode(&[
            b"EVAL",
            b"redis.call('INCR', KEYS[1]) return redis.call('PUBLISH', 'feed', ARGV[1])",
            b"1",
            key.as_bytes(),
            (n + 2).to_string().as_bytes(),
        ]));
        // Across shards: the connection's shard coordinates and sends the message.
        batch.extend(common::encode(&[b"MULTI"]));
        batch.extend(common::encode(&[b"INCR", k1.as_bytes()]));
        batch.extend(common::encode(&[b"INCR", k2.as_bytes()]));
        batch.extend(publish(n + 3));
        batch.extend(common::encode(&[b"EXEC"]));
        replies += 11;
    }
    publisher.send(&batch);
    for _ in 0..replies {
        let _ = next(&mut publisher);
    }
    // A plain PUBLISH right behind a script on the connection's shard (queued there while
    // the connection's earlier PUBLISH is still answering): the script's message first.
    let mut batch = Vec::new();
    for r in 0..rounds {
        batch.extend(common::encode(&[
            b"PUBLISH",
            b"feed",
            format!("a{r}").as_bytes(),
        ]));
        batch.extend(common::encode(&[
            b"EVAL",
            b"return redis.call('PUBLISH', 'feed', ARGV[1])",
            b"1",
            key.as_bytes(),
            format!("b{r}").as_bytes(),
        ]));
    }
    publisher.send(&batch);
    for _ in 0..2 * rounds {
        let _ = next(&mut publisher);
    }
    // The messages in order; the two keyspace events of each round anywhere among them (a
    // pipelined EXEC may take the lock path, whose events leave from the committing shard).
    let last = |raw: &mut Raw| {
        next(raw)
            .rsplit('\n')
            .next()
            .unwrap_or_default()
            .to_string()
    };
    for (i, s) in subs.iter_mut().enumerate() {
        let (mut n, mut events) = (0, 0);
        while n < 4 * rounds || events < 2 * rounds {
            match last(s) {
                e if e == "incrby" => events += 1,
                m => {
                    assert_eq!(m, n.to_string(), "subscriber {i} of {:?}", server.addr);
                    n += 1;
                }
            }
        }
        for r in 0..rounds {
            let got = [last(s), last(s)];
            assert_eq!(got, [format!("a{r}"), format!("b{r}")], "subscriber {i}");
        }
    }
    // A transaction run on its shard: its keyspace event reaches every subscriber before
    // the message it published after the write, and a plain PUBLISH comes after both
    // (under `always` too, where the first two wait for the log).
    for r in 0..50 {
        for cmd in [&b"MULTI"[..], b"EXEC"] {
            publisher.cmd(&[cmd]);
            if cmd == b"MULTI" {
                publisher.cmd(&[b"INCR", key.as_bytes()]);
                publisher.cmd(&[b"PUBLISH", b"feed", format!("tx{r}").as_bytes()]);
            }
        }
        publisher.cmd(&[b"PUBLISH", b"feed", format!("plain{r}").as_bytes()]);
        // A plain write's event, too, goes before a PUBLISH pipelined behind it, on the
        // write's shard.
        publisher.cmd(&[b"INCR", key.as_bytes()]);
        publisher.cmd(&[b"PUBLISH", b"feed", format!("after{r}").as_bytes()]);
        for _ in 0..7 {
            let _ = next(&mut publisher);
        }
        for (i, s) in subs.iter_mut().enumerate() {
            let got = [last(s), last(s), last(s), last(s), last(s)];
            let want = [
                "incrby".to_string(),
                format!("tx{r}"),
                format!("plain{r}"),
                "incrby".to_string(),
                format!("after{r}"),
            ];
            assert_eq!(got, want, "subscriber {i}");
        }
    }
}

/// Scripts and transactions that run on other shards than the connection's publish in the
/// connection's order too: pipelined, a script on shard 1, a plain PUBLISH, a script on
/// shard 3, a keyless one, one over two shards and a transaction on shard 2 reach every
/// subscriber exactly in the order they were sent, under `appendfsync always` as well.
#[test]
fn messages_from_work_on_other_shards_keep_the_connections_order() {
    for policy in [&["--appendonly", "no"][..], &["--appendfsync", "always"]] {
        let server = Server::start(&[&["--shards", "4"][..], policy].concat());
        let on = |shard| common::keys_on("r", shard, 4, 1).remove(0);
        let (k1, k2, k3) = (on(1), on(2), on(3));
        let mut subs: Vec<Raw> = (0..4).map(|s| server.raw_on_shard(s, 4)).collect();
        for s in subs.iter_mut() {
            s.cmd(&[b"SUBSCRIBE", b"feed"]);
            assert!(next(s).starts_with("*3\n$9\nsubscribe"));
        }
        let mut publisher = server.raw_on_shard(0, 4);
        let script = b"redis.call('INCR', KEYS[1]) return redis.call('PUBLISH', 'feed', ARGV[1])";
        let two = b"redis.call('INCR', KEYS[1]) redis.call('INCR', KEYS[2]) return redis.call('PUBLISH', 'feed', ARGV[1])";
        let keyless = b"return redis.call('PUBLISH', 'feed', ARGV[1])";
        let rounds = 300;
        let mut batch = Vec::new();
        let mut replies = 0;
        let on_key = |key: &str, m: String| {
            common::encode(&[b"EVAL", script, b"1", key.as_bytes(), m.as_bytes()])
        };
        for r in 0..rounds {
            let m = |i: usize| (6 * r + i).to_string();
            batch.extend(on_key(&k1, m(0)));
            batch.extend(common::encode(&[b"PUBLISH", b"feed", m(1).as_bytes()]));
            batch.extend(on_key(&k3, m(2)));
            batch.extend(common::encode(&[b"EVAL", keyless, b"0", m(3).as_bytes()]));
            batch.extend(common::encode(&[
                b"EVAL",
                two,
                b"2",
                k1.as_bytes(),
                k3.as_bytes(),
                m(4).as_bytes(),
            ]));
            batch.extend(common::encode(&[b"MULTI"]));
            batch.extend(common::encode(&[b"INCR", k2.as_bytes()]));
            batch.extend(common::encode(&[b"PUBLISH", b"feed", m(5).as_bytes()]));
            batch.extend(common::encode(&[b"EXEC"]));
            replies += 9;
        }
        publisher.send(&batch);
        for _ in 0..replies {
            let reply = next(&mut publisher);
            assert!(!reply.starts_with('-'), "{reply}");
        }
        for (i, s) in subs.iter_mut().enumerate() {
            for n in 0..6 * rounds {
                assert_eq!(
                    next(s),
                    message("feed", &n.to_string()),
                    "subscriber {i} {policy:?}"
                );
            }
        }
    }
}

/// A script that spins for `ms` milliseconds, then publishes ARGV[1] on ARGV[2].
fn slow_publish(ms: u64) -> String {
    format!(
        "local t=redis.call('TIME') local s=t[1]*1000000+t[2] \
         while true do local n=redis.call('TIME') \
         if n[1]*1000000+n[2]-s > {} then break end end \
         return redis.call('PUBLISH', ARGV[2], ARGV[1])",
        ms * 1000
    )
}

/// A PUBLISH pipelined behind a slow script on another shard leaves after the script's
/// message, and looks up its subscribers then: a client that subscribed while the script
/// ran gets the script's message, that PUBLISH and the next, in order (it got the first
/// and third only, because the PUBLISH's shards were fixed when it was read).
#[test]
fn a_publish_waiting_behind_a_script_reaches_who_subscribed_meanwhile() {
    let server = start();
    let k1 = common::keys_on("w", 1, 4, 1).remove(0);
    let mut early = server.raw_on_shard(3, 4);
    early.cmd(&[b"SUBSCRIBE", b"gap"]);
    assert!(next(&mut early).starts_with("*3\n$9\nsubscribe"));
    let mut publisher = server.raw_on_shard(0, 4);
    // (Finding a connection's shard asks every shard: before the script keeps one busy.)
    let mut late = server.raw_on_shard(2, 4);
    let slow = slow_publish(500);
    let mut batch = common::encode(&[b"EVAL", slow.as_bytes(), b"1", k1.as_bytes(), b"A", b"gap"]);
    batch.extend(common::encode(&[b"PUBLISH", b"gap", b"B"]));
    batch.extend(common::encode(&[b"EXISTS", k1.as_bytes()]));
    let fast = slow_publish(0);
    batch.extend(common::encode(&[
        b"EVAL",
        fast.as_bytes(),
        b"1",
        k1.as_bytes(),
        b"C",
        b"gap",
    ]));
    publisher.send(&batch);
    // While the script spins on shard 1, a client on shard 2 subscribes.
    late.cmd(&[b"SUBSCRIBE", b"gap"]);
    assert!(next(&mut late).starts_with("*3\n$9\nsubscribe"));
    // The subscription is confirmed once every shard knows of it, so after the script;
    // its shard and the publisher's knew at once.
    let replies: Vec<String> = (0..4).map(|_| next(&mut publisher)).collect();
    assert_eq!(replies[1..], [":2", ":0", ":2"]);
    for s in [&mut early, &mut late] {
        for m in ["A", "B", "C"] {
            assert_eq!(next(s), message("gap", m));
        }
    }
}

/// A connection reset right after pipelining a slow script on another shard, a PUBLISH
/// and a keyless script: its messages still arrive in its order (they arrived B C A).
#[test]
fn a_connection_reset_mid_pipeline_keeps_its_order() {
    let server = start();
    let k1 = common::keys_on("x", 1, 4, 1).remove(0);
    let mut subs: Vec<Raw> = (0..4).map(|s| server.raw_on_shard(s, 4)).collect();
    for s in subs.iter_mut() {
        s.cmd(&[b"SUBSCRIBE", b"rst"]);
        assert!(next(s).starts_with("*3\n$9\nsubscribe"));
    }
    let mut publisher = server.raw_on_shard(0, 4);
    let slow = slow_publish(300);
    let mut batch = common::encode(&[b"EVAL", slow.as_bytes(), b"1", k1.as_bytes(), b"A", b"rst"]);
    batch.extend(common::encode(&[b"PUBLISH", b"rst", b"B"]));
    let keyless = b"return redis.call('PUBLISH', 'rst', ARGV[1])";
    batch.extend(common::encode(&[b"EVAL", keyless, b"0", b"C"]));
    let k0 = common::keys_on("x", 0, 4, 1).remove(0);
    batch.extend(common::encode(&[b"SET", k0.as_bytes(), b"read"]));
    publisher.send(&batch);
    // The server has read the whole pipeline (the last write is on the publisher's shard,
    // not behind the busy one) while the script still runs.
    let mut other = server.raw_on_shard(0, 4);
    common::eventually("the pipeline is read", || {
        other.cmd(&[b"GET", k0.as_bytes()]);
        next(&mut other) == "$4\nread"
    });
    socket2::SockRef::from(&publisher.stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(publisher);
    for (i, s) in subs.iter_mut().enumerate() {
        for m in ["A", "B", "C"] {
            assert_eq!(next(s), message("rst", m), "subscriber {i}");
        }
    }
}

/// A key's keyspace events reach every subscriber in the order of its writes, also when a
/// script that wrote it and published ran on another shard than its connection, or on
/// the connection's shard behind the connection's earlier work elsewhere, and a write
/// follows it; the messages keep the connection's order. Under `appendfsync always` too.
#[test]
fn a_keys_events_keep_its_write_order_around_scripts_that_publish() {
    for policy in [&["--appendonly", "no"][..], &["--appendfsync", "always"]] {
        let args = [
            &["--shards", "4", "--notify-keyspace-events", "Kg$"][..],
            policy,
        ]
        .concat();
        let server = Server::start(&args);
        let (k0, k1) = (
            common::keys_on("e", 0, 4, 1).remove(0),
            common::keys_on("e", 1, 4, 1).remove(0),
        );
        let mut subs: Vec<Raw> = (0..4).map(|s| server.raw_on_shard(s, 4)).collect();
        for s in subs.iter_mut() {
            s.cmd(&[b"PSUBSCRIBE", b"__keyspace@0__:e*", b"feed"]);
            assert!(next(s).starts_with("*3\n$10\npsubscribe"));
            assert!(next(s).starts_with("*3\n$10\npsubscribe"));
        }
        let mut publisher = server.raw_on_shard(0, 4);
        let set_then_publish =
            b"redis.call('SET', KEYS[1], ARGV[1]) return redis.call('PUBLISH', 'feed', ARGV[1])";
        let publish_then_set =
            b"local n = redis.call('PUBLISH', 'feed', ARGV[1]) redis.call('SET', KEYS[1], ARGV[1]) return n";
        let rounds = 100;
        let mut batch = Vec::new();
        for r in 0..rounds {
            let (a, b) = (format!("a{r}"), format!("b{r}"));
            // On shard 1, the connection being on shard 0; then a write of the key.
            let eval = |script: &[u8], key: &str, m: &str| {
                common::encode(&[b"EVAL", script, b"1", key.as_bytes(), m.as_bytes()])
            };
            batch.extend(eval(set_then_publish, &k1, &a));
            batch.extend(common::encode(&[b"DEL", k1.as_bytes()]));
            // On shard 0 behind a read on shard 1; then a write of the key.
            batch.extend(common::encode(&[b"GET", k1.as_bytes()]));
            batch.extend(eval(publish_then_set, &k0, &b));
            batch.extend(common::encode(&[b"DEL", k0.as_bytes()]));
        }
        publisher.send(&batch);
        for _ in 0..5 * rounds {
            let reply = next(&mut publisher);
            assert!(!reply.starts_with('-'), "{reply}");
        }
        let (ch1, ch0) = (
            format!("__keyspace@0__:{k1}"),
            format!("__keyspace@0__:{k0}"),
        );
        for (i, s) in subs.iter_mut().enumerate() {
            let (mut on1, mut on0, mut messages) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..6 * rounds {
                let m = next(s);
                let parts: Vec<&str> = m.split('\n').collect();
                let (channel, payload) = (parts[6].to_string(), parts[8].to_string());
                match channel {
                    c if c == ch1 => on1.push(payload),
                    c if c == ch0 => on0.push(payload),
                    _ => messages.push(payload),
                }
            }
            let history: Vec<String> = (0..2 * rounds)
                .map(|n| if n % 2 == 0 { "set" } else { "del" }.to_string())
                .collect();
            assert_eq!(on1, history, "subscriber {i}, {policy:?}");
            assert_eq!(on0, history, "subscriber {i}, {policy:?}");
            let want: Vec<String> = (0..rounds)
                .flat_map(|r| [format!("a{r}"), format!("b{r}")])
                .collect();
            assert_eq!(messages, want, "subscriber {i}, {policy:?}");
        }
        // A plain PUBLISH held behind the connection's write on its shard (queued there
        // behind a read elsewhere) follows the write's event, also where the PUBLISH has
        // no subscriber on the connection's shard.
        let s0 = common::keys_on("s", 0, 4, 1).remove(0);
        let mut solo = server.raw_on_shard(2, 4);
        solo.cmd(&[b"PSUBSCRIBE", b"__keyspace@0__:s*", b"solo"]);
        assert!(next(&mut solo).starts_with("*3\n$10\npsubscribe"));
        assert!(next(&mut solo).starts_with("*3\n$10\npsubscribe"));
        let mut batch = Vec::new();
        for r in 0..rounds {
            batch.extend(common::encode(&[b"GET", k1.as_bytes()]));
            batch.extend(common::encode(&[b"SET", s0.as_bytes(), b"v"]));
            batch.extend(common::encode(&[
                b"PUBLISH",
                b"solo",
                format!("m{r}").as_bytes(),
            ]));
        }
        publisher.send(&batch);
        for _ in 0..3 * rounds {
            let _ = next(&mut publisher);
        }
        for r in 0..rounds {
            let got: Vec<String> = (0..2)
                .map(|_| {
                    next(&mut solo)
                        .rsplit('\n')
                        .next()
                        .unwrap_or_default()
                        .to_string()
                })
                .collect();
            assert_eq!(
                got,
                ["set".to_string(), format!("m{r}")],
                "round {r}, {policy:?}"
            );
        }
    }
}

/// A write that keeps the key's deadline raises no `expire` event, as in Redis: INCR on a
/// rate-limit counter with a TTL, INCRBYFLOAT, SET KEEPTTL (each announced a TTL change
/// that never happened).
#[test]
fn keeping_a_deadline_is_no_expire_event() {
    let (server, mut ev) = with_keyevents(&["--shards", "1", "--notify-keyspace-events", "KEA"]);
    let c = &mut server.client();
    q::<()>(c, &["SET", "rate", "1", "EX", "100"]).unwrap();
    q::<i64>(c, &["INCR", "rate"]).unwrap();
    q::<i64>(c, &["DECRBY", "rate", "1"]).unwrap();
    q::<String>(c, &["INCRBYFLOAT", "rate", "0.5"]).unwrap();
    q::<()>(c, &["SET", "rate", "9", "KEEPTTL"]).unwrap();
    q::<i64>(c, &["DEL", "rate"]).unwrap();
    expect_keyevents(
        &mut ev,
        &[
            ("set", "rate"),
            ("expire", "rate"),
            ("incrby", "rate"),
            ("incrby", "rate"),
            ("incrbyfloat", "rate"),
            ("set", "rate"),
            ("del", "rate"),
        ],
    );
}

/// Keep shard `shard` (of `shards`) busy with pipelined INCRs from another thread, so that
/// mail piles up between its turns; call the result to stop.
fn keep_shard_busy(server: &Server, shard: u64, shards: u64) -> impl FnOnce() {
    let busy_key = common::keys_on("busy", shard as usize, shards as usize, 1)[0].clone();
    let mut load = server.raw_on_shard(shard, shards);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let loader = std::thread::spawn(move || {
        let pipeline = common::encode(&[b"INCR", busy_key.as_bytes()]).repeat(2000);
        let mut chunk = vec![0u8; 1 << 16];
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            load.send(&pipeline);
            let mut replies = 0;
            while replies < 2000 {
                let n = std::io::Read::read(&mut load.stream, &mut chunk).unwrap();
                replies += chunk[..n].iter().filter(|&&b| b == b'\n').count();
            }
        }
    });
    move || {
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        loader.join().unwrap();
    }
}

/// A client's writes, each sent after the previous reply, are heard in that order even
/// when they alternate between keys of two other shards and the subscriber's shard is
/// busy: its shard took its inboxes in shard order, so the later write's event (from
/// the lower-numbered shard) was heard first (128-210 of 2000 here).
#[test]
fn a_clients_writes_on_other_shards_are_heard_in_order() {
    let server = Server::start(&[
        "--shards",
        "4",
        "--appendonly",
        "no",
        "--notify-keyspace-events",
        "KEA",
    ]);
    let mut sub = server.raw_on_shard(2, 4);
    sub.cmd(&[b"SUBSCRIBE", b"__keyevent@0__:set"]);
    let _ = sub.reply();
    let pairs = 500;
    let late = common::keys_on("late", 3, 4, pairs);
    let early = common::keys_on("early", 1, 4, pairs);
    // Something keeps the subscriber's shard busy, so mail piles up between its turns.
    let load = keep_shard_busy(&server, 2, 4);
    let mut c = server.raw_on_shard(0, 4);
    let mut order = Vec::new();
    for i in 0..pairs {
        for key in [&late[i], &early[i]] {
            c.cmd(&[b"SET", key.as_bytes(), b"v"]);
            assert_eq!(c.reply_str(), "+OK\r\n");
            order.push(key.clone());
        }
    }
    load();
    let heard: Vec<String> = (0..order.len())
        .map(|_| {
            let m = next(&mut sub);
            m.rsplit('\n').next().unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!(heard, order);
}

/// A subscriber over its soft output limit for the whole period is dropped when the
/// period ends, even if nothing more is published to it (as Redis's clientsCron does); it
/// stayed connected, holding its output, until the next message.
#[test]
fn a_subscriber_over_its_soft_limit_is_dropped_when_the_period_ends() {
    let server = start();
    let p = &mut server.client();
    let _: () = q(
        p,
        &[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "pubsub 0 256kb 1",
        ],
    )
    .unwrap();
    let mut slow = server.raw();
    slow.cmd(&[b"SUBSCRIBE", b"burst"]);
    let _ = slow.reply();
    // One burst, well past what the kernel's socket buffers absorb; then silence.
    let payload = "x".repeat(1 << 20);
    for _ in 0..24 {
        assert_eq!(q::<i64>(p, &["PUBLISH", "burst", &payload]).unwrap(), 1);
    }
    common::eventually("the subscriber is dropped after its soft period", || {
        let info: String = q(p, &["INFO", "stats"]).unwrap();
        info.contains("client_output_buffer_limit_disconnections:1")
    });
    assert!(slow.closed());
}

/// A soft-limit period that began before the limits were lifted does not drop the
/// client later: with the limits off the period ends (as in Redis). It dropped a client
/// at once on its next burst, the limit back on, however fast it read.
#[test]
fn lifting_the_soft_limit_ends_its_period() {
    let server = start();
    let p = &mut server.client();
    let limit = |p: &mut redis::Connection, v: &str| {
        q::<()>(p, &["CONFIG", "SET", "client-output-buffer-limit", v]).unwrap();
    };
    limit(p, "pubsub 0 256kb 2");
    let mut slow = server.raw();
    slow.cmd(&[b"SUBSCRIBE", b"burst"]);
    let _ = slow.reply();
    let payload = "x".repeat(1 << 20);
    let burst = |p: &mut redis::Connection| {
        for _ in 0..24 {
            assert_eq!(q::<i64>(p, &["PUBLISH", "burst", &payload]).unwrap(), 1);
        }
    };
    burst(p);
    limit(p, "pubsub 0 0 0");
    for _ in 0..24 {
        let _ = slow.reply();
    }
    // Past the old period's end (2 s after the first burst).
    let lifted = std::time::Instant::now();
    common::eventually("the old period is over", || {
        lifted.elapsed() > Duration::from_millis(2200)
    });
    limit(p, "pubsub 0 256kb 2");
    burst(p);
    let info: String = q(p, &["INFO", "stats"]).unwrap();
    assert!(
        info.contains("client_output_buffer_limit_disconnections:0"),
        "dropped by a period that began before the limits were lifted"
    );
    for _ in 0..24 {
        let _ = slow.reply();
    }
}

/// While a script runs past lua-time-limit its shard sends the replies it owes; a reply
/// written before the script never leaves before the keyspace event of the write it
/// answers (the event waited for the script's end, so a client that heard the reply and
/// wrote elsewhere had its event heard first).
#[test]
fn replies_sent_during_a_long_script_follow_their_events() {
    let server = Server::start(&[
        "--shards",
        "4",
        "--appendonly",
        "no",
        "--notify-keyspace-events",
        "KEA",
        "--lua-time-limit",
        "50",
    ]);
    let mut sub = server.raw_on_shard(2, 4);
    sub.cmd(&[b"SUBSCRIBE", b"__keyevent@0__:set"]);
    let _ = sub.reply();
    let first = common::keys_on("first", 0, 4, 1)[0].clone();
    let then = common::keys_on("then", 3, 4, 1)[0].clone();
    let mut x = server.raw_on_shard(0, 4);
    let mut z = server.raw_on_shard(3, 4);
    let script = "local t=redis.call('TIME') local t0=t[1]*1000000+t[2] \
        while true do local n=redis.call('TIME') \
        if n[1]*1000000+n[2]-t0 > 600000 then break end end return 1";
    let mut pipeline = common::encode(&[b"SET", first.as_bytes(), b"v"]);
    pipeline.extend(common::encode(&[b"EVAL", script.as_bytes(), b"0"]));
    x.send(&pipeline);
    assert_eq!(x.reply_str(), "+OK\r\n");
    z.cmd(&[b"SET", then.as_bytes(), b"v"]);
    assert_eq!(z.reply_str(), "+OK\r\n");
    assert_eq!(x.reply_str(), ":1\r\n");
    let heard = next(&mut sub);
    assert!(heard.ends_with(&first), "{heard}");
    assert!(next(&mut sub).ends_with(&then));
}
