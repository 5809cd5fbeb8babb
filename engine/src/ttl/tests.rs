use bytes::Bytes;

use super::expiry::bucket_of;
use super::*;

/// Test views of what the map hands out (these maps hold bytes only).
trait AsBytes {
    fn as_slice(&self) -> &[u8];
    fn to_bytes(&self) -> Bytes {
        Bytes::copy_from_slice(self.as_slice())
    }
    fn to_vec(&self) -> Vec<u8> {
        self.as_slice().to_vec()
    }
}

impl AsBytes for Stored<'_, NoObject> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Stored::Bytes(v) => v.as_slice(),
            Stored::Object(o) => match **o {},
        }
    }
    fn to_bytes(&self) -> Bytes {
        match self {
            Stored::Bytes(v) => v.to_bytes(),
            Stored::Object(o) => match **o {},
        }
    }
}

impl AsBytes for Owned<NoObject> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Owned::Bytes(b) => b,
            Owned::Object(o) => match **o {},
        }
    }
}

fn v(b: &[u8]) -> ValueRef<'_> {
    ValueRef::Inline(b)
}

#[test]
fn insert_get_replace_remove() {
    let mut m = TtlMap::new();
    assert!(!m.insert(b"a", v(b"1"), 0, 1000));
    assert!(m.insert(b"a", v(b"2"), 0, 1000));
    assert_eq!(m.get(b"a", 1000).unwrap().as_slice(), b"2");
    let big = Bytes::from(vec![9u8; 10_000]);
    m.insert(b"big", ValueRef::Shared(&big), 0, 1000);
    let got = m.get(b"big", 1000).unwrap().to_bytes();
    assert_eq!(got.as_ptr(), big.as_ptr());
    assert_eq!(m.len(), 2);
    assert_eq!(
        m.remove(b"a", 1000).map(|(b, _)| b.to_bytes()),
        Some(Bytes::from_static(b"2"))
    );
    assert!(m.get(b"a", 1000).is_none());
    assert_eq!(m.len(), 1);
}

#[test]
fn lazy_expiry_on_access() {
    let mut m = TtlMap::new();
    m.insert(b"k", v(b"v"), 1500, 1000);
    assert_eq!(m.with_deadline(), 1);
    assert_eq!(m.deadline(b"k", 1000), Some(1500));
    assert!(m.contains(b"k", 1499));
    assert!(!m.contains(b"k", 1500), "a key expires at its deadline");
    assert_eq!(m.len(), 0);
    assert_eq!(m.with_deadline(), 0);
    assert_eq!(m.expired_total(), 1);
}

#[test]
fn deadlines_change_and_persist() {
    let mut m = TtlMap::new();
    m.insert(b"k", v(b"v"), 2000, 1000);
    assert!(m.set_deadline(b"k", 0, 1000));
    assert_eq!(m.with_deadline(), 0);
    assert!(m.contains(b"k", 10_000));
    assert!(m.set_deadline(b"k", 3000, 1000));
    // The stale bucket entry for 2000 must not expire the key early.
    assert_eq!(m.expire_step(2500, 100).expired, 0);
    assert!(m.contains(b"k", 2500));
    assert_eq!(m.expire_step(3200, 100).expired, 1);
    assert!(!m.set_deadline(b"missing", 5, 1000));
    // The full range Redis accepts (ms up to i64::MAX) is representable.
    m.insert(b"far", v(b"v"), i64::MAX as u64, 1000);
    assert_eq!(m.deadline(b"far", 1000), Some(i64::MAX as u64));
}

#[test]
fn active_expiry_is_bounded_and_complete() {
    let mut m = TtlMap::new();
    for i in 0..10_000u32 {
        let key = format!("key:{i}");
        let deadline = if i % 2 == 0 { 5_000 } else { 0 };
        m.insert(key.as_bytes(), v(b"x"), deadline, 1000);
    }
    assert_eq!(m.with_deadline(), 5000);
    assert_eq!(
        m.expire_step(4_000, 1000),
        ExpireStep {
            expired: 0,
            more: false
        }
    );
    let mut steps = 0;
    loop {
        let s = m.expire_step(5_200, 1000);
        assert!(s.expired <= 1000, "a step never exceeds its budget");
        steps += 1;
        if !s.more {
            break;
        }
    }
    assert_eq!(steps, 5);
    assert_eq!(m.len(), 5000);
    assert_eq!(m.with_deadline(), 0);
    assert_eq!(m.expired_total(), 5000);
}

