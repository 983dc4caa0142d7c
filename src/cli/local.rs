//! The local side of puts and gets: which file or folder is read, where a get writes, and
//! the refusals that keep a local file from being replaced by surprise.

use std::path::PathBuf;

use anyhow::{Context, Result};
use chord_p2p::files::folder::{self, FolderError};
use chord_p2p::files::names::local_path;

use super::usage;

/// The name a local file is put under by default: its own file name.
pub fn default_name(file: &std::path::Path) -> Result<String> {
    file.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .with_context(|| format!("{} has no file name; pass a name", file.display()))
}

/// Where a get writes: `-o FILE`, inside `-o DIR` (as `cp` does), or the name's last
/// component here. Checked before anything is asked of the ring, so a mistake costs nothing:
/// an existing file is replaced only with `force`, and the folder must exist.
pub fn output_path(name: &str, output: Option<PathBuf>, force: bool) -> Result<PathBuf> {
    let path = match output {
        Some(dir) if dir.is_dir() => local_path(&dir, name)?,
        Some(path) => path,
        None => local_path(std::path::Path::new("."), name)?,
    };
    let shown = path.display();
    if path.is_dir() {
        return Err(usage(format!("{shown} is a directory")));
    }
    if path.exists() && !force {
        return Err(usage(format!(
            "{shown} already exists; pass --force to replace it"
        )));
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent.filter(|p| !p.is_dir()) {
        let folder = parent.display();
        return Err(usage(format!(
            "cannot write {shown}: there is no folder {folder}"
        )));
    }
    Ok(path)
}

/// An OS error without its "(os error N)" suffix, as a person reads it.
pub(super) fn io_cause(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// Whether a put shares a folder (else one file), checked before connecting anywhere.
pub(super) fn input_kind(path: &std::path::Path) -> Result<bool> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(meta.is_dir()),
        Err(e) => Err(usage(format!(
            "cannot read {}: {}",
            path.display(),
            io_cause(&e)
        ))),
    }
}

/// The name a local folder is shared under by default: its own name (also for `.`).
pub(super) fn default_folder_name(dir: &std::path::Path) -> Result<String> {
    let full = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    default_name(&full)
}

/// Where a folder get writes: `-o NEW`, a folder a get is under way into, inside `-o DIR`
/// (as `cp -r` does), or the folder's last component here. Checked before the ring is
/// asked: an existing folder is written into only when a get into it is under way (a re-run
/// resumes), it is empty, or with `force`.
pub(super) fn folder_target(name: &str, output: Option<PathBuf>, force: bool) -> Result<PathBuf> {
    let target = folder_place(name, output)?;
    check_folder_target(&target, force)?;
    Ok(target)
}

/// The local folder a get of the folder `name` writes (see [`folder_target`]), unchecked.
pub(super) fn folder_place(name: &str, output: Option<PathBuf>) -> Result<PathBuf> {
    let bare = name.trim_end_matches('/');
    Ok(match output {
        Some(dir) if dir.is_dir() && !folder::get_under_way(&dir) => local_path(&dir, bare)?,
        Some(path) => path,
        None => local_path(std::path::Path::new("."), bare)?,
    })
}

pub(super) fn check_folder_target(target: &std::path::Path, force: bool) -> Result<()> {
    match folder::check_target(target, force) {
        Ok(_) => Ok(()),
        Err(FolderError::Exists(shown)) => Err(usage(format!(
            "{shown} already exists; pass --force to write into it (files that differ are \
             replaced)"
        ))),
        Err(e) => Err(usage(e.to_string())),
    }
}
