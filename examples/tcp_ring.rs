//! A ring over TCP (noise + yamux) on 127.0.0.1: join, lookup, put and get a file, leave.
//!
//! `cargo run --example tcp_ring`

mod common;

use chord_p2p::net::TransportKind;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::demo("TCP", TransportKind::Tcp, "/ip4/127.0.0.1/tcp/0").await
}
