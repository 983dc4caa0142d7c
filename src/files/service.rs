//! The file service of a ring member: serves transfer streams, answers file requests, and
//! keeps every file at its owner with R-1 replicas on the owner's successors while nodes come
//! and go.

use std::path::Path;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::{PeerId, Stream};
use tokio::sync::Notify;

use super::names::check_name;
use super::ops::{Access, FilesError};
use super::signing;
use super::store::{FileMeta, Hash, Role, Store, StoreError};
use super::transfer::{
    self, read_frame, receive_bytes, send_bytes, unstalled, write_frame, GetReply, Progress,
    PutReply, Receiving, Trailer, TransferError, TransferRequest, CHUNK,
};
use super::FilesConfig;
use crate::chord::Id;
use crate::net::protocol::{
    FileRequest, FileResponse, InventoryEntry, Removal, MAX_INVENTORY, MAX_LIST_FILES,
};
use crate::net::{PeerRef, StatusReport, WireResponse};
use crate::node::{NodeError, NodeHandle, Service};

/// Most hand-offs and stale-replica checks one repair round does; the rest wait a round.
const REPAIR_BATCH: usize = 64;
/// Bytes the integrity scrub re-reads per round.
const SCRUB_BYTES: u64 = 64 * 1024 * 1024;
/// A copy re-read on request is not re-read again on request for this long.
const CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// A ring member's files. Cheap to clone.
#[derive(Clone)]
pub struct Files {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    node: NodeHandle,
    control: libp2p_stream::Control,
    /// This node's key: it signs the node's own uploads.
    identity: Keypair,
    config: FilesConfig,
    /// Wakes the repair loop early when the ring around this node changed.
    wake: Notify,
    /// Where the integrity scrub goes on next round.
    scrub_next: Mutex<Option<Id>>,
    /// Keys re-read on request lately, and when.
    checked: Mutex<std::collections::HashMap<Id, std::time::Instant>>,
}

