//! The oracle's memory between checks (its checks are in `oracle`): kept in the world, so a
//! check at 10^4 nodes need not rebuild it.

use std::collections::BTreeSet;

use crate::chord::Id;

/// The oracle's memory between checks, so a check at 10^4 nodes costs one pass over small
/// integer arrays: each member's successor is recomputed only when that member received input,
/// or for everyone after a membership change.
#[derive(Default)]
pub struct Scratch {
    /// By address: the address of the member's successor, [`NONE`] if it has no live one.
    pub(super) succ: Vec<u32>,
    /// By address: the node's id, so the ring walk need not touch the nodes.
    pub(super) ids: Vec<Id>,
    pub(super) color: Vec<u8>,
    /// By address: the member's position in id order (valid for current members).
    pub(super) rank: Vec<u32>,
    /// Members' addresses in id order.
    pub(super) ring: Vec<u32>,
    /// Ranks of the members whose successor is not the next member by id: the only places
    /// the ring can go wrong.
    pub(super) bad_ranks: BTreeSet<u32>,
    /// By address: whether the member is in `bad_ranks` (most updates change nothing, and
    /// this answers them without touching the set).
    pub(super) in_bad: Vec<bool>,
    /// Check with both ring walks and fail if they disagree (tests of the oracle itself).
    pub(super) cross_check: bool,
    /// Membership changed since the last check: recompute every successor.
    pub(super) stale: bool,
}

pub(super) const NONE: u32 = u32::MAX;

impl Scratch {
    /// A new node was created at the next address.
    pub(super) fn spawned(&mut self, id: Id) {
        self.ids.push(id);
        self.succ.push(NONE);
        self.color.push(0);
        self.rank.push(NONE);
        self.in_bad.push(false);
    }
}
