//! `cmsgpack`: MessagePack for scripts, byte for byte as the lua-cmsgpack 0.4.0 that
//! Redis 7 bundles (Lua 5.1 on a 64-bit build):
//!
//! - `pack(v...)` encodes each argument and concatenates them. A number that is an
//!   int64 is packed as the smallest integer type, any other as float32 if exact, else
//!   float64; a table whose keys are exactly 1..n is an array, any other a map; strings
//!   are fixstr/str8/str16/str32; what has no MessagePack form (functions, userdata,
//!   tables nested 16 deep) is nil.
//! - `unpack(s)` returns every value in `s`; `unpack_one(s [, offset])` and
//!   `unpack_limit(s, limit [, offset])` return the next offset (-1 at the end) first.
//!   Integers come back as Lua numbers (uint64 above 2^63 wraps negative, as there);
//!   bin/ext types are a format error.
//!
//! Costs stay bounded: decoding is iterative and counts its Lua stack use as the C
//! library does (so depth and result count stop at Lua's C stack limit with the same
//! errors), a declared length is checked against the input before anything is made of
//! it, and encoding is depth-limited and its output capped.

use mlua::{Lua, MultiValue, Table, Value};

use super::args::{self, c_i64, check_stack, Args, MAX_C_STACK};

/// lua-cmsgpack's `LUACMSGPACK_MAX_NESTING`: a table this deep packs as nil.
const MAX_NESTING: usize = 16;

/// The most bytes one `pack` may produce. A table that refers to itself packs to
/// n^16 nodes; the output (at least a byte a node) stops it long before that.
const MAX_OUTPUT: usize = 512 << 20;

/// Install the `cmsgpack` table as a global.
pub fn install(lua: &Lua) -> mlua::Result<()> {
    let t = lua.create_table()?;
    t.raw_set(
        "pack",
        lua.create_function(|lua, args: MultiValue| pack(lua, Args::new(lua, args)))?,
    )?;
    t.raw_set(
        "unpack",
        lua.create_function(|lua, args: MultiValue| {
            let a = Args::new(lua, args);
            let s = a.bytes(1)?;
            unpack_full(lua, &s, 0, 0, a.len(), a.len())
        })?,
    )?;
    t.raw_set(
        "unpack_one",
        lua.create_function(|lua, args: MultiValue| {
            let a = Args::new(lua, args);
            let offset = a.opt_integer(2, 0)?;
            let s = a.bytes(1)?;
            unpack_full(lua, &s, 1, offset, 1, a.len())
        })?,
    )?;
    t.raw_set(
        "unpack_limit",
        lua.create_function(|lua, args: MultiValue| {
            let a = Args::new(lua, args);
            let limit = a.integer(2)?;
            let offset = a.opt_integer(3, 0)?;
            let s = a.bytes(1)?;
            unpack_full(lua, &s, limit, offset, 1, a.len())
        })?,
    )?;
    t.raw_set("_NAME", "cmsgpack")?;
    t.raw_set("_VERSION", "lua-cmsgpack 0.4.0")?;
    t.raw_set("_COPYRIGHT", "Copyright (C) 2012, Salvatore Sanfilippo")?;
    t.raw_set("_DESCRIPTION", "MessagePack C implementation for Lua")?;
    lua.globals().raw_set("cmsgpack", t)?;
    Ok(())
}

// ----------------------------------------------------------------- encoding

fn pack(lua: &Lua, a: Args) -> mlua::Result<mlua::LuaString> {
    let n = a.len();
    if n == 0 {
        return Err(args::arg_error(lua, 0, "MessagePack pack needs input."));
    }
    // lua_checkstack(L, nargs) with the nargs arguments already there.
    if n + n > MAX_C_STACK {
        return Err(args::arg_error(
            lua,
            0,
            "Too many arguments for MessagePack pack.",
        ));
    }
    let mut out = Vec::new();
    for v in a.values() {
        encode(lua, v, 0, &mut out)?;
    }
    lua.create_string(&out)
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) -> mlua::Result<()> {
    if out.len() + bytes.len() > MAX_OUTPUT {
        return Err(args::raw_error("not enough memory"));
    }
    out.extend_from_slice(bytes);
    Ok(())
}

