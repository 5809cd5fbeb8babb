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

/// The keys of one request that one shard owns.
struct ShardGroup<'a> {
    shard: ShardId,
    keys: Vec<&'a [u8]>,
    /// Where each key stands in the request.
    positions: Vec<usize>,
}

/// Group `keys` by owning shard, in order of first appearance.
fn group_by_shard<'a>(s: &Server, keys: impl Iterator<Item = &'a [u8]>) -> Vec<ShardGroup<'a>> {
    let mut groups: Vec<ShardGroup<'a>> = Vec::new();
    for (pos, key) in keys.enumerate() {
        let shard = s.slots.shard_of(key);
        match groups.iter_mut().find(|g| g.shard == shard) {
            Some(g) => {
                g.keys.push(key);
                g.positions.push(pos);
            }
            None => groups.push(ShardGroup {
                shard,
                keys: vec![key],
                positions: vec![pos],
            }),
        }
    }
    groups
}

fn counting<'a>(
    s: &mut Server,
    ctx: &mut Ctx<Server>,
    conn: ConnId,
    args: Args<'a, '_>,
    make: impl Fn(Vec<&'a [u8]>) -> Op<&'a [u8]>,
) {
    let groups = group_by_shard(s, args[1..].iter().map(|a| &a[..]));
    let parts = groups
        .into_iter()
        .map(|g| (g.shard, make(g.keys)))
        .collect();
    s.run_parts(ctx, conn, parts, Agg::Sum(0));
}

pub fn del(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    counting(s, ctx, conn, args, Op::Del);
}

pub fn exists(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    counting(s, ctx, conn, args, Op::Exists);
}

pub fn mget(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    let groups = group_by_shard(s, args[1..].iter().map(|a| &a[..]));
    let mut parts = Vec::with_capacity(groups.len());
    let mut positions = Vec::with_capacity(groups.len());
    for g in groups {
        parts.push((g.shard, Op::MGet(g.keys)));
        positions.push(g.positions);
    }
    let agg = Agg::MGet {
        values: vec![None; args.len() - 1],
        positions,
    };
    s.run_parts(ctx, conn, parts, agg);
}

pub fn mset(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    if args.len() % 2 == 0 {
        return s.error(
            ctx,
            conn,
            "ERR wrong number of arguments for 'mset' command",
        );
    }
    let pairs: Vec<(&[u8], &[u8])> = args[1..]
        .chunks(2)
        .map(|c| (&c[0][..], &c[1][..]))
        .collect();
    let groups = group_by_shard(s, pairs.iter().map(|p| p.0));
    let parts = groups
        .into_iter()
        .map(|g| {
            let kvs = g
                .positions
                .iter()
                .map(|&i| (pairs[i].0, Bytes::copy_from_slice(pairs[i].1)))
                .collect();
            (g.shard, Op::MSet(kvs))
        })
        .collect();
    s.run_parts(ctx, conn, parts, Agg::AllOk);
}
