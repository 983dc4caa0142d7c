//! The first hour of a new user, as issue 10 lists its stumbles: each one, driven through the
//! binary, no longer happens. Local files are never replaced by surprise, arguments are
//! checked before anything starts, identity and data are visible, every output has a JSON
//! twin, and the whole ring can be listed.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::procs::*;
use serde_json::Value;

fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// One error line on stderr, exit 1, nothing on stdout.
fn one_error_line(args: &[&str]) -> String {
    let out = oneshot(args);
    assert_eq!(out.status.code(), Some(1), "{args:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    stderr
}

#[test]
fn arguments_are_checked_before_anything_starts() {
    // Negative, tiny and huge durations, each with a line that says what is wrong.
    let negative = fails(&["--stabilize-interval", "-1s"]);
    assert!(negative.contains("cannot be negative"), "{negative}");
    assert!(
        !negative.contains("-- -1"),
        "clap's hint is gone: {negative}"
    );
    assert!(fails(&["--rpc-timeout", "1ms"]).contains("too short"));
    assert!(fails(&["--stabilize-interval", "100y"]).contains("too long"));
    let replicas = fails(&["--replicas", "10", "--successors", "4"]);
    assert!(replicas.contains("--successors 10"), "{replicas}");

    // No peer anywhere: one line that says where a default comes from; as JSON with --json.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = isolated(BIN)
        .env("XDG_CONFIG_HOME", dir.path())
        .args(["status", "--json"])
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).expect("a JSON error on stdout");
    assert_eq!(v["kind"], "usage", "{v}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("CHORD_PEER")),
        "{v}"
    );

    // Completions that bash accepts, a manual page, examples in --help.
    let script = oneshot(&["completions", "bash"]);
    assert!(script.status.success());
    let file = dir.path().join("chord-p2p.bash");
    std::fs::write(&file, &script.stdout).expect("write");
    let checked = Command::new("bash")
        .arg("-n")
        .arg(&file)
        .status()
        .expect("bash");
    assert!(checked.success(), "bash -n rejects the completion script");
    let man = oneshot(&["man"]);
    assert!(String::from_utf8_lossy(&man.stdout).contains(".TH chord-p2p 1"));
    for command in [
        &["--help"][..],
        &["put", "--help"],
        &["get", "--help"],
        &["ls", "--help"],
    ] {
        let help = String::from_utf8_lossy(&oneshot(command).stdout).to_string();
        assert!(help.contains("Example"), "{command:?} has no examples");
    }
    // A one-shot command that does not sign has no --identity to confuse anyone.
    let help = String::from_utf8_lossy(&oneshot(&["status", "--help"]).stdout).to_string();
    assert!(
        !help.contains("--identity") && !help.contains("--direct-wait"),
        "{help}"
    );
}

#[test]
fn starts_that_fail_leave_nothing_and_say_so_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A dead --join target: an error, no listen line before it, no data dir left behind.
    let data = dir.path().join("node-a");
    let out = isolated(BIN)
        .args([
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
            "--data-dir",
            s(&data),
        ])
        .args(["--join", "127.0.0.1:9", "--rpc-timeout", "1s", "--json"])
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!stdout.contains("listening"), "looked started: {stdout}");
    let v: Value = serde_json::from_str(stdout.trim()).expect("one JSON error");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot join")),
        "{v}"
    );
    assert!(!data.exists(), "a failed start left {}", data.display());

    // A port in use: the same.
    let (_first, addr) = Proc::node(&["--listen", "/ip4/127.0.0.1/udp/0/quic-v1"]);
    let taken = addr.split("/p2p/").next().expect("addr").to_string();
    let data = dir.path().join("node-b");
    let error = fails(&["--listen", &taken, "--data-dir", s(&data)]);
    assert!(error.contains("cannot listen"), "{error}");
    assert!(!data.exists(), "a failed start left {}", data.display());
}

