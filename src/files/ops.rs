//! Put, get and remove as a user sees them, for ring members and one-shot clients alike. An
//! [`Access`] says how to reach the ring: from this node's own table, or through an entry node.

use std::path::{Path, PathBuf};
use std::time::Duration;

use libp2p::PeerId;

use super::member::{verify_stat, Files};
use super::names::{check_name, NameError};
use super::store::{unix_millis, FileMeta, Hash, Role, StoreError};
use super::throttle::Throttled;
use super::transfer::{self, Progress, TransferError, TransferRequest, TRANSFER_PROTOCOL};
use crate::chord::{Id, LookupResult};
use crate::net::protocol::{FileRequest, FileResponse};
use crate::net::{Contact, PeerRef, WireRequest, WireResponse};
use crate::node::{NodeError, NodeHandle, Route};
use crate::records::Removal;
use crate::replica::{self, Choice, Said};

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Transfer(#[from] TransferError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read {path}: {reason}")]
    Local { path: String, reason: String },
    #[error("no copy of '{0}' could be found on the ring")]
    NotFound(String),
    #[error("'{0}' was removed by its uploader")]
    Removed(String),
    #[error("{0}")]
    Refused(String),
    #[error("cannot open a transfer stream to {peer}: {reason}")]
    Stream { peer: String, reason: String },
    #[error("{peer} answered out of protocol")]
    Protocol { peer: String },
    #[error(
        "{peer} can be reached only through relay {relay}, which lets at most {limit} bytes \
         through a connection: too little for file data. No direct connection came up within \
         {waited:?} (hole punching cannot get through a symmetric NAT). A relay started with \
         --relay-max-circuit-bytes 0 carries files"
    )]
    RelayTooSmall {
        peer: String,
        relay: String,
        limit: u64,
        waited: Duration,
    },
}

/// How a transfer's bytes travelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// Within this node (it holds the file itself).
    Local,
    Direct,
    /// Through a relay that carries file data.
    Relayed,
}

/// What a put did.
#[derive(Clone, Debug)]
pub struct PutReport {
    pub name: String,
    pub key: Id,
    pub size: u64,
    pub hash: Hash,
    pub owner: PeerRef,
    /// Copies that exist now (the owner's included).
    pub replicas: u32,
    /// How the bytes reached the owner.
    pub via: Via,
}

/// What a get did.
#[derive(Clone, Debug)]
pub struct GetReport {
    pub name: String,
    pub size: u64,
    pub hash: Hash,
    pub path: PathBuf,
    pub from: PeerRef,
    /// Bytes an earlier, interrupted get had already fetched (0: a fresh download).
    pub resumed_from: u64,
    /// How the bytes came.
    pub via: Via,
}

/// How an operation reaches the ring.
#[derive(Clone)]
pub struct Access {
    pub node: NodeHandle,
    pub control: libp2p_stream::Control,
    /// `None`: look up from this node's own routing table (a ring member). `Some`: ask this
    /// member first (a client outside the ring).
    pub via: Option<PeerRef>,
    /// Whoever acts: the uploader of what is put, who signs it with this key.
    pub identity: libp2p::identity::Keypair,
    /// The local file service, when this node is a member: lets it serve itself.
    pub local: Option<Files>,
    pub timeout: Duration,
    /// Cap on the bytes per second of this side's transfers (`--limit-rate`).
    pub rate_limit: Option<u64>,
    /// How long a transfer waits for a direct connection when a peer is reachable only
    /// through a relay.
    pub direct_wait: Duration,
}

impl Access {
    pub async fn lookup(&self, key: Id) -> Result<LookupResult<Contact>, FilesError> {
        Ok(match &self.via {
            Some(via) => self.node.lookup_via(via.clone(), key).await?,
            None => self.node.lookup(key).await?,
        })
    }

    /// Whoever acts (derived from the key each time: it is cheap for Ed25519).
    pub fn me(&self) -> PeerId {
        self.identity.public().to_peer_id()
    }

    fn is_me(&self, peer: &PeerRef) -> bool {
        peer.addr.peer_id == self.me()
    }

    /// A fresh transfer stream to `peer`, over a direct connection if one comes up in time,
    /// else through a relay that carries file data; otherwise a clear error.
    pub async fn open(&self, peer: &PeerRef) -> Result<(libp2p::Stream, Via), FilesError> {
        let stream_error = |reason: String| FilesError::Stream {
            peer: peer.addr.peer_id.to_string(),
            reason,
        };
        let route = self
            .node
            .connect(peer, self.timeout, self.direct_wait)
            .await
            .map_err(|e| stream_error(e.to_string()))?;
        let via = match route {
            Route::Direct => Via::Direct,
            Route::Relayed {
                relay,
                data_limit: Some(limit),
            } => {
                return Err(FilesError::RelayTooSmall {
                    peer: peer.addr.peer_id.to_string(),
                    relay: relay.to_string(),
                    limit,
                    waited: self.direct_wait,
                })
            }
            Route::Relayed { .. } => Via::Relayed,
        };
        let mut control = self.control.clone();
        match tokio::time::timeout(
            self.timeout,
            control.open_stream(peer.addr.peer_id, TRANSFER_PROTOCOL),
        )
        .await
        {
            Ok(Ok(stream)) => Ok((stream, via)),
            Ok(Err(e)) => Err(stream_error(e.to_string())),
            Err(_) => Err(stream_error("timed out".into())),
        }
    }

