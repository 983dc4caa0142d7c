//! A deterministic discrete-event simulator that drives the very same sans-IO Chord core
//! ([`crate::chord::ChordNode`]) the libp2p node runs, at thousands of nodes in one process.
//!
//! Why: the ring's correctness arguments (Zave's invariants) and the paper's numbers (path length
//! ½·log2 N, behaviour under mass failure and churn) are claims about many nodes and unlucky
//! message orders — far more than real processes on this machine can show. The simulator makes
//! those runs cheap and, above all, repeatable: one seed fixes every delay, loss, id and choice,
//! so a violation found once can be replayed exactly.
//!
//! - [`Sim`] ([`world`]): the virtual clock, the event queue (a binary heap ordered by virtual time,
//!   ties broken by a sequence number), the network model (delay, loss, reordering) and the
//!   population (joins, informed leaves, crashes, lookups).
//! - [`oracle`]: the invariants checked while the simulation runs and the exact ideal state
//!   checked once activity stops.
//! - [`scenario`]: reusable workloads (growing a ring, settling, measuring lookups, churn,
//!   randomised runs), shared by `tests/simulator.rs` and `examples/simulate.rs`.
//! - [`stats`]: counters and lookup statistics.
//! - `files`: files on the ring, each node running the replica core's repair sequence over
//!   simulated messages, with a file oracle (no file loses its last copy unless R of its
//!   holders crashed within one repair interval; exactly R copies once settled).

mod addr;
mod file_books;
mod file_messages;
mod files;
mod files_state;
pub mod oracle;
mod oracle_memory;
pub mod scenario;
pub mod stats;
pub mod world;

pub use files_state::{FileStats, FilesConfig};
pub use stats::{Counters, LookupStats, Summary};
pub use world::{Addr, NetConfig, Op, Sim, SimConfig};
