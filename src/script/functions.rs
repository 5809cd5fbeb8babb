//! FUNCTION libraries: `#!lua name=<lib>` code that registers named functions with
//! `redis.register_function`, called by FCALL / FCALL_RO.
//!
//! Libraries are kept like scripts (see `registry.rs`): one shared copy of each library's
//! code behind a mutex, touched by FUNCTION LOAD / DELETE / FLUSH / LIST, and a
//! generation number. Each shard thread's VM loads every library's code again when the
//! generation moves (on its next FCALL), so a function runs on the shard that owns its
//! keys with that shard's own compiled copy.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use hashbrown::HashMap;
use mlua::{Function, Lua, Table, Value};

use super::vm::{compile, with_vm};

/// A function as a shard's VM holds it.
#[derive(Clone)]
pub struct Loaded {
    pub(super) f: Function,
    /// Flagged `no-writes`: FCALL_RO may call it, and it may not write.
    pub no_writes: bool,
}

/// A function as FUNCTION LIST shows it.
#[derive(Clone, Debug)]
pub struct Described {
    /// Its name.
    pub name: String,
    /// Its description, if registered with one.
    pub description: Option<String>,
    /// Its flags.
    pub flags: Vec<String>,
}

/// A library.
#[derive(Clone, Debug)]
pub struct Library {
    /// Its name.
    pub name: String,
    /// Its code, shebang line included.
    pub code: Bytes,
    /// Its functions.
    pub functions: Vec<Described>,
}

static LIBRARIES: Mutex<BTreeMap<String, Library>> = Mutex::new(BTreeMap::new());
static GENERATION: AtomicU64 = AtomicU64::new(0);

fn with_libraries<R>(f: impl FnOnce(&mut BTreeMap<String, Library>) -> R) -> R {
    let mut guard = match LIBRARIES.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    f(&mut guard)
}

const FLAGS: &[&str] = &[
    "no-writes",
    "allow-oom",
    "allow-stale",
    "no-cluster",
    "allow-cross-slot-keys",
];

