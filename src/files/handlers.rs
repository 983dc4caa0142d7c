//! Answers to the small file requests (`/chord-p2p/chord` `Files(..)`). Each trusts only what
//! the uploader signed: a removal without a version of that uploader held here or owned here
//! writes nothing, an inventory from a node that cannot be the key's owner is not answered.

use libp2p::PeerId;

use super::error::FilesError;
use super::member::{locked, now, unreadable, Files};
use crate::chord::Id;
use crate::net::node_id;
use crate::net::protocol::{
    FileResponse, InventoryEntry, MAX_INVENTORY, MAX_LIST_FILES, MAX_TOMBSTONES,
};
use crate::records::Tombstone;
use crate::replica::{self, Said};

/// A copy re-read on request is not re-read again on request for this long.
const CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl Files {
    /// A page of what this node holds, in key order.
    pub(super) fn list_page(&self, after: Option<Id>) -> Result<FileResponse, FilesError> {
        let (files, more) = self
            .inner
            .store
            .page(after, MAX_LIST_FILES)
            .map_err(unreadable)?;
        Ok(FileResponse::List { files, more })
    }

    /// An owner says what this node should hold. Only a node that could own the keys (it lies
    /// at or after each key and before this node) is answered, entry by entry; the answer
    /// carries signed proofs of removals, never a bare "removed".
    pub(super) async fn on_inventory(
        &self,
        from: &PeerId,
        entries: Vec<InventoryEntry>,
    ) -> Result<FileResponse, FilesError> {
        let store = &self.inner.store;
        let me = self.view().await?.me;
        let sender = node_id(from);
        let mut missing = Vec::new();
        let mut removed = Vec::new();
        for entry in entries.into_iter().take(MAX_INVENTORY) {
            let key = entry.key;
            if sender != key && !sender.in_open(&key, &me) {
                continue;
            }
            let held = store.held(&key).filter(|_| !self.is_corrupt(&key));
            match (&held, store.tombstone(&key, &entry.uploader)) {
                (Some(m), _) if m.hash == entry.hash && m.created == entry.created => {
                    store.confirm(&key)
                }
                (_, Some(stone)) if stone.removal.at >= entry.created => removed.push(stone),
                // A newer version of the same uploader is here: the owner learns it from the
                // holders' Stat answers, not from this list.
                (Some(m), _) if *m.uploader == *entry.uploader && m.created > entry.created => {}
                _ => missing.push(key),
            }
        }
        Ok(FileResponse::Inventory { missing, removed })
    }

    /// A removal with the version it removed. Checked here whoever relays it; it deletes only
    /// a copy of that uploader made at or before it. Without a copy here it is kept only when
    /// this node owns the key and the key's previous owner (this node's successor) passes it
    /// on: tombstones travel with their keys, and nobody else can make a node store one.
    pub(super) async fn on_drop(
        &self,
        from: &PeerId,
        stone: Tombstone,
    ) -> Result<FileResponse, FilesError> {
        stone
            .check(now())
            .map_err(|e| FilesError::Refused(e.to_string()))?;
        let key = stone.key();
        let store = &self.inner.store;
        match store.held(&key) {
            Some(held) if *held.uploader != *stone.removal.uploader => Err(FilesError::Refused(
                format!("'{}' belongs to another peer", stone.removal.name),
            )),
            Some(_) => Ok(FileResponse::Dropped {
                held: self.apply_tombstone(&stone)?,
            }),
            None => {
                let view = self.view().await?;
                if view.owns(&key) && view.successors.first() == Some(&node_id(from)) {
                    store.add_tombstone(&stone)?;
                }
                Ok(FileResponse::Dropped { held: false })
            }
        }
    }

    /// Someone got a copy of `key` from here that did not match its hash: re-read it now (at
    /// most once a minute per key, so asking cannot keep this node hashing). Bytes that were
    /// read and did not match mark the copy corrupt (not served; replaced once a good copy is
    /// fetched); a copy that cannot be read is left alone.
    pub(super) async fn on_check(&self, key: Id) -> Result<FileResponse, FilesError> {
        let Some(meta) = self.inner.store.held(&key) else {
            return Ok(FileResponse::Checked { good: false });
        };
        {
            let mut checked = locked(&self.inner.checked);
            checked.retain(|_, at| at.elapsed() < CHECK_EVERY);
            if checked.contains_key(&key) {
                return Ok(FileResponse::Checked {
                    good: !self.is_corrupt(&key),
                });
            }
            checked.insert(key, std::time::Instant::now());
        }
        let path = self.inner.store.data_path(&key);
        let hash = tokio::task::spawn_blocking(move || super::scrub::hash_file(&path))
            .await
            .map_err(|e| FilesError::Refused(format!("re-reading the copy failed: {e}")))?;
        match hash {
            Ok(h) if h == meta.hash => Ok(FileResponse::Checked { good: true }),
            Ok(_) => {
                self.found_corrupt(&meta.key);
                Ok(FileResponse::Checked { good: false })
            }
            Err(e) => {
                // Not checked after all: the next request may try again.
                locked(&self.inner.checked).remove(&key);
                Err(FilesError::Refused(format!(
                    "the copy cannot be read now ({e}); it was kept"
                )))
            }
        }
    }

    /// The version held here and the removals known, as signed records a getter checks.
    pub(super) fn on_stat(&self, key: &Id) -> Result<FileResponse, FilesError> {
        let held = match self.said_here(key)? {
            Said::Holds(meta) => Some(meta),
            _ => None,
        };
        let mut removed = self.inner.store.tombstones(key);
        removed.truncate(MAX_TOMBSTONES);
        Ok(FileResponse::Stat { held, removed })
    }

    /// Proves this node holds the bytes of its version of `key`: a keyed hash over the range
    /// the challenger's nonce picks.
    pub(super) async fn on_prove(
        &self,
        key: Id,
        nonce: [u8; 32],
    ) -> Result<FileResponse, FilesError> {
        let Said::Holds(meta) = self.said_here(&key)? else {
            return Ok(FileResponse::Proof {
                held: None,
                proof: None,
                keeps: false,
            });
        };
        let proof = self.prove(&meta, nonce).await;
        let config = &self.inner.config;
        let stale_after = config.repair_interval * config.stale_rounds;
        let owns = self.view().await.is_ok_and(|v| v.owns(&key));
        let confirmed = self
            .inner
            .store
            .confirmed(&key)
            .is_some_and(|t| t.elapsed() <= stale_after);
        Ok(FileResponse::Proof {
            held: Some(meta),
            proof,
            keeps: replica::keeps(owns, confirmed),
        })
    }

    /// The proof over this node's own copy of `meta` (None if it cannot be read).
    pub(super) async fn prove(
        &self,
        meta: &crate::records::FileMeta,
        nonce: [u8; 32],
    ) -> Option<super::store::Hash> {
        let (offset, len) = replica::proof_range(&nonce, &meta.key, meta.size);
        let path = self.inner.store.data_path(&meta.key);
        let range = tokio::task::spawn_blocking(move || read_range(&path, offset, len))
            .await
            .ok()?
            .ok()?;
        Some(replica::proof(&nonce, &meta.hash, &range))
    }
}

fn read_range(path: &std::path::Path, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek};
    let mut file = std::fs::File::open(path)?;
    file.seek(std::io::SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; len as usize];
    file.read_exact(&mut buf)?;
    Ok(buf)
}
