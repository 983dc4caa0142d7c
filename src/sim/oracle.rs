//! The oracle: what must hold while the ring runs, and what must hold once it has settled.
//!
//! While running (Zave's invariants, "How to make Chord correct", TSE 2017): a *member* is a
//! live node that founded the ring or completed a join. A member's *successor* is the first
//! live member in its successor list. Following successors from any member must lead into one
//! and the same cycle (the *ring*), and the ring must go round the identifier circle exactly once
//! in id order: no ring member lies between another and its successor. Members not on the ring
//! (*appendages*: a node that has just joined, or one whose predecessor wrongly thought it dead
//! after lost messages) are allowed, as in Zave's model; settling must absorb them. With more
//! members than r, every successor list must also run strictly clockwise from its owner: no self
//! entry, no duplicate, no entry out of order.
//!
//! Once activity stops: the state must be exactly the ideal one for the live members —
//! every predecessor, every successor list (the next r members) and every finger
//! (`finger[i] = successor(id + 2^i)`).

use crate::chord::{Id, NodeRef, M};

use super::world::{Addr, Sim};

/// The oracle's memory between checks, so a check at 10^4 nodes costs one pass over small
/// integer arrays: each member's successor is recomputed only when that member received input,
/// or for everyone after a membership change.
#[derive(Default)]
pub struct Scratch {
    /// By address: the address of the member's successor, [`NONE`] if it has no live one.
    succ: Vec<u32>,
    /// By address: the node's id, so the ring walk need not touch the nodes.
    ids: Vec<Id>,
    color: Vec<u8>,
    /// By address: the next member by id (what the successor should be).
    next: Vec<u32>,
    /// By address: whether this member is counted in `bad`.
    counted: Vec<bool>,
    /// How many members have a successor other than the next member by id.
    bad: usize,
    /// Membership changed since the last check: recompute every successor.
    pub(super) stale: bool,
}

const NONE: u32 = u32::MAX;

impl Scratch {
    /// A new node was created at the next address.
    pub(super) fn spawned(&mut self, id: Id) {
        self.ids.push(id);
        self.succ.push(NONE);
        self.color.push(0);
        self.next.push(NONE);
        self.counted.push(false);
    }
}

impl Sim {
    /// The member `n` refers to, if it is one (same address and same id).
    fn is_live_member(&self, n: &NodeRef<Addr>) -> bool {
        self.is_member(n.addr) && self.scratch.ids.get(n.addr.0 as usize) == Some(&n.id)
    }

    /// A member's successor: its first live member entry; itself when alone (empty list).
    fn effective_successor(&self, addr: Addr) -> u32 {
        let Some(node) = self.nodes.get(addr.0 as usize).and_then(Option::as_ref) else {
            return NONE;
        };
        let list = node.core.successors();
        if list.is_empty() {
            return addr.0;
        }
        list.iter()
            .find(|s| self.is_live_member(s))
            .map_or(NONE, |s| s.addr.0)
    }

    /// The invariants that must hold at every moment; the first one broken is described.
    pub fn check_running(&mut self) -> Result<(), String> {
        if self.scratch.stale {
            // Membership changed: every member's ideal next member may have changed too.
            let ring: Vec<Addr> = self.members.values().copied().collect();
            for (k, addr) in ring.iter().enumerate() {
                self.scratch.next[addr.0 as usize] = ring[(k + 1) % ring.len()].0;
            }
            self.scratch.bad = 0;
            for addr in ring {
                self.scratch.counted[addr.0 as usize] = false;
                let succ = self.effective_successor(addr);
                self.set_succ(addr, succ);
            }
            self.scratch.stale = false;
        } else {
            for i in 0..self.touched.len() {
                let addr = self.touched[i];
                if self.is_member(addr) {
                    let succ = self.effective_successor(addr);
                    self.set_succ(addr, succ);
                }
            }
        }
        let n = self.member_list.len();
        if n <= 1 {
            return Ok(());
        }
        if n > self.cfg.chord.successors {
            for &addr in &self.touched {
                let Some(node) = self.nodes.get(addr.0 as usize).and_then(Option::as_ref) else {
                    continue;
                };
                if !node.member {
                    continue;
                }
                let me = node.core.id();
                let mut last = Id::default();
                for s in node.core.successors() {
                    let d = me.distance_to(&s.id);
                    if d <= last {
                        return Err(format!(
                            "successor list of {me:?} is not strictly clockwise: {:?}",
                            ids(node.core.successors())
                        ));
                    }
                    last = d;
                }
            }
        }
        if self.scratch.bad == 0 {
            // Every member points at the next member by id: one ring, in order, holding all.
            return Ok(());
        }
        self.check_ring()
    }

    /// Records a member's successor, keeping count of members whose successor is not the
    /// ideal one (while none is, the full ring walk can be skipped).
    fn set_succ(&mut self, addr: Addr, succ: u32) {
        let i = addr.0 as usize;
        let s = &mut self.scratch;
        let was_bad = s.counted[i];
        let is_bad = succ != s.next[i];
        s.succ[i] = succ;
        s.counted[i] = is_bad;
        match (was_bad, is_bad) {
            (false, true) => s.bad += 1,
            (true, false) => s.bad -= 1,
            _ => {}
        }
    }

