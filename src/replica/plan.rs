//! A repair round as a sequence of decisions, each a pure function of what the driver has
//! gathered: which copies to promote, hand off, replicate and settle ([`plan_round`]); what an
//! inventory answer asks for ([`after_inventory`]); how to settle an unconfirmed copy
//! ([`settle`], [`after_owner_stat`], [`after_challenge`]). The libp2p node (`files::repair`) and
//! the simulator (`sim::files`) run the same sequence, each with its own messages.

use crate::chord::Id;
use crate::records::{FileMeta, Held, Role, Tombstone};

use super::{may_drop_surplus, owns, responsible, same_version, Said, Shown};

/// What a node knows of one copy it holds, for planning a round.
#[derive(Clone, Copy, Debug)]
pub struct Copy {
    pub key: Id,
    /// Why the node holds it now.
    pub role: Role,
    /// Not confirmed by its owner for a while (or not since the node started).
    pub unconfirmed: bool,
    /// Its bytes were read and did not match: not served, not passed on.
    pub corrupt: bool,
}

/// A node's place on the ring, as its routing state shows it.
#[derive(Clone, Copy, Debug)]
pub struct Place {
    pub me: Id,
    pub predecessor: Option<Id>,
    pub alone: bool,
}

/// The work of one round, by key, each list in key order and at most `batch` long (the owned
/// list is not cut: the inventory sends it in pages).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoundPlan {
    /// Replicas whose key this node now owns.
    pub promote: Vec<Id>,
    /// Owned copies whose key now belongs to someone else.
    pub hand_off: Vec<Id>,
    /// Owned, good copies the replica holders should have.
    pub replicate: Vec<Id>,
    /// Replicas nobody confirmed lately: look up who should hold them.
    pub settle: Vec<Id>,
}

/// Plans a round over `copies` (in key order).
pub fn plan_round(place: Place, copies: impl IntoIterator<Item = Copy>, batch: usize) -> RoundPlan {
    let mut plan = RoundPlan::default();
    for copy in copies {
        let key = copy.key;
        let mine = owns(&key, &place.me, place.predecessor.as_ref(), place.alone);
        let role = if mine && copy.role == Role::Replica {
            plan.promote.push(key);
            Role::Owner
        } else {
            copy.role
        };
        match role {
            Role::Owner if !mine && place.predecessor.is_some() => {
                if plan.hand_off.len() < batch {
                    plan.hand_off.push(key);
                }
            }
            Role::Owner => {
                if !copy.corrupt {
                    plan.replicate.push(key);
                }
            }
            Role::Replica => {
                if copy.unconfirmed && plan.settle.len() < batch {
                    plan.settle.push(key);
                }
            }
        }
    }
    plan
}

/// What a replica holder's inventory answer asks of the owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InventoryStep {
    /// The uploader removed this copy (the tombstone passed its checks): keep the proof and
    /// drop the copy.
    Apply(Box<Tombstone>),
    /// The holder lacks this file: push it.
    Push(Id),
}

/// The steps an inventory answer calls for, given the entries sent (`sent`), the keys the
/// holder says it lacks, and the tombstones it sent that passed their checks.
pub fn after_inventory(
    sent: &[Held],
    missing: &[Id],
    valid_removed: Vec<Tombstone>,
) -> Vec<InventoryStep> {
    let mut steps: Vec<InventoryStep> = valid_removed
        .into_iter()
        .filter(|t| sent.iter().any(|m| t.removal.removes_held(m)))
        .map(|t| InventoryStep::Apply(Box::new(t)))
        .collect();
    steps.extend(
        sent.iter()
            .filter(|m| missing.contains(&m.key))
            .map(|m| InventoryStep::Push(m.key)),
    );
    steps
}

/// How to settle an unconfirmed replica, once a lookup named the key's owner and backups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settle<P> {
    /// This node is the owner now.
    BecomeOwner,
    /// This node is one of the R that should hold the key, and its owner has not confirmed
    /// the copy: ask the owner (`Stat`: a signed removal, or whether it lacks the file), and
    /// challenge the other holders, giving a copy to any that cannot prove it holds one. An
    /// owner that lies is not trusted to place the copies.
    Holder { owner: P, others: Vec<P> },
    /// This node need not hold the key: challenge every responsible node before dropping.
    Challenge { owner: P, responsible: Vec<P> },
}

