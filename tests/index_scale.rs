//! A node holding 10^5 small files starts on them, lists every one of them in `ls` pages and
//! serves gets, in bounded memory: the index keeps a small summary of each file in memory and
//! reads names and signatures from disk (examples/index_bench.rs measures the cost per file).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::procs::*;
use serde_json::Value;

const FILES: usize = 100_000;

/// What the index bench writes as file `i` (examples/index_bench.rs).
fn content(i: usize) -> String {
    format!("small file number {i}\n")
}

fn name(i: usize) -> String {
    format!("file-{i:07}.txt")
}

#[test]
fn a_node_with_a_hundred_thousand_files_lists_and_serves_them_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let status = Command::new(example("index_bench"))
        .args(["--files", &FILES.to_string(), "--generate"])
        .arg(dir.path().join("files"))
        .stdin(Stdio::null())
        .status()
        .expect("index_bench runs");
    assert!(status.success(), "generating the store failed");
    println!("wrote {FILES} files in {:?}", started.elapsed());

    let started = Instant::now();
    let args = [
        "--json",
        "--listen",
        "/ip4/127.0.0.1/udp/0/quic-v1",
        "--stabilize-interval",
        "100ms",
    ];
    let node = Proc::spawn_in_dir(dir, &[], &args);
    let mut addr = None;
    let mut files = None;
    while addr.is_none() || files.is_none() {
        let line: Value = serde_json::from_str(&node.line(Duration::from_secs(60))).expect("json");
        match line["event"].as_str() {
            Some("listening") => addr = line["addr"].as_str().map(String::from),
            Some("storage") => files = line["files"].as_u64(),
            _ => {}
        }
    }
    let addr = addr.expect("listen address");
    assert_eq!(files, Some(FILES as u64), "files counted at start");
    println!("node up in {:?}", started.elapsed());

    // Every file, page by page, through the one-shot `ls`.
    let started = Instant::now();
    let listed = oneshot_json(&["ls", "--peer", &addr, "--json", "--timeout", "30s"]);
    let listed = listed["files"].as_array().expect("a JSON list of files");
    assert_eq!(listed.len(), FILES, "files listed");
    assert_eq!(listed[0]["name"].as_str().map(|n| n.len()), Some(16));
    println!("ls of {FILES} files took {:?}", started.elapsed());

    // Gets of files spread over the index return their exact bytes.
    let out = tempfile::tempdir().expect("tempdir");
    for i in [0, 4_321, FILES / 2, FILES - 1] {
        let path = out.path().join(name(i));
        let path = path.to_str().expect("utf-8 path");
        let got = oneshot(&["get", &name(i), "--peer", &addr, "-o", path]);
        assert!(got.status.success(), "get {}: {got:?}", name(i));
        assert_eq!(std::fs::read_to_string(path).expect("got file"), content(i));
    }

    // The summaries of 10^5 files, the pages and the gets fit well within this bound (about
    // 16 MB of index; a node at rest is ~20 MB).
    let peak = node.peak_rss();
    println!("peak RSS {} MB", peak >> 20);
    assert!(peak < 150 << 20, "peak RSS {} MB", peak >> 20);
}
