//! Folders on the ring. A folder is nothing new to the ring: each of its files is a normal file
//! under `FOLDER/relative/path`, and its manifest (the paths, sizes and hashes) is a normal file
//! under `FOLDER/` — the name with a trailing slash is what marks a folder. The manifest is
//! signed like any file (its version carries the uploader's signature), so a getter trusts it
//! as much as the uploader, and takes each member only if it is the version the manifest names
//! by the same uploader. A manifest is a stranger's input: its paths are checked so that no
//! get writes outside its target folder. See docs/PROTOCOL.md, "Folders".

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::access::Access;
use super::error::FilesError;
use super::names::{check_name, NameError};
use super::ops::{self, GetReport, PutReport};
use super::store::Hash;
use super::transfer::{self, Progress};

/// The first key of a manifest: its format marker, with the format version as its value.
pub const MARKER: &str = "chord-p2p-folder";
/// The manifest format this code writes and reads.
pub const FORMAT: u32 = 1;
/// Largest manifest read or written.
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;
/// Most files in one folder.
pub const MAX_FILES: usize = 100_000;
/// Files moved at once by a folder put or get.
pub const CONCURRENCY: usize = 4;
/// A folder get starts no new file after this many have failed: the ring is likely out of
/// reach, and a re-run resumes.
const MAX_FAILURES: usize = 16;
/// What a local file's name ends with while a get writes it ([`transfer::partial_path`]).
const PARTIAL_SUFFIX: &str = ".chord-part";

#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("{path}: {reason}")]
    Local { path: String, reason: String },
    #[error("'{path}' cannot go into a folder: {reason}")]
    BadPath { path: String, reason: String },
    #[error("'{name}' is not a folder: {reason}")]
    NotAFolder { name: String, reason: String },
    #[error("the manifest of '{name}' is {size} bytes; at most {MAX_MANIFEST_BYTES} are allowed")]
    ManifestTooLarge { name: String, size: u64 },
    #[error("{what} holds {count} files or more; a folder holds at most {MAX_FILES}")]
    TooManyFiles { what: String, count: usize },
    #[error("{0} already exists, and no get of a folder into it is under way")]
    Exists(String),
    #[error("{0} is not a folder")]
    NotADirectory(String),
    #[error("{0} exists and is not the shared file; it was kept")]
    Differs(String),
    #[error("'{name}' is not the version the folder's manifest names: {reason}")]
    Changed { name: String, reason: String },
    #[error("{needed} bytes do not fit in the {free} bytes free at {path}")]
    NoSpace {
        path: String,
        needed: u64,
        free: u64,
    },
    #[error("{path}: {source}")]
    Member {
        path: String,
        #[source]
        source: Box<FolderError>,
    },
    #[error(
        "{failed} of {total} files of '{name}' could not be fetched{untried} (first: {first}); \
         the same get again resumes"
    )]
    Incomplete {
        name: String,
        failed: usize,
        total: usize,
        /// ", N not tried" when the get gave up early.
        untried: String,
        first: String,
    },
}

fn local(path: &Path) -> impl FnOnce(std::io::Error) -> FolderError + '_ {
    move |e| FolderError::Local {
        path: path.display().to_string(),
        reason: io_text(&e),
    }
}

/// An OS error without its "(os error N)" suffix.
fn io_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// One file of a folder, as its manifest lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative path, components separated by `/` (see [`check_path`]).
    pub path: String,
    pub size: u64,
    /// BLAKE3 of the content: 64 lowercase hex digits in the manifest.
    #[serde(with = "crate::records::bytes")]
    pub hash: Hash,
}

/// A folder's manifest: its files, sorted by path (bytewise).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    pub files: Vec<Entry>,
}

/// The manifest as JSON: the marker first, so the document says what it is in its first bytes.
#[derive(Serialize, Deserialize)]
struct Document {
    #[serde(rename = "chord-p2p-folder")]
    format: u32,
    files: Vec<Entry>,
}

impl Manifest {
    /// The canonical document: compact JSON, `{"chord-p2p-folder":1,"files":[…]}`, files
    /// sorted by path, each `{"path","size","hash"}` in that order.
    pub fn encode(&self) -> Vec<u8> {
        let mut files = self.files.clone();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let doc = Document {
            format: FORMAT,
            files,
        };
        // Serializing plain strings and numbers into a Vec cannot fail.
        serde_json::to_vec(&doc).unwrap_or_default()
    }

