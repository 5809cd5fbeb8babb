//! A full disk: the log cannot grow, so writes get `-MISCONF` while reads keep working;
//! nothing acknowledged is lost, a write whose record could not be written is not
//! acknowledged, and writes resume by themselves once space comes back. Needs root (it
//! mounts a small tmpfs); without it the test says so and passes vacuously.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{encode, q, DataDir, Server};

/// A small tmpfs mounted on a fresh directory, unmounted on drop.
struct SmallDisk {
    dir: DataDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = DataDir::new("full");
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                dir.path(),
            ])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then_some(SmallDisk { dir })
    }

    /// Fill the disk: a file grown until ENOSPC.
    fn fill(&self) -> std::path::PathBuf {
        let path = self.dir.0.join("filler");
        let mut f = std::fs::File::create(&path).expect("create filler");
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Flags for a 2-shard server keeping its data on `disk` with 256 KB segments, plus
/// `extra`.
fn args_on(disk: &SmallDisk, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--dir",
        disk.dir.path(),
        "--shards",
        "2",
        "--wal-segment-size",
        "256kb",
    ];
    args.extend_from_slice(extra);
    args.into_iter().map(String::from).collect()
}

fn send(stream: &mut TcpStream, args: &[&[u8]]) {
    stream.write_all(&encode(args)).expect("write");
}

/// The next reply line, or None if nothing arrives within `wait`.
fn reply_within(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    stream.set_read_timeout(Some(wait)).ok()?;
    let mut buf = [0u8; 512];
    match stream.read(&mut buf) {
        Ok(n) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        _ => None,
    }
}