    /// Runs one transfer on a fresh stream to `peer`, on a new stream again when the peer
    /// dropped the last one unseen (see [`TransferError::NotAccepted`]).
    pub async fn transfer<T, F, Fut>(
        &self,
        peer: &PeerRef,
        mut run: F,
    ) -> Result<(T, Via), FilesError>
    where
        F: FnMut(Throttled<libp2p::Stream>) -> Fut,
        Fut: std::future::Future<Output = Result<T, TransferError>>,
    {
        let mut attempt = 0;
        loop {
            let (stream, via) = self.open(peer).await?;
            match run(Throttled::new(stream, self.rate_limit)).await {
                Err(TransferError::NotAccepted) if attempt < STREAM_ATTEMPTS => {
                    attempt += 1;
                    let pause = rand::random::<u64>() % (25 * attempt);
                    tokio::time::sleep(Duration::from_millis(10 + pause)).await;
                }
                other => return other.map(|t| (t, via)).map_err(FilesError::from),
            }
        }
    }

    /// Uploads the local file `path` to `peer` (see [`transfer::put`]).
    pub async fn put_to(
        &self,
        peer: &PeerRef,
        path: &Path,
        header: &TransferRequest,
        progress: Progress<'_>,
    ) -> Result<((u32, Hash), Via), FilesError> {
        // Uploads (this node is the uploader) sign; copies carry the uploader's signature.
        let signer = match header {
            TransferRequest::Put { uploader, .. } if *uploader == self.me().to_string() => {
                Some(&self.identity)
            }
            _ => None,
        };
        let size = match header {
            TransferRequest::Put { size, .. } => *size,
            TransferRequest::Get { .. } => 0,
        };
        let final_wait = self.final_wait(size);
        self.transfer(peer, |mut stream| {
            let header = header.clone();
            async move {
                transfer::put(&mut stream, path, header, signer, progress, final_wait).await
            }
        })
        .await
    }

    /// How long an uploader waits for the owner's last answer once its bytes are sent: the
    /// owner may still be copying the file to replica holders that missed the forward (three
    /// timeouts, plus a second per MiB at a slow 1 MiB/s).
    pub fn final_wait(&self, size: u64) -> Duration {
        self.timeout * 3 + Duration::from_secs(size >> 20)
    }

    /// Downloads the chosen version `expected` from `peer` into `out` (see [`transfer::get`]).
    pub async fn get_from(
        &self,
        peer: &PeerRef,
        expected: &FileMeta,
        out: &Path,
        progress: Progress<'_>,
    ) -> Result<(u64, Via), FilesError> {
        self.transfer(peer, |mut stream| async move {
            transfer::get(&mut stream, expected, out, progress).await
        })
        .await
    }

    /// What `peer` holds under `name`'s key, as far as signatures prove it.
    pub async fn stat(&self, peer: &PeerRef, name: &str) -> Said {
        let key = Id::hash(name.as_bytes());
        if let (Some(files), true) = (&self.local, self.is_me(peer)) {
            return files.said_here(&key);
        }
        match self.file_request(peer, FileRequest::Stat { key }).await {
            Ok(FileResponse::Stat { held, removed }) => {
                verify_stat(name, held, removed, unix_millis())
            }
            _ => Said::Nothing,
        }
    }

    /// Sends one file request to `peer` and unwraps the answer.
    pub async fn file_request(
        &self,
        peer: &PeerRef,
        request: FileRequest,
    ) -> Result<FileResponse, FilesError> {
        match self.node.request(peer, WireRequest::Files(request)).await? {
            WireResponse::Files(response) => Ok(response),
            WireResponse::Error(reason) => Err(FilesError::Refused(reason)),
            _ => Err(FilesError::Protocol {
                peer: peer.addr.peer_id.to_string(),
            }),
        }
    }
}

/// Fresh streams tried after the first when a peer drops them unseen.
const STREAM_ATTEMPTS: u64 = 8;

/// The owner of `key` and the nodes after it, in the order to try them.
pub(crate) fn candidates(found: LookupResult<Contact>) -> Vec<PeerRef> {
    let mut list = vec![found.owner];
    for b in found.backups {
        if list.iter().all(|n| n.id != b.id) {
            list.push(b);
        }
    }
    list
}