#[test]
fn a_node_says_who_it_is_and_where_it_keeps_itself() {
    // HOST PORT with a host name, like the original tool's IP PORT.
    let port = free_port().to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Proc::spawn_in_dir(dir, &[], &["localhost", &port, "--json"]);
    let mut identity = None;
    let mut listening = 0;
    while identity.is_none() {
        let v: Value = serde_json::from_str(&node.line(Duration::from_secs(20))).expect("json");
        match v["event"].as_str() {
            Some("listening") => listening += 1,
            Some("identity") => identity = Some(v),
            _ => {}
        }
    }
    let identity = identity.expect("identity event");
    assert_eq!(listening, 2, "QUIC and TCP on {port}");
    assert_eq!(identity["throwaway"], false);
    let data_dir = node.data_dir().to_str().expect("utf-8").to_string();
    assert_eq!(identity["data_dir"].as_str(), Some(data_dir.as_str()));
    let key = identity["identity_file"]
        .as_str()
        .expect("key file")
        .to_string();
    assert!(Path::new(&key).exists(), "{key}");
    // `status` from this host shows the data dir too.
    let peer = format!("127.0.0.1:{port}");
    let status = oneshot_json(&["status", "--peer", &peer, "--json"]);
    assert_eq!(status["data_dir"].as_str(), Some(data_dir.as_str()));

    // A node on a random port with no data dir says its identity is throwaway.
    let throwaway = isolated(BIN)
        .args(["--listen", "/ip4/127.0.0.1/udp/0/quic-v1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let mut throwaway = Guard(throwaway);
    let stdout = throwaway.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut said = String::new();
    for _ in 0..6 {
        said = rx.recv_timeout(Duration::from_secs(20)).expect("a line");
        if said.contains("identity") {
            break;
        }
    }
    assert!(said.contains("throwaway"), "{said}");
    drop(throwaway);

    // A file put as the node (its key file) is removed from the command line as the node.
    let work = tempfile::tempdir().expect("tempdir");
    let file = work.path().join("mine.txt");
    std::fs::write(&file, b"the node's own file").expect("write");
    let put = [
        "put",
        s(&file),
        "--peer",
        &peer,
        "--identity",
        &key,
        "--json",
    ];
    let put = oneshot_json(&put);
    assert_eq!(put["name"], "mine.txt");
    let someone = one_error_line(&["rm", "mine.txt", "--peer", &peer]);
    assert!(someone.contains("only the uploader"), "{someone}");
    let removed = oneshot_json(&[
        "rm",
        "mine.txt",
        "--peer",
        &peer,
        "--identity",
        &key,
        "--json",
    ]);
    assert_eq!(removed["removed"], 1, "{removed}");
}

#[test]
fn local_files_are_never_replaced_by_surprise() {
    let (_node, peer) = Proc::node(&["--listen", "/ip4/127.0.0.1/udp/0/quic-v1"]);
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path();
    let file = dir.join("report.txt");
    std::fs::write(&file, b"version on the ring").expect("write");
    let put = oneshot(&["put", s(&file), "--peer", &peer, "--json"]);
    assert!(put.status.success(), "{put:?}");
    // Progress lines come first, the result last.
    let text = String::from_utf8_lossy(&put.stdout).to_string();
    assert!(text.lines().count() >= 2, "no progress events: {text}");
    let first: Value = serde_json::from_str(text.lines().next().expect("line")).expect("json");
    assert_eq!(first["event"], "progress");

    // An existing local file: refused, untouched.
    let victim = dir.join("victim.txt");
    std::fs::write(&victim, b"precious").expect("write");
    let refused = one_error_line(&["get", "report.txt", "--peer", &peer, "-o", s(&victim)]);
    assert!(
        refused.contains("already exists") && refused.contains("--force"),
        "{refused}"
    );
    assert_eq!(std::fs::read(&victim).expect("read"), b"precious");
    let forced = oneshot(&[
        "get",
        "report.txt",
        "--peer",
        &peer,
        "-o",
        s(&victim),
        "--force",
    ]);
    assert!(forced.status.success(), "{forced:?}");
    assert_eq!(
        std::fs::read(&victim).expect("read"),
        b"version on the ring"
    );

    // -o DIR writes inside it, as cp does.
    let into = dir.join("downloads");
    std::fs::create_dir(&into).expect("mkdir");
    let got = oneshot(&["get", "report.txt", "--peer", &peer, "-o", s(&into)]);
    assert!(got.status.success(), "{got:?}");
    assert_eq!(
        std::fs::read(into.join("report.txt")).expect("read"),
        b"version on the ring"
    );

    // A folder that does not exist: the user's path, once; no internal file named.
    let missing = dir.join("nonexistent").join("dir").join("x.txt");
    let error = one_error_line(&["get", "report.txt", "--peer", &peer, "-o", s(&missing)]);
    assert!(error.contains(s(&missing)), "{error}");
    assert!(
        !error.contains("chord-part") && !error.contains("os error"),
        "{error}"
    );

    // A name nobody put leaves nothing behind here.
    let nothing = dir.join("nosuch.pdf");
    let error = one_error_line(&["get", "nosuch.pdf", "--peer", &peer, "-o", s(&nothing)]);
    assert!(error.contains("nosuch.pdf"), "{error}");
    let left: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("nosuch"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    // Sizes for people in `ls`.
    let big = dir.join("big.bin");
    std::fs::write(&big, vec![7u8; 3 << 20]).expect("write");
    assert!(oneshot(&["put", s(&big), "--peer", &peer]).status.success());
    let ls = String::from_utf8_lossy(&oneshot(&["ls", "--peer", &peer]).stdout).to_string();
    assert!(ls.contains("3.0 MiB"), "{ls}");

    // A default peer from the environment, then from the config file.
    let config = tempfile::tempdir().expect("tempdir");
    let by_env = isolated(BIN)
        .env("XDG_CONFIG_HOME", config.path())
        .env("CHORD_PEER", &peer)
        .args(["ls", "--json"])
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    assert!(by_env.status.success(), "{by_env:?}");
    std::fs::create_dir_all(config.path().join("chord-p2p")).expect("mkdir");
    let toml = format!("peer = \"{peer}\"\n");
    std::fs::write(config.path().join("chord-p2p").join("config.toml"), toml).expect("write");
    let by_file = isolated(BIN)
        .env("XDG_CONFIG_HOME", config.path())
        .args(["ls", "--json"])
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    assert!(by_file.status.success(), "{by_file:?}");
    let listed = result_json(&by_file.stdout);
    assert_eq!(listed["files"].as_array().map(Vec::len), Some(2));
}

#[test]
fn logs_written_to_a_file_carry_no_colour_and_a_stopping_node_says_what_it_handed_over() {
    let (mut first, addr) = Proc::node(&["--listen", "/ip4/127.0.0.1/udp/0/quic-v1"]);
    let log = tempfile::NamedTempFile::new().expect("log file");
    let second = isolated(BIN)
        .args([
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
            "--join",
            &addr,
            "-v",
            "--json",
        ])
        .args(RING_FLAGS)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.reopen().expect("log"))
        .spawn()
        .expect("starts");
    let mut second = Guard(second);
    wait_until(Duration::from_secs(20), "the second node logs", || {
        let text = std::fs::read_to_string(log.path()).map_err(|e| e.to_string())?;
        if text.contains("INFO") {
            Ok(())
        } else {
            Err("no INFO line yet".into())
        }
    });
    let text = std::fs::read_to_string(log.path()).expect("log");
    assert!(!text.contains('\u{1b}'), "colour codes in a log file");

    // SIGTERM: an informed leave that says how many files went to the successor.
    let work = tempfile::tempdir().expect("tempdir");
    let file = work.path().join("kept.txt");
    std::fs::write(&file, b"kept").expect("write");
    assert!(oneshot(&["put", s(&file), "--peer", &addr])
        .status
        .success());
    let pid = first.pid().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    let mut left = None;
    for _ in 0..10 {
        let v: Value = serde_json::from_str(&first.line(Duration::from_secs(20))).expect("json");
        if v["event"] == "left" {
            left = Some(v);
            break;
        }
    }
    let left = left.expect("a left event");
    assert!(left["handed_over"].as_u64().is_some(), "{left}");
    assert!(
        first.wait(Duration::from_secs(10)).is_some(),
        "the node stops"
    );
    let _ = second.0.kill();
}

/// Kills a child when dropped, pass or fail.
struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_whole_ring_is_listed_once_and_status_shows_one_line_per_peer() {
    let (first, addr) = Proc::node(&[
        "--listen",
        "/ip4/127.0.0.1/udp/0/quic-v1",
        "--replicas",
        "3",
    ]);
    let mut ring = vec![first];
    let mut addrs = vec![addr.clone()];
    for _ in 1..5 {
        let (p, a) = Proc::node(&["--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--join", &addr]);
        ring.push(p);
        addrs.push(a);
    }
    let work = tempfile::tempdir().expect("tempdir");
    let mut names = Vec::new();
    for i in 0..12 {
        let name = format!("file-{i}.txt");
        let file = work.path().join(&name);
        std::fs::write(&file, format!("content {i}")).expect("write");
        let put = oneshot(&["put", s(&file), "--peer", &addrs[i % 5], "--json"]);
        assert!(put.status.success(), "{put:?}");
        names.push(name);
    }
    // Replicas make 3 copies of each; the ring listing shows each file once.
    wait_until(Duration::from_secs(30), "every file listed once", || {
        let out = oneshot(&["ls", "--ring", "--peer", &addrs[2], "--json"]);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).to_string());
        }
        let v = result_json(&out.stdout);
        let mut listed: Vec<String> = v["files"]
            .as_array()
            .ok_or("files")?
            .iter()
            .filter_map(|f| f["name"].as_str().map(String::from))
            .collect();
        listed.sort();
        let mut want = names.clone();
        want.sort();
        if v["members"] != 5 {
            return Err(format!("walked {} members", v["members"]));
        }
        if listed != want {
            return Err(format!("listed {listed:?}"));
        }
        Ok(())
    });
    let text = String::from_utf8_lossy(&oneshot(&["ls", "--ring", "--peer", &addrs[0]]).stdout)
        .to_string();
    assert!(text.contains("12 files"), "{text}");

    // `status` from this host: each peer once, with its number of connections.
    let status =
        String::from_utf8_lossy(&oneshot(&["status", "--peer", &addrs[0]]).stdout).to_string();
    let section = status
        .split("connections\n")
        .nth(1)
        .expect("connections section");
    let peers: Vec<&str> = section
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    let mut unique = peers.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(peers.len(), unique.len(), "{section}");
    assert!(section.contains("connection"), "{section}");
}

