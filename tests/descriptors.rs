//! Issue 9: a node process with a low open-file limit, holding files. While its descriptors
//! run out, gets fail at once with a clear error, the node lives on and deletes nothing; once
//! descriptors are free again, every file is served as before. Real processes on 127.0.0.1.

mod common;

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::procs::*;
use serde_json::Value;

/// The node's open-file limit, soft and hard (so the start-up raise of the soft limit to the
/// hard one changes nothing). At rest the node holds about 15 descriptors (stdio, epoll,
/// eventfd, the QUIC socket, the TCP listener, the data-dir lock, …); 64 leaves it room for
/// its puts and gets, and the flood below fills the rest with some 50 connections.
const NOFILE: usize = 64;

/// Raw TCP connections the flood keeps open: the node's free descriptors and then some, which
/// wait in the listen backlog and take every descriptor the node frees.
const FLOOD: usize = NOFILE + 32;

/// Upper bound on how long the flood thread runs, whatever the test does.
const FLOOD_MAX: Duration = Duration::from_secs(180);

/// How long a get may take to fail while descriptors are exhausted.
const GET_LIMIT: Duration = Duration::from_secs(20);

/// How a node refuses a get when it cannot open the copy (the OS's words for EMFILE).
const EMFILE: &str = "Too many open files";

fn prlimit_available() -> bool {
    Command::new("prlimit")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The descriptors `pid` holds: how many in all, and how many numbered below `limit` (when
/// all of those are taken, opening anything fails with EMFILE).
fn descriptors(pid: u32, limit: usize) -> Result<(usize, usize), String> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).map_err(|e| e.to_string())?;
    let numbers: Vec<usize> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    let below = numbers.iter().filter(|&&n| n < limit).count();
    Ok((numbers.len(), below))
}

fn exhausted(pid: u32) -> Result<(), String> {
    match descriptors(pid, NOFILE)? {
        (_, below) if below == NOFILE => Ok(()),
        (all, below) => Err(format!("{below} of {NOFILE} taken ({all} open in all)")),
    }
}

/// Raw TCP connections to the node's listener that never start a handshake, kept open (and
/// reopened when the node gives up on them) by a thread until the guard drops.
struct Flood {
    stop: Arc<AtomicBool>,
    /// When a connection was last seen closed by the node (its descriptor freed).
    last_close: Arc<Mutex<Option<Instant>>>,
    /// Completed rounds of the thread's loop.
    rounds: Arc<AtomicU64>,
    thread: Option<JoinHandle<usize>>,
}

impl Flood {
    fn start(to: SocketAddr) -> Flood {
        assert!(to.ip().is_loopback(), "traffic goes to 127.0.0.1 only");
        let stop = Arc::new(AtomicBool::new(false));
        let last_close = Arc::new(Mutex::new(None));
        let rounds = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, last_close, rounds) = (stop.clone(), last_close.clone(), rounds.clone());
            std::thread::spawn(move || flood(to, &stop, &last_close, &rounds))
        };
        Flood {
            stop,
            last_close,
            rounds,
            thread: Some(thread),
        }
    }

    fn last_close(&self) -> Option<Instant> {
        *self.last_close.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until the thread has looked at every connection at least once more.
    fn sync(&self) {
        let seen = self.rounds.load(Ordering::SeqCst);
        wait_until(
            Duration::from_secs(10),
            "the flood thread goes round",
            || match self.rounds.load(Ordering::SeqCst) {
                n if n >= seen + 2 => Ok(()),
                n => Err(format!("at round {n}, was at {seen}")),
            },
        );
    }

    /// Stops the thread, which closes every connection; returns how many it opened in all.
    fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        let thread = self.thread.take().expect("running");
        thread.join().expect("flood thread")
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The flood thread's loop: drop connections the node closed, top up to [`FLOOD`], repeat.
/// Every socket is closed when it returns.
fn flood(
    to: SocketAddr,
    stop: &AtomicBool,
    last_close: &Mutex<Option<Instant>>,
    rounds: &AtomicU64,
) -> usize {
    let deadline = Instant::now() + FLOOD_MAX;
    let mut held: Vec<TcpStream> = Vec::new();
    let mut opened = 0;
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        let before = held.len();
        held.retain_mut(|s| {
            let mut byte = [0u8; 1];
            match s.read(&mut byte) {
                Ok(0) => false,
                Ok(_) => true,
                Err(e) => e.kind() == ErrorKind::WouldBlock,
            }
        });
        if held.len() < before {
            *last_close.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        }
        while held.len() < FLOOD && !stop.load(Ordering::SeqCst) {
            // A full backlog drops the SYN: the connect then times out, and the next round
            // tries again.
            match TcpStream::connect_timeout(&to, Duration::from_millis(500)) {
                Ok(s) => {
                    s.set_nonblocking(true).expect("nonblocking");
                    held.push(s);
                    opened += 1;
                }
                Err(_) => break,
            }
        }
        rounds.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(20));
    }
    opened
}

