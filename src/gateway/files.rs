//! The gateway: files on the ring by name over plain HTTP, for browsers, curl and video
//! players that speak no libp2p.
//!
//! - `GET /files/{name}` chooses the version as any get does (every holder asked, the
//!   uploader's signature checked), fetches it whole into a scratch file with the ordinary get
//!   (every byte checked against the signed hash, from all holders at once for large files),
//!   and only then streams it: the simplest way that is both verified and bounded in memory.
//!   The price is latency: the first byte leaves once the last one has arrived here.
//! - With `Range: bytes=A-B` it answers 206 with exactly those bytes, read with the range
//!   reader (`files::range`), so only about that much moves on the ring: in steps of
//!   [`RANGE_STEP`], each checked before it is sent, so memory stays bounded too.
//! - `HEAD` answers the headers of the chosen version; no byte of the file moves.
//! - `PUT` takes the body into a scratch file and puts it as the node's identity; `DELETE`
//!   removes as the node's identity (only the uploader may: see `auth` for who may ask).
//!
//! Scratch files live in the store's own tmp directory (same disk as the files, cleared at
//! the next start if the process dies) and go as soon as the response is done or dropped.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OwnedSemaphorePermit;

use super::error::ApiError;
use super::metrics::Metrics;
use super::Shared;
use crate::files::access::Access;
use crate::files::names::check_name;
use crate::files::range::read_range;
use crate::files::{folder, ops, ticket, transfer, FileMeta};
use crate::records::hash_hex;
use crate::replica::same_version;
use crate::shapes::{put_json, removed_json, with_ticket};

/// Bytes of a range read and sent at a time: whole 1 MiB groups, so each step but the last
/// moves no more than it sends.
const RANGE_STEP: u64 = 8 << 20;
/// Bytes read from a scratch file per body chunk.
const CHUNK: usize = 256 << 10;

pub(super) fn routes() -> Router<Shared> {
    Router::new().route(
        "/files/{*name}",
        get(get_file)
            .head(head_file)
            .put(put_file)
            .delete(delete_file),
    )
}

/// The part of a file a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wanted {
    Whole,
    /// Bytes `first..=last`, inside the file.
    Part(u64, u64),
    /// A well-formed range that starts past the end (416).
    Unsatisfiable,
}

/// Reads a `Range` header against a file of `size` bytes. One range of bytes only: several
/// ranges, other units and malformed ones are ignored (the whole file is sent), as RFC 9110
/// allows.
fn wanted(range: Option<&str>, size: u64) -> Wanted {
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else {
        return Wanted::Whole;
    };
    if spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((from, to)) = spec.trim().split_once('-') else {
        return Wanted::Whole;
    };
    let number = |s: &str| s.trim().parse::<u64>().ok();
    match (from.trim().is_empty(), number(from), number(to)) {
        // bytes=-N: the last N bytes.
        (true, _, Some(n)) if n == 0 || size == 0 => Wanted::Unsatisfiable,
        (true, _, Some(n)) => Wanted::Part(size.saturating_sub(n), size - 1),
        (false, Some(first), _) if first >= size => Wanted::Unsatisfiable,
        // bytes=A-
        (false, Some(first), None) if to.trim().is_empty() => Wanted::Part(first, size - 1),
        (false, Some(first), Some(last)) if first <= last => {
            Wanted::Part(first, last.min(size - 1))
        }
        _ => Wanted::Whole,
    }
}

/// `"<BLAKE3 hex>"`: the content hash names the bytes, whoever uploaded them.
fn etag_of(version: &FileMeta) -> String {
    format!("\"{}\"", hash_hex(&version.hash))
}

/// Whether an `If-None-Match` header lists `etag` (or is `*`).
fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

