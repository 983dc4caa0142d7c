//! Put, get and remove as a user sees them, for ring members and one-shot clients alike.

use std::path::{Path, PathBuf};

use super::access::{Access, Via};
use super::error::FilesError;
use super::names::check_name;
use super::store::{unix_millis, FileMeta, Hash, Role};
use super::swarm::{self, Fetched};
use super::transfer::{self, Progress, TransferError, TransferRequest};
use crate::chord::{Id, LookupResult};
use crate::net::protocol::{FileRequest, FileResponse};
use crate::net::{Contact, PeerRef};
use crate::records::Removal;
use crate::replica::{self, Choice, Said};

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
    /// Bytes each holder delivered (checked and written), in the order they were asked;
    /// one entry when one holder sent the file.
    pub sources: Vec<(PeerRef, u64)>,
}

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
        chain: 0,
    };
    let ((copies, hash), via) = match (&access.local, access.is_me(&owner)) {
        (Some(files), true) => (
            files.store_upload(path, header, progress).await?,
            Via::Local,
        ),
        _ => put_when_not_busy(access, &owner, path, &header, progress).await?,
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
    let chosen = choose(access, name).await?;
    fetch_chosen(access, &chosen, out, progress).await
}

/// A version chosen for a get, and the holders that hold it, in the order to try them.
#[derive(Clone, Debug)]
pub struct Chosen {
    /// The version, its signature checked and its name the one asked for.
    pub version: FileMeta,
    pub sources: Vec<PeerRef>,
}

/// Pauses before each new try of a put that its owner refused as busy: it cuts transfers
/// that crawl to make room (see `files::slots`), so a moment later there is room.
const BUSY_PAUSES: [std::time::Duration; 3] = [
    std::time::Duration::from_millis(1500),
    std::time::Duration::from_secs(3),
    std::time::Duration::from_secs(6),
];

/// An upload to the key's owner, tried again a few times while the owner says it is busy
/// (there is no other place for it).
async fn put_when_not_busy(
    access: &Access,
    owner: &PeerRef,
    path: &Path,
    header: &TransferRequest,
    progress: Progress<'_>,
) -> Result<((u32, Hash), Via), FilesError> {
    let mut pauses = BUSY_PAUSES.iter();
    loop {
        match access.put_to(owner, path, header, progress).await {
            Err(FilesError::Transfer(TransferError::Refused(why))) if why.starts_with("busy") => {
                let Some(pause) = pauses.next() else {
                    return Err(TransferError::Refused(why).into());
                };
                tracing::info!("the owner is busy; trying again in {pause:?}");
                tokio::time::sleep(*pause).await;
            }
            other => return other,
        }
    }
}

/// The first half of a get: asks every holder of `name` which version it holds and chooses
/// one, so a caller can check it (its size, its uploader) before a byte moves.
pub async fn choose(access: &Access, name: &str) -> Result<Chosen, FilesError> {
    check_name(name)?;
    let key = Id::hash(name.as_bytes());
    let holders = candidates(access.lookup(key).await?);
    let answers = futures::future::join_all(holders.iter().map(|h| access.stat(h, name))).await;
    let refusal = answers
        .iter()
        .find_map(|a| a.as_ref().err().map(|e| e.to_string()));
    let said: Vec<Said> = answers
        .into_iter()
        .map(|a| a.unwrap_or(Said::Nothing))
        .collect();
    let (version, sources) = match replica::choose(&said) {
        Choice::Fetch { version, sources } => (version, sources),
        Choice::Removed => return Err(FilesError::Removed(name.into())),
        // A holder that refused may hold it: say why rather than "not found".
        Choice::NotFound => {
            return Err(match refusal {
                Some(reason) => FilesError::Unanswered {
                    name: name.into(),
                    reason,
                },
                None => FilesError::NotFound(name.into()),
            })
        }
    };
    let sources = sources.into_iter().map(|i| holders[i].clone()).collect();
    Ok(Chosen { version, sources })
}

/// The second half of a get: fetches the chosen version into `out`.
pub async fn fetch_chosen(
    access: &Access,
    chosen: &Chosen,
    out: &Path,
    progress: Progress<'_>,
) -> Result<GetReport, FilesError> {
    let version = &chosen.version;
    let fetched = fetch_version(access, version, &chosen.sources, out, progress).await?;
    Ok(GetReport {
        name: version.name.clone(),
        size: version.size,
        hash: version.hash,
        path: out.to_path_buf(),
        from: fetched.from,
        resumed_from: fetched.resumed_from,
        via: fetched.via,
        sources: fetched.sources,
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
) -> Result<Fetched, FilesError> {
    let key = version.key;
    // Several remote holders of a large file: from all of them at once, when one of them
    // sends the file's outboard (older peers do not; then one after the other, as below).
    let remote: Vec<PeerRef> = sources
        .iter()
        .filter(|s| !access.is_me(s))
        .cloned()
        .collect();
    let local_copy = access.local.is_some() && remote.len() < sources.len();
    // A resumed get goes this way too, even from one holder: its partial is checked group by
    // group, so a bad byte left by an earlier source is refetched, not blamed on this one.
    let resuming = transfer::partial_path(out).exists();
    if !local_copy
        && !remote.is_empty()
        && (remote.len() > 1 || resuming)
        && version.size >= swarm::SWARM_MIN_BYTES
    {
        match swarm::fetch_tree(access, version, &remote).await {
            Ok(tree) => return swarm::fetch(access, version, &remote, out, progress, tree).await,
            Err(e) => tracing::info!(
                "no outboard for {} ({e}); one holder at a time",
                version.name
            ),
        }
    }
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
            Ok((resumed_from, via)) => {
                return Ok(Fetched {
                    from: node.clone(),
                    resumed_from,
                    via,
                    sources: vec![(node.clone(), version.size - resumed_from)],
                })
            }
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
        FilesError::Transfer(TransferError::NotFound(_)) => {
            FilesError::NotFound(version.name.clone())
        }
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
