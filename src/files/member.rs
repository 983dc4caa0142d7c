//! A ring member's files: the handle every driver shares (the store, the node, the key), and
//! the few helpers they all need: this node's view of the ring, pushing a stored copy, and
//! verifying what a peer says about a key.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use libp2p::identity::Keypair;
use libp2p::PeerId;
use tokio::sync::Notify;

use super::error::FilesError;
use super::slots::{Serving, TransferCounts};
use super::store::{Store, StoreError};
use super::transfer::TRANSFER_PROTOCOL;
use super::FilesConfig;
use crate::chord::Id;
use crate::net::protocol::{FileRequest, FileResponse, StorageReport};
use crate::net::{PeerRef, StatusReport, WireResponse};
use crate::node::{Node, NodeConfig, NodeError, NodeHandle, Service, ServiceContext};
use crate::records::{unix_millis, FileMeta, Tombstone};
use crate::replica::{self, Said};

/// A ring member's files. Cheap to clone.
#[derive(Clone)]
pub struct Files {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) store: Store,
    pub(super) node: NodeHandle,
    pub(super) control: libp2p_stream::Control,
    /// This node's key: it signs the node's own uploads.
    pub(super) identity: Keypair,
    pub(super) config: FilesConfig,
    /// Wakes the repair loop early when the ring around this node changed.
    pub(super) wake: Notify,
    /// Where the integrity scrub goes on next round.
    pub(super) scrub_next: Mutex<Option<Id>>,
    /// Keys re-read on request lately, and when.
    pub(super) checked: Mutex<HashMap<Id, std::time::Instant>>,
    /// Copies whose bytes were read and did not match their hash: not served, replaced as
    /// soon as a good copy is fetched.
    pub(super) corrupt: Mutex<BTreeSet<Id>>,
    /// Tombstones already handed to their key's owner since this node started.
    pub(super) stones_handed: Mutex<BTreeSet<Id>>,
    /// The store's directory when the node has no data dir: removed when the service goes.
    pub(super) _scratch: Option<tempfile::TempDir>,
    /// Owned keys that fewer than R - 1 holders said they held in the last repair round.
    pub(super) under_replicated: std::sync::atomic::AtomicU64,
    /// Inbound transfers under way (bounded by the config's limits).
    pub(super) serving: Mutex<Serving>,
}

/// A poisoned lock still holds consistent data here (single inserts and removes).
pub(super) fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// This node's place on the ring, as its status report shows it.
pub(super) struct View {
    pub me: Id,
    pub predecessor: Option<Id>,
    pub alone: bool,
    /// Every successor other than this node.
    pub successors: Vec<Id>,
    /// The successors that should hold replicas of what this node owns.
    pub holders: Vec<PeerRef>,
    /// The successors after those, where a copy goes when a holder is full.
    pub spares: Vec<PeerRef>,
}

impl View {
    pub fn owns(&self, key: &Id) -> bool {
        replica::owns(key, &self.me, self.predecessor.as_ref(), self.alone)
    }

    /// The predecessor or one of the successors.
    pub fn is_neighbour(&self, id: &Id) -> bool {
        self.predecessor.as_ref() == Some(id) || self.successors.contains(id)
    }

    pub fn place(&self) -> replica::plan::Place {
        replica::plan::Place {
            me: self.me,
            predecessor: self.predecessor,
            alone: self.alone,
        }
    }
}

impl Files {
    /// The file service of a node whose store lives in `dir`.
    pub fn open(
        dir: &Path,
        node: NodeHandle,
        control: libp2p_stream::Control,
        identity: Keypair,
        config: FilesConfig,
    ) -> Result<Files, StoreError> {
        Files::open_inner(dir, None, node, control, identity, config)
    }

    fn open_inner(
        dir: &Path,
        scratch: Option<tempfile::TempDir>,
        node: NodeHandle,
        control: libp2p_stream::Control,
        identity: Keypair,
        config: FilesConfig,
    ) -> Result<Files, StoreError> {
        Ok(Files {
            inner: Arc::new(Inner {
                store: Store::open_limited(dir, config.max_storage)?,
                node,
                control,
                identity,
                config,
                wake: Notify::new(),
                scrub_next: Mutex::new(None),
                checked: Mutex::new(HashMap::new()),
                corrupt: Mutex::new(BTreeSet::new()),
                stones_handed: Mutex::new(BTreeSet::new()),
                _scratch: scratch,
                serving: Mutex::default(),
                under_replicated: Default::default(),
            }),
        })
    }

