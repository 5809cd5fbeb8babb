//! Everything written survives a restart (graceful or kill -9), also when the shard
//! count changes between runs; expired keys stay gone; `--appendonly no` keeps nothing.

mod common;

use std::time::Duration;

use common::{keys_on, q, DataDir, Server};

fn start(dir: &DataDir, shards: usize, extra: &[&str]) -> Server {
    let shards = shards.to_string();
    let mut args = vec!["--dir", dir.path(), "--shards", &shards];
    args.extend_from_slice(extra);
    Server::start_raw(&args, None)
}

/// The state every test run writes: one of each kind of write, across shards.
fn write_everything(c: &mut redis::Connection) {
    let a = keys_on("pa", 0, 4, 1)[0].clone();
    let b = keys_on("pb", 3, 4, 1)[0].clone();
    q::<()>(c, &["SET", "plain", "v1"]).unwrap();
    q::<()>(c, &["SET", "overwritten", "old"]).unwrap();
    q::<()>(c, &["SET", "overwritten", "new"]).unwrap();
    q::<()>(c, &["SET", "ttl", "t", "EX", "1000"]).unwrap();
    q::<()>(c, &["SET", "persisted", "p", "EX", "1000"]).unwrap();
    q::<i64>(c, &["PERSIST", "persisted"]).unwrap();
    q::<i64>(c, &["APPEND", "appended", "hello"]).unwrap();
    q::<i64>(c, &["APPEND", "appended", " world"]).unwrap();
    q::<i64>(c, &["SETRANGE", "ranged", "3", "xyz"]).unwrap();
    q::<i64>(c, &["INCRBY", "counter", "41"]).unwrap();
    q::<i64>(c, &["INCR", "counter"]).unwrap();
    q::<String>(c, &["INCRBYFLOAT", "float", "1.5"]).unwrap();
    q::<()>(c, &["SET", "deleted", "x"]).unwrap();
    q::<i64>(c, &["DEL", "deleted"]).unwrap();
    q::<()>(c, &["SET", "gone", "x"]).unwrap();
    q::<Option<String>>(c, &["GETDEL", "gone"]).unwrap();
    q::<i64>(c, &["EXPIRE", "plain", "1000"]).unwrap();
    // Cross-shard transactions.
    q::<()>(c, &["SET", &a, "moved"]).unwrap();
    q::<()>(c, &["RENAME", &a, &b]).unwrap();
    q::<i64>(c, &["MSETNX", "{m}1", "1", "m2", "2"]).unwrap();
    let (x, y): (i64, i64) = redis::pipe()
        .atomic()
        .cmd("INCRBY")
        .arg("tx1")
        .arg(10)
        .cmd("INCRBY")
        .arg("tx2")
        .arg(20)
        .query(c)
        .unwrap();
    assert_eq!((x, y), (10, 20));
    q::<i64>(c, &["COPY", &b, "copied"]).unwrap();
}

fn check_everything(c: &mut redis::Connection, when: &str) {
    let a = keys_on("pa", 0, 4, 1)[0].clone();
    let b = keys_on("pb", 3, 4, 1)[0].clone();
    let get = |c: &mut redis::Connection, k: &str| q::<Option<String>>(c, &["GET", k]).unwrap();
    assert_eq!(get(c, "plain").as_deref(), Some("v1"), "{when}");
    assert_eq!(get(c, "overwritten").as_deref(), Some("new"), "{when}");
    let ttl: i64 = q(c, &["TTL", "ttl"]).unwrap();
    assert!((990..=1000).contains(&ttl), "{when}: ttl {ttl}");
    let ttl: i64 = q(c, &["TTL", "plain"]).unwrap();
    assert!(
        (990..=1000).contains(&ttl),
        "{when}: EXPIRE kept, ttl {ttl}"
    );
    assert_eq!(q::<i64>(c, &["TTL", "persisted"]).unwrap(), -1, "{when}");
    assert_eq!(get(c, "appended").as_deref(), Some("hello world"), "{when}");
    assert_eq!(get(c, "ranged").as_deref(), Some("\0\0\0xyz"), "{when}");
    assert_eq!(get(c, "counter").as_deref(), Some("42"), "{when}");
    assert_eq!(get(c, "float").as_deref(), Some("1.5"), "{when}");
    assert_eq!(get(c, "deleted"), None, "{when}");
    assert_eq!(get(c, "gone"), None, "{when}");
    assert_eq!(get(c, &a), None, "{when}: renamed away");
    assert_eq!(get(c, &b).as_deref(), Some("moved"), "{when}");
    assert_eq!(get(c, "{m}1").as_deref(), Some("1"), "{when}");
    assert_eq!(get(c, "m2").as_deref(), Some("2"), "{when}");
    assert_eq!(get(c, "tx1").as_deref(), Some("10"), "{when}");
    assert_eq!(get(c, "tx2").as_deref(), Some("20"), "{when}");
    assert_eq!(get(c, "copied").as_deref(), Some("moved"), "{when}");
}

