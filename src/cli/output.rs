//! What the CLI prints: text for people, one JSON object per line for scripts.

use chord_p2p::chord::{Id, LookupResult};
use chord_p2p::files::store::hash_hex;
use chord_p2p::files::{FileMeta, GetReport, PutReport};
use chord_p2p::net::{Contact, PeerRef, StatusReport};
// The JSON shapes live in the library, shared with the HTTP API.
use chord_p2p::shapes::{file_json, removed_json, role_text, via_text};
pub use chord_p2p::shapes::{
    files_json, lookup_json, node_json, put_json, status_json, with_ticket,
};
use serde_json::{json, Value};

/// Bytes for people: `512 B`, `3.4 KiB`, `12.0 MiB`, `1.5 GiB`, `2.0 TiB`.
pub fn size_text(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
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
    // Who answered, then the owner (once, if it answered last itself).
    let mut path: Vec<String> = result
        .path
        .iter()
        .chain([&result.owner.id])
        .map(short)
        .collect();
    path.dedup();
    format!(
        "{name}\n  key    {}\n  owner  {}\n  hops   {}\n  path   {}",
        result.key,
        node_line(&result.owner),
        result.hops,
        path.join(" → ")
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
    let connections = connections_text(report);
    let storage = match report.storage {
        Some(s) => format!(
            "{} used of {}, {} files",
            size_text(s.used),
            s.limit.map_or("no limit".into(), size_text),
            s.files
        ),
        None => "(keeps no files)".into(),
    };
    let data = match &report.data_dir {
        Some(dir) => format!("\ndata         {dir}"),
        None => String::new(),
    };
    format!(
        "node         {}{data}\nreachable    {}\nstorage      {storage}\npredecessor  {pred}\nsuccessors\n{}\nfingers\n{}\nconnections\n{connections}",
        node_line(&report.node),
        report.reachability.as_str(),
        successors_text(report),
        fingers_text(report),
    )
}

/// One line per peer: how it is reached, how many connections, at which addresses.
fn connections_text(report: &StatusReport) -> String {
    let mut peers: std::collections::BTreeMap<String, (usize, bool, Vec<String>)> =
        std::collections::BTreeMap::new();
    for c in &report.connections {
        let entry = peers.entry(c.peer_id.to_string()).or_default();
        entry.0 += 1;
        entry.1 |= c.relayed;
        let addr = c.addr.to_string();
        if !entry.2.contains(&addr) {
            entry.2.push(addr);
        }
    }
    if peers.is_empty() {
        return "  (none shown)".into();
    }
    peers
        .iter()
        .map(|(peer, (count, relayed, addrs))| {
            let how = if *relayed { "relayed" } else { "direct " };
            let plural = if *count == 1 { "" } else { "s" };
            format!(
                "  {how}  {peer}  {count} connection{plural}  {}",
                addrs.join(" ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn put_text(r: &PutReport) -> String {
    format!(
        "stored {} ({}) at {}; {} copies\n  hash {}",
        r.name,
        size_text(r.size),
        r.owner.addr.peer_id,
        r.replicas,
        hash_hex(&r.hash)
    )
}

pub fn get_json(r: &GetReport) -> Value {
    json!({
        "name": r.name,
        "size": r.size,
        "hash": hash_hex(&r.hash),
        "path": r.path.display().to_string(),
        "from": node_json(&r.from),
        "resumed_from": r.resumed_from,
        "via": via_text(r.via),
        "sources": r.sources.iter().map(|(holder, bytes)| json!({
            "peer_id": holder.addr.peer_id.to_string(),
            "bytes": bytes,
        })).collect::<Vec<_>>(),
    })
}

pub fn get_text(r: &GetReport) -> String {
    let resumed = match r.resumed_from {
        0 => String::new(),
        n => format!(", resumed after {}", size_text(n)),
    };
    let from = match r.sources.len() {
        0 | 1 => r.from.addr.peer_id.to_string(),
        n => format!("{n} holders at once (most from {})", r.from.addr.peer_id),
    };
    format!(
        "got {} ({}, verified{resumed}) from {from} into {}",
        r.name,
        size_text(r.size),
        r.path.display()
    )
}

/// `ls --ring --json`: the shape of `ls --json`, each file with its owner, and the walk.
pub fn ring_files_json(listing: &chord_p2p::client::RingListing) -> Value {
    let files: Vec<Value> = listing
        .files
        .iter()
        .map(|(f, owner)| {
            let mut file = file_json(f);
            if let Some(fields) = file.as_object_mut() {
                fields.insert("uploader".into(), f.uploader.clone().into());
                fields.insert("owner".into(), node_json(owner));
            }
            file
        })
        .collect();
    json!({ "files": files, "members": listing.members, "cut_short": listing.cut_short })
}

pub fn ring_files_text(listing: &chord_p2p::client::RingListing) -> String {
    let mut lines: Vec<String> = listing
        .files
        .iter()
        .map(|(f, owner)| {
            format!(
                "  {:>10}  {}  {}  (owner {})",
                size_text(f.size),
                short(&f.key),
                f.name,
                owner.addr.peer_id
            )
        })
        .collect();
    let total: u64 = listing.files.iter().map(|(f, _)| f.size).sum();
    let cut = if listing.cut_short {
        " (stopped at --max-members before the walk came round)"
    } else {
        ""
    };
    lines.push(format!(
        "{} files, {} in all, on {} members{cut}",
        listing.files.len(),
        size_text(total),
        listing.members
    ));
    lines.join("\n")
}

pub fn files_text(files: &[FileMeta]) -> String {
    if files.is_empty() {
        return "(no files)".into();
    }
    files
        .iter()
        .map(|f| {
            format!(
                "  {:<8} {:>10}  {}  {}",
                role_text(f.role),
                size_text(f.size),
                short(&f.key),
                f.name
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What `rm` prints.
pub fn removed(name: &str, copies: u32, json: bool) -> String {
    if json {
        removed_json(name, copies).to_string()
    } else {
        format!("removed {name}: {copies} copies deleted")
    }
}

/// What an informed leave did, as the node says it when it stops.
pub fn left(left: &chord_p2p::node::Left, json: bool) -> String {
    match (left.handed_over, json) {
        (handed, true) => json!({"event": "left", "handed_over": handed}).to_string(),
        (Some(1), false) => "left the ring; handed 1 file to the successor".into(),
        (Some(n), false) => format!("left the ring; handed {n} files to the successor"),
        (None, false) => "left the ring; the hand-off ran out of time (the successors' \
                          replicas and repair cover the rest)"
            .into(),
    }
}

/// The line that hands a put to a friend.
pub fn ticket_text(ticket: &str) -> String {
    format!("  ticket {ticket}")
}

/// A folder put: the manifest's put (the `put` shape), with the folder's files and the ticket.
pub fn folder_put_json(r: &chord_p2p::files::FolderPutReport, ticket: &str) -> Value {
    let mut value = with_ticket(put_json(&r.manifest), ticket);
    if let Some(map) = value.as_object_mut() {
        map.insert("folder".into(), json!({"files": r.files, "size": r.size}));
    }
    value
}

pub fn folder_put_text(r: &chord_p2p::files::FolderPutReport, ticket: &str) -> String {
    format!(
        "shared folder {} ({} files, {}) at {}; manifest: {} copies\n  hash {}\n{}",
        r.name,
        r.files,
        size_text(r.size),
        r.manifest.owner.addr.peer_id,
        r.manifest.replicas,
        hash_hex(&r.manifest.hash),
        ticket_text(ticket)
    )
}

/// A folder get: the `get` shape (size and resumed bytes over all files; hash, from and via
/// of the manifest), with what happened to the files.
pub fn folder_get_json(r: &chord_p2p::files::FolderGetReport) -> Value {
    json!({
        "name": r.name,
        "size": r.size,
        "hash": hash_hex(&r.manifest.hash),
        "path": r.path.display().to_string(),
        "from": node_json(&r.manifest.from),
        "resumed_from": r.resumed_from,
        "via": via_text(r.manifest.via),
        "folder": {"files": r.files, "fetched": r.fetched, "skipped": r.skipped},
    })
}

pub fn folder_get_text(r: &chord_p2p::files::FolderGetReport) -> String {
    let skipped = match r.skipped {
        0 => String::new(),
        n => format!(", {n} already there"),
    };
    format!(
        "got folder {} ({} files, {}, verified; {} fetched{skipped}) into {}",
        r.name,
        r.files,
        size_text(r.size),
        r.fetched,
        r.path.display()
    )
}

/// A range read: `{"name", "first", "last", "bytes", "fetched", "hash", "path", "from"}`.
pub fn range_json(r: &chord_p2p::files::range::RangeReport, path: &std::path::Path) -> Value {
    json!({
        "name": r.name,
        "first": r.first,
        "last": r.last,
        "bytes": r.last - r.first + 1,
        "fetched": r.fetched,
        "hash": hash_hex(&r.version.hash),
        "path": path.display().to_string(),
        "from": node_json(&r.from),
    })
}

pub fn range_text(r: &chord_p2p::files::range::RangeReport, path: &std::path::Path) -> String {
    format!(
        "got bytes {}-{} of {} ({}, verified; {} fetched) from {} into {}",
        r.first,
        r.last,
        r.name,
        size_text(r.last - r.first + 1),
        size_text(r.fetched),
        r.from.addr.peer_id,
        path.display()
    )
}