fn encode(lua: &Lua, v: &Value, level: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    match v {
        Value::String(s) => encode_bytes(&s.as_bytes(), out),
        Value::Boolean(b) => put(out, &[if *b { 0xc3 } else { 0xc2 }]),
        Value::Integer(i) => encode_number(*i as f64, out),
        Value::Number(n) => encode_number(*n, out),
        Value::Table(t) if level < MAX_NESTING => encode_table(lua, t, level, out),
        _ => put(out, &[0xc0]),
    }
}

fn encode_bytes(s: &[u8], out: &mut Vec<u8>) -> mlua::Result<()> {
    let len = s.len();
    if len < 32 {
        put(out, &[0xa0 | len as u8])?;
    } else if len <= 0xff {
        put(out, &[0xd9, len as u8])?;
    } else if len <= 0xffff {
        put(out, &[0xda])?;
        put(out, &(len as u16).to_be_bytes())?;
    } else {
        put(out, &[0xdb])?;
        put(out, &(len as u32).to_be_bytes())?;
    }
    put(out, s)
}

/// A Lua number: an integer when it is exactly an int64 (`IS_INT64_EQUIVALENT`), else a
/// float.
fn encode_number(n: f64, out: &mut Vec<u8>) -> mlua::Result<()> {
    if !n.is_infinite() && c_i64(n) as f64 == n {
        encode_int(c_i64(n), out)
    } else {
        encode_double(n, out)
    }
}

fn encode_double(d: f64, out: &mut Vec<u8>) -> mlua::Result<()> {
    let f = d as f32;
    if d == f as f64 {
        put(out, &[0xca])?;
        put(out, &f.to_be_bytes())
    } else {
        put(out, &[0xcb])?;
        put(out, &d.to_be_bytes())
    }
}

fn encode_int(n: i64, out: &mut Vec<u8>) -> mlua::Result<()> {
    if n >= 0 {
        if n <= 127 {
            put(out, &[n as u8])
        } else if n <= 0xff {
            put(out, &[0xcc, n as u8])
        } else if n <= 0xffff {
            put(out, &[0xcd])?;
            put(out, &(n as u16).to_be_bytes())
        } else if n <= 0xffff_ffff {
            put(out, &[0xce])?;
            put(out, &(n as u32).to_be_bytes())
        } else {
            put(out, &[0xcf])?;
            put(out, &(n as u64).to_be_bytes())
        }
    } else if n >= -32 {
        put(out, &[n as i8 as u8])
    } else if n >= -128 {
        put(out, &[0xd0, n as i8 as u8])
    } else if n >= -32768 {
        put(out, &[0xd1])?;
        put(out, &(n as i16).to_be_bytes())
    } else if n >= -2_147_483_648 {
        put(out, &[0xd2])?;
        put(out, &(n as i32).to_be_bytes())
    } else {
        put(out, &[0xd3])?;
        put(out, &n.to_be_bytes())
    }
}

fn encode_header(out: &mut Vec<u8>, n: usize, fix: u8, b16: u8, b32: u8) -> mlua::Result<()> {
    if n <= 15 {
        put(out, &[fix | n as u8])
    } else if n <= 0xffff {
        put(out, &[b16])?;
        put(out, &(n as u16).to_be_bytes())
    } else {
        put(out, &[b32])?;
        put(out, &(n as u32).to_be_bytes())
    }
}

/// lua-cmsgpack's `table_is_an_array` (Lua 5.1 branch): every key a number that is a
/// positive C `int`, and the largest one equal to the count.
fn is_array(t: &Table) -> mlua::Result<bool> {
    let mut count: i64 = 0;
    let mut max: i64 = 0;
    for pair in t.pairs::<Value, Value>() {
        let (k, _) = pair?;
        let Some(n) = args::number(&k) else {
            return Ok(false);
        };
        // `(int)n == n`, with x86's INT_MIN for what does not fit.
        let as_int = if n.is_nan() || !(-2_147_483_648.0..2_147_483_648.0).contains(&n) {
            i32::MIN
        } else {
            n as i32
        };
        if n <= 0.0 || as_int as f64 != n {
            return Ok(false);
        }
        max = max.max(as_int as i64);
        count += 1;
    }
    Ok(max == count)
}

