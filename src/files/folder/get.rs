//! A folder get: the manifest, then every file it names, resumable.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use futures::StreamExt;

use super::batch::{shared, Tally};
use super::local::{check_space, check_target, hash_file, prepare, state_path};
use super::manifest::{folder_name, member_name, Entry, Manifest};
use super::{local_error, FolderError, CONCURRENCY, MAX_FAILURES, MAX_MANIFEST_BYTES};
use crate::files::access::Access;
use crate::files::ops::{self, GetReport};
use crate::files::store::Hash;
use crate::files::transfer::Progress;

/// What a folder get did.
#[derive(Clone, Debug)]
pub struct FolderGetReport {
    pub name: String,
    /// The local folder.
    pub path: PathBuf,
    pub files: usize,
    pub size: u64,
    /// Files fetched by this run (resumed ones included).
    pub fetched: usize,
    /// Files already there, whole and matching the manifest.
    pub skipped: usize,
    /// Bytes earlier runs had already fetched of the files this run finished.
    pub resumed_from: u64,
    /// The get of the manifest.
    pub manifest: GetReport,
}

/// What happened to one file of a folder get.
enum Outcome {
    Skipped,
    Fetched { resumed_from: u64 },
    Untried,
    Failed(FolderError),
}

/// Gets the folder `name` into the local folder `target` (see [`check_target`] for when an
/// existing one is written into): the manifest first (its size bounded before a byte moves,
/// its paths checked), then every file, several at a time. A file already there and matching
/// the manifest is skipped, a partial one resumed; each file must be the version the manifest
/// names, by the manifest's uploader. Files that fail do not stop the others; the manifest is
/// kept beside the target until every file is in, so a re-run resumes.
pub async fn download_folder(
    access: &Access,
    name: &str,
    target: &Path,
    force: bool,
    progress: Progress<'_>,
) -> Result<FolderGetReport, FolderError> {
    let name = folder_name(name);
    let under_way = check_target(target, force)?;
    let state = state_path(target)?;
    let chosen = ops::choose(access, &name).await?;
    if chosen.version.size > MAX_MANIFEST_BYTES {
        return Err(FolderError::ManifestTooLarge {
            name,
            size: chosen.version.size,
        });
    }
    // What the get under way fetched: files that match it are ours to replace.
    let earlier = if under_way {
        match tokio::fs::read(&state).await {
            Ok(bytes) => Manifest::decode(&name, &bytes).ok(),
            Err(_) => None,
        }
    } else {
        None
    };
    let manifest_report = ops::fetch_chosen(access, &chosen, &state, None).await?;
    let read = tokio::fs::read(&state).await.map_err(local_error(&state));
    let manifest = match read.and_then(|bytes| Manifest::decode(&name, &bytes)) {
        Ok(manifest) => manifest,
        Err(e) => {
            let _ = tokio::fs::remove_file(&state).await;
            return Err(e);
        }
    };
    let uploader = chosen.version.uploader.clone();
    let earlier: HashMap<String, Hash> = earlier
        .map(|m| m.files.into_iter().map(|e| (e.path, e.hash)).collect())
        .unwrap_or_default();
    match tokio::fs::create_dir(target).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && target.is_dir() => {}
        Err(e) => return Err(local_error(target)(e)),
    }
    check_space(target, &manifest)?;

    let total = manifest.size();
    let tally = Tally {
        done: AtomicU64::new(0),
        total,
        progress,
    };
    let failures = AtomicUsize::new(0);
    let each = shared(access);
    let job = Job {
        access: &each,
        name: &name,
        uploader: &uploader,
        target,
        earlier: &earlier,
        force,
        tally: &tally,
    };
    let job = &job;
    let failures = &failures;
    let outcomes: Vec<(String, Outcome)> = futures::stream::iter(manifest.files.iter())
        .map(|entry| async move {
            if failures.load(Ordering::Relaxed) >= MAX_FAILURES {
                return (entry.path.clone(), Outcome::Untried);
            }
            let outcome = match job.fetch(entry).await {
                Ok(outcome) => outcome,
                Err(e) => {
                    failures.fetch_add(1, Ordering::Relaxed);
                    tracing::info!("{}{}: {e}", job.name, entry.path);
                    Outcome::Failed(e)
                }
            };
            (entry.path.clone(), outcome)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;

    let (mut fetched, mut skipped, mut untried, mut resumed) = (0, 0, 0, 0u64);
    let mut failed: Vec<(String, FolderError)> = Vec::new();
    for (path, outcome) in outcomes {
        match outcome {
            Outcome::Skipped => skipped += 1,
            Outcome::Fetched { resumed_from } => {
                fetched += 1;
                resumed += resumed_from;
            }
            Outcome::Untried => untried += 1,
            Outcome::Failed(e) => failed.push((path, e)),
        }
    }
    if !failed.is_empty() || untried > 0 {
        failed.sort_by(|a, b| a.0.cmp(&b.0));
        let first = failed
            .first()
            .map(|(path, e)| format!("{path}: {e}"))
            .unwrap_or_default();
        return Err(FolderError::Incomplete {
            name,
            failed: failed.len(),
            total: manifest.files.len(),
            untried: if untried > 0 {
                format!(", {untried} not tried")
            } else {
                String::new()
            },
            first,
        });
    }
    let _ = tokio::fs::remove_file(&state).await;
    Ok(FolderGetReport {
        name,
        path: target.to_path_buf(),
        files: manifest.files.len(),
        size: total,
        fetched,
        skipped,
        resumed_from: resumed,
        manifest: manifest_report,
    })
}

/// What every file of one folder get shares.
struct Job<'a> {
    access: &'a Access,
    name: &'a str,
    uploader: &'a str,
    target: &'a Path,
    earlier: &'a HashMap<String, Hash>,
    force: bool,
    tally: &'a Tally<'a>,
}

