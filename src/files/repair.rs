//! Keeping every file at its owner and the owner's R−1 successors while nodes come and go:
//! the periodic repair round, hand-offs, and the informed leave. What to keep or drop is the
//! replica core's decision (`crate::replica`); this module asks the peers and carries it out.

use super::error::FilesError;
use super::member::{locked, now, Files, View};
use super::ops;
use super::store::{FileMeta, Held, Role};
use super::transfer::{TransferError, TransferRequest};
use crate::chord::Id;
use crate::metrics::RepairAction;
use crate::net::protocol::{FileRequest, FileResponse, InventoryEntry, MAX_INVENTORY};
use crate::net::PeerRef;
use crate::node::NodeError;
use crate::replica::plan::{
    after_challenge, after_inventory, after_owner_stat, hand_over, plan_round, settle, Copy,
    InventoryStep, OwnerCheck, Settle, Surplus,
};
use crate::replica::{self, Said, Shown};

/// Most hand-offs, stale-replica checks and corrupt-copy repairs one round does; the rest wait.
const REPAIR_BATCH: usize = 64;

impl Files {
    /// Runs repair rounds until the node stops: every interval, and at once after a change of
    /// neighbours.
    pub async fn repair_loop(self) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.inner.config.repair_interval) => {}
                _ = self.inner.wake.notified() => {}
            }
            match self.repair_round().await {
                Err(FilesError::Node(NodeError::Stopped)) => return,
                Err(e) => tracing::debug!("repair round: {e}"),
                Ok(()) => {}
            }
        }
    }

    /// One round, as the replica core plans it: take over or hand off keys (and their
    /// tombstones), make the replica holders hold what this node owns, settle replicas nobody
    /// confirms, replace corrupt copies, and re-check some bytes on disk.
    pub async fn repair_round(&self) -> Result<(), FilesError> {
        let store = &self.inner.store;
        let view = self.view().await?;
        let stale_after = self.inner.config.repair_interval * self.inner.config.stale_rounds;
        let round = self.inner.config.repair_interval;
        let older = |t: Option<std::time::Instant>, d| t.is_none_or(|t| t.elapsed() >= d);
        let copies = store.keys().into_iter().map(|(key, role)| Copy {
            key,
            role,
            // Unconfirmed for the stale period, it is settled every round until an owner
            // confirms it again (a lying owner never does).
            unconfirmed: older(store.confirmed(&key), stale_after)
                && older(store.checked(&key), round),
            corrupt: self.is_corrupt(&key),
        });
        let plan = plan_round(view.place(), copies, REPAIR_BATCH);
        for key in &plan.promote {
            store.set_role(key, Role::Owner)?;
        }
        self.replicate_owned(&view, &plan.replicate).await;
        for meta in plan.hand_off.iter().filter_map(|k| store.get(k)) {
            self.hand_off(view.me, &meta).await;
        }
        self.hand_off_tombstones(&view).await;
        for meta in plan.settle.iter().filter_map(|k| store.get(k)) {
            self.settle(view.me, &meta).await;
        }
        self.repair_corrupt().await;
        self.scrub().await;
        Ok(())
    }

    /// Sends a stored file to another member.
    pub(super) async fn push(
        &self,
        to: &PeerRef,
        meta: &FileMeta,
        role: Role,
    ) -> Result<u32, FilesError> {
        let header = TransferRequest::Put {
            name: meta.name.clone(),
            size: meta.size,
            hash: Some(meta.hash),
            role,
            uploader: meta.uploader.clone(),
            created: meta.created,
            signature: meta.signature.clone(),
            chain: 0,
        };
        let path = self.inner.store.data_path(&meta.key);
        let ((copies, _), _) = self.access().put_to(to, &path, &header, None).await?;
        Ok(copies)
    }

    /// Copies `meta` to the replica holders; returns how many now hold it.
    pub(super) async fn replicate(&self, meta: &FileMeta) -> u32 {
        let Ok(view) = self.view().await else {
            return 0;
        };
        self.replicate_to(meta, &view.holders).await
    }

    /// Copies `meta` to each of `holders`; returns how many now hold it.
    /// A holder that is full (its storage limit) is replaced by the next successor after the
    /// holders that takes the copy.
    pub(super) async fn replicate_to(&self, meta: &FileMeta, holders: &[PeerRef]) -> u32 {
        let pushes = holders.iter().map(|h| self.push(h, meta, Role::Replica));
        let results = futures::future::join_all(pushes).await;
        let mut copies = results.iter().filter(|r| r.is_ok()).count() as u32;
        let mut full = results.iter().filter(|r| is_full(r)).count();
        if full > 0 {
            let spares = self.view().await.map(|v| v.spares).unwrap_or_default();
            for spare in spares
                .iter()
                .filter(|s| holders.iter().all(|h| h.id != s.id))
            {
                if full == 0 {
                    break;
                }
                if self.push(spare, meta, Role::Replica).await.is_ok() {
                    copies += 1;
                    full -= 1;
                }
            }
        }
        copies
    }

    /// Tells each replica holder what this node owns and sends what they lack, all holders at
    /// once (a dead one costs the round one request timeout, not one per holder).
    async fn replicate_owned(&self, view: &View, owned: &[Id]) {
        let asked = view.holders.iter().map(|h| self.sync_holder(h, owned));
        let held_by = futures::future::join_all(asked).await;
        // Holders that said they already held each owned key when this round asked (copies
        // pushed this round are confirmed by the next round's asking).
        let mut confirmed: std::collections::HashMap<Id, usize> =
            owned.iter().map(|k| (*k, 0)).collect();
        for key in held_by.into_iter().flatten() {
            *confirmed.entry(key).or_default() += 1;
        }
        // Owned keys with fewer than R - 1 holders holding them when asked: what metrics call
        // under-replicated until the next round. Counting only what holders said they held
        // (not this round's pushes) makes a lost holder show for one round at least, however
        // fast the ring healed and repair refilled its place.
        let wanted = self.replicas() - 1;
        let under = confirmed.values().filter(|n| **n < wanted).count() as u64;
        tracing::debug!(
            owned = owned.len(),
            holders = view.holders.len(),
            under,
            "replica holders asked"
        );
        self.inner
            .under_replicated
            .store(under, std::sync::atomic::Ordering::Relaxed);
    }

    /// One replica holder's part of [`Files::replicate_owned`]: its inventory, the removals
    /// it proves, the copies it lacks. Returns the keys it said it held. A holder's "removed"
    /// counts only with the uploader's signed removal of this very version.
    async fn sync_holder(&self, holder: &PeerRef, owned: &[Id]) -> Vec<Id> {
        let access = self.access();
        let store = &self.inner.store;
        let mut held_there = Vec::new();
        for keys in owned.chunks(MAX_INVENTORY) {
            let batch: Vec<Held> = keys.iter().filter_map(|k| store.held(k)).collect();
            let entries = batch.iter().map(inventory_entry).collect();
            let Ok(FileResponse::Inventory { missing, removed }) = access
                .file_request(holder, FileRequest::Inventory { entries })
                .await
            else {
                continue;
            };
            held_there.extend(
                batch
                    .iter()
                    .filter(|h| !missing.contains(&h.key))
                    .map(|h| h.key),
            );
            let valid = removed
                .into_iter()
                .take(MAX_INVENTORY)
                .filter(|t| t.check(now()).is_ok())
                .collect();
            for step in after_inventory(&batch, &missing, valid) {
                match step {
                    InventoryStep::Apply(stone) => {
                        if let Err(e) = self.apply_tombstone(&stone) {
                            tracing::warn!("cannot keep a removal: {e}");
                        }
                    }
                    InventoryStep::Push(key) => {
                        let Some(meta) = store.get(&key) else {
                            continue;
                        };
                        match self.push(holder, &meta, Role::Replica).await {
                            Err(FilesError::Transfer(TransferError::Removed)) => {
                                self.learn_removal(holder, &meta).await
                            }
                            Err(e) => {
                                tracing::debug!(name = meta.name, "replication failed: {e}")
                            }
                            Ok(_) => self.metrics().repaired(RepairAction::Push),
                        }
                    }
                }
            }
        }
        held_there
    }

    /// A key this node owned now belongs to someone else (a node joined before it). The copy
    /// stays here as a replica; whether it may go is [`Files::settle`]'s question.
    async fn hand_off(&self, me: Id, meta: &FileMeta) {
        let Ok(found) = self.access().lookup(meta.key).await else {
            return;
        };
        if found.owner.id == me {
            let _ = self.inner.store.set_role(&meta.key, Role::Owner);
            return;
        }
        match self.push(&found.owner, meta, Role::Owner).await {
            Ok(_) => {
                self.metrics().repaired(RepairAction::HandOff);
                let _ = self.inner.store.set_role(&meta.key, Role::Replica);
            }
            Err(FilesError::Transfer(TransferError::Removed)) => {
                // Its word is not enough: the signed removal is.
                self.learn_removal(&found.owner, meta).await;
            }
            Err(e) => tracing::debug!(name = meta.name, "hand-off failed: {e}"),
        }
    }

    /// `peer` says `meta` was removed: asks for the uploader's signed removal and applies it.
    async fn learn_removal(&self, peer: &PeerRef, meta: &FileMeta) {
        if let Ok(Said::Removed(stone)) = self.access().stat(peer, &meta.name).await {
            if stone.removal.removes(meta) {
                let _ = self.apply_tombstone(&stone);
            }
        }
    }

    /// Tombstones of keys this node no longer owns go to the keys' owners, once per start, so
    /// a removal stays final when the key changes hands.
    async fn hand_off_tombstones(&self, view: &View) {
        if view.predecessor.is_none() {
            return;
        }
        let store = &self.inner.store;
        let due: Vec<Id> = {
            let handed = locked(&self.inner.stones_handed);
            store
                .removed_keys()
                .into_iter()
                .filter(|k| !view.owns(k) && !handed.contains(k))
                .take(REPAIR_BATCH)
                .collect()
        };
        let access = self.access();
        for key in due {
            let Ok(found) = access.lookup(key).await else {
                continue;
            };
            if found.owner.id == view.me || self.pass_tombstones(&found.owner, &key).await {
                locked(&self.inner.stones_handed).insert(key);
            }
        }
    }

    /// A replica its owner has not confirmed lately (or at all since this node started). If
    /// this node is among the R that should hold the key, it makes sure the owner has the file
    /// (or drops its copy on the uploader's signed removal). If it is not, the copy is surplus
    /// and goes only once every node that should hold the key has proved it does.
    async fn settle(&self, me: Id, meta: &FileMeta) {
        let store = &self.inner.store;
        let access = self.access();
        let Ok(found) = access.lookup(meta.key).await else {
            return;
        };
        match settle(me, found.owner, &found.backups, self.replicas(), |p| p.id) {
            Settle::BecomeOwner => {
                let _ = store.set_role(&meta.key, Role::Owner);
                return;
            }
            Settle::Holder { owner, others } => {
                self.settle_with_owner(&owner, meta).await;
                self.challenge(owner.id, &others, meta, false).await
            }
            Settle::Challenge { owner, responsible } => {
                self.challenge(owner.id, &responsible, meta, true).await
            }
        }
        store.mark_checked(&meta.key);
    }

    /// This node should hold the key: the owner gets the file if it lacks it.
    async fn settle_with_owner(&self, owner: &PeerRef, meta: &FileMeta) {
        // An owner that refuses to say (its copy cannot be read now) is asked next round.
        let Ok(said) = self.access().stat(owner, &meta.name).await else {
            return;
        };
        match after_owner_stat(meta, &said) {
            OwnerCheck::Apply(stone) => {
                let _ = self.apply_tombstone(&stone);
            }
            OwnerCheck::Fine => {}
            OwnerCheck::PushToOwner => match self.push(owner, meta, Role::Owner).await {
                Err(FilesError::Transfer(TransferError::Removed)) => {
                    self.learn_removal(owner, meta).await
                }
                Err(e) => tracing::debug!(name = meta.name, "return to owner failed: {e}"),
                Ok(_) => {}
            },
        }
    }

    /// Challenges `nodes` (the responsible ones for a surplus copy, the other holders for a
    /// held one) to prove they hold the file. A surplus copy goes only if all prove this
    /// version or a newer one; otherwise the copy goes to those that could not.
    async fn challenge(&self, owner: Id, nodes: &[PeerRef], meta: &FileMeta, surplus: bool) {
        let responsible = nodes;
        let nonce: [u8; 32] = rand::random();
        let Some(mine) = self.prove(meta, nonce).await else {
            return;
        };
        let access = self.access();
        let asks = responsible.iter().map(|node| {
            let access = &access;
            async move {
                let request = FileRequest::Prove {
                    key: meta.key,
                    nonce,
                };
                match access.file_request(node, request).await {
                    Ok(FileResponse::Proof { held, proof, keeps }) => {
                        let held = held.filter(|h| h.check(&meta.name, now()).is_ok());
                        replica::shown(meta, held.as_ref(), proof == Some(mine), keeps)
                    }
                    _ => Shown::Not,
                }
            }
        });
        let shown = futures::future::join_all(asks).await;
        match after_challenge(responsible, &shown, owner, self.replicas(), surplus, |p| {
            p.id
        }) {
            Surplus::Drop => {
                if self.drop_if_unchanged(meta) {
                    self.metrics().repaired(RepairAction::Drop);
                    tracing::info!(
                        name = meta.name,
                        "surplus copy dropped: every holder proved it"
                    );
                }
            }
            Surplus::Restore(to) => {
                for (node, role) in to {
                    match self.push(&node, meta, role).await {
                        Ok(_) => self.metrics().repaired(RepairAction::Push),
                        Err(e) => {
                            tracing::debug!(name = meta.name, "restoring a copy failed: {e}")
                        }
                    }
                }
            }
        }
    }

    /// Replaces copies found corrupt with a good copy of the same version fetched from
    /// another holder; until then the corrupt copy is kept but never served.
    async fn repair_corrupt(&self) {
        let keys: Vec<Id> = locked(&self.inner.corrupt)
            .iter()
            .take(REPAIR_BATCH)
            .copied()
            .collect();
        let access = self.access();
        for key in keys {
            let Some(meta) = self.inner.store.get(&key) else {
                locked(&self.inner.corrupt).remove(&key);
                continue;
            };
            let Ok(found) = access.lookup(key).await else {
                continue;
            };
            let me = access.me();
            let others: Vec<PeerRef> = ops::candidates(found)
                .into_iter()
                .filter(|p| p.addr.peer_id != me)
                .collect();
            let out = self.inner.store.repair_path(&key);
            match ops::fetch_version(&access, &meta, &others, &out, None).await {
                Ok(_) => match self.inner.store.replace_bytes(&out, &meta) {
                    Ok(true) => {
                        locked(&self.inner.corrupt).remove(&key);
                        self.metrics().repaired(RepairAction::Replace);
                        tracing::info!(name = meta.name, "corrupt copy replaced by a good one");
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!(name = meta.name, "cannot replace the copy: {e}"),
                },
                Err(e) => tracing::debug!(name = meta.name, "no good copy found yet: {e}"),
            }
            let _ = std::fs::remove_file(&out);
        }
    }

    /// Bytes of `meta` were read and did not match its hash: stop serving the copy and replace
    /// it at the next repair round.
    pub(super) fn found_corrupt(&self, key: &Id) {
        if locked(&self.inner.corrupt).insert(*key) {
            tracing::warn!(%key, "stored copy is corrupt; fetching a good one");
            self.inner.wake.notify_one();
        }
    }

    /// Informed leave: everything this node holds goes to its successor first, with the
    /// removals it keeps. Says how many files the first successor now holds from here.
    pub async fn hand_off_all(&self) -> usize {
        let Ok(status) = self.inner.node.status().await else {
            return 0;
        };
        let me = status.node.id;
        let successors: Vec<PeerRef> = status
            .successors
            .into_iter()
            .filter(|s| s.id != me)
            .take(self.replicas())
            .collect();
        let Some(first) = successors.first().cloned() else {
            return 0;
        };
        let held = self.inner.store.helds();
        let access = self.access();
        // Which successor lacks what, so a leave never lowers a file's number of copies.
        let asks = successors.iter().map(|succ| {
            let (access, held) = (&access, &held);
            async move {
                let mut lacks = Vec::new();
                for batch in held.chunks(MAX_INVENTORY) {
                    let entries = batch.iter().map(inventory_entry).collect();
                    match access
                        .file_request(succ, FileRequest::Inventory { entries })
                        .await
                    {
                        Ok(FileResponse::Inventory { missing, .. }) => lacks.extend(missing),
                        _ => return None,
                    }
                }
                Some(lacks)
            }
        });
        let lacks = futures::future::join_all(asks).await;
        let mut handed = 0;
        for (at, key, role) in hand_over(&held, &lacks) {
            let Some(meta) = self.inner.store.get(&key) else {
                continue;
            };
            match self.push(&successors[at], &meta, role).await {
                Err(e) => tracing::warn!(name = meta.name, "hand-off failed: {e}"),
                Ok(_) if at == 0 => handed += 1,
                Ok(_) => {}
            }
        }
        for key in self.inner.store.removed_keys() {
            self.pass_tombstones(&first, &key).await;
        }
        handed
    }

    /// Sends `to` every tombstone kept for `key`; says whether it took them all.
    async fn pass_tombstones(&self, to: &PeerRef, key: &Id) -> bool {
        let access = self.access();
        let mut taken = true;
        for tombstone in self.inner.store.tombstones(key) {
            let drop = FileRequest::Drop { tombstone };
            taken &= access.file_request(to, drop).await.is_ok();
        }
        taken
    }
}

/// A push refused because the receiver is at its storage limit.
fn is_full(result: &Result<u32, FilesError>) -> bool {
    matches!(result, Err(FilesError::Transfer(TransferError::Refused(why))) if why.starts_with("full"))
}

fn inventory_entry(held: &Held) -> InventoryEntry {
    InventoryEntry {
        key: held.key,
        hash: held.hash,
        created: held.created,
        uploader: held.uploader.to_string(),
    }
}