    fn check_ring(&mut self) -> Result<(), String> {
        let Scratch {
            succ,
            ids: id_of,
            color,
            ..
        } = &mut self.scratch;
        for &addr in &self.member_list {
            if succ[addr.0 as usize] == NONE {
                let list = self.nodes[addr.0 as usize]
                    .as_ref()
                    .map(|n| ids(n.core.successors()))
                    .unwrap_or_default();
                return Err(format!(
                    "member {:?} has no live member in its successor list {list:?}",
                    id_of[addr.0 as usize]
                ));
            }
            color[addr.0 as usize] = 0;
        }

        // Following successors is a function on members: count its cycles.
        let mut cycles = 0;
        let mut on_cycle = 0;
        for &start in &self.member_list {
            let start = start.0 as usize;
            if color[start] != 0 {
                continue;
            }
            let mut x = start;
            while color[x] == 0 {
                color[x] = 1;
                x = succ[x] as usize;
            }
            if color[x] == 1 {
                cycles += 1;
                on_cycle = x;
            }
            let mut y = start;
            while color[y] == 1 {
                color[y] = 2;
                y = succ[y] as usize;
            }
        }
        if cycles != 1 {
            return Err(format!(
                "{cycles} rings among {} members",
                self.member_list.len()
            ));
        }

        // One ring: it must go round exactly once in id order (one wrap from largest to smallest).
        let mut wraps = 0;
        let mut len = 0;
        let mut x = on_cycle;
        loop {
            let y = succ[x] as usize;
            if id_of[y] <= id_of[x] {
                wraps += 1;
            }
            len += 1;
            x = y;
            if x == on_cycle {
                break;
            }
        }
        if wraps != 1 {
            return Err(format!(
                "the ring of {len} members goes round {wraps} times: out of order"
            ));
        }
        Ok(())
    }

    /// How far the state is from the ideal one for the live members: the number of wrong
    /// predecessors, successor lists and fingers (each counts once), plus live nodes that are not
    /// members yet. The first few differences are described.
    pub fn exact_mismatches(&self, check_fingers: bool) -> (usize, Vec<String>) {
        let sorted: Vec<(Id, Addr)> = self.members.iter().map(|(i, a)| (*i, *a)).collect();
        let n = sorted.len();
        if n == 0 {
            return (
                usize::from(self.live_count() > 0),
                vec!["no members".into()],
            );
        }
        let r = self.cfg.chord.successors;
        let mut wrong = 0;
        let mut notes = Vec::new();
        // Described lazily: while settling, thousands of entries can be wrong at each check.
        let mut note = |wrong: &mut usize, describe: &dyn Fn() -> String| {
            *wrong += 1;
            if notes.len() < 5 {
                notes.push(describe());
            }
        };
        let owner = |key: &Id| -> Id {
            let i = sorted.partition_point(|(id, _)| id < key);
            sorted[i % n].0
        };
        for (addr, _) in self.nodes() {
            if !self.is_member(addr) {
                note(&mut wrong, &|| format!("{addr:?} is live but not a member"));
            }
        }
        for (k, (id, addr)) in sorted.iter().enumerate() {
            let Some(node) = self.node(*addr) else {
                continue;
            };
            let want_pred = (n > 1).then(|| sorted[(k + n - 1) % n].0);
            let pred = node.predecessor().map(|p| p.id);
            if pred != want_pred {
                note(&mut wrong, &|| {
                    format!("{id:?}: predecessor {pred:?}, want {want_pred:?}")
                });
            }
            let want: Vec<Id> = (1..=r.min(n - 1)).map(|j| sorted[(k + j) % n].0).collect();
            if !node
                .successors()
                .iter()
                .map(|s| s.id)
                .eq(want.iter().copied())
            {
                let have = ids(node.successors());
                note(&mut wrong, &|| {
                    format!("{id:?}: successors {have:?}, want {want:?}")
                });
            }
            if check_fingers {
                for i in 0..M {
                    let want = owner(&id.finger_start(i));
                    let have = node.fingers()[i].as_ref().map(|f| f.id);
                    if have != Some(want) {
                        note(&mut wrong, &|| {
                            format!("{id:?}: finger {i} is {have:?}, want {want:?}")
                        });
                        break;
                    }
                }
            }
        }
        (wrong, notes)
    }

    /// Ok if every predecessor, successor list and finger is exactly right.
    pub fn check_exact(&self) -> Result<(), String> {
        match self.exact_mismatches(true) {
            (0, _) => Ok(()),
            (wrong, notes) => Err(format!("{wrong} wrong: {}", notes.join("; "))),
        }
    }
}

fn ids(list: &[NodeRef<Addr>]) -> Vec<Id> {
    list.iter().map(|n| n.id).collect()
}
