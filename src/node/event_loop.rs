//! The node's event loop: carries the Chord core's messages over libp2p and answers handles.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::{Swarm, SwarmEvent};
use tokio::sync::{mpsc, oneshot};

use super::{DataDir, NodeError};
use crate::chord::{ChordNode, Event, Id, LookupId, LookupResult, Phase, RequestId};
use crate::net::dial::{dial_error_text, strip_peer, Dialing};
use crate::net::protocol::{check_request, check_response};
use crate::net::{
    Behaviour, BehaviourEvent, Contact, PeerRef, StatusReport, Target, WireRequest, WireResponse,
};

type Reply<T> = oneshot::Sender<Result<T, NodeError>>;

pub(super) enum Command {
    Join {
        target: Target,
        reply: Reply<PeerRef>,
    },
    Lookup {
        key: Id,
        reply: Reply<LookupResult<Contact>>,
    },
    Status {
        reply: oneshot::Sender<StatusReport>,
    },
    Leave {
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
}

enum JoinState {
    /// Connecting to the member we join through, to learn its peer id.
    Dialing {
        dialing: Dialing,
        deadline: Instant,
        reply: Reply<PeerRef>,
    },
    /// The core is joining.
    Joining { reply: Reply<PeerRef> },
}

pub(super) struct EventLoop {
    swarm: Swarm<Behaviour>,
    core: ChordNode<Contact>,
    commands: mpsc::Receiver<Command>,
    /// libp2p's request ids → the core's.
    requests: HashMap<OutboundRequestId, RequestId>,
    lookups: HashMap<LookupId, Reply<LookupResult<Contact>>>,
    join: Option<JoinState>,
    leaving: Vec<oneshot::Sender<Result<(), NodeError>>>,
    /// Held for the node's lifetime: the lock on the data directory.
    _data_dir: Option<DataDir>,
}

impl EventLoop {
    pub(super) fn new(
        swarm: Swarm<Behaviour>,
        core: ChordNode<Contact>,
        commands: mpsc::Receiver<Command>,
        data_dir: Option<DataDir>,
    ) -> Self {
        EventLoop {
            swarm,
            core,
            commands,
            requests: HashMap::new(),
            lookups: HashMap::new(),
            join: None,
            leaving: Vec::new(),
            _data_dir: data_dir,
        }
    }

    pub(super) async fn run(mut self) {
        loop {
            let wake = self.next_wake();
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => {
                        tracing::debug!("every handle dropped; stopping");
                        return;
                    }
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                _ = tokio::time::sleep_until(wake.into()) => self.on_timer(),
            }
            self.flush();
            if self.core.phase() == Phase::Left && self.leaving.is_empty() {
                return;
            }
        }
    }

