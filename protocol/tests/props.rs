//! Property tests: no input makes the parsers panic, and encode → parse round-trips.

use bytes::Bytes;
use coreshard_protocol::{parse_request, parse_value, Encoder, Limits, Protocol, Value};
use proptest::prelude::*;

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        "[a-zA-Z0-9 ]{0,20}".prop_map(Value::Simple),
        "[a-zA-Z0-9 ]{0,20}".prop_map(Value::Error),
        any::<i64>().prop_map(Value::Integer),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(|b| Value::Bulk(Bytes::from(b))),
        Just(Value::Null),
        any::<bool>().prop_map(Value::Boolean),
        (-1e12f64..1e12).prop_map(Value::Double),
        "-?[1-9][0-9]{0,30}".prop_map(Value::BigNumber),
        proptest::collection::vec(any::<u8>(), 0..32)
            .prop_map(|b| Value::Verbatim(*b"txt", Bytes::from(b))),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Set),
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Push),
            proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Value::Map),
        ]
    })
}

proptest! {
    #[test]
    fn request_parser_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut args = Vec::new();
        let limits = Limits { max_bulk_len: 1 << 20, max_multibulk_len: 1 << 16, max_inline_len: 256 };
        let mut pos = 0;
        while pos < data.len() {
            match parse_request(&data[pos..], &limits, &mut args) {
                Ok(Some(n)) => { prop_assert!(n > 0); pos += n; }
                _ => break,
            }
        }
    }

    #[test]
    fn reply_parser_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_value(&data);
    }

    #[test]
    fn structured_requests_round_trip(args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..10), split in 0usize..400) {
        let mut wire = Vec::new();
        let mut enc = Encoder::new(&mut wire, Protocol::Resp2);
        enc.array(args.len());
        for a in &args { enc.bulk(a); }
        let mut parsed = Vec::new();
        let split = split.min(wire.len());
        if split < wire.len() {
            prop_assert_eq!(parse_request(&wire[..split], &Limits::default(), &mut parsed), Ok(None));
        }
        let n = parse_request(&wire, &Limits::default(), &mut parsed).unwrap();
        prop_assert_eq!(n, Some(wire.len()));
        let got: Vec<Vec<u8>> = parsed.iter().map(|a| a.to_vec()).collect();
        prop_assert_eq!(got, args);
    }

    #[test]
    fn resp3_values_round_trip(v in value()) {
        let wire = v.to_bytes(Protocol::Resp3);
        let (back, n) = parse_value(&wire).unwrap().unwrap();
        prop_assert_eq!(n, wire.len());
        prop_assert_eq!(back, v);
    }

    #[test]
    fn resp2_encoding_always_parses(v in value()) {
        let wire = v.to_bytes(Protocol::Resp2);
        let (_, n) = parse_value(&wire).unwrap().unwrap();
        prop_assert_eq!(n, wire.len());
    }
}
