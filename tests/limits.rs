//! A node that floods cannot take another down: inbound transfers beyond the node's limits are
//! refused "busy" at once, and the node keeps serving everyone else. Real nodes on 127.0.0.1.

mod common;

use std::time::Duration;

use chord_p2p::files::transfer::{read_frame, write_frame, PutReply, TRANSFER_PROTOCOL};
use chord_p2p::files::HasFiles;
use chord_p2p::node::Node;
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
    let header = unsigned_put(from, format!("hang-{i}"));
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

#[test]
fn a_put_over_the_storage_limit_is_refused_before_any_byte_and_status_shows_it() {
    use common::procs::{fails, oneshot, oneshot_json, Proc};
    let (node, addr) = Proc::node(&["--max-storage", "10M"]);
    let status = oneshot_json(&["status", "--peer", &addr, "--json", "--timeout", "5s"]);
    assert_eq!(status["storage"]["limit"], 10 << 20, "{status}");
    assert_eq!(status["storage"]["files"], 0, "{status}");
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("big.bin");
    std::fs::write(&big, content(8, 20 << 20)).expect("source");
    let args = [
        "put",
        big.to_str().expect("utf-8"),
        "--peer",
        &addr,
        "--timeout",
        "5s",
    ];
    let e = fails(&args);
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert!(e.contains("10485760") && e.contains("--max-storage"), "{e}");
    assert_eq!(oneshot(&args).status.code(), Some(1));
    // Nothing of it was stored, not even in the store's temp dir.
    let stored: Vec<_> = std::fs::read_dir(node.files_dir())
        .expect("files dir")
        .flatten()
        .filter(|e| e.file_name() != "tmp")
        .collect();
    assert!(stored.is_empty(), "{stored:?}");
    let tmp = std::fs::read_dir(node.files_dir().join("tmp")).expect("tmp");
    assert_eq!(tmp.count(), 0);
    // A file that fits is taken.
    let small = dir.path().join("small.bin");
    std::fs::write(&small, content(9, 1 << 20)).expect("source");
    let put = [
        "put",
        small.to_str().expect("utf-8"),
        "--peer",
        &addr,
        "--json",
    ];
    let v = oneshot_json(&put);
    assert_eq!(v["size"], 1 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_that_do_not_fit_go_to_the_next_successor() {
    // Four members with R = 2; one of them stores at most 1 MiB.
    let mut roomy = config();
    roomy.files.replicas = 2;
    let mut small = roomy.clone();
    small.files.max_storage = Some(1 << 20);
    let mut nodes = vec![start(&roomy).await];
    for i in 1..4 {
        let node = start(if i == 2 { &small } else { &roomy }).await;
        node.handle()
            .join(target_of(&nodes[0]))
            .await
            .expect("join");
        nodes.push(node);
    }
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_exact(&refs, 4, Duration::from_secs(30), "exact ring").await;
    let full = refs[2];
    // A name whose owner has the small node as its replica holder.
    let mut ids: Vec<_> = refs.iter().map(|n| n.id()).collect();
    ids.sort();
    let ring = chord_p2p::chord::IdealRing::new(ids.iter().copied());
    let name = (0..10_000)
        .map(|i| format!("big-{i}.bin"))
        .find(|n| {
            let owner = ring
                .successor(&chord_p2p::chord::Id::hash(n.as_bytes()))
                .expect("owner");
            ring.successors(&owner, 1) == vec![full.id()]
        })
        .expect("a name");
    let owner_id = ring
        .successor(&chord_p2p::chord::Id::hash(name.as_bytes()))
        .expect("owner");
    let spare_id = ring.successors(&full.id(), 1)[0];
    let src = tempfile::tempdir().expect("tempdir");
    let bytes = content(10, 2 << 20);
    let path = write_file(src.path(), "big", &bytes);
    let uploader = refs
        .iter()
        .find(|n| n.id() != owner_id && n.id() != full.id())
        .expect("an uploader");
    let report = put_from(uploader, &path, &name).await.expect("put");
    assert_eq!(report.replicas, 2, "the copy found a place");
    let key = chord_p2p::chord::Id::hash(name.as_bytes());
    let holds = |id| {
        refs.iter()
            .find(|n| n.id() == id)
            .and_then(|n| n.files()?.store().get(&key))
            .is_some()
    };
    assert!(holds(owner_id) && holds(spare_id) && !holds(full.id()));
    let storage = full
        .handle()
        .status()
        .await
        .expect("status")
        .storage
        .expect("storage");
    assert_eq!(storage.limit, Some(1 << 20));
    assert_eq!(storage.files, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_refused_and_the_node_serves_on() {
    let mut config = test_config(QUIC);
    config.connection_limits.max_incoming = 3;
    let node = start(&config).await;
    // Eight strangers ask at once: three get in, the rest are refused (their connections are
    // closed as soon as they are set up, so their requests fail).
    let mut strangers = Vec::new();
    for _ in 0..8 {
        strangers.push(start(&test_config(QUIC)).await);
    }
    let asks = strangers.iter().map(|s| {
        let (handle, to) = (s.handle(), node.me().clone());
        async move {
            handle
                .request(&to, chord_p2p::net::WireRequest::Status)
                .await
        }
    });
    let answers = futures::future::join_all(asks).await;
    let served = answers.iter().filter(|r| r.is_ok()).count();
    assert_eq!(served, 3, "{answers:?}");
    let report = node.handle().status().await.expect("own status");
    let peers: std::collections::BTreeSet<_> =
        report.connections.iter().map(|c| c.peer_id).collect();
    assert!(peers.len() <= 3, "{peers:?}");
}
