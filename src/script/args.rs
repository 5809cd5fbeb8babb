//! Lua's auxiliary-library conventions (lauxlib) for the libraries written in Rust, so
//! their errors read as those of Redis's C libraries: `luaL_error`'s position prefix,
//! `luaL_argerror`'s "bad argument #n to 'name' (...)", the `luaL_check*` type errors,
//! and the C stack limit (`LUAI_MAXCSTACK`) that bounds how many values a C function
//! may push.

use std::fmt;

use mlua::{Lua, MultiValue, Value};

/// Lua 5.1's `LUAI_MAXCSTACK`: the most values one C function may hold on its stack.
pub const MAX_C_STACK: usize = 8000;

/// An error raised as a C library raises it: the message is all there is (a `pcall`
/// returns it as it is; a script that does not catch it fails with `ERR <message>`).
#[derive(Debug)]
pub struct LibError(pub String);

impl fmt::Display for LibError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LibError {}

/// The message of a library error, if `e` is one (however mlua wrapped it).
pub fn lib_message(e: &mlua::Error) -> Option<String> {
    match e {
        mlua::Error::CallbackError { cause, .. } => lib_message(cause),
        mlua::Error::ExternalError(inner) => inner.downcast_ref::<LibError>().map(|l| l.0.clone()),
        _ => None,
    }
}

/// `luaL_where(L, 1)`: `source:line: ` of the function that called the library
/// function, when it is Lua code with a current line ("" otherwise, as under `pcall`).
fn where_(lua: &Lua) -> String {
    lua.inspect_stack(1, |d| {
        let line = d.current_line().unwrap_or(0);
        let src = d.source().short_src.map(|s| s.into_owned());
        match src {
            Some(src) if line > 0 => format!("{src}:{line}: "),
            _ => String::new(),
        }
    })
    .unwrap_or_default()
}

/// `luaL_error`: the message with the caller's position.
pub fn error(lua: &Lua, msg: impl AsRef<str>) -> mlua::Error {
    mlua::Error::external(LibError(format!("{}{}", where_(lua), msg.as_ref())))
}

/// An error raised by the Lua core itself inside a C function (`luaG_runerror` with a
/// C function running): no position.
pub fn raw_error(msg: impl Into<String>) -> mlua::Error {
    mlua::Error::external(LibError(msg.into()))
}

/// `luaL_argerror`: names the function as the calling instruction does (`?` when the
/// caller is not Lua code), and counts `self` out of a method call.
pub fn arg_error(lua: &Lua, narg: i32, extramsg: impl AsRef<str>) -> mlua::Error {
    let extramsg = extramsg.as_ref();
    let (name, what) = lua
        .inspect_stack(0, |d| {
            let n = d.names();
            (n.name.map(|s| s.into_owned()), n.name_what)
        })
        .unwrap_or((None, None));
    let mut narg = narg;
    if what == Some("method") {
        narg -= 1;
        if narg == 0 {
            return error(
                lua,
                format!(
                    "calling '{}' on bad self ({extramsg})",
                    name.as_deref().unwrap_or("?")
                ),
            );
        }
    }
    let name = name.as_deref().unwrap_or("?");
    error(
        lua,
        format!("bad argument #{narg} to '{name}' ({extramsg})"),
    )
}

/// `luaL_checkstack`: fails when `used` values plus `space` more pass the C stack limit.
pub fn check_stack(lua: &Lua, used: usize, space: usize, what: &str) -> mlua::Result<()> {
    if used + space > MAX_C_STACK {
        return Err(error(lua, format!("stack overflow ({what})")));
    }
    Ok(())
}

/// Stack slots mlua needs around a callback's results besides its arguments: a
/// preallocated error slot below them, and room past them to rotate it away (which Lua
/// 5.1's compat code asks for with `LUA_MINSTACK` to spare). Measured: a callback with
/// `nargs` arguments can return `8000 - 23 - nargs` values on a fresh VM.
const MLUA_RESERVE: usize = 23;

/// Fail as `luaL_checkstack` would when `n` results are more than mlua can hand back.
/// A C function returns up to `7999 - its stack use` values, so results within about
/// twenty of that limit fail here and not in Redis; past it both fail alike.
pub fn check_results(lua: &Lua, nargs: usize, n: usize, what: &str) -> mlua::Result<()> {
    check_stack(lua, nargs + MLUA_RESERVE, n, what)
}

/// Lua 5.1's type names, as `luaL_typename` gives them (`no value` for a missing one).
fn type_name(v: Option<&Value>) -> &'static str {
    match v {
        None => "no value",
        Some(Value::Nil) => "nil",
        Some(Value::Boolean(_)) => "boolean",
        Some(Value::Integer(_)) | Some(Value::Number(_)) => "number",
        Some(Value::String(_)) => "string",
        Some(Value::Table(_)) => "table",
        Some(Value::Function(_)) => "function",
        Some(Value::Thread(_)) => "thread",
        Some(_) => "userdata",
    }
}

/// C's `(int64_t)x` on x86-64: truncation, and the "integer indefinite" value
/// (`INT64_MIN`) for NaN and anything out of range.
pub fn c_i64(x: f64) -> i64 {
    if x.is_nan() || !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&x) {
        i64::MIN
    } else {
        x as i64
    }
}

