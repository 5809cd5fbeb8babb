//! The harness against fake RESP servers with known behaviour, and against coreshard.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use coreshard_protocol::{parse_request, Limits};
use serde_json::Value;

/// What a fake server does with one request: the reply, or `None` to hang up.
type Behaviour = Arc<dyn Fn(&[Vec<u8>], &mut TcpStream) -> Option<Vec<u8>> + Send + Sync>;

/// A RESP server on a free port, one thread per connection, replying per `behaviour`.
fn fake_server(behaviour: Behaviour) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let behaviour = Arc::clone(&behaviour);
            thread::spawn(move || {
                stream.set_nodelay(true).ok();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 65536];
                loop {
                    let n = match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    let mut out = Vec::new();
                    loop {
                        let mut args = Vec::new();
                        let Ok(Some(used)) = parse_request(&buf, &Limits::default(), &mut args)
                        else {
                            break;
                        };
                        let owned: Vec<Vec<u8>> = args.iter().map(|a| a.to_vec()).collect();
                        drop(args);
                        buf.drain(..used);
                        match behaviour(&owned, &mut stream) {
                            Some(reply) => out.extend(reply),
                            None => return,
                        }
                    }
                    if stream.write_all(&out).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// What one run of the harness did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    /// The `--json` output, if it was written.
    json: Option<Value>,
    took: Duration,
}

/// Run the harness with `args` (plus `--no-progress --json FILE`), whatever its outcome.
fn bench_run(args: &[&str]) -> Run {
    let json = std::env::temp_dir().join(format!(
        "bench-{}-{}.json",
        std::process::id(),
        rand_suffix()
    ));
    let started = Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coreshard-bench"));
    cmd.arg("--no-progress");
    if !args.contains(&"--json") {
        cmd.args(["--json", json.to_str().unwrap()]);
    }
    let out = cmd.args(args).output().expect("run coreshard-bench");
    let took = started.elapsed();
    let doc = std::fs::read_to_string(&json)
        .ok()
        .map(|t| serde_json::from_str(&t).unwrap());
    std::fs::remove_file(&json).ok();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        json: doc,
        took,
    }
}

/// Run the harness and require exit status `code`.
fn bench_expect(code: i32, args: &[&str]) -> Run {
    let r = bench_run(args);
    assert_eq!(
        r.code, code,
        "exit status of {args:?}\nstdout:\n{}\nstderr:\n{}",
        r.stdout, r.stderr
    );
    r
}

/// Run the harness and require success.
fn bench(args: &[&str]) -> (String, Value) {
    let r = bench_expect(0, args);
    let doc = r.json.expect("the JSON was written");
    assert_eq!(doc["status"], "ok", "{doc}");
    (r.stdout, doc)
}

/// A port with nothing listening on it.
fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn row<'a>(rows: &'a Value, command: &str) -> &'a Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["command"] == command)
        .unwrap_or_else(|| panic!("{command} in {rows}"))
}

