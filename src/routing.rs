//! Key routing: Redis Cluster's slot function, and the table from slot to shard.

/// Number of hash slots, as in Redis Cluster.
pub const SLOTS: usize = 16384;

/// CRC16/XMODEM lookup table (polynomial 0x1021), built at compile time.
const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// CRC16/XMODEM, the checksum Redis Cluster uses for key slots (one table step per byte:
/// it runs for every keyed request).
pub fn crc16(data: &[u8]) -> u16 {
    data.iter().fold(0u16, |crc, &b| {
        (crc << 8) ^ CRC16_TABLE[usize::from((crc >> 8) as u8 ^ b)]
    })
}

/// The part of the key that is hashed: the first non-empty `{...}` section, else the key.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&c| c == b'{') {
        if let Some(len) = key[open + 1..].iter().position(|&c| c == b'}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

/// `CRC16(key or its hash tag) mod 16384`.
pub fn key_slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) % SLOTS as u16
}

/// Which shard owns each slot. Contiguous slot ranges per shard, like a cluster's layout,
/// so a future resharding moves ranges.
#[derive(Debug, Clone)]
pub struct SlotTable {
    owner: Vec<u16>,
    /// One shard owns every slot: routing needs no hashing (it runs for every keyed
    /// request).
    single: bool,
}

impl SlotTable {
    /// Spread the slots evenly over `shards` shards.
    pub fn even(shards: usize) -> Self {
        let shards = shards.max(1);
        let owner = (0..SLOTS)
            .map(|slot| (slot * shards / SLOTS) as u16)
            .collect();
        SlotTable {
            owner,
            single: shards == 1,
        }
    }

    /// The shard that owns `key`.
    #[inline]
    pub fn shard_of(&self, key: &[u8]) -> usize {
        if self.single {
            return 0;
        }
        usize::from(self.owner[usize::from(key_slot(key))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_redis_cluster_slots() {
        // Values from `CLUSTER KEYSLOT` on Redis.
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(
            key_slot(b"{user1000}.following"),
            key_slot(b"{user1000}.followers")
        );
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
    }

    #[test]
    fn table_covers_every_shard() {
        let t = SlotTable::even(4);
        let mut seen = [false; 4];
        for i in 0..1000 {
            seen[t.shard_of(format!("key:{i}").as_bytes())] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(SlotTable::even(1).shard_of(b"anything"), 0);
    }
}
