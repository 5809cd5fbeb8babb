//! The Prometheus endpoint (`--metrics-port`), read over raw TCP and parsed with the real
//! Python `prometheus_client` text parser, and the LATENCY command.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::{q, Server, DEADLINE};
use redis::Value;

/// A server with the metrics endpoint on a free port, and that port's address (from the
/// line the server prints after its startup line).
fn start(shards: usize, extra: &[&str]) -> (Server, SocketAddr) {
    let n = shards.to_string();
    let mut args = vec![
        "--shards",
        n.as_str(),
        "--appendonly",
        "no",
        "--metrics-port",
        "0",
    ];
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    let line = server
        .stdout
        .recv_timeout(DEADLINE)
        .expect("the metrics line");
    let addr = line
        .strip_prefix("metrics: http://")
        .and_then(|r| r.strip_suffix("/metrics"))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no metrics address in: {line}"));
    (server, addr)
}

/// Send `request` as is and read the whole response (the server closes after it).
fn http(addr: SocketAddr, request: &[u8]) -> (u16, String, String) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(DEADLINE)).unwrap();
    c.write_all(request).unwrap();
    let mut buf = Vec::new();
    c.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8(buf).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head}"));
    if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
    {
        assert_eq!(len.parse::<usize>().unwrap(), body.len(), "Content-Length");
    }
    (status, head.to_string(), body.to_string())
}

fn scrape(addr: SocketAddr) -> (String, String) {
    let (status, head, body) = http(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n",
    );
    assert_eq!(status, 200, "{head}");
    (head, body)
}

/// Where `prometheus_client` is installed for the tests: `<target dir>/pyprom`.
fn pyprom() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = PathBuf::from(env!("CARGO_BIN_EXE_coreshard"));
        let target = exe
            .parent()
            .and_then(|p| p.parent())
            .expect("target dir")
            .to_path_buf();
        let dir = target.join("pyprom");
        if !dir.join("prometheus_client").exists() {
            let status = Command::new("python3")
                .args(["-m", "pip", "install", "--quiet", "--target"])
                .arg(&dir)
                .arg("prometheus_client")
                .env("PIP_ROOT_USER_ACTION", "ignore")
                .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
                .status()
                .expect("run pip");
            assert!(status.success(), "pip install prometheus_client failed");
        }
        dir
    })
    .clone()
}

/// One parsed sample: family, family type, sample name, labels (`k=v` sorted, joined by
/// commas), value.
#[derive(Debug, Clone)]
struct Sample {
    family: String,
    kind: String,
    name: String,
    labels: String,
    value: f64,
}

const PARSER: &str = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
text = sys.stdin.read()
for fam in text_string_to_metric_families(text):
    for s in fam.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print(f"{fam.name}\t{fam.type}\t{s.name}\t{labels}\t{s.value!r}")
"#;

/// Parse the exposition with `prometheus_client` (which raises on anything malformed).
fn parse(text: &str) -> Vec<Sample> {
    let mut child = Command::new("python3")
        .args(["-c", PARSER])
        .env("PYTHONPATH", pyprom())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Sample {
                family: f[0].into(),
                kind: f[1].into(),
                name: f[2].into(),
                labels: f[3].into(),
                value: f[4].parse().unwrap_or_else(|_| panic!("value in {l}")),
            }
        })
        .collect()
}

fn value(samples: &[Sample], name: &str, labels: &str) -> f64 {
    samples
        .iter()
        .find(|s| s.name == name && s.labels == labels)
        .unwrap_or_else(|| panic!("no sample {name}{{{labels}}}"))
        .value
}

fn kind(samples: &[Sample], family: &str) -> String {
    samples
        .iter()
        .find(|s| s.family == family)
        .unwrap_or_else(|| panic!("no family {family}"))
        .kind
        .clone()
}

