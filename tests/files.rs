//! Files on the ring, with real nodes in one process talking QUIC on 127.0.0.1: puts and gets
//! of many sizes, replication through joins, leaves and crashes, corruption, interrupted
//! transfers, hostile names and ownership.

mod common;

use std::path::Path;
use std::time::Duration;

use chord_p2p::chord::Id;
use chord_p2p::client::Client;
use chord_p2p::files::transfer::{self, TransferRequest, TRANSFER_PROTOCOL};
use chord_p2p::files::{FilesError, HasFiles, Hash, Role};
use chord_p2p::net::protocol::FileRequest;
use chord_p2p::net::{WireRequest, WireResponse};
use chord_p2p::node::Node;
use chord_p2p::records::{Removal, Tombstone};
use common::files::*;
use common::*;

/// Puts `count` small files from rotating nodes; returns (name, hash).
async fn put_small_files(
    nodes: &[&Node],
    dir: &Path,
    count: usize,
    seed: u64,
) -> Vec<(String, Hash)> {
    let mut out = Vec::new();
    for i in 0..count {
        let name = format!("doc-{seed}-{i}.txt");
        let bytes = content(seed * 1000 + i as u64, 1 + (i * 7919) % 65_536);
        let path = write_file(dir, &format!("src-{i}"), &bytes);
        let report = put_from(nodes[i % nodes.len()], &path, &name)
            .await
            .expect("put");
        assert_eq!(report.hash, blake3_of(&bytes));
        out.push((name, report.hash));
    }
    out
}