    fn next_wake(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let dial = match &self.join {
            Some(JoinState::Dialing { deadline, .. }) => Some(*deadline),
            _ => None,
        };
        self.core
            .poll_timeout()
            .into_iter()
            .chain(dial)
            .min()
            .unwrap_or(far)
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        self.core.handle_timeout(now);
        if let Some(JoinState::Dialing { deadline, .. }) = &self.join {
            if *deadline <= now {
                if let Some(JoinState::Dialing {
                    mut dialing, reply, ..
                }) = self.join.take()
                {
                    let _ = reply.send(Err(dialing.timed_out().into()));
                }
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Join { target, reply } => {
                if self.join.is_some() {
                    let _ = reply.send(Err(NodeError::JoinInProgress));
                } else if !self.core.can_join() {
                    let _ = reply.send(Err(crate::chord::JoinError::AlreadyInRing.into()));
                } else {
                    match Dialing::start(&mut self.swarm, target) {
                        Ok(dialing) => {
                            let deadline = now + self.core.config().rpc_timeout * 2;
                            self.join = Some(JoinState::Dialing {
                                dialing,
                                deadline,
                                reply,
                            });
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e.into()));
                        }
                    }
                }
            }
            Command::Lookup { key, reply } => {
                let id = self.core.lookup(now, key);
                self.lookups.insert(id, reply);
            }
            Command::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Command::Leave { reply } => {
                if self.core.phase() == Phase::Left {
                    let _ = reply.send(Ok(()));
                } else {
                    self.leaving.push(reply);
                    self.core.leave(now);
                }
            }
        }
    }

    fn status(&self) -> StatusReport {
        let me = self.core.me().clone();
        let successors = match self.core.successors() {
            [] => vec![me.clone()],
            list => list.to_vec(),
        };
        StatusReport {
            node: me,
            predecessor: self.core.predecessor().cloned(),
            successors,
            fingers: self.core.fingers().to_vec(),
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        let now = Instant::now();
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Chord(event)) => self.on_rpc_event(now, event),
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                let Some(JoinState::Dialing { dialing, .. }) = &mut self.join else {
                    return;
                };
                let Some(via) = dialing.on_established(connection_id, peer_id, &endpoint) else {
                    return;
                };
                let Some(JoinState::Dialing { reply, .. }) = self.join.take() else {
                    return;
                };
                if peer_id == *self.swarm.local_peer_id() {
                    let _ = reply.send(Err(NodeError::JoinSelf));
                    return;
                }
                tracing::info!(%peer_id, "joining through {}", via.addr.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", "));
                match self.core.join(now, via) {
                    Ok(()) => self.join = Some(JoinState::Joining { reply }),
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                ..
            } => {
                if let Some(JoinState::Dialing { dialing, .. }) = &mut self.join {
                    if let Some(e) = dialing.on_failed(connection_id, dial_error_text(&error)) {
                        if let Some(JoinState::Dialing { reply, .. }) = self.join.take() {
                            let _ = reply.send(Err(e.into()));
                        }
                    }
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                let mut me = self.core.me().addr.clone();
                let address = strip_peer(&address);
                if !me.addrs.contains(&address) {
                    me.addrs.push(address);
                    self.core.set_my_addr(me);
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                let mut me = self.core.me().addr.clone();
                me.addrs.retain(|a| *a != address);
                self.core.set_my_addr(me);
            }
            _ => {}
        }
    }

    fn on_rpc_event(
        &mut self,
        now: Instant,
        event: request_response::Event<WireRequest, WireResponse>,
    ) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let response = self.answer(now, &peer, request);
                    // The asker may be gone already; nothing to do then.
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .chord
                        .send_response(channel, response);
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    let Some(id) = self.requests.remove(&request_id) else {
                        return;
                    };
                    match response {
                        WireResponse::Chord(response) => match check_response(&response) {
                            Ok(()) => {
                                self.core.handle_response(now, id, response);
                            }
                            Err(e) => {
                                tracing::warn!(%peer, "invalid answer: {e}");
                                self.core.handle_failure(now, id);
                            }
                        },
                        other => {
                            tracing::warn!(%peer, "unexpected answer to a Chord request: {other:?}");
                            self.core.handle_failure(now, id);
                        }
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                tracing::debug!(%peer, "request failed: {error}");
                if let Some(id) = self.requests.remove(&request_id) {
                    self.core.handle_failure(now, id);
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                // Malformed, oversized or abandoned requests end here; the node goes on.
                tracing::warn!(%peer, "inbound request failed: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn answer(
        &mut self,
        now: Instant,
        peer: &libp2p::PeerId,
        request: WireRequest,
    ) -> WireResponse {
        match request {
            WireRequest::Status => WireResponse::Status(self.status()),
            WireRequest::Chord(request) => match check_request(peer, &request) {
                Ok(()) => WireResponse::Chord(self.core.handle_request(now, request)),
                Err(e) => {
                    tracing::warn!(%peer, "refused request: {e}");
                    WireResponse::Error(e.to_string())
                }
            },
        }
    }

    /// Sends what the core queued and acts on what it reported.
    fn flush(&mut self) {
        let now = Instant::now();
        let local = *self.swarm.local_peer_id();
        while let Some(transmit) = self.core.poll_transmit() {
            if transmit.to.addr.peer_id == local {
                // The core never addresses itself; if a stale view makes it, answer locally.
                let response = self.core.handle_request(now, transmit.request);
                self.core.handle_response(now, transmit.id, response);
                continue;
            }
            let request_id = self
                .swarm
                .behaviour_mut()
                .chord
                .send_request_with_addresses(
                    &transmit.to.addr.peer_id,
                    WireRequest::Chord(transmit.request),
                    transmit.to.addr.addrs.clone(),
                );
            self.requests.insert(request_id, transmit.id);
        }
        while let Some(event) = self.core.poll_event() {
            self.on_core_event(event);
        }
    }

    fn on_core_event(&mut self, event: Event<Contact>) {
        match event {
            Event::LookupDone { id, result } => {
                if let Some(reply) = self.lookups.remove(&id) {
                    let _ = reply.send(result.map_err(NodeError::from));
                }
            }
            Event::Joined { successor } => {
                tracing::info!(successor = %successor.addr.peer_id, "joined the ring");
                if let Some(JoinState::Joining { reply }) = self.join.take() {
                    let _ = reply.send(Ok(successor));
                }
            }
            Event::JoinFailed(error) => {
                tracing::warn!("join failed: {error}");
                if let Some(JoinState::Joining { reply }) = self.join.take() {
                    let _ = reply.send(Err(error.into()));
                }
            }
            Event::Left => {
                tracing::info!("left the ring");
                for reply in self.leaving.drain(..) {
                    let _ = reply.send(Ok(()));
                }
            }
            Event::PredecessorChanged { new, .. } => {
                tracing::debug!(predecessor = ?new.map(|n| n.addr.peer_id), "predecessor changed");
            }
            Event::SuccessorChanged { new, .. } => {
                tracing::debug!(successor = %new.addr.peer_id, "successor changed");
            }
        }
    }
}
