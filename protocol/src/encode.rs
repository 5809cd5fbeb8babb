//! Reply encoding for RESP2 and RESP3. RESP3-only types degrade to their RESP2 forms the
//! way Redis does it (maps become flat arrays, doubles and big numbers become bulk strings,
//! booleans become 1/0, null becomes `$-1`).

/// Which protocol a connection speaks (`HELLO 2` / `HELLO 3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Protocol {
    /// RESP2, the default for every new connection.
    #[default]
    Resp2,
    /// RESP3, after `HELLO 3`.
    Resp3,
}

/// Appends RESP frames to a byte vector.
#[derive(Debug)]
pub struct Encoder<'a> {
    out: &'a mut Vec<u8>,
    proto: Protocol,
}

impl<'a> Encoder<'a> {
    /// An encoder that appends to `out` in protocol `proto`.
    pub fn new(out: &'a mut Vec<u8>, proto: Protocol) -> Self {
        Encoder { out, proto }
    }

    /// The protocol this encoder writes.
    pub fn protocol(&self) -> Protocol {
        self.proto
    }

    fn header(&mut self, tag: u8, n: i64) {
        let mut buf = itoa::Buffer::new();
        self.out.push(tag);
        self.out.extend_from_slice(buf.format(n).as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// `+s` — `s` must not contain CR or LF.
    pub fn simple(&mut self, s: &str) {
        self.out.push(b'+');
        self.out.extend_from_slice(s.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// `-msg`; the message's own line breaks are replaced by spaces so the frame stays valid.
    pub fn error(&mut self, msg: &str) {
        self.out.push(b'-');
        self.out.extend(
            msg.bytes()
                .map(|c| if c == b'\r' || c == b'\n' { b' ' } else { c }),
        );
        self.out.extend_from_slice(b"\r\n");
    }

    /// `:n`
    pub fn int(&mut self, n: i64) {
        self.header(b':', n);
    }

    /// `$len\r\nbytes\r\n`
    pub fn bulk(&mut self, b: &[u8]) {
        self.header(b'$', b.len() as i64);
        self.out.extend_from_slice(b);
        self.out.extend_from_slice(b"\r\n");
    }

    /// Only the `$len\r\n` header of a bulk string; the caller sends the `len` bytes and
    /// the closing `\r\n` itself (e.g. a large value passed on without a copy).
    pub fn bulk_header(&mut self, len: usize) {
        self.header(b'$', len as i64);
    }

    /// A bulk string or null.
    pub fn opt_bulk(&mut self, b: Option<&[u8]>) {
        match b {
            Some(b) => self.bulk(b),
            None => self.null(),
        }
    }

    /// Null: `$-1` in RESP2, `_` in RESP3.
    pub fn null(&mut self) {
        match self.proto {
            Protocol::Resp2 => self.out.extend_from_slice(b"$-1\r\n"),
            Protocol::Resp3 => self.out.extend_from_slice(b"_\r\n"),
        }
    }

    /// Null array: `*-1` in RESP2, `_` in RESP3.
    pub fn null_array(&mut self) {
        match self.proto {
            Protocol::Resp2 => self.out.extend_from_slice(b"*-1\r\n"),
            Protocol::Resp3 => self.out.extend_from_slice(b"_\r\n"),
        }
    }

    /// Array header; `n` elements must follow.
    pub fn array(&mut self, n: usize) {
        self.header(b'*', n as i64);
    }

    /// Map header (`%n`; RESP2: array of `2n`); `n` key/value pairs must follow.
    pub fn map(&mut self, n: usize) {
        match self.proto {
            Protocol::Resp2 => self.header(b'*', 2 * n as i64),
            Protocol::Resp3 => self.header(b'%', n as i64),
        }
    }

    /// Set header (`~n`; RESP2: array); `n` elements must follow.
    pub fn set(&mut self, n: usize) {
        match self.proto {
            Protocol::Resp2 => self.header(b'*', n as i64),
            Protocol::Resp3 => self.header(b'~', n as i64),
        }
    }

    /// Push header (`>n`; RESP2: array); `n` elements must follow.
    pub fn push(&mut self, n: usize) {
        match self.proto {
            Protocol::Resp2 => self.header(b'*', n as i64),
            Protocol::Resp3 => self.header(b'>', n as i64),
        }
    }

    /// Attribute header (`|n`, RESP3 only; in RESP2 nothing is written and the caller must
    /// skip the `n` pairs, see [`Encoder::protocol`]).
    pub fn attribute(&mut self, n: usize) {
        if self.proto == Protocol::Resp3 {
            self.header(b'|', n as i64);
        }
    }

    /// Double (`,x`; RESP2: bulk string), formatted as Redis does (`inf`, `-inf`, `nan`).
    pub fn double(&mut self, x: f64) {
        let text = format_double(x);
        match self.proto {
            Protocol::Resp2 => self.bulk(text.as_bytes()),
            Protocol::Resp3 => {
                self.out.push(b',');
                self.out.extend_from_slice(text.as_bytes());
                self.out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// Boolean (`#t`/`#f`; RESP2: integer 1/0).
    pub fn boolean(&mut self, b: bool) {
        match self.proto {
            Protocol::Resp2 => self.int(i64::from(b)),
            Protocol::Resp3 => self
                .out
                .extend_from_slice(if b { b"#t\r\n" } else { b"#f\r\n" }),
        }
    }

    /// Big number (`(digits`; RESP2: bulk string). `digits` must be a decimal integer.
    pub fn big_number(&mut self, digits: &str) {
        match self.proto {
            Protocol::Resp2 => self.bulk(digits.as_bytes()),
            Protocol::Resp3 => {
                self.out.push(b'(');
                self.out.extend_from_slice(digits.as_bytes());
                self.out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// Verbatim string (`=len\r\nfmt:text`; RESP2: bulk string of `text`).
    pub fn verbatim(&mut self, format: &[u8; 3], text: &[u8]) {
        match self.proto {
            Protocol::Resp2 => self.bulk(text),
            Protocol::Resp3 => {
                self.header(b'=', text.len() as i64 + 4);
                self.out.extend_from_slice(format);
                self.out.push(b':');
                self.out.extend_from_slice(text);
                self.out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// Raw bytes that are already a complete RESP frame.
    pub fn raw(&mut self, frame: &[u8]) {
        self.out.extend_from_slice(frame);
    }
}

/// Redis's double formatting: shortest round-trip text, `inf`/`-inf`/`nan`.
/// A double as Redis 7.0 writes it (C's `%.17g`): 17 significant digits, trailing zeros
/// dropped, exponent form below 1e-4 or from 1e17 (`1.1` -> `1.1000000000000001`,
/// `1e20` -> `1e+20`), and `inf`, `-inf`, `nan`.
pub fn format_double(x: f64) -> String {
    if x.is_nan() {
        return "nan".to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    exact_short(x).unwrap_or_else(|| format_17g(x))
}

/// The common case fast (scores like 3, 1.5, 1700000000000): a value whose exact decimal
/// expansion has at most 17 significant digits, between 1e-4 and 1e17, is what `%.17g`
/// prints. `None` otherwise (then [`format_17g`] rounds, which is slow: an exact
/// big-number formatter).
fn exact_short(x: f64) -> Option<String> {
    let a = x.abs();
    if !(1e-4..1e17).contains(&a) {
        return None;
    }
    let bits = x.to_bits();
    let exp_bits = ((bits >> 52) & 0x7ff) as i32;
    if exp_bits == 0 {
        return None;
    }
    let mut m = (bits & ((1u64 << 52) - 1)) | (1u64 << 52);
    let mut e = exp_bits - 1075;
    let tz = m.trailing_zeros();
    m >>= tz;
    e += tz as i32;
    let mut out = String::with_capacity(24);
    if x < 0.0 {
        out.push('-');
    }
    if e >= 0 {
        // An integer below 1e17.
        out.push_str(&((m as u128) << e).to_string());
        return Some(out);
    }
    // x = m / 2^k = m * 5^k / 10^k, exactly; m is odd, so m * 5^k ends in no zero.
    let k = e.unsigned_abs();
    if k > 27 {
        return None;
    }
    let n = (m as u128) * 5u128.pow(k);
    if n >= 10u128.pow(17) {
        return None;
    }
    let digits = n.to_string();
    let k = k as usize;
    if digits.len() > k {
        let (int, frac) = digits.split_at(digits.len() - k);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', k - digits.len()));
        out.push_str(&digits);
    }
    Some(out)
}

/// `%.17g` by rounding to 17 significant digits (any finite, non-zero value).
fn format_17g(x: f64) -> String {
    // Round to 17 significant digits once; the exponent of that decides the form.
    let sci = format!("{x:.16e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..17).contains(&exp) {
        let decimals = (16 - exp) as usize;
        let fixed = format!("{x:.decimals$}");
        trim_fraction(&fixed).to_string()
    } else {
        let m = trim_fraction(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{m}e{sign}{:02}", exp.unsigned_abs())
    }
}

/// Drop trailing zeros of a decimal fraction, and the point if nothing is left after it.
fn trim_fraction(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(proto: Protocol, f: impl FnOnce(&mut Encoder)) -> String {
        let mut out = Vec::new();
        f(&mut Encoder::new(&mut out, proto));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_fast_path_agrees_with_rounding() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut fast = 0;
        for i in 0..200_000u64 {
            let r = next();
            let x = match i % 4 {
                // Scores as clients write them: integers, halves, quarters, cents.
                0 => (r % 2_000_000) as f64 - 1_000_000.0,
                1 => (r % 1_000_000) as f64 / 2f64.powi((r % 20) as i32),
                2 => (r % 100_000_000) as f64 / 100.0,
                _ => f64::from_bits(r),
            };
            if !x.is_finite() || x == 0.0 {
                continue;
            }
            if let Some(s) = exact_short(x) {
                fast += 1;
                assert_eq!(s, format_17g(x), "{x:e}");
            }
        }
        assert!(fast > 50_000, "{fast} values took the fast path");
    }

    #[test]
    fn doubles_print_like_redis_7_0() {
        for (x, want) in [
            (1.1, "1.1000000000000001"),
            (0.1, "0.10000000000000001"),
            (3.0, "3"),
            (1.5, "1.5"),
            (-2.25, "-2.25"),
            (1e20, "1e+20"),
            (1e17, "1e+17"),
            (1e16, "10000000000000000"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (1e-5, "1.0000000000000001e-05"),
            (2.5e-300, "2.5e-300"),
            (0.0, "0"),
            (-0.0, "-0"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::MAX, "1.7976931348623157e+308"),
        ] {
            assert_eq!(format_double(x), want, "{x:e}");
        }
    }

    #[test]
    fn resp2_forms() {
        use Protocol::Resp2 as P;
        assert_eq!(enc(P, |e| e.simple("OK")), "+OK\r\n");
        assert_eq!(enc(P, |e| e.error("ERR x\r\ny")), "-ERR x  y\r\n");
        assert_eq!(enc(P, |e| e.int(-5)), ":-5\r\n");
        assert_eq!(enc(P, |e| e.bulk(b"ab")), "$2\r\nab\r\n");
        assert_eq!(enc(P, |e| e.null()), "$-1\r\n");
        assert_eq!(enc(P, |e| e.null_array()), "*-1\r\n");
        assert_eq!(enc(P, |e| e.map(2)), "*4\r\n");
        assert_eq!(enc(P, |e| e.double(1.5)), "$3\r\n1.5\r\n");
        assert_eq!(enc(P, |e| e.boolean(true)), ":1\r\n");
        assert_eq!(enc(P, |e| e.verbatim(b"txt", b"hi")), "$2\r\nhi\r\n");
    }

    #[test]
    fn resp3_forms() {
        use Protocol::Resp3 as P;
        assert_eq!(enc(P, |e| e.null()), "_\r\n");
        assert_eq!(enc(P, |e| e.map(2)), "%2\r\n");
        assert_eq!(enc(P, |e| e.set(1)), "~1\r\n");
        assert_eq!(enc(P, |e| e.push(3)), ">3\r\n");
        assert_eq!(enc(P, |e| e.double(f64::INFINITY)), ",inf\r\n");
        assert_eq!(enc(P, |e| e.boolean(false)), "#f\r\n");
        assert_eq!(enc(P, |e| e.big_number("123")), "(123\r\n");
        assert_eq!(enc(P, |e| e.verbatim(b"txt", b"hi")), "=6\r\ntxt:hi\r\n");
        assert_eq!(enc(P, |e| e.attribute(1)), "|1\r\n");
    }
}
