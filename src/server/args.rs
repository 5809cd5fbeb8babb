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

/// Arguments at least this large are kept as zero-copy slices of the connection's input
/// buffer rather than copied (Redis's big-argument threshold).
pub const BIG_ARG: usize = 32 * 1024;

/// Arguments parsed on this shard, with the input buffer they came from when it can be
/// shared: large values are then stored without a copy.
pub struct Local<'a, 'b> {
    /// The arguments.
    pub args: &'a [Cow<'b, [u8]>],
    /// The shareable input, if the request was reassembled in the connection's buffer.
    pub input: Option<&'a Bytes>,
}

impl Local<'_, '_> {
    /// Owned copies (or zero-copy slices, for large arguments) to travel to another shard.
    pub fn to_owned(&self) -> Vec<Bytes> {
        (0..self.args.len()).map(|i| self.arg_bytes(i)).collect()
    }
}

/// Bytes for `arg`: a zero-copy slice of `input` when large and inside it, else a copy.
pub fn share_or_copy(input: Option<&Bytes>, arg: &[u8]) -> Bytes {
    if arg.len() >= BIG_ARG {
        if let Some(buf) = input {
            let (base, start) = (buf.as_ptr() as usize, arg.as_ptr() as usize);
            if start >= base && start + arg.len() <= base + buf.len() {
                return buf.slice_ref(arg);
            }
        }
    }
    Bytes::copy_from_slice(arg)
}

impl ArgList for Local<'_, '_> {
    fn len(&self) -> usize {
        self.args.len()
    }
    fn arg(&self, i: usize) -> &[u8] {
        &self.args[i]
    }
    fn arg_bytes(&self, i: usize) -> Bytes {
        share_or_copy(self.input, &self.args[i])
    }
}
