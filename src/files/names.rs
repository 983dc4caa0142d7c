//! File names are data, never paths. These rules decide which names can be stored, and what a
//! downloaded file may be called on the local disk.

use std::path::{Path, PathBuf};

/// Longest name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("a file name cannot be empty")]
    Empty,
    #[error("file name is {0} bytes; at most {MAX_NAME_BYTES} are allowed")]
    TooLong(usize),
    #[error("file name contains a NUL or control character")]
    ControlCharacter,
    #[error("'{0}' gives no usable local file name; pass an output path")]
    NoLocalName(String),
}

/// Checks a name for storing. Slashes and dots are fine: the name is never used as a path.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong(name.len()));
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::ControlCharacter);
    }
    Ok(())
}

/// Where `get NAME` writes when no output path is given: the last path component of the name,
/// inside `dir`. `../../x` becomes `dir/x`; a name with no usable component is an error.
pub fn local_path(dir: &Path, name: &str) -> Result<PathBuf, NameError> {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    if last.is_empty() || last == "." || last == ".." || last.chars().any(char::is_control) {
        return Err(NameError::NoLocalName(name.into()));
    }
    Ok(dir.join(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_stay_names() {
        for ok in [
            "a.txt",
            "../../etc/passwd",
            "/etc/passwd",
            "dir/sub/file",
            "..",
            "é 漢字",
        ] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_name(""), Err(NameError::Empty));
        assert_eq!(check_name("a\0b"), Err(NameError::ControlCharacter));
        assert_eq!(check_name(&"x".repeat(2000)), Err(NameError::TooLong(2000)));
    }

    #[test]
    fn local_names_never_leave_the_directory() {
        let dir = Path::new("/tmp/out");
        assert_eq!(local_path(dir, "../../x").unwrap(), dir.join("x"));
        assert_eq!(local_path(dir, "/etc/passwd").unwrap(), dir.join("passwd"));
        assert_eq!(local_path(dir, "a\\b\\c.txt").unwrap(), dir.join("c.txt"));
        for bad in ["..", "a/..", "dir/", "."] {
            assert!(local_path(dir, bad).is_err(), "{bad}");
        }
    }
}
