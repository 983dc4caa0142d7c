//! Folders through the binary: `put DIR` of a deep tree with spaces and UTF-8 names and its
//! `get` elsewhere, byte for byte; `get TICKET` with no `--peer`; a hostile manifest that
//! tries to write outside the target; an interrupted folder get that resumes.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use chord_p2p::client::Client;
use chord_p2p::files::folder::{Entry, Manifest};
use chord_p2p::net::parse_target;
use common::procs::*;
use serde_json::Value;

const FILE_FLAGS: &[&str] = &["--replicas", "3", "--repair-interval", "300ms"];

/// A ring of `n` node processes; returns them with their addresses.
fn ring(n: usize) -> (Vec<Proc>, Vec<String>) {
    let (first, addr) = Proc::node(FILE_FLAGS);
    let mut procs = vec![first];
    let mut addrs = vec![addr];
    for _ in 1..n {
        let mut args = vec!["--join", addrs[0].as_str()];
        args.extend_from_slice(FILE_FLAGS);
        let (p, addr) = Proc::node(&args);
        procs.push(p);
        addrs.push(addr);
    }
    (procs, addrs)
}

/// Runs the binary with no default peer from the environment or a config file.
fn run(args: &[&str]) -> std::process::Output {
    isolated(BIN)
        .args(args)
        .env_remove("CHORD_PEER")
        .stdin(Stdio::null())
        .output()
        .expect("binary runs")
}

/// Runs a `--json` command that must succeed; returns its last line (the result: progress
/// lines come before it).
fn run_json(args: &[&str]) -> Value {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().expect("a result line");
    serde_json::from_str(last).expect("a JSON result")
}

