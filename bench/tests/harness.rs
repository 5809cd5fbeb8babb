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

fn bench(args: &[&str]) -> (String, Value) {
    let json = std::env::temp_dir().join(format!(
        "bench-{}-{}.json",
        std::process::id(),
        rand_suffix()
    ));
    let out = Command::new(env!("CARGO_BIN_EXE_coreshard-bench"))
        .args(["--no-progress", "--json", json.to_str().unwrap()])
        .args(args)
        .output()
        .expect("run coreshard-bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "bench failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    std::fs::remove_file(&json).ok();
    (stdout, doc)
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
    ]);
    let run = &doc["run"];
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
fn errors_are_counted_and_shown() {
    let port = fake_server(Arc::new(|args, _s| {
        Some(if args[0].eq_ignore_ascii_case(b"GET") {
            b"-ERR fake failure\r\n".to_vec()
        } else {
            b"+OK\r\n".to_vec()
        })
    }));
    let (stdout, doc) = bench(&[
        "-p",
        &port.to_string(),
        "-c",
        "4",
        "-n",
        "2000",
        "--warmup",
        "0",
        "--ratio",
        "1:1",
    ]);
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
    let (_, doc) = bench(&[
        "-p",
        &port.to_string(),
        "-c",
        "4",
        "--duration",
        "2",
        "--warmup",
        "0",
    ]);
    let run = &doc["run"];
    assert!(run["reconnects"].as_u64().unwrap() >= 2, "{run}");
    assert!(run["lost_in_flight"].as_u64().unwrap() >= 2, "{run}");
    assert!(row(&run["commands"], "GET")["count"].as_u64().unwrap() > 1000);
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
    assert_eq!(subs.lock().unwrap().len(), 3);
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
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<polyline"));

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
    assert_eq!(
        std::fs::read_to_string(&svg2)
            .unwrap()
            .matches("<polyline")
            .count(),
        3
    );

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
