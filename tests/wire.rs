//! The wire through raw sockets: pipelines across shards, partial and byte-at-a-time
//! requests, inline commands, large values, protocol errors.

mod common;

use std::io::Write;

use common::{encode, Server};

/// 3000 pipelined commands touching keys on every shard; replies must match request order.
fn pipeline_in_order(shards: &str) {
    let server = Server::start(&["--shards", shards]);
    let mut raw = server.raw();
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    for i in 0..1000 {
        let key = format!("pipe:{i}");
        let val = format!("value-{i}");
        wire.extend(encode(&[b"SET", key.as_bytes(), val.as_bytes()]));
        expected.push("+OK\r\n".to_string());
        wire.extend(encode(&[b"GET", key.as_bytes()]));
        expected.push(format!("${}\r\n{val}\r\n", val.len()));
        if i % 10 == 0 {
            // Multi-shard and local commands interleaved with the remote ones.
            wire.extend(encode(&[b"MGET", key.as_bytes(), b"pipe:0", b"absent"]));
            expected.push(format!(
                "*3\r\n${}\r\n{val}\r\n$7\r\nvalue-0\r\n$-1\r\n",
                val.len()
            ));
        } else {
            wire.extend(encode(&[b"PING"]));
            expected.push("+PONG\r\n".to_string());
        }
    }
    raw.send(&wire);
    for (i, want) in expected.iter().enumerate() {
        let got = raw.reply_str();
        assert_eq!(&got, want, "reply {i}");
    }
}

#[test]
fn pipeline_of_mixed_shard_commands_keeps_order_on_one_shard() {
    pipeline_in_order("1");
}

#[test]
fn pipeline_of_mixed_shard_commands_keeps_order_on_four_shards() {
    pipeline_in_order("4");
}

#[test]
fn byte_at_a_time_and_half_sent_requests() {
    let server = Server::start(&["--shards", "4"]);
    let mut raw = server.raw();
    let req = encode(&[b"SET", b"slow", b"drip"]);
    for b in &req {
        raw.stream.write_all(std::slice::from_ref(b)).unwrap();
    }
    assert_eq!(raw.reply_str(), "+OK\r\n");

    // Half a request, then another client is served, then the rest arrives.
    let req = encode(&[b"GET", b"slow"]);
    raw.send(&req[..7]);
    let mut other = server.raw();
    other.cmd(&[b"PING"]);
    assert_eq!(other.reply_str(), "+PONG\r\n");
    raw.send(&req[7..]);
    assert_eq!(raw.reply_str(), "$4\r\ndrip\r\n");

    // A request split inside the bulk header and inside the payload.
    let mut two = encode(&[b"SET", b"a", b"0123456789"]);
    two.extend(encode(&[b"GET", b"a"]));
    for cut in [3, 9, 20, 28] {
        raw.send(&two[..cut]);
        raw.send(&two[cut..]);
        assert_eq!(raw.reply_str(), "+OK\r\n");
        assert_eq!(raw.reply_str(), "$10\r\n0123456789\r\n");
    }
}

#[test]
fn large_values_cross_many_receive_buffers() {
    let server = Server::start(&["--shards", "4"]);
    let mut raw = server.raw();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    for key in ["big:a", "big:b", "big:c"] {
        raw.cmd(&[b"SET", key.as_bytes(), &big]);
        assert_eq!(raw.reply_str(), "+OK\r\n");
    }
    raw.cmd(&[b"MGET", b"big:a", b"big:b", b"big:c"]);
    let reply = raw.reply();
    let (value, _) = coreshard_protocol::parse_value(&reply).unwrap().unwrap();
    let coreshard_protocol::Value::Array(items) = value else {
        panic!("array")
    };
    assert_eq!(items.len(), 3);
    for item in items {
        assert_eq!(item, coreshard_protocol::Value::Bulk(big.clone().into()));
    }
}

#[test]
fn inline_commands_work_like_telnet() {
    let server = Server::start(&[]);
    let mut raw = server.raw();
    raw.send(b"PING\r\n");
    assert_eq!(raw.reply_str(), "+PONG\r\n");
    raw.send(b"set greeting \"hello world\"\n");
    assert_eq!(raw.reply_str(), "+OK\r\n");
    raw.send(b"get greeting\r\n\r\n");
    assert_eq!(raw.reply_str(), "$11\r\nhello world\r\n");
    raw.send(b"echo 'it\\'s'\r\n");
    assert_eq!(raw.reply_str(), "$4\r\nit's\r\n");
}

