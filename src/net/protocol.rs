//! The wire protocol `/chord-p2p/chord/1.0.0`: the core's messages carried in CBOR over libp2p
//! request-response, with the checks every message from the network must pass. `docs/PROTOCOL.md`
//! describes it for implementers in other languages.

use libp2p::{Multiaddr, PeerId, StreamProtocol};
use serde::{Deserialize, Serialize};

use crate::chord::{Id, NodeRef, Request, Response, M, MAX_LIST};
pub use crate::records::Removal;
use crate::records::{FileMeta, Hash, Tombstone};

pub const CHORD_PROTOCOL: StreamProtocol = StreamProtocol::new("/chord-p2p/chord/2.0.0");
/// Largest request accepted: Chord requests are small; anything bigger is hostile.
pub const MAX_REQUEST_BYTES: u64 = 64 * 1024;
/// Largest response accepted: a status report with 160 fingers fits with room to spare.
pub const MAX_RESPONSE_BYTES: u64 = 1024 * 1024;
/// Addresses kept per node reference.
pub const MAX_ADDRS: usize = 16;

/// How to reach a node: its libp2p identity and transport addresses (without `/p2p`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub peer_id: PeerId,
    pub addrs: Vec<Multiaddr>,
}

/// A ring member as the libp2p layer knows it.
pub type PeerRef = NodeRef<Contact>;

/// A node's ring id: SHA-1 of its peer id's bytes, so nobody picks their place on the ring.
pub fn node_id(peer: &PeerId) -> Id {
    Id::hash(&peer.to_bytes())
}

pub fn peer_ref(peer_id: PeerId, addrs: Vec<Multiaddr>) -> PeerRef {
    NodeRef {
        id: node_id(&peer_id),
        addr: Contact { peer_id, addrs },
    }
}

// Messages live briefly and one at a time; boxing the large variant buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum WireRequest {
    Chord(Request<Contact>),
    /// The node's whole routing state, for `status` and tests.
    Status,
    /// File bookkeeping; the bytes themselves travel over `/chord-p2p/transfer/1.0.0` streams.
    Files(FileRequest),
}

impl WireRequest {
    /// The request's kind, as metrics name it.
    pub fn kind(&self) -> &'static str {
        match self {
            WireRequest::Chord(Request::FindSuccessor { .. }) => "find_successor",
            WireRequest::Chord(Request::GetNeighbours) => "get_neighbours",
            WireRequest::Chord(Request::Notify { .. }) => "notify",
            WireRequest::Chord(Request::Ping) => "ping",
            WireRequest::Chord(Request::Leaving { .. }) => "leaving",
            WireRequest::Status => "status",
            WireRequest::Files(FileRequest::List { .. }) => "list",
            WireRequest::Files(FileRequest::Remove { .. }) => "remove",
            WireRequest::Files(FileRequest::Drop { .. }) => "drop",
            WireRequest::Files(FileRequest::Inventory { .. }) => "inventory",
            WireRequest::Files(FileRequest::Check { .. }) => "check",
            WireRequest::Files(FileRequest::Stat { .. }) => "stat",
            WireRequest::Files(FileRequest::Prove { .. }) => "prove",
        }
    }
}

/// Small file operations that fit in one request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum FileRequest {
    /// What does this node hold? Keys after `after` (all from the start when `None`), at most
    /// [`MAX_LIST_FILES`] per answer.
    List { after: Option<Id> },
    /// Delete every copy of a file. Only its uploader may ask, and only its owner acts on it.
    Remove { removal: Removal },
    /// A removal with the version it removed, passed on by the node that had it: to replica
    /// holders after a `Remove`, and to a key's new owner with the key.
    Drop { tombstone: Tombstone },
    /// An owner tells a successor which files it should hold.
    Inventory { entries: Vec<InventoryEntry> },
    /// "The copy of this key you sent me did not match its hash": re-read it now.
    Check { key: Id },
    /// Which version of this key do you hold, and do you know of its removal?
    Stat { key: Id },
    /// Prove you hold the bytes of your version of this key: a keyed hash over the range the
    /// nonce picks (see `replica::proof_range`).
    Prove {
        key: Id,
        #[serde(with = "crate::records::bytes")]
        nonce: [u8; 32],
    },
}

