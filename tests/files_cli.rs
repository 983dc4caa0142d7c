//! Files through the binary, as users run it: node processes, one-shot put/get/ls/rm, kill -9,
//! interrupted transfers, and the memory each process needs for a 1 GiB file.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chord_p2p::chord::{Id, IdealRing};
use common::procs::*;
use serde_json::Value;

const R_FILES: usize = 3;
const FILE_FLAGS: &[&str] = &["--replicas", "3", "--repair-interval", "300ms"];
const MIB: u64 = 1 << 20;

/// A ring of `n` node processes; returns them with their addresses.
fn ring(n: usize) -> (Vec<Proc>, Vec<String>) {
    let (first, addr) = Proc::node(FILE_FLAGS);
    let mut procs = vec![first];
    let mut addrs = vec![addr];
    for i in 1..n {
        let mut args = vec!["--join", addrs[i / 2].as_str()];
        args.extend_from_slice(FILE_FLAGS);
        let (p, addr) = Proc::node(&args);
        procs.push(p);
        addrs.push(addr);
    }
    (procs, addrs)
}

/// A file of `size` pseudo-random bytes (BLAKE3's output stream of `seed`); returns its hash.
fn make_file(path: &Path, seed: &str, size: u64) -> String {
    use std::io::Write;
    let mut reader = blake3::Hasher::new().update(seed.as_bytes()).finalize_xof();
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut buf = vec![0u8; MIB as usize];
    let mut left = size;
    while left > 0 {
        let n = left.min(MIB) as usize;
        reader.fill(&mut buf[..n]);
        file.write_all(&buf[..n]).expect("write");
        left -= n as u64;
    }
    file.flush().expect("flush");
    drop(file);
    hash_of(path)
}

fn hash_of(path: &Path) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher
        .update_reader(std::fs::File::open(path).expect("open"))
        .expect("read");
    hasher.finalize().to_hex().to_string()
}

fn put(file: &Path, name: &str, peer: &str, identity: &Path) -> Value {
    oneshot_json(&[
        "put",
        file.to_str().expect("utf-8"),
        "--name",
        name,
        "--peer",
        peer,
        "--identity",
        identity.to_str().expect("utf-8"),
        "--json",
        "--timeout",
        "5s",
    ])
}

/// `get NAME --peer PEER -o OUT`, for more flags to follow.
fn get_args<'a>(name: &'a str, peer: &'a str, out: &'a Path) -> Vec<&'a str> {
    let out = out.to_str().expect("utf-8");
    vec!["get", name, "--peer", peer, "-o", out]
}

fn get(name: &str, peer: &str, out: &Path) -> Value {
    let mut args = get_args(name, peer, out);
    args.extend_from_slice(&["--json", "--timeout", "3s"]);
    oneshot_json(&args)
}

/// name → [(holder id, role)] from `ls --json` of every address.
fn holdings(addrs: &[String]) -> Result<BTreeMap<String, Vec<(Id, String)>>, String> {
    let mut held: BTreeMap<String, Vec<(Id, String)>> = BTreeMap::new();
    for addr in addrs {
        let out = oneshot(&["ls", "--peer", addr, "--json", "--timeout", "5s"]);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).to_string());
        }
        let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        for f in v["files"].as_array().ok_or("no files array")? {
            let name = f["name"].as_str().ok_or("name")?.to_string();
            let role = f["role"].as_str().ok_or("role")?.to_string();
            held.entry(name).or_default().push((peer_id_of(addr), role));
        }
    }
    Ok(held)
}

/// Every name sits at its true owner (as owner) and the owner's R-1 successors (as replicas),
/// and nowhere else.
fn copies_in_place(addrs: &[String], names: &[String]) -> Result<(), String> {
    let ring = IdealRing::new(addrs.iter().map(|a| peer_id_of(a)));
    let held = holdings(addrs)?;
    for name in names {
        let owner = ring.successor(&Id::hash(name.as_bytes())).ok_or("empty")?;
        let mut want: Vec<(Id, String)> = vec![(owner, "owner".into())];
        for s in ring.successors(&owner, R_FILES - 1) {
            want.push((s, "replica".into()));
        }
        want.sort();
        let mut got = held.get(name).cloned().unwrap_or_default();
        got.sort();
        if got != want {
            return Err(format!("{name}: {} copies, not in place yet", got.len()));
        }
    }
    Ok(())
}

