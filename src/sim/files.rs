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
use crate::records::{FileMeta, Removal, Role, Tombstone};
use crate::replica::plan::{
    after_challenge, after_inventory, after_owner_stat, hand_over, plan_round, settle, Copy,
    InventoryStep, OwnerCheck, Place, Settle, Surplus,
};
use crate::replica::{self, admit, shown, Admit, Offer, Said, Shown};

use super::files_state::{Challenge, FileMsg, FileStats, Held, Leaving, Looking, NodeFiles};
use super::world::{Addr, Sim};

/// The mark an uploader's signature stands for here.
const SIGNED: &[u8] = &[1];
const UPLOADER: &str = "uploader";

fn signed(meta: &FileMeta) -> bool {
    meta.signature == SIGNED
}

fn proof_of(nonce: u64, meta: &FileMeta) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&nonce.to_be_bytes());
    h.update(&meta.hash);
    let mut word = [0u8; 8];
    word.copy_from_slice(&h.finalize().as_bytes()[..8]);
    u64::from_be_bytes(word)
}

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
            meta: &h.meta,
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
                    files.inventories.insert(holder.addr, owned.clone());
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

    // ---- messages ----

    pub(super) fn on_file_msg(&mut self, from: Addr, to: Addr, msg: FileMsg) {
        let Some(me) = self.node(to).map(|n| n.id()) else {
            return;
        };
        let hostile = self.is_hostile(to);
        let now_ms = self.now_ms();
        match msg {
            FileMsg::Inventory { entries } => {
                let reply = if hostile {
                    FileMsg::InventoryReply {
                        missing: Vec::new(),
                        removed: entries.iter().map(forged_removal).collect(),
                    }
                } else {
                    let sender = self.node(from).map(|n| n.id());
                    let mut missing = Vec::new();
                    for entry in entries {
                        let key = entry.key;
                        let placed = sender.is_some_and(|s| s == key || s.in_open(&key, &me));
                        if !placed {
                            continue;
                        }
                        match self.copy_at(to, &key) {
                            Some(m) if m.hash == entry.hash && m.created == entry.created => {
                                self.confirm(to, &key)
                            }
                            _ => missing.push(key),
                        }
                    }
                    FileMsg::InventoryReply {
                        missing,
                        removed: Vec::new(),
                    }
                };
                self.send_file(to, from, reply);
            }
            FileMsg::InventoryReply { missing, removed } => {
                if let Some(leaving) = self.files_of_mut(to).and_then(|f| f.leaving.as_mut()) {
                    if let Some(i) = leaving.successors.iter().position(|s| *s == from) {
                        leaving.lacks[i] = Some(missing);
                        if leaving.lacks.iter().all(Option::is_some) {
                            self.files_finish_leave(to);
                        }
                        return;
                    }
                }
                let Some(sent) = self
                    .files_of_mut(to)
                    .and_then(|f| f.inventories.remove(&from))
                else {
                    return;
                };
                let valid = removed
                    .into_iter()
                    .filter(|t| signed(&t.removed) && t.removal.signature == SIGNED)
                    .collect();
                for step in after_inventory(&sent, &missing, valid) {
                    match step {
                        InventoryStep::Apply(stone) => self.apply_tombstone(to, *stone),
                        InventoryStep::Push(key) => {
                            if let Some(meta) = self.copy_at(to, &key) {
                                let role = Role::Replica;
                                self.send_file(to, from, FileMsg::Push { meta, role });
                            }
                        }
                    }
                }
            }
            FileMsg::Push { meta, role } => {
                let key = meta.key;
                let stored = if hostile {
                    true
                } else if !signed(&meta) {
                    false
                } else {
                    let offer = Offer {
                        uploader: &meta.uploader,
                        created: meta.created,
                        hash: Some(&meta.hash),
                        direct: false,
                    };
                    let held = self.copy_at(to, &key);
                    let stone = self
                        .files_of(to)
                        .and_then(|f| f.tombstones.get(&key).cloned());
                    match admit(offer, held.as_ref(), stone.as_ref(), now_ms) {
                        Admit::Accept => {
                            self.store_copy(to, FileMeta { role, ..meta });
                            true
                        }
                        Admit::Identical => {
                            if role == Role::Owner {
                                self.set_role(to, &key, Role::Owner);
                            }
                            self.confirm(to, &key);
                            true
                        }
                        Admit::Removed(_) | Admit::Refuse(_) => false,
                    }
                };
                self.send_file(to, from, FileMsg::PushReply { key, stored });
            }
            FileMsg::PushReply { key, stored } => {
                let handed = self
                    .files_of_mut(to)
                    .and_then(|f| f.handing.remove(&key))
                    .is_some_and(|(at, _)| at == from);
                if handed && stored {
                    self.set_role(to, &key, Role::Replica);
                }
            }
            FileMsg::Stat { key } => {
                let (held, removed) = if hostile {
                    (None, None)
                } else {
                    let files = self.files_of(to);
                    (
                        files.and_then(|f| f.held.get(&key)).map(|h| h.meta.clone()),
                        files
                            .and_then(|f| f.tombstones.get(&key))
                            .cloned()
                            .map(Box::new),
                    )
                };
                self.send_file(to, from, FileMsg::StatReply { key, held, removed });
            }
            FileMsg::StatReply { key, held, removed } => {
                let Some(mine) = self.copy_at(to, &key) else {
                    return;
                };
                let said = match (held.filter(signed), removed) {
                    (Some(meta), _) => Said::Holds(meta),
                    (None, Some(stone)) if signed(&stone.removed) => Said::Removed(*stone),
                    _ => Said::Nothing,
                };
                match after_owner_stat(&mine, &said) {
                    OwnerCheck::Apply(stone) => self.apply_tombstone(to, *stone),
                    OwnerCheck::Fine => {}
                    OwnerCheck::PushToOwner => {
                        let role = Role::Owner;
                        let meta = FileMeta { role, ..mine };
                        self.send_file(to, from, FileMsg::Push { meta, role });
                    }
                }
            }
            FileMsg::Prove { key, nonce } => {
                let reply = if hostile {
                    FileMsg::ProofReply {
                        key,
                        held: None,
                        proof: Some(nonce ^ 0x5a5a),
                        keeps: true,
                    }
                } else {
                    let held = self.copy_at(to, &key);
                    let proof = held.as_ref().map(|m| proof_of(nonce, m));
                    let keeps = self.keeps_copy(to, &key);
                    FileMsg::ProofReply {
                        key,
                        held,
                        proof,
                        keeps,
                    }
                };
                self.send_file(to, from, reply);
            }
            FileMsg::ProofReply {
                key,
                held,
                proof,
                keeps,
            } => {
                let Some(mine) = self.copy_at(to, &key) else {
                    return;
                };
                let Some(challenge) = self
                    .files_of_mut(to)
                    .and_then(|f| f.challenges.get_mut(&key))
                else {
                    return;
                };
                let Some(at) = challenge.responsible.iter().position(|p| p.addr == from) else {
                    return;
                };
                let held = held.filter(signed);
                let matches = proof == Some(proof_of(challenge.nonce, &mine));
                challenge.shown[at] = Some(shown(&mine, held.as_ref(), matches, keeps));
                if challenge.shown.iter().all(Option::is_some) {
                    self.finish_challenge(to, key);
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
        for (i, key, role) in hand_over(&held, &leaving.lacks) {
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

    // ---- bookkeeping ----

    fn store_copy(&mut self, addr: Addr, meta: FileMeta) {
        let now = self.now;
        let key = meta.key;
        let Some(files) = self.files_of_mut(addr) else {
            return;
        };
        if files.hostile {
            return;
        }
        let new = files
            .held
            .insert(
                key,
                Held {
                    meta,
                    confirmed: Some(now),
                    checked: None,
                },
            )
            .is_none();
        if new {
            self.count_copy(&key, 1, "a store");
        }
    }

    fn drop_copy(&mut self, addr: Addr, key: &Id) {
        let removed = self
            .files_of_mut(addr)
            .and_then(|f| f.held.remove(key))
            .is_some();
        if removed {
            self.count_copy(key, -1, "a drop");
        }
    }

    fn apply_tombstone(&mut self, addr: Addr, stone: Tombstone) {
        let key = stone.key();
        let removes = self
            .copy_at(addr, &key)
            .is_some_and(|m| stone.removal.removes(&m));
        if removes {
            self.drop_copy(addr, &key);
            if let Some(files) = self.files_of_mut(addr) {
                files.tombstones.insert(key, stone);
            }
        }
    }

    /// Live honest copies of `key` change by `delta`; the oracle runs when none is left.
    /// Live honest copies of `key` change by `delta`; the oracle runs when none is left.
    fn count_copy(&mut self, key: &Id, delta: i32, why: &str) {
        let now = self.now;
        // Liars among the key's holders are failed holders too: they keep nothing.
        let liars = if delta < 0 {
            let holders = self.responsible_members(key);
            holders.iter().filter(|a| self.is_hostile(**a)).count()
        } else {
            0
        };
        let Some(w) = self.files.as_mut() else {
            return;
        };
        let count = w.copies.entry(*key).or_insert(0);
        *count = count.saturating_add_signed(delta);
        tracing::trace!(key = %key.to_hex(), "{why}: {delta} → {} copies, {liars} liars", *count);
        if *count > 0 {
            w.gone.remove(key);
            return;
        }
        if !w.gone.insert(*key) {
            return;
        }
        if why == "an eclipse" {
            w.stats.eclipsed += 1;
            return;
        }
        // Excused only if R of its holders failed: crashed within one repair interval, or
        // hostile.
        let window = w.config.repair_interval.as_nanos() as u64;
        let need = w.config.replicas.saturating_sub(liars).max(1);
        let excused = w.crashed_holders.get(key).is_some_and(|times| {
            let last = times.back().copied().unwrap_or(0);
            times.len() >= need
                && last - times[times.len() - need] <= window
                && now - last <= window
        });
        if excused {
            w.stats.lost_excused += 1;
        } else {
            w.stats.lost += 1;
            let v = format!("file {} lost its last copy in {why}", &key.to_hex()[..8]);
            self.record_violation(v);
        }
    }

    fn send_file(&mut self, from: Addr, to: Addr, msg: FileMsg) {
        if let Some(w) = self.files.as_mut() {
            w.stats.messages += 1;
            if matches!(msg, FileMsg::Push { .. }) {
                w.stats.pushes += 1;
            }
        }
        self.transmit_file(from, to, msg);
    }

    fn files_lookup(&mut self, addr: Addr, key: Id, why: Looking) {
        let now = self.instant_now();
        let Some(id) = self.core_lookup(addr, now, key) else {
            return;
        };
        if let Some(files) = self.files_of_mut(addr) {
            files.looking.insert(id, why);
        }
        self.drain_node(addr);
    }

    fn copy_at(&self, addr: Addr, key: &Id) -> Option<FileMeta> {
        self.files_of(addr)?.held.get(key).map(|h| h.meta.clone())
    }

    fn holds(&self, addr: Addr, key: &Id) -> bool {
        self.files_of(addr)
            .is_some_and(|f| f.held.contains_key(key))
    }

    fn set_role(&mut self, addr: Addr, key: &Id, role: Role) {
        if let Some(h) = self.files_of_mut(addr).and_then(|f| f.held.get_mut(key)) {
            h.meta.role = role;
        }
    }

    fn confirm(&mut self, addr: Addr, key: &Id) {
        let now = self.now;
        if let Some(h) = self.files_of_mut(addr).and_then(|f| f.held.get_mut(key)) {
            h.confirmed = Some(now);
        }
    }

    /// Whether `addr` keeps its copy of `key` as a holder: it owns the key, or an owner
    /// confirmed the copy within the stale period.
    fn keeps_copy(&self, addr: Addr, key: &Id) -> bool {
        let Some(w) = self.files.as_ref() else {
            return false;
        };
        let stale = (w.config.repair_interval * w.config.stale_rounds).as_nanos() as u64;
        let Some((place, _)) = self.place_of(addr, 1) else {
            return false;
        };
        let owns = replica::owns(key, &place.me, place.predecessor.as_ref(), place.alone);
        let confirmed = self
            .files_of(addr)
            .and_then(|f| f.held.get(key))
            .and_then(|h| h.confirmed)
            .is_some_and(|t| self.now.saturating_sub(t) <= stale);
        replica::keeps(owns, confirmed)
    }

    fn is_hostile(&self, addr: Addr) -> bool {
        self.files_of(addr).is_some_and(|f| f.hostile)
    }

    fn files_replicas(&self) -> usize {
        self.files.as_ref().map_or(1, |w| w.config.replicas.max(1))
    }

    fn now_ms(&self) -> u64 {
        self.now / 1_000_000
    }

    /// The node's place on the ring and its replica holders, from its routing state.
    fn place_of(&self, addr: Addr, replicas: usize) -> Option<(Place, Vec<NodeRef<Addr>>)> {
        let node = self.node(addr)?;
        let me = node.id();
        let holders: Vec<NodeRef<Addr>> = node
            .successors()
            .iter()
            .filter(|s| s.id != me)
            .take(replicas.saturating_sub(1))
            .cloned()
            .collect();
        let predecessor = node.predecessor().map(|p| p.id);
        let place = Place {
            me,
            predecessor,
            alone: predecessor.is_none() && holders.is_empty(),
        };
        Some((place, holders))
    }

    /// The R members that should hold `key`: successor(key) and the next R−1 live members.
    fn responsible_members(&self, key: &Id) -> Vec<Addr> {
        let r = self.files_replicas();
        self.members
            .range(key..)
            .chain(self.members.range(..key))
            .take(r)
            .map(|(_, a)| *a)
            .collect()
    }
}

/// "Removed by its uploader", without the uploader's mark: what a hostile member says.
fn forged_removal(entry: &FileMeta) -> Tombstone {
    Tombstone {
        removal: Removal {
            name: entry.name.clone(),
            at: entry.created + 1,
            uploader: entry.uploader.clone(),
            signature: Vec::new(),
        },
        removed: FileMeta {
            signature: Vec::new(),
            ..entry.clone()
        },
    }
}
