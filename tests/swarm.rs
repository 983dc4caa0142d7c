//! Gets from every holder at once, checked group by group, and puts that travel along a
//! chain of holders: real nodes in one process on 127.0.0.1 (the link lab measures rates).

mod common;

use std::time::Duration;

use chord_p2p::chord::Id;
use chord_p2p::client::Client;
use chord_p2p::files::{HasFiles, Role};
use chord_p2p::metrics::Protocol;
use chord_p2p::node::Node;
use common::files::*;
use common::*;

const MIB: usize = 1 << 20;

/// A client of the ring through `entry` (listens nowhere, holds nothing).
async fn client_of(entry: &Node) -> (Client, chord_p2p::net::PeerRef) {
    let client = Client::new(Duration::from_secs(5)).await.expect("client");
    let peer = client
        .connect(target_of(entry))
        .await
        .expect("entry answers");
    (client, peer)
}

/// Gets big.bin into `out`; it must be `bytes`.
async fn get_identical(
    client: &Client,
    entry: &chord_p2p::net::PeerRef,
    out: &std::path::Path,
    bytes: &[u8],
) {
    let got = client.get(entry, "big.bin", out, None).await.expect("get");
    assert_eq!(got.hash, blake3_of(bytes));
    assert!(std::fs::read(out).expect("out") == bytes, "bytes differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_from_all_holders_survives_a_bad_copy_and_a_dying_holder() {
    // Repair rounds (and their scrub) far apart: a bad copy here is found by the get itself.
    let mut cfg = config();
    cfg.files.repair_interval = Duration::from_secs(60);
    let nodes = ring_one_by_one(4, &cfg, 41).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_exact(&refs, 4, Duration::from_secs(30), "exact ring").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = content(7, 24 * MIB + 12_345);
    let path = write_file(dir.path(), "big.bin", &bytes);
    // Three copies, made along a chain of holders.
    let report = put_from(refs[0], &path, "big.bin").await.expect("put");
    assert_eq!(report.replicas, 3, "copies made by the put");
    let names = vec![("big.bin".to_string(), blake3_of(&bytes))];
    wait_copies(&refs, &names, "three copies in place").await;

    // A first get from all three holders; it leaves each answering holder's outboard
    // computed (the owner's at least: it is asked first).
    let (client, entry) = client_of(refs[3]).await;
    get_identical(&client, &entry, &dir.path().join("first.bin"), &bytes).await;

    // Flip a byte in every MiB of the owner's copy: its outboard still names the right
    // values, so whatever group it sends is caught as it arrives; the get still returns the
    // right bytes, and the owner is told its copy is bad (and repair replaces it).
    let key = Id::hash(b"big.bin");
    let holders: Vec<&Node> = refs
        .iter()
        .copied()
        .filter(|n| n.files().and_then(|f| f.store().get(&key)).is_some())
        .collect();
    assert_eq!(holders.len(), 3);
    let owner = holders
        .iter()
        .copied()
        .find(|n| n.files().and_then(|f| f.store().get(&key)).map(|m| m.role) == Some(Role::Owner))
        .expect("an owner");
    let data = owner.files().expect("files").store().data_path(&key);
    let mut on_disk = std::fs::read(&data).expect("copy");
    for at in (77..on_disk.len()).step_by(MIB) {
        on_disk[at] ^= 0x40;
    }
    std::fs::write(&data, &on_disk).expect("corrupt");
    get_identical(&client, &entry, &dir.path().join("copy.bin"), &bytes).await;
    // The bad copy is replaced by repair.
    wait_copies(&refs, &names, "the bad copy repaired").await;

    // A slow get, then a holder dies in the middle of it: the others finish it.
    let mut slow = Client::new(Duration::from_secs(5)).await.expect("client");
    slow.set_rate_limit(Some(4 * MIB as u64));
    let entry = slow.connect(target_of(refs[3])).await.expect("entry");
    let out = dir.path().join("second.bin");
    let partial = chord_p2p::files::transfer::partial_path(&out);
    let getting = {
        let (out, entry) = (out.clone(), entry.clone());
        tokio::spawn(async move { slow.get(&entry, "big.bin", &out, None).await })
    };
    wait_for(Duration::from_secs(30), "the slow get under way", || {
        let partial = partial.clone();
        async move {
            match std::fs::metadata(&partial) {
                Ok(_) => Ok(()),
                Err(_) => Err("no partial file yet".to_string()),
            }
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let victim = holders
        .iter()
        .position(|n| n.id() != refs[3].id())
        .expect("a holder other than the entry");
    let victim_id = holders[victim].id();
    let mut nodes = nodes;
    let at = nodes
        .iter()
        .position(|n| n.id() == victim_id)
        .expect("victim");
    nodes.remove(at).kill().await;
    let got = tokio::time::timeout(Duration::from_secs(60), getting)
        .await
        .expect("the get ends")
        .expect("task")
        .expect("get");
    assert_eq!(got.hash, blake3_of(&bytes));
    assert!(std::fs::read(&out).expect("out") == bytes, "bytes differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_read_fetches_about_the_range_and_checks_it() {
    let nodes = settled_ring(3, 43).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let big = content(11, 48 * MIB + 999);
    let small = content(12, 300_000);
    let big_path = write_file(dir.path(), "big.bin", &big);
    let small_path = write_file(dir.path(), "small.bin", &small);
    put_from(refs[0], &big_path, "ranged.bin")
        .await
        .expect("put");
    put_from(refs[1], &small_path, "small.bin")
        .await
        .expect("put");
    let (client, entry) = client_of(refs[2]).await;

    // 1 MiB starting mid-group, in the middle of the file: about 1 MiB moves, as the
    // client counts it and as its transfer streams carried it (requests, framing, the
    // outboard and the pieces at the ends included).
    let first = 24 * MIB as u64 + 123_457;
    let last = first + MIB as u64 - 1;
    let mut out = Vec::new();
    let wire_before = client.metrics().bytes_so_far(Protocol::Transfer, true);
    let report = client
        .get_range(&entry, "ranged.bin", first, last, &mut out)
        .await
        .expect("range");
    let wire = client.metrics().bytes_so_far(Protocol::Transfer, true) - wire_before;
    assert!(out == big[first as usize..=last as usize], "wrong bytes");
    assert!(
        report.fetched <= MIB as u64 * 12 / 10,
        "{} bytes moved for 1 MiB",
        report.fetched
    );
    assert!(
        wire <= MIB as u64 * 12 / 10,
        "{wire} bytes came in on transfer streams for 1 MiB"
    );
    println!("a 1 MiB range of 48 MiB: {wire} bytes in on the wire");
    // The last byte alone, and a small file's middle.
    let mut out = Vec::new();
    let end = big.len() as u64 - 1;
    client
        .get_range(&entry, "ranged.bin", end, end, &mut out)
        .await
        .expect("last byte");
    assert_eq!(out, vec![big[end as usize]]);
    let mut out = Vec::new();
    client
        .get_range(&entry, "small.bin", 1000, 1999, &mut out)
        .await
        .expect("small range");
    assert!(out == small[1000..2000]);
    // Past the end: refused.
    let mut out = Vec::new();
    let past = client
        .get_range(&entry, "small.bin", 299_999, 300_000, &mut out)
        .await;
    assert!(past.is_err() && out.is_empty());

    // The CLI writes a range to stdout with `-o -`.
    let peer = entry.addr.addrs[0].to_string();
    let cli = common::procs::oneshot(&[
        "get",
        "ranged.bin",
        "--range",
        "1000-1999",
        "-o",
        "-",
        "--peer",
        &peer,
    ]);
    assert!(cli.status.success(), "{cli:?}");
    assert!(cli.stdout == big[1000..2000], "stdout is the range");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_flipped_byte_costs_about_one_group_not_a_whole_copy() {
    // Repair far apart: the bad copy is found by the get itself.
    let mut cfg = config();
    cfg.files.repair_interval = Duration::from_secs(60);
    let nodes = ring_one_by_one(4, &cfg, 47).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_exact(&refs, 4, Duration::from_secs(30), "exact ring").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let size = 64 * MIB;
    let bytes = content(47, size);
    let path = write_file(dir.path(), "big.bin", &bytes);
    put_from(refs[0], &path, "big.bin").await.expect("put");
    let names = vec![("big.bin".to_string(), blake3_of(&bytes))];
    wait_copies(&refs, &names, "three copies in place").await;
    let key = Id::hash(b"big.bin");
    let holds = |n: &Node| n.files().and_then(|f| f.store().get(&key));
    let getter = refs
        .iter()
        .copied()
        .find(|n| holds(n).is_none())
        .expect("a member that holds no copy");
    let owner = refs
        .iter()
        .copied()
        .find(|n| holds(n).map(|m| m.role) == Some(Role::Owner))
        .expect("an owner");

    // A first get computes each holder's outboard from good bytes.
    get_from(getter, "big.bin", &dir.path().join("first.bin"))
        .await
        .expect("first get");

    // One byte flipped in the middle of the owner's copy.
    let data = owner.files().expect("files").store().data_path(&key);
    let mut on_disk = std::fs::read(&data).expect("copy");
    on_disk[size / 2 + 4321] ^= 0x01;
    std::fs::write(&data, &on_disk).expect("corrupt");

    // The get resumes after the first half (kept from an earlier get), so the first run of
    // groups it hands out (to the first holder asked, the owner) starts at the bad group,
    // whatever the timing: the bad holder is caught at once, every run.
    let out = dir.path().join("second.bin");
    let partial = chord_p2p::files::transfer::partial_path(&out);
    std::fs::write(&partial, &bytes[..size / 2]).expect("first half kept");
    let taken_before = getter.metrics().bytes_so_far(Protocol::Transfer, true);
    let sent_before = owner.metrics().bytes_so_far(Protocol::Transfer, false);
    let got = get_from(getter, "big.bin", &out).await.expect("get");
    assert_eq!(got.hash, blake3_of(&bytes));
    assert_eq!(got.resumed_from, (size / 2) as u64);
    assert!(std::fs::read(&out).expect("out") == bytes, "bytes differ");
    let taken = getter.metrics().bytes_so_far(Protocol::Transfer, true) - taken_before;
    let sent = owner.metrics().bytes_so_far(Protocol::Transfer, false) - sent_before;
    let delivered = got
        .sources
        .iter()
        .find(|(holder, _)| holder.id == owner.id())
        .map_or(0, |(_, bytes)| *bytes);
    // What the bad holder put on its streams beyond the good groups it delivered and the bad
    // group itself (its requests' answers, the outboard and framing are a few KiB).
    let past = sent.saturating_sub(delivered + MIB as u64);
    let half = (size / 2) as u64;
    println!(
        "64 MiB with one bad byte at the owner, resumed at 32 MiB: the getter took in {taken} \
         bytes ({:.2} MiB over the 32 MiB it lacked); the bad holder sent {sent}, of which \
         {delivered} were kept and {past} came after its bad group",
        (taken as f64 - half as f64) / MIB as f64
    );
    assert!(
        past <= MIB as u64 + 64 * 1024,
        "the bad holder sent {past} bytes past its bad group"
    );
    // Before verified streaming a getter took in the whole bad copy and then a good one (131
    // MiB for 64). Now: what it lacked, the bad group, a group past it, the end game's
    // duplicates, the outboard and the framing.
    assert!(
        taken <= half + 4 * MIB as u64,
        "the getter took in {taken} bytes for the {half} it lacked"
    );
    // The bad holder is told: it marks its copy corrupt (not served until repair replaces it).
    let files = owner.files().expect("files").clone();
    wait_for(Duration::from_secs(10), "the bad copy marked", || {
        let files = files.clone();
        async move {
            if files.is_corrupt(&key) {
                Ok(())
            } else {
                Err("the owner still takes its copy for good".to_string())
            }
        }
    })
    .await;
}

/// The issue's own case, too slow for every CI run (a 1 GiB put): run with
/// `cargo test --release --test swarm -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a 1 GiB put: run by hand in release"]
async fn a_1_mib_range_of_a_1_gib_file_moves_about_1_mib() {
    let nodes = settled_ring(3, 44).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let big = content(13, 1024 * MIB);
    let path = write_file(dir.path(), "gig.bin", &big);
    put_from(refs[0], &path, "gig.bin").await.expect("put");
    let (client, entry) = client_of(refs[2]).await;
    let first = 512 * MIB as u64 + 654_321;
    let last = first + MIB as u64 - 1;
    let mut out = Vec::new();
    let wire_before = client.metrics().bytes_so_far(Protocol::Transfer, true);
    let report = client
        .get_range(&entry, "gig.bin", first, last, &mut out)
        .await
        .expect("range");
    let wire = client.metrics().bytes_so_far(Protocol::Transfer, true) - wire_before;
    assert!(out == big[first as usize..=last as usize], "wrong bytes");
    println!(
        "a 1 MiB range of 1 GiB: {wire} bytes in on the wire ({} counted by the reader)",
        report.fetched
    );
    assert!(wire <= MIB as u64 * 12 / 10, "{wire} bytes for 1 MiB");
}