#[test]
fn slots_are_reused_without_confusing_expiry() {
    let mut m = TtlMap::new();
    m.insert(b"old", v(b"v"), 2000, 1000);
    m.remove(b"old", 1000);
    m.insert(b"new", v(b"v"), 0, 1000);
    assert_eq!(m.expire_step(3000, 10).expired, 0);
    assert!(m.contains(b"new", 3000));
}

#[test]
fn scan_returns_every_stable_key_despite_churn() {
    let mut m = TtlMap::new();
    for i in 0..1000u32 {
        m.insert(format!("stable:{i}").as_bytes(), v(b"v"), 0, 0);
    }
    let mut seen = std::collections::HashSet::new();
    let mut cursor = 0;
    let mut round = 0u32;
    loop {
        let mut batch = Vec::new();
        cursor = m.scan(cursor, 37, 0, |k, _| batch.push(k.to_vec()));
        seen.extend(batch);
        // Churn between calls: add and remove other keys.
        for j in 0..20 {
            m.insert(format!("churn:{round}:{j}").as_bytes(), v(b"v"), 0, 0);
        }
        for j in 0..20 {
            m.remove(format!("churn:{round}:{j}").as_bytes(), 0);
        }
        round += 1;
        if cursor == 0 {
            break;
        }
    }
    for i in 0..1000u32 {
        assert!(
            seen.contains(format!("stable:{i}").as_bytes()),
            "stable:{i} missed"
        );
    }
}

#[test]
fn random_key_and_clear() {
    let mut m = TtlMap::new();
    assert!(m.random_key(0, || 4).is_none());
    m.insert(b"only", v(b"v"), 0, 0);
    let mut x = 1u64;
    let k = m.random_key(0, || {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        x
    });
    assert_eq!(k.as_deref(), Some(&b"only"[..]));
    m.clear();
    assert!(m.is_empty());
}

#[test]
fn compact_for_the_common_shape() {
    let mut m = TtlMap::new();
    for i in 0..100_000u32 {
        m.insert(format!("key:{i:012}").as_bytes(), v(&[b'v'; 32]), 0, 0);
    }
    let per_key = m.structure_bytes() as f64 / 100_000.0;
    assert!(
        per_key < 90.0,
        "16-byte keys with 32-byte values inline: {per_key:.1} bytes/key"
    );
}

/// A small deterministic generator (an LCG's high bits).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    /// Uniform-ish in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// Every key with a deadline is listed exactly once, in its deadline's bucket, at the
/// position its entry remembers.
fn check_buckets(m: &TtlMap) {
    assert_eq!(
        m.buckets.entries(),
        m.with_deadline(),
        "one listing per key with a TTL"
    );
    let mut n = 0;
    for (bucket, pos, slot) in m.buckets.listings() {
        let e = m.arena.get(slot).expect("a listed slot holds a key");
        let deadline = m.deadline_at(slot, e);
        assert_ne!(deadline, 0, "a listed key has a deadline");
        assert_eq!(
            bucket_of(deadline),
            bucket,
            "listed under its deadline's bucket"
        );
        assert_eq!(e.bucket_pos(), pos, "the entry knows its position");
        n += 1;
    }
    assert_eq!(n, m.with_deadline());
    check_accounting(m);
}

