//! How an operation reaches the ring: an [`Access`] looks keys up (from this node's own table,
//! or through an entry node for a one-shot client), opens transfer streams over the best
//! connection there is, and sends file requests.

use std::path::Path;
use std::time::Duration;

use libp2p::PeerId;

use super::error::FilesError;
use super::member::{verify_stat, Files};
use super::store::{unix_millis, FileMeta, Hash};
use super::throttle::Throttled;
use super::transfer::{self, Progress, TransferError, TransferRequest, TRANSFER_PROTOCOL};
use crate::chord::{Id, LookupResult};
use crate::metrics::{Counted, Protocol};
use crate::net::protocol::{FileRequest, FileResponse};
use crate::net::{Contact, PeerRef, WireRequest, WireResponse};
use crate::node::{NodeHandle, Route};
use crate::replica::Said;

/// How a transfer's bytes travelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// Within this node (it holds the file itself).
    Local,
    Direct,
    /// Through a relay that carries file data.
    Relayed,
}

/// A transfer stream, its bytes counted in the node's metrics.
pub type TransferStream = Counted<libp2p::Stream>;

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

    pub(crate) fn is_me(&self, peer: &PeerRef) -> bool {
        peer.addr.peer_id == self.me()
    }

    /// A fresh transfer stream to `peer` for about `needed` bytes, over a direct connection if
    /// one comes up in time, else through a relay whose per-connection allowance (learnt from
    /// its reservation) leaves room for them and [`RELAY_MARGIN`]; otherwise a clear error.
    pub async fn open(
        &self,
        peer: &PeerRef,
        needed: u64,
    ) -> Result<(TransferStream, Via), FilesError> {
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
            } if needed.saturating_add(RELAY_MARGIN) > limit => {
                return Err(FilesError::RelayTooSmall {
                    peer: peer.addr.peer_id.to_string(),
                    relay: relay.to_string(),
                    limit,
                    needed,
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
            Ok(Ok(stream)) => Ok((self.node.metrics().count(Protocol::Transfer, stream), via)),
            Ok(Err(e)) => Err(stream_error(e.to_string())),
            Err(_) => Err(stream_error("timed out".into())),
        }
    }

    /// Runs one transfer on a fresh stream to `peer`, on a new stream again when the peer
    /// dropped the last one unseen (see [`TransferError::NotAccepted`]).
    pub async fn transfer<T, F, Fut>(
        &self,
        peer: &PeerRef,
        needed: u64,
        mut run: F,
    ) -> Result<(T, Via), FilesError>
    where
        F: FnMut(Throttled<TransferStream>) -> Fut,
        Fut: std::future::Future<Output = Result<T, TransferError>>,
    {
        let mut attempt = 0;
        loop {
            let (stream, via) = self.open(peer, needed).await?;
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
            _ => 0,
        };
        let final_wait = self.final_wait(size);
        self.transfer(peer, size, |mut stream| {
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
        self.transfer(peer, expected.size, |mut stream| async move {
            transfer::get(&mut stream, expected, out, progress).await
        })
        .await
    }

    /// What `peer` holds under `name`'s key, as far as signatures prove it; its refusal
    /// when it answered with one (e.g. its copy cannot be read now).
    pub async fn stat(&self, peer: &PeerRef, name: &str) -> Result<Said, FilesError> {
        let key = Id::hash(name.as_bytes());
        if let (Some(files), true) = (&self.local, self.is_me(peer)) {
            return files.said_here(&key);
        }
        match self.file_request(peer, FileRequest::Stat { key }).await {
            Ok(FileResponse::Stat { held, removed }) => {
                Ok(verify_stat(name, held, removed, unix_millis()))
            }
            Err(refused @ FilesError::Refused(_)) => Err(refused),
            _ => Ok(Said::Nothing),
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

/// Room kept on a relayed connection beside a transfer's bytes: its frames, and the Chord
/// messages that share the connection.
pub const RELAY_MARGIN: u64 = 1 << 20;

/// Fresh streams tried after the first when a peer drops them unseen.
const STREAM_ATTEMPTS: u64 = 8;

impl Files {
    /// How this node reaches the ring for its own puts and gets.
    pub fn access(&self) -> Access {
        Access {
            node: self.inner.node.clone(),
            control: self.inner.control.clone(),
            via: None,
            identity: self.inner.identity.clone(),
            local: Some(self.clone()),
            timeout: self.inner.config.timeout,
            rate_limit: None,
            direct_wait: self.inner.config.direct_wait,
        }
    }
}
