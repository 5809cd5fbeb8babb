//! `struct`: Roberto Ierusalimschy's struct library as Redis 7 bundles it (with its
//! overflow fixes), on a 64-bit little-endian build: `pack(fmt, ...)`,
//! `unpack(fmt, s [, pos])` (the values, then the next position) and `size(fmt)`.
//!
//! Formats: `>` big endian, `<` little endian, `![n]` alignment (default 8), `x` a pad
//! byte, `b`/`B` signed/unsigned char, `h`/`H` short, `l`/`L` long, `T` size_t,
//! `i[n]`/`I[n]` an n-byte integer (default 4, at most 32), `f` float, `d` double,
//! `c[n]` n chars (`c0`: the whole string when packing, the previous number's worth
//! when unpacking), `s` a zero-terminated string, ` ` ignored. Numbers convert as C
//! converts them on x86-64 (so out-of-range values wrap as they do there).

use mlua::{Lua, MultiValue, Value};

use super::args::{self, c_i64, check_stack, Args};

/// `MAXINTSIZE`: the largest integer size.
const MAX_INT_SIZE: i32 = 32;
/// `MAXALIGN` on x86-64: the alignment `!` sets without a number.
const MAX_ALIGN: i32 = 8;

/// Install the `struct` table as a global.
pub fn install(lua: &Lua) -> mlua::Result<()> {
    let t = lua.create_table()?;
    t.raw_set(
        "pack",
        lua.create_function(|lua, a: MultiValue| pack(lua, Args::new(lua, a)))?,
    )?;
    t.raw_set(
        "unpack",
        lua.create_function(|lua, a: MultiValue| unpack(lua, &Args::new(lua, a)))?,
    )?;
    t.raw_set(
        "size",
        lua.create_function(|lua, a: MultiValue| size(lua, &Args::new(lua, a)))?,
    )?;
    lua.globals().raw_set("struct", t)?;
    Ok(())
}

/// Byte order and alignment, as the format sets them.
struct Header {
    big: bool,
    align: i32,
}

impl Header {
    fn new() -> Header {
        Header {
            big: false,
            align: 1,
        }
    }
}

/// The format, read as C reads a `char *`: up to its first NUL.
struct Format {
    f: Vec<u8>,
    i: usize,
}

impl Format {
    fn new(mut f: Vec<u8>) -> Format {
        if let Some(nul) = f.iter().position(|&c| c == 0) {
            f.truncate(nul);
        }
        Format { f, i: 0 }
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.f.get(self.i).copied();
        self.i += 1;
        c
    }

    /// `getnum`: a decimal number, or `df` when none is there.
    fn num(&mut self, lua: &Lua, df: i32) -> mlua::Result<i32> {
        if !self.f.get(self.i).is_some_and(u8::is_ascii_digit) {
            return Ok(df);
        }
        let mut a: i32 = 0;
        while let Some(&c) = self.f.get(self.i).filter(|c| c.is_ascii_digit()) {
            let d = (c - b'0') as i32;
            if a > i32::MAX / 10 || a * 10 > i32::MAX - d {
                return Err(args::error(lua, "integral size overflow"));
            }
            a = a * 10 + d;
            self.i += 1;
        }
        Ok(a)
    }

    /// `optsize`: the size of option `opt` (reading its number, if it takes one).
    fn size(&mut self, lua: &Lua, opt: u8) -> mlua::Result<u64> {
        Ok(match opt {
            b'B' | b'b' => 1,
            b'H' | b'h' => 2,
            b'L' | b'l' | b'T' | b'd' => 8,
            b'f' => 4,
            b'x' => 1,
            b'c' => self.num(lua, 1)? as u64,
            b'i' | b'I' => {
                let sz = self.num(lua, 4)?;
                if sz > MAX_INT_SIZE {
                    return Err(args::error(
                        lua,
                        format!("integral size {sz} is larger than limit of {MAX_INT_SIZE}"),
                    ));
                }
                sz as u64
            }
            _ => 0,
        })
    }