impl Files {
    pub fn open(
        dir: &Path,
        node: NodeHandle,
        control: libp2p_stream::Control,
        identity: Keypair,
        config: FilesConfig,
    ) -> Result<Files, StoreError> {
        Ok(Files {
            inner: Arc::new(Inner {
                store: Store::open(dir)?,
                node,
                control,
                identity,
                config,
                wake: Notify::new(),
                scrub_next: Mutex::new(None),
                checked: Mutex::new(std::collections::HashMap::new()),
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// How this node reaches the ring for its own puts and gets.
    pub fn access(&self) -> Access {
        Access {
            node: self.inner.node.clone(),
            control: self.inner.control.clone(),
            via: None,
            identity: self.inner.identity.clone(),
            local: Some(self.clone()),
            timeout: self.inner.config.timeout,
            rate_limit: None,
            direct_wait: self.inner.config.direct_wait,
        }
    }

    /// What this node holds.
    pub fn list(&self) -> Vec<FileMeta> {
        self.inner.store.list()
    }

    // ---- serving streams ----

    /// Accepts transfer streams until the node stops. Always polling: libp2p-stream drops
    /// inbound streams nobody is waiting for.
    /// The transfers run in a set owned by this task, so stopping the node stops them too.
    pub async fn serve(self, mut incoming: libp2p_stream::IncomingStreams) {
        let mut transfers = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                next = incoming.next() => {
                    let Some((peer, stream)) = next else { return };
                    let files = self.clone();
                    transfers.spawn(async move {
                        if let Err(e) = files.serve_stream(peer, stream).await {
                            tracing::info!(%peer, "transfer ended with an error: {e}");
                        }
                    });
                }
                Some(_) = transfers.join_next(), if !transfers.is_empty() => {}
            }
        }
    }

    async fn serve_stream(&self, peer: PeerId, mut stream: Stream) -> Result<(), TransferError> {
        let request = tokio::time::timeout(
            self.inner.config.timeout,
            read_frame::<_, TransferRequest>(&mut stream),
        )
        .await
        .map_err(|_| TransferError::Protocol("no request in time".into()))??;
        match request {
            TransferRequest::Get { name, offset } => {
                self.serve_get(&mut stream, &name, offset).await
            }
            put @ TransferRequest::Put { .. } => {
                let answer = self.receive_put(peer, &mut stream, put).await;
                let reply = match answer {
                    Ok(reply) => reply,
                    Err(e) => PutReply::Failed(e.to_string()),
                };
                write_frame(&mut stream, &reply).await
            }
        }
    }

    async fn serve_get(
        &self,
        stream: &mut Stream,
        name: &str,
        offset: u64,
    ) -> Result<(), TransferError> {
        let key = Id::hash(name.as_bytes());
        let Some(meta) = self.inner.store.get(&key) else {
            return write_frame(stream, &GetReply::NotFound).await;
        };
        if offset > meta.size {
            return write_frame(
                stream,
                &GetReply::Refused(format!("offset {offset} is past the end")),
            )
            .await;
        }
        let path = self.inner.store.data_path(&key);
        let opened = async {
            let mut file = tokio::fs::File::open(&path).await?;
            tokio::io::AsyncSeekExt::seek(&mut file, std::io::SeekFrom::Start(offset)).await?;
            Ok::<_, std::io::Error>(file)
        };
        let file = match opened.await {
            Ok(file) => file.into_std().await,
            Err(e) => {
                // Say so, rather than leave the asker guessing; the scrub will drop the copy.
                let why = format!("the stored copy cannot be read: {e}");
                return write_frame(stream, &GetReply::Refused(why)).await;
            }
        };
        write_frame(stream, &GetReply::Sending { meta: meta.clone() }).await?;
        // No hashing here: the receiver verifies, and tells this node (Check) when it finds a
        // bad copy, so the hot path costs one hash, not two.
        send_bytes(file, &path, stream, meta.size - offset, None, None).await?;
        futures::AsyncWriteExt::close(stream).await?;
        Ok(())
    }

    /// The receiving side of a put: from an uploader (`uploader` is the sender itself) or from
    /// another ring member copying a file (replication, hand-off, repair).
    async fn receive_put(
        &self,
        peer: PeerId,
        stream: &mut Stream,
        header: TransferRequest,
    ) -> Result<PutReply, TransferError> {
        // A header that names its hash carries the signature of that version (a copy of a
        // stored file); one without (an upload, or its forward) is checked at the end.
        let header_signed = match &header {
            TransferRequest::Put {
                hash: Some(hash),
                signature,
                ..
            } => header.version(hash).is_some_and(|v| v.is_signed(signature)),
            _ => true,
        };
        let TransferRequest::Put {
            name,
            size,
            hash,
            role,
            uploader,
            created,
            signature,
        } = header
        else {
            return Err(TransferError::Protocol("not a put".into()));
        };
        if let Err(e) = check_name(&name) {
            return Ok(PutReply::Refused(e.to_string()));
        }
        let key = Id::hash(name.as_bytes());
        let store = &self.inner.store;
        let direct = uploader == peer.to_string();
        if !direct {
            // A copy passed on by another node must carry its uploader's signature.
            if !header_signed {
                return Ok(PutReply::Refused(format!(
                    "the copy of '{name}' does not carry a valid signature of its uploader"
                )));
            }
            if store.removed_since(&key, created) {
                return Ok(PutReply::Removed);
            }
        }
        if let Some(existing) = store.get(&key) {
            if existing.uploader != uploader {
                return Ok(PutReply::Refused(format!(
                    "'{name}' belongs to another peer ({})",
                    existing.uploader
                )));
            }
            if hash == Some(existing.hash) {
                // Identical copy already here: only the role may change.
                if role == Role::Owner {
                    store.set_role(&key, Role::Owner).map_err(store_error)?;
                }
                store.confirm(&key);
                let copies = if direct {
                    self.copies_after(role, &existing).await
                } else {
                    // A hand-off to a node that already has the bytes: answer at once (the
                    // sender waits under a stall bound) and replicate in the background.
                    if role == Role::Owner {
                        let (files, meta) = (self.clone(), existing.clone());
                        tokio::spawn(async move { files.replicate(&meta).await });
                    }
                    1
                };
                return Ok(PutReply::Done {
                    copies,
                    hash: existing.hash,
                });
            }
            if !direct && created <= existing.created {
                return Ok(PutReply::Refused(format!(
                    "an equal or newer version of '{name}' is here"
                )));
            }
        }
        // An owner passes an upload on to its replica holders while it arrives: the copies are
        // made in one pass instead of one after the other.
        let (holders, mut forward) = if direct && role == Role::Owner {
            self.open_forwards(&name, size, &uploader, created).await
        } else {
            (Vec::new(), Vec::new())
        };
        write_frame(stream, &PutReply::Ready).await?;
        let incoming = store.begin(&key).map_err(store_error)?;
        let path = store.data_path(&key);
        let into = Receiving {
            file: incoming.file.try_clone().map_err(TransferError::Io)?,
            path: &path,
            hasher: blake3::Hasher::new(),
            forward: &mut forward,
        };
        let hasher = receive_bytes(stream, into, size, None, 0).await?.hasher;
        let trailer: Trailer = unstalled(read_frame(stream)).await?;
        let computed: Hash = *hasher.finalize().as_bytes();
        if computed != trailer.hash || hash.is_some_and(|h| h != computed) {
            return Ok(PutReply::Failed(
                "the data did not match its hash; nothing was stored".into(),
            ));
        }
        // Uploads (and their forwards) sign in the trailer; copies of stored files in the header.
        let signature = if signature.is_empty() {
            trailer.signature
        } else {
            signature
        };
        let meta = FileMeta {
            name,
            key,
            size,
            hash: computed,
            role,
            uploader,
            created,
            signature,
        };
        if !meta.version().is_signed(&meta.signature) {
            return Ok(PutReply::Failed(
                "the uploader's signature does not match the data; nothing was stored".into(),
            ));
        }
        store.commit(incoming, meta.clone()).map_err(store_error)?;
        // A newer version lives: an older removal no longer applies.
        store.clear_removed(&key);
        let copies = if direct && role == Role::Owner {
            // The holders the forward missed get a copy now.
            let done = finish_forwards(&mut forward, &meta).await;
            let missed: Vec<PeerRef> = holders
                .into_iter()
                .zip(&done)
                .filter(|(_, ok)| !**ok)
                .map(|(holder, _)| holder)
                .collect();
            let forwarded = done.iter().filter(|ok| **ok).count() as u32;
            1 + forwarded + self.replicate_to(&meta, &missed).await
        } else {
            self.copies_after(role, &meta).await
        };
        Ok(PutReply::Done {
            copies,
            hash: computed,
        })
    }

    /// The replica holders, and beside each the stream that took the header of a forwarded
    /// upload (none where it did not).
    async fn open_forwards(
        &self,
        name: &str,
        size: u64,
        uploader: &str,
        created: u64,
    ) -> (Vec<PeerRef>, Vec<Option<Stream>>) {
        let Ok(holders) = self.replica_holders().await else {
            return (Vec::new(), Vec::new());
        };
        let header = TransferRequest::Put {
            name: name.into(),
            size,
            hash: None,
            role: Role::Replica,
            uploader: uploader.into(),
            created,
            signature: Vec::new(),
        };
        let access = self.access();
        let opens = holders.iter().map(|holder| {
            let (access, header) = (&access, &header);
            async move {
                let (mut stream, _) = access.open(holder).await.ok()?;
                write_frame(&mut stream, header).await.ok()?;
                match unstalled(read_frame::<_, PutReply>(&mut stream)).await {
                    Ok(PutReply::Ready) => Some(stream),
                    _ => None,
                }
            }
        });
        let streams = futures::future::join_all(opens).await;
        (holders, streams)
    }

    /// An owner replicates what it just stored before it answers; a replica is one copy.
    async fn copies_after(&self, role: Role, meta: &FileMeta) -> u32 {
        match role {
            Role::Owner => 1 + self.replicate(meta).await,
            Role::Replica => 1,
        }
    }

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
        if let Some(existing) = store.get(&key) {
            if existing.uploader != uploader {
                return Err(FilesError::Refused(format!(
                    "'{name}' belongs to another peer ({})",
                    existing.uploader
                )));
            }
        }
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
        let mut meta = FileMeta {
            name,
            key,
            size,
            hash,
            role: Role::Owner,
            uploader,
            created,
            signature: Vec::new(),
        };
        meta.signature = meta.version().sign(&self.inner.identity);
        store.commit(incoming, meta.clone())?;
        store.clear_removed(&key);
        Ok((1 + self.replicate(&meta).await, hash))
    }

    /// A get served from this node's own store: copy out, verifying the hash.
    pub(crate) async fn copy_out(&self, key: &Id, out: &Path) -> Result<FileMeta, FilesError> {
        let meta = self
            .inner
            .store
            .get(key)
            .ok_or_else(|| FilesError::Transfer(TransferError::NotFound(key.to_hex())))?;
        let path = self.inner.store.data_path(key);
        let partial = transfer::partial_path(out);
        let mut source = tokio::fs::File::open(&path)
            .await
            .map_err(transfer::local_error(&path))?;
        let mut target = tokio::fs::File::create(&partial)
            .await
            .map_err(transfer::local_error(&partial))?;
        let hash = copy_hashing(&mut source, &path, &mut target, meta.size, None).await?;
        if hash != meta.hash {
            drop(target);
            let _ = tokio::fs::remove_file(&partial).await;
            self.drop_corrupt(&meta);
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

    /// Removes every copy of a name held by this owner and its replicas, for its uploader.
    pub(crate) async fn remove_as_owner(
        &self,
        removal: Removal,
        requester: &PeerId,
    ) -> Result<u32, FilesError> {
        let name = removal.name.as_str();
        let key = Id::hash(name.as_bytes());
        let store = &self.inner.store;
        let Some(meta) = store.get(&key) else {
            return Err(FilesError::NotFound(name.into()));
        };
        if meta.uploader != requester.to_string() || removal.uploader != meta.uploader {
            return Err(FilesError::Refused(format!(
                "only the uploader of '{name}' may remove it"
            )));
        }
        check_removal(&removal)?;
        let status = self.inner.node.status().await?;
        if let Some(pred) = &status.predecessor {
            if !key.in_half_open(&pred.id, &status.node.id) {
                return Err(FilesError::Refused(format!(
                    "this node is not the owner of '{name}' (the ring is changing); try again"
                )));
            }
        }
        let holders = self.holders_in(status);
        store.remove(&key)?;
        store.mark_removed(&key, removal.at)?;
        let access = self.access();
        let mut copies = 1;
        for succ in holders {
            let drop = FileRequest::Drop {
                removal: removal.clone(),
            };
            if let Ok(FileResponse::Dropped { held: true }) = access.file_request(&succ, drop).await
            {
                copies += 1;
            }
        }
        Ok(copies)
    }

    // ---- replication and repair ----

    /// The successors that should hold replicas of what this node owns.
    async fn replica_holders(&self) -> Result<Vec<PeerRef>, NodeError> {
        Ok(self.holders_in(self.inner.node.status().await?))
    }

    /// The replica holders as a status report of this node names them.
    fn holders_in(&self, status: StatusReport) -> Vec<PeerRef> {
        let me = status.node.id;
        status
            .successors
            .into_iter()
            .filter(|s| s.id != me)
            .take(self.inner.config.replicas.saturating_sub(1))
            .collect()
    }

    /// Copies `meta` to the replica holders; returns how many now hold it.
    async fn replicate(&self, meta: &FileMeta) -> u32 {
        let Ok(holders) = self.replica_holders().await else {
            return 0;
        };
        self.replicate_to(meta, &holders).await
    }

    /// Copies `meta` to each of `holders`; returns how many now hold it.
    async fn replicate_to(&self, meta: &FileMeta, holders: &[PeerRef]) -> u32 {
        let pushes = holders.iter().map(|h| self.push(h, meta, Role::Replica));
        futures::future::join_all(pushes)
            .await
            .into_iter()
            .filter(|r| r.is_ok())
            .count() as u32
    }

    /// Sends a stored file to another member.
    async fn push(&self, to: &PeerRef, meta: &FileMeta, role: Role) -> Result<u32, FilesError> {
        let header = TransferRequest::Put {
            name: meta.name.clone(),
            size: meta.size,
            hash: Some(meta.hash),
            role,
            uploader: meta.uploader.clone(),
            created: meta.created,
            signature: meta.signature.clone(),
        };
        let path = self.inner.store.data_path(&meta.key);
        let ((copies, _), _) = self.access().put_to(to, &path, &header, None).await?;
        Ok(copies)
    }

    /// Informed leave: everything this node holds goes to its successor first.
    pub async fn hand_off_all(&self) {
        let Ok(status) = self.inner.node.status().await else {
            return;
        };
        let me = status.node.id;
        let Some(succ) = status.successors.into_iter().find(|s| s.id != me) else {
            return;
        };
        for meta in self.inner.store.list() {
            // The successor takes over this node's keys; what it held as replicas stays so.
            if let Err(e) = self.push(&succ, &meta, meta.role).await {
                tracing::warn!(name = meta.name, "hand-off failed: {e}");
            }
        }
    }

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

    /// One round: take over or hand off keys, make the replica holders hold what this node
    /// owns, return or drop replicas nobody confirms, and re-check some bytes on disk.
    pub async fn repair_round(&self) -> Result<(), FilesError> {
        let store = &self.inner.store;
        let status = self.inner.node.status().await?;
        let me = status.node.id;
        let alone = status.predecessor.is_none() && status.successors.iter().all(|s| s.id == me);
        let mut hand_off = Vec::new();
        for meta in store.list() {
            let mine = match &status.predecessor {
                Some(p) => meta.key.in_half_open(&p.id, &me),
                None => alone,
            };
            if mine && meta.role == Role::Replica {
                store.set_role(&meta.key, Role::Owner)?;
            } else if !mine && meta.role == Role::Owner && status.predecessor.is_some() {
                hand_off.push(meta);
            }
        }
        self.replicate_owned().await;
        for meta in hand_off.into_iter().take(REPAIR_BATCH) {
            self.hand_off(me, &meta).await;
        }
        let stale_after = self.inner.config.repair_interval * self.inner.config.stale_rounds;
        let stale: Vec<FileMeta> = store
            .list()
            .into_iter()
            .filter(|m| {
                m.role == Role::Replica
                    && store
                        .confirmed(&m.key)
                        .is_some_and(|t| t.elapsed() > stale_after)
            })
            .take(REPAIR_BATCH)
            .collect();
        for meta in stale {
            self.settle_stale(me, &meta).await;
        }
        self.scrub().await;
        Ok(())
    }

    /// Tells each replica holder what this node owns; sends what they lack. A holder that knows
    /// of a removal newer than this node's copy is believed: the copy goes.
    async fn replicate_owned(&self) {
        let owned: Vec<FileMeta> = self
            .inner
            .store
            .list()
            .into_iter()
            .filter(|m| m.role == Role::Owner)
            .collect();
        if owned.is_empty() {
            return;
        }
        let Ok(holders) = self.replica_holders().await else {
            return;
        };
        let access = self.access();
        for holder in &holders {
            for batch in owned.chunks(MAX_INVENTORY) {
                let entries = batch.iter().map(inventory_entry).collect();
                let Ok(FileResponse::Inventory { missing, removed }) = access
                    .file_request(holder, FileRequest::Inventory { entries })
                    .await
                else {
                    continue;
                };
                for meta in batch {
                    if removed.contains(&meta.key) {
                        self.forget_removed(meta);
                    } else if missing.contains(&meta.key) {
                        match self.push(holder, meta, Role::Replica).await {
                            Err(FilesError::Transfer(TransferError::Removed)) => {
                                self.forget_removed(meta)
                            }
                            Err(e) => tracing::debug!(name = meta.name, "replication failed: {e}"),
                            Ok(_) => {}
                        }
                    }
                }
            }
        }
    }

    /// Another node knows this copy was removed by its uploader after it was made.
    fn forget_removed(&self, meta: &FileMeta) {
        if self.drop_if_unchanged(meta) {
            tracing::info!(
                name = meta.name,
                "removed by its uploader; dropped this copy"
            );
            // Removed after this copy was made: at least as late as its creation.
            let _ = self.inner.store.mark_removed(&meta.key, meta.created);
        }
    }

    /// Drops the copy `seen` describes, unless it was replaced or removed meanwhile (then what
    /// was judged is not what is there now). Says whether it dropped it.
    fn drop_if_unchanged(&self, seen: &FileMeta) -> bool {
        let store = &self.inner.store;
        if !store.get(&seen.key).is_some_and(|now| now == *seen) {
            return false;
        }
        if let Err(e) = store.remove(&seen.key) {
            tracing::warn!(name = seen.name, "cannot drop the copy: {e}");
            return false;
        }
        true
    }

    /// A key this node owned now belongs to someone else (a node joined before it).
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
                let _ = self.inner.store.set_role(&meta.key, Role::Replica);
            }
            Err(FilesError::Transfer(TransferError::Removed)) => self.forget_removed(meta),
            Err(e) => tracing::debug!(name = meta.name, "hand-off failed: {e}"),
        }
    }

    /// A replica its owner has stopped confirming: make sure the owner has the file, then let
    /// the copy go (the owner asks for it again if this node should hold it after all).
    async fn settle_stale(&self, me: Id, meta: &FileMeta) {
        let store = &self.inner.store;
        let access = self.access();
        let Ok(found) = access.lookup(meta.key).await else {
            return;
        };
        if found.owner.id == me {
            let _ = store.set_role(&meta.key, Role::Owner);
            return;
        }
        let entries = vec![inventory_entry(meta)];
        match access
            .file_request(&found.owner, FileRequest::Inventory { entries })
            .await
        {
            Ok(FileResponse::Inventory { removed, .. }) if removed.contains(&meta.key) => {
                self.forget_removed(meta);
            }
            Ok(FileResponse::Inventory { missing, .. }) if missing.contains(&meta.key) => {
                match self.push(&found.owner, meta, Role::Owner).await {
                    Ok(_) => store.confirm(&meta.key),
                    Err(e) => tracing::debug!(name = meta.name, "return to owner failed: {e}"),
                }
            }
            Ok(FileResponse::Inventory { .. }) => {
                let _ = store.remove(&meta.key);
            }
            _ => {}
        }
    }

    /// Drops a copy found not to match its hash; repair brings a good one back.
    fn drop_corrupt(&self, seen: &FileMeta) {
        if self.drop_if_unchanged(seen) {
            tracing::warn!(name = seen.name, "stored copy was corrupt; dropped it");
        }
    }

    /// Someone got a copy of `key` from here that did not match its hash: re-read it now (at
    /// most once a minute per key, so asking cannot keep this node hashing).
    async fn on_check(&self, key: Id) -> FileResponse {
        let Some(meta) = self.inner.store.get(&key) else {
            return FileResponse::Checked { good: false };
        };
        {
            let mut checked = self.inner.checked.lock().unwrap_or_else(|e| e.into_inner());
            checked.retain(|_, at| at.elapsed() < CHECK_EVERY);
            if checked.contains_key(&key) {
                return FileResponse::Checked { good: true };
            }
            checked.insert(key, std::time::Instant::now());
        }
        let path = self.inner.store.data_path(&key);
        let hash = tokio::task::spawn_blocking(move || hash_file(&path)).await;
        let good = matches!(hash, Ok(Ok(h)) if h == meta.hash);
        if !good {
            self.drop_corrupt(&meta);
        }
        FileResponse::Checked { good }
    }

    /// Re-reads the next file(s) on disk, up to [`SCRUB_BYTES`] a round, off the async threads.
    async fn scrub(&self) {
        let files = self.clone();
        let corrupt = tokio::task::spawn_blocking(move || files.scrub_some())
            .await
            .unwrap_or_default();
        for meta in corrupt {
            self.drop_corrupt(&meta);
        }
    }

    /// One scrub step (blocking): the copies that no longer match their hash.
    fn scrub_some(&self) -> Vec<FileMeta> {
        let store = &self.inner.store;
        let files = store.list();
        let mut corrupt = Vec::new();
        let mut next = self
            .inner
            .scrub_next
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let start = next
            .map(|k| files.partition_point(|m| m.key < k))
            .unwrap_or(0);
        let mut budget = SCRUB_BYTES;
        *next = None;
        for meta in files.iter().cycle().skip(start).take(files.len()) {
            if budget < meta.size && budget < SCRUB_BYTES {
                *next = Some(meta.key);
                break;
            }
            budget = budget.saturating_sub(meta.size);
            match hash_file(&store.data_path(&meta.key)) {
                Ok(hash) if hash == meta.hash => {}
                // Unreadable or changed: drop_corrupt checks it is still this copy.
                _ => corrupt.push(meta.clone()),
            }
        }
        corrupt
    }

    fn on_inventory(&self, entries: Vec<InventoryEntry>) -> FileResponse {
        let store = &self.inner.store;
        let mut missing = Vec::new();
        let mut removed = Vec::new();
        for entry in entries.into_iter().take(MAX_INVENTORY) {
            if store.get(&entry.key).is_some_and(|m| m.hash == entry.hash) {
                store.confirm(&entry.key);
            } else if store.removed_since(&entry.key, entry.created) {
                removed.push(entry.key);
            } else {
                missing.push(entry.key);
            }
        }
        FileResponse::Inventory { missing, removed }
    }

    /// A page of what this node holds, in key order.
    fn list_page(&self, after: Option<Id>) -> FileResponse {
        let files = self.inner.store.list();
        let start = after.map_or(0, |k| files.partition_point(|m| m.key <= k));
        let rest = &files[start..];
        FileResponse::List {
            files: rest.iter().take(MAX_LIST_FILES).cloned().collect(),
            more: rest.len() > MAX_LIST_FILES,
        }
    }

    /// A removal passed on by the owner: it counts if its uploader signed it (whoever relays
    /// it), and only for copies of that uploader made before it.
    fn on_drop(&self, removal: Removal) -> Result<FileResponse, FilesError> {
        check_removal(&removal)?;
        let key = Id::hash(removal.name.as_bytes());
        let store = &self.inner.store;
        let held = match store.get(&key) {
            Some(meta) if meta.uploader != removal.uploader => {
                return Err(FilesError::Refused(format!(
                    "'{}' belongs to another peer",
                    removal.name
                )))
            }
            Some(meta) if meta.created <= removal.at => store.remove(&key)?.is_some(),
            _ => false,
        };
        store.mark_removed(&key, removal.at)?;
        Ok(FileResponse::Dropped { held })
    }
}

/// A removal must carry its uploader's signature.
fn check_removal(removal: &Removal) -> Result<(), FilesError> {
    if signing::removal_is_signed(removal) {
        Ok(())
    } else {
        Err(FilesError::Refused(format!(
            "the removal of '{}' does not carry its uploader's signature",
            removal.name
        )))
    }
}

fn inventory_entry(meta: &FileMeta) -> InventoryEntry {
    InventoryEntry {
        key: meta.key,
        hash: meta.hash,
        created: meta.created,
    }
}

/// Ends forwarded uploads: the trailer with the uploader's hash and signature, then each
/// holder's answer (once it has committed its copy). Says, per slot, whether that holder has
/// the copy now.
async fn finish_forwards(forward: &mut [Option<Stream>], meta: &FileMeta) -> Vec<bool> {
    let trailer = Trailer {
        hash: meta.hash,
        signature: meta.signature.clone(),
    };
    let finish = forward.iter_mut().map(|slot| {
        let trailer = &trailer;
        async move {
            let Some(stream) = slot.as_mut() else {
                return false;
            };
            let answer = async {
                write_frame(stream, trailer).await?;
                unstalled(read_frame::<_, PutReply>(stream)).await
            };
            match answer.await {
                Ok(PutReply::Done { hash, .. }) if hash == meta.hash => true,
                Ok(other) => {
                    tracing::debug!(name = meta.name, "forwarded copy: {other:?}");
                    false
                }
                Err(e) => {
                    tracing::debug!(name = meta.name, "forwarded copy failed: {e}");
                    false
                }
            }
        }
    });
    futures::future::join_all(finish).await
}

fn store_error(e: StoreError) -> TransferError {
    TransferError::Protocol(e.to_string())
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

fn hash_file(path: &Path) -> std::io::Result<Hash> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(std::fs::File::open(path)?)?;
    Ok(*hasher.finalize().as_bytes())
}

impl Service for Files {
    fn handle(&self, from: PeerId, request: FileRequest) -> BoxFuture<'static, WireResponse> {
        let files = self.clone();
        Box::pin(async move {
            let response = match request {
                FileRequest::List { after } => Ok(files.list_page(after)),
                FileRequest::Inventory { entries } => Ok(files.on_inventory(entries)),
                FileRequest::Drop { removal } => files.on_drop(removal),
                FileRequest::Check { key } => Ok(files.on_check(key).await),
                FileRequest::Remove { removal } => files
                    .remove_as_owner(removal, &from)
                    .await
                    .map(|copies| FileResponse::Removed { copies }),
            };
            match response {
                Ok(r) => WireResponse::Files(r),
                Err(e) => WireResponse::Error(e.to_string()),
            }
        })
    }

    fn ring_changed(&self) {
        self.inner.wake.notify_one();
    }
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files")
            .field("store", &self.inner.store)
            .finish()
    }
}
