//! A ring inside one process over libp2p's in-memory transport (`/memory/N`): no sockets at
//! all, the same nodes, protocol and files as over QUIC.
//!
//! `cargo run --example memory_ring`

mod common;

use chord_p2p::net::TransportKind;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::demo(
        "the in-memory transport",
        TransportKind::Memory,
        "/memory/0",
    )
    .await
}
