//! Reading a byte range of a file without fetching the rest. The getter chooses the version
//! as any get does, fetches the file's outboard (checked against the signed hash), then the
//! whole 1 MiB groups inside the range and, at its two ends, only the 16 KiB pieces the range
//! touches, checked against the piece values of those groups (which merge to the groups'
//! values in the outboard). Only checked bytes are written, in order; a holder that fails or
//! lies hands over to the next at the first byte not yet written. A ring member that holds the
//! version itself reads it from its own disk, checked group by group the same way.

use futures::{AsyncReadExt, AsyncWriteExt};

use super::access::Access;
use super::error::FilesError;
use super::member::Files;
use super::ops;
use super::swarm::{ask, fetch_tree};
use super::transfer::{self, TransferRequest};
use crate::net::PeerRef;
use crate::records::FileMeta;
use crate::replica::same_version;
use crate::verified::{self, Cv, Outboard, GROUP_BYTES, PIECE_BYTES};

/// What a range read did.
#[derive(Clone, Debug)]
pub struct RangeReport {
    pub name: String,
    /// The file's size, hash and uploader's time: the version read.
    pub version: FileMeta,
    /// The bytes written: `first..=last`.
    pub first: u64,
    pub last: u64,
    /// Bytes that came over the wire for it: the checked units of file data (a little more
    /// than the range), the outboard and the piece values of the two ends.
    pub fetched: u64,
    /// The holder that sent the last of it.
    pub from: PeerRef,
}

/// One unit of a range read: a whole group or one piece, with the value it must hash to.
struct Unit {
    start: u64,
    len: u64,
    group: u64,
    /// The piece index and value, or `None` for a whole group (checked by the outboard).
    piece: Option<(u64, Cv)>,
}

/// Writes bytes `first..=last` of `name` to `out`, checked; see the module doc.
pub async fn read_range(
    access: &Access,
    name: &str,
    first: u64,
    last: u64,
    out: &mut (dyn std::io::Write + Send),
) -> Result<RangeReport, FilesError> {
    let chosen = ops::choose(access, name).await?;
    let version = chosen.version;
    if first > last || last >= version.size {
        return Err(FilesError::Refused(format!(
            "bytes {first}-{last} are not inside '{name}' ({} bytes)",
            version.size
        )));
    }
    let mut next = first;
    let mut fetched = 0;
    let mut last_error = FilesError::NotFound(name.into());
    for source in &chosen.sources {
        // This node's own copy is read from its disk: a member cannot open a stream to itself.
        let read = match (&access.local, access.is_me(source)) {
            (Some(files), true) => from_local(files, &version, &mut next, last, out).await,
            _ => from_source(access, &version, source, &mut next, last, out).await,
        };
        match read {
            Ok(moved) => {
                fetched += moved;
                return Ok(RangeReport {
                    name: name.into(),
                    version,
                    first,
                    last,
                    fetched,
                    from: source.clone(),
                });
            }
            Err((moved, e)) => {
                fetched += moved;
                tracing::info!(peer = %source.addr.peer_id, "range of {name} failed there: {e}");
                last_error = e;
            }
        }
    }
    Err(last_error)
}

