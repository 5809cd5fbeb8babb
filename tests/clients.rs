//! CLIENT LIST and CLIENT KILL over clients on every shard: filters, Redis's replies and
//! errors, the caller spared unless it asks, killed clients gone at once (a killed BLPOP
//! takes no element), everyone else served.

mod common;

use common::{q, Raw, Server};

fn id_of(r: &mut Raw) -> i64 {
    r.cmd(&[b"CLIENT", b"ID"]);
    let reply = r.reply_str();
    reply.trim_start_matches(':').trim().parse().unwrap()
}

/// The CLIENT LIST lines of the clients a filter names, as (id, addr, flags, sub, psub).
fn listed(c: &mut redis::Connection, filter: &[&str]) -> Vec<(i64, String, String, u32, u32)> {
    let mut words = vec!["CLIENT", "LIST"];
    words.extend_from_slice(filter);
    let text: String = q(c, &words).unwrap();
    text.lines()
        .map(|l| {
            let field = |k: &str| {
                l.split(' ')
                    .find_map(|f| f.strip_prefix(k)?.strip_prefix('='))
                    .unwrap_or_default()
                    .to_string()
            };
            (
                field("id").parse().unwrap(),
                field("addr"),
                field("flags"),
                field("sub").parse().unwrap(),
                field("psub").parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn client_kill_and_list_filters_across_shards() {
    let s = Server::start(&["--shards", "3"]);
    let c = &mut s.client();
    // At least nine clients, on every shard (which shard accepts a connection is the
    // kernel's choice: connect until each has some). A client's id names its shard.
    let mut raws: Vec<Raw> = Vec::new();
    let mut ids: Vec<i64> = Vec::new();
    let mut shards = std::collections::HashSet::new();
    while raws.len() < 9 || shards.len() < 3 {
        assert!(
            raws.len() < 300,
            "connections never reached every shard: {ids:?}"
        );
        let mut r = s.raw();
        let id = id_of(&mut r);
        shards.insert((id - 1) % 3);
        ids.push(id);
        raws.push(r);
    }

    // Two subscribers (one RESP3): CLIENT LIST shows them as pubsub clients.
    raws[0].cmd(&[b"SUBSCRIBE", b"a", b"b"]);
    raws[0].reply();
    raws[0].reply();
    raws[1].cmd(&[b"HELLO", b"3"]);
    raws[1].reply();
    raws[1].cmd(&[b"PSUBSCRIBE", b"p*"]);
    raws[1].reply();
    let subs = listed(c, &["TYPE", "pubsub"]);
    let mut got: Vec<(i64, String, u32, u32)> = subs
        .iter()
        .map(|(i, _, f, s, p)| (*i, f.clone(), *s, *p))
        .collect();
    got.sort();
    let mut want = vec![
        (ids[0], "P".to_string(), 2, 0),
        (ids[1], "P".to_string(), 0, 1),
    ];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(listed(c, &["ID", &ids[4].to_string()]).len(), 1);
    assert_eq!(listed(c, &["TYPE", "master"]).len(), 0);

    // A client blocked in BLPOP on a key of another shard, killed: the element pushed
    // afterwards stays in the list.
    raws[2].cmd(&[b"BLPOP", b"queue", b"0"]);
    common::eventually("the BLPOP blocks", || {
        listed(c, &["ID", &ids[2].to_string()])[0].2 == "b"
    });

    // By type: both subscribers, whatever their shard.
    assert_eq!(
        q::<i64>(c, &["CLIENT", "KILL", "TYPE", "pubsub"]).unwrap(),
        2
    );
    assert!(raws[0].closed() && raws[1].closed());
    // By id.
    let id2 = ids[2].to_string();
    assert_eq!(q::<i64>(c, &["CLIENT", "KILL", "ID", &id2]).unwrap(), 1);
    assert!(raws[2].closed());
    q::<i64>(c, &["RPUSH", "queue", "x"]).unwrap();
    assert_eq!(
        q::<i64>(c, &["LLEN", "queue"]).unwrap(),
        1,
        "nothing popped by the dead"
    );
    // The old form, by address: +OK, then no such client.
    let addr = listed(c, &["ID", &ids[3].to_string()])[0].1.clone();
    assert_eq!(q::<String>(c, &["CLIENT", "KILL", &addr]).unwrap(), "OK");
    assert!(raws[3].closed());
    assert_eq!(
        common::err_of(c, &["CLIENT", "KILL", &addr]),
        "ERR No such client"
    );
    // The others are still served.
    for r in &mut raws[4..] {
        r.cmd(&[b"PING"]);
        assert_eq!(r.reply_str(), "+PONG\r\n");
    }

    // The caller: spared by default, killed after its reply with SKIPME no.
    let mut me = s.raw();
    let my_id = id_of(&mut me).to_string();
    me.cmd(&[b"CLIENT", b"KILL", b"ID", my_id.as_bytes()]);
    assert_eq!(me.reply_str(), ":0\r\n");
    me.cmd(&[
        b"CLIENT",
        b"KILL",
        b"ID",
        my_id.as_bytes(),
        b"SKIPME",
        b"no",
    ]);
    assert_eq!(me.reply_str(), ":1\r\n");
    assert!(me.closed());
    // Everyone but the caller (USER default names them all).
    assert_eq!(
        q::<i64>(c, &["CLIENT", "KILL", "USER", "default"]).unwrap(),
        raws.len() as i64 - 4
    );
    for r in &mut raws[4..] {
        assert!(r.closed());
    }
    assert_eq!(q::<String>(c, &["PING"]).unwrap(), "PONG");

    // Redis's errors.
    for (args, want) in [
        (
            &["CLIENT", "KILL", "ID", "abc"][..],
            "ERR client-id should be greater than 0",
        ),
        (
            &["CLIENT", "KILL", "TYPE", "foo"],
            "ERR Unknown client type 'foo'",
        ),
        (&["CLIENT", "KILL", "USER", "bob"], "ERR No such user 'bob'"),
        (&["CLIENT", "KILL", "SKIPME", "maybe"], "ERR syntax error"),
        (&["CLIENT", "KILL", "MAXAGE", "1"], "ERR syntax error"),
        (&["CLIENT", "KILL", "a", "b", "c"], "ERR syntax error"),
        (&["CLIENT", "LIST", "ID", "x"], "ERR Invalid client ID"),
        (
            &["CLIENT", "LIST", "TYPE", "x"],
            "ERR Unknown client type 'x'",
        ),
        (&["CLIENT", "LIST", "FOO"], "ERR syntax error"),
    ] {
        assert_eq!(common::err_of(c, args), want, "{args:?}");
    }
}

/// A killed client blocked in BLPOP takes no element, even from a push pipelined right
/// behind the kill on another shard's connection: the kill is done before the caller's
/// next command, and the waiter is gone from the key at once (20 rounds; without either
/// half, about half of them lose the element).
#[test]
fn a_killed_blocked_client_takes_no_element() {
    let s = Server::start(&["--shards", "2"]);
    let c = &mut s.client();
    for round in 0..20 {
        let mut victim = s.raw();
        let id = id_of(&mut victim).to_string();
        victim.cmd(&[b"BLPOP", b"k", b"0"]);
        common::eventually("the BLPOP blocks", || {
            listed(c, &["ID", &id]).first().is_some_and(|l| l.2 == "b")
        });
        let mut killer = s.raw();
        let mut batch = common::encode(&[b"CLIENT", b"KILL", b"ID", id.as_bytes()]);
        batch.extend(common::encode(&[b"LPUSH", b"k", b"v"]));
        batch.extend(common::encode(&[b"LLEN", b"k"]));
        killer.send(&batch);
        assert_eq!(killer.reply_str(), ":1\r\n");
        assert_eq!(killer.reply_str(), ":1\r\n");
        assert_eq!(
            killer.reply_str(),
            ":1\r\n",
            "round {round}: the element stayed"
        );
        assert!(victim.closed());
        q::<i64>(c, &["DEL", "k"]).unwrap();
    }
}

/// ROLE, as Sentinel-aware clients check it on connect: a master, offset 0, no replicas.
#[test]
fn role_says_master_without_replicas() {
    let s = Server::start(&["--shards", "2"]);
    let mut r = s.raw();
    r.cmd(&[b"ROLE"]);
    assert_eq!(r.reply_str(), "*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n");
    r.cmd(&[b"ROLE", b"x"]);
    assert_eq!(
        r.reply_str(),
        "-ERR wrong number of arguments for 'role' command\r\n"
    );
}

/// CLIENT LIST names the last command as Redis 7 does: with its subcommand for
/// containers (`cmd=config|get`), in whatever case it was sent; `NULL` when the name
/// was unknown; the command itself when only its arguments were wrong.
#[test]
fn client_list_names_subcommands() {
    let server = Server::start(&["--shards", "2"]);
    let mut other = server.raw();
    let mut me = server.raw();
    for (cmd, expected) in [
        (&[&b"config"[..], b"GET", b"maxmemory"][..], "config|get"),
        (&[b"Object", b"Encoding", b"nokey"], "object|encoding"),
        (&[b"SET", b"k", b"v"], "set"),
        (&[b"COMMAND", b"COUNT"], "command|count"),
        (&[b"CLIENT"], "client"),
        (&[b"CLIENT", b"NOSUCH"], "NULL"),
        (&[b"NOSUCH"], "NULL"),
        (&[b"GET"], "get"),
        (&[b"XINFO", b"nosuch"], "NULL"),
    ] {
        other.cmd(cmd);
        other.reply();
        me.cmd(&[b"CLIENT", b"LIST"]);
        let list = String::from_utf8(me.reply()).unwrap();
        let mine = list
            .lines()
            .filter(|l| l.contains(" cmd=client|list "))
            .count();
        assert_eq!(mine, 1, "the caller's own line: {list}");
        let theirs = format!(" cmd={expected} ");
        assert!(list.contains(&theirs), "{expected}: {list}");
    }
}
