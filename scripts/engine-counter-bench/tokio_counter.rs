//! The counter example's protocol (`INCR <name>` → `<name> <value>\n`) on tokio, built the
//! way a tokio user would build a thread-per-core server: one current-thread runtime per
//! shard thread, each with its own SO_REUSEPORT listener and its own HashMap of the names
//! it owns (same hash and multiply-shift routing as the engine's default). A request for
//! a name another shard owns goes over that shard's mpsc channel with a oneshot for the
//! answer; a connection answers each batch it read in request order.
//!
//! usage: tokio_counter ADDR:PORT SHARDS

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

type Req = (Vec<u8>, oneshot::Sender<u64>);
type Counts = Rc<RefCell<HashMap<Vec<u8>, u64>>>;

// coreshard_engine::DefaultKeyHash, copied so both servers route identically.
const K1: u64 = 0x9e37_79b9_7f4a_7c15;
const K2: u64 = 0xff51_afd7_ed55_8ccd;
const K3: u64 = 0xc4ce_b9fe_1a85_ec53;
fn hash(key: &[u8]) -> u64 {
    let mut h = K1 ^ (key.len() as u64).wrapping_mul(K2);
    for w in key.chunks(8) {
        let mut b = [0u8; 8];
        b[..w.len()].copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(b)).wrapping_mul(K1).rotate_left(29);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(K2);
    h ^= h >> 33;
    h = h.wrapping_mul(K3);
    h ^ (h >> 33)
}
fn owner(key: &[u8], shards: usize) -> usize {
    ((u128::from(hash(key)) * shards as u128) >> 64) as usize
}

fn incr(counts: &Counts, name: &[u8]) -> u64 {
    let mut m = counts.borrow_mut();
    match m.get_mut(name) {
        Some(n) => {
            *n += 1;
            *n
        }
        None => *m.entry(name.to_vec()).or_insert(1),
    }
}

enum Pending {
    Ready(Vec<u8>, u64),
    Wait(Vec<u8>, oneshot::Receiver<u64>),
}

async fn conn(mut s: tokio::net::TcpStream, me: usize, counts: Counts, peers: Vec<mpsc::UnboundedSender<Req>>) {
    let _ = s.set_nodelay(true);
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut out = Vec::with_capacity(16 * 1024);
    let mut pending = Vec::new();
    loop {
        match s.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut used = 0;
        while let Some(len) = buf[used..].iter().position(|&b| b == b'\n') {
            let line = &buf[used..used + len];
            used += len + 1;
            let Some(name) = line.strip_prefix(b"INCR ") else {
                pending.push(Pending::Ready(b"ERR".to_vec(), 0));
                continue;
            };
            let to = owner(name, peers.len());
            if to == me {
                pending.push(Pending::Ready(name.to_vec(), incr(&counts, name)));
            } else {
                let (tx, rx) = oneshot::channel();
                let _ = peers[to].send((name.to_vec(), tx));
                pending.push(Pending::Wait(name.to_vec(), rx));
            }
        }
        buf.drain(..used);
        for p in pending.drain(..) {
            let (name, v) = match p {
                Pending::Ready(n, v) => (n, v),
                Pending::Wait(n, rx) => (n, rx.await.unwrap_or(0)),
            };
            out.extend_from_slice(&name);
            out.extend_from_slice(format!(" {v}\n").as_bytes());
        }
        if s.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args.next().expect("ADDR:PORT").parse().expect("address");
    let shards: usize = args.next().map_or(1, |s| s.parse().expect("shards"));
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..shards).map(|_| mpsc::unbounded_channel::<Req>()).unzip();
    let mut threads = Vec::new();
    for (me, mut rx) in rxs.into_iter().enumerate() {
        let peers = txs.clone();
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.set_reuse_address(true).unwrap();
        sock.set_reuse_port(true).unwrap();
        sock.bind(&addr.into()).unwrap();
        sock.listen(1024).unwrap();
        sock.set_nonblocking(true).unwrap();
        let std_listener: std::net::TcpListener = sock.into();
        threads.push(std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async move {
                let counts: Counts = Rc::default();
                let c = Rc::clone(&counts);
                tokio::task::spawn_local(async move {
                    while let Some((name, tx)) = rx.recv().await {
                        let _ = tx.send(incr(&c, &name));
                    }
                });
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                while let Ok((s, _)) = listener.accept().await {
                    tokio::task::spawn_local(conn(s, me, Rc::clone(&counts), peers.clone()));
                }
            });
        }));
    }
    println!("tokio counter listening on {addr} with {shards} shards");
    for t in threads {
        let _ = t.join();
    }
}
