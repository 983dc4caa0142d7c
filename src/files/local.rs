//! Operations a member carries out on its own store for its own user or as a key's owner:
//! storing an upload it owns itself, copying a held file out for a local get, and removing a
//! file everywhere for its uploader.

use std::path::Path;

use super::error::FilesError;
use super::member::{now, Files};
use super::store::{FileMeta, Hash, Role, StoreError};
use super::transfer::{self, Progress, TransferError, TransferRequest, CHUNK};
use crate::chord::Id;
use crate::net::protocol::{FileRequest, FileResponse};
use crate::records::{Removal, Tombstone};
use crate::replica::{admit, Admit, Offer};

/// How long an owner waits for its replica holders' drops before it answers a `Remove`.
const REMOVE_ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_millis(500);

impl Files {
    /// Stores an upload made by this very node (it is the owner of the key).
    pub(crate) async fn store_upload(
        &self,
        path: &Path,
        header: TransferRequest,
        progress: Progress<'_>,
    ) -> Result<(u32, Hash), FilesError> {
        let TransferRequest::Put {
            name,
            size,
            uploader,
            created,
            ..
        } = header
        else {
            return Err(FilesError::Refused("not a put".into()));
        };
        let key = Id::hash(name.as_bytes());
        let store = &self.inner.store;
        let offer = Offer {
            uploader: &uploader,
            created,
            hash: None,
            direct: true,
        };
        let decide = |held: Option<&FileMeta>| match admit(offer, held, None, now()) {
            Admit::Refuse(why) => Err(format!("'{name}': {why}")),
            _ => Ok(()),
        };
        decide(store.get(&key).as_ref()).map_err(FilesError::Refused)?;
        let _room = store.reserve(size)?;
        let incoming = store.begin(&key)?;
        let mut target = tokio::fs::File::from_std(incoming.file.try_clone().map_err(|e| {
            FilesError::Local {
                path: path.display().to_string(),
                reason: e.to_string(),
            }
        })?);
        let mut source = tokio::fs::File::open(path)
            .await
            .map_err(transfer::local_error(path))?;
        let hash = copy_hashing(&mut source, path, &mut target, size, progress).await?;
        drop(target);
        let meta = FileMeta::signed(
            &self.inner.identity,
            &name,
            size,
            hash,
            created,
            Role::Owner,
        );
        match store.commit(incoming, meta.clone(), decide) {
            Err(StoreError::Refused(why)) => return Err(FilesError::Refused(why)),
            other => other?,
        }
        store.clear_tombstone(&key, &meta.uploader, meta.created);
        Ok((1 + self.replicate(&meta).await, hash))
    }

    /// A get served from this node's own store: copy out, verifying the hash.
    pub(crate) async fn copy_out(&self, key: &Id, out: &Path) -> Result<FileMeta, FilesError> {
        let meta = self
            .inner
            .store
            .get(key)
            .filter(|_| !self.is_corrupt(key))
            .ok_or_else(|| FilesError::Transfer(TransferError::NotFound(key.to_hex())))?;
        let path = self.inner.store.data_path(key);
        let partial = transfer::partial_path(out);
        let mut source = tokio::fs::File::open(&path)
            .await
            .map_err(transfer::local_error(&path))?;
        let mut target = tokio::fs::File::create(&partial)
            .await
            .map_err(transfer::local_error(&partial))?;
        let hash = copy_hashing(&mut source, &path, &mut target, meta.size, None).await;
        let hash = match hash {
            Ok(hash) => hash,
            Err(e) => {
                drop(target);
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(e.into());
            }
        };
        if hash != meta.hash {
            drop(target);
            let _ = tokio::fs::remove_file(&partial).await;
            self.found_corrupt(&meta.key);
            return Err(TransferError::HashMismatch.into());
        }
        target
            .sync_all()
            .await
            .map_err(transfer::local_error(&partial))?;
        tokio::fs::rename(&partial, out)
            .await
            .map_err(transfer::local_error(out))?;
        Ok(meta)
    }

    /// Removes every copy of a name held by this owner and its replicas, for its uploader: the
    /// removal must carry the uploader's signature, whoever passes it on.
    pub(crate) async fn remove_as_owner(&self, removal: Removal) -> Result<u32, FilesError> {
        let name = removal.name.clone();
        let key = Id::hash(name.as_bytes());
        let store = &self.inner.store;
        let Some(meta) = store.get(&key) else {
            return Err(FilesError::NotFound(name));
        };
        if removal.uploader != meta.uploader {
            return Err(FilesError::Refused(format!(
                "only the uploader of '{name}' may remove it"
            )));
        }
        removal
            .check(now())
            .map_err(|e| FilesError::Refused(e.to_string()))?;
        if !removal.removes(&meta) {
            return Err(FilesError::Refused(format!(
                "the removal of '{name}' is dated before the version held"
            )));
        }
        let view = self.view().await?;
        if view.predecessor.is_some() && !view.owns(&key) {
            return Err(FilesError::Refused(format!(
                "this node is not the owner of '{name}' (the ring is changing); try again"
            )));
        }
        let tombstone = Tombstone {
            removal,
            removed: meta,
        };
        self.apply_tombstone(&tombstone)?;
        // The drops run on their own; the answer counts those done within a moment, so it
        // goes out well inside the asker's request timeout even when a holder is down. The
        // removal is final already: this node keeps the signed tombstone, and a get asks it.
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        for holder in view.holders {
            let (access, done_tx) = (self.access(), done_tx.clone());
            let request = FileRequest::Drop {
                tombstone: tombstone.clone(),
            };
            tokio::spawn(async move {
                let answer = access.file_request(&holder, request).await;
                let _ = done_tx.send(matches!(answer, Ok(FileResponse::Dropped { held: true })));
            });
        }
        drop(done_tx);
        let mut copies = 0;
        let counting = async {
            while let Some(held) = done_rx.recv().await {
                copies += u32::from(held);
            }
        };
        let _ = tokio::time::timeout(REMOVE_ANSWER_WITHIN, counting).await;
        Ok(1 + copies)
    }
}

/// Copies `size` bytes between local files, hashing them.
async fn copy_hashing(
    source: &mut tokio::fs::File,
    path: &Path,
    target: &mut tokio::fs::File,
    size: u64,
    progress: Progress<'_>,
) -> Result<Hash, TransferError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    while done < size {
        let n = source
            .read(&mut buf)
            .await
            .map_err(transfer::local_error(path))?;
        if n == 0 {
            return Err(TransferError::Changed);
        }
        hasher.update(&buf[..n]);
        target
            .write_all(&buf[..n])
            .await
            .map_err(transfer::local_error(path))?;
        done += n as u64;
        if let Some(p) = progress {
            p(done, size);
        }
    }
    target.flush().await.map_err(transfer::local_error(path))?;
    Ok(*hasher.finalize().as_bytes())
}