#[test]
fn every_write_survives_restarts_with_any_shard_count() {
    let dir = DataDir::new("restart");
    {
        let mut s = start(&dir, 4, &[]);
        write_everything(&mut s.client());
        check_everything(&mut s.client(), "before restart");
        assert!(s.terminate().success());
    }
    for (shards, how) in [(1, "term"), (4, "kill"), (2, "term"), (3, "kill")] {
        let mut s = start(&dir, shards, &[]);
        let report = s
            .stdout
            .recv_timeout(common::DEADLINE)
            .expect("persistence line");
        assert!(report.contains("persistence: dir="), "{report}");
        check_everything(
            &mut s.client(),
            &format!("after restart on {shards} shards"),
        );
        // Writes of this run survive the next one too.
        q::<i64>(&mut s.client(), &["INCR", "restarts"]).unwrap();
        if how == "kill" {
            s.kill9();
        } else {
            assert!(s.terminate().success());
        }
    }
    let s = start(&dir, 2, &[]);
    assert_eq!(q::<i64>(&mut s.client(), &["GET", "restarts"]).unwrap(), 4);
}

#[test]
fn flushall_and_expiry_are_replayed() {
    let dir = DataDir::new("flush");
    {
        let mut s = start(&dir, 2, &[]);
        let c = &mut s.client();
        q::<()>(c, &["SET", "before", "1"]).unwrap();
        q::<()>(c, &["FLUSHALL"]).unwrap();
        q::<()>(c, &["SET", "after", "1"]).unwrap();
        q::<()>(c, &["SET", "short", "1", "PX", "150"]).unwrap();
        s.kill9();
    }
    std::thread::sleep(Duration::from_millis(250));
    let s = start(&dir, 1, &[]);
    let c = &mut s.client();
    assert_eq!(q::<Option<String>>(c, &["GET", "before"]).unwrap(), None);
    assert_eq!(
        q::<Option<String>>(c, &["GET", "after"])
            .unwrap()
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        q::<Option<String>>(c, &["GET", "short"]).unwrap(),
        None,
        "expired while down"
    );
    assert_eq!(q::<i64>(c, &["DBSIZE"]).unwrap(), 1);
}

#[test]
fn appendonly_no_keeps_nothing_and_config_says_so() {
    let dir = DataDir::new("off");
    {
        let mut s = start(&dir, 1, &["--appendonly", "no"]);
        let c = &mut s.client();
        q::<()>(c, &["SET", "k", "v"]).unwrap();
        let cfg: Vec<String> = q(c, &["CONFIG", "GET", "appendonly"]).unwrap();
        assert_eq!(cfg, vec!["appendonly", "no"]);
        assert!(s.terminate().success());
    }
    let s = start(&dir, 1, &["--appendfsync", "everysec"]);
    let c = &mut s.client();
    assert_eq!(q::<Option<String>>(c, &["GET", "k"]).unwrap(), None);
    let cfg: Vec<String> = q(c, &["CONFIG", "GET", "append*"]).unwrap();
    assert!(cfg.contains(&"everysec".to_string()), "{cfg:?}");
    assert!(cfg.contains(&"yes".to_string()), "{cfg:?}");
}