/// Reads the node's listen lines until its QUIC and TCP addresses are known.
fn addresses(node: &Proc, first: String) -> (String, String) {
    let (mut quic, mut tcp) = (None, None);
    let mut line = first;
    loop {
        if line.contains("/quic-v1/") {
            quic = Some(line);
        } else if line.contains("/tcp/") {
            tcp = Some(line);
        }
        if let (Some(q), Some(t)) = (&quic, &tcp) {
            return (q.clone(), t.clone());
        }
        let v: Value = serde_json::from_str(&node.line(Duration::from_secs(20))).expect("json");
        assert_eq!(v["event"], "listening", "{v}");
        line = v["addr"].as_str().expect("addr").to_string();
    }
}

/// The port of `/ip4/127.0.0.1/tcp/PORT/…`.
fn tcp_port(addr: &str) -> u16 {
    let parts: Vec<&str> = addr.split('/').collect();
    assert_eq!(&parts[..4], ["", "ip4", "127.0.0.1", "tcp"], "{addr}");
    parts[4].parse().expect("port")
}

/// Deterministic bytes for file `i`.
fn content(i: usize, size: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; size];
    blake3::Hasher::new()
        .update(format!("descriptors {i}").as_bytes())
        .finalize_xof()
        .fill(&mut bytes);
    bytes
}

fn get_args<'a>(name: &'a str, peer: &'a str, out: &'a Path) -> Vec<&'a str> {
    let out = out.to_str().expect("utf-8");
    vec!["get", name, "--peer", peer, "-o", out, "--timeout", "5s"]
}

