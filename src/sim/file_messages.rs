//! The file messages of the simulator's nodes: what a node answers and what it does with
//! answers, by the replica core's rules (`sim::files` runs the rounds that send them).

use crate::records::{FileMeta, Removal, Role, Tombstone};
use crate::replica::plan::{after_inventory, after_owner_stat, InventoryStep, OwnerCheck};
use crate::replica::{admit, shown, Admit, Offer, Said};

use super::file_books::{proof_of, signed, SIGNED};
use super::files_state::FileMsg;
use super::world::{Addr, Sim};

impl Sim {
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
