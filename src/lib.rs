//! chord-p2p: a peer-to-peer node on a Chord ring, over rust-libp2p.
//!
//! - [`chord`]: the sans-IO protocol core (ids, routing, lookups, stabilization). No I/O.
//! - [`net`]: libp2p: addresses, the wire protocol, the swarm, dialing.
//! - [`node`]: a running node ([`node::Node`]) and its async API ([`node::NodeHandle`]).
//! - [`files`]: files on the ring: store, transfer streams, replication and repair.
//! - [`records`]: what is said about files (versions, removals), signed by their uploaders.
//! - [`replica`]: the sans-IO replica core: which copies to take, keep, drop or fetch.
//! - [`client`]: a one-shot client that asks the ring without joining it.
//! - [`verified`]: the sans-IO verified-streaming core: BLAKE3 group CVs, outboards, proofs.
//! - [`shapes`]: the JSON shapes the CLI prints and the HTTP API answers.
//! - [`gateway`]: the node's HTTP server: files by name, a JSON API, Prometheus metrics.
pub mod chord;
pub mod client;
pub mod files;
pub mod gateway;
pub mod metrics;
pub mod net;
pub mod node;
pub mod records;
pub mod replica;
pub mod shapes;
/// A deterministic discrete-event simulator driving the same Chord core at 10^4 nodes.
pub mod sim;
pub mod verified;
