use bytes::Bytes;

use super::*;

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
        m.remove(b"a", 1000).map(|(b, _)| b),
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