#[test]
fn coordinated_omission_correction_is_real() {
    // Stall 200 ms at the start of every second.
    let epoch = Instant::now();
    let port = fake_server(Arc::new(move |_args, _s| {
        let into_second = epoch.elapsed().as_millis() % 1000;
        if into_second < 200 {
            thread::sleep(Duration::from_millis((200 - into_second) as u64));
        }
        Some(b"+OK\r\n".to_vec())
    }));
    let (_, doc) = bench(&[
        "-p",
        &port.to_string(),
        "--rate",
        "2000",
        "-c",
        "10",
        "--duration",
        "4",
        "--warmup",
        "0.5",
        "--ratio",
        "1:0",
        // A window ending inside a 200 ms stall misses up to 5% of its replies.
        "--min-achieved",
        "80",
    ]);
    let run = &doc["run"];
    assert_eq!(run["offered_rate"].as_f64(), Some(2000.0), "{run}");
    let achieved = run["achieved_rate"].as_f64().unwrap();
    assert!((1600.0..=2100.0).contains(&achieved), "{achieved}");
    assert_eq!(doc["achieved_rate"], run["achieved_rate"]);
    let corrected = row(&run["commands"], "SET");
    let service = row(&run["service_time"], "SET");
    let (c99, s99) = (
        corrected["p99"].as_f64().unwrap(),
        service["p99"].as_f64().unwrap(),
    );
    // About a fifth of all requests are due during a stall: the corrected p99 sits near
    // the stall length. Only the one request in flight per connection waits on the wire,
    // so the service-time p99 stays small.
    assert!(
        c99 > 100.0,
        "corrected p99 {c99} ms must show the 200 ms stalls"
    );
    assert!(s99 < 50.0, "service-time p99 {s99} ms must not");
    let count = corrected["count"].as_u64().unwrap();
    assert!(
        (6_000..=8_500).contains(&count),
        "the offered load stays on schedule: {count}"
    );
}