    /// `controloptions`: byte order, alignment, blanks; anything else is invalid.
    fn control(&mut self, lua: &Lua, opt: u8, h: &mut Header) -> mlua::Result<()> {
        match opt {
            b' ' => {}
            b'>' => h.big = true,
            b'<' => h.big = false,
            b'!' => {
                let a = self.num(lua, MAX_ALIGN)?;
                if a <= 0 || a & (a - 1) != 0 {
                    return Err(args::error(
                        lua,
                        format!("alignment {a} is not a power of 2"),
                    ));
                }
                h.align = a;
            }
            _ => {
                let msg = format!("invalid format option '{}'", char::from(opt));
                return Err(args::arg_error(lua, 1, msg));
            }
        }
        Ok(())
    }
}

/// `gettoalign`: padding before an item of `size` at `len`.
fn to_align(len: u64, h: &Header, opt: u8, size: u64) -> u64 {
    if size == 0 || opt == b'c' {
        return 0;
    }
    let size = size.min(h.align as u64);
    size.wrapping_sub(len & size.wrapping_sub(1)) & size.wrapping_sub(1)
}

fn is_integer(opt: u8) -> bool {
    matches!(
        opt,
        b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I'
    )
}

/// C's `(unsigned long)x` for a non-negative double, as gcc compiles it on x86-64.
fn c_u64(x: f64) -> u64 {
    const TWO63: f64 = 9_223_372_036_854_775_808.0;
    if x.is_nan() || x < TWO63 {
        c_i64(x) as u64
    } else {
        (c_i64(x - TWO63) as u64) ^ (1 << 63)
    }
}

/// `putinteger`.
fn put_integer(out: &mut Vec<u8>, n: f64, big: bool, size: usize) {
    let mut value = if n < 0.0 { c_i64(n) as u64 } else { c_u64(n) };
    let mut buf = vec![0u8; size];
    for i in 0..size {
        let at = if big { size - 1 - i } else { i };
        buf[at] = (value & 0xff) as u8;
        value >>= 8;
    }
    out.extend_from_slice(&buf);
}

fn pack(lua: &Lua, mut a: Args) -> mlua::Result<mlua::LuaString> {
    let mut fmt = Format::new(a.bytes(1)?);
    // b_pack's "mark to separate arguments from string buffer".
    a.push_nil_mark();
    let mut h = Header::new();
    let mut arg = 2;
    let mut out: Vec<u8> = Vec::new();
    while let Some(opt) = fmt.next() {
        let mut size = fmt.size(lua, opt)?;
        let pad = to_align(out.len() as u64, &h, opt, size);
        out.resize(out.len() + pad as usize, 0);
        match opt {
            _ if is_integer(opt) => {
                let n = a.number(arg)?;
                arg += 1;
                put_integer(&mut out, n, h.big, size as usize);
            }
            b'x' => out.push(0),
            b'f' => {
                let f = a.number(arg)? as f32;
                arg += 1;
                out.extend_from_slice(&if h.big {
                    f.to_be_bytes()
                } else {
                    f.to_le_bytes()
                });
            }
            b'd' => {
                let d = a.number(arg)?;
                arg += 1;
                out.extend_from_slice(&if h.big {
                    d.to_be_bytes()
                } else {
                    d.to_le_bytes()
                });
            }
            b'c' | b's' => {
                let s = a.bytes(arg)?;
                arg += 1;
                if size == 0 {
                    size = s.len() as u64;
                }
                if (s.len() as u64) < size {
                    // luaL_argcheck names the argument after the one it read.
                    return Err(args::arg_error(lua, arg as i32, "string too short"));
                }
                out.extend_from_slice(&s[..size as usize]);
                if opt == b's' {
                    out.push(0);
                }
            }
            _ => fmt.control(lua, opt, &mut h)?,
        }
    }
    lua.create_string(&out)
}

