//! File data over dedicated libp2p streams, protocol `/chord-p2p/transfer/1.0.0`.
//!
//! A stream carries one transfer. Control messages are frames (u32 big-endian length, then
//! CBOR, at most 64 KiB); file bytes travel raw between them, in 256 KiB chunks, at most a few
//! of them queued between the disk thread and the stream, so memory per transfer stays bounded
//! whatever the file size and flow control is the transport's.
//!
//! Put:  → Put header   ← Ready | Done | Refused   → `size` bytes   → Trailer{hash}   ← Done | Failed
//! Get:  → Get{name, offset}   ← Sending{meta} | NotFound | Refused   ← bytes from offset to end
//! Range: → Range{name, start, len}   ← Sending{meta} | …   ← `len` bytes from `start`
//! Tree: → Tree{name}   ← Sending{meta} | …   ← the outboard: 32 bytes per 1 MiB group
//! Pieces: → Pieces{name, group}   ← Sending{meta} | …   ← 32 bytes per 16 KiB piece of it
//!
//! A getter with several holders fetches the tree once (checked against the signed hash),
//! then disjoint ranges from every holder at once, each 1 MiB group checked as it arrives
//! (`crate::verified`).
//!
//! Neither side takes the other's word: a receiver checks the uploader's signature and the
//! hash of the bytes; a getter checks that `Sending` names the version it chose (name,
//! uploader, time, size, hash, signature) before it writes a byte.

use std::path::{Path, PathBuf};

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt as _;

use crate::records::{FileMeta, Hash, Role, Version};
use crate::replica::same_version;

pub const TRANSFER_PROTOCOL: StreamProtocol = StreamProtocol::new("/chord-p2p/transfer/2.0.0");
/// Largest control frame.
pub const MAX_FRAME: usize = 64 * 1024;
/// File bytes move in chunks of this size: the memory a transfer holds.
pub const CHUNK: usize = 256 * 1024;
/// A transfer that moves no 256 KiB chunk (and gets no answer) for this long has failed: it
/// runs below about 8 KiB/s, or has stopped.
pub const STALL: std::time::Duration = std::time::Duration::from_secs(30);

