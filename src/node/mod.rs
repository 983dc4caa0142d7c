//! The running node: one event loop owns the swarm, the Chord core and the timers; a cloneable
//! [`NodeHandle`] talks to it over a channel. A file service (any [`Service`]; the files layer
//! above provides one) sits beside it and uses the handle: this layer knows the interface, not
//! the service.

mod data_dir;
mod event_loop;
mod links;
mod relay_state;
mod relaying;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use data_dir::DataDir;
pub use links::Route;

use crate::chord::{self, ChordNode, Id, JoinError, LookupError, LookupResult};
use crate::metrics::NodeMetrics;
use crate::net::protocol::FileRequest;
use crate::net::{
    build_swarm, peer_ref, with_peer, BuildError, ConnectionLimits, Contact, NetConfig, PeerRef,
    RelayLimits, StatusReport, Target, TransportKind, WireRequest, WireResponse,
};
use event_loop::{Command, EventLoop, Parts};

/// Everything needed to start a node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Addresses to listen on (port 0 picks a free port). None: a client that only dials out.
    pub listen: Vec<Multiaddr>,
    /// Where the identity (and a file service's data) live. `None`: a fresh identity in
    /// memory.
    pub data_dir: Option<PathBuf>,
    /// Use this identity instead of the data dir's (one-shot clients keep theirs elsewhere).
    pub identity: Option<Keypair>,
    pub chord: chord::Config,
    /// How long an unused connection stays open.
    pub idle_timeout: Duration,
    /// QUIC + TCP, TCP only, or in-memory.
    pub transport: TransportKind,
    /// Offer circuit relay v2 to other nodes, with these limits.
    pub relay_server: Option<RelayLimits>,
    /// Relays to reserve a slot on and listen through (for a node behind a NAT).
    pub relays: Vec<Target>,
    /// Addresses where others can reach this node that it cannot see itself (a port forward,
    /// a public IP in front of it). Advertised as they are.
    pub external_addrs: Vec<Multiaddr>,
    /// Show this node's open connections in `Status` answers to remote peers; they always go
    /// to its own user and to clients on the same host.
    pub share_connections: bool,
    /// How many connections the node accepts.
    pub connection_limits: ConnectionLimits,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            listen: vec!["/ip4/127.0.0.1/udp/0/quic-v1"
                .parse()
                .expect("valid literal multiaddr")],
            data_dir: None,
            identity: None,
            chord: chord::Config::default(),
            idle_timeout: Duration::from_secs(60),
            transport: TransportKind::default(),
            relay_server: None,
            relays: Vec::new(),
            external_addrs: Vec::new(),
            share_connections: false,
            connection_limits: ConnectionLimits::default(),
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
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("request failed: {0}")]
    Request(String),
    #[error("join failed: {0}")]
    Join(#[from] JoinError),
    #[error("that address is this node itself")]
    JoinSelf,
    #[error("relay: {0}")]
    Relay(String),
    #[error("a join is already under way")]
    JoinInProgress,
    #[error("lookup failed: {0}")]
    Lookup(#[from] LookupError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the node has stopped")]
    Stopped,
}

/// What the node needs from a file service: answers to file requests, a nudge whenever the
/// node's neighbours change (keys may have to move), and its part of an informed leave.
pub trait Service: Send + Sync + 'static {
    fn handle(&self, from: PeerId, request: FileRequest) -> BoxFuture<'static, WireResponse>;
    fn ring_changed(&self);
    /// Before an informed leave: hand what this node holds to its successor.
    /// Hands what the service keeps to the successors before an informed leave; says how
    /// many items (files) went.
    fn before_leave(&self) -> BoxFuture<'static, usize> {
        Box::pin(async { 0 })
    }
    /// The service itself, so the layer that made it can find it again on a [`Node`].
    fn as_any(&self) -> &dyn std::any::Any;
    /// What the service stores, for `Status`.
    fn storage(&self) -> Option<crate::net::protocol::StorageReport> {
        None
    }
}

/// A started node. Dropping it stops everything at once, without an informed leave.
pub struct Node {
    handle: NodeHandle,
    task: JoinHandle<()>,
    /// The file service's tasks (transfer server, repair).
    helpers: Vec<JoinHandle<()>>,
    me: PeerRef,
    control: libp2p_stream::Control,
    service: Option<Arc<dyn Service>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.task.abort();
        for helper in &self.helpers {
            helper.abort();
        }
    }
}

