//! A one-shot client: joins nothing, asks a ring member (and whoever it points to) and leaves.
//! Used by `chord-p2p lookup|status --peer ADDR` and by tests.

use std::time::Duration;

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::{Swarm, SwarmEvent};

use super::address::Target;
use super::dial::{dial_error_text, DialError, Dialing};
use super::protocol::{
    check_response, check_status, NetConfig, PeerRef, StatusReport, WireRequest, WireResponse,
};
use super::swarm::{build_swarm, Behaviour, BehaviourEvent, BuildError};
use crate::chord::{Id, Lookup, LookupError, LookupResult, Next, Request, Response};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Dial(#[from] DialError),
    #[error("request to {peer} failed: {reason}")]
    Request { peer: String, reason: String },
    #[error("{peer} refused the request: {reason}")]
    Refused { peer: String, reason: String },
    #[error("{peer} sent an invalid answer: {reason}")]
    Invalid { peer: String, reason: String },
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

pub struct Client {
    swarm: Swarm<Behaviour>,
    timeout: Duration,
}

impl Client {
    /// A client with a fresh identity; `timeout` bounds each dial and each request.
    pub fn new(timeout: Duration) -> Result<Self, ClientError> {
        Self::with_identity(Keypair::generate_ed25519(), timeout)
    }

    pub fn with_identity(key: Keypair, timeout: Duration) -> Result<Self, ClientError> {
        let config = NetConfig {
            request_timeout: timeout,
            serve: false,
            ..NetConfig::default()
        };
        Ok(Client {
            swarm: build_swarm(key, &config)?,
            timeout,
        })
    }

    /// Connects to `target` and returns it as a node reference.
    pub async fn connect(&mut self, target: Target) -> Result<PeerRef, ClientError> {
        let mut dialing = Dialing::start(&mut self.swarm, target)?;
        let deadline = tokio::time::sleep(self.timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => return Err(dialing.timed_out().into()),
                event = self.swarm.select_next_some() => match event {
                    SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, .. } => {
                        if let Some(node) = dialing.on_established(connection_id, peer_id, &endpoint) {
                            return Ok(node);
                        }
                    }
                    SwarmEvent::OutgoingConnectionError { connection_id, error, .. } => {
                        if let Some(e) = dialing.on_failed(connection_id, dial_error_text(&error)) {
                            return Err(e.into());
                        }
                    }
                    _ => {}
                },
            }
        }
    }

    /// Sends one request and waits for its answer.
    pub async fn request(
        &mut self,
        to: &PeerRef,
        request: WireRequest,
    ) -> Result<WireResponse, ClientError> {
        let peer = to.addr.peer_id;
        let id: OutboundRequestId = self
            .swarm
            .behaviour_mut()
            .chord
            .send_request_with_addresses(&peer, request, to.addr.addrs.clone());
        let deadline = tokio::time::sleep(self.timeout + Duration::from_secs(1));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => return Err(ClientError::Timeout(self.timeout)),
                event = self.swarm.select_next_some() => match event {
                    SwarmEvent::Behaviour(BehaviourEvent::Chord(request_response::Event::Message {
                        message: request_response::Message::Response { request_id, response },
                        ..
                    })) if request_id == id => return Ok(response),
                    SwarmEvent::Behaviour(BehaviourEvent::Chord(request_response::Event::OutboundFailure {
                        request_id, error, ..
                    })) if request_id == id => {
                        return Err(ClientError::Request { peer: peer.to_string(), reason: error.to_string() })
                    }
                    _ => {}
                },
            }
        }
    }

    /// A core request; refusals and malformed answers become errors.
    async fn chord(
        &mut self,
        to: &PeerRef,
        request: Request<crate::net::Contact>,
    ) -> Result<Response<crate::net::Contact>, ClientError> {
        let peer = to.addr.peer_id.to_string();
        match self.request(to, WireRequest::Chord(request)).await? {
            WireResponse::Chord(response) => {
                check_response(&response).map_err(|e| ClientError::Invalid {
                    peer,
                    reason: e.to_string(),
                })?;
                Ok(response)
            }
            WireResponse::Error(reason) => Err(ClientError::Refused { peer, reason }),
            WireResponse::Status(_) => Err(ClientError::Invalid {
                peer,
                reason: "status where a Chord answer was due".into(),
            }),
        }
    }

    /// The routing state of `node`.
    pub async fn status(&mut self, node: &PeerRef) -> Result<StatusReport, ClientError> {
        let peer = node.addr.peer_id.to_string();
        match self.request(node, WireRequest::Status).await? {
            WireResponse::Status(report) => {
                check_status(&report).map_err(|e| ClientError::Invalid {
                    peer,
                    reason: e.to_string(),
                })?;
                Ok(report)
            }
            WireResponse::Error(reason) => Err(ClientError::Refused { peer, reason }),
            WireResponse::Chord(_) => Err(ClientError::Invalid {
                peer,
                reason: "Chord answer where a status was due".into(),
            }),
        }
    }

    /// An iterative lookup of successor(key) that starts at `entry`.
    pub async fn lookup(
        &mut self,
        entry: PeerRef,
        key: Id,
    ) -> Result<LookupResult<crate::net::Contact>, ClientError> {
        let mut lookup = Lookup::new(key, vec![entry], 0).verify_owner(true);
        loop {
            match lookup.next_action() {
                Next::Ask(node) => match self.chord(&node, Request::FindSuccessor { key }).await {
                    Ok(Response::Step(step)) => {
                        lookup.on_response(&node.id, step);
                    }
                    Ok(_) | Err(_) => {
                        lookup.on_failure(&node.id);
                    }
                },
                Next::Verify(node) => match self.chord(&node, Request::Ping).await {
                    Ok(Response::Ack) => {
                        lookup.on_alive(&node.id);
                    }
                    Ok(_) | Err(_) => {
                        lookup.on_failure(&node.id);
                    }
                },
                // Every ask is answered before `next_action` runs again, so nothing can be in flight.
                Next::Waiting => return Err(LookupError::Unreachable.into()),
                Next::Finished => {
                    return match lookup.into_outcome() {
                        Some(Ok(result)) => Ok(result),
                        Some(Err(e)) => Err(e.into()),
                        None => Err(LookupError::Unreachable.into()),
                    }
                }
            }
        }
    }
}
