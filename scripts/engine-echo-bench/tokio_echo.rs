//! An echo server on tokio, built the way a tokio user builds a thread-per-core server:
//! one current-thread runtime per shard thread, each with its own SO_REUSEPORT listener.
//! Every byte read is written back.
//!
//! usage: tokio_echo ADDR:PORT SHARDS

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn conn(mut s: tokio::net::TcpStream) {
    let _ = s.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if s.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

fn listener(addr: SocketAddr) -> std::net::TcpListener {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_reuse_address(true).unwrap();
    sock.set_reuse_port(true).unwrap();
    sock.set_nonblocking(true).unwrap();
    sock.bind(&addr.into()).unwrap();
    sock.listen(1024).unwrap();
    sock.into()
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let addr: SocketAddr = a[0].parse().expect("ADDR:PORT");
    let shards: usize = a.get(1).map_or(1, |s| s.parse().expect("SHARDS"));
    let threads: Vec<_> = (0..shards)
        .map(|_| {
            let l = listener(addr);
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
                let local = tokio::task::LocalSet::new();
                local.block_on(&rt, async move {
                    let l = tokio::net::TcpListener::from_std(l).unwrap();
                    loop {
                        if let Ok((s, _)) = l.accept().await {
                            tokio::task::spawn_local(conn(s));
                        }
                    }
                });
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}
