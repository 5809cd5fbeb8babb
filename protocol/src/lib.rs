//! RESP2 / RESP3 for coreshard: an incremental, zero-copy request parser, an encoder for
//! every RESP type, and a reply parser (used by clients such as `coreshard-bench`).
//!
//! The request parser never copies argument bytes: it returns slices of the caller's
//! buffer. When a request is incomplete it returns `Ok(None)` and the caller keeps the
//! unconsumed tail until more bytes arrive; parsing is restarted from the start of the
//! request, which costs one header scan per argument (bulk payloads are skipped by length).
//!
//! ```
//! use coreshard_protocol::{parse_request, Encoder, Limits, Protocol};
//!
//! let wire = b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n*1\r\n$4\r\nPI";
//! let mut args = Vec::new();
//! let used = parse_request(wire, &Limits::default(), &mut args).unwrap();
//! assert_eq!(used, Some(22));
//! assert_eq!(args, [&b"GET"[..], &b"key"[..]]);
//! // The second request is incomplete: nothing is consumed until the rest arrives.
//! assert_eq!(parse_request(&wire[22..], &Limits::default(), &mut args).unwrap(), None);
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

pub use encode::{Encoder, Protocol};
pub use error::ProtocolError;
pub use request::{parse_i64_strict, parse_request, request_size_hint, split_inline_args, Limits};
pub use value::{parse_value, Value};