    /// Starts a ring member: a node whose file service is this one, keeping its store under
    /// the node's data dir (`files/`), or in a temporary directory removed when it stops.
    pub async fn start_node(config: NodeConfig, files: FilesConfig) -> Result<Node, NodeError> {
        Node::start_with_service(
            config,
            Box::new(move |context: ServiceContext| {
                let place_error = |path: &Path, reason: String| NodeError::DataDir {
                    path: path.display().to_string(),
                    reason,
                };
                let (dir, scratch) = match &context.data_dir {
                    Some(dir) => (dir.join("files"), None),
                    None => {
                        let tmp = tempfile::tempdir()
                            .map_err(|e| place_error(&std::env::temp_dir(), e.to_string()))?;
                        (tmp.path().to_path_buf(), Some(tmp))
                    }
                };
                let mut control = context.control;
                let service = Files::open_inner(
                    &dir,
                    scratch,
                    context.handle,
                    control.clone(),
                    context.identity,
                    files,
                )
                .map_err(|e| place_error(&dir, e.to_string()))?;
                let incoming = control
                    .accept(TRANSFER_PROTOCOL)
                    .map_err(|e| place_error(&dir, e.to_string()))?;
                let tasks = vec![
                    tokio::spawn(service.clone().serve(incoming)),
                    tokio::spawn(service.clone().repair_loop()),
                ];
                Ok((Arc::new(service) as Arc<dyn Service>, tasks))
            }),
        )
        .await
    }