/// The headers every answer about a version carries.
fn version_headers(name: &str, version: &FileMeta) -> [(header::HeaderName, HeaderValue); 3] {
    let mime = mime_guess::from_path(name).first_or_octet_stream();
    let content_type = HeaderValue::from_str(mime.essence_str())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let etag = HeaderValue::from_str(&etag_of(version)).unwrap_or(HeaderValue::from_static("\"\""));
    [
        (header::CONTENT_TYPE, content_type),
        (header::ETAG, etag),
        (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
    ]
}

fn length(n: u64) -> (header::HeaderName, HeaderValue) {
    (header::CONTENT_LENGTH, HeaderValue::from(n))
}

async fn head_file(
    State(state): State<Shared>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let chosen = ops::choose(&state.files.access(), &name).await?;
    let version = &chosen.version;
    Ok((
        version_headers(&name, version),
        [length(version.size)],
        Body::empty(),
    )
        .into_response())
}

async fn get_file(
    State(state): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let access = state.files.access();
    let chosen = ops::choose(&access, &name).await?;
    let version = chosen.version.clone();
    let etag = etag_of(&version);
    let common = version_headers(&name, &version);
    if none_match(&headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, common).into_response());
    }
    // `If-Range` with another tag: the client's partial copy is stale; send it all.
    let fresh = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|tag| tag.trim() == etag);
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let size = version.size;
    match wanted(range.filter(|_| fresh), size) {
        Wanted::Unsatisfiable => {
            let unsatisfiable = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "usage",
                format!("the range is not inside '{name}' ({size} bytes)"),
            );
            let content_range = HeaderValue::from_str(&format!("bytes */{size}"))
                .unwrap_or(HeaderValue::from_static("bytes */0"));
            Ok(([(header::CONTENT_RANGE, content_range)], unsatisfiable).into_response())
        }
        Wanted::Part(first, last) => {
            let content_range = HeaderValue::from_str(&format!("bytes {first}-{last}/{size}"))
                .unwrap_or(HeaderValue::from_static("bytes */0"));
            let read = RangeRead {
                access,
                name,
                version,
                last,
                metrics: state.metrics.clone(),
            };
            Ok((
                StatusCode::PARTIAL_CONTENT,
                common,
                [
                    length(last - first + 1),
                    (header::CONTENT_RANGE, content_range),
                ],
                read.body(first),
            )
                .into_response())
        }
        Wanted::Whole => {
            let permit = scratch_permit(&state)?;
            let usage = state.files.store().usage();
            if let Some(limit) = usage.limit.filter(|l| usage.used.saturating_add(size) > *l) {
                return Err(ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "full",
                    format!(
                        "'{name}' ({size} bytes) does not fit beside what this node stores \
                         ({} of {limit} bytes used); ask for a range of it instead",
                        usage.used
                    ),
                ));
            }
            let out = state.files.store().scratch_path("gateway-get");
            let scratch = Scratch {
                paths: vec![out.clone(), transfer::partial_path(&out)],
                _permit: permit,
            };
            ops::fetch_chosen(&access, &chosen, &out, None).await?;
            let file = tokio::fs::File::open(&out)
                .await
                .map_err(|e| ApiError::local(format!("cannot read the fetched copy: {e}")))?;
            let body = file_body(file, scratch, state.metrics.clone());
            Ok((common, [length(size)], body).into_response())
        }
    }
}

/// Whole files the gateway keeps in scratch files at once (gets fetched before they are
/// sent, puts received before they are put); past it a request is refused "busy" at once,
/// so readers cannot fill the disk with copies of the ring's largest file.
pub(super) const MAX_SCRATCH: usize = 4;

/// A place among the [`MAX_SCRATCH`], or the clear refusal.
fn scratch_permit(state: &Shared) -> Result<OwnedSemaphorePermit, ApiError> {
    state.scratch.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!(
                "busy: the gateway is already moving {MAX_SCRATCH} whole files; try again \
                 shortly, or ask for a range"
            ),
        )
    })
}

