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
    /// Queue a shared value behind the slot (after what `tail` holds).
    pub fn push_shared(&mut self, bytes: Bytes) {
        if !self.tail.is_empty() {
            self.behind
                .push(Chunk::Owned(std::mem::take(&mut self.tail)));
        }
        self.behind.push(Chunk::Shared(bytes));
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
}

impl Order {
    /// Slots reserved and not yet released (unfilled, or filled behind an unfilled one).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Reserve the next position; returns its sequence number.
    pub fn reserve(&mut self) -> u64 {
        let tail = self.spare.pop().unwrap_or_default();
        self.slots.push_back(Owed {
            tail,
            ..Owed::default()
        });
        self.first_seq + self.slots.len() as u64 - 1
    }

    /// Where new output goes while slots are owed: behind the newest one.
    pub fn newest(&mut self) -> Option<&mut Owed> {
        self.slots.back_mut()
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
            if let Some(answer) = owed.answer {
                if !answer.is_empty() {
                    emit(Chunk::Owned(answer));
                }
            }
            for chunk in owed.behind {
                emit(chunk);
            }
            let tail = if owed.tail.is_empty() {
                Some(owed.tail)
            } else {
                emit(Chunk::Owned(owed.tail))
            };
            if let Some(mut tail) = tail {
                let cap = tail.capacity();
                if self.spare.len() < SPARE_TAILS && cap > 0 && cap <= SPARE_TAIL_BYTES {
                    tail.clear();
                    self.spare.push(tail);
                }
            }
        }
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
    fn answers_and_output_behind_them_leave_in_order() {
        let mut o = Order::default();
        let a = o.reserve();
        o.newest().unwrap().tail.extend_from_slice(b"after-a ");
        let b = o.reserve();
        o.newest()
            .unwrap()
            .push_shared(Bytes::from_static(b"shared "));
        o.newest().unwrap().tail.extend_from_slice(b"after-b");
        assert!(o.fill(b, b"B ".to_vec()));
        assert!(!o.fill(b, b"again".to_vec()), "a slot is filled once");
        assert!(drain(&mut o).is_empty(), "b waits for a");
        assert!(o.fill(a, b"A ".to_vec()));
        assert_eq!(drain(&mut o), b"A after-a B shared after-b");
        assert!(o.is_empty());
        assert!(!o.fill(a, b"late".to_vec()), "released slots are gone");
        let c = o.reserve();
        assert_eq!(c, b + 1);
        assert!(o.fill(c, Vec::new()));
        assert_eq!(o.release(|_| None), 1);
    }
}