/// Reads what is left (`*next..=last`) from this node's own copy of `version`: each group
/// that holds part of it checked against the copy's outboard (kept beside it, or computed and
/// checked against the signed hash), one group in memory at a time. Nothing moves over the
/// wire, so it returns 0 bytes moved.
async fn from_local(
    files: &Files,
    version: &FileMeta,
    next: &mut u64,
    last: u64,
    out: &mut (dyn std::io::Write + Send),
) -> Result<u64, (u64, FilesError)> {
    let key = version.key;
    let held = files.store().get(&key);
    let Some(meta) = held.filter(|m| same_version(m, version) && !files.is_corrupt(&key)) else {
        return Err((0, FilesError::NotFound(version.name.clone())));
    };
    let unreadable = |e: std::io::Error| {
        (
            0,
            FilesError::Refused(format!("the copy here cannot be read now: {e}")),
        )
    };
    let outboard = files.outboard(&meta).await.map_err(unreadable)?;
    let Some(tree) = Outboard::from_bytes(&outboard, meta.size, meta.hash) else {
        return Err((
            0,
            FilesError::Transfer(transfer::TransferError::HashMismatch),
        ));
    };
    let data = files.store().data_path(&key);
    for group in verified::group_range(*next, last + 1, meta.size) {
        let Some(span) = verified::group_span(group, meta.size) else {
            continue;
        };
        let (path, start, len) = (data.clone(), span.start, span.end - span.start);
        let bytes = tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            let mut bytes = vec![0u8; len as usize];
            std::fs::File::open(&path)?.read_exact_at(&mut bytes, start)?;
            Ok::<_, std::io::Error>(bytes)
        })
        .await
        .map_err(|e| unreadable(std::io::Error::other(e)))?
        .map_err(unreadable)?;
        if !tree.check_group(group, &bytes) {
            files.found_corrupt(&key);
            return Err((
                0,
                FilesError::Transfer(transfer::TransferError::HashMismatch),
            ));
        }
        let from = (*next).max(span.start) - span.start;
        let to = (last + 1).min(span.end) - span.start;
        write_out(out, &bytes[from as usize..to as usize]).map_err(|e| (0, e))?;
        *next = span.start + to;
    }
    Ok(0)
}

/// Reads from one holder what is left (`*next..=last`), advancing `next` past every byte
/// written. Returns the file bytes moved, also on failure.
async fn from_source(
    access: &Access,
    version: &FileMeta,
    source: &PeerRef,
    next: &mut u64,
    last: u64,
    out: &mut (dyn std::io::Write + Send),
) -> Result<u64, (u64, FilesError)> {
    if version.size <= GROUP_BYTES {
        // One group: no outboard; the whole (small) file is checked against the hash.
        let bytes = fetch_bytes(access, version, source, 0, version.size)
            .await
            .map_err(|e| (0, e))?;
        if blake3::hash(&bytes).as_bytes() != &version.hash {
            return Err((version.size, bad(source)));
        }
        write_out(out, &bytes[*next as usize..=last as usize]).map_err(|e| (version.size, e))?;
        *next = last + 1;
        return Ok(version.size);
    }
    let (tree, _) = fetch_tree(access, version, std::slice::from_ref(source))
        .await
        .map_err(|e| (0, e))?;
    let tree_bytes = tree.cvs().len() as u64 * verified::CV_BYTES as u64;
    let (units, piece_bytes) = plan(access, version, source, &tree, *next, last)
        .await
        .map_err(|e| (tree_bytes, e))?;
    let overhead = tree_bytes + piece_bytes;
    let (Some(head), Some(tail)) = (units.first(), units.last()) else {
        return Ok(overhead);
    };
    let (start, end) = (head.start, tail.start + tail.len);
    let read = access
        .transfer(source, end - start, |mut stream| {
            let (units, next_at, tree) = (&units, *next, &tree);
            async move {
                ask(
                    &mut stream,
                    TransferRequest::Range {
                        name: version.name.clone(),
                        start,
                        len: end - start,
                    },
                    version,
                )
                .await?;
                let mut checked = Vec::new();
                let mut buf = vec![0u8; GROUP_BYTES as usize];
                for unit in units {
                    let bytes = &mut buf[..unit.len as usize];
                    transfer::unstalled(async { Ok(stream.read_exact(bytes).await?) }).await?;
                    let good = match unit.piece {
                        Some((piece, cv)) => {
                            verified::piece_cv(unit.group, piece, bytes) == Some(cv)
                        }
                        None => tree.check_group(unit.group, bytes),
                    };
                    if !good {
                        return Err(transfer::TransferError::HashMismatch);
                    }
                    // Only the part inside the range is kept.
                    let from = next_at.max(unit.start) - unit.start;
                    let to = (last + 1).min(unit.start + unit.len) - unit.start;
                    checked.push(bytes[from as usize..to as usize].to_vec());
                }
                let _ = stream.close().await;
                Ok(checked)
            }
        })
        .await;
    let moved = overhead + end - start;
    match read {
        Ok((parts, _)) => {
            for part in parts {
                write_out(out, &part).map_err(|e| (moved, e))?;
                *next += part.len() as u64;
            }
            Ok(moved)
        }
        Err(e) => Err((overhead, e)),
    }
}