/// The running memory sums equal a recount, and far deadlines are listed exactly for the
/// entries that have one.
fn check_accounting(m: &TtlMap) {
    let live = (0..m.arena.slots()).filter_map(|s| m.arena.get(s).map(|e| (s, e)));
    let mut heap = 0;
    let mut far = 0;
    for (slot, e) in live {
        heap += e.heap_size();
        if e.deadline() == FAR {
            far += 1;
            assert!(m.far.get(&slot).is_some_and(|&d| d >= FAR));
        }
    }
    assert_eq!(m.heap_bytes(), heap, "running heap sum");
    assert_eq!(m.far.len(), far, "one far listing per far deadline");
    assert_eq!(
        m.buckets.bytes(),
        m.buckets.bytes_recounted(),
        "bucket bytes"
    );
}

fn bucket_bytes(m: &TtlMap) -> usize {
    m.buckets.bytes()
}

#[test]
fn a_sliding_ttl_costs_constant_memory() {
    // One session key whose TTL is pushed forward on every request, by EXPIRE or by a SET
    // with EX, while time passes and active expiry runs as the server runs it.
    let mut m = TtlMap::new();
    let mut rng = Rng(1);
    let mut now = 1_000_000u64;
    let mut deadline = now + 30_000;
    m.insert(b"session", v(b"state"), deadline, now);
    let baseline = m.structure_bytes();
    for i in 0..1_000_000u32 {
        let step = rng.range(1, 1000);
        now += step;
        deadline += step;
        if i % 8 == 0 {
            m.insert(b"session", v(b"state"), deadline, now);
        } else {
            assert!(m.set_deadline(b"session", deadline, now));
        }
        assert_eq!(m.expire_step(now, 256).expired, 0);
        assert_eq!(m.structure_bytes(), baseline, "iteration {i}");
        assert_eq!(m.buckets.entries(), 1, "iteration {i}");
    }
    check_buckets(&m);
    assert_eq!(m.expire_step(deadline + 100, 256).expired, 1);
    assert!(m.is_empty());
    assert_eq!(bucket_bytes(&m), 0);
}

#[test]
fn sliding_ttls_of_many_keys_cost_memory_per_key_not_per_write() {
    const KEYS: u32 = 10_000;
    let mut m = TtlMap::new();
    let mut rng = Rng(2);
    let mut now = 1_000_000u64;
    let mut deadlines = vec![0u64; KEYS as usize];
    for (i, d) in deadlines.iter_mut().enumerate() {
        *d = now + 30_000 + rng.range(0, 1000);
        m.insert(format!("s:{i}").as_bytes(), v(b"x"), *d, now);
    }
    // 1M slides in random key order, each 1 ms..1 s forward; time advances 1 ms per 100
    // (10 s in all, so no key runs out of its 30 s).
    let mut peak = 0;
    for i in 0..1_000_000u32 {
        let k = rng.range(0, u64::from(KEYS) - 1) as usize;
        deadlines[k] = deadlines[k].max(now + 1) + rng.range(1, 1000);
        assert!(m.set_deadline(format!("s:{k}").as_bytes(), deadlines[k], now));
        if i % 100 == 0 {
            now += 1;
            m.expire_step(now, 256);
        }
        if i % 1000 == 0 {
            peak = peak.max(bucket_bytes(&m));
            assert_eq!(m.buckets.entries(), KEYS as usize);
        }
    }
    check_buckets(&m);
    assert_eq!(m.len(), KEYS as usize);
    // 4 bytes per listing, plus per-bucket overhead and Vec slack: far below one listing
    // per write (4 MB).
    assert!(
        peak < 400_000,
        "bucket memory peaked at {peak} bytes for {KEYS} keys"
    );
    // Every key still expires, at its own deadline and not before.
    let last = deadlines.iter().copied().max().unwrap();
    let first = deadlines.iter().copied().min().unwrap();
    while m.expire_step(first - 1, 1000).more {}
    assert_eq!(m.len(), KEYS as usize, "nothing expires early");
    while m.expire_step(last + 100, 1000).more {}
    assert!(m.is_empty());
    assert_eq!(m.with_deadline(), 0);
    assert_eq!(bucket_bytes(&m), 0);
}

