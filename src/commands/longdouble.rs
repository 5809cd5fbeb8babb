//! Redis's `long double` on x86-64 (the x87 80-bit format: 64-bit mantissa, 15-bit
//! exponent, gradual underflow), emulated exactly for HINCRBYFLOAT: `strtold` as
//! `string2ld` uses it (correctly rounded, hex floats, `inf`), one correctly rounded
//! addition, and `%.17Lf` with trailing zeros removed (`ld2string`'s LD_STR_HUMAN). With
//! f64 instead, 0.1 + 0.2 would answer 0.30000000000000004 where Redis says 0.3, and
//! 1000.1 would not answer Redis's 1000.09999999999999998.
//! Used by INCRBYFLOAT and HINCRBYFLOAT.

use std::cmp::Ordering;

/// `string2ld` refuses arguments of `MAX_LONG_DOUBLE_CHARS` (5k) bytes or more.
const MAX_CHARS: usize = 5 * 1024;
/// Exponent of the lowest mantissa bit of the smallest subnormal.
const MIN_LSB: i64 = -16445;
/// Exponent of the lowest mantissa bit of the largest finite value.
const MAX_LSB: i64 = 16320;

/// A value: `mant * 2^exp` (`mant` 0 is zero, of either sign), or an infinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ld {
    Finite { neg: bool, mant: u64, exp: i32 },
    Inf { neg: bool },
}

impl Ld {
    pub const ZERO: Ld = Ld::Finite {
        neg: false,
        mant: 0,
        exp: 0,
    };
}

/// C's `isspace` in the C locale.
pub fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// A natural number, little-endian 64-bit limbs, no high zero limbs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Big(Vec<u64>);

impl Big {
    fn from_u128(v: u128) -> Big {
        let mut b = Big(vec![v as u64, (v >> 64) as u64]);
        b.trim();
        b
    }

    fn trim(&mut self) {
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
    }

    fn is_zero(&self) -> bool {
        self.0.is_empty()
    }

    fn bits(&self) -> u64 {
        match self.0.last() {
            None => 0,
            Some(&top) => (self.0.len() as u64 - 1) * 64 + 64 - u64::from(top.leading_zeros()),
        }
    }

    fn bit(&self, i: u64) -> bool {
        let w = (i / 64) as usize;
        w < self.0.len() && (self.0[w] >> (i % 64)) & 1 == 1
    }

    /// Whether any bit below `n` is set.
    fn any_below(&self, n: u64) -> bool {
        let w = (n / 64) as usize;
        let b = n % 64;
        self.0.iter().take(w).any(|&l| l != 0)
            || (b > 0 && w < self.0.len() && self.0[w] & ((1u64 << b) - 1) != 0)
    }

    fn mul_small(&mut self, m: u64) {
        let mut carry = 0u128;
        for limb in &mut self.0 {
            let p = u128::from(*limb) * u128::from(m) + carry;
            *limb = p as u64;
            carry = p >> 64;
        }
        if carry != 0 {
            self.0.push(carry as u64);
        }
        self.trim();
    }

    fn add_small(&mut self, a: u64) {
        let mut carry = a;
        for limb in &mut self.0 {
            if carry == 0 {
                return;
            }
            let (s, o) = limb.overflowing_add(carry);
            *limb = s;
            carry = u64::from(o);
        }
        if carry != 0 {
            self.0.push(carry);
        }
    }

    fn plus(&self, o: &Big) -> Big {
        let n = self.0.len().max(o.0.len());
        let mut out = Vec::with_capacity(n + 1);
        let mut carry = false;
        for i in 0..n {
            let x = self.0.get(i).copied().unwrap_or(0);
            let y = o.0.get(i).copied().unwrap_or(0);
            let (s1, c1) = x.overflowing_add(y);
            let (s2, c2) = s1.overflowing_add(u64::from(carry));
            out.push(s2);
            carry = c1 || c2;
        }
        if carry {
            out.push(1);
        }
        Big(out)
    }

