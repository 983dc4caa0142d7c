//! The simulator's file bookkeeping: copies stored and dropped, the per-file copy count the
//! file oracle watches, and small lookups into a node's file state.

use crate::chord::{Id, NodeRef};
use crate::records::{FileMeta, Role, Tombstone};
use crate::replica;
use crate::replica::plan::Place;

use super::files_state::{FileMsg, Held, Looking};
use super::world::{Addr, Sim};

/// The mark an uploader's signature stands for here.
pub(super) const SIGNED: &[u8] = &[1];

pub(super) fn signed(meta: &FileMeta) -> bool {
    meta.signature == SIGNED
}

/// A holder's answer to a challenge: a keyed hash of its version's hash.
pub(super) fn proof_of(nonce: u64, meta: &FileMeta) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&nonce.to_be_bytes());
    h.update(&meta.hash);
    let mut word = [0u8; 8];
    word.copy_from_slice(&h.finalize().as_bytes()[..8]);
    u64::from_be_bytes(word)
}

impl Sim {
    // ---- bookkeeping ----

    pub(super) fn store_copy(&mut self, addr: Addr, meta: FileMeta) {
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

    pub(super) fn drop_copy(&mut self, addr: Addr, key: &Id) {
        let removed = self
            .files_of_mut(addr)
            .and_then(|f| f.held.remove(key))
            .is_some();
        if removed {
            self.count_copy(key, -1, "a drop");
        }
    }

    pub(super) fn apply_tombstone(&mut self, addr: Addr, stone: Tombstone) {
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
    pub(super) fn count_copy(&mut self, key: &Id, delta: i32, why: &str) {
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

    pub(super) fn send_file(&mut self, from: Addr, to: Addr, msg: FileMsg) {
        if let Some(w) = self.files.as_mut() {
            w.stats.messages += 1;
            if matches!(msg, FileMsg::Push { .. }) {
                w.stats.pushes += 1;
            }
        }
        self.transmit_file(from, to, msg);
    }

    pub(super) fn files_lookup(&mut self, addr: Addr, key: Id, why: Looking) {
        let now = self.instant_now();
        let Some(id) = self.core_lookup(addr, now, key) else {
            return;
        };
        if let Some(files) = self.files_of_mut(addr) {
            files.looking.insert(id, why);
        }
        self.drain_node(addr);
    }

    pub(super) fn copy_at(&self, addr: Addr, key: &Id) -> Option<FileMeta> {
        self.files_of(addr)?.held.get(key).map(|h| h.meta.clone())
    }

    pub(super) fn holds(&self, addr: Addr, key: &Id) -> bool {
        self.files_of(addr)
            .is_some_and(|f| f.held.contains_key(key))
    }

    pub(super) fn set_role(&mut self, addr: Addr, key: &Id, role: Role) {
        if let Some(h) = self.files_of_mut(addr).and_then(|f| f.held.get_mut(key)) {
            h.meta.role = role;
        }
    }

    pub(super) fn confirm(&mut self, addr: Addr, key: &Id) {
        let now = self.now;
        if let Some(h) = self.files_of_mut(addr).and_then(|f| f.held.get_mut(key)) {
            h.confirmed = Some(now);
        }
    }

    /// Whether `addr` keeps its copy of `key` as a holder: it owns the key, or an owner
    /// confirmed the copy within the stale period.
    pub(super) fn keeps_copy(&self, addr: Addr, key: &Id) -> bool {
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

    pub(super) fn is_hostile(&self, addr: Addr) -> bool {
        self.files_of(addr).is_some_and(|f| f.hostile)
    }

    pub(super) fn files_replicas(&self) -> usize {
        self.files.as_ref().map_or(1, |w| w.config.replicas.max(1))
    }

    pub(super) fn now_ms(&self) -> u64 {
        self.now / 1_000_000
    }

    /// The node's place on the ring and its replica holders, from its routing state.
    pub(super) fn place_of(
        &self,
        addr: Addr,
        replicas: usize,
    ) -> Option<(Place, Vec<NodeRef<Addr>>)> {
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
    pub(super) fn responsible_members(&self, key: &Id) -> Vec<Addr> {
        let r = self.files_replicas();
        self.members
            .range(key..)
            .chain(self.members.range(..key))
            .take(r)
            .map(|(_, a)| *a)
            .collect()
    }
}