/// Bounds one step of a transfer by [`STALL`].
pub(crate) async fn unstalled<T>(
    step: impl std::future::Future<Output = Result<T, TransferError>>,
) -> Result<T, TransferError> {
    tokio::time::timeout(STALL, step)
        .await
        .map_err(|_| TransferError::Stalled(STALL))?
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum TransferRequest {
    /// Store a file. `hash` is known for copies between nodes (the receiver may already have
    /// it) and unknown for uploads, which send it in the trailer.
    Put {
        name: String,
        size: u64,
        #[serde(with = "crate::records::opt_bytes")]
        hash: Option<Hash>,
        role: Role,
        uploader: String,
        created: u64,
        /// The uploader's signature, for copies between nodes; an upload signs in the trailer
        /// (the hash is known only at the end).
        #[serde(with = "crate::records::bytes")]
        signature: Vec<u8>,
        /// For a forwarded upload (role replica, no hash): how many further holders along the
        /// receiver's successors it should pass the bytes on to while they arrive (chain
        /// replication: each uplink carries one copy). 0 for everything else.
        #[serde(default)]
        chain: u32,
    },
    /// Send a file from `offset` on (a resumed download asks for the rest only).
    Get { name: String, offset: u64 },
    /// Send `len` bytes of a file from `start` (one part of a get from several holders).
    Range { name: String, start: u64, len: u64 },
    /// Send the file's outboard: the BLAKE3 chaining value of each 1 MiB group, in order.
    Tree { name: String },
    /// Send the chaining values of the 16 KiB pieces of one group (the ends of a range read).
    Pieces { name: String, group: u64 },
}

impl TransferRequest {
    /// The version a Put announces, with `hash` (its own, or the one of the bytes that came):
    /// what its uploader signs.
    pub fn version<'a>(&'a self, hash: &'a Hash) -> Option<Version<'a>> {
        match self {
            TransferRequest::Put {
                name,
                size,
                uploader,
                created,
                ..
            } => Some(Version {
                name,
                size: *size,
                hash,
                created: *created,
                uploader,
            }),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum PutReply {
    /// Send the bytes.
    Ready,
    /// Stored (or already held, identical): `copies` exist now, counting replicas made.
    Done {
        copies: u32,
        #[serde(with = "crate::records::bytes")]
        hash: Hash,
    },
    Refused(String),
    /// The uploader removed this name after this copy was made: do not keep it anywhere.
    Removed,
    /// The bytes did not arrive whole or did not match their hash; nothing was stored.
    Failed(String),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Trailer {
    #[serde(with = "crate::records::bytes")]
    pub hash: Hash,
    /// The uploader's signature of the statement with this hash (uploads only).
    #[serde(with = "crate::records::bytes")]
    pub signature: Vec<u8>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum GetReply {
    Sending { meta: FileMeta },
    NotFound,
    Refused(String),
}

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("transfer interrupted: {0}")]
    Io(#[from] std::io::Error),
    #[error("local file {path}: {source}")]
    Local {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("peer broke the transfer protocol: {0}")]
    Protocol(String),
    #[error("refused: {0}")]
    Refused(String),
    #[error("no file named '{0}' on that node")]
    NotFound(String),
    #[error("the data did not match its hash (corrupt copy)")]
    HashMismatch,
    #[error("the file changed while it was being sent")]
    Changed,
    /// The stream closed before the peer said a word: it never took the request (libp2p-stream
    /// drops inbound streams while the peer's accept loop is busy). Safe to try again.
    #[error("the peer did not take the transfer stream")]
    NotAccepted,
    #[error("the uploader removed this file after this copy was made")]
    Removed,
    #[error("no data moved for {0:?}: the peer stalled or vanished")]
    Stalled(std::time::Duration),
    #[error("no final answer within {0:?} after the data was sent")]
    NoAnswer(std::time::Duration),
    #[error("the holder offered another version than the one chosen: {0}")]
    WrongVersion(String),
    #[error("{needed} bytes do not fit in the {free} bytes free at {path}")]
    NoSpace {
        path: String,
        needed: u64,
        free: u64,
    },
}

/// An I/O failure before the peer's first answer means the peer never saw the request.
fn before_answer(e: TransferError) -> TransferError {
    match e {
        TransferError::Io(_) => TransferError::NotAccepted,
        other => other,
    }
}

pub fn local_error(path: &Path) -> impl FnOnce(std::io::Error) -> TransferError + '_ {
    move |source| TransferError::Local {
        path: path.display().to_string(),
        source,
    }
}

pub async fn write_frame<W, T>(w: &mut W, value: &T) -> Result<(), TransferError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let mut bytes = Vec::new();
    cbor4ii::serde::to_writer(&mut bytes, value)
        .map_err(|e| TransferError::Protocol(e.to_string()))?;
    if bytes.len() > MAX_FRAME {
        return Err(TransferError::Protocol("frame too large".into()));
    }
    w.write_all(&(bytes.len() as u32).to_be_bytes()).await?;
    w.write_all(&bytes).await?;
    w.flush().await?;
    Ok(())
}

pub async fn read_frame<R, T>(r: &mut R) -> Result<T, TransferError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(TransferError::Protocol(format!("frame of {len} bytes")));
    }
    let mut bytes = vec![0u8; len];
    r.read_exact(&mut bytes).await?;
    cbor4ii::serde::from_slice(&bytes).map_err(|e| TransferError::Protocol(e.to_string()))
}

/// Progress callback: bytes done so far, of how many in all.
pub type Progress<'a> = Option<&'a (dyn Fn(u64, u64) + Send + Sync)>;

/// Copies exactly `size` bytes from `file` (from its current position) to the stream, feeding
/// `hasher` when there is one (an uploader hashes what it sends; a server leaves checking to
/// the receiver). The file is read and hashed on a blocking thread a few chunks ahead of the
/// network, so neither waits for the other.
pub async fn send_bytes<W: AsyncWrite + Unpin>(
    file: std::fs::File,
    path: &Path,
    to: &mut W,
    size: u64,
    hasher: Option<&mut blake3::Hasher>,
    progress: Progress<'_>,
) -> Result<(), TransferError> {
    let (to_net, mut queue) = tokio::sync::mpsc::channel::<Vec<u8>>(DEPTH);
    let (spare_tx, mut spare) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let own = hasher.as_deref().cloned();
    let reader =
        tokio::task::spawn_blocking(move || read_chunks(file, size, own, to_net, &mut spare));
    let sent = async {
        let mut done = 0u64;
        while let Some(chunk) = queue.recv().await {
            unstalled(async { Ok(to.write_all(&chunk).await?) }).await?;
            done += chunk.len() as u64;
            if let Some(p) = progress {
                p(done, size);
            }
            let _ = spare_tx.send(chunk);
        }
        to.flush().await?;
        Ok::<_, TransferError>(done)
    }
    .await;
    // Gone on a network error: the reader's next hand-over fails and it stops.
    drop(queue);
    let read = disk_thread(reader).await?.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => TransferError::Changed,
        _ => local_error(path)(e),
    });
    match (sent, read) {
        (_, Err(e)) | (Err(e), Ok(_)) => Err(e),
        (Ok(done), Ok(_)) if done < size => Err(TransferError::Changed),
        (Ok(_), Ok(hashed)) => {
            if let (Some(hasher), Some(hashed)) = (hasher, hashed) {
                *hasher = hashed;
            }
            Ok(())
        }
    }
}