    /// Reads the manifest of `name` and checks every part of it: the format, the bounds, and
    /// each path (no escape from the target folder, no duplicates, no path that is both a
    /// file and a folder).
    pub fn decode(name: &str, bytes: &[u8]) -> Result<Manifest, FolderError> {
        let not_folder = |reason: String| FolderError::NotAFolder {
            name: name.into(),
            reason,
        };
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(FolderError::ManifestTooLarge {
                name: name.into(),
                size: bytes.len() as u64,
            });
        }
        let marker = format!("{{\"{MARKER}\":");
        if !bytes.starts_with(marker.as_bytes()) {
            return Err(not_folder(format!(
                "its content does not start with {marker}"
            )));
        }
        let doc: Document = serde_json::from_slice(bytes)
            .map_err(|e| not_folder(format!("its manifest is not valid: {e}")))?;
        if doc.format != FORMAT {
            return Err(not_folder(format!(
                "manifest format {}; this program reads {FORMAT}",
                doc.format
            )));
        }
        if doc.files.len() > MAX_FILES {
            return Err(FolderError::TooManyFiles {
                what: format!("the manifest of '{name}'"),
                count: doc.files.len(),
            });
        }
        let hostile = |path: &str, reason: String| FolderError::BadPath {
            path: path.into(),
            reason: format!("in the manifest of '{name}': {reason}"),
        };
        let mut paths: HashSet<&str> = HashSet::with_capacity(doc.files.len());
        let mut total: u64 = 0;
        for entry in &doc.files {
            check_path(&entry.path).map_err(|r| hostile(&entry.path, r))?;
            check_name(&member_name(name, &entry.path))
                .map_err(|e| hostile(&entry.path, e.to_string()))?;
            if !paths.insert(&entry.path) {
                return Err(hostile(&entry.path, "listed twice".into()));
            }
            total = total
                .checked_add(entry.size)
                .ok_or_else(|| hostile(&entry.path, "sizes add up past 2^64".into()))?;
        }
        for entry in &doc.files {
            let mut at = 0;
            while let Some(slash) = entry.path[at..].find('/') {
                let dir = &entry.path[..at + slash];
                if paths.contains(dir) {
                    return Err(hostile(dir, "both a file and a folder".into()));
                }
                at += slash + 1;
            }
        }
        let mut files = doc.files;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Manifest { files })
    }

    /// Bytes of all files.
    pub fn size(&self) -> u64 {
        self.files
            .iter()
            .map(|e| e.size)
            .fold(0, u64::saturating_add)
    }
}

/// Checks a relative path from a manifest, so that joined to a target folder it names a file
/// inside it on any common system: UTF-8 components separated by `/`, none empty, `.` or `..`,
/// no leading `/`, no `\` or control character, and no name a get uses for its partial files.
pub fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("an empty path".into());
    }
    if path.starts_with('/') {
        return Err("an absolute path".into());
    }
    if path.chars().any(char::is_control) {
        return Err("a control character".into());
    }
    if path.contains('\\') {
        return Err("a backslash".into());
    }
    for part in path.split('/') {
        match part {
            "" => return Err("an empty path component".into()),
            "." | ".." => return Err(format!("a '{part}' component")),
            _ => {}
        }
    }
    if is_partial(path.rsplit('/').next().unwrap_or(path)) {
        return Err(format!(
            "a name ending in {PARTIAL_SUFFIX}, kept for partial downloads"
        ));
    }
    Ok(())
}

/// Whether a file name is one a get writes while it fetches (`.NAME.chord-part`).
fn is_partial(file_name: &str) -> bool {
    file_name.starts_with('.') && file_name.ends_with(PARTIAL_SUFFIX)
}

/// Whether a name on the ring names a folder (its manifest): it ends with `/`.
pub fn is_folder_name(name: &str) -> bool {
    name.ends_with('/')
}

/// The ring name of a folder's manifest: `name` with one trailing `/`.
pub fn folder_name(name: &str) -> String {
    format!("{}/", name.trim_end_matches('/'))
}

/// The ring name of a folder's file: the folder's name (with its `/`) and the relative path.
pub fn member_name(folder: &str, path: &str) -> String {
    format!("{}{path}", folder_name(folder))
}