/// What a file service gets to build itself on a starting node.
pub struct ServiceContext {
    pub handle: NodeHandle,
    pub control: libp2p_stream::Control,
    pub identity: Keypair,
    /// The node's data dir, where a service keeps its own data (`None`: in memory or a
    /// temporary place of its own).
    pub data_dir: Option<PathBuf>,
}

/// Builds a node's file service: the service answering `Files` requests, and the tasks to run
/// beside the event loop (stopped with the node).
pub type ServiceFactory = Box<
    dyn FnOnce(ServiceContext) -> Result<(Arc<dyn Service>, Vec<JoinHandle<()>>), NodeError> + Send,
>;

impl Node {
    /// Opens the data dir, listens, and spawns the event loop: a node without a file service
    /// (it answers `Files` requests with an error). Returns once every listen address is bound,
    /// so the caller can print them.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        Node::start_inner(config, None).await
    }

    /// Starts a node whose file requests and streams are served by what `factory` builds.
    pub async fn start_with_service(
        config: NodeConfig,
        factory: ServiceFactory,
    ) -> Result<Node, NodeError> {
        Node::start_inner(config, Some(factory)).await
    }

    async fn start_inner(
        config: NodeConfig,
        factory: Option<ServiceFactory>,
    ) -> Result<Node, NodeError> {
        let data_dir = config.data_dir.as_deref().map(DataDir::open).transpose()?;
        let key = match (&config.identity, &data_dir) {
            (Some(key), _) => key.clone(),
            (None, Some(dir)) => dir.identity()?,
            (None, None) => Keypair::generate_ed25519(),
        };
        let peer_id = key.public().to_peer_id();
        // A node behind a NAT may listen only through relays; it still serves the ring.
        let serve = !config.listen.is_empty() || !config.relays.is_empty();
        let net = NetConfig {
            transport: config.transport,
            request_timeout: config.chord.rpc_timeout,
            idle_timeout: config.idle_timeout,
            serve,
            relay_server: config.relay_server.clone(),
            connection_limits: config.connection_limits,
        };
        let metrics = NodeMetrics::new();
        let mut swarm = build_swarm(key.clone(), &net, &metrics)?;
        let mut addrs = listen(&mut swarm, &config.listen).await?;
        let relaying = relay_state::Relaying::new(
            config.relay_server.is_some(),
            !config.external_addrs.is_empty(),
            config.chord.rpc_timeout * 2,
        );
        // The event loop sees later addresses; these were reported before it started.
        for addr in &addrs {
            relaying.on_new_listen_addr(&mut swarm, addr);
        }
        for addr in &config.external_addrs {
            swarm.add_external_address(addr.clone());
            let addr = crate::net::dial::strip_peer(addr);
            if !addrs.contains(&addr) {
                addrs.insert(0, addr);
            }
        }
        let me = peer_ref(peer_id, addrs);
        let core = ChordNode::new(me.clone(), config.chord.clone(), std::time::Instant::now());
        let (tx, rx) = mpsc::channel(256);
        let handle = NodeHandle {
            tx,
            metrics: metrics.clone(),
            request_limit: config.chord.rpc_timeout * 2,
        };
        let control = swarm.behaviour().stream.new_control();

        let mut helpers = Vec::new();
        let mut service = None;
        if let Some(factory) = factory {
            let context = ServiceContext {
                handle: handle.clone(),
                control: control.clone(),
                identity: key.clone(),
                data_dir: data_dir.as_ref().map(|d| d.path().to_path_buf()),
            };
            let (made, tasks) = factory(context)?;
            service = Some(made);
            helpers.extend(tasks);
        }
        let event_loop = EventLoop::new(Parts {
            swarm,
            core,
            commands: rx,
            service: service.clone(),
            data_dir,
            relaying,
            share_connections: config.share_connections,
            metrics,
        });
        let task = tokio::spawn(event_loop.run());
        let mut node = Node {
            handle,
            task,
            helpers,
            me,
            control,
            service,
        };
        for target in &config.relays {
            let relay = node.handle.resolve(target.clone()).await?;
            node.handle.listen_via_relay(relay).await?;
        }
        if !config.relays.is_empty() {
            // The circuit addresses are part of this node's reference now.
            node.me = node.handle.status().await?.node;
        }
        Ok(node)
    }

    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// What this node counts about itself (see [`crate::metrics`]).
    pub fn metrics(&self) -> &NodeMetrics {
        self.handle.metrics()
    }

    /// Opens transfer streams from this node.
    pub fn control(&self) -> libp2p_stream::Control {
        self.control.clone()
    }

    /// The file service, if the node has one (one-shot clients do not).
    pub fn service(&self) -> Option<&Arc<dyn Service>> {
        self.service.as_ref()
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

    /// Informed leave: files go to the successor first, then the neighbours are told, then
    /// the node stops.
    pub async fn leave(mut self) -> Result<Left, NodeError> {
        let result = leave_informed(&self.handle, self.service.as_deref()).await;
        let _ = (&mut self.task).await;
        result
    }

    /// Stops the node at once, telling nobody: a crash, as far as the ring can tell.
    pub async fn kill(mut self) {
        self.task.abort();
        for helper in &self.helpers {
            helper.abort();
        }
        let _ = (&mut self.task).await;
    }
}

