//! `parse_request_resume` against `parse_request`: the same answer for every prefix of the
//! input however it is split, and work linear in the input size.

use std::borrow::Cow;

use coreshard_protocol::{
    parse_request, parse_request_resume, request_size_hint, Encoder, Limits, ParseState, Protocol,
    ProtocolError,
};
use proptest::prelude::*;

/// Arguments and bytes consumed of one complete request.
type Parsed = (Vec<Vec<u8>>, usize);
type Answer = Result<Option<Parsed>, ProtocolError>;

fn owned(r: Result<Option<usize>, ProtocolError>, args: &[Cow<'_, [u8]>]) -> Answer {
    r.map(|n| n.map(|n| (args.iter().map(|a| a.to_vec()).collect(), n)))
}

/// Feed `wire` to a simulated connection in pieces ending at `cuts`, parsing with
/// `parse_request_resume` the way a server does (the unconsumed tail is passed again with
/// new bytes appended). Every call is checked against `parse_request` on the same bytes,
/// and every `Ok(None)` against `request_size_hint`. Returns the complete requests in order
/// and the error that stopped the stream, if any.
fn feed(
    wire: &[u8],
    cuts: &[usize],
    limits: &Limits,
    state: &mut ParseState,
) -> Result<(Vec<Parsed>, Option<ProtocolError>), TestCaseError> {
    let mut ends: Vec<usize> = cuts.iter().map(|&c| c.min(wire.len())).collect();
    ends.push(wire.len());
    ends.sort_unstable();
    let mut done = Vec::new();
    let mut pos = 0;
    let mut args = Vec::new();
    let mut fresh = Vec::new();
    for end in ends {
        let received = &wire[..end];
        while pos < received.len() {
            let tail = &received[pos..];
            let got = parse_request_resume(tail, limits, state, &mut args);
            let got = owned(got, &args);
            let want = parse_request(tail, limits, &mut fresh);
            let want = owned(want, &fresh);
            prop_assert_eq!(&got, &want, "at {} of {} bytes", pos, end);
            match got {
                Ok(Some((a, n))) => {
                    prop_assert!(n > 0);
                    prop_assert_eq!(state.size_hint(), None);
                    done.push((a, n));
                    pos += n;
                }
                Ok(None) => {
                    prop_assert_eq!(state.size_hint(), request_size_hint(tail));
                    break;
                }
                Err(e) => {
                    prop_assert_eq!(state.size_hint(), None);
                    return Ok((done, Some(e)));
                }
            }
        }
    }
    Ok((done, None))
}

/// One valid request and what it parses to.
fn request() -> impl Strategy<Value = (Vec<u8>, Vec<Vec<u8>>)> {
    let bulk = prop_oneof![
        8 => proptest::collection::vec(any::<u8>(), 0..24),
        // Payloads that look like headers, and a few long ones.
        1 => Just(b"\r\n$3\r\n*1\r\n".to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 100..3000),
    ];
    let multibulk = proptest::collection::vec(bulk, 1..12).prop_map(|args| {
        let mut wire = Vec::new();
        let mut enc = Encoder::new(&mut wire, Protocol::Resp2);
        enc.array(args.len());
        for a in &args {
            enc.bulk(a);
        }
        (wire, args)
    });
    let inline = (
        proptest::collection::vec("[a-zA-Z0-9]{1,8}", 0..6),
        prop_oneof![Just("\r\n"), Just("\n")],
    )
        .prop_map(|(words, end)| {
            let wire = format!("{}{end}", words.join("  ")).into_bytes();
            (wire, words.into_iter().map(String::into_bytes).collect())
        });
    prop_oneof![
        6 => multibulk,
        2 => inline,
        1 => Just((b"*0\r\n".to_vec(), vec![])),
        1 => Just((b"*-1\r\n".to_vec(), vec![])),
    ]
}

/// Bytes that make requests, bad ones included: headers, numbers, line ends, quotes.
fn soup() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"*".to_vec()),
        Just(b"$".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"*2\r\n".to_vec()),
        Just(b"$3\r\nGET\r\n".to_vec()),
        Just(b"$-1\r\n".to_vec()),
        Just(b"$99\r\n".to_vec()),
        Just(b"*-3\r\n".to_vec()),
        Just(b"*9\r\n".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"'".to_vec()),
        Just(b" ".to_vec()),
        "[0-9]{1,3}".prop_map(String::into_bytes),
        "[a-z]{1,20}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 1..4),
    ];
    proptest::collection::vec(token, 0..40).prop_map(|t| t.concat())
}

