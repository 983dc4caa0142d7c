//! What the simulator keeps about files (the logic that drives the replica core is in
//! `sim::files`): each node's copies and pending repair steps, the file messages on the wire,
//! and the ground truth the file oracle checks against.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use crate::chord::{Id, LookupId, NodeRef};
use crate::records::{self, FileMeta, Role, Tombstone};
use crate::replica::Shown;

use super::addr::Addr;

/// Files in the simulation.
#[derive(Clone, Debug)]
pub struct FilesConfig {
    /// Copies of each file: the owner's and R-1 replicas on its next successors.
    pub replicas: usize,
    /// How often each node runs a repair round (virtual time; the first one is jittered).
    pub repair_interval: Duration,
    /// A replica unconfirmed for this many rounds is settled (looked up, checked).
    pub stale_rounds: u32,
    /// Most hand-offs and settles one round starts.
    pub batch: usize,
}

impl Default for FilesConfig {
    fn default() -> Self {
        FilesConfig {
            replicas: 3,
            repair_interval: Duration::from_secs(5),
            stale_rounds: 5,
            batch: 64,
        }
    }
}

/// One copy a node holds.
#[derive(Clone, Debug)]
pub(super) struct Held {
    pub meta: FileMeta,
    /// When its owner last confirmed it (virtual ns), `None` since the node came.
    pub confirmed: Option<u64>,
    /// When this node last settled it itself (not the owner's word).
    pub checked: Option<u64>,
}

/// A lookup the file layer started, and why.
#[derive(Clone, Copy, Debug)]
pub(super) enum Looking {
    HandOff(Id),
    Settle(Id),
}

/// A challenge of the responsible nodes (of the others, for a holder), collecting proofs.
#[derive(Clone, Debug)]
pub(super) struct Challenge {
    /// The copy is surplus here (it may go if all prove), not one this node holds for the key.
    pub surplus: bool,
    pub nonce: u64,
    pub owner: Id,
    pub responsible: Vec<NodeRef<Addr>>,
    pub shown: Vec<Option<Shown>>,
}

/// A node's file layer.
#[derive(Clone, Debug, Default)]
pub(super) struct NodeFiles {
    pub held: BTreeMap<Id, Held>,
    pub tombstones: BTreeMap<Id, Tombstone>,
    /// Answers everything with lies (hostile mode).
    pub hostile: bool,
    pub looking: BTreeMap<LookupId, Looking>,
    pub challenges: BTreeMap<Id, Challenge>,
    /// Inventories sent and not answered yet, by holder: what they listed.
    pub inventories: BTreeMap<Addr, Vec<records::Held>>,
    /// Hand-offs sent, by key: to whom, and when (virtual ns; a lost answer expires).
    pub handing: BTreeMap<Id, (Addr, u64)>,
    /// An informed leave under way: the successors asked, and what each said it lacks.
    pub leaving: Option<Leaving>,
    /// A round after a change of neighbours is already queued.
    pub woken: bool,
}

#[derive(Clone, Debug)]
pub(super) struct Leaving {
    pub successors: Vec<Addr>,
    pub lacks: Vec<Option<Vec<Id>>>,
}

/// File messages between simulated nodes. A `Push` stands for a whole transfer.
#[derive(Clone, Debug)]
pub(super) enum FileMsg {
    Inventory {
        entries: Vec<FileMeta>,
    },
    InventoryReply {
        missing: Vec<Id>,
        removed: Vec<Tombstone>,
    },
    Push {
        meta: FileMeta,
        role: Role,
    },
    PushReply {
        key: Id,
        stored: bool,
    },
    Stat {
        key: Id,
    },
    StatReply {
        key: Id,
        held: Option<FileMeta>,
        removed: Option<Box<Tombstone>>,
    },
    Prove {
        key: Id,
        nonce: u64,
    },
    ProofReply {
        key: Id,
        held: Option<FileMeta>,
        proof: Option<u64>,
        keeps: bool,
    },
}

/// What the file oracle and the reports need.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileStats {
    pub files: u64,
    /// Files with no live copy left, where fewer than R of their holders crashed within one
    /// repair interval: the rule was broken (must stay 0).
    pub lost: u64,
    /// Files with no live copy left after R or more of their holders failed (crashed within
    /// one repair interval, or hostile): beyond what R copies can survive.
    pub lost_excused: u64,
    /// File messages sent, and pushes (whole copies) among them.
    pub messages: u64,
    pub pushes: u64,
    /// Copies dropped as surplus (every responsible node proved it held the file).
    pub surplus_dropped: u64,
    /// Files whose every honest copy sat on members that turned hostile: withheld by an
    /// eclipse of their key, which R copies cannot prevent.
    pub eclipsed: u64,
}

/// The ground truth of the file layer.
#[derive(Clone, Debug, Default)]
pub(super) struct FilesWorld {
    pub config: FilesConfig,
    /// Every file put, by key.
    pub files: BTreeMap<Id, FileMeta>,
    /// Live honest copies of each file.
    pub copies: BTreeMap<Id, u32>,
    /// Files with no live copy (already counted as lost).
    pub gone: BTreeSet<Id>,
    /// Per file, when nodes that held it crashed (virtual ns), the last few.
    pub crashed_holders: BTreeMap<Id, VecDeque<u64>>,
    pub stats: FileStats,
}