/// Runs a command that must fail; returns its stderr.
fn run_fails(args: &[&str]) -> String {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(stderr.starts_with("error:"), "{args:?}: {stderr:?}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    stderr
}

fn text(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// `size` pseudo-random bytes from `seed`.
fn bytes(seed: &str, size: usize) -> Vec<u8> {
    let mut out = vec![0u8; size];
    blake3::Hasher::new()
        .update(seed.as_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

/// 100 files in 5 levels, with spaces and UTF-8 in folder and file names, sizes from empty
/// to a few chunks.
fn make_tree(root: &Path) {
    let levels = ["un é", "二 漢字", "drei ü ß", "четыре 4", "five ☃ five"];
    for i in 0..100usize {
        let depth = i % 5;
        let mut dir = root.to_path_buf();
        for level in &levels[..depth] {
            dir.push(level);
        }
        std::fs::create_dir_all(&dir).expect("mkdir");
        let size = match i {
            0 => 0,
            7 => 700_000,
            _ => (i * 7_919) % 40_000,
        };
        let name = format!("file {i} ñ.bin");
        std::fs::write(dir.join(name), bytes(&format!("file {i}"), size)).expect("write");
    }
}

/// Relative path → BLAKE3 of every file under `root`; no links, nothing else.
fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for item in std::fs::read_dir(dir).expect("read dir") {
            let item = item.expect("entry");
            let kind = item.file_type().expect("type");
            let path = item.path();
            assert!(!kind.is_symlink(), "{} is a link", path.display());
            if kind.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("under root");
                let hash = blake3::hash(&std::fs::read(&path).expect("read"));
                out.insert(rel.to_string_lossy().to_string(), hash.to_hex().to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Every file under `root`, as paths.
fn files_under(root: &Path) -> Vec<PathBuf> {
    tree(root).keys().map(|rel| root.join(rel)).collect()
}

#[test]
fn a_deep_tree_round_trips_and_a_ticket_needs_no_peer() {
    let (_procs, addrs) = ring(3);
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("my tree ✓");
    make_tree(&src);
    let want = tree(&src);
    assert_eq!(want.len(), 100);
    let identity = dir.path().join("me.key");

    let started = Instant::now();
    let put = run_json(&[
        "put",
        text(&src),
        "--peer",
        &addrs[0],
        "--identity",
        text(&identity),
        "--json",
        "--timeout",
        "5s",
    ]);
    eprintln!("put of 100 files: {:?}", started.elapsed());
    assert_eq!(put["name"], "my tree ✓/", "{put}");
    assert_eq!(put["folder"]["files"], 100, "{put}");
    assert_eq!(put["replicas"], 3, "{put}");
    let ticket = put["ticket"].as_str().expect("ticket").to_string();
    assert!(ticket.starts_with("chord:"), "{ticket}");

    // Elsewhere: another member, into a folder of its own, byte for byte.
    let out = dir.path().join("elsewhere");
    std::fs::create_dir(&out).expect("mkdir");
    let started = Instant::now();
    let got = run_json(&[
        "get",
        "my tree ✓/",
        "--peer",
        &addrs[2],
        "-o",
        text(&out),
        "--json",
        "--timeout",
        "5s",
    ]);
    eprintln!("get of 100 files: {:?}", started.elapsed());
    let target = out.join("my tree ✓");
    assert_eq!(got["path"], text(&target), "{got}");
    assert_eq!(got["folder"]["fetched"], 100, "{got}");
    assert_eq!(got["hash"], put["hash"], "{got}");
    assert_eq!(tree(&target), want);
    assert!(
        !out.join(".my tree ✓.chord-folder").exists(),
        "the manifest kept for a resume is gone once every file is in"
    );

    // The ticket alone, no --peer and no default peer; into a new folder named by -o.
    let by_ticket = dir.path().join("by ticket");
    let got = run_json(&["get", &ticket, "-o", text(&by_ticket), "--json"]);
    assert_eq!(got["folder"]["files"], 100, "{got}");
    assert_eq!(tree(&by_ticket), want);

    // Without the slash, a name that is no file is taken as the folder's.
    let cwd = dir.path().join("cwd");
    std::fs::create_dir(&cwd).expect("mkdir");
    let out = isolated(BIN)
        .args(["get", "my tree ✓", "--peer", &addrs[1], "--json"])
        .env_remove("CHORD_PEER")
        .current_dir(&cwd)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(tree(&cwd.join("my tree ✓")), want);

    // Each file of a folder is a normal file on the ring, and a single file's put prints a
    // ticket that works without --peer too.
    let member = dir.path().join("member.bin");
    let got = run_json(&[
        "get",
        "my tree ✓/un é/二 漢字/file 7 ñ.bin",
        "--peer",
        &addrs[1],
        "-o",
        text(&member),
        "--json",
    ]);
    assert_eq!(got["size"], 700_000);
    assert_eq!(
        std::fs::read(&member).expect("read"),
        std::fs::read(src.join("un é/二 漢字/file 7 ñ.bin")).expect("read")
    );
    let single = run_json(&[
        "put",
        text(&member),
        "--name",
        "just one.bin",
        "--peer",
        &addrs[1],
        "--identity",
        text(&identity),
        "--json",
    ]);
    let one_ticket = single["ticket"].as_str().expect("ticket");
    let again = dir.path().join("again.bin");
    run_json(&["get", one_ticket, "-o", text(&again), "--json"]);
    assert_eq!(std::fs::read(&again).ok(), std::fs::read(&member).ok());

    // A damaged ticket is one clear line.
    let damaged = format!("{}xx!", &ticket[..ticket.len() / 2]);
    let err = run_fails(&["get", &damaged, "-o", text(&dir.path().join("no"))]);
    assert!(err.contains("ticket"), "{err}");
}

/// Puts `bytes` under `name` as the identity in `key`, through the library (a hostile peer
/// uses whatever tool it likes; the CLI will not put a file under a folder's name).
fn put_raw(addr: &str, key: &Path, name: &str, bytes: &[u8]) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("content");
        std::fs::write(&file, bytes).expect("write");
        let identity = Client::load_identity(key).expect("identity");
        let client = Client::with_identity(identity, Duration::from_secs(5))
            .await
            .expect("client");
        let entry = client
            .connect(parse_target(addr).expect("addr"))
            .await
            .expect("connect");
        client.put(&entry, &file, name, None).await.expect("put");
        client.close().await;
    });
}

fn entry(path: &str, content: &[u8]) -> Entry {
    Entry {
        path: path.into(),
        size: content.len() as u64,
        hash: *blake3::hash(content).as_bytes(),
    }
}

#[test]
fn a_hostile_manifest_writes_nothing_outside_its_folder() {
    let (_procs, addrs) = ring(3);
    let dir = tempfile::tempdir().expect("tempdir");
    let (mallory, alice) = (dir.path().join("mallory.key"), dir.path().join("alice.key"));
    let payload = b"owned".to_vec();
    let sandbox = dir.path().join("sandbox");
    std::fs::create_dir(&sandbox).expect("mkdir");
    let abs = std::env::temp_dir().join(format!("chord-abs-{}.txt", std::process::id()));

    // Paths that climb out, or start at the root, next to a harmless one.
    for (i, bad) in [
        "../escape.txt".to_string(),
        "ok/../../escape.txt".to_string(),
        abs.display().to_string(),
        "a//b.txt".into(),
    ]
    .iter()
    .enumerate()
    {
        let name = format!("evil{i}/");
        put_raw(&addrs[0], &mallory, &format!("{name}ok.txt"), &payload);
        put_raw(&addrs[0], &mallory, &format!("{name}{bad}"), &payload);
        let manifest = Manifest {
            files: vec![entry("ok.txt", &payload), entry(bad, &payload)],
        };
        put_raw(&addrs[0], &mallory, &name, &manifest.encode());
        let err = run_fails(&[
            "get",
            &name,
            "--peer",
            &addrs[1],
            "-o",
            text(&sandbox.join("in")),
        ]);
        assert!(err.contains("cannot go into a folder"), "{bad}: {err}");
        assert!(
            tree(dir.path()).keys().all(|f| !f.contains("escape")),
            "{bad}"
        );
        assert!(!abs.exists(), "{bad}");
        // Refused before any file of it was written, and no manifest is kept for a resume.
        assert!(
            files_under(&sandbox).is_empty(),
            "{bad}: {:?}",
            tree(&sandbox)
        );
    }

    // A name with the folder's slash whose content is no manifest.
    put_raw(&addrs[0], &mallory, "plain/", b"just some text");
    let err = run_fails(&[
        "get",
        "plain/",
        "--peer",
        &addrs[1],
        "-o",
        text(&sandbox.join("in")),
    ]);
    assert!(err.contains("is not a folder"), "{err}");
    assert!(files_under(&sandbox).is_empty(), "{:?}", tree(&sandbox));

    // A manifest that names another uploader's file: the right bytes, the wrong signer.
    let theirs = b"alice's words".to_vec();
    put_raw(&addrs[0], &alice, "mixed/a.txt", &theirs);
    let manifest = Manifest {
        files: vec![entry("a.txt", &theirs)],
    };
    put_raw(&addrs[0], &mallory, "mixed/", &manifest.encode());
    let target = sandbox.join("mixed");
    let err = run_fails(&["get", "mixed/", "--peer", &addrs[2], "-o", text(&target)]);
    assert!(
        err.contains("not the version the folder's manifest names"),
        "{err}"
    );
    // Nothing but the manifest kept for a re-run.
    let left = tree(&sandbox);
    assert!(left.keys().all(|k| k == ".mixed.chord-folder"), "{left:?}");

    // A link planted in a folder a get is forced into is not followed out of it.
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).expect("mkdir");
    let planted = sandbox.join("planted");
    std::fs::create_dir_all(planted.join("linked")).expect("mkdir");
    std::os::unix::fs::symlink(&outside, planted.join("linked/sub")).expect("symlink");
    let inner = b"inner".to_vec();
    put_raw(&addrs[0], &mallory, "linked/sub/x.txt", &inner);
    let manifest = Manifest {
        files: vec![entry("sub/x.txt", &inner)],
    };
    put_raw(&addrs[0], &mallory, "linked/", &manifest.encode());
    let err = run_fails(&[
        "get",
        "linked/",
        "--peer",
        &addrs[1],
        "-o",
        text(&planted),
        "--force",
    ]);
    assert!(err.contains("a file or a link is in the way"), "{err}");
    assert!(files_under(&outside).is_empty());
}

/// Files under `root` that are complete (not partial downloads), by name only: a get may
/// be renaming them meanwhile.
fn complete_files(root: &Path) -> usize {
    let Ok(items) = std::fs::read_dir(root) else {
        return 0;
    };
    let mut count = 0;
    for item in items.flatten() {
        let path = item.path();
        if path.is_dir() {
            count += complete_files(&path);
        } else if !item.file_name().to_string_lossy().ends_with(".chord-part") {
            count += 1;
        }
    }
    count
}

#[test]
fn an_interrupted_folder_get_resumes_and_a_forced_one_fetches_only_what_is_missing() {
    let (_procs, addrs) = ring(3);
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("album");
    std::fs::create_dir_all(src.join("sub dir")).expect("mkdir");
    for i in 0..12 {
        let sub = if i % 2 == 0 { "" } else { "sub dir/" };
        let path = src.join(format!("{sub}photo {i}.raw"));
        std::fs::write(path, bytes(&format!("photo {i}"), 512 * 1024)).expect("write");
    }
    let want = tree(&src);
    let identity = dir.path().join("me.key");
    run_json(&[
        "put",
        text(&src),
        "--peer",
        &addrs[0],
        "--identity",
        text(&identity),
        "--json",
    ]);

    // A slow get (1 MiB/s over the four transfers), killed once a few files are in.
    let out = dir.path().join("out");
    let target = out.join("album");
    std::fs::create_dir(&out).expect("mkdir");
    let slow = Background::spawn(&[
        "get",
        "album/",
        "--peer",
        &addrs[1],
        "-o",
        text(&out),
        "--limit-rate",
        "1M",
        "--json",
    ]);
    wait_until(
        Duration::from_secs(30),
        "some files fetched",
        || match complete_files(&target) {
            n if n >= 2 => Ok(()),
            n => Err(format!("{n} files")),
        },
    );
    slow.kill9();
    let done_before = complete_files(&target);
    assert!(
        done_before < 12,
        "the get finished before it was interrupted"
    );
    assert!(
        out.join(".album.chord-folder").is_file(),
        "the manifest is kept"
    );
    let partial_bytes: u64 = tree(&target)
        .keys()
        .filter(|p| p.ends_with(".chord-part"))
        .map(|p| std::fs::metadata(target.join(p)).map_or(0, |m| m.len()))
        .sum();

    // The same get again, no --force: it goes on where it stopped.
    let got = run_json(&[
        "get",
        "album/",
        "--peer",
        &addrs[2],
        "-o",
        text(&out),
        "--json",
    ]);
    eprintln!(
        "interrupted with {done_before} files and {partial_bytes} partial bytes in; then {got}"
    );
    assert_eq!(got["folder"]["files"], 12, "{got}");
    let skipped = got["folder"]["skipped"].as_u64().expect("skipped") as usize;
    let fetched = got["folder"]["fetched"].as_u64().expect("fetched") as usize;
    assert!(skipped >= done_before, "{got}: {done_before} were in");
    assert_eq!(skipped + fetched, 12, "{got}");
    if partial_bytes > 0 {
        assert!(got["resumed_from"].as_u64() > Some(0), "{got}");
    }
    assert_eq!(tree(&target), want, "no partial file is left");
    assert!(!out.join(".album.chord-folder").exists());

    // Finished: a plain re-run refuses to touch the folder ...
    let err = run_fails(&["get", "album/", "--peer", &addrs[1], "-o", text(&out)]);
    assert!(err.contains("pass --force"), "{err}");

    // ... a forced one checks every file and fetches only the missing or changed ones.
    std::fs::remove_file(target.join("photo 0.raw")).expect("rm");
    std::fs::remove_file(target.join("sub dir/photo 5.raw")).expect("rm");
    std::fs::write(target.join("photo 2.raw"), b"edited").expect("write");
    let got = run_json(&[
        "get",
        "album/",
        "--peer",
        &addrs[0],
        "-o",
        text(&out),
        "--force",
        "--json",
    ]);
    assert_eq!(got["folder"]["fetched"], 3, "{got}");
    assert_eq!(got["folder"]["skipped"], 9, "{got}");
    assert_eq!(tree(&target), want);
}