/// Puts the local file `path` on the ring under `name`.
pub async fn upload(
    access: &Access,
    path: &Path,
    name: &str,
    progress: Progress<'_>,
) -> Result<PutReport, FilesError> {
    check_name(name)?;
    let size = tokio::fs::metadata(path)
        .await
        .map_err(|e| FilesError::Local {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?
        .len();
    let key = Id::hash(name.as_bytes());
    let owner = access.lookup(key).await?.owner;
    let header = TransferRequest::Put {
        name: name.into(),
        size,
        hash: None,
        role: Role::Owner,
        uploader: access.me().to_string(),
        created: unix_millis(),
        signature: Vec::new(),
    };
    let ((copies, hash), via) = match (&access.local, access.is_me(&owner)) {
        (Some(files), true) => (
            files.store_upload(path, header, progress).await?,
            Via::Local,
        ),
        _ => access.put_to(&owner, path, &header, progress).await?,
    };
    Ok(PutReport {
        name: name.into(),
        key,
        size,
        hash,
        owner,
        replicas: copies,
        via,
    })
}

/// Gets `name` from the ring into `out`. Every holder of the key (the owner and the next
/// successors) is asked which version it holds; the replica core picks the version (the
/// uploader most holders vouch for, its newest signed version, unless its uploader removed it)
/// and the get fetches exactly that one, from the holders that have it, resuming what was
/// already fetched and moving on from any holder that fails, lies or sends bad bytes.
pub async fn download(
    access: &Access,
    name: &str,
    out: &Path,
    progress: Progress<'_>,
) -> Result<GetReport, FilesError> {
    check_name(name)?;
    let key = Id::hash(name.as_bytes());
    let holders = candidates(access.lookup(key).await?);
    let said = futures::future::join_all(holders.iter().map(|h| access.stat(h, name))).await;
    let (version, sources) = match replica::choose(&said) {
        Choice::Fetch { version, sources } => (version, sources),
        Choice::Removed => return Err(FilesError::Removed(name.into())),
        Choice::NotFound => return Err(FilesError::NotFound(name.into())),
    };
    let sources: Vec<PeerRef> = sources.into_iter().map(|i| holders[i].clone()).collect();
    let (from, resumed_from, via) = fetch_version(access, &version, &sources, out, progress).await?;
    Ok(GetReport {
        name: name.into(),
        size: version.size,
        hash: version.hash,
        path: out.to_path_buf(),
        from,
        resumed_from,
        via,
    })
}

/// Fetches the (verified) version `version` into `out` from the first of `sources` that
/// delivers it whole and matching its hash. A source whose bytes do not match is told
/// (`Check`), so it stops serving its copy and replaces it.
pub(crate) async fn fetch_version(
    access: &Access,
    version: &FileMeta,
    sources: &[PeerRef],
    out: &Path,
    progress: Progress<'_>,
) -> Result<(PeerRef, u64, Via), FilesError> {
    let key = version.key;
    let mut last = FilesError::NotFound(version.name.clone());
    for node in sources {
        let result = match (&access.local, access.is_me(node)) {
            (Some(files), true) => files.copy_out(&key, out).await.and_then(|meta| {
                if replica::same_version(&meta, version) {
                    Ok((0, Via::Local))
                } else {
                    Err(TransferError::WrongVersion("the local copy changed".into()).into())
                }
            }),
            _ => access.get_from(node, version, out, progress).await,
        };
        match result {
            Ok((resumed_from, via)) => return Ok((node.clone(), resumed_from, via)),
            Err(e) => {
                tracing::info!(peer = %node.addr.peer_id, "get of {} failed there: {e}", version.name);
                if matches!(e, FilesError::Transfer(TransferError::HashMismatch))
                    && !access.is_me(node)
                {
                    // Tell the holder, so it stops serving its bad copy and replaces it.
                    let (access, node) = (access.clone(), node.clone());
                    tokio::spawn(async move {
                        let _ = access.file_request(&node, FileRequest::Check { key }).await;
                    });
                }
                if !matches!(e, FilesError::Transfer(TransferError::NotFound(_)))
                    || matches!(last, FilesError::NotFound(_))
                {
                    last = e;
                }
            }
        }
    }
    // Nothing good arrived: no partial file of a failed fresh get is left behind.
    let partial = transfer::partial_path(out);
    if std::fs::metadata(&partial).is_ok_and(|m| m.len() == 0) {
        let _ = std::fs::remove_file(&partial);
    }
    Err(match last {
        FilesError::Transfer(TransferError::NotFound(_)) => FilesError::NotFound(version.name.clone()),
        other => other,
    })
}

/// Removes every copy of `name`. Only its uploader may.
pub async fn remove(access: &Access, name: &str) -> Result<u32, FilesError> {
    check_name(name)?;
    let owner = access.lookup(Id::hash(name.as_bytes())).await?.owner;
    let removal = Removal::sign(&access.identity, name, unix_millis());
    if let (Some(files), true) = (&access.local, access.is_me(&owner)) {
        return files.remove_as_owner(removal).await;
    }
    match access
        .file_request(&owner, FileRequest::Remove { removal })
        .await?
    {
        FileResponse::Removed { copies } => Ok(copies),
        _ => Err(FilesError::Protocol {
            peer: owner.addr.peer_id.to_string(),
        }),
    }
}