/// The disk side of a send, on a blocking thread: reads whole chunks (a file that ends early
/// has changed: `UnexpectedEof`), hashes them if asked, and queues them for the network.
fn read_chunks(
    mut file: std::fs::File,
    size: u64,
    mut hasher: Option<blake3::Hasher>,
    queue: tokio::sync::mpsc::Sender<Vec<u8>>,
    spare: &mut tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
) -> std::io::Result<Option<blake3::Hasher>> {
    let mut done = 0u64;
    while done < size {
        let want = CHUNK.min((size - done) as usize);
        let mut buf = reuse(spare, want);
        std::io::Read::read_exact(&mut file, &mut buf)?;
        if let Some(hasher) = hasher.as_mut() {
            hasher.update(&buf);
        }
        done += want as u64;
        if queue.blocking_send(buf).is_err() {
            break;
        }
    }
    Ok(hasher)
}

/// A buffer of `len` bytes: one the other side handed back if there is one, else a new one.
fn reuse(spare: &mut tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>, len: usize) -> Vec<u8> {
    let mut buf = spare.try_recv().unwrap_or_default();
    buf.resize(len, 0);
    buf
}

/// What a transfer's disk thread returned (a panic there is an I/O failure here).
async fn disk_thread<T>(task: tokio::task::JoinHandle<T>) -> Result<T, TransferError> {
    task.await
        .map_err(|e| TransferError::Io(std::io::Error::other(e)))
}

/// Starts writing a file's dirty pages to disk every [`WRITEBACK`] bytes while it is still
/// being received, so the fsync at the end waits for the last stretch only.
const WRITEBACK: u64 = 8 * 1024 * 1024;

/// Chunks queued between the network side of a receive and its disk writer. With the chunk
/// being filled and the one being written, a transfer holds at most `DEPTH + 2` chunks.
const DEPTH: usize = 4;

fn start_writeback(file: &std::fs::File, from: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a plain syscall on a descriptor we own; it only schedules I/O. Failure only
        // means the final fsync does all the work, so its result is ignored.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                from as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, from, len);
}

/// Where received bytes go: the file being written (at its end), the running hash, and streams
/// they are passed on to as they arrive (an owner forwarding an upload to its replicas while
/// it receives it). A forward that fails is dropped; the transfer itself goes on.
pub struct Receiving<'a, W> {
    pub file: std::fs::File,
    pub path: &'a Path,
    pub hasher: blake3::Hasher,
    pub forward: &'a mut [Option<W>],
}

/// A finished receive: the file (written, not yet synced) and the hash of all it holds.
pub struct Received {
    pub file: std::fs::File,
    pub hasher: blake3::Hasher,
}

/// The disk side of a receive, on a blocking thread: hashes and writes each chunk in order
/// and hands the buffer back for reuse. `offset` is where the file's end was at the start.
fn write_chunks(
    mut file: std::fs::File,
    mut hasher: blake3::Hasher,
    offset: u64,
    queue: &mut tokio::sync::mpsc::Receiver<Vec<u8>>,
    spare: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
) -> std::io::Result<Received> {
    let mut written = 0u64;
    while let Some(chunk) = queue.blocking_recv() {
        hasher.update(&chunk);
        std::io::Write::write_all(&mut file, &chunk)?;
        let before = written;
        written += chunk.len() as u64;
        if written / WRITEBACK > before / WRITEBACK {
            let end = offset + written / WRITEBACK * WRITEBACK;
            start_writeback(&file, end - WRITEBACK, WRITEBACK);
        }
        let _ = spare.send(chunk);
    }
    Ok(Received { file, hasher })
}