/// Where a folder get keeps the manifest it works from until every file is in: beside the
/// target folder, `.NAME.chord-folder`. Its presence says a get into the target is under way.
pub fn state_path(target: &Path) -> Result<PathBuf, FolderError> {
    let name = target
        .file_name()
        .ok_or_else(|| FolderError::Local {
            path: target.display().to_string(),
            reason: "names no folder".into(),
        })?
        .to_string_lossy()
        .to_string();
    Ok(target.with_file_name(format!(".{name}.chord-folder")))
}

/// Whether a folder get into `target` was started and did not finish.
pub fn get_under_way(target: &Path) -> bool {
    target.is_dir() && state_path(target).is_ok_and(|s| s.is_file())
}

/// Checks that a folder get may write into `target`, before anything is asked of the ring:
/// it does not exist, is an empty folder, is a folder a get is under way into (a re-run
/// resumes), or `force` is set. Returns whether a get is under way there.
pub fn check_target(target: &Path, force: bool) -> Result<bool, FolderError> {
    let shown = || target.display().to_string();
    match std::fs::metadata(target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = target.parent().filter(|p| !p.as_os_str().is_empty());
            if let Some(parent) = parent.filter(|p| !p.is_dir()) {
                return Err(FolderError::Local {
                    path: shown(),
                    reason: format!("there is no folder {}", parent.display()),
                });
            }
            state_path(target)?;
            Ok(false)
        }
        Err(e) => Err(local(target)(e)),
        Ok(meta) if !meta.is_dir() => Err(FolderError::NotADirectory(shown())),
        Ok(_) => {
            if get_under_way(target) {
                return Ok(true);
            }
            let empty = std::fs::read_dir(target)
                .map_err(local(target))?
                .next()
                .is_none();
            if empty || force {
                Ok(false)
            } else {
                Err(FolderError::Exists(shown()))
            }
        }
    }
}

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

/// A local file to put: its path in the folder and on the disk, and its size.
#[derive(Clone, Debug)]
pub struct LocalFile {
    pub path: String,
    pub local: PathBuf,
    pub size: u64,
}

