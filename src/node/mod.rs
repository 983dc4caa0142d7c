//! The running node: one event loop owns the swarm, the Chord core and the timers; a cloneable
//! [`NodeHandle`] talks to it over a channel.

mod data_dir;
mod event_loop;

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use data_dir::DataDir;

use crate::chord::{self, ChordNode, Id, JoinError, LookupError, LookupResult};
use crate::net::{
    build_swarm, peer_ref, with_peer, BuildError, Contact, NetConfig, PeerRef, StatusReport, Target,
};
use event_loop::{Command, EventLoop};

/// Everything needed to start a node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Addresses to listen on (port 0 picks a free port).
    pub listen: Vec<Multiaddr>,
    /// Where the identity lives. `None`: a fresh identity kept in memory only.
    pub data_dir: Option<PathBuf>,
    pub chord: chord::Config,
    /// How long an unused connection stays open.
    pub idle_timeout: Duration,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            listen: vec!["/ip4/127.0.0.1/udp/0/quic-v1"
                .parse()
                .expect("valid literal multiaddr")],
            data_dir: None,
            chord: chord::Config::default(),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("data directory {path}: {reason}")]
    DataDir { path: String, reason: String },
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error(transparent)]
    Dial(#[from] crate::net::dial::DialError),
    #[error("join failed: {0}")]
    Join(#[from] JoinError),
    #[error("that address is this node itself")]
    JoinSelf,
    #[error("a join is already under way")]
    JoinInProgress,
    #[error("lookup failed: {0}")]
    Lookup(#[from] LookupError),
    #[error("the node has stopped")]
    Stopped,
}

/// A started node. Dropping it (and every handle) stops the node without an informed leave.
pub struct Node {
    handle: NodeHandle,
    task: JoinHandle<()>,
    me: PeerRef,
}

impl Node {
    /// Opens the data dir, listens, and spawns the event loop. Returns once every listen
    /// address is bound, so the caller can print them.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        let data_dir = config.data_dir.as_deref().map(DataDir::open).transpose()?;
        let key = match &data_dir {
            Some(dir) => dir.identity()?,
            None => Keypair::generate_ed25519(),
        };
        let peer_id = key.public().to_peer_id();
        let net = NetConfig {
            request_timeout: config.chord.rpc_timeout,
            idle_timeout: config.idle_timeout,
            serve: true,
        };
        let mut swarm = build_swarm(key, &net)?;
        let mut listeners = Vec::new();
        for addr in &config.listen {
            let id = swarm
                .listen_on(addr.clone())
                .map_err(|e| NodeError::Listen {
                    addr: addr.to_string(),
                    reason: crate::net::dial::root_cause(&e),
                })?;
            listeners.push((id, addr.clone()));
        }
        // Wait until each listener reports an address: only then is the port known. Addresses
        // are kept in the order the listeners were given, so output is stable (QUIC first).
        let mut reported: Vec<Vec<Multiaddr>> = vec![Vec::new(); listeners.len()];
        let mut waiting: Vec<_> = listeners.clone();
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        while !waiting.is_empty() {
            tokio::select! {
                _ = &mut deadline => {
                    let addr = waiting.first().map(|w| w.1.to_string()).unwrap_or_default();
                    return Err(NodeError::Listen { addr, reason: "no address reported in time".into() });
                }
                event = swarm.select_next_some() => match event {
                    SwarmEvent::NewListenAddr { listener_id, address } => {
                        waiting.retain(|(id, _)| *id != listener_id);
                        if let Some(at) = listeners.iter().position(|(id, _)| *id == listener_id) {
                            reported[at].push(address);
                        }
                    }
                    SwarmEvent::ListenerClosed { listener_id, reason, .. } => {
                        let addr = listener_addr(&listeners, listener_id);
                        let reason = match reason { Err(e) => e.to_string(), Ok(()) => "closed".into() };
                        return Err(NodeError::Listen { addr, reason });
                    }
                    SwarmEvent::ListenerError { listener_id, error } => {
                        let addr = listener_addr(&listeners, listener_id);
                        return Err(NodeError::Listen { addr, reason: error.to_string() });
                    }
                    _ => {}
                },
            }
        }
        let me = peer_ref(peer_id, reported.concat());
        let core = ChordNode::new(me.clone(), config.chord.clone(), std::time::Instant::now());
        let (tx, rx) = mpsc::channel(64);
        let event_loop = EventLoop::new(swarm, core, rx, data_dir);
        let task = tokio::spawn(event_loop.run());
        Ok(Node {
            handle: NodeHandle { tx },
            task,
            me,
        })
    }

    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    pub fn peer_id(&self) -> PeerId {
        self.me.addr.peer_id
    }

    pub fn id(&self) -> Id {
        self.me.id
    }

    /// This node as a ring member sees it (its listen addresses at start).
    pub fn me(&self) -> &PeerRef {
        &self.me
    }

    /// Listen addresses with `/p2p/<peer id>`: what others pass to `--join`.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.me
            .addr
            .addrs
            .iter()
            .map(|a| with_peer(a, self.peer_id()))
            .collect()
    }

    /// Informed leave, then the event loop ends.
    pub async fn leave(self) -> Result<(), NodeError> {
        let result = self.handle.leave().await;
        let _ = self.task.await;
        result
    }

    /// Stops the node at once, telling nobody: a crash, as far as the ring can tell.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// Waits until the event loop ends (after a leave, or when every handle is gone).
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

fn listener_addr(
    listeners: &[(libp2p::core::transport::ListenerId, Multiaddr)],
    id: libp2p::core::transport::ListenerId,
) -> String {
    listeners
        .iter()
        .find(|(l, _)| *l == id)
        .map(|(_, a)| a.to_string())
        .unwrap_or_default()
}

/// The async API of a running node. Cheap to clone.
#[derive(Clone, Debug)]
pub struct NodeHandle {
    tx: mpsc::Sender<Command>,
}

impl NodeHandle {
    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// Joins the ring through any member. Returns this node's new successor.
    pub async fn join(&self, target: Target) -> Result<PeerRef, NodeError> {
        self.call(|reply| Command::Join { target, reply }).await?
    }

    /// successor(key), found by an iterative lookup from this node.
    pub async fn lookup(&self, key: Id) -> Result<LookupResult<Contact>, NodeError> {
        self.call(|reply| Command::Lookup { key, reply }).await?
    }

    pub async fn status(&self) -> Result<StatusReport, NodeError> {
        self.call(|reply| Command::Status { reply }).await
    }

    /// Informed leave: neighbours relink at once; the node stops afterwards.
    pub async fn leave(&self) -> Result<(), NodeError> {
        self.call(|reply| Command::Leave { reply }).await?
    }
}
