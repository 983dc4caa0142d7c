//! Files held by this node, on disk. Each file is stored under its key in hex (never under the
//! user's name) with a JSON metadata file beside it. Writes go to a temp file, are fsynced and
//! renamed, so a crash or a broken transfer never leaves a partial file visible; the index is
//! rebuilt from the metadata files at start.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::chord::Id;

/// A BLAKE3 digest.
pub type Hash = [u8; 32];

pub fn hash_hex(hash: &Hash) -> String {
    hex::encode(hash)
}

/// Why this node holds a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The key lies in (predecessor, self]: this node answers for it and keeps the replicas.
    Owner,
    /// A copy kept for the owner.
    Replica,
}

/// What is known about a stored file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    pub name: String,
    pub key: Id,
    pub size: u64,
    #[serde(with = "hex::serde")]
    pub hash: Hash,
    pub role: Role,
    /// Peer id (text) of whoever put the file: only they may replace or remove it.
    pub uploader: String,
    /// Unix milliseconds when its uploader put this version: newer wins, and a removal
    /// (tombstone) only beats copies created before it.
    pub created: u64,
    /// The uploader's signature over name, size, hash and time ([`super::signing`]).
    #[serde(with = "hex::serde", default)]
    pub signature: Vec<u8>,
}

impl FileMeta {
    /// This version as its uploader signs it.
    pub fn version(&self) -> super::signing::Version<'_> {
        super::signing::Version {
            name: &self.name,
            size: self.size,
            hash: &self.hash,
            created: self.created,
            uploader: &self.uploader,
        }
    }
}

/// Unix time in milliseconds.
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

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
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

struct Entry {
    meta: FileMeta,
    /// Last time the owner confirmed it wants this replica here (in memory only).
    confirmed: Instant,
}

