//! The local side of a folder put or get, on the disk: the state file of a get under way, the
//! checks of a target before the ring is asked, the scan of a local tree to put, and the paths
//! (made without following links), hashes and free space of the files a get writes.

use std::path::{Path, PathBuf};

use super::manifest::{check_path, is_partial, Manifest};
use super::{local_error, FolderError, MAX_FILES};
use crate::files::store::Hash;
use crate::files::transfer;

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
        Err(e) => Err(local_error(target)(e)),
        Ok(meta) if !meta.is_dir() => Err(FolderError::NotADirectory(shown())),
        Ok(_) => {
            if get_under_way(target) {
                return Ok(true);
            }
            let empty = std::fs::read_dir(target)
                .map_err(local_error(target))?
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
        for item in std::fs::read_dir(&at).map_err(local_error(&at))? {
            let item = item.map_err(local_error(&at))?;
            let local_path = item.path();
            let file_name = item.file_name();
            let Some(file_name) = file_name.to_str() else {
                return Err(FolderError::BadPath {
                    path: local_path.display().to_string(),
                    reason: "its name is not UTF-8, and names on the ring are".into(),
                });
            };
            let path = format!("{prefix}{file_name}");
            let kind = item.file_type().map_err(local_error(&local_path))?;
            if kind.is_dir() {
                stack.push((local_path, format!("{path}/")));
                continue;
            }
            let meta = std::fs::metadata(&local_path).map_err(local_error(&local_path))?;
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

/// The local path of `rel` inside `target`, its folders created. Every folder on the way must
/// be a real folder, not a link: a link planted in the target cannot lead a write outside.
pub(super) fn prepare(target: &Path, rel: &str) -> Result<PathBuf, FolderError> {
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
            Err(e) => return Err(local_error(&dir)(e)),
        }
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            // Another file of the folder made it at the same time.
            Err(e)
                if e.kind() == std::io::ErrorKind::AlreadyExists
                    && std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) => {}
            Err(e) => return Err(local_error(&dir)(e)),
        }
    }
    Ok(dir.join(file))
}

/// BLAKE3 of a local file, on a blocking thread.
pub(super) async fn hash_file(path: &Path) -> Result<Hash, FolderError> {
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
    hashed.map_err(local_error(path))
}

/// Refuses a folder that cannot fit: the bytes of the files not yet there (by size) against
/// the space free at the target.
pub(super) fn check_space(target: &Path, manifest: &Manifest) -> Result<(), FolderError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_file_sits_beside_the_target() {
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
