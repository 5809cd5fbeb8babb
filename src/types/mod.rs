//! The value types besides strings, as the engine's TTL map stores them: one [`Obj`] per
//! key, boxed in the map entry. Each representation lives in its own file; the command
//! families that use them are in `crate::commands::{hash,list,set}`.

mod encoding;
pub mod limits;
pub mod list;
mod lz;
pub mod set;
pub mod stream;
pub mod table;
pub mod zset;

use coreshard_engine::ttl::Object;

pub use list::List;
pub use set::Set;
pub use stream::Stream;
pub use table::Table;
pub use zset::ZSet;

/// A collection value.
#[derive(Debug, Clone)]
pub enum Obj {
    /// A hash: field → value.
    Hash(Table),
    /// A list (boxed: its chunk deque is bigger than the other variants, and a list is
    /// rarely small).
    List(Box<List>),
    /// A set (boxed too, so a hash, the most common small collection, pays the smallest
    /// value block: `Obj` is 24 bytes).
    Set(Box<Set>),
    /// A sorted set (boxed like sets).
    ZSet(Box<ZSet>),
    /// A stream (boxed; it stays when its last entry goes, as in Redis).
    Stream(Box<Stream>),
}

/// Type tags in snapshots and log records.
pub mod tag {
    pub const HASH: u8 = 1;
    pub const LIST: u8 = 2;
    pub const SET: u8 = 3;
    pub const ZSET: u8 = 4;
    pub const STREAM: u8 = 5;
}

impl Obj {
    /// An empty hash with the current compact-encoding limits (`hash-max-listpack-*`).
    pub fn new_hash() -> Obj {
        let (entries, len) = limits::hash();
        Obj::Hash(Table::new(entries, len))
    }

    /// An empty list.
    pub fn new_list() -> Obj {
        Obj::List(Box::default())
    }

    /// An empty set.
    pub fn new_set() -> Obj {
        Obj::Set(Box::default())
    }

    /// An empty sorted set with the current compact-encoding limits
    /// (`zset-max-listpack-*`).
    pub fn new_zset() -> Obj {
        let (entries, len) = limits::zset();
        Obj::ZSet(Box::new(ZSet::new(entries, len)))
    }

    /// An empty stream.
    pub fn new_stream() -> Obj {
        Obj::Stream(Box::default())
    }

    /// What TYPE answers.
    pub fn type_name(&self) -> &'static str {
        match self {
            Obj::Hash(_) => "hash",
            Obj::List(_) => "list",
            Obj::Set(_) => "set",
            Obj::ZSet(_) => "zset",
            Obj::Stream(_) => "stream",
        }
    }

    /// What OBJECT ENCODING answers: Redis 7.0's name for the equivalent representation.
    pub fn encoding(&self) -> &'static str {
        match self {
            Obj::Hash(t) if t.is_compact() => "listpack",
            Obj::Hash(_) => "hashtable",
            Obj::List(_) => "quicklist",
            Obj::Set(s) => s.encoding(),
            Obj::ZSet(z) => z.encoding(),
            Obj::Stream(_) => "stream",
        }
    }

    /// Whether it holds nothing and should go (a stream never does: an empty stream
    /// keeps its last id and groups, as in Redis).
    pub fn is_empty(&self) -> bool {
        match self {
            Obj::Hash(t) => t.is_empty(),
            Obj::List(l) => l.is_empty(),
            Obj::Set(s) => s.is_empty(),
            Obj::ZSet(z) => z.is_empty(),
            Obj::Stream(_) => false,
        }
    }

    /// The type tag and serialized form (snapshots, log records).
    pub fn encode(&self) -> (u8, Vec<u8>) {
        let mut out = Vec::new();
        let tag = match self {
            Obj::Hash(t) => {
                t.encode(&mut out);
                tag::HASH
            }
            Obj::List(l) => {
                l.encode(&mut out);
                tag::LIST
            }
            Obj::Set(s) => {
                s.encode(&mut out);
                tag::SET
            }
            Obj::ZSet(z) => {
                z.encode(&mut out);
                tag::ZSET
            }
            Obj::Stream(x) => {
                x.encode(&mut out);
                tag::STREAM
            }
        };
        (tag, out)
    }

    /// Rebuild from [`Obj::encode`]'s output; `None` if it does not decode.
    pub fn decode(tag: u8, buf: &[u8]) -> Option<Obj> {
        match tag {
            tag::HASH => Table::decode(buf).map(Obj::Hash),
            tag::LIST => List::decode(buf).map(|l| Obj::List(Box::new(l))),
            tag::SET => Set::decode(buf).map(|s| Obj::Set(Box::new(s))),
            tag::ZSET => ZSet::decode(buf).map(|z| Obj::ZSet(Box::new(z))),
            tag::STREAM => Stream::decode(buf).map(|x| Obj::Stream(Box::new(x))),
            _ => None,
        }
    }
}

impl Object for Obj {
    fn heap_bytes(&self) -> usize {
        match self {
            Obj::Hash(t) => t.heap_bytes(),
            Obj::List(l) => {
                coreshard_engine::ttl::alloc_size(std::mem::size_of::<List>()) + l.heap_bytes()
            }
            Obj::Set(s) => {
                coreshard_engine::ttl::alloc_size(std::mem::size_of::<Set>()) + s.heap_bytes()
            }
            Obj::ZSet(z) => {
                coreshard_engine::ttl::alloc_size(std::mem::size_of::<ZSet>()) + z.heap_bytes()
            }
            Obj::Stream(x) => {
                coreshard_engine::ttl::alloc_size(std::mem::size_of::<Stream>()) + x.heap_bytes()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_collection_value_is_small() {
        // Every collection key pays one block of this size besides its elements.
        assert!(
            std::mem::size_of::<Obj>() <= 24,
            "Obj is {} bytes (Table {}, Set {}, List {})",
            std::mem::size_of::<Obj>(),
            std::mem::size_of::<Table>(),
            std::mem::size_of::<Set>(),
            std::mem::size_of::<List>()
        );
    }
}
