//! RESP2 / RESP3 for coreshard: an incremental, zero-copy request parser, an encoder for
//! every RESP type, and a reply parser (used by clients such as `coreshard-bench`).
//!
//! The request parser never copies argument bytes: it returns slices of the caller's
//! buffer. When a request is incomplete it returns `Ok(None)` and the caller keeps the
//! unconsumed tail until more bytes arrive; parsing is restarted from the start of the
//! request, which costs one header scan per argument (bulk payloads are skipped by length).

#![warn(missing_docs)]

mod encode;
mod error;
mod request;
mod value;

pub use encode::{Encoder, Protocol};
pub use error::ProtocolError;
pub use request::{parse_i64_strict, parse_request, split_inline_args, Limits};
pub use value::{parse_value, Value};