/// `getinteger`: `size` bytes as an integer, sign-extended for the signed options (the
/// bytes past a long's 8 shift out, as there).
fn get_integer(b: &[u8], big: bool, signed: bool) -> f64 {
    let size = b.len();
    let mut l: u64 = 0;
    for i in 0..size {
        let at = if big { i } else { size - 1 - i };
        l = (l << 8) | b[at] as u64;
    }
    if !signed {
        return l as f64;
    }
    let shift = (size as i32).wrapping_mul(8).wrapping_sub(1) as u32;
    let mask = u64::MAX.wrapping_shl(shift);
    if l & mask != 0 {
        l |= mask;
    }
    l as i64 as f64
}

fn unpack(lua: &Lua, a: &Args) -> mlua::Result<MultiValue> {
    let mut fmt = Format::new(a.bytes(1)?);
    let data = a.bytes(2)?;
    let ld = data.len() as u64;
    let start = a.opt_integer(3, 1)? as u64;
    if start == 0 {
        return Err(args::arg_error(lua, 3, "offset must be 1 or greater"));
    }
    let mut pos = start - 1;
    let mut h = Header::new();
    let mut out: Vec<Value> = Vec::new();
    let short = || args::arg_error(lua, 2, "data string too short");
    while let Some(opt) = fmt.next() {
        let mut size = fmt.size(lua, opt)?;
        pos = pos.wrapping_add(to_align(pos, &h, opt, size));
        if size > ld || pos > ld - size {
            return Err(short());
        }
        check_stack(lua, a.len() + out.len(), 2, "too many results")?;
        let at = pos as usize;
        match opt {
            _ if is_integer(opt) => {
                let b = &data[at..at + size as usize];
                out.push(Value::Number(get_integer(
                    b,
                    h.big,
                    opt.is_ascii_lowercase(),
                )));
            }
            b'x' => {}
            b'f' => {
                let mut b = [0u8; 4];
                b.copy_from_slice(&data[at..at + 4]);
                let f = if h.big {
                    f32::from_be_bytes(b)
                } else {
                    f32::from_le_bytes(b)
                };
                out.push(Value::Number(f as f64));
            }
            b'd' => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&data[at..at + 8]);
                let d = if h.big {
                    f64::from_be_bytes(b)
                } else {
                    f64::from_le_bytes(b)
                };
                out.push(Value::Number(d));
            }
            b'c' => {
                if size == 0 {
                    let prev = match out.last() {
                        Some(v) => lua.coerce_number(v.clone())?,
                        None => None,
                    };
                    let Some(n) = prev else {
                        return Err(args::error(lua, "format 'c0' needs a previous size"));
                    };
                    out.pop();
                    size = c_i64(n) as u64;
                    if size > ld || pos > ld - size {
                        return Err(short());
                    }
                }
                let s = lua.create_string(&data[at..at + size as usize])?;
                out.push(Value::String(s));
            }
            b's' => {
                let Some(nul) = data[at..].iter().position(|&c| c == 0) else {
                    return Err(args::error(lua, "unfinished string in data"));
                };
                size = nul as u64 + 1;
                out.push(Value::String(lua.create_string(&data[at..at + nul])?));
            }
            _ => fmt.control(lua, opt, &mut h)?,
        }
        pos = pos.wrapping_add(size);
    }
    out.push(Value::Number(pos.wrapping_add(1) as i64 as f64));
    args::check_results(lua, a.len(), out.len(), "too many results")?;
    Ok(MultiValue::from_iter(out))
}

