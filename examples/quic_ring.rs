//! A ring over QUIC on 127.0.0.1: join, lookup, put and get a file, leave.
//!
//! `cargo run --example quic_ring`

mod common;

use chord_p2p::net::TransportKind;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::demo(
        "QUIC",
        TransportKind::QuicTcp,
        "/ip4/127.0.0.1/udp/0/quic-v1",
    )
    .await
}
