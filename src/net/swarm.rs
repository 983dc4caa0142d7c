//! The NetworkBehaviour and swarm construction: Chord RPCs over request-response (CBOR),
//! identify and ping, on QUIC and TCP (noise + yamux).

use libp2p::request_response::{self, cbor, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{identify, identity::Keypair, noise, ping, tcp, yamux, Swarm, SwarmBuilder};

use super::protocol::{
    NetConfig, WireRequest, WireResponse, CHORD_PROTOCOL, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES,
};

pub type ChordRpc = cbor::Behaviour<WireRequest, WireResponse>;

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub chord: ChordRpc,
    /// File data: one stream per transfer (`/chord-p2p/transfer/1.0.0`).
    pub stream: libp2p_stream::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("could not set up the TCP transport: {0}")]
    Tcp(String),
    #[error("could not set up DNS resolution: {0}")]
    Dns(String),
    #[error("could not set up the node's protocols: {0}")]
    Behaviour(String),
}

fn behaviour(key: &Keypair, config: &NetConfig) -> Behaviour {
    let support = if config.serve {
        ProtocolSupport::Full
    } else {
        ProtocolSupport::Outbound
    };
    let codec = cbor::codec::Codec::default()
        .set_request_size_maximum(MAX_REQUEST_BYTES)
        .set_response_size_maximum(MAX_RESPONSE_BYTES);
    let rpc = request_response::Config::default().with_request_timeout(config.request_timeout);
    Behaviour {
        chord: ChordRpc::with_codec(codec, [(CHORD_PROTOCOL, support)], rpc),
        stream: libp2p_stream::Behaviour::new(),
        identify: identify::Behaviour::new(identify::Config::new(
            "/chord-p2p/1.0.0".into(),
            key.public(),
        )),
        ping: ping::Behaviour::default(),
    }
}

/// A swarm that speaks QUIC and TCP, dials `/dns` names, and runs [`Behaviour`].
pub fn build_swarm(key: Keypair, config: &NetConfig) -> Result<Swarm<Behaviour>, BuildError> {
    let idle = config.idle_timeout;
    let swarm = SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| BuildError::Tcp(e.to_string()))?
        .with_quic()
        .with_dns()
        .map_err(|e| BuildError::Dns(e.to_string()))?
        .with_behaviour(|key| behaviour(key, config))
        .map_err(|e| BuildError::Behaviour(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build();
    Ok(swarm)
}
