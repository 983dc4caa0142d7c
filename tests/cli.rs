//! The binary as a user runs it: separate processes, flags, stdout, signals, exit codes.

mod common;

use std::process::Command;
use std::time::Duration;

use chord_p2p::chord::Id;
use common::procs::*;
use common::{ideal, Rng};
use serde_json::Value;

const R: usize = 4;

/// `status --peer ADDR --json` of every node agrees with the ideal ring of `ids`.
fn ring_is_exact(addrs: &[String], ids: &[Id]) -> Result<(), String> {
    for addr in addrs {
        let out = oneshot(&["status", "--peer", addr, "--json", "--timeout", "5s"]);
        if !out.status.success() {
            return Err(format!(
                "status failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        for key in [
            "peer_id",
            "id",
            "addrs",
            "predecessor",
            "successors",
            "fingers",
        ] {
            if v.get(key).is_none() {
                return Err(format!("status --json lacks '{key}'"));
            }
        }
        let me = hex_id(&v).ok_or("no id")?;
        let (pred, succs, fingers) = ideal(ids, &me, R);
        let got_pred = hex_id(&v["predecessor"]);
        let got_succs: Vec<Option<Id>> = v["successors"]
            .as_array()
            .ok_or("successors")?
            .iter()
            .map(hex_id)
            .collect();
        let got_fingers: Vec<Option<Id>> = v["fingers"]
            .as_array()
            .ok_or("fingers")?
            .iter()
            .map(|f| hex_id(&f["node"]))
            .collect();
        if got_pred != Some(pred) || got_succs != succs.into_iter().map(Some).collect::<Vec<_>>() {
            return Err(format!("{addr}: predecessor or successors not exact yet"));
        }
        if got_fingers != fingers.into_iter().map(Some).collect::<Vec<_>>() {
            return Err(format!("{addr}: fingers not exact yet"));
        }
    }
    Ok(())
}

fn wait_exact(addrs: &[String], ids: &[Id], limit: Duration, what: &str) {
    wait_until(limit, what, || ring_is_exact(addrs, ids));
}

#[test]
fn five_headless_nodes_form_the_exact_ring_and_heal_after_sigterm() {
    // The first node uses the original tool's `IP PORT` form; others join through it by
    // multiaddr or by IP:PORT.
    let port = free_port();
    let first = Proc::spawn(&["127.0.0.1", &port.to_string()]);
    let first_addr = first.line(Duration::from_secs(20));
    assert!(
        first_addr.starts_with(&format!("/ip4/127.0.0.1/udp/{port}/quic-v1/p2p/")),
        "{first_addr}"
    );
    let tcp_line = first.line(Duration::from_secs(5));
    assert!(
        tcp_line.starts_with(&format!("/ip4/127.0.0.1/tcp/{port}/p2p/")),
        "{tcp_line}"
    );

    let mut procs = vec![first];
    let mut addrs = vec![first_addr.clone()];
    let ip_port = format!("127.0.0.1:{port}");
    let mut rng = Rng::new(5);
    for i in 1..5 {
        let via = if i % 2 == 0 {
            ip_port.clone()
        } else {
            addrs[rng.below(addrs.len())].clone()
        };
        let p = Proc::spawn(&["--join", &via, "--json"]);
        let listening: Value =
            serde_json::from_str(&p.line(Duration::from_secs(20))).expect("json line");
        assert_eq!(listening["event"], "listening");
        let joined: Value =
            serde_json::from_str(&p.line(Duration::from_secs(20))).expect("json line");
        assert_eq!(joined["event"], "joined", "{joined}");
        addrs.push(listening["addr"].as_str().expect("addr").to_string());
        procs.push(p);
    }
    let ids: Vec<Id> = addrs.iter().map(|a| peer_id_of(a)).collect();
    wait_exact(
        &addrs,
        &ids,
        Duration::from_secs(60),
        "exact ring of 5 processes",
    );

    // SIGTERM: an informed leave and a clean exit within 5 s.
    let mut leaver = procs.remove(2);
    let status = Command::new("kill")
        .args(["-TERM", &leaver.pid().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exit = leaver
        .wait(Duration::from_secs(5))
        .expect("exits within 5 s after SIGTERM");
    assert!(exit.success(), "exit status {exit:?}");
    addrs.remove(2);
    let ids: Vec<Id> = addrs.iter().map(|a| peer_id_of(a)).collect();
    wait_exact(
        &addrs,
        &ids,
        Duration::from_secs(60),
        "exact ring after SIGTERM",
    );

    // A one-shot lookup through any member names the true owner.
    let out = oneshot(&[
        "lookup",
        "notes.txt",
        "--peer",
        &addrs[1],
        "--json",
        "--timeout",
        "5s",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("lookup json");
    let key = Id::hash(b"notes.txt");
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(v["name"], "notes.txt");
    assert_eq!(v["key"], key.to_hex());
    assert_eq!(
        hex_id(&v["owner"]),
        Some(common::true_successor(&sorted, &key))
    );
    assert!(v["hops"].as_u64().is_some());
}

#[test]
fn bad_addresses_unreachable_peers_and_busy_ports_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8");
    let e = fails(&["--join", "not-an-address", "--data-dir", data]);
    assert!(e.contains("not an address"), "{e}");
    let e = fails(&["status", "--peer", "/ip4/999.1.1.1/udp/1/quic-v1"]);
    assert!(e.contains("not a valid multiaddr"), "{e}");
    let e = fails(&["lookup", "x", "--peer", "127.0.0.1:99999"]);
    assert!(e.contains("port"), "{e}");

    // Nobody listens on this port (it was free a moment ago).
    let port = free_port().to_string();
    let e = fails(&[
        "status",
        "--peer",
        &format!("127.0.0.1:{port}"),
        "--timeout",
        "3s",
    ]);
    assert!(e.contains("could not reach"), "{e}");
    let e = fails(&[
        "--join",
        &format!("/ip4/127.0.0.1/tcp/{port}"),
        "--data-dir",
        data,
        "--rpc-timeout",
        "1s",
    ]);
    assert!(e.contains("could not reach"), "{e}");

    // A port already taken, for UDP and for TCP.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let busy = udp.local_addr().expect("addr").port().to_string();
    let e = fails(&[
        "--listen",
        &format!("/ip4/127.0.0.1/udp/{busy}/quic-v1"),
        "--data-dir",
        data,
    ]);
    assert!(e.contains("cannot listen"), "{e}");
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy = tcp.local_addr().expect("addr").port().to_string();
    let e = fails(&["127.0.0.1", &busy, "--data-dir", data]);
    assert!(e.contains("cannot listen"), "{e}");
}