/// The number a value holds, if it is a number (not a numeric string).
pub fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Number(n) => Some(*n),
        _ => None,
    }
}

/// A C function's arguments, checked as lauxlib checks them.
pub struct Args<'a> {
    lua: &'a Lua,
    vals: Vec<Value>,
}

impl<'a> Args<'a> {
    pub fn new(lua: &'a Lua, args: MultiValue) -> Args<'a> {
        Args {
            lua,
            vals: args.into_iter().collect(),
        }
    }

    /// Push a nil after the arguments, as a C function that does `lua_pushnil` first
    /// (the next argument then reads as nil, not as no value).
    pub fn push_nil_mark(&mut self) {
        self.vals.push(Value::Nil);
    }

    /// How many arguments were passed (`lua_gettop`).
    pub fn len(&self) -> usize {
        self.vals.len()
    }

    /// Argument `n` (1-based), if passed.
    pub fn get(&self, n: usize) -> Option<&Value> {
        n.checked_sub(1).and_then(|i| self.vals.get(i))
    }

    pub fn values(&self) -> &[Value] {
        &self.vals
    }

    fn type_error(&self, n: usize, expected: &str) -> mlua::Error {
        let got = type_name(self.get(n));
        arg_error(
            self.lua,
            n as i32,
            format!("{expected} expected, got {got}"),
        )
    }

    /// `luaL_checknumber`: a number, or a string that converts to one.
    pub fn number(&self, n: usize) -> mlua::Result<f64> {
        let v = self.get(n).cloned().unwrap_or(Value::Nil);
        if let Some(x) = number(&v) {
            return Ok(x);
        }
        match self.lua.coerce_number(v)? {
            Some(x) => Ok(x),
            None => Err(self.type_error(n, "number")),
        }
    }

    /// `luaL_checkinteger`: as `number`, truncated as C truncates.
    pub fn integer(&self, n: usize) -> mlua::Result<i64> {
        self.number(n).map(c_i64)
    }

    /// `luaL_optinteger`: `default` when the argument is missing or nil.
    pub fn opt_integer(&self, n: usize, default: i64) -> mlua::Result<i64> {
        match self.get(n) {
            None | Some(Value::Nil) => Ok(default),
            Some(_) => self.integer(n),
        }
    }

    /// `luaL_checklstring`: a string, or a number (converted as Lua converts it).
    pub fn bytes(&self, n: usize) -> mlua::Result<Vec<u8>> {
        match self.get(n) {
            Some(Value::String(s)) => Ok(s.as_bytes().to_vec()),
            Some(v @ (Value::Integer(_) | Value::Number(_))) => {
                match self.lua.coerce_string(v.clone())? {
                    Some(s) => Ok(s.as_bytes().to_vec()),
                    None => Err(self.type_error(n, "string")),
                }
            }
            _ => Err(self.type_error(n, "string")),
        }
    }
}

/// Helpers the libraries' unit tests share.
#[cfg(test)]
pub mod testing {
    use mlua::Lua;

    /// A bare Lua state with one library installed by `install`.
    pub fn lua_with(install: fn(&Lua) -> mlua::Result<()>) -> Lua {
        let lua = Lua::new();
        install(&lua).unwrap();
        lua
    }

    /// The string a chunk returns.
    pub fn string(lua: &Lua, code: &str) -> Vec<u8> {
        let s: mlua::LuaString = lua.load(code).eval().unwrap();
        s.as_bytes().to_vec()
    }

    /// The message of the error a chunk (named as a user script) raises.
    pub fn failure(lua: &Lua, code: &str) -> String {
        let e = lua.load(code).set_name("@user_script").exec().unwrap_err();
        super::lib_message(&e).unwrap_or_else(|| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_casts_like_x86() {
        assert_eq!(c_i64(3.9), 3);
        assert_eq!(c_i64(-3.9), -3);
        assert_eq!(c_i64(f64::NAN), i64::MIN);
        assert_eq!(c_i64(9.3e18), i64::MIN);
        assert_eq!(c_i64(-9.223_372_036_854_776e18), i64::MIN);
    }

    #[test]
    fn errors_name_the_function_and_position() {
        let lua = Lua::new();
        let f = lua
            .create_function(|lua, args: MultiValue| {
                let a = Args::new(lua, args);
                a.number(2)
            })
            .unwrap();
        lua.globals()
            .set("lib", lua.create_table().unwrap())
            .unwrap();
        let lib: mlua::Table = lua.globals().get("lib").unwrap();
        lib.set("f", f).unwrap();
        let e = lua
            .load("return lib.f(1)")
            .set_name("@user_script")
            .exec()
            .unwrap_err();
        assert_eq!(
            lib_message(&e).as_deref(),
            Some("user_script:1: bad argument #2 to 'f' (number expected, got no value)")
        );
        let e = lua
            .load("return pcall(lib.f, 1, {})")
            .eval::<(bool, Value)>()
            .unwrap();
        let Value::Error(e) = e.1 else {
            panic!("not an error")
        };
        assert_eq!(
            lib_message(&e).as_deref(),
            Some("bad argument #2 to '?' (number expected, got table)")
        );
    }
}