#[test]
fn buckets_stay_exact_under_random_operations() {
    let mut m = TtlMap::new();
    let mut model: std::collections::HashMap<Vec<u8>, (Vec<u8>, u64)> = Default::default();
    let mut rng = Rng(3);
    let mut now = 10_000u64;
    for _ in 0..200_000 {
        let key = format!("k{}", rng.range(0, 300)).into_bytes();
        let deadline = match rng.range(0, 7) {
            0 | 1 => 0,
            // Past the 48 bits an entry holds: kept exactly in the side table.
            2 => FAR + rng.range(0, 3),
            _ => now + rng.range(1, 2000),
        };
        // Lazy expiry, as the map applies it on access.
        if model.get(&key).is_some_and(|(_, d)| *d != 0 && *d <= now) {
            model.remove(&key);
        }
        match rng.range(0, 7) {
            0 | 1 => {
                let val = vec![b'a'; rng.range(0, 80) as usize];
                m.insert(&key, v(&val), deadline, now);
                model.insert(key, (val, deadline));
            }
            2 | 3 => {
                let found = m.set_deadline(&key, deadline, now);
                assert_eq!(found, model.contains_key(&key));
                if let Some(e) = model.get_mut(&key) {
                    e.1 = deadline;
                }
            }
            4 => {
                let got = m.remove(&key, now).map(|(b, d)| (b.to_vec(), d));
                assert_eq!(got, model.remove(&key));
            }
            5 => {
                let data = vec![b'z'; rng.range(0, 40) as usize];
                let len = m.append(&key, &data, now);
                let e = model.entry(key).or_insert((Vec::new(), 0));
                e.0.extend_from_slice(&data);
                assert_eq!(len, e.0.len());
            }
            6 => {
                let at = rng.range(0, 60) as usize;
                let data = vec![b'q'; rng.range(1, 30) as usize];
                let len = m.setrange(&key, at, &data, now);
                let e = model.entry(key).or_insert((Vec::new(), 0));
                if e.0.len() < at + data.len() {
                    e.0.resize(at + data.len(), 0);
                }
                e.0[at..at + data.len()].copy_from_slice(&data);
                assert_eq!(len, e.0.len());
            }
            _ => {
                now += rng.range(0, 300);
                m.expire_step(now, 64);
                // Keys past their deadline are gone (actively or at their next access);
                // the others must all still be there, which later operations check.
                model.retain(|_, (_, d)| *d == 0 || *d > now);
                assert!(m.len() >= model.len(), "active expiry removed a live key");
            }
        }
        check_buckets(&m);
    }
    for (key, (val, deadline)) in &model {
        if *deadline != 0 && *deadline <= now {
            continue;
        }
        let got = m
            .get_with_deadline(key, now)
            .map(|(v, d)| (v.as_slice().to_vec(), d));
        assert_eq!(got, Some((val.clone(), *deadline)));
    }
}

#[test]
fn append_and_setrange_edit_in_place_and_keep_the_deadline() {
    let mut m = TtlMap::new();
    assert_eq!(m.append(b"a", b"hello", 1000), 5);
    assert_eq!(m.deadline(b"a", 1000), Some(0), "a new key has no deadline");
    m.set_deadline(b"a", 5000, 1000);
    assert_eq!(m.append(b"a", b" world", 1000), 11);
    assert_eq!(m.setrange(b"a", 6, b"W", 1000), 11);
    assert_eq!(m.get(b"a", 1000).unwrap().as_slice(), b"hello World");
    assert_eq!(m.deadline(b"a", 1000), Some(5000));
    check_buckets(&m);
    // SETRANGE on a missing key zero-pads; past the end it grows.
    assert_eq!(m.setrange(b"p", 3, b"x", 1000), 4);
    assert_eq!(m.get(b"p", 1000).unwrap().as_slice(), b"\0\0\0x");
    assert_eq!(m.setrange(b"p", 100, b"y", 1000), 101);
    let p = m.get(b"p", 1000).unwrap().to_bytes();
    assert_eq!((p[3], p[50], p[100]), (b'x', 0, b'y'));
    // An expired key is replaced, not appended to.
    assert_eq!(m.append(b"a", b"!", 5000), 1);
    assert_eq!(m.deadline(b"a", 5000), Some(0));
    check_buckets(&m);
}