/// The files of one node.
pub struct Store {
    dir: PathBuf,
    index: Mutex<BTreeMap<Id, Entry>>,
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
        let tmp = dir.join("tmp");
        fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        for entry in fs::read_dir(&tmp).map_err(io(&tmp))?.flatten() {
            let _ = fs::remove_file(entry.path());
        }
        let mut index = BTreeMap::new();
        for entry in fs::read_dir(dir).map_err(io(dir))?.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let meta: Option<FileMeta> = fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            match meta {
                Some(meta) if Store::data_path_in(dir, &meta.key).exists() => {
                    index.insert(
                        meta.key,
                        Entry {
                            meta,
                            confirmed: Instant::now(),
                        },
                    );
                }
                _ => {
                    tracing::warn!(path = %path.display(), "ignoring unreadable or orphaned metadata")
                }
            }
        }
        Ok(Store {
            dir: dir.to_path_buf(),
            index: Mutex::new(index),
        })
    }

    fn data_path_in(dir: &Path, key: &Id) -> PathBuf {
        dir.join(format!("{}.data", key.to_hex()))
    }

    /// Where the bytes of `key` live (only inside the store's directory).
    pub fn data_path(&self, key: &Id) -> PathBuf {
        Store::data_path_in(&self.dir, key)
    }

    fn meta_path(&self, key: &Id) -> PathBuf {
        self.dir.join(format!("{}.json", key.to_hex()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Id, Entry>> {
        // A panic while holding the lock cannot leave the map half-updated (single inserts and
        // removes), so a poisoned lock is still safe to use.
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &Id) -> Option<FileMeta> {
        self.lock().get(key).map(|e| e.meta.clone())
    }

    pub fn list(&self) -> Vec<FileMeta> {
        self.lock().values().map(|e| e.meta.clone()).collect()
    }

    /// When the owner last confirmed this replica (or when it was stored or loaded).
    pub fn confirmed(&self, key: &Id) -> Option<Instant> {
        self.lock().get(key).map(|e| e.confirmed)
    }

    pub fn confirm(&self, key: &Id) {
        if let Some(e) = self.lock().get_mut(key) {
            e.confirmed = Instant::now();
        }
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

    /// Makes a fully received, verified file visible: fsync, rename, then metadata.
    pub fn commit(&self, incoming: Incoming, meta: FileMeta) -> Result<(), StoreError> {
        incoming.file.sync_all().map_err(io(&incoming.path))?;
        let data = self.data_path(&meta.key);
        fs::rename(&incoming.path, &data).map_err(io(&data))?;
        drop(incoming);
        self.write_meta(&meta)?;
        self.lock().insert(
            meta.key,
            Entry {
                meta,
                confirmed: Instant::now(),
            },
        );
        Ok(())
    }

    fn write_meta(&self, meta: &FileMeta) -> Result<(), StoreError> {
        let path = self.meta_path(&meta.key);
        let tmp = self.dir.join("tmp").join(format!(
            "{}.json.{}",
            meta.key.to_hex(),
            rand::random::<u64>()
        ));
        let bytes = serde_json::to_vec_pretty(meta).map_err(|e| StoreError::Io {
            path: path.display().to_string(),
            source: std::io::Error::other(e),
        })?;
        let mut file = fs::File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(&bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        fs::rename(&tmp, &path).map_err(io(&path))
    }

    /// Changes why this node holds `key` (owner ↔ replica).
    pub fn set_role(&self, key: &Id, role: Role) -> Result<(), StoreError> {
        let meta = {
            let mut index = self.lock();
            let Some(entry) = index.get_mut(key) else {
                return Ok(());
            };
            if entry.meta.role == role {
                return Ok(());
            }
            entry.meta.role = role;
            entry.confirmed = Instant::now();
            entry.meta.clone()
        };
        self.write_meta(&meta)
    }

    fn tombstone_path(&self, key: &Id) -> PathBuf {
        self.dir.join(format!("{}.removed", key.to_hex()))
    }

    /// Remembers that the uploader removed `key` as of `at` (Unix ms, the uploader's clock), so
    /// copies made before that are not restored. A later removal time never moves back.
    pub fn mark_removed(&self, key: &Id, at: u64) -> Result<(), StoreError> {
        let at = self.removed_at(key).map_or(at, |earlier| earlier.max(at));
        let path = self.tombstone_path(key);
        fs::write(&path, at.to_string()).map_err(io(&path))
    }

    /// When `key` was removed (Unix milliseconds), if it was and has not been put again since.
    pub fn removed_at(&self, key: &Id) -> Option<u64> {
        let text = fs::read_to_string(self.tombstone_path(key)).ok()?;
        // An unreadable tombstone still says "removed", as early as possible.
        Some(text.trim().parse().unwrap_or(0))
    }

    /// A copy created at `created` was removed after it was made.
    pub fn removed_since(&self, key: &Id, created: u64) -> bool {
        self.removed_at(key).is_some_and(|at| at >= created)
    }

    /// The uploader put the name again: it lives.
    pub fn clear_removed(&self, key: &Id) {
        let _ = fs::remove_file(self.tombstone_path(key));
    }

    /// Deletes a file: metadata first, so a crash in between leaves no visible file.
    pub fn remove(&self, key: &Id) -> Result<Option<FileMeta>, StoreError> {
        let Some(entry) = self.lock().remove(key) else {
            return Ok(None);
        };
        let meta_path = self.meta_path(key);
        fs::remove_file(&meta_path).map_err(io(&meta_path))?;
        let data = self.data_path(key);
        fs::remove_file(&data).map_err(io(&data))?;
        Ok(Some(entry.meta))
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
    fn hashes_from_the_network_are_checked_before_use() {
        let good = meta("x", b"x");
        let text = serde_json::to_string(&good).unwrap();
        assert_eq!(serde_json::from_str::<FileMeta>(&text).unwrap(), good);
        // 64 bytes, but not 64 hex digits: a multi-byte character must not split a slice.
        let hostile = text.replace(&hash_hex(&good.hash), &format!("é{}", "a".repeat(62)));
        assert!(serde_json::from_str::<FileMeta>(&hostile).is_err());
        let signed = text.replace(&hash_hex(&good.hash), &format!("+f{}", "a".repeat(62)));
        assert!(serde_json::from_str::<FileMeta>(&signed).is_err());
    }

    #[test]
    fn committed_files_survive_a_reopen_and_partial_ones_vanish() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let m = meta("../../escape", b"hello");
        let mut incoming = store.begin(&m.key).unwrap();
        incoming.file.write_all(b"hello").unwrap();
        store.commit(incoming, m.clone()).unwrap();
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
