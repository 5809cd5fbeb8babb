//! INFO sections, SLOWLOG, CONFIG SET/GET/RESETSTAT/REWRITE, the configuration file and
//! the logs, against the real binary.

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{err_of, keys_on, q, DataDir, Raw, Server};
use redis::Value;

fn start(shards: usize, extra: &[&str]) -> Server {
    let n = shards.to_string();
    let mut args = vec!["--shards", n.as_str(), "--appendonly", "no"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// INFO text of `sections` as field → value (section headers skipped).
fn info(c: &mut redis::Connection, sections: &[&str]) -> HashMap<String, String> {
    let mut words = vec!["INFO"];
    words.extend_from_slice(sections);
    let text: String = q(c, &words).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The section titles of an INFO reply, in order.
fn titles(c: &mut redis::Connection, sections: &[&str]) -> Vec<String> {
    let mut words = vec!["INFO"];
    words.extend_from_slice(sections);
    let text: String = q(c, &words).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("# "))
        .map(str::to_string)
        .collect()
}

/// `a=1,b=2` → map.
fn fields(v: &str) -> HashMap<String, String> {
    v.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn num(m: &HashMap<String, String>, k: &str) -> f64 {
    m.get(k)
        .unwrap_or_else(|| panic!("no {k} in {m:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{k} is not a number: {m:?}"))
}

/// One command on a raw connection; the reply as text.
fn raw_cmd(raw: &mut Raw, args: &[&[u8]]) -> String {
    raw.cmd(args);
    raw.reply_str()
}

#[test]
fn info_sections_parse_and_move_when_commands_run() {
    let s = start(2, &[]);
    let mut c = s.client();
    let before = info(&mut c, &["everything"]);
    for k in [
        "used_memory",
        "used_memory_rss",
        "maxmemory",
        "used_cpu_sys",
        "used_cpu_user",
    ] {
        num(&before, k);
    }
    for k in [
        "used_memory_human",
        "maxmemory_human",
        "mem_fragmentation_ratio",
    ] {
        assert!(before.contains_key(k), "{k} missing");
    }
    assert!(num(&before, "used_memory_rss") > 0.0);
    for shard in 0..2 {
        num(&before, &format!("used_cpu_sys_shard_{shard}"));
        num(&before, &format!("used_cpu_user_shard_{shard}"));
        assert!(before.contains_key(&format!("shard{shard}")));
    }
    // Keys on both shards, through one connection: local and cross-shard runs.
    let keys: Vec<String> = keys_on("a", 0, 2, 20)
        .into_iter()
        .chain(keys_on("b", 1, 2, 20))
        .collect();
    for k in &keys {
        let _: () = q(&mut c, &["SET", k, &"v".repeat(100)]).unwrap();
        let _: String = q(&mut c, &["GET", k]).unwrap();
    }
    let after = info(&mut c, &["everything"]);
    assert!(num(&after, "used_memory") > num(&before, "used_memory"));
    assert!(
        num(&after, "total_commands_processed") >= num(&before, "total_commands_processed") + 80.0
    );
    let set = fields(&after["cmdstat_set"]);
    let get = fields(&after["cmdstat_get"]);
    assert_eq!(num(&set, "calls"), 40.0);
    assert_eq!(num(&get, "calls"), 40.0);
    assert_eq!(num(&get, "failed_calls"), 0.0);
    assert_eq!(num(&get, "rejected_calls"), 0.0);
    assert!(num(&set, "usec_per_call") > 0.0);
    assert!(num(&set, "usec") >= 1.0);
    let mut commands = 0.0;
    for shard in 0..2 {
        let line = fields(&after[&format!("shard{shard}")]);
        let old = fields(&before[&format!("shard{shard}")]);
        assert!(num(&line, "io_uring_enters") > num(&old, "io_uring_enters"));
        assert!(num(&line, "completions") > 0.0);
        assert!(num(&line, "completions_per_enter") > 0.0);
        for k in [
            "connections",
            "mailbox_messages",
            "mailbox_backlog",
            "expiry_backlog",
        ] {
            num(&line, k);
        }
        assert_eq!(num(&line, "keys"), 20.0, "shard {shard}: {line:?}");
        commands += num(&line, "commands");
    }
    assert!(commands >= 80.0);
    // The connection is on one shard; the other shard answered its cross-shard parts.
    let messages: f64 = (0..2)
        .map(|i| num(&fields(&after[&format!("shard{i}")]), "mailbox_messages"))
        .sum();
    assert!(messages >= 20.0, "{messages}");
}

#[test]
fn info_section_selection_follows_redis() {
    let s = start(1, &[]);
    let mut c = s.client();
    let default = titles(&mut c, &[]);
    assert_eq!(
        default,
        [
            "Server",
            "Clients",
            "Memory",
            "Persistence",
            "Stats",
            "Replication",
            "Cpu",
            "Errorstats",
            "Cluster",
            "Keyspace"
        ]
    );
    assert_eq!(titles(&mut c, &["default"]), default);
    let all = titles(&mut c, &["all"]);
    for t in ["Commandstats", "Latencystats", "Shards"] {
        assert!(all.contains(&t.to_string()), "{t} not in INFO all");
        assert!(!default.contains(&t.to_string()));
    }
    assert_eq!(titles(&mut c, &["everything"]), all);
    assert_eq!(titles(&mut c, &["CPU", "server", "cpu"]), ["Server", "Cpu"]);
    assert_eq!(titles(&mut c, &["nosuch"]), Vec::<String>::new());
}

#[test]
fn errorstats_and_failed_calls_count_errors() {
    let s = start(2, &[]);
    let mut c = s.client();
    let local = keys_on("s", 0, 2, 1).remove(0);
    let remote = keys_on("s", 1, 2, 1).remove(0);
    let mut raw = s.raw_on_shard(0, 2);
    for k in [&local, &remote] {
        assert_eq!(raw_cmd(&mut raw, &[b"SET", k.as_bytes(), b"x"]), "+OK\r\n");
        let r = raw_cmd(&mut raw, &[b"LPUSH", k.as_bytes(), b"y"]);
        assert!(r.starts_with("-WRONGTYPE"), "{r}");
    }
    assert!(raw_cmd(&mut raw, &[b"NOSUCHCMD"]).starts_with("-ERR unknown command"));
    assert!(raw_cmd(&mut raw, &[b"GET"]).starts_with("-ERR wrong number"));
    let i = info(&mut c, &["errorstats", "stats", "commandstats"]);
    assert_eq!(i["errorstat_WRONGTYPE"], "count=2");
    assert_eq!(i["errorstat_ERR"], "count=2");
    assert_eq!(num(&i, "total_error_replies"), 4.0);
    let lpush = fields(&i["cmdstat_lpush"]);
    assert_eq!(num(&lpush, "calls"), 2.0);
    assert_eq!(num(&lpush, "failed_calls"), 2.0, "local and cross-shard");
    let get = fields(&i["cmdstat_get"]);
    assert_eq!(num(&get, "rejected_calls"), 1.0);
    assert_eq!(num(&get, "calls"), 0.0);
    assert!(!i.keys().any(|k| k.contains("nosuchcmd")));

    let _: () = q(&mut c, &["CONFIG", "RESETSTAT"]).unwrap();
    let i = info(&mut c, &["errorstats", "stats", "commandstats"]);
    assert!(!i.keys().any(|k| k.starts_with("errorstat_")), "{i:?}");
    assert_eq!(num(&i, "total_error_replies"), 0.0);
    assert!(!i.contains_key("cmdstat_lpush"));
    assert!(!i.contains_key("cmdstat_get"));
    assert!(num(&i, "total_commands_processed") <= 2.0);
}

#[test]
fn latency_percentiles_exist_for_commands_run() {
    let s = start(2, &[]);
    let mut c = s.client();
    for i in 0..200 {
        let _: () = q(&mut c, &["SET", &format!("k{i}"), "v"]).unwrap();
    }
    let _: i64 = q(&mut c, &["INCR", "n"]).unwrap();
    let i = info(&mut c, &["latencystats"]);
    let set = fields(&i["latency_percentiles_usec_set"]);
    let (p50, p99, p999) = (num(&set, "p50"), num(&set, "p99"), num(&set, "p99.9"));
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= p999, "{set:?}");
    assert!(i.contains_key("latency_percentiles_usec_incr"));
    assert!(!i.contains_key("latency_percentiles_usec_get"));
    let _: () = q(
        &mut c,
        &[
            "CONFIG",
            "SET",
            "latency-tracking-info-percentiles",
            "50 90",
        ],
    )
    .unwrap();
    let i = info(&mut c, &["latencystats"]);
    let set = fields(&i["latency_percentiles_usec_set"]);
    assert_eq!(set.len(), 2, "{set:?}");
    num(&set, "p90");
    let got: HashMap<String, String> = q(
        &mut c,
        &["CONFIG", "GET", "latency-tracking-info-percentiles"],
    )
    .unwrap();
    assert_eq!(got["latency-tracking-info-percentiles"], "50 90");
}

/// SLOWLOG GET's entries as (id, args, addr, name).
fn slowlog_get(c: &mut redis::Connection, n: &str) -> Vec<(i64, Vec<String>, String, String)> {
    let v: Value = q(c, &["SLOWLOG", "GET", n]).unwrap();
    let Value::Array(entries) = v else {
        panic!("{v:?}")
    };
    entries
        .into_iter()
        .map(|e| {
            let Value::Array(f) = e else { panic!("{e:?}") };
            assert_eq!(f.len(), 6);
            let id: i64 = redis::from_redis_value(f[0].clone()).unwrap();
            let ts: i64 = redis::from_redis_value(f[1].clone()).unwrap();
            let us: i64 = redis::from_redis_value(f[2].clone()).unwrap();
            assert!(ts > 1_600_000_000 && us >= 0);
            let args: Vec<String> = redis::from_redis_value(f[3].clone()).unwrap();
            let addr: String = redis::from_redis_value(f[4].clone()).unwrap();
            let name: String = redis::from_redis_value(f[5].clone()).unwrap();
            (id, args, addr, name)
        })
        .collect()
}

#[test]
fn slowlog_records_commands_across_shards_in_order() {
    let s = start(2, &["--slowlog-log-slower-than", "0"]);
    let mut c = s.client();
    let mut on: Vec<Raw> = (0..2).map(|i| s.raw_on_shard(i, 2)).collect();
    raw_cmd(&mut on[1], &[b"CLIENT", b"SETNAME", b"second"]);
    let _: () = q(&mut c, &["SLOWLOG", "RESET"]).unwrap();
    let mut sent = Vec::new();
    for i in 0..10 {
        let key = format!("slow{i}");
        assert_eq!(
            raw_cmd(&mut on[i % 2], &[b"SET", key.as_bytes(), b"v"]),
            "+OK\r\n"
        );
        sent.push(key);
    }
    let entries = slowlog_get(&mut c, "-1");
    let sets: Vec<_> = entries.iter().filter(|e| e.1[0] == "SET").collect();
    let keys: Vec<&str> = sets.iter().map(|e| e.1[1].as_str()).collect();
    let newest_first: Vec<&str> = sent.iter().rev().map(String::as_str).collect();
    assert_eq!(keys, newest_first);
    assert!(entries.windows(2).all(|w| w[0].0 > w[1].0), "ids fall");
    for (i, e) in sets.iter().enumerate() {
        assert!(e.2.starts_with("127.0.0.1:"), "{e:?}");
        // sent[9 - i] went through connection (9 - i) % 2.
        let expect = if (9 - i) % 2 == 1 { "second" } else { "" };
        assert_eq!(e.3, expect);
    }
    assert_eq!(slowlog_get(&mut c, "2").len(), 2);
    // Long arguments are cut as Redis cuts them.
    let long = "x".repeat(200);
    let _: () = q(&mut c, &["SET", "long", &long]).unwrap();
    let e = &slowlog_get(&mut c, "1")[0];
    assert_eq!(e.1[2], format!("{}... (72 more bytes)", &long[..128]));
    let len: i64 = q(&mut c, &["SLOWLOG", "LEN"]).unwrap();
    assert!(len >= 12, "{len}");
    let _: () = q(&mut c, &["CONFIG", "SET", "slowlog-max-len", "3"]).unwrap();
    for _ in 0..4 {
        let _: String = q(&mut c, &["PING"]).unwrap();
    }
    let len: i64 = q(&mut c, &["SLOWLOG", "LEN"]).unwrap();
    assert_eq!(len, 3);
    assert_eq!(slowlog_get(&mut c, "-1").len(), 3);
    let _: () = q(&mut c, &["SLOWLOG", "RESET"]).unwrap();
    let _: () = q(&mut c, &["CONFIG", "SET", "slowlog-log-slower-than", "-1"]).unwrap();
    let len: i64 = q(&mut c, &["SLOWLOG", "LEN"]).unwrap();
    assert!(len <= 1, "{len}");
    assert_eq!(
        err_of(&mut c, &["SLOWLOG", "GET", "-2"]),
        "ERR count should be greater than or equal to -1"
    );
    let help: Vec<String> = q(&mut c, &["SLOWLOG", "HELP"]).unwrap();
    assert!(help[0].starts_with("SLOWLOG <subcommand>"));
}

#[test]
fn slowlog_default_threshold_skips_fast_commands() {
    let s = start(1, &[]);
    let mut c = s.client();
    let got: HashMap<String, String> = q(&mut c, &["CONFIG", "GET", "slowlog-*"]).unwrap();
    assert_eq!(got["slowlog-log-slower-than"], "10000");
    assert_eq!(got["slowlog-max-len"], "128");
    for i in 0..50 {
        let _: () = q(&mut c, &["SET", &format!("k{i}"), "v"]).unwrap();
    }
    let len: i64 = q(&mut c, &["SLOWLOG", "LEN"]).unwrap();
    assert_eq!(len, 0);
}

#[test]
fn config_set_and_get_round_trip_with_redis_errors() {
    let s = start(2, &[]);
    let mut c = s.client();
    let get = |c: &mut redis::Connection, name: &str| -> String {
        let m: HashMap<String, String> = q(c, &["CONFIG", "GET", name]).unwrap();
        m[name].clone()
    };
    for (name, value) in [
        ("timeout", "300"),
        ("slowlog-log-slower-than", "-1"),
        ("slowlog-max-len", "7"),
        ("maxmemory", "10485760"),
        ("maxmemory-policy", "allkeys-lru"),
        ("lua-time-limit", "250"),
        ("lua-kill-after", "0"),
    ] {
        let _: () = q(&mut c, &["CONFIG", "SET", name, value]).unwrap();
        assert_eq!(get(&mut c, name), value, "{name}");
    }
    let _: () = q(&mut c, &["CONFIG", "SET", "notify-keyspace-events", "KEA"]).unwrap();
    let notify = get(&mut c, "notify-keyspace-events");
    assert!(notify.contains('K') && notify.contains('E'), "{notify}");
    assert_eq!(get(&mut c, "busy-reply-threshold"), "250");
    let _: () = q(&mut c, &["CONFIG", "SET", "maxmemory", "1mb"]).unwrap();
    assert_eq!(get(&mut c, "maxmemory"), "1048576");
    // Several at once, all or nothing.
    let _: () = q(
        &mut c,
        &["CONFIG", "SET", "timeout", "0", "slowlog-max-len", "9"],
    )
    .unwrap();
    assert_eq!(get(&mut c, "slowlog-max-len"), "9");
    let e = err_of(
        &mut c,
        &["CONFIG", "SET", "slowlog-max-len", "10", "timeout", "x"],
    );
    assert_eq!(
        e,
        "ERR CONFIG SET failed (possibly related to argument 'timeout') - argument couldn't be parsed into an integer"
    );
    assert_eq!(get(&mut c, "slowlog-max-len"), "9", "nothing applied");
    let e = err_of(
        &mut c,
        &["CONFIG", "SET", "maxmemory", "5mb", "timeout", "x"],
    );
    assert!(e.contains("'timeout'"), "{e}");
    assert_eq!(get(&mut c, "maxmemory"), "1048576", "nothing applied");
    assert_eq!(
        err_of(&mut c, &["CONFIG", "SET", "nosuch", "1"]),
        "ERR Unknown option or number of arguments for CONFIG SET - 'nosuch'"
    );
    assert_eq!(
        err_of(&mut c, &["CONFIG", "SET", "port", "1"]),
        "ERR CONFIG SET failed (possibly related to argument 'port') - can't set immutable config"
    );
    // appendfsync changes at run time (tests/persistence.rs checks what it does).
    assert_eq!(
        q::<String>(&mut c, &["CONFIG", "SET", "appendfsync", "everysec"]).unwrap(),
        "OK"
    );
    assert_eq!(get(&mut c, "appendfsync"), "everysec");
    assert_eq!(
        err_of(&mut c, &["CONFIG", "SET", "timeout", "-1"]),
        "ERR CONFIG SET failed (possibly related to argument 'timeout') - argument must be between 0 and 2147483647 inclusive"
    );
    assert!(
        err_of(&mut c, &["CONFIG", "SET", "timeout", "1", "timeout", "2"])
            .contains("duplicate parameter")
    );
    assert!(err_of(&mut c, &["CONFIG", "SET", "save", "1 1"]).contains("persistence is off"));
    assert!(err_of(&mut c, &["CONFIG", "SET", "timeout"]).contains("wrong number of arguments"));
    assert_eq!(
        err_of(&mut c, &["CONFIG", "REWRITE"]),
        "ERR The server is running without a config file"
    );

    // A password applies to new connections; the ones already in stay in.
    let _: () = q(&mut c, &["CONFIG", "SET", "requirepass", "sekrit"]).unwrap();
    let mut fresh = s.raw();
    assert!(raw_cmd(&mut fresh, &[b"GET", b"x"]).starts_with("-NOAUTH"));
    assert_eq!(raw_cmd(&mut fresh, &[b"AUTH", b"sekrit"]), "+OK\r\n");
    let _: () = q(&mut c, &["CONFIG", "SET", "requirepass", ""]).unwrap();
    let mut open = s.raw();
    assert_eq!(raw_cmd(&mut open, &[b"PING"]), "+PONG\r\n");
}

#[test]
fn config_set_timeout_closes_idle_clients_at_run_time() {
    let s = start(2, &[]);
    let mut c = s.client();
    let mut idle = s.raw();
    assert_eq!(raw_cmd(&mut idle, &[b"PING"]), "+PONG\r\n");
    let _: () = q(&mut c, &["CONFIG", "SET", "timeout", "1"]).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        idle.closed(),
        "an idle client is closed after the new timeout"
    );
    let mut c = s.client();
    let _: () = q(&mut c, &["CONFIG", "SET", "timeout", "0"]).unwrap();
    let mut kept = s.raw();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        raw_cmd(&mut kept, &[b"PING"]),
        "+PONG\r\n",
        "no timeout any more"
    );
}