#[test]
fn appends_are_amortised_and_never_change_a_value_handed_out() {
    let mut m = TtlMap::new();
    let chunk = [b'c'; 1024];
    m.insert(b"log", v(b"start"), 9_000_000, 0);
    let mut held = Vec::new();
    let mut moves = 0;
    let mut last = std::ptr::null();
    for i in 0..20_000usize {
        m.append(b"log", &chunk, 0);
        let value = m.get(b"log", 0).unwrap();
        if value.as_slice().as_ptr() != last {
            moves += 1;
            last = value.as_slice().as_ptr();
        }
        if i % 5000 == 0 {
            // A reader (a GET reply) keeps a handle across later appends.
            let b = value.to_bytes();
            held.push((b.clone(), b.to_vec()));
        }
    }
    // 20 MB in 1 KB appends: one move per doubling plus one copy per reader handle.
    assert!(moves < 40, "the value moved {moves} times");
    for (b, copy) in &held {
        assert_eq!(&b[..], &copy[..], "a handed-out value changed");
    }
    let value = m.get(b"log", 0).unwrap().to_bytes();
    assert_eq!(value.len(), 5 + 20_000 * 1024);
    assert!(value[5..].iter().all(|&c| c == b'c'));
    assert_eq!(m.deadline(b"log", 0), Some(9_000_000));
    check_buckets(&m);
}

#[test]
fn far_deadlines_are_exact_and_leave_no_trace() {
    let mut m = TtlMap::new();
    m.insert(b"a", v(b"1"), i64::MAX as u64, 1000);
    m.insert(b"b", v(b"2"), FAR, 1000);
    assert_eq!(m.deadline(b"a", 1000), Some(i64::MAX as u64));
    assert_eq!(m.get_with_deadline(b"b", 1000).map(|(_, d)| d), Some(FAR));
    check_buckets(&m);
    // Far deadlines pass only at (astronomically distant) times beyond them.
    assert!(m.contains(b"a", FAR + 5));
    assert!(!m.contains(b"b", FAR), "expires at its exact deadline");
    m.set_deadline(b"a", 5000, 1000);
    assert_eq!(m.deadline(b"a", 1000), Some(5000));
    assert!(m.far.is_empty());
    m.set_deadline(b"a", u64::MAX >> 1, 1000);
    assert_eq!(m.remove(b"a", 1000).map(|(_, d)| d), Some(u64::MAX >> 1));
    assert!(m.far.is_empty());
    check_buckets(&m);
}

#[test]
fn reads_stamp_the_entry_and_inspection_does_not() {
    let t = 1_700_000_000_000u64;
    let mut m = TtlMap::new();
    m.insert(b"k", v(b"v"), 0, t);
    let stamp = |m: &TtlMap, now| m.peek(b"k", now).map(|p| p.stamp);
    assert_eq!(stamp(&m, t), Some(access::lru_clock(t)));
    // Existence and TTL checks and peeks are not accesses (Redis's LOOKUP_NOTOUCH).
    assert!(m.contains(b"k", t + 10_000));
    assert_eq!(m.deadline(b"k", t + 10_000), Some(0));
    assert_eq!(stamp(&m, t + 10_000), Some(access::lru_clock(t)));
    m.get(b"k", t + 10_000);
    assert_eq!(stamp(&m, t), Some(access::lru_clock(t + 10_000)));
    m.insert(b"k", v(b"w"), 0, t + 20_000);
    assert_eq!(stamp(&m, t), Some(access::lru_clock(t + 20_000)));

    let lfu = Access::Lfu {
        log_factor: 10,
        decay_minutes: 1,
    };
    m.set_access(lfu);
    m.insert(b"n", v(b"v"), 0, t);
    let freq = |m: &TtlMap, key: &[u8]| access::lfu_counter(m.peek(key, t).unwrap().stamp, t, 1);
    assert_eq!(freq(&m, b"n"), access::LFU_INIT);
    m.get(b"n", t);
    assert_eq!(
        freq(&m, b"n"),
        access::LFU_INIT + 1,
        "the first hits always count"
    );
    m.insert(b"n", v(b"w"), 0, t);
    assert_eq!(
        freq(&m, b"n"),
        access::LFU_INIT + 1,
        "an overwrite keeps the counter"
    );
    for _ in 0..10_000 {
        m.get(b"n", t);
    }
    assert!(freq(&m, b"n") > 20);
    m.clear();
    assert_eq!(m.access(), lfu, "the mode survives FLUSHALL");
}

