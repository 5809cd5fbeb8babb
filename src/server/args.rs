//! Command arguments as a command sees them, whether it runs on the shard that parsed the
//! request (borrowed from the receive buffer) or on another (owned `Bytes`).

use std::borrow::Cow;

use bytes::Bytes;

/// Read access to a command's arguments (index 0 is the command name).
pub trait ArgList {
    /// Number of arguments, the name included.
    fn len(&self) -> usize;
    /// Argument `i` (panics past `len`, like slice indexing).
    fn arg(&self, i: usize) -> &[u8];
    /// Whether argument `i` equals `word`, ignoring ASCII case (for option names).
    fn is(&self, i: usize, word: &str) -> bool {
        self.arg(i).eq_ignore_ascii_case(word.as_bytes())
    }
    /// Argument `i` as shareable bytes: free for owned arguments, a copy for borrowed ones.
    fn arg_bytes(&self, i: usize) -> Bytes;
}

impl ArgList for &[Cow<'_, [u8]>] {
    fn len(&self) -> usize {
        <[Cow<'_, [u8]>]>::len(self)
    }
    fn arg(&self, i: usize) -> &[u8] {
        &self[i]
    }
    fn arg_bytes(&self, i: usize) -> Bytes {
        Bytes::copy_from_slice(&self[i])
    }
}

impl ArgList for Vec<Bytes> {
    fn len(&self) -> usize {
        <[Bytes]>::len(self)
    }
    fn arg(&self, i: usize) -> &[u8] {
        &self[i]
    }
    fn arg_bytes(&self, i: usize) -> Bytes {
        self[i].clone()
    }
}

/// Copy borrowed arguments so they can travel to another shard.
pub fn to_owned(args: &[Cow<'_, [u8]>]) -> Vec<Bytes> {
    args.iter().map(|a| Bytes::copy_from_slice(a)).collect()
}
