//! Closed-loop pipelined load for the counter protocol: CONNS connections, each sending
//! PIPELINE `INCR k<n>` requests (names drawn from KEYS) in one write, then reading that
//! many reply lines, again and again, for SECONDS. One thread. Prints
//! `requests=<replies read> seconds=<elapsed> errors=<ERR replies>`.
//!
//! usage: load ADDR:PORT CONNS PIPELINE KEYS SECONDS

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let addr = &a[0];
    let [conns, pipeline, keys, seconds]: [u64; 4] =
        std::array::from_fn(|i| a[i + 1].parse().expect("a number"));
    let mut socks: Vec<TcpStream> = (0..conns)
        .map(|_| {
            let s = TcpStream::connect(addr).expect("connect");
            s.set_nodelay(true).unwrap();
            s
        })
        .collect();
    // 16 request batches per connection, names spread by a cheap LCG.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let batches: Vec<Vec<Vec<u8>>> = (0..conns)
        .map(|_| {
            (0..16)
                .map(|_| {
                    let mut b = Vec::new();
                    for _ in 0..pipeline {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        b.extend_from_slice(format!("INCR k{}\n", (x >> 33) % keys).as_bytes());
                    }
                    b
                })
                .collect()
        })
        .collect();
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let (mut done, mut errors, mut round) = (0u64, 0u64, 0usize);
    let mut buf = vec![0u8; 1 << 16];
    while Instant::now() < end {
        for (c, s) in socks.iter_mut().enumerate() {
            s.write_all(&batches[c][round % 16]).expect("write");
        }
        for s in socks.iter_mut() {
            let mut lines = 0;
            let mut at_line_start = true;
            while lines < pipeline {
                let n = s.read(&mut buf).expect("read");
                assert!(n > 0, "server closed the connection");
                for &b in &buf[..n] {
                    if at_line_start && b == b'E' {
                        errors += 1;
                    }
                    at_line_start = b == b'\n';
                    lines += u64::from(at_line_start);
                }
            }
        }
        done += conns * pipeline;
        round += 1;
    }
    println!("requests={done} seconds={:.3} errors={errors}", start.elapsed().as_secs_f64());
}