#[test]
fn config_set_save_changes_the_schedule_with_persistence_on() {
    let s = Server::start(&["--shards", "1"]);
    let mut c = s.client();
    let _: () = q(&mut c, &["CONFIG", "SET", "save", "100 5"]).unwrap();
    let got: HashMap<String, String> = q(&mut c, &["CONFIG", "GET", "save"]).unwrap();
    assert_eq!(got["save"], "100 5");
    assert!(err_of(&mut c, &["CONFIG", "SET", "save", "100"]).contains("'save'"));
}

fn write(dir: &DataDir, name: &str, text: &str) -> String {
    let path = dir.0.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn config_file_then_command_line_and_rewrite() {
    let dir = DataDir::new("conf");
    let file = write(
        &dir,
        "coreshard.conf",
        "# settings\nmaxmemory 1mb\ntimeout 7\nslowlog-max-len 5\nappendonly no\nnotify-keyspace-events \"Ex\"\n",
    );
    let s = Server::start(&["--config", &file, "--timeout", "9", "--shards", "2"]);
    let mut c = s.client();
    let got: HashMap<String, String> = q(
        &mut c,
        &[
            "CONFIG",
            "GET",
            "maxmemory",
            "timeout",
            "slowlog-max-len",
            "appendonly",
            "notify-keyspace-events",
        ],
    )
    .unwrap();
    assert_eq!(got["maxmemory"], "1048576", "from the file");
    assert_eq!(got["timeout"], "9", "the command line wins");
    assert_eq!(got["slowlog-max-len"], "5");
    assert_eq!(got["appendonly"], "no");
    assert_eq!(got["notify-keyspace-events"].len(), 2);
    let _: () = q(
        &mut c,
        &[
            "CONFIG",
            "SET",
            "slowlog-max-len",
            "64",
            "maxmemory-policy",
            "allkeys-lfu",
            "auto-aof-rewrite-min-size",
            "1536kb",
            "client-output-buffer-limit",
            "pubsub 64mb 16mb 120 normal 1000 0 0",
        ],
    )
    .unwrap();
    let _: () = q(&mut c, &["CONFIG", "REWRITE"]).unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("# settings\n"), "{text}");
    assert!(text.contains("\nslowlog-max-len 64\n"), "{text}");
    assert!(text.contains("\ntimeout 9\n"), "{text}");
    // Sizes in the largest whole unit, as Redis writes them.
    assert!(text.contains("\nmaxmemory 1mb\n"), "{text}");
    assert!(
        text.contains("\nauto-aof-rewrite-min-size 1536kb\n"),
        "{text}"
    );
    assert!(text.contains("\nmaxmemory-policy allkeys-lfu\n"), "{text}");
    assert!(!text.contains("slowlog-max-len 5"), "{text}");
    // Only the classes changed, sizes in units.
    assert!(
        text.contains("\nclient-output-buffer-limit normal 1000 0 0 pubsub 64mb 16mb 120\n"),
        "{text}"
    );
    // Every class back at its default: the line stays with the first class's default,
    // as Redis rewrites it.
    let _: () = q(
        &mut c,
        &[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "normal 0 0 0 pubsub 32mb 8mb 60",
        ],
    )
    .unwrap();
    let _: () = q(&mut c, &["CONFIG", "REWRITE"]).unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("\nclient-output-buffer-limit normal 0 0 0\n"),
        "{text}"
    );
    assert_eq!(
        text.matches("client-output-buffer-limit").count(),
        1,
        "{text}"
    );
    // The rewritten file is valid and starts a server with those values.
    drop(c);
    let status = Command::new(env!("CARGO_BIN_EXE_coreshard"))
        .args(["--check-config", &file])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn check_config_exits_0_or_1_naming_the_bad_line() {
    let dir = DataDir::new("check");
    let good = write(
        &dir,
        "good.conf",
        "port 7000\nsave \"\"\nbind 127.0.0.1 -::1\nloglevel notice\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_coreshard"))
        .args(["--check-config", &good])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    for (text, line) in [
        ("port 7000\nmaxmemory-policy lru\n", 2),
        ("# c\n\nnosuch-directive 1\n", 3),
        ("timeout \"unbalanced\n", 1),
        ("maxmemory\n", 1),
    ] {
        let bad = write(&dir, "bad.conf", text);
        let out = Command::new(env!("CARGO_BIN_EXE_coreshard"))
            .args(["--check-config", &bad])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{text}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("at line {line}")), "{text}: {err}");
        let bad_line = text.lines().nth(line - 1).unwrap().trim();
        assert!(err.contains(&format!(">>> '{bad_line}'")), "{err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_coreshard"))
        .args(["--check-config", "/nonexistent/coreshard.conf"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    // A bad file stops a start too.
    let bad = write(&dir, "bad.conf", "maxmemory-policy lru\n");
    let out = Command::new(env!("CARGO_BIN_EXE_coreshard"))
        .args(["--config", &bad, "--port", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coreshard"))
        .args([
            "--port",
            "0",
            "--appendonly",
            "no",
            "--log-level",
            "info",
            "--shards",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert!(line.contains("listening on"), "{line}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("shutting down"), "{err}");
    assert!(err.contains("INFO"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "ANSI escape in piped logs: {err:?}"
    );
}

/// Client-controlled sizes stay bounded: an error code is at most what precedes a space
/// in the first 32 bytes (else ERR, as Redis), and INFO with very many section names
/// answers at once (only known names are kept).
#[test]
fn errorstats_codes_and_info_arguments_are_bounded() {
    let s = Server::start(&["--shards", "1", "--appendonly", "no"]);
    let c = &mut s.client();
    let long = format!("C{}", "a".repeat(100_000));
    let _ = q::<redis::Value>(
        c,
        &["EVAL", "return redis.error_reply(ARGV[1])", "0", &long],
    );
    let _ = q::<redis::Value>(
        c,
        &["EVAL", "return redis.error_reply('NOSPACEATALL')", "0"],
    );
    let info: String = q(c, &["INFO", "errorstats"]).unwrap();
    assert!(
        info.len() < 1000,
        "errorstats stays small: {} bytes",
        info.len()
    );
    assert!(info.contains("errorstat_ERR:count=2"), "{info}");
    let mut raw = s.raw();
    let mut args: Vec<Vec<u8>> = vec![b"INFO".to_vec()];
    args.extend((0..200_000).map(|i| format!("s{i}").into_bytes()));
    args.push(b"server".to_vec());
    let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
    raw.cmd(&refs);
    let reply = raw.reply_str();
    assert!(
        reply.contains("redis_version:"),
        "{}",
        &reply[..reply.len().min(200)]
    );
}

/// CONFIG REWRITE from many connections at once never leaves a broken file, and keeps
/// the file's permissions; redis.conf's case-insensitive enums, `bind *` and memory
/// sizes are read; a non-UTF-8 CONFIG SET value is refused; `save ""` is fine without
/// persistence.
#[test]
fn config_rewrite_races_and_redis_conf_spellings() {
    use std::os::unix::fs::PermissionsExt;
    let dir = DataDir::new("conf-race");
    let conf = std::path::Path::new(dir.path()).join("coreshard.conf");
    std::fs::write(
        &conf,
        "# kept\nappendfsync EVERYSEC\nloglevel NOTICE\nproto-max-bulk-len 512mb\nrequirepass \"\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o600)).unwrap();
    let conf_s = conf.to_string_lossy().into_owned();
    let s = Server::start_raw(
        &[
            "--dir",
            dir.path(),
            "--shards",
            "2",
            "--config",
            conf_s.as_str(),
        ],
        None,
    );
    let url = s.url();
    let workers: Vec<_> = (0..6)
        .map(|t| {
            let url = url.clone();
            std::thread::spawn(move || {
                let c = &mut redis::Client::open(url.as_str())
                    .unwrap()
                    .get_connection()
                    .unwrap();
                for i in 0..40 {
                    let p = if (t + i) % 2 == 0 {
                        "50 99 99.9 99.99 99.999"
                    } else {
                        "50"
                    };
                    q::<()>(
                        c,
                        &["CONFIG", "SET", "latency-tracking-info-percentiles", p],
                    )
                    .unwrap();
                    q::<()>(c, &["CONFIG", "REWRITE"]).unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(text.starts_with("# kept\n"), "{text}");
    assert_eq!(
        text.matches("latency-tracking-info-percentiles").count(),
        1,
        "{text}"
    );
    let mode = std::fs::metadata(&conf).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_coreshard"))
        .args(["--check-config", conf_s.as_str()])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let c = &mut s.client();
    assert_eq!(
        q::<Vec<String>>(c, &["CONFIG", "GET", "appendfsync"]).unwrap(),
        vec!["appendfsync", "everysec"]
    );
    let mut raw = s.raw();
    raw.cmd(&[b"CONFIG", b"SET", b"requirepass", b"\xff\xfe"]);
    assert!(raw.reply_str().starts_with("-ERR CONFIG SET failed"));
    let star = std::path::Path::new(dir.path()).join("star.conf");
    std::fs::write(&star, "bind * -::*\n").unwrap();
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_coreshard"))
        .args(["--check-config", star.to_string_lossy().as_ref()])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let plain = Server::start(&["--shards", "1", "--appendonly", "no"]);
    let c = &mut plain.client();
    q::<()>(c, &["CONFIG", "SET", "save", ""]).unwrap();
}
