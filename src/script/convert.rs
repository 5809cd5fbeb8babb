//! Replies between Redis and Lua, by Redis 7's conversion rules.
//!
//! A command's reply reaches the script as Redis would give it to its fake script
//! client: encoded in the script's protocol (RESP2 unless `redis.setresp(3)`), then turned
//! into Lua values. The script's return value becomes a reply the usual way, encoded
//! later in the calling client's own protocol.

use coreshard_protocol::{Encoder, Protocol, Value};
use mlua::{Lua, Table, Value as Lua_};

use crate::server::ops::OpResult;
use crate::server::reply::encode_result;

/// Deepest nesting converted (a self-referencing table would otherwise never end).
const MAX_DEPTH: usize = 200;

/// A command's reply as the script sees it.
pub fn result_to_lua(lua: &Lua, result: &OpResult, resp3: bool) -> mlua::Result<Lua_> {
    // The common shapes directly; the rest through the encoder the clients see.
    match result {
        OpResult::Int(n) => return Ok(Lua_::Number(*n as f64)),
        OpResult::Value(Some(b)) => return Ok(Lua_::String(lua.create_string(b)?)),
        OpResult::Value(None) if !resp3 => return Ok(Lua_::Boolean(false)),
        OpResult::Value(None) => return Ok(Lua_::Nil),
        OpResult::Ok => return status_table(lua, "ok", "OK"),
        OpResult::Error(e) => return status_table(lua, "err", e),
        _ => {}
    }
    let proto = if resp3 {
        Protocol::Resp3
    } else {
        Protocol::Resp2
    };
    let mut buf = Vec::new();
    encode_result(&mut Encoder::new(&mut buf, proto), result);
    match coreshard_protocol::parse_value(&buf) {
        Ok(Some((value, _))) => value_to_lua(lua, &value, resp3),
        _ => Err(mlua::Error::RuntimeError(
            "internal: undecodable reply".into(),
        )),
    }
}

fn status_table(lua: &Lua, field: &str, text: &str) -> mlua::Result<Lua_> {
    let t = lua.create_table()?;
    t.raw_set(field, text)?;
    Ok(Lua_::Table(t))
}

/// One reply value as a Lua value.
pub fn value_to_lua(lua: &Lua, v: &Value, resp3: bool) -> mlua::Result<Lua_> {
    Ok(match v {
        Value::Simple(s) => status_table(lua, "ok", s)?,
        Value::Error(s) => status_table(lua, "err", s)?,
        Value::Integer(n) => Lua_::Number(*n as f64),
        Value::Bulk(b) => Lua_::String(lua.create_string(b)?),
        Value::Null => {
            if resp3 {
                Lua_::Nil
            } else {
                Lua_::Boolean(false)
            }
        }
        Value::Array(items) | Value::Push(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, value_to_lua(lua, item, resp3)?)?;
            }
            Lua_::Table(t)
        }
        Value::Map(pairs) => {
            let inner = lua.create_table_with_capacity(0, pairs.len())?;
            for (k, v) in pairs {
                inner.raw_set(value_to_lua(lua, k, resp3)?, value_to_lua(lua, v, resp3)?)?;
            }
            let t = lua.create_table()?;
            t.raw_set("map", inner)?;
            Lua_::Table(t)
        }
        Value::Set(items) => {
            let inner = lua.create_table_with_capacity(0, items.len())?;
            for item in items {
                inner.raw_set(value_to_lua(lua, item, resp3)?, true)?;
            }
            let t = lua.create_table()?;
            t.raw_set("set", inner)?;
            Lua_::Table(t)
        }
        Value::Double(x) => {
            let t = lua.create_table()?;
            t.raw_set("double", *x)?;
            Lua_::Table(t)
        }
        Value::Boolean(b) => Lua_::Boolean(*b),
        Value::BigNumber(s) => status_table(lua, "big_number", s)?,
        Value::Verbatim(format, text) => {
            let inner = lua.create_table()?;
            inner.raw_set("format", lua.create_string(format)?)?;
            inner.raw_set("string", lua.create_string(text)?)?;
            let t = lua.create_table()?;
            t.raw_set("verbatim_string", inner)?;
            Lua_::Table(t)
        }
        Value::Raw(bytes) => match coreshard_protocol::parse_value(bytes) {
            Ok(Some((value, _))) => value_to_lua(lua, &value, resp3)?,
            _ => Lua_::Nil,
        },
    })
}

