//! Turning a user's [`Target`] into a connected peer: dial every address at once and take the
//! first connection that comes up. The peer id is learned from the handshake when not given.

use std::collections::BTreeMap;

use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, NetworkBehaviour, Swarm};
use libp2p::{Multiaddr, PeerId};

use super::address::Target;
use super::protocol::{peer_ref, PeerRef};

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("could not reach {target}: {reasons}")]
    Unreachable { target: String, reasons: String },
}

/// Dials in flight for one target.
#[derive(Debug)]
pub struct Dialing {
    target: Target,
    pending: BTreeMap<ConnectionId, Multiaddr>,
    errors: Vec<String>,
}

impl Dialing {
    /// Starts a dial to every address of `target` concurrently.
    pub fn start<B: NetworkBehaviour>(
        swarm: &mut Swarm<B>,
        target: Target,
    ) -> Result<Self, DialError> {
        let mut dialing = Dialing {
            target,
            pending: BTreeMap::new(),
            errors: Vec::new(),
        };
        for addr in dialing.target.addrs.clone() {
            let opts = match dialing.target.peer_id {
                Some(peer) => DialOpts::peer_id(peer)
                    .addresses(vec![addr.clone()])
                    .condition(PeerCondition::Always)
                    .build(),
                None => DialOpts::unknown_peer_id().address(addr.clone()).build(),
            };
            let id = opts.connection_id();
            match swarm.dial(opts) {
                Ok(()) => {
                    dialing.pending.insert(id, addr);
                }
                Err(e) => dialing.errors.push(format!("{addr}: {e}")),
            }
        }
        if dialing.pending.is_empty() {
            return Err(dialing.failure());
        }
        Ok(dialing)
    }

    /// A connection came up. Returns the peer if it was one of ours.
    pub fn on_established(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        endpoint: &ConnectedPoint,
    ) -> Option<PeerRef> {
        let dialed = self.pending.remove(&connection)?;
        let addr = match endpoint {
            ConnectedPoint::Dialer { address, .. } => strip_peer(address),
            ConnectedPoint::Listener { .. } => dialed,
        };
        Some(peer_ref(peer, vec![addr]))
    }

    /// A dial failed. Returns the final error once every address has failed.
    pub fn on_failed(&mut self, connection: ConnectionId, error: String) -> Option<DialError> {
        let addr = self.pending.remove(&connection)?;
        self.errors.push(format!("{addr}: {error}"));
        self.pending.is_empty().then(|| self.failure())
    }

    /// Nothing connected in time.
    pub fn timed_out(&mut self) -> DialError {
        for addr in std::mem::take(&mut self.pending).into_values() {
            self.errors.push(format!("{addr}: no answer in time"));
        }
        self.failure()
    }

    fn failure(&self) -> DialError {
        DialError::Unreachable {
            target: self.target.text.clone(),
            reasons: self.errors.join("; "),
        }
    }
}

/// One line for a failed dial: the innermost cause of each address's failure ("Connection
/// refused"), not libp2p's nested multi-line report.
pub fn dial_error_text(error: &libp2p::swarm::DialError) -> String {
    match error {
        libp2p::swarm::DialError::Transport(errors) => errors
            .iter()
            .map(|(_, e)| root_cause(e))
            .collect::<Vec<_>>()
            .join(", "),
        other => root_cause(other),
    }
}

/// The deepest non-empty message in an error's source chain.
pub fn root_cause(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let more = e.to_string();
        if !more.trim().is_empty() {
            text = more;
        }
        source = e.source();
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The address without a trailing `/p2p/<id>`.
pub fn strip_peer(addr: &Multiaddr) -> Multiaddr {
    let mut addr = addr.clone();
    if let Some(Protocol::P2p(_)) = addr.iter().last() {
        addr.pop();
    }
    addr
}