#[test]
fn quit_replies_then_closes() {
    let server = Server::start(&[]);
    let mut raw = server.raw();
    let mut wire = encode(&[b"PING"]);
    wire.extend(encode(&[b"QUIT"]));
    wire.extend(encode(&[b"PING"]));
    raw.send(&wire);
    assert_eq!(raw.reply_str(), "+PONG\r\n");
    assert_eq!(raw.reply_str(), "+OK\r\n");
    assert!(
        raw.closed(),
        "QUIT closes the connection and ignores what follows"
    );
}

fn protocol_error_closes_only_that_connection(bad: &[u8], want: &str) {
    let server = Server::start(&["--shards", "2"]);
    let mut good = server.raw();
    good.cmd(&[b"SET", b"k", b"v"]);
    assert_eq!(good.reply_str(), "+OK\r\n");

    let mut raw = server.raw();
    raw.cmd(&[b"PING"]);
    assert_eq!(raw.reply_str(), "+PONG\r\n");
    raw.send(bad);
    assert_eq!(raw.reply_str(), want);
    assert!(raw.closed(), "a protocol error closes the connection");

    good.cmd(&[b"GET", b"k"]);
    assert_eq!(good.reply_str(), "$1\r\nv\r\n");
    let mut fresh = server.raw();
    fresh.cmd(&[b"PING"]);
    assert_eq!(fresh.reply_str(), "+PONG\r\n");
}

#[test]
fn invalid_bulk_length_is_a_protocol_error() {
    protocol_error_closes_only_that_connection(
        b"*1\r\n$x\r\n",
        "-ERR Protocol error: invalid bulk length\r\n",
    );
}

#[test]
fn bulk_over_the_limit_is_a_protocol_error() {
    protocol_error_closes_only_that_connection(
        b"*2\r\n$3\r\nGET\r\n$600000000\r\n",
        "-ERR Protocol error: invalid bulk length\r\n",
    );
}

#[test]
fn invalid_multibulk_length_is_a_protocol_error() {
    protocol_error_closes_only_that_connection(
        b"*abc\r\n",
        "-ERR Protocol error: invalid multibulk length\r\n",
    );
}

#[test]
fn missing_dollar_is_a_protocol_error() {
    protocol_error_closes_only_that_connection(
        b"*1\r\n+PING\r\n",
        "-ERR Protocol error: expected '$', got '+'\r\n",
    );
}

#[test]
fn unbalanced_quotes_are_a_protocol_error() {
    protocol_error_closes_only_that_connection(
        b"SET \"a b\r\n",
        "-ERR Protocol error: unbalanced quotes in request\r\n",
    );
}

#[test]
fn oversized_inline_request_is_a_protocol_error() {
    let long = vec![b'a'; 70 * 1024];
    protocol_error_closes_only_that_connection(
        &long,
        "-ERR Protocol error: too big inline request\r\n",
    );
}

#[test]
fn bulk_limit_is_configurable() {
    let server = Server::start(&["--proto-max-bulk-len", "10"]);
    let mut raw = server.raw();
    raw.cmd(&[b"SET", b"k", b"0123456789"]);
    assert_eq!(raw.reply_str(), "+OK\r\n");
    raw.cmd(&[b"SET", b"k", b"01234567890"]);
    assert_eq!(
        raw.reply_str(),
        "-ERR Protocol error: invalid bulk length\r\n"
    );
    assert!(raw.closed());
}

#[test]
fn big_values_kept_as_slices_of_one_input_buffer_stay_intact() {
    let server = Server::start(&["--shards", "2"]);
    let mut raw = server.raw();
    let values: Vec<Vec<u8>> = (0..4u8)
        .map(|i| vec![b'a' + i; 40_000 + usize::from(i)])
        .collect();
    let mut wire = Vec::new();
    for (i, v) in values.iter().enumerate() {
        wire.extend(encode(&[b"SET", format!("{{big}}:{i}").as_bytes(), v]));
        wire.extend(encode(&[b"PING"]));
    }
    raw.send(&wire);
    for _ in 0..values.len() {
        assert_eq!(raw.reply_str(), "+OK\r\n");
        assert_eq!(raw.reply_str(), "+PONG\r\n");
    }
    // More traffic on the same connection must not disturb what was stored.
    raw.cmd(&[b"SET", b"{big}:0", b"overwritten"]);
    assert_eq!(raw.reply_str(), "+OK\r\n");
    for (i, v) in values.iter().enumerate().skip(1) {
        raw.cmd(&[b"GET", format!("{{big}}:{i}").as_bytes()]);
        let reply = raw.reply();
        let mut want = format!("${}\r\n", v.len()).into_bytes();
        want.extend_from_slice(v);
        want.extend_from_slice(b"\r\n");
        assert!(reply == want, "value {i} changed");
    }
    raw.cmd(&[b"GET", b"{big}:0"]);
    assert_eq!(raw.reply_str(), "$11\r\noverwritten\r\n");
}