/// Snapshots taken while clients write (appends are not idempotent, so a record applied
/// twice or missed would show), then kill -9 and restarts on other shard counts: every
/// acknowledged write is there exactly once. LASTSAVE moves; SAVE answers when written.
#[test]
fn snapshots_under_writes_then_crash_lose_and_duplicate_nothing() {
    let dir = DataDir::new("snap");
    let (appends, counters) = {
        let mut s = start(&dir, 3, &["--wal-segment-size", "256kb"]);
        let c = &mut s.client();
        assert_eq!(q::<i64>(c, &["LASTSAVE"]).unwrap(), 0);
        for i in 0..3000 {
            q::<()>(c, &["SET", &format!("k{i}"), &format!("v{i}")]).unwrap();
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (url, stop) = (s.url(), stop.clone());
            std::thread::spawn(move || {
                let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                let mut n = 0u64;
                while n < 500 || !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let key = format!("ap{}", n % 50);
                    let _: i64 = redis::cmd("APPEND")
                        .arg(&key)
                        .arg("x")
                        .query(&mut c)
                        .unwrap();
                    let _: i64 = redis::cmd("INCR")
                        .arg(format!("ctr{}", n % 7))
                        .query(&mut c)
                        .unwrap();
                    n += 1;
                }
                n
            })
        };
        for _ in 0..3 {
            let r: String = q(c, &["BGSAVE"]).unwrap();
            assert_eq!(r, "Background saving started");
            // SAVE is refused while the BGSAVE runs, then takes a snapshot of its own.
            common::eventually("BGSAVE completes", || q::<()>(c, &["SAVE"]).is_ok());
            assert!(q::<i64>(c, &["LASTSAVE"]).unwrap() > 0);
        }
        q::<()>(c, &["SAVE"]).unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let n = writer.join().unwrap();
        assert!(n > 100, "the writer made progress ({n})");
        // Expected final state, from the server itself before the crash.
        let lens: Vec<i64> = (0..50)
            .map(|i| q::<i64>(c, &["STRLEN", &format!("ap{i}")]).unwrap())
            .collect();
        let ctrs: Vec<i64> = (0..7)
            .map(|i| q::<i64>(c, &["GET", &format!("ctr{i}")]).unwrap())
            .collect();
        assert_eq!(lens.iter().sum::<i64>() as u64, n);
        assert_eq!(ctrs.iter().sum::<i64>() as u64, n);
        s.kill9();
        (lens, ctrs)
    };
    let segments = std::fs::read_dir(&dir.0)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .map(|e| e.file_name().to_string_lossy().ends_with(".wal"))
                .unwrap_or(false)
        })
        .count();
    assert!(segments <= 4, "old segments were deleted ({segments} left)");
    for shards in [1, 4] {
        let mut s = start(&dir, shards, &["--wal-segment-size", "256kb"]);
        let c = &mut s.client();
        for (i, want) in appends.iter().enumerate() {
            let got: i64 = q(c, &["STRLEN", &format!("ap{i}")]).unwrap();
            assert_eq!(got, *want, "{shards} shards: ap{i}");
        }
        for (i, want) in counters.iter().enumerate() {
            let got: i64 = q(c, &["GET", &format!("ctr{i}")]).unwrap();
            assert_eq!(got, *want, "{shards} shards: ctr{i}");
        }
        for i in (0..3000).step_by(97) {
            let got: Option<String> = q(c, &["GET", &format!("k{i}")]).unwrap();
            assert_eq!(got, Some(format!("v{i}")));
        }
        assert!(s.terminate().success());
    }
}

