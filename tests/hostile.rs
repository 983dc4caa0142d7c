//! A raw libp2p peer that sends garbage on the Chord protocol: the node drops it, says why, and
//! goes on serving the others.

mod common;

use std::time::Duration;

use chord_p2p::chord::{Id, Request};
use chord_p2p::client::Client;
use chord_p2p::net::{peer_ref, WireRequest, WireResponse};
use common::*;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{Multiaddr, StreamProtocol};

const CHORD: StreamProtocol = StreamProtocol::new("/chord-p2p/chord/2.0.0");

/// Opens a raw stream on the Chord protocol, writes `bytes`, closes, and returns what came back.
async fn send_raw(
    control: &mut libp2p_stream::Control,
    peer: libp2p::PeerId,
    bytes: &[u8],
) -> Vec<u8> {
    let mut stream = control
        .open_stream(peer, CHORD)
        .await
        .expect("stream opens");
    // The node may reset the stream mid-write once it sees too much; that is a fine answer.
    let _ = stream.write_all(bytes).await;
    let _ = stream.close().await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversized_and_forged_requests_are_refused_and_the_node_goes_on() {
    let config = test_config(QUIC);
    let a = start(&config).await;
    let b = start(&config).await;
    b.handle().join(target_of(&a)).await.expect("join");
    wait_exact(&[&a, &b], 4, Duration::from_secs(20), "two-node ring").await;

    // A bare libp2p peer speaking raw bytes.
    let mut raw = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_quic()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .expect("behaviour")
        .build();
    let mut control = raw.behaviour().new_control();
    let addr: Multiaddr = a.listen_addrs()[0].clone();
    raw.dial(addr).expect("dial");
    let driver = tokio::spawn(async move { while raw.next().await.is_some() {} });

    let garbage = send_raw(
        &mut control,
        a.peer_id(),
        b"\xff\x00 this is not CBOR \x13\x37",
    )
    .await;
    assert!(garbage.is_empty(), "garbage got an answer: {garbage:?}");
    let huge = vec![0xa5u8; 2 * 1024 * 1024];
    let oversized = send_raw(&mut control, a.peer_id(), &huge).await;
    assert!(oversized.is_empty(), "oversized request got an answer");
    driver.abort();

    // Well-formed CBOR that lies: a Notify for a node whose id does not match its peer id.
    let client = Client::new(Duration::from_secs(5)).await.expect("client");
    let mut forged = peer_ref(libp2p::PeerId::random(), vec![]);
    forged.id = Id::hash(b"a place I chose");
    let answer = client
        .request(a.me(), WireRequest::Chord(Request::Notify { node: forged }))
        .await
        .expect("node answers");
    assert!(
        matches!(answer, WireResponse::Error(_)),
        "forged notify accepted: {answer:?}"
    );

    // The node still serves: status, and lookups through it.
    let report = client.status(a.me()).await.expect("status after abuse");
    assert_eq!(report.node.id, a.id());
    let key = Id::hash(b"still-here");
    let found = client
        .lookup(a.me(), key)
        .await
        .expect("lookup after abuse");
    let mut ids = vec![a.id(), b.id()];
    ids.sort();
    assert_eq!(found.owner.id, true_successor(&ids, &key));
    wait_exact(&[&a, &b], 4, Duration::from_secs(10), "ring unharmed").await;
}
