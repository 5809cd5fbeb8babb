//! An echo server on the engine: every byte received is sent back.
//!
//! ```text
//! cargo run -p coreshard-engine --example echo -- 127.0.0.1:7000 [SHARDS]
//! printf 'hello\n' | nc -q1 127.0.0.1 7000
//! ```

use std::net::SocketAddr;

use coreshard_engine::{
    block_shutdown_signals, start, wait_for_shutdown_signal, ConnId, Ctx, EngineConfig,
    EngineError, EngineHandle, Handler, Input,
};

/// Echo has no per-connection state and sends no messages between shards, so only
/// `on_data` is written: every other hook has a default.
pub struct Echo;

impl Handler for Echo {
    type Conn = ();
    type Msg = ();

    fn on_data(&mut self, ctx: &mut Ctx<Self>, conn: ConnId, data: Input<'_>) -> usize {
        // Replies gathered in one turn leave in one send, so a burst costs one submission
        // rather than one write per chunk.
        ctx.write(conn, &data);
        data.len()
    }
}

/// Start echoing on `listen` (port 0: a free one) with `shards` shards (0: one per core).
pub fn serve(listen: SocketAddr, shards: usize) -> Result<EngineHandle, EngineError> {
    let config = EngineConfig {
        shards,
        ..EngineConfig::listen_on(listen)
    };
    start(config, |_shard| Echo)
}

fn main() {
    block_shutdown_signals();
    let listen: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7000".to_string())
        .parse()
        .unwrap_or_else(|e| {
            eprintln!("bad address: {e}");
            std::process::exit(2);
        });
    // Optional second argument: the shard count (default 0, one per core).
    let shards: usize = std::env::args()
        .nth(2)
        .map_or(Ok(0), |s| s.parse())
        .unwrap_or_else(|e| {
            eprintln!("bad shard count: {e}");
            std::process::exit(2);
        });
    let engine = serve(listen, shards).unwrap_or_else(|e| {
        eprintln!("echo: {e}");
        std::process::exit(1);
    });
    println!(
        "echo listening on {} ({})",
        engine.local_addr().unwrap_or(listen),
        engine.features()
    );
    let _ = wait_for_shutdown_signal();
    engine.shutdown();
    if let Err(e) = engine.join() {
        eprintln!("echo: {e}");
        std::process::exit(1);
    }
}