/// A snapshot is read in steps while the shard goes on writing: writes made after it
/// started reach it only through the log. A list the snapshot reaches last (100k keys
/// before it) gets 1000 pushes pipelined right behind BGSAVE; pushes are journaled as
/// commands, so a snapshot that took any of them would have them applied twice at
/// replay.
#[test]
fn writes_during_a_snapshot_are_not_in_it() {
    let dir = DataDir::new("cow");
    {
        let mut s = start(&dir, 1, &[]);
        let mut raw = s.raw();
        let mut batch = Vec::new();
        for chunk in 0..100 {
            let mut args: Vec<Vec<u8>> = vec![b"MSET".to_vec()];
            for i in 0..1000 {
                args.push(format!("key:{chunk}:{i}").into_bytes());
                args.push(b"value".to_vec());
            }
            let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
            batch.extend_from_slice(&common::encode(&refs));
        }
        raw.send(&batch);
        for _ in 0..100 {
            assert_eq!(raw.reply_str(), "+OK\r\n");
        }
        raw.cmd(&[
            b"RPUSH", b"L", b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"8", b"9",
        ]);
        assert_eq!(raw.reply_str(), ":10\r\n");
        let mut batch = common::encode(&[b"BGSAVE"]);
        for _ in 0..1000 {
            batch.extend_from_slice(&common::encode(&[b"RPUSH", b"L", b"x"]));
        }
        raw.send(&batch);
        assert_eq!(raw.reply_str(), "+Background saving started\r\n");
        for n in 11..=1010 {
            assert_eq!(raw.reply_str(), format!(":{n}\r\n"));
        }
        let c = &mut s.client();
        common::eventually("the snapshot is written", || {
            info_u64(c, "rdb_bgsave_in_progress") == 0
        });
        assert_eq!(info_u64(c, "rdb_saves"), 1);
        s.kill9();
    }
    for shards in [1, 2] {
        let mut s = start(&dir, shards, &[]);
        let c = &mut s.client();
        assert_eq!(
            q::<i64>(c, &["LLEN", "L"]).unwrap(),
            1010,
            "{shards} shards"
        );
        assert_eq!(q::<i64>(c, &["DBSIZE"]).unwrap(), 100_001);
        assert!(s.terminate().success());
    }
}

/// The `--save` schedule takes snapshots by itself (here: after 1 s with 1 change).
#[test]
fn the_save_schedule_snapshots_by_itself() {
    let dir = DataDir::new("sched");
    let s = start(&dir, 2, &["--save", "1 1"]);
    let c = &mut s.client();
    assert_eq!(q::<i64>(c, &["LASTSAVE"]).unwrap(), 0);
    q::<()>(c, &["SET", "k", "v"]).unwrap();
    common::eventually("a scheduled snapshot", || {
        q::<i64>(c, &["LASTSAVE"]).unwrap() > 0
    });
    let cfg: Vec<String> = q(c, &["CONFIG", "GET", "save"]).unwrap();
    assert_eq!(cfg, vec!["save", "1 1"]);
    let manifests = std::fs::read_dir(&dir.0)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .map(|e| e.file_name().to_string_lossy().ends_with(".manifest"))
                .unwrap_or(false)
        })
        .count();
    assert!(manifests >= 1);
}

/// Records are replayed as they were valid when written: a PERSIST or a longer TTL given
/// before a short TTL ran out survives a restart after that moment, and an APPEND to a key
/// that had expired starts from nothing after the restart too.
#[test]
fn ttl_changes_replay_as_they_happened() {
    let dir = DataDir::new("ttlreplay");
    {
        let mut s = start(&dir, 2, &[]);
        let c = &mut s.client();
        q::<()>(c, &["SET", "persisted", "v", "PX", "300"]).unwrap();
        q::<i64>(c, &["PERSIST", "persisted"]).unwrap();
        q::<()>(c, &["SET", "extended", "v", "PX", "300"]).unwrap();
        q::<i64>(c, &["PEXPIRE", "extended", "600000"]).unwrap();
        q::<()>(c, &["SET", "reborn", "old", "PX", "100"]).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        q::<i64>(c, &["APPEND", "reborn", "new"]).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        s.kill9();
    }
    let s = start(&dir, 3, &[]);
    let c = &mut s.client();
    assert_eq!(
        q::<Option<String>>(c, &["GET", "persisted"])
            .unwrap()
            .as_deref(),
        Some("v")
    );
    assert_eq!(q::<i64>(c, &["TTL", "persisted"]).unwrap(), -1);
    let ttl: i64 = q(c, &["TTL", "extended"]).unwrap();
    assert!(ttl > 500, "extended TTL kept: {ttl}");
    assert_eq!(
        q::<Option<String>>(c, &["GET", "reborn"])
            .unwrap()
            .as_deref(),
        Some("new")
    );
    assert_eq!(q::<i64>(c, &["TTL", "reborn"]).unwrap(), -1);
}

