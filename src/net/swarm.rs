//! The NetworkBehaviour and swarm construction: Chord RPCs over request-response (CBOR), file
//! streams, identify and ping, and what crosses NATs (relay v2 client and optional server,
//! DCUtR, AutoNAT). One builder serves every transport: QUIC + TCP, TCP alone, or libp2p's
//! in-memory transport; relayed connections ride on any of them.

use std::time::Duration;

use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, MemoryTransport};
use libp2p::core::upgrade::Version;
use libp2p::request_response::{self, cbor, ProtocolSupport};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    autonat, connection_limits, dcutr, identify, identity::Keypair, noise, ping, quic, relay, tcp,
    yamux, PeerId, Swarm, SwarmBuilder, Transport,
};

use super::codec::CountedCodec;
use super::protocol::{CHORD_PROTOCOL, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES};
use crate::metrics::NodeMetrics;

pub type ChordRpc = request_response::Behaviour<CountedCodec>;

/// Chord requests one connection carries at once (both ways).
pub const MAX_STREAMS_PER_CONNECTION: usize = 100;

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Refuses connections past the node's limits (first, so nothing else sees them).
    pub limits: connection_limits::Behaviour,
    pub chord: ChordRpc,
    /// File data: one stream per transfer (`/chord-p2p/transfer/1.0.0`).
    pub stream: libp2p_stream::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    /// Reaches and is reached through relays. Always present: the relay transport needs it.
    pub relay_client: relay::client::Behaviour,
    /// Serves circuit relay v2 to others (`--relay-server`).
    pub relay: Toggle<relay::Behaviour>,
    /// Turns relayed connections into direct ones (hole punching).
    pub dcutr: dcutr::Behaviour,
    /// Asks peers to dial back: is this node reachable from outside? (Nodes only.)
    pub autonat: Toggle<autonat::Behaviour>,
}

/// The transports a swarm speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TransportKind {
    /// QUIC and TCP (noise + yamux): nodes on real networks.
    #[default]
    QuicTcp,
    /// TCP (noise + yamux) only.
    Tcp,
    /// libp2p's in-memory transport (`/memory/N`): a whole ring inside one process.
    Memory,
}

/// Limits of the relay service a node offers with `--relay-server`.
#[derive(Clone, Debug)]
pub struct RelayLimits {
    pub max_reservations: usize,
    pub max_circuits: usize,
    /// How long one relayed connection may last; it is redialed after.
    pub max_circuit_duration: Duration,
    /// Bytes one relayed connection may carry; 0 means no limit. Nodes send file data over a
    /// relay only when it sets no limit.
    pub max_circuit_bytes: u64,
}

impl Default for RelayLimits {
    /// Room for Chord's traffic (a few KB/s per relayed neighbour) for an hour, not for files.
    fn default() -> Self {
        RelayLimits {
            max_reservations: 128,
            max_circuits: 64,
            max_circuit_duration: Duration::from_secs(3600),
            max_circuit_bytes: 16 * 1024 * 1024,
        }
    }
}

/// How many connections a node accepts. Outgoing connections are not limited: a node dials
/// only what the ring needs. The ring's neighbours (predecessor and successors) bypass these
/// limits: they are the connections a flood must never push out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Established incoming connections, in all.
    pub max_incoming: u32,
    /// Incoming connections still being set up (handshakes), in all.
    pub max_pending_incoming: u32,
    /// Established connections with any one peer, both ways. Generous: two nodes that dial each
    /// other over QUIC and TCP at once and redial after failures hold several connections, and
    /// refusing one of those breaks requests under way.
    pub max_per_peer: u32,
}

impl Default for ConnectionLimits {
    /// One node on a home machine: plenty for a ring of thousands (a member talks to its
    /// neighbours, fingers and the clients of the moment), far below the descriptor limit.
    fn default() -> Self {
        ConnectionLimits {
            max_incoming: 512,
            max_pending_incoming: 128,
            max_per_peer: 64,
        }
    }
}

