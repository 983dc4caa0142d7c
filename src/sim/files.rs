//! Files in the simulator: every node runs the replica core's repair sequence
//! (`replica::plan`) over simulated messages, as `files::repair` does over libp2p, and the file
//! oracle checks after every event that no file loses its last copy while fewer than R of its
//! holders crashed within one repair interval.
//!
//! What is modelled: puts (a version placed at its owner and the owner's R−1 successors),
//! inventories, pushes (a whole transfer as one message), hand-offs, the settling of
//! unconfirmed replicas (lookup, owner `Stat`, proof challenges), informed leaves (every copy
//! pushed to the successor), crashes, loss and reordering, and hostile members that lie in every
//! answer. Signatures are modelled as a mark only the uploader's records carry (real ones cost
//! too much at 10^4 files); removals, the scrub and corrupt copies are not simulated.

use std::collections::VecDeque;

use rand::Rng;

use crate::chord::{Id, LookupError, LookupId, LookupResult, NodeRef};
use crate::records::{FileMeta, Role};
use crate::replica::plan::{after_challenge, hand_over, plan_round, settle, Copy, Settle, Surplus};
use crate::replica::Shown;

use super::file_books::SIGNED;
use super::files_state::{Challenge, FileMsg, FileStats, Leaving, Looking, NodeFiles};
use super::world::{Addr, Sim};

/// Who puts the simulated files.
const UPLOADER: &str = "uploader";

impl Sim {
    // ---- workload and results ----

    /// Puts a file of `size` bytes under `name` as its uploader would: at the key's owner and
    /// its R−1 successors among the live members. Returns false without members.
    pub fn put_file(&mut self, name: &str, size: u64) -> bool {
        let key = Id::hash(name.as_bytes());
        let meta = FileMeta {
            name: name.into(),
            key,
            size,
            hash: *blake3::hash(name.as_bytes()).as_bytes(),
            role: Role::Owner,
            uploader: UPLOADER.into(),
            created: self.now_ms(),
            signature: SIGNED.to_vec(),
        };
        let holders = self.responsible_members(&key);
        if holders.is_empty() {
            return false;
        }
        let Some(world) = self.files.as_mut() else {
            return false;
        };
        world.files.insert(key, meta.clone());
        world.stats.files += 1;
        for (i, addr) in holders.into_iter().enumerate() {
            let role = if i == 0 { Role::Owner } else { Role::Replica };
            self.store_copy(
                addr,
                FileMeta {
                    role,
                    ..meta.clone()
                },
            );
        }
        true
    }

    pub fn file_stats(&self) -> FileStats {
        self.files
            .as_ref()
            .map(|w| w.stats.clone())
            .unwrap_or_default()
    }

    /// Live honest copies per file: how many files have 0, 1, 2, … copies.
    pub fn copies_histogram(&self) -> std::collections::BTreeMap<u32, u64> {
        let mut out = std::collections::BTreeMap::new();
        if let Some(world) = &self.files {
            for key in world.files.keys() {
                *out.entry(world.copies.get(key).copied().unwrap_or(0))
                    .or_insert(0) += 1;
            }
        }
        out
    }

    /// Every file sits at exactly its R responsible members (owner and R−1 successors among
    /// the live members), with the right roles, and nowhere else. Hostile members count as
    /// holding what they should (they claim to). Returns the first misplaced file.
    pub fn files_in_place(&self) -> Result<(), String> {
        let Some(world) = &self.files else {
            return Ok(());
        };
        // Files lost beyond what R copies survive are reported elsewhere, not misplaced.
        for key in world.files.keys().filter(|k| !world.gone.contains(*k)) {
            let want = self.responsible_members(key);
            let mut got: Vec<Addr> = self
                .nodes()
                .filter(|(addr, _)| self.holds(*addr, key))
                .map(|(addr, _)| addr)
                .collect();
            got.sort();
            let mut expected: Vec<Addr> = want
                .iter()
                .copied()
                .filter(|a| !self.is_hostile(*a))
                .collect();
            expected.sort();
            if got != expected {
                return Err(format!(
                    "{}: held by {:?}, should be {:?}",
                    &key.to_hex()[..8],
                    got,
                    expected
                ));
            }
            if let Some(owner) = want.first().filter(|a| !self.is_hostile(**a)) {
                let role = self
                    .files_of(*owner)
                    .and_then(|f| f.held.get(key))
                    .map(|h| h.meta.role);
                if role != Some(Role::Owner) {
                    return Err(format!(
                        "{}: owner holds it as {role:?}",
                        &key.to_hex()[..8]
                    ));
                }
            }
        }
        Ok(())
    }