/// One file an owner expects a replica holder to keep.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryEntry {
    pub key: Id,
    #[serde(with = "crate::records::bytes")]
    pub hash: Hash,
    /// When the uploader put this version (Unix ms): a removal after it wins.
    pub created: u64,
    /// Who put it: only that uploader's removal counts against it.
    pub uploader: String,
}

// One answer at a time; boxing the status report buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum WireResponse {
    Chord(Response<Contact>),
    Status(StatusReport),
    /// The request was understood but refused; the text says why.
    Error(String),
    Files(FileResponse),
}

// One answer at a time; boxing the larger variants buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum FileResponse {
    /// Files in key order; `more` when the list goes on after the last one.
    List { files: Vec<FileMeta>, more: bool },
    /// How many copies were deleted.
    Removed { copies: u32 },
    /// Whether this node held a copy (and deleted it).
    Dropped { held: bool },
    /// Whether the copy matched its hash when re-read.
    Checked { good: bool },
    /// Of an inventory: keys this node lacks (or holds in an older version), and the signed
    /// removals of entries it knows were removed by their uploader.
    Inventory {
        missing: Vec<Id>,
        removed: Vec<Tombstone>,
    },
    /// What this node holds under the key, and the uploaders' removals it knows of.
    Stat {
        held: Option<FileMeta>,
        removed: Vec<Tombstone>,
    },
    /// The version held and the proof over its bytes (absent when not held), and whether the
    /// node keeps the copy as one of the key's holders (it owns the key, or the owner confirmed
    /// the copy lately); a surplus copy does not vouch for the key.
    Proof {
        held: Option<FileMeta>,
        #[serde(with = "crate::records::opt_bytes")]
        proof: Option<Hash>,
        keeps: bool,
    },
}

/// Whether a `List` answer to a request for keys after `after` moves forward in key order:
/// a walker stops at a page that does not, so a broken or hostile peer cannot loop it.
pub fn list_page_moves_on(files: &[FileMeta], after: Option<Id>) -> bool {
    match (files.last(), after) {
        (Some(last), Some(after)) => last.key > after,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Most inventory entries one request carries (well inside the request size limit).
pub const MAX_INVENTORY: usize = 128;
/// Most files one `List` answer carries (names are ≤ 1 KiB: well inside the response limit).
pub const MAX_LIST_FILES: usize = 512;
/// Most tombstones one answer carries per key.
pub const MAX_TOMBSTONES: usize = 8;

/// A node's routing state. `fingers[i]` is successor(id + 2^i) as the node knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub node: PeerRef,
    pub predecessor: Option<PeerRef>,
    /// Never empty: a node alone lists itself.
    pub successors: Vec<PeerRef>,
    pub fingers: Vec<Option<PeerRef>>,
    /// Whether peers outside can dial this node, as AutoNAT found.
    #[serde(default)]
    pub reachability: Reachability,
    /// The node's open connections: who it reaches directly and who through a relay.
    #[serde(default)]
    pub connections: Vec<ConnectionInfo>,
    /// What the node stores, against its limit (absent for nodes without files).
    #[serde(default)]
    pub storage: Option<StorageReport>,
    /// Where the node keeps its identity and files (absent when it keeps nothing); like
    /// `connections`, shown only to the node's own user.
    #[serde(default)]
    pub data_dir: Option<String>,
}

/// Bytes stored (files, tombstones, transfers under way), the limit, and the files held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageReport {
    pub used: u64,
    pub limit: Option<u64>,
    pub files: u64,
}

/// What AutoNAT concluded: can other peers dial this node?
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reachability {
    /// Not known yet (or no peer could test it).
    #[default]
    Unknown,
    /// Peers dialed back and got through.
    Public,
    /// Peers tried to dial back and could not: behind a NAT or firewall.
    Private,
}

impl Reachability {
    pub fn as_str(self) -> &'static str {
        match self {
            Reachability::Unknown => "unknown",
            Reachability::Public => "public",
            Reachability::Private => "private",
        }
    }
}

