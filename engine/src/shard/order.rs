//! A connection's reply order: reserved reply slots, each with the output written after it
//! and before the next one. While no slot is owed, output goes straight to the
//! connection's buffer and this costs nothing.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::sys::Chunk;

/// One reserved reply position and what was written behind it.
#[derive(Default)]
pub(crate) struct Owed {
    /// The slot's reply once filled.
    answer: Option<Vec<u8>>,
    /// Output written after the slot, in order: chunks, then `tail`.
    behind: Vec<Chunk>,
    /// The owned buffer output behind the slot is appended to.
    pub tail: Vec<u8>,
}

impl Owed {
    /// Bytes of `behind`.
    fn behind_len(&self) -> usize {
        self.behind.iter().map(|c| c.as_slice().len()).sum()
    }
}

/// Released tail buffers kept for new slots (so a pipeline answered across shards does
/// not allocate a buffer per slot).
const SPARE_TAILS: usize = 32;
/// Larger tail buffers are freed rather than kept.
const SPARE_TAIL_BYTES: usize = 4096;

/// The slots a connection still owes, oldest first.
#[derive(Default)]
pub(crate) struct Order {
    /// Sequence number of `slots[0]` (or of the next slot, when none is owed).
    first_seq: u64,
    slots: VecDeque<Owed>,
    spare: Vec<Vec<u8>>,
    /// Bytes held in the slots except the newest slot's `tail` (which the handler writes
    /// to directly): filled answers, `behind` chunks and older slots' tails.
    sealed: usize,
}

impl Order {
    /// Slots reserved and not yet released (unfilled, or filled behind an unfilled one).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Output bytes held behind owed slots (filled answers included): sent once the
    /// slots before them are filled, and counted with the connection's unsent output.
    pub fn held_bytes(&self) -> usize {
        self.sealed + self.slots.back().map_or(0, |o| o.tail.len())
    }

    /// Reserve the next position; returns its sequence number.
    pub fn reserve(&mut self) -> u64 {
        if let Some(last) = self.slots.back() {
            // No longer written to: its tail is counted from now on.
            self.sealed += last.tail.len();
        }
        let tail = self.spare.pop().unwrap_or_default();
        self.slots.push_back(Owed {
            tail,
            ..Owed::default()
        });
        self.first_seq + self.slots.len() as u64 - 1
    }

    /// Where new output goes while slots are owed: the newest slot's tail.
    pub fn newest_tail(&mut self) -> Option<&mut Vec<u8>> {
        self.slots.back_mut().map(|o| &mut o.tail)
    }

    /// Queue a shared value behind the newest slot (after what its tail holds). False
    /// (and dropped) if no slot is owed.
    pub fn push_shared(&mut self, bytes: Bytes) -> bool {
        let Some(owed) = self.slots.back_mut() else {
            return false;
        };
        if !owed.tail.is_empty() {
            self.sealed += owed.tail.len();
            owed.behind
                .push(Chunk::Owned(std::mem::take(&mut owed.tail)));
        }
        self.sealed += bytes.len();
        owed.behind.push(Chunk::Shared(bytes));
        true
    }

    /// Whether `seq` is the oldest owed slot and not filled yet: its reply may go straight
    /// to the connection's output.
    pub fn is_unfilled_front(&self, seq: u64) -> bool {
        seq == self.first_seq && self.slots.front().is_some_and(|o| o.answer.is_none())
    }