    /// `self -= o`, where `self >= o`.
    fn sub_assign(&mut self, o: &Big) {
        let mut borrow = false;
        for i in 0..self.0.len() {
            let y = o.0.get(i).copied().unwrap_or(0);
            let (d1, b1) = self.0[i].overflowing_sub(y);
            let (d2, b2) = d1.overflowing_sub(u64::from(borrow));
            self.0[i] = d2;
            borrow = b1 || b2;
        }
        self.trim();
    }

    fn compare(&self, o: &Big) -> Ordering {
        self.0
            .len()
            .cmp(&o.0.len())
            .then_with(|| self.0.iter().rev().cmp(o.0.iter().rev()))
    }

    fn shl_bits(&self, n: u64) -> Big {
        if self.is_zero() {
            return Big::default();
        }
        let bits = n % 64;
        let mut out = vec![0u64; (n / 64) as usize];
        out.reserve(self.0.len() + 1);
        if bits == 0 {
            out.extend_from_slice(&self.0);
        } else {
            let mut carry = 0;
            for &l in &self.0 {
                out.push((l << bits) | carry);
                carry = l >> (64 - bits);
            }
            if carry != 0 {
                out.push(carry);
            }
        }
        Big(out)
    }

    fn shr_bits(&self, n: u64) -> Big {
        let words = (n / 64) as usize;
        if words >= self.0.len() {
            return Big::default();
        }
        let bits = n % 64;
        let src = &self.0[words..];
        let mut out = Vec::with_capacity(src.len());
        for i in 0..src.len() {
            let hi = if bits == 0 || i + 1 >= src.len() {
                0
            } else {
                src[i + 1] << (64 - bits)
            };
            out.push((src[i] >> bits) | hi);
        }
        let mut b = Big(out);
        b.trim();
        b
    }

    /// The low 64 bits.
    fn low_u64(&self) -> u64 {
        self.0.first().copied().unwrap_or(0)
    }

    /// `base^e` for a small base.
    fn pow(base: u64, mut e: u64) -> Big {
        let (mut chunk, mut chunk_pow) = (1u64, base);
        while let Some(p) = chunk_pow.checked_mul(base) {
            chunk += 1;
            chunk_pow = p;
        }
        let mut b = Big::from_u128(1);
        while e >= chunk {
            b.mul_small(chunk_pow);
            e -= chunk;
        }
        for _ in 0..e {
            b.mul_small(base);
        }
        b
    }

    /// Divide by `d`, returning the remainder.
    fn divmod_small(&mut self, d: u64) -> u64 {
        let mut rem = 0u128;
        for limb in self.0.iter_mut().rev() {
            let cur = (rem << 64) | u128::from(*limb);
            *limb = (cur / u128::from(d)) as u64;
            rem = cur % u128::from(d);
        }
        self.trim();
        rem as u64
    }

    fn to_decimal(&self) -> String {
        const CHUNK: u64 = 10_000_000_000_000_000_000;
        let mut parts = Vec::new();
        let mut x = self.clone();
        while !x.is_zero() {
            parts.push(x.divmod_small(CHUNK));
        }
        let mut s = parts.pop().unwrap_or(0).to_string();
        for p in parts.iter().rev() {
            s.push_str(&format!("{p:019}"));
        }
        s
    }
}

/// `num / den * 2^p2` (num > 0) rounded to nearest-even in the 80-bit format.
/// Overflow gives an infinity; underflow a zero.
fn round(num: &Big, den: &Big, p2: i64, neg: bool) -> Ld {
    let s = 66 - (num.bits() as i64 - den.bits() as i64);
    let (mut r, d) = if s >= 0 {
        (num.shl_bits(s as u64), den.clone())
    } else {
        (num.clone(), den.shl_bits(s.unsigned_abs()))
    };
    // 2^65 <= r / d < 2^67: the quotient has 66 or 67 bits.
    let mut q: u128 = 0;
    for i in (0..=67u64).rev() {
        let t = d.shl_bits(i);
        if r.compare(&t) != Ordering::Less {
            r.sub_assign(&t);
            q |= 1 << i;
        }
    }
    let sticky = !r.is_zero();
    let qbits = 128 - i64::from(q.leading_zeros());
    let mut extra = qbits - 64;
    let mut lsb = p2 - s + extra;
    if lsb < MIN_LSB {
        extra += MIN_LSB - lsb;
        lsb = MIN_LSB;
    }
    let mut m: u128 = if extra >= 128 { 0 } else { q >> extra };
    let half = extra <= 128 && (q >> (extra - 1)) & 1 == 1;
    let rest = sticky
        || if extra > 128 {
            q != 0
        } else {
            q & ((1u128 << (extra - 1)) - 1) != 0
        };
    if half && (rest || m & 1 == 1) {
        m += 1;
    }
    if m >> 64 != 0 {
        m >>= 1;
        lsb += 1;
    }
    if lsb > MAX_LSB {
        return Ld::Inf { neg };
    }
    Ld::Finite {
        neg,
        mant: m as u64,
        exp: lsb as i32,
    }
}

