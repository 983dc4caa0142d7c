//! chord-p2p: a peer-to-peer node on a Chord ring, over rust-libp2p.
//!
//! - [`chord`]: the sans-IO protocol core (ids, routing, lookups, stabilization).
pub mod chord;
