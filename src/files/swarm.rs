//! A get from every holder at once. The getter fetches the file's outboard (one chaining
//! value per 1 MiB group, checked against the uploader's signed hash) from one holder, then
//! hands out batches of groups to every holder: a holder that answers sooner comes back for
//! more sooner, so faster holders carry more. Each group is checked as it arrives, so a bad
//! holder is caught within one group and never written as good; what it held back goes to
//! the others. When nothing is left to hand out, idle holders also fetch groups still in
//! flight elsewhere (end game): the first good copy wins, so one slow or dying holder does
//! not hold the whole get back. Groups already on disk and matching (an earlier get) are
//! kept: a get resumes from whatever was verified, in any order.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};

use futures::{AsyncReadExt, AsyncWriteExt};

use super::access::{Access, Via};
use super::error::FilesError;
use super::transfer::{self, read_frame, write_frame, GetReply, Progress, TransferRequest};
use crate::net::protocol::FileRequest;
use crate::net::PeerRef;
use crate::records::FileMeta;
use crate::replica::same_version;
use crate::verified::{self, Outboard, GROUP_BYTES};

/// Files smaller than this come from one holder: a second stream would cost more than it
/// brings.
pub const SWARM_MIN_BYTES: u64 = 4 * GROUP_BYTES;
/// Groups asked of a holder in one range request. Two: a holder whose copy turns out bad
/// has sent at most one group past the bad one when its stream is dropped (on a link slower
/// than the reader, only what was in flight), and a request per 2 MiB costs little.
const BATCH_GROUPS: u64 = 2;
/// Failed range requests after which a holder is given up for this get.
const MAX_FAILURES: u32 = 3;

/// What a fetch got, and from whom (from several holders here, or from one in `ops`).
pub(crate) struct Fetched {
    /// The holder that sent the most.
    pub from: PeerRef,
    pub resumed_from: u64,
    pub via: Via,
    /// Bytes each holder delivered.
    pub sources: Vec<(PeerRef, u64)>,
}

/// Which groups are done, waiting, or being fetched, shared by the holders' workers.
struct Plan {
    todo: VecDeque<u64>,
    done: Vec<bool>,
    /// How many workers are fetching each group now.
    fetching: Vec<u32>,
    bytes_done: u64,
    /// Bytes each holder delivered (groups written from its copy).
    delivered: Vec<u64>,
    /// Told once every group is in: workers still waiting on a dying holder are not awaited.
    finished: Arc<tokio::sync::Notify>,
}

impl Plan {
    /// The next batch for a worker: groups nobody has fetched yet, or (end game) a group
    /// still in flight with the fewest fetchers.
    fn next(&mut self) -> Vec<u64> {
        let mut batch = Vec::new();
        while batch.len() < BATCH_GROUPS as usize {
            let Some(g) = self.todo.pop_front() else {
                break;
            };
            if !self.done[g as usize] {
                batch.push(g);
            }
        }
        // Only a run of consecutive groups makes one range; the rest goes back.
        if let Some(&first) = batch.first() {
            let run = batch
                .iter()
                .enumerate()
                .take_while(|(i, g)| **g == first + *i as u64)
                .count();
            for g in batch.drain(run..).rev() {
                self.todo.push_front(g);
            }
        }
        if batch.is_empty() {
            let stolen = (0..self.done.len())
                .filter(|g| !self.done[*g] && self.fetching[*g] > 0)
                .min_by_key(|g| self.fetching[*g]);
            batch.extend(stolen.map(|g| g as u64));
        }
        for g in &batch {
            self.fetching[*g as usize] += 1;
        }
        batch
    }

    /// A worker stopped fetching `groups`; those not done go back to the front.
    fn give_back(&mut self, groups: &[u64]) {
        for g in groups.iter().rev() {
            self.fetching[*g as usize] = self.fetching[*g as usize].saturating_sub(1);
            if !self.done[*g as usize] && !self.todo.contains(g) {
                self.todo.push_front(*g);
            }
        }
    }

