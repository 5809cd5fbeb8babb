//! The script cache: SHA1 → body, for EVALSHA, SCRIPT LOAD/EXISTS/FLUSH.
//!
//! Once SCRIPT LOAD (or EVAL) has answered, an EVALSHA from any connection on any shard
//! must find the script, as in Redis. A mailbox broadcast cannot promise that without an
//! acknowledgement round, so the cache has one shared copy behind a mutex, and each shard
//! thread keeps its own copy in front of it: the hot path (an EVALSHA or EVAL of a known
//! script) reads only the thread's map and one atomic generation; the mutex is taken only
//! the first time a shard meets a script, and by LOAD and FLUSH. FLUSH bumps the
//! generation, so every shard drops its copy before its next lookup.
//!
//! Bodies arriving by EVAL are kept too (EVALSHA after EVAL works, as in Redis), but at
//! most [`MAX_EVAL_SCRIPTS`] of them, oldest out first, so a client that generates
//! scripts cannot grow memory without bound (Redis 7.4 bounds them the same way).
//! SCRIPT LOAD bodies stay until SCRIPT FLUSH.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use hashbrown::HashMap;

/// EVAL-sourced scripts kept at most (oldest dropped first).
pub const MAX_EVAL_SCRIPTS: usize = 500;
/// A shard thread's own copy is dropped and refilled past this many entries.
const MAX_LOCAL: usize = 4096;

/// A script's id: its SHA1 in lower-case hex.
pub type Sha = [u8; 40];

#[derive(Default)]
struct Shared {
    bodies: HashMap<Sha, (Bytes, bool)>,
    /// EVAL-sourced entries, oldest first.
    evals: VecDeque<Sha>,
}

static SHARED: Mutex<Option<Shared>> = Mutex::new(None);
static GENERATION: AtomicU64 = AtomicU64::new(0);

#[derive(Default)]
struct Local {
    generation: u64,
    bodies: HashMap<Sha, Bytes>,
}

thread_local! {
    static LOCAL: RefCell<Local> = RefCell::new(Local::default());
}

/// SHA1 of `body` in lower-case hex.
pub fn sha1_hex(body: &[u8]) -> Sha {
    let digest = sha1_smol::Sha1::from(body).digest().bytes();
    let mut out = [0u8; 40];
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in digest.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 15)];
    }
    out
}

/// `text` as a script id (case-insensitive, as EVALSHA accepts it), if it has the shape.
pub fn parse_sha(text: &[u8]) -> Option<Sha> {
    if text.len() != 40 {
        return None;
    }
    let mut out = [0u8; 40];
    for (o, c) in out.iter_mut().zip(text) {
        *o = c.to_ascii_lowercase();
    }
    Some(out)
}

fn with_shared<R>(f: impl FnOnce(&mut Shared) -> R) -> R {
    let mut guard = match SHARED.lock() {
        Ok(g) => g,
        // A panic elsewhere while holding the lock cannot leave the map half-updated in a
        // way that matters here: every update is a single insert or removal.
        Err(poisoned) => poisoned.into_inner(),
    };
    f(guard.get_or_insert_with(Shared::default))
}

fn with_local<R>(f: impl FnOnce(&mut Local) -> R) -> R {
    LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        let generation = GENERATION.load(Ordering::Acquire);
        if l.generation != generation || l.bodies.len() > MAX_LOCAL {
            l.bodies.clear();
            l.generation = generation;
        }
        f(&mut l)
    })
}

/// Remember `body` (by SCRIPT LOAD when `loaded`, else by EVAL); returns its id.
pub fn remember(body: &[u8], loaded: bool) -> Sha {
    let sha = sha1_hex(body);
    remember_as(sha, body, loaded);
    sha
}

/// Remember `body` under its already computed id (copied only the first time this
/// thread meets it).
pub fn remember_as(sha: Sha, body: &[u8], loaded: bool) {
    let known = with_local(|l| l.bodies.contains_key(&sha));
    if known && !loaded {
        return;
    }
    let body = Bytes::copy_from_slice(body);
    let body = &body;
    with_shared(|s| {
        match s.bodies.get_mut(&sha) {
            Some(entry) => entry.1 |= loaded,
            None => {
                s.bodies.insert(sha, (body.clone(), loaded));
                if !loaded {
                    s.evals.push_back(sha);
                }
            }
        }
        while s.evals.len() > MAX_EVAL_SCRIPTS {
            let Some(old) = s.evals.pop_front() else {
                break;
            };
            if s.bodies.get(&old).is_some_and(|(_, loaded)| !loaded) {
                s.bodies.remove(&old);
            }
        }
    });
    with_local(|l| {
        l.bodies.insert(sha, body.clone());
    });
}

/// The body of script `sha`, if cached.
pub fn get(sha: &Sha) -> Option<Bytes> {
    if let Some(b) = with_local(|l| l.bodies.get(sha).cloned()) {
        return Some(b);
    }
    let body = with_shared(|s| s.bodies.get(sha).map(|(b, _)| b.clone()))?;
    with_local(|l| {
        l.bodies.insert(*sha, body.clone());
    });
    Some(body)
}

/// SCRIPT FLUSH: forget every script, on every shard.
pub fn flush() {
    with_shared(|s| {
        s.bodies.clear();
        s.evals.clear();
    });
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// The current generation (compiled functions are dropped when it moves).
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_matches_redis() {
        assert_eq!(
            &sha1_hex(b"return 1"),
            b"e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
        );
        assert_eq!(&sha1_hex(b""), b"da39a3ee5e6b4b0d3255bfef95601890afd80709");
    }

    #[test]
    fn eval_scripts_are_bounded_and_loaded_ones_stay() {
        let loaded = Bytes::from_static(b"return 'kept'");
        let kept = remember(&loaded, true);
        let first = remember(&Bytes::from_static(b"return 0"), false);
        for i in 1..=MAX_EVAL_SCRIPTS + 10 {
            remember(&Bytes::from(format!("return {i}")), false);
        }
        // Another thread sees only the shared copy.
        let (k, f) = std::thread::spawn(move || (get(&kept).is_some(), get(&first).is_some()))
            .join()
            .unwrap_or((false, true));
        assert!(k, "a SCRIPT LOAD body is never evicted");
        assert!(!f, "the oldest EVAL body went");
    }
}
