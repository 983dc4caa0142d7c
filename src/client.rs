//! A one-shot client: a node that listens nowhere, joins nothing, and asks the ring through one
//! member. Used by `chord-p2p lookup|status|put|get|ls|rm --peer ADDR` and by tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use libp2p::identity::Keypair;

use crate::chord::{self, Id, LookupResult};
use crate::files::ops::{self, GetReport, PutReport};
use crate::files::transfer::Progress;
use crate::files::{Access, FilesError};
use crate::files::{FileMeta, FilesConfig};
use crate::net::protocol::{check_status, FileRequest, FileResponse};
use crate::net::{Contact, PeerRef, StatusReport, Target, WireRequest, WireResponse};
use crate::node::{DataDir, Node, NodeConfig, NodeError};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error("{peer} refused: {reason}")]
    Refused { peer: String, reason: String },
    #[error("{peer} sent an invalid answer: {reason}")]
    Invalid { peer: String, reason: String },
    #[error("identity file {path}: {reason}")]
    Identity { path: String, reason: String },
}

pub struct Client {
    node: Node,
    identity: Keypair,
    timeout: Duration,
    rate_limit: Option<u64>,
    direct_wait: Duration,
}

impl Client {
    /// A client with a fresh identity; `timeout` bounds each dial and each request.
    pub async fn new(timeout: Duration) -> Result<Client, ClientError> {
        Client::with_identity(Keypair::generate_ed25519(), timeout).await
    }

    pub async fn with_identity(
        identity: Keypair,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let config = NodeConfig {
            listen: Vec::new(),
            identity: Some(identity.clone()),
            chord: chord::Config {
                rpc_timeout: timeout,
                ..chord::Config::default()
            },
            ..NodeConfig::default()
        };
        Ok(Client {
            node: Node::start(config).await?,
            identity,
            timeout,
            rate_limit: None,
            direct_wait: FilesConfig::default().direct_wait,
        })
    }

    /// How long a transfer to a node reached only through a relay waits for hole punching.
    pub fn set_direct_wait(&mut self, wait: Duration) {
        self.direct_wait = wait;
    }

    /// Caps put and get at `bytes_per_sec` (None: as fast as the transport goes).
    pub fn set_rate_limit(&mut self, bytes_per_sec: Option<u64>) {
        self.rate_limit = bytes_per_sec;
    }

    /// The identity kept in `path` (created on first use), so a user stays the uploader, and
    /// so the owner, of their files across runs.
    pub fn load_identity(path: &Path) -> Result<Keypair, ClientError> {
        let error = |reason: String| ClientError::Identity {
            path: path.display().to_string(),
            reason,
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let file_name = path
            .file_name()
            .ok_or_else(|| error("not a file path".into()))?;
        std::fs::create_dir_all(dir).map_err(|e| error(e.to_string()))?;
        DataDir::identity_at(&dir.join(file_name)).map_err(|e| error(e.to_string()))
    }

    /// The default identity file: in the per-user config directory.
    pub fn default_identity_path() -> Option<PathBuf> {
        Some(dirs::config_dir()?.join("chord-p2p").join("client.key"))
    }

    pub fn peer_id(&self) -> libp2p::PeerId {
        self.node.peer_id()
    }

    /// Closes the client's connections, so the nodes it used free them at once rather than
    /// when they time out (a script of one-shot commands would otherwise pile them up).
    pub async fn close(&self) {
        self.node
            .handle()
            .close_all(Duration::from_millis(500))
            .await;
    }

    /// Connects to a user-given address and returns the member that answered.
    pub async fn connect(&self, target: Target) -> Result<PeerRef, ClientError> {
        Ok(self.node.handle().resolve(target).await?)
    }

    /// Sends one request and waits for its answer.
    pub async fn request(
        &self,
        to: &PeerRef,
        request: WireRequest,
    ) -> Result<WireResponse, ClientError> {
        Ok(self.node.handle().request(to, request).await?)
    }

    /// The routing state of `node`.
    pub async fn status(&self, node: &PeerRef) -> Result<StatusReport, ClientError> {
        let peer = node.addr.peer_id.to_string();
        match self.request(node, WireRequest::Status).await? {
            WireResponse::Status(report) => {
                check_status(&report).map_err(|e| ClientError::Invalid {
                    peer,
                    reason: e.to_string(),
                })?;
                Ok(report)
            }
            WireResponse::Error(reason) => Err(ClientError::Refused { peer, reason }),
            _ => Err(ClientError::Invalid {
                peer,
                reason: "not a status report".into(),
            }),
        }
    }

    /// An iterative lookup of successor(key) that starts at `entry`.
    pub async fn lookup(
        &self,
        entry: &PeerRef,
        key: Id,
    ) -> Result<LookupResult<Contact>, ClientError> {
        Ok(self.node.handle().lookup_via(entry.clone(), key).await?)
    }

    fn access(&self, entry: &PeerRef) -> Access {
        Access {
            node: self.node.handle(),
            control: self.node.control(),
            via: Some(entry.clone()),
            identity: self.identity.clone(),
            local: None,
            timeout: self.timeout,
            rate_limit: self.rate_limit,
            direct_wait: self.direct_wait,
        }
    }

    pub async fn put(
        &self,
        entry: &PeerRef,
        path: &Path,
        name: &str,
        progress: Progress<'_>,
    ) -> Result<PutReport, ClientError> {
        Ok(ops::upload(&self.access(entry), path, name, progress).await?)
    }

    pub async fn get(
        &self,
        entry: &PeerRef,
        name: &str,
        out: &Path,
        progress: Progress<'_>,
    ) -> Result<GetReport, ClientError> {
        Ok(ops::download(&self.access(entry), name, out, progress).await?)
    }

    /// Deletes every copy of `name` (this client must be its uploader). Returns copies deleted.
    pub async fn remove(&self, entry: &PeerRef, name: &str) -> Result<u32, ClientError> {
        Ok(ops::remove(&self.access(entry), name).await?)
    }

    /// The files `node` holds, in key order (fetched a page at a time).
    pub async fn list(&self, node: &PeerRef) -> Result<Vec<FileMeta>, ClientError> {
        let mut all: Vec<FileMeta> = Vec::new();
        loop {
            let after = all.last().map(|m| m.key);
            match self
                .access(node)
                .file_request(node, FileRequest::List { after })
                .await?
            {
                FileResponse::List { files, more } => {
                    // Pages must move forward in key order, or a broken peer could loop us.
                    let forward = match (files.last(), after) {
                        (Some(last), Some(after)) => last.key > after,
                        (Some(_), None) => true,
                        (None, _) => false,
                    };
                    all.extend(files);
                    if !more || !forward {
                        return Ok(all);
                    }
                }
                _ => {
                    return Err(ClientError::Invalid {
                        peer: node.addr.peer_id.to_string(),
                        reason: "not a file list".into(),
                    })
                }
            }
        }
    }
}