/// The units covering `next..=last`: whole groups inside, pieces at partly covered ends
/// (their values fetched from `source` and checked against the outboard), and the bytes
/// those values took.
async fn plan(
    access: &Access,
    version: &FileMeta,
    source: &PeerRef,
    tree: &Outboard,
    next: u64,
    last: u64,
) -> Result<(Vec<Unit>, u64), FilesError> {
    let mut piece_bytes = 0;
    let groups = verified::group_range(next, last + 1, version.size);
    let mut units = Vec::new();
    for group in groups {
        let Some(span) = verified::group_span(group, version.size) else {
            continue;
        };
        let (lo, hi) = (next.max(span.start), (last + 1).min(span.end));
        if lo == span.start && hi == span.end {
            units.push(Unit {
                start: span.start,
                len: span.end - span.start,
                group,
                piece: None,
            });
            continue;
        }
        let pieces = fetch_pieces(access, version, source, group).await?;
        piece_bytes += pieces.len() as u64 * verified::CV_BYTES as u64;
        let len = span.end - span.start;
        let Some(group_cv) = tree.cvs().get(group as usize) else {
            return Err(bad(source));
        };
        if !verified::pieces_match(&pieces, len, group_cv) {
            return Err(bad(source));
        }
        let (p0, p1) = (
            (lo - span.start) / PIECE_BYTES,
            (hi - 1 - span.start) / PIECE_BYTES,
        );
        for piece in p0..=p1 {
            let start = span.start + piece * PIECE_BYTES;
            units.push(Unit {
                start,
                len: PIECE_BYTES.min(span.end - start),
                group,
                piece: Some((piece, pieces[piece as usize])),
            });
        }
    }
    Ok((units, piece_bytes))
}

/// The piece values of one group, as `source` computes them (checked by the caller).
async fn fetch_pieces(
    access: &Access,
    version: &FileMeta,
    source: &PeerRef,
    group: u64,
) -> Result<Vec<Cv>, FilesError> {
    let span = verified::group_span(group, version.size).ok_or_else(|| bad(source))?;
    let count = (span.end - span.start).div_ceil(PIECE_BYTES).max(1) as usize;
    let (bytes, _) = access
        .transfer(
            source,
            (count * verified::CV_BYTES) as u64,
            |mut stream| async move {
                ask(
                    &mut stream,
                    TransferRequest::Pieces {
                        name: version.name.clone(),
                        group,
                    },
                    version,
                )
                .await?;
                let mut bytes = vec![0u8; count * verified::CV_BYTES];
                transfer::unstalled(async { Ok(stream.read_exact(&mut bytes).await?) }).await?;
                Ok(bytes)
            },
        )
        .await?;
    let cvs = bytes
        .chunks(verified::CV_BYTES)
        .filter_map(|c| <[u8; 32]>::try_from(c).ok())
        .collect();
    Ok(cvs)
}

/// `len` bytes from `start`, unchecked (the caller checks them).
async fn fetch_bytes(
    access: &Access,
    version: &FileMeta,
    source: &PeerRef,
    start: u64,
    len: u64,
) -> Result<Vec<u8>, FilesError> {
    let (bytes, _) = access
        .transfer(source, len, |mut stream| async move {
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
            let mut bytes = vec![0u8; len as usize];
            transfer::unstalled(async { Ok(stream.read_exact(&mut bytes).await?) }).await?;
            Ok(bytes)
        })
        .await?;
    Ok(bytes)
}

/// `source` sent values or bytes that do not match what the uploader signed.
fn bad(source: &PeerRef) -> FilesError {
    tracing::warn!(peer = %source.addr.peer_id, "sent range data that does not match its hash");
    FilesError::Transfer(transfer::TransferError::HashMismatch)
}

fn write_out(out: &mut (dyn std::io::Write + Send), bytes: &[u8]) -> Result<(), FilesError> {
    out.write_all(bytes).map_err(|e| FilesError::Local {
        path: "the output".into(),
        reason: e.to_string(),
    })
}
