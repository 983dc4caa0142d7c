//! The node's event loop: carries the Chord core's messages over libp2p, answers handles, and
//! hands file requests to the file service.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{Swarm, SwarmEvent};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

use super::links::{Links, Route};
use super::relay_state::Relaying;
use super::{DataDir, NodeError, Service};
use crate::chord::{ChordNode, Event, Id, LookupId, LookupResult, Phase, RequestId};
use crate::metrics::NodeMetrics;
use crate::net::dial::{dial_error_text, strip_peer, Dialing};
use crate::net::protocol::Reachability;
use crate::net::protocol::{check_request, check_response};
use crate::net::{
    Behaviour, BehaviourEvent, Contact, PeerRef, StatusReport, Target, WireRequest, WireResponse,
};

/// How long a relayed connection stays after a direct one to the same peer came up.
const RELAYED_GRACE: Duration = Duration::from_secs(2);

type Reply<T> = oneshot::Sender<Result<T, NodeError>>;

pub(super) enum Command {
    /// Close every connection (a one-shot client about to exit); answered once none is left.
    CloseAll {
        reply: oneshot::Sender<()>,
    },
    /// Dial a user-given address and learn who answers.
    Resolve {
        target: Target,
        reply: Reply<PeerRef>,
    },
    Join {
        via: PeerRef,
        reply: Reply<PeerRef>,
    },
    /// A lookup from this node's table, or starting at `via` (for clients).
    Lookup {
        key: Id,
        via: Option<PeerRef>,
        reply: Reply<LookupResult<Contact>>,
    },
    Status {
        reply: oneshot::Sender<StatusReport>,
    },
    Leave {
        reply: Reply<()>,
    },
    /// Make sure a connection to the peer exists (streams need one); when the only one is
    /// relayed, wait up to `direct_wait` for hole punching to bring a direct one.
    Connect {
        peer: PeerRef,
        direct_wait: Duration,
        reply: Reply<Route>,
    },
    /// Reserve a slot on a relay and listen through it.
    ListenViaRelay {
        relay: PeerRef,
        reply: Reply<Multiaddr>,
    },
    Request {
        to: PeerRef,
        request: Box<WireRequest>,
        reply: Reply<WireResponse>,
    },
}

struct Resolving {
    dialing: Dialing,
    deadline: Instant,
    reply: Reply<PeerRef>,
}

type PendingReply = BoxFuture<'static, (ResponseChannel<WireResponse>, WireResponse)>;

/// A transfer waiting for a direct connection to `peer`.
struct WaitingDirect {
    peer: PeerId,
    deadline: Instant,
    reply: Reply<Route>,
}

