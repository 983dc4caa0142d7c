//! A node's data directory: its persistent identity (so a restarted node keeps its ring id) and
//! a lock so two processes never share one directory.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;

use super::NodeError;

const IDENTITY_FILE: &str = "identity.key";
const LOCK_FILE: &str = "node.lock";

/// An open, locked data directory. The lock is released when this is dropped.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: File,
}

impl DataDir {
    pub fn open(path: &Path) -> Result<DataDir, NodeError> {
        let unwritable = |e: std::io::Error| NodeError::DataDir {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        fs::create_dir_all(path).map_err(unwritable)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.join(LOCK_FILE))
            .map_err(unwritable)?;
        lock.try_lock().map_err(|_| NodeError::DataDir {
            path: path.display().to_string(),
            reason: "another running node is using it".into(),
        })?;
        Ok(DataDir {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The node's Ed25519 identity, created on first use.
    pub fn identity(&self) -> Result<Keypair, NodeError> {
        DataDir::identity_at(&self.path.join(IDENTITY_FILE))
    }

    /// The identity kept in `file`, created on first use.
    pub fn identity_at(file: &Path) -> Result<Keypair, NodeError> {
        let file = file.to_path_buf();
        let error = |reason: String| NodeError::DataDir {
            path: file.display().to_string(),
            reason,
        };
        match fs::read(&file) {
            Ok(bytes) => Keypair::from_protobuf_encoding(&bytes)
                .map_err(|e| error(format!("not a valid identity key: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Keypair::generate_ed25519();
                let bytes = key
                    .to_protobuf_encoding()
                    .map_err(|e| error(e.to_string()))?;
                write_private(&file, &bytes).map_err(|e| error(e.to_string()))?;
                Ok(key)
            }
            Err(e) => Err(error(e.to_string())),
        }
    }
}

/// Writes a secret: owner-only permissions, temp file then rename, so a crash never leaves
/// half a key behind.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = OpenOptions::new();
    options.create(true).truncate(true).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_persists_and_dir_is_exclusive() {
        let tmp = tempfile::tempdir().unwrap();
        let first = {
            let dir = DataDir::open(tmp.path()).unwrap();
            assert!(
                DataDir::open(tmp.path()).is_err(),
                "second open must fail while locked"
            );
            dir.identity().unwrap().public().to_peer_id()
        };
        let dir = DataDir::open(tmp.path()).unwrap();
        assert_eq!(dir.identity().unwrap().public().to_peer_id(), first);
    }
}