/// Every file under `dir`, sorted by relative path. Links to files are followed; links to
/// folders, sockets and the like are left out (with a warning), so a loop of links cannot
/// make the walk endless; partial downloads (`.NAME.chord-part`) are left out too.
pub fn scan(dir: &Path) -> Result<Vec<LocalFile>, FolderError> {
    let mut out = Vec::new();
    let mut stack: Vec<(PathBuf, String)> = vec![(dir.to_path_buf(), String::new())];
    while let Some((at, prefix)) = stack.pop() {
        for item in std::fs::read_dir(&at).map_err(local(&at))? {
            let item = item.map_err(local(&at))?;
            let local_path = item.path();
            let file_name = item.file_name();
            let Some(file_name) = file_name.to_str() else {
                return Err(FolderError::BadPath {
                    path: local_path.display().to_string(),
                    reason: "its name is not UTF-8, and names on the ring are".into(),
                });
            };
            let path = format!("{prefix}{file_name}");
            let kind = item.file_type().map_err(local(&local_path))?;
            if kind.is_dir() {
                stack.push((local_path, format!("{path}/")));
                continue;
            }
            let meta = std::fs::metadata(&local_path).map_err(local(&local_path))?;
            if !meta.is_file() {
                tracing::warn!("{} is left out: not a file", local_path.display());
                continue;
            }
            if is_partial(file_name) {
                tracing::warn!("{} is left out: a partial download", local_path.display());
                continue;
            }
            check_path(&path).map_err(|reason| FolderError::BadPath {
                path: local_path.display().to_string(),
                reason,
            })?;
            out.push(LocalFile {
                path,
                local: local_path,
                size: meta.len(),
            });
            if out.len() > MAX_FILES {
                return Err(FolderError::TooManyFiles {
                    what: dir.display().to_string(),
                    count: out.len(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Progress over a whole folder: each file's callback adds what it moved since its last call.
struct Tally<'a> {
    done: AtomicU64,
    total: u64,
    progress: Progress<'a>,
}

impl Tally<'_> {
    fn add(&self, bytes: u64) {
        let done = self.done.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if let Some(p) = self.progress {
            p(done.min(self.total), self.total);
        }
    }

    /// A progress callback for one file.
    fn file(&self) -> impl Fn(u64, u64) + Send + Sync + '_ {
        let seen = AtomicU64::new(0);
        move |done, _| {
            let before = seen.fetch_max(done, Ordering::Relaxed);
            if done > before {
                self.add(done - before);
            }
        }
    }
}

/// The access for a folder's transfers: [`CONCURRENCY`] of them share one rate limit.
fn shared(access: &Access) -> Access {
    let mut shared = access.clone();
    shared.rate_limit = shared
        .rate_limit
        .map(|rate| (rate / CONCURRENCY as u64).max(1));
    shared
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
    let temp = tempfile::NamedTempFile::new().map_err(local(&std::env::temp_dir()))?;
    tokio::fs::write(temp.path(), &bytes)
        .await
        .map_err(local(temp.path()))?;
    let report = ops::upload(access, temp.path(), &name, None).await?;
    Ok(FolderPutReport {
        name,
        files: manifest.files.len(),
        size: manifest.size(),
        manifest: report,
    })
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
    let read = tokio::fs::read(&state).await.map_err(local(&state));
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
        Err(e) => return Err(local(target)(e)),
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

/// Refuses a folder that cannot fit: the bytes of the files not yet there (by size) against
/// the space free at the target.
fn check_space(target: &Path, manifest: &Manifest) -> Result<(), FolderError> {
    let needed = manifest
        .files
        .iter()
        .filter(|e| {
            let path = target.join(&e.path);
            !std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == e.size)
        })
        .map(|e| e.size)
        .fold(0, u64::saturating_add);
    match transfer::free_bytes(target) {
        Some(free) if needed > free => Err(FolderError::NoSpace {
            path: target.display().to_string(),
            needed,
            free,
        }),
        _ => Ok(()),
    }
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
            Err(e) => return Err(local(&path)(e)),
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

/// The local path of `rel` inside `target`, its folders created. Every folder on the way must
/// be a real folder, not a link: a link planted in the target cannot lead a write outside.
fn prepare(target: &Path, rel: &str) -> Result<PathBuf, FolderError> {
    check_path(rel).map_err(|reason| FolderError::BadPath {
        path: rel.into(),
        reason,
    })?;
    let mut parts: Vec<&str> = rel.split('/').collect();
    let file = parts.pop().unwrap_or(rel);
    let mut dir = target.to_path_buf();
    for part in parts {
        dir.push(part);
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => continue,
            Ok(_) => {
                return Err(FolderError::Local {
                    path: dir.display().to_string(),
                    reason: "not a folder (a file or a link is in the way)".into(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(local(&dir)(e)),
        }
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            // Another file of the folder made it at the same time.
            Err(e)
                if e.kind() == std::io::ErrorKind::AlreadyExists
                    && std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) => {}
            Err(e) => return Err(local(&dir)(e)),
        }
    }
    Ok(dir.join(file))
}

/// BLAKE3 of a local file, on a blocking thread.
async fn hash_file(path: &Path) -> Result<Hash, FolderError> {
    let owned = path.to_path_buf();
    let hashed = tokio::task::spawn_blocking(move || {
        let mut hasher = blake3::Hasher::new();
        hasher.update_reader(std::fs::File::open(&owned)?)?;
        Ok::<_, std::io::Error>(*hasher.finalize().as_bytes())
    })
    .await
    .map_err(|e| FolderError::Local {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    hashed.map_err(local(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> Entry {
        Entry {
            path: path.into(),
            size: 3,
            hash: *blake3::hash(b"abc").as_bytes(),
        }
    }

    fn doc(paths: &[&str]) -> Vec<u8> {
        Manifest {
            files: paths.iter().map(|p| entry(p)).collect(),
        }
        .encode()
    }

    #[test]
    fn the_manifest_is_canonical_json_with_its_marker_first() {
        let bytes = doc(&["b/é 漢字.txt", "a.txt"]);
        let text = String::from_utf8(bytes.clone()).unwrap();
        let hash = blake3::hash(b"abc").to_hex().to_string();
        assert_eq!(
            text,
            format!(
                "{{\"chord-p2p-folder\":1,\"files\":[{{\"path\":\"a.txt\",\"size\":3,\"hash\":\"{hash}\"}},\
                 {{\"path\":\"b/é 漢字.txt\",\"size\":3,\"hash\":\"{hash}\"}}]}}"
            )
        );
        let back = Manifest::decode("f/", &bytes).unwrap();
        assert_eq!(back.files, vec![entry("a.txt"), entry("b/é 漢字.txt")]);
        assert_eq!(back.size(), 6);
    }

    #[test]
    fn hostile_manifests_are_refused() {
        for bad in [
            "../escape",
            "a/../../escape",
            "/abs",
            "a//b",
            "a/",
            "./a",
            "",
            "a\\..\\b",
            "a\nb",
            "a/.b.chord-part",
        ] {
            let err = Manifest::decode("f/", &doc(&[bad])).unwrap_err();
            assert!(matches!(err, FolderError::BadPath { .. }), "{bad}: {err}");
        }
        for (paths, why) in [
            (&["a", "a/b"][..], "file and folder"),
            (&["a", "a"][..], "twice"),
            (
                &["x/a", "x/a b", "x/a/c"][..],
                "file and folder, not adjacent",
            ),
        ] {
            assert!(Manifest::decode("f/", &doc(paths)).is_err(), "{why}");
        }
        assert!(matches!(
            Manifest::decode("f/", b"hello"),
            Err(FolderError::NotAFolder { .. })
        ));
        assert!(matches!(
            Manifest::decode("f/", br#"{"chord-p2p-folder":2,"files":[]}"#),
            Err(FolderError::NotAFolder { .. })
        ));
        let huge = format!("{{\"{MARKER}\":1,\"files\":[]}}{}", " ".repeat(17 << 20));
        assert!(matches!(
            Manifest::decode("f/", huge.as_bytes()),
            Err(FolderError::ManifestTooLarge { .. })
        ));
        let long = "x".repeat(1030);
        assert!(Manifest::decode("f/", &doc(&[&long])).is_err());
    }

    #[test]
    fn names_and_paths() {
        assert_eq!(folder_name("photos"), "photos/");
        assert_eq!(folder_name("photos//"), "photos/");
        assert_eq!(member_name("photos", "a/b.txt"), "photos/a/b.txt");
        assert!(is_folder_name("photos/"));
        assert!(!is_folder_name("photos"));
        assert_eq!(
            state_path(Path::new("/tmp/x/photos")).unwrap(),
            Path::new("/tmp/x/.photos.chord-folder")
        );
    }

    #[test]
    fn a_link_on_the_way_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = dir.path().join("t");
        std::fs::create_dir(&target).unwrap();
        std::os::unix::fs::symlink(outside.path(), target.join("a")).unwrap();
        assert!(prepare(&target, "a/b.txt").is_err());
        assert_eq!(
            prepare(&target, "c/d/e.txt").unwrap(),
            target.join("c/d/e.txt")
        );
        assert!(target.join("c/d").is_dir());
        assert!(prepare(&target, "../x").is_err());
    }

    #[test]
    fn targets_are_checked_before_the_ring_is_asked() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t");
        assert!(!check_target(&target, false).unwrap());
        std::fs::create_dir(&target).unwrap();
        assert!(!check_target(&target, false).unwrap(), "empty folder");
        std::fs::write(target.join("x"), b"x").unwrap();
        assert!(matches!(
            check_target(&target, false),
            Err(FolderError::Exists(_))
        ));
        assert!(!check_target(&target, true).unwrap());
        std::fs::write(state_path(&target).unwrap(), b"{}").unwrap();
        assert!(check_target(&target, false).unwrap(), "under way");
        assert!(matches!(
            check_target(&target.join("x"), true),
            Err(FolderError::NotADirectory(_))
        ));
        assert!(check_target(&dir.path().join("no/such"), false).is_err());
    }

    #[test]
    fn a_scan_finds_every_file_and_leaves_partials_out() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b c")).unwrap();
        std::fs::write(dir.path().join("top.txt"), b"1").unwrap();
        std::fs::write(dir.path().join("a/b c/é.txt"), b"22").unwrap();
        std::fs::write(dir.path().join("a/.x.chord-part"), b"").unwrap();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("a/loop")).unwrap();
        let files = scan(dir.path()).unwrap();
        let paths: Vec<(&str, u64)> = files.iter().map(|f| (f.path.as_str(), f.size)).collect();
        assert_eq!(paths, vec![("a/b c/é.txt", 2), ("top.txt", 1)]);
    }
}
