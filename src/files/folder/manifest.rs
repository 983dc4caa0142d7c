//! A folder's manifest: its document format, and the names and paths it may hold.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::{FolderError, FORMAT, MARKER, MAX_FILES, MAX_MANIFEST_BYTES, PARTIAL_SUFFIX};
use crate::files::names::check_name;
use crate::files::store::Hash;

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
pub(super) fn is_partial(file_name: &str) -> bool {
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
    }
}