#[test]
fn memory_estimate_follows_keys_in_and_out() {
    let mut m = TtlMap::new();
    let empty = m.used_bytes();
    let big = Bytes::from(vec![1u8; 1000]);
    for i in 0..10_000u32 {
        let key = format!("key:{i:012}");
        if i % 2 == 0 {
            m.insert(key.as_bytes(), ValueRef::Shared(&big), 0, 0);
        } else {
            m.insert(key.as_bytes(), v(b"small"), u64::from(i) + 10_000, 0);
        }
    }
    // Half the keys own a 16-byte key block (32), a 1000-byte value block (1008) and a
    // refcount header (32).
    assert_eq!(m.heap_bytes(), 5_000 * (32 + 1008 + 32));
    assert!(m.used_bytes() > empty + 5_000 * 1072 + 10_000 * 64);
    m.append(b"key:000000000001", &[b'x'; 100], 0);
    check_buckets(&m);
    for i in 0..10_000u32 {
        m.remove(format!("key:{i:012}").as_bytes(), 0);
    }
    assert_eq!(m.heap_bytes(), 0);
    check_buckets(&m);
    let p = {
        m.insert(b"t", v(b"v"), 5000, 0);
        m.peek(b"t", 0).unwrap()
    };
    assert_eq!(p.deadline, 5000);
    assert!(p.bytes >= 64 + 4);
    assert!(m.peek(b"t", 5000).is_none(), "an expired key is absent");
}

#[test]
fn sampling_finds_live_keys_with_bounded_work() {
    let mut m = TtlMap::new();
    let mut rng = Rng(7);
    for i in 0..10_000u32 {
        let deadline = if i % 10 == 0 {
            100_000 + u64::from(i)
        } else {
            0
        };
        m.insert(format!("k{i}").as_bytes(), v(b"v"), deadline, 0);
    }
    let mut got = Vec::new();
    assert_eq!(
        m.sample(5, false, 0, || rng.next(), |s| got.push(s.key.to_vec())),
        5
    );
    let mut vol = Vec::new();
    m.sample(5, true, 0, || rng.next(), |s| vol.push(s.deadline));
    assert_eq!(vol.len(), 5);
    assert!(
        vol.iter().all(|&d| d != 0),
        "volatile samples have a deadline"
    );
    let mut soon = Vec::new();
    m.soonest(3, |s| soon.push(s.deadline));
    assert!(!soon.is_empty() && soon.iter().all(|&d| d < 100_100));
    // Leave one key with a deadline and one without in a now sparse arena: sampling still
    // finds them (walk, then the expiry buckets), never anything removed.
    for i in 1..9_999u32 {
        m.remove(format!("k{i}").as_bytes(), 0);
    }
    for _ in 0..50 {
        let mut keys = Vec::new();
        m.sample(5, false, 0, || rng.next(), |s| keys.push(s.key.to_vec()));
        assert!(keys.iter().all(|k| k == b"k0" || k == b"k9999"));
        let mut keys = Vec::new();
        assert!(m.sample(5, true, 0, || rng.next(), |s| keys.push(s.key.to_vec())) >= 1);
        assert!(keys.iter().all(|k| k == b"k0"), "{keys:?}");
    }
    // Expired keys are not sampled at random; only the soonest-expiring fallback offers
    // them (removing one frees memory as well).
    let mut keys = Vec::new();
    m.sample(
        5,
        false,
        200_000,
        || rng.next(),
        |s| keys.push(s.key.to_vec()),
    );
    assert!(keys.iter().all(|k| k == b"k9999"), "{keys:?}");
    let mut keys = Vec::new();
    m.sample(
        5,
        true,
        200_000,
        || rng.next(),
        |s| keys.push(s.key.to_vec()),
    );
    assert_eq!(keys, vec![b"k0".to_vec()]);
}