    /// Whether slot `seq` is owed and not filled yet.
    pub fn is_unfilled(&self, seq: u64) -> bool {
        seq.checked_sub(self.first_seq)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.slots.get(i))
            .is_some_and(|o| o.answer.is_none())
    }

    /// A buffer for an answer (one released before, when there is one).
    pub fn take_buffer(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }

    /// Keep a released buffer for reuse when it is small.
    fn recycle(&mut self, buf: Option<Vec<u8>>) {
        if let Some(mut buf) = buf {
            let cap = buf.capacity();
            if self.spare.len() < SPARE_TAILS && cap > 0 && cap <= SPARE_TAIL_BYTES {
                buf.clear();
                self.spare.push(buf);
            }
        }
    }

    /// Fill slot `seq`. False if it is unknown (already released) or filled before.
    pub fn fill(&mut self, seq: u64, answer: Vec<u8>) -> bool {
        let Some(idx) = seq
            .checked_sub(self.first_seq)
            .and_then(|i| usize::try_from(i).ok())
        else {
            return false;
        };
        match self.slots.get_mut(idx) {
            Some(owed) if owed.answer.is_none() => {
                self.sealed += answer.len();
                owed.answer = Some(answer);
                true
            }
            _ => false,
        }
    }

    /// Release the filled prefix, in order, to `emit` (answer, then what was written
    /// behind it); `emit` copies what it gets as `Owned`, or keeps it. Returns how many
    /// slots were released.
    pub fn release(&mut self, mut emit: impl FnMut(Chunk) -> Option<Vec<u8>>) -> usize {
        let mut released = 0;
        while self.slots.front().is_some_and(|o| o.answer.is_some()) {
            let Some(owed) = self.slots.pop_front() else {
                break;
            };
            self.first_seq += 1;
            released += 1;
            let tail_counted = if self.slots.is_empty() {
                0
            } else {
                owed.tail.len()
            };
            self.sealed -=
                owed.answer.as_ref().map_or(0, Vec::len) + owed.behind_len() + tail_counted;
            if let Some(answer) = owed.answer {
                let answer = if answer.is_empty() {
                    Some(answer)
                } else {
                    emit(Chunk::Owned(answer))
                };
                self.recycle(answer);
            }
            for chunk in owed.behind {
                emit(chunk);
            }
            let tail = if owed.tail.is_empty() {
                Some(owed.tail)
            } else {
                emit(Chunk::Owned(owed.tail))
            };
            self.recycle(tail);
        }
        debug_assert!(!self.slots.is_empty() || self.sealed == 0);
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(order: &mut Order) -> Vec<u8> {
        let mut out = Vec::new();
        order.release(|c| {
            out.extend_from_slice(c.as_slice());
            None
        });
        out
    }

    #[test]
    fn held_bytes_count_everything_behind_owed_slots() {
        let mut o = Order::default();
        assert_eq!(o.held_bytes(), 0);
        let a = o.reserve();
        o.newest_tail().unwrap().extend_from_slice(b"12345");
        assert_eq!(o.held_bytes(), 5);
        let b = o.reserve();
        assert_eq!(o.held_bytes(), 5);
        o.newest_tail().unwrap().extend_from_slice(b"123");
        assert!(o.push_shared(Bytes::from_static(b"1234567")));
        o.newest_tail().unwrap().extend_from_slice(b"12");
        assert_eq!(o.held_bytes(), 5 + 3 + 7 + 2);
        assert!(o.fill(b, b"bbbb".to_vec()));
        assert_eq!(o.held_bytes(), 21);
        let c = o.reserve();
        o.newest_tail().unwrap().extend_from_slice(b"1");
        assert_eq!(o.held_bytes(), 22);
        assert!(o.fill(a, b"aa".to_vec()));
        assert_eq!(o.held_bytes(), 24);
        assert_eq!(drain(&mut o).len(), 2 + 5 + 4 + 3 + 7 + 2);
        assert_eq!(o.held_bytes(), 1, "c's tail is still held");
        assert!(o.fill(c, b"c".to_vec()));
        assert_eq!(drain(&mut o), b"c1");
        assert_eq!(o.held_bytes(), 0);
    }

    #[test]
    fn answers_and_output_behind_them_leave_in_order() {
        let mut o = Order::default();
        let a = o.reserve();
        o.newest_tail().unwrap().extend_from_slice(b"after-a ");
        let b = o.reserve();
        assert!(o.push_shared(Bytes::from_static(b"shared ")));
        o.newest_tail().unwrap().extend_from_slice(b"after-b");
        assert!(o.fill(b, b"B ".to_vec()));
        assert!(!o.fill(b, b"again".to_vec()), "a slot is filled once");
        assert!(drain(&mut o).is_empty(), "b waits for a");
        assert!(o.fill(a, b"A ".to_vec()));
        assert_eq!(drain(&mut o), b"A after-a B shared after-b");
        assert!(o.is_empty());
        assert_eq!(o.held_bytes(), 0);
        assert!(!o.fill(a, b"late".to_vec()), "released slots are gone");
        let c = o.reserve();
        assert_eq!(c, b + 1);
        assert!(o.fill(c, Vec::new()));
        assert_eq!(o.release(|_| None), 1);
    }
}
