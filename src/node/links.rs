//! What a node knows of its connections: which peers it reaches directly and which only
//! through a relay, and how much data each relay lets through. File transfers use it to wait
//! for a direct path, or to refuse a relay that is not meant for file data.

use std::collections::HashMap;

use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};

use crate::net::protocol::{ConnectionInfo, MAX_CONNECTIONS};

/// How a peer is reached right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Direct,
    /// Only through `relay`, which lets `data_limit` bytes through a connection (`None`: no
    /// limit).
    Relayed {
        relay: PeerId,
        data_limit: Option<u64>,
    },
}

struct Link {
    id: ConnectionId,
    addr: Multiaddr,
    relay: Option<PeerId>,
}

#[derive(Default)]
pub(super) struct Links {
    peers: HashMap<PeerId, Vec<Link>>,
    /// Per relay: the data limit it announced for its circuits.
    relay_limits: HashMap<PeerId, Option<u64>>,
}

/// The relay a circuit address goes through: the peer named just before `/p2p-circuit`.
pub fn relay_of(addr: &Multiaddr) -> Option<PeerId> {
    let mut last_peer = None;
    for protocol in addr.iter() {
        match protocol {
            Protocol::P2p(peer) => last_peer = Some(peer),
            Protocol::P2pCircuit => return last_peer,
            _ => {}
        }
    }
    None
}

impl Links {
    pub fn established(&mut self, peer: PeerId, id: ConnectionId, endpoint: &ConnectedPoint) {
        let addr = match endpoint {
            ConnectedPoint::Dialer { address, .. } => address.clone(),
            ConnectedPoint::Listener { local_addr, .. } if endpoint.is_relayed() => {
                local_addr.clone()
            }
            ConnectedPoint::Listener { send_back_addr, .. } => send_back_addr.clone(),
        };
        let relay = if endpoint.is_relayed() {
            relay_of(&addr)
        } else {
            None
        };
        self.peers
            .entry(peer)
            .or_default()
            .push(Link { id, addr, relay });
    }

    /// Whether connection `id` to `peer` comes from this very host (a loopback address).
    pub fn is_loopback(&self, peer: &PeerId, id: ConnectionId) -> bool {
        let Some(link) = self
            .peers
            .get(peer)
            .and_then(|l| l.iter().find(|l| l.id == id))
        else {
            return false;
        };
        link.relay.is_none()
            && match link.addr.iter().next() {
                Some(Protocol::Ip4(ip)) => ip.is_loopback(),
                Some(Protocol::Ip6(ip)) => ip.is_loopback(),
                _ => false,
            }
    }

    pub fn closed(&mut self, peer: PeerId, id: ConnectionId) {
        if let Some(links) = self.peers.get_mut(&peer) {
            links.retain(|l| l.id != id);
            if links.is_empty() {
                self.peers.remove(&peer);
            }
        }
    }

    /// A relay told us its circuit data limit (on a reservation or an outbound circuit).
    /// Relays say 0, or nothing, for "no limit".
    pub fn relay_limit(&mut self, relay: PeerId, data_in_bytes: Option<u64>) {
        self.relay_limits
            .insert(relay, data_in_bytes.filter(|bytes| *bytes > 0));
    }

    /// How `peer` is reached now: directly if any connection is direct.
    pub fn route(&self, peer: &PeerId) -> Option<Route> {
        let links = self.peers.get(peer)?;
        if any_direct(links) {
            return Some(Route::Direct);
        }
        let relay = links.iter().find_map(|l| l.relay)?;
        Some(Route::Relayed {
            relay,
            // A relay we never heard limits from is assumed to keep libp2p's small default.
            data_limit: self
                .relay_limits
                .get(&relay)
                .copied()
                .unwrap_or(Some(128 * 1024)),
        })
    }

    /// The relayed connections to `peer`, when a direct one exists too.
    pub fn redundant_relayed(&self, peer: &PeerId) -> Vec<ConnectionId> {
        match self.peers.get(peer) {
            Some(links) if any_direct(links) => links
                .iter()
                .filter(|l| l.relay.is_some())
                .map(|l| l.id)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Every open connection, for `status` (peer order is stable).
    pub fn report(&self) -> Vec<ConnectionInfo> {
        let mut out: Vec<ConnectionInfo> = self
            .peers
            .iter()
            .flat_map(|(peer, links)| {
                links.iter().map(|l| ConnectionInfo {
                    peer_id: *peer,
                    addr: l.addr.clone(),
                    relayed: l.relay.is_some(),
                })
            })
            .collect();
        out.sort_by(|a, b| (a.peer_id, &a.addr).cmp(&(b.peer_id, &b.addr)));
        out.truncate(MAX_CONNECTIONS);
        out
    }
}

fn any_direct(links: &[Link]) -> bool {
    links.iter().any(|l| l.relay.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_is_the_peer_before_the_circuit() {
        let relay = PeerId::random();
        let target = PeerId::random();
        let addr: Multiaddr =
            format!("/ip4/10.0.0.1/udp/4001/quic-v1/p2p/{relay}/p2p-circuit/p2p/{target}")
                .parse()
                .unwrap();
        assert_eq!(relay_of(&addr), Some(relay));
        let direct: Multiaddr = format!("/ip4/10.0.0.1/tcp/1/p2p/{target}").parse().unwrap();
        assert_eq!(relay_of(&direct), None);
    }

    #[test]
    fn only_connections_from_this_host_are_local() {
        let mut links = Links::default();
        let peer = PeerId::random();
        let at = |addr: &str| ConnectedPoint::Listener {
            local_addr: "/ip4/0.0.0.0/tcp/1".parse().unwrap(),
            send_back_addr: addr.parse().unwrap(),
        };
        let (here, there, v6) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
            ConnectionId::new_unchecked(3),
        );
        links.established(peer, here, &at("/ip4/127.0.0.1/tcp/5"));
        links.established(peer, there, &at("/ip4/10.0.0.7/tcp/5"));
        links.established(peer, v6, &at("/ip6/::1/udp/5/quic-v1"));
        assert!(links.is_loopback(&peer, here));
        assert!(links.is_loopback(&peer, v6));
        assert!(!links.is_loopback(&peer, there));
        assert!(!links.is_loopback(&PeerId::random(), here));
    }
}