fn owner_of(name: &str, peer: &str) -> Id {
    let v = oneshot_json(&["lookup", name, "--peer", peer, "--json", "--timeout", "5s"]);
    hex_id(&v["owner"]).expect("owner id")
}

/// Runs a one-shot command that must succeed; returns its JSON and its peak RSS.
fn measured(args: &[&str]) -> (Value, u64) {
    let (out, rss) = Background::spawn(args).finish(Duration::from_secs(600));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (result_json(&out.stdout), rss)
}

#[test]
fn a_gigabyte_goes_up_and_down_in_bounded_memory() {
    let (procs, addrs) = ring(4);
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("big.bin");
    let hash = make_file(&src, "gigabyte", 1024 * MIB);
    let identity = dir.path().join("me.key");

    let (put, put_rss) = measured(&[
        "put",
        src.to_str().expect("utf-8"),
        "--peer",
        &addrs[1],
        "--identity",
        identity.to_str().expect("utf-8"),
        "--json",
    ]);
    assert_eq!(put["size"], 1024 * MIB);
    assert_eq!(put["hash"], hash.as_str());
    assert_eq!(put["replicas"], R_FILES);
    std::fs::remove_file(&src).expect("free the disk");

    let target = dir.path().join("back.bin");
    let (got, get_rss) = measured(&[
        "get",
        "big.bin",
        "--peer",
        &addrs[2],
        "-o",
        target.to_str().expect("utf-8"),
        "--json",
    ]);
    assert_eq!(got["size"], 1024 * MIB);
    assert_eq!(hash_of(&target), hash, "the gigabyte came back different");

    let limit = 100 * MIB;
    assert!(put_rss < limit, "put peaked at {} MiB", put_rss / MIB);
    assert!(get_rss < limit, "get peaked at {} MiB", get_rss / MIB);
    for p in &procs {
        let rss = p.peak_rss();
        assert!(rss < limit, "a node peaked at {} MiB", rss / MIB);
    }
}

#[test]
fn kill_9_of_an_owner_and_of_two_adjacent_nodes_loses_nothing() {
    let (procs, mut addrs) = ring(7);
    let mut procs: Vec<Option<Proc>> = procs.into_iter().map(Some).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let identity = dir.path().join("me.key");
    let mut names = Vec::new();
    let mut hashes = BTreeMap::new();
    for i in 0..12 {
        let name = format!("album/track-{i:02}.flac");
        let path = dir.path().join(format!("t{i}"));
        let hash = make_file(&path, &name, 1000 + 50_000 * i);
        let v = put(&path, &name, &addrs[i as usize % addrs.len()], &identity);
        assert_eq!(v["hash"], hash.as_str());
        names.push(name.clone());
        hashes.insert(name, hash);
    }
    wait_until(Duration::from_secs(60), "copies in place", || {
        copies_in_place(&addrs, &names)
    });

    // kill -9 the owner of the first track: a get right away succeeds from a replica.
    let owner = owner_of(&names[0], &addrs[0]);
    let at = addrs
        .iter()
        .position(|a| peer_id_of(a) == owner)
        .expect("owner");
    procs[at].take().expect("running").kill9();
    addrs.remove(at);
    procs.remove(at);
    let out = dir.path().join("first.out");
    let v = get(&names[0], &addrs[0], &out);
    assert_ne!(hex_id(&v["from"]), Some(owner));
    assert_eq!(hash_of(&out), hashes[&names[0]]);
    wait_until(Duration::from_secs(60), "R copies after a crash", || {
        copies_in_place(&addrs, &names)
    });

    // kill -9 two ring neighbours at once (R-1 adjacent nodes): still nothing lost.
    let mut order: Vec<(Id, usize)> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| (peer_id_of(a), i))
        .collect();
    order.sort();
    let mut doomed = vec![order[2].1, order[3].1];
    doomed.sort();
    for at in doomed.into_iter().rev() {
        procs[at].take().expect("running").kill9();
        procs.remove(at);
        addrs.remove(at);
    }
    for (i, name) in names.iter().enumerate() {
        let out = dir.path().join(format!("out-{i}"));
        get(name, &addrs[i % addrs.len()], &out);
        assert_eq!(hash_of(&out), hashes[name], "{name}");
    }
    wait_until(
        Duration::from_secs(60),
        "R copies after two crashes",
        || copies_in_place(&addrs, &names),
    );
}

