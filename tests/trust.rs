//! Files among strangers: real nodes on 127.0.0.1 against hostile peers built from the project's
//! own libp2p pieces (a ring member whose file service lies, raw stream servers, clients that
//! sign what they should not). Nothing may be deleted, replaced, rolled back or blocked except
//! by its uploader's signature.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chord_p2p::chord::{Id, IdealRing};
use chord_p2p::client::Client;
use chord_p2p::files::transfer::{
    self, partial_path, read_frame, write_frame, GetReply, PutReply, Trailer, TransferError,
    TransferRequest, TRANSFER_PROTOCOL,
};
use chord_p2p::files::{HasFiles, Role};
use chord_p2p::net::protocol::{FileRequest, FileResponse, InventoryEntry};
use chord_p2p::net::{node_id, peer_ref, PeerRef, WireRequest, WireResponse};
use chord_p2p::node::{Node, NodeError, Service, ServiceContext};
use chord_p2p::records::{unix_millis, FileMeta, Removal, Tombstone};
use common::files::*;
use common::*;
use futures::future::BoxFuture;
use futures::{AsyncReadExt, StreamExt};
use libp2p::identity::Keypair;
use libp2p::PeerId;

const YEAR_MS: u64 = 365 * 24 * 3600 * 1000;
const REPAIR: Duration = Duration::from_millis(200);

/// A version of `name` with `bytes`, signed by `key`.
fn signed(key: &Keypair, name: &str, bytes: &[u8], created: u64) -> FileMeta {
    let size = bytes.len() as u64;
    FileMeta::signed(key, name, size, blake3_of(bytes), created, Role::Owner)
}

/// An upload of `path` (`size` bytes) under `name` from `uploader`, dated `created`, sent raw
/// over `stream`: the receiver's answer.
async fn raw_upload(
    stream: &mut libp2p::Stream,
    uploader: PeerId,
    path: &Path,
    name: &str,
    size: u64,
    created: u64,
) -> Result<(u32, chord_p2p::files::Hash), TransferError> {
    let header = TransferRequest::Put {
        name: name.into(),
        size,
        hash: None,
        role: Role::Owner,
        uploader: uploader.to_string(),
        created,
        signature: Vec::new(),
        chain: 0,
    };
    let wait = Duration::from_secs(5);
    transfer::put(stream, path, header, None, None, wait).await
}

/// A one-shot client with `key`, connected through `node`.
async fn client_via(key: &Keypair, node: &Node) -> (Client, PeerRef) {
    let client = client_as(key).await;
    let entry = client.connect(target_of(node)).await.expect("connect");
    (client, entry)
}

async fn client_as(key: &Keypair) -> Client {
    Client::with_identity(key.clone(), Duration::from_secs(5))
        .await
        .expect("client")
}

/// A settled ring of `n` members whose stores live under `root` (so they can be listed).
async fn ring_in(root: &Path, n: usize) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..n {
        let mut config = config();
        config.node.data_dir = Some(root.join(format!("node-{i}")));
        let node = start(&config).await;
        if let Some(first) = nodes.first() {
            node.handle().join(target_of(first)).await.expect("join");
        }
        nodes.push(node);
    }
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_exact(&refs, 4, Duration::from_secs(30), "exact ring").await;
    nodes
}

/// Every file in every store under `root` (tmp excluded), by path.
fn store_files(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for node in std::fs::read_dir(root).expect("root").flatten() {
        let files = node.path().join("files");
        for entry in std::fs::read_dir(&files).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name != "tmp" {
                out.insert(format!("{}/{name}", node.file_name().to_string_lossy()));
            }
        }
    }
    out
}