/// The parsed number, or `None` when `strtold` overflowed or underflowed to zero.
fn checked(v: Ld) -> Option<Ld> {
    match v {
        Ld::Finite { mant: 0, .. } | Ld::Inf { .. } => None,
        v => Some(v),
    }
}

/// `string2ld`: `None` when Redis refuses the text (empty, too long, leading space,
/// trailing garbage, NaN, out of range). `inf`/`infinity` parse as infinities.
pub fn parse(s: &[u8]) -> Option<Ld> {
    if s.is_empty() || s.len() >= MAX_CHARS {
        return None;
    }
    // strtold stops at a NUL, and Redis 7.0 refuses what it did not read to the end
    // (INCRBYFLOAT k "1\0" is "not a valid float" there).
    if s.contains(&0) {
        return None;
    }
    let Some(&first) = s.first() else {
        return Some(Ld::ZERO);
    };
    if is_space(first) {
        return None;
    }
    let (neg, body) = match first {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if body.eq_ignore_ascii_case(b"inf") || body.eq_ignore_ascii_case(b"infinity") {
        return Some(Ld::Inf { neg });
    }
    if body.len() >= 2 && body[0] == b'0' && body[1] | 0x20 == b'x' {
        return parse_hex(&body[2..], neg);
    }
    parse_dec(body, neg)
}

/// An exponent: optional sign and at least one digit, the rest of the text; saturated.
fn exponent(b: &[u8]) -> Option<i64> {
    let (neg, digits) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        Some(b'+') => (false, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = digits.iter().fold(0i64, |v, &c| {
        (v * 10 + i64::from(c - b'0')).min(1_000_000_000)
    });
    Some(if neg { -v } else { v })
}

fn parse_dec(body: &[u8], neg: bool) -> Option<Ld> {
    let mut digits: Vec<u8> = Vec::new();
    let (mut any, mut dot, mut frac) = (false, false, 0i64);
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        if c.is_ascii_digit() {
            any = true;
            if !(digits.is_empty() && c == b'0') {
                digits.push(c - b'0');
            }
            if dot {
                frac += 1;
            }
        } else if c == b'.' && !dot {
            dot = true;
        } else {
            break;
        }
        i += 1;
    }
    if !any {
        return None;
    }
    let mut e10 = 0;
    if i < body.len() {
        if body[i] | 0x20 != b'e' {
            return None;
        }
        e10 = exponent(&body[i + 1..])?;
    }
    e10 -= frac;
    while digits.last() == Some(&0) {
        digits.pop();
        e10 += 1;
    }
    if digits.is_empty() {
        return Some(Ld::Finite {
            neg,
            mant: 0,
            exp: 0,
        });
    }
    let nd = digits.len() as i64;
    // |x| >= 10^(nd-1+e10) and < 10^(nd+e10); the format spans about 3.6e-4951 to
    // 1.19e4932.
    if nd - 1 + e10 > 4940 || nd + e10 < -4960 {
        return None;
    }
    let mut d = Big::default();
    for chunk in digits.chunks(19) {
        let mut v = 0u64;
        for &c in chunk {
            v = v * 10 + u64::from(c);
        }
        d.mul_small(10u64.pow(chunk.len() as u32));
        d.add_small(v);
    }
    // d * 10^e10 = d * 5^e10 * 2^e10.
    let v = if e10 >= 0 {
        let mut num = Big::pow(5, e10 as u64);
        num = mul(&num, &d);
        round(&num, &Big::from_u128(1), e10, neg)
    } else {
        round(&d, &Big::pow(5, e10.unsigned_abs()), e10, neg)
    };
    checked(v)
}

fn parse_hex(body: &[u8], neg: bool) -> Option<Ld> {
    let mut h = Big::default();
    let (mut any, mut dot, mut frac) = (false, false, 0i64);
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        if let Some(v) = (c as char).to_digit(16) {
            any = true;
            if !h.is_zero() || v != 0 {
                h.mul_small(16);
                h.add_small(u64::from(v));
                if dot {
                    frac += 4;
                }
            } else if dot {
                frac += 4;
            }
        } else if c == b'.' && !dot {
            dot = true;
        } else {
            break;
        }
        i += 1;
    }
    if !any {
        return None;
    }
    let mut p2 = 0;
    if i < body.len() {
        if body[i] | 0x20 != b'p' {
            return None;
        }
        p2 = exponent(&body[i + 1..])?;
    }
    p2 -= frac;
    if h.is_zero() {
        return Some(Ld::Finite {
            neg,
            mant: 0,
            exp: 0,
        });
    }
    let hb = h.bits() as i64;
    if hb - 1 + p2 > 16400 || hb + p2 < -16500 {
        return None;
    }
    checked(round(&h, &Big::from_u128(1), p2, neg))
}

