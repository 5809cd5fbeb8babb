//! The libraries Redis gives scripts besides Lua's own: `cjson` and `bit` (LuaBitOp),
//! with their Redis-bundled behaviour (cjson's number format `%.14g`, `/` escaped, empty
//! tables as objects, nesting limit 1000; LuaBitOp's 32-bit wrap-around).

use mlua::{LightUserData, Lua, Table, Value, Variadic};

/// cjson's nesting limit, both ways.
const MAX_NESTING: usize = 1000;

fn err(msg: impl Into<String>) -> mlua::Error {
    mlua::Error::RuntimeError(msg.into())
}

/// cjson's own errors raised as a C library raises them (`luaL_error`: the caller's
/// position first; a pcall gets the bare message).
fn positioned(lua: &Lua, e: mlua::Error) -> mlua::Error {
    match e {
        mlua::Error::RuntimeError(m) => super::args::error(lua, m),
        other => other,
    }
}

/// cjson.null: a NULL light userdata, as cjson has it.
fn null() -> Value {
    Value::LightUserData(LightUserData(std::ptr::null_mut()))
}

/// Install `cjson`, `bit`, `cmsgpack` and `struct` as globals.
pub fn install(lua: &Lua) -> mlua::Result<()> {
    let cjson = lua.create_table()?;
    cjson.raw_set(
        "encode",
        lua.create_function(|lua, v: Value| {
            let mut out = Vec::new();
            encode(&v, &mut out, 0).map_err(|e| positioned(lua, e))?;
            lua.create_string(&out)
        })?,
    )?;
    cjson.raw_set(
        "decode",
        lua.create_function(|lua, s: mlua::LuaString| {
            let bytes = s.as_bytes();
            let mut p = Parser {
                s: &bytes,
                i: 0,
                lua,
            };
            p.ws();
            let v = p.value(0).map_err(|e| positioned(lua, e))?;
            p.ws();
            if p.i < p.s.len() {
                return Err(positioned(lua, p.fail("the end")));
            }
            Ok(v)
        })?,
    )?;
    cjson.raw_set("null", null())?;
    lua.globals().raw_set("cjson", cjson)?;

    let bit = lua.create_table()?;
    bit.raw_set("tobit", lua.create_function(|_, x: f64| Ok(tobit(x)))?)?;
    bit.raw_set(
        "tohex",
        lua.create_function(|_, (x, n): (f64, Option<f64>)| Ok(tohex(tobit(x), n.map(tobit))))?,
    )?;
    bit.raw_set("bnot", lua.create_function(|_, x: f64| Ok(!tobit(x)))?)?;
    bit.raw_set(
        "bswap",
        lua.create_function(|_, x: f64| Ok(tobit(x).swap_bytes()))?,
    )?;
    bit.raw_set(
        "band",
        lua.create_function(|_, xs: Variadic<f64>| Ok(fold(&xs, -1, |a, b| a & b)))?,
    )?;
    bit.raw_set(
        "bor",
        lua.create_function(|_, xs: Variadic<f64>| Ok(fold(&xs, 0, |a, b| a | b)))?,
    )?;
    bit.raw_set(
        "bxor",
        lua.create_function(|_, xs: Variadic<f64>| Ok(fold(&xs, 0, |a, b| a ^ b)))?,
    )?;
    let shift = |f: fn(i32, u32) -> i32| {
        move |_: &Lua, (x, n): (f64, f64)| Ok(f(tobit(x), (tobit(n) & 31) as u32))
    };
    bit.raw_set(
        "lshift",
        lua.create_function(shift(|x, n| x.wrapping_shl(n)))?,
    )?;
    bit.raw_set(
        "rshift",
        lua.create_function(shift(|x, n| ((x as u32) >> n) as i32))?,
    )?;
    bit.raw_set("arshift", lua.create_function(shift(|x, n| x >> n))?)?;
    bit.raw_set(
        "rol",
        lua.create_function(shift(|x, n| (x as u32).rotate_left(n) as i32))?,
    )?;
    bit.raw_set(
        "ror",
        lua.create_function(shift(|x, n| (x as u32).rotate_right(n) as i32))?,
    )?;
    lua.globals().raw_set("bit", bit)?;
    super::msgpack::install(lua)?;
    super::lstruct::install(lua)?;
    Ok(())
}

/// LuaBitOp's number → 32-bit conversion: round to nearest (ties to even), wrap modulo
/// 2^32.
fn tobit(x: f64) -> i32 {
    if !x.is_finite() {
        return 0;
    }
    let r = x.round_ties_even().rem_euclid(4_294_967_296.0);
    r as u32 as i32
}

