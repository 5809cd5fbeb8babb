//! GET, SET, DEL, EXISTS, MGET, MSET: single-key commands run on the owning shard;
//! multi-key commands are split per shard and their parts combined in request order.

use bytes::Bytes;
use coreshard_engine::{ConnId, Ctx, ShardId};

use super::Args;
use crate::server::ops::Op;
use crate::server::reply::Agg;
use crate::server::Server;

pub fn get(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    let key: &[u8] = &args[1];
    s.run_keyed(ctx, conn, key, Op::Get(key));
}

pub fn set(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    if args.len() != 3 {
        // SET's options (EX, PX, NX, XX, KEEPTTL, GET, ...) are not implemented yet.
        return s.error(ctx, conn, "ERR syntax error");
    }
    let key: &[u8] = &args[1];
    let value = Bytes::copy_from_slice(&args[2]);
    s.run_keyed(ctx, conn, key, Op::Set(key, value));
}

/// Group `keys` by owning shard: `(shard, keys, their positions in the request)`.
fn group_by_shard<'a>(s: &Server, keys: impl Iterator<Item = &'a [u8]>) -> Vec<(ShardId, Vec<&'a [u8]>, Vec<usize>)> {
    let mut groups: Vec<(ShardId, Vec<&[u8]>, Vec<usize>)> = Vec::new();
    for (pos, key) in keys.enumerate() {
        let shard = s.slots.shard_of(key);
        match groups.iter_mut().find(|g| g.0 == shard) {
            Some(g) => {
                g.1.push(key);
                g.2.push(pos);
            }
            None => groups.push((shard, vec![key], vec![pos])),
        }
    }
    groups
}

fn counting(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args, make: fn(Vec<&[u8]>) -> Op<&[u8]>) {
    let groups = group_by_shard(s, args[1..].iter().map(|a| &a[..]));
    let parts = groups.into_iter().map(|(shard, keys, _)| (shard, make(keys))).collect();
    s.run_parts(ctx, conn, parts, Agg::Sum(0));
}

pub fn del(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    counting(s, ctx, conn, args, |k| Op::Del(k));
}

pub fn exists(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    counting(s, ctx, conn, args, |k| Op::Exists(k));
}

pub fn mget(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    let groups = group_by_shard(s, args[1..].iter().map(|a| &a[..]));
    let mut parts = Vec::with_capacity(groups.len());
    let mut positions = Vec::with_capacity(groups.len());
    for (shard, keys, pos) in groups {
        parts.push((shard, Op::MGet(keys)));
        positions.push(pos);
    }
    let agg = Agg::MGet { values: vec![None; args.len() - 1], positions };
    s.run_parts(ctx, conn, parts, agg);
}

pub fn mset(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    if args.len() % 2 == 0 {
        return s.error(ctx, conn, "ERR wrong number of arguments for 'mset' command");
    }
    let pairs: Vec<(&[u8], &[u8])> = args[1..].chunks(2).map(|c| (&c[0][..], &c[1][..])).collect();
    let groups = group_by_shard(s, pairs.iter().map(|p| p.0));
    let parts = groups
        .into_iter()
        .map(|(shard, _, pos)| {
            let kvs = pos.iter().map(|&i| (pairs[i].0, Bytes::copy_from_slice(pairs[i].1))).collect();
            (shard, Op::MSet(kvs))
        })
        .collect();
    s.run_parts(ctx, conn, parts, Agg::AllOk);
}