/// How long an informed leave spends handing files to the successor before it tells the
/// neighbours anyway: the successors already hold replicas, and repair restores the rest.
pub const HAND_OFF_BUDGET: Duration = Duration::from_secs(3);

/// What an informed leave did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Left {
    /// Files handed to the successors; `None` when the hand-off ran out of time (the
    /// successors' replicas and their repair cover the rest).
    pub handed_over: Option<usize>,
}

/// Informed leave of a running node: the service hands its files to the successor (for at
/// most [`HAND_OFF_BUDGET`]), then the neighbours are told so they relink at once.
pub async fn leave_informed(
    handle: &NodeHandle,
    service: Option<&dyn Service>,
) -> Result<Left, NodeError> {
    let handed_over = match service {
        Some(service) => {
            let handed = tokio::time::timeout(HAND_OFF_BUDGET, service.before_leave()).await;
            if handed.is_err() {
                tracing::warn!(
                    "hand-off cut short; the successors' replicas and repair cover the rest"
                );
            }
            handed.ok()
        }
        None => Some(0),
    };
    handle.leave().await?;
    Ok(Left { handed_over })
}

/// Listens on every address and waits until each listener reports one: only then is the port
/// known. Addresses keep the order of `listen`, so output is stable (QUIC first).
async fn listen(
    swarm: &mut libp2p::Swarm<crate::net::Behaviour>,
    listen: &[Multiaddr],
) -> Result<Vec<Multiaddr>, NodeError> {
    let mut listeners = Vec::new();
    for addr in listen {
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|e| NodeError::Listen {
                addr: addr.to_string(),
                reason: crate::net::dial::root_cause(&e),
            })?;
        listeners.push((id, addr.clone()));
    }
    let mut reported: Vec<Vec<Multiaddr>> = vec![Vec::new(); listeners.len()];
    let mut waiting = listeners.len();
    let addr_of = |id| {
        listeners
            .iter()
            .find(|(l, _)| *l == id)
            .map(|(_, a)| a.to_string())
            .unwrap_or_default()
    };
    let deadline = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(deadline);
    while waiting > 0 {
        tokio::select! {
            _ = &mut deadline => {
                return Err(NodeError::Listen { addr: listen.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", "), reason: "no address reported in time".into() });
            }
            event = swarm.select_next_some() => match event {
                SwarmEvent::NewListenAddr { listener_id, address } => {
                    if let Some(at) = listeners.iter().position(|(id, _)| *id == listener_id) {
                        if reported[at].is_empty() {
                            waiting -= 1;
                        }
                        reported[at].push(address);
                    }
                }
                SwarmEvent::ListenerClosed { listener_id, reason, .. } => {
                    let reason = match reason { Err(e) => e.to_string(), Ok(()) => "closed".into() };
                    return Err(NodeError::Listen { addr: addr_of(listener_id), reason });
                }
                SwarmEvent::ListenerError { listener_id, error } => {
                    return Err(NodeError::Listen { addr: addr_of(listener_id), reason: error.to_string() });
                }
                _ => {}
            },
        }
    }
    Ok(reported.concat())
}