fn encode_table(lua: &Lua, t: &Table, level: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    if is_array(t)? {
        let len = t.raw_len();
        encode_header(out, len, 0x90, 0xdc, 0xdd)?;
        for j in 1..=len {
            let v: Value = t.get(j as f64)?;
            encode(lua, &v, level + 1, out)?;
        }
    } else {
        let mut len = 0usize;
        for pair in t.pairs::<Value, Value>() {
            pair?;
            len += 1;
        }
        encode_header(out, len, 0x80, 0xde, 0xdf)?;
        for pair in t.pairs::<Value, Value>() {
            let (k, v) = pair?;
            encode(lua, &k, level + 1, out)?;
            encode(lua, &v, level + 1, out)?;
        }
    }
    Ok(())
}

// ----------------------------------------------------------------- decoding

/// Why decoding stopped short (the C library's cursor errors).
#[derive(Debug, PartialEq)]
enum Short {
    /// `MP_CUR_ERROR_EOF`: "Missing bytes in input."
    Eof,
    /// `MP_CUR_ERROR_BADFMT`: "Bad data format in input."
    BadFormat,
}

struct Cursor<'a> {
    s: &'a [u8],
    p: usize,
}

impl Cursor<'_> {
    fn left(&self) -> usize {
        self.s.len() - self.p
    }

    /// `mp_cur_need` then the bytes: `n` bytes from the current position.
    fn need(&self, n: usize) -> Result<&[u8], Short> {
        if self.left() < n {
            return Err(Short::Eof);
        }
        Ok(&self.s[self.p..self.p + n])
    }

    fn be<const N: usize>(&self, at: usize) -> Result<[u8; N], Short> {
        let b = self.need(at + N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&b[at..at + N]);
        Ok(out)
    }
}

enum Pending {
    /// An array being filled: the next index.
    Array(u32),
    /// A map being filled: its pending key, once read.
    Map(Option<Value>),
}

struct Frame {
    table: Table,
    left: usize,
    pending: Pending,
}

/// What one header byte starts.
enum Start {
    Value(Value),
    Array(usize),
    Map(usize),
}

