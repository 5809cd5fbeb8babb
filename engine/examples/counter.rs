//! Counters sharded by name: `INCR <name>` adds one and `GET <name>` reads, one request per
//! line; each reply is `<name> <value>\n`, in request order. Every name has one owning
//! shard (`Ctx::shard_for`), and `Ctx::call` runs the request there: a counter is one
//! counter whichever shard accepted the connection, and answers from other shards take
//! their place in the connection's reply order.
//!
//! ```text
//! cargo run --release -p coreshard-engine --example counter -- 127.0.0.1:7001 [shards]
//! printf 'INCR x\nINCR x\nGET x\n' | nc -q1 127.0.0.1 7001
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;

use coreshard_engine::{
    block_shutdown_signals, start, wait_for_shutdown_signal, ConnId, Ctx, EngineConfig,
    EngineError, EngineHandle, Handler, Input,
};

/// One shard's counters: only the names this shard owns.
#[derive(Default)]
pub struct Counters {
    counts: HashMap<Vec<u8>, u64>,
}

impl Handler for Counters {
    type Conn = ();
    type Msg = ();

    fn on_data(&mut self, ctx: &mut Ctx<Self>, conn: ConnId, data: Input<'_>) -> usize {
        let mut used = 0;
        while let Some(len) = data[used..].iter().position(|&b| b == b'\n') {
            let line = &data[used..used + len];
            used += len + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let (incr, name) = match line.iter().position(|&b| b == b' ') {
                Some(sp) if &line[..sp] == b"INCR" => (true, &line[sp + 1..]),
                Some(sp) if &line[..sp] == b"GET" => (false, &line[sp + 1..]),
                _ => {
                    ctx.write(conn, b"ERR expected INCR <name> or GET <name>\n");
                    continue;
                }
            };
            let name = name.to_vec();
            let owner = ctx.shard_for(&name);
            // Runs here at once if this shard owns the name, else on the owner.
            ctx.call(self, conn, owner, move |counters: &mut Counters, _ctx| {
                let value = match counters.counts.get_mut(&name) {
                    Some(n) if incr => {
                        *n += 1;
                        *n
                    }
                    Some(n) => *n,
                    None if incr => *counters.counts.entry(name.clone()).or_insert(1),
                    None => 0,
                };
                let mut reply = name;
                reply.extend_from_slice(format!(" {value}\n").as_bytes());
                reply
            });
            if ctx.output_full(conn) {
                break; // the rest is kept and delivered once replies drain
            }
        }
        used
    }
}

/// Serve counters on `listen` (port 0: a free one) with `shards` shards (0: one per core).
pub fn serve(listen: SocketAddr, shards: usize) -> Result<EngineHandle, EngineError> {
    let config = EngineConfig {
        shards,
        max_input_buffer: 64 * 1024, // a line longer than this closes the connection
        ..EngineConfig::listen_on(listen)
    };
    start(config, |_shard| Counters::default())
}

fn main() {
    block_shutdown_signals();
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:7001".into());
    let shards = args.next().unwrap_or_else(|| "0".into());
    let (Ok(listen), Ok(shards)) = (listen.parse(), shards.parse()) else {
        eprintln!("usage: counter [ADDR:PORT] [SHARDS]");
        std::process::exit(2);
    };
    let engine = serve(listen, shards).unwrap_or_else(|e| {
        eprintln!("counter: {e}");
        std::process::exit(1);
    });
    println!("counter listening on {:?}", engine.local_addr());
    let _ = wait_for_shutdown_signal();
    engine.shutdown();
    if let Err(e) = engine.join() {
        eprintln!("counter: {e}");
        std::process::exit(1);
    }
}
