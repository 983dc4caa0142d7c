//! The JSON shapes this project promises: what `status --json`, `lookup --json`, `put --json`,
//! `ls --json` and `rm --json` print, and what the HTTP API (`crate::gateway`) answers. They
//! live here, in the library, so the command line and the HTTP server cannot drift apart: both
//! call these functions. Also the `kind` of a failure (`{"error", "kind"}`), which scripts
//! branch on and the HTTP server turns into a status code.

use serde_json::{json, Value};

use crate::chord::LookupResult;
use crate::files::transfer::TransferError;
use crate::files::{FilesError, PutReport, Via};
use crate::net::{Contact, PeerRef, StatusReport};
use crate::node::NodeError;
use crate::records::{hash_hex, FileMeta, Role};

/// `{"peer_id", "id", "addrs"}`: the JSON shape of a node everywhere.
pub fn node_json(node: &PeerRef) -> Value {
    json!({
        "peer_id": node.addr.peer_id.to_string(),
        "id": node.id.to_hex(),
        "addrs": node.addr.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
    })
}

/// `status --json` and `GET /api/status`.
pub fn status_json(report: &StatusReport) -> Value {
    let fingers: Vec<Value> = report
        .fingers
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            f.as_ref().map(|node| {
                json!({"start": report.node.id.finger_start(i).to_hex(), "node": node_json(node)})
            })
        })
        .collect();
    json!({
        "peer_id": report.node.addr.peer_id.to_string(),
        "id": report.node.id.to_hex(),
        "addrs": report.node.addr.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "predecessor": report.predecessor.as_ref().map(node_json),
        "successors": report.successors.iter().map(node_json).collect::<Vec<_>>(),
        "fingers": fingers,
        "reachability": report.reachability.as_str(),
        "connections": report.connections.iter().map(|c| json!({
            "peer_id": c.peer_id.to_string(),
            "addr": c.addr.to_string(),
            "relayed": c.relayed,
        })).collect::<Vec<_>>(),
        "storage": report.storage.map(|s| json!({
            "used": s.used,
            "limit": s.limit,
            "files": s.files,
        })),
        "data_dir": report.data_dir,
    })
}

/// `lookup --json` and `GET /api/lookup/{name}`.
pub fn lookup_json(name: &str, result: &LookupResult<Contact>) -> Value {
    json!({
        "name": name,
        "key": result.key.to_hex(),
        "owner": node_json(&result.owner),
        "hops": result.hops,
        "path": result.path.iter().map(|id| id.to_hex()).collect::<Vec<_>>(),
    })
}

/// `put --json` (without the ticket; see [`with_ticket`]).
pub fn put_json(r: &PutReport) -> Value {
    json!({
        "name": r.name,
        "key": r.key.to_hex(),
        "size": r.size,
        "hash": hash_hex(&r.hash),
        "owner": node_json(&r.owner),
        "replicas": r.replicas,
        "via": via_text(r.via),
    })
}

/// A put's JSON with the ticket added: the rest of the shape is the contract.
pub fn with_ticket(mut value: Value, ticket: &str) -> Value {
    if let Some(map) = value.as_object_mut() {
        map.insert("ticket".into(), ticket.into());
    }
    value
}

/// `ls --json` and `GET /api/ls`: `{"files": [{"name", "key", "size", "hash", "role"}]}`.
pub fn files_json(files: &[FileMeta]) -> Value {
    let files: Vec<Value> = files.iter().map(file_json).collect();
    json!({ "files": files })
}

/// One file as `ls --json` lists it: `{"name", "key", "size", "hash", "role"}`.
pub fn file_json(f: &FileMeta) -> Value {
    json!({
        "name": f.name,
        "key": f.key.to_hex(),
        "size": f.size,
        "hash": hash_hex(&f.hash),
        "role": role_text(f.role),
    })
}

/// `rm --json` and `DELETE /files/{name}`.
pub fn removed_json(name: &str, copies: u32) -> Value {
    json!({"name": name, "removed": copies})
}

pub fn via_text(via: Via) -> &'static str {
    match via {
        Via::Local => "local",
        Via::Direct => "direct",
        Via::Relayed => "relayed",
    }
}

pub fn role_text(role: Role) -> &'static str {
    match role {
        Role::Owner => "owner",
        Role::Replica => "replica",
    }
}

/// What kind of failure a file operation's error is, for scripts: `usage`, `not_found`,
/// `removed`, `refused`, `busy`, `full`, `unreachable`, `timeout`, `transfer`, `local`,
/// `protocol` or `error`.
pub fn files_error_kind(e: &FilesError) -> &'static str {
    match e {
        FilesError::Name(_) => "usage",
        FilesError::Node(e) => node_error_kind(e),
        FilesError::Transfer(e) => transfer_error_kind(e),
        FilesError::Store(_) | FilesError::Local { .. } => "local",
        FilesError::NotFound(_) => "not_found",
        FilesError::Removed(_) => "removed",
        FilesError::Refused(reason) | FilesError::Unanswered { reason, .. } => refusal_kind(reason),
        FilesError::Stream { .. } | FilesError::RelayTooSmall { .. } => "unreachable",
        FilesError::Protocol { .. } => "protocol",
    }
}

fn transfer_error_kind(e: &TransferError) -> &'static str {
    match e {
        TransferError::Local { .. } | TransferError::NoSpace { .. } => "local",
        TransferError::Refused(reason) => refusal_kind(reason),
        TransferError::NotFound(_) => "not_found",
        TransferError::Removed => "removed",
        TransferError::Protocol(_) | TransferError::WrongVersion(_) => "protocol",
        TransferError::Stalled(_) | TransferError::NoAnswer(_) => "timeout",
        _ => "transfer",
    }
}

/// The kind of a node's failure (see [`files_error_kind`]).
pub fn node_error_kind(e: &NodeError) -> &'static str {
    match e {
        NodeError::Timeout(_) => "timeout",
        NodeError::Dial(_) | NodeError::Connect(_) => "unreachable",
        _ => "error",
    }
}

/// Refusals whose reason starts with a word the protocol defines (docs/PROTOCOL.md).
pub fn refusal_kind(reason: &str) -> &'static str {
    if reason.starts_with("busy") {
        "busy"
    } else if reason.starts_with("full") {
        "full"
    } else {
        "refused"
    }
}