#[test]
fn an_interrupted_get_says_the_same_get_resumes() {
    let (node, peer) = Proc::node(&["--listen", "/ip4/127.0.0.1/udp/0/quic-v1"]);
    let work = tempfile::tempdir().expect("tempdir");
    let file = work.path().join("big.bin");
    // Larger than what the transports buffer, so the holder dying stops the get.
    std::fs::write(&file, vec![3u8; 48 << 20]).expect("write");
    assert!(oneshot(&["put", s(&file), "--peer", &peer])
        .status
        .success());
    // A slow get from the only holder, which then dies.
    let out = work.path().join("copy.bin");
    let get = [
        "get",
        "big.bin",
        "--peer",
        &peer,
        "-o",
        s(&out),
        "--limit-rate",
        "1M",
    ];
    let get = Background::spawn(&get);
    let partial = work.path().join(".copy.bin.chord-part");
    wait_until(
        Duration::from_secs(20),
        "some bytes arrive",
        || match std::fs::metadata(&partial) {
            Ok(m) if m.len() > 0 => Ok(()),
            _ => Err("nothing yet".into()),
        },
    );
    node.kill9();
    let (result, _) = get.finish(Duration::from_secs(60));
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr).to_string();
    assert!(
        stderr.contains("run the same get again to resume"),
        "{stderr}"
    );
    assert!(stderr.contains(".copy.bin.chord-part"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
