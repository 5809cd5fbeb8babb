//! `user_data` layout: `kind:8 | generation:24 | index:32`.
//!
//! The generation makes a late completion for a closed connection harmless: a new
//! connection that reuses the slab index gets a new generation, so the stale completion
//! no longer matches it.

/// What an operation was, so its completion can be routed in one match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    Accept = 1,
    Recv = 2,
    Send = 3,
    Wake = 4,
    Timer = 5,
    Tick = 6,
    /// Cancellations, closes, message-ring sends: their completions carry no work.
    Ignore = 7,
    Connect = 8,
    /// A one-shot receive into a connection's own buffer (index: the ring's recv slot).
    RecvInto = 9,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: Kind,
    pub generation: u32,
    pub index: u32,
}

impl Token {
    pub fn new(kind: Kind, generation: u32, index: u32) -> Self {
        Token {
            kind,
            generation: generation & 0xff_ffff,
            index,
        }
    }

    pub fn simple(kind: Kind) -> Self {
        Token::new(kind, 0, 0)
    }

    pub fn encode(self) -> u64 {
        (self.kind as u64) << 56 | u64::from(self.generation) << 32 | u64::from(self.index)
    }

    pub fn decode(ud: u64) -> Option<Token> {
        let kind = match (ud >> 56) as u8 {
            1 => Kind::Accept,
            2 => Kind::Recv,
            3 => Kind::Send,
            4 => Kind::Wake,
            5 => Kind::Timer,
            6 => Kind::Tick,
            7 => Kind::Ignore,
            8 => Kind::Connect,
            9 => Kind::RecvInto,
            _ => return None,
        };
        Some(Token {
            kind,
            generation: (ud >> 32) as u32 & 0xff_ffff,
            index: ud as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_masks_generation() {
        let t = Token::new(Kind::Recv, 0x1ab_cdef, 0xdead_beef);
        let back = Token::decode(t.encode()).unwrap();
        assert_eq!(back.kind, Kind::Recv);
        assert_eq!(back.generation, 0xab_cdef);
        assert_eq!(back.index, 0xdead_beef);
        assert_eq!(Token::decode(0), None);
    }
}