fn size(lua: &Lua, a: &Args) -> mlua::Result<i64> {
    let mut fmt = Format::new(a.bytes(1)?);
    let mut h = Header::new();
    let mut pos: u64 = 0;
    while let Some(opt) = fmt.next() {
        let size = fmt.size(lua, opt)?;
        pos = pos.wrapping_add(to_align(pos, &h, opt, size));
        if opt == b's' {
            return Err(args::arg_error(lua, 1, "option 's' has no fixed size"));
        } else if opt == b'c' && size == 0 {
            return Err(args::arg_error(lua, 1, "option 'c0' has no fixed size"));
        }
        if !opt.is_ascii_alphanumeric() {
            fmt.control(lua, opt, &mut h)?;
        }
        pos = pos.wrapping_add(size);
    }
    Ok(pos as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lua() -> Lua {
        args::testing::lua_with(install)
    }

    use args::testing::{failure, string as bytes};

    #[test]
    fn packs_with_order_and_alignment() {
        let lua = lua();
        assert_eq!(bytes(&lua, "return struct.pack('>i', 1)"), [0, 0, 0, 1]);
        assert_eq!(bytes(&lua, "return struct.pack('<h', -2)"), [0xfe, 0xff]);
        assert_eq!(
            bytes(&lua, "return struct.pack('!4bi3', 1, 2)"),
            [1, 0, 0, 2, 0, 0]
        );
        assert_eq!(
            bytes(&lua, "return struct.pack('>i16', -1)"),
            [[0u8; 8], [0xff; 8]].concat()
        );
        assert_eq!(bytes(&lua, "return struct.pack('s', 'ab')"), b"ab\0");
        assert_eq!(
            bytes(&lua, "return struct.pack('>L', 0/0)"),
            [0x80, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(bytes(&lua, "return struct.pack('>L', 1e20)"), [0; 8]);
        assert_eq!(
            bytes(&lua, "return struct.pack('>d', 1.5)"),
            1.5f64.to_be_bytes()
        );
    }

    #[test]
    fn unpacks_values_then_the_next_position() {
        let lua = lua();
        // c0 takes its size from the number before it, which it replaces.
        let (b, next): (String, i64) = lua
            .load("return struct.unpack('>hc0', '\\0\\3abcd')")
            .eval()
            .unwrap();
        assert_eq!((b.as_str(), next), ("abc", 6));
        let (s, next): (String, i64) = lua
            .load("return struct.unpack('s', 'xy\\0z')")
            .eval()
            .unwrap();
        assert_eq!((s.as_str(), next), ("xy", 4));
        let (n, next): (i64, i64) = lua
            .load("return struct.unpack('>i16', string.rep('\\255', 16))")
            .eval()
            .unwrap();
        assert_eq!((n, next), (-1, 17));
        let n: usize = lua
            .load("return select('#', struct.unpack(string.rep('b', 7974), string.rep('a', 8000)))")
            .eval()
            .unwrap();
        assert_eq!(n, 7975);
        let n: i64 = lua.load("return struct.size('!8bd')").eval().unwrap();
        assert_eq!(n, 16);
    }

    #[test]
    fn errors_read_as_there() {
        let lua = lua();
        assert_eq!(
            failure(&lua, "struct.pack('q', 1)"),
            "user_script:1: bad argument #1 to 'pack' (invalid format option 'q')"
        );
        assert_eq!(
            failure(&lua, "struct.pack('ii', 1)"),
            "user_script:1: bad argument #3 to 'pack' (number expected, got nil)"
        );
        assert_eq!(
            failure(&lua, "struct.pack()"),
            "user_script:1: bad argument #1 to 'pack' (string expected, got no value)"
        );
        assert_eq!(
            failure(&lua, "struct.pack('bc3', 1, 'ab')"),
            "user_script:1: bad argument #4 to 'pack' (string too short)"
        );
        assert_eq!(
            failure(&lua, "struct.unpack('b', 'a', 0)"),
            "user_script:1: bad argument #3 to 'unpack' (offset must be 1 or greater)"
        );
        assert_eq!(
            failure(&lua, "struct.unpack('b', 'a', -1)"),
            "user_script:1: bad argument #2 to 'unpack' (data string too short)"
        );
        assert_eq!(
            failure(&lua, "struct.unpack('c0', '2')"),
            "user_script:1: format 'c0' needs a previous size"
        );
        assert_eq!(
            failure(&lua, "struct.size('i100000000000')"),
            "user_script:1: integral size overflow"
        );
        assert_eq!(
            failure(&lua, "struct.size('s')"),
            "user_script:1: bad argument #1 to 'size' (option 's' has no fixed size)"
        );
        assert_eq!(
            failure(
                &lua,
                "struct.unpack(string.rep('b', 7996), string.rep('a', 8000))"
            ),
            "user_script:1: stack overflow (too many results)"
        );
    }
}
