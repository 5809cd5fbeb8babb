//! `cargo +nightly fuzz run parse_request` (from protocol/): the request and reply parsers
//! must never panic, and a consumed request must always make progress.
#![no_main]

use coreshard_protocol::{parse_request, parse_value, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_bulk_len: 1 << 20, max_multibulk_len: 1 << 16, max_inline_len: 4096 };
    let mut args = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        match parse_request(&data[pos..], &limits, &mut args) {
            Ok(Some(n)) => {
                assert!(n > 0 && pos + n <= data.len());
                pos += n;
            }
            _ => break,
        }
    }
    let _ = parse_value(data);
});
