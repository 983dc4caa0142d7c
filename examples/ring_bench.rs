//! Ring benchmark: N real nodes in one process on 127.0.0.1 (QUIC or TCP). Measures how long
//! joins take to converge to the exact ring, lookup path lengths and warm lookup latency.
//!
//! `cargo run --release --example ring_bench -- --nodes 32`

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chord_p2p::chord::{self, Id, IdealRing};
use chord_p2p::net::parse_target;
use chord_p2p::node::{Node, NodeConfig};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Ring size.
    #[arg(long, default_value_t = 32)]
    nodes: usize,
    /// Lookups to time (after a warm-up of a tenth as many).
    #[arg(long, default_value_t = 2000)]
    lookups: usize,
    /// Use TCP instead of QUIC.
    #[arg(long)]
    tcp: bool,
    /// Stabilize interval in milliseconds.
    #[arg(long, default_value_t = 100)]
    stabilize_ms: u64,
    /// Successor-list length r.
    #[arg(long, default_value_t = 8)]
    successors: usize,
    /// Join all nodes at once through the first one instead of one by one.
    #[arg(long)]
    concurrent: bool,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// xorshift: enough randomness for picking nodes and names, and replayable.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at]
}

/// Whether every node's pointers are exactly what the ids say.
async fn exact(nodes: &[Node], ring: &IdealRing, r: usize) -> Result<bool> {
    for node in nodes {
        let s = node.handle().status().await?;
        let me = node.id();
        let ok = s.predecessor.as_ref().map(|p| p.id) == ring.predecessor(&me)
            && s.successors.iter().map(|x| x.id).collect::<Vec<_>>() == ring.successors(&me, r)
            && s.fingers
                .iter()
                .map(|f| f.as_ref().map(|f| f.id))
                .collect::<Vec<_>>()
                == ring.fingers(&me).into_iter().map(Some).collect::<Vec<_>>();
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let listen = if args.tcp {
        "/ip4/127.0.0.1/tcp/0"
    } else {
        "/ip4/127.0.0.1/udp/0/quic-v1"
    };
    let config = NodeConfig {
        listen: vec![listen.parse()?],
        chord: chord::Config {
            successors: args.successors,
            stabilize_interval: Duration::from_millis(args.stabilize_ms),
            rpc_timeout: Duration::from_secs(2),
            ..chord::Config::default()
        },
        ..NodeConfig::default()
    };
    let mut rng = Rng(args.seed.max(1));
    let mut nodes = vec![Node::start(config.clone()).await?];
    for _ in 1..args.nodes {
        nodes.push(Node::start(config.clone()).await?);
    }

    let joins_started = Instant::now();
    if args.concurrent {
        let via = parse_target(&nodes[0].listen_addrs()[0].to_string())?;
        let joins = nodes[1..].iter().map(|n| {
            let (h, via) = (n.handle(), via.clone());
            async move { h.join(via).await }
        });
        for r in futures::future::join_all(joins).await {
            r.context("join")?;
        }
    } else {
        for i in 1..nodes.len() {
            let via = parse_target(&nodes[rng.below(i)].listen_addrs()[0].to_string())?;
            nodes[i].handle().join(via).await.context("join")?;
        }
    }
    let joined = joins_started.elapsed();
    let ring = IdealRing::new(nodes.iter().map(|n| n.id()));
    let deadline = Instant::now() + Duration::from_secs(300);
    while !exact(&nodes, &ring, args.successors).await? {
        if Instant::now() > deadline {
            bail!("ring not exact after 300 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let converged = joins_started.elapsed();

    let mut run = |count: usize, tag: &str| {
        (0..count)
            .map(|i| {
                (
                    rng.below(nodes.len()),
                    Id::hash(format!("{tag}-{i}").as_bytes()),
                )
            })
            .collect::<Vec<_>>()
    };
    let warm = run(args.lookups / 10, "warm");
    let timed = run(args.lookups, "bench");
    for (from, key) in warm {
        nodes[from].handle().lookup(key).await?;
    }
    let mut hops = Vec::new();
    let mut micros = Vec::new();
    for (from, key) in timed {
        let t = Instant::now();
        let found = nodes[from].handle().lookup(key).await?;
        micros.push(t.elapsed().as_secs_f64() * 1e6);
        if Some(found.owner.id) != ring.successor(&key) {
            bail!("lookup returned a wrong owner");
        }
        hops.push(found.hops as f64);
    }
    hops.sort_by(f64::total_cmp);
    micros.sort_by(f64::total_cmp);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;

    println!("| nodes | transport | joins | joins done | exact ring | hops mean | hops p99 | ½·log2 N | lookup mean | p50 | p99 |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {:.2} s | {:.2} s | {:.2} | {} | {:.2} | {:.0} µs | {:.0} µs | {:.0} µs |",
        args.nodes,
        if args.tcp { "TCP" } else { "QUIC" },
        if args.concurrent { "concurrent" } else { "one by one" },
        joined.as_secs_f64(),
        converged.as_secs_f64(),
        mean(&hops),
        percentile(&hops, 0.99),
        0.5 * (args.nodes as f64).log2(),
        mean(&micros),
        percentile(&micros, 0.5),
        percentile(&micros, 0.99),
    );
    for node in nodes {
        node.kill().await;
    }
    Ok(())
}