    fn all_done(&self) -> bool {
        self.done.iter().all(|d| *d)
    }
}

/// Fetches `version` into `out` from all of `sources` at once; see the module doc. Returns
/// the holder that sent the most, the bytes kept from an earlier get, how it was reached,
/// and the bytes each holder delivered.
/// `tree` is the outboard [`fetch_tree`] got (and how its holder was reached).
pub(crate) async fn fetch(
    access: &Access,
    version: &FileMeta,
    sources: &[PeerRef],
    out: &Path,
    progress: Progress<'_>,
    tree: (Arc<Outboard>, Via),
) -> Result<Fetched, FilesError> {
    let (tree, via) = tree;
    let partial = transfer::partial_path(out);
    let (file, earlier) = open_partial(&partial, version.size)?;
    let file = Arc::new(file);
    let done = if earlier {
        let (file, tree) = (file.clone(), tree.clone());
        tokio::task::spawn_blocking(move || verified_groups(&file, &tree))
            .await
            .map_err(|e| FilesError::Refused(format!("checking the partial file: {e}")))?
    } else {
        vec![false; tree.groups() as usize]
    };
    let resumed: u64 = done
        .iter()
        .enumerate()
        .filter(|(_, d)| **d)
        .map(|(g, _)| group_len(g as u64, version.size))
        .sum();
    let groups = tree.groups() as usize;
    let plan = Arc::new(Mutex::new(Plan {
        todo: (0..groups as u64).filter(|g| !done[*g as usize]).collect(),
        done,
        fetching: vec![0; groups],
        bytes_done: resumed,
        delivered: vec![0; sources.len()],
        finished: Arc::new(tokio::sync::Notify::new()),
    }));
    let finished = lock(&plan).finished.clone();
    let mut workers: futures::stream::FuturesUnordered<_> = sources
        .iter()
        .enumerate()
        .map(|(i, source)| {
            let (plan, file, tree) = (plan.clone(), file.clone(), tree.clone());
            async move {
                let worker = Worker {
                    access,
                    version,
                    source,
                    index: i,
                    plan: &plan,
                    file: &file,
                    tree: &tree,
                    progress,
                };
                (i, worker.work().await)
            }
        })
        .collect();
    let mut stopped = Vec::new();
    loop {
        tokio::select! {
            next = futures::StreamExt::next(&mut workers) => match next {
                Some((i, Err(e))) => stopped.push((i, e)),
                Some((_, Ok(()))) => {}
                None => break,
            },
            // Every group is in: a worker still waiting on a dying holder is dropped.
            _ = finished.notified() => break,
        }
    }
    drop(workers);
    let delivered = lock(&plan).delivered.clone();
    let shares: Vec<String> = sources
        .iter()
        .zip(&delivered)
        .map(|(s, n)| format!("{} {n}", s.addr.peer_id))
        .collect();
    tracing::info!(
        "{} from {} holders at once, bytes each: {}",
        version.name,
        sources.len(),
        shares.join(", ")
    );
    let finished = lock(&plan).all_done();
    if !finished {
        let why = stopped
            .first()
            .map(|(_, e)| e.to_string())
            .unwrap_or_else(|| "no holder could send the rest".into());
        return Err(FilesError::Refused(format!(
            "the get stopped with groups missing ({why}); the groups fetched are kept: run the \
             same get again to resume"
        )));
    }
    file.sync_all().map_err(local(&partial))?;
    std::fs::rename(&partial, out).map_err(local(out))?;
    let most = (0..sources.len())
        .max_by_key(|i| delivered[*i])
        .unwrap_or(0);
    Ok(Fetched {
        from: sources[most].clone(),
        resumed_from: resumed,
        via,
        sources: sources.iter().cloned().zip(delivered).collect(),
    })
}

fn lock(plan: &Mutex<Plan>) -> std::sync::MutexGuard<'_, Plan> {
    plan.lock().unwrap_or_else(|e| e.into_inner())
}

