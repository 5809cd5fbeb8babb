//! Bounded memory: output backpressure, output and query buffer limits, limits before
//! AUTH, maxclients fitted to the open-file limit. Nothing acknowledged is lost and the
//! server keeps serving everyone else.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{encode, q, Server};

/// A field of the single `CLIENT LIST` line whose `name=` is `name`.
fn client_field(c: &mut redis::Connection, name: &str, field: &str) -> Option<u64> {
    let list: String = q(c, &["CLIENT", "LIST"]).ok()?;
    let line = list
        .lines()
        .find(|l| l.contains(&format!(" name={name} ")))?;
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(&format!("{field}=")))
        .and_then(|v| v.parse().ok())
}

fn rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmRSS:")
}

/// A `/proc/PID/status` field in kB (`VmRSS:`, `VmHWM:` for the peak).
fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Issue item: a client pipelining 2 M GETs of 1 KB without reading grew the server by
/// 2 GB. With backpressure the server stops reading that client while its output is
/// full; once the client reads, every reply arrives, in order, none lost.
#[test]
fn a_client_that_does_not_read_is_paused_not_buffered() {
    let server = Server::start(&["--shards", "1"]);
    let c = &mut server.client();
    q::<()>(c, &["SET", "big", &"v".repeat(1024)]).unwrap();
    let before = rss_kb(server.child.id());
    let mut slow = server.raw();
    slow.cmd(&[b"CLIENT", b"SETNAME", b"slow"]);
    assert_eq!(slow.reply_str(), "+OK\r\n");
    // 200k GETs (40 MB of replies) written from another thread: the writer blocks once
    // the server stops reading, which is the point.
    let mut writer = slow.stream.try_clone().unwrap();
    let gets = 200_000;
    let sender = std::thread::spawn(move || {
        let one = encode(&[b"GET", b"big"]);
        let batch: Vec<u8> = one.repeat(1000);
        for _ in 0..gets / 1000 {
            if writer.write_all(&batch).is_err() {
                return false;
            }
        }
        true
    });
    // Wait until the server has paused the client (its output is past the threshold).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut omem = 0;
    while Instant::now() < deadline {
        omem = client_field(c, "slow", "omem").unwrap_or(0);
        if omem >= 4 << 20 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(omem >= 4 << 20, "the client's output filled up ({omem})");
    std::thread::sleep(Duration::from_millis(300));
    let omem = client_field(c, "slow", "omem").unwrap_or(0);
    assert!(
        omem < 16 << 20,
        "output stayed bounded while not read: {omem}"
    );
    let grown = rss_kb(server.child.id()).saturating_sub(before);
    assert!(grown < 64 * 1024, "server grew by {grown} KB");
    // Other clients are served meanwhile.
    assert_eq!(q::<String>(c, &["PING"]).unwrap(), "PONG");
    // Now read everything: every reply arrives, complete and in order.
    let reply = format!("$1024\r\n{}\r\n", "v".repeat(1024)).into_bytes();
    let mut want = gets * reply.len();
    let mut buf = vec![0u8; 1 << 16];
    let mut carry = Vec::new();
    while want > 0 {
        let n = slow.stream.read(&mut buf).expect("read replies");
        assert!(
            n > 0,
            "connection closed with {want} bytes of replies missing"
        );
        carry.extend_from_slice(&buf[..n]);
        let whole = carry.len() / reply.len() * reply.len();
        for chunk in carry[..whole].chunks(reply.len()) {
            assert_eq!(chunk, &reply[..], "replies intact and in order");
        }
        carry.drain(..whole);
        want = want.saturating_sub(n);
    }
    assert!(sender.join().unwrap(), "every request was written");
}

/// `client-output-buffer-limit normal` drops a client past its hard limit; others stay.
#[test]
fn the_normal_output_limit_disconnects_like_redis() {
    let server = Server::start(&[
        "--shards",
        "1",
        "--client-output-buffer-limit",
        "normal 1mb 0 0",
    ]);
    let c = &mut server.client();
    q::<()>(c, &["SET", "big", &"v".repeat(3 << 20)]).unwrap();
    let mut raw = server.raw();
    raw.cmd(&[b"GET", b"big"]);
    assert!(raw.closed(), "a 3 MB reply passes a 1 MB hard limit");
    assert_eq!(q::<String>(c, &["PING"]).unwrap(), "PONG");
    // Set at run time to a few bytes: as in Redis, the first 16 KB of output (its static
    // reply buffer) do not count, so short replies pass and a 3 MB one does not.
    let mut tiny = server.raw();
    tiny.cmd(&[
        b"CONFIG",
        b"SET",
        b"client-output-buffer-limit",
        b"normal 4 5 6",
    ]);
    assert_eq!(tiny.reply_str(), "+OK\r\n");
    tiny.cmd(&[b"PING"]);
    assert_eq!(tiny.reply_str(), "+PONG\r\n");
    tiny.cmd(&[b"GET", b"big"]);
    assert!(tiny.closed(), "a 3 MB reply passes a 4-byte hard limit");
}

/// Before AUTH: Redis's limits on arguments, and PING needs AUTH too.
#[test]
fn unauthenticated_clients_cannot_make_the_server_buffer() {
    let server = Server::start(&["--requirepass", "pw"]);
    let mut raw = server.raw();
    raw.send(b"*2\r\n$3\r\nSET\r\n$400000000\r\n");
    assert_eq!(
        raw.reply_str(),
        "-ERR Protocol error: unauthenticated bulk length\r\n"
    );
    assert!(raw.closed());
    let mut raw = server.raw();
    raw.send(b"*11\r\n");
    assert_eq!(
        raw.reply_str(),
        "-ERR Protocol error: unauthenticated multibulk length\r\n"
    );
    assert!(raw.closed());
    let mut raw = server.raw();
    raw.cmd(&[b"PING"]);
    assert_eq!(raw.reply_str(), "-NOAUTH Authentication required.\r\n");
    raw.cmd(&[b"AUTH", b"pw"]);
    assert_eq!(raw.reply_str(), "+OK\r\n");
    raw.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$20000\r\n");
    raw.send(&vec![b'x'; 20000]);
    raw.send(b"\r\n");
    assert_eq!(raw.reply_str(), "+OK\r\n", "after AUTH big values are fine");
}

/// Issue item: a 50 MB SET passed a 10 MB query buffer limit.
#[test]
fn the_query_buffer_limit_holds_for_large_values() {
    let server = Server::start(&["--client-query-buffer-limit", "10mb"]);
    let mut raw = server.raw();
    raw.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$50000000\r\n");
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..50 {
        if raw.stream.write_all(&chunk).is_err() {
            break;
        }
    }
    assert!(raw.closed(), "dropped instead of buffering 50 MB");
    let c = &mut server.client();
    assert_eq!(q::<Option<String>>(c, &["GET", "k"]).unwrap(), None);
    // Under the limit works.
    q::<()>(c, &["SET", "k", &"y".repeat(5 << 20)]).unwrap();
    assert_eq!(q::<usize>(c, &["STRLEN", "k"]).unwrap(), 5 << 20);
}

/// maxclients above the open-file limit is lowered (with a warning) instead of failing
/// accepts later.
#[test]
fn maxclients_is_fitted_to_the_open_file_limit() {
    let server = Server::start(&["--maxclients", "100000000"]);
    let c = &mut server.client();
    let got: Vec<String> = q(c, &["CONFIG", "GET", "maxclients"]).unwrap();
    let n: u64 = got[1].parse().unwrap();
    assert!(n < 100_000_000, "lowered to fit RLIMIT_NOFILE: {n}");
    assert!(n > 0);
}

/// KEYS over a big keyspace walks it in bounded steps: a client on the same shard keeps
/// getting answers while it runs (before, the whole walk ran in one turn).
#[test]
fn keys_over_a_big_keyspace_does_not_stall_the_shard() {
    let server = Server::start(&["--shards", "1"]);
    let c = &mut server.client();
    for batch in 0..300 {
        let mut mset = redis::cmd("MSET");
        for i in 0..1000 {
            mset.arg(format!("key:{batch}:{i}")).arg("v");
        }
        let () = mset.query(c).unwrap();
    }
    let mut walker = server.raw();
    // A pattern that costs real work per key, so the walk spans many turns.
    walker.cmd(&[b"KEYS", b"*k*e*y*:*1*2*3*:*9*8*7*x"]);
    walker.stream.set_nonblocking(true).unwrap();
    let mut answered_meanwhile = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut probe = [0u8; 1];
    loop {
        assert_eq!(q::<String>(c, &["PING"]).unwrap(), "PONG");
        match walker.stream.peek(&mut probe) {
            Ok(_) => break, // KEYS answered
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => answered_meanwhile += 1,
            Err(e) => panic!("{e}"),
        }
        assert!(Instant::now() < deadline, "KEYS never answered");
    }
    walker.stream.set_nonblocking(false).unwrap();
    assert_eq!(walker.reply_str(), "*0\r\n");
    assert!(
        answered_meanwhile >= 3,
        "only {answered_meanwhile} PINGs answered while KEYS walked 300k keys"
    );
}

/// Issue item: a 200,000-pair MSET (6.6 MB) arriving in 1,500-byte pieces took 3.8–6 s
/// (quadratic re-parsing). Parsing now resumes, so it is linear in the bytes.
#[test]
fn a_huge_mset_in_small_pieces_is_parsed_once() {
    let server = Server::start(&["--shards", "1"]);
    let mut args: Vec<Vec<u8>> = vec![b"MSET".to_vec()];
    for i in 0..200_000 {
        args.push(format!("k{i}").into_bytes());
        args.push(b"v".to_vec());
    }
    let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
    let wire = encode(&refs);
    let mut raw = server.raw();
    let t = Instant::now();
    for piece in wire.chunks(1500) {
        raw.send(piece);
    }
    assert_eq!(raw.reply_str(), "+OK\r\n");
    let took = t.elapsed();
    let c = &mut server.client();
    assert_eq!(q::<u64>(c, &["DBSIZE"]).unwrap(), 200_000);
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

/// Replies queued behind one still waiting on another shard count toward the output
/// limit: a pipeline of local GETs behind a GET whose shard is busy in a script is cut at
/// the hard limit while that reply is still owed, not once it arrives.
#[test]
fn replies_queued_behind_a_waiting_reply_count_toward_the_output_limit() {
    let server = Server::start(&[
        "--shards",
        "2",
        "--lua-time-limit",
        "30000",
        "--client-output-buffer-limit",
        "normal 1mb 0 0",
    ]);
    let c = &mut server.client();
    let near = &common::keys_on("near", 0, 2, 1)[0];
    let far = &common::keys_on("far", 1, 2, 1)[0];
    q::<()>(c, &["SET", near, &"v".repeat(1024)]).unwrap();
    // Keep the far shard busy for 4 s in a script.
    let url = server.url();
    let far_key = far.clone();
    let script = std::thread::spawn(move || {
        let mut s = redis::Client::open(url).unwrap().get_connection().unwrap();
        let busy = "local s = redis.call('TIME') local t0 = s[1] * 1000000 + s[2] \
                    while true do local t = redis.call('TIME') \
                    if t[1] * 1000000 + t[2] - t0 > 4000000 then break end end \
                    return redis.call('GET', KEYS[1])";
        let started = Instant::now();
        let _: Option<String> = redis::cmd("EVAL")
            .arg(busy)
            .arg(1)
            .arg(&far_key)
            .query(&mut s)
            .unwrap();
        started.elapsed()
    });
    std::thread::sleep(Duration::from_millis(300));
    // GET far waits on the busy shard; 4000 GETs of 1 KB (4 MB) queue behind it.
    let mut raw = server.raw_on_shard(0, 2);
    let mut pipeline = encode(&[b"GET", far.as_bytes()]);
    pipeline.extend(encode(&[b"GET", near.as_bytes()]).repeat(4000));
    let sent = Instant::now();
    let mut writer = raw.stream.try_clone().unwrap();
    let w = std::thread::spawn(move || {
        let _ = writer.write_all(&pipeline);
    });
    assert!(
        raw.closed(),
        "4 MB queued behind a waiting reply passes 1 MB"
    );
    let took = sent.elapsed();
    assert!(
        took < Duration::from_millis(2500),
        "dropped only after {took:?}: the queued replies were not counted while the \
         reply before them waited"
    );
    let script_took = script.join().unwrap();
    assert!(script_took >= Duration::from_secs(3), "{script_took:?}");
    let _ = w.join();
    assert_eq!(q::<String>(c, &["PING"]).unwrap(), "PONG");
}

/// A script that publishes in a loop to a channel nobody listens to keeps nothing: it
/// grew the server by the whole volume (1 GB for 1 M messages of 1 KB) before.
#[test]
fn a_script_publishing_to_nobody_keeps_nothing() {
    let server = Server::start(&["--shards", "1", "--appendonly", "no"]);
    let c = &mut server.client();
    let before = status_kb(server.child.id(), "VmHWM:");
    let script = "for i=1,100000 do redis.call('PUBLISH','nobody',string.rep('a',1000)) end return redis.call('PUBLISH','nobody','x')";
    assert_eq!(q::<i64>(c, &["EVAL", script, "0"]).unwrap(), 0);
    let peak = status_kb(server.child.id(), "VmHWM:");
    let grown_mb = peak.saturating_sub(before) / 1024;
    assert!(grown_mb < 40, "the server grew by {grown_mb} MB");
    // With a subscriber, every message still arrives.
    let mut sub = server.raw();
    sub.cmd(&[b"SUBSCRIBE", b"some"]);
    let _ = sub.reply();
    let script = "for i=1,100 do redis.call('PUBLISH','some',i) end return 1";
    assert_eq!(q::<i64>(c, &["EVAL", script, "0"]).unwrap(), 1);
    for i in 1..=100 {
        let m = sub.reply_str();
        assert!(m.ends_with(&format!("\r\n{i}\r\n")), "{m}");
    }
}

/// For the flooding tests (`--shards 2`): a subscriber that will be flooded and one that
/// will not, both on shard 1 and subscribed with `flooded` and `calm`, and a client on
/// shard 0 to run the script.
fn flood_clients(
    server: &Server,
    flooded: &[&[u8]],
    calm: &[&[u8]],
) -> (common::Raw, common::Raw, common::Raw) {
    let mut f = server.raw_on_shard(1, 2);
    let mut k = server.raw_on_shard(1, 2);
    let c = server.raw_on_shard(0, 2);
    f.cmd(flooded);
    let _ = f.reply();
    k.cmd(calm);
    let _ = k.reply();
    (f, k, c)
}

/// A script that publishes in a loop to a subscriber that never reads keeps about the
/// pubsub output limit (32 MB), not everything: it kept 300 MB for this one until it
/// ended. That subscriber is dropped as the limit drops it (as Redis drops it), the
/// counter says so, and a subscriber of another channel gets every message the same
/// script sent it, across shards.
#[test]
fn a_script_flooding_one_subscriber_keeps_about_the_pubsub_limit() {
    let server = Server::start(&["--shards", "2", "--appendonly", "no"]);
    let (mut flooded, mut calm, mut c) =
        flood_clients(&server, &[b"SUBSCRIBE", b"flood"], &[b"SUBSCRIBE", b"calm"]);
    let before = status_kb(server.child.id(), "VmHWM:");
    let script = "redis.call('PUBLISH','calm','first') \
        for i=1,300000 do redis.call('PUBLISH','flood',string.rep('a',1000)) end \
        redis.call('PUBLISH','calm','last') return 1";
    c.cmd(&[b"EVAL", script.as_bytes(), b"0"]);
    assert_eq!(c.reply_str(), ":1\r\n");
    let grown_mb = status_kb(server.child.id(), "VmHWM:").saturating_sub(before) / 1024;
    assert!(grown_mb < 150, "the server grew by {grown_mb} MB");
    assert!(flooded.closed(), "the flooded subscriber was not dropped");
    assert!(calm.reply_str().ends_with("$4\r\ncalm\r\n$5\r\nfirst\r\n"));
    assert!(calm.reply_str().ends_with("$4\r\ncalm\r\n$4\r\nlast\r\n"));
    c.cmd(&[b"INFO", b"stats"]);
    let info = c.reply_str();
    assert!(
        info.contains("client_output_buffer_limit_disconnections:1\r\n"),
        "{info}"
    );
}

/// The same for keyspace events and a pattern: a script's 250k SETs of a 1 KB key, heard
/// only by a pattern subscriber that never reads, keep about the limit (they kept 260 MB),
/// and that subscriber is dropped; a subscriber of another event still hears it.
#[test]
fn a_script_flooding_a_pattern_with_events_keeps_about_the_pubsub_limit() {
    let server = Server::start(&[
        "--shards",
        "2",
        "--appendonly",
        "no",
        "--notify-keyspace-events",
        "KEA",
    ]);
    let key = "k".repeat(1000);
    let (mut flooded, mut calm, mut c) = flood_clients(
        &server,
        &[b"PSUBSCRIBE", b"__key*__:*"],
        &[b"SUBSCRIBE", b"__keyevent@0__:del"],
    );
    let before = status_kb(server.child.id(), "VmHWM:");
    let script = "for i=1,250000 do redis.call('SET', KEYS[1], i) end \
        redis.call('DEL', KEYS[1]) return 1";
    c.cmd(&[b"EVAL", script.as_bytes(), b"1", key.as_bytes()]);
    assert_eq!(c.reply_str(), ":1\r\n");
    let grown_mb = status_kb(server.child.id(), "VmHWM:").saturating_sub(before) / 1024;
    assert!(grown_mb < 150, "the server grew by {grown_mb} MB");
    assert!(flooded.closed(), "the flooded subscriber was not dropped");
    assert!(calm
        .reply_str()
        .ends_with(&format!("${}\r\n{key}\r\n", key.len())));
}

/// With keyspace notifications on and nobody listening, a script's writes keep no events
/// (each write kept one, with a copy of its key, until the script ended).
#[test]
fn keyspace_events_for_nobody_are_not_kept() {
    let server = Server::start(&[
        "--shards",
        "1",
        "--appendonly",
        "no",
        "--notify-keyspace-events",
        "KEA",
    ]);
    let c = &mut server.client();
    let before = status_kb(server.child.id(), "VmHWM:");
    let key = "k".repeat(200);
    let script = "for i=1,400000 do redis.call('SET', KEYS[1], i) end return 1";
    assert_eq!(q::<i64>(c, &["EVAL", script, "1", &key]).unwrap(), 1);
    let grown_mb = status_kb(server.child.id(), "VmHWM:").saturating_sub(before) / 1024;
    assert!(grown_mb < 40, "the server grew by {grown_mb} MB");
    // A listener hears every write again.
    let mut sub = server.raw();
    sub.cmd(&[b"SUBSCRIBE", b"__keyevent@0__:set"]);
    let _ = sub.reply();
    let three = "for i=1,3 do redis.call('SET', KEYS[1], i) end return 1";
    assert_eq!(q::<i64>(c, &["EVAL", three, "1", "k"]).unwrap(), 1);
    for _ in 0..3 {
        assert!(sub.reply_str().ends_with("\r\n$1\r\nk\r\n"));
    }
}

/// Read and drop `n` bytes from `raw` (many replies at once, without parsing each).
fn skip_bytes(raw: &mut common::Raw, mut n: usize) {
    let mut chunk = vec![0u8; 1 << 16];
    while n > 0 {
        let want = n.min(chunk.len());
        let got = raw.stream.read(&mut chunk[..want]).expect("read");
        assert!(got > 0, "closed with {n} bytes to go");
        n -= got;
    }
}

/// Pub/sub bookkeeping costs linear time in the number of subscriptions: a SUBSCRIBE of
/// 100k channels took 13-29 s (each acknowledgement walked every pending announcement),
/// PUBSUB CHANNELS over them 48 s (each shard's names checked against a list), and each
/// message delivered on that shard walked all its subscriptions for patterns (40k
/// messages: ~10 s). Each stalled the shard's other clients as long.
#[test]
fn many_subscriptions_cost_linear_time() {
    let server = Server::start(&["--shards", "2", "--appendonly", "no"]);
    let mut sub = server.raw_on_shard(0, 2);
    let mut c = server.raw_on_shard(1, 2);
    let n = 100_000;
    let names: Vec<String> = (0..n).map(|i| format!("ch{i}")).collect();
    let mut args: Vec<&[u8]> = vec![b"SUBSCRIBE"];
    args.extend(names.iter().map(|n| n.as_bytes()));
    let started = Instant::now();
    sub.send(&encode(&args));
    // One confirmation per channel: `*3 $9 subscribe $len name :count`.
    let confirmations: usize = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let count = (i + 1).to_string();
            4 + 4 + 11 + format!("${}\r\n", name.len()).len() + name.len() + 2 + 1 + count.len() + 2
        })
        .sum();
    skip_bytes(&mut sub, confirmations);
    let subscribe = started.elapsed();
    let started = Instant::now();
    c.cmd(&[b"PUBSUB", b"CHANNELS"]);
    let listed = c.reply();
    assert!(listed.starts_with(format!("*{n}\r\n").as_bytes()));
    let channels = started.elapsed();
    let started = Instant::now();
    let publishes = 40_000;
    c.send(&encode(&[b"PUBLISH", b"ch7", b"m"]).repeat(publishes));
    let frame = b"*3\r\n$7\r\nmessage\r\n$3\r\nch7\r\n$1\r\nm\r\n";
    skip_bytes(&mut sub, frame.len() * publishes);
    let delivered = started.elapsed();
    skip_bytes(&mut c, b":1\r\n".len() * publishes);
    for (what, took) in [
        ("SUBSCRIBE", subscribe),
        ("PUBSUB CHANNELS", channels),
        ("40k messages", delivered),
    ] {
        assert!(took < Duration::from_secs(6), "{what} took {took:?}");
    }
    sub.cmd(&[b"PING"]);
    skip_bytes(&mut sub, b"*2\r\n$4\r\npong\r\n$0\r\n\r\n".len());
}

