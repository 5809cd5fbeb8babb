//! A point-in-time view of the map, read in bounded steps while the map keeps changing
//! (copy-on-write per key, no fork, no pause proportional to the key count).
//!
//! [`TtlMap::snapshot_begin`] notes a cursor (slot 0) and the end of the slots in use.
//! [`TtlMap::snapshot_step`] walks slots from the cursor up, handing each live entry to
//! the caller as it is now. Before any change to an entry the walk has not reached yet
//! (replace, edit, deadline change, removal, expiry, FLUSHALL), the map saves a copy of
//! its state at the start (key, value, deadline) and marks the slot done, so the walk
//! skips it; a slot filled anew after the start (a freed slot reused) is marked too.
//! Slots at or past the end were empty at the start. Saved copies go out first in the
//! next step. So the steps hand out exactly the live keys of the start, each once, with
//! their values and deadlines of the start.
//!
//! Costs: nothing while no snapshot runs but one branch per change; during one, the first
//! change to each not-yet-visited key copies its value (a refcount for large strings, a
//! clone for objects: the owner's `Clone`), as a forked child's page copies would.

use bytes::Bytes;

use super::arena::Arena;
use super::entry::{Entry, Owned, Stored, ValueRef, FAR};
use super::{Object, TtlMap};

/// The state of a running snapshot.
pub(super) struct Snap<O> {
    /// Slots below this were handed out (or skipped).
    cursor: u32,
    /// Slots at or past this were empty at the start.
    end: u32,
    /// Slots at or past the cursor whose start state is settled: saved, or empty at the
    /// start and filled since.
    done: hashbrown::HashSet<u32>,
    /// Start states of changed entries, to hand out next.
    saved: Vec<(Bytes, Owned<O>, u64)>,
    /// The start time: keys expired then are not part of the snapshot.
    now: u64,
    /// How to copy an object (the owner's `Clone`).
    copy: fn(&O) -> O,
    /// The entries and far deadlines of the map as it was emptied (FLUSHALL) while the
    /// walk had not finished: handed over whole, walked instead of the map's (whose slots
    /// no longer concern the snapshot), so emptying costs no copy.
    frozen: Option<(Arena<O>, hashbrown::HashMap<u32, u64>)>,
}

/// The exact deadline of `e` at `slot`, its far part looked up in `far`.
fn deadline_in(far: &hashbrown::HashMap<u32, u64>, slot: u32, e: &Entry<impl Object>) -> u64 {
    match e.deadline() {
        FAR => far.get(&slot).copied().unwrap_or(FAR),
        d => d,
    }
}

impl<O: Object> TtlMap<O> {
    /// Start a snapshot of the live keys as they are now (replacing one in progress).
    /// Hand them out with [`TtlMap::snapshot_step`].
    pub fn snapshot_begin(&mut self, now: u64)
    where
        O: Clone,
    {
        self.snap = Some(Box::new(Snap {
            cursor: 0,
            end: self.arena.slots(),
            done: hashbrown::HashSet::new(),
            saved: Vec::new(),
            now,
            copy: O::clone,
            frozen: None,
        }));
    }

    /// Drop the snapshot in progress, if any.
    pub fn snapshot_abort(&mut self) {
        self.snap = None;
    }

    /// Whether a snapshot is in progress.
    pub fn snapshot_running(&self) -> bool {
        self.snap.is_some()
    }

    /// Hand up to about `budget` entries of the snapshot to `f` (key, value, deadline,
    /// 0 = none); returns true once every entry was handed out (the snapshot is then
    /// over). Without a snapshot in progress, returns true at once.
    pub fn snapshot_step(
        &mut self,
        budget: usize,
        mut f: impl FnMut(&[u8], Stored<'_, O>, u64),
    ) -> bool {
        let Some(mut snap) = self.snap.take() else {
            return true;
        };
        let mut work = 0;
        while work < budget {
            let Some((key, value, deadline)) = snap.saved.pop() else {
                break;
            };
            work += 1;
            if deadline != 0 && deadline <= snap.now {
                continue;
            }
            let stored = match &value {
                Owned::Bytes(b) => Stored::Bytes(ValueRef::Shared(b)),
                Owned::Object(o) => Stored::Object(&**o),
            };
            f(&key, stored, deadline);
        }
        let (arena, far) = match &snap.frozen {
            Some((arena, far)) => (arena, far),
            None => (&self.arena, &self.far),
        };
        while work < budget && snap.cursor < snap.end {
            let slot = snap.cursor;
            snap.cursor += 1;
            work += 1;
            if snap.done.remove(&slot) {
                continue;
            }
            if let Some(e) = arena.get(slot) {
                let deadline = deadline_in(far, slot, e);
                if deadline == 0 || deadline > snap.now {
                    f(e.key(), e.value(), deadline);
                }
            }
        }
        let finished = snap.cursor >= snap.end && snap.saved.is_empty();
        if !finished {
            self.snap = Some(snap);
        }
        finished
    }

    /// Call before changing or removing the entry at `slot`: a snapshot that has not
    /// reached it saves its start state first.
    #[inline]
    pub(super) fn snapshot_keep(&mut self, slot: u32) {
        if self.snap.is_some() {
            self.snapshot_save(slot);
        }
    }

    #[cold]
    fn snapshot_save(&mut self, slot: u32) {
        let Some(snap) = self.snap.as_ref() else {
            return;
        };
        if snap.frozen.is_some()
            || slot < snap.cursor
            || slot >= snap.end
            || snap.done.contains(&slot)
        {
            return;
        }
        let copy = snap.copy;
        let Some(e) = self.arena.get(slot) else {
            return;
        };
        let deadline = self.deadline_at(slot, e);
        let key = Bytes::copy_from_slice(e.key());
        let value = match e.value() {
            Stored::Bytes(v) => Owned::Bytes(v.to_bytes()),
            Stored::Object(o) => Owned::Object(Box::new(copy(o))),
        };
        if let Some(snap) = self.snap.as_mut() {
            snap.saved.push((key, value, deadline));
            snap.done.insert(slot);
        }
    }

    /// Call after filling `slot` with a new key: it was empty at the snapshot's start.
    #[inline]
    pub(super) fn snapshot_filled(&mut self, slot: u32) {
        if let Some(snap) = self.snap.as_mut() {
            if snap.frozen.is_none() && slot >= snap.cursor && slot < snap.end {
                snap.done.insert(slot);
            }
        }
    }

    /// The map is about to be emptied: a snapshot in progress takes its entries and far
    /// deadlines as they are (its walk goes on over them; no copy).
    pub(super) fn snapshot_take_all(&mut self) {
        let Some(snap) = self.snap.as_mut() else {
            return;
        };
        if snap.frozen.is_none() {
            let arena = std::mem::take(&mut self.arena);
            let far = std::mem::take(&mut self.far);
            snap.frozen = Some((arena, far));
        }
    }
}
