//! Every command of the foundation, through the `redis` crate, on 1 and 4 shards.

mod common;

use common::Server;
use redis::{cmd, Connection, Value};

fn err_text<T: std::fmt::Debug>(r: redis::RedisResult<T>) -> String {
    common::error_text(&r.expect_err("expected an error reply"))
}

fn strings_and_keys(c: &mut Connection) {
    let _: () = cmd("FLUSHALL").query(c).unwrap();
    assert_eq!(cmd("PING").query::<String>(c).unwrap(), "PONG");
    assert_eq!(cmd("PING").arg("hi").query::<String>(c).unwrap(), "hi");
    assert_eq!(
        cmd("ECHO").arg("a\r\nb").query::<Vec<u8>>(c).unwrap(),
        b"a\r\nb"
    );
    assert_eq!(
        cmd("SET").arg("k").arg("v").query::<String>(c).unwrap(),
        "OK"
    );
    assert_eq!(
        cmd("GET")
            .arg("k")
            .query::<Option<String>>(c)
            .unwrap()
            .as_deref(),
        Some("v")
    );
    assert_eq!(
        cmd("GET")
            .arg("missing")
            .query::<Option<String>>(c)
            .unwrap(),
        None
    );
    let binary: Vec<u8> = (0..=255u8).collect();
    let _: () = cmd("SET")
        .arg(&b"bin\x00key"[..])
        .arg(&binary)
        .query(c)
        .unwrap();
    assert_eq!(
        cmd("GET")
            .arg(&b"bin\x00key"[..])
            .query::<Vec<u8>>(c)
            .unwrap(),
        binary
    );

    let pairs: Vec<(String, String)> = (0..50)
        .map(|i| (format!("key:{i}"), format!("val:{i}")))
        .collect();
    let _: () = cmd("MSET").arg(&pairs).query(c).unwrap();
    let mut keys: Vec<String> = pairs.iter().map(|p| p.0.clone()).collect();
    keys.insert(10, "nope".into());
    let got: Vec<Option<String>> = cmd("MGET").arg(&keys).query(c).unwrap();
    assert_eq!(got.len(), 51);
    assert_eq!(got[10], None);
    assert_eq!(got[0].as_deref(), Some("val:0"));
    assert_eq!(got[50].as_deref(), Some("val:49"));
    assert_eq!(got[11].as_deref(), Some("val:10"));

    assert_eq!(
        cmd("EXISTS")
            .arg("key:1")
            .arg("key:1")
            .arg("nope")
            .arg("key:2")
            .query::<i64>(c)
            .unwrap(),
        3
    );
    assert_eq!(cmd("DBSIZE").query::<i64>(c).unwrap(), 52);
    assert_eq!(
        cmd("DEL")
            .arg("key:1")
            .arg("key:2")
            .arg("nope")
            .arg("key:1")
            .query::<i64>(c)
            .unwrap(),
        2
    );
    assert_eq!(cmd("DBSIZE").query::<i64>(c).unwrap(), 50);
    assert_eq!(
        cmd("FLUSHDB").arg("ASYNC").query::<String>(c).unwrap(),
        "OK"
    );
    assert_eq!(cmd("DBSIZE").query::<i64>(c).unwrap(), 0);
    let _: () = cmd("SET").arg("x").arg("1").query(c).unwrap();
    assert_eq!(
        cmd("FLUSHALL").arg("SYNC").query::<String>(c).unwrap(),
        "OK"
    );
    assert_eq!(cmd("EXISTS").arg("x").query::<i64>(c).unwrap(), 0);
}