/// A scalar, or the length of an array or map, consuming its header.
fn start(lua: &Lua, c: &mut Cursor) -> mlua::Result<Result<Start, Short>> {
    let b = c.s[c.p];
    let num = |x: f64| Start::Value(Value::Number(x));
    let (start, used) = match b {
        0xcc => match c.be::<1>(1) {
            Ok(x) => (num(x[0] as f64), 2),
            Err(e) => return Ok(Err(e)),
        },
        0xd0 => match c.be::<1>(1) {
            Ok(x) => (num(x[0] as i8 as f64), 2),
            Err(e) => return Ok(Err(e)),
        },
        0xcd => match c.be::<2>(1) {
            Ok(x) => (num(u16::from_be_bytes(x) as f64), 3),
            Err(e) => return Ok(Err(e)),
        },
        0xd1 => match c.be::<2>(1) {
            Ok(x) => (num(i16::from_be_bytes(x) as f64), 3),
            Err(e) => return Ok(Err(e)),
        },
        0xce => match c.be::<4>(1) {
            Ok(x) => (num(u32::from_be_bytes(x) as f64), 5),
            Err(e) => return Ok(Err(e)),
        },
        0xd2 => match c.be::<4>(1) {
            Ok(x) => (num(i32::from_be_bytes(x) as f64), 5),
            Err(e) => return Ok(Err(e)),
        },
        // lua_pushunsigned is lua_pushinteger there: above 2^63 wraps negative.
        0xcf => match c.be::<8>(1) {
            Ok(x) => (num(u64::from_be_bytes(x) as i64 as f64), 9),
            Err(e) => return Ok(Err(e)),
        },
        0xd3 => match c.be::<8>(1) {
            Ok(x) => (num(i64::from_be_bytes(x) as f64), 9),
            Err(e) => return Ok(Err(e)),
        },
        0xc0 => (Start::Value(Value::Nil), 1),
        0xc3 => (Start::Value(Value::Boolean(true)), 1),
        0xc2 => (Start::Value(Value::Boolean(false)), 1),
        0xca => match c.be::<4>(1) {
            Ok(x) => (num(f32::from_be_bytes(x) as f64), 5),
            Err(e) => return Ok(Err(e)),
        },
        0xcb => match c.be::<8>(1) {
            Ok(x) => (num(f64::from_be_bytes(x)), 9),
            Err(e) => return Ok(Err(e)),
        },
        0xd9 | 0xda | 0xdb | 0xa0..=0xbf => {
            let (hdr, len): (usize, usize) = match b {
                0xd9 => match c.be::<1>(1) {
                    Ok(x) => (2, x[0] as usize),
                    Err(e) => return Ok(Err(e)),
                },
                0xda => match c.be::<2>(1) {
                    Ok(x) => (3, u16::from_be_bytes(x) as usize),
                    Err(e) => return Ok(Err(e)),
                },
                0xdb => match c.be::<4>(1) {
                    Ok(x) => (5, u32::from_be_bytes(x) as usize),
                    Err(e) => return Ok(Err(e)),
                },
                _ => (1, (b & 0x1f) as usize),
            };
            // The declared length is checked against what is there before use.
            let bytes = match c.need(hdr.saturating_add(len)) {
                Ok(all) => &all[hdr..],
                Err(e) => return Ok(Err(e)),
            };
            (
                Start::Value(Value::String(lua.create_string(bytes)?)),
                hdr + len,
            )
        }
        0xdc | 0xde => match c.be::<2>(1) {
            Ok(x) => {
                let n = u16::from_be_bytes(x) as usize;
                (
                    if b == 0xdc {
                        Start::Array(n)
                    } else {
                        Start::Map(n)
                    },
                    3,
                )
            }
            Err(e) => return Ok(Err(e)),
        },
        0xdd | 0xdf => match c.be::<4>(1) {
            Ok(x) => {
                let n = u32::from_be_bytes(x) as usize;
                (
                    if b == 0xdd {
                        Start::Array(n)
                    } else {
                        Start::Map(n)
                    },
                    5,
                )
            }
            Err(e) => return Ok(Err(e)),
        },
        0x00..=0x7f => (num(b as f64), 1),
        0xe0..=0xff => (num(b as i8 as f64), 1),
        0x90..=0x9f => (Start::Array((b & 0xf) as usize), 1),
        0x80..=0x8f => (Start::Map((b & 0xf) as usize), 1),
        _ => return Ok(Err(Short::BadFormat)),
    };
    c.p += used;
    Ok(Ok(start))
}

/// Decode one value (`mp_decode_to_lua_type`), without recursion. `used` is the C
/// function's Lua stack use, kept as the C code's pushes and pops would keep it, so the
/// C stack limit stops depth and width where it stops them there.
fn decode(lua: &Lua, c: &mut Cursor, used: &mut usize) -> mlua::Result<Result<Value, Short>> {
    let mut stack: Vec<Frame> = Vec::new();
    loop {
        // Start a value.
        if c.left() == 0 {
            return Ok(Err(Short::Eof));
        }
        check_stack(
            lua,
            *used,
            1,
            "too many return values at once; use unpack_one or unpack_limit instead.",
        )?;
        let mut value = match start(lua, c)? {
            Err(e) => return Ok(Err(e)),
            Ok(Start::Value(v)) => {
                *used += 1;
                v
            }
            Ok(Start::Array(n)) => {
                let table = lua.create_table()?;
                *used += 1;
                check_stack(lua, *used, 1, "in function mp_decode_to_lua_array")?;
                if n > 0 {
                    *used += 1; // the index of the first item
                    stack.push(Frame {
                        table,
                        left: n,
                        pending: Pending::Array(1),
                    });
                    continue;
                }
                Value::Table(table)
            }
            Ok(Start::Map(n)) => {
                let table = lua.create_table()?;
                *used += 1;
                if n > 0 {
                    stack.push(Frame {
                        table,
                        left: n,
                        pending: Pending::Map(None),
                    });
                    continue;
                }
                Value::Table(table)
            }
        };
        // A value is complete: store it in the table it belongs to, and every table
        // it completes in turn.
        loop {
            let Some(top) = stack.last_mut() else {
                return Ok(Ok(value));
            };
            match &mut top.pending {
                Pending::Array(index) => {
                    top.table.raw_set(*index as f64, value)?;
                    *index += 1;
                }
                Pending::Map(key @ None) => {
                    *key = Some(value);
                    break;
                }
                Pending::Map(key) => {
                    let k = key.take().unwrap_or(Value::Nil);
                    match &k {
                        Value::Nil => return Err(args::raw_error("table index is nil")),
                        Value::Number(n) if n.is_nan() => {
                            return Err(args::raw_error("table index is NaN"))
                        }
                        _ => {}
                    }
                    top.table.raw_set(k, value)?;
                }
            }
            *used -= 2;
            top.left -= 1;
            if top.left > 0 {
                if matches!(top.pending, Pending::Array(_)) {
                    *used += 1;
                }
                break;
            }
            let Some(done) = stack.pop() else {
                return Ok(Err(Short::BadFormat));
            };
            value = Value::Table(done.table);
        }
    }
}