fn local(path: &Path) -> impl FnOnce(std::io::Error) -> FilesError + '_ {
    move |e| FilesError::Local {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Bytes in group `g` of a file of `size` bytes.
fn group_len(g: u64, size: u64) -> u64 {
    verified::group_span(g, size).map_or(0, |span| span.end - span.start)
}

/// The outboard from the first holder that sends one matching the signed hash.
pub(crate) async fn fetch_tree(
    access: &Access,
    version: &FileMeta,
    sources: &[PeerRef],
) -> Result<(Arc<Outboard>, Via), FilesError> {
    let mut last = FilesError::NotFound(version.name.clone());
    let tree_len = verified::outboard_len(version.size) * verified::CV_BYTES as u64;
    for source in sources {
        let asked = access
            .transfer(source, tree_len, |mut stream| async move {
                ask(
                    &mut stream,
                    TransferRequest::Tree {
                        name: version.name.clone(),
                    },
                    version,
                )
                .await?;
                let len = verified::outboard_len(version.size) as usize * verified::CV_BYTES;
                let mut outboard = vec![0; len];
                transfer::unstalled(async { Ok(stream.read_exact(&mut outboard).await?) }).await?;
                Ok(outboard)
            })
            .await;
        match asked {
            Ok((bytes, via)) => match Outboard::from_bytes(&bytes, version.size, version.hash) {
                Some(tree) => return Ok((Arc::new(tree), via)),
                None => {
                    tracing::info!(peer = %source.addr.peer_id, "sent an outboard that does not match the signed hash");
                    last = FilesError::Protocol {
                        peer: source.addr.peer_id.to_string(),
                    };
                }
            },
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Sends `request` for `version` and reads the holder's first answer, which must name
/// exactly that version; the bytes follow.
pub(super) async fn ask<S>(
    stream: &mut S,
    request: TransferRequest,
    version: &FileMeta,
) -> Result<(), transfer::TransferError>
where
    S: futures::AsyncRead + futures::AsyncWrite + Unpin,
{
    write_frame(stream, &request).await?;
    expect_sending(stream, version).await
}

/// Reads the holder's first answer: it must name exactly the chosen version.
async fn expect_sending<S>(
    stream: &mut S,
    version: &FileMeta,
) -> Result<(), transfer::TransferError>
where
    S: futures::AsyncRead + futures::AsyncWrite + Unpin,
{
    use transfer::TransferError;
    match transfer::unstalled(read_frame::<_, GetReply>(stream)).await? {
        GetReply::Sending { meta } if same_version(&meta, version) => Ok(()),
        GetReply::Sending { meta } => Err(TransferError::WrongVersion(format!(
            "'{}' by {} of {} bytes made at {}",
            meta.name, meta.uploader, meta.size, meta.created
        ))),
        GetReply::NotFound => Err(TransferError::NotFound(version.name.clone())),
        GetReply::Refused(why) => Err(TransferError::Refused(why)),
    }
}

/// The partial file, as long as the whole file (groups land in any order), and whether an
/// earlier get left bytes in it.
fn open_partial(partial: &Path, size: u64) -> Result<(std::fs::File, bool), FilesError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(partial)
        .map_err(local(partial))?;
    let len = file.metadata().map_err(local(partial))?.len();
    if len != size {
        file.set_len(size).map_err(local(partial))?;
    }
    Ok((file, len > 0))
}

/// Which groups of the partial file already hold the right bytes (blocking).
fn verified_groups(file: &std::fs::File, tree: &Outboard) -> Vec<bool> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; GROUP_BYTES as usize];
    (0..tree.groups())
        .map(|g| {
            let bytes = &mut buf[..group_len(g, tree.size()) as usize];
            file.read_exact_at(bytes, g * GROUP_BYTES).is_ok() && tree.check_group(g, bytes)
        })
        .collect()
}

/// One holder's part of a get.
struct Worker<'a> {
    access: &'a Access,
    version: &'a FileMeta,
    source: &'a PeerRef,
    /// Its place among the sources.
    index: usize,
    plan: &'a Mutex<Plan>,
    file: &'a Arc<std::fs::File>,
    tree: &'a Arc<Outboard>,
    progress: Progress<'a>,
}

