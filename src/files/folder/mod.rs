//! Folders on the ring. A folder is nothing new to the ring: each of its files is a normal file
//! under `FOLDER/relative/path`, and its manifest (the paths, sizes and hashes) is a normal file
//! under `FOLDER/` — the name with a trailing slash is what marks a folder. The manifest is
//! signed like any file (its version carries the uploader's signature), so a getter trusts it
//! as much as the uploader, and takes each member only if it is the version the manifest names
//! by the same uploader. A manifest is a stranger's input: its paths are checked so that no
//! get writes outside its target folder. See docs/PROTOCOL.md, "Folders".
//!
//! The parts, one job each: `manifest` (the document, and the names and paths it may hold),
//! `local` (the local disk: state file, target checks, scan, paths, hashes, free space), `put`
//! and `get` (the two transfers of a whole folder), and `batch` (what the files of one put or
//! get share while several move at once).

mod batch;
mod get;
mod local;
mod manifest;
mod put;

use std::path::Path;

use super::error::FilesError;
use super::names::NameError;

pub use get::{download_folder, FolderGetReport};
pub use local::{check_target, get_under_way, scan, state_path, LocalFile};
pub use manifest::{check_path, folder_name, is_folder_name, member_name, Entry, Manifest};
pub use put::{upload_folder, FolderPutReport};

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
/// What a local file's name ends with while a get writes it
/// ([`transfer::partial_path`](super::transfer::partial_path)).
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

/// The error of an OS call on the local `path`.
fn local_error(path: &Path) -> impl FnOnce(std::io::Error) -> FolderError + '_ {
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
