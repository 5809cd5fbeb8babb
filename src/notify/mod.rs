//! Keyspace notifications (`notify-keyspace-events`): the flag letters as Redis spells
//! them, and the events a shard's `Db` collects at its mutation choke point for the shard
//! to publish (`__keyspace@0__:<key>` carrying the event, `__keyevent@0__:<event>` carrying
//! the key) at the end of its loop turn.

mod bound;

use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;

pub use bound::set_pubsub_hard_limit;

/// `K`: publish on `__keyspace@0__:<key>`.
pub const KEYSPACE: u32 = 1 << 0;
/// `E`: publish on `__keyevent@0__:<event>`.
pub const KEYEVENT: u32 = 1 << 1;
/// `g`: generic commands (DEL, EXPIRE, RENAME, ...).
pub const GENERIC: u32 = 1 << 2;
/// `$`: string commands.
pub const STRING: u32 = 1 << 3;
/// `l`: list commands.
pub const LIST: u32 = 1 << 4;
/// `s`: set commands.
pub const SET: u32 = 1 << 5;
/// `h`: hash commands.
pub const HASH: u32 = 1 << 6;
/// `z`: sorted set commands.
pub const ZSET: u32 = 1 << 7;
/// `x`: expired events.
pub const EXPIRED: u32 = 1 << 8;
/// `e`: evicted events.
pub const EVICTED: u32 = 1 << 9;
/// `t`: stream commands.
pub const STREAM: u32 = 1 << 10;
/// `m`: key misses (not part of `A`).
pub const KEY_MISS: u32 = 1 << 11;
/// `d`: module key types.
pub const MODULE: u32 = 1 << 12;
/// `n`: new keys (not part of `A`).
pub const NEW: u32 = 1 << 13;
/// `A`: alias for `g$lshzxetd`.
pub const ALL: u32 =
    GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;

/// The configured flags, server-wide (`CONFIG SET` changes them at once for every shard).
pub static FLAGS: AtomicU32 = AtomicU32::new(0);

/// The current flags.
pub fn flags() -> u32 {
    FLAGS.load(Ordering::Relaxed)
}

/// Parse Redis's flag letters; `None` for an unknown letter.
pub fn parse(s: &str) -> Option<u32> {
    let mut f = 0;
    for c in s.chars() {
        f |= match c {
            'A' => ALL,
            'g' => GENERIC,
            '$' => STRING,
            'l' => LIST,
            's' => SET,
            'h' => HASH,
            'z' => ZSET,
            'x' => EXPIRED,
            'e' => EVICTED,
            'K' => KEYSPACE,
            'E' => KEYEVENT,
            't' => STREAM,
            'm' => KEY_MISS,
            'd' => MODULE,
            'n' => NEW,
            _ => return None,
        };
    }
    Some(f)
}

/// The flags as Redis prints them back (CONFIG GET).
pub fn format(f: u32) -> String {
    let mut s = String::new();
    if f & ALL == ALL {
        s.push('A');
    } else {
        for (bit, c) in [
            (GENERIC, 'g'),
            (STRING, '$'),
            (LIST, 'l'),
            (SET, 's'),
            (HASH, 'h'),
            (ZSET, 'z'),
            (EXPIRED, 'x'),
            (EVICTED, 'e'),
            (STREAM, 't'),
            (MODULE, 'd'),
            // Redis 7.0 prints `n` with the classes, so not after an `A`.
            (NEW, 'n'),
        ] {
            if f & bit != 0 {
                s.push(c);
            }
        }
    }
    for (bit, c) in [(KEYSPACE, 'K'), (KEYEVENT, 'E'), (KEY_MISS, 'm')] {
        if f & bit != 0 {
            s.push(c);
        }
    }
    s
}

/// Events collected on one shard, published at the end of its turn.
#[derive(Debug, Default)]
pub struct Events {
    /// The command whose mutations are being collected (names its events).
    pub cmd: &'static str,
    /// Collected (event, key) pairs.
    pub pending: Vec<(&'static str, Bytes)>,
    /// Messages PUBLISHed inside MULTI/EXEC or a script, sent with the events (each after
    /// the events collected before it).
    pub messages: Vec<Message>,
    /// What keeps a running script's collection bounded (`bound.rs`).
    pub bound: bound::Bound,
}

/// A message a transaction or script published.
#[derive(Debug, Clone)]
pub struct Message {
    /// How many of `pending` were collected before it.
    pub at: usize,
    /// PUBLISH or SPUBLISH.
    pub ns: crate::pubsub::Ns,
    /// Where to.
    pub channel: Bytes,
    /// What.
    pub message: Bytes,
    /// Not a message: every receiver of `channel` (a pattern's subscribers when `ns` is
    /// `Pattern`) was sent more than the pubsub output-buffer limit by one script, and is
    /// dropped as that limit drops a client (see `bound.rs`).
    pub overflow: bool,
}

impl Events {
    /// Queue `message` for `channel`, behind the events collected so far.
    pub fn publish(&mut self, ns: crate::pubsub::Ns, channel: Bytes, message: Bytes) {
        self.held_more(channel.len() + message.len());
        self.messages.push(Message {
            at: self.pending.len(),
            ns,
            channel,
            message,
            overflow: false,
        });
        self.bound_if_due();
    }

