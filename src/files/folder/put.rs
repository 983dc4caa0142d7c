//! A folder put: every file of a local folder, then its manifest.

use std::path::Path;
use std::sync::atomic::AtomicU64;

use futures::{StreamExt, TryStreamExt};

use super::batch::{shared, Tally};
use super::local::scan;
use super::manifest::{folder_name, member_name, Entry, Manifest};
use super::{local_error, FolderError, CONCURRENCY, MAX_MANIFEST_BYTES};
use crate::files::access::Access;
use crate::files::names::check_name;
use crate::files::ops::{self, PutReport};
use crate::files::transfer::Progress;

/// What a folder put did.
#[derive(Clone, Debug)]
pub struct FolderPutReport {
    /// The folder's ring name (with its trailing `/`).
    pub name: String,
    pub files: usize,
    /// Bytes of all files.
    pub size: u64,
    /// The put of the manifest, under the folder's name.
    pub manifest: PutReport,
}

/// Puts every file under `dir` on the ring under `name/…` (several at a time), then the
/// manifest under `name/`: a getter never finds a manifest whose files are not all there.
/// The first file that fails stops the put, and no manifest is written.
pub async fn upload_folder(
    access: &Access,
    dir: &Path,
    name: &str,
    progress: Progress<'_>,
) -> Result<FolderPutReport, FolderError> {
    let name = folder_name(name);
    check_name(&name)?;
    let walk_dir = dir.to_path_buf();
    let files = tokio::task::spawn_blocking(move || scan(&walk_dir))
        .await
        .map_err(|e| FolderError::Local {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })??;
    for file in &files {
        check_name(&member_name(&name, &file.path)).map_err(|e| FolderError::BadPath {
            path: file.local.display().to_string(),
            reason: e.to_string(),
        })?;
    }
    let total = files.iter().map(|f| f.size).fold(0, u64::saturating_add);
    let tally = Tally {
        done: AtomicU64::new(0),
        total,
        progress,
    };
    let tally = &tally;
    let name_ref = name.as_str();
    let each = shared(access);
    let each = &each;
    let entries: Vec<Entry> = futures::stream::iter(files.iter())
        .map(|file| async move {
            let tick = tally.file();
            let member = member_name(name_ref, &file.path);
            let report = ops::upload(each, &file.local, &member, Some(&tick))
                .await
                .map_err(|e| FolderError::Member {
                    path: file.local.display().to_string(),
                    source: Box::new(e.into()),
                })?;
            Ok::<_, FolderError>(Entry {
                path: file.path.clone(),
                size: report.size,
                hash: report.hash,
            })
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    let manifest = Manifest { files: entries };
    let bytes = manifest.encode();
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(FolderError::ManifestTooLarge {
            name,
            size: bytes.len() as u64,
        });
    }
    let temp = tempfile::NamedTempFile::new().map_err(local_error(&std::env::temp_dir()))?;
    tokio::fs::write(temp.path(), &bytes)
        .await
        .map_err(local_error(temp.path()))?;
    let report = ops::upload(access, temp.path(), &name, None).await?;
    Ok(FolderPutReport {
        name,
        files: manifest.files.len(),
        size: manifest.size(),
        manifest: report,
    })
}
