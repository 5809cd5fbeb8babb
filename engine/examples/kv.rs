//! A key-value store with expiry, sharded by key onto each shard's `TtlMap`. One request a
//! line: `SET <key> <value> [<ttl-ms>]` answers `OK`, `GET <key>` the value or `(nil)`,
//! `DEL <key>` `1` or `0`. Expired keys are gone on access, and reclaimed in bounded steps.
//! ```text
//! cargo run --release -p coreshard-engine --example kv -- 127.0.0.1:7002
//! printf 'SET a 1 100\nGET a\n' | nc -q1 127.0.0.1 7002
//! ```

use coreshard_engine::ttl::{TtlMap, ValueRef};
use coreshard_engine::{
    block_shutdown_signals, start, wait_for_shutdown_signal, ConnId, Ctx, EngineConfig,
    EngineError, EngineHandle, Handler, Input,
};
use std::time::{Duration, UNIX_EPOCH};

/// One shard's keys.
#[derive(Default)]
pub struct Kv {
    map: TtlMap,
}

fn unix_ms() -> u64 {
    UNIX_EPOCH.elapsed().map_or(0, |d| d.as_millis() as u64)
}

impl Kv {
    fn run(&mut self, args: &[Vec<u8>]) -> Vec<u8> {
        let now = unix_ms();
        let ttl = |a: &[u8]| std::str::from_utf8(a).ok()?.parse::<u64>().ok();
        match args {
            [cmd, key] if cmd == b"GET" => match self.map.get(key, now).and_then(|v| v.bytes()) {
                Some(v) => [v.as_slice(), b"\n"].concat(),
                None => b"(nil)\n".to_vec(),
            },
            [cmd, key] if cmd == b"DEL" => {
                [b"0\n", b"1\n"][usize::from(self.map.remove(key, now).is_some())].to_vec()
            }
            [cmd, key, value, rest @ ..] if cmd == b"SET" && rest.len() <= 1 => {
                let deadline = match rest.first().map(|t| ttl(t)) {
                    None => 0,
                    Some(Some(ms)) if ms > 0 => now.saturating_add(ms),
                    Some(_) => return b"ERR ttl must be a positive number of ms\n".to_vec(),
                };
                self.map.insert(key, ValueRef::Inline(value), deadline, now);
                b"OK\n".to_vec()
            }
            _ => b"ERR expected SET k v [ttl-ms], GET k or DEL k\n".to_vec(),
        }
    }
}

impl Handler for Kv {
    type Conn = ();
    type Msg = ();

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        self.on_timer(ctx, 0);
    }

    fn on_timer(&mut self, ctx: &mut Ctx<Self>, _cookie: u64) {
        self.map.expire_step(unix_ms(), 1000); // bounded: I/O is never held up for long
        ctx.set_timer(Duration::from_millis(100), 0);
    }

    fn on_data(&mut self, ctx: &mut Ctx<Self>, conn: ConnId, data: Input<'_>) -> usize {
        let mut used = 0;
        while let Some(len) = data[used..].iter().position(|&b| b == b'\n') {
            let args = data[used..used + len].split(u8::is_ascii_whitespace);
            used += len + 1;
            let args: Vec<Vec<u8>> = args.filter(|a| !a.is_empty()).map(<[u8]>::to_vec).collect();
            let owner = ctx.shard_for(args.get(1).map_or(&[][..], |k| k));
            ctx.call(self, conn, owner, move |kv: &mut Kv, _ctx| kv.run(&args));
            if ctx.output_full(conn) {
                break;
            }
        }
        used
    }
}

/// Serve on `listen` (port 0: a free one) with `shards` shards (0: one per core).
pub fn serve(listen: std::net::SocketAddr, shards: usize) -> Result<EngineHandle, EngineError> {
    let config = EngineConfig {
        shards,
        max_input_buffer: 1 << 20,
        ..EngineConfig::listen_on(listen)
    };
    start(config, |_shard| Kv::default())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    block_shutdown_signals();
    let listen = std::env::args().nth(1);
    let engine = serve(listen.as_deref().unwrap_or("127.0.0.1:7002").parse()?, 0)?;
    println!("kv listening on {:?}", engine.local_addr());
    wait_for_shutdown_signal()?;
    engine.shutdown();
    Ok(engine.join()?)
}
