//! Closed-loop pipelined echo load: CONNS connections, each writing PIPELINE messages of
//! SIZE bytes in one write, then reading them all back (checking the bytes), again and
//! again for SECONDS. One thread. Prints `requests=<messages echoed> seconds=<elapsed>
//! errors=<mismatched bytes>`.
//!
//! usage: echo_load ADDR:PORT CONNS PIPELINE SIZE SECONDS

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let addr = &a[0];
    let [conns, pipeline, size, seconds]: [u64; 4] =
        std::array::from_fn(|i| a[i + 1].parse().expect("a number"));
    let mut socks: Vec<TcpStream> = (0..conns)
        .map(|_| {
            let s = TcpStream::connect(addr).expect("connect");
            s.set_nodelay(true).unwrap();
            s
        })
        .collect();
    let batch: Vec<u8> = (0..pipeline * size).map(|i| (i % 251) as u8).collect();
    let mut back = vec![0u8; batch.len()];
    let start = Instant::now();
    let until = start + Duration::from_secs(seconds);
    let mut requests = 0u64;
    let mut errors = 0u64;
    while Instant::now() < until {
        // Every connection has a batch in flight at once, as many clients would.
        for s in socks.iter_mut() {
            s.write_all(&batch).expect("write");
        }
        for s in socks.iter_mut() {
            s.read_exact(&mut back).expect("read");
            if back != batch {
                errors += 1;
            }
            requests += pipeline;
        }
    }
    println!(
        "requests={requests} seconds={:.3} errors={errors}",
        start.elapsed().as_secs_f64()
    );
}