pub(super) struct EventLoop {
    pub(super) swarm: Swarm<Behaviour>,
    core: ChordNode<Contact>,
    commands: mpsc::Receiver<Command>,
    service: Option<Arc<dyn Service>>,
    /// libp2p's request ids → the core's, with the request's kind.
    requests: HashMap<OutboundRequestId, (RequestId, &'static str)>,
    /// Requests made through the handle, with their kinds.
    user_requests: HashMap<OutboundRequestId, (Reply<WireResponse>, &'static str)>,
    lookups: HashMap<LookupId, Reply<LookupResult<Contact>>>,
    resolving: Vec<Resolving>,
    /// Dials in flight for `Connect`: how long each may wait for a direct path once connected.
    connecting: HashMap<PeerId, Vec<(Duration, Reply<Route>)>>,
    waiting_direct: Vec<WaitingDirect>,
    /// Who is reached directly and who through a relay.
    pub(super) links: Links,
    /// Relayed connections to close once a direct one has had time to take over.
    closing_relayed: Vec<(Instant, PeerId)>,
    pub(super) relaying: Relaying,
    pub(super) reachability: Reachability,
    join: Option<Reply<PeerRef>>,
    leaving: Vec<Reply<()>>,
    /// Answers the file service is still working on.
    replies: FuturesUnordered<PendingReply>,
    /// Held for the node's lifetime: the lock on the data directory (and where it is).
    data_dir: Option<DataDir>,
    /// Show the connections in `Status` answers to remote peers too.
    share_connections: bool,
    /// The ring's neighbours (predecessor and successor list), whom the connection limits
    /// never refuse: a flood of strangers must not cut the ring.
    neighbours: BTreeSet<PeerId>,
    /// `CloseAll` callers waiting for the last connection to close.
    closing_all: Vec<oneshot::Sender<()>>,
    /// When a failing listener was last reported.
    listener_warned: Option<Instant>,
    pub(super) metrics: NodeMetrics,
    /// The core's periodic rounds already counted in the metrics.
    rounds_counted: u64,
}

/// How often a recurring, non-fatal trouble is logged.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// File requests the service may be answering at once; past it a request is refused "busy"
/// at once, so a flood of requests cannot queue without bound.
pub const MAX_PENDING_REPLIES: usize = 256;

/// What a node's event loop starts from.
pub(super) struct Parts {
    pub swarm: Swarm<Behaviour>,
    pub core: ChordNode<Contact>,
    pub commands: mpsc::Receiver<Command>,
    pub service: Option<Arc<dyn Service>>,
    pub data_dir: Option<DataDir>,
    pub relaying: Relaying,
    pub share_connections: bool,
    pub metrics: NodeMetrics,
}

impl EventLoop {
    pub(super) fn new(parts: Parts) -> Self {
        let Parts {
            swarm,
            core,
            commands,
            service,
            data_dir,
            relaying,
            share_connections,
            metrics,
        } = parts;
        EventLoop {
            swarm,
            core,
            commands,
            service,
            requests: HashMap::new(),
            user_requests: HashMap::new(),
            lookups: HashMap::new(),
            resolving: Vec::new(),
            connecting: HashMap::new(),
            waiting_direct: Vec::new(),
            links: Links::default(),
            closing_relayed: Vec::new(),
            relaying,
            reachability: Reachability::Unknown,
            join: None,
            leaving: Vec::new(),
            replies: FuturesUnordered::new(),
            data_dir,
            share_connections,
            neighbours: BTreeSet::new(),
            closing_all: Vec::new(),
            listener_warned: None,
            metrics,
            rounds_counted: 0,
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
                Some((channel, response)) = self.replies.next(), if !self.replies.is_empty() => {
                    let _ = self.swarm.behaviour_mut().chord.send_response(channel, response);
                }
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
        let dials = self.resolving.iter().map(|r| r.deadline);
        let waits = self.waiting_direct.iter().map(|w| w.deadline);
        let closes = self.closing_relayed.iter().map(|(at, _)| *at);
        self.core
            .poll_timeout()
            .into_iter()
            .chain(dials)
            .chain(waits)
            .chain(closes)
            .chain(self.relaying.next_wake())
            .min()
            .unwrap_or(far)
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        self.core.handle_timeout(now);
        let rounds = self.core.rounds();
        self.metrics.stabilize_rounds(rounds - self.rounds_counted);
        self.rounds_counted = rounds;
        for mut r in self.resolving.extract_if(.., |r| r.deadline <= now) {
            let _ = r.reply.send(Err(r.dialing.timed_out().into()));
        }
        let expired: Vec<_> = self
            .waiting_direct
            .extract_if(.., |w| w.deadline <= now)
            .collect();
        for w in expired {
            // No direct path came up in time: the relayed one is what there is.
            let route = self.links.route(&w.peer).ok_or(NodeError::Connect(
                "the connection closed while waiting for a direct path".into(),
            ));
            let _ = w.reply.send(route);
        }
        let due: Vec<_> = self
            .closing_relayed
            .extract_if(.., |(at, _)| *at <= now)
            .collect();
        for (_, peer) in due {
            for id in self.links.redundant_relayed(&peer) {
                tracing::debug!(%peer, "closing a relayed connection: a direct one exists");
                self.swarm.close_connection(id);
            }
        }
        self.relay_timers(now);
    }

    /// The transfers waiting for a direct connection to `peer`, taken out of the queue.
    fn take_waiting(&mut self, peer: PeerId) -> Vec<WaitingDirect> {
        self.waiting_direct
            .extract_if(.., |w| w.peer == peer)
            .collect()
    }

    /// Answers a `Connect` now that `peer` is connected: at once if directly, else after a
    /// bounded wait for hole punching.
    fn route_ready(&mut self, peer: PeerId, direct_wait: Duration, reply: Reply<Route>) {
        match self.links.route(&peer) {
            Some(Route::Relayed { .. }) if !direct_wait.is_zero() => {
                self.waiting_direct.push(WaitingDirect {
                    peer,
                    deadline: Instant::now() + direct_wait,
                    reply,
                });
            }
            Some(route) => {
                let _ = reply.send(Ok(route));
            }
            None => {
                let _ = reply.send(Err(NodeError::Connect("not connected".into())));
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Resolve { target, reply } => match Dialing::start(&mut self.swarm, target) {
                Ok(dialing) => {
                    let deadline = now + self.core.config().rpc_timeout * 2;
                    self.resolving.push(Resolving {
                        dialing,
                        deadline,
                        reply,
                    });
                }
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            },
            Command::Join { via, reply } => {
                if self.join.is_some() {
                    let _ = reply.send(Err(NodeError::JoinInProgress));
                } else if via.addr.peer_id == *self.swarm.local_peer_id() {
                    let _ = reply.send(Err(NodeError::JoinSelf));
                } else {
                    tracing::info!(peer = %via.addr.peer_id, "joining");
                    match self.core.join(now, via) {
                        Ok(()) => self.join = Some(reply),
                        Err(e) => {
                            let _ = reply.send(Err(e.into()));
                        }
                    }
                }
            }
            Command::Lookup { key, via, reply } => {
                let id = match via {
                    Some(via) => self.core.lookup_from(now, key, via),
                    None => self.core.lookup(now, key),
                };
                self.lookups.insert(id, reply);
            }
            Command::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Command::CloseAll { reply } => {
                let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
                for peer in peers {
                    let _ = self.swarm.disconnect_peer_id(peer);
                }
                self.closing_all.push(reply);
                self.answer_closing_all();
            }
            Command::Leave { reply } => {
                if self.core.phase() == Phase::Left {
                    let _ = reply.send(Ok(()));
                } else {
                    self.leaving.push(reply);
                    self.core.leave(now);
                }
            }
            Command::Connect {
                peer,
                direct_wait,
                reply,
            } => {
                let id = peer.addr.peer_id;
                if id == *self.swarm.local_peer_id() {
                    let _ = reply.send(Ok(Route::Direct));
                    return;
                }
                if self.swarm.is_connected(&id) {
                    self.route_ready(id, direct_wait, reply);
                    return;
                }
                let opts = DialOpts::peer_id(id)
                    .addresses(peer.addr.addrs.clone())
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build();
                match self.swarm.dial(opts) {
                    Ok(()) | Err(libp2p::swarm::DialError::DialPeerConditionFalse(_)) => {
                        self.connecting
                            .entry(id)
                            .or_default()
                            .push((direct_wait, reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NodeError::Connect(dial_error_text(&e))));
                    }
                }
            }
            Command::ListenViaRelay { relay, reply } => self.listen_via_relay(relay, reply),
            Command::Request { to, request, reply } => {
                let kind = request.kind();
                self.metrics.rpc(kind, false);
                let id = self
                    .swarm
                    .behaviour_mut()
                    .chord
                    .send_request_with_addresses(&to.addr.peer_id, *request, to.addr.addrs.clone());
                self.user_requests.insert(id, (reply, kind));
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
            reachability: self.reachability,
            connections: self.links.report(),
            storage: self.service.as_ref().and_then(|s| s.storage()),
            data_dir: self
                .data_dir
                .as_ref()
                .map(|d| d.path().display().to_string()),
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        let now = Instant::now();
        self.metrics.record(&event);
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Chord(event)) => self.on_rpc_event(now, event),
            SwarmEvent::Behaviour(event) => self.on_nat_event(event),
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                self.links.established(peer_id, connection_id, &endpoint);
                if !endpoint.is_relayed() {
                    for w in self.take_waiting(peer_id) {
                        let _ = w.reply.send(Ok(Route::Direct));
                    }
                    if !self.links.redundant_relayed(&peer_id).is_empty() {
                        // Let requests in flight on the relayed connection finish first.
                        self.closing_relayed.push((now + RELAYED_GRACE, peer_id));
                    }
                }
                for (wait, reply) in self.connecting.remove(&peer_id).unwrap_or_default() {
                    self.route_ready(peer_id, wait, reply);
                }
                let found = self.resolving.iter_mut().enumerate().find_map(|(i, r)| {
                    r.dialing
                        .on_established(connection_id, peer_id, &endpoint)
                        .map(|node| (i, node))
                });
                if let Some((at, node)) = found {
                    let r = self.resolving.remove(at);
                    let _ = r.reply.send(Ok(node));
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                let text = dial_error_text(&error);
                if let Some(peer) = peer_id {
                    if !self.swarm.is_connected(&peer) {
                        for reply in self.connecting.remove(&peer).unwrap_or_default() {
                            let _ = reply.1.send(Err(NodeError::Connect(text.clone())));
                        }
                    }
                }
                let mut i = 0;
                while i < self.resolving.len() {
                    if let Some(e) = self.resolving[i]
                        .dialing
                        .on_failed(connection_id, text.clone())
                    {
                        let r = self.resolving.remove(i);
                        let _ = r.reply.send(Err(e.into()));
                    } else {
                        i += 1;
                    }
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                ..
            } => {
                self.links.closed(peer_id, connection_id);
                self.answer_closing_all();
                if self.links.route(&peer_id).is_none() {
                    self.relaying.disconnected(&peer_id);
                    for w in self.take_waiting(peer_id) {
                        let _ = w
                            .reply
                            .send(Err(NodeError::Connect("connection lost".into())));
                    }
                }
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                let reason = match reason {
                    Ok(()) => "closed".to_string(),
                    Err(e) => crate::net::dial::root_cause(&e),
                };
                self.on_listener_closed(now, listener_id, reason);
            }
            SwarmEvent::ListenerError { listener_id, error } => {
                let reason = crate::net::dial::root_cause(&error);
                if self.relaying.is_relay_listener(listener_id) {
                    self.on_listener_closed(now, listener_id, reason);
                } else if self
                    .listener_warned
                    .is_none_or(|t| t.elapsed() > WARN_EVERY)
                {
                    // Not fatal (e.g. out of descriptors): the listener keeps accepting once
                    // it can. Said once a minute, not at every failed accept.
                    tracing::warn!("a listener cannot accept connections now: {reason}");
                    self.listener_warned = Some(now);
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                self.relaying.on_new_listen_addr(&mut self.swarm, &address);
                self.add_my_addr(&address);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                let address = strip_peer(&address);
                let mut me = self.core.me().addr.clone();
                me.addrs.retain(|a| *a != address);
                self.core.set_my_addr(me);
            }
            _ => {}
        }
    }

    /// Others can reach this node at `address` too: it goes in the node's ring reference.
    pub(super) fn add_my_addr(&mut self, address: &Multiaddr) {
        let address = strip_peer(address);
        let mut me = self.core.me().addr.clone();
        if !me.addrs.contains(&address) && me.addrs.len() < crate::net::protocol::MAX_ADDRS {
            me.addrs.push(address);
            self.core.set_my_addr(me);
        }
    }

    fn on_rpc_event(
        &mut self,
        now: Instant,
        event: request_response::Event<WireRequest, WireResponse>,
    ) {
        match event {
            request_response::Event::Message {
                peer,
                message,
                connection_id,
            } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let local = self.links.is_loopback(&peer, connection_id);
                    self.answer(now, peer, local, request, channel)
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some((reply, _)) = self.user_requests.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                        return;
                    }
                    let Some((id, _)) = self.requests.remove(&request_id) else {
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
                if let Some((reply, kind)) = self.user_requests.remove(&request_id) {
                    self.metrics.rpc_failed(kind);
                    let _ = reply.send(Err(NodeError::Request(error.to_string())));
                } else if let Some((id, kind)) = self.requests.remove(&request_id) {
                    self.metrics.rpc_failed(kind);
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

    /// `local`: the request came over a loopback connection (a client on this host).
    fn answer(
        &mut self,
        now: Instant,
        peer: PeerId,
        local: bool,
        request: WireRequest,
        channel: ResponseChannel<WireResponse>,
    ) {
        self.metrics.rpc(request.kind(), true);
        let response = match request {
            WireRequest::Status => {
                let mut report = self.status();
                // Who this node talks to is its user's business: remote askers get the ring
                // pointers only, unless the operator shares the connections.
                if !local && !self.share_connections {
                    report.connections.clear();
                    report.data_dir = None;
                }
                WireResponse::Status(report)
            }
            WireRequest::Chord(request) => match check_request(&peer, &request) {
                Ok(()) => WireResponse::Chord(self.core.handle_request(now, request)),
                Err(e) => {
                    tracing::warn!(%peer, "refused request: {e}");
                    WireResponse::Error(e.to_string())
                }
            },
            WireRequest::Files(_) if self.replies.len() >= MAX_PENDING_REPLIES => {
                WireResponse::Error("busy: too many file requests under way; try again".into())
            }
            WireRequest::Files(request) => match &self.service {
                Some(service) => {
                    let answer = service.handle(peer, request);
                    self.replies
                        .push(Box::pin(async move { (channel, answer.await) }));
                    return;
                }
                None => WireResponse::Error("this node keeps no files".into()),
            },
        };
        // The asker may be gone already; nothing to do then.
        let _ = self
            .swarm
            .behaviour_mut()
            .chord
            .send_response(channel, response);
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
            let request = WireRequest::Chord(transmit.request);
            let kind = request.kind();
            self.metrics.rpc(kind, false);
            let request_id = self
                .swarm
                .behaviour_mut()
                .chord
                .send_request_with_addresses(
                    &transmit.to.addr.peer_id,
                    request,
                    transmit.to.addr.addrs.clone(),
                );
            self.requests.insert(request_id, (transmit.id, kind));
        }
        while let Some(event) = self.core.poll_event() {
            self.on_core_event(event);
        }
        self.exempt_neighbours();
    }

    fn answer_closing_all(&mut self) {
        if !self.closing_all.is_empty() && self.swarm.connected_peers().next().is_none() {
            for reply in self.closing_all.drain(..) {
                let _ = reply.send(());
            }
        }
    }

    /// Keeps the connection limits' bypass list equal to the ring's neighbours now.
    fn exempt_neighbours(&mut self) {
        let local = *self.swarm.local_peer_id();
        let now: BTreeSet<PeerId> = self
            .core
            .predecessor()
            .into_iter()
            .chain(self.core.successors())
            .map(|n| n.addr.peer_id)
            .filter(|p| *p != local)
            .collect();
        if now == self.neighbours {
            return;
        }
        let limits = &mut self.swarm.behaviour_mut().limits;
        for gone in self.neighbours.difference(&now) {
            limits.remove_peer_id(gone);
        }
        for new in now.difference(&self.neighbours) {
            limits.bypass_peer_id(new);
        }
        self.neighbours = now;
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
                if let Some(reply) = self.join.take() {
                    let _ = reply.send(Ok(successor));
                }
            }
            Event::JoinFailed(error) => {
                tracing::warn!("join failed: {error}");
                if let Some(reply) = self.join.take() {
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
                self.metrics.pointer_changed(true);
                tracing::debug!(predecessor = ?new.map(|n| n.addr.peer_id), "predecessor changed");
                if let Some(service) = &self.service {
                    service.ring_changed();
                }
            }
            Event::SuccessorChanged { new, .. } => {
                self.metrics.pointer_changed(false);
                tracing::debug!(successor = %new.addr.peer_id, "successor changed");
                if let Some(service) = &self.service {
                    service.ring_changed();
                }
            }
        }
    }
}