#[test]
fn errors_above_the_limit_fail_the_run() {
    // Every GET fails, except on the pre-flight check's connection (the one that PINGs).
    let checkers = Arc::new(Mutex::new(std::collections::HashSet::new()));
    let port = fake_server(Arc::new(move |args, s| {
        let peer = s.peer_addr().unwrap();
        if args[0].eq_ignore_ascii_case(b"PING") {
            checkers.lock().unwrap().insert(peer);
        }
        Some(
            if args[0].eq_ignore_ascii_case(b"GET") && !checkers.lock().unwrap().contains(&peer) {
                b"-ERR fake failure\r\n".to_vec()
            } else if args[0].eq_ignore_ascii_case(b"GET") {
                b"$-1\r\n".to_vec()
            } else {
                b"+OK\r\n".to_vec()
            },
        )
    }));
    let port = port.to_string();
    let args = [
        "-p", &port, "-c", "4", "-n", "2000", "--warmup", "0", "--ratio", "1:1",
    ];
    let r = bench_expect(3, &args);
    let doc = r.json.expect("the JSON is written for a failed run");
    assert_eq!(doc["status"], "failed");
    assert_eq!(doc["run"]["status"], "errors", "{doc}");
    assert!(
        r.stderr.contains("FAILED: ")
            && r.stderr.contains("% of requests failed")
            && r.stderr.contains("--max-error-rate 0.1%")
            && r.stderr.contains("-ERR fake failure"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.contains("status: FAILED (errors)"), "{}", r.stdout);
    let error_rate = doc["run"]["error_rate"].as_f64().unwrap();
    assert!((0.4..0.6).contains(&error_rate), "{error_rate}");

    // The same run with errors allowed passes, and still shows them.
    let mut allowed = args.to_vec();
    allowed.extend(["--max-error-rate", "60"]);
    let (stdout, doc) = bench(&allowed);
    let rows = &doc["run"]["commands"];
    let get = row(rows, "GET");
    let set = row(rows, "SET");
    assert_eq!(
        get["errors"].as_u64().unwrap(),
        get["count"].as_u64().unwrap()
    );
    assert_eq!(set["errors"].as_u64().unwrap(), 0);
    assert!(get["count"].as_u64().unwrap() + set["count"].as_u64().unwrap() >= 2000);
    assert!(
        stdout.contains("error reply: -ERR fake failure"),
        "{stdout}"
    );
}

#[test]
fn closed_connections_are_reconnected_and_counted() {
    let served = Arc::new(Mutex::new(0u64));
    let counter = Arc::clone(&served);
    let port = fake_server(Arc::new(move |_args, _s| {
        let mut n = counter.lock().unwrap();
        *n += 1;
        // Hang up on every 500th request.
        if *n % 500 == 0 {
            None
        } else {
            Some(b"$-1\r\n".to_vec())
        }
    }));
    let port = port.to_string();
    let args = ["-p", &port, "-c", "4", "--duration", "2", "--warmup", "0"];
    // One request in 500 lost is 0.2%: above the default 0.1% limit.
    let r = bench_expect(3, &args);
    assert!(r.stderr.contains("lost unanswered"), "{}", r.stderr);
    let run = &r.json.unwrap()["run"];
    assert_eq!(run["status"], "errors", "{run}");
    assert!(run["reconnects"].as_u64().unwrap() >= 2, "{run}");
    assert!(run["lost_in_flight"].as_u64().unwrap() >= 2, "{run}");
    assert!(row(&run["commands"], "GET")["count"].as_u64().unwrap() > 1000);

    let mut allowed = args.to_vec();
    allowed.extend(["--max-error-rate", "1"]);
    let (_, doc) = bench(&allowed);
    assert!(doc["run"]["lost_in_flight"].as_u64().unwrap() >= 2, "{doc}");
}

#[test]
fn pubsub_delivery_latency_and_loss() {
    type Subs = Arc<Mutex<Vec<TcpStream>>>;
    let subs: Subs = Arc::new(Mutex::new(Vec::new()));
    let s2 = Arc::clone(&subs);
    let port = fake_server(Arc::new(move |args, stream| {
        if args[0].eq_ignore_ascii_case(b"SUBSCRIBE") {
            s2.lock().unwrap().push(stream.try_clone().unwrap());
            let ch = &args[1];
            let mut r = format!("*3\r\n$9\r\nsubscribe\r\n${}\r\n", ch.len()).into_bytes();
            r.extend_from_slice(ch);
            r.extend_from_slice(b"\r\n:1\r\n");
            return Some(r);
        }
        if args[0].eq_ignore_ascii_case(b"PUBLISH") {
            let (ch, payload) = (&args[1], &args[2]);
            let mut msg = format!("*3\r\n$7\r\nmessage\r\n${}\r\n", ch.len()).into_bytes();
            msg.extend_from_slice(ch);
            msg.extend_from_slice(format!("\r\n${}\r\n", payload.len()).as_bytes());
            msg.extend_from_slice(payload);
            msg.extend_from_slice(b"\r\n");
            let mut list = s2.lock().unwrap();
            for s in list.iter_mut() {
                s.write_all(&msg).ok();
            }
            return Some(format!(":{}\r\n", list.len()).into_bytes());
        }
        if args[0].eq_ignore_ascii_case(b"PING") {
            return Some(b"+PONG\r\n".to_vec());
        }
        Some(b"-ERR unknown\r\n".to_vec())
    }));
    let (stdout, doc) = bench(&[
        "-p",
        &port.to_string(),
        "--pubsub",
        "--subscribers",
        "3",
        "--publishers",
        "1",
        "--rate",
        "500",
        "--duration",
        "1.5",
        "--warmup",
        "0.2",
        "-d",
        "64",
    ]);
    let run = &doc["run"];
    let delivered = run["pubsub"]["delivered"].as_u64().unwrap();
    assert!(delivered > 3 * 500, "{run}");
    assert_eq!(run["pubsub"]["lost"].as_u64().unwrap(), 0, "{run}");
    let delivery = row(&run["commands"], "DELIVERY");
    assert!(delivery["p50"].as_f64().unwrap() < 50.0);
    assert!(stdout.contains("delivered"), "{stdout}");
    // The run's three subscribers, and the pre-flight check's.
    assert_eq!(subs.lock().unwrap().len(), 4);
}

/// The server binary sits next to this package's binary after `cargo test --workspace`;
/// build it if this package is tested alone.
fn coreshard_binary() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_coreshard-bench")).with_file_name("coreshard");
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--bin", "coreshard", "-p", "coreshard"])
            .status()
            .expect("cargo build coreshard");
        assert!(status.success());
    }
    path
}

struct Coreshard(Child, u16);