/// Schoolbook product.
fn mul(a: &Big, b: &Big) -> Big {
    let mut out = vec![0u64; a.0.len() + b.0.len()];
    for (i, &x) in a.0.iter().enumerate() {
        let mut carry = 0u128;
        for (j, &y) in b.0.iter().enumerate() {
            let cur = u128::from(out[i + j]) + u128::from(x) * u128::from(y) + carry;
            out[i + j] = cur as u64;
            carry = cur >> 64;
        }
        let mut k = i + b.0.len();
        while carry != 0 {
            let cur = u128::from(out[k]) + carry;
            out[k] = cur as u64;
            carry = cur >> 64;
            k += 1;
        }
    }
    let mut r = Big(out);
    r.trim();
    r
}

/// `a + b`, correctly rounded (an exact zero sum is +0, as in round-to-nearest).
pub fn add(a: Ld, b: Ld) -> Ld {
    let (
        Ld::Finite {
            neg: an,
            mant: am,
            exp: ae,
        },
        Ld::Finite {
            neg: bn,
            mant: bm,
            exp: be,
        },
    ) = (a, b)
    else {
        return match (a, b) {
            (Ld::Inf { neg }, _) | (_, Ld::Inf { neg }) => Ld::Inf { neg },
            _ => Ld::ZERO,
        };
    };
    if am == 0 && bm == 0 {
        return Ld::Finite {
            neg: an && bn,
            mant: 0,
            exp: 0,
        };
    }
    if am == 0 {
        return b;
    }
    if bm == 0 {
        return a;
    }
    let emin = i64::from(ae.min(be));
    let x = Big::from_u128(u128::from(am)).shl_bits((i64::from(ae) - emin) as u64);
    let y = Big::from_u128(u128::from(bm)).shl_bits((i64::from(be) - emin) as u64);
    let (sum, neg) = if an == bn {
        (x.plus(&y), an)
    } else {
        match x.compare(&y) {
            Ordering::Equal => return Ld::ZERO,
            Ordering::Greater => {
                let mut d = x;
                d.sub_assign(&y);
                (d, an)
            }
            Ordering::Less => {
                let mut d = y;
                d.sub_assign(&x);
                (d, bn)
            }
        }
    };
    round(&sum, &Big::from_u128(1), emin, neg)
}