/// The library name from the shebang line, or Redis's error.
fn parse_shebang(code: &[u8]) -> Result<String, String> {
    let Some(rest) = code.strip_prefix(b"#!") else {
        return Err("ERR Missing library metadata".into());
    };
    let Some(line_end) = rest.iter().position(|&c| c == b'\n') else {
        return Err("ERR Invalid library metadata".into());
    };
    let line = String::from_utf8_lossy(&rest[..line_end]).into_owned();
    let mut parts = line.split(' ').filter(|p| !p.is_empty());
    let engine = parts.next().unwrap_or("");
    if !engine.eq_ignore_ascii_case("lua") {
        return Err(format!("ERR Engine '{engine}' not found"));
    }
    let mut name = None;
    for p in parts {
        if p.get(..5).is_some_and(|n| n.eq_ignore_ascii_case("name=")) {
            if name.is_some() {
                return Err(
                    "ERR Invalid metadata value, name argument was given multiple times".into(),
                );
            }
            name = Some(p.get(5..).unwrap_or_default().to_string());
        } else {
            return Err(format!("ERR Invalid metadata value given: {p}"));
        }
    }
    let Some(name) = name else {
        return Err("ERR Library name was not given".into());
    };
    if !valid_name(&name) {
        return Err("ERR Library names can only contain letters, numbers, or underscores(_) and must be at least one character long".into());
    }
    Ok(name)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Run a library's code on `lua`, collecting what it registers.
fn load_on(lua: &Lua, code: &[u8]) -> Result<Vec<(Described, Loaded)>, String> {
    let f = compile(lua, super::vm::without_shebang(code), "@user_function")?;
    let found: std::rc::Rc<std::cell::RefCell<Vec<(Described, Loaded)>>> = Default::default();
    let result = lua.scope(|scope| {
        let sink = found.clone();
        let register = scope.create_function(move |_, args: mlua::Variadic<Value>| {
            let item = registration(&args).map_err(mlua::Error::RuntimeError)?;
            let mut sink = sink.borrow_mut();
            if sink.iter().any(|(d, _)| d.name == item.0.name) {
                return Err(mlua::Error::RuntimeError(
                    "Function already exists in the library".into(),
                ));
            }
            sink.push(item);
            Ok(())
        })?;
        let redis: Table = lua.globals().get("redis")?;
        // The global is a read-only proxy; its __index is the real table.
        let real: Table = match redis.metatable() {
            Some(mt) => mt.raw_get("__index")?,
            None => redis,
        };
        real.raw_set("register_function", register)?;
        let out = super::vm::while_loading(|| f.call::<Value>(()));
        real.raw_set("register_function", Value::Nil)?;
        out
    });
    if let Err(e) = result {
        let msg = e.to_string();
        let msg = msg
            .lines()
            .find(|l| !l.trim().is_empty() && !l.contains("stack traceback"))
            .unwrap_or("")
            .replace("runtime error: ", "");
        return Err(format!("ERR Error registering functions: {msg}"));
    }
    let found = found.take();
    if found.is_empty() {
        return Err("ERR No functions registered".into());
    }
    Ok(found)
}

fn registration(args: &[Value]) -> Result<(Described, Loaded), String> {
    let (name, callback, flags, description) = match args {
        [Value::String(n), Value::Function(f)] => {
            (n.to_string_lossy(), f.clone(), Vec::new(), None)
        }
        [Value::Table(t)] => {
            let mut name = None;
            let mut callback = None;
            let mut flags = Vec::new();
            let mut description = None;
            for (k, v) in t.pairs::<String, Value>().flatten() {
                match (k.as_str(), v) {
                    ("function_name", Value::String(s)) => name = Some(s.to_string_lossy()),
                    ("callback", Value::Function(f)) => callback = Some(f),
                    ("description", Value::String(s)) => description = Some(s.to_string_lossy()),
                    ("flags", Value::Table(fl)) => {
                        for v in fl.sequence_values::<String>() {
                            let v = v.map_err(|_| "unknown flag given".to_string())?;
                            if !FLAGS.contains(&v.as_str()) {
                                return Err("unknown flag given".into());
                            }
                            flags.push(v);
                        }
                    }
                    (other, _) => {
                        return Err(format!(
                            "unknown argument given to register_function: {other}"
                        ))
                    }
                }
            }
            let name =
                name.ok_or("function_name argument given to register_function must be a string")?;
            let callback = callback
                .ok_or("callback argument given to register_function must be a function")?;
            (name, callback, flags, description)
        }
        [Value::String(_), _] => {
            return Err(
                "wrong argument given to register_function, callback must be a function".into(),
            )
        }
        _ => return Err("wrong number of arguments to redis.register_function".into()),
    };
    if !valid_name(&name) {
        return Err("Function names can only contain letters, numbers, or underscores(_) and must be at least one character long".into());
    }
    let no_writes = flags.iter().any(|f| f == "no-writes");
    Ok((
        Described {
            name,
            description,
            flags,
        },
        Loaded {
            f: callback,
            no_writes,
        },
    ))
}

/// FUNCTION LOAD [REPLACE]: check and compile on this shard, then publish to every shard.
pub fn load(code: Bytes, replace: bool) -> Result<String, String> {
    let name = parse_shebang(&code)?;
    let found = with_vm(|vm| load_on(vm.lua(), &code))?;
    let functions: Vec<Described> = found.into_iter().map(|(d, _)| d).collect();
    with_libraries(|libs| {
        if libs.contains_key(&name) && !replace {
            return Err(format!("ERR Library '{name}' already exists"));
        }
        for (other, lib) in libs.iter() {
            if *other == name {
                continue;
            }
            if let Some(f) = functions
                .iter()
                .find(|f| lib.functions.iter().any(|g| g.name == f.name))
            {
                return Err(format!("ERR Function {} already exists", f.name));
            }
        }
        let mut next = libs.clone();
        next.insert(
            name.clone(),
            Library {
                name: name.clone(),
                code,
                functions,
            },
        );
        commit(libs, next)?;
        Ok(name)
    })
}

/// FUNCTION DELETE.
pub fn delete(name: &str) -> Result<(), String> {
    with_libraries(|libs| {
        if !libs.contains_key(name) {
            return Err("ERR Library not found".into());
        }
        let mut next = libs.clone();
        next.remove(name);
        commit(libs, next)
    })
}

/// FUNCTION FLUSH.
pub fn flush() -> Result<(), String> {
    with_libraries(|libs| commit(libs, BTreeMap::new()))
}

/// Make `next` the libraries: on disk first (when persistence is on), so a library
/// whose load was acknowledged survives a crash, then for every shard.
fn commit(
    libs: &mut BTreeMap<String, Library>,
    next: BTreeMap<String, Library>,
) -> Result<(), String> {
    if let Some(dir) = DIR.get() {
        save(dir, &next).map_err(|e| format!("ERR cannot save the function libraries: {e}"))?;
    }
    *libs = next;
    GENERATION.fetch_add(1, Ordering::AcqRel);
    Ok(())
}

/// Where the libraries are kept, under `--dir` (Redis keeps functions with the data).
static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
const FILE: &str = "functions.lib";
const MAGIC: &[u8] = b"coreshard-functions-1\n";

fn save(dir: &Path, libs: &BTreeMap<String, Library>) -> std::io::Result<()> {
    let mut out = MAGIC.to_vec();
    for lib in libs.values() {
        out.extend_from_slice(&(lib.code.len() as u64).to_le_bytes());
        out.extend_from_slice(&lib.code);
    }
    let tmp = dir.join(format!("{FILE}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&out)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

/// At start, with persistence on: load the libraries kept in `dir` and keep them there
/// from now on. Returns how many libraries were loaded.
pub fn restore(dir: &Path) -> Result<usize, String> {
    let _ = DIR.set(dir.to_path_buf());
    let path = dir.join(FILE);
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let bad = || format!("{} is damaged", path.display());
    let mut rest = data.strip_prefix(MAGIC).ok_or_else(bad)?;
    let mut libs = BTreeMap::new();
    while !rest.is_empty() {
        let (len, tail) = rest.split_at_checked(8).ok_or_else(bad)?;
        let len = u64::from_le_bytes(len.try_into().map_err(|_| bad())?) as usize;
        let (code, tail) = tail.split_at_checked(len).ok_or_else(bad)?;
        rest = tail;
        let code = Bytes::copy_from_slice(code);
        let name = parse_shebang(&code)?;
        let found = with_vm(|vm| load_on(vm.lua(), &code))
            .map_err(|e| format!("library '{name}' in {} does not load: {e}", path.display()))?;
        let functions = found.into_iter().map(|(d, _)| d).collect();
        libs.insert(
            name.clone(),
            Library {
                name,
                code,
                functions,
            },
        );
    }
    let n = libs.len();
    with_libraries(|l| *l = libs);
    GENERATION.fetch_add(1, Ordering::AcqRel);
    Ok(n)
}

/// FUNCTION LIST: every library, in name order.
pub fn list() -> Vec<Library> {
    with_libraries(|libs| libs.values().cloned().collect())
}

/// Whether function `name` exists (in any library).
pub fn exists(name: &str) -> bool {
    with_libraries(|libs| {
        libs.values()
            .flat_map(|l| l.functions.iter())
            .any(|f| f.name == name)
    })
}

impl super::vm::Vm {
    /// Function `name` on this thread's VM, reloading the libraries if they changed.
    pub(super) fn function(&mut self, name: &str) -> Result<Loaded, String> {
        let generation = GENERATION.load(Ordering::Acquire);
        if generation != self.functions_generation {
            let libs = list();
            let mut functions = HashMap::new();
            for lib in &libs {
                match load_on(self.lua(), &lib.code) {
                    Ok(found) => {
                        for (d, l) in found {
                            functions.insert(d.name, l);
                        }
                    }
                    Err(e) => {
                        tracing::warn!("library '{}' did not load on this shard: {e}", lib.name)
                    }
                }
            }
            self.functions = functions;
            self.functions_generation = generation;
        }
        match self.functions.get(name) {
            Some(l) => Ok(l.clone()),
            None => Err("ERR Function not found".into()),
        }
    }
}