/// Error and status texts are one line in RESP.
fn one_line(s: &[u8]) -> String {
    String::from_utf8_lossy(s)
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect()
}

/// The script's return value as a reply. `resp3`: the script chose RESP3 replies
/// (booleans stay booleans; in RESP2 `true` is 1 and `false` nil).
pub fn lua_to_value(v: &Lua_, resp3: bool) -> Value {
    to_value(v, resp3, 0)
}

fn to_value(v: &Lua_, resp3: bool, depth: usize) -> Value {
    if depth > MAX_DEPTH {
        return Value::Error("ERR reached lua stack limit".into());
    }
    match v {
        Lua_::String(s) => Value::Bulk(bytes::Bytes::copy_from_slice(&s.as_bytes())),
        Lua_::Boolean(b) => {
            if resp3 {
                Value::Boolean(*b)
            } else if *b {
                Value::Integer(1)
            } else {
                Value::Null
            }
        }
        Lua_::Integer(n) => Value::Integer(*n),
        // As Redis's `(long long)` cast: out of range and NaN are INT64_MIN.
        Lua_::Number(n) => Value::Integer(super::args::c_i64(*n)),
        Lua_::Table(t) => table_to_value(t, resp3, depth),
        _ => Value::Null,
    }
}

fn field(t: &Table, name: &str) -> Lua_ {
    t.raw_get(name).unwrap_or(Lua_::Nil)
}

fn table_to_value(t: &Table, resp3: bool, depth: usize) -> Value {
    if let Lua_::String(s) = field(t, "err") {
        return Value::Error(one_line(&s.as_bytes()));
    }
    if let Lua_::String(s) = field(t, "ok") {
        return Value::Simple(one_line(&s.as_bytes()));
    }
    match field(t, "double") {
        Lua_::Number(x) => return Value::Double(x),
        Lua_::Integer(n) => return Value::Double(n as f64),
        _ => {}
    }
    if let Lua_::String(s) = field(t, "big_number") {
        return Value::BigNumber(one_line(&s.as_bytes()));
    }
    if let Lua_::Table(m) = field(t, "map") {
        let mut pairs = Vec::new();
        for (k, v) in m.pairs::<Lua_, Lua_>().flatten() {
            pairs.push((
                to_value(&k, resp3, depth + 1),
                to_value(&v, resp3, depth + 1),
            ));
        }
        return Value::Map(pairs);
    }
    if let Lua_::Table(s) = field(t, "set") {
        let mut items = Vec::new();
        for (k, _) in s.pairs::<Lua_, Lua_>().flatten() {
            items.push(to_value(&k, resp3, depth + 1));
        }
        return Value::Set(items);
    }
    if let Lua_::Table(vs) = field(t, "verbatim_string") {
        if let (Lua_::String(f), Lua_::String(s)) = (field(&vs, "format"), field(&vs, "string")) {
            let f = f.as_bytes();
            if f.len() == 3 {
                let mut format = [0u8; 3];
                format.copy_from_slice(&f);
                return Value::Verbatim(format, bytes::Bytes::copy_from_slice(&s.as_bytes()));
            }
        }
    }
    let mut items = Vec::new();
    let mut i = 1usize;
    loop {
        let v: Lua_ = t.raw_get(i).unwrap_or(Lua_::Nil);
        if v.is_nil() {
            break;
        }
        let item = to_value(&v, resp3, depth + 1);
        if matches!(&item, Value::Error(e) if e == "ERR reached lua stack limit") {
            return item;
        }
        items.push(item);
        i += 1;
    }
    Value::Array(items)
}