/// Copies exactly `size` bytes from the stream into `to`. The network side and the disk side
/// run at once (the disk on a blocking thread, a few chunks apart), so hashing and writing a
/// chunk never holds up reading the next one.
pub async fn receive_bytes<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    from: &mut R,
    to: Receiving<'_, W>,
    size: u64,
    progress: Progress<'_>,
    already: u64,
) -> Result<Received, TransferError> {
    let Receiving {
        file,
        path,
        hasher,
        forward,
    } = to;
    let (to_disk, mut queue) = tokio::sync::mpsc::channel::<Vec<u8>>(DEPTH);
    let (spare_tx, mut spare) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::task::spawn_blocking(move || {
        write_chunks(file, hasher, already, &mut queue, spare_tx)
    });
    let received = async {
        let mut done = 0u64;
        while done < size {
            let want = CHUNK.min((size - done) as usize);
            let mut buf = reuse(&mut spare, want);
            // Whole chunks: BLAKE3 is several times faster on large inputs than on the few KiB
            // one stream read returns, and one big file write beats many small ones.
            // The whole chunk within one stall period, not each read: a peer trickling a byte
            // at a time is cut after `STALL` (a floor of about 8 KiB/s), as on the send side.
            unstalled(async {
                let mut n = 0;
                while n < want {
                    let got = from.read(&mut buf[n..]).await?;
                    if got == 0 {
                        return Err(TransferError::Io(std::io::ErrorKind::UnexpectedEof.into()));
                    }
                    n += got;
                }
                Ok(())
            })
            .await?;
            for slot in forward.iter_mut() {
                if let Some(stream) = slot {
                    let sent = unstalled(async { Ok(stream.write_all(&buf).await?) }).await;
                    if sent.is_err() {
                        *slot = None;
                    }
                }
            }
            if to_disk.send(buf).await.is_err() {
                // The writer stopped: its error says why.
                break;
            }
            done += want as u64;
            if let Some(p) = progress {
                p(already + done, already + size);
            }
        }
        Ok(())
    }
    .await;
    drop(to_disk);
    let written = disk_thread(writer).await?;
    match (received, written) {
        (_, Err(e)) => Err(local_error(path)(e)),
        (Err(e), Ok(_)) => Err(e),
        (Ok(()), Ok(received)) => Ok(received),
    }
}

/// Uploads the local file at `path` over `stream` (the Put side of the protocol). An uploader
/// passes its key and signs in the trailer; a node copying a stored file sends its signature in
/// the header. Returns the receiver's final answer: copies made and the content hash.
pub async fn put<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    path: &Path,
    header: TransferRequest,
    signer: Option<&libp2p::identity::Keypair>,
    progress: Progress<'_>,
    final_wait: std::time::Duration,
) -> Result<(u32, Hash), TransferError> {
    let TransferRequest::Put { size, hash, .. } = header else {
        return Err(TransferError::Protocol("put needs a Put header".into()));
    };
    let file = tokio::fs::File::open(path)
        .await
        .map_err(local_error(path))?;
    write_frame(stream, &header).await.map_err(before_answer)?;
    match unstalled(read_frame::<_, PutReply>(stream))
        .await
        .map_err(before_answer)?
    {
        PutReply::Ready => {}
        // "Already here" is an answer only to a copy that names its hash; an upload answered
        // `Done` before a byte moved was stored nowhere.
        PutReply::Done { copies, hash: held } if hash == Some(held) => return Ok((copies, held)),
        PutReply::Done { .. } => {
            return Err(TransferError::Protocol(
                "Done before any byte of the upload was sent".into(),
            ))
        }
        PutReply::Removed => return Err(TransferError::Removed),
        PutReply::Refused(why) | PutReply::Failed(why) => return Err(TransferError::Refused(why)),
    }
    let mut hasher = blake3::Hasher::new();
    let file = file.into_std().await;
    send_bytes(file, path, stream, size, Some(&mut hasher), progress).await?;
    let hash: Hash = *hasher.finalize().as_bytes();
    let signature = match (signer, header.version(&hash)) {
        (Some(key), Some(version)) => version.sign(key),
        _ => Vec::new(),
    };
    write_frame(stream, &Trailer { hash, signature }).await?;
    // An owner answers once its replicas are made; a holder that never answers costs at most
    // `final_wait`.
    let answer = tokio::time::timeout(final_wait, read_frame::<_, PutReply>(stream))
        .await
        .map_err(|_| TransferError::NoAnswer(final_wait))??;
    match answer {
        PutReply::Done {
            copies,
            hash: stored,
        } if stored == hash => Ok((copies, hash)),
        PutReply::Done { .. } => Err(TransferError::HashMismatch),
        PutReply::Removed => Err(TransferError::Removed),
        PutReply::Failed(why) | PutReply::Refused(why) => Err(TransferError::Refused(why)),
        PutReply::Ready => Err(TransferError::Protocol("Ready after the data".into())),
    }
}