/// `mp_unpack_full`: `limit` values from `offset` (all of them when both are 0), with
/// the next offset first unless all were asked for. `used` is how many values the C
/// function has on its stack when it starts decoding; `nargs` how many arguments the
/// Rust function was passed.
fn unpack_full(
    lua: &Lua,
    s: &[u8],
    limit: i64,
    offset: i64,
    used: usize,
    nargs: usize,
) -> mlua::Result<MultiValue> {
    let len = s.len();
    if offset < 0 || limit < 0 {
        return Err(args::error(
            lua,
            format!(
                "Invalid request to unpack with offset of {} and limit of {}.",
                offset as i32, len as i32
            ),
        ));
    }
    if offset as u64 > len as u64 {
        return Err(args::error(
            lua,
            format!(
                "Start offset {} greater than input length {}.",
                offset as i32, len as i32
            ),
        ));
    }
    let decode_all = limit == 0 && offset == 0;
    let limit = if decode_all { i32::MAX as i64 } else { limit };
    let mut c = Cursor {
        s,
        p: offset as usize,
    };
    let mut used = used;
    let mut out = Vec::new();
    while c.left() > 0 && (out.len() as i64) < limit {
        match decode(lua, &mut c, &mut used)? {
            Ok(v) => out.push(v),
            Err(Short::Eof) => return Err(args::error(lua, "Missing bytes in input.")),
            Err(Short::BadFormat) => return Err(args::error(lua, "Bad data format in input.")),
        }
    }
    if !decode_all {
        check_stack(lua, used, 1, "in function mp_unpack_full")?;
        let next = if c.left() == 0 { -1 } else { c.p as i64 };
        out.insert(0, Value::Number(next as f64));
    }
    args::check_results(
        lua,
        nargs,
        out.len(),
        "too many return values at once; use unpack_one or unpack_limit instead.",
    )?;
    Ok(MultiValue::from_iter(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lua() -> Lua {
        super::super::args::testing::lua_with(install)
    }

    use super::super::args::testing::{failure, string as packed};

    #[test]
    fn integers_take_the_smallest_type() {
        let lua = lua();
        let cases: &[(&str, &[u8])] = &[
            ("0", &[0x00]),
            ("127", &[0x7f]),
            ("128", &[0xcc, 0x80]),
            ("256", &[0xcd, 0x01, 0x00]),
            ("65536", &[0xce, 0, 1, 0, 0]),
            ("4294967296", &[0xcf, 0, 0, 0, 1, 0, 0, 0, 0]),
            ("-1", &[0xff]),
            ("-32", &[0xe0]),
            ("-33", &[0xd0, 0xdf]),
            ("-129", &[0xd1, 0xff, 0x7f]),
            ("-32769", &[0xd2, 0xff, 0xff, 0x7f, 0xff]),
            (
                "-2147483649",
                &[0xd3, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff],
            ),
        ];
        for (n, bytes) in cases {
            assert_eq!(
                packed(&lua, &format!("return cmsgpack.pack({n})")),
                *bytes,
                "{n}"
            );
        }
    }

    #[test]
    fn floats_are_float32_when_exact() {
        let lua = lua();
        assert_eq!(
            packed(&lua, "return cmsgpack.pack(1.5)"),
            [0xca, 0x3f, 0xc0, 0, 0]
        );
        assert_eq!(
            packed(&lua, "return cmsgpack.pack(0.1)"),
            [0xcb, 0x3f, 0xb9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a]
        );
        assert_eq!(
            packed(&lua, "return cmsgpack.pack(1/0)"),
            [0xca, 0x7f, 0x80, 0, 0]
        );
    }

    #[test]
    fn tables_strings_and_nesting() {
        let lua = lua();
        assert_eq!(
            packed(&lua, "return cmsgpack.pack({1,2,'x'})"),
            [0x93, 1, 2, 0xa1, b'x']
        );
        assert_eq!(
            packed(&lua, "return cmsgpack.pack({a=true})"),
            [0x81, 0xa1, b'a', 0xc3]
        );
        assert_eq!(packed(&lua, "return cmsgpack.pack({})"), [0x90]);
        assert_eq!(
            packed(&lua, "return cmsgpack.pack(string.rep('x', 40))")[..2],
            [0xd9, 40]
        );
        assert_eq!(
            packed(&lua, "return cmsgpack.pack(string.rep('x', 300))")[..3],
            [0xda, 1, 44]
        );
        // A table that holds itself: 16 levels of arrays, then nil.
        let b = packed(&lua, "local t = {} t[1] = t return cmsgpack.pack(t)");
        assert_eq!(b.len(), 17);
        assert_eq!(&b[..16], &[0x91; 16]);
        assert_eq!(b[16], 0xc0);
        assert_eq!(
            packed(&lua, "return cmsgpack.pack(1, 'a', nil)"),
            [1, 0xa1, b'a', 0xc0]
        );
    }

    #[test]
    fn round_trips() {
        let lua = lua();
        let ok: bool = lua
            .load(
                r#"
                local a, b, c = cmsgpack.unpack(cmsgpack.pack({1, {x = 'y'}}, -5.25, 'z'))
                return a[1] == 1 and a[2].x == 'y' and b == -5.25 and c == 'z'
                "#,
            )
            .eval()
            .unwrap();
        assert!(ok);
        let (next, v): (i64, i64) = lua
            .load("return cmsgpack.unpack_one(cmsgpack.pack(7, 8))")
            .eval()
            .unwrap();
        assert_eq!((next, v), (1, 7));
        let (next, a, b): (i64, i64, i64) = lua
            .load("return cmsgpack.unpack_limit(cmsgpack.pack(7, 8, 9), 2, 1)")
            .eval()
            .unwrap();
        assert_eq!((next, a, b), (-1, 8, 9));
        let n: f64 = lua
            .load("return cmsgpack.unpack('\\207\\255\\255\\255\\255\\255\\255\\255\\255')")
            .eval()
            .unwrap();
        assert_eq!(n, -1.0);
    }

    #[test]
    fn bad_input_fails_cleanly() {
        let lua = lua();
        assert_eq!(
            failure(&lua, "cmsgpack.unpack('\\219\\255\\255\\255\\255')"),
            "user_script:1: Missing bytes in input."
        );
        assert_eq!(
            failure(&lua, "cmsgpack.unpack('\\221\\255\\255\\255\\255\\1')"),
            "user_script:1: Missing bytes in input."
        );
        assert_eq!(
            failure(&lua, "cmsgpack.unpack('\\193')"),
            "user_script:1: Bad data format in input."
        );
        assert_eq!(
            failure(&lua, "cmsgpack.unpack('\\129\\192\\1')"),
            "table index is nil"
        );
        assert_eq!(
            failure(&lua, "cmsgpack.pack()"),
            "user_script:1: bad argument #0 to 'pack' (MessagePack pack needs input.)"
        );
        assert_eq!(
            failure(&lua, "cmsgpack.unpack_one('abc', 5)"),
            "user_script:1: Start offset 5 greater than input length 3."
        );
        // Deep nesting stops at the C stack limit, as there.
        assert_eq!(
            failure(&lua, "cmsgpack.unpack(string.rep('\\145', 10000) .. '\\1')"),
            "user_script:1: stack overflow (in function mp_decode_to_lua_array)"
        );
        assert_eq!(
            failure(&lua, "cmsgpack.unpack(string.rep('a', 8000))"),
            "user_script:1: stack overflow (too many return values at once; use unpack_one or unpack_limit instead.)"
        );
        let n: usize = lua
            .load("return select('#', cmsgpack.unpack(string.rep('a', 7976)))")
            .eval()
            .unwrap();
        assert_eq!(n, 7976);
    }
}
