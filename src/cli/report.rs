//! How a failed command is told: one line on stderr for people, or with `--json` one object on
//! stdout, `{"error": "...", "kind": "..."}`, that scripts can branch on. The exit code is 1
//! either way.

use chord_p2p::client::ClientError;
use chord_p2p::files::{FilesError, FolderError};
use chord_p2p::net::AddressError;
use chord_p2p::node::NodeError;
// The kinds are the library's, shared with the HTTP API's error bodies.
use chord_p2p::shapes::{
    files_error_kind as files_kind, node_error_kind as node_kind, refusal_kind,
};
use serde_json::json;

/// A mistake in what the user asked for (a path, a flag): nothing was sent anywhere.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// The error's chain as one line, each cause once: several of our errors already print
/// their source, which `{:#}` would print again.
pub fn text(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let cause = cause.to_string();
        if !line.contains(&cause) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&cause);
        }
    }
    line
}

/// What kind of failure it was, for scripts: `usage`, `not_found`, `removed`, `refused`,
/// `busy`, `full`, `unreachable`, `timeout`, `transfer`, `local`, `protocol` or `error`.
pub fn kind(e: &anyhow::Error) -> &'static str {
    for cause in e.chain() {
        if cause.downcast_ref::<Usage>().is_some() || cause.downcast_ref::<AddressError>().is_some()
        {
            return "usage";
        }
        if let Some(e) = cause.downcast_ref::<FilesError>() {
            return files_kind(e);
        }
        if let Some(e) = cause.downcast_ref::<ClientError>() {
            return match e {
                ClientError::Node(e) => node_kind(e),
                ClientError::Files(e) => files_kind(e),
                ClientError::Refused { reason, .. } => refusal_kind(reason),
                ClientError::Invalid { .. } => "protocol",
                ClientError::Identity { .. } => "local",
                ClientError::Folder(e) => folder_kind(e),
                ClientError::Ticket(_) => "usage",
            };
        }
        if let Some(e) = cause.downcast_ref::<NodeError>() {
            return node_kind(e);
        }
        if cause.downcast_ref::<std::io::Error>().is_some() {
            return "local";
        }
    }
    "error"
}

fn folder_kind(e: &FolderError) -> &'static str {
    match e {
        FolderError::Files(e) => files_kind(e),
        FolderError::Member { source, .. } => folder_kind(source),
        FolderError::Name(_) | FolderError::Exists(_) | FolderError::NotADirectory(_) => "usage",
        FolderError::Local { .. } | FolderError::Differs(_) | FolderError::NoSpace { .. } => {
            "local"
        }
        FolderError::BadPath { .. } | FolderError::TooManyFiles { .. } => "refused",
        FolderError::NotAFolder { .. }
        | FolderError::ManifestTooLarge { .. }
        | FolderError::Changed { .. } => "protocol",
        FolderError::Incomplete { .. } => "transfer",
    }
}

/// Tells the user: stderr for people, stdout as JSON for scripts.
pub fn failure(e: &anyhow::Error, json: bool) {
    if json {
        super::emit(json!({ "error": text(e), "kind": kind(e) }));
    } else {
        eprintln!("error: {}", text(e));
    }
}
