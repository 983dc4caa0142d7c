//! Files held by this node, on disk. Each file is stored under its key in hex (never under the
//! user's name) with a JSON metadata file beside it. Writes go to a temp file, are fsynced and
//! renamed, so a crash or a broken transfer never leaves a partial file visible; the index is
//! rebuilt from the metadata files at start.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::chord::Id;
pub use crate::records::{hash_hex, unix_millis, FileMeta, Hash, Held, Role, Tombstone};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error at {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no file named '{0}' here")]
    NotFound(String),
    #[error(
        "full: {needed} more bytes would pass this node's storage limit of {limit} bytes \
         ({used} used; --max-storage)"
    )]
    Full { needed: u64, used: u64, limit: u64 },
    /// The commit's last check (the name taken meanwhile, a removal that arrived) said no.
    #[error("{0}")]
    Refused(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// One file in the in-memory index: its [`Held`] summary without the key (the map's key),
/// and two times in milliseconds after the store opened (0: never), to stay small.
struct Entry {
    size: u64,
    hash: Hash,
    created: u64,
    uploader: Arc<str>,
    role: Role,
    /// Last time the owner confirmed it wants this replica here (in memory only; 0: not since
    /// this node started, so the first repair round checks it).
    confirmed: u64,
    /// Last time this node itself settled the copy (looked up its holders): not a word from
    /// the owner, so it never lets the copy vouch for the key.
    checked: u64,
}

impl Entry {
    fn held(&self, key: Id) -> Held {
        Held {
            key,
            size: self.size,
            hash: self.hash,
            created: self.created,
            uploader: self.uploader.clone(),
            role: self.role,
        }
    }

    fn same_version(&self, meta: &FileMeta) -> bool {
        self.hash == meta.hash
            && self.created == meta.created
            && self.size == meta.size
            && *self.uploader == *meta.uploader
    }
}

/// What the store holds, in key order. Names and signatures stay on disk (the metadata
/// files): at 10^5 or 10^6 files they would be most of the memory, and only pages, gets and
/// pushes need them.
#[derive(Default)]
struct Index {
    entries: BTreeMap<Id, Entry>,
    /// Each uploader's peer id once, shared by its files' entries.
    uploaders: HashSet<Arc<str>>,
}

impl Index {
    fn insert(&mut self, meta: &FileMeta, confirmed: u64) -> Option<Entry> {
        let uploader = match self.uploaders.get(meta.uploader.as_str()) {
            Some(known) => known.clone(),
            None => {
                let new: Arc<str> = meta.uploader.as_str().into();
                self.uploaders.insert(new.clone());
                new
            }
        };
        let entry = Entry {
            size: meta.size,
            hash: meta.hash,
            created: meta.created,
            uploader,
            role: meta.role,
            confirmed,
            checked: 0,
        };
        let replaced = self.entries.insert(meta.key, entry);
        if let Some(old) = &replaced {
            self.forget_uploader(&old.uploader);
        }
        replaced
    }

    fn remove(&mut self, key: &Id) -> Option<Entry> {
        let removed = self.entries.remove(key)?;
        self.forget_uploader(&removed.uploader);
        Some(removed)
    }

    /// Drops an uploader's shared text once no entry names it (the set and `uploader` are
    /// the last two holders).
    fn forget_uploader(&mut self, uploader: &Arc<str>) {
        if Arc::strong_count(uploader) <= 2 {
            self.uploaders.remove(uploader);
        }
    }
}

/// The files of one node.
pub struct Store {
    dir: PathBuf,
    index: Mutex<Index>,
    /// Keys with at least one tombstone on disk.
    removed: Mutex<BTreeSet<Id>>,
    /// Bytes this store may use (`None`: no limit), what it uses, and what transfers under
    /// way have reserved.
    limit: Option<u64>,
    space: Mutex<Space>,
    /// What the entries' times count from.
    opened: Instant,
}

#[derive(Debug, Default)]
struct Space {
    used: u64,
    reserved: u64,
}

/// What every file and every tombstone costs besides its bytes (metadata, directory entries).
pub const OVERHEAD: u64 = 4096;

/// Room held for a transfer under way; given back when dropped (the commit counts the file).
#[derive(Debug)]
pub struct Reservation<'a> {
    store: &'a Store,
    bytes: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut space = self.store.space_lock();
        space.reserved = space.reserved.saturating_sub(self.bytes);
    }
}

/// How much a store holds, against its limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub used: u64,
    pub limit: Option<u64>,
    pub files: u64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