fn errors(c: &mut Connection) {
    assert_eq!(
        err_text(cmd("NOSUCH").arg("a").arg("b").query::<Value>(c)),
        "ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' "
    );
    assert_eq!(
        err_text(cmd("GET").query::<Value>(c)),
        "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(
        err_text(cmd("GET").arg("a").arg("b").query::<Value>(c)),
        "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(
        err_text(cmd("MSET").arg("a").arg("1").arg("b").query::<Value>(c)),
        "ERR wrong number of arguments for 'mset' command"
    );
    assert_eq!(
        err_text(cmd("SET").arg("a").arg("1").arg("BOGUS").query::<Value>(c)),
        "ERR syntax error"
    );
    assert_eq!(
        err_text(cmd("SELECT").arg("1").query::<Value>(c)),
        "ERR DB index is out of range"
    );
    assert_eq!(
        err_text(cmd("SELECT").arg("x").query::<Value>(c)),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(cmd("SELECT").arg("0").query::<String>(c).unwrap(), "OK");
    assert!(err_text(cmd("AUTH").arg("pw").query::<Value>(c))
        .starts_with("ERR AUTH <password> called without any password configured"));
    assert_eq!(
        err_text(cmd("FLUSHALL").arg("NOW").query::<Value>(c)),
        "ERR syntax error"
    );
    assert_eq!(
        err_text(cmd("CLIENT").arg("NOPE").query::<Value>(c)),
        "ERR unknown subcommand 'NOPE'. Try CLIENT HELP."
    );
    assert_eq!(
        err_text(cmd("CONFIG").arg("NOPE").query::<Value>(c)),
        "ERR unknown subcommand 'NOPE'. Try CONFIG HELP."
    );
    // The connection is still usable after every error.
    assert_eq!(cmd("PING").query::<String>(c).unwrap(), "PONG");
}

fn introspection(c: &mut Connection) {
    let count: i64 = cmd("COMMAND").arg("COUNT").query(c).unwrap();
    assert!(count >= 19, "{count}");
    let all: Vec<Value> = cmd("COMMAND").query(c).unwrap();
    assert_eq!(all.len() as i64, count);
    let info: Vec<Value> = cmd("COMMAND")
        .arg("INFO")
        .arg("get")
        .arg("nosuch")
        .query(c)
        .unwrap();
    match &info[0] {
        Value::Array(fields) => {
            assert_eq!(fields[0], Value::BulkString(b"get".to_vec()));
            assert_eq!(fields[1], Value::Int(2));
            assert_eq!(fields[3], Value::Int(1));
        }
        other => panic!("COMMAND INFO get: {other:?}"),
    }
    assert_eq!(info[1], Value::Nil);
    let docs: Value = cmd("COMMAND").arg("DOCS").arg("set").query(c).unwrap();
    let docs = format!("{docs:?}");
    assert!(
        docs.contains("summary") && docs.contains("string"),
        "{docs}"
    );

    let id: i64 = cmd("CLIENT").arg("ID").query(c).unwrap();
    assert!(id > 0);
    assert_eq!(
        cmd("CLIENT")
            .arg("GETNAME")
            .query::<Option<String>>(c)
            .unwrap(),
        None
    );
    let _: () = cmd("CLIENT")
        .arg("SETNAME")
        .arg("worker-1")
        .query(c)
        .unwrap();
    assert_eq!(
        cmd("CLIENT").arg("GETNAME").query::<String>(c).unwrap(),
        "worker-1"
    );
    assert!(err_text(
        cmd("CLIENT")
            .arg("SETNAME")
            .arg("has space")
            .query::<Value>(c)
    )
    .starts_with("ERR Client names cannot contain spaces"));
    let _: () = cmd("CLIENT")
        .arg("SETINFO")
        .arg("LIB-NAME")
        .arg("mylib")
        .query(c)
        .unwrap();
    let _: () = cmd("CLIENT")
        .arg("SETINFO")
        .arg("lib-ver")
        .arg("1.2")
        .query(c)
        .unwrap();
    assert_eq!(
        err_text(
            cmd("CLIENT")
                .arg("SETINFO")
                .arg("color")
                .arg("x")
                .query::<Value>(c)
        ),
        "ERR Unrecognized option 'color'"
    );
    let list: String = cmd("CLIENT").arg("LIST").query(c).unwrap();
    let mine = list
        .lines()
        .find(|l| l.starts_with(&format!("id={id} ")))
        .unwrap_or_else(|| panic!("own id in {list}"));
    assert!(
        mine.contains("name=worker-1")
            && mine.contains("lib-name=mylib")
            && mine.contains("lib-ver=1.2"),
        "{mine}"
    );
    let me: String = cmd("CLIENT").arg("INFO").query(c).unwrap();
    assert!(me.starts_with(&format!("id={id} ")), "{me}");

    let cfg: Vec<String> = cmd("CONFIG")
        .arg("GET")
        .arg("maxclients")
        .arg("save")
        .query(c)
        .unwrap();
    assert_eq!(
        cfg,
        vec!["maxclients", "10000", "save", "3600 1 300 100 60 10000"]
    );
    let cfg: Vec<String> = cmd("CONFIG").arg("GET").arg("app*").query(c).unwrap();
    assert_eq!(cfg, vec!["appendonly", "yes", "appendfsync", "always"]);

    let _: () = cmd("SET").arg("info-key").arg("1").query(c).unwrap();
    let _: Option<String> = cmd("GET").arg("info-key").query(c).unwrap();
    let _: Option<String> = cmd("GET").arg("info-missing").query(c).unwrap();
    let info: String = cmd("INFO").query(c).unwrap();
    for needle in [
        "# Server",
        "redis_version:",
        "# Clients",
        "connected_clients:",
        "# Stats",
        "total_commands_processed:",
        "# Keyspace",
        "db0:keys=1,expires=0",
    ] {
        assert!(info.contains(needle), "INFO lacks {needle}: {info}");
    }
    let hits: i64 = field(&info, "keyspace_hits");
    let misses: i64 = field(&info, "keyspace_misses");
    assert!(hits >= 1 && misses >= 1, "{info}");
    let only: String = cmd("INFO").arg("keyspace").query(c).unwrap();
    assert!(
        only.starts_with("# Keyspace") && !only.contains("# Server"),
        "{only}"
    );
}

fn field(info: &str, name: &str) -> i64 {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in {info}"))
}

fn run_all(shards: &str) {
    let server = Server::start(&["--shards", shards]);
    let mut c = server.client();
    strings_and_keys(&mut c);
    errors(&mut c);
    introspection(&mut c);
}

#[test]
fn commands_on_one_shard() {
    run_all("1");
}

#[test]
fn commands_on_four_shards() {
    run_all("4");
}

#[test]
fn resp3_through_hello() {
    let server = Server::start(&["--shards", "4"]);
    let mut c = server.client_resp3();
    let hello: Value = cmd("HELLO").arg("3").query(&mut c).unwrap();
    let Value::Map(pairs) = hello else {
        panic!("HELLO 3 must reply with a map: {hello:?}")
    };
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| *key == Value::BulkString(k.as_bytes().to_vec()))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("proto"), Some(Value::Int(3)));
    assert_eq!(get("server"), Some(Value::BulkString(b"redis".to_vec())));
    let v: Value = cmd("GET").arg("nothing").query(&mut c).unwrap();
    assert_eq!(v, Value::Nil);
    let cfg: Value = cmd("CONFIG").arg("GET").arg("port").query(&mut c).unwrap();
    assert!(
        matches!(cfg, Value::Map(_)),
        "CONFIG GET in RESP3 is a map: {cfg:?}"
    );

    let mut raw = server.raw();
    raw.cmd(&[b"GET", b"nothing"]);
    assert_eq!(raw.reply_str(), "$-1\r\n");
    raw.cmd(&[b"HELLO", b"3"]);
    assert!(raw.reply_str().starts_with("%7\r\n"));
    raw.cmd(&[b"GET", b"nothing"]);
    assert_eq!(raw.reply_str(), "_\r\n");
    raw.cmd(&[b"HELLO", b"4"]);
    assert_eq!(raw.reply_str(), "-NOPROTO unsupported protocol version\r\n");
    raw.cmd(&[b"HELLO", b"2"]);
    assert!(raw.reply_str().starts_with("*14\r\n"));
    raw.cmd(&[b"GET", b"nothing"]);
    assert_eq!(raw.reply_str(), "$-1\r\n");
}