    /// The file service of `node`, if it was started by [`Files::start_node`].
    pub fn of(node: &Node) -> Option<&Files> {
        node.service()?.as_any().downcast_ref::<Files>()
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The node's metrics, which repairs and transfers count into.
    pub fn metrics(&self) -> &crate::metrics::NodeMetrics {
        self.inner.node.metrics()
    }

    /// Owned keys that fewer than R - 1 replica holders said they held when the last repair
    /// round asked (for metrics).
    pub fn under_replicated(&self) -> u64 {
        self.inner
            .under_replicated
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Inbound transfers served now and since the node started (for metrics).
    pub fn transfers(&self) -> TransferCounts {
        Serving::counts(&self.inner.serving)
    }

    /// What this node holds.
    pub fn list(&self) -> Vec<FileMeta> {
        self.inner.store.list()
    }

    pub(super) fn replicas(&self) -> usize {
        self.inner.config.replicas.max(1)
    }

    /// This node's view of the ring now.
    pub(super) async fn view(&self) -> Result<View, NodeError> {
        Ok(self.view_of(self.inner.node.status().await?))
    }

    pub(super) fn view_of(&self, status: StatusReport) -> View {
        let me = status.node.id;
        let alone = status.predecessor.is_none() && status.successors.iter().all(|s| s.id == me);
        let others: Vec<PeerRef> = status
            .successors
            .iter()
            .filter(|s| s.id != me)
            .cloned()
            .collect();
        let spares = others.iter().skip(self.replicas() - 1).cloned().collect();
        View {
            me,
            spares,
            predecessor: status.predecessor.as_ref().map(|p| p.id),
            alone,
            successors: status
                .successors
                .iter()
                .map(|s| s.id)
                .filter(|id| *id != me)
                .collect(),
            holders: status
                .successors
                .into_iter()
                .filter(|s| s.id != me)
                .take(self.replicas() - 1)
                .collect(),
        }
    }

    pub fn is_corrupt(&self, key: &Id) -> bool {
        locked(&self.inner.corrupt).contains(key)
    }

    /// What this node itself would answer a `Stat` with; a refusal when its copy's record
    /// cannot be read now (out of descriptors, a disk error): never "not held" for a copy
    /// that is here.
    pub(super) fn said_here(&self, key: &Id) -> Result<Said, FilesError> {
        let held = self.inner.store.try_get(key).map_err(unreadable)?;
        Ok(match held.filter(|_| !self.is_corrupt(key)) {
            Some(meta) => Said::Holds(meta),
            None => newest_stone(self.inner.store.tombstones(key)),
        })
    }

    /// Drops the copy `seen` describes, unless it was replaced or removed meanwhile (then what
    /// was judged is not what is there now). Says whether it dropped it.
    pub(super) fn drop_if_unchanged(&self, seen: &FileMeta) -> bool {
        let store = &self.inner.store;
        if !store.get(&seen.key).is_some_and(|now| now == *seen) {
            return false;
        }
        if let Err(e) = store.remove(&seen.key) {
            tracing::warn!(name = seen.name, "cannot drop the copy: {e}");
            return false;
        }
        locked(&self.inner.corrupt).remove(&seen.key);
        true
    }

    /// A removal its uploader signed reached this node: keep the proof, drop the copy it
    /// removes. The caller has checked `stone` (signatures, times). Says whether a copy went.
    pub(super) fn apply_tombstone(&self, stone: &Tombstone) -> Result<bool, StoreError> {
        let store = &self.inner.store;
        let Some(held) = store.get(&stone.key()) else {
            return Ok(false);
        };
        if !stone.removal.removes(&held) {
            return Ok(false);
        }
        // The proof first: a crash in between leaves a tombstone, never a revived copy.
        store.add_tombstone(stone)?;
        let dropped = self.drop_if_unchanged(&held);
        if dropped {
            tracing::info!(
                name = held.name,
                "removed by its uploader; dropped this copy"
            );
        }
        Ok(dropped)
    }
}

/// A node's file service, for nodes started by [`Files::start_node`].
pub trait HasFiles {
    fn files(&self) -> Option<&Files>;
}

impl HasFiles for Node {
    fn files(&self) -> Option<&Files> {
        Files::of(self)
    }
}

/// A held copy that cannot be read now, as the refusal a peer gets (the cause, not the path).
pub(super) fn unreadable(e: StoreError) -> FilesError {
    let cause = match e {
        StoreError::Io { source, .. } => source.to_string(),
        other => other.to_string(),
    };
    FilesError::Refused(format!("the stored copy cannot be read now: {cause}"))
}

/// The latest verified removal among `stones`, as a `Stat` answer.
fn newest_stone(stones: Vec<Tombstone>) -> Said {
    match stones.into_iter().max_by_key(|t| t.removal.at) {
        Some(stone) => Said::Removed(stone),
        None => Said::Nothing,
    }
}

/// What a peer's `Stat` answer about `name` is worth: only records signed by their uploader
/// for that very name, dated sanely, count.
pub(super) fn verify_stat(
    name: &str,
    held: Option<FileMeta>,
    removed: Vec<Tombstone>,
    now: u64,
) -> Said {
    if let Some(meta) = held.filter(|m| m.check(name, now).is_ok()) {
        return Said::Holds(meta);
    }
    newest_stone(
        removed
            .into_iter()
            .filter(|t| t.removal.name == name && t.check(now).is_ok())
            .collect(),
    )
}

impl Service for Files {
    fn handle(&self, from: PeerId, request: FileRequest) -> BoxFuture<'static, WireResponse> {
        let files = self.clone();
        Box::pin(async move {
            let response = match request {
                FileRequest::List { after } => files.list_page(after),
                FileRequest::Inventory { entries } => files.on_inventory(&from, entries).await,
                FileRequest::Drop { tombstone } => files.on_drop(&from, tombstone).await,
                FileRequest::Check { key } => files.on_check(key).await,
                FileRequest::Stat { key } => files.on_stat(&key),
                FileRequest::Prove { key, nonce } => files.on_prove(key, nonce).await,
                FileRequest::Remove { removal } => files
                    .remove_as_owner(removal)
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

    fn before_leave(&self) -> BoxFuture<'static, usize> {
        let files = self.clone();
        Box::pin(async move { files.hand_off_all().await })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn storage(&self) -> Option<StorageReport> {
        let usage = self.inner.store.usage();
        Some(StorageReport {
            used: usage.used,
            limit: usage.limit,
            files: usage.files,
        })
    }
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files")
            .field("store", &self.inner.store)
            .finish()
    }
}

/// Now, for records' time checks (the drivers' clock).
pub(super) fn now() -> u64 {
    unix_millis()
}