/// The hidden file a download is written to until it is complete and verified.
pub fn partial_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    out.with_file_name(format!(".{name}.chord-part"))
}

/// Downloads the version `expected` (already chosen and verified: see `replica::choose`) into
/// `out` (the Get side). Resumes from a partial file left by an earlier attempt; nothing is
/// written locally until the holder has named exactly that version and it fits on the disk;
/// the whole file is verified against its hash before it becomes visible at `out`. Returns the
/// offset it resumed from (0 for a fresh download).
pub async fn get<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    expected: &FileMeta,
    out: &Path,
    progress: Progress<'_>,
) -> Result<u64, TransferError> {
    let partial = partial_path(out);
    // Hash what an earlier attempt already fetched, then ask only for the rest.
    let (hasher, offset) = hash_prefix(&partial).await?;
    let offset = if offset > expected.size { 0 } else { offset };
    let request = TransferRequest::Get {
        name: expected.name.clone(),
        offset,
    };
    write_frame(stream, &request).await.map_err(before_answer)?;
    let meta = match unstalled(read_frame::<_, GetReply>(stream))
        .await
        .map_err(before_answer)?
    {
        GetReply::Sending { meta } => meta,
        GetReply::NotFound => return Err(TransferError::NotFound(expected.name.clone())),
        GetReply::Refused(why) => return Err(TransferError::Refused(why)),
    };
    if !same_version(&meta, expected) {
        return Err(TransferError::WrongVersion(format!(
            "'{}' by {} of {} bytes made at {}",
            meta.name, meta.uploader, meta.size, meta.created
        )));
    }
    let rest = expected.size - offset;
    ensure_space(out, rest)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&partial)
        .map_err(local_error(&partial))?;
    let into = Receiving {
        file,
        path: &partial,
        hasher: hasher.unwrap_or_default(),
        forward: &mut [] as &mut [Option<S>],
    };
    let received = receive_bytes(stream, into, rest, progress, offset).await;
    let Received { file, hasher } = match received {
        Ok(r) => r,
        Err(e) => {
            // Nothing came at all: leave nothing behind.
            if std::fs::metadata(&partial).is_ok_and(|m| m.len() == 0) {
                let _ = std::fs::remove_file(&partial);
            }
            return Err(e);
        }
    };
    if *hasher.finalize().as_bytes() != expected.hash {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(TransferError::HashMismatch);
    }
    tokio::fs::File::from_std(file)
        .sync_all()
        .await
        .map_err(local_error(&partial))?;
    tokio::fs::rename(&partial, out)
        .await
        .map_err(local_error(out))?;
    Ok(offset)
}

/// The hash and length of a partial download, if there is one.
async fn hash_prefix(partial: &Path) -> Result<(Option<blake3::Hasher>, u64), TransferError> {
    let mut file = match tokio::fs::File::open(partial).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((None, 0)),
        Err(e) => return Err(local_error(partial)(e)),
    };
    let mut hasher = blake3::Hasher::new();
    let mut offset = 0u64;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut buf).await.map_err(local_error(partial))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    Ok((Some(hasher), offset))
}

/// Refuses to start writing `needed` bytes next to `out` when the disk has less free.
fn ensure_space(out: &Path, needed: u64) -> Result<(), TransferError> {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Some(free) = free_bytes(dir) {
        if needed > free {
            return Err(TransferError::NoSpace {
                path: dir.display().to_string(),
                needed,
                free,
            });
        }
    }
    Ok(())
}