/// Gets every name from rotating nodes and checks the hash of what arrived.
async fn all_gettable(nodes: &[&Node], dir: &Path, names: &[(String, Hash)]) {
    for (i, (name, hash)) in names.iter().enumerate() {
        let out = dir.join(format!("got-{i}"));
        let _ = std::fs::remove_file(&out);
        let report = get_from(nodes[(i * 3 + 1) % nodes.len()], name, &out)
            .await
            .unwrap_or_else(|e| panic!("get {name}: {e}"));
        assert_eq!(report.hash, *hash);
        assert_eq!(
            blake3_of(&std::fs::read(&out).expect("output")),
            *hash,
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_files_of_random_sizes_come_back_identical() {
    let nodes = settled_ring(8, 41).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    let dir = tempfile::tempdir().expect("tempdir");
    // Sizes from 0 B to 8 MiB, spread evenly over the orders of magnitude in between.
    let max = 8u64 << 20;
    let mut rng = Rng::new(77);
    let sizes: Vec<usize> = (0..100)
        .map(|i| match i {
            0 => 0,
            1 => max as usize,
            _ => {
                let fraction = rng.below(1_000_000) as f64 / 1_000_000.0;
                (max as f64).powf(fraction) as usize
            }
        })
        .collect();
    let mut names = Vec::new();
    // Eight transfers at a time, from random nodes.
    for batch in sizes.chunks(8).enumerate() {
        let (b, sizes) = batch;
        let mut puts = Vec::new();
        for (j, size) in sizes.iter().enumerate() {
            let i = b * 8 + j;
            let name = format!("random/{i}-{size}.bin");
            let bytes = content(i as u64, *size);
            let path = write_file(dir.path(), &format!("src-{i}"), &bytes);
            names.push((name.clone(), blake3_of(&bytes)));
            let from = refs[rng.below(refs.len())];
            puts.push(async move { (put_from(from, &path, &name).await, name, *size) });
        }
        for (report, name, size) in futures::future::join_all(puts).await {
            let report = report.unwrap_or_else(|e| panic!("put {name}: {e}"));
            assert_eq!(report.size, size as u64);
            assert_eq!(report.replicas, R_FILES as u32, "{name}");
        }
    }
    for (i, (name, hash)) in names.iter().enumerate() {
        let out = dir.path().join(format!("out-{i}"));
        let from = refs[rng.below(refs.len())];
        let report = get_from(from, name, &out)
            .await
            .unwrap_or_else(|e| panic!("get {name}: {e}"));
        assert_eq!(report.hash, *hash);
        let got = std::fs::read(&out).expect("output exists");
        assert_eq!(got, content(i as u64, sizes[i]), "{name}: bytes differ");
    }
    // Under load a slow answer can shift a replica for a moment; repair puts it back.
    wait_copies(&refs, &names, "R copies of everything").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_move_files_to_their_new_owners() {
    let mut nodes = settled_ring(4, 5).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let refs: Vec<&Node> = nodes.iter().collect();
    let names = put_small_files(&refs, dir.path(), 40, 1).await;
    wait_copies(&refs, &names, "copies before joins").await;
    for i in 0..4 {
        let node = start(&config()).await;
        node.handle()
            .join(target_of(&nodes[i]))
            .await
            .expect("join");
        nodes.push(node);
    }
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_copies(&refs, &names, "every file at its new owner, R copies").await;
    all_gettable(&refs, dir.path(), &names).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_leaving_hands_its_files_on() {
    let mut nodes = settled_ring(6, 8).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let refs: Vec<&Node> = nodes.iter().collect();
    let names = put_small_files(&refs, dir.path(), 30, 2).await;
    wait_copies(&refs, &names, "copies before the leave").await;
    // The node that owns the most files leaves.
    let owned = |n: &Node| {
        n.files()
            .map(|f| f.list().iter().filter(|m| m.role == Role::Owner).count())
            .unwrap_or(0)
    };
    let at = (0..nodes.len())
        .max_by_key(|i| owned(&nodes[*i]))
        .expect("nodes");
    assert!(owned(&nodes[at]) > 0);
    nodes.remove(at).leave().await.expect("leave");
    let refs: Vec<&Node> = nodes.iter().collect();
    all_gettable(&refs, dir.path(), &names).await;
    wait_copies(&refs, &names, "R copies after the leave").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_copy_is_noticed_served_around_and_replaced() {
    let nodes = settled_ring(5, 13).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = content(99, 3 << 20);
    let path = write_file(dir.path(), "precious", &bytes);
    let report = put_from(refs[0], &path, "precious.bin").await.expect("put");
    let names = vec![("precious.bin".to_string(), report.hash)];
    wait_copies(&refs, &names, "copies before corruption").await;

    let key = Id::hash(b"precious.bin");
    let corrupt = |node: &Node| {
        let file = node.files().expect("files").store().data_path(&key);
        let mut data = std::fs::read(&file).expect("stored copy");
        let mid = data.len() / 2;
        data[mid] ^= 0xff;
        std::fs::write(&file, data).expect("corrupt it");
    };
    // The owner's copy goes bad: a get notices and fetches a good replica instead.
    let owner = refs
        .iter()
        .find(|n| n.id() == report.owner.id)
        .expect("owner is a member");
    corrupt(owner);
    let asker = refs
        .iter()
        .find(|n| n.id() != owner.id())
        .expect("another node");
    let out = dir.path().join("out");
    let got = get_from(asker, "precious.bin", &out).await.expect("get");
    assert_ne!(got.from.id, owner.id(), "the corrupt copy was served");
    assert_eq!(std::fs::read(&out).expect("output"), bytes);
    wait_copies(&refs, &names, "the owner's copy replaced").await;

    // A replica rots on disk, unseen by any get: the scrub finds it and repair replaces it.
    let replica = refs
        .iter()
        .find(|n| {
            holders(&[n], "precious.bin")
                .iter()
                .any(|(_, r, _)| *r == Role::Replica)
        })
        .expect("a replica holder");
    corrupt(replica);
    wait_copies(&refs, &names, "the replica replaced").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_stay_inside_and_only_the_uploader_may_replace_or_remove() {
    // Each node's data dir sits in one root, so anything escaping would show up there.
    let root = tempfile::tempdir().expect("tempdir");
    let mut nodes = Vec::new();
    for i in 0..3 {
        let mut config = config();
        config.node.data_dir = Some(root.path().join(format!("node-{i}")));
        let node = start(&config).await;
        if let Some(first) = nodes.first() {
            node.handle().join(target_of(first)).await.expect("join");
        }
        nodes.push(node);
    }
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_exact(&refs, 4, Duration::from_secs(30), "exact ring").await;
    let src = tempfile::tempdir().expect("tempdir");
    let long = "n".repeat(1024);
    let hostile = [
        "../../escape",
        "/etc/passwd",
        "a/../../../b",
        "..",
        ".",
        "~root/.ssh/authorized_keys",
        "C:\\Windows\\win.ini",
        "名前 with spaces",
        long.as_str(),
    ];
    let mut names = Vec::new();
    for (i, name) in hostile.iter().enumerate() {
        let bytes = content(500 + i as u64, 1000 + i);
        let path = write_file(src.path(), &format!("f{i}"), &bytes);
        let report = put_from(refs[i % 3], &path, name)
            .await
            .expect("hostile name is only a name");
        names.push((name.to_string(), report.hash));
        let out = src.path().join(format!("out-{i}"));
        get_from(refs[(i + 1) % 3], name, &out).await.expect("get");
        assert_eq!(std::fs::read(&out).expect("output"), bytes);
    }
    wait_copies(&refs, &names, "hostile names replicated").await;
    // Nothing but the node dirs in the root; nothing but key-named files in each store.
    let entries: Vec<String> = std::fs::read_dir(root.path())
        .expect("root")
        .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
        .collect();
    assert!(
        entries.iter().all(|e| e.starts_with("node-")),
        "{entries:?}"
    );
    for i in 0..3 {
        let files = root.path().join(format!("node-{i}")).join("files");
        for entry in std::fs::read_dir(&files).expect("files dir") {
            let name = entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .to_string();
            let stem = name.split('.').next().unwrap_or_default();
            assert!(
                name == "tmp" || (stem.len() == 40 && Id::from_hex(stem).is_some()),
                "unexpected {name} in {}",
                files.display()
            );
        }
    }
    // Names that cannot be stored are refused up front, clearly.
    let path = write_file(src.path(), "plain", b"plain");
    for bad in ["", "nul\0byte", "line\nbreak", &"x".repeat(2000)] {
        let e = put_from(refs[0], &path, bad).await.expect_err("refused");
        assert!(matches!(e, FilesError::Name(_)), "{bad:?}: {e}");
    }

    // Ownership: a client's file cannot be replaced or removed by another client.
    let alice = Client::new(Duration::from_secs(5)).await.expect("client");
    let bob = Client::new(Duration::from_secs(5)).await.expect("client");
    let entry_a = alice.connect(target_of(refs[1])).await.expect("connect");
    let entry_b = bob.connect(target_of(refs[2])).await.expect("connect");
    let first = write_file(src.path(), "alice", b"alice's words");
    let second = write_file(src.path(), "bob", b"bob's words");
    alice
        .put(&entry_a, &first, "mine.txt", None)
        .await
        .expect("put");
    let e = bob
        .put(&entry_b, &second, "mine.txt", None)
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("belongs to another peer"), "{e}");
    let e = bob.remove(&entry_b, "mine.txt").await.expect_err("refused");
    assert!(e.to_string().contains("only the uploader"), "{e}");
    // A ring member passing off a "newer version" of alice's file as a replica copy: without
    // alice's signature, no node takes it.
    let forged_bytes = b"not what alice wrote";
    let forged = write_file(src.path(), "forged", forged_bytes);
    let header = TransferRequest::Put {
        name: "mine.txt".into(),
        size: forged_bytes.len() as u64,
        hash: Some(blake3_of(forged_bytes)),
        role: Role::Replica,
        uploader: alice.peer_id().to_string(),
        created: u64::MAX / 2,
        signature: vec![0; 64],
        chain: 0,
    };
    for target in refs.iter().skip(1) {
        refs[0]
            .handle()
            .connect(target.me(), Duration::from_secs(5), Duration::ZERO)
            .await
            .expect("connect");
        let mut control = refs[0].control();
        let mut stream = control
            .open_stream(target.peer_id(), TRANSFER_PROTOCOL)
            .await
            .expect("stream");
        let e = transfer::put(
            &mut stream,
            &forged,
            header.clone(),
            None,
            None,
            Duration::from_secs(10),
        )
        .await
        .expect_err("a forged copy is refused");
        assert!(e.to_string().contains("signature"), "{e}");
        // Nor can it make a holder drop alice's copy with a removal she did not sign.
        let alices = refs
            .iter()
            .find_map(|n| n.files()?.store().get(&Id::hash(b"mine.txt")))
            .expect("a copy of alice's file");
        let forged_removal = FileRequest::Drop {
            tombstone: Tombstone {
                removal: Removal {
                    name: "mine.txt".into(),
                    at: alices.created + 1,
                    uploader: alice.peer_id().to_string(),
                    signature: vec![0; 64],
                },
                removed: alices,
            },
        };
        let answer = refs[0]
            .handle()
            .request(target.me(), WireRequest::Files(forged_removal))
            .await
            .expect("an answer");
        assert!(
            matches!(&answer, WireResponse::Error(why) if why.contains("signature")),
            "{answer:?}"
        );
    }
    let out = src.path().join("mine.out");
    alice
        .get(&entry_a, "mine.txt", &out, None)
        .await
        .expect("still there");
    assert_eq!(std::fs::read(&out).expect("output"), b"alice's words");
    // The uploader may replace it, then remove every copy.
    alice
        .put(&entry_a, &second, "mine.txt", None)
        .await
        .expect("replace");
    let copies = alice.remove(&entry_a, "mine.txt").await.expect("remove");
    assert!(copies >= 1, "{copies}");
    // Usually every copy goes at once (copies = R); one a slow ring misdirected goes at the
    // next repair round, when its holder learns of the removal from the owner.
    wait_for(Duration::from_secs(10), "every copy removed", || async {
        match holders(&refs, "mine.txt").len() {
            0 => Ok(()),
            n => Err(format!("{n} copies left")),
        }
    })
    .await;
    let e = bob
        .get(&entry_b, "mine.txt", &out, None)
        .await
        .expect_err("gone");
    assert!(e.to_string().contains("removed by its uploader"), "{e}");
    // Removed stays removed: through ten repair rounds no copy comes back.
    for _ in 0..10 {
        assert!(
            holders(&refs, "mine.txt").is_empty(),
            "a removed file came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Put again after a removal: the new version is not mistaken for the removed one.
    let again = alice
        .put(&entry_a, &first, "mine.txt", None)
        .await
        .expect("put again");
    assert_eq!(
        again.replicas, R_FILES as u32,
        "tombstones blocked the new version"
    );
    wait_copies(
        &refs,
        &[("mine.txt".into(), again.hash)],
        "new version replicated",
    )
    .await;
}