/// How a swarm is built: transports, timeouts, and which services it offers.
#[derive(Clone, Debug)]
pub struct NetConfig {
    pub transport: TransportKind,
    /// How long a Chord request may take.
    pub request_timeout: Duration,
    /// How long an unused connection stays open (ring neighbours talk every stabilize interval).
    pub idle_timeout: Duration,
    /// Whether this swarm answers Chord requests (nodes) or only asks (one-shot clients).
    pub serve: bool,
    /// Serve circuit relay v2 with these limits.
    pub relay_server: Option<RelayLimits>,
    pub connection_limits: ConnectionLimits,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            transport: TransportKind::default(),
            request_timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(60),
            serve: true,
            relay_server: None,
            connection_limits: ConnectionLimits::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("could not set up the transport: {0}")]
    Transport(String),
    #[error("could not set up DNS resolution: {0}")]
    Dns(String),
    #[error("could not set up the relay client: {0}")]
    Relay(String),
    #[error("could not set up the node's protocols: {0}")]
    Behaviour(String),
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The base transport of `kind`, authenticated and multiplexed.
fn base_transport(
    key: &Keypair,
    kind: TransportKind,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, BoxError> {
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
        .upgrade(Version::V1Lazy)
        .authenticate(noise::Config::new(key)?)
        .multiplex(yamux::Config::default())
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)));
    Ok(match kind {
        TransportKind::QuicTcp => quic::tokio::Transport::new(quic::Config::new(key))
            .map(|(peer, conn), _| (peer, StreamMuxerBox::new(conn)))
            .or_transport(tcp)
            .map(|either, _| either.into_inner())
            .boxed(),
        TransportKind::Tcp => tcp.boxed(),
        TransportKind::Memory => MemoryTransport::default()
            .upgrade(Version::V1Lazy)
            .authenticate(noise::Config::new(key)?)
            .multiplex(yamux::Config::default())
            .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
            .boxed(),
    })
}

fn behaviour(
    key: &Keypair,
    relay_client: relay::client::Behaviour,
    config: &NetConfig,
    metrics: &NodeMetrics,
) -> Behaviour {
    let support = if config.serve {
        ProtocolSupport::Full
    } else {
        ProtocolSupport::Outbound
    };
    let codec = cbor::codec::Codec::default()
        .set_request_size_maximum(MAX_REQUEST_BYTES)
        .set_response_size_maximum(MAX_RESPONSE_BYTES);
    let codec = CountedCodec::new(codec, metrics.clone());
    // Per connection, requests both ways at once; an inbound one past it is dropped at once
    // (the asker sees the stream fail), never queued.
    let rpc = request_response::Config::default()
        .with_request_timeout(config.request_timeout)
        .with_max_concurrent_streams(MAX_STREAMS_PER_CONNECTION);
    let me = key.public().to_peer_id();
    let relay = config.relay_server.as_ref().map(|limits| {
        let relay_config = relay::Config {
            max_reservations: limits.max_reservations,
            max_circuits: limits.max_circuits,
            max_circuits_per_peer: limits.max_circuits.min(16),
            max_circuit_duration: limits.max_circuit_duration,
            max_circuit_bytes: limits.max_circuit_bytes,
            ..relay::Config::default()
        };
        relay::Behaviour::new(me, relay_config)
    });
    let autonat = config.serve.then(|| {
        autonat::Behaviour::new(
            me,
            autonat::Config {
                // Labs and LANs use private addresses; judge them like any other.
                only_global_ips: false,
                boot_delay: Duration::from_secs(2),
                retry_interval: Duration::from_secs(20),
                refresh_interval: Duration::from_secs(120),
                throttle_server_period: Duration::from_secs(1),
                ..autonat::Config::default()
            },
        )
    });
    let limits = config.connection_limits;
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established_incoming(Some(limits.max_incoming))
        .with_max_pending_incoming(Some(limits.max_pending_incoming))
        .with_max_established_per_peer(Some(limits.max_per_peer));
    Behaviour {
        limits: connection_limits::Behaviour::new(limits),
        chord: ChordRpc::with_codec(codec, [(CHORD_PROTOCOL, support)], rpc),
        stream: libp2p_stream::Behaviour::new(),
        identify: identify::Behaviour::new(identify::Config::new(
            "/chord-p2p/1.0.0".into(),
            key.public(),
        )),
        ping: ping::Behaviour::default(),
        relay_client,
        relay: relay.into(),
        dcutr: dcutr::Behaviour::new(me),
        autonat: autonat.into(),
    }
}

/// A swarm over `config.transport`, with DNS names and relayed connections, running
/// [`Behaviour`], counting into `metrics` (libp2p's bandwidth per transport, the Chord
/// protocol's bytes).
pub fn build_swarm(
    key: Keypair,
    config: &NetConfig,
    metrics: &NodeMetrics,
) -> Result<Swarm<Behaviour>, BuildError> {
    let idle = config.idle_timeout;
    let kind = config.transport;
    let swarm = SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_other_transport(|key| base_transport(key, kind))
        .map_err(|e| BuildError::Transport(e.to_string()))?
        .with_dns()
        .map_err(|e| BuildError::Dns(e.to_string()))?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| BuildError::Relay(e.to_string()))?;
    // The bandwidth transport's type borrows the registry: the swarm is built while it is held.
    metrics.with_registry(|registry| {
        Ok(swarm
            .with_bandwidth_metrics(registry)
            .with_behaviour(|key, relay_client| behaviour(key, relay_client, config, metrics))
            .map_err(|e| BuildError::Behaviour(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build())
    })
}
