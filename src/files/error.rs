//! What can go wrong with a file operation, for every driver of the files layer.

use std::time::Duration;

use super::names::NameError;
use super::store::StoreError;
use super::transfer::TransferError;
use crate::node::NodeError;

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
    #[error("'{name}' could not be read from the ring now: a holder refused: {reason}")]
    Unanswered { name: String, reason: String },
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
         through a connection: too little for this transfer ({needed} bytes and 1 MiB of \
         room). No direct connection came up within {waited:?} (hole punching cannot get \
         through a symmetric NAT). A relay started with a larger --relay-max-circuit-bytes (or \
         0, no limit) carries it"
    )]
    RelayTooSmall {
        peer: String,
        relay: String,
        limit: u64,
        needed: u64,
        waited: Duration,
    },
}