/// Bytes free for this user on the file system holding `dir` (None if it cannot be told).
pub fn free_bytes(dir: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
        let mut stat = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
        // SAFETY: `c` is a valid NUL-terminated path and `stat` a buffer of the right type;
        // statvfs only writes into it.
        let rc = unsafe { libc::statvfs(c.as_ptr(), stat.as_mut_ptr()) };
        if rc != 0 {
            return None;
        }
        // SAFETY: statvfs returned 0, so it filled the struct.
        let stat = unsafe { stat.assume_init() };
        // The field types differ between platforms (u32 on some 32-bit ones).
        #[allow(clippy::unnecessary_cast)]
        Some((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;

    /// Bytes that differ from chunk to chunk, over more than three chunks (buffers get reused).
    fn payload() -> Vec<u8> {
        (0..3 * CHUNK + 1234).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[tokio::test]
    async fn a_file_is_sent_whole_and_hashed_as_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("src");
        let data = payload();
        std::fs::write(&path, &data).unwrap();
        let mut wire = Cursor::new(Vec::new());
        let mut hasher = blake3::Hasher::new();
        let file = std::fs::File::open(&path).unwrap();
        let size = data.len() as u64;
        send_bytes(file, &path, &mut wire, size, Some(&mut hasher), None)
            .await
            .unwrap();
        assert_eq!(wire.into_inner(), data);
        assert_eq!(hasher.finalize(), blake3::hash(&data));
    }

    #[tokio::test]
    async fn a_file_shorter_than_announced_has_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("src");
        std::fs::write(&path, payload()).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let mut wire = Cursor::new(Vec::new());
        let size = payload().len() as u64 + 1;
        let sent = send_bytes(file, &path, &mut wire, size, None, None).await;
        assert!(matches!(sent, Err(TransferError::Changed)), "{sent:?}");
    }

    #[tokio::test]
    async fn received_bytes_are_written_hashed_and_forwarded_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dst");
        let data = payload();
        let mut forward = [Some(Cursor::new(Vec::new()))];
        let into = Receiving {
            file: std::fs::File::create(&path).unwrap(),
            path: &path,
            hasher: blake3::Hasher::new(),
            forward: &mut forward,
        };
        let mut wire = Cursor::new(data.clone());
        let received = receive_bytes(&mut wire, into, data.len() as u64, None, 0)
            .await
            .unwrap();
        drop(received.file);
        assert_eq!(received.hasher.finalize(), blake3::hash(&data));
        assert_eq!(std::fs::read(&path).unwrap(), data);
        let [Some(copy)] = forward else {
            panic!("the forward was dropped");
        };
        assert_eq!(copy.into_inner(), data);
    }

    #[tokio::test]
    async fn a_stream_that_ends_early_is_an_error_and_keeps_what_arrived() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dst");
        let data = payload();
        let cut = 2 * CHUNK + 99;
        let into = Receiving {
            file: std::fs::File::create(&path).unwrap(),
            path: &path,
            hasher: blake3::Hasher::new(),
            forward: &mut [] as &mut [Option<Cursor<Vec<u8>>>],
        };
        let mut wire = Cursor::new(data[..cut].to_vec());
        let got = receive_bytes(&mut wire, into, data.len() as u64, None, 0).await;
        assert!(
            matches!(&got, Err(TransferError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof),
            "{:?}",
            got.err()
        );
        // Whole chunks that arrived are on disk (a resumed get hashes them and asks for the rest).
        let kept = std::fs::read(&path).unwrap();
        assert_eq!(kept[..], data[..2 * CHUNK]);
    }

    /// A peer that sends one byte a second.
    struct Trickle {
        sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            use std::future::Future;
            std::task::ready!(self.sleep.as_mut().poll(cx));
            let next = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
            self.sleep.as_mut().reset(next);
            buf[0] = 7;
            std::task::Poll::Ready(Ok(1))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_trickling_below_the_floor_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dst");
        let receive = tokio::spawn(async move {
            let into = Receiving {
                file: std::fs::File::create(&path).unwrap(),
                path: &path,
                hasher: blake3::Hasher::new(),
                forward: &mut [] as &mut [Option<Cursor<Vec<u8>>>],
            };
            let mut wire = Trickle {
                sleep: Box::pin(tokio::time::sleep(std::time::Duration::ZERO)),
            };
            receive_bytes(&mut wire, into, CHUNK as u64, None, 0)
                .await
                .map(|_| ())
        });
        // The disk thread keeps the paused clock from moving by itself: move it by hand, a
        // second at a time, while a byte comes every second.
        let mut waited = 0;
        while !receive.is_finished() && waited < 40 {
            tokio::time::advance(std::time::Duration::from_secs(1)).await;
            tokio::task::yield_now().await;
            waited += 1;
        }
        // Cut within 40 s of (virtual) time though a byte came every second: at that rate the
        // chunk would have taken three days. (The disk thread ends in real time: wait for it,
        // a bounded while.)
        for _ in 0..2000 {
            if receive.is_finished() {
                break;
            }
            tokio::task::yield_now().await;
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(receive.is_finished(), "a trickling peer was not cut");
        let got = receive.await.unwrap();
        assert!(matches!(got, Err(TransferError::Stalled(_))), "{got:?}");
    }
}