#[test]
fn requirepass_gates_commands() {
    let server = Server::start(&["--requirepass", "s3cret"]);
    let mut raw = server.raw();
    raw.cmd(&[b"GET", b"k"]);
    assert_eq!(raw.reply_str(), "-NOAUTH Authentication required.\r\n");
    raw.cmd(&[b"PING"]);
    assert_eq!(raw.reply_str(), "-NOAUTH Authentication required.\r\n");
    raw.cmd(&[b"AUTH", b"wrong"]);
    assert_eq!(
        raw.reply_str(),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    raw.cmd(&[b"HELLO", b"3"]);
    assert!(raw.reply_str().starts_with("-NOAUTH HELLO must be called"));
    raw.cmd(&[b"AUTH", b"default", b"s3cret"]);
    assert_eq!(raw.reply_str(), "+OK\r\n");
    raw.cmd(&[b"GET", b"k"]);
    assert_eq!(raw.reply_str(), "$-1\r\n");

    let mut other = server.raw();
    other.cmd(&[
        b"HELLO", b"3", b"AUTH", b"default", b"s3cret", b"SETNAME", b"svc",
    ]);
    assert!(other.reply_str().starts_with("%7\r\n"));
    other.cmd(&[b"CLIENT", b"GETNAME"]);
    assert_eq!(other.reply_str(), "$3\r\nsvc\r\n");

    let url = format!("redis://:s3cret@{}/", server.addr);
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    let _: () = cmd("SET").arg("a").arg("b").query(&mut c).unwrap();
    assert_eq!(cmd("GET").arg("a").query::<String>(&mut c).unwrap(), "b");
}

/// Redis 7.0 refuses an unknown subcommand and a wrong argument count before it asks for
/// AUTH, outside and inside MULTI; a refused unknown subcommand counts under no command.
#[test]
fn arity_and_unknown_subcommands_come_before_noauth() {
    let server = Server::start(&["--requirepass", "pw", "--shards", "2"]);
    let mut raw = server.raw();
    let expect: [(&[&[u8]], &str); 6] = [
        (
            &[b"GET"],
            "-ERR wrong number of arguments for 'get' command\r\n",
        ),
        (
            &[b"config", b"get"],
            "-ERR wrong number of arguments for 'config|get' command\r\n",
        ),
        (
            &[b"config", b"nosuch"],
            "-ERR unknown subcommand 'nosuch'. Try CONFIG HELP.\r\n",
        ),
        (
            &[b"CONFIG"],
            "-ERR wrong number of arguments for 'config' command\r\n",
        ),
        (&[b"GET", b"k"], "-NOAUTH Authentication required.\r\n"),
        (
            &[b"CONFIG", b"GET", b"x"],
            "-NOAUTH Authentication required.\r\n",
        ),
    ];
    for (req, reply) in expect {
        raw.cmd(req);
        assert_eq!(raw.reply_str(), reply, "{req:?}");
    }
    raw.cmd(&[b"AUTH", b"pw"]);
    assert_eq!(raw.reply_str(), "+OK\r\n");
    raw.cmd(&[b"CONFIG", b"SET", b"maxmemory", b"1", b"maxmemory-policy"]);
    assert_eq!(raw.reply_str(), "-ERR syntax error\r\n");
    raw.cmd(&[b"MULTI"]);
    assert_eq!(raw.reply_str(), "+OK\r\n");
    raw.cmd(&[b"OBJECT", b"encoding"]);
    assert_eq!(
        raw.reply_str(),
        "-ERR wrong number of arguments for 'object|encoding' command\r\n"
    );
    raw.cmd(&[b"EXEC"]);
    assert_eq!(
        raw.reply_str(),
        "-EXECABORT Transaction discarded because of previous errors.\r\n"
    );
    raw.cmd(&[b"CONFIG", b"RESETSTAT"]);
    assert_eq!(raw.reply_str(), "+OK\r\n");
    raw.cmd(&[b"CONFIG", b"nosuch", b"x"]);
    assert_eq!(
        raw.reply_str(),
        "-ERR unknown subcommand 'nosuch'. Try CONFIG HELP.\r\n"
    );
    raw.cmd(&[b"INFO", b"commandstats"]);
    let info = raw.reply_str();
    let config = info.lines().find(|l| l.starts_with("cmdstat_config:"));
    assert!(
        config.is_some_and(|l| l.contains("calls=1,") && l.contains("rejected_calls=0,")),
        "only CONFIG RESETSTAT counts: {config:?}"
    );
}

/// One pipeline mixing a command in several spellings with unknown names that share a
/// prefix or differ by one letter (the server remembers the last command it looked up):
/// every request gets its own command's reply, case-insensitively, and unknown names are
/// refused.
#[test]
fn pipelined_command_names_are_each_looked_up() {
    let server = Server::start(&["--shards", "1"]);
    let mut raw = server.raw();
    let reqs: [&[&[u8]]; 8] = [
        &[b"SET", b"k", b"v"],
        &[b"get", b"k"],
        &[b"GeT", b"k"],
        &[b"GETX", b"k"],
        &[b"GE", b"k"],
        &[b"getdel", b"k"],
        &[b"GET", b"k"],
        &[b"g\xc3\xa9t", b"k"],
    ];
    let mut bytes = Vec::new();
    for r in reqs {
        bytes.extend_from_slice(&common::encode(r));
    }
    raw.send(&bytes);
    assert_eq!(raw.reply_str(), "+OK\r\n");
    assert_eq!(raw.reply_str(), "$1\r\nv\r\n");
    assert_eq!(raw.reply_str(), "$1\r\nv\r\n");
    assert!(raw.reply_str().starts_with("-ERR unknown command 'GETX'"));
    assert!(raw.reply_str().starts_with("-ERR unknown command 'GE'"));
    assert_eq!(raw.reply_str(), "$1\r\nv\r\n");
    assert_eq!(raw.reply_str(), "$-1\r\n");
    assert!(raw.reply_str().starts_with("-ERR unknown command"));
}