fn fold(xs: &[f64], start: i32, f: fn(i32, i32) -> i32) -> i32 {
    xs.iter().fold(start, |a, &x| f(a, tobit(x)))
}

fn tohex(x: i32, n: Option<i32>) -> String {
    let n = n.unwrap_or(8);
    let upper = n < 0;
    let width = n.unsigned_abs().min(8) as usize;
    let full = if upper {
        format!("{:08X}", x as u32)
    } else {
        format!("{:08x}", x as u32)
    };
    full[8 - width..].to_string()
}

/// `%.14g`, as cjson formats numbers.
fn format_14g(x: f64) -> String {
    if x == x.trunc() && x.abs() < 1e14 {
        return format!("{}", x as i64);
    }
    let exp = x.abs().log10().floor() as i32;
    if (-4..14).contains(&exp) {
        let decimals = (13 - exp).max(0) as usize;
        let s = format!("{x:.decimals$}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    } else {
        let s = format!("{x:.13e}");
        let (mantissa, e) = s.split_once('e').unwrap_or((&s, "0"));
        let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
        let e: i32 = e.parse().unwrap_or(0);
        format!("{mantissa}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
    }
}

fn encode_string(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &c in s {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            c if c < 0x20 || c == 0x7f => {
                out.extend_from_slice(format!("\\u{c:04x}").as_bytes());
            }
            c => out.push(c),
        }
    }
    out.push(b'"');
}

fn encode_number(x: f64, out: &mut Vec<u8>) -> mlua::Result<()> {
    if !x.is_finite() {
        return Err(err("Cannot serialise number: must not be NaN or Inf"));
    }
    out.extend_from_slice(format_14g(x).as_bytes());
    Ok(())
}

/// The array length cjson uses: the largest positive integer key if every key is one
/// (0 otherwise), refusing excessively sparse arrays as cjson's defaults do.
fn array_len(t: &Table) -> mlua::Result<Option<usize>> {
    let mut max = 0usize;
    let mut items = 0usize;
    for pair in t.pairs::<Value, Value>() {
        let (k, _) = pair?;
        let n = match k {
            Value::Integer(n) if n >= 1 => n as f64,
            Value::Number(n) if n >= 1.0 && n.fract() == 0.0 => n,
            _ => return Ok(None),
        };
        max = max.max(n as usize);
        items += 1;
    }
    if max > 10 && max > items * 2 {
        return Err(err("Cannot serialise table: excessively sparse array"));
    }
    Ok(if max == 0 { None } else { Some(max) })
}

fn encode(v: &Value, out: &mut Vec<u8>, depth: usize) -> mlua::Result<()> {
    match v {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::LightUserData(p) if p.0.is_null() => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Integer(n) => encode_number(*n as f64, out)?,
        Value::Number(n) => encode_number(*n, out)?,
        Value::String(s) => encode_string(&s.as_bytes(), out),
        Value::Table(t) => {
            if depth + 1 > MAX_NESTING {
                return Err(err(format!(
                    "Cannot serialise, excessive nesting ({})",
                    depth + 1
                )));
            }
            match array_len(t)? {
                Some(len) => {
                    out.push(b'[');
                    for i in 1..=len {
                        if i > 1 {
                            out.push(b',');
                        }
                        let item: Value = t.raw_get(i)?;
                        encode(&item, out, depth + 1)?;
                    }
                    out.push(b']');
                }
                None => {
                    out.push(b'{');
                    let mut first = true;
                    for pair in t.pairs::<Value, Value>() {
                        let (k, item) = pair?;
                        if !first {
                            out.push(b',');
                        }
                        first = false;
                        match &k {
                            Value::String(s) => encode_string(&s.as_bytes(), out),
                            Value::Integer(n) => {
                                encode_string(format_14g(*n as f64).as_bytes(), out)
                            }
                            Value::Number(n) => encode_string(format_14g(*n).as_bytes(), out),
                            _ => {
                                return Err(err(
                                    "Cannot serialise table: table key must be a number or string",
                                ))
                            }
                        }
                        out.push(b':');
                        encode(&item, out, depth + 1)?;
                    }
                    out.push(b'}');
                }
            }
        }
        other => {
            return Err(err(format!(
                "Cannot serialise {}: type not supported",
                other.type_name()
            )))
        }
    }
    Ok(())
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    lua: &'a Lua,
}

impl Parser<'_> {
    fn fail(&self, expected: &str) -> mlua::Error {
        let found = match self.s.get(self.i) {
            None => "T_END".to_string(),
            Some(_) => "invalid token".to_string(),
        };
        err(format!(
            "Expected {expected} but found {found} at character {}",
            self.i + 1
        ))
    }

    fn ws(&mut self) {
        while self
            .s
            .get(self.i)
            .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.i += 1;
        }
    }

    fn eat(&mut self, word: &[u8]) -> bool {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> mlua::Result<Value> {
        match self.s.get(self.i) {
            Some(b'{') | Some(b'[') if depth + 1 > MAX_NESTING => Err(err(format!(
                "Found too many nested data structures ({}) at character {}",
                depth + 1,
                self.i + 1
            ))),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => Ok(Value::String(self.lua.create_string(self.string()?)?)),
            Some(b't') if self.eat(b"true") => Ok(Value::Boolean(true)),
            Some(b'f') if self.eat(b"false") => Ok(Value::Boolean(false)),
            Some(b'n') if self.eat(b"null") => Ok(null()),
            Some(c) if *c == b'-' || c.is_ascii_digit() => self.number(),
            _ => Err(self.fail("value")),
        }
    }

    fn number(&mut self) -> mlua::Result<Value> {
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|c| c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E'))
        {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i])
            .ok()
            .and_then(|t| t.parse::<f64>().ok())
            .map(Value::Number)
            .ok_or_else(|| self_fail_at(start, "value"))
    }

    fn string(&mut self) -> mlua::Result<Vec<u8>> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.i) else {
                return Err(err(format!(
                    "Expected string but found unexpected end of string at character {}",
                    self.i + 1
                )));
            };
            self.i += 1;
            match c {
                b'"' => return Ok(out),
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return Err(self.fail("string"));
                    };
                    self.i += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let cp = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&cp) && self.eat(b"\\u") {
                                let lo = self.hex4()?;
                                0x10000 + ((cp - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3ff)
                            } else {
                                cp
                            };
                            let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return Err(self_fail_at(self.i - 1, "escape sequence")),
                    }
                }
                c => out.push(c),
            }
        }
    }

    fn hex4(&mut self) -> mlua::Result<u32> {
        let digits = self
            .s
            .get(self.i..self.i + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u32::from_str_radix(d, 16).ok())
            .ok_or_else(|| self_fail_at(self.i, "unicode escape code"))?;
        self.i += 4;
        Ok(digits)
    }

    fn array(&mut self, depth: usize) -> mlua::Result<Value> {
        self.i += 1;
        let t = self.lua.create_table()?;
        self.ws();
        if self.eat(b"]") {
            return Ok(Value::Table(t));
        }
        let mut n = 1;
        loop {
            self.ws();
            let v = self.value(depth)?;
            t.raw_set(n, v)?;
            n += 1;
            self.ws();
            if self.eat(b",") {
                continue;
            }
            if self.eat(b"]") {
                return Ok(Value::Table(t));
            }
            return Err(self.fail("comma or array end"));
        }
    }

    fn object(&mut self, depth: usize) -> mlua::Result<Value> {
        self.i += 1;
        let t = self.lua.create_table()?;
        self.ws();
        if self.eat(b"}") {
            return Ok(Value::Table(t));
        }
        loop {
            self.ws();
            if self.s.get(self.i) != Some(&b'"') {
                return Err(self.fail("object key string"));
            }
            let k = self.string()?;
            self.ws();
            if !self.eat(b":") {
                return Err(self.fail("colon"));
            }
            self.ws();
            let v = self.value(depth)?;
            t.raw_set(self.lua.create_string(&k)?, v)?;
            self.ws();
            if self.eat(b",") {
                continue;
            }
            if self.eat(b"}") {
                return Ok(Value::Table(t));
            }
            return Err(self.fail("comma or object end"));
        }
    }
}

fn self_fail_at(i: usize, expected: &str) -> mlua::Error {
    err(format!(
        "Expected {expected} but found invalid token at character {}",
        i + 1
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_format_like_cjson() {
        assert_eq!(format_14g(5.0), "5");
        assert_eq!(format_14g(-3.0), "-3");
        assert_eq!(format_14g(1.5), "1.5");
        assert_eq!(format_14g(0.1), "0.1");
        assert_eq!(format_14g(1e20), "1e+20");
        assert_eq!(format_14g(1.234_567_890_123_45), "1.2345678901235");
    }

    #[test]
    fn bit_wraps_like_luabitop() {
        assert_eq!(tobit(4294967295.0), -1);
        assert_eq!(tobit(2147483648.0), -2147483648);
        assert_eq!(tohex(255, None), "000000ff");
        assert_eq!(tohex(255, Some(-2)), "FF");
    }
}