fn info_u64(c: &mut redis::Connection, field: &str) -> u64 {
    let info: String = q(c, &["INFO", "persistence"]).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {info}"))
}

/// CONFIG SET appendfsync takes effect at once: under `no` the log is written but not
/// synced, back under `always` every write is synced again (and what `no` left unsynced
/// first); CONFIG GET / INFO / REWRITE show the policy; every acknowledged write is there
/// after kill -9.
#[test]
fn appendfsync_changes_at_run_time() {
    let dir = DataDir::new("appendfsync-runtime");
    let conf = std::path::Path::new(dir.path()).join("coreshard.conf");
    std::fs::write(&conf, "# test\n").unwrap();
    let conf = conf.to_string_lossy().into_owned();
    let args = [
        "--dir",
        dir.path(),
        "--shards",
        "2",
        "--config",
        conf.as_str(),
    ];
    let mut s = Server::start_raw(&args, None);
    let c = &mut s.client();
    assert_eq!(
        q::<Vec<String>>(c, &["CONFIG", "GET", "appendfsync"]).unwrap(),
        vec!["appendfsync", "always"]
    );
    q::<()>(c, &["SET", "k0", "v"]).unwrap();
    let synced = info_u64(c, "wal_fsyncs");
    assert!(synced > 0);
    q::<()>(c, &["CONFIG", "SET", "appendfsync", "no"]).unwrap();
    for i in 1..=50 {
        q::<()>(c, &["SET", &format!("k{i}"), "v"]).unwrap();
    }
    assert_eq!(
        info_u64(c, "wal_fsyncs"),
        synced,
        "no syncs under appendfsync no"
    );
    let info: String = q(c, &["INFO", "persistence"]).unwrap();
    assert!(info.contains("aof_fsync:no"), "{info}");
    q::<()>(c, &["CONFIG", "SET", "appendfsync", "always"]).unwrap();
    q::<()>(c, &["SET", "k51", "v"]).unwrap();
    assert!(
        info_u64(c, "wal_fsyncs") > synced,
        "synced again under always"
    );
    let e = common::err_of(c, &["CONFIG", "SET", "appendfsync", "sometimes"]);
    assert_eq!(
        e,
        "ERR CONFIG SET failed (possibly related to argument 'appendfsync') - argument(s) must be one of the following: always, everysec, no"
    );
    q::<()>(c, &["CONFIG", "SET", "appendfsync", "everysec"]).unwrap();
    q::<()>(c, &["CONFIG", "REWRITE"]).unwrap();
    assert!(std::fs::read_to_string(&conf)
        .unwrap()
        .contains("appendfsync everysec"));
    q::<()>(c, &["CONFIG", "SET", "appendfsync", "always"]).unwrap();
    q::<()>(c, &["SET", "k52", "v"]).unwrap();
    s.kill9();
    let s = Server::start_raw(&args, None);
    let c = &mut s.client();
    for i in 0..=52 {
        assert_eq!(
            q::<Option<String>>(c, &["GET", &format!("k{i}")])
                .unwrap()
                .as_deref(),
            Some("v"),
            "k{i}"
        );
    }
    // The rewritten file's everysec was overridden by nothing on the command line.
    assert_eq!(
        q::<Vec<String>>(c, &["CONFIG", "GET", "appendfsync"]).unwrap(),
        vec!["appendfsync", "everysec"]
    );
}

