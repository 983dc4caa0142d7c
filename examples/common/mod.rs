#![allow(dead_code)] // each example uses part of this

//! What the transport examples share: start a small ring over a given transport, wait until it
//! is exact, put a file from one node, get it at another, and say what happened.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use chord_p2p::chord::{self, Id, IdealRing};
use chord_p2p::files::{ops, Files, FilesConfig, HasFiles, Via};
use chord_p2p::net::{parse_target, TransportKind};
use chord_p2p::node::{Node, NodeConfig};

/// Fast timing, so a demo ring settles in a second or two.
pub fn config(transport: TransportKind, listen: &str) -> Result<NodeConfig> {
    Ok(NodeConfig {
        listen: vec![listen.parse()?],
        transport,
        chord: chord::Config {
            successors: 4,
            stabilize_interval: Duration::from_millis(100),
            ..chord::Config::default()
        },
        ..NodeConfig::default()
    })
}

/// Fast repair, and a short wait for hole punching.
pub fn files_config() -> FilesConfig {
    FilesConfig {
        repair_interval: Duration::from_millis(500),
        direct_wait: Duration::from_secs(3),
        ..FilesConfig::default()
    }
}

/// A ring member: a node with its file service.
pub async fn member(config: &NodeConfig) -> Result<Node> {
    Ok(Files::start_node(config.clone(), files_config()).await?)
}

/// Starts `n` nodes, each joining through the first.
pub async fn ring(n: usize, config: &NodeConfig) -> Result<Vec<Node>> {
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..n {
        let node = member(config).await?;
        if let Some(first) = nodes.first() {
            let via = parse_target(&first.listen_addrs()[0].to_string())?;
            node.handle().join(via).await?;
        }
        println!("node {i}  {}", node.listen_addrs()[0]);
        nodes.push(node);
    }
    Ok(nodes)
}

/// Waits (at most `limit`) until every successor and predecessor is what the ids say.
pub async fn settle(nodes: &[Node], limit: Duration) -> Result<Duration> {
    let started = Instant::now();
    let ring = IdealRing::new(nodes.iter().map(|n| n.id()));
    loop {
        let mut exact = true;
        for node in nodes {
            let s = node.handle().status().await?;
            let pred = s.predecessor.map(|p| p.id);
            let succ = s.successors.first().map(|s| s.id);
            if pred != ring.predecessor(&node.id())
                || succ != ring.successors(&node.id(), 1).first().copied()
            {
                exact = false;
            }
        }
        if exact {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            bail!("the ring did not settle within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn via_text(via: Via) -> &'static str {
    match via {
        Via::Local => "within the node",
        Via::Direct => "over a direct connection",
        Via::Relayed => "through the relay",
    }
}

/// Puts `size` bytes under `name` from `from`, gets them at `to`, and checks they match.
pub async fn put_and_get(from: &Node, to: &Node, name: &str, size: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("upload");
    let bytes: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&src, &bytes)?;
    let files = from
        .files()
        .ok_or_else(|| anyhow::anyhow!("node keeps no files"))?;
    let put = ops::upload(&files.access(), &src, name, None).await?;
    println!(
        "put {name} ({size} bytes) from {}…: owner {}…, {} copies, sent {}",
        &from.id().to_hex()[..8],
        &put.owner.id.to_hex()[..8],
        put.replicas,
        via_text(put.via)
    );
    let out = dir.path().join("download");
    let files = to
        .files()
        .ok_or_else(|| anyhow::anyhow!("node keeps no files"))?;
    let got = ops::download(&files.access(), name, &out, None).await?;
    if std::fs::read(&out)? != bytes {
        bail!("the bytes that came back differ");
    }
    println!(
        "got {name} at {}…: from {}…, {}, hash verified, bytes identical",
        &to.id().to_hex()[..8],
        &got.from.id.to_hex()[..8],
        via_text(got.via)
    );
    Ok(())
}

/// One lookup from `from`, printed.
pub async fn lookup(from: &Node, name: &str) -> Result<()> {
    let found = from.handle().lookup(Id::hash(name.as_bytes())).await?;
    println!(
        "lookup {name}: owner {}…, {} hops",
        &found.owner.id.to_hex()[..8],
        found.hops
    );
    Ok(())
}

/// The whole demo over one transport: ring, settle, lookup, put and get, informed leaves.
pub async fn demo(what: &str, transport: TransportKind, listen: &str) -> Result<()> {
    println!("== a ring of 4 nodes over {what}");
    let nodes = ring(4, &config(transport, listen)?).await?;
    let took = settle(&nodes, Duration::from_secs(30)).await?;
    println!("the ring is exact after {took:.1?}");
    lookup(&nodes[0], "notes.txt").await?;
    put_and_get(&nodes[1], &nodes[3], "notes.txt", 4 << 20).await?;
    for node in nodes {
        node.leave().await?;
    }
    println!("every node left the ring (informed leave); done");
    Ok(())
}