/// `(long long) ceill(v * 1000.0L)` on x86-64, as Redis turns a timeout in seconds into
/// milliseconds: the product rounded to 64 significant bits (ties to even), rounded up to
/// an integer, and `i64::MIN` (the x87 "integer indefinite") for an infinity or anything
/// of 2^63 or more in magnitude.
pub fn ceil_millis(v: Ld) -> i64 {
    let (neg, mant, mut exp) = match v {
        Ld::Finite { neg, mant, exp } => (neg, mant, i64::from(exp)),
        Ld::Inf { .. } => return i64::MIN,
    };
    let mut p = u128::from(mant) * 1000;
    if p == 0 {
        return 0;
    }
    // Round to 64 significant bits (the 80-bit format's mantissa).
    let bits = 128 - i64::from(p.leading_zeros());
    if bits > 64 {
        let shift = (bits - 64) as u32;
        let rest = p & ((1u128 << shift) - 1);
        let half = 1u128 << (shift - 1);
        p >>= shift;
        exp += i64::from(shift);
        if rest > half || (rest == half && p & 1 == 1) {
            p += 1;
        }
    }
    let magnitude: u128 = if exp >= 0 {
        if exp >= 64 || (p << exp) >> exp != p {
            return i64::MIN;
        }
        p << exp
    } else {
        let k = exp.unsigned_abs();
        let (whole, fraction) = if k >= 128 {
            (0, true)
        } else {
            (p >> k, p & ((1u128 << k) - 1) != 0)
        };
        // Up for a positive fraction; a negative one truncates toward zero, which is up.
        whole + u128::from(fraction && !neg)
    };
    if magnitude >= 1u128 << 63 {
        return i64::MIN;
    }
    if neg {
        -(magnitude as i64)
    } else {
        magnitude as i64
    }
}

