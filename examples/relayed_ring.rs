//! A ring whose members cannot be dialed: three nodes listen nowhere but through a relay (the
//! position of nodes behind NATs), join through it, and share a file. Hole punching (DCUtR)
//! upgrades relayed connections to direct ones where it can; the output says which happened.
//!
//! `cargo run --example relayed_ring`

mod common;

use std::time::Duration;

use anyhow::Result;
use chord_p2p::net::{parse_target, RelayLimits, TransportKind};
use chord_p2p::node::NodeConfig;

#[tokio::main]
async fn main() -> Result<()> {
    let base = common::config(TransportKind::QuicTcp, "/ip4/127.0.0.1/udp/0/quic-v1")?;
    // The relay carries file data too (no byte limit per circuit).
    let relay = common::member(&NodeConfig {
        relay_server: Some(RelayLimits {
            max_circuit_bytes: 0,
            ..RelayLimits::default()
        }),
        ..base.clone()
    })
    .await?;
    let relay_addr = relay.listen_addrs()[0].to_string();
    println!("== relay and first ring member: {relay_addr}");

    let hidden = NodeConfig {
        listen: Vec::new(),
        relays: vec![parse_target(&relay_addr)?],
        ..base
    };
    let mut nodes = vec![relay];
    for i in 1..4 {
        let node = common::member(&hidden).await?;
        node.handle().join(parse_target(&relay_addr)?).await?;
        println!(
            "node {i} listens only through the relay: {}",
            node.listen_addrs()[0]
        );
        nodes.push(node);
    }
    let took = common::settle(&nodes, Duration::from_secs(30)).await?;
    println!("the ring is exact after {took:.1?}");
    common::lookup(&nodes[1], "holiday.jpg").await?;
    common::put_and_get(&nodes[1], &nodes[2], "holiday.jpg", 2 << 20).await?;

    println!("connections of node 1:");
    for c in nodes[1].handle().status().await?.connections {
        let how = if c.relayed { "relayed" } else { "direct " };
        println!("  {how} {}… {}", &c.peer_id.to_string()[..16], c.addr);
    }
    for node in nodes.into_iter().rev() {
        node.leave().await?;
    }
    println!("every node left the ring; done");
    Ok(())
}