#[test]
fn a_full_disk_refuses_writes_keeps_reads_and_loses_nothing_acknowledged() {
    let Some(disk) = SmallDisk::mount("3m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let args = args_on(&disk, &["--notify-keyspace-events", "E$"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = Server::start_raw(&args, None);
    // A keyspace event tells of a write: like a reply that read it, it may not leave
    // before the write is durable. One listener on each shard.
    let mut listeners: Vec<TcpStream> = (0..2)
        .map(|s| {
            let raw = server.raw_on_shard(s, 2);
            let mut l = raw.stream;
            send(&mut l, &[b"PSUBSCRIBE", b"__keyevent@0__:*"]);
            assert!(reply_within(&mut l, Duration::from_secs(5)).is_some());
            l
        })
        .collect();
    let c = &mut server.client();
    for i in 0..20 {
        q::<()>(c, &["SET", &format!("before{i}"), "v"]).unwrap();
    }
    let filler = disk.fill();
    // Write until the log cannot take more: the write that hits the wall is held (not
    // acknowledged), and from then on writes are refused with MISCONF.
    let value = vec![b'x'; 32 * 1024];
    let mut acked = Vec::new();
    let mut held_key = None;
    let mut stream = TcpStream::connect(server.addr).unwrap();
    for i in 0..200 {
        let key = format!("fill{i}");
        send(&mut stream, &[b"SET", key.as_bytes(), &value]);
        match reply_within(&mut stream, Duration::from_secs(2)) {
            Some(r) if r.starts_with("+OK") => acked.push(key),
            Some(r) if r.starts_with("-MISCONF") => break,
            Some(r) => panic!("unexpected reply {r:?}"),
            None => {
                held_key = Some(key);
                break;
            }
        }
    }
    let held_key = held_key.expect("a write was held once the disk was full");
    let event = |key: &str| format!("\r\n${}\r\n{key}\r\n", key.len());
    let mut heard = vec![String::new(); 2];
    for (l, text) in listeners.iter_mut().zip(heard.iter_mut()) {
        while let Some(more) = reply_within(l, Duration::from_millis(500)) {
            text.push_str(&more);
        }
        assert!(
            !text.contains(&event(&held_key)),
            "the event of a write that is not durable was delivered"
        );
    }
    let mut other = server.raw();
    other.cmd(&[b"SET", b"refused", b"v"]);
    let r = other.reply_str();
    assert!(r.starts_with("-MISCONF"), "writes are refused: {r}");
    // Commands that show no data keep answering on every connection. (Reads of data on
    // the shard whose write is stuck wait for it: durability is tracked per shard.)
    for _ in 0..4 {
        let mut fresh = server.raw();
        fresh.cmd(&[b"PING"]);
        assert_eq!(fresh.reply_str(), "+PONG\r\n");
        fresh.cmd(&[b"INFO", b"persistence"]);
        assert!(fresh.reply_str().contains("aof_last_write_status:err"));
    }
    // A snapshot would fail on the same disk (and take space the log needs): refused like
    // the writes, and nothing is left waiting on it.
    for cmd in [&b"BGSAVE"[..], b"SAVE", b"BGREWRITEAOF"] {
        other.cmd(&[cmd]);
        let r = other.reply_str();
        assert!(
            r.starts_with("-MISCONF"),
            "{}: {r}",
            String::from_utf8_lossy(cmd)
        );
    }
    other.cmd(&[b"INFO", b"persistence"]);
    assert!(other.reply_str().contains("rdb_bgsave_in_progress:0"));
    // Space comes back: the log catches up by itself and the held write is acknowledged.
    std::fs::remove_file(filler).unwrap();
    let r = reply_within(&mut stream, Duration::from_secs(10)).expect("held write answered");
    assert!(r.starts_with("+OK"), "{r}");
    for (l, text) in listeners.iter_mut().zip(heard.iter_mut()) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !text.contains(&event(&held_key)) {
            assert!(
                Instant::now() < deadline,
                "the durable write's event never came"
            );
            text.extend(reply_within(l, Duration::from_millis(200)));
        }
    }
    acked.push(held_key);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        other.cmd(&[b"SET", b"after", b"v"]);
        if other.reply_str().starts_with("+OK") {
            break;
        }
        assert!(Instant::now() < deadline, "writes never resumed");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The status says so too (the last error's text stays in wal_last_error).
    other.cmd(&[b"INFO", b"persistence"]);
    let info = other.reply_str();
    assert!(info.contains("aof_last_write_status:ok"), "{info}");
    assert!(info.contains("wal_last_error:") && !info.contains("wal_last_error:\r\n"));
    server.kill9();
    let server = Server::start_raw(&args, None);
    let c = &mut server.client();
    for k in acked
        .iter()
        .chain([&"after".to_string(), &"before7".to_string()])
    {
        let v: Option<Vec<u8>> = q(c, &["GET", k]).unwrap();
        assert!(v.is_some(), "acknowledged {k} survived");
    }
    assert_eq!(q::<Option<String>>(c, &["GET", "refused"]).unwrap(), None);
}

/// A snapshot whose start meets the log's first failure: the write pipelined just before
/// BGSAVE is the one that finds the disk full, so the snapshot's lock on that shard is
/// granted while the shard holds an undurable record. The lock carries no data, so it
/// must not wait for the log: the snapshot goes on (and fails on the full disk), and the
/// other shard, already locked for it, keeps answering reads.
#[test]
fn a_snapshot_starting_as_the_disk_fills_does_not_lock_the_other_shard() {
    let Some(disk) = SmallDisk::mount("3m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let args = args_on(&disk, &["--save", ""]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start_raw(&args, None);
    let probe = &common::keys_on("probe", 0, 2, 1)[0];
    let fill = common::keys_on("fill", 1, 2, 200);
    let mut other = server.raw_on_shard(0, 2);
    other.cmd(&[b"SET", probe.as_bytes(), b"v"]);
    assert_eq!(other.reply_str(), "+OK\r\n");
    let filler = disk.fill();
    let idle = |other: &mut common::Raw| {
        common::eventually("no snapshot in progress", || {
            other.cmd(&[b"INFO", b"persistence"]);
            other.reply_str().contains("rdb_bgsave_in_progress:0")
        })
    };
    // Each round: a write on shard 1 and BGSAVE behind it, from a connection of shard 1
    // (so BGSAVE's MISCONF check runs before the WAL thread has seen that write).
    let value = vec![b'x'; 32 * 1024];
    let mut stream = server.raw_on_shard(1, 2).stream;
    let mut held = false;
    for key in &fill {
        let mut both = encode(&[b"SET", key.as_bytes(), &value]);
        both.extend(encode(&[b"BGSAVE"]));
        stream.write_all(&both).unwrap();
        match reply_within(&mut stream, Duration::from_secs(2)) {
            Some(r) if r.starts_with("+OK") => {}
            Some(r) if r.starts_with("-MISCONF") => {
                panic!("the first write to fail was refused, not held: {r}")
            }
            Some(r) => panic!("unexpected reply {r:?}"),
            None => {
                held = true;
                break;
            }
        }
        // The BGSAVE reply may come with the OK or after it; then wait for the (failing)
        // snapshot to end so that the next round's BGSAVE starts one.
        let _ = reply_within(&mut stream, Duration::from_millis(200));
        idle(&mut other);
    }
    assert!(held, "a write was held once the disk was full");
    // The snapshot started with that write goes on and fails on the full disk; shard 0,
    // which granted its lock first, keeps answering reads of its keys meanwhile.
    let mut fresh = server.raw_on_shard(0, 2);
    fresh.cmd(&[b"GET", probe.as_bytes()]);
    let r = reply_within(&mut fresh.stream, Duration::from_secs(5));
    assert_eq!(r.as_deref(), Some("$1\r\nv\r\n"), "shard 0 answers reads");
    idle(&mut other);
    // Space comes back: the held write and its BGSAVE are answered.
    std::fs::remove_file(filler).unwrap();
    let r = reply_within(&mut stream, Duration::from_secs(10)).expect("held write answered");
    assert!(r.starts_with("+OK"), "{r}");
}

/// A PUBLISH shows no data: while a shard's write waits for a full disk (its reply to the
/// connection's shard held in the durability outbox), a PUBLISH from that shard to a
/// subscriber on the other one is still delivered and answered at once.
#[test]
fn publish_does_not_wait_for_a_write_stuck_on_a_full_disk() {
    let Some(disk) = SmallDisk::mount("3m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let args = args_on(&disk, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start_raw(&args, None);
    let mut sub = server.raw_on_shard(0, 2);
    sub.cmd(&[b"SUBSCRIBE", b"ch"]);
    let _ = sub.reply();
    let _filler = disk.fill();
    // Writes of keys on shard 1 from a connection of shard 0, until one is held.
    let value = vec![b'x'; 32 * 1024];
    let mut writer = server.raw_on_shard(0, 2).stream;
    let mut held = false;
    for key in common::keys_on("fill", 1, 2, 200) {
        send(&mut writer, &[b"SET", key.as_bytes(), &value]);
        match reply_within(&mut writer, Duration::from_secs(2)) {
            Some(r) if r.starts_with("+OK") => {}
            Some(r) if r.starts_with("-MISCONF") => break,
            Some(r) => panic!("unexpected reply {r:?}"),
            None => {
                held = true;
                break;
            }
        }
    }
    assert!(held, "a write was held once the disk was full");
    let mut publisher = server.raw_on_shard(1, 2).stream;
    send(&mut publisher, &[b"PUBLISH", b"ch", b"hi"]);
    let r = reply_within(&mut publisher, Duration::from_secs(5));
    assert_eq!(r.as_deref(), Some(":1\r\n"), "PUBLISH answered");
    assert_eq!(
        sub.reply_str(),
        "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"
    );
}
