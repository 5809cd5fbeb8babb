//! Entries in fixed-size chunks with stable slot numbers and a free list. Growing adds a
//! chunk; nothing is copied and no capacity is wasted beyond the last chunk.

use super::entry::Entry;
use super::Object;

const CHUNK: usize = 4096;
const NONE: u32 = u32::MAX;

pub(super) struct Arena<O> {
    chunks: Vec<Vec<Entry<O>>>,
    free_head: u32,
    live: u32,
}

impl<O: Object> Default for Arena<O> {
    fn default() -> Self {
        Arena {
            chunks: Vec::new(),
            free_head: NONE,
            live: 0,
        }
    }
}

impl<O: Object> Arena<O> {
    /// Slots ever handed out (live or free); slot numbers are below this.
    pub fn slots(&self) -> u32 {
        match self.chunks.last() {
            Some(last) => ((self.chunks.len() - 1) * CHUNK + last.len()) as u32,
            None => 0,
        }
    }

    fn at(&self, slot: u32) -> Option<&Entry<O>> {
        let s = slot as usize;
        self.chunks.get(s / CHUNK)?.get(s % CHUNK)
    }

    fn at_mut(&mut self, slot: u32) -> Option<&mut Entry<O>> {
        let s = slot as usize;
        self.chunks.get_mut(s / CHUNK)?.get_mut(s % CHUNK)
    }

    pub fn get(&self, slot: u32) -> Option<&Entry<O>> {
        self.at(slot).filter(|e| !e.is_free())
    }

    pub fn get_mut(&mut self, slot: u32) -> Option<&mut Entry<O>> {
        self.at_mut(slot).filter(|e| !e.is_free())
    }

    pub fn insert(&mut self, entry: Entry<O>) -> u32 {
        self.live += 1;
        if self.free_head != NONE {
            let slot = self.free_head;
            if let Some(e) = self.at_mut(slot) {
                let next = e.next_free().unwrap_or(NONE);
                *e = entry;
                self.free_head = next;
                return slot;
            }
        }
        if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        let slot = self.slots();
        if let Some(last) = self.chunks.last_mut() {
            last.push(entry);
        }
        slot
    }

    pub fn replace(&mut self, slot: u32, entry: Entry<O>) {
        if let Some(e) = self.get_mut(slot) {
            *e = entry;
        }
    }

    pub fn remove(&mut self, slot: u32) -> Option<Entry<O>> {
        let head = self.free_head;
        let e = self.get_mut(slot)?;
        let old = std::mem::replace(e, Entry::free(head));
        self.free_head = slot;
        self.live -= 1;
        Some(old)
    }

    pub fn bytes(&self) -> usize {
        self.chunks.len() * CHUNK * std::mem::size_of::<Entry<O>>()
    }
}