    /// Queue a message (or overflow mark) collected elsewhere (a script's on another
    /// shard), behind the events collected so far.
    pub fn requeue(&mut self, mut m: Message) {
        m.at = self.pending.len();
        self.messages.push(m);
    }

    /// Queue the keyspace event `event` of `key`.
    pub fn push_event(&mut self, event: &'static str, key: Bytes) {
        self.held_more(key.len() + event.len());
        self.pending.push((event, key));
        self.bound_if_due();
    }
}

/// What a mutation kind is called for the running command, with its class.
pub fn name_for(cmd: &str, what: Mutation) -> (&'static str, u32) {
    match (what, cmd) {
        (Mutation::Write, "incr" | "decr" | "incrby" | "decrby") => ("incrby", STRING),
        (Mutation::Write, "incrbyfloat") => ("incrbyfloat", STRING),
        (Mutation::Write, "rename" | "renamenx") => ("rename_to", GENERIC),
        (Mutation::Write, "copy") => ("copy_to", GENERIC),
        (Mutation::Write, "sinterstore") => ("sinterstore", SET),
        (Mutation::Write, "sunionstore") => ("sunionstore", SET),
        (Mutation::Write, "sdiffstore") => ("sdiffstore", SET),
        (Mutation::Write, "zunionstore") => ("zunionstore", ZSET),
        (Mutation::Write, "zinterstore") => ("zinterstore", ZSET),
        (Mutation::Write, "zdiffstore") => ("zdiffstore", ZSET),
        (Mutation::Write, "zrangestore") => ("zrangestore", ZSET),
        (Mutation::Write, _) => ("set", STRING),
        (Mutation::Remove, "rename" | "renamenx") => ("rename_from", GENERIC),
        (Mutation::Remove, "expired") => ("expired", EXPIRED),
        (Mutation::Remove, "evicted") => ("evicted", EVICTED),
        (Mutation::Remove, _) => ("del", GENERIC),
        (Mutation::Expire, _) => ("expire", GENERIC),
        (Mutation::Persist, _) => ("persist", GENERIC),
        (Mutation::Append, _) => ("append", STRING),
        (Mutation::SetRange, _) => ("setrange", STRING),
        (Mutation::Typed { event, class }, _) => (event, class),
    }
}

/// Kinds of mutation `Db` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutation {
    /// A value stored.
    Write,
    /// A key removed.
    Remove,
    /// A deadline set.
    Expire,
    /// A deadline removed.
    Persist,
    /// APPEND.
    Append,
    /// SETRANGE.
    SetRange,
    /// A collection command's change: its event name and class (hash, list, set...).
    Typed { event: &'static str, class: u32 },
}

impl Events {
    /// Note a mutation of `key` if the flags want its class.
    pub fn note(&mut self, flags: u32, what: Mutation, key: &[u8]) {
        if flags & (KEYSPACE | KEYEVENT) == 0 || !crate::pubsub::key_events_heard() {
            return;
        }
        let (event, class) = name_for(self.cmd, what);
        if flags & class != 0 {
            self.push_event(event, Bytes::copy_from_slice(key));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_read_and_print_as_in_redis() {
        assert_eq!(parse("KEA"), Some(KEYSPACE | KEYEVENT | ALL));
        assert_eq!(format(parse("AKE").unwrap()), "AKE");
        assert_eq!(format(parse("Egx").unwrap()), "gxE");
        assert_eq!(parse("Q"), None);
        assert_eq!(format(0), "");
        // As Redis 7.0.15 prints them.
        assert_eq!(format(parse("AKEn").unwrap()), "AKE");
        assert_eq!(format(parse("KEn").unwrap()), "nKE");
        assert_eq!(format(parse("KEAnm").unwrap()), "AKEm");
    }

    #[test]
    fn events_are_named_by_the_command() {
        assert_eq!(name_for("incrby", Mutation::Write).0, "incrby");
        assert_eq!(name_for("rename", Mutation::Remove).0, "rename_from");
        assert_eq!(name_for("set", Mutation::Write).0, "set");
        let mut e = Events {
            cmd: "del",
            ..Events::default()
        };
        e.note(KEYEVENT | STRING, Mutation::Remove, b"k");
        assert!(e.pending.is_empty(), "del is generic, not asked for");
        // Somebody listens (the count is process-wide and only grows here).
        crate::pubsub::listen_to_key_events_for_tests();
        e.note(KEYEVENT | GENERIC, Mutation::Remove, b"k");
        assert_eq!(e.pending.len(), 1);
    }
}