    /// Makes `count` adjacent members (by id, from a random one) hostile: they keep nothing
    /// and lie in every answer. Returns their addresses.
    pub fn make_hostile(&mut self, count: usize) -> Vec<Addr> {
        let Some(first) = self.random_member_addr() else {
            return Vec::new();
        };
        let Some(start) = self.node(first).map(|n| n.id()) else {
            return Vec::new();
        };
        let run: Vec<Addr> = self
            .members
            .range(start..)
            .chain(self.members.range(..start))
            .take(count)
            .map(|(_, a)| *a)
            .collect();
        for addr in &run {
            let keys: Vec<Id> = self
                .files_of(*addr)
                .map(|f| f.held.keys().copied().collect())
                .unwrap_or_default();
            for key in keys {
                if let Some(files) = self.files_of_mut(*addr) {
                    files.held.remove(&key);
                }
                self.count_copy(&key, -1, "an eclipse");
            }
            if let Some(files) = self.files_of_mut(*addr) {
                files.hostile = true;
            }
        }
        run
    }

    // ---- the repair round ----

    /// One repair round at `addr`, as `replica::plan` lays it out.
    /// `periodic`: the node's regular round (it schedules the next one); otherwise a round
    /// run at once because the node's neighbours changed, as the libp2p node's repair loop
    /// wakes on `ring_changed`.
    pub(super) fn files_round(&mut self, addr: Addr, periodic: bool) {
        let Some(cfg) = self.files.as_ref().map(|w| w.config.clone()) else {
            return;
        };
        if periodic {
            let next = self.now + cfg.repair_interval.as_nanos() as u64;
            self.schedule_repair(addr, next);
        } else if let Some(files) = self.files_of_mut(addr) {
            files.woken = false;
        }
        if self.is_hostile(addr) {
            return;
        }
        let Some((place, holders)) = self.place_of(addr, cfg.replicas) else {
            return;
        };
        let stale = (cfg.repair_interval * cfg.stale_rounds).as_nanos() as u64;
        let round = cfg.repair_interval.as_nanos() as u64;
        let now = self.now;
        let Some(files) = self.files_of(addr) else {
            return;
        };
        let copies = files.held.values().map(|h| Copy {
            key: h.meta.key,
            role: h.meta.role,
            // Unconfirmed for the stale period, it is settled every round until an owner
            // confirms it again (a lying owner never does).
            unconfirmed: h.confirmed.is_none_or(|t| now.saturating_sub(t) > stale)
                && h.checked.is_none_or(|t| now.saturating_sub(t) >= round),
            corrupt: false,
        });
        let plan = plan_round(place, copies, cfg.batch);
        let owned: Vec<FileMeta> = plan
            .replicate
            .iter()
            .filter_map(|k| files.held.get(k).map(|h| h.meta.clone()))
            .collect();
        let patience = 4 * self.config().chord.rpc_timeout.as_nanos() as u64;
        let busy = |key: &Id| {
            files
                .looking
                .values()
                .any(|l| matches!(l, Looking::HandOff(k) | Looking::Settle(k) if k == key))
                || files.challenges.contains_key(key)
                || files
                    .handing
                    .get(key)
                    .is_some_and(|(_, at)| now.saturating_sub(*at) < patience)
        };
        let hand_off: Vec<Id> = plan.hand_off.iter().filter(|k| !busy(k)).copied().collect();
        let settles: Vec<Id> = plan.settle.iter().filter(|k| !busy(k)).copied().collect();
        if let Some(files) = self.files_of_mut(addr) {
            for key in &plan.promote {
                if let Some(h) = files.held.get_mut(key) {
                    h.meta.role = Role::Owner;
                }
            }
        }
        if !owned.is_empty() {
            for holder in holders {
                if let Some(files) = self.files_of_mut(addr) {
                    let sent = owned.iter().map(FileMeta::held).collect();
                    files.inventories.insert(holder.addr, sent);
                }
                let entries = owned.clone();
                self.send_file(addr, holder.addr, FileMsg::Inventory { entries });
            }
        }
        for key in hand_off {
            self.files_lookup(addr, key, Looking::HandOff(key));
        }
        for key in settles {
            self.files_lookup(addr, key, Looking::Settle(key));
        }
    }

