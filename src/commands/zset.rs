//! Sorted sets (placeholder until its commands land).

use super::Spec;

/// The family's commands.
pub static COMMANDS: &[Spec] = &[];