fn spawn_limited(args: &[&str]) -> Background {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--limit-rate", "8M", "--timeout", "5s"]);
    Background::spawn(&all)
}

/// A get of `name` from `peer` into `out` at 8 MiB/s, in the background.
fn slow_get(name: &str, peer: &str, out: &Path, extra: &[&str]) -> Background {
    let mut args = get_args(name, peer, out);
    args.extend_from_slice(extra);
    spawn_limited(&args)
}

/// Waits until `bytes()` reaches `at_least` (a transfer under way), within 30 s.
fn wait_bytes(what: &str, at_least: u64, bytes: impl Fn() -> u64) {
    wait_until(Duration::from_secs(30), what, || match bytes() {
        n if n >= at_least => Ok(()),
        n => Err(format!("{n} bytes so far")),
    });
}

fn len_of(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Sizes of the temp files a node is receiving into.
fn receiving(node: &Proc) -> u64 {
    let tmp: PathBuf = node.files_dir().join("tmp");
    std::fs::read_dir(tmp)
        .map(|d| d.flatten().map(|e| len_of(&e.path())).sum())
        .unwrap_or(0)
}

#[test]
fn interrupted_transfers_leave_nothing_half_done_and_gets_resume() {
    let (procs, addrs) = ring(3);
    let dir = tempfile::tempdir().expect("tempdir");
    let alice = dir.path().join("alice.key");
    let bob = dir.path().join("bob.key");
    let src = dir.path().join("movie.mkv");
    let hash = make_file(&src, "movie", 64 * MIB);
    let owner = owner_of("movie.mkv", &addrs[0]);
    let owner_proc = &procs[addrs
        .iter()
        .position(|a| peer_id_of(a) == owner)
        .expect("owner")];

    // The uploader dies mid-put: nothing becomes visible anywhere, and the owner cleans up.
    let upload = spawn_limited(&[
        "put",
        src.to_str().expect("utf-8"),
        "--peer",
        &addrs[1],
        "--identity",
        alice.to_str().expect("utf-8"),
    ]);
    wait_bytes("owner receiving", 4 * MIB, || receiving(owner_proc));
    upload.kill9();
    let held = holdings(&addrs).expect("ls");
    assert!(
        !held.contains_key("movie.mkv"),
        "a partial upload is visible"
    );
    let e = fails(&[
        "get",
        "movie.mkv",
        "--peer",
        &addrs[2],
        "-o",
        dir.path().join("nothing").to_str().expect("utf-8"),
        "--timeout",
        "3s",
    ]);
    assert!(e.contains("no copy"), "{e}");
    wait_until(
        Duration::from_secs(30),
        "owner drops the partial",
        || match receiving(owner_proc) {
            0 => Ok(()),
            n => Err(format!("{n} bytes left in tmp")),
        },
    );

    // The retry succeeds.
    let v = put(&src, "movie.mkv", &addrs[1], &alice);
    assert_eq!(v["hash"], hash.as_str());
    assert_eq!(v["replicas"], R_FILES);

    // An interrupted get leaves only a hidden partial file, and the next get resumes it.
    let out = dir.path().join("movie.out");
    let partial = dir.path().join(".movie.out.chord-part");
    // Groups land in any order (from every holder at once): what is kept is what is filled.
    let download = slow_get("movie.mkv", &addrs[2], &out, &[]);
    wait_bytes("partial download", 8 * MIB, || filled(&partial));
    download.kill9();
    let kept = filled(&partial);
    assert!(!out.exists(), "an incomplete download became visible");
    let v = get("movie.mkv", &addrs[0], &out);
    let resumed = v["resumed_from"].as_u64().expect("resumed_from");
    // A group being written when the client died is fetched again.
    assert!(
        resumed > 0 && resumed + 4 * MIB >= kept,
        "resumed at {resumed}, had {kept}"
    );
    assert_eq!(hash_of(&out), hash);
    assert!(!partial.exists());

    // Clear errors for what users get wrong.
    let peer = addrs[0].as_str();
    let e = fails(&["put", "/no/such/file", "--peer", peer]);
    assert!(e.contains("/no/such/file"), "{e}");
    let nowhere = dir.path().join("nowhere");
    let nowhere = nowhere.to_str().expect("utf-8");
    let e = fails(&[
        "get",
        "no-such-name",
        "--peer",
        peer,
        "-o",
        nowhere,
        "--timeout",
        "3s",
    ]);
    assert!(e.contains("no copy"), "{e}");
    let other = dir.path().join("other.txt");
    make_file(&other, "other", 1000);
    let bob_s = bob.to_str().expect("utf-8");
    let e = fails(&[
        "put",
        other.to_str().expect("utf-8"),
        "--name",
        "movie.mkv",
        "--peer",
        peer,
        "--identity",
        bob_s,
    ]);
    assert!(e.contains("belongs to another peer"), "{e}");
    let e = fails(&["rm", "movie.mkv", "--peer", peer, "--identity", bob_s]);
    assert!(e.contains("only the uploader"), "{e}");
    let v = oneshot_json(&[
        "rm",
        "movie.mkv",
        "--peer",
        peer,
        "--identity",
        alice.to_str().expect("utf-8"),
        "--json",
    ]);
    assert_eq!(v["removed"], R_FILES);
}

#[test]
fn a_get_whose_source_is_killed_resumes_from_a_replica() {
    let (procs, addrs) = ring(4);
    let mut procs: Vec<Option<Proc>> = procs.into_iter().map(Some).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("big.iso");
    let hash = make_file(&src, "source dies", 40 * MIB);
    let identity = dir.path().join("me.key");
    put(&src, "big.iso", &addrs[0], &identity);
    wait_until(Duration::from_secs(60), "copies in place", || {
        copies_in_place(&addrs, &["big.iso".to_string()])
    });
    let owner = owner_of("big.iso", &addrs[0]);
    let at = addrs
        .iter()
        .position(|a| peer_id_of(a) == owner)
        .expect("owner");
    let entry = addrs
        .iter()
        .find(|a| peer_id_of(a) != owner)
        .expect("entry")
        .clone();

    // A slow get (8 MiB/s); once 4 MiB are in, the owner is killed -9.
    let out = dir.path().join("big.out");
    let partial = dir.path().join(".big.out.chord-part");
    let download = slow_get("big.iso", &entry, &out, &["--json"]);
    wait_bytes("download under way", 4 * MIB, || filled(&partial));
    procs[at].take().expect("running").kill9();
    let (result, _) = download.finish(Duration::from_secs(120));
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let v: Value = result_json(&result.stdout);
    assert_ne!(
        hex_id(&v["from"]),
        Some(owner),
        "the dead owner served it: {v}"
    );
    // The other holders took over the dead one's groups within the same get.
    assert_eq!(hash_of(&out), hash);
    assert!(!partial.exists());
}

/// Bytes of the partial file in 1 MiB groups that hold data (the file is as long as the
/// whole download from the start; groups arrive in any order).
fn filled(partial: &Path) -> u64 {
    let Ok(bytes) = std::fs::read(partial) else {
        return 0;
    };
    let groups = bytes
        .chunks(MIB as usize)
        .filter(|g| g.iter().any(|b| *b != 0));
    groups.map(|g| g.len() as u64).sum()
}
