//! The event loop's part in crossing NATs: listening through relays (and listening again when
//! a reservation is lost), offering a relay, and what hole punching and AutoNAT report.

use std::time::Instant;

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::{autonat, dcutr, identify, relay, Multiaddr};

use super::event_loop::EventLoop;
use super::relay_state::{circuit_through, RelayListen, Reply, IDENTIFY_WAIT, RELISTEN_AFTER};
use super::NodeError;
use crate::net::protocol::{PeerRef, Reachability};
use crate::net::BehaviourEvent;

impl EventLoop {
    /// Reserves a slot on `relay` and listens through it; `reply` gets the circuit address
    /// others dial, or why the relay refused.
    pub(super) fn listen_via_relay(&mut self, relay: PeerRef, reply: Reply<Multiaddr>) {
        let Some(circuit) = circuit_through(&relay) else {
            let _ = reply.send(Err(NodeError::Relay("the relay has no address".into())));
            return;
        };
        let peer = relay.addr.peer_id;
        if self.relaying.listens.iter().any(|l| l.relay == peer) {
            let _ = reply.send(Err(NodeError::Relay("already listening through it".into())));
            return;
        }
        let now = Instant::now();
        // DCUtR offers the addresses identify observed when a relayed connection opens: wait
        // for the relay's identify so there is one to offer.
        let start_by = if self.relaying.identified.contains(&peer) {
            now
        } else {
            now + IDENTIFY_WAIT
        };
        let deadline = now + IDENTIFY_WAIT + self.relaying.reserve_timeout;
        self.relaying.listens.push(RelayListen {
            relay: peer,
            circuit,
            listener: None,
            start_by: Some(start_by),
            reply: Some((deadline, reply)),
        });
        self.relay_timers(now);
    }

    fn start_listening(&mut self, at: usize) {
        let circuit = self.relaying.listens[at].circuit.clone();
        self.relaying.listens[at].start_by = None;
        match self.swarm.listen_on(circuit.clone()) {
            Ok(id) => self.relaying.listens[at].listener = Some(id),
            Err(e) => {
                let why = crate::net::dial::root_cause(&e);
                tracing::warn!(%circuit, "cannot listen through the relay: {why}");
                if let Some((_, reply)) = self.relaying.listens[at].reply.take() {
                    let _ = reply.send(Err(NodeError::Relay(why)));
                    self.relaying.listens.remove(at);
                } else {
                    self.relaying.listens[at].start_by = Some(Instant::now() + RELISTEN_AFTER);
                }
            }
        }
    }

    /// Starts listens that are due, and fails first reservations that took too long.
    pub(super) fn relay_timers(&mut self, now: Instant) {
        let mut at = 0;
        while at < self.relaying.listens.len() {
            let listen = &mut self.relaying.listens[at];
            if listen
                .reply
                .as_ref()
                .is_some_and(|(deadline, _)| *deadline <= now)
            {
                let mut listen = self.relaying.listens.remove(at);
                if let Some(id) = listen.listener {
                    self.swarm.remove_listener(id);
                }
                if let Some((_, reply)) = listen.reply.take() {
                    let why = "the relay did not accept a reservation in time".to_string();
                    let _ = reply.send(Err(NodeError::Relay(why)));
                }
                continue;
            }
            let due = listen.start_by.is_some_and(|t| t <= now);
            if due {
                self.start_listening(at);
            }
            at += 1;
        }
    }

    /// A listener closed: a relay refused or lost our reservation. The first time, the caller
    /// hears why; later, the node listens again after a pause.
    pub(super) fn on_listener_closed(&mut self, now: Instant, id: ListenerId, reason: String) {
        let Some(at) = self
            .relaying
            .listens
            .iter()
            .position(|l| l.listener == Some(id))
        else {
            tracing::warn!("a listener closed: {reason}");
            return;
        };
        let listen = &mut self.relaying.listens[at];
        listen.listener = None;
        if let Some((_, reply)) = listen.reply.take() {
            let _ = reply.send(Err(NodeError::Relay(reason)));
            self.relaying.listens.remove(at);
        } else {
            tracing::warn!(relay = %listen.relay, "lost the relay reservation ({reason}); listening again soon");
            listen.start_by = Some(now + RELISTEN_AFTER);
        }
    }

    /// Relay, hole punching, AutoNAT and identify events.
    pub(super) fn on_nat_event(&mut self, event: BehaviourEvent) {
        match &event {
            BehaviourEvent::Identify(e) => self.metrics.record(e),
            BehaviourEvent::Ping(e) => self.metrics.record(e),
            BehaviourEvent::Relay(e) => self.metrics.record(e),
            BehaviourEvent::Dcutr(e) => self.metrics.record(e),
            _ => {}
        }
        match event {
            BehaviourEvent::RelayClient(event) => self.on_relay_client(event),
            BehaviourEvent::Relay(event) => tracing::debug!("relay service: {event:?}"),
            BehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            }) => match result {
                Ok(_) => tracing::info!(peer = %remote_peer_id, "hole punched: direct connection"),
                Err(e) => tracing::info!(peer = %remote_peer_id, "hole punching failed: {e}"),
            },
            BehaviourEvent::Autonat(autonat::Event::StatusChanged { new, .. }) => {
                self.reachability = match new {
                    autonat::NatStatus::Public(_) => Reachability::Public,
                    autonat::NatStatus::Private => Reachability::Private,
                    autonat::NatStatus::Unknown => Reachability::Unknown,
                };
                tracing::info!("reachability: {}", self.reachability.as_str());
            }
            BehaviourEvent::Identify(identify::Event::Received { peer_id, .. })
                if self.relaying.identified.insert(peer_id) =>
            {
                let now = Instant::now();
                for listen in &mut self.relaying.listens {
                    if listen.relay == peer_id && listen.listener.is_none() {
                        listen.start_by = listen.start_by.map(|_| now);
                    }
                }
                self.relay_timers(now);
            }
            _ => {}
        }
    }

    fn on_relay_client(&mut self, event: relay::client::Event) {
        match event {
            relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                limit,
                ..
            } => {
                let data = limit.as_ref().and_then(|l| l.data_in_bytes());
                self.links.relay_limit(relay_peer_id, data);
                let me = *self.swarm.local_peer_id();
                let mut circuits = Vec::new();
                for listen in &mut self.relaying.listens {
                    if listen.relay == relay_peer_id {
                        circuits.push(listen.circuit.clone());
                        if let Some((_, reply)) = listen.reply.take() {
                            let addr = listen.circuit.clone().with(Protocol::P2p(me));
                            tracing::info!(%addr, "listening through the relay");
                            let _ = reply.send(Ok(addr));
                        }
                    }
                }
                // Advertise the circuit now: the listener's own report may come later.
                for circuit in circuits {
                    self.add_my_addr(&circuit);
                }
            }
            relay::client::Event::OutboundCircuitEstablished {
                relay_peer_id,
                limit,
            } => {
                let data = limit.as_ref().and_then(|l| l.data_in_bytes());
                self.links.relay_limit(relay_peer_id, data);
            }
            other => tracing::debug!("relay client: {other:?}"),
        }
    }
}