fn alive(node: &mut Proc) -> Result<(), String> {
    match node.child.try_wait() {
        Ok(None) => Ok(()),
        Ok(Some(status)) => Err(format!("the node exited: {status}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Every file's data and metadata is where the node keeps it, the data byte for byte.
fn all_stored(node: &Proc, files: &[(String, String, Vec<u8>)]) {
    let dir = node.files_dir();
    for (name, key, bytes) in files {
        let data = dir.join(format!("{key}.data"));
        let meta = dir.join(format!("{key}.json"));
        assert!(meta.is_file(), "{name}: {} is gone", meta.display());
        let stored = std::fs::read(&data).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(stored == *bytes, "{name}: the stored data changed");
    }
}

/// The names in an `ls --json` answer, sorted.
fn listed(v: &Value) -> Vec<String> {
    let mut names: Vec<String> = v["files"]
        .as_array()
        .unwrap_or_else(|| panic!("no files in {v}"))
        .iter()
        .map(|f| f["name"].as_str().expect("name").to_string())
        .collect();
    names.sort();
    names
}

fn names(files: &[(String, String, Vec<u8>)]) -> Vec<String> {
    let mut names: Vec<String> = files.iter().map(|(n, _, _)| n.clone()).collect();
    names.sort();
    names
}

#[test]
fn a_node_out_of_descriptors_refuses_gets_clearly_deletes_nothing_and_recovers() {
    if !prlimit_available() {
        println!("SKIPPED descriptors test: prlimit not found");
        return;
    }
    let started = Instant::now();
    let limit = format!("--nofile={NOFILE}:{NOFILE}");
    let mut args = vec![
        "--listen",
        "/ip4/127.0.0.1/udp/0/quic-v1",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--replicas",
        "1",
        "--repair-interval",
        "300ms",
    ];
    args.extend_from_slice(RING_FLAGS);
    let (mut node, first) = Proc::node_in(&["prlimit", &limit], &args);
    let (quic, tcp) = addresses(&node, first);
    let pid = node.pid();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("open-file limit");
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers, [NOFILE.to_string(), NOFILE.to_string()], "{line}");

    // A few files, put over QUIC (the client's connection costs the node no descriptor).
    let dir = tempfile::tempdir().expect("tempdir");
    let identity = dir.path().join("me.key");
    let identity = identity.to_str().expect("utf-8");
    let mut files = Vec::new();
    for (i, size) in [1_000, 70_000, 300_000].into_iter().enumerate() {
        let name = format!("docs/file-{i}.bin");
        let bytes = content(i, size);
        let src = dir.path().join(format!("src-{i}"));
        std::fs::write(&src, &bytes).expect("source");
        let src = src.to_str().expect("utf-8");
        let v = oneshot_json(&[
            "put",
            src,
            "--name",
            &name,
            "--peer",
            &quic,
            "--identity",
            identity,
            "--json",
            "--timeout",
            "5s",
        ]);
        assert_eq!(v["size"], size, "{v}");
        let key = v["key"].as_str().expect("key").to_string();
        files.push((name, key, bytes));
    }
    all_stored(&node, &files);
    let (at_rest, _) = descriptors(pid, NOFILE).expect("descriptors");
    println!("at rest the node holds {at_rest} descriptors, limit {NOFILE}");
    assert!(at_rest + 16 < NOFILE, "{at_rest} descriptors at rest");

    // Exhaust the node's descriptors with raw TCP connections that never shake hands.
    let to: SocketAddr = ([127, 0, 0, 1], tcp_port(&tcp)).into();
    let flood = Flood::start(to);
    wait_until(Duration::from_secs(30), "descriptors exhausted", || {
        alive(&mut node)?;
        exhausted(pid)
    });
    println!("exhausted after {:?}", started.elapsed());

    // Every get fails, soon, with one clear line; nothing appears at the output path.
    for (i, (name, _, _)) in files.iter().enumerate() {
        let out = dir.path().join(format!("refused-{i}"));
        let mut attempt = 0;
        let error = loop {
            attempt += 1;
            wait_until(Duration::from_secs(30), "still exhausted", || {
                exhausted(pid)
            });
            let began = Instant::now();
            let (result, _) = Background::spawn(&get_args(name, &quic, &out)).finish(GET_LIMIT);
            let took = began.elapsed();
            let stderr = String::from_utf8_lossy(&result.stderr).to_string();
            println!(
                "get {name} while exhausted ({took:?}): {:?}: {stderr:?}",
                result.status
            );
            if !result.status.success() {
                break stderr;
            }
            // Served: a descriptor must have been free for a moment (the node gave up on a
            // connection of the flood's and had not yet taken the next one), else it is a bug.
            flood.sync();
            let freed = flood
                .last_close()
                .is_some_and(|t| t + Duration::from_millis(300) >= began);
            assert!(freed, "{name} was served while no descriptor was free");
            assert!(
                attempt < 5,
                "{name}: a descriptor was free at every attempt"
            );
            let _ = std::fs::remove_file(&out);
        };
        assert!(error.starts_with("error:"), "unclear error: {error:?}");
        assert_eq!(error.trim_end().lines().count(), 1, "{error:?}");
        assert!(!error.contains("panicked"), "{error}");
        assert!(
            error.contains("cannot be read now") && error.contains(EMFILE),
            "the error does not say the node is out of descriptors: {error:?}"
        );
        assert!(!out.exists(), "a refused get wrote {}", out.display());
        alive(&mut node).expect("the node lives on");
    }

    // A listing meanwhile shows every file, or fails as clearly: it never reports files gone
    // that are only unreadable for the moment.
    wait_until(Duration::from_secs(30), "still exhausted", || {
        exhausted(pid)
    });
    let args = ["ls", "--peer", &quic, "--json", "--timeout", "5s"];
    let (result, _) = Background::spawn(&args).finish(GET_LIMIT);
    let stdout = String::from_utf8_lossy(&result.stdout).to_string();
    let stderr = String::from_utf8_lossy(&result.stderr).to_string();
    println!(
        "ls while exhausted: {:?}: {stdout:?} {stderr:?}",
        result.status
    );
    if result.status.success() {
        let v: Value = serde_json::from_str(&stdout).expect("one JSON object");
        assert_eq!(listed(&v), names(&files), "ls while exhausted");
    } else {
        // With --json the error is a JSON object on stdout.
        let v: Value = serde_json::from_str(stdout.trim()).expect("a JSON error");
        let error = v["error"].as_str().unwrap_or_default();
        assert!(error.contains(EMFILE), "{v} {stderr:?}");
    }

    // A few repair rounds (each with its scrub, which cannot open a file now) go by while
    // descriptors are still exhausted: nothing is deleted.
    let hold = Instant::now() + Duration::from_secs(2);
    wait_until(
        Duration::from_secs(10),
        "repair rounds while exhausted",
        || {
            alive(&mut node)?;
            exhausted(pid)?;
            if Instant::now() < hold {
                return Err("still holding".into());
            }
            Ok(())
        },
    );
    all_stored(&node, &files);

    // Let go: the node's descriptors come back, and every file is served again, unchanged.
    let opened = flood.stop();
    println!("the flood opened {opened} connections");
    wait_until(Duration::from_secs(30), "descriptors freed", || {
        alive(&mut node)?;
        match descriptors(pid, NOFILE)? {
            (all, _) if all <= at_rest + 2 => Ok(()),
            (all, _) => Err(format!("{all} open, {at_rest} at rest")),
        }
    });
    for (i, (name, _, bytes)) in files.iter().enumerate() {
        let out = dir.path().join(format!("back-{i}"));
        let mut args = get_args(name, &quic, &out);
        args.push("--json");
        let v = oneshot_json(&args);
        assert_eq!(v["size"], bytes.len(), "{v}");
        assert!(
            std::fs::read(&out).expect("output") == *bytes,
            "{name} came back different"
        );
    }
    // The TCP listener survived too: ls through it lists every file.
    let v = oneshot_json(&["ls", "--peer", &tcp, "--json", "--timeout", "5s"]);
    assert_eq!(listed(&v), names(&files), "{v}");
    all_stored(&node, &files);
    alive(&mut node).expect("the node lives on");
    println!("done in {:?}", started.elapsed());
}