/// An owner's object for the tests: a growable list of numbers.
#[derive(Debug, PartialEq)]
struct Nums(Vec<u64>);

impl Object for Nums {
    fn heap_bytes(&self) -> usize {
        self.0.capacity() * 8
    }
}

#[test]
fn objects_live_beside_bytes_with_expiry_and_accounting() {
    let mut m: TtlMap<Nums> = TtlMap::with_objects();
    m.insert(b"s", v(b"text"), 0, 1000);
    assert!(!m.insert_object(b"o", Nums(vec![1]), 5000, 1000));
    assert!(matches!(m.get(b"o", 1000), Some(Stored::Object(Nums(n))) if n == &[1]));
    assert!(matches!(m.get(b"s", 1000), Some(Stored::Bytes(_))));
    assert_eq!(
        m.edit_object(b"s", 1000, |_| ()),
        None,
        "bytes are not objects"
    );
    let before = m.heap_bytes();
    m.edit_object(b"o", 1000, |o| o.0.extend(0..1000));
    assert!(
        m.heap_bytes() >= before + 999 * 8,
        "edits are accounted: {before} -> {}",
        m.heap_bytes()
    );
    assert_eq!(
        m.append(b"o", b"x", 1000),
        0,
        "byte edits leave objects alone"
    );
    assert_eq!(m.deadline(b"o", 1000), Some(5000));
    match m.remove(b"o", 1000) {
        Some((Owned::Object(o), 5000)) => assert_eq!(o.0.len(), 1001),
        other => panic!("{other:?}"),
    }
    assert!(m.heap_bytes() < before, "removal gives the memory back");
    m.insert_object(b"t", Nums(vec![7]), 2000, 1000);
    assert_eq!(
        m.expire_step(3000, 10).expired,
        1,
        "objects expire like bytes"
    );
    assert!(m.get(b"t", 3000).is_none());
    // Keys of any length, inline or boxed.
    for len in [0usize, 1, 22, 23, 38, 39, 200] {
        let key = vec![b'k'; len];
        m.insert_object(&key, Nums(vec![len as u64]), 0, 1000);
        assert!(
            matches!(m.get(&key, 1000), Some(Stored::Object(Nums(n))) if n == &[len as u64]),
            "key of {len} bytes"
        );
        let mut seen = Vec::new();
        m.scan(0, 1000, 1000, |k, _| seen.push(k.to_vec()));
        assert!(seen.contains(&key), "scan returns the key of {len} bytes");
        assert!(m.remove(&key, 1000).is_some());
    }
}

/// A value in the snapshot test's model.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Str(Vec<u8>),
    Nums(Vec<u64>),
}

impl Clone for Nums {
    fn clone(&self) -> Self {
        Nums(self.0.clone())
    }
}

