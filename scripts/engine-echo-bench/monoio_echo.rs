//! An echo server on monoio (io_uring, thread-per-core): one runtime per shard thread, each
//! with its own SO_REUSEPORT listener. Every byte read is written back.
//!
//! usage: monoio_echo ADDR:PORT SHARDS

use monoio::buf::IoBuf;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{ListenerOpts, TcpListener, TcpStream};

async fn conn(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let (res, b) = s.read(buf).await;
        buf = b;
        let n = match res {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let (res, b) = s.write_all(buf.slice(0..n)).await;
        buf = b.into_inner();
        if res.is_err() {
            return;
        }
    }
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let addr = a[0].clone();
    let shards: usize = a.get(1).map_or(1, |s| s.parse().expect("SHARDS"));
    let threads: Vec<_> = (0..shards)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                    .build()
                    .expect("io_uring runtime");
                rt.block_on(async move {
                    let opts = ListenerOpts::new().reuse_port(true).reuse_addr(true);
                    let l = TcpListener::bind_with_config(addr.as_str(), &opts).expect("bind");
                    loop {
                        if let Ok((s, _)) = l.accept().await {
                            monoio::spawn(conn(s));
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
