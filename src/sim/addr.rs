//! A simulated node's address.

/// An index into the world's node table, never reused, so a message to a node that crashed or
/// left can never reach a newcomer by mistake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Addr(pub u32);
