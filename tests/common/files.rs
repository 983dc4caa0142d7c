//! Helpers for tests of files on real rings: a ring config with fast repair, deterministic
//! contents, puts and gets from members, and the check that every file sits at exactly its R
//! rightful holders.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chord_p2p::chord::{Id, IdealRing};
use chord_p2p::files::{ops, Files, FilesConfig, FilesError, HasFiles, Hash, Role};
use chord_p2p::node::{Node, NodeConfig};

use super::{ring_one_by_one, test_config, wait_exact, wait_for, Rng, Starts, QUIC};

pub const R_FILES: usize = 3;
pub const SETTLE: Duration = Duration::from_secs(40);

/// A ring member: a node and its file service.
#[derive(Clone)]
pub struct Member {
    pub node: NodeConfig,
    pub files: FilesConfig,
}

impl Starts for Member {
    async fn start_node(&self) -> Node {
        Files::start_node(self.node.clone(), self.files.clone())
            .await
            .expect("member starts")
    }
}

/// Test timing: fast stabilization, repair every 200 ms.
pub fn config() -> Member {
    Member {
        node: test_config(QUIC),
        files: FilesConfig {
            replicas: R_FILES,
            repair_interval: Duration::from_millis(200),
            stale_rounds: 5,
            timeout: Duration::from_secs(5),
            ..FilesConfig::default()
        },
    }
}

/// Deterministic bytes: a file's content is a function of its seed.
pub fn content(seed: u64, size: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        let word = (rng.below(usize::MAX) as u64).to_le_bytes();
        out.extend_from_slice(&word);
    }
    out.truncate(size);
    out
}

pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write test file");
    path
}

pub fn blake3_of(bytes: &[u8]) -> Hash {
    *blake3::hash(bytes).as_bytes()
}

pub async fn put_from(node: &Node, path: &Path, name: &str) -> Result<ops::PutReport, FilesError> {
    let files = node.files().expect("member keeps files");
    ops::upload(&files.access(), path, name, None).await
}

pub async fn get_from(node: &Node, name: &str, out: &Path) -> Result<ops::GetReport, FilesError> {
    let files = node.files().expect("member keeps files");
    ops::download(&files.access(), name, out, None).await
}

/// Who holds `name` and in which role, among `nodes`.
pub fn holders(nodes: &[&Node], name: &str) -> Vec<(Id, Role, Hash)> {
    let key = Id::hash(name.as_bytes());
    nodes
        .iter()
        .filter_map(|n| {
            let meta = n.files()?.store().get(&key)?;
            Some((n.id(), meta.role, meta.hash))
        })
        .collect()
}

/// Exactly R copies of each name sit where they belong: the true owner holds it as owner, its
/// R-1 successors as replicas, nobody else; every copy on disk matches its content hash.
pub fn copies_in_place(nodes: &[&Node], names: &[(String, Hash)]) -> Result<(), String> {
    let ring = IdealRing::new(nodes.iter().map(|n| n.id()));
    for (name, hash) in names {
        let key = Id::hash(name.as_bytes());
        let owner = ring.successor(&key).ok_or("empty ring")?;
        let mut want: Vec<Id> = vec![owner];
        want.extend(ring.successors(&owner, R_FILES - 1));
        want.sort();
        let held = holders(nodes, name);
        let mut got: Vec<Id> = held.iter().map(|(id, _, _)| *id).collect();
        got.sort();
        if got != want {
            return Err(format!(
                "{name}: held by {} nodes, not the right {}",
                got.len(),
                want.len()
            ));
        }
        for (id, role, stored) in &held {
            let should = if *id == owner {
                Role::Owner
            } else {
                Role::Replica
            };
            if *role != should || stored != hash {
                return Err(format!(
                    "{name}: {role:?} at {}, want {should:?}",
                    &id.to_hex()[..8]
                ));
            }
        }
        for node in nodes {
            let Some(files) = node.files() else { continue };
            if files.store().get(&key).is_some() {
                let bytes =
                    std::fs::read(files.store().data_path(&key)).map_err(|e| e.to_string())?;
                if blake3_of(&bytes) != *hash {
                    return Err(format!("{name}: a corrupt copy is still held"));
                }
            }
        }
    }
    Ok(())
}

pub async fn wait_copies(nodes: &[&Node], names: &[(String, Hash)], what: &str) {
    wait_for(SETTLE, what, || async { copies_in_place(nodes, names) }).await;
}

/// A ring of `n` members, joined one by one, whose pointers are exact.
pub async fn settled_ring(n: usize, seed: u64) -> Vec<Node> {
    let nodes = ring_one_by_one(n, &config(), seed).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_exact(&refs, 4, Duration::from_secs(30), "exact ring").await;
    nodes
}

/// The header of an upload of 1 MiB under `name` from `from` that a flooding peer sends and
/// then never (or only slowly) follows with bytes: unsigned, so it is never stored.
pub fn unsigned_put(from: &Node, name: String) -> chord_p2p::files::transfer::TransferRequest {
    chord_p2p::files::transfer::TransferRequest::Put {
        name,
        size: 1 << 20,
        hash: None,
        role: Role::Owner,
        uploader: from.peer_id().to_string(),
        created: chord_p2p::records::unix_millis(),
        signature: Vec::new(),
        chain: 0,
    }
}
