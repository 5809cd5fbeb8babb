//! RESP2 / RESP3 for coreshard: an incremental, zero-copy request parser, an encoder for
//! every RESP type, and a reply parser (used by clients such as `coreshard-bench`).
//!
//! The request parser never copies argument bytes: it returns slices of the caller's
//! buffer. When a request is incomplete it returns `Ok(None)` and the caller keeps the
//! unconsumed tail until more bytes arrive. [`parse_request`] then starts again from the
//! first byte of the request; [`parse_request_resume`] continues where it stopped, using a
//! per-connection [`ParseState`], so a request that arrives in many pieces costs time
//! linear in its size (bulk payloads are skipped by length either way).
//!
//! ```
//! use coreshard_protocol::{parse_request, parse_request_resume, Encoder, Limits, ParseState, Protocol};
//!
//! let wire = b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n*1\r\n$4\r\nPI";
//! let mut args = Vec::new();
//! let used = parse_request(wire, &Limits::default(), &mut args).unwrap();
//! assert_eq!(used, Some(22));
//! assert_eq!(args, [&b"GET"[..], &b"key"[..]]);
//! // The second request is incomplete: nothing is consumed until the rest arrives.
//! assert_eq!(parse_request(&wire[22..], &Limits::default(), &mut args).unwrap(), None);
//!
//! // The same, resumable: the state remembers how far the incomplete request got.
//! let mut state = ParseState::default();
//! let mut tail = wire[22..].to_vec();
//! let mut args = Vec::new(); // arguments borrow the input: one vector per receive
//! assert_eq!(parse_request_resume(&tail, &Limits::default(), &mut state, &mut args), Ok(None));
//! tail.extend_from_slice(b"NG\r\n"); // more bytes of the same request arrive
//! let mut args = Vec::new();
//! assert_eq!(parse_request_resume(&tail, &Limits::default(), &mut state, &mut args), Ok(Some(14)));
//! assert_eq!(args, [&b"PING"[..]]);
//!
//! let mut out = Vec::new();
//! let mut enc = Encoder::new(&mut out, Protocol::Resp3);
//! enc.map(1);
//! enc.bulk(b"proto");
//! enc.int(3);
//! assert_eq!(out, b"%1\r\n$5\r\nproto\r\n:3\r\n");
//! ```

#![warn(missing_docs)]

mod encode;
mod error;
mod request;
mod value;

pub use encode::{format_double, Encoder, Protocol};
pub use error::ProtocolError;
pub use request::{
    parse_i64_strict, parse_request, parse_request_resume, request_size_hint, split_inline_args,
    Limits, ParseState,
};
pub use value::{parse_value, Value};

/// The README's code, compiled and run as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