    /// A file-layer lookup finished at `addr`. Returns false if it was not one.
    pub(super) fn files_lookup_done(
        &mut self,
        addr: Addr,
        id: LookupId,
        result: &Result<LookupResult<Addr>, LookupError>,
    ) -> bool {
        let Some(looking) = self.files_of_mut(addr).and_then(|f| f.looking.remove(&id)) else {
            return false;
        };
        let Ok(found) = result else {
            return true;
        };
        let Some(me) = self.node(addr).map(|n| n.id()) else {
            return true;
        };
        let replicas = self.files_replicas();
        match looking {
            Looking::HandOff(key) => {
                if found.owner.id == me {
                    self.set_role(addr, &key, Role::Owner);
                } else if let Some(meta) = self.copy_at(addr, &key) {
                    let now = self.now;
                    if let Some(files) = self.files_of_mut(addr) {
                        files.handing.insert(key, (found.owner.addr, now));
                    }
                    let role = Role::Owner;
                    self.send_file(addr, found.owner.addr, FileMsg::Push { meta, role });
                }
            }
            Looking::Settle(key) => {
                match settle(me, found.owner.clone(), &found.backups, replicas, |p| p.id) {
                    Settle::BecomeOwner => self.set_role(addr, &key, Role::Owner),
                    Settle::Holder { owner, others } => {
                        self.send_file(addr, owner.addr, FileMsg::Stat { key });
                        self.challenge(addr, key, owner.id, others, false);
                    }
                    Settle::Challenge { owner, responsible } => {
                        self.challenge(addr, key, owner.id, responsible, true)
                    }
                }
                let now = self.now;
                if let Some(h) = self.files_of_mut(addr).and_then(|f| f.held.get_mut(&key)) {
                    h.checked = Some(now);
                }
            }
        }
        true
    }

    fn challenge(
        &mut self,
        addr: Addr,
        key: Id,
        owner: Id,
        responsible: Vec<NodeRef<Addr>>,
        surplus: bool,
    ) {
        let nonce: u64 = self.rng().gen();
        let targets: Vec<Addr> = responsible.iter().map(|p| p.addr).collect();
        let shown = vec![None; responsible.len()];
        let Some(files) = self.files_of_mut(addr) else {
            return;
        };
        files.challenges.insert(
            key,
            Challenge {
                surplus,
                nonce,
                owner,
                responsible,
                shown,
            },
        );
        for to in targets {
            self.send_file(addr, to, FileMsg::Prove { key, nonce });
        }
        let due = self.now + 2 * self.config().chord.rpc_timeout.as_nanos() as u64;
        self.schedule_challenge_due(addr, key, due);
    }

