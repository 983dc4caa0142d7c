//! The ring as this node sees it, for the dashboard: this node's status, then the status
//! answers of its successors, walked along successor lists (at most [`MAX_MEMBERS`]), and the
//! files each member holds, merged into one entry per key with its number of live copies.
//!
//! A member that does not answer within [`ASK_TIMEOUT`] is left out (the walk goes on with the
//! next entry of the last successor list seen), so a failed node leaves the picture as soon as
//! it stops answering, even before its neighbours' pointers have moved past it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{json, Value};

use crate::chord::Id;
use crate::files::Files;
use crate::net::protocol::{check_status, list_page_moves_on, FileRequest, FileResponse};
use crate::net::{PeerRef, StatusReport, WireRequest, WireResponse};
use crate::records::{hash_hex, FileMeta, Role};
use crate::shapes::status_json;

/// The most members one view walks.
pub const MAX_MEMBERS: usize = 64;
/// The most files one view lists (the rest are counted, not listed).
pub const MAX_FILES: usize = 2000;
/// How long each member is given to answer a status or list request.
const ASK_TIMEOUT: Duration = Duration::from_millis(1500);

/// Where `id` sits on the circle: degrees clockwise from the top, `id / 2^160 × 360`.
pub fn angle_of(id: &Id) -> f64 {
    let mut high = [0u8; 8];
    high.copy_from_slice(&id.0[..8]);
    // The top 53 bits: exact in an f64, so the angle stays below 360.
    (u64::from_be_bytes(high) >> 11) as f64 / (1u64 << 53) as f64 * 360.0
}

/// `{"self", "members": [status + "angle"], "files": [...], "cut_short", "files_cut_short"}`.
pub async fn ring_view(files: &Files) -> Value {
    let access = files.access();
    let mut members: Vec<(StatusReport, Vec<FileMeta>)> = Vec::new();
    let mut walked: BTreeSet<Id> = BTreeSet::new();
    let mut cut_short = false;
    let me = match access.node.status().await {
        Ok(report) => report,
        Err(e) => return json!({"error": e.to_string(), "members": [], "files": []}),
    };
    walked.insert(me.node.id);
    let mut queue = me.successors.clone();
    members.push((me.clone(), files.list()));
    while let Some(at) = first_new(&mut queue, &walked) {
        if walked.len() >= MAX_MEMBERS {
            cut_short = true;
            break;
        }
        walked.insert(at.id);
        if let Some(report) = ask_status(files, &at).await {
            let held = ask_list(files, &at).await;
            queue = report.successors.clone();
            members.push((report, held));
        }
    }
    members.sort_by_key(|(report, _)| report.node.id);
    let (files_json, files_cut_short) = merge_files(&members);
    let members_json: Vec<Value> = members
        .iter()
        .map(|(report, _)| {
            let mut value = status_json(report);
            value["angle"] = json!(angle_of(&report.node.id));
            value
        })
        .collect();
    json!({
        "self": me.node.id.to_hex(),
        "members": members_json,
        "files": files_json,
        "cut_short": cut_short,
        "files_cut_short": files_cut_short,
    })
}

/// The first entry of `queue` not walked yet (the entries before it are dropped).
fn first_new(queue: &mut Vec<PeerRef>, walked: &BTreeSet<Id>) -> Option<PeerRef> {
    while !queue.is_empty() {
        let next = queue.remove(0);
        if !walked.contains(&next.id) {
            return Some(next);
        }
    }
    None
}

async fn ask_status(files: &Files, at: &PeerRef) -> Option<StatusReport> {
    let access = files.access();
    let asked = access.node.request(at, WireRequest::Status);
    match tokio::time::timeout(ASK_TIMEOUT, asked).await {
        Ok(Ok(WireResponse::Status(report)))
            if check_status(&report).is_ok() && report.node.id == at.id =>
        {
            Some(report)
        }
        _ => None,
    }
}

/// What `at` holds (a page at a time, bounded); nothing when it does not answer.
async fn ask_list(files: &Files, at: &PeerRef) -> Vec<FileMeta> {
    let access = files.access();
    let mut all: Vec<FileMeta> = Vec::new();
    while all.len() < MAX_FILES {
        let after = all.last().map(|m| m.key);
        let asked = access.file_request(at, FileRequest::List { after });
        match tokio::time::timeout(ASK_TIMEOUT, asked).await {
            Ok(Ok(FileResponse::List { files, more })) => {
                let forward = list_page_moves_on(&files, after);
                all.extend(files);
                if !more || !forward {
                    break;
                }
            }
            _ => break,
        }
    }
    all
}

/// One entry per key: the owner's version (or any holder's when no owner answered), with the
/// members holding that same version as its copies.
fn merge_files(members: &[(StatusReport, Vec<FileMeta>)]) -> (Vec<Value>, bool) {
    let mut by_key: BTreeMap<Id, Vec<(&PeerRef, &FileMeta)>> = BTreeMap::new();
    for (report, held) in members {
        for meta in held {
            by_key
                .entry(meta.key)
                .or_default()
                .push((&report.node, meta));
        }
    }
    let cut_short = by_key.len() > MAX_FILES;
    let files = by_key
        .values()
        .take(MAX_FILES)
        .map(|holders| {
            let (owner, meta) = holders
                .iter()
                .find(|(_, m)| m.role == Role::Owner)
                .unwrap_or(&holders[0]);
            let copies: Vec<String> = holders
                .iter()
                .filter(|(_, m)| m.hash == meta.hash)
                .map(|(node, _)| node.id.to_hex())
                .collect();
            json!({
                "name": meta.name,
                "key": meta.key.to_hex(),
                "angle": angle_of(&meta.key),
                "size": meta.size,
                "hash": hash_hex(&meta.hash),
                "owner": owner.id.to_hex(),
                "owner_peer_id": owner.addr.peer_id.to_string(),
                "owner_confirmed": meta.role == Role::Owner,
                "uploader": meta.uploader,
                "copies": copies.len(),
                "holders": copies,
            })
        })
        .collect();
    (files, cut_short)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn angles_go_clockwise_from_the_top() {
        let mut id = Id([0u8; 20]);
        assert_eq!(angle_of(&id), 0.0);
        id.0[0] = 0x40;
        assert_eq!(angle_of(&id), 90.0);
        id.0[0] = 0x80;
        assert_eq!(angle_of(&id), 180.0);
        let top = Id([0xff; 20]);
        assert!(angle_of(&top) < 360.0 && angle_of(&top) > 359.99);
    }
}