#[test]
fn large_get_replies_sent_from_the_store_keep_pipeline_order() {
    let server = Server::start(&["--shards", "1"]);
    let mut raw = server.raw();
    let big: Vec<Vec<u8>> = (0..3u8)
        .map(|i| vec![b'x' + i; 300_000 + usize::from(i)])
        .collect();
    for (i, v) in big.iter().enumerate() {
        raw.cmd(&[b"SET", format!("v{i}").as_bytes(), v]);
        assert_eq!(raw.reply_str(), "+OK\r\n");
    }
    // Small replies between big ones, all in one pipeline: several hundred KB per flush,
    // so vectored sends complete partially and continue.
    let mut wire = Vec::new();
    for round in 0..5 {
        for i in 0..3 {
            wire.extend(encode(&[b"GET", format!("v{i}").as_bytes()]));
            wire.extend(encode(&[b"ECHO", format!("{round}-{i}").as_bytes()]));
        }
    }
    raw.send(&wire);
    for round in 0..5 {
        for (i, v) in big.iter().enumerate() {
            let reply = raw.reply();
            let mut want = format!("${}\r\n", v.len()).into_bytes();
            want.extend_from_slice(v);
            want.extend_from_slice(b"\r\n");
            assert!(reply == want, "round {round}: value {i} mangled");
            let echo = format!("{round}-{i}");
            assert_eq!(raw.reply_str(), format!("${}\r\n{echo}\r\n", echo.len()));
        }
    }
    // RESP3 framing is the same for bulk strings.
    raw.cmd(&[b"HELLO", b"3"]);
    raw.reply();
    raw.cmd(&[b"GET", b"v0"]);
    assert_eq!(
        raw.reply().len(),
        big[0].len() + format!("${}\r\n\r\n", big[0].len()).len()
    );
}

/// With keyspaces large enough for the server to look ahead over pipelined input (over
/// 16k keys per shard): a pipeline of reads and writes whose keys live on both shards,
/// with keyless commands and multi-key commands mixed in, sent whole, then byte at a
/// time, then cut inside the first request, is answered in order with each command's own
/// reply.
#[test]
fn pipelines_over_large_keyspaces_read_their_own_writes() {
    let server = Server::start(&["--shards", "2", "--appendonly", "no"]);
    let mut raw = server.raw();
    let n = 40_000;
    let mut load = Vec::new();
    for i in 0..n {
        load.extend(encode(&[
            b"SET",
            format!("k:{i}").as_bytes(),
            format!("v{i}").as_bytes(),
        ]));
    }
    raw.send(&load);
    for _ in 0..n {
        assert_eq!(raw.reply_str(), "+OK\r\n");
    }
    raw.cmd(&[b"DBSIZE"]);
    assert_eq!(raw.reply_str(), format!(":{n}\r\n"));

    // Pass `p` writes `p<p>-<i>`; its first GET sees the value the pass before wrote.
    let pipeline = |p: u32| {
        let mut bytes = Vec::new();
        let mut want: Vec<String> = Vec::new();
        for i in 0..24u32 {
            let k = format!("k:{}", i * 977);
            let before = if p == 0 {
                format!("v{}", i * 977)
            } else {
                format!("p{}-{i}", p - 1)
            };
            let now = format!("p{p}-{i}");
            bytes.extend(encode(&[b"GET", k.as_bytes()]));
            want.push(format!("${}\r\n{before}\r\n", before.len()));
            bytes.extend(encode(&[b"SET", k.as_bytes(), now.as_bytes()]));
            want.push("+OK\r\n".into());
            bytes.extend(encode(&[b"get", k.as_bytes()]));
            want.push(format!("${}\r\n{now}\r\n", now.len()));
            bytes.extend(encode(&[b"PING"]));
            want.push("+PONG\r\n".into());
            bytes.extend(encode(&[b"EXISTS", b"k:1", b"nope"]));
            want.push(":1\r\n".into());
        }
        (bytes, want)
    };
    let check = |raw: &mut common::Raw, want: &[String]| {
        for w in want {
            assert_eq!(&raw.reply_str(), w);
        }
    };
    let (bytes, want) = pipeline(0);
    raw.send(&bytes);
    check(&mut raw, &want);
    let (bytes, want) = pipeline(1);
    for b in &bytes {
        raw.stream.write_all(std::slice::from_ref(b)).unwrap();
    }
    check(&mut raw, &want);
    for (p, cut) in [(2, 5), (3, 13), (4, 40)] {
        let (bytes, want) = pipeline(p);
        raw.send(&bytes[..cut]);
        raw.send(&bytes[cut..]);
        check(&mut raw, &want);
    }
}