pub fn settle<P: Clone>(
    me: Id,
    owner: P,
    backups: &[P],
    replicas: usize,
    id: impl Fn(&P) -> Id,
) -> Settle<P> {
    if id(&owner) == me {
        return Settle::BecomeOwner;
    }
    let holders = responsible(owner.clone(), backups, replicas, &id);
    if holders.iter().any(|p| id(p) == me) {
        // The owner answers `Stat` (and gets the copy if it lacks it); the rest are challenged.
        let owner_id = id(&owner);
        let others = holders
            .into_iter()
            .filter(|p| id(p) != me && id(p) != owner_id)
            .collect();
        Settle::Holder { owner, others }
    } else {
        Settle::Challenge {
            owner,
            responsible: holders,
        }
    }
}

/// What the owner's (verified) `Stat` answer means for this node's copy `mine`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnerCheck {
    /// The uploader removed it: keep the proof, drop the copy.
    Apply(Box<Tombstone>),
    /// The owner has this version or a newer one of the same uploader.
    Fine,
    /// The owner lacks it (or holds something it should not): give it the copy.
    PushToOwner,
}

pub fn after_owner_stat(mine: &FileMeta, said: &Said) -> OwnerCheck {
    match said {
        Said::Removed(stone) if stone.removal.removes(mine) => {
            OwnerCheck::Apply(Box::new(stone.clone()))
        }
        Said::Holds(theirs)
            if same_version(theirs, mine)
                || (theirs.uploader == mine.uploader && theirs.created > mine.created) =>
        {
            OwnerCheck::Fine
        }
        _ => OwnerCheck::PushToOwner,
    }
}

/// What the challenge of the responsible nodes decided for a surplus copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Surplus<P> {
    /// Every responsible node proved it holds the file: the copy may go.
    Drop,
    /// Keep the copy and give it to these nodes (the owner as owner, others as replicas).
    Restore(Vec<(P, Role)>),
}

/// After a challenge of `responsible` (`shown` in the same order): a surplus copy may go when
/// all proved; otherwise — and always for a copy this node holds as one of them (`surplus`
/// false) — the copy goes to those that could not prove.
pub fn after_challenge<P: Clone>(
    responsible: &[P],
    shown: &[Shown],
    owner: Id,
    replicas: usize,
    surplus: bool,
    id: impl Fn(&P) -> Id,
) -> Surplus<P> {
    if surplus && may_drop_surplus(shown, replicas) {
        return Surplus::Drop;
    }
    Surplus::Restore(
        responsible
            .iter()
            .zip(shown)
            .filter(|(_, s)| **s == Shown::Not)
            .map(|(p, _)| {
                let role = if id(p) == owner {
                    Role::Owner
                } else {
                    Role::Replica
                };
                (p.clone(), role)
            })
            .collect(),
    )
}

/// Where a leaving node's copies go, so a leave never lowers a file's copy count: every copy
/// goes to the first successor (it owns the leaver's keys next; one that already holds a
/// copy answers at the header, and a liar that only claims to hold it gets it anyway), and a
/// copy the first successor said it holds also goes to the next successor that lacks it, by
/// their inventory answers (`lacks[i]`: the keys successor `i` said it lacks; `None`: no
/// answer, taken as lacking nothing). Returns (successor index, key, role) pushes, in `held`
/// order.
pub fn hand_over(held: &[Held], lacks: &[Option<Vec<Id>>]) -> Vec<(usize, Id, Role)> {
    let lacking = |i: usize, key: &Id| match lacks.get(i) {
        Some(Some(keys)) => keys.contains(key),
        _ => false,
    };
    let mut pushes = Vec::new();
    for meta in held {
        let key = meta.key;
        pushes.push((0, key, meta.role));
        let first_lacks = lacks.first().is_some_and(Option::is_none) || lacking(0, &key);
        if !first_lacks {
            if let Some(i) = (1..lacks.len()).find(|&i| lacking(i, &key)) {
                pushes.push((i, key, Role::Replica));
            }
        }
    }
    pushes
}
