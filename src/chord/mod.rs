//! The sans-IO Chord core: identifiers, routing state, the lookup state machine and the
//! stabilization rules. No tokio, no libp2p, no clock, no randomness: time comes in as
//! arguments, messages go out as values. `tests/` and the simulator drive it directly.

pub mod id;
pub mod ideal;
pub mod lookup;
pub mod message;
pub mod node;
pub mod routing;
#[cfg(test)]
mod tests;

pub use id::{Id, M};
pub use ideal::IdealRing;
pub use lookup::{Lookup, LookupError, LookupResult, Next};
pub use message::{LookupStep, NodeRef, Request, Response, MAX_LIST};
pub use node::{ChordNode, Config, Event, JoinError, LookupId, Phase, RequestId, Transmit};
pub use routing::Routing;