/// A snapshot read in small steps while every kind of change (writes, edits, deadline
/// changes, removals, lazy and active expiry, slot reuse, FLUSHALL) goes on hands out
/// exactly the live keys of its start, each once, with their values and deadlines then.
#[test]
fn snapshot_hands_out_the_start_state_while_the_map_changes() {
    let mut m: TtlMap<Nums> = TtlMap::with_objects();
    let mut model: std::collections::HashMap<Vec<u8>, (Val, u64)> = Default::default();
    let mut rng = Rng(11);
    let mut now = 10_000u64;
    let mut snapshots = 0;
    while snapshots < 60 {
        // Some changes between snapshots, so they start from varied maps.
        let mut expected = None;
        let mut got: std::collections::HashMap<Vec<u8>, (Val, u64)> = Default::default();
        let mut finished = false;
        for step in 0..4000 {
            if step == 500 {
                model.retain(|_, (_, d)| *d == 0 || *d > now);
                expected = Some(model.clone());
                m.snapshot_begin(now);
                assert!(m.snapshot_running());
            }
            if expected.is_some() && !finished && rng.range(0, 3) == 0 {
                finished = m.snapshot_step(rng.range(1, 12) as usize, |k, v, d| {
                    let v = match v {
                        Stored::Bytes(b) => Val::Str(b.as_slice().to_vec()),
                        Stored::Object(o) => Val::Nums(o.0.clone()),
                    };
                    assert!(got.insert(k.to_vec(), (v, d)).is_none(), "{k:?} twice");
                });
            }
            let key = format!("k{}", rng.range(0, 200)).into_bytes();
            if model.get(&key).is_some_and(|(_, d)| *d != 0 && *d <= now) {
                model.remove(&key);
            }
            let deadline = match rng.range(0, 4) {
                0 | 1 => 0,
                _ => now + rng.range(1, 3000),
            };
            match rng.range(0, 20) {
                0..=3 => {
                    let val = vec![b'a' + rng.range(0, 26) as u8; rng.range(0, 70) as usize];
                    m.insert(&key, v(&val), deadline, now);
                    model.insert(key, (Val::Str(val), deadline));
                }
                4 | 5 => {
                    let n = vec![rng.range(0, 100); rng.range(1, 4) as usize];
                    m.insert_object(&key, Nums(n.clone()), deadline, now);
                    model.insert(key, (Val::Nums(n), deadline));
                }
                6 | 7 => {
                    let x = rng.range(0, 100);
                    let done = m.edit_object(&key, now, |o| o.0.push(x)).is_some();
                    if let Some((Val::Nums(n), _)) = model.get_mut(&key) {
                        n.push(x);
                        assert!(done);
                    }
                }
                8 => {
                    let x = rng.range(0, 100);
                    let r =
                        m.edit_or_create(&key, now, Some(&|| Nums(Vec::new())), |o| o.0.push(x));
                    match model.get_mut(&key) {
                        Some((Val::Nums(n), _)) => n.push(x),
                        Some(_) => assert_eq!(r, ObjectEdit::Bytes),
                        None => {
                            model.insert(key, (Val::Nums(vec![x]), 0));
                        }
                    }
                }
                9 | 10 => {
                    m.set_deadline(&key, deadline, now);
                    if let Some(e) = model.get_mut(&key) {
                        e.1 = deadline;
                    }
                }
                11 | 12 => {
                    m.remove(&key, now);
                    model.remove(&key);
                }
                13 => {
                    let data = vec![b'z'; rng.range(0, 30) as usize];
                    m.append(&key, &data, now);
                    match model.get_mut(&key) {
                        Some((Val::Str(s), _)) => s.extend_from_slice(&data),
                        Some(_) => {}
                        None => {
                            model.insert(key, (Val::Str(data), 0));
                        }
                    }
                }
                14 => {
                    // Reads (and their lazy expiry) change nothing the snapshot sees.
                    let _ = m.get(&key, now);
                }
                15 if rng.range(0, 40) == 0 => {
                    m.clear();
                    model.clear();
                }
                _ => {
                    now += rng.range(0, 200);
                    m.expire_step(now, 32);
                    model.retain(|_, (_, d)| *d == 0 || *d > now);
                }
            }
        }
        while !finished {
            finished = m.snapshot_step(7, |k, v, d| {
                let v = match v {
                    Stored::Bytes(b) => Val::Str(b.as_slice().to_vec()),
                    Stored::Object(o) => Val::Nums(o.0.clone()),
                };
                assert!(got.insert(k.to_vec(), (v, d)).is_none(), "{k:?} twice");
            });
        }
        assert!(!m.snapshot_running());
        let expected = expected.expect("a snapshot started");
        assert_eq!(got.len(), expected.len(), "snapshot {snapshots}");
        for (k, want) in &expected {
            assert_eq!(got.get(k), Some(want), "snapshot {snapshots}, key {k:?}");
        }
        snapshots += 1;
    }
}
