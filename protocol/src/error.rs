use thiserror::Error;

/// A request that violates the protocol. The `Display` text is exactly what Redis sends
/// after `-ERR ` for the same input, so clients see familiar errors.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// `*<n>` with a non-number, or more elements than the configured maximum.
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// `$<n>` with a non-number, a negative number, or more than the configured maximum.
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// An element of a multibulk request did not start with `$`.
    #[error("Protocol error: expected '$', got '{}'", *.0 as char)]
    ExpectedBulk(u8),
    /// The `*<n>` line grew past the inline limit without a line end.
    #[error("Protocol error: too big mbulk count string")]
    MultibulkCountTooBig,
    /// The `$<n>` line grew past the inline limit without a line end.
    #[error("Protocol error: too big bulk count string")]
    BulkCountTooBig,
    /// An inline command grew past the inline limit without a line end.
    #[error("Protocol error: too big inline request")]
    InlineTooBig,
    /// An inline command with an unterminated quote.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// A reply (not request) that is not valid RESP; only the reply parser returns this.
    #[error("Protocol error: {0}")]
    InvalidReply(&'static str),
}
