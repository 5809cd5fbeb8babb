//! APPEND and SETRANGE grow a value in place: a long run of them costs time proportional to
//! the bytes written, not to the value's size times the number of calls (which made 20,000
//! appends of 1 KB take 35 s). Real server, 2 shards, pipelined over one connection.

mod common;

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use common::{encode, keys_on, Raw, Server};

const CHUNKS: usize = 20_000;
const CHUNK: usize = 1024;

/// Far below the old cost (35 s in a release build), generous for a debug build on a
/// loaded machine.
const BOUND: Duration = Duration::from_secs(15);

/// Chunk `i`: its number, then a letter, 1 KB in all, so any misplaced byte shows.
fn chunk(i: usize) -> Vec<u8> {
    let mut c = format!("{i:07}:").into_bytes();
    c.resize(CHUNK, b'a' + (i % 26) as u8);
    c
}

/// Send `cmds` from a second thread (so neither side's socket buffer can stall the other)
/// while the replies are read and checked here, in order.
fn pipeline(raw: &mut Raw, cmds: Vec<u8>, n: usize, mut check: impl FnMut(usize, Vec<u8>)) {
    let mut w = raw.stream.try_clone().expect("clone the socket");
    let writer = thread::spawn(move || w.write_all(&cmds).expect("send the pipeline"));
    for i in 0..n {
        let reply = raw.reply();
        check(i, reply);
    }
    writer.join().expect("writer thread");
}

fn int(n: usize) -> Vec<u8> {
    format!(":{n}\r\n").into_bytes()
}

fn bulk(b: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", b.len()).into_bytes();
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
    out
}

fn query(raw: &mut Raw, args: &[&[u8]]) -> Vec<u8> {
    raw.cmd(args);
    raw.reply()
}

fn getrange(raw: &mut Raw, key: &str, start: i64, end: i64) -> Vec<u8> {
    let (s, e) = (start.to_string(), end.to_string());
    query(
        raw,
        &[b"GETRANGE", key.as_bytes(), s.as_bytes(), e.as_bytes()],
    )
}

/// STRLEN, ranges at chunk boundaries and across them, and the whole value.
fn check_content(raw: &mut Raw, key: &str) {
    let total = CHUNKS * CHUNK;
    assert_eq!(query(raw, &[b"STRLEN", key.as_bytes()]), int(total));
    for i in [0, 1, 25, 4_999, 12_345, CHUNKS - 1] {
        let start = (i * CHUNK) as i64;
        assert_eq!(
            getrange(raw, key, start, start + CHUNK as i64 - 1),
            bulk(&chunk(i)),
            "chunk {i}"
        );
    }
    let mut across = chunk(7)[1000..].to_vec();
    across.extend_from_slice(&chunk(8)[..30]);
    assert_eq!(
        getrange(raw, key, (7 * CHUNK + 1000) as i64, (8 * CHUNK + 29) as i64),
        bulk(&across)
    );
    assert_eq!(
        getrange(raw, key, -(CHUNK as i64), -1),
        bulk(&chunk(CHUNKS - 1))
    );
    let whole: Vec<u8> = (0..CHUNKS).flat_map(chunk).collect();
    assert!(
        query(raw, &[b"GET", key.as_bytes()]) == bulk(&whole),
        "GET returns every chunk in order"
    );
}

#[test]
fn twenty_thousand_appends_of_1kb_to_one_key() {
    let server = Server::start(&["--shards", "2"]);
    let raw = &mut server.raw();
    let key = keys_on("log", 1, 2, 1).remove(0);
    let cmds: Vec<u8> = (0..CHUNKS)
        .flat_map(|i| encode(&[b"APPEND", key.as_bytes(), &chunk(i)]))
        .collect();
    let start = Instant::now();
    pipeline(raw, cmds, CHUNKS, |i, reply| {
        assert_eq!(reply, int((i + 1) * CHUNK), "reply to APPEND {i}");
    });
    let took = start.elapsed();
    eprintln!("{CHUNKS} APPENDs of {CHUNK} B took {took:?}");
    assert!(took < BOUND, "{CHUNKS} APPENDs of {CHUNK} B took {took:?}");
    check_content(raw, &key);
}

