//! What the CLI prints: text for people, one JSON object per line for scripts.

use chord_p2p::chord::{Id, LookupResult};
use chord_p2p::net::{Contact, PeerRef, StatusReport};
use serde_json::{json, Value};

/// `{"peer_id", "id", "addrs"}`: the JSON shape of a node everywhere.
pub fn node_json(node: &PeerRef) -> Value {
    json!({
        "peer_id": node.addr.peer_id.to_string(),
        "id": node.id.to_hex(),
        "addrs": node.addr.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
    })
}

pub fn status_json(report: &StatusReport) -> Value {
    let fingers: Vec<Value> = report
        .fingers
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            f.as_ref()
                .map(|node| json!({"start": report.node.id.finger_start(i).to_hex(), "node": node_json(node)}))
        })
        .collect();
    json!({
        "peer_id": report.node.addr.peer_id.to_string(),
        "id": report.node.id.to_hex(),
        "addrs": report.node.addr.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "predecessor": report.predecessor.as_ref().map(node_json),
        "successors": report.successors.iter().map(node_json).collect::<Vec<_>>(),
        "fingers": fingers,
    })
}

pub fn lookup_json(name: &str, result: &LookupResult<Contact>) -> Value {
    json!({
        "name": name,
        "key": result.key.to_hex(),
        "owner": node_json(&result.owner),
        "hops": result.hops,
    })
}

fn short(id: &Id) -> String {
    id.to_hex()[..12].to_string()
}

fn node_line(node: &PeerRef) -> String {
    let addrs: Vec<String> = node.addr.addrs.iter().map(|a| a.to_string()).collect();
    format!(
        "{}  {}  {}",
        short(&node.id),
        node.addr.peer_id,
        addrs.join(" ")
    )
}

pub fn lookup_text(name: &str, result: &LookupResult<Contact>) -> String {
    format!(
        "{name}\n  key    {}\n  owner  {}\n  hops   {}",
        result.key,
        node_line(&result.owner),
        result.hops
    )
}

pub fn successors_text(report: &StatusReport) -> String {
    report
        .successors
        .iter()
        .enumerate()
        .map(|(i, s)| format!("  {:>2}. {}", i + 1, node_line(s)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The 160 fingers folded into runs that point at the same node.
pub fn fingers_text(report: &StatusReport) -> String {
    let mut lines = Vec::new();
    let mut i = 0;
    while i < report.fingers.len() {
        let target = report.fingers[i].as_ref().map(|n| n.id);
        let mut j = i;
        while j + 1 < report.fingers.len() && report.fingers[j + 1].as_ref().map(|n| n.id) == target
        {
            j += 1;
        }
        let range = if i == j {
            format!("{i}")
        } else {
            format!("{i}-{j}")
        };
        let node = match &report.fingers[i] {
            Some(n) => node_line(n),
            None => "(unknown)".into(),
        };
        lines.push(format!("  {range:>7}  {node}"));
        i = j + 1;
    }
    lines.join("\n")
}

pub fn status_text(report: &StatusReport) -> String {
    let pred = match &report.predecessor {
        Some(p) => node_line(p),
        None => "(none)".into(),
    };
    format!(
        "node         {}\npredecessor  {pred}\nsuccessors\n{}\nfingers\n{}",
        node_line(&report.node),
        successors_text(report),
        fingers_text(report)
    )
}