/// A file being received: invisible until [`Store::commit`].
#[derive(Debug)]
pub struct Incoming {
    pub file: fs::File,
    path: PathBuf,
}

impl Drop for Incoming {
    fn drop(&mut self) {
        // Not committed (the rename moved it otherwise): remove the partial data.
        let _ = fs::remove_file(&self.path);
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`, dropping leftovers of interrupted transfers.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_limited(dir, None)
    }

    /// The same, holding at most `limit` bytes (files, tombstones and transfers under way).
    pub fn open_limited(dir: &Path, limit: Option<u64>) -> Result<Store, StoreError> {
        let tmp = dir.join("tmp");
        fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        for entry in fs::read_dir(&tmp).map_err(io(&tmp))?.flatten() {
            let _ = fs::remove_file(entry.path());
        }
        let mut index = Index::default();
        let mut removed = BTreeSet::new();
        for entry in fs::read_dir(dir).map_err(io(dir))?.flatten() {
            let path = entry.path();
            let ext = path.extension().and_then(|e| e.to_str());
            if ext == Some("removed") {
                let stem = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default();
                if let Some(key) = Id::from_hex(stem) {
                    removed.insert(key);
                }
                continue;
            }
            if ext != Some("json") {
                continue;
            }
            let meta: Option<FileMeta> = fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            match meta {
                Some(meta) if Store::data_path_in(dir, &meta.key).exists() => {
                    index.insert(&meta, 0);
                }
                _ => {
                    tracing::warn!(path = %path.display(), "ignoring unreadable or orphaned metadata")
                }
            }
        }
        let used = index
            .entries
            .values()
            .map(|e| e.size + OVERHEAD)
            .sum::<u64>()
            + removed.len() as u64 * OVERHEAD;
        Ok(Store {
            dir: dir.to_path_buf(),
            index: Mutex::new(index),
            removed: Mutex::new(removed),
            limit,
            space: Mutex::new(Space { used, reserved: 0 }),
            opened: Instant::now(),
        })
    }

    fn space_lock(&self) -> std::sync::MutexGuard<'_, Space> {
        self.space.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds room for a file of `size` bytes about to be received; refused when it would pass
    /// the limit (before any byte moves).
    pub fn reserve(&self, size: u64) -> Result<Reservation<'_>, StoreError> {
        let bytes = size.saturating_add(OVERHEAD);
        let mut space = self.space_lock();
        if let Some(limit) = self.limit {
            let after = space
                .used
                .saturating_add(space.reserved)
                .saturating_add(bytes);
            if after > limit {
                return Err(StoreError::Full {
                    needed: bytes,
                    used: space.used + space.reserved,
                    limit,
                });
            }
        }
        space.reserved += bytes;
        Ok(Reservation { store: self, bytes })
    }

    /// What the store holds, against its limit.
    pub fn usage(&self) -> Usage {
        let files = self.lock().entries.len() as u64;
        let space = self.space_lock();
        Usage {
            used: space.used + space.reserved,
            limit: self.limit,
            files,
        }
    }

    fn account(&self, added: u64, freed: u64) {
        let mut space = self.space_lock();
        space.used = space.used.saturating_add(added).saturating_sub(freed);
    }

    fn data_path_in(dir: &Path, key: &Id) -> PathBuf {
        dir.join(format!("{}.data", key.to_hex()))
    }

    /// Where the bytes of `key` live (only inside the store's directory).
    pub fn data_path(&self, key: &Id) -> PathBuf {
        Store::data_path_in(&self.dir, key)
    }

    /// Where the outboard of `key`'s copy is kept (see `files::outboard`).
    pub fn tree_path(&self, key: &Id) -> PathBuf {
        self.dir.join(format!("{}.tree", key.to_hex()))
    }

    fn meta_path(&self, key: &Id) -> PathBuf {
        self.dir.join(format!("{}.json", key.to_hex()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        // A panic while holding the lock cannot leave the map half-updated (single inserts and
        // removes), so a poisoned lock is still safe to use.
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Now, as an entry's time (never 0).
    fn stamp(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64 + 1
    }

    fn instant(&self, stamp: u64) -> Option<Instant> {
        let since = std::time::Duration::from_millis(stamp.checked_sub(1)?);
        Some(self.opened + since)
    }

    /// What is held under `key`, from memory.
    pub fn held(&self, key: &Id) -> Option<Held> {
        self.lock().entries.get(key).map(|e| e.held(*key))
    }

    /// Every held key with its role, in key order (from memory).
    pub fn keys(&self) -> Vec<(Id, Role)> {
        let index = self.lock();
        index.entries.iter().map(|(k, e)| (*k, e.role)).collect()
    }

    /// What is held, in key order (from memory).
    pub fn helds(&self) -> Vec<Held> {
        let index = self.lock();
        index.entries.iter().map(|(k, e)| e.held(*k)).collect()
    }

    /// The whole record of what is held under `key` (its name and signature read from disk).
    /// A record that cannot be read now is logged and taken as absent: callers only serve,
    /// push or compare with it, never delete on its absence.
    pub fn get(&self, key: &Id) -> Option<FileMeta> {
        self.try_get(key).unwrap_or_else(|e| {
            tracing::warn!("{e}");
            None
        })
    }

    /// The same, with the error of a record that is held but cannot be read.
    pub fn try_get(&self, key: &Id) -> Result<Option<FileMeta>, StoreError> {
        let index = self.lock();
        self.read_entry(&index, key)
    }

    /// Reads `key`'s metadata file, which must agree with the index (the caller holds the
    /// lock, so no commit moves it meanwhile).
    fn read_entry(&self, index: &Index, key: &Id) -> Result<Option<FileMeta>, StoreError> {
        let Some(entry) = index.entries.get(key) else {
            return Ok(None);
        };
        let path = self.meta_path(key);
        let bytes = fs::read(&path).map_err(io(&path))?;
        let mut meta: FileMeta =
            serde_json::from_slice(&bytes).map_err(|e| io(&path)(std::io::Error::other(e)))?;
        if meta.key != *key || !entry.same_version(&meta) {
            let e = std::io::Error::other("the metadata file no longer matches the index");
            return Err(io(&path)(e));
        }
        meta.role = entry.role;
        Ok(Some(meta))
    }

    /// Every held file's whole record (read from disk; for local listings and tests). A
    /// record that cannot be read now is logged and left out.
    pub fn list(&self) -> Vec<FileMeta> {
        let keys = self.keys();
        keys.iter().filter_map(|(key, _)| self.get(key)).collect()
    }

    /// At most `max` files with keys after `after` (from the start when `None`), in key
    /// order, and whether more follow: a page, read without copying the index. A record that
    /// cannot be read fails the page (a listing never leaves out a file it holds); one
    /// removed while the page is read is left out.
    pub fn page(&self, after: Option<Id>, max: usize) -> Result<(Vec<FileMeta>, bool), StoreError> {
        use std::ops::Bound;
        // The keys under the lock; each record read with the lock taken for it alone, so a
        // page of 512 metadata files never holds up the store's other work for all of them.
        let (keys, more) = {
            let index = self.lock();
            let from = after.map_or(Bound::Unbounded, Bound::Excluded);
            let mut range = index.entries.range((from, Bound::Unbounded));
            let keys: Vec<Id> = range.by_ref().take(max).map(|(key, _)| *key).collect();
            (keys, range.next().is_some())
        };
        let mut page = Vec::with_capacity(keys.len());
        for key in &keys {
            // Gone since the keys were read: not on this page.
            page.extend(self.try_get(key)?);
        }
        Ok((page, more))
    }

    /// When the owner last confirmed this replica (or when it was stored); `None` if held
    /// but not confirmed since this node started, or not held.
    pub fn confirmed(&self, key: &Id) -> Option<Instant> {
        let stamp = self.lock().entries.get(key)?.confirmed;
        self.instant(stamp)
    }

    /// When this node last settled the copy itself.
    pub fn checked(&self, key: &Id) -> Option<Instant> {
        let stamp = self.lock().entries.get(key)?.checked;
        self.instant(stamp)
    }

    pub fn mark_checked(&self, key: &Id) {
        let now = self.stamp();
        if let Some(e) = self.lock().entries.get_mut(key) {
            e.checked = now;
        }
    }

    pub fn confirm(&self, key: &Id) {
        let now = self.stamp();
        if let Some(e) = self.lock().entries.get_mut(key) {
            e.confirmed = now;
        }
    }

    /// A fresh path in the store's own tmp directory, for a scratch file of a driver above
    /// (the HTTP gateway's downloads and uploads): on the same disk as the files, never in a
    /// RAM-backed /tmp, and cleared at the next open if the process dies with it there.
    pub fn scratch_path(&self, what: &str) -> PathBuf {
        self.dir
            .join("tmp")
            .join(format!("{what}.{:016x}.scratch", rand::random::<u64>()))
    }

    /// Starts receiving a file. The temp file lives in the store's own tmp directory.
    pub fn begin(&self, key: &Id) -> Result<Incoming, StoreError> {
        let path =
            self.dir
                .join("tmp")
                .join(format!("{}.{}.part", key.to_hex(), rand::random::<u64>()));
        let file = fs::File::create(&path).map_err(io(&path))?;
        Ok(Incoming { file, path })
    }

    /// Makes a fully received, verified file visible: fsync, then — if `check` still agrees,
    /// given what is held under the key at this moment — rename and metadata. The check and
    /// the swap happen under the index lock, so two puts of one name cannot both win.
    pub fn commit(
        &self,
        incoming: Incoming,
        meta: FileMeta,
        check: impl FnOnce(Option<&FileMeta>) -> Result<(), String>,
    ) -> Result<(), StoreError> {
        incoming.file.sync_all().map_err(io(&incoming.path))?;
        let mut index = self.lock();
        // A held copy whose record cannot be read now is not replaced on a guess.
        let held = self.read_entry(&index, &meta.key).map_err(|e| {
            StoreError::Refused(format!("the copy held here cannot be compared now: {e}"))
        })?;
        check(held.as_ref()).map_err(StoreError::Refused)?;
        let data = self.data_path(&meta.key);
        fs::rename(&incoming.path, &data).map_err(io(&data))?;
        drop(incoming);
        self.write_meta(&meta)?;
        let added = meta.size + OVERHEAD;
        let replaced = index.insert(&meta, self.stamp());
        self.account(added, replaced.map_or(0, |e| e.size + OVERHEAD));
        Ok(())
    }

    /// Where a good copy of `key` is fetched to before it replaces a corrupt one.
    pub fn repair_path(&self, key: &Id) -> PathBuf {
        self.dir
            .join("tmp")
            .join(format!("{}.repair", key.to_hex()))
    }

    /// Replaces the bytes of a held copy with `fetched`, a verified, synced good copy of the
    /// same version (repair of a corrupt copy), unless the copy changed meanwhile.
    pub fn replace_bytes(&self, fetched: &Path, seen: &FileMeta) -> Result<bool, StoreError> {
        let index = self.lock();
        let same = index
            .entries
            .get(&seen.key)
            .is_some_and(|e| e.same_version(seen));
        if !same {
            return Ok(false);
        }
        let data = self.data_path(&seen.key);
        fs::rename(fetched, &data).map_err(io(&data))?;
        Ok(true)
    }

    fn write_meta(&self, meta: &FileMeta) -> Result<(), StoreError> {
        let path = self.meta_path(&meta.key);
        let bytes = serde_json::to_vec_pretty(meta).map_err(|e| StoreError::Io {
            path: path.display().to_string(),
            source: std::io::Error::other(e),
        })?;
        self.write_atomic(&path, &bytes)
    }

    /// Temp file in the store's tmp dir, fsync, rename over `path`.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let tmp_dir = self.dir.join("tmp");
        let mut file = tempfile::NamedTempFile::new_in(&tmp_dir).map_err(io(&tmp_dir))?;
        file.write_all(bytes).map_err(io(path))?;
        file.as_file().sync_all().map_err(io(path))?;
        file.persist(path).map_err(|e| io(path)(e.error))?;
        Ok(())
    }

    /// Changes why this node holds `key` (owner ↔ replica).
    pub fn set_role(&self, key: &Id, role: Role) -> Result<(), StoreError> {
        let now = self.stamp();
        let mut index = self.lock();
        if index.entries.get(key).is_none_or(|e| e.role == role) {
            return Ok(());
        }
        // Disk first: the record on disk and the index never disagree about the version.
        if let Some(mut meta) = self.read_entry(&index, key)? {
            meta.role = role;
            self.write_meta(&meta)?;
        }
        if let Some(entry) = index.entries.get_mut(key) {
            entry.role = role;
            entry.confirmed = now;
        }
        Ok(())
    }

    fn tombstone_path(&self, key: &Id) -> PathBuf {
        self.dir.join(format!("{}.removed", key.to_hex()))
    }

    /// The tombstones kept for `key`, at most one per uploader (each already verified when
    /// it was written).
    pub fn tombstones(&self, key: &Id) -> Vec<Tombstone> {
        if !self.removed_lock().contains(key) {
            return Vec::new();
        }
        fs::read(self.tombstone_path(key))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// `uploader`'s tombstone for `key`, if any.
    pub fn tombstone(&self, key: &Id, uploader: &str) -> Option<Tombstone> {
        self.tombstones(key)
            .into_iter()
            .find(|t| t.removal.uploader == uploader)
    }

    /// Keys that have tombstones, in key order.
    pub fn removed_keys(&self) -> Vec<Id> {
        self.removed_lock().iter().copied().collect()
    }

    fn removed_lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<Id>> {
        self.removed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps a verified tombstone (the caller checked its signatures). A later removal by the
    /// same uploader replaces an earlier one; an earlier one changes nothing.
    pub fn add_tombstone(&self, stone: &Tombstone) -> Result<(), StoreError> {
        let key = stone.key();
        let mut stones = self.tombstones(&key);
        match stones
            .iter_mut()
            .find(|t| t.removal.uploader == stone.removal.uploader)
        {
            Some(t) if t.removal.at >= stone.removal.at => return Ok(()),
            Some(t) => *t = stone.clone(),
            None => stones.push(stone.clone()),
        }
        self.write_tombstones(&key, &stones)
    }

    /// The uploader put the name again, newer than its removal: that tombstone goes.
    pub fn clear_tombstone(&self, key: &Id, uploader: &str, created: u64) {
        let mut stones = self.tombstones(key);
        let before = stones.len();
        stones.retain(|t| t.removal.uploader != uploader || t.removal.at >= created);
        if stones.len() != before {
            let _ = self.write_tombstones(key, &stones);
        }
    }

    fn write_tombstones(&self, key: &Id, stones: &[Tombstone]) -> Result<(), StoreError> {
        let path = self.tombstone_path(key);
        let mut removed = self.removed_lock();
        if stones.is_empty() {
            if removed.remove(key) {
                self.account(0, OVERHEAD);
            }
            return match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path)(e)),
                _ => Ok(()),
            };
        }
        let bytes = serde_json::to_vec(stones).map_err(|e| StoreError::Io {
            path: path.display().to_string(),
            source: std::io::Error::other(e),
        })?;
        self.write_atomic(&path, &bytes)?;
        if removed.insert(*key) {
            self.account(OVERHEAD, 0);
        }
        Ok(())
    }

    /// Deletes a file: metadata first, so a crash in between leaves no visible file.
    pub fn remove(&self, key: &Id) -> Result<Option<Held>, StoreError> {
        let Some(entry) = self.lock().remove(key) else {
            return Ok(None);
        };
        let meta_path = self.meta_path(key);
        fs::remove_file(&meta_path).map_err(io(&meta_path))?;
        let data = self.data_path(key);
        fs::remove_file(&data).map_err(io(&data))?;
        let _ = fs::remove_file(self.tree_path(key));
        self.account(0, entry.size + OVERHEAD);
        Ok(Some(entry.held(*key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, bytes: &[u8]) -> FileMeta {
        FileMeta {
            name: name.into(),
            key: Id::hash(name.as_bytes()),
            size: bytes.len() as u64,
            hash: *blake3::hash(bytes).as_bytes(),
            role: Role::Owner,
            uploader: "someone".into(),
            created: unix_millis(),
            signature: vec![1, 2, 255],
        }
    }

    #[test]
    fn committed_files_survive_a_reopen_and_partial_ones_vanish() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let m = meta("../../escape", b"hello");
        let mut incoming = store.begin(&m.key).unwrap();
        incoming.file.write_all(b"hello").unwrap();
        store.commit(incoming, m.clone(), |_| Ok(())).unwrap();
        // A transfer that never commits leaves nothing behind.
        let mut broken = store.begin(&Id::hash(b"other")).unwrap();
        broken.file.write_all(b"half").unwrap();
        drop(broken);
        drop(store);

        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.list(), vec![m.clone()]);
        assert_eq!(fs::read(store.data_path(&m.key)).unwrap(), b"hello");
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        // Only key-named files exist: the hostile name touched nothing outside.
        for entry in fs::read_dir(dir.path()).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            assert!(name == "tmp" || name.starts_with(&m.key.to_hex()), "{name}");
        }
        store.set_role(&m.key, Role::Replica).unwrap();
        assert_eq!(
            Store::open(dir.path()).unwrap().get(&m.key).unwrap().role,
            Role::Replica
        );
        assert!(store.remove(&m.key).unwrap().is_some());
        assert!(Store::open(dir.path()).unwrap().list().is_empty());
    }
}
