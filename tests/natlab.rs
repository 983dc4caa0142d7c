//! Across real NATs: a relay + bootstrap node on the lab's public segment, node A behind one
//! NAT router and node B behind another (network namespaces, nftables; tests/natlab/natlab.sh).
//! Needs root. Where the machine cannot create network namespaces the tests say so and skip.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use chord_p2p::chord::{Id, IdealRing};
use common::procs::{hex_id, isolated, peer_id_of, result_json, wait_until, Proc, BIN};
use serde_json::Value;

const PUB_IP: &str = "10.200.0.1";
const HOME1_IP: &str = "192.168.1.2";
const HOME2_IP: &str = "192.168.2.2";
const PORT: u16 = 4001;
/// Ring timing inside the lab: relayed round trips are slower than loopback.
const RING: &[&str] = &[
    "--successors",
    "4",
    "--stabilize-interval",
    "200ms",
    "--rpc-timeout",
    "2s",
    "--replicas",
    "1",
    // The test reads connections from a client in the same namespace, at the node's LAN
    // address: not loopback, so the node must share them.
    "--share-connections",
];

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/natlab/natlab.sh")
}

/// Why this machine cannot run the lab, if it cannot.
fn cannot_run() -> Option<String> {
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root: network namespaces need root".into());
    }
    static PROBES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let probe = format!("chordprobe{}-{n}", std::process::id());
    let made = Command::new("ip")
        .args(["netns", "add", &probe])
        .stderr(Stdio::null())
        .status();
    match made {
        Ok(s) if s.success() => {
            let _ = Command::new("ip").args(["netns", "del", &probe]).status();
            None
        }
        Ok(_) => Some("this machine does not let us create network namespaces".into()),
        Err(e) => Some(format!("iproute2 ('ip') is not available: {e}")),
    }
}

/// Says loudly (past the test harness's capture) why the lab cannot run here, if it cannot.
fn skipped() -> bool {
    use std::io::Write;
    match cannot_run() {
        Some(why) => {
            let _ = writeln!(std::io::stderr(), "SKIPPED natlab test: {why}");
            true
        }
        None => false,
    }
}

/// A lab of its own (namespaces named after `prefix`), torn down when dropped, pass or fail.
struct Lab {
    prefix: String,
}