/// The async API of a running node. Cheap to clone.
#[derive(Clone, Debug)]
pub struct NodeHandle {
    tx: mpsc::Sender<Command>,
    metrics: NodeMetrics,
    /// Longest wait for the answer to one [`NodeHandle::request`]: libp2p's request timeout
    /// starts only once a stream is open, and opening one on a connection to a peer that
    /// died unseen waits for the transport (10 s over QUIC), which would stall repair.
    request_limit: Duration,
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

    /// Dials a user-given address and returns the node that answered.
    pub async fn resolve(&self, target: Target) -> Result<PeerRef, NodeError> {
        self.call(|reply| Command::Resolve { target, reply })
            .await?
    }

    /// Joins the ring through any member. Returns this node's new successor.
    pub async fn join(&self, target: Target) -> Result<PeerRef, NodeError> {
        let via = self.resolve(target).await?;
        self.call(|reply| Command::Join { via, reply }).await?
    }

    /// What this node counts about itself (see [`crate::metrics`]).
    pub fn metrics(&self) -> &NodeMetrics {
        &self.metrics
    }

    /// successor(key), found by an iterative lookup from this node.
    pub async fn lookup(&self, key: Id) -> Result<LookupResult<Contact>, NodeError> {
        self.lookup_from(key, None).await
    }

    /// A lookup, counted in the metrics.
    async fn lookup_from(
        &self,
        key: Id,
        via: Option<PeerRef>,
    ) -> Result<LookupResult<Contact>, NodeError> {
        let started = std::time::Instant::now();
        let result = self
            .call(|reply| Command::Lookup { key, via, reply })
            .await?;
        let hops = result.as_ref().ok().map(|found| found.hops);
        self.metrics.looked_up(hops, started.elapsed());
        result
    }

    /// successor(key), asking `via` first: how a node outside the ring looks things up.
    pub async fn lookup_via(
        &self,
        via: PeerRef,
        key: Id,
    ) -> Result<LookupResult<Contact>, NodeError> {
        self.lookup_from(key, Some(via)).await
    }

    pub async fn status(&self) -> Result<StatusReport, NodeError> {
        self.call(|reply| Command::Status { reply }).await
    }

    /// Closes every connection, waiting at most `limit` for the peers to be told (QUIC sends
    /// its close at once; a peer that is not told keeps the connection until it times out).
    pub async fn close_all(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.call(|reply| Command::CloseAll { reply })).await;
    }

    /// Informed leave of the ring (files are the caller's: see [`Node::leave`]).
    pub async fn leave(&self) -> Result<(), NodeError> {
        self.call(|reply| Command::Leave { reply }).await?
    }

    /// Connects to `peer` if not connected yet (file streams need a connection). When the
    /// only connection is relayed, waits up to `direct_wait` for a direct one (hole punching).
    pub async fn connect(
        &self,
        peer: &PeerRef,
        limit: Duration,
        direct_wait: Duration,
    ) -> Result<Route, NodeError> {
        let peer = peer.clone();
        let call = self.call(|reply| Command::Connect {
            peer,
            direct_wait,
            reply,
        });
        match tokio::time::timeout(limit + direct_wait, call).await {
            Ok(result) => result?,
            Err(_) => Err(NodeError::Timeout(limit)),
        }
    }

    /// Reserves a slot on `relay` and listens through it. Returns the address others dial.
    pub async fn listen_via_relay(&self, relay: PeerRef) -> Result<Multiaddr, NodeError> {
        self.call(|reply| Command::ListenViaRelay { relay, reply })
            .await?
    }

    /// Sends one request to `to` and returns its answer.
    pub async fn request(
        &self,
        to: &PeerRef,
        request: WireRequest,
    ) -> Result<WireResponse, NodeError> {
        let to = to.clone();
        let request = Box::new(request);
        let call = self.call(|reply| Command::Request { to, request, reply });
        match tokio::time::timeout(self.request_limit, call).await {
            Ok(answer) => answer?,
            Err(_) => Err(NodeError::Timeout(self.request_limit)),
        }
    }
}
