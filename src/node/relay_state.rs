//! What the event loop remembers about relays: the relays it listens through, whether it
//! serves as one, and which peers have told it its own address (see `relaying` for what it
//! does with them).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::Swarm;
use libp2p::{Multiaddr, PeerId};

use super::NodeError;
use crate::net::protocol::PeerRef;
use crate::net::Behaviour;

pub(super) type Reply<T> = tokio::sync::oneshot::Sender<Result<T, NodeError>>;

/// How long to wait for identify with a relay before reserving anyway.
pub(super) const IDENTIFY_WAIT: Duration = Duration::from_secs(3);
/// Pause before listening again through a relay whose reservation was lost.
pub(super) const RELISTEN_AFTER: Duration = Duration::from_secs(5);

/// One relay this node listens through.
pub(super) struct RelayListen {
    pub(super) relay: PeerId,
    /// `<relay address>/p2p/<relay>/p2p-circuit`.
    pub(super) circuit: Multiaddr,
    pub(super) listener: Option<ListenerId>,
    /// Not listening yet: start at this time even if identify has not answered.
    pub(super) start_by: Option<Instant>,
    /// The caller of the first reservation, until it is accepted or refused.
    pub(super) reply: Option<(Instant, Reply<Multiaddr>)>,
}

pub(super) struct Relaying {
    /// This node serves relay v2 and confirms its own listen addresses as external.
    pub(super) serve: bool,
    /// The operator named the external addresses; do not guess them.
    pub(super) external_given: bool,
    pub(super) listens: Vec<RelayListen>,
    /// Connected peers whose identify arrived: our address as they see it is known.
    pub(super) identified: HashSet<PeerId>,
    pub(super) reserve_timeout: Duration,
}

impl Relaying {
    /// Whether `id` is one of the listeners through a relay.
    pub(super) fn is_relay_listener(&self, id: ListenerId) -> bool {
        self.listens.iter().any(|l| l.listener == Some(id))
    }

    pub fn new(serve: bool, external_given: bool, reserve_timeout: Duration) -> Self {
        Relaying {
            serve,
            external_given,
            listens: Vec::new(),
            identified: HashSet::new(),
            reserve_timeout,
        }
    }

    /// No connection to `peer` is left: its identify no longer says anything about us.
    pub fn disconnected(&mut self, peer: &PeerId) {
        self.identified.remove(peer);
    }

    pub fn next_wake(&self) -> Option<Instant> {
        self.listens
            .iter()
            .flat_map(|l| [l.start_by, l.reply.as_ref().map(|(at, _)| *at)])
            .flatten()
            .min()
    }

    /// A relay is reachable where it listens: confirm those addresses (unless the operator
    /// named them), which also switches the relay service on.
    pub fn on_new_listen_addr(&self, swarm: &mut Swarm<Behaviour>, address: &Multiaddr) {
        let circuit = address.iter().any(|p| p == Protocol::P2pCircuit);
        if self.serve && !self.external_given && !circuit {
            swarm.add_external_address(address.clone());
        }
    }
}

pub(super) fn circuit_through(relay: &PeerRef) -> Option<Multiaddr> {
    let addr = relay.addr.addrs.first()?.clone();
    Some(
        addr.with(Protocol::P2p(relay.addr.peer_id))
            .with(Protocol::P2pCircuit),
    )
}