impl Lab {
    fn up(tag: &str, nat1: &str, nat2: &str) -> Lab {
        let prefix = format!("cp{}{tag}", std::process::id() % 100_000);
        let lab = Lab { prefix };
        let out = lab.script(&["up"], &[("NAT1_TYPE", nat1), ("NAT2_TYPE", nat2)]);
        assert!(
            out.status.success(),
            "natlab up failed (is nftables installed?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    fn script(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(script())
            .args(args)
            .env("NATLAB_PREFIX", &self.prefix)
            .envs(env.iter().copied())
            .output()
            .expect("natlab.sh runs")
    }

    fn netns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    /// A node process inside `host`.
    fn node(&self, host: &str, args: &[&str]) -> (Proc, String) {
        let netns = self.netns(host);
        let mut all = args.to_vec();
        all.extend_from_slice(RING);
        Proc::node_in(&["ip", "netns", "exec", &netns], &all)
    }

    /// A one-shot command inside `host`.
    fn oneshot(&self, host: &str, args: &[&str]) -> Output {
        isolated("ip")
            .args(["netns", "exec", &self.netns(host), BIN])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ip netns exec runs")
    }

    fn oneshot_json(&self, host: &str, args: &[&str]) -> Value {
        let out = self.oneshot(host, args);
        assert!(
            out.status.success(),
            "{args:?} in {host} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        result_json(&out.stdout)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.script(&["down"], &[]);
    }
}

/// The three nodes: relay + bootstrap in `pub`, A in `home1`, B in `home2`; `ring` returns
/// once they are linked.
struct Ring {
    _procs: Vec<Proc>,
    relay: String,
    a: String,
    b: String,
}

/// A ring of the relay (on the public segment) and one node in each home; `relay_bytes` is
/// what the relay lets through one connection (`None`: its default).
fn ring(lab: &Lab, relay_bytes: Option<&str>) -> Ring {
    let listen_pub = format!("/ip4/{PUB_IP}/udp/{PORT}/quic-v1");
    let mut relay_args = vec!["--listen", &listen_pub, "--relay-server"];
    if let Some(bytes) = relay_bytes {
        relay_args.extend_from_slice(&["--relay-max-circuit-bytes", bytes]);
    }
    let (relay_proc, relay) = lab.node("pub", &relay_args);
    let mut procs = vec![relay_proc];
    let mut addrs = Vec::new();
    for (host, ip) in [("home1", HOME1_IP), ("home2", HOME2_IP)] {
        let listen = format!("/ip4/{ip}/udp/{PORT}/quic-v1");
        let (p, addr) = lab.node(
            host,
            &["--listen", &listen, "--relay", &relay, "--join", &relay],
        );
        procs.push(p);
        addrs.push(addr);
    }
    let b = addrs.pop().expect("b");
    let a = addrs.pop().expect("a");
    let ring = Ring {
        _procs: procs,
        relay,
        a,
        b,
    };
    wait_until(Duration::from_secs(60), "ring of three linked", || {
        ring_is_right(lab, &ring)
    });
    ring
}

/// Status of the node at `ip` (asked from inside its own LAN).
fn status(lab: &Lab, host: &str, ip: &str) -> Result<Value, String> {
    let out = lab.oneshot(
        host,
        &["status", "--peer", &format!("{ip}:{PORT}"), "--json"],
    );
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).to_string());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// Every node's successor and predecessor are right for a ring of these three.
fn ring_is_right(lab: &Lab, ring: &Ring) -> Result<(), String> {
    let ids: Vec<Id> = [&ring.relay, &ring.a, &ring.b]
        .iter()
        .map(|a| peer_id_of(a))
        .collect();
    let ideal = IdealRing::new(ids.iter().copied());
    for (host, ip) in [("pub", PUB_IP), ("home1", HOME1_IP), ("home2", HOME2_IP)] {
        let v = status(lab, host, ip)?;
        let me = hex_id(&v).ok_or("no id")?;
        let succ = hex_id(&v["successors"][0]);
        let pred = hex_id(&v["predecessor"]);
        if succ != ideal.successors(&me, 1).first().copied() || pred != ideal.predecessor(&me) {
            return Err(format!("{host}: not linked yet"));
        }
    }
    Ok(())
}

/// A name whose owner is the node with id `owner`.
fn name_owned_by(ring: &Ring, owner: Id) -> String {
    let ideal = IdealRing::new(
        [&ring.relay, &ring.a, &ring.b]
            .iter()
            .map(|a| peer_id_of(a)),
    );
    (0..)
        .map(|i| format!("from-home1-{i}.bin"))
        .find(|n| ideal.successor(&Id::hash(n.as_bytes())) == Some(owner))
        .expect("some name lands on every node")
}

/// A puts a file it owns (from its own LAN); B's LAN gets it. Returns the get's JSON or error.
fn put_at_a_get_at_b(lab: &Lab, ring: &Ring, dir: &Path) -> (String, Output) {
    put_size_at_a_get_at_b(lab, ring, dir, 3_000_000)
}

/// The same with a file of `size` bytes (past 16 MiB a sparse file of zeros, not compared).
fn put_size_at_a_get_at_b(lab: &Lab, ring: &Ring, dir: &Path, size: u64) -> (String, Output) {
    let name = name_owned_by(ring, peer_id_of(&ring.a));
    let src = dir.join("src.bin");
    let bytes: Vec<u8> = if size <= 16 << 20 {
        (0..size as u32).map(|i| (i * 7 % 251) as u8).collect()
    } else {
        Vec::new()
    };
    if bytes.is_empty() {
        let file = std::fs::File::create(&src).expect("create");
        file.set_len(size).expect("a sparse file");
    } else {
        std::fs::write(&src, &bytes).expect("write");
    }
    let put = lab.oneshot_json(
        "home1",
        &[
            "put",
            src.to_str().expect("utf-8"),
            "--name",
            &name,
            "--peer",
            &format!("{HOME1_IP}:{PORT}"),
            "--identity",
            dir.join("id.key").to_str().expect("utf-8"),
            "--json",
        ],
    );
    assert_eq!(hex_id(&put["owner"]), Some(peer_id_of(&ring.a)), "{put}");
    let out = dir.join(format!("got-{size}.bin"));
    let got = lab.oneshot(
        "home2",
        &[
            "get",
            &name,
            "--peer",
            &format!("{HOME2_IP}:{PORT}"),
            "-o",
            out.to_str().expect("utf-8"),
            "--json",
            "--timeout",
            "10s",
        ],
    );
    eprintln!(
        "get in home2: {}{}",
        String::from_utf8_lossy(&got.stdout),
        String::from_utf8_lossy(&got.stderr)
    );
    if got.status.success() && !bytes.is_empty() {
        assert_eq!(std::fs::read(&out).expect("output"), bytes, "bytes differ");
    }
    (name, got)
}

/// Whether `host`'s node has a direct (not relayed) connection to `peer`.
fn direct_to(lab: &Lab, host: &str, ip: &str, peer: &str) -> Result<(), String> {
    let v = status(lab, host, ip)?;
    let conns = v["connections"].as_array().ok_or("no connections")?;
    if conns
        .iter()
        .any(|c| c["peer_id"] == peer && c["relayed"] == false)
    {
        Ok(())
    } else {
        Err(format!("connections of {host}: {conns:?}"))
    }
}

fn last_peer(addr: &str) -> String {
    addr.rsplit('/').next().expect("peer").to_string()
}

#[test]
fn behind_two_port_preserving_nats_hole_punching_makes_direct_connections() {
    if skipped() {
        return;
    }
    let lab = Lab::up("e", "eim", "eim");
    let ring = ring(&lab, None);
    let dir = tempfile::tempdir().expect("tempdir");
    let (name, got) = put_at_a_get_at_b(&lab, &ring, dir.path());
    assert!(
        got.status.success(),
        "get of {name} failed: {}",
        String::from_utf8_lossy(&got.stderr)
    );
    let v: Value = result_json(&got.stdout);
    assert_eq!(v["via"], "direct", "the file did not come directly: {v}");
    // The ring neighbours A and B talk directly too, after hole punching.
    let b_peer = last_peer(&ring.b);
    wait_until(Duration::from_secs(60), "A–B connection direct", || {
        direct_to(&lab, "home1", HOME1_IP, &b_peer)
    });
    // AutoNAT: peers dialing back reach the relay, not the node behind its NAT.
    for (host, ip, want) in [("pub", PUB_IP, "public"), ("home1", HOME1_IP, "private")] {
        wait_until(Duration::from_secs(90), "AutoNAT verdict", || {
            let v = status(&lab, host, ip)?;
            match v["reachability"].as_str() {
                Some(r) if r == want => Ok(()),
                other => Err(format!("{host}: {other:?}")),
            }
        });
    }
}

#[test]
fn behind_a_symmetric_nat_data_goes_through_the_relay_only_if_it_allows() {
    if skipped() {
        return;
    }
    let lab = Lab::up("s", "sym", "eim");
    let dir = tempfile::tempdir().expect("tempdir");
    // A relay that lets 1 GiB through a connection carries a file that fits: relayed.
    let ring = ring(&lab, Some("1073741824"));
    let (name, got) = put_at_a_get_at_b(&lab, &ring, dir.path());
    assert!(
        got.status.success(),
        "relayed get of {name} failed: {}",
        String::from_utf8_lossy(&got.stdout)
    );
    let v: Value = result_json(&got.stdout);
    assert_eq!(v["via"], "relayed", "{v}");
    // A 2 GiB file does not fit its allowance: a clear error, before any byte moves.
    let (_, got) = put_size_at_a_get_at_b(&lab, &ring, dir.path(), 2 << 30);
    assert!(!got.status.success(), "the get should have been refused");
    let v: Value = result_json(&got.stdout);
    let error = v["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("through relay") && error.contains("--relay-max-circuit-bytes"),
        "unclear error: {v}"
    );
    assert_eq!(v["kind"], "unreachable", "{v}");
}