/// A script's overflow mark leaves with its keyspace events, not behind its messages: a
/// subscriber that reads everything, flooded by a script that ran while an earlier
/// script of the same connection still ran elsewhere, could unsubscribe before the mark
/// arrived and silently miss everything let go (review of the bound).
#[test]
fn a_flooded_subscriber_cannot_dodge_its_overflow_mark() {
    let server = Server::start(&[
        "--shards",
        "2",
        "--appendonly",
        "no",
        "--notify-keyspace-events",
        "KA",
    ]);
    let far = common::keys_on("busy", 1, 2, 1)[0].clone();
    let near = common::keys_on(&"k".repeat(1000), 0, 2, 1)[0].clone();
    let mut s = server.raw_on_shard(0, 2);
    let mut c = server.raw_on_shard(0, 2);
    s.cmd(&[b"PSUBSCRIBE", b"__keyspace@0__:*"]);
    let _ = s.reply();
    // It reads everything (so its output limit never drops it) and unsubscribes as soon
    // as the first event is in; it reports whether the server dropped it.
    let mut reader = s.stream.try_clone().unwrap();
    let (first_tx, first_rx) = std::sync::mpsc::channel();
    let drained = std::thread::spawn(move || {
        let mut chunk = vec![0u8; 1 << 16];
        let mut told = false;
        loop {
            match reader.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) if !told => {
                    told = true;
                    let _ = first_tx.send(());
                }
                Ok(_) => {}
                Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
            }
        }
    });
    let busy = "local t=redis.call('TIME') local t0=t[1]*1000000+t[2] \
        while true do local n=redis.call('TIME') \
        if n[1]*1000000+n[2]-t0 > 1500000 then break end end return 1";
    let flood = "for i=1,100000 do redis.call('SET', KEYS[1], i) end return 1";
    let mut pipeline = encode(&[b"EVAL", busy.as_bytes(), b"1", far.as_bytes()]);
    pipeline.extend(encode(&[b"EVAL", flood.as_bytes(), b"1", near.as_bytes()]));
    c.send(&pipeline);
    // The first event arrives while the busy script still runs on the other shard (or
    // the subscriber is dropped first: then the reader is gone).
    let heard = first_rx.recv_timeout(common::DEADLINE);
    assert!(
        !matches!(heard, Err(std::sync::mpsc::RecvTimeoutError::Timeout)),
        "nothing arrived"
    );
    let _ = s.stream.write_all(&encode(&[b"PUNSUBSCRIBE"]));
    assert_eq!(c.reply_str(), ":1\r\n");
    assert_eq!(c.reply_str(), ":1\r\n");
    assert!(
        drained.join().unwrap(),
        "the flooded subscriber unsubscribed instead of being dropped"
    );
}