#[test]
fn metrics_parse_with_prometheus_client_and_count_what_ran() {
    let (server, addr) = start(2, &[]);
    let mut c = server.client();
    for i in 0..25 {
        let _: () = q(&mut c, &["SET", &format!("k{i}"), "v"]).unwrap();
    }
    for i in 0..7 {
        let _: Option<String> = q(&mut c, &["GET", &format!("k{i}")]).unwrap();
    }
    let _: i64 = q(&mut c, &["EXPIRE", "k0", "1000"]).unwrap();
    assert!(q::<i64>(&mut c, &["HSET", "k1", "f", "v"]).is_err());
    assert!(q::<i64>(&mut c, &["GET"]).is_err());

    let (head, body) = scrape(addr);
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(body.contains("# HELP coreshard_command_calls_total "));
    assert!(body.contains("# TYPE coreshard_command_latency_seconds histogram"));
    let s = parse(&body);

    for (family, want) in [
        ("coreshard_uptime_seconds", "gauge"),
        ("coreshard_connected_clients", "gauge"),
        ("coreshard_commands_processed", "counter"),
        ("coreshard_keys", "gauge"),
        ("coreshard_expires", "gauge"),
        ("coreshard_used_memory_bytes", "gauge"),
        ("coreshard_command_calls", "counter"),
        ("coreshard_command_duration_seconds", "counter"),
        ("coreshard_command_failed_calls", "counter"),
        ("coreshard_command_rejected_calls", "counter"),
        ("coreshard_errors", "counter"),
        ("coreshard_command_latency_seconds", "histogram"),
        ("coreshard_shard_cpu_seconds", "counter"),
        ("coreshard_shard_io_uring_enters", "counter"),
        ("coreshard_shard_completions", "counter"),
        ("coreshard_shard_mailbox_messages", "counter"),
        ("coreshard_shard_connections", "gauge"),
        ("coreshard_shard_used_memory_bytes", "gauge"),
    ] {
        assert_eq!(kind(&s, family), want, "{family}");
    }

    assert_eq!(value(&s, "coreshard_command_calls_total", "cmd=set"), 25.0);
    assert_eq!(value(&s, "coreshard_command_calls_total", "cmd=get"), 7.0);
    assert_eq!(value(&s, "coreshard_command_calls_total", "cmd=hset"), 1.0);
    assert_eq!(
        value(&s, "coreshard_command_failed_calls_total", "cmd=hset"),
        1.0
    );
    assert_eq!(
        value(&s, "coreshard_command_rejected_calls_total", "cmd=get"),
        1.0
    );
    assert_eq!(value(&s, "coreshard_errors_total", "code=WRONGTYPE"), 1.0);
    assert_eq!(value(&s, "coreshard_errors_total", "code=ERR"), 1.0);
    assert_eq!(value(&s, "coreshard_keys", ""), 25.0);
    assert_eq!(value(&s, "coreshard_expires", ""), 1.0);
    assert_eq!(value(&s, "coreshard_connected_clients", ""), 1.0);
    assert!(value(&s, "coreshard_commands_processed_total", "") >= 33.0);
    assert!(value(&s, "coreshard_used_memory_bytes", "") > 0.0);
    assert!(value(&s, "coreshard_command_duration_seconds_total", "cmd=set") > 0.0);

    // The SET histogram: 25 calls, cumulative buckets ending at +Inf.
    let set = "cmd=set,group=string";
    assert_eq!(
        value(&s, "coreshard_command_latency_seconds_count", set),
        25.0
    );
    assert_eq!(
        value(
            &s,
            "coreshard_command_latency_seconds_bucket",
            &format!("{set},le=+Inf")
        ),
        25.0
    );
    assert!(value(&s, "coreshard_command_latency_seconds_sum", set) > 0.0);
    let buckets: Vec<f64> = s
        .iter()
        .filter(|x| {
            x.name == "coreshard_command_latency_seconds_bucket" && x.labels.starts_with("cmd=set,")
        })
        .map(|x| x.value)
        .collect();
    assert!(buckets.len() > 10);
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");

    // Per shard: both shards, their keys adding up.
    let keys: f64 = (0..2)
        .map(|i| value(&s, "coreshard_shard_keys", &format!("shard={i}")))
        .sum();
    assert_eq!(keys, 25.0);
    for i in 0..2 {
        assert!(
            value(
                &s,
                "coreshard_shard_io_uring_enters_total",
                &format!("shard={i}")
            ) > 0.0
        );
        assert!(
            value(
                &s,
                "coreshard_shard_cpu_seconds_total",
                &format!("mode=user,shard={i}")
            ) >= 0.0
        );
    }

    // A second scrape sees the new calls; scrapes are not commands.
    let _: () = q(&mut c, &["SET", "one", "more"]).unwrap();
    let s = parse(&scrape(addr).1);
    assert_eq!(value(&s, "coreshard_command_calls_total", "cmd=set"), 26.0);
    // CLIENT LIST does not show metrics connections either.
    let list: String = q(&mut c, &["CLIENT", "LIST"]).unwrap();
    assert_eq!(list.lines().count(), 1, "{list}");
}