impl Worker<'_> {
    /// Fetches batches until none is left. A bad group ends it at once (and the holder is
    /// told, so it re-checks its copy); so do a few failed requests.
    async fn work(&self) -> Result<(), FilesError> {
        let (access, version, source, plan) = (self.access, self.version, self.source, self.plan);
        let mut failures = 0;
        // One group's buffer for the whole get, passed to the disk thread and back: no
        // allocation per group.
        let spare: Mutex<Option<Vec<u8>>> = Mutex::new(None);
        loop {
            let batch = lock(plan).next();
            let Some(&first) = batch.first() else {
                return Ok(());
            };
            let start = first * GROUP_BYTES;
            let len: u64 = batch.iter().map(|g| group_len(*g, version.size)).sum();
            let got = access
                .transfer(source, len, |mut stream| {
                    let (batch, spare) = (batch.clone(), &spare);
                    async move {
                        ask(
                            &mut stream,
                            TransferRequest::Range {
                                name: version.name.clone(),
                                start,
                                len,
                            },
                            version,
                        )
                        .await?;
                        let mut buf = take_spare(spare);
                        for g in batch {
                            let len = group_len(g, version.size) as usize;
                            let bytes = &mut buf[..len];
                            transfer::unstalled(async { Ok(stream.read_exact(bytes).await?) })
                                .await?;
                            if !self.tree.check_group(g, bytes) {
                                return Err(transfer::TransferError::HashMismatch);
                            }
                            buf = self.deliver(g, buf, len).await?;
                        }
                        *spare.lock().unwrap_or_else(|e| e.into_inner()) = Some(buf);
                        let _ = stream.close().await;
                        Ok(())
                    }
                })
                .await;
            lock(plan).give_back(&batch);
            match got {
                Ok(_) => {}
                Err(FilesError::Transfer(transfer::TransferError::HashMismatch)) => {
                    tracing::warn!(peer = %source.addr.peer_id, "sent a group of {} that does not match its hash", version.name);
                    let (access, node, key) = (access.clone(), source.clone(), version.key);
                    tokio::spawn(async move {
                        let _ = access.file_request(&node, FileRequest::Check { key }).await;
                    });
                    return Err(FilesError::Transfer(transfer::TransferError::HashMismatch));
                }
                Err(e) => {
                    failures += 1;
                    tracing::info!(peer = %source.addr.peer_id, "range of {} failed: {e}", version.name);
                    if failures >= MAX_FAILURES {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Writes a checked group (the first `len` bytes of `buf`) into the partial file, unless
    /// another holder's copy of it got there first; gives the buffer back.
    async fn deliver(
        &self,
        g: u64,
        buf: Vec<u8>,
        len: usize,
    ) -> Result<Vec<u8>, transfer::TransferError> {
        if lock(self.plan).done[g as usize] {
            return Ok(buf);
        }
        let file = self.file.clone();
        let (buf, written) = tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            let written = file.write_all_at(&buf[..len], g * GROUP_BYTES);
            (buf, written)
        })
        .await
        .map_err(|e| transfer::TransferError::Io(std::io::Error::other(e)))?;
        written?;
        let bytes_done = {
            let mut plan = lock(self.plan);
            if plan.done[g as usize] {
                return Ok(buf);
            }
            plan.done[g as usize] = true;
            plan.bytes_done += len as u64;
            plan.delivered[self.index] += len as u64;
            if plan.all_done() {
                plan.finished.notify_one();
            }
            plan.bytes_done
        };
        if let Some(p) = self.progress {
            p(bytes_done, self.version.size);
        }
        Ok(buf)
    }
}

/// The worker's group buffer, or a new one.
fn take_spare(spare: &Mutex<Option<Vec<u8>>>) -> Vec<u8> {
    let kept = spare.lock().unwrap_or_else(|e| e.into_inner()).take();
    kept.unwrap_or_else(|| vec![0u8; GROUP_BYTES as usize])
}
