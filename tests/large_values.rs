//! Large values through the real server: the engine receives the body of a large request
//! straight into its reassembly buffer ("direct" receives), and GET must return exactly
//! what was SET, however the request was split and whatever surrounds it on the wire.

mod common;

use std::io::Write;
use std::thread;
use std::time::Duration;

use common::{encode, Raw, Server};

fn value(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn bulk(v: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", v.len()).into_bytes();
    out.extend_from_slice(v);
    out.extend_from_slice(b"\r\n");
    out
}

/// Send `wire` in pieces of `piece` bytes, pausing after every `every` pieces.
fn send_in_pieces(raw: &mut Raw, wire: &[u8], piece: usize, every: usize) {
    for (i, p) in wire.chunks(piece).enumerate() {
        raw.stream.write_all(p).expect("write");
        if every > 0 && i % every == every - 1 {
            thread::sleep(Duration::from_millis(3));
        }
    }
}

const SIZES: [usize; 9] = [
    16 * 1024,
    32 * 1024 - 1,
    64 * 1024,
    64 * 1024 + 1,
    100_000,
    256 * 1024,
    700_001,
    1 << 20,
    3 << 20,
];

#[test]
fn get_returns_exactly_what_set_stored_however_it_arrived() {
    let server = Server::start(&["--shards", "1"]);
    let mut raw = server.raw();
    for (i, &len) in SIZES.iter().enumerate() {
        let v = value(len, i as u64);
        let key = format!("k{i}");
        let set = encode(&[b"SET", key.as_bytes(), &v]);
        match i % 3 {
            0 => raw.send(&set),
            1 => send_in_pieces(&mut raw, &set, 1500, 8),
            _ => send_in_pieces(&mut raw, &set, 60_000, 1),
        }
        assert_eq!(raw.reply(), b"+OK\r\n", "SET of {len} bytes");
        raw.cmd(&[b"GET", key.as_bytes()]);
        assert!(raw.reply() == bulk(&v), "GET of {len} bytes differs");
    }
    // Everything still there, and a value split mid-way by pauses compares equal too.
    for (i, &len) in SIZES.iter().enumerate() {
        raw.cmd(&[b"STRLEN", format!("k{i}").as_bytes()]);
        assert_eq!(raw.reply(), format!(":{len}\r\n").into_bytes());
    }
}

#[test]
fn large_and_small_commands_pipelined_on_one_connection_keep_their_order() {
    let server = Server::start(&["--shards", "2"]);
    let mut raw = server.raw();
    for round in 0..3u64 {
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        for (i, &len) in SIZES.iter().enumerate() {
            let v = value(len, round * 100 + i as u64);
            let key = format!("p{i}");
            wire.extend(encode(&[b"INCR", b"counter"]));
            expected
                .push(format!(":{}\r\n", round * SIZES.len() as u64 + i as u64 + 1).into_bytes());
            // Arguments after the large one: the announced size covers the value only.
            wire.extend(encode(&[b"SET", key.as_bytes(), &v, b"EX", b"1000"]));
            expected.push(b"+OK\r\n".to_vec());
            wire.extend(encode(&[b"PING"]));
            expected.push(b"+PONG\r\n".to_vec());
            wire.extend(encode(&[b"GET", key.as_bytes()]));
            expected.push(bulk(&v));
            wire.extend(encode(&[b"MSET", b"a", &v[..len / 3], b"b", &v[len / 3..]]));
            expected.push(b"+OK\r\n".to_vec());
            wire.extend(encode(&[b"STRLEN", b"b"]));
            expected.push(format!(":{}\r\n", len - len / 3).into_bytes());
        }
        let mut w = raw.stream.try_clone().expect("clone");
        let writer = thread::spawn(move || {
            if round == 1 {
                for (i, p) in wire.chunks(77_777).enumerate() {
                    w.write_all(p).expect("write");
                    if i % 3 == 0 {
                        thread::sleep(Duration::from_millis(5));
                    }
                }
            } else {
                w.write_all(&wire).expect("write");
            }
        });
        for (i, want) in expected.iter().enumerate() {
            let got = raw.reply();
            assert!(
                &got == want,
                "round {round}, reply {i}: got {} bytes starting {:?}, want {} bytes starting {:?}",
                got.len(),
                String::from_utf8_lossy(&got[..got.len().min(30)]),
                want.len(),
                String::from_utf8_lossy(&want[..want.len().min(30)])
            );
        }
        writer.join().expect("writer");
    }
}

#[test]
fn clients_that_leave_mid_value_and_many_concurrent_large_sets() {
    let server = Server::start(&["--shards", "2"]);
    // Leave in the middle of a 1 MB value, after part of it was received directly.
    for i in 0..4 {
        let mut raw = server.raw();
        let v = value(1 << 20, 50 + i);
        let set = encode(&[b"SET", b"cut", &v]);
        raw.send(&set[..30_000]);
        thread::sleep(Duration::from_millis(30));
        raw.send(&set[30_000..300_000]);
        thread::sleep(Duration::from_millis(30));
        drop(raw);
    }
    let addr = server.addr;
    let clients: Vec<_> = (0..16u64)
        .map(|c| {
            thread::spawn(move || {
                let mut raw = Raw::connect(addr);
                for i in 0..5u64 {
                    let len = 60_000 + ((c * 7_919 + i * 104_729) % 400_000) as usize;
                    let v = value(len, 1000 + c * 10 + i);
                    let key = format!("c{c}:{i}");
                    raw.cmd(&[b"SET", key.as_bytes(), &v]);
                    assert_eq!(raw.reply(), b"+OK\r\n");
                    raw.cmd(&[b"GET", key.as_bytes()]);
                    assert!(raw.reply() == bulk(&v), "client {c}, value {i} differs");
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    let mut raw = server.raw();
    raw.cmd(&[b"EXISTS", b"cut"]);
    assert_eq!(
        raw.reply(),
        b":0\r\n",
        "a value cut short must not be stored"
    );
}

fn info_field(raw: &mut Raw, name: &str) -> u64 {
    raw.cmd(&[b"INFO", b"stats"]);
    let info = String::from_utf8(raw.reply()).expect("utf-8");
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("INFO stats has no {name}: {info}"))
}

/// `--send-zc-min`: large values leave zero-copy, so the kernel reads the stored value
/// itself until its notification. A GET's reply must still be the value as it was when
/// the GET ran, though the same pipeline overwrites and deletes the key right behind it;
/// and a connection whose zero-copy sends the kernel reports as copied (loopback) goes
/// back to plain sends.
#[test]
fn zero_copy_replies_keep_the_value_they_read() {
    let server = Server::start(&["--shards", "1", "--send-zc-min", "16kb"]);
    let mut raw = server.raw();
    let mut expected = Vec::new();
    let mut wire = Vec::new();
    for round in 0..20u64 {
        let (old, new) = (
            value(300_000, round),
            value(200_000 + round as usize, !round),
        );
        wire.extend(encode(&[b"SET", b"big", &old]));
        expected.extend_from_slice(b"+OK\r\n");
        wire.extend(encode(&[b"GET", b"big"]));
        expected.extend(bulk(&old));
        wire.extend(encode(&[b"APPEND", b"big", b"tail"]));
        expected.extend(format!(":{}\r\n", old.len() + 4).into_bytes());
        wire.extend(encode(&[b"SET", b"big", &new]));
        expected.extend_from_slice(b"+OK\r\n");
        wire.extend(encode(&[b"GET", b"big"]));
        expected.extend(bulk(&new));
        wire.extend(encode(&[b"DEL", b"big"]));
        expected.extend_from_slice(b":1\r\n");
    }
    let mut writer = raw.stream.try_clone().expect("clone");
    let sender = thread::spawn(move || writer.write_all(&wire).expect("write"));
    let mut got = Vec::new();
    while got.len() < expected.len() {
        got.extend(raw.reply());
    }
    sender.join().expect("sender");
    assert!(got == expected, "replies differ from the values read");
    let mut other = server.raw();
    assert!(
        info_field(&mut other, "zero_copy_sends") > 0,
        "large replies went zero-copy"
    );
    // One GET at a time on a fresh connection: a send per reply.
    let before = info_field(&mut other, "zero_copy_sends");
    let copied_before = info_field(&mut other, "zero_copy_sends_copied");
    let mut fresh = server.raw();
    let v = value(100_000, 7);
    fresh.cmd(&[b"SET", b"one", &v]);
    assert_eq!(fresh.reply(), b"+OK\r\n");
    for _ in 0..20 {
        fresh.cmd(&[b"GET", b"one"]);
        assert!(fresh.reply() == bulk(&v), "GET differs");
    }
    let sends = info_field(&mut other, "zero_copy_sends") - before;
    let copied = info_field(&mut other, "zero_copy_sends_copied") - copied_before;
    assert!(sends > 0, "large replies went zero-copy");
    if copied > 0 {
        // 20 replies, but the connection stopped using zero-copy once the kernel said it
        // copied (a notification may lag its send by a send or two).
        assert!(
            sends <= 4,
            "zero-copy kept on a copying route: {sends} of 20 sends"
        );
    }
}

/// Without CAP_IPC_LOCK the kernel counts a zero-copy operation's pages against
/// RLIMIT_MEMLOCK (8 MiB by default) until its notification, and refuses one that would
/// pass it (ENOMEM). Such a refusal must not cost the client its reply: the send goes on
/// plainly. Runs the server with CAP_IPC_LOCK dropped (skipped where that cannot be done).
#[test]
fn zero_copy_past_the_locked_memory_limit_still_sends_everything() {
    let wrapper = [
        "prlimit",
        "--memlock=8388608",
        "setpriv",
        "--bounding-set=-ipc_lock",
        "--inh-caps=-ipc_lock",
        "--",
    ];
    let works = std::process::Command::new(wrapper[0])
        .args(&wrapper[1..])
        .arg("true")
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        eprintln!("skipped: cannot drop CAP_IPC_LOCK here (prlimit/setpriv)");
        return;
    }
    let dir = common::DataDir::new("zcmem");
    let args = [
        "--dir",
        dir.path(),
        "--shards",
        "1",
        "--send-zc-min",
        "64kb",
    ];
    let server = Server::start_wrapped(&wrapper, &args, None);
    let mut raw = server.raw();
    let v = value(10 << 20, 3);
    raw.cmd(&[b"SET", b"huge", &v]);
    assert_eq!(raw.reply(), b"+OK\r\n");
    // Three at once: more pinned pages than the limit allows, whatever was released.
    let mut get = Vec::new();
    for _ in 0..3 {
        get.extend(encode(&[b"GET", b"huge"]));
    }
    raw.send(&get);
    for i in 0..3 {
        assert!(raw.reply() == bulk(&v), "GET {i} of 10 MB differs");
    }
}