fn cuts() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        proptest::collection::vec(0usize..200, 0..8),
        proptest::collection::vec(0usize..20_000, 0..40),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn split_valid_requests_parse_as_whole(reqs in proptest::collection::vec(request(), 1..8), cuts in cuts()) {
        let wire: Vec<u8> = reqs.iter().flat_map(|(w, _)| w.iter().copied()).collect();
        let mut state = ParseState::default();
        let (done, err) = feed(&wire, &cuts, &Limits::default(), &mut state)?;
        prop_assert_eq!(err, None);
        let want: Vec<_> = reqs.into_iter().map(|(w, a)| (a, w.len())).collect();
        prop_assert_eq!(done, want);
        prop_assert_eq!(state.size_hint(), None);
    }

    #[test]
    fn split_bad_input_fails_the_same(wire in soup(), cuts in cuts(), small in any::<bool>()) {
        let limits = if small {
            Limits { max_bulk_len: 16, max_multibulk_len: 4, max_inline_len: 12 }
        } else {
            Limits::default()
        };
        let mut state = ParseState::default();
        // `feed` compares every call, errors included, with `parse_request`.
        let (_, err) = feed(&wire, &cuts, &limits, &mut state)?;
        if err.is_some() {
            // The failed request left nothing behind: the next one parses on its own.
            let mut args = Vec::new();
            let r = parse_request_resume(b"*1\r\n$4\r\nPING\r\n", &limits, &mut state, &mut args);
            prop_assert_eq!(r, Ok(Some(14)));
            prop_assert_eq!(args, vec![Cow::Borrowed(&b"PING"[..])]);
        }
    }
}

/// Feed one request in `piece`-byte pieces; returns the bytes examined.
fn examined_feeding(wire: &[u8], piece: usize, limits: &Limits) -> (Answer, usize) {
    let mut state = ParseState::default();
    let mut args = Vec::new();
    let mut end = 0;
    loop {
        end = (end + piece).min(wire.len());
        let r = parse_request_resume(&wire[..end], limits, &mut state, &mut args);
        if !matches!(r, Ok(None)) || end == wire.len() {
            return (owned(r, &args), state.examined());
        }
    }
}

#[test]
fn big_request_in_small_pieces_is_linear() {
    // MSET with 100,000 pairs: 200,001 arguments, 4 MB.
    let mut args: Vec<Vec<u8>> = vec![b"MSET".to_vec()];
    for i in 0..100_000 {
        args.push(format!("key:{i:08}").into_bytes());
        args.push(format!("value:{i:08}").into_bytes());
    }
    let mut wire = Vec::new();
    let mut enc = Encoder::new(&mut wire, Protocol::Resp2);
    enc.array(args.len());
    for a in &args {
        enc.bulk(a);
    }
    // Large pieces first: a quadratic parser fails them quickly.
    for piece in [64 * 1024, 4096, 1000, 100, 7, 1] {
        let (answer, examined) = examined_feeding(&wire, piece, &Limits::default());
        assert_eq!(
            answer,
            Ok(Some((args.clone(), wire.len()))),
            "piece {piece}"
        );
        // Headers are searched once, plus one byte per call that stopped inside one;
        // payloads are skipped by length.
        assert!(
            examined <= 2 * wire.len(),
            "piece {piece}: {examined} bytes examined for {} bytes",
            wire.len()
        );
    }
}