impl Drop for Coreshard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn coreshard() -> Coreshard {
    let mut child = Command::new(coreshard_binary())
        .args([
            "--port",
            "0",
            "--shards",
            "2",
            "--log-level",
            "warn",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    let port = line
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    Coreshard(child, port)
}

#[test]
fn against_coreshard_closed_open_templates_and_files() {
    let server = coreshard();
    let port = server.1.to_string();
    let dir = std::env::temp_dir().join(format!("bench-files-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let hgrm = dir.join("run.hgrm");
    let svg = dir.join("run.svg");
    let (stdout, doc) = bench(&[
        "-p",
        &port,
        "-c",
        "8",
        "-P",
        "8",
        "-n",
        "20000",
        "--warmup",
        "0",
        "--prefill",
        "--keyspace",
        "1000",
        "--distribution",
        "zipfian:0.9",
        "-d",
        "8-64",
        "--ttl",
        "60",
        "--hdr",
        hgrm.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    let rows = &doc["run"]["commands"];
    let all = row(rows, "ALL");
    assert!(all["count"].as_u64().unwrap() >= 20_000, "{stdout}");
    assert_eq!(all["errors"].as_u64().unwrap(), 0, "{stdout}");
    assert!(
        row(rows, "GET")["count"].as_u64().unwrap() > row(rows, "SET")["count"].as_u64().unwrap()
    );
    let text = std::fs::read_to_string(&hgrm).unwrap();
    assert!(text.contains("Percentile") && text.contains("#[Max"));
    assert!(dir.join("run-service.hgrm").exists());
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.contains("<polyline"));
    // Closed loop: the achieved rate in the legend, no offered one.
    assert!(
        plot.contains(", achieved ") && !plot.contains("offered"),
        "{plot}"
    );
    assert!(doc["offered_rate"].is_null() && doc["achieved_rate"].as_f64().unwrap() > 0.0);

    // Overlay the earlier run on a new open-loop run's plot.
    let svg2 = dir.join("overlay.svg");
    let add = format!("earlier={}", hgrm.display());
    let (_, doc) = bench(&[
        "-p",
        &port,
        "--rate",
        "3000",
        "-c",
        "6",
        "--duration",
        "1",
        "--warmup",
        "0.2",
        "--plot",
        svg2.to_str().unwrap(),
        "--plot-add",
        &add,
    ]);
    assert_eq!(
        row(&doc["run"]["commands"], "ALL")["errors"]
            .as_u64()
            .unwrap(),
        0
    );
    let plot = std::fs::read_to_string(&svg2).unwrap();
    assert_eq!(plot.matches("<polyline").count(), 3);
    assert_eq!(doc["status"], "ok");
    // A log latency axis with unit labels, and the achieved rate in the legend.
    assert!(plot.contains("latency (log scale)"), "{plot}");
    assert!(plot.contains(" µs<") || plot.contains(" ms<"), "{plot}");
    assert!(plot.contains("of 3000/s offered ("), "{plot}");
    assert!(
        plot.contains(">earlier<") && !plot.contains("FAILED"),
        "{plot}"
    );
    // The current run is drawn last, on top of the earlier one.
    let current = plot.rfind("<polyline").unwrap();
    assert!(plot[current..].contains(r#"stroke-width="2.5""#), "{plot}");

    // A command template.
    let (_, doc) = bench(&[
        "-p",
        &port,
        "-c",
        "2",
        "-n",
        "500",
        "--warmup",
        "0",
        "--keyspace",
        "10",
        "--",
        "INCR",
        "counter:__rand_int__",
    ]);
    assert_eq!(
        row(&doc["run"]["commands"], "INCR")["count"]
            .as_u64()
            .unwrap(),
        500
    );
    let mut c = std::net::TcpStream::connect(("127.0.0.1", server.1)).unwrap();
    c.write_all(b"*2\r\n$3\r\nGET\r\n$20\r\ncounter:000000000000\r\n")
        .unwrap();
    let mut reply = [0u8; 64];
    let n = c.read(&mut reply).unwrap();
    assert!(
        reply[..n].starts_with(b"$"),
        "the template really ran: {:?}",
        String::from_utf8_lossy(&reply[..n])
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn compare_mode_alternates_targets_and_reports_ratios() {
    let a = coreshard();
    let slow_port = fake_server(Arc::new(|_args, _s| {
        thread::sleep(Duration::from_millis(2));
        Some(b"+OK\r\n".to_vec())
    }));
    let dir = std::env::temp_dir().join(format!("bench-cmp-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("cmp.svg");
    let (stdout, doc) = bench(&[
        "--target",
        &format!("coreshard=127.0.0.1:{}", a.1),
        "--target",
        &format!("slow=127.0.0.1:{slow_port}"),
        "--rounds",
        "2",
        "-c",
        "4",
        "--duration",
        "0.5",
        "--warmup",
        "0.1",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    let targets = doc["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2);
    assert_eq!(targets[0]["runs"].as_array().unwrap().len(), 2);
    // Closed loop: the median round by throughput, reported whole.
    assert_eq!(doc["median_by"], "throughput");
    assert!(
        stdout.contains("median of 2 rounds by throughput"),
        "{stdout}"
    );
    for t in targets {
        let runs = t["runs"].as_array().unwrap();
        assert_eq!(runs[0]["round"], 1);
        assert_eq!(runs[1]["round"], 2);
        let m = t["median_round"].as_u64().unwrap() as usize;
        let median = &runs[m - 1];
        assert_eq!(t["median"]["ops_per_sec"], median["achieved_rate"], "{t}");
        assert_eq!(
            t["median"]["p99"],
            row(&median["commands"], "ALL")["p99"],
            "{t}"
        );
        assert_eq!(t["status"], "ok");
        // Of two rounds, the lower middle: the slower one.
        let slower = runs
            .iter()
            .map(|r| r["achieved_rate"].as_f64().unwrap())
            .fold(f64::MAX, f64::min);
        assert_eq!(t["median"]["ops_per_sec"].as_f64().unwrap(), slower);
    }
    assert!(
        (targets[0]["ratio_to_first"]["ops_per_sec"]
            .as_f64()
            .unwrap()
            - 1.0)
            .abs()
            < 1e-9
    );
    let slow_ratio = targets[1]["ratio_to_first"]["ops_per_sec"]
        .as_f64()
        .unwrap();
    assert!(
        slow_ratio < 0.5,
        "a server that sleeps 2 ms per request is slower: {slow_ratio}\n{stdout}"
    );
    assert!(targets[1]["median"]["p50"].as_f64().unwrap() >= 2.0);
    assert_eq!(
        std::fs::read_to_string(&svg)
            .unwrap()
            .matches("<polyline")
            .count(),
        2
    );
    assert!(stdout.contains("ops ratio"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn no_server_fails_at_once_with_the_reason() {
    let port = dead_port();
    let r = bench_expect(1, &["-p", &port.to_string(), "--duration", "5"]);
    assert!(
        r.stderr
            .contains(&format!("127.0.0.1:{port}: cannot connect")),
        "{}",
        r.stderr
    );
    assert!(
        r.took < Duration::from_secs(2),
        "no load was attempted: {:?}",
        r.took
    );
    assert!(r.stdout.is_empty() && r.json.is_none(), "{}", r.stdout);

    // In compare mode, every target is checked before the first round.
    let good = coreshard();
    let r = bench_expect(
        1,
        &[
            "--target",
            &format!("good=127.0.0.1:{}", good.1),
            "--target",
            &format!("gone=127.0.0.1:{port}"),
            "--duration",
            "5",
        ],
    );
    assert!(
        r.stderr
            .contains(&format!("gone (127.0.0.1:{port}): cannot connect")),
        "{}",
        r.stderr
    );
    assert!(r.took < Duration::from_secs(2), "{:?}", r.took);
}

#[test]
fn a_server_that_refuses_or_ignores_ping_fails_the_check() {
    let refusing = fake_server(Arc::new(|_args, _s| {
        Some(b"-NOAUTH Authentication required.\r\n".to_vec())
    }));
    let r = bench_expect(1, &["-p", &refusing.to_string(), "--duration", "5"]);
    assert!(
        r.stderr
            .contains("the server refused PING: -NOAUTH Authentication required."),
        "{}",
        r.stderr
    );
    let silent = fake_server(Arc::new(|_args, _s| Some(Vec::new())));
    let r = bench_expect(
        1,
        &[
            "-p",
            &silent.to_string(),
            "--duration",
            "5",
            "--check-timeout",
            "0.5",
        ],
    );
    assert!(
        r.stderr.contains("no reply to PING within 0.5 s"),
        "{}",
        r.stderr
    );
    assert!(r.took < Duration::from_secs(2), "{:?}", r.took);
}

#[test]
fn a_workload_command_the_server_refuses_fails_the_check() {
    let server = coreshard();
    let r = bench_expect(
        1,
        &[
            "-p",
            &server.1.to_string(),
            "--duration",
            "5",
            "--",
            "NOSUCHCMD",
            "key:__rand_int__",
        ],
    );
    assert!(
        r.stderr
            .contains("the server refused the workload's NOSUCHCMD: -ERR unknown command"),
        "{}",
        r.stderr
    );
    assert!(r.took < Duration::from_secs(2), "{:?}", r.took);
}

#[test]
fn pubsub_against_a_server_without_pubsub_fails_at_once() {
    // A server without pub/sub answers SUBSCRIBE with -ERR unknown command.
    let refusing = fake_server(Arc::new(|args, _s| {
        Some(if args[0].eq_ignore_ascii_case(b"SUBSCRIBE") {
            b"-ERR unknown command 'SUBSCRIBE', with args beginning with: 'coreshard-bench' \r\n"
                .to_vec()
        } else {
            b"+PONG\r\n".to_vec()
        })
    }));
    let r = bench_expect(
        1,
        &[
            "-p",
            &refusing.to_string(),
            "--pubsub",
            "--rate",
            "500",
            "--duration",
            "5",
        ],
    );
    assert!(
        r.stderr
            .contains("the server refused SUBSCRIBE coreshard-bench")
            && r.stderr.contains("-ERR unknown command"),
        "{}",
        r.stderr
    );
    assert!(r.took < Duration::from_secs(2), "{:?}", r.took);
    assert!(r.json.is_none());

    // A server that confirms SUBSCRIBE but never delivers fails too.
    let deaf = fake_server(Arc::new(|args, _s| {
        Some(if args[0].eq_ignore_ascii_case(b"SUBSCRIBE") {
            b"*3\r\n$9\r\nsubscribe\r\n$15\r\ncoreshard-bench\r\n:1\r\n".to_vec()
        } else if args[0].eq_ignore_ascii_case(b"PUBLISH") {
            b":0\r\n".to_vec()
        } else {
            b"+PONG\r\n".to_vec()
        })
    }));
    let r = bench_expect(
        1,
        &[
            "-p",
            &deaf.to_string(),
            "--pubsub",
            "--duration",
            "5",
            "--check-timeout",
            "0.5",
        ],
    );
    assert!(
        r.stderr
            .contains("no reply to a message published on coreshard-bench within 0.5 s"),
        "{}",
        r.stderr
    );
}

#[test]
fn missing_files_fail_before_the_run() {
    let server = coreshard();
    let port = server.1.to_string();
    let dir = std::env::temp_dir().join(format!("bench-missing-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("p.svg");
    let missing = dir.join("nope.hgrm");
    let add = format!("before={}", missing.display());
    let r = bench_expect(
        1,
        &[
            "-p",
            &port,
            "--duration",
            "5",
            "--plot",
            svg.to_str().unwrap(),
            "--plot-add",
            &add,
        ],
    );
    assert!(
        r.stderr
            .contains(&format!("--plot-add {}: No such file", missing.display())),
        "{}",
        r.stderr
    );
    assert!(r.took < Duration::from_secs(2), "{:?}", r.took);
    assert!(!svg.exists());

    // An overlay that is not an .hgrm file.
    let junk = dir.join("junk.hgrm");
    std::fs::write(&junk, "not a histogram\n").unwrap();
    let add = format!("before={}", junk.display());
    let r = bench_expect(
        1,
        &[
            "-p",
            &port,
            "--plot",
            svg.to_str().unwrap(),
            "--plot-add",
            &add,
        ],
    );
    assert!(r.stderr.contains("has no percentile lines"), "{}", r.stderr);

    // Output directories that do not exist.
    for option in ["--plot", "--hdr", "--json"] {
        let out = dir.join("no-such-dir").join("out");
        let r = bench_expect(1, &["-p", &port, option, out.to_str().unwrap()]);
        assert!(r.json.is_none());
        assert!(
            r.stderr
                .contains(&format!("{option} {}: directory", out.display()))
                && r.stderr.contains("does not exist"),
            "{option}: {}",
            r.stderr
        );
        assert!(r.took < Duration::from_secs(2), "{:?}", r.took);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_open_loop_that_falls_behind_fails_and_says_what_it_achieved() {
    // Each connection's server thread needs 1 ms per request: two connections carry at
    // most ~2000 requests/s, a tenth of the 20000/s offered.
    let port = fake_server(Arc::new(|_args, _s| {
        thread::sleep(Duration::from_millis(1));
        Some(b"+OK\r\n".to_vec())
    }));
    let dir = std::env::temp_dir().join(format!("bench-behind-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("behind.svg");
    let r = bench_expect(
        3,
        &[
            "-p",
            &port.to_string(),
            "--rate",
            "20000",
            "-c",
            "2",
            "--duration",
            "1.5",
            "--warmup",
            "0",
            "--plot",
            svg.to_str().unwrap(),
        ],
    );
    let doc = r.json.expect("the JSON is written for a failed run");
    assert_eq!(doc["status"], "failed");
    assert_eq!(doc["run"]["status"], "below_offered_rate", "{doc}");
    assert_eq!(doc["offered_rate"].as_f64(), Some(20_000.0));
    let achieved = doc["achieved_rate"].as_f64().unwrap();
    assert!((100.0..2_100.0).contains(&achieved), "{achieved}");
    assert!(doc["run"]["unsent"].as_u64().unwrap() > 10_000, "{doc}");
    // The table's ops/s is the same measure: replies received in the window.
    let all = row(&doc["run"]["commands"], "ALL")["ops_per_sec"]
        .as_f64()
        .unwrap();
    assert!((all - achieved).abs() < 1.0, "{all} vs {achieved}");
    assert!(
        r.stderr.contains("FAILED: open loop achieved")
            && r.stderr
                .contains("of the offered 20000/s (--min-achieved 95%)"),
        "{}",
        r.stderr
    );
    // The table is still printed, with the achieved rate and the verdict.
    assert!(r.stdout.contains("of 20.0k/s offered ("), "{}", r.stdout);
    assert!(r.stdout.contains("SET "), "{}", r.stdout);
    assert!(
        r.stdout.contains("status: FAILED (below_offered_rate)"),
        "{}",
        r.stdout
    );
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.contains(">FAILED: open loop achieved"), "{plot}");
    assert!(
        plot.contains(">FAILED (below offered rate): 127.0.0.1:"),
        "{plot}"
    );
    assert!(plot.contains(r#"stroke-dasharray="2 3""#), "{plot}");

    // Asking for less than the server can do passes.
    let (_, doc) = bench(&[
        "-p",
        &port.to_string(),
        "--rate",
        "500",
        "-c",
        "2",
        "--duration",
        "1",
        "--warmup",
        "0.2",
    ]);
    let achieved = doc["achieved_rate"].as_f64().unwrap();
    assert!((475.0..=525.0).contains(&achieved), "{achieved}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_server_that_stops_answering_fails_with_no_replies() {
    // Answers the pre-flight check (PING, one SET, one GET), then nothing.
    let seen = Arc::new(Mutex::new(0u64));
    let port = fake_server(Arc::new(move |_args, _s| {
        let mut n = seen.lock().unwrap();
        *n += 1;
        Some(if *n <= 3 {
            b"+OK\r\n".to_vec()
        } else {
            Vec::new()
        })
    }));
    let r = bench_expect(
        3,
        &[
            "-p",
            &port.to_string(),
            "-c",
            "3",
            "--duration",
            "0.5",
            "--warmup",
            "0",
        ],
    );
    let doc = r.json.unwrap();
    assert_eq!(doc["run"]["status"], "no_replies", "{doc}");
    assert_eq!(doc["achieved_rate"].as_f64(), Some(0.0));
    assert_eq!(doc["run"]["lost_in_flight"].as_u64(), Some(3), "{doc}");
    assert!(
        r.stderr.contains(
            "FAILED: no request was answered in the 0.5 s measured window (3 lost unanswered)"
        ),
        "{}",
        r.stderr
    );
    assert!(
        r.stdout.contains("status: FAILED (no_replies)"),
        "{}",
        r.stdout
    );
}

#[test]
fn compare_mode_marks_a_target_that_falls_behind() {
    let a = coreshard();
    // The slow target manages at most 2 / 5 ms = 400 requests/s, far below the offered
    // 1000/s, which coreshard meets even on a loaded machine.
    let slow = fake_server(Arc::new(|_args, _s| {
        thread::sleep(Duration::from_millis(5));
        Some(b"+OK\r\n".to_vec())
    }));
    let dir = std::env::temp_dir().join(format!("bench-cmp-fail-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("cmp.svg");
    let long = "a-target-name-much-longer-than-the-column";
    let r = bench_expect(
        3,
        &[
            "--target",
            &format!("{long}=127.0.0.1:{}", a.1),
            "--target",
            &format!("slow=127.0.0.1:{slow}"),
            "--rounds",
            "1",
            "--rate",
            "1000",
            "-c",
            "2",
            "--duration",
            "1",
            "--warmup",
            "0.2",
            "--plot",
            svg.to_str().unwrap(),
        ],
    );
    let doc = r.json.unwrap();
    assert_eq!(doc["status"], "failed");
    assert_eq!(doc["median_by"], "p99");
    assert_eq!(doc["targets"][0]["status"], "ok", "{doc}");
    assert_eq!(doc["targets"][1]["status"], "failed", "{doc}");
    assert_eq!(
        doc["targets"][1]["runs"][0]["status"], "below_offered_rate",
        "{doc}"
    );
    assert!(
        r.stderr
            .contains("FAILED: slow round 1: open loop achieved"),
        "{}",
        r.stderr
    );
    // The table: aligned despite the long name, the failing row marked.
    let table: Vec<&str> = r
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("target"))
        .take(3)
        .collect();
    assert_eq!(table.len(), 3, "{}", r.stdout);
    assert!(
        table.iter().all(|l| l.len() == table[0].len()),
        "{}",
        r.stdout
    );
    assert!(table[1].starts_with(long) && table[1].contains(" ok "));
    assert!(table[2].starts_with("slow ") && table[2].contains(" FAILED "));
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(
        plot.contains(">FAILED (round 1 below offered rate): slow "),
        "{plot}"
    );
    assert!(plot.contains("(median round 1 of 1)"), "{plot}");
    std::fs::remove_dir_all(&dir).ok();
}