impl Job<'_> {
    async fn fetch(&self, entry: &Entry) -> Result<Outcome, FolderError> {
        let (target, rel) = (self.target.to_path_buf(), entry.path.clone());
        let path = tokio::task::spawn_blocking(move || prepare(&target, &rel))
            .await
            .map_err(|e| FolderError::Local {
                path: entry.path.clone(),
                reason: e.to_string(),
            })??;
        match tokio::fs::symlink_metadata(&path).await {
            Ok(meta) if meta.is_file() => {
                let hash = hash_file(&path).await?;
                if hash == entry.hash && meta.len() == entry.size {
                    self.tally.add(entry.size);
                    return Ok(Outcome::Skipped);
                }
                let ours = self.earlier.get(&entry.path) == Some(&hash);
                if !ours && !self.force {
                    return Err(FolderError::Differs(path.display().to_string()));
                }
            }
            Ok(meta) if meta.is_dir() => {
                return Err(FolderError::Local {
                    path: path.display().to_string(),
                    reason: "a folder is where the file goes".into(),
                })
            }
            // A link or a device: replaced (not followed) only when forced.
            Ok(_) if !self.force => {
                return Err(FolderError::Differs(path.display().to_string()));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(local_error(&path)(e)),
        }
        let member = member_name(self.name, &entry.path);
        let chosen = ops::choose(self.access, &member).await?;
        let version = &chosen.version;
        let changed = |reason: String| FolderError::Changed {
            name: member.clone(),
            reason,
        };
        if version.uploader != self.uploader {
            return Err(changed(format!(
                "the ring holds it by {}, the folder is by {}",
                version.uploader, self.uploader
            )));
        }
        if version.hash != entry.hash || version.size != entry.size {
            return Err(changed(format!(
                "the ring holds {} bytes with hash {}, the manifest says {} bytes with hash {}",
                version.size,
                hex::encode(version.hash),
                entry.size,
                hex::encode(entry.hash)
            )));
        }
        let tick = self.tally.file();
        let report = ops::fetch_chosen(self.access, &chosen, &path, Some(&tick)).await?;
        Ok(Outcome::Fetched {
            resumed_from: report.resumed_from,
        })
    }
}
