//! A held file's outboard: the BLAKE3 chaining value of each 1 MiB group (`crate::verified`),
//! what a getter needs to check every group as it arrives and to fetch groups from several
//! holders. Computed from the bytes the first time it is asked for and kept beside the file as
//! `<key>.tree` (the file's hash, then the values): a tree that names another hash (the copy
//! was replaced since) is computed again.

use std::io::Read;
use std::path::Path;

use super::member::Files;
use crate::records::{FileMeta, Hash};
use crate::verified;

impl Files {
    /// The outboard of the held copy `meta`, as bytes (32 per group). Bytes that do not hash
    /// to `meta.hash` mark the copy corrupt (it is then replaced) and are an error here.
    pub(super) async fn outboard(&self, meta: &FileMeta) -> std::io::Result<Vec<u8>> {
        let store = &self.inner.store;
        let (data, tree) = (store.data_path(&meta.key), store.tree_path(&meta.key));
        let (hash, size) = (meta.hash, meta.size);
        let computed =
            tokio::task::spawn_blocking(move || load_or_compute(&data, &tree, &hash, size))
                .await
                .map_err(std::io::Error::other)?;
        match computed {
            Ok(Some(outboard)) => Ok(outboard),
            Ok(None) => {
                self.found_corrupt(&meta.key);
                Err(std::io::Error::other("the copy does not match its hash"))
            }
            Err(e) => Err(e),
        }
    }
}

impl Files {
    /// The piece values of group `group` of the held copy `meta`, from its bytes.
    pub(super) async fn pieces(&self, meta: &FileMeta, group: u64) -> std::io::Result<Vec<u8>> {
        let Some(span) = verified::group_span(group, meta.size).filter(|s| s.end > s.start) else {
            return Err(std::io::Error::other(format!(
                "no group {group} in this file"
            )));
        };
        let data = self.inner.store.data_path(&meta.key);
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            let mut bytes = vec![0u8; (span.end - span.start) as usize];
            std::fs::File::open(&data)?.read_exact_at(&mut bytes, span.start)?;
            let cvs = verified::piece_cvs(group, &bytes)
                .ok_or_else(|| std::io::Error::other("not a group"))?;
            Ok(verified::encode_outboard(&cvs))
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

/// The kept tree if it is this version's, else one computed from the data and kept (`None`
/// when the data does not hash to `hash`). Blocking.
fn load_or_compute(
    data: &Path,
    tree: &Path,
    hash: &Hash,
    size: u64,
) -> std::io::Result<Option<Vec<u8>>> {
    let expected = verified::outboard_len(size) as usize * verified::CV_BYTES;
    if let Ok(kept) = std::fs::read(tree) {
        if kept.len() == 32 + expected && kept[..32] == hash[..] {
            return Ok(Some(kept[32..].to_vec()));
        }
    }
    let mut hasher = verified::GroupHasher::new();
    let mut file = std::fs::File::open(data)?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let computed = hasher.finish();
    if computed.root() != *hash || computed.size() != size {
        return Ok(None);
    }
    let outboard = computed.to_bytes();
    let mut kept = hash.to_vec();
    kept.extend_from_slice(&outboard);
    // Keeping it is an optimisation: a failed write only means computing it again.
    let tmp = tree.with_extension("tree.tmp");
    if std::fs::write(&tmp, &kept).is_ok() {
        let _ = std::fs::rename(&tmp, tree);
    }
    Ok(Some(outboard))
}