    /// The challenge of `key` at `addr` is decided: with every answer, or at its deadline.
    pub(super) fn finish_challenge(&mut self, addr: Addr, key: Id) {
        let replicas = self.files_replicas();
        let Some(challenge) = self
            .files_of_mut(addr)
            .and_then(|f| f.challenges.remove(&key))
        else {
            return;
        };
        let Some(meta) = self.copy_at(addr, &key) else {
            return;
        };
        let shown: Vec<Shown> = challenge
            .shown
            .iter()
            .map(|s| s.unwrap_or(Shown::Not))
            .collect();
        let (owner, surplus) = (challenge.owner, challenge.surplus);
        match after_challenge(
            &challenge.responsible,
            &shown,
            owner,
            replicas,
            surplus,
            |p| p.id,
        ) {
            Surplus::Drop => {
                self.drop_copy(addr, &key);
                if let Some(w) = self.files.as_mut() {
                    w.stats.surplus_dropped += 1;
                }
            }
            Surplus::Restore(to) => {
                for (node, role) in to {
                    let meta = FileMeta {
                        role,
                        ..meta.clone()
                    };
                    self.send_file(addr, node.addr, FileMsg::Push { meta, role });
                }
            }
        }
    }

    /// The node's predecessor or successor changed: a round soon (bursts of changes within
    /// 100 ms share one).
    pub(super) fn files_ring_changed(&mut self, addr: Addr) {
        let Some(files) = self.files_of_mut(addr) else {
            return;
        };
        if files.woken {
            return;
        }
        files.woken = true;
        let at = self.now + 100_000_000;
        self.schedule_repair_now(addr, at);
    }

    // ---- informed leaves and crashes ----

    /// An informed leave with files: ask the first R successors what they lack (an
    /// inventory of everything held) and leave once they answered, or at a deadline. Returns
    /// false if there is nothing to hand over (leave at once).
    pub(super) fn files_begin_leave(&mut self, addr: Addr) -> bool {
        let replicas = self.files_replicas();
        let Some((_, successors)) = self.place_of(addr, replicas + 1) else {
            return false;
        };
        let Some(files) = self.files_of_mut(addr) else {
            return false;
        };
        if files.leaving.is_some() {
            return true;
        }
        if files.hostile || files.held.is_empty() || successors.is_empty() {
            return false;
        }
        let entries: Vec<FileMeta> = files.held.values().map(|h| h.meta.clone()).collect();
        let targets: Vec<Addr> = successors.iter().map(|s| s.addr).take(replicas).collect();
        files.leaving = Some(Leaving {
            lacks: vec![None; targets.len()],
            successors: targets.clone(),
        });
        for to in targets {
            let entries = entries.clone();
            self.send_file(addr, to, FileMsg::Inventory { entries });
        }
        let due = self.now + 2 * self.config().chord.rpc_timeout.as_nanos() as u64;
        self.schedule_leave_due(addr, due);
        true
    }

    /// The leave goes ahead: copies where they are lacking (`replica::plan::hand_over`), then
    /// the Chord leave.
    pub(super) fn files_finish_leave(&mut self, addr: Addr) {
        let Some(leaving) = self.files_of_mut(addr).and_then(|f| f.leaving.take()) else {
            return;
        };
        let held: Vec<FileMeta> = self
            .files_of(addr)
            .map(|f| f.held.values().map(|h| h.meta.clone()).collect())
            .unwrap_or_default();
        let summary: Vec<_> = held.iter().map(FileMeta::held).collect();
        for (i, key, role) in hand_over(&summary, &leaving.lacks) {
            let Some(meta) = held.iter().find(|m| m.key == key) else {
                continue;
            };
            let meta = FileMeta {
                role,
                ..meta.clone()
            };
            self.send_file(addr, leaving.successors[i], FileMsg::Push { meta, role });
        }
        self.leave_now(addr);
    }

    /// `node`'s copies are gone with it; a crash is remembered per file for the oracle.
    pub(super) fn files_removed(&mut self, files: Option<NodeFiles>, crashed: bool) {
        let Some(files) = files else {
            return;
        };
        if files.hostile {
            return;
        }
        let now = self.now;
        for key in files.held.keys() {
            if crashed {
                if let Some(w) = self.files.as_mut() {
                    let times = w.crashed_holders.entry(*key).or_insert_with(VecDeque::new);
                    times.push_back(now);
                    while times.len() > w.config.replicas {
                        times.pop_front();
                    }
                }
            }
            self.count_copy(key, -1, if crashed { "a crash" } else { "a leave" });
        }
    }
}