#[test]
fn twenty_thousand_setranges_growing_one_key() {
    let server = Server::start(&["--shards", "2"]);
    let raw = &mut server.raw();
    let key = keys_on("grow", 0, 2, 1).remove(0);
    let cmds: Vec<u8> = (0..CHUNKS)
        .flat_map(|i| {
            let at = (i * CHUNK).to_string();
            encode(&[b"SETRANGE", key.as_bytes(), at.as_bytes(), &chunk(i)])
        })
        .collect();
    let start = Instant::now();
    pipeline(raw, cmds, CHUNKS, |i, reply| {
        assert_eq!(reply, int((i + 1) * CHUNK), "reply to SETRANGE {i}");
    });
    let took = start.elapsed();
    eprintln!("{CHUNKS} growing SETRANGEs of {CHUNK} B took {took:?}");
    assert!(
        took < BOUND,
        "{CHUNKS} SETRANGEs of {CHUNK} B took {took:?}"
    );
    check_content(raw, &key);

    // Overwriting inside the value, pipelined, is bounded too, and keeps the TTL.
    assert_eq!(query(raw, &[b"EXPIRE", key.as_bytes(), b"1000"]), int(1));
    let cmds: Vec<u8> = (0..CHUNKS)
        .flat_map(|i| {
            let at = (i * CHUNK + 8).to_string();
            encode(&[b"SETRANGE", key.as_bytes(), at.as_bytes(), b"#"])
        })
        .collect();
    pipeline(raw, cmds, CHUNKS, |i, reply| {
        assert_eq!(reply, int(CHUNKS * CHUNK), "reply to SETRANGE {i}");
    });
    let mut patched = chunk(4_321);
    patched[8] = b'#';
    let at = (4_321 * CHUNK) as i64;
    assert_eq!(
        getrange(raw, &key, at, at + CHUNK as i64 - 1),
        bulk(&patched)
    );
    let ttl = query(raw, &[b"TTL", key.as_bytes()]);
    assert!(ttl == int(1000) || ttl == int(999), "TTL kept: {ttl:?}");

    // A far offset zero-pads.
    let far = keys_on("far", 1, 2, 1).remove(0);
    assert_eq!(
        query(raw, &[b"SETRANGE", far.as_bytes(), b"1000000", b"end"]),
        int(1_000_003)
    );
    assert_eq!(getrange(raw, &far, 0, 3), bulk(&[0; 4]));
    assert_eq!(getrange(raw, &far, 999_999, -1), bulk(b"\0end"));
}

/// A GET of a large value hands out the stored bytes themselves; appends after it must
/// copy, never change what the reply is sending.
#[test]
fn appends_never_change_a_value_being_sent() {
    let server = Server::start(&["--shards", "2"]);
    let raw = &mut server.raw();
    let key = keys_on("cow", 0, 2, 1).remove(0);
    const N: usize = 400;
    let mut cmds = Vec::new();
    for i in 0..N {
        cmds.extend(encode(&[b"APPEND", key.as_bytes(), &chunk(i)]));
        if i % 20 == 19 {
            cmds.extend(encode(&[b"GET", key.as_bytes()]));
        }
    }
    let mut expected = Vec::new();
    let mut appended = 0;
    pipeline(raw, cmds, N + N / 20, |_, reply| {
        if reply.starts_with(b"$") {
            assert!(reply == bulk(&expected), "GET after {appended} appends");
        } else {
            expected.extend_from_slice(&chunk(appended));
            appended += 1;
            assert_eq!(reply, int(appended * CHUNK));
        }
    });
    assert_eq!(appended, N);
}