/// Bytes of the files in the data directory whose names end with `suffix` ("" for all):
/// what persistence costs on disk.
fn dir_bytes_of(dir: &DataDir, suffix: &str) -> u64 {
    std::fs::read_dir(&dir.0)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

fn dir_bytes(dir: &DataDir) -> u64 {
    dir_bytes_of(dir, "")
}

/// The log is compacted by size (Redis's `auto-aof-rewrite-percentage` / `-min-size`):
/// with scheduled snapshots off, overwriting the same 50 keys grows only the log; once it
/// passes the minimum size and has doubled since the last snapshot, a snapshot replaces
/// it, so the directory stays small however much is written. Percentage 0 turns that off
/// (CONFIG SET turns it back on), INFO reports the sizes, and everything survives kill -9
/// after compactions.
#[test]
fn the_log_is_compacted_once_it_outgrows_the_last_snapshot() {
    let dir = DataDir::new("autorewrite");
    let extra = [
        "--save",
        "",
        "--wal-segment-size",
        "64kb",
        "--auto-aof-rewrite-min-size",
        "256kb",
        "--auto-aof-rewrite-percentage",
        "0",
    ];
    let mut s = start(&dir, 2, &extra);
    let c = &mut s.client();
    let value = |round: usize, i: usize| format!("{round}:{i}:{}", "x".repeat(1000));
    let write_rounds = |c: &mut redis::Connection, rounds: std::ops::Range<usize>| {
        for round in rounds {
            let mut p = redis::pipe();
            for i in 0..50 {
                p.cmd("SET")
                    .arg(format!("k{i}"))
                    .arg(value(round, i))
                    .ignore();
            }
            p.query::<()>(c).unwrap();
        }
    };
    // Off: 1 MB of log, and no snapshot over the next two ticks of the once-a-second check.
    write_rounds(c, 0..20);
    assert!(info_u64(c, "aof_current_size") > 1_000_000);
    std::thread::sleep(Duration::from_millis(2200));
    assert_eq!(info_u64(c, "rdb_saves"), 0, "percentage 0 compacts nothing");
    assert!(dir_bytes(&dir) > 1_000_000);

    // On: compacted to one copy of the 50 keys (about 52 KB) and the log since: the
    // directory holds that, the segments from the snapshot's start on (64 KB each) and one
    // prepared ahead, well under 700 KB, where it held over 1 MB.
    q::<()>(c, &["CONFIG", "SET", "auto-aof-rewrite-percentage", "100"]).unwrap();
    common::eventually("a compaction by size", || {
        info_u64(c, "rdb_saves") >= 1 && dir_bytes(&dir) < 700_000
    });
    let base = info_u64(c, "aof_base_size");
    assert!((50_000..256_000).contains(&base), "base size {base}");
    assert!(info_u64(c, "aof_current_size") >= base);

    // 3 MB more: compacted again. After it, at most the 256 KB minimum (or twice the base)
    // of log is left uncompacted, so the directory is back under 700 KB.
    write_rounds(c, 20..80);
    common::eventually("compaction keeps up", || {
        info_u64(c, "rdb_saves") >= 2 && dir_bytes(&dir) < 700_000
    });
    write_rounds(c, 80..81);
    s.kill9();

    let s = start(&dir, 3, &extra);
    let c = &mut s.client();
    for i in 0..50 {
        let got: Option<String> = q(c, &["GET", &format!("k{i}")]).unwrap();
        assert_eq!(got.as_deref(), Some(value(80, i).as_str()), "k{i}");
    }
    assert_eq!(q::<i64>(c, &["DBSIZE"]).unwrap(), 50);
    // At start the base is the recovered snapshot (as Redis's is its base file), so a
    // restart does not reset what the log has grown by; the current size adds the log.
    let parts = dir_bytes_of(&dir, ".part");
    assert_eq!(info_u64(c, "aof_base_size"), parts);
    assert!(info_u64(c, "aof_current_size") > parts + 50_000);
}