/// One open connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionInfo {
    pub peer_id: PeerId,
    /// The remote address (for a relayed connection, the circuit through the relay).
    pub addr: Multiaddr,
    pub relayed: bool,
}

/// Most connections a status report lists.
pub const MAX_CONNECTIONS: usize = 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("node reference with id {0} does not match its peer id")]
    ForgedId(Id),
    #[error("message lists more than {MAX_LIST} nodes or {MAX_ADDRS} addresses for one node")]
    TooLong,
    #[error("message speaks for a peer other than its sender")]
    WrongSender,
}

fn check_refs<'a>(refs: impl IntoIterator<Item = &'a PeerRef>) -> Result<(), ProtocolError> {
    let mut count = 0;
    for r in refs {
        count += 1;
        if count > MAX_LIST + 2 || r.addr.addrs.len() > MAX_ADDRS {
            return Err(ProtocolError::TooLong);
        }
        if r.id != node_id(&r.addr.peer_id) {
            return Err(ProtocolError::ForgedId(r.id));
        }
    }
    Ok(())
}

/// Checks a request that `from` sent: ids match peer ids, lists are bounded, and a node that
/// notifies or leaves speaks only for itself.
pub fn check_request(from: &PeerId, request: &Request<Contact>) -> Result<(), ProtocolError> {
    check_refs(request.node_refs())?;
    match request {
        Request::Notify { node } | Request::Leaving { node, .. } if node.addr.peer_id != *from => {
            Err(ProtocolError::WrongSender)
        }
        _ => Ok(()),
    }
}

pub fn check_response(response: &Response<Contact>) -> Result<(), ProtocolError> {
    check_refs(response.node_refs())
}

pub fn check_status(report: &StatusReport) -> Result<(), ProtocolError> {
    if report.fingers.len() > M || report.connections.len() > MAX_CONNECTIONS {
        return Err(ProtocolError::TooLong);
    }
    check_refs(std::iter::once(&report.node).chain(&report.predecessor))?;
    check_refs(&report.successors)?;
    // Fingers repeat a few nodes many times; check them one by one.
    for finger in report.fingers.iter().flatten() {
        check_refs([finger])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chord::LookupStep;

    fn cbor<T: Serialize>(value: &T) -> Vec<u8> {
        let mut out = Vec::new();
        cbor4ii::serde::to_writer(&mut out, value).unwrap();
        out
    }

    #[test]
    fn ids_travel_as_20_byte_strings() {
        let node = peer_ref(
            PeerId::random(),
            vec!["/ip4/127.0.0.1/udp/1/quic-v1".parse().unwrap()],
        );
        let bytes = cbor(&WireResponse::Chord(Response::Step(LookupStep::Found {
            owner: node.clone(),
            backups: vec![],
        })));
        // A CBOR byte string of length 20 is the single head byte 0x54 (major type 2, length 20).
        let mut expected = vec![0x54];
        expected.extend_from_slice(&node.id.0);
        assert!(
            bytes.windows(21).any(|w| w == expected),
            "id not sent as 20 raw bytes"
        );
        let back: WireResponse = cbor4ii::serde::from_slice(&bytes).unwrap();
        match back {
            WireResponse::Chord(Response::Step(LookupStep::Found { owner, .. })) => {
                assert_eq!(owner, node)
            }
            other => panic!("round trip gave {other:?}"),
        }
    }

    #[test]
    fn forged_ids_and_impostors_are_refused() {
        let honest = peer_ref(PeerId::random(), vec![]);
        let mut forged = honest.clone();
        forged.id = Id::hash(b"elsewhere");
        let sender = honest.addr.peer_id;
        assert!(check_request(
            &sender,
            &Request::Notify {
                node: honest.clone()
            }
        )
        .is_ok());
        assert_eq!(
            check_request(&sender, &Request::Notify { node: forged }),
            Err(ProtocolError::ForgedId(Id::hash(b"elsewhere")))
        );
        let other = PeerId::random();
        assert_eq!(
            check_request(&other, &Request::Notify { node: honest }),
            Err(ProtocolError::WrongSender)
        );
    }
}
