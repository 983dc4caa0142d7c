//! A node that floods cannot take another down: inbound transfers beyond the node's limits are
//! refused "busy" at once, and the node keeps serving everyone else. Real nodes on 127.0.0.1.

mod common;

use std::time::Duration;

use chord_p2p::files::transfer::{
    read_frame, write_frame, PutReply, TransferRequest, TRANSFER_PROTOCOL,
};
use chord_p2p::files::{HasFiles, Role};
use chord_p2p::node::Node;
use chord_p2p::records::unix_millis;
use common::files::*;
use common::*;

/// Opens a transfer stream from `from` to `to` and starts an upload that never sends a byte;
/// returns the stream (held open) and the first answer.
async fn hanging_upload(from: &Node, to: &Node, i: usize) -> (libp2p::Stream, PutReply) {
    from.handle()
        .connect(to.me(), Duration::from_secs(5), Duration::ZERO)
        .await
        .expect("connect");
    let mut stream = from
        .control()
        .open_stream(to.peer_id(), TRANSFER_PROTOCOL)
        .await
        .expect("stream");
    let header = TransferRequest::Put {
        name: format!("hang-{i}"),
        size: 1 << 20,
        hash: None,
        role: Role::Owner,
        uploader: from.peer_id().to_string(),
        created: unix_millis(),
        signature: Vec::new(),
    };
    write_frame(&mut stream, &header).await.expect("header");
    let answer = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut stream))
        .await
        .expect("an answer in time")
        .expect("a reply frame");
    (stream, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_beyond_the_limits_are_refused_busy_and_others_are_served() {
    let mut config = config();
    config.files.max_transfers = 6;
    config.files.max_transfers_per_peer = 3;
    let nodes = ring_one_by_one(3, &config, 12).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_exact(&refs, 4, Duration::from_secs(30), "exact ring").await;
    let target = refs[0];

    // Two flooding peers, each opening 8 uploads that never send a byte.
    let floods = [
        start(&test_config(QUIC)).await,
        start(&test_config(QUIC)).await,
    ];
    let mut held = Vec::new();
    let mut ready = Vec::new();
    for flood in &floods {
        let mut from_this = 0;
        for i in 0..8 {
            let (stream, answer) = hanging_upload(flood, target, i).await;
            match answer {
                PutReply::Ready => from_this += 1,
                PutReply::Refused(why) => assert!(why.contains("busy"), "{why}"),
                other => panic!("unexpected answer {other:?}"),
            }
            held.push(stream);
        }
        ready.push(from_this);
    }
    // Per peer at most 3; in all at most 6.
    assert_eq!(ready, vec![3, 3], "uploads taken per flooding peer");

    // Meanwhile a member's own get through the flooded node still works (it serves itself, and
    // other members are not refused at their own limits).
    let src = tempfile::tempdir().expect("tempdir");
    let bytes = content(3, 200_000);
    let path = write_file(src.path(), "ok", &bytes);
    let report = put_from(refs[1], &path, "still-served.bin")
        .await
        .expect("put while flooded");
    let out = src.path().join("out");
    get_from(target, "still-served.bin", &out)
        .await
        .expect("get while flooded");
    assert_eq!(std::fs::read(&out).expect("output"), bytes);
    assert_eq!(report.hash, blake3_of(&bytes));

    // Once the flood lets go, its places are free again.
    drop(held);
    wait_for(Duration::from_secs(20), "places freed", || async {
        let (_stream, answer) = hanging_upload(&floods[0], target, 99).await;
        match answer {
            PutReply::Ready => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(target.files().is_some());
}
