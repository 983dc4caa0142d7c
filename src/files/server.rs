//! The inbound side of transfer streams: serving gets, and receiving puts from uploaders and
//! copies from other members, each checked against the uploader's signature and the replica
//! core's admission rule before a byte is taken, and again at commit.

use futures::StreamExt;
use libp2p::PeerId;

use super::access::TransferStream as Stream;
use super::member::{now, unreadable, Files};
use super::names::check_name;
use super::slots::IDLE;
use super::slots::{Kind, Limits, Serving};
use super::store::{Hash, Role, StoreError};
use super::transfer::Progress;
use super::transfer::{
    read_frame, receive_bytes, send_bytes, unstalled, write_frame, GetReply, PutReply, Receiving,
    Trailer, TransferError, TransferRequest,
};
use crate::chord::Id;
use crate::metrics::Protocol;
use crate::net::{node_id, PeerRef};
use crate::records::FileMeta;
use crate::replica::{admit, Admit, Offer};

impl Files {
    /// Accepts transfer streams until the node stops. Always polling: libp2p-stream drops
    /// inbound streams nobody is waiting for.
    /// The transfers run in a set owned by this task, so stopping the node stops them too.
    pub async fn serve(self, mut incoming: libp2p_stream::IncomingStreams) {
        let mut transfers = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                next = incoming.next() => {
                    let Some((peer, stream)) = next else { return };
                    let files = self.clone();
                    transfers.spawn(async move {
                        if let Err(e) = files.serve_stream(peer, stream).await {
                            tracing::info!(%peer, "transfer ended with an error: {e}");
                        }
                    });
                }
                Some(_) = transfers.join_next(), if !transfers.is_empty() => {}
            }
        }
    }

    async fn serve_stream(
        &self,
        peer: PeerId,
        stream: libp2p::Stream,
    ) -> Result<(), TransferError> {
        let mut stream = self.metrics().count(Protocol::Transfer, stream);
        let request = tokio::time::timeout(
            self.inner.config.timeout,
            read_frame::<_, TransferRequest>(&mut stream),
        )
        .await
        .map_err(|_| TransferError::Protocol("no request in time".into()))??;
        let neighbour = self
            .view()
            .await
            .is_ok_and(|v| v.is_neighbour(&node_id(&peer)));
        let kind = match request {
            TransferRequest::Put { .. } => Kind::Put,
            _ => Kind::Get,
        };
        let config = &self.inner.config;
        let limits = Limits {
            total: config.max_transfers,
            per_peer: config.max_transfers_per_peer,
        };
        let slot = Serving::slot(&self.inner.serving, limits, peer, kind, neighbour).await;
        let Some(slot) = slot else {
            let why = "busy: too many transfers under way here; try again or another holder";
            return match request {
                TransferRequest::Put { .. } => {
                    write_frame(&mut stream, &PutReply::Refused(why.into())).await
                }
                _ => write_frame(&mut stream, &GetReply::Refused(why.into())).await,
            };
        };
        let moved = slot.moved();
        let moved: Progress<'_> = Some(&moved);
        let work = async {
            match request {
                TransferRequest::Get { name, offset } => {
                    self.serve_get(&mut stream, &name, offset, None, moved)
                        .await
                }
                TransferRequest::Range { name, start, len } => {
                    self.serve_get(&mut stream, &name, start, Some(len), moved)
                        .await
                }
                TransferRequest::Tree { name } => self.serve_tree(&mut stream, &name, None).await,
                TransferRequest::Pieces { name, group } => {
                    self.serve_tree(&mut stream, &name, Some(group)).await
                }
                put @ TransferRequest::Put { .. } => {
                    let answer = self.receive_put(peer, &mut stream, put, moved).await;
                    let reply = match answer {
                        Ok(reply) => reply,
                        Err(e) => PutReply::Failed(e.to_string()),
                    };
                    write_frame(&mut stream, &reply).await
                }
            }
        };
        tokio::select! {
            done = work => done,
            _ = slot.cut.notified() => {
                tracing::info!(%peer, "cut a transfer that moved nothing for {:?}, to make room", IDLE);
                Err(TransferError::Stalled(IDLE))
            }
        }
    }

    /// The good copy of `name` held here, or (after telling the asker why not) none.
    async fn servable(
        &self,
        stream: &mut Stream,
        name: &str,
    ) -> Result<Option<FileMeta>, TransferError> {
        let key = Id::hash(name.as_bytes());
        let reply = match self.inner.store.try_get(&key) {
            Ok(Some(meta)) if !self.is_corrupt(&key) => return Ok(Some(meta)),
            Ok(_) => GetReply::NotFound,
            Err(e) => GetReply::Refused(unreadable(e).to_string()),
        };
        write_frame(stream, &reply).await?;
        Ok(None)
    }

    /// Sends `name` from `offset`: to the end, or `len` bytes of it (a range).
    async fn serve_get(
        &self,
        stream: &mut Stream,
        name: &str,
        offset: u64,
        len: Option<u64>,
        moved: Progress<'_>,
    ) -> Result<(), TransferError> {
        let Some(meta) = self.servable(stream, name).await? else {
            return Ok(());
        };
        let key = meta.key;
        let len = len.unwrap_or(meta.size.saturating_sub(offset));
        if offset.checked_add(len).is_none_or(|end| end > meta.size) {
            let why = format!("bytes {offset}+{len} are past the end");
            return write_frame(stream, &GetReply::Refused(why)).await;
        }
        let path = self.inner.store.data_path(&key);
        let opened = async {
            let mut file = tokio::fs::File::open(&path).await?;
            tokio::io::AsyncSeekExt::seek(&mut file, std::io::SeekFrom::Start(offset)).await?;
            Ok::<_, std::io::Error>(file)
        };
        let file = match opened.await {
            Ok(file) => file.into_std().await,
            Err(e) => {
                // Say so, rather than leave the asker guessing. A read error is not corruption:
                // the copy stays.
                let why = format!("the stored copy cannot be read now: {e}");
                return write_frame(stream, &GetReply::Refused(why)).await;
            }
        };
        write_frame(stream, &GetReply::Sending { meta: meta.clone() }).await?;
        // No hashing here: the receiver verifies, and tells this node (Check) when it finds a
        // bad copy, so the hot path costs one hash, not two.
        send_bytes(file, &path, stream, len, None, moved).await?;
        futures::AsyncWriteExt::close(stream).await?;
        Ok(())
    }

    /// Sends the outboard of `name` (computed once and kept beside the file), or with `group`
    /// the piece values of that group (computed from its bytes).
    async fn serve_tree(
        &self,
        stream: &mut Stream,
        name: &str,
        group: Option<u64>,
    ) -> Result<(), TransferError> {
        let Some(meta) = self.servable(stream, name).await? else {
            return Ok(());
        };
        let outboard = match group {
            Some(group) => self.pieces(&meta, group).await,
            None => self.outboard(&meta).await,
        };
        let outboard = match outboard {
            Ok(outboard) => outboard,
            Err(e) => {
                let why = format!("the stored copy cannot be read now: {e}");
                return write_frame(stream, &GetReply::Refused(why)).await;
            }
        };
        write_frame(stream, &GetReply::Sending { meta }).await?;
        unstalled(async { Ok(futures::AsyncWriteExt::write_all(stream, &outboard).await?) })
            .await?;
        futures::AsyncWriteExt::close(stream).await?;
        Ok(())
    }

    /// The receiving side of a put: from an uploader (`uploader` is the sender itself) or from
    /// another ring member copying a file (replication, hand-off, repair).
    async fn receive_put(
        &self,
        peer: PeerId,
        stream: &mut Stream,
        header: TransferRequest,
        moved: Progress<'_>,
    ) -> Result<PutReply, TransferError> {
        // A header that names its hash carries the signature of that version (a copy of a
        // stored file); one without (an upload, or its forward) is checked at the end.
        let header_signed = match &header {
            TransferRequest::Put {
                hash: Some(hash),
                signature,
                ..
            } => header.version(hash).is_some_and(|v| v.is_signed(signature)),
            _ => true,
        };
        let TransferRequest::Put {
            name,
            size,
            hash,
            role,
            uploader,
            created,
            signature,
            chain,
        } = header
        else {
            return Err(TransferError::Protocol("not a put".into()));
        };
        if let Err(e) = check_name(&name) {
            return Ok(PutReply::Refused(e.to_string()));
        }
        let key = Id::hash(name.as_bytes());
        let store = &self.inner.store;
        let direct = uploader == peer.to_string();
        // An upload (its hash and signature come in the trailer) to the key's owner, from the
        // uploader or from a client acting for it: checked at the end like any upload, so it
        // may be passed on to the replica holders while it arrives.
        let upload = hash.is_none() && role == Role::Owner;
        // A copy passed on by another node must carry its uploader's signature.
        if !direct && !header_signed {
            return Ok(PutReply::Refused(format!(
                "the copy of '{name}' does not carry a valid signature of its uploader"
            )));
        }
        let offer = Offer {
            uploader: &uploader,
            created,
            hash: hash.as_ref(),
            direct,
        };
        let held = store.get(&key);
        let stone = store.tombstone(&key, &uploader);
        match admit(offer, held.as_ref(), stone.as_ref(), now()) {
            Admit::Accept => {}
            Admit::Refuse(why) => return Ok(PutReply::Refused(format!("'{name}': {why}"))),
            Admit::Removed(_) => return Ok(PutReply::Removed),
            Admit::Identical => {
                let Some(existing) = held else {
                    return Ok(PutReply::Refused("nothing held".into()));
                };
                // Identical copy already here: only the role may change.
                if role == Role::Owner {
                    store.set_role(&key, Role::Owner).map_err(store_error)?;
                }
                store.confirm(&key);
                let copies = if direct || upload {
                    self.copies_after(role, &existing).await
                } else {
                    // A hand-off to a node that already has the bytes: answer at once (the
                    // sender waits under a stall bound) and replicate in the background.
                    if role == Role::Owner {
                        let (files, meta) = (self.clone(), existing.clone());
                        tokio::spawn(async move { files.replicate(&meta).await });
                    }
                    1
                };
                return Ok(PutReply::Done {
                    copies,
                    hash: existing.hash,
                });
            }
        }
        // Room for the bytes before they move: a full node refuses at once, and transfers under
        // way count against the limit.
        let _room = match store.reserve(size) {
            Ok(room) => room,
            Err(e) => return Ok(PutReply::Refused(e.to_string())),
        };
        // An owner passes an upload on while it arrives, to its first replica holder, which
        // passes it on to the next (a chain): every copy made in one pass, and no uplink
        // carries more than one.
        let holders = match upload {
            true => self.view().await.map(|v| v.holders).unwrap_or_default(),
            false => Vec::new(),
        };
        let (next, onward) = if upload {
            (
                holders.first().cloned(),
                holders.len().saturating_sub(1) as u32,
            )
        } else if role == Role::Replica && hash.is_none() && chain > 0 {
            (self.next_in_chain(&key).await, chain.min(MAX_CHAIN) - 1)
        } else {
            (None, 0)
        };
        let mut forward = match &next {
            Some(to) => vec![
                self.open_forward(to, &name, size, &uploader, created, onward)
                    .await,
            ],
            None => Vec::new(),
        };
        write_frame(stream, &PutReply::Ready).await?;
        let incoming = store.begin(&key).map_err(store_error)?;
        let path = store.data_path(&key);
        let into = Receiving {
            file: incoming.file.try_clone().map_err(TransferError::Io)?,
            path: &path,
            hasher: blake3::Hasher::new(),
            forward: &mut forward,
        };
        let hasher = receive_bytes(stream, into, size, moved, 0).await?.hasher;
        let trailer: Trailer = unstalled(read_frame(stream)).await?;
        let computed: Hash = *hasher.finalize().as_bytes();
        if computed != trailer.hash || hash.is_some_and(|h| h != computed) {
            return Ok(PutReply::Failed(
                "the data did not match its hash; nothing was stored".into(),
            ));
        }
        // Uploads (and their forwards) sign in the trailer; copies of stored files in the header.
        let signature = if signature.is_empty() {
            trailer.signature
        } else {
            signature
        };
        let meta = FileMeta {
            name,
            key,
            size,
            hash: computed,
            role,
            uploader: uploader.clone(),
            created,
            signature,
        };
        if !meta.version().is_signed(&meta.signature) {
            return Ok(PutReply::Failed(
                "the uploader's signature does not match the data; nothing was stored".into(),
            ));
        }
        // Asked again at commit: the name may have been taken, or removed, while the bytes came.
        let offer = Offer {
            hash: Some(&meta.hash),
            ..offer
        };
        let stone = store.tombstone(&key, &meta.uploader);
        let committed = store.commit(incoming, meta.clone(), |held| {
            match admit(offer, held, stone.as_ref(), now()) {
                Admit::Refuse(why) => Err(format!("'{}': {why}", meta.name)),
                Admit::Removed(_) => Err(format!("'{}' was removed meanwhile", meta.name)),
                Admit::Accept | Admit::Identical => Ok(()),
            }
        });
        match committed {
            Err(StoreError::Refused(why)) => return Ok(PutReply::Refused(why)),
            other => other.map_err(store_error)?,
        }
        // A newer version lives: an older removal of the same uploader no longer applies.
        store.clear_tombstone(&key, &meta.uploader, meta.created);
        let forwarded = self.finish_forwards(&mut forward, &meta).await;
        let copies = if upload {
            // A chain that broke reached the holders before the break; the rest get a copy
            // now.
            let reached = (forwarded as usize).min(holders.len());
            1 + forwarded + self.replicate_to(&meta, &holders[reached..]).await
        } else if role == Role::Replica {
            1 + forwarded
        } else {
            self.copies_after(role, &meta).await
        };
        Ok(PutReply::Done {
            copies,
            hash: computed,
        })
    }

    /// A stream to `to` that took the header of a forwarded upload, asking it to pass the
    /// bytes on to `chain` more holders (none if it did not take it).
    async fn open_forward(
        &self,
        to: &PeerRef,
        name: &str,
        size: u64,
        uploader: &str,
        created: u64,
        chain: u32,
    ) -> Option<Stream> {
        let header = TransferRequest::Put {
            name: name.into(),
            size,
            hash: None,
            role: Role::Replica,
            uploader: uploader.into(),
            created,
            signature: Vec::new(),
            chain,
        };
        let (mut stream, _) = self.access().open(to, size).await.ok()?;
        write_frame(&mut stream, &header).await.ok()?;
        match unstalled(read_frame::<_, PutReply>(&mut stream)).await {
            Ok(PutReply::Ready) => Some(stream),
            _ => None,
        }
    }

    /// Where a chain holder passes a forwarded upload on: its first successor, unless that
    /// one owns the key (the chain came round the ring to where it started).
    async fn next_in_chain(&self, key: &Id) -> Option<PeerRef> {
        let view = self.view().await.ok()?;
        let next = view.holders.first().or(view.spares.first())?.clone();
        (!key.in_half_open(&view.me, &next.id)).then_some(next)
    }

    /// Ends forwarded uploads: the trailer with the uploader's hash and signature, then each
    /// holder's answer (once it has committed its copy and its own forward), waiting at most
    /// twice the transfer timeout. Returns the copies the forwards made.
    async fn finish_forwards(&self, forward: &mut [Option<Stream>], meta: &FileMeta) -> u32 {
        let trailer = Trailer {
            hash: meta.hash,
            signature: meta.signature.clone(),
        };
        // The links commit at about the same time (the bytes stream through all of them at
        // once); a link that does not answer by then is given up, and an owner copies the
        // file to the holders after the break itself, within the uploader's patience.
        let wait = self.inner.config.timeout * 2;
        let finish = forward.iter_mut().map(|slot| {
            let trailer = &trailer;
            async move {
                let stream = slot.as_mut()?;
                let answer = async {
                    write_frame(stream, trailer).await?;
                    tokio::time::timeout(wait, read_frame::<_, PutReply>(stream))
                        .await
                        .map_err(|_| TransferError::NoAnswer(wait))?
                };
                match answer.await {
                    Ok(PutReply::Done { hash, copies }) if hash == meta.hash => Some(copies),
                    Ok(other) => {
                        tracing::debug!(name = meta.name, "forwarded copy: {other:?}");
                        None
                    }
                    Err(e) => {
                        tracing::debug!(name = meta.name, "forwarded copy failed: {e}");
                        None
                    }
                }
            }
        });
        let copies = futures::future::join_all(finish).await;
        copies.into_iter().flatten().sum()
    }

    /// An owner replicates what it just stored before it answers; a replica is one copy.
    async fn copies_after(&self, role: Role, meta: &FileMeta) -> u32 {
        match role {
            Role::Owner => 1 + self.replicate(meta).await,
            Role::Replica => 1,
        }
    }
}

/// Holders one forwarded upload passes through at most (the longest chain asked for is
/// R - 1 with R ≤ 16): a stranger cannot make the chain go round the ring.
const MAX_CHAIN: u32 = 16;

pub(super) fn store_error(e: StoreError) -> TransferError {
    TransferError::Protocol(e.to_string())
}