/// A removal signed by `key` for a name it never put, with a version it made up for it.
fn forged_tombstone(key: &Keypair, name: &str, at: u64) -> Tombstone {
    Tombstone {
        removal: Removal::sign(key, name, at),
        removed: signed(key, name, b"never stored", at.saturating_sub(1)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drops_signed_by_a_stranger_write_nothing_and_the_real_put_survives() {
    let root = tempfile::tempdir().expect("tempdir");
    let nodes = ring_in(root.path(), 4).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    let before = store_files(root.path());

    // Mallory signs removals (dated a year ahead, and dated now) of 10,000 names she never put,
    // each with a version she made up, and sends them to every member in turn.
    let mallory = Keypair::generate_ed25519();
    let attacker = client_as(&mallory).await;
    let now = unix_millis();
    let names: Vec<String> = (0..10_000).map(|i| format!("someone-else-{i}")).collect();
    for (chunk_no, chunk) in names.chunks(200).enumerate() {
        let sends = chunk.iter().enumerate().map(|(i, name)| {
            let at = if i % 2 == 0 { now + YEAR_MS } else { now };
            let request = FileRequest::Drop {
                tombstone: forged_tombstone(&mallory, name, at),
            };
            let to = refs[(chunk_no + i) % refs.len()].me().clone();
            let attacker = &attacker;
            async move { attacker.request(&to, WireRequest::Files(request)).await }
        });
        for answer in futures::future::join_all(sends).await {
            match answer.expect("an answer") {
                WireResponse::Error(_)
                | WireResponse::Files(FileResponse::Dropped { held: false }) => {}
                other => panic!("a forged drop was taken: {other:?}"),
            }
        }
    }
    assert_eq!(store_files(root.path()), before, "a store changed");

    // The same for the name alice is about to put, sent to every member; then she puts it.
    for node in &refs {
        for at in [now + YEAR_MS, now] {
            let request = FileRequest::Drop {
                tombstone: forged_tombstone(&mallory, "victim.txt", at),
            };
            let _ = attacker
                .request(node.me(), WireRequest::Files(request))
                .await;
        }
    }
    let (alice, entry) = client_via(&Keypair::generate_ed25519(), refs[1]).await;
    let src = tempfile::tempdir().expect("tempdir");
    let bytes = content(7, 100_000);
    let path = write_file(src.path(), "victim", &bytes);
    let report = alice
        .put(&entry, &path, "victim.txt", None)
        .await
        .expect("put");
    assert_eq!(report.replicas, R_FILES as u32);
    let names = vec![("victim.txt".to_string(), report.hash)];
    wait_copies(&refs, &names, "victim replicated").await;
    for round in 0..10 {
        tokio::time::sleep(REPAIR).await;
        copies_in_place(&refs, &names).unwrap_or_else(|e| panic!("round {round}: {e}"));
    }
    let stones: Vec<String> = store_files(root.path())
        .into_iter()
        .filter(|f| f.ends_with(".removed"))
        .collect();
    assert!(stones.is_empty(), "tombstones written: {stones:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_times_a_year_ahead_are_refused() {
    let nodes = settled_ring(3, 5).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    let key = Keypair::generate_ed25519();
    let (alice, entry) = client_via(&key, refs[0]).await;
    let src = tempfile::tempdir().expect("tempdir");
    let path = write_file(src.path(), "doc", b"dated honestly");
    alice
        .put(&entry, &path, "doc.txt", None)
        .await
        .expect("put");

    // A removal dated a year ahead would block the name for good: refused, file kept.
    let owner = alice
        .lookup(&entry, Id::hash(b"doc.txt"))
        .await
        .expect("lookup")
        .owner;
    let removal = Removal::sign(&key, "doc.txt", unix_millis() + YEAR_MS);
    let answer = alice
        .request(&owner, WireRequest::Files(FileRequest::Remove { removal }))
        .await
        .expect("answer");
    assert!(
        matches!(&answer, WireResponse::Error(why) if why.contains("ahead")),
        "{answer:?}"
    );
    let out = src.path().join("out");
    alice
        .get(&entry, "doc.txt", &out, None)
        .await
        .expect("still there");

    // A version dated a year ahead would win over every later one: refused before any byte.
    let uploader = refs[0];
    let target = refs[1];
    let mut stream = open_transfer(uploader, target.me()).await;
    let later = unix_millis() + YEAR_MS;
    let e = raw_upload(
        &mut stream,
        uploader.peer_id(),
        &path,
        "future.txt",
        14,
        later,
    )
    .await
    .expect_err("refused");
    assert!(e.to_string().contains("ahead"), "{e}");
}

/// A transfer stream from `from` to `to`.
async fn open_transfer(from: &Node, to: &PeerRef) -> libp2p::Stream {
    from.handle()
        .connect(to, Duration::from_secs(5), Duration::ZERO)
        .await
        .expect("connect");
    from.control()
        .open_stream(to.addr.peer_id, TRANSFER_PROTOCOL)
        .await
        .expect("stream")
}

/// A ring member whose file service lies about everything: every inventory entry "removed"
/// (with removals it cannot sign), every check bad, every proof wrong; it answers a copy with
/// `Done` at the header without taking a byte, and takes the bytes of an upload or forward
/// but never answers.
struct Liar;

impl Service for Liar {
    fn handle(&self, _from: PeerId, request: FileRequest) -> BoxFuture<'static, WireResponse> {
        let answer = match request {
            FileRequest::Inventory { entries } => FileResponse::Inventory {
                missing: Vec::new(),
                removed: entries.iter().map(lie_removed).collect(),
            },
            FileRequest::Check { .. } => FileResponse::Checked { good: false },
            FileRequest::Stat { .. } => FileResponse::Stat {
                held: None,
                removed: Vec::new(),
            },
            FileRequest::Prove { .. } => FileResponse::Proof {
                held: None,
                proof: Some([0; 32]),
                keeps: true,
            },
            FileRequest::Drop { .. } => FileResponse::Dropped { held: true },
            FileRequest::Remove { .. } => FileResponse::Removed { copies: 3 },
            FileRequest::List { .. } => FileResponse::List {
                files: Vec::new(),
                more: false,
            },
        };
        Box::pin(async move { WireResponse::Files(answer) })
    }

    fn ring_changed(&self) {}

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// "This was removed by its uploader", without the uploader's signature.
fn lie_removed(entry: &InventoryEntry) -> Tombstone {
    let removed = FileMeta {
        name: "?".into(),
        key: entry.key,
        size: 0,
        hash: entry.hash,
        role: Role::Replica,
        uploader: entry.uploader.clone(),
        created: entry.created,
        signature: vec![0; 64],
    };
    Tombstone {
        removal: Removal {
            name: "?".into(),
            at: entry.created + 1,
            uploader: entry.uploader.clone(),
            signature: vec![0; 64],
        },
        removed,
    }
}

/// The liar's transfer streams.
async fn lie_on_streams(mut incoming: libp2p_stream::IncomingStreams) {
    let mut held = tokio::task::JoinSet::new();
    while let Some((_, mut stream)) = incoming.next().await {
        held.spawn(async move {
            match read_frame::<_, TransferRequest>(&mut stream).await {
                Ok(TransferRequest::Put {
                    hash: Some(hash), ..
                }) => {
                    let _ = write_frame(&mut stream, &PutReply::Done { copies: 1, hash }).await;
                }
                Ok(TransferRequest::Put { size, .. }) => {
                    let _ = write_frame(&mut stream, &PutReply::Ready).await;
                    let mut sink = vec![0u8; 64 * 1024];
                    let mut left = size;
                    while left > 0 {
                        let want = left.min(sink.len() as u64) as usize;
                        match stream.read(&mut sink[..want]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => left -= n as u64,
                        }
                    }
                    let _ = read_frame::<_, Trailer>(&mut stream).await;
                    // Never answers; the node's own shutdown ends this task.
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                Ok(_) => {
                    let _ = write_frame(&mut stream, &GetReply::NotFound).await;
                }
                Err(_) => {}
            }
        });
    }
}

async fn start_liar(key: Keypair) -> Node {
    let mut config = config();
    config.node.identity = Some(key);
    Node::start_with_service(
        config.node,
        Box::new(|context: ServiceContext| {
            let mut control = context.control;
            let incoming = control
                .accept(TRANSFER_PROTOCOL)
                .map_err(|e| NodeError::Connect(e.to_string()))?;
            let service: Arc<dyn Service> = Arc::new(Liar);
            Ok((service, vec![tokio::spawn(lie_on_streams(incoming))]))
        }),
    )
    .await
    .expect("liar starts")
}

/// Honest members holding `name` in exactly alice's version.
fn honest_copies(nodes: &[&Node], name: &str, version: &FileMeta) -> usize {
    nodes
        .iter()
        .filter(|n| {
            n.files()
                .and_then(|f| f.store().get(&Id::hash(name.as_bytes())))
                .is_some_and(|m| m.hash == version.hash && m.uploader == version.uploader)
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_member_placed_at_a_key_cannot_empty_it() {
    let nodes = settled_ring(3, 21).await;
    let honest: Vec<&Node> = nodes.iter().collect();
    let (alice, entry) = client_via(&Keypair::generate_ed25519(), honest[0]).await;
    let src = tempfile::tempdir().expect("tempdir");
    let bytes = content(11, 300_000);
    let path = write_file(src.path(), "treasure", &bytes);
    let report = alice
        .put(&entry, &path, "treasure.bin", None)
        .await
        .expect("put");
    assert_eq!(report.replicas, 3);
    let version = honest[0]
        .files()
        .and_then(|f| f.store().get(&report.key))
        .expect("held");

    // The liar makes keys until its id lands between the key and its owner: it takes the key
    // over when it joins.
    let key = report.key;
    let owner = report.owner.id;
    let liar_key = (0..100_000)
        .map(|_| Keypair::generate_ed25519())
        .find(|k| node_id(&k.public().to_peer_id()).in_open(&key, &owner))
        .expect("a key in place");
    let liar = start_liar(liar_key).await;
    liar.handle()
        .join(target_of(honest[1]))
        .await
        .expect("liar joins");
    let mut all = honest.clone();
    all.push(&liar);
    wait_exact(&all, 4, Duration::from_secs(30), "ring with the liar").await;

    // A file whose owner has the liar as its first replica holder: the liar reads the forward
    // and never answers. The put still returns, in bounded time, with the copies made.
    let ids: Vec<Id> = all.iter().map(|n| n.id()).collect();
    let ring = IdealRing::new(ids.iter().copied());
    let liar_pred = ring.predecessor(&liar.id()).expect("pred");
    let second = (0..10_000)
        .map(|i| format!("second-{i}.bin"))
        .find(|n| ring.successor(&Id::hash(n.as_bytes())) == Some(liar_pred))
        .expect("a name owned by the liar's predecessor");
    let path2 = write_file(src.path(), "second", &content(12, 200_000));
    let started = Instant::now();
    let second_report = alice
        .put(&entry, &path2, &second, None)
        .await
        .expect("put past the liar");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the put hung for {:?}",
        started.elapsed()
    );
    assert!(second_report.replicas >= 2, "{}", second_report.replicas);
    let second_version = honest
        .iter()
        .find_map(|n| n.files()?.store().get(&second_report.key))
        .expect("held");

    // Ten repair intervals of lies (and more, for the stale-replica rule to run): at least
    // R-1 honest members keep alice's version of each file.
    let deadline = Instant::now() + REPAIR * 30;
    while Instant::now() < deadline {
        let kept = honest_copies(&honest, "treasure.bin", &version);
        assert!(kept >= 2, "only {kept} honest copies of the treasure left");
        let kept = honest_copies(&honest, &second, &second_version);
        assert!(
            kept >= 2,
            "only {kept} honest copies of the second file left"
        );
        tokio::time::sleep(REPAIR / 2).await;
    }
    // The liar, asked first as the owner, is passed over: the get returns alice's bytes.
    let out = src.path().join("out");
    let got = alice
        .get(&entry, "treasure.bin", &out, None)
        .await
        .expect("get");
    assert_ne!(got.from.id, liar.id());
    assert_eq!(std::fs::read(&out).expect("output"), bytes);
}

/// A raw libp2p peer that serves transfer streams with whatever `answer` says.
async fn raw_server<F>(answer: F) -> (PeerRef, tokio::task::JoinHandle<()>)
where
    F: Fn(TransferRequest) -> (Option<GetReply>, Option<PutReply>, Vec<u8>) + Send + Sync + 'static,
{
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_quic()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    swarm
        .listen_on(QUIC.parse().expect("addr"))
        .expect("listen");
    let addr = loop {
        if let libp2p::swarm::SwarmEvent::NewListenAddr { address, .. } =
            swarm.select_next_some().await
        {
            break address;
        }
    };
    let me = peer_ref(*swarm.local_peer_id(), vec![addr]);
    let mut incoming = swarm
        .behaviour()
        .new_control()
        .accept(TRANSFER_PROTOCOL)
        .expect("accept");
    let answer = Arc::new(answer);
    let task = tokio::spawn(async move {
        let mut streams = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = swarm.select_next_some() => {}
                Some((_, mut stream)) = incoming.next() => {
                    let answer = answer.clone();
                    streams.spawn(async move {
                        let Ok(request) = read_frame::<_, TransferRequest>(&mut stream).await else {
                            return;
                        };
                        let (get, put, bytes) = answer(request);
                        if let Some(reply) = get {
                            let _ = write_frame(&mut stream, &reply).await;
                        }
                        if let Some(reply) = put {
                            let _ = write_frame(&mut stream, &reply).await;
                        }
                        let _ = futures::AsyncWriteExt::write_all(&mut stream, &bytes).await;
                        let _ = futures::AsyncWriteExt::close(&mut stream).await;
                    });
                }
            }
        }
    });
    (me, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_takes_only_the_chosen_version_and_leaves_nothing_when_a_holder_lies() {
    let alice = Keypair::generate_ed25519();
    let mallory = Keypair::generate_ed25519();
    let now = unix_millis();
    let good = content(1, 50_000);
    let old = content(2, 40_000);
    let expected = signed(&alice, "report.pdf", &good, now);
    let older = signed(&alice, "report.pdf", &old, now - 1000);
    let junk = content(3, 50_000);
    // (a) bytes matching a hash it made up, (b) a valid signature for another name, (c) an
    // older signed version, (d) 2^40 bytes, (e) the right header and the wrong bytes.
    let forged_hash = FileMeta {
        hash: blake3_of(&junk),
        ..expected.clone()
    };
    let other_name = signed(&mallory, "other.pdf", &junk, now);
    let huge = FileMeta {
        size: 1 << 40,
        ..expected.clone()
    };
    let cases: Vec<(&str, FileMeta, Vec<u8>)> = vec![
        ("forged hash", forged_hash, junk.clone()),
        ("another name", other_name, junk.clone()),
        ("older version", older, old.clone()),
        ("2^40 bytes", huge, junk.clone()),
        ("wrong bytes", expected.clone(), junk.clone()),
    ];
    let node = start(&test_config(QUIC)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    for (what, meta, bytes) in cases {
        let (server, task) = raw_server(move |_| {
            let reply = GetReply::Sending { meta: meta.clone() };
            (Some(reply), None, bytes.clone())
        })
        .await;
        let mut stream = open_transfer(&node, &server).await;
        let out = dir.path().join("report.pdf");
        let got = transfer::get(&mut stream, &expected, &out, None).await;
        assert!(got.is_err(), "{what}: taken");
        assert!(!out.exists(), "{what}: output written");
        assert!(!partial_path(&out).exists(), "{what}: partial left");
        task.abort();
    }

    // A version alice really signed, too large for this disk: refused before a byte lands.
    let immense = FileMeta {
        size: 1 << 60,
        ..expected.clone()
    };
    let immense = signed_like(&alice, immense);
    let reply = GetReply::Sending {
        meta: immense.clone(),
    };
    let (server, task) = raw_server(move |_| (Some(reply.clone()), None, Vec::new())).await;
    let mut stream = open_transfer(&node, &server).await;
    let out = dir.path().join("immense");
    let e = transfer::get(&mut stream, &immense, &out, None)
        .await
        .expect_err("no room");
    assert!(matches!(e, TransferError::NoSpace { .. }), "{e}");
    assert!(!partial_path(&out).exists());
    task.abort();

    // An upload answered `Done` at its header was stored nowhere: the put fails.
    let (server, task) = raw_server(|_| {
        let reply = PutReply::Done {
            copies: 3,
            hash: [0; 32],
        };
        (None, Some(reply), Vec::new())
    })
    .await;
    let mut stream = open_transfer(&node, &server).await;
    let path = write_file(dir.path(), "up", &good);
    let size = good.len() as u64;
    let e = raw_upload(&mut stream, node.peer_id(), &path, "up.txt", size, now)
        .await
        .expect_err("Done without data");
    assert!(matches!(e, TransferError::Protocol(_)), "{e}");
    task.abort();
}

/// `meta` re-signed by `key` (its fields as they are).
fn signed_like(key: &Keypair, mut meta: FileMeta) -> FileMeta {
    meta.signature = meta.version().sign(key);
    meta
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_puts_of_one_name_the_first_to_finish_owns_it() {
    let nodes = settled_ring(3, 8).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    let mut alice = client_as(&Keypair::generate_ed25519()).await;
    alice.set_rate_limit(Some(1 << 20));
    let bob = client_as(&Keypair::generate_ed25519()).await;
    let entry_a = alice.connect(target_of(refs[0])).await.expect("connect");
    let entry_b = bob.connect(target_of(refs[1])).await.expect("connect");
    let src = tempfile::tempdir().expect("tempdir");
    let slow = write_file(src.path(), "slow", &content(4, 3 << 20));
    let quick_bytes = content(5, 1000);
    let quick = write_file(src.path(), "quick", &quick_bytes);
    let key = Id::hash(b"contested");
    let ids: Vec<Id> = refs.iter().map(|n| n.id()).collect();
    let owner_id = IdealRing::new(ids).successor(&key).expect("owner");
    let owner = refs
        .iter()
        .find(|n| n.id() == owner_id)
        .expect("owner node");
    let tmp = owner
        .files()
        .expect("files")
        .store()
        .data_path(&key)
        .with_file_name("tmp");
    let slow_put = alice.put(&entry_a, &slow, "contested", None);
    let quick_put = async {
        // Bob starts once alice's bytes are arriving at the owner.
        wait_for(
            Duration::from_secs(20),
            "alice's upload under way",
            || async {
                let receiving = std::fs::read_dir(&tmp)
                    .map(|d| d.flatten().any(|e| e.metadata().is_ok_and(|m| m.len() > 0)))
                    .unwrap_or(false);
                receiving
                    .then_some(())
                    .ok_or_else(|| "nothing yet".to_string())
            },
        )
        .await;
        bob.put(&entry_b, &quick, "contested", None).await
    };
    let (slow_result, quick_result) = tokio::join!(slow_put, quick_put);
    let won = quick_result.expect("bob's put finished first and owns the name");
    assert_eq!(won.hash, blake3_of(&quick_bytes));
    let e = slow_result.expect_err("alice's slower put is refused at commit");
    assert!(e.to_string().contains("belongs to another peer"), "{e}");
    let names = vec![("contested".to_string(), won.hash)];
    wait_copies(&refs, &names, "bob's version everywhere").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rm_is_final_at_once_and_for_a_holder_that_was_away() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut nodes = ring_in(root.path(), 4).await;
    let alice = client_as(&Keypair::generate_ed25519()).await;
    let src = tempfile::tempdir().expect("tempdir");
    let path = write_file(src.path(), "gone", &content(6, 70_000));
    let entry = alice.connect(target_of(&nodes[0])).await.expect("connect");
    let report = alice
        .put(&entry, &path, "gone.txt", None)
        .await
        .expect("put");
    let names = vec![("gone.txt".to_string(), report.hash)];
    {
        let refs: Vec<&Node> = nodes.iter().collect();
        wait_copies(&refs, &names, "copies before rm").await;
    }
    // A replica holder goes away, keeping its copy on disk.
    let away = nodes
        .iter()
        .position(|n| {
            n.id() != report.owner.id
                && n.files().and_then(|f| f.store().get(&report.key)).is_some()
        })
        .expect("a replica holder");
    let away_dir = root.path().join(format!("node-{away}"));
    nodes.remove(away).kill().await;
    let entry = alice
        .connect(target_of(&nodes[(away + 1) % nodes.len()]))
        .await
        .expect("connect");
    let copies = alice.remove(&entry, "gone.txt").await.expect("rm");
    assert!(copies >= 1);
    // At once: no member serves it.
    for node in &nodes {
        let via = alice.connect(target_of(node)).await.expect("connect");
        let out = src.path().join("out");
        let e = alice
            .get(&via, "gone.txt", &out, None)
            .await
            .expect_err("removed");
        assert!(e.to_string().contains("removed"), "{e}");
        assert!(!out.exists());
    }
    // The holder comes back with its old copy: it is dropped within a repair interval or so
    // of rejoining, and no get returns it meanwhile.
    let mut config = config();
    config.node.data_dir = Some(away_dir);
    let back = start(&config).await;
    assert!(
        back.files()
            .and_then(|f| f.store().get(&report.key))
            .is_some(),
        "the old copy is on disk"
    );
    back.handle()
        .join(target_of(&nodes[0]))
        .await
        .expect("rejoin");
    let via = alice.connect(target_of(&back)).await.expect("connect");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = src.path().join("out2");
        assert!(
            alice.get(&via, "gone.txt", &out, None).await.is_err(),
            "a removed file was served"
        );
        if back
            .files()
            .and_then(|f| f.store().get(&report.key))
            .is_none()
        {
            break;
        }
        assert!(Instant::now() < deadline, "the old copy was not dropped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_nodes_keep_exactly_three_copies_of_each_file() {
    let nodes = settled_ring(4, 44).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    let src = tempfile::tempdir().expect("tempdir");
    let mut names = Vec::new();
    for i in 0..20 {
        let bytes = content(100 + i, 1000 + i as usize * 37);
        let path = write_file(src.path(), &format!("f{i}"), &bytes);
        let name = format!("four-{i}");
        let report = put_from(refs[i as usize % 4], &path, &name)
            .await
            .expect("put");
        names.push((name, report.hash));
    }
    wait_copies(&refs, &names, "exactly R copies").await;
    // A fifth node joins and leaves surplus copies behind; once it settles, still exactly R.
    let fifth = start(&config()).await;
    fifth.handle().join(target_of(refs[0])).await.expect("join");
    let mut all = refs.clone();
    all.push(&fifth);
    wait_exact(&all, 4, Duration::from_secs(30), "five").await;
    wait_copies(&all, &names, "exactly R copies after a join").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_copy_is_kept_and_a_flipped_byte_is_replaced() {
    let nodes = settled_ring(3, 31).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    let src = tempfile::tempdir().expect("tempdir");
    let bytes = content(9, 500_000);
    let path = write_file(src.path(), "kept", &bytes);
    let report = put_from(refs[0], &path, "kept.bin").await.expect("put");
    let names = vec![("kept.bin".to_string(), report.hash)];
    wait_copies(&refs, &names, "copies").await;
    let holder = refs[1];
    let store = holder.files().expect("files").store();
    let data = store.data_path(&report.key);
    let aside = data.with_extension("aside");

    // The data file cannot be read (a directory stands in its place: reads fail with EISDIR,
    // even for root). Neither a Check nor the scrub deletes the copy.
    std::fs::rename(&data, &aside).expect("move aside");
    std::fs::create_dir(&data).expect("unreadable stand-in");
    let client = Client::new(Duration::from_secs(5)).await.expect("client");
    let answer = client
        .request(
            holder.me(),
            WireRequest::Files(FileRequest::Check { key: report.key }),
        )
        .await
        .expect("answer");
    assert!(
        matches!(&answer, WireResponse::Error(why) if why.contains("cannot be read")),
        "{answer:?}"
    );
    for _ in 0..10 {
        tokio::time::sleep(REPAIR).await;
        assert!(
            store.get(&report.key).is_some(),
            "an unreadable copy was deleted"
        );
    }
    std::fs::remove_dir(&data).expect("stand-in gone");
    std::fs::rename(&aside, &data).expect("moved back");
    wait_copies(&refs, &names, "readable again").await;

    // A flipped byte is corruption: the copy is replaced with a good one fetched elsewhere.
    let mut on_disk = std::fs::read(&data).expect("copy");
    on_disk[250_000] ^= 0x01;
    std::fs::write(&data, &on_disk).expect("flip");
    let answer = client
        .request(
            holder.me(),
            WireRequest::Files(FileRequest::Check { key: report.key }),
        )
        .await
        .expect("answer");
    assert!(
        matches!(
            answer,
            WireResponse::Files(FileResponse::Checked { good: false })
        ),
        "{answer:?}"
    );
    wait_copies(&refs, &names, "the flipped copy replaced").await;
    let out = src.path().join("out");
    get_from(holder, "kept.bin", &out).await.expect("get");
    assert_eq!(std::fs::read(&out).expect("output"), bytes);
}
