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

use super::oracle_memory::{Scratch, NONE};
use super::world::{Addr, Sim};

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
                self.scratch.rank[addr.0 as usize] = k as u32;
            }
            self.scratch.ring = ring.iter().map(|a| a.0).collect();
            self.scratch.bad_ranks.clear();
            for addr in ring {
                self.scratch.in_bad[addr.0 as usize] = false;
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
        if self.scratch.bad_ranks.is_empty() {
            // Every member points at the next member by id: one ring, in order, holding all.
            return Ok(());
        }
        if self.scratch.cross_check {
            let (full, short) = (self.check_ring(), self.check_ring_between_bad());
            if full.is_ok() != short.is_ok() {
                return Err(format!(
                    "oracle walks disagree: full {full:?}, short {short:?}"
                ));
            }
            return full;
        }
        // Few wrong successors (the usual case while a big ring repairs itself): walk between
        // them only. Many (a ring being built): one pass over everyone is cheaper.
        if self.scratch.bad_ranks.len() * 8 < n {
            self.check_ring_between_bad()
        } else {
            self.check_ring()
        }
    }

    /// Records a member's successor, keeping the set of members whose successor is not the
    /// ideal one (while it is empty, the ring walk can be skipped).
    fn set_succ(&mut self, addr: Addr, succ: u32) {
        let i = addr.0 as usize;
        let s = &mut self.scratch;
        s.succ[i] = succ;
        // What it should be: the next member by id.
        let bad = succ != s.ring[(s.rank[i] as usize + 1) % s.ring.len()];
        if bad != s.in_bad[i] {
            s.in_bad[i] = bad;
            if bad {
                s.bad_ranks.insert(s.rank[i]);
            } else {
                s.bad_ranks.remove(&s.rank[i]);
            }
        }
    }

    /// The same verdict as [`Sim::check_ring`] in O(b log b) for b wrong successors. Between
    /// two of them every member points at the next member by id, so from a wrong member's
    /// successor the walk runs straight (in id order) to the first wrong member at or after
    /// it: each such stretch is one edge here, with its length and whether it passes the
    /// largest id. Every cycle goes through a wrong member (a cycle of right ones only would be
    /// the whole ring, with nobody wrong), so counting cycles and wraps on these edges counts
    /// them on the members.
    fn check_ring_between_bad(&mut self) -> Result<(), String> {
        let bad: Vec<u32> = self.scratch.bad_ranks.iter().copied().collect();
        let ring = &self.scratch.ring;
        self.each_has_a_successor(bad.iter().map(|&b| ring[b as usize]))?;
        let Scratch {
            succ,
            color,
            rank,
            ring,
            bad_ranks,
            ..
        } = &mut self.scratch;
        let n = ring.len() as u32;
        let first_bad = bad[0];
        // From wrong member `b`: the next wrong member reached, members passed, and wraps.
        let step = |b: u32| -> (u32, u32, u32) {
            let s = rank[succ[ring[b as usize] as usize] as usize];
            let c = bad_ranks.range(s..).next().copied().unwrap_or(first_bad);
            let wraps = u32::from(s <= b) + u32::from(c < s);
            (c, 1 + (c + n - s) % n, wraps)
        };
        one_ring_once(&bad, color, |b| ring[b as usize] as usize, step, n)
    }

    /// Every one of these members has a live member in its successor list.
    fn each_has_a_successor(&self, addrs: impl Iterator<Item = u32>) -> Result<(), String> {
        for addr in addrs.map(|a| a as usize) {
            if self.scratch.succ[addr] == NONE {
                let list = self.nodes[addr]
                    .as_ref()
                    .map(|n| ids(n.core.successors()))
                    .unwrap_or_default();
                return Err(format!(
                    "member {:?} has no live member in its successor list {list:?}",
                    self.scratch.ids[addr]
                ));
            }
        }
        Ok(())
    }

    fn check_ring(&mut self) -> Result<(), String> {
        self.each_has_a_successor(self.member_list.iter().map(|a| a.0))?;
        let Scratch {
            succ,
            ids: id_of,
            color,
            ..
        } = &mut self.scratch;
        let members: Vec<u32> = self.member_list.iter().map(|a| a.0).collect();
        let step = |x: u32| {
            let y = succ[x as usize];
            (y, 1, u32::from(id_of[y as usize] <= id_of[x as usize]))
        };
        one_ring_once(&members, color, |x| x as usize, step, members.len() as u32)
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

/// Following `step` from the `starts` (all members, or the ones with a wrong successor) must
/// lead into exactly one cycle, and that cycle must pass the largest id exactly once: one ring,
/// in id order. `step(x)` is the node reached, the members passed and the wraps on the way;
/// `slot(x)` is x's place in `color`.
fn one_ring_once(
    starts: &[u32],
    color: &mut [u8],
    slot: impl Fn(u32) -> usize,
    step: impl Fn(u32) -> (u32, u32, u32),
    members: u32,
) -> Result<(), String> {
    for &x in starts {
        color[slot(x)] = 0;
    }
    // Following steps is a function on the starts: count its cycles (white, grey, black).
    let mut cycles = 0;
    let mut on_cycle = starts[0];
    for &start in starts {
        if color[slot(start)] != 0 {
            continue;
        }
        let mut x = start;
        while color[slot(x)] == 0 {
            color[slot(x)] = 1;
            x = step(x).0;
        }
        if color[slot(x)] == 1 {
            cycles += 1;
            on_cycle = x;
        }
        let mut y = start;
        while color[slot(y)] == 1 {
            color[slot(y)] = 2;
            y = step(y).0;
        }
    }
    if cycles != 1 {
        return Err(format!("{cycles} rings among {members} members"));
    }
    let (mut wraps, mut len) = (0, 0);
    let mut x = on_cycle;
    loop {
        let (next, passed, wrapped) = step(x);
        wraps += wrapped;
        len += passed;
        x = next;
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

fn ids(list: &[NodeRef<Addr>]) -> Vec<Id> {
    list.iter().map(|n| n.id).collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::scenario;
    use super::super::world::{NetConfig, SimConfig};
    use super::*;

    /// A settled ring of `n` with the oracle cross-checking its two ring walks at every event.
    fn cross_checked_ring(seed: u64, n: usize, r: usize) -> Sim {
        let mut sim = Sim::new(SimConfig::new(seed, r));
        sim.scratch.cross_check = true;
        scenario::grow(&mut sim, n, 0.5, Duration::from_secs(300));
        assert!(scenario::settle(&mut sim, Duration::from_secs(300)).is_some());
        sim
    }

    /// Points `addr`'s successor list at `to` and runs the oracle at once.
    fn point(sim: &mut Sim, addr: Addr, to: Addr) -> Result<(), String> {
        let target = sim.node(to).expect("live").me().clone();
        if let Some(node) = sim.nodes[addr.0 as usize].as_mut() {
            node.core.set_successors_for_test(vec![target]);
        }
        sim.touched.push(addr);
        sim.check_running()
    }

    #[test]
    fn the_short_ring_walk_agrees_with_the_full_one_through_churn_and_loss() {
        let mut sim = cross_checked_ring(7, 120, 3);
        sim.set_net(NetConfig {
            loss: 0.05,
            reorder: 0.05,
            ..NetConfig::default()
        });
        scenario::random_run(&mut sim, 60_000, 6.0);
        assert!(sim.counters().checks > 60_000);
        let disagreements: Vec<&String> = sim
            .violations()
            .iter()
            .filter(|v| v.contains("disagree"))
            .collect();
        assert!(disagreements.is_empty(), "{disagreements:#?}");
    }

    #[test]
    fn both_ring_walks_catch_a_split_and_a_ring_out_of_order() {
        let mut sim = cross_checked_ring(3, 40, 3);
        let m: Vec<Addr> = sim.members.values().copied().collect();
        // 10 back to 5 closes a small ring; everyone else leads into it (appendages: allowed).
        point(&mut sim, m[10], m[5]).unwrap();
        // 30 back to 20 closes a second one: 11..=19 lead there, the rest to the first.
        let split = point(&mut sim, m[30], m[20]);
        assert!(
            split.as_ref().is_err_and(|e| e.contains("2 rings")),
            "{split:?}"
        );
        point(&mut sim, m[10], m[11]).unwrap();
        point(&mut sim, m[30], m[31]).unwrap();
        // 5 → 15 → 10 → 20 → 5: one ring, but it goes round the circle twice.
        point(&mut sim, m[5], m[15]).unwrap();
        let _ = point(&mut sim, m[15], m[10]);
        let _ = point(&mut sim, m[10], m[20]);
        let twice = point(&mut sim, m[20], m[5]);
        assert!(
            twice.as_ref().is_err_and(|e| e.contains("round 2 times")),
            "{twice:?}"
        );
        // Without cross-checking, few wrong successors take the short walk alone: same verdict.
        sim.scratch.cross_check = false;
        assert_eq!(sim.check_running(), twice);
    }
}
