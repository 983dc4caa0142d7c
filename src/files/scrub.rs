//! The integrity scrub: every repair round re-reads the next few stored files and compares
//! them with their hash. Bytes that were read and differ mark the copy corrupt (it is then
//! replaced by a good copy); a file that cannot be read is a read error, not corruption, and
//! is left alone.

use std::path::Path;

use super::member::{locked, Files};
use super::store::{Hash, Held};

/// Bytes the integrity scrub re-reads per round.
const SCRUB_BYTES: u64 = 64 * 1024 * 1024;

impl Files {
    /// Re-reads the next file(s) on disk, up to [`SCRUB_BYTES`] a round, off the async threads.
    pub(super) async fn scrub(&self) {
        let files = self.clone();
        let corrupt = tokio::task::spawn_blocking(move || files.scrub_some())
            .await
            .unwrap_or_default();
        for held in corrupt {
            // Judged on what was read; a copy replaced meanwhile is not this one.
            if self.inner.store.held(&held.key).as_ref() == Some(&held) {
                self.found_corrupt(&held.key);
            }
        }
    }

    /// One scrub step (blocking): the copies whose bytes no longer match their hash.
    fn scrub_some(&self) -> Vec<Held> {
        let store = &self.inner.store;
        let files = store.helds();
        let mut corrupt = Vec::new();
        let mut next = locked(&self.inner.scrub_next);
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
                Ok(_) => corrupt.push(meta.clone()),
                Err(e) => tracing::warn!(key = %meta.key, "scrub cannot read the copy: {e}"),
            }
        }
        corrupt
    }
}

pub(super) fn hash_file(path: &Path) -> std::io::Result<Hash> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(std::fs::File::open(path)?)?;
    Ok(*hasher.finalize().as_bytes())
}
