//! A local demo: five nodes on 127.0.0.1 form a ring, look a few names up, and stay up until
//! Ctrl-C so you can poke them with `chord-p2p status --peer ADDR` from another terminal, or
//! over HTTP at the URL the first node serves (`--http`, a free port on 127.0.0.1 by default).
//!
//! `cargo run --release --example local_ring [-- --nodes 5]`

use std::time::Duration;

use anyhow::Result;
use chord_p2p::chord::{self, Id};
use chord_p2p::files::{Files, FilesConfig};
use chord_p2p::gateway::{Gateway, GatewayConfig};
use chord_p2p::net::parse_target;
use chord_p2p::node::{Node, NodeConfig};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// How many nodes to start.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Exit after the demo instead of waiting for Ctrl-C.
    #[arg(long)]
    once: bool,
    /// Where the first node serves HTTP (files, /api/, /metrics); port 0 picks one.
    #[arg(long, default_value = "127.0.0.1:0")]
    http: std::net::SocketAddr,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let config = NodeConfig {
        chord: chord::Config {
            stabilize_interval: Duration::from_millis(200),
            ..chord::Config::default()
        },
        ..NodeConfig::default()
    };
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..args.nodes.max(1) {
        let node = Files::start_node(config.clone(), FilesConfig::default()).await?;
        if let Some(first) = nodes.first() {
            let via = parse_target(&first.listen_addrs()[0].to_string())?;
            node.handle().join(via).await?;
        }
        println!(
            "node {i}  id {}…  {}",
            &node.id().to_hex()[..10],
            node.listen_addrs()[0]
        );
        nodes.push(node);
    }
    println!("\nletting the ring stabilize…");
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut sorted: Vec<&Node> = nodes.iter().collect();
    sorted.sort_by_key(|n| n.id());
    println!("\nthe ring, in id order (each node's successor and predecessor):");
    for node in &sorted {
        let s = node.handle().status().await?;
        let short = |id: Id| id.to_hex()[..10].to_string();
        println!(
            "  {}…  succ {}…  pred {}",
            short(node.id()),
            short(s.successors[0].id),
            s.predecessor
                .map(|p| format!("{}…", short(p.id)))
                .unwrap_or("none".into())
        );
    }

    println!("\nlookups from the first node:");
    for name in ["holiday.jpg", "thesis.pdf", "song.mp3"] {
        let found = nodes[0].handle().lookup(Id::hash(name.as_bytes())).await?;
        println!(
            "  {name:<12} key {}…  owner {}…  hops {}",
            &found.key.to_hex()[..10],
            &found.owner.id.to_hex()[..10],
            found.hops
        );
    }
    if args.once {
        return Ok(());
    }
    let files = Files::of(&nodes[0]).cloned();
    let gateway = match files {
        Some(files) => Some(Gateway::start(files, GatewayConfig::new(args.http)).await?),
        None => None,
    };
    println!(
        "\ntry: chord-p2p status --peer {}",
        nodes[0].listen_addrs()[0]
    );
    if let Some(gateway) = &gateway {
        println!(
            "     curl {url}api/status   (files at {url}files/NAME, metrics at {url}metrics)",
            url = gateway.url()
        );
    }
    println!("Ctrl-C stops the ring");
    tokio::signal::ctrl_c().await?;
    drop(gateway);
    for node in nodes {
        node.leave().await?;
    }
    Ok(())
}