#[test]
fn other_paths_methods_and_oversized_requests_are_refused() {
    let (server, addr) = start(2, &[]);
    let (status, _, _) = http(addr, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(status, 404);
    let (status, _, _) = http(addr, b"GET /metricsx HTTP/1.1\r\n\r\n");
    assert_eq!(status, 404);
    let (status, head, _) = http(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(status, 405);
    assert!(head.contains("Allow: GET"), "{head}");
    let (status, _, _) = http(addr, b"DELETE /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(status, 405);
    // Request line and headers over 8 KB, with no end of headers: 431, then closed.
    let mut big = b"GET /metrics HTTP/1.1\r\nX-Filler: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 9000));
    let (status, _, _) = http(addr, &big);
    assert_eq!(status, 431);
    // A query string is fine; HTTP/1.0 too.
    let (status, _, body) = http(addr, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n");
    assert_eq!(status, 200);
    assert!(body.contains("coreshard_uptime_seconds"));

    // A Redis client on the metrics port gets HTTP, never a Redis reply.
    let (status, _, _) = http(addr, b"*1\r\n$4\r\nPING\r\n\r\n");
    assert_eq!(status, 400);
    let mut raw = TcpStream::connect(addr).unwrap();
    raw.set_read_timeout(Some(DEADLINE)).unwrap();
    raw.write_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    raw.write_all(b"\r\n").unwrap();
    let mut reply = Vec::new();
    raw.read_to_end(&mut reply).unwrap();
    assert!(reply.starts_with(b"HTTP/1.1 400"), "{reply:?}");

    // ...and the Redis port never answers HTTP: a GET is an unknown command there.
    let mut c = server.client();
    let pong: String = q(&mut c, &["PING"]).unwrap();
    assert_eq!(pong, "PONG");
    // Metrics connections and refusals left no trace in the command statistics.
    let info: String = q(&mut c, &["INFO", "commandstats"]).unwrap();
    assert!(!info.contains("cmdstat_get:"), "{info}");
    let mut r = TcpStream::connect(server.addr).unwrap();
    r.set_read_timeout(Some(DEADLINE)).unwrap();
    r.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut buf = [0u8; 256];
    let n = r.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"-ERR"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
}

#[test]
fn metrics_are_off_by_default_and_the_port_can_be_chosen() {
    let server = Server::start(&["--appendonly", "no"]);
    assert!(server
        .stdout
        .recv_timeout(Duration::from_secs(2))
        .is_ok_and(|l| l.starts_with("persistence:")));
    // A port chosen by number, on the --bind address by default.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = free.to_string();
    let server = Server::start(&["--appendonly", "no", "--metrics-port", &p]);
    let line = server.stdout.recv_timeout(DEADLINE).unwrap();
    assert_eq!(line, format!("metrics: http://127.0.0.1:{free}/metrics"));
    let (_, body) = scrape(format!("127.0.0.1:{free}").parse().unwrap());
    parse(&body);
}

// ---------------------------------------------------------------------------------------
// LATENCY

/// A Lua loop long enough to pass the threshold below on any machine (hundreds of ms).
const SLOW_SCRIPT: &str = "local i = 0 while i < 20000000 do i = i + 1 end return 1";
/// High enough that ordinary commands on a loaded test machine stay under it.
const THRESHOLD_MS: &str = "50";

fn latest(c: &mut redis::Connection) -> Vec<(String, i64, i64, i64)> {
    let v: Vec<(String, i64, i64, i64)> = q(c, &["LATENCY", "LATEST"]).unwrap();
    v
}

#[test]
fn latency_events_are_recorded_over_the_threshold_and_merged_across_shards() {
    let (server, _) = start(2, &[]);
    let mut c = server.client();
    // Off by default: nothing recorded.
    let _: i64 = q(&mut c, &["EVAL", SLOW_SCRIPT, "0"]).unwrap();
    assert!(latest(&mut c).is_empty());
    let doctor: String = q(&mut c, &["LATENCY", "DOCTOR"]).unwrap();
    assert!(
        doctor.contains("Latency monitoring is disabled"),
        "{doctor}"
    );
    let t: Vec<String> = q(&mut c, &["CONFIG", "GET", "latency-monitor-threshold"]).unwrap();
    assert_eq!(t, vec!["latency-monitor-threshold", "0"]);

    let _: () = q(
        &mut c,
        &["CONFIG", "SET", "latency-monitor-threshold", THRESHOLD_MS],
    )
    .unwrap();
    let doctor: String = q(&mut c, &["LATENCY", "DOCTOR"]).unwrap();
    assert!(doctor.starts_with("Dave, no latency spike"), "{doctor}");
    // Fast commands under the threshold are no events.
    let _: () = q(&mut c, &["SET", "a", "b"]).unwrap();
    assert!(latest(&mut c).is_empty());

    // A slow command from clients on (probably) both shards.
    let mut c2 = server.client();
    let _: i64 = q(&mut c, &["EVAL", SLOW_SCRIPT, "0"]).unwrap();
    let _: i64 = q(&mut c2, &["EVAL", SLOW_SCRIPT, "0"]).unwrap();
    // A command flagged fast that takes long: SADD of many members.
    let mut sadd = vec!["SADD".to_string(), "big".to_string()];
    sadd.extend((0..1_500_000).map(|i| i.to_string()));
    let refs: Vec<&str> = sadd.iter().map(String::as_str).collect();
    let _: i64 = q(&mut c, &refs).unwrap();

    let events = latest(&mut c);
    let names: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert!(names.contains(&"command"), "{events:?}");
    assert!(names.contains(&"fast-command"), "{events:?}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for (name, time, ms, max) in &events {
        assert!((now - time).abs() < 60, "{name} at {time}");
        assert!(*ms >= 50 && max >= ms, "{name}: {ms} {max}");
    }

    let history: Vec<(i64, i64)> = q(&mut c, &["LATENCY", "HISTORY", "command"]).unwrap();
    assert!(!history.is_empty() && history.len() <= 2, "{history:?}");
    assert!(history.windows(2).all(|w| w[0].0 < w[1].0), "{history:?}");
    let none: Vec<(i64, i64)> = q(&mut c, &["LATENCY", "HISTORY", "nosuch"]).unwrap();
    assert!(none.is_empty());

    let doctor: String = q(&mut c, &["LATENCY", "DOCTOR"]).unwrap();
    assert!(doctor.contains("1. command:"), "{doctor}");
    assert!(doctor.contains("fast-command:"), "{doctor}");

    // RESET counts the events that existed, whichever shards held them.
    let n: i64 = q(
        &mut c,
        &["LATENCY", "RESET", "command", "command", "nosuch"],
    )
    .unwrap();
    assert_eq!(n, 1);
    let events = latest(&mut c);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "fast-command");
    let n: i64 = q(&mut c, &["LATENCY", "RESET"]).unwrap();
    assert_eq!(n, 1);
    assert!(latest(&mut c).is_empty());
    let n: i64 = q(&mut c, &["LATENCY", "RESET"]).unwrap();
    assert_eq!(n, 0);
}

#[test]
fn latency_histogram_has_redis_7_shape() {
    let (server, _) = start(2, &[]);
    let mut c = server.client();
    for i in 0..10 {
        let _: () = q(&mut c, &["SET", &format!("k{i}"), "v"]).unwrap();
    }
    let _: Option<String> = q(&mut c, &["GET", "k1"]).unwrap();
    let v: Value = q(
        &mut c,
        &["LATENCY", "HISTOGRAM", "set", "GET", "nosuch", "hset"],
    )
    .unwrap();
    // RESP2: a flat array of name, {calls, n, histogram_usec, {usec, cumulative...}}.
    let Value::Array(items) = v else {
        panic!("{v:?}")
    };
    assert_eq!(items.len(), 4, "{items:?}");
    let name = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        other => panic!("{other:?}"),
    };
    assert_eq!(name(&items[0]), "set");
    assert_eq!(name(&items[2]), "get");
    let check = |v: &Value, calls: i64| {
        let Value::Array(m) = v else { panic!("{v:?}") };
        assert_eq!(name(&m[0]), "calls");
        assert_eq!(m[1], Value::Int(calls));
        assert_eq!(name(&m[2]), "histogram_usec");
        let Value::Array(h) = &m[3] else {
            panic!("{m:?}")
        };
        let pairs: Vec<(i64, i64)> = h
            .chunks(2)
            .map(|p| match p {
                [Value::Int(a), Value::Int(b)] => (*a, *b),
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(!pairs.is_empty());
        assert!(pairs.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1));
        assert_eq!(pairs.last().unwrap().1, calls);
        // Labels are Redis's: 1, 2, 4, 8, 16, 33, 66, 132, ... microseconds.
        let labels = [
            1, 2, 4, 8, 16, 33, 66, 132, 264, 528, 1056, 2113, 4227, 8454, 16908, 33816,
        ];
        for (usec, _) in &pairs {
            assert!(*usec > 33816 || labels.contains(usec), "label {usec}");
        }
    };
    check(&items[1], 10);
    check(&items[3], 1);

    // No names: every command that ran (LATENCY itself included).
    let v: Value = q(&mut c, &["LATENCY", "HISTOGRAM"]).unwrap();
    let Value::Array(all) = v else { panic!() };
    let names: Vec<String> = all.iter().step_by(2).map(name).collect();
    assert!(names.contains(&"set".to_string()) && names.contains(&"latency".to_string()));

    // RESP3: a real map.
    let mut c3 = server.client_resp3();
    let v: Value = q(&mut c3, &["LATENCY", "HISTOGRAM", "set"]).unwrap();
    assert!(matches!(v, Value::Map(ref m) if m.len() == 1), "{v:?}");
}

#[test]
fn latency_errors_and_help_as_redis() {
    let (server, _) = start(1, &[]);
    let mut c = server.client();
    let help: Vec<String> = q(&mut c, &["LATENCY", "HELP"]).unwrap();
    assert_eq!(
        help[0],
        "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    );
    assert_eq!(help.len(), 17);
    let err = common::err_of;
    assert_eq!(
        err(&mut c, &["LATENCY", "HISTORY"]),
        "ERR wrong number of arguments for 'latency|history' command"
    );
    assert_eq!(
        err(&mut c, &["LATENCY", "LATEST", "x"]),
        "ERR wrong number of arguments for 'latency|latest' command"
    );
    assert_eq!(
        err(&mut c, &["LATENCY", "FOO"]),
        "ERR unknown subcommand 'FOO'. Try LATENCY HELP."
    );
    assert!(err(
        &mut c,
        &["CONFIG", "SET", "latency-monitor-threshold", "-1"]
    )
    .contains("between 0"));
}

/// Scrape connections have their own limit: however many a client holds open, Redis
/// clients still get in under --maxclients, and a scrape past the metrics limit gets an
/// HTTP 503, not a RESP error.
#[test]
fn metrics_connections_cannot_use_up_maxclients() {
    let (server, addr) = start(2, &["--maxclients", "4"]);
    let held: Vec<TcpStream> = (0..70)
        .map(|_| TcpStream::connect(addr).expect("connect to the metrics port"))
        .collect();
    let c = &mut server.client();
    assert_eq!(q::<String>(c, &["PING"]).unwrap(), "PONG");
    let mut refused = 0;
    for mut s in held {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 64];
        if let Ok(n) = s.read(&mut buf) {
            if buf[..n].starts_with(b"HTTP/1.1 503") {
                refused += 1;
            }
        }
    }
    assert!(
        refused >= 6,
        "{refused} of 70 scrapes past the limit of 64 got 503"
    );
}