/// Scratch files, removed when dropped (with the body that streams them, or the request
/// that failed), and their place among the [`MAX_SCRATCH`].
struct Scratch {
    paths: Vec<PathBuf>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for path in &self.paths {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Streams a verified scratch copy, [`CHUNK`] bytes at a time, then removes it.
fn file_body(file: tokio::fs::File, scratch: Scratch, metrics: Arc<Metrics>) -> Body {
    let chunks = futures::stream::try_unfold(
        (file, scratch, metrics),
        |(mut file, scratch, metrics)| async move {
            let mut buf = vec![0u8; CHUNK];
            let n = file.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(None);
            }
            buf.truncate(n);
            metrics.sent(n as u64);
            Ok(Some((Bytes::from(buf), (file, scratch, metrics))))
        },
    );
    Body::from_stream(chunks)
}

/// A range being read from the ring and sent, step by step.
#[derive(Clone)]
struct RangeRead {
    access: Access,
    name: String,
    /// The version the headers promised; a step that finds another one ends the body early
    /// (the client sees a short answer, never mixed bytes).
    version: FileMeta,
    last: u64,
    metrics: Arc<Metrics>,
}

impl RangeRead {
    fn body(self, first: u64) -> Body {
        let steps = futures::stream::try_unfold((self, first), |(read, next)| async move {
            if next > read.last {
                return Ok(None);
            }
            let end = ((next / RANGE_STEP + 1) * RANGE_STEP - 1).min(read.last);
            let mut bytes = Vec::with_capacity((end - next + 1) as usize);
            let report = read_range(&read.access, &read.name, next, end, &mut bytes)
                .await
                .map_err(|e| {
                    tracing::info!(name = read.name, "range read failed mid-answer: {e}");
                    std::io::Error::other(e.to_string())
                })?;
            if !same_version(&report.version, &read.version) {
                tracing::info!(name = read.name, "the file changed while a range was read");
                return Err(std::io::Error::other("the file changed while it was read"));
            }
            read.metrics.sent(bytes.len() as u64);
            Ok(Some((Bytes::from(bytes), (read, end + 1))))
        });
        Body::from_stream(steps)
    }
}

async fn put_file(
    State(state): State<Shared>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    check_name(&name).map_err(|e| ApiError::usage(e.to_string()))?;
    if folder::is_folder_name(&name) {
        return Err(ApiError::usage(format!(
            "'{name}' ends with /, which names a folder; put files under it, or drop the /"
        )));
    }
    let permit = scratch_permit(&state)?;
    let path = state.files.store().scratch_path("gateway-put");
    let _scratch = Scratch {
        paths: vec![path.clone()],
        _permit: permit,
    };
    receive(body, &path, &state.metrics).await?;
    let access = state.files.access();
    let report = ops::upload(&access, &path, &name, None).await?;
    let ticket = ticket::for_name(&access, &name).await.encode();
    let location = HeaderValue::from_str(&format!("/files/{}", escape(&name)))
        .unwrap_or(HeaderValue::from_static("/files/"));
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(with_ticket(put_json(&report), &ticket)),
    )
        .into_response())
}

/// Writes a request body to `path` as it arrives.
async fn receive(body: Body, path: &std::path::Path, metrics: &Metrics) -> Result<(), ApiError> {
    let disk = |e: std::io::Error| {
        let status = if e.kind() == std::io::ErrorKind::StorageFull {
            StatusCode::INSUFFICIENT_STORAGE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        ApiError::new(status, "local", format!("cannot keep the upload here: {e}"))
    };
    let mut file = tokio::fs::File::create(path).await.map_err(disk)?;
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| ApiError::usage(format!("the upload broke off: {e}")))?;
        file.write_all(&chunk).await.map_err(disk)?;
        metrics.received(chunk.len() as u64);
    }
    file.flush().await.map_err(disk)
}

async fn delete_file(
    State(state): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let copies = ops::remove(&state.files.access(), &name).await?;
    Ok(Json(removed_json(&name, copies)))
}

/// A name as a URL path: unreserved characters and `/` as they are, the rest percent-encoded.
fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        let size = 10_000;
        assert_eq!(wanted(None, size), Wanted::Whole);
        assert_eq!(
            wanted(Some("bytes=1000-1999"), size),
            Wanted::Part(1000, 1999)
        );
        assert_eq!(wanted(Some("bytes=9000-"), size), Wanted::Part(9000, 9999));
        assert_eq!(wanted(Some("bytes=-500"), size), Wanted::Part(9500, 9999));
        assert_eq!(wanted(Some("bytes=-50000"), size), Wanted::Part(0, 9999));
        assert_eq!(
            wanted(Some("bytes=9000-20000"), size),
            Wanted::Part(9000, 9999)
        );
        assert_eq!(wanted(Some("bytes=10000-"), size), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=-0"), size), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=0-0"), 0), Wanted::Unsatisfiable);
        // Ignored: several ranges, other units, nonsense, backwards.
        assert_eq!(wanted(Some("bytes=0-1,5-6"), size), Wanted::Whole);
        assert_eq!(wanted(Some("items=0-1"), size), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=x-y"), size), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=5-4"), size), Wanted::Whole);
    }

    #[test]
    fn names_become_url_paths() {
        assert_eq!(
            escape("photos/2024/beach 1.jpg"),
            "photos/2024/beach%201.jpg"
        );
        assert_eq!(escape("a?b#c%"), "a%3Fb%23c%25");
    }

    #[test]
    fn if_none_match_lists_are_read() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"aa\", W/\"bb\""),
        );
        assert!(none_match(&headers, "\"bb\""));
        assert!(!none_match(&headers, "\"cc\""));
    }
}
