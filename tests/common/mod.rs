//! Helpers for tests that run real nodes on 127.0.0.1: starting rings, waiting on conditions
//! with deadlines, and the oracle that says what every node's pointers must be.

#![allow(dead_code)]

pub mod files;
pub mod metrics;
pub mod procs;

use std::future::Future;
use std::time::Duration;

use chord_p2p::chord::{self, Id, IdealRing};
use chord_p2p::net::{parse_target, StatusReport, Target};
use chord_p2p::node::{Node, NodeConfig};
use libp2p::Multiaddr;

pub const QUIC: &str = "/ip4/127.0.0.1/udp/0/quic-v1";
pub const TCP: &str = "/ip4/127.0.0.1/tcp/0";

/// Protocol timing for test rings: fast stabilization, failures noticed within a second.
pub fn test_config(listen: &str) -> NodeConfig {
    NodeConfig {
        listen: vec![listen.parse::<Multiaddr>().expect("test multiaddr")],
        data_dir: None,
        chord: chord::Config {
            successors: 4,
            stabilize_interval: Duration::from_millis(50),
            rpc_timeout: Duration::from_millis(1000),
            ..chord::Config::default()
        },
        ..NodeConfig::default()
    }
}

/// How a node is reached to join through it.
pub fn target_of(node: &Node) -> Target {
    parse_target(&node.listen_addrs()[0].to_string()).expect("own address parses")
}

/// What a test starts a node from: a bare ring node's config, or a member's (with files).
pub trait Starts {
    fn start_node(&self) -> impl Future<Output = Node>;
}

impl Starts for NodeConfig {
    async fn start_node(&self) -> Node {
        Node::start(self.clone()).await.expect("node starts")
    }
}

pub async fn start(config: &impl Starts) -> Node {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    config.start_node().await
}

/// Polls `check` every 50 ms until it returns Ok, or fails the test with its last error when
/// `limit` has passed.
pub async fn wait_for<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let last = match check().await {
            Ok(()) => return,
            Err(e) => e,
        };
        if tokio::time::Instant::now() >= deadline {
            panic!("{what}: not reached within {limit:?}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// successor(key) among `ids`.
pub fn true_successor(ids: &[Id], key: &Id) -> Id {
    IdealRing::new(ids.iter().copied())
        .successor(key)
        .expect("non-empty ring")
}

/// What a ring of `ids` must look like from node `me`: (predecessor, successors, fingers).
pub fn ideal(ids: &[Id], me: &Id, r: usize) -> (Id, Vec<Id>, Vec<Id>) {
    let ring = IdealRing::new(ids.iter().copied());
    let pred = ring.predecessor(me).expect("node in ring");
    (pred, ring.successors(me, r), ring.fingers(me))
}

/// Compares one node's report with the ideal ring of `ids`.
pub fn check_report(report: &StatusReport, ids: &[Id], r: usize) -> Result<(), String> {
    let me = report.node.id;
    let short = |id: &Id| id.to_hex()[..8].to_string();
    let (pred, succs, fingers) = ideal(ids, &me, r);
    let got_pred = report.predecessor.as_ref().map(|p| p.id);
    if got_pred != Some(pred) {
        return Err(format!(
            "{}: predecessor {:?}, want {}",
            short(&me),
            got_pred.map(|p| short(&p)),
            short(&pred)
        ));
    }
    let got: Vec<Id> = report.successors.iter().map(|s| s.id).collect();
    if got != succs {
        return Err(format!(
            "{}: successors {:?}, want {:?}",
            short(&me),
            got.iter().map(short).collect::<Vec<_>>(),
            succs.iter().map(short).collect::<Vec<_>>()
        ));
    }
    for (i, want) in fingers.iter().enumerate() {
        let got = report.fingers.get(i).cloned().flatten().map(|f| f.id);
        if got != Some(*want) {
            return Err(format!(
                "{}: finger {i} is {:?}, want {}",
                short(&me),
                got.map(|g| short(&g)),
                short(want)
            ));
        }
    }
    Ok(())
}

/// Every node's pointers are exactly what the sorted ids say.
pub async fn check_ring(nodes: &[&Node], r: usize) -> Result<(), String> {
    let ids: Vec<Id> = nodes.iter().map(|n| n.id()).collect();
    for node in nodes {
        let report = node.handle().status().await.map_err(|e| e.to_string())?;
        check_report(&report, &ids, r)?;
    }
    Ok(())
}

pub async fn wait_exact(nodes: &[&Node], r: usize, limit: Duration, what: &str) {
    wait_for(limit, what, || check_ring(nodes, r)).await;
}

/// A small deterministic generator (xorshift), so "random" choices replay identically.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Starts `n` nodes; each joins through a random earlier member, one after another.
pub async fn ring_one_by_one(n: usize, config: &impl Starts, seed: u64) -> Vec<Node> {
    let mut rng = Rng::new(seed);
    let mut nodes: Vec<Node> = vec![start(config).await];
    for _ in 1..n {
        let node = start(config).await;
        let via = target_of(&nodes[rng.below(nodes.len())]);
        node.handle().join(via).await.expect("join succeeds");
        nodes.push(node);
    }
    nodes
}
