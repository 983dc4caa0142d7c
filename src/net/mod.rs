//! The libp2p layer: addresses, the wire protocol, swarm construction and dialing. It carries
//! the Chord core's messages and decides nothing about the ring.

pub mod address;
pub mod codec;
pub mod dial;
pub mod protocol;
pub mod swarm;

pub use address::{parse_target, quic_and_tcp, with_peer, AddressError, Target};
pub use protocol::{node_id, peer_ref, Contact, PeerRef, StatusReport, WireRequest, WireResponse};
pub use swarm::{
    build_swarm, Behaviour, BehaviourEvent, BuildError, ConnectionLimits, NetConfig, RelayLimits,
    TransportKind,
};