#[test]
fn huge_announced_count_streamed_in_small_arguments_is_linear() {
    let mut wire = b"*2000000000\r\n".to_vec();
    for _ in 0..200_000 {
        wire.extend_from_slice(b"$1\r\nx\r\n");
    }
    for piece in [64 * 1024, 1000, 1] {
        let (answer, examined) = examined_feeding(&wire, piece, &Limits::default());
        assert_eq!(answer, Ok(None));
        assert!(examined <= 2 * wire.len(), "piece {piece}: {examined}");
    }
}

#[test]
fn long_lines_byte_by_byte_are_linear() {
    let limits = Limits::default();
    // An inline request as long as the limit allows, then one too long.
    let mut line = vec![b'a'; limits.max_inline_len - 2];
    line.extend_from_slice(b"\r\n");
    let (answer, examined) = examined_feeding(&line, 1, &limits);
    let want = Ok(Some((vec![line[..line.len() - 2].to_vec()], line.len())));
    assert!(answer == want, "a {} byte inline request", line.len());
    assert!(examined <= 2 * line.len(), "{examined}");
    let long = vec![b'a'; limits.max_inline_len + 100];
    let (answer, examined) = examined_feeding(&long, 1, &limits);
    assert_eq!(answer, Err(ProtocolError::InlineTooBig));
    assert!(examined <= 2 * long.len(), "{examined}");
    // `*` and `$` lines without an end, full of `\r`, until their limits.
    let mut star = b"*".to_vec();
    star.extend(std::iter::repeat_n(b'\r', limits.max_inline_len + 1));
    let (answer, examined) = examined_feeding(&star, 1, &limits);
    assert_eq!(answer, Err(ProtocolError::MultibulkCountTooBig));
    assert!(examined <= 2 * star.len(), "{examined}");
    let mut dollar = b"*1\r\n$".to_vec();
    dollar.extend(std::iter::repeat_n(b'1', limits.max_inline_len + 1));
    let (answer, examined) = examined_feeding(&dollar, 1, &limits);
    assert_eq!(answer, Err(ProtocolError::BulkCountTooBig));
    assert!(examined <= 2 * dollar.len(), "{examined}");
}

#[test]
fn size_hint_announces_a_big_value_from_its_header() {
    let mut state = ParseState::new();
    let mut wire = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n".to_vec();
    let header = wire.len();
    assert_eq!(state.size_hint(), None);
    // The arguments borrow the input; a new vector per call lets the input grow.
    let r = parse_request_resume(&wire[..2], &Limits::default(), &mut state, &mut Vec::new());
    assert_eq!((r, state.size_hint()), (Ok(None), None));
    wire.extend_from_slice(&[b'x'; 10]);
    let r = parse_request_resume(&wire, &Limits::default(), &mut state, &mut Vec::new());
    assert_eq!(r, Ok(None));
    assert_eq!(state.size_hint(), Some(header + 100_002));
    assert_eq!(request_size_hint(&wire), Some(header + 100_002));
    wire.resize(header + 100_000, b'x');
    wire.extend_from_slice(b"\r\n");
    let mut args = Vec::new();
    let r = parse_request_resume(&wire, &Limits::default(), &mut state, &mut args);
    assert_eq!(r, Ok(Some(wire.len())));
    assert_eq!(args.len(), 3);
    assert_eq!(state.size_hint(), None);
}

#[test]
fn shorter_input_than_last_time_restarts_instead_of_panicking() {
    let mut state = ParseState::new();
    let mut args = Vec::new();
    let wire = b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
    let r = parse_request_resume(&wire[..20], &Limits::default(), &mut state, &mut args);
    assert_eq!(r, Ok(None));
    // Contract broken: a different, shorter input. The stale state is dropped.
    let r = parse_request_resume(b"PING\r\n", &Limits::default(), &mut state, &mut args);
    assert_eq!(r, Ok(Some(6)));
    assert_eq!(args, vec![Cow::Borrowed(&b"PING"[..])]);
}
