//! A one-shot client: a node that listens nowhere, joins nothing, and asks the ring through one
//! member. Used by `chord-p2p lookup|status|put|get|ls|rm --peer ADDR` and by tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use libp2p::identity::Keypair;

use crate::chord::{self, Id, LookupResult};
use crate::files::folder::{self, FolderError, FolderGetReport, FolderPutReport};
use crate::files::ops::{self, GetReport, PutReport};
use crate::files::ticket::{self, Ticket, TicketError};
use crate::files::transfer::Progress;
use crate::files::{Access, FilesError};
use crate::files::{FileMeta, FilesConfig};
use crate::net::protocol::{check_status, list_page_moves_on, FileRequest, FileResponse};
use crate::net::{Contact, PeerRef, StatusReport, Target, WireRequest, WireResponse};
use crate::node::{DataDir, Node, NodeConfig, NodeError};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error(transparent)]
    Folder(#[from] FolderError),
    #[error(transparent)]
    Ticket(#[from] TicketError),
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
        // The client's connections use a fresh key of their own; `identity` only signs. So a
        // client may act as a running node's identity (its key file) without the ring taking
        // it for that node, and a script's many runs never pile up on one peer id.
        let config = NodeConfig {
            listen: Vec::new(),
            identity: Some(Keypair::generate_ed25519()),
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

    /// Whom the client's puts and removals are signed by (the uploader).
    /// What this client counts: bytes of its transfer streams, its lookups, libp2p's own.
    pub fn metrics(&self) -> &crate::metrics::NodeMetrics {
        self.node.metrics()
    }

    pub fn peer_id(&self) -> libp2p::PeerId {
        self.identity.public().to_peer_id()
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

    /// Connects to the first of `targets` that answers (all are dialed at once): how a
    /// ticket's members are reached.
    pub async fn connect_any(&self, targets: Vec<Target>) -> Result<PeerRef, ClientError> {
        if targets.is_empty() {
            return Err(TicketError::NoAddrs.into());
        }
        let handle = self.node.handle();
        let dials = targets.into_iter().map(|t| {
            let handle = handle.clone();
            Box::pin(async move { handle.resolve(t).await })
        });
        match futures::future::select_ok(dials).await {
            Ok((peer, _)) => Ok(peer),
            Err(e) => Err(e.into()),
        }
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

    /// Puts every file under the local folder `dir` under `name/…`, then its manifest under
    /// `name/` (see [`folder::upload_folder`]).
    pub async fn put_folder(
        &self,
        entry: &PeerRef,
        dir: &Path,
        name: &str,
        progress: Progress<'_>,
    ) -> Result<FolderPutReport, ClientError> {
        Ok(folder::upload_folder(&self.access(entry), dir, name, progress).await?)
    }

    /// Gets the folder `name` into the local folder `target`, resuming a get under way there
    /// (see [`folder::download_folder`]).
    pub async fn get_folder(
        &self,
        entry: &PeerRef,
        name: &str,
        target: &Path,
        force: bool,
        progress: Progress<'_>,
    ) -> Result<FolderGetReport, ClientError> {
        Ok(folder::download_folder(&self.access(entry), name, target, force, progress).await?)
    }

    /// A ticket for `name`: it names `entry`, the name's owner and its next holders.
    pub async fn ticket(&self, entry: &PeerRef, name: &str) -> Ticket {
        ticket::for_name(&self.access(entry), name).await
    }

    /// Writes bytes `first..=last` of `name` to `out`, checked, fetching about that much.
    pub async fn get_range(
        &self,
        entry: &PeerRef,
        name: &str,
        first: u64,
        last: u64,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<crate::files::range::RangeReport, ClientError> {
        let access = self.access(entry);
        Ok(crate::files::range::read_range(&access, name, first, last, out).await?)
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
                    let forward = list_page_moves_on(&files, after);
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

/// Every file on a ring, as its owners list it.
#[derive(Clone, Debug, Default)]
pub struct RingListing {
    /// Each file once (by key), with the member that owns it.
    pub files: Vec<(FileMeta, PeerRef)>,
    /// Members walked.
    pub members: usize,
    /// The walk stopped at its bound before coming back to where it started.
    pub cut_short: bool,
}

impl Client {
    /// Walks the ring from `entry` along successors (at most `max_members` of them) and
    /// collects what each member owns: every file once, even while keys move. A member
    /// that does not answer is skipped for the next one on the last successor list seen.
    pub async fn list_ring(
        &self,
        entry: &PeerRef,
        max_members: usize,
    ) -> Result<RingListing, ClientError> {
        let mut files: std::collections::BTreeMap<Id, (FileMeta, PeerRef)> =
            std::collections::BTreeMap::new();
        let mut walked = std::collections::BTreeSet::new();
        let mut queue: Vec<PeerRef> = vec![entry.clone()];
        let mut first_error = None;
        while let Some(at) = queue.first().cloned() {
            if walked.len() >= max_members {
                let listing = RingListing {
                    files: files.into_values().collect(),
                    members: walked.len(),
                    cut_short: true,
                };
                return Ok(listing);
            }
            queue.remove(0);
            if !walked.insert(at.id) {
                break;
            }
            let answered =
                async { Ok::<_, ClientError>((self.status(&at).await?, self.list(&at).await?)) };
            match answered.await {
                Ok((status, held)) => {
                    let owned = held
                        .into_iter()
                        .filter(|m| m.role == crate::files::Role::Owner);
                    for meta in owned {
                        files.entry(meta.key).or_insert((meta, at.clone()));
                    }
                    // The next members, nearest first: fallbacks if the first is gone.
                    queue = status.successors;
                }
                Err(e) if walked.len() == 1 => return Err(e),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
            if queue.is_empty() {
                break;
            }
        }
        if files.is_empty() {
            if let Some(e) = first_error {
                return Err(e);
            }
        }
        Ok(RingListing {
            files: files.into_values().collect(),
            members: walked.len(),
            cut_short: false,
        })
    }
}