/// `ld2string(.., LD_STR_HUMAN)`: `%.17Lf` (exact, ties to even), trailing zeros and
/// a bare point removed, `-0` as `0`. Infinities (never formatted by callers) as `inf`.
pub fn format_human(v: Ld) -> String {
    let (neg, mant, exp) = match v {
        Ld::Finite { neg, mant, exp } => (neg, mant, i64::from(exp)),
        Ld::Inf { neg } => return if neg { "-inf" } else { "inf" }.to_string(),
    };
    let m = Big::from_u128(u128::from(mant));
    let mut s = String::new();
    if exp >= 0 {
        s.push_str(&m.shl_bits(exp as u64).to_decimal());
    } else {
        let k = exp.unsigned_abs();
        let mut int_part: u128 = if k >= 64 { 0 } else { u128::from(mant >> k) };
        let frac = if k >= 64 {
            m
        } else {
            Big::from_u128(u128::from(mant & ((1u64 << k) - 1)))
        };
        let mut t = frac;
        t.mul_small(100_000_000_000_000_000); // 10^17
        let mut digits = t.shr_bits(k).low_u64();
        let half = t.bit(k - 1);
        if half && (t.any_below(k - 1) || digits & 1 == 1) {
            digits += 1;
            if digits == 100_000_000_000_000_000 {
                digits = 0;
                int_part += 1;
            }
        }
        s.push_str(&int_part.to_string());
        let fraction = format!("{digits:017}");
        let fraction = fraction.trim_end_matches('0');
        if !fraction.is_empty() {
            s.push('.');
            s.push_str(fraction);
        }
    }
    if neg && s != "0" {
        s.insert(0, '-');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_turn_into_milliseconds_as_in_redis() {
        let ms = |s: &str| parse(s.as_bytes()).map(ceil_millis);
        assert_eq!(ms("1.5"), Some(1500));
        assert_eq!(ms("0.1"), Some(100), "the product is rounded before ceil");
        assert_eq!(ms("0.0001"), Some(1));
        assert_eq!(ms("1e-400"), Some(1), "a long double, not 0 (forever)");
        assert_eq!(ms("-0.0001"), Some(0));
        assert_eq!(ms("-1"), Some(-1000));
        assert_eq!(ms("0x10"), Some(16000));
        assert_eq!(ms("9223372036854775"), Some(9_223_372_036_854_775_000));
        for huge in ["inf", "-inf", "1e16", "1e300", "9223372036854775807"] {
            assert_eq!(ms(huge), Some(i64::MIN), "{huge}");
        }
        assert_eq!(ms("nan"), None);
        assert_eq!(ms(" 1"), None);
    }

    fn incr(cur: &str, by: &str) -> Option<String> {
        let a = parse(cur.as_bytes())?;
        let b = parse(by.as_bytes())?;
        match add(a, b) {
            Ld::Inf { .. } => None,
            v => Some(format_human(v)),
        }
    }

    #[test]
    fn sums_match_redis_long_double() {
        // Replies of redis-server 7.0 (x86-64) to HINCRBYFLOAT on a field holding `cur`.
        let cases = [
            ("0", "0.1", "0.1"),
            ("0.1", "0.2", "0.3"),
            ("0", "1000.1", "1000.09999999999999998"),
            ("0", "2.5e-18", "0"),
            ("0", "0x10", "16"),
            ("16", "3.0000000000000000001", "19"),
            ("10.50", "0.1", "10.6"),
            ("5.0e3", "2.0e2", "5200"),
            (
                "1",
                "1e70",
                "10000000000000000000222479489586148259025995410601157579323600873193472",
            ),
            ("0", "-0", "0"),
            ("-1e-30", "0", "0"),
            ("3", "-3", "0"),
            ("0", "0.000003814697265625", "0.00000381469726562"),
            ("0", "0.000011444091796875", "0.00001144409179688"),
            ("0", "1.5", "1.5"),
            ("0", "-1.5", "-1.5"),
            ("0", ".5", "0.5"),
            ("0", "5.", "5"),
            ("0", "0x.8p1", "1"),
            ("0", "1e-4950", "0"),
        ];
        for (cur, by, want) in cases {
            assert_eq!(incr(cur, by).as_deref(), Some(want), "{cur} + {by}");
        }
    }

    #[test]
    fn parse_refuses_like_string2ld() {
        for bad in [
            "", " 1", "1 ", "abc", "nan", "-nan", "1e", "1e+", "0x", "0x1p", ".", "e5", "1e5000",
            "-1e5000", "1e-5000", "--1", "1.2.3", "0xg",
        ] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad:?}");
        }
        assert_eq!(parse(b"inf"), Some(Ld::Inf { neg: false }));
        assert_eq!(parse(b"-Infinity"), Some(Ld::Inf { neg: true }));
        assert_eq!(parse(&[b'7'; MAX_CHARS]), None);
        assert!(parse(&[b'7'; MAX_CHARS - 1]).is_none(), "overflows");
        for subnormal in ["1e-4940", "3.7e-4951", "-4e-4951"] {
            let v = parse(subnormal.as_bytes());
            assert!(v.is_some_and(|v| v != Ld::ZERO), "{subnormal}");
        }
        assert_eq!(parse(b"1e-4952"), None, "underflows to zero");
        let mut long = vec![b'0'; MAX_CHARS - 1];
        long[1] = b'.';
        long[MAX_CHARS - 2] = b'1';
        assert_eq!(parse(&long), None, "underflows to zero");
        long[MAX_CHARS - 2] = b'0';
        assert_eq!(parse(&long), Some(Ld::ZERO));
        assert_eq!(parse(b"1\0junk"), None);
        assert_eq!(parse(b"1\0"), None);
        assert_eq!(format_human(parse(b"0e999999999999").unwrap()), "0");
    }

    #[test]
    fn extremes_round_trip() {
        let max = Ld::Finite {
            neg: false,
            mant: u64::MAX,
            exp: MAX_LSB as i32,
        };
        let text = format_human(max);
        assert_eq!(text.len(), 4933);
        assert_eq!(parse(text.as_bytes()), Some(max));
        assert_eq!(add(max, max), Ld::Inf { neg: false });
        let tiny = Ld::Finite {
            neg: false,
            mant: 1,
            exp: MIN_LSB as i32,
        };
        assert_eq!(format_human(tiny), "0");
        assert_eq!(
            add(tiny, tiny),
            Ld::Finite {
                neg: false,
                mant: 2,
                exp: MIN_LSB as i32
            }
        );
    }
}
